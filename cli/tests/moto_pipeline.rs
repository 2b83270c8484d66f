//! The pipeline against emulated AWS (a moto server started by `./scripts/test`): ingest →
//! real SQS queue (with a RedrivePolicy to a real dead-letter queue) → worker fed from
//! `ReceiveMessage` → real DynamoDB table with conditional writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::StatusCode;
use doorbell::clock::{Clock, SystemClock};
use doorbell::handler::{Event, Handler, HandlerOutcome, HandlerRegistry};
use doorbell::queue::{EventQueue, SqsQueue};
use doorbell::store::{DynamoDbEventStore, EventStore, Status};
use doorbell::{Sources, testing};
use doorbell_cli::pipeline::Pipeline;
use doorbell_cli::samples::{self, DEV_GITHUB_SECRET, DEV_STRIPE_SECRET};
use doorbell_worker::poller::EventSource;
use doorbell_worker::{RecordOutcome, WorkerConfig};

struct Counting {
    calls: AtomicUsize,
    fail: bool,
}

#[async_trait::async_trait]
impl Handler for Counting {
    async fn handle(&self, _event: &Event<'_>) -> HandlerOutcome {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail {
            HandlerOutcome::Retry("always fails".into())
        } else {
            HandlerOutcome::Ok
        }
    }
}

struct Aws {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    dlq_url: String,
    store: Arc<DynamoDbEventStore>,
    ddb: aws_sdk_dynamodb::Client,
    table: String,
}

async fn aws(max_receive_count: u32) -> Aws {
    let config = testing::sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    let name = testing::unique("events");
    let (queue_url, dlq_url) =
        testing::create_queue_with_dlq(&sqs, &name, max_receive_count, 1).await;
    let table = testing::unique("webhook-events");
    DynamoDbEventStore::create_table(&ddb, &table)
        .await
        .unwrap();
    let store = Arc::new(DynamoDbEventStore::new(ddb.clone(), &table));
    Aws {
        sqs,
        queue_url,
        dlq_url,
        store,
        ddb,
        table,
    }
}

fn pipeline(aws: &Aws, queue: Arc<dyn EventQueue>, handlers: HandlerRegistry) -> Pipeline {
    let sources = Sources::from_json(&samples::dev_sources_json()).unwrap();
    let source = EventSource {
        arn: "arn:aws:sqs:us-east-1:123456789012:events".into(),
        region: "us-east-1".into(),
        batch_size: 10,
    };
    Pipeline::with_handlers(
        Arc::new(doorbell::catalog::StaticCatalog::new(sources)),
        queue,
        aws.store.clone(),
        handlers,
        Arc::new(SystemClock),
        source,
        WorkerConfig {
            lease_floor_ms: 500,
            lease_ceiling_ms: 1_000,
            ..Default::default()
        },
    )
}

async fn queue_depth(aws: &Aws, url: &str) -> usize {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let attrs = aws
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    let n = |k: &A| {
        attrs
            .get(k)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
    };
    n(&A::ApproximateNumberOfMessages) + n(&A::ApproximateNumberOfMessagesNotVisible)
}

fn stripe_delivery(event_id: &str) -> (Vec<(String, String)>, Vec<u8>) {
    let body = samples::STRIPE_PAYMENT_INTENT_SUCCEEDED
        .replace("evt_3QdemoPaymentIntent0001", event_id)
        .into_bytes();
    (
        samples::stripe_headers(DEV_STRIPE_SECRET, SystemClock.now_s(), &body),
        body,
    )
}

