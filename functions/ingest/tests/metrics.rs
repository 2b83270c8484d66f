//! Ingest's metrics: one Embedded Metric Format document per request, checked against the
//! specification's rules (`doorbell::metrics::check_document`) and against what each case must
//! count, with no event id anywhere in it and no series for a source name nobody configured.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use doorbell::catalog::StaticCatalog;
use doorbell::clock::ManualClock;
use doorbell::metrics::{MemoryMetrics, check_document};
use doorbell::queue::{EventQueue, MemoryQueue, MemoryQueueConfig, SqsQueue};
use doorbell::testing::{self, FailingEndpoint, Reply};
use doorbell::verify::stripe;
use doorbell::{Secret, Sources};
use doorbell_ingest::{IngestState, app};
use serde_json::{Value, json};
use tower::ServiceExt;

const NOW_MS: i64 = 1_700_000_000_000;
const SECRET: &str = "whsec_metrics_test_secret";
const EVENT_ID: &str = "evt_metrics_0001";

fn body() -> String {
    format!(r#"{{"id":"{EVENT_ID}","object":"event","type":"invoice.paid","created":1700000000}}"#)
}

fn state(queue: Arc<dyn EventQueue>) -> IngestState {
    let sources = Sources::from_json(
        &json!({"sources": [{"name": "stripe", "provider": "stripe", "secrets": [SECRET]}]})
            .to_string(),
    )
    .unwrap();
    IngestState {
        sources: Arc::new(StaticCatalog::new(sources)),
        queue,
        clock: Arc::new(ManualClock::new(NOW_MS)),
    }
}

fn memory_queue(max_message_bytes: usize) -> Arc<MemoryQueue> {
    Arc::new(MemoryQueue::new(
        "events",
        MemoryQueueConfig {
            max_message_bytes,
            ..Default::default()
        },
        Arc::new(ManualClock::new(NOW_MS)),
    ))
}

/// Posts `body` to `path` with `signature` through the app with `sink`; returns the status.
async fn post(
    state: &IngestState,
    sink: &Arc<MemoryMetrics>,
    path: &str,
    signature: Option<String>,
    body: String,
) -> u16 {
    let mut req = Request::post(path).header("content-type", "application/json");
    if let Some(sig) = signature {
        req = req.header(stripe::SIGNATURE_HEADER, sig);
    }
    let app = app(state.clone().with_metrics(sink.clone()));
    let resp = app
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    resp.status().as_u16()
}

fn signed(body: &str) -> Option<String> {
    Some(stripe::sign(
        &Secret::new(SECRET),
        NOW_MS / 1000,
        body.as_bytes(),
    ))
}

/// The one document `sink` holds, checked against the spec and Doorbell's own rules.
fn only_document(sink: &MemoryMetrics) -> Value {
    let docs = sink.documents();
    assert_eq!(docs.len(), 1, "one document per request: {docs:?}");
    let doc = docs.into_iter().next().unwrap();
    check_document(&doc).unwrap_or_else(|e| panic!("{e}: {doc}"));
    assert_eq!(doc["_aws"]["Timestamp"], json!(NOW_MS));
    for d in doc["_aws"]["CloudWatchMetrics"].as_array().unwrap() {
        assert_eq!(d["Namespace"], "Doorbell");
        let sets = d["Dimensions"].as_array().unwrap();
        assert!(
            sets.contains(&json!([])),
            "every metric has a total across sources: {doc}"
        );
    }
    let text = doc.to_string();
    assert!(!text.contains(EVENT_ID), "no event id in a metric: {text}");
    doc
}

/// Metric name → (value, dimension sets it is published under).
fn metrics(doc: &Value) -> std::collections::BTreeMap<String, (i64, Value)> {
    let mut out = std::collections::BTreeMap::new();
    for d in doc["_aws"]["CloudWatchMetrics"].as_array().unwrap() {
        for m in d["Metrics"].as_array().unwrap() {
            let name = m["Name"].as_str().unwrap().to_owned();
            assert_eq!(m["Unit"], "Count", "{name}");
            let value = doc[name.as_str()].as_i64().unwrap();
            assert!(
                out.insert(name.clone(), (value, d["Dimensions"].clone()))
                    .is_none(),
                "{name} twice"
            );
        }
    }
    out
}

#[tokio::test]
async fn an_enqueued_delivery_counts_received_and_enqueued_per_source() {
    let sink = Arc::new(MemoryMetrics::new());
    let st = state(memory_queue(262_144));
    let body = body();
    assert_eq!(
        post(&st, &sink, "/webhooks/stripe", signed(&body), body).await,
        200
    );
    let doc = only_document(&sink);
    let per_source = json!([["source"], []]);
    assert_eq!(
        metrics(&doc),
        [
            ("Enqueued".to_owned(), (1, per_source.clone())),
            ("Received".to_owned(), (1, per_source)),
        ]
        .into()
    );
    assert_eq!(doc["source"], "stripe");
    assert!(doc.get("reason").is_none());
}

#[tokio::test]
async fn a_bad_signature_counts_rejected_with_the_logged_reason() {
    let sink = Arc::new(MemoryMetrics::new());
    let st = state(memory_queue(262_144));
    let forged = "t=1700000000,v1=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    assert_eq!(
        post(&st, &sink, "/webhooks/stripe", Some(forged.into()), body()).await,
        401
    );
    let doc = only_document(&sink);
    assert_eq!(
        metrics(&doc),
        [
            ("Received".to_owned(), (1, json!([["source"], []]))),
            (
                "Rejected".to_owned(),
                (1, json!([["source", "reason"], []]))
            ),
        ]
        .into()
    );
    assert_eq!(
        (&doc["source"], &doc["reason"]),
        (&json!("stripe"), &json!("bad_signature"))
    );
}

