//! The operations commands of the real `doorbell` binary against emulated AWS (the moto server
//! `./scripts/test` starts): `--queue-url`, `--dlq-url` and `--table` name SQS queues and a
//! DynamoDB table, `AWS_ENDPOINT_URL` points the SDK at moto. The pipeline (ingest app and
//! worker, in process) fills them; the archive path on S3 is covered by
//! `shared/tests/archive_moto.rs` and `shared/tests/ops_moto.rs`.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use doorbell::clock::{Clock, SystemClock};
use doorbell::handler::{Event, Handler, HandlerOutcome, HandlerRegistry};
use doorbell::queue::SqsQueue;
use doorbell::store::{DynamoDbEventStore, EventStore, Status};
use doorbell::{Sources, testing};
use doorbell_cli::pipeline::Pipeline;
use doorbell_cli::samples::{self, DEV_STRIPE_SECRET};
use doorbell_worker::WorkerConfig;
use doorbell_worker::poller::EventSource;

#[derive(Default)]
struct Switch {
    failing: AtomicBool,
    runs: AtomicUsize,
}

#[async_trait::async_trait]
impl Handler for Switch {
    async fn handle(&self, _event: &Event<'_>) -> HandlerOutcome {
        if self.failing.load(Ordering::SeqCst) {
            return HandlerOutcome::Retry("ledger API: 503".into());
        }
        self.runs.fetch_add(1, Ordering::SeqCst);
        HandlerOutcome::Ok
    }
}

struct Target {
    queue_url: String,
    dlq_url: String,
    table: String,
}

impl Target {
    fn doorbell(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_doorbell"))
            .args(args)
            .args(["--queue-url", &self.queue_url, "--dlq-url", &self.dlq_url])
            .args(["--table", &self.table])
            .env("AWS_ENDPOINT_URL", testing::endpoint())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn json_lines(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let (ok, out, err) = self.doorbell(args);
        assert!(ok, "doorbell {args:?}: {err}");
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_events_are_found_shown_and_redriven_on_sqs_and_dynamodb() {
    let config = testing::sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    let (queue_url, dlq_url) =
        testing::create_queue_with_dlq(&sqs, &testing::unique("ops-cli"), 2, 1).await;
    let table = testing::unique("ops-cli-events");
    DynamoDbEventStore::create_table(&ddb, &table)
        .await
        .unwrap();
    let store = Arc::new(DynamoDbEventStore::new(ddb, &table));
    let handler = Arc::new(Switch::default());
    handler.failing.store(true, Ordering::SeqCst);
    let mut handlers = HandlerRegistry::new();
    handlers.register("stripe", "payment_intent.succeeded", handler.clone());
    let queue = Arc::new(SqsQueue::new(sqs.clone(), &queue_url).with_wait_time_seconds(0));
    let p = Pipeline::with_handlers(
        Arc::new(doorbell::catalog::StaticCatalog::new(
            Sources::from_json(&samples::dev_sources_json()).unwrap(),
        )),
        queue,
        store.clone(),
        handlers,
        Arc::new(SystemClock),
        EventSource {
            arn: "arn:aws:sqs:us-east-1:123456789012:events".into(),
            region: "us-east-1".into(),
            batch_size: 10,
        },
        WorkerConfig {
            lease_floor_ms: 500,
            lease_ceiling_ms: 1_000,
            ..Default::default()
        },
    );
    for id in ["evt_ops_1", "evt_ops_2"] {
        let body = samples::STRIPE_PAYMENT_INTENT_SUCCEEDED
            .replace("evt_3QdemoPaymentIntent0001", id)
            .into_bytes();
        let headers = samples::stripe_headers(DEV_STRIPE_SECRET, SystemClock.now_s(), &body);
        let r = p.post("/webhooks/stripe", &headers, body).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let t = Target {
        queue_url,
        dlq_url,
        table,
    };
    // Fail until SQS's redrive policy moves both to the dead-letter queue.
    let deadline = Instant::now() + Duration::from_secs(30);
    while t.json_lines(&["dlq", "ls", "--json"]).len() < 2 {
        assert!(Instant::now() < deadline, "nothing was dead-lettered");
        p.poll_once().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let failed = t.json_lines(&["events", "ls", "--status", "failed", "--json"]);
    let mut ids: Vec<&str> = failed
        .iter()
        .map(|r| r["event_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["evt_ops_1", "evt_ops_2"]);
    assert!(
        failed.iter().all(|r| r["status"] == "dead-lettered"),
        "{failed:?}"
    );

    let (ok, show, err) = t.doorbell(&["events", "show", "stripe#evt_ops_1"]);
    assert!(ok, "{err}");
    for want in [
        "ledger API: 503",
        "now in           dead-letter queue",
        "archive not read",
    ] {
        assert!(show.contains(want), "missing {want:?}:\n{show}");
    }
    let (ok, show, err) = t.doorbell(&["dlq", "show", "evt_ops_2"]);
    assert!(ok, "{err}");
    assert!(
        show.contains("max-receives") && show.contains("\"id\": \"evt_ops_2\""),
        "{show}"
    );

    let status: serde_json::Value =
        serde_json::from_str(&t.doorbell(&["status", "--json"]).1).unwrap();
    assert_eq!(status["dead_letter_queue"]["visible"], 2, "{status}");
    assert_eq!(status["queue"]["visible"], 0, "{status}");

    let (ok, out, err) = t.doorbell(&["dlq", "redrive", "--id", "evt_ops_1", "--dry-run"]);
    assert!(ok && out.contains("would-move"), "{out}{err}");
    assert_eq!(t.json_lines(&["dlq", "ls", "--json"]).len(), 2);

    handler.failing.store(false, Ordering::SeqCst);
    let (ok, out, err) = t.doorbell(&["dlq", "redrive", "--all", "--hold", "30"]);
    assert!(ok && out.contains("moved"), "{out}{err}");
    assert!(t.json_lines(&["dlq", "ls", "--json"]).is_empty());
    let deadline = Instant::now() + Duration::from_secs(30);
    while handler.runs.load(Ordering::SeqCst) < 2 {
        assert!(
            Instant::now() < deadline,
            "redriven events were not processed"
        );
        p.poll_once().await.unwrap();
    }
    for id in ["evt_ops_1", "evt_ops_2"] {
        let r = store.get(&format!("stripe#{id}")).await.unwrap().unwrap();
        assert_eq!(r.status, Status::Processed);
    }
    assert!(
        t.json_lines(&["events", "ls", "--status", "failed", "--json"])
            .is_empty()
    );
    assert_eq!(handler.runs.load(Ordering::SeqCst), 2);
}
