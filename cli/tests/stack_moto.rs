//! The pipeline on the resources CloudFormation made from `template.yaml` (in moto): the
//! stack's queue with its RedrivePolicy (maxReceiveCount 5) and dead-letter queue, its table,
//! and its Secrets Manager secret read through the stack's `DOORBELL_SOURCES`. The stack is
//! created by `tests/stack/test_stack_moto.py`, which writes its outputs to
//! `$DOORBELL_STACK_OUTPUTS`; `./scripts/test` runs that first.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::StatusCode;
use doorbell::catalog::SecretsManagerCatalog;
use doorbell::clock::{Clock, SystemClock};
use doorbell::handler::{Event, Handler, HandlerOutcome, HandlerRegistry};
use doorbell::queue::SqsQueue;
use doorbell::store::{DynamoDbEventStore, EventStore, Status};
use doorbell::testing;
use doorbell_cli::pipeline::Pipeline;
use doorbell_cli::samples::{self, DEV_STRIPE_SECRET};
use doorbell_worker::WorkerConfig;
use doorbell_worker::poller::EventSource;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Outputs {
    events_queue_url: String,
    dead_letter_queue_url: String,
    events_table_name: String,
    secrets_arn: String,
    sources_json: String,
    payload_bucket_name: String,
}

struct Counting(AtomicUsize, bool);

#[async_trait::async_trait]
impl Handler for Counting {
    async fn handle(&self, _e: &Event<'_>) -> HandlerOutcome {
        self.0.fetch_add(1, Ordering::SeqCst);
        if self.1 {
            HandlerOutcome::Retry("poison".into())
        } else {
            HandlerOutcome::Ok
        }
    }
}

/// The stack's outputs and clients on its resources.
struct Stack {
    out: Outputs,
    config: aws_config::SdkConfig,
    sqs: aws_sdk_sqs::Client,
    catalog: Arc<SecretsManagerCatalog>,
    store: Arc<DynamoDbEventStore>,
}

/// One receive from the dead-letter queue: the bodies that mention `event_id` (each is hidden
/// for 30 s after, so a later receive does not see it twice).
/// The dead-letter messages of `event_id`. Reads with visibility timeout 0, so the tests
/// sharing the stack's dead-letter queue never hide each other's messages.
async fn dead_lettered(sqs: &aws_sdk_sqs::Client, dlq_url: &str, event_id: &str) -> Vec<String> {
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    sqs.receive_message()
        .queue_url(dlq_url)
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.body)
        .filter(|b| b.contains(event_id))
        .collect()
}

async fn stack() -> Stack {
    let path = std::env::var("DOORBELL_STACK_OUTPUTS")
        .expect("DOORBELL_STACK_OUTPUTS is not set: run ./scripts/test, which creates the stack in moto first");
    let out: Outputs = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let config = testing::sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let catalog = Arc::new(SecretsManagerCatalog::new(
        aws_sdk_secretsmanager::Client::new(&config),
        &out.secrets_arn,
        &out.sources_json,
        300,
        Arc::new(SystemClock),
    ));
    let store = Arc::new(DynamoDbEventStore::new(
        aws_sdk_dynamodb::Client::new(&config),
        &out.events_table_name,
    ));
    Stack {
        out,
        config,
        sqs,
        catalog,
        store,
    }
}