#[tokio::test]
async fn a_stale_timestamp_and_a_missing_header_are_told_apart() {
    let sink = Arc::new(MemoryMetrics::new());
    let st = state(memory_queue(262_144));
    let body = body();
    let stale = stripe::sign(&Secret::new(SECRET), NOW_MS / 1000 - 3600, body.as_bytes());
    post(&st, &sink, "/webhooks/stripe", Some(stale), body.clone()).await;
    let reason = only_document(&sink)["reason"].clone();
    assert_eq!(reason, "timestamp_outside_tolerance");
    sink.clear();
    post(&st, &sink, "/webhooks/stripe", None, body).await;
    assert_eq!(only_document(&sink)["reason"], "missing_header");
}

#[tokio::test]
async fn a_failed_send_counts_enqueue_failed() {
    let endpoint = FailingEndpoint::start(
        vec![],
        Reply::json_error(500, "com.amazonaws.sqs#InternalError", "oops"),
    )
    .await;
    let config = testing::config_for(endpoint.url()).await;
    let queue = Arc::new(SqsQueue::new(
        aws_sdk_sqs::Client::new(&config),
        format!("{}/123456789012/events", endpoint.url()),
    ));
    let sink = Arc::new(MemoryMetrics::new());
    let st = state(queue);
    let body = body();
    assert_eq!(
        post(&st, &sink, "/webhooks/stripe", signed(&body), body).await,
        503
    );
    let doc = only_document(&sink);
    let per_source = json!([["source"], []]);
    assert_eq!(
        metrics(&doc),
        [
            ("EnqueueFailed".to_owned(), (1, per_source.clone())),
            ("Received".to_owned(), (1, per_source)),
        ]
        .into()
    );
}

#[tokio::test]
async fn an_envelope_over_the_queue_limit_is_rejected_as_too_large() {
    let sink = Arc::new(MemoryMetrics::new());
    let st = state(memory_queue(64));
    let body = body();
    assert_eq!(
        post(&st, &sink, "/webhooks/stripe", signed(&body), body).await,
        413
    );
    let doc = only_document(&sink);
    assert_eq!(doc["reason"], "too_large");
    assert_eq!(doc["Rejected"], 1);
    assert!(doc.get("Enqueued").is_none() && doc.get("EnqueueFailed").is_none());
}

#[tokio::test]
async fn an_unknown_source_is_counted_under_unknown_never_under_the_name_asked_for() {
    let sink = Arc::new(MemoryMetrics::new());
    let st = state(memory_queue(262_144));
    for name in ["scanner-probe-1", "wp-login.php", "%22%0a"] {
        sink.clear();
        let status = post(&st, &sink, &format!("/webhooks/{name}"), None, body()).await;
        assert_eq!(status, 404);
        let doc = only_document(&sink);
        assert_eq!(
            metrics(&doc),
            [(
                "Rejected".to_owned(),
                (1, json!([["source", "reason"], []]))
            )]
            .into(),
            "not Received: no configured source was asked for"
        );
        assert_eq!(
            (&doc["source"], &doc["reason"]),
            (&json!("unknown"), &json!("unknown_source"))
        );
        assert!(!doc.to_string().contains("scanner") && !doc.to_string().contains("wp-login"));
    }
}

#[tokio::test]
async fn without_a_sink_nothing_is_published_and_the_answer_is_the_same() {
    let st = state(memory_queue(262_144));
    let body = body();
    let req = Request::post("/webhooks/stripe")
        .header(stripe::SIGNATURE_HEADER, signed(&body).unwrap())
        .body(Body::from(body))
        .unwrap();
    assert_eq!(app(st).oneshot(req).await.unwrap().status(), 200);
}
