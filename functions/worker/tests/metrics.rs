//! The worker's metrics: one Embedded Metric Format document per record, checked against the
//! specification's rules (`doorbell::metrics::check_document`) and against what each outcome
//! must count, with no event id, message id or idempotency key anywhere in it.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use doorbell::clock::{Clock, ManualClock};
use doorbell::handler::{Event, Handler, HandlerOutcome, HandlerRegistry};
use doorbell::metrics::{MemoryMetrics, check_document};
use doorbell::queue::{MemoryQueue, MemoryQueueConfig};
use doorbell::store::SqliteEventStore;
use doorbell::verify::Verified;
use doorbell::{Envelope, Provider, Secret, SourceConfig};
use doorbell_worker::{Worker, WorkerConfig};
use serde_json::{Value, json};

/// When ingest received every envelope here.
const RECEIVED_MS: i64 = 1_700_000_000_000;
/// When the worker starts on them.
const START_MS: i64 = RECEIVED_MS + 1_000;
/// How long each handler takes (it moves the clock).
const HANDLER_MS: i64 = 250;

/// A handler that takes [`HANDLER_MS`] on the test clock and answers `outcome`.
struct Takes {
    clock: ManualClock,
    outcome: fn() -> HandlerOutcome,
}

#[async_trait::async_trait]
impl Handler for Takes {
    async fn handle(&self, _event: &Event<'_>) -> HandlerOutcome {
        self.clock.advance_ms(HANDLER_MS);
        (self.outcome)()
    }
}

fn envelope(event_id: &str, event_type: &str, body: &str) -> String {
    let source = SourceConfig::new("shop", Provider::Stripe, vec![Secret::new("s")]);
    let verified = Verified {
        event_id: event_id.into(),
        event_type: event_type.into(),
        occurred_at_ms: None,
        dedupe: Default::default(),
        reply: None,
        headers: vec![],
    };
    Envelope::new(
        &source,
        verified,
        body.as_bytes(),
        Some("application/json"),
        RECEIVED_MS,
    )
    .to_json()
}

