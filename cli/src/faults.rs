//! `doorbell demo --faults`: the pipeline under every fault one machine can produce, with a
//! count of events lost and side effects duplicated (both must be zero).
//!
//! Each scenario runs on a fresh [`Parts`] (queue with a redrive policy, dead-letter queue,
//! event store, entity store, payload store): the in-process ones here ([`local_parts`]), or
//! SQS, DynamoDB and S3 (the integration tests build them on a moto server). Faults are
//! injected at the ports, in front of the real adapters: [`FaultyQueue`] (SQS `SendMessage`
//! fails), [`FaultyStore`] (the claim or the completion write fails), [`FaultyPayloads`] (the
//! S3 upload fails), plus a handler that never returns on its first run (the worker killed at
//! its deadline after the claim).
//!
//! Counting, per scenario: *handler runs* are successful runs of the counting handler; its
//! *side effect* is one write through the ordering guard ([`EntityStore::put_if_newer`]), so an
//! effect applied twice would show as two `Written` results. *Lost* = an event acknowledged
//! with a 2xx whose effect never happened and that is not in the dead-letter queue;
//! *duplicated* = effects beyond the first per event. Each scenario also checks what it is
//! about (statuses, receive counts, store states) and fails if any check fails.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use doorbell::catalog::StaticCatalog;
use doorbell::clock::{Clock, ManualClock, SystemClock};
use doorbell::handler::{Event, Handler, HandlerOutcome, HandlerRegistry};
use doorbell::payload::{MemoryPayloadStore, PayloadError, PayloadStore};
use doorbell::queue::{
    ClaimCheckQueue, EventQueue, MemoryQueue, MemoryQueueConfig, OutgoingMessage, QueueError,
    ReceivedMessage,
};
use doorbell::store::{
    ClaimOutcome, ClaimRequest, EntityStore, EntityWrite, EventRecord, EventStore,
    SqliteEventStore, Status, StoreError,
};
use doorbell::{Envelope, Sources};
use doorbell_worker::WorkerConfig;
use doorbell_worker::handlers::stripe::SubscriptionChanged;
use doorbell_worker::poller::EventSource;
use serde_json::json;

use crate::pipeline::Pipeline;
use crate::samples::{self, DEV_GITHUB_SECRET, DEV_STRIPE_SECRET};

/// A switch: the next `n` calls through it fail ([`u32::MAX`] = until [`Fault::heal`]).
#[derive(Debug, Clone, Default)]
pub struct Fault(Arc<AtomicU32>);

impl Fault {
    /// Fails the next `n` calls.
    pub fn fail_next(&self, n: u32) {
        self.0.store(n, Ordering::SeqCst);
    }

    /// Fails every call until healed.
    pub fn outage(&self) {
        self.fail_next(u32::MAX);
    }

    /// Stops failing.
    pub fn heal(&self) {
        self.0.store(0, Ordering::SeqCst);
    }

    /// True when this call must fail (and counts it).
    fn trip(&self) -> bool {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                0 => None,
                u32::MAX => Some(u32::MAX),
                n => Some(n - 1),
            })
            .is_ok()
    }
}

/// A queue whose sends fail while its [`Fault`] is on, as SQS does when throttled or
/// unreachable.
#[derive(Debug)]
pub struct FaultyQueue {
    inner: Arc<dyn EventQueue>,
    /// Fails `send`.
    pub send: Fault,
}

#[async_trait::async_trait]
impl EventQueue for FaultyQueue {
    async fn send(&self, message: OutgoingMessage) -> Result<String, QueueError> {
        if self.send.trip() {
            return Err(QueueError::Unavailable {
                operation: "send",
                message: "injected fault: RequestThrottled".into(),
            });
        }
        self.inner.send(message).await
    }
    async fn receive(&self, max: u32) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.inner.receive(max).await
    }
    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        self.inner.delete(receipt_handle).await
    }
    fn max_message_bytes(&self) -> usize {
        self.inner.max_message_bytes()
    }
    fn is_fifo(&self) -> bool {
        self.inner.is_fifo()
    }
}

/// An event store whose claim or completion writes fail while their [`Fault`] is on, as
/// DynamoDB does when throttled or unreachable.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn EventStore>,
    /// Fails `claim`.
    pub claim: Fault,
    /// Fails `complete`.
    pub complete: Fault,
}

fn injected(operation: &'static str) -> StoreError {
    StoreError::Unavailable {
        operation,
        message: "injected fault: ProvisionedThroughputExceededException".into(),
    }
}