#[tokio::test]
async fn same_event_delivered_twice_through_sqs_runs_its_handler_once() {
    let aws = aws(5).await;
    let handler = Arc::new(Counting {
        calls: AtomicUsize::new(0),
        fail: false,
    });
    let mut handlers = HandlerRegistry::new();
    handlers.register("stripe", "payment_intent.succeeded", handler.clone());
    let queue = Arc::new(SqsQueue::new(aws.sqs.clone(), &aws.queue_url).with_wait_time_seconds(0));
    let p = pipeline(&aws, queue, handlers);

    let (headers, body) = stripe_delivery("evt_moto_dup");
    for _ in 0..2 {
        let r = p.post("/webhooks/stripe", &headers, body.clone()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let push = samples::GITHUB_PUSH.as_bytes().to_vec();
    let gh = samples::github_headers(
        DEV_GITHUB_SECRET,
        "push",
        "d-moto-1",
        "application/json",
        &push,
    );
    assert_eq!(
        p.post("/webhooks/github", &gh, push).await.status,
        StatusCode::OK
    );
    assert_eq!(queue_depth(&aws, &aws.queue_url).await, 3);

    let mut outcomes = Vec::new();
    for _ in 0..20 {
        let reports = p.poll_once().await.unwrap();
        outcomes.extend(reports.into_iter().map(|r| r.outcome));
        if queue_depth(&aws, &aws.queue_url).await == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert_eq!(handler.calls.load(Ordering::SeqCst), 1, "{outcomes:?}");
    assert!(outcomes.contains(&RecordOutcome::Duplicate), "{outcomes:?}");
    assert!(
        outcomes.contains(&RecordOutcome::Ignored),
        "github push has no handler here: {outcomes:?}"
    );
    assert_eq!(queue_depth(&aws, &aws.queue_url).await, 0);
    let rec = aws.store.get("stripe#evt_moto_dup").await.unwrap().unwrap();
    assert_eq!((rec.status, rec.attempts), (Status::Processed, 1));
}

#[tokio::test]
async fn poison_message_reaches_the_real_dead_letter_queue_while_its_batch_mates_succeed() {
    let aws = aws(2).await;
    let good = Arc::new(Counting {
        calls: AtomicUsize::new(0),
        fail: false,
    });
    let poison = Arc::new(Counting {
        calls: AtomicUsize::new(0),
        fail: true,
    });
    let mut handlers = HandlerRegistry::new();
    handlers.register("stripe", "payment_intent.succeeded", good.clone());
    handlers.register("stripe", "charge.failed", poison.clone());
    let queue = Arc::new(SqsQueue::new(aws.sqs.clone(), &aws.queue_url).with_wait_time_seconds(0));
    let p = pipeline(&aws, queue, handlers);

    let (h1, b1) = stripe_delivery("evt_moto_good");
    let poison_body = samples::STRIPE_PAYMENT_INTENT_SUCCEEDED
        .replace("evt_3QdemoPaymentIntent0001", "evt_moto_poison")
        .replace(
            "\"type\": \"payment_intent.succeeded\"",
            "\"type\": \"charge.failed\"",
        )
        .into_bytes();
    let h2 = samples::stripe_headers(DEV_STRIPE_SECRET, SystemClock.now_s(), &poison_body);
    assert_eq!(
        p.post("/webhooks/stripe", &h1, b1).await.status,
        StatusCode::OK
    );
    assert_eq!(
        p.post("/webhooks/stripe", &h2, poison_body).await.status,
        StatusCode::OK
    );

    // A non-envelope message put straight on the queue is poison too.
    aws.sqs
        .send_message()
        .queue_url(&aws.queue_url)
        .message_body("not an envelope")
        .send()
        .await
        .unwrap();

    let mut dead = 0;
    for _ in 0..40 {
        p.poll_once().await.unwrap();
        dead = queue_depth(&aws, &aws.dlq_url).await;
        if dead == 2 && queue_depth(&aws, &aws.queue_url).await == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    }
    assert_eq!(
        dead, 2,
        "poison and non-envelope messages must be dead-lettered by the RedrivePolicy"
    );
    assert_eq!(good.calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        poison.calls.load(Ordering::SeqCst),
        2,
        "handler runs once per receive until maxReceiveCount"
    );
    let rec = aws
        .store
        .get("stripe#evt_moto_poison")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (rec.status, rec.last_error.as_deref()),
        (Status::Failed, Some("always fails"))
    );
    assert_eq!(
        aws.store
            .get("stripe#evt_moto_good")
            .await
            .unwrap()
            .unwrap()
            .status,
        Status::Processed
    );
    let dlq = aws
        .sqs
        .receive_message()
        .queue_url(&aws.dlq_url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let bodies: Vec<String> = dlq
        .messages
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.body)
        .collect();
    assert!(
        bodies.iter().any(|b| b.contains("evt_moto_poison")),
        "{bodies:?}"
    );
    assert!(bodies.iter().any(|b| b == "not an envelope"));
}

#[tokio::test]
async fn c17_unreachable_or_missing_queue_answers_503_and_records_nothing() {
    let aws = aws(5).await;
    let (headers, body) = stripe_delivery("evt_moto_503");
    // Nothing listens on port 9.
    let dead = testing::config_for("http://127.0.0.1:9").await;
    let unreachable = Arc::new(SqsQueue::new(
        aws_sdk_sqs::Client::new(&dead),
        "http://127.0.0.1:9/123456789012/events",
    ));
    // A queue URL moto does not know: SendMessage fails with a service error.
    let missing = Arc::new(SqsQueue::new(
        aws.sqs.clone(),
        format!("{}/123456789012/no-such-queue", testing::endpoint()),
    ));
    for queue in [unreachable as Arc<dyn EventQueue>, missing] {
        let p = pipeline(&aws, queue, HandlerRegistry::new());
        let r = p.post("/webhooks/stripe", &headers, body.clone()).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
        assert!(r.body.contains("queue unavailable"));
    }
    assert_eq!(queue_depth(&aws, &aws.queue_url).await, 0);
    let scan = aws.ddb.scan().table_name(&aws.table).send().await.unwrap();
    assert_eq!(scan.count, 0, "ingest records nothing");
    assert!(
        aws.store
            .get("stripe#evt_moto_503")
            .await
            .unwrap()
            .is_none()
    );

    // The provider's retry, once the queue is back, is processed once.
    let queue = Arc::new(SqsQueue::new(aws.sqs.clone(), &aws.queue_url).with_wait_time_seconds(0));
    let p = pipeline(&aws, queue, HandlerRegistry::new());
    assert_eq!(
        p.post("/webhooks/stripe", &headers, body).await.status,
        StatusCode::OK
    );
    let reports = p.poll_once().await.unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(
        aws.store
            .get("stripe#evt_moto_503")
            .await
            .unwrap()
            .unwrap()
            .status,
        Status::Processed
    );
}

#[tokio::test]
async fn fifo_queue_gets_the_source_as_message_group_and_a_retry_is_deduplicated_by_sqs() {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let aws = aws(5).await;
    let url = aws
        .sqs
        .create_queue()
        .queue_name(format!("{}.fifo", testing::unique("events")))
        .attributes(A::FifoQueue, "true")
        .attributes(A::VisibilityTimeout, "1")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let fifo = Arc::new(SqsQueue::new(aws.sqs.clone(), &url).with_wait_time_seconds(0));
    assert!(fifo.is_fifo());
    let ok = Arc::new(Counting {
        calls: AtomicUsize::new(0),
        fail: false,
    });
    let mut handlers = HandlerRegistry::new();
    handlers.register("stripe", "payment_intent.succeeded", ok.clone());
    let p = pipeline(&aws, fifo.clone(), handlers);
    let (h, b) = stripe_delivery("evt_fifo_1");
    for _ in 0..2 {
        assert_eq!(
            p.post("/webhooks/stripe", &h, b.clone()).await.status,
            StatusCode::OK
        );
    }
    let (h2, b2) = stripe_delivery("evt_fifo_2");
    assert_eq!(
        p.post("/webhooks/stripe", &h2, b2).await.status,
        StatusCode::OK
    );
    let got = fifo.receive(10).await.unwrap();
    assert_eq!(
        got.len(),
        2,
        "the retry within SQS's 5-minute window is dropped by its deduplication id"
    );
    assert!(got.iter().all(|m| m.group_id.as_deref() == Some("stripe")));
    assert!(got[0].body.contains("evt_fifo_1") && got[1].body.contains("evt_fifo_2"));
}