fn sqs_event(records: &[(&str, String)]) -> SqsEvent {
    let records: Vec<Value> = records
        .iter()
        .map(|(id, body)| {
            json!({
                "messageId": id, "receiptHandle": format!("rh-{id}"), "body": body,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1700000000000"},
                "messageAttributes": {}, "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:webhooks", "awsRegion": "us-east-1"
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

struct Setup {
    clock: ManualClock,
    sink: Arc<MemoryMetrics>,
    worker: Worker,
}

/// A worker with handlers for `ok`, `retry` and `reject` (each taking [`HANDLER_MS`]), none
/// for `unhandled`, a dead-letter queue, and its metrics in memory.
fn setup() -> Setup {
    let clock = ManualClock::new(START_MS);
    let mut registry = HandlerRegistry::new();
    let takes = |outcome: fn() -> HandlerOutcome| {
        Arc::new(Takes {
            clock: clock.clone(),
            outcome,
        })
    };
    registry.register("shop", "ok", takes(|| HandlerOutcome::Ok));
    registry.register(
        "shop",
        "retry",
        takes(|| HandlerOutcome::Retry("downstream 503".into())),
    );
    registry.register(
        "shop",
        "reject",
        takes(|| HandlerOutcome::Reject("unknown customer".into())),
    );
    let sink = Arc::new(MemoryMetrics::new());
    let dlq = Arc::new(MemoryQueue::new(
        "webhooks-dlq",
        MemoryQueueConfig::default(),
        Arc::new(clock.clone()),
    ));
    let worker = Worker::new(
        Arc::new(SqliteEventStore::in_memory().unwrap()),
        registry,
        Arc::new(clock.clone()),
        WorkerConfig::default(),
    )
    .with_dead_letter_queue(dlq)
    .with_metrics(sink.clone());
    Setup {
        clock,
        sink,
        worker,
    }
}

/// What one document says: its dimension values and metric name → (value, unit).
#[derive(Debug, PartialEq)]
struct Counted {
    source: String,
    outcome: String,
    metrics: BTreeMap<String, (i64, String)>,
}

/// Checks every document against the spec and Doorbell's rules, and reads each back.
fn counted(sink: &MemoryMetrics, forbidden: &[&str]) -> Vec<Counted> {
    let docs = sink.documents();
    docs.iter()
        .map(|doc| {
            check_document(doc).unwrap_or_else(|e| panic!("{e}: {doc}"));
            assert!(doc["_aws"]["Timestamp"].is_i64(), "{doc}");
            let text = doc.to_string();
            for needle in forbidden {
                assert!(!text.contains(needle), "{needle} in {text}");
            }
            let mut metrics = BTreeMap::new();
            for d in doc["_aws"]["CloudWatchMetrics"].as_array().unwrap() {
                assert_eq!(d["Namespace"], "Doorbell");
                assert_eq!(d["Dimensions"], json!([["source", "outcome"], []]), "{doc}");
                for m in d["Metrics"].as_array().unwrap() {
                    let name = m["Name"].as_str().unwrap();
                    let value = doc[name].as_i64().unwrap();
                    metrics.insert(
                        name.to_owned(),
                        (value, m["Unit"].as_str().unwrap().to_owned()),
                    );
                }
            }
            Counted {
                source: doc["source"].as_str().unwrap().to_owned(),
                outcome: doc["outcome"].as_str().unwrap().to_owned(),
                metrics,
            }
        })
        .collect()
}

fn count(name: &str) -> (String, (i64, String)) {
    (name.to_owned(), (1, "Count".to_owned()))
}

fn ms(name: &str, value: i64) -> (String, (i64, String)) {
    (name.to_owned(), (value, "Milliseconds".to_owned()))
}

fn expect(source: &str, outcome: &str, metrics: &[(String, (i64, String))]) -> Counted {
    Counted {
        source: source.to_owned(),
        outcome: outcome.to_owned(),
        metrics: metrics.iter().cloned().collect(),
    }
}

#[tokio::test]
async fn each_record_publishes_one_document_for_its_outcome() {
    let s = setup();
    let event = sqs_event(&[
        ("m-ok", envelope("evt_ok", "ok", "{}")),
        ("m-ign", envelope("evt_ign", "unhandled", "{}")),
        ("m-retry", envelope("evt_retry", "retry", "{}")),
        ("m-rej", envelope("evt_rej", "reject", "{}")),
        ("m-bad", "not an envelope".into()),
    ]);
    let (response, _) = s.worker.handle_detailed(event, None).await;
    assert_eq!(
        response.batch_item_failures.len(),
        2,
        "retry and bad are reported"
    );
    // Three handlers ran, one after another on the one clock.
    let done_ms = START_MS + 3 * HANDLER_MS;
    let lag = done_ms - RECEIVED_MS;
    let forbidden = [
        "evt_", "m-ok", "m-ign", "m-retry", "m-rej", "m-bad", "shop#", "rh-",
    ];
    let docs = counted(&s.sink, &forbidden);
    assert_eq!(
        docs,
        vec![
            expect(
                "shop",
                "processed",
                &[
                    count("Processed"),
                    ms("HandlerDuration", HANDLER_MS),
                    ms("QueueLag", lag)
                ]
            ),
            expect("shop", "ignored", &[count("Ignored"), ms("QueueLag", lag)]),
            expect(
                "shop",
                "handler_failed",
                &[count("Failed"), ms("HandlerDuration", HANDLER_MS)]
            ),
            expect(
                "shop",
                "rejected",
                &[
                    count("DeadLettered"),
                    ms("HandlerDuration", HANDLER_MS),
                    ms("QueueLag", lag)
                ]
            ),
            expect("unknown", "bad_envelope", &[count("Failed")]),
        ]
    );
    assert_eq!(s.clock.now_ms(), done_ms);
}

#[tokio::test]
async fn a_duplicate_counts_duplicate_and_no_handler_time() {
    let s = setup();
    let body = envelope("evt_dup", "ok", "{}");
    s.worker
        .handle(sqs_event(&[("m-1", body.clone())]), None)
        .await;
    s.sink.clear();
    s.clock.advance_ms(60_000);
    s.worker.handle(sqs_event(&[("m-2", body)]), None).await;
    let lag = START_MS + HANDLER_MS + 60_000 - RECEIVED_MS;
    assert_eq!(
        counted(&s.sink, &["evt_dup", "m-2"]),
        vec![expect(
            "shop",
            "duplicate",
            &[count("Duplicate"), ms("QueueLag", lag)]
        )]
    );
}

#[tokio::test]
async fn a_conflict_counts_conflict_and_dead_lettered() {
    let s = setup();
    s.worker
        .handle(
            sqs_event(&[("m-1", envelope("evt_c", "retry", r#"{"a":1}"#))]),
            None,
        )
        .await;
    s.sink.clear();
    s.worker
        .handle(
            sqs_event(&[("m-2", envelope("evt_c", "retry", r#"{"a":2}"#))]),
            None,
        )
        .await;
    let lag = START_MS + HANDLER_MS - RECEIVED_MS;
    assert_eq!(
        counted(&s.sink, &["evt_c", "m-2", "sha256"]),
        vec![expect(
            "shop",
            "conflict",
            &[
                count("Conflict"),
                count("DeadLettered"),
                ms("QueueLag", lag)
            ]
        )]
    );
}

#[tokio::test]
async fn without_a_sink_nothing_is_published() {
    let s = setup();
    let quiet = s
        .worker
        .clone()
        .with_metrics(Arc::new(doorbell::metrics::NoMetrics));
    quiet
        .handle(sqs_event(&[("m-1", envelope("evt_q", "ok", "{}"))]), None)
        .await;
    assert!(s.sink.documents().is_empty());
}
