//! `doorbell sign` and `doorbell invoke`: the sample events with the real function code.
//!
//! `sign` re-signs an ingest event (API Gateway v1/v2 or function URL) for its source with the
//! configured secret at the current time, so it verifies now — for example with
//! `sam local invoke IngestFunction -e <(doorbell sign events/ingest-stripe-http-api.json)`.
//! `invoke ingest` runs the event through the same Lambda adapter and app as the deployed
//! function, with an in-process queue, and prints the Lambda response, with the status and,
//! for a refused request, the reason the app logged (`401 Unauthorized: bad_signature (no
//! signature matches)`); `invoke worker` runs an SQS event through the worker with a SQLite
//! event store and prints the batch response.

use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use base64::Engine;
use doorbell::catalog::StaticCatalog;
use doorbell::clock::{Clock, ManualClock};
use doorbell::queue::{MemoryQueue, MemoryQueueConfig};
use doorbell::store::SqliteEventStore;
use doorbell::verify::{generic, github, paddle, shopify, slack, square, standard, stripe, twilio};
use doorbell::{Provider, Sources};
use doorbell_ingest::{IngestState, app, lambda};
use doorbell_worker::{Worker, WorkerConfig, handlers};
use lambda_http::request::LambdaRequest;
use lambda_http::{Context as LambdaContext, LambdaEvent, Service};
use serde_json::Value;
use tracing::Dispatch;
use tracing::instrument::WithSubscriber;
use tracing_subscriber::layer::{Context as LayerContext, Layer, SubscriberExt};

/// The source an ingest event is for: `pathParameters.source`, else the last path segment.
pub fn event_source(event: &Value) -> Option<String> {
    if let Some(s) = event["pathParameters"]["source"].as_str() {
        return Some(s.to_owned());
    }
    let path = event["rawPath"]
        .as_str()
        .or_else(|| event["path"].as_str())?;
    path.rsplit('/').find(|s| !s.is_empty()).map(str::to_owned)
}

/// The raw body bytes of an ingest event (base64 undone when flagged).
///
/// # Errors
/// When the body claims base64 and is not.
pub fn event_body(event: &Value) -> anyhow::Result<Vec<u8>> {
    let body = event["body"].as_str().unwrap_or("");
    if event["isBase64Encoded"].as_bool().unwrap_or(false) {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .context("the body is flagged base64 but is not base64")
    } else {
        Ok(body.as_bytes().to_vec())
    }
}

fn header(event: &Value, name: &str) -> Option<String> {
    event["headers"]
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
        .map(str::to_owned)
}

fn set_header(event: &mut Value, name: &str, value: &str) {
    for key in ["headers", "multiValueHeaders"] {
        let Some(map) = event.get_mut(key).and_then(Value::as_object_mut) else {
            continue;
        };
        map.retain(|k, _| !k.eq_ignore_ascii_case(name));
        let v = if key == "headers" {
            Value::String(value.into())
        } else {
            Value::Array(vec![Value::String(value.into())])
        };
        map.insert(name.to_owned(), v);
    }
    if event.get("headers").is_none_or(Value::is_null) {
        event["headers"] = serde_json::json!({ name: value });
    }
}