#[async_trait::async_trait]
impl EventStore for FaultyStore {
    async fn claim(&self, req: &ClaimRequest) -> Result<ClaimOutcome, StoreError> {
        if self.claim.trip() {
            return Err(injected("claim"));
        }
        self.inner.claim(req).await
    }
    async fn complete(
        &self,
        key: &str,
        attempt: u32,
        outcome: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        if self.complete.trip() {
            return Err(injected("complete"));
        }
        self.inner.complete(key, attempt, outcome, now_ms).await
    }
    async fn fail(
        &self,
        key: &str,
        attempt: u32,
        error: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.inner.fail(key, attempt, error, now_ms).await
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
    async fn put_record(&self, record: &EventRecord) -> Result<(), StoreError> {
        self.inner.put_record(record).await
    }
}

/// A payload store whose uploads fail while its [`Fault`] is on, as S3 does when unreachable.
#[derive(Debug)]
pub struct FaultyPayloads {
    inner: Arc<dyn PayloadStore>,
    /// Fails `put`.
    pub put: Fault,
}

#[async_trait::async_trait]
impl PayloadStore for FaultyPayloads {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), PayloadError> {
        if self.put.trip() {
            return Err(PayloadError::Unavailable {
                operation: "put",
                message: "injected fault: SlowDown".into(),
            });
        }
        self.inner.put(key, bytes).await
    }
    async fn get(&self, key: &str) -> Result<Vec<u8>, PayloadError> {
        self.inner.get(key).await
    }
    fn bucket(&self) -> &str {
        self.inner.bucket()
    }
}

/// What a scenario runs on.
#[derive(Debug, Clone)]
pub struct Parts {
    /// The events queue, with a redrive policy (`maxReceiveCount` 5) to `dead_letter`.
    pub queue: Arc<dyn EventQueue>,
    /// Its dead-letter queue.
    pub dead_letter: Arc<dyn EventQueue>,
    /// The event store.
    pub store: Arc<dyn EventStore>,
    /// The entity store (the ordering guard).
    pub entities: Arc<dyn EntityStore>,
    /// The claim-check store.
    pub payloads: Arc<dyn PayloadStore>,
    /// The clock shared by ingest, the worker and (when in process) the queue.
    pub clock: ManualClock,
    /// The queue's visibility timeout, **milliseconds**.
    pub visibility_timeout_ms: i64,
    /// True when the queue keeps real time (SQS): waiting for a redelivery sleeps for the
    /// visibility timeout instead of stepping the clock.
    pub real_time_queue: bool,
}

/// `maxReceiveCount` of the scenarios' queues.
pub const MAX_RECEIVE_COUNT: u32 = 5;

/// In-process parts: [`MemoryQueue`]s, SQLite in memory, a [`MemoryPayloadStore`].
///
/// # Errors
/// When SQLite cannot open.
pub fn local_parts() -> anyhow::Result<Parts> {
    let clock = ManualClock::new(SystemClock.now_ms());
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    let cfg = MemoryQueueConfig {
        visibility_timeout_ms: 30_000,
        max_receive_count: MAX_RECEIVE_COUNT,
        ..Default::default()
    };
    let dlq = Arc::new(MemoryQueue::new("faults-dlq", cfg.clone(), shared.clone()));
    let queue =
        Arc::new(MemoryQueue::new("faults", cfg, shared).with_dead_letter_queue(dlq.clone()));
    let store = Arc::new(SqliteEventStore::in_memory()?);
    Ok(Parts {
        queue,
        dead_letter: dlq,
        store: store.clone(),
        entities: store,
        payloads: Arc::new(MemoryPayloadStore::new("faults-payloads")),
        clock,
        visibility_timeout_ms: 30_000,
        real_time_queue: false,
    })
}

/// How the counting handler behaves for one event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    Ok,
    AlwaysRetry,
    Reject,
    /// The first run never returns (the invocation is killed at its deadline).
    StallFirstRun,
}

#[derive(Debug, Default)]
struct Counts {
    started: HashMap<String, usize>,
    succeeded: HashMap<String, usize>,
    effects: HashMap<String, usize>,
}

/// The counting handler: its side effect is one guarded write per event.
#[derive(Debug)]
struct Ledger {
    entities: Arc<dyn EntityStore>,
    plans: Mutex<HashMap<String, Plan>>,
    counts: Mutex<Counts>,
}

impl Ledger {
    fn plan(&self, event_id: &str, plan: Plan) {
        self.lock_plans().insert(event_id.to_owned(), plan);
    }
    fn lock_plans(&self) -> std::sync::MutexGuard<'_, HashMap<String, Plan>> {
        self.plans.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn lock_counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn started(&self, id: &str) -> usize {
        self.lock_counts().started.get(id).copied().unwrap_or(0)
    }
    fn succeeded(&self, id: &str) -> usize {
        self.lock_counts().succeeded.get(id).copied().unwrap_or(0)
    }
    fn effects(&self, id: &str) -> usize {
        self.lock_counts().effects.get(id).copied().unwrap_or(0)
    }
}

