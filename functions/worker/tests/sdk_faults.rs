//! DynamoDB errors moto cannot produce (throttling), answered by a failing loopback endpoint
//! to the real `aws-sdk-dynamodb` client, through
//! [`doorbell::store::DynamoDbEventStore`] and the worker: a failed claim runs nothing, a failed
//! completion is reported (retried later) and never counted as processed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_lambda_events::event::sqs::SqsEvent;
use doorbell::clock::ManualClock;
use doorbell::handler::{Event, Handler, HandlerOutcome, HandlerRegistry};
use doorbell::store::DynamoDbEventStore;
use doorbell::testing::{self, FailingEndpoint, Reply};
use doorbell::verify::Verified;
use doorbell::{Envelope, Provider, Secret, SourceConfig};
use doorbell_worker::{RecordOutcome, Worker, WorkerConfig};

const NOW_MS: i64 = 1_700_000_000_000;

struct Counting(AtomicUsize);

#[async_trait::async_trait]
impl Handler for Counting {
    async fn handle(&self, _e: &Event<'_>) -> HandlerOutcome {
        self.0.fetch_add(1, Ordering::SeqCst);
        HandlerOutcome::Ok
    }
}

fn throttled() -> Reply {
    Reply::json_error(
        400,
        "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
        "The level of configured provisioned throughput for the table was exceeded.",
    )
}

fn claimed() -> Reply {
    Reply::json(
        200,
        serde_json::json!({"Attributes": {"attempts": {"N": "1"}}}),
    )
}

fn written() -> Reply {
    Reply::json(200, serde_json::json!({}))
}

fn event() -> SqsEvent {
    let source = SourceConfig::new("stripe", Provider::Stripe, vec![Secret::new("s")]);
    let verified = Verified {
        event_id: "evt_ddb_fault".into(),
        event_type: "payment_intent.succeeded".into(),
        occurred_at_ms: None,
        dedupe: Default::default(),
        reply: None,
        headers: vec![],
    };
    let env = Envelope::new(&source, verified, b"{}", Some("application/json"), NOW_MS);
    serde_json::from_value(serde_json::json!({"Records": [{
        "messageId": "m-1", "receiptHandle": "rh-1", "body": env.to_json(),
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1700000000000"},
        "messageAttributes": {}, "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:events", "awsRegion": "us-east-1"
    }]}))
    .unwrap()
}

async fn worker(endpoint: &FailingEndpoint, handler: Arc<Counting>) -> Worker {
    let client = aws_sdk_dynamodb::Client::new(&testing::config_for(endpoint.url()).await);
    let mut registry = HandlerRegistry::new();
    registry.register("stripe", "payment_intent.succeeded", handler);
    Worker::new(
        Arc::new(DynamoDbEventStore::new(client, "webhook-events")),
        registry,
        Arc::new(ManualClock::new(NOW_MS)),
        WorkerConfig::default(),
    )
}

#[tokio::test]
async fn throttled_claim_runs_nothing_and_is_reported() {
    let endpoint = FailingEndpoint::start(vec![], throttled()).await;
    let handler = Arc::new(Counting(AtomicUsize::new(0)));
    let (response, reports) = worker(&endpoint, handler.clone())
        .await
        .handle_detailed(event(), None)
        .await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(reports[0].outcome.name(), "store_failed");
    assert_eq!(handler.0.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn throttled_completion_is_retried_then_reported_never_processed() {
    // The claim succeeds; every completion write is throttled.
    let endpoint = FailingEndpoint::start(vec![claimed()], throttled()).await;
    let handler = Arc::new(Counting(AtomicUsize::new(0)));
    let (response, reports) = worker(&endpoint, handler.clone())
        .await
        .handle_detailed(event(), None)
        .await;
    assert_eq!(response.batch_item_failures.len(), 1, "reported for retry");
    assert!(matches!(reports[0].outcome, RecordOutcome::StoreFailed(_)));
    assert_eq!(handler.0.load(Ordering::SeqCst), 1);
    assert_eq!(
        endpoint.calls(),
        5,
        "one claim, then the completion tried four times"
    );
}

#[tokio::test]
async fn completion_throttled_once_is_recorded_by_the_workers_retry() {
    let endpoint = FailingEndpoint::start(vec![claimed(), throttled()], written()).await;
    let handler = Arc::new(Counting(AtomicUsize::new(0)));
    let (response, reports) = worker(&endpoint, handler.clone())
        .await
        .handle_detailed(event(), None)
        .await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(reports[0].outcome, RecordOutcome::Processed);
    assert_eq!(endpoint.calls(), 3);
}

#[tokio::test]
async fn a_whole_batch_failing_is_reported_record_by_record_not_as_a_function_error() {
    let endpoint = FailingEndpoint::start(vec![], throttled()).await;
    let handler = Arc::new(Counting(AtomicUsize::new(0)));
    let mut batch = event();
    let template = batch.records[0].clone();
    batch.records = (1..=3)
        .map(|n| {
            let mut r = template.clone();
            r.message_id = Some(format!("m-{n}"));
            r.body = r
                .body
                .map(|b| b.replace("evt_ddb_fault", &format!("evt_ddb_fault_{n}")));
            r
        })
        .collect();
    let response = worker(&endpoint, handler.clone())
        .await
        .handle(batch, None)
        .await;
    let mut ids: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    ids.sort();
    assert_eq!(ids, ["m-1", "m-2", "m-3"]);
    assert_eq!(handler.0.load(Ordering::SeqCst), 0);
}