#[tokio::test]
async fn deliveries_through_the_stacks_queue_table_and_secret() {
    let Stack {
        out,
        config: _,
        sqs,
        catalog,
        store,
    } = stack().await;
    // Receive with a 1 s visibility timeout instead of the stack's 200 s, so five receives
    // take seconds; the redrive policy is the stack's own.
    let queue = Arc::new(
        SqsQueue::new(sqs.clone(), &out.events_queue_url)
            .with_wait_time_seconds(0)
            .with_visibility_timeout_seconds(1),
    );
    let good = Arc::new(Counting(AtomicUsize::new(0), false));
    let poison = Arc::new(Counting(AtomicUsize::new(0), true));
    let mut handlers = HandlerRegistry::new();
    handlers.register("stripe", "payment_intent.succeeded", good.clone());
    handlers.register("stripe", "charge.dispute.created", poison.clone());
    let source = EventSource {
        arn: "arn:aws:sqs:us-east-1:123456789012:stack-events".into(),
        region: "us-east-1".into(),
        batch_size: 10,
    };
    let p = Pipeline::with_handlers(
        catalog,
        queue,
        store.clone(),
        handlers,
        Arc::new(SystemClock),
        source,
        WorkerConfig::default(),
    );

    let now = SystemClock.now_s();
    let good_id = testing::unique("evt_stack_good").replace('-', "_");
    let poison_id = testing::unique("evt_stack_poison").replace('-', "_");
    let body = samples::STRIPE_PAYMENT_INTENT_SUCCEEDED
        .replace("evt_3QdemoPaymentIntent0001", &good_id)
        .into_bytes();
    let headers = samples::stripe_headers(DEV_STRIPE_SECRET, now, &body);
    assert_eq!(
        p.post("/webhooks/stripe", &headers, body.clone())
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        p.post("/webhooks/stripe", &headers, body).await.status,
        StatusCode::OK,
        "provider retry"
    );
    let bad = samples::STRIPE_PAYMENT_INTENT_SUCCEEDED
        .replace("evt_3QdemoPaymentIntent0001", &poison_id)
        .replace(
            "\"type\": \"payment_intent.succeeded\"",
            "\"type\": \"charge.dispute.created\"",
        )
        .into_bytes();
    let bad_headers = samples::stripe_headers(DEV_STRIPE_SECRET, now, &bad);
    assert_eq!(
        p.post("/webhooks/stripe", &bad_headers, bad).await.status,
        StatusCode::OK
    );
    let wrong = samples::stripe_headers("whsec_wrong", now, b"{}");
    assert_eq!(
        p.post("/webhooks/stripe", &wrong, b"{}".to_vec())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    let mut dead = Vec::new();
    for _ in 0..60 {
        p.poll_once().await.unwrap();
        dead = dead_lettered(&sqs, &out.dead_letter_queue_url, &poison_id).await;
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert_eq!(
        dead.len(),
        1,
        "the poison event reaches the stack's dead-letter queue"
    );
    assert_eq!(
        poison.0.load(Ordering::SeqCst),
        5,
        "maxReceiveCount 5: five attempts, then the DLQ"
    );
    assert_eq!(
        good.0.load(Ordering::SeqCst),
        1,
        "the retried delivery ran its handler once"
    );
    assert_eq!(
        store
            .get(&format!("stripe#{good_id}"))
            .await
            .unwrap()
            .unwrap()
            .status,
        Status::Processed
    );
    assert_eq!(
        store
            .get(&format!("stripe#{poison_id}"))
            .await
            .unwrap()
            .unwrap()
            .status,
        Status::Failed
    );
}

struct Rejects(AtomicUsize);

#[async_trait::async_trait]
impl Handler for Rejects {
    async fn handle(&self, _e: &Event<'_>) -> HandlerOutcome {
        self.0.fetch_add(1, Ordering::SeqCst);
        HandlerOutcome::Reject("can never succeed".into())
    }
}

/// C07 on the stack's bucket, and `Reject` on the stack's dead-letter queue: a 300 KB body is
/// claim-checked into `PayloadBucket` and processed from it; a rejected event reaches
/// `DeadLetterQueue` after one receive.
#[tokio::test]
async fn large_and_rejected_deliveries_use_the_stacks_bucket_and_dead_letter_queue() {
    use doorbell::payload::S3PayloadStore;
    use doorbell::queue::{ClaimCheckQueue, EventQueue};
    let Stack {
        out,
        config,
        sqs,
        catalog,
        store,
    } = stack().await;
    let payloads = Arc::new(S3PayloadStore::from_conf(&config, &out.payload_bucket_name));
    let raw = Arc::new(
        SqsQueue::new(sqs.clone(), &out.events_queue_url)
            .with_wait_time_seconds(0)
            .with_visibility_timeout_seconds(1),
    );
    let queue: Arc<dyn EventQueue> = Arc::new(ClaimCheckQueue::new(raw, payloads.clone()));
    let good = Arc::new(Counting(AtomicUsize::new(0), false));
    let rejects = Arc::new(Rejects(AtomicUsize::new(0)));
    let mut handlers = HandlerRegistry::new();
    handlers.register("stripe", "payment_intent.succeeded", good.clone());
    handlers.register("stripe", "customer.deleted", rejects.clone());
    let mut p = Pipeline::with_handlers(
        catalog,
        queue,
        store.clone(),
        handlers,
        Arc::new(SystemClock),
        EventSource {
            arn: "arn:aws:sqs:us-east-1:123456789012:stack-events".into(),
            region: "us-east-1".into(),
            batch_size: 10,
        },
        WorkerConfig::default(),
    );
    p.worker = p
        .worker
        .with_payload_store(payloads)
        .with_dead_letter_queue(Arc::new(SqsQueue::new(
            sqs.clone(),
            &out.dead_letter_queue_url,
        )));

    let now = SystemClock.now_s();
    let big_id = testing::unique("evt_stack_big").replace('-', "_");
    let mut doc: serde_json::Value = serde_json::from_str(
        &samples::STRIPE_PAYMENT_INTENT_SUCCEEDED.replace("evt_3QdemoPaymentIntent0001", &big_id),
    )
    .unwrap();
    doc["data"]["object"]["description"] = serde_json::json!("x".repeat(300_000));
    let big = doc.to_string().into_bytes();
    let headers = samples::stripe_headers(DEV_STRIPE_SECRET, now, &big);
    assert_eq!(
        p.post("/webhooks/stripe", &headers, big).await.status,
        StatusCode::OK
    );
    let rej_id = testing::unique("evt_stack_reject").replace('-', "_");
    let rej = samples::STRIPE_PAYMENT_INTENT_SUCCEEDED
        .replace("evt_3QdemoPaymentIntent0001", &rej_id)
        .replace(
            "\"type\": \"payment_intent.succeeded\"",
            "\"type\": \"customer.deleted\"",
        )
        .into_bytes();
    let rej_headers = samples::stripe_headers(DEV_STRIPE_SECRET, now, &rej);
    assert_eq!(
        p.post("/webhooks/stripe", &rej_headers, rej).await.status,
        StatusCode::OK
    );
    for _ in 0..10 {
        if p.poll_once().await.unwrap().is_empty() {
            break;
        }
    }
    assert_eq!(
        good.0.load(Ordering::SeqCst),
        1,
        "the 300 KB event ran once"
    );
    assert_eq!(
        store
            .get(&format!("stripe#{big_id}"))
            .await
            .unwrap()
            .unwrap()
            .status,
        Status::Processed
    );
    assert_eq!(
        rejects.0.load(Ordering::SeqCst),
        1,
        "rejected once, not retried"
    );
    let mut dead = Vec::new();
    for _ in 0..20 {
        dead = dead_lettered(&sqs, &out.dead_letter_queue_url, &rej_id).await;
        if !dead.is_empty() {
            break;
        }
    }
    assert_eq!(
        dead.len(),
        1,
        "the rejected event is in the stack's dead-letter queue"
    );
    assert_eq!(
        store
            .get(&format!("stripe#{rej_id}"))
            .await
            .unwrap()
            .unwrap()
            .status,
        Status::Failed
    );
}
