//! Replays under unsigned headers, through the whole local pipeline (ingest, the durable queue,
//! the worker, the event store): one captured delivery sent again under other topics, event
//! types, delivery ids and query strings is acknowledged (the signature is valid) but becomes
//! one event that runs, plus duplicates and conflicts, never a second event. Conflicts are in
//! the dead-letter queue with reason `conflict`.

use std::sync::Arc;

use doorbell::clock::SystemClock;
use doorbell::queue::{EventQueue, MemoryQueueConfig, SqliteQueue};
use doorbell::sqlite::SqliteDb;
use doorbell::store::{EventStore, SqliteEventStore, Status};
use doorbell::verify::{github, shopify};
use doorbell::{Secret, Sources};
use doorbell_cli::pipeline::Pipeline;
use doorbell_cli::samples;
use doorbell_worker::WorkerConfig;
use doorbell_worker::poller::EventSource;

struct Local {
    pipeline: Pipeline,
    store: Arc<SqliteEventStore>,
    dlq: SqliteQueue,
}

fn local() -> Local {
    let sources = Sources::from_json(
        r#"{"sources":[
            {"name":"shop","provider":"shopify","secrets":["shpss_FAKE_client_secret"]},
            {"name":"gh","provider":"github","secrets":["gh-FAKE-secret"]}]}"#,
    )
    .unwrap();
    let db = SqliteDb::in_memory().unwrap();
    let clock = Arc::new(SystemClock);
    let queue = SqliteQueue::new(
        db.clone(),
        "events",
        MemoryQueueConfig::default(),
        clock.clone(),
    )
    .unwrap()
    .with_dead_letter_queue("dlq");
    let dlq = queue.dead_letter_queue().unwrap();
    let store = Arc::new(SqliteEventStore::new(db).unwrap());
    let mut pipeline = Pipeline::new(
        sources,
        Arc::new(queue.clone()),
        store.clone(),
        store.clone(),
        clock,
        EventSource {
            arn: queue.arn(),
            region: "local".into(),
            batch_size: 10,
        },
        WorkerConfig::default(),
    );
    pipeline.worker = pipeline
        .worker
        .with_dead_letter_queue(Arc::new(dlq.clone()));
    Local {
        pipeline,
        store,
        dlq,
    }
}

impl Local {
    async fn drain(&self) {
        while !self.pipeline.poll_once().await.unwrap().is_empty() {}
    }

    /// `(dead_letter_reason, event_type)` of every dead-lettered message.
    async fn dead_letters(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        loop {
            let got = self.dlq.receive(10).await.unwrap();
            if got.is_empty() {
                return out;
            }
            for m in got {
                let attr = |k: &str| {
                    m.attributes
                        .iter()
                        .find(|(n, _)| n == k)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                out.push((attr("dead_letter_reason"), attr("event_type")));
            }
        }
    }
}

fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test]
async fn a_shopify_delivery_replayed_under_other_topics_runs_once() {
    let l = local();
    let body = br#"{"id":1001,"email":"buyer@example.invalid","note":"caf\u00e9"}"#;
    let sig = shopify::sign(&Secret::new("shpss_FAKE_client_secret"), body);
    let topics = [
        "orders/create",
        "orders/paid",
        "orders/cancelled",
        "orders/create",
        "made/up",
        "orders/updated",
    ];
    for (i, topic) in topics.iter().enumerate() {
        let webhook_id = format!("b54557e4-0000-0000-0000-00000000000{i}");
        let path = if i % 2 == 0 {
            "/webhooks/shop".to_owned()
        } else {
            format!("/webhooks/shop?replay={i}")
        };
        let reply = l
            .pipeline
            .post(
                &path,
                &h(&[
                    ("content-type", "application/json"),
                    ("x-shopify-hmac-sha256", &sig),
                    ("x-shopify-topic", topic),
                    ("x-shopify-webhook-id", &webhook_id),
                    ("x-shopify-triggered-at", "2024-01-01T00:00:00Z"),
                ]),
                body.to_vec(),
            )
            .await;
        assert_eq!(reply.status, 200, "a valid signature is acknowledged");
        l.drain().await;
    }
    let key = format!("shop#sha256:{}", doorbell::envelope::sha256_hex(body));
    let rec = l.store.get(&key).await.unwrap().unwrap();
    assert_eq!(
        (rec.status, rec.event_type.as_str(), rec.attempts),
        (Status::Processed, "orders/create", 1),
        "one event, under the first topic, run once"
    );
    assert_eq!(rec.conflicts, 4, "each other topic is a conflict");
    let mut dead = l.dead_letters().await;
    dead.sort();
    assert_eq!(
        dead,
        [
            ("conflict".to_owned(), "made/up".to_owned()),
            ("conflict".to_owned(), "orders/cancelled".to_owned()),
            ("conflict".to_owned(), "orders/paid".to_owned()),
            ("conflict".to_owned(), "orders/updated".to_owned()),
        ]
    );
}

#[tokio::test]
async fn a_github_delivery_replayed_under_another_event_or_delivery_id_runs_once() {
    let l = local();
    let body = samples::GITHUB_PUSH.as_bytes();
    let sig = github::sign(&Secret::new("gh-FAKE-secret"), body);
    for (event, delivery) in [
        ("push", "d-1"),
        ("push", "d-2"),    // another delivery id: the same event
        ("release", "d-1"), // another type: a conflict
        ("push", "d-1"),    // the provider's own retry
    ] {
        let reply = l
            .pipeline
            .post(
                "/webhooks/gh",
                &h(&[
                    ("content-type", "application/json"),
                    (github::SIGNATURE_HEADER, &sig),
                    (github::EVENT_HEADER, event),
                    (github::DELIVERY_HEADER, delivery),
                ]),
                body.to_vec(),
            )
            .await;
        assert_eq!(reply.status, 200);
        l.drain().await;
    }
    let key = format!("gh#sha256:{}", doorbell::envelope::sha256_hex(body));
    let rec = l.store.get(&key).await.unwrap().unwrap();
    assert_eq!(
        (rec.status, rec.attempts, rec.conflicts),
        (Status::Processed, 1, 1)
    );
    assert_eq!(
        l.dead_letters().await,
        [("conflict".to_owned(), "release".to_owned())]
    );
}