#[async_trait::async_trait]
impl Handler for Ledger {
    async fn handle(&self, event: &Event<'_>) -> HandlerOutcome {
        let id = event.envelope.event_id.clone();
        let run = {
            let mut c = self.lock_counts();
            let n = c.started.entry(id.clone()).or_default();
            *n += 1;
            *n
        };
        let plan = self.lock_plans().get(&id).copied().unwrap_or(Plan::Ok);
        match plan {
            Plan::AlwaysRetry => return HandlerOutcome::Retry("downstream refused".into()),
            Plan::Reject => return HandlerOutcome::Reject("unknown customer".into()),
            Plan::StallFirstRun if run == 1 => std::future::pending::<()>().await,
            Plan::StallFirstRun | Plan::Ok => {}
        }
        let state = json!({"event_id": id, "body_sha256": event.envelope.body_sha256});
        match self.entities.put_if_newer("ledger", &id, 1, &state).await {
            Ok(w) => {
                let mut c = self.lock_counts();
                if w == EntityWrite::Written {
                    *c.effects.entry(id.clone()).or_default() += 1;
                }
                *c.succeeded.entry(id).or_default() += 1;
                HandlerOutcome::Ok
            }
            Err(e) => HandlerOutcome::Retry(e.to_string()),
        }
    }
}

/// One scenario's result.
#[derive(Debug, Clone)]
pub struct FaultRow {
    /// Short name.
    pub scenario: &'static str,
    /// The fault injected.
    pub fault: &'static str,
    /// HTTP deliveries made (provider retries included).
    pub deliveries: usize,
    /// Of those, answered 2xx.
    pub acknowledged: usize,
    /// Of those, answered 5xx (the provider retries).
    pub retryable: usize,
    /// Successful handler runs.
    pub handler_runs: usize,
    /// Side effects applied.
    pub effects: usize,
    /// Messages in the dead-letter queue at the end.
    pub dead_lettered: usize,
    /// Acknowledged events neither applied nor dead-lettered.
    pub lost: usize,
    /// Side effects applied more than once.
    pub duplicated: usize,
    /// The scenario's own checks: (what, held).
    pub checks: Vec<(String, bool)>,
}

impl FaultRow {
    /// True when nothing was lost or duplicated and every check held.
    pub fn ok(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.checks.iter().all(|(_, ok)| *ok)
    }
}

struct Harness {
    parts: Parts,
    pipeline: Pipeline,
    queue_fault: Fault,
    claim_fault: Fault,
    complete_fault: Fault,
    payload_fault: Fault,
    ledger: Arc<Ledger>,
    statuses: Vec<u16>,
    acknowledged: Vec<String>,
    dead: Mutex<Vec<ReceivedMessage>>,
}

impl Harness {
    fn new(parts: Parts) -> anyhow::Result<Self> {
        let payloads = Arc::new(FaultyPayloads {
            inner: parts.payloads.clone(),
            put: Fault::default(),
        });
        let payload_fault = payloads.put.clone();
        let queue = Arc::new(FaultyQueue {
            inner: Arc::new(ClaimCheckQueue::new(parts.queue.clone(), payloads)),
            send: Fault::default(),
        });
        let queue_fault = queue.send.clone();
        let store = Arc::new(FaultyStore {
            inner: parts.store.clone(),
            claim: Fault::default(),
            complete: Fault::default(),
        });
        let (claim_fault, complete_fault) = (store.claim.clone(), store.complete.clone());
        let ledger = Arc::new(Ledger {
            entities: parts.entities.clone(),
            plans: Mutex::default(),
            counts: Mutex::default(),
        });
        let mut registry = HandlerRegistry::new();
        registry.register("stripe", "payment_intent.succeeded", ledger.clone());
        registry.register("github", "push", ledger.clone());
        let subscriptions = Arc::new(SubscriptionChanged::new(parts.entities.clone()));
        for t in SubscriptionChanged::EVENT_TYPES {
            registry.register("stripe", t, subscriptions.clone());
        }
        let sources = Sources::from_json(&samples::dev_sources_json())?;
        let clock: Arc<dyn Clock> = Arc::new(parts.clock.clone());
        let mut pipeline = Pipeline::with_handlers(
            Arc::new(StaticCatalog::new(sources)),
            queue,
            store,
            registry,
            clock,
            EventSource {
                arn: "arn:aws:sqs:us-east-1:123456789012:faults".into(),
                region: "us-east-1".into(),
                batch_size: 10,
            },
            WorkerConfig {
                lease_floor_ms: 5_000,
                lease_ceiling_ms: 30_000,
                ..Default::default()
            },
        );
        pipeline.worker = pipeline
            .worker
            .with_dead_letter_queue(parts.dead_letter.clone())
            .with_payload_store(parts.payloads.clone());
        Ok(Self {
            parts,
            pipeline,
            queue_fault,
            claim_fault,
            complete_fault,
            payload_fault,
            ledger,
            statuses: Vec::new(),
            acknowledged: Vec::new(),
            dead: Mutex::default(),
        })
    }

