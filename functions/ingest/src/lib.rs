//! # doorbell-ingest
//!
//! The ingest function: `POST /webhooks/{source}` → verify → enqueue → answer.
//!
//! Contract (one request):
//!
//! | case | status | body | enqueued |
//! |---|---|---|---|
//! | verified and enqueued | 200 | `{"received":true,"id":"<event id>"}` | yes |
//! | verified endpoint handshake (Slack `url_verification`) | 200 | `{"challenge":"…"}` | no |
//! | unknown source | 404 | `{"error":"unknown source"}` | no |
//! | body over the source's `max_body_bytes` (default 10 MiB), or envelope over the queue's limit with no claim-check bucket | 413 | `{"error":"payload too large"}` | no |
//! | missing or bad signature, timestamp outside tolerance | 401 | `{"error":"invalid signature"}` | no |
//! | verified, but no event id or type can be read | 400 | `{"error":"no event id"}` | no |
//! | `isBase64Encoded` body that is not base64 | 400 | `{"error":"body is not valid base64"}` | no |
//! | a body that cannot be read (the connection broke) | 400 | `{"error":"unreadable body"}` | no |
//! | the body did not arrive within the local server's body timeout (`doorbell dev`) | 408 | `{"error":"request body not received in time"}` | no |
//! | the queue did not take it (error, throttling, unreachable), or no sources could be loaded | 503 | `{"error":"queue unavailable"}` | no |
//!
//! An envelope over the queue's maximum message size is stored in S3 and the message carries a
//! pointer when the queue is a [`doorbell::queue::ClaimCheckQueue`] (`DOORBELL_PAYLOAD_BUCKET`);
//! a failed upload is a 503 like a failed send. On a FIFO queue the message group is the source
//! (its events are delivered in order) and the deduplication id is a digest of the idempotency
//! key and the body, so SQS drops a provider's retry within its 5-minute window while a
//! different body under the same key still reaches the worker as a conflict.
//!
//! A 2xx is only ever sent after [`doorbell::queue::EventQueue::send`] returned, i.e. after the
//! queue durably accepted the envelope; a provider that gets a 5xx retries. The reason for a 401
//! goes to the log (`reason` field, plus `metric = "SignatureRejected"`), never to the caller.
//! The body is verified and enqueued as the exact bytes received: API Gateway's base64
//! transport encoding (`isBase64Encoded`) is undone by `lambda_http` before this code runs, and
//! nothing parses and re-serialises the body. Ingest does no database work.
//!
//! Each request for a configured source publishes one metrics document
//! ([`doorbell::metrics`]) when the state has a sink ([`IngestState::with_metrics`]): `Received`
//! and one of `Enqueued`, `EnqueueFailed` or `Rejected` (with a `reason`: the log's reason for a
//! signature, `no_event_id`, `too_large`, `invalid_base64_body`, `unreadable_body`,
//! `body_timeout`). A request for an unknown source counts as `Rejected` with reason
//! `unknown_source` under source `unknown`, never under the name it asked for.
//!
//! The same [`app`] runs under `lambda_http::run` in Lambda (REST v1, HTTP API v2 and function
//! URL events) and under a local HTTP server in `doorbell dev`. Both `/webhooks/{source}` and
//! `/{stage}/webhooks/{source}` route, so a REST API stage prefix (`/Prod/…`) does not 404.

pub mod config;
pub mod lambda;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use doorbell::SourceConfig;
use doorbell::catalog::SourceCatalog;
use doorbell::clock::Clock;
use doorbell::envelope::Envelope;
use doorbell::metrics::{self, MetricsDoc, MetricsSink, NoMetrics};
use doorbell::queue::{EventQueue, OutgoingMessage, QueueError};
use doorbell::verify::{WebhookRequest, verify_at};
use lambda_http::RequestExt;
use serde_json::json;

/// What the app needs: the sources, the queue, and a clock.
#[derive(Debug, Clone)]
pub struct IngestState {
    /// Configured sources (endpoints and secrets), refreshed by the catalog.
    pub sources: Arc<dyn SourceCatalog>,
    /// Where envelopes go.
    pub queue: Arc<dyn EventQueue>,
    /// Time for timestamp tolerance and `received_at`.
    pub clock: Arc<dyn Clock>,
}

impl IngestState {
    /// This state with one metrics document per request going to `sink`
    /// ([`doorbell::metrics::EmfStdout`] in Lambda). Without it, [`app`] publishes nothing.
    pub fn with_metrics(self, sink: Arc<dyn MetricsSink>) -> MeteredState {
        MeteredState {
            state: self,
            metrics: sink,
        }
    }
}