/// Re-signs `event` for its source with the source's first secret at `now_s` (epoch seconds).
///
/// # Errors
/// Unknown source, or an undecodable body.
pub fn sign_event(event: &mut Value, sources: &Sources, now_s: i64) -> anyhow::Result<()> {
    let name = event_source(event)
        .context("cannot tell the source: no pathParameters.source and no path")?;
    let source = sources
        .get(&name)
        .with_context(|| format!("source {name:?} is not configured"))?;
    let secret = &source.secrets[0];
    let body = event_body(event)?;
    match source.provider {
        Provider::Stripe => set_header(
            event,
            stripe::SIGNATURE_HEADER,
            &stripe::sign(secret, now_s, &body),
        ),
        Provider::Github => set_header(
            event,
            github::SIGNATURE_HEADER,
            &github::sign(secret, &body),
        ),
        Provider::Hmac => {
            let options = source
                .hmac
                .as_ref()
                .context("the source has no hmac settings")?;
            let ts = options.timestamp_header.as_ref().map(|h| {
                set_header(event, h, &now_s.to_string());
                now_s
            });
            set_header(
                event,
                &options.header,
                &generic::sign(options, secret, ts, &body),
            );
        }
        Provider::Paddle => set_header(
            event,
            paddle::SIGNATURE_HEADER,
            &paddle::sign(secret, now_s, &body),
        ),
        Provider::Square => {
            let url = source.url.as_deref().unwrap_or_default();
            set_header(
                event,
                square::SIGNATURE_HEADER,
                &square::sign(secret, url, &body),
            );
        }
        Provider::Twilio => {
            let query = event["rawQueryString"].as_str().unwrap_or("").to_owned();
            let url = twilio::full_url(source.url.as_deref().unwrap_or_default(), &query);
            set_header(
                event,
                twilio::SIGNATURE_HEADER,
                &twilio::sign(secret, &url, &body),
            );
        }
        Provider::Shopify => set_header(
            event,
            shopify::SIGNATURE_HEADER,
            &shopify::sign(secret, &body),
        ),
        Provider::Slack => {
            set_header(event, slack::TIMESTAMP_HEADER, &now_s.to_string());
            set_header(
                event,
                slack::SIGNATURE_HEADER,
                &slack::sign(secret, now_s, &body),
            );
        }
        Provider::Standard => {
            let id = header(event, "webhook-id")
                .or_else(|| header(event, "svix-id"))
                .context("the event has no webhook-id header")?;
            let sig = standard::sign(secret, &id, now_s, &body)
                .context("the source's secret is not base64 after whsec_")?;
            let prefix = if header(event, "webhook-id").is_some() {
                "webhook"
            } else {
                "svix"
            };
            set_header(event, &format!("{prefix}-timestamp"), &now_s.to_string());
            set_header(event, &format!("{prefix}-signature"), &sig);
        }
    }
    Ok(())
}

/// Runs an ingest event through the Lambda adapter and app at `now_ms` (epoch ms). Returns
/// the Lambda response and the bodies of the messages enqueued.
///
/// # Errors
/// When the event is not an API Gateway / function URL event.
pub async fn invoke_ingest(
    event: Value,
    sources: Sources,
    now_ms: i64,
) -> anyhow::Result<(Value, Vec<String>)> {
    let run = run_ingest(event, sources, now_ms).await?;
    Ok((run.response, run.enqueued))
}

/// Why the ingest app refused a request, as it logged it (the `rejected` log line): its
/// `outcome`, and for a signature check the `reason` code and `detail`. These name headers and
/// checks, never a secret or a signature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rejection {
    /// `signature_rejected`, `no_event_id`, `unknown_source`, `body_rejected`, …
    pub outcome: String,
    /// The reason code (`bad_signature`, `missing_header`, …), or for `no_event_id` the text.
    pub reason: Option<String>,
    /// The reason in words (`no signature matches`, `missing header stripe-signature`).
    pub detail: Option<String>,
}

impl std::fmt::Display for Rejection {
    /// `bad_signature (no signature matches)`, `no_event_id (verified, but …)`,
    /// `unknown_source`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (code, words) = match (&self.reason, &self.detail) {
            (Some(reason), Some(detail)) => (reason.as_str(), Some(detail)),
            (Some(reason), None) => (self.outcome.as_str(), Some(reason)),
            (None, _) => (self.outcome.as_str(), None),
        };
        match words {
            Some(w) => write!(f, "{code} ({w})"),
            None => f.write_str(code),
        }
    }
}

/// What one `invoke ingest` did.
#[derive(Debug, Clone)]
pub struct IngestRun {
    /// The Lambda response (`statusCode`, `headers`, `body`).
    pub response: Value,
    /// The bodies of the messages enqueued.
    pub enqueued: Vec<String>,
    /// Why the app refused the request, when it did.
    pub rejection: Option<Rejection>,
}

