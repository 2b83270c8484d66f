//! Fault injection (`doorbell demo --faults`): every fault, on the in-process pipeline and on
//! SQS, DynamoDB and S3 emulated by a moto server (`./scripts/test` starts it), must end with
//! no event lost and no side effect duplicated, and each scenario's own checks must hold.

use std::sync::Arc;

use doorbell::clock::{ManualClock, SystemClock};
use doorbell::queue::SqsQueue;
use doorbell::store::{
    ClaimOutcome, ClaimRequest, DynamoDbEventStore, EventRecord, EventStore, StoreError,
};
use doorbell::testing;
use doorbell_cli::faults::{self, FaultRow, Parts, SCENARIOS};

fn assert_all_held(rows: &[FaultRow]) {
    let mut text = Vec::new();
    let ok = faults::print(&mut text, rows).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(ok, "{text}");
    let names: Vec<&str> = rows.iter().map(|r| r.scenario).collect();
    assert_eq!(names, SCENARIOS);
    for r in rows {
        assert_eq!((r.lost, r.duplicated), (0, 0), "{}", r.scenario);
        assert!(r.checks.len() >= 3, "{} checks too little", r.scenario);
    }
    let by = |n: &str| rows.iter().find(|r| r.scenario == n).unwrap();
    assert_eq!(by("sqs-unavailable-at-ingest").retryable, 3);
    assert_eq!(by("50-concurrent-deliveries").handler_runs, 1);
    assert_eq!(by("poison-event").dead_lettered, 1);
    assert_eq!(by("rejected-event").dead_lettered, 1);
    assert!(
        text.contains("events lost: 0; side effects duplicated: 0"),
        "{text}"
    );
}

#[tokio::test]
async fn every_fault_on_the_local_pipeline_loses_nothing_and_duplicates_nothing() {
    let rows = faults::run_all(|| async { faults::local_parts() })
        .await
        .unwrap();
    assert_all_held(&rows);
}

/// A store that forgets every claim (no idempotency): the harness must notice.
#[derive(Debug)]
struct Forgetful(Arc<dyn EventStore>);

#[async_trait::async_trait]
impl EventStore for Forgetful {
    async fn claim(&self, req: &ClaimRequest) -> Result<ClaimOutcome, StoreError> {
        let _ = self.0.claim(req).await;
        Ok(ClaimOutcome::Claimed { attempts: 1 })
    }
    async fn complete(&self, k: &str, a: u32, o: &str, n: i64) -> Result<(), StoreError> {
        let _ = self.0.complete(k, a, o, n).await;
        Ok(())
    }
    async fn fail(&self, k: &str, a: u32, e: &str, n: i64) -> Result<(), StoreError> {
        self.0.fail(k, a, e, n).await
    }
    async fn get(&self, key: &str) -> Result<Option<EventRecord>, StoreError> {
        self.0.get(key).await
    }
    async fn record_conflict(&self, key: &str, now_ms: i64) -> Result<(), StoreError> {
        self.0.record_conflict(key, now_ms).await
    }
    async fn record_replay(
        &self,
        key: &str,
        outcome: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.0.record_replay(key, outcome, now_ms).await
    }
    async fn put_record(&self, r: &EventRecord) -> Result<(), StoreError> {
        self.0.put_record(r).await
    }
}

#[tokio::test]
async fn the_harness_catches_a_store_without_idempotency() {
    let rows = faults::run_all(|| async {
        let mut p = faults::local_parts()?;
        p.store = Arc::new(Forgetful(p.store.clone()));
        Ok(p)
    })
    .await
    .unwrap();
    let concurrent = rows
        .iter()
        .find(|r| r.scenario == "50-concurrent-deliveries")
        .unwrap();
    assert!(!concurrent.ok(), "{concurrent:?}");
    let killed = rows
        .iter()
        .find(|r| r.scenario == "dynamodb-unavailable-during-completion")
        .unwrap();
    assert!(!killed.ok(), "{killed:?}");
}

/// DynamoDB applies each conditional write atomically per item
/// (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.ConditionExpressions.html>);
/// moto evaluates the condition and writes in two steps, so two concurrent claims of one key can
/// both pass. This wrapper makes claims one at a time, as DynamoDB does per item, so the
/// concurrency scenario tests our code rather than the emulator's race.
#[derive(Debug)]
struct AtomicClaims {
    inner: Arc<dyn EventStore>,
    lock: tokio::sync::Mutex<()>,
}

#[async_trait::async_trait]
impl EventStore for AtomicClaims {
    async fn claim(&self, req: &ClaimRequest) -> Result<ClaimOutcome, StoreError> {
        let _one_at_a_time = self.lock.lock().await;
        self.inner.claim(req).await
    }
    async fn complete(&self, k: &str, a: u32, o: &str, n: i64) -> Result<(), StoreError> {
        self.inner.complete(k, a, o, n).await
    }
    async fn fail(&self, k: &str, a: u32, e: &str, n: i64) -> Result<(), StoreError> {
        self.inner.fail(k, a, e, n).await
    }
    async fn get(&self, key: &str) -> Result<Option<EventRecord>, StoreError> {
        self.inner.get(key).await
    }
    async fn record_conflict(&self, key: &str, now_ms: i64) -> Result<(), StoreError> {
        self.inner.record_conflict(key, now_ms).await
    }
    async fn record_replay(
        &self,
        key: &str,
        outcome: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.inner.record_replay(key, outcome, now_ms).await
    }
    async fn put_record(&self, r: &EventRecord) -> Result<(), StoreError> {
        self.inner.put_record(r).await
    }
}

async fn moto_parts() -> anyhow::Result<Parts> {
    let config = testing::sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    let name = testing::unique("faults");
    let (queue_url, dlq_url) =
        testing::create_queue_with_dlq(&sqs, &name, faults::MAX_RECEIVE_COUNT, 1).await;
    let table = testing::unique("faults-events");
    DynamoDbEventStore::create_table(&ddb, &table).await?;
    let store = Arc::new(DynamoDbEventStore::new(ddb, &table));
    Ok(Parts {
        queue: Arc::new(SqsQueue::new(sqs.clone(), queue_url).with_wait_time_seconds(0)),
        dead_letter: Arc::new(SqsQueue::new(sqs, dlq_url).with_wait_time_seconds(0)),
        store: Arc::new(AtomicClaims {
            inner: store.clone(),
            lock: tokio::sync::Mutex::new(()),
        }),
        entities: store,
        payloads: Arc::new(testing::create_payload_store(&config).await),
        clock: ManualClock::new(doorbell::clock::Clock::now_ms(&SystemClock)),
        visibility_timeout_ms: 1_000,
        real_time_queue: true,
    })
}

#[tokio::test]
async fn every_fault_on_sqs_dynamodb_and_s3_loses_nothing_and_duplicates_nothing() {
    let rows = faults::run_all(moto_parts).await.unwrap();
    assert_all_held(&rows);
}

#[test]
fn doorbell_demo_faults_exits_zero_and_prints_the_totals() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_doorbell"))
        .args(["demo", "--faults"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("events lost: 0; side effects duplicated: 0"),
        "{text}"
    );
    for name in SCENARIOS {
        assert!(text.contains(name), "{name} missing from {text}");
    }
    assert!(
        out.stderr.is_empty(),
        "injected faults must not spill logs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