/// An [`IngestState`] and the sink its metrics go to ([`IngestState::with_metrics`]); a plain
/// [`IngestState`] converts to one with [`NoMetrics`].
#[derive(Debug, Clone)]
pub struct MeteredState {
    /// Sources, queue and clock.
    pub state: IngestState,
    /// Where each request's metrics document goes.
    pub metrics: Arc<dyn MetricsSink>,
}

impl From<IngestState> for MeteredState {
    fn from(state: IngestState) -> Self {
        state.with_metrics(Arc::new(NoMetrics))
    }
}

impl std::ops::Deref for MeteredState {
    type Target = IngestState;
    fn deref(&self) -> &IngestState {
        &self.state
    }
}

/// What one request counts as.
enum Counted {
    /// Answered without enqueuing (an endpoint handshake).
    Answered,
    Enqueued,
    EnqueueFailed,
    /// Turned down, with the reason.
    Rejected(&'static str),
}

/// Publishes the request's metrics document. `source` is the configured source's name; `None`
/// when no configured source matched (counted under [`metrics::UNKNOWN_SOURCE`], never under
/// the name asked for, so requests cannot create metric series).
fn count(state: &MeteredState, source: Option<&str>, what: Counted) {
    let per_source: &[&[&str]] = &[&[metrics::SOURCE], &[]];
    let mut doc = MetricsDoc::new(state.clock.now_ms())
        .dimension(metrics::SOURCE, source.unwrap_or(metrics::UNKNOWN_SOURCE));
    if source.is_some() {
        doc = doc.put(per_source, metrics::RECEIVED, 1);
    }
    doc = match what {
        Counted::Answered => doc,
        Counted::Enqueued => doc.put(per_source, metrics::ENQUEUED, 1),
        Counted::EnqueueFailed => doc.put(per_source, metrics::ENQUEUE_FAILED, 1),
        Counted::Rejected(reason) => doc.dimension(metrics::REASON, reason).put(
            &[&[metrics::SOURCE, metrics::REASON], &[]],
            metrics::REJECTED,
            1,
        ),
    };
    state.metrics.emit(&doc);
}

/// The ingest HTTP app over an [`IngestState`] (no metrics) or a [`MeteredState`]. See the
/// crate docs for the contract.
pub fn app(state: impl Into<MeteredState>) -> Router {
    Router::new()
        .route("/webhooks/{source}", post(receive))
        .route("/{stage}/webhooks/{source}", post(receive))
        .with_state(state.into())
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// 503 with `Retry-After`: the provider should try again.
fn unavailable() -> Response {
    let mut r = reply(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"error": "queue unavailable"}),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
    r
}

fn source_name(req: &Request, path: &std::collections::HashMap<String, String>) -> Option<String> {
    // API Gateway's own path parameter wins over the path (which may carry a stage).
    req.path_parameters_ref()
        .and_then(|p| p.first("source"))
        .map(str::to_owned)
        .or_else(|| path.get("source").cloned())
}

async fn receive(
    State(state): State<MeteredState>,
    Path(path): Path<std::collections::HashMap<String, String>>,
    req: Request,
) -> Response {
    let Some(name) = source_name(&req, &path) else {
        count(&state, None, Counted::Rejected("unknown_source"));
        return reply(StatusCode::NOT_FOUND, json!({"error": "unknown source"}));
    };
    let sources = match state.sources.sources().await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(source = %name, outcome = "no_sources", error = %e, "rejected");
            return unavailable();
        }
    };
    let Some(source) = sources.get(&name) else {
        tracing::info!(source = %name, outcome = "unknown_source", "rejected");
        count(&state, None, Counted::Rejected("unknown_source"));
        return reply(StatusCode::NOT_FOUND, json!({"error": "unknown source"}));
    };
    let (parts, body) = req.into_parts();
    if parts.headers.contains_key(lambda::INVALID_BODY_HEADER) {
        tracing::warn!(source = %name, outcome = "invalid_base64_body", "rejected");
        count(
            &state,
            Some(&source.name),
            Counted::Rejected("invalid_base64_body"),
        );
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "body is not valid base64"}),
        );
    }
    match read_body(&parts.headers, body, source.max_body_bytes).await {
        Ok(bytes) => {
            ingest(
                &state,
                source,
                &parts.headers,
                parts.uri.query().unwrap_or(""),
                &bytes,
            )
            .await
        }
        Err(status) => {
            tracing::info!(source = %name, outcome = "body_rejected", status = status.as_u16(), "rejected");
            let (msg, reason) = match status {
                StatusCode::PAYLOAD_TOO_LARGE => ("payload too large", "too_large"),
                StatusCode::REQUEST_TIMEOUT => {
                    ("request body not received in time", "body_timeout")
                }
                _ => ("unreadable body", "unreadable_body"),
            };
            count(&state, Some(&source.name), Counted::Rejected(reason));
            reply(status, json!({"error": msg}))
        }
    }
}

