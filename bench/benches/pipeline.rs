//! The whole ingest request and a worker batch, with criterion:
//!
//! - `ingest/in_process/2k`: a signed 2 KB Stripe delivery through the ingest app (verify,
//!   envelope, enqueue, response) with an in-process queue that accepts and drops;
//! - `ingest/sqs_stub/2k`: the same with `SqsQueue` and the real `aws-sdk-sqs` client sending
//!   `SendMessage` to the loopback stub (`doorbell_bench::stub`, on its own thread);
//! - `worker/sqlite/batch10` and `worker/dynamodb_stub/batch10`: a batch of 10 new Stripe
//!   `payment_intent.succeeded` events through the worker with the shipped handlers, on SQLite
//!   in memory and on `DynamoDbEventStore` against the stub.
//!
//! `cargo bench -p doorbell-bench --bench pipeline`.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_lambda_events::event::sqs::SqsEvent;
use axum::body::Body;
use axum::http::Request;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use doorbell::catalog::StaticCatalog;
use doorbell::clock::{Clock, SystemClock};
use doorbell::queue::{EventQueue, OutgoingMessage, QueueError, ReceivedMessage, SqsQueue};
use doorbell::store::{DynamoDbEventStore, SqliteEventStore};
use doorbell::verify::{Verified, stripe};
use doorbell::{Envelope, Provider, Secret, SourceConfig, Sources};
use doorbell_bench::stub;
use doorbell_ingest::{IngestState, app};
use doorbell_worker::{Worker, WorkerConfig, handlers};
use tower::ServiceExt;

const SECRET: &str = "whsec_bench_only";

/// Accepts and drops: the in-process queue for measuring ingest's own work.
#[derive(Debug)]
struct Discard;

#[async_trait::async_trait]
impl EventQueue for Discard {
    async fn send(&self, m: OutgoingMessage) -> Result<String, QueueError> {
        black_box(m);
        Ok("m".into())
    }
    async fn receive(&self, _max: u32) -> Result<Vec<ReceivedMessage>, QueueError> {
        Ok(Vec::new())
    }
    async fn delete(&self, _h: &str) -> Result<(), QueueError> {
        Ok(())
    }
    fn max_message_bytes(&self) -> usize {
        doorbell::queue::DEFAULT_MAX_MESSAGE_BYTES
    }
}

fn payload() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/payloads/stripe-2k.json"
    ))
    .expect("payload")
}

fn sources() -> Sources {
    Sources::from_json(
        &serde_json::json!({"sources": [{"name": "stripe", "provider": "stripe", "secrets": [SECRET]}]}).to_string(),
    )
    .expect("sources")
}

fn ingest(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let body = payload();
    let now = SystemClock.now_s();
    let sig = stripe::sign(&Secret::new(SECRET), now, &body);
    let endpoint = stub::spawn_thread(stub::Counts::default());
    let sqs = rt.block_on(stub::sdk_config(&endpoint));
    let queues: [(&str, Arc<dyn EventQueue>); 2] = [
        ("in_process", Arc::new(Discard)),
        (
            "sqs_stub",
            Arc::new(SqsQueue::new(
                aws_sdk_sqs::Client::new(&sqs),
                format!("{endpoint}/123456789012/bench"),
            )),
        ),
    ];
    let mut g = c.benchmark_group("ingest");
    for (name, queue) in queues {
        let router = app(IngestState {
            sources: Arc::new(StaticCatalog::new(sources())),
            queue,
            clock: Arc::new(SystemClock),
        });
        let request = || {
            Request::post("/webhooks/stripe")
                .header("content-type", "application/json")
                .header(stripe::SIGNATURE_HEADER, sig.as_str())
                .body(Body::from(body.clone()))
                .expect("request")
        };
        let status = rt
            .block_on(router.clone().oneshot(request()))
            .expect("response")
            .status();
        assert!(status.is_success(), "{name}: {status}");
        g.bench_function(format!("{name}/2k"), |b| {
            b.iter_batched(
                request,
                |req| rt.block_on(router.clone().oneshot(req)).expect("response"),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A batch of 10 new `payment_intent.succeeded` envelopes (fresh event ids each time).
fn batch(body: &[u8]) -> SqsEvent {
    let source = SourceConfig::new("stripe", Provider::Stripe, vec![Secret::new("unused")]);
    let now = SystemClock.now_ms();
    let records: Vec<(String, String, u32)> = (0..10)
        .map(|_| {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let verified = Verified {
                event_id: format!("evt_bench_{n:012}"),
                event_type: "payment_intent.succeeded".into(),
                occurred_at_ms: None,
                dedupe: Default::default(),
                reply: None,
                headers: vec![],
            };
            let env = Envelope::new(&source, verified, body, Some("application/json"), now);
            (format!("m-{n}"), env.to_json(), 1)
        })
        .collect();
    let refs: Vec<(&str, String, u32)> = records
        .iter()
        .map(|(i, b, c)| (i.as_str(), b.clone(), *c))
        .collect();
    serde_json::from_value(doorbell_cli::events::sqs_event(&refs)).expect("sqs event")
}

fn worker(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let body = payload();
    let endpoint = stub::spawn_thread(stub::Counts::default());
    let ddb = rt.block_on(stub::sdk_config(&endpoint));
    let sqlite = Arc::new(SqliteEventStore::in_memory().expect("sqlite"));
    let dynamo = Arc::new(DynamoDbEventStore::new(
        aws_sdk_dynamodb::Client::new(&ddb),
        "bench",
    ));
    let sources = [("stripe", Provider::Stripe)];
    let workers = [
        (
            "sqlite",
            Worker::new(
                sqlite.clone(),
                handlers::default_registry(sources, sqlite),
                Arc::new(SystemClock),
                WorkerConfig::default(),
            ),
        ),
        (
            "dynamodb_stub",
            Worker::new(
                dynamo.clone(),
                handlers::default_registry(sources, dynamo),
                Arc::new(SystemClock),
                WorkerConfig::default(),
            ),
        ),
    ];
    let mut g = c.benchmark_group("worker");
    for (name, worker) in workers {
        let r = rt.block_on(worker.handle(batch(&body), None));
        assert!(r.batch_item_failures.is_empty(), "{name}: {r:?}");
        g.bench_function(format!("{name}/batch10"), |b| {
            b.iter_batched(
                || batch(&body),
                |event| rt.block_on(worker.handle(event, None)),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, ingest, worker);
criterion_main!(benches);