    fn stripe(&self, event_id: &str) -> (String, Vec<(String, String)>, Vec<u8>) {
        let body = samples::STRIPE_PAYMENT_INTENT_SUCCEEDED
            .replace("evt_3QdemoPaymentIntent0001", event_id)
            .into_bytes();
        let headers = samples::stripe_headers(DEV_STRIPE_SECRET, self.parts.clock.now_s(), &body);
        ("/webhooks/stripe".into(), headers, body)
    }

    fn stripe_event(
        &self,
        event_id: &str,
        doc: &serde_json::Value,
    ) -> (String, Vec<(String, String)>, Vec<u8>) {
        let mut doc = doc.clone();
        doc["id"] = json!(event_id);
        doc["object"] = json!("event");
        let body = doc.to_string().into_bytes();
        let headers = samples::stripe_headers(DEV_STRIPE_SECRET, self.parts.clock.now_s(), &body);
        ("/webhooks/stripe".into(), headers, body)
    }

    /// A GitHub `push` padded to `bytes` bytes.
    fn github_push(
        &self,
        delivery: &str,
        bytes: usize,
    ) -> (String, Vec<(String, String)>, Vec<u8>) {
        let mut doc: serde_json::Value =
            serde_json::from_str(samples::GITHUB_PUSH).unwrap_or_else(|_| json!({}));
        doc["padding"] = json!("");
        let base = doc.to_string().len();
        doc["padding"] = json!("x".repeat(bytes.saturating_sub(base)));
        let body = doc.to_string().into_bytes();
        let headers = samples::github_headers(
            DEV_GITHUB_SECRET,
            "push",
            delivery,
            "application/json",
            &body,
        );
        ("/webhooks/github".into(), headers, body)
    }

    /// Posts a delivery; remembers its status and, on 2xx, the event id.
    async fn deliver(
        &mut self,
        d: &(String, Vec<(String, String)>, Vec<u8>),
        event_id: &str,
    ) -> u16 {
        let reply = self.pipeline.post(&d.0, &d.1, d.2.clone()).await;
        let status = reply.status.as_u16();
        self.statuses.push(status);
        if reply.status.is_success() && !self.acknowledged.iter().any(|e| e == event_id) {
            self.acknowledged.push(event_id.to_owned());
        }
        status
    }

    async fn poll(&self) -> anyhow::Result<Vec<doorbell_worker::RecordReport>> {
        Ok(self.pipeline.poll_once().await?)
    }

    /// Waits for reported messages to become visible again (one visibility timeout), stepping
    /// the clock by `extra_ms` more (to end leases).
    async fn next_receive(&self, extra_ms: i64) {
        self.parts.clock.advance_ms(extra_ms);
        if self.parts.real_time_queue {
            tokio::time::sleep(std::time::Duration::from_millis(
                self.parts.visibility_timeout_ms as u64 + 150,
            ))
            .await;
        } else {
            self.parts
                .clock
                .advance_ms(self.parts.visibility_timeout_ms);
        }
    }

    /// Polls until `rounds` empty receives in a row, stepping time in between; returns every
    /// report.
    async fn drain(&self, extra_ms: i64) -> anyhow::Result<Vec<doorbell_worker::RecordReport>> {
        let mut all = Vec::new();
        let mut empty = 0;
        for _ in 0..40 {
            let r = self.poll().await?;
            if r.is_empty() {
                empty += 1;
                if empty >= 2 {
                    break;
                }
                self.next_receive(extra_ms).await;
            } else {
                empty = 0;
                all.extend(r);
            }
        }
        Ok(all)
    }