async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<axum::body::Bytes, StatusCode> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(StatusCode::PAYLOAD_TOO_LARGE);
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            if c.is::<http_body_util::LengthLimitError>() {
                return StatusCode::PAYLOAD_TOO_LARGE;
            }
            // The local server's body deadline (`doorbell dev`).
            if c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            {
                return StatusCode::REQUEST_TIMEOUT;
            }
            cause = c.source();
        }
        StatusCode::BAD_REQUEST
    })
}

/// A FIFO `MessageDeduplicationId` (64 hex characters; SQS allows 128): SHA-256 over the
/// idempotency key and the body's digest.
fn fifo_deduplication_id(envelope: &Envelope) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(envelope.idempotency_key.as_bytes());
    h.update(b"\n");
    h.update(envelope.body_sha256.as_bytes());
    hex::encode(h.finalize())
}

/// Verifies and enqueues one delivery whose body has been read.
async fn ingest(
    state: &MeteredState,
    source: &SourceConfig,
    headers: &HeaderMap,
    query: &str,
    body: &[u8],
) -> Response {
    let now_ms = state.clock.now_ms();
    let verified = match verify_at(
        &WebhookRequest {
            headers,
            body,
            query,
        },
        source,
        now_ms.div_euclid(1000),
    ) {
        Ok(v) => v,
        Err(e) if e.is_authentic() => {
            tracing::warn!(source = %source.name, provider = %source.provider, outcome = "no_event_id", reason = %e, "rejected");
            count(state, Some(&source.name), Counted::Rejected("no_event_id"));
            return reply(StatusCode::BAD_REQUEST, json!({"error": "no event id"}));
        }
        Err(e) => {
            tracing::warn!(
                source = %source.name, provider = %source.provider, outcome = "signature_rejected",
                reason = e.reason(), detail = %e, metric = "SignatureRejected", "rejected"
            );
            count(state, Some(&source.name), Counted::Rejected(e.reason()));
            return reply(
                StatusCode::UNAUTHORIZED,
                json!({"error": "invalid signature"}),
            );
        }
    };
    if let Some(answer) = verified.reply {
        // An endpoint handshake (Slack's url_verification): answered, not enqueued.
        tracing::info!(source = %source.name, event_type = %verified.event_type, outcome = "answered", "handshake");
        count(state, Some(&source.name), Counted::Answered);
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            answer,
        )
            .into_response();
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let envelope = Envelope::new(source, verified, body, content_type, now_ms);
    let (group_id, deduplication_id) = if state.queue.is_fifo() {
        (
            Some(envelope.source.clone()),
            Some(fifo_deduplication_id(&envelope)),
        )
    } else {
        (None, None)
    };
    let message = OutgoingMessage {
        body: envelope.to_json(),
        attributes: vec![
            ("source", envelope.source.clone()),
            ("event_type", envelope.event_type.clone()),
        ],
        group_id,
        deduplication_id,
    };
    match state.queue.send(message).await {
        Ok(message_id) => {
            tracing::info!(
                source = %envelope.source, event_id = %envelope.event_id, event_type = %envelope.event_type,
                message_id = %message_id, outcome = "enqueued", "received"
            );
            count(state, Some(&source.name), Counted::Enqueued);
            reply(
                StatusCode::OK,
                json!({"received": true, "id": envelope.event_id}),
            )
        }
        Err(e @ QueueError::TooLarge { .. }) => {
            tracing::error!(source = %envelope.source, event_id = %envelope.event_id, outcome = "too_large", error = %e, "not enqueued");
            count(state, Some(&source.name), Counted::Rejected("too_large"));
            reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"error": "payload too large"}),
            )
        }
        Err(e) => {
            tracing::error!(
                source = %envelope.source, event_id = %envelope.event_id, outcome = "queue_unavailable",
                error = %e, metric = "EnqueueFailed", "not enqueued"
            );
            count(state, Some(&source.name), Counted::EnqueueFailed);
            unavailable()
        }
    }
}
