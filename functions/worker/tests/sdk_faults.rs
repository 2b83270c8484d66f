//! DynamoDB errors moto cannot produce (throttling), injected into the real
//! `aws-sdk-dynamodb` client with `aws-smithy-mocks`, through
//! [`doorbell::store::DynamoDbEventStore`] and the worker: a failed claim runs nothing, a failed
//! completion is reported (retried later) and never counted as processed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::types::error::ProvisionedThroughputExceededException;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use doorbell::clock::ManualClock;
use doorbell::handler::{Event, Handler, HandlerOutcome, HandlerRegistry};
use doorbell::store::DynamoDbEventStore;
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

fn throttled() -> UpdateItemError {
    UpdateItemError::ProvisionedThroughputExceededException(
        ProvisionedThroughputExceededException::builder()
            .message("Rate of requests exceeds the allowed throughput")
            .build(),
    )
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

fn worker(client: Client, handler: Arc<Counting>) -> Worker {
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
    let update = mock!(Client::update_item)
        .sequence()
        .error(throttled)
        .repeatedly()
        .build();
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&update]);
    let handler = Arc::new(Counting(AtomicUsize::new(0)));
    let (response, reports) = worker(client, handler.clone())
        .handle_detailed(event(), None)
        .await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(reports[0].outcome.name(), "store_failed");
    assert_eq!(handler.0.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn throttled_completion_is_retried_then_reported_never_processed() {
    // The claim succeeds; every completion write is throttled.
    let update = mock!(Client::update_item)
        .sequence()
        .output(|| {
            UpdateItemOutput::builder()
                .attributes("attempts", AttributeValue::N("1".into()))
                .build()
        })
        .error(throttled)
        .repeatedly()
        .build();
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&update]);
    let handler = Arc::new(Counting(AtomicUsize::new(0)));
    let (response, reports) = worker(client, handler.clone())
        .handle_detailed(event(), None)
        .await;
    assert_eq!(response.batch_item_failures.len(), 1, "reported for retry");
    assert!(matches!(reports[0].outcome, RecordOutcome::StoreFailed(_)));
    assert_eq!(handler.0.load(Ordering::SeqCst), 1);
    assert!(
        update.num_calls() >= 5,
        "one claim, then the completion tried four times: {}",
        update.num_calls()
    );
}

#[tokio::test]
async fn completion_throttled_once_is_recorded_by_the_workers_retry() {
    let update = mock!(Client::update_item)
        .sequence()
        .output(|| {
            UpdateItemOutput::builder()
                .attributes("attempts", AttributeValue::N("1".into()))
                .build()
        })
        .error(throttled)
        .output(|| UpdateItemOutput::builder().build())
        .build();
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&update]);
    let handler = Arc::new(Counting(AtomicUsize::new(0)));
    let (response, reports) = worker(client, handler.clone())
        .handle_detailed(event(), None)
        .await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(reports[0].outcome, RecordOutcome::Processed);
    assert_eq!(update.num_calls(), 3);
}

#[tokio::test]
async fn a_whole_batch_failing_is_reported_record_by_record_not_as_a_function_error() {
    let update = mock!(Client::update_item)
        .sequence()
        .error(throttled)
        .repeatedly()
        .build();
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&update]);
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
    let response = worker(client, handler.clone()).handle(batch, None).await;
    let mut ids: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    ids.sort();
    assert_eq!(ids, ["m-1", "m-2", "m-3"]);
    assert_eq!(handler.0.load(Ordering::SeqCst), 0);
}