    /// Every message the dead-letter queue has held (received once and remembered, so repeated
    /// calls see the same set).
    async fn dead_letters(&self) -> anyhow::Result<Vec<ReceivedMessage>> {
        for _ in 0..10 {
            let batch = self.parts.dead_letter.receive(10).await?;
            if batch.is_empty() {
                break;
            }
            let mut seen = self.dead.lock().unwrap_or_else(|p| p.into_inner());
            for m in batch {
                if !seen.iter().any(|o| o.message_id == m.message_id) {
                    seen.push(m);
                }
            }
        }
        Ok(self.dead.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    async fn status_of(&self, key: &str) -> Option<Status> {
        self.parts
            .store
            .get(key)
            .await
            .ok()
            .flatten()
            .map(|r| r.status)
    }

    async fn row(
        &self,
        scenario: &'static str,
        fault: &'static str,
        ledger_events: &[&str],
        mut checks: Vec<(String, bool)>,
    ) -> anyhow::Result<FaultRow> {
        let dlq = self.dead_letters().await?;
        let dead_ids: Vec<String> = dlq
            .iter()
            .filter_map(|m| {
                let text = m.body.as_str();
                doorbell::queue::ClaimCheckPointer::parse(text)
                    .map(|p| p.event_id)
                    .or_else(|| Envelope::parse(text).ok().map(|e| e.event_id))
            })
            .collect();
        let mut lost = 0;
        let mut duplicated = 0;
        let (mut runs, mut effects) = (0, 0);
        for id in ledger_events {
            let e = self.ledger.effects(id);
            runs += self.ledger.succeeded(id);
            effects += e;
            duplicated += e.saturating_sub(1);
            if self.acknowledged.iter().any(|a| a == id)
                && e == 0
                && !dead_ids.iter().any(|d| d == id)
            {
                lost += 1;
            }
        }
        checks.push((
            "every delivery answered 2xx or 5xx (never 4xx)".into(),
            self.statuses
                .iter()
                .all(|s| (200..300).contains(s) || (500..600).contains(s)),
        ));
        Ok(FaultRow {
            scenario,
            fault,
            deliveries: self.statuses.len(),
            acknowledged: self
                .statuses
                .iter()
                .filter(|s| (200..300).contains(*s))
                .count(),
            retryable: self
                .statuses
                .iter()
                .filter(|s| (500..600).contains(*s))
                .count(),
            handler_runs: runs,
            effects,
            dead_lettered: dlq.len(),
            lost,
            duplicated,
            checks,
        })
    }
}

fn check(what: impl Into<String>, ok: bool) -> (String, bool) {
    (what.into(), ok)
}

fn outcomes(reports: &[doorbell_worker::RecordReport]) -> Vec<&'static str> {
    reports.iter().map(|r| r.outcome.name()).collect()
}

/// SQS throttled or unreachable at ingest: 503 until it heals, then the provider's retry is
/// enqueued and processed once.
async fn sqs_unavailable(parts: Parts) -> anyhow::Result<FaultRow> {
    let mut h = Harness::new(parts)?;
    let id = "evt_fault_sqs_0001";
    let d = h.stripe(id);
    h.queue_fault.outage();
    let mut during = Vec::new();
    for _ in 0..3 {
        during.push(h.deliver(&d, id).await);
    }
    let nothing_queued = h.poll().await?.is_empty();
    let nothing_recorded = h.status_of(&format!("stripe#{id}")).await.is_none();
    h.queue_fault.heal();
    let after = h.deliver(&d, id).await;
    h.drain(0).await?;
    let checks = vec![
        check("503 while SQS is down", during.iter().all(|s| *s == 503)),
        check(
            "nothing queued or recorded during the outage",
            nothing_queued && nothing_recorded,
        ),
        check("the provider's retry gets 200", after == 200),
        check("handler ran once", h.ledger.succeeded(id) == 1),
        check(
            "PROCESSED",
            h.status_of(&format!("stripe#{id}")).await == Some(Status::Processed),
        ),
    ];
    h.row(
        "sqs-unavailable-at-ingest",
        "SendMessage fails (throttled) for 3 deliveries",
        &[id],
        checks,
    )
    .await
}

/// S3 fails while claim-checking a 300 KB GitHub push: 503, then the retry is stored, read back
/// and processed once; a 262,000-byte body (over the limit once wrapped) takes the same path.
async fn s3_unavailable(parts: Parts) -> anyhow::Result<FaultRow> {
    let mut h = Harness::new(parts)?;
    let big = h.github_push("d-300k-0001", 300_000);
    let edge = h.github_push("d-262k-0001", 262_000);
    h.payload_fault.fail_next(1);
    let first = h.deliver(&big, "d-300k-0001").await;
    let retry = h.deliver(&big, "d-300k-0001").await;
    let edge_status = h.deliver(&edge, "d-262k-0001").await;
    let reports = h.drain(0).await?;
    let checks = vec![
        check("503 when the upload fails", first == 503),
        check(
            "200 for the retry and for the 262,000-byte body",
            retry == 200 && edge_status == 200,
        ),
        check(
            "both processed from the claim check (digest checked)",
            outcomes(&reports) == vec!["processed", "processed"],
        ),
        check(
            "each ran once",
            h.ledger.succeeded("d-300k-0001") == 1 && h.ledger.succeeded("d-262k-0001") == 1,
        ),
    ];
    h.row(
        "s3-unavailable-large-payload",
        "PutObject fails once for a 300 KB body",
        &["d-300k-0001", "d-262k-0001"],
        checks,
    )
    .await
}

/// DynamoDB fails the claim twice: the record is reported (never run) and the third receive
/// processes it.
async fn claim_unavailable(parts: Parts) -> anyhow::Result<FaultRow> {
    let mut h = Harness::new(parts)?;
    let id = "evt_fault_claim_0001";
    let d = h.stripe(id);
    h.deliver(&d, id).await;
    h.claim_fault.fail_next(2);
    let reports = h.drain(0).await?;
    let checks = vec![
        check(
            "reported twice, then processed",
            outcomes(&reports) == vec!["store_failed", "store_failed", "processed"],
        ),
        check("handler started once", h.ledger.started(id) == 1),
    ];
    h.row(
        "dynamodb-unavailable-during-claim",
        "claim write fails twice",
        &[id],
        checks,
    )
    .await
}

/// DynamoDB throttles the completion write twice: the worker's own retries record it; the
/// handler runs once and the message is received once.
async fn completion_throttled(parts: Parts) -> anyhow::Result<FaultRow> {
    let mut h = Harness::new(parts)?;
    let id = "evt_fault_complete_0001";
    let d = h.stripe(id);
    h.deliver(&d, id).await;
    h.complete_fault.fail_next(2);
    let reports = h.drain(0).await?;
    let checks = vec![
        check(
            "processed on the first receive",
            outcomes(&reports) == vec!["processed"],
        ),
        check("handler started once", h.ledger.started(id) == 1),
    ];
    h.row(
        "dynamodb-throttled-during-completion",
        "completion write fails twice",
        &[id],
        checks,
    )
    .await
}

/// DynamoDB is down for the completion write: the event stays IN_PROGRESS (never PROCESSED
/// without a recorded success), redeliveries inside the lease do not run it, and after the
/// lease the handler runs again; its guarded effect is applied once.
async fn completion_unavailable(parts: Parts) -> anyhow::Result<FaultRow> {
    let mut h = Harness::new(parts)?;
    let id = "evt_fault_complete_0002";
    let key = format!("stripe#{id}");
    let d = h.stripe(id);
    h.deliver(&d, id).await;
    h.complete_fault.outage();
    let first = h.poll().await?;
    let status_after = h.status_of(&key).await;
    h.complete_fault.heal();
    h.next_receive(0).await;
    let inside_lease = h.poll().await?;
    let rest = h.drain(31_000).await?;
    let checks = vec![
        check(
            "reported as store_failed",
            outcomes(&first) == vec!["store_failed"],
        ),
        check(
            "still IN_PROGRESS, not PROCESSED",
            status_after == Some(Status::InProgress),
        ),
        check(
            "a redelivery inside the lease does not run it",
            outcomes(&inside_lease) == vec!["in_progress_elsewhere"],
        ),
        check(
            "after the lease it is processed",
            outcomes(&rest).last() == Some(&"processed"),
        ),
        check(
            "PROCESSED at the end",
            h.status_of(&key).await == Some(Status::Processed),
        ),
        check(
            "handler ran twice (at-least-once), effect applied once",
            h.ledger.succeeded(id) == 2 && h.ledger.effects(id) == 1,
        ),
    ];
    h.row(
        "dynamodb-unavailable-during-completion",
        "completion write fails until healed",
        &[id],
        checks,
    )
    .await
}

/// The worker is killed after the claim (the handler never returns; the invocation ends at its
/// deadline): the lease expires and a later receive processes the event once.
async fn worker_killed(parts: Parts) -> anyhow::Result<FaultRow> {
    let mut h = Harness::new(parts)?;
    let id = "evt_fault_killed_0001";
    let key = format!("stripe#{id}");
    h.ledger.plan(id, Plan::StallFirstRun);
    let d = h.stripe(id);
    h.deliver(&d, id).await;
    let killed = tokio::time::timeout(std::time::Duration::from_millis(300), h.poll())
        .await
        .is_err();
    let held = h.status_of(&key).await == Some(Status::InProgress);
    let reports = h.drain(31_000).await?;
    let checks = vec![
        check("the first invocation was killed mid-handler", killed),
        check("the claim stayed IN_PROGRESS with its lease", held),
        check(
            "processed after the lease expired",
            outcomes(&reports).last() == Some(&"processed"),
        ),
        check(
            "started twice, succeeded once",
            h.ledger.started(id) == 2 && h.ledger.succeeded(id) == 1,
        ),
    ];
    h.row(
        "worker-killed-after-claim",
        "invocation ends at its deadline inside the handler",
        &[id],
        checks,
    )
    .await
}

/// 50 concurrent deliveries of one event through ingest, drained by 3 concurrent workers: the
/// handler runs once.
async fn concurrent_deliveries(parts: Parts) -> anyhow::Result<FaultRow> {
    let mut h = Harness::new(parts)?;
    let id = "evt_fault_concurrent_0001";
    let d = h.stripe(id);
    let replies =
        futures::future::join_all((0..50).map(|_| h.pipeline.post(&d.0, &d.1, d.2.clone()))).await;
    for r in &replies {
        h.statuses.push(r.status.as_u16());
    }
    if replies.iter().any(|r| r.status.is_success()) {
        h.acknowledged.push(id.to_owned());
    }
    let mut total = 0;
    for _ in 0..20 {
        let rounds = futures::future::join_all((0..3).map(|_| h.poll())).await;
        let mut n = 0;
        for r in rounds {
            n += r?.len();
        }
        total += n;
        if n == 0 {
            if total >= 50 {
                break;
            }
            h.next_receive(31_000).await;
        }
    }
    let checks = vec![
        check(
            "all 50 answered 200",
            replies.iter().all(|r| r.status.as_u16() == 200),
        ),
        check("all 50 messages consumed", total >= 50),
        check("handler started once", h.ledger.started(id) == 1),
    ];
    h.row(
        "50-concurrent-deliveries",
        "same event 50 times at once, 3 workers",
        &[id],
        checks,
    )
    .await
}

/// A poison event in a batch of four: the other three are processed on the first receive; the
/// poison one reaches the dead-letter queue after `maxReceiveCount` receives.
async fn poison(parts: Parts) -> anyhow::Result<FaultRow> {
    let mut h = Harness::new(parts)?;
    let ids = [
        "evt_fault_batch_0001",
        "evt_fault_poison_0001",
        "evt_fault_batch_0002",
        "evt_fault_batch_0003",
    ];
    h.ledger.plan(ids[1], Plan::AlwaysRetry);
    for id in ids {
        let d = h.stripe(id);
        h.deliver(&d, id).await;
    }
    let first = h.poll().await?;
    let good_once = [ids[0], ids[2], ids[3]]
        .iter()
        .all(|i| h.ledger.succeeded(i) == 1);
    h.drain(0).await?;
    let dlq = h.dead_letters().await?;
    let checks = vec![
        check("one batch of four", first.len() == 4),
        check("the other three processed on the first receive", good_once),
        check(
            "the poison event ran maxReceiveCount times",
            h.ledger.started(ids[1]) == MAX_RECEIVE_COUNT as usize,
        ),
        check(
            "the poison event is in the dead-letter queue",
            dlq.len() == 1,
        ),
        check(
            "FAILED",
            h.status_of(&format!("stripe#{}", ids[1])).await == Some(Status::Failed),
        ),
    ];
    h.row(
        "poison-event",
        "handler always fails for one event of a batch",
        &[ids[0], ids[2], ids[3]],
        checks,
    )
    .await
}

/// A handler rejects an event: FAILED, dead-lettered on its first receive.
async fn rejected(parts: Parts) -> anyhow::Result<FaultRow> {
    let mut h = Harness::new(parts)?;
    let id = "evt_fault_reject_0001";
    h.ledger.plan(id, Plan::Reject);
    let d = h.stripe(id);
    h.deliver(&d, id).await;
    let first = h.poll().await?;
    let again = h.drain(0).await?;
    let dlq = h.dead_letters().await?;
    let reason = dlq.first().and_then(|m| {
        m.attributes
            .iter()
            .find(|(k, _)| k == "rejected_reason")
            .map(|(_, v)| v.clone())
    });
    let checks = vec![
        check(
            "rejected on the first receive",
            outcomes(&first) == vec!["rejected"],
        ),
        check(
            "never received again",
            again.is_empty() && h.ledger.started(id) == 1,
        ),
        check(
            "in the dead-letter queue with its reason",
            dlq.len() == 1 && reason.as_deref() == Some("unknown customer"),
        ),
        check(
            "FAILED",
            h.status_of(&format!("stripe#{id}")).await == Some(Status::Failed),
        ),
    ];
    h.row("rejected-event", "handler returns Reject", &[], checks)
        .await
}

fn subscription(kind: &str, created: i64, sub: &str, status: &str) -> serde_json::Value {
    json!({
        "api_version": "2024-06-20", "created": created, "livemode": false,
        "type": format!("customer.subscription.{kind}"),
        "data": {"object": {
            "id": sub, "object": "subscription", "status": status, "customer": "cus_fault",
            "cancel_at_period_end": false,
            "items": {"object": "list", "data": [{"price": {"id": format!("price_{status}")}}]}
        }}
    })
}

/// Out-of-order deliveries: a subscription deleted before it is created and updated; another
/// updated twice in reverse order. The final state is the newest, and the deletion stays.
async fn out_of_order(parts: Parts) -> anyhow::Result<FaultRow> {
    let mut h = Harness::new(parts)?;
    let t = h.parts.clock.now_s() - 60;
    let sends = [
        (
            "evt_ooo_a3",
            subscription("deleted", t + 3, "sub_a", "canceled"),
        ),
        (
            "evt_ooo_a1",
            subscription("created", t + 1, "sub_a", "incomplete"),
        ),
        (
            "evt_ooo_a2",
            subscription("updated", t + 2, "sub_a", "active"),
        ),
        (
            "evt_ooo_b5",
            subscription("updated", t + 5, "sub_b", "past_due"),
        ),
        (
            "evt_ooo_b4",
            subscription("updated", t + 4, "sub_b", "active"),
        ),
        (
            "evt_ooo_b1",
            subscription("created", t + 1, "sub_b", "incomplete"),
        ),
    ];
    for (id, doc) in &sends {
        let d = h.stripe_event(id, doc);
        h.deliver(&d, id).await;
        // One at a time, in this order, as a provider's retries can deliver them.
        h.drain(0).await?;
    }
    let a = h.parts.entities.get_entity("subscription", "sub_a").await?;
    let b = h.parts.entities.get_entity("subscription", "sub_b").await?;
    let checks = vec![
        check(
            "sub_a stays deleted (canceled) after its late created and updated",
            a.as_ref()
                .is_some_and(|e| e.deleted && e.state["status"] == "canceled"),
        ),
        check(
            "sub_b ends past_due (the newest update), not active or incomplete",
            b.as_ref()
                .is_some_and(|e| !e.deleted && e.state["status"] == "past_due"),
        ),
        check("every event processed once", {
            let mut all = true;
            for (id, _) in &sends {
                all &= h.status_of(&format!("stripe#{id}")).await == Some(Status::Processed);
            }
            all
        }),
    ];
    h.row(
        "out-of-order",
        "deleted before created; updates in reverse",
        &[],
        checks,
    )
    .await
}

/// The scenarios' names, in order.
pub const SCENARIOS: [&str; 10] = [
    "sqs-unavailable-at-ingest",
    "s3-unavailable-large-payload",
    "dynamodb-unavailable-during-claim",
    "dynamodb-throttled-during-completion",
    "dynamodb-unavailable-during-completion",
    "worker-killed-after-claim",
    "50-concurrent-deliveries",
    "poison-event",
    "rejected-event",
    "out-of-order",
];

/// Runs every scenario, each on fresh parts from `make`.
///
/// # Errors
/// When parts cannot be built or a queue or store call fails outside an injected fault.
pub async fn run_all<F, Fut>(make: F) -> anyhow::Result<Vec<FaultRow>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Parts>>,
{
    Ok(vec![
        sqs_unavailable(make().await?).await?,
        s3_unavailable(make().await?).await?,
        claim_unavailable(make().await?).await?,
        completion_throttled(make().await?).await?,
        completion_unavailable(make().await?).await?,
        worker_killed(make().await?).await?,
        concurrent_deliveries(make().await?).await?,
        poison(make().await?).await?,
        rejected(make().await?).await?,
        out_of_order(make().await?).await?,
    ])
}

/// Prints `rows` as a table with every failed check; returns whether all are ok.
///
/// # Errors
/// When `out` fails.
pub fn print(out: &mut dyn Write, rows: &[FaultRow]) -> std::io::Result<bool> {
    writeln!(
        out,
        "{:<39} {:>5} {:>4} {:>4} {:>5} {:>7} {:>4} {:>5} {:>5}  result",
        "fault", "sent", "2xx", "5xx", "runs", "effects", "dlq", "lost", "dup"
    )?;
    let mut all = true;
    for r in rows {
        let ok = r.ok();
        all &= ok;
        writeln!(
            out,
            "{:<39} {:>5} {:>4} {:>4} {:>5} {:>7} {:>4} {:>5} {:>5}  {}",
            r.scenario,
            r.deliveries,
            r.acknowledged,
            r.retryable,
            r.handler_runs,
            r.effects,
            r.dead_lettered,
            r.lost,
            r.duplicated,
            if ok { "ok" } else { "FAILED" }
        )?;
        writeln!(out, "    {}", r.fault)?;
        for (what, held) in &r.checks {
            if !held {
                writeln!(out, "    check failed: {what}")?;
            }
        }
    }
    let lost: usize = rows.iter().map(|r| r.lost).sum();
    let dup: usize = rows.iter().map(|r| r.duplicated).sum();
    writeln!(out)?;
    writeln!(out, "events lost: {lost}; side effects duplicated: {dup}")?;
    writeln!(
        out,
        "{}",
        if all {
            "demo --faults: every guarantee held"
        } else {
            "demo --faults: a guarantee did not hold"
        }
    )?;
    Ok(all)
}

/// `doorbell demo --faults`: every scenario on the in-process pipeline.
///
/// # Errors
/// As [`run_all`], or when `out` fails.
pub async fn run(out: &mut dyn Write) -> anyhow::Result<bool> {
    writeln!(
        out,
        "Doorbell demo --faults: each fault on a fresh local pipeline (queue with maxReceiveCount {MAX_RECEIVE_COUNT} and a dead-letter queue, SQLite, claim-check store)"
    )?;
    writeln!(out)?;
    let rows = run_all(|| async { local_parts() }).await?;
    Ok(print(out, &rows)?)
}