impl IngestRun {
    /// The response's status with its reason phrase and, when the app refused the request,
    /// why: `401 Unauthorized: bad_signature (no signature matches)`, `200 OK`.
    pub fn status_line(&self) -> String {
        let code = self.response["statusCode"].as_u64().unwrap_or_default();
        let phrase = u16::try_from(code)
            .ok()
            .and_then(|c| lambda_http::http::StatusCode::from_u16(c).ok())
            .and_then(|c| c.canonical_reason())
            .unwrap_or("");
        match &self.rejection {
            Some(r) => format!("{code} {phrase}: {r}"),
            None => format!("{code} {phrase}"),
        }
    }
}

/// A tracing layer that keeps the ingest app's `rejected` event and passes every event on to
/// the dispatcher that was in place (the command's own log output).
struct CaptureRejection {
    seen: Arc<Mutex<Option<Rejection>>>,
    forward: Dispatch,
}

#[derive(Default)]
struct RejectionFields {
    message: String,
    rejection: Rejection,
}

impl tracing::field::Visit for RejectionFields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.record_text(field.name(), value.to_owned());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.record_text(field.name(), format!("{value:?}"));
    }
}

impl RejectionFields {
    fn record_text(&mut self, name: &str, text: String) {
        match name {
            "message" => self.message = text,
            "outcome" => self.rejection.outcome = text,
            "reason" => self.rejection.reason = Some(text),
            "detail" => self.rejection.detail = Some(text),
            _ => {}
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for CaptureRejection {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: LayerContext<'_, S>) {
        let mut fields = RejectionFields::default();
        event.record(&mut fields);
        if fields.message == "rejected" && !fields.rejection.outcome.is_empty() {
            *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(fields.rejection);
        }
        if self.forward.enabled(event.metadata()) {
            self.forward.event(event);
        }
    }
}

/// [`invoke_ingest`], also returning why the app refused the request, read from its log.
///
/// # Errors
/// When the event is not an API Gateway / function URL event.
pub async fn run_ingest(event: Value, sources: Sources, now_ms: i64) -> anyhow::Result<IngestRun> {
    let seen = Arc::new(Mutex::new(None));
    let capture = CaptureRejection {
        seen: seen.clone(),
        forward: tracing::dispatcher::get_default(Dispatch::clone),
    };
    let (response, enqueued) = call_ingest(event, sources, now_ms)
        .with_subscriber(tracing_subscriber::registry().with(capture))
        .await?;
    let rejection = seen.lock().unwrap_or_else(|e| e.into_inner()).take();
    Ok(IngestRun {
        response,
        enqueued,
        rejection,
    })
}

async fn call_ingest(
    event: Value,
    sources: Sources,
    now_ms: i64,
) -> anyhow::Result<(Value, Vec<String>)> {
    let req: LambdaRequest =
        serde_json::from_value(event).context("not an API Gateway or function URL event")?;
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(now_ms));
    let queue = Arc::new(MemoryQueue::new(
        "doorbell-invoke",
        MemoryQueueConfig::default(),
        clock.clone(),
    ));
    let state = IngestState {
        sources: Arc::new(StaticCatalog::new(sources)),
        queue: queue.clone(),
        clock,
    };
    let mut svc = lambda::service(app(state));
    let resp = match svc
        .call(LambdaEvent::new(req, LambdaContext::default()))
        .await
    {
        Ok(r) => r,
        Err(never) => match never {},
    };
    Ok((serde_json::to_value(resp)?, queue.peek_bodies()))
}

/// Runs an SQS event through the worker (shipped handlers, `store`) at `now_ms`; returns the
/// batch response.
///
/// # Errors
/// When the event is not an SQS event.
pub async fn invoke_worker(
    event: Value,
    sources: &Sources,
    store: Arc<SqliteEventStore>,
    now_ms: i64,
) -> anyhow::Result<Value> {
    let event: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_value(event).context("not an SQS event")?;
    if event.records.is_empty() {
        bail!("the SQS event has no records");
    }
    let registry = handlers::default_registry(
        sources.iter().map(|s| (s.name.as_str(), s.provider)),
        store.clone(),
    );
    let worker = Worker::new(
        store,
        registry,
        Arc::new(ManualClock::new(now_ms)),
        WorkerConfig::default(),
    );
    Ok(serde_json::to_value(
        worker.handle(event, Some(now_ms + 30_000)).await,
    )?)
}
