//! # doorbell-worker
//!
//! The worker function: an SQS batch in, a partial batch response out.
//!
//! Contract, per record (records run concurrently, up to [`WorkerConfig::max_concurrency`]):
//!
//! 0. the batch's envelopes (replays excepted) are archived with one write
//!    ([`Worker::with_archive`]); if that fails, their records are reported without running;
//! 1. read the envelope: a claim-check pointer is resolved from the payload store (S3; size and
//!    SHA-256 checked, [`doorbell::queue::claim_check::resolve`]), then parsed
//!    ([`doorbell::Envelope::parse`], body digest checked); a message that is not an envelope,
//!    or whose stored payload is gone or altered, is reported as failed, so after
//!    `maxReceiveCount` receives SQS moves it to the dead-letter queue; a payload store that
//!    is unavailable is reported too (retried);
//! 2. claim its idempotency key (for a replay, `@replay#{replay_id}#{key}`, so a replay runs
//!    even when the event is `PROCESSED`, once per replay id; once it ran, the event's own
//!    record takes its outcome, [`doorbell::store::EventStore::record_replay`]) in the event store, with a lease that ends when this invocation
//!    must end (the Lambda deadline), clamped to [`WorkerConfig::lease_floor_ms`] and
//!    [`WorkerConfig::lease_ceiling_ms`];
//!    - already `PROCESSED` → acknowledged, nothing runs (a duplicate delivery);
//!    - held by a live lease elsewhere → reported, SQS delivers it again later;
//!    - same key, another event type or body ([`doorbell::store::decide`]) → a conflict:
//!      nothing runs, the record counts it, and the message is sent to the dead-letter queue
//!      with reason `conflict` (metric `IdempotencyConflict`) for the operator to decide, then
//!      acknowledged ([`RecordOutcome::Conflict`]); if that send fails, or there is no
//!      dead-letter queue, the record is reported, so the redrive policy moves it there: a
//!      conflicting delivery is never deleted;
//!    - store unavailable → reported;
//! 3. run the handler registered for `(source, event type)`; none → `PROCESSED`, outcome
//!    `ignored`;
//! 4. handler `Ok` → `PROCESSED`; `Retry`/panic → `FAILED` with the reason, reported;
//!    `Reject` → `FAILED` with the reason and the message sent straight to the dead-letter
//!    queue ([`Worker::with_dead_letter_queue`]) and acknowledged, so no receives are burnt
//!    on an event that can never succeed ([`RecordOutcome::Rejected`]); if that send fails, or
//!    no dead-letter queue is configured, the record is reported like `Retry`. A later redrive
//!    from the dead-letter queue claims the `FAILED` event and runs it again.
//!
//! FIFO queues (records with `MessageGroupId`): each message group runs in order; after the first
//! failure in a group the group's later records are reported without running
//! ([`RecordOutcome::BlockedByGroup`]), other groups go on.
//!
//! The response is `{"batchItemFailures":[{"itemIdentifier":"<messageId>"}…]}` (the SQS event
//! source mapping needs `FunctionResponseTypes: [ReportBatchItemFailures]`). One bad record
//! never fails the batch: the function itself never returns an error for a record's sake.
//!
//! Each record publishes one metrics document ([`doorbell::metrics`], [`Worker::with_metrics`]):
//! one of `Processed`, `Ignored`, `Duplicate`, `Failed` (handler or store failed, not an
//! envelope), `Deferred` (in progress elsewhere, blocked by its FIFO group) or `DeadLettered`
//! (with `Conflict` for a conflict), plus `HandlerDuration` when a handler ran and `QueueLag`
//! when the record left the queue; dimensions `source` (`unknown` when the envelope did not
//! parse) and `outcome` ([`RecordOutcome::name`]).
//!
//! [`poller`] does what Lambda's SQS event source mapping does (receive, invoke, delete the
//! records not reported), for the local pipeline and the integration tests.

pub mod config;
pub mod handlers;
pub mod poller;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use doorbell::archive::Archive;
use doorbell::clock::Clock;
use doorbell::envelope::Envelope;
use doorbell::handler::{Event, HandlerOutcome, HandlerRegistry};
use doorbell::metrics::{self, MetricsDoc, MetricsSink, NoMetrics};
use doorbell::payload::PayloadStore;
use doorbell::queue::claim_check::{ClaimCheckError, resolve};
use doorbell::queue::{EventQueue, OutgoingMessage};
use doorbell::store::{ClaimOutcome, ClaimRequest, EventStore, MAX_STORED_PAYLOAD_BYTES};
use futures::{FutureExt, StreamExt};

/// Longest pause between attempts to record a completion, **milliseconds**.
const COMPLETE_RETRY_MAX_BACKOFF_MS: i64 = 200;

/// Indices of `records` grouped by idempotency key, groups in order of first appearance.
/// A record whose key cannot be read is a group of its own.
fn group_by_key(records: &[SqsMessage]) -> Vec<Vec<usize>> {
    #[derive(serde::Deserialize)]
    struct Key<'a> {
        #[serde(borrow)]
        idempotency_key: std::borrow::Cow<'a, str>,
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut by_key: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (i, r) in records.iter().enumerate() {
        let key = r
            .body
            .as_deref()
            .and_then(|b| serde_json::from_str::<Key<'_>>(b).ok());
        match key {
            Some(k) => {
                let g = *by_key
                    .entry(k.idempotency_key.into_owned())
                    .or_insert_with(|| {
                        groups.push(Vec::new());
                        groups.len() - 1
                    });
                groups[g].push(i);
            }
            None => groups.push(vec![i]),
        }
    }
    groups
}

/// For a FIFO batch (records carry `MessageGroupId`), indices grouped by message group in order
/// of first appearance; `None` for a standard queue.
fn group_by_message_group(records: &[SqsMessage]) -> Option<Vec<Vec<usize>>> {
    if !records
        .iter()
        .any(|r| r.attributes.contains_key("MessageGroupId"))
    {
        return None;
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut by_group: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, r) in records.iter().enumerate() {
        let id = r
            .attributes
            .get("MessageGroupId")
            .map_or("", String::as_str);
        let g = *by_group.entry(id).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    Some(groups)
}

/// Worker tuning.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Records processed at once.
    pub max_concurrency: usize,
    /// Shortest lease, **milliseconds** (even when the deadline is closer).
    pub lease_floor_ms: i64,
    /// Longest lease, **milliseconds**; keep it at most the queue's visibility timeout.
    pub lease_ceiling_ms: i64,
    /// How long a processed event is remembered (the TTL), **seconds**; longer than every
    /// provider's retry window (Stripe retries for up to 3 days).
    pub dedupe_window_s: i64,
    /// An `IN_PROGRESS` record written without a lease is stale after this long, **ms**.
    pub stale_after_ms: i64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            max_concurrency: 10,
            lease_floor_ms: 5_000,
            lease_ceiling_ms: 900_000,
            dedupe_window_s: 7 * 24 * 3600,
            stale_after_ms: 900_000,
        }
    }
}

/// What happened to one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Claimed and its handler succeeded.
    Processed,
    /// Claimed; no handler for its type.
    Ignored,
    /// Already processed: acknowledged without running anything.
    Duplicate,
    /// Another attempt holds a live lease: reported for retry.
    InProgressElsewhere,
    /// Same key, another event type or body: not run, sent to the dead-letter queue with
    /// reason `conflict` and acknowledged.
    Conflict(String),
    /// The handler failed (or panicked): `FAILED`, reported.
    HandlerFailed(String),
    /// Not an envelope: reported (ends in the dead-letter queue).
    BadEnvelope(String),
    /// The event store failed: reported.
    StoreFailed(String),
    /// Not run: an earlier record of its FIFO message group failed in this batch, so it is
    /// reported to keep the group's order (SQS FIFO delivers it again after that record).
    BlockedByGroup,
    /// The handler rejected it (permanent failure): `FAILED`, sent to the dead-letter queue and
    /// acknowledged.
    Rejected(String),
}

impl RecordOutcome {
    /// True when the record is returned in `batchItemFailures`.
    pub fn is_reported(&self) -> bool {
        matches!(
            self,
            RecordOutcome::InProgressElsewhere
                | RecordOutcome::HandlerFailed(_)
                | RecordOutcome::BadEnvelope(_)
                | RecordOutcome::StoreFailed(_)
                | RecordOutcome::BlockedByGroup
        )
    }

    /// Why the record failed (empty when it did not).
    pub fn reason(&self) -> &str {
        match self {
            RecordOutcome::HandlerFailed(r)
            | RecordOutcome::BadEnvelope(r)
            | RecordOutcome::StoreFailed(r)
            | RecordOutcome::Rejected(r)
            | RecordOutcome::Conflict(r) => r,
            _ => "",
        }
    }

    /// A short name for logs: `processed`, `ignored`, `duplicate`, …
    pub fn name(&self) -> &'static str {
        match self {
            RecordOutcome::Processed => "processed",
            RecordOutcome::Ignored => "ignored",
            RecordOutcome::Duplicate => "duplicate",
            RecordOutcome::InProgressElsewhere => "in_progress_elsewhere",
            RecordOutcome::Conflict(_) => "conflict",
            RecordOutcome::HandlerFailed(_) => "handler_failed",
            RecordOutcome::BadEnvelope(_) => "bad_envelope",
            RecordOutcome::StoreFailed(_) => "store_failed",
            RecordOutcome::BlockedByGroup => "blocked_by_group",
            RecordOutcome::Rejected(_) => "rejected",
        }
    }
}

/// Why a message goes straight to the dead-letter queue.
#[derive(Debug, Clone, Copy)]
enum DeadLetterReason {
    /// The handler returned `Reject`.
    Rejected,
    /// A claim found the key taken by another event type or body.
    Conflict,
}

impl DeadLetterReason {
    fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::Rejected => "rejected",
            DeadLetterReason::Conflict => "conflict",
        }
    }

    fn metric(self) -> &'static str {
        match self {
            DeadLetterReason::Rejected => "EventRejected",
            DeadLetterReason::Conflict => "IdempotencyConflict",
        }
    }
}

/// One record's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordReport {
    /// The SQS message id.
    pub message_id: String,
    /// The envelope's idempotency key, when it parsed.
    pub idempotency_key: Option<String>,
    /// The envelope's event id, when it parsed.
    pub event_id: Option<String>,
    /// The envelope's source, when it parsed.
    pub source: Option<String>,
    /// The envelope's `received_at`, epoch **milliseconds**, when it parsed.
    pub received_at_ms: Option<i64>,
    /// How long the handler ran, **milliseconds**, when one ran.
    pub handler_ms: Option<i64>,
    /// What happened.
    pub outcome: RecordOutcome,
}

/// The worker: an event store, handlers, a clock; optionally the dead-letter queue (for
/// `Reject`) and the claim-check payload store.
#[derive(Debug, Clone)]
pub struct Worker {
    store: Arc<dyn EventStore>,
    handlers: HandlerRegistry,
    clock: Arc<dyn Clock>,
    config: WorkerConfig,
    dead_letter: Option<Arc<dyn EventQueue>>,
    payloads: Option<Arc<dyn PayloadStore>>,
    archive: Option<Arc<dyn Archive>>,
    metrics: Arc<dyn MetricsSink>,
}

impl Worker {
    /// A worker.
    pub fn new(
        store: Arc<dyn EventStore>,
        handlers: HandlerRegistry,
        clock: Arc<dyn Clock>,
        config: WorkerConfig,
    ) -> Self {
        Self {
            store,
            handlers,
            clock,
            config,
            dead_letter: None,
            payloads: None,
            archive: None,
            metrics: Arc::new(NoMetrics),
        }
    }

    /// Publishes one metrics document per record to `sink` (see the crate docs); the default
    /// is [`NoMetrics`].
    #[must_use]
    pub fn with_metrics(mut self, sink: Arc<dyn MetricsSink>) -> Self {
        self.metrics = sink;
        self
    }

    /// Sends rejected events to `queue` (the source queue's dead-letter queue) at once.
    #[must_use]
    pub fn with_dead_letter_queue(mut self, queue: Arc<dyn EventQueue>) -> Self {
        self.dead_letter = Some(queue);
        self
    }

    /// Archives every batch's envelopes in `archive` before running them
    /// ([`doorbell::archive`]).
    #[must_use]
    pub fn with_archive(mut self, archive: Arc<dyn Archive>) -> Self {
        self.archive = Some(archive);
        self
    }

    /// The handlers it runs.
    pub fn handlers(&self) -> &HandlerRegistry {
        &self.handlers
    }

    /// Reads claim-checked envelopes from `store`.
    #[must_use]
    pub fn with_payload_store(mut self, store: Arc<dyn PayloadStore>) -> Self {
        self.payloads = Some(store);
        self
    }

    /// Processes a batch; `deadline_ms` is when the invocation must end (epoch ms; Lambda's
    /// context deadline), `None` when there is none.
    pub async fn handle(&self, event: SqsEvent, deadline_ms: Option<i64>) -> SqsBatchResponse {
        self.handle_detailed(event, deadline_ms).await.0
    }

    /// Like [`Worker::handle`], also returning each record's report, in record order.
    pub async fn handle_detailed(
        &self,
        event: SqsEvent,
        deadline_ms: Option<i64>,
    ) -> (SqsBatchResponse, Vec<RecordReport>) {
        // Standard queues: records that share an idempotency key (a provider retry that landed in
        // the same batch) run one after another, so the second sees the first's outcome instead
        // of its lease; different keys run concurrently. FIFO queues: each message group runs in
        // order, and after a failure the rest of that group is reported without running; other
        // groups go on.
        let reads: Vec<_> = event.records.iter().map(|r| self.read(r)).collect();
        let read: Vec<Result<Envelope, RecordOutcome>> = futures::stream::iter(reads)
            .buffered(self.config.max_concurrency.max(1))
            .collect()
            .await;
        let read = self.archive_batch(read).await;
        let fifo = group_by_message_group(&event.records);
        let pending: Vec<_> = fifo
            .clone()
            .unwrap_or_else(|| group_by_key(&event.records))
            .into_iter()
            .map(|group| {
                self.process_group(&event.records, &read, group, deadline_ms, fifo.is_some())
            })
            .collect();
        let mut numbered: Vec<(usize, RecordReport)> = futures::stream::iter(pending)
            .buffer_unordered(self.config.max_concurrency.max(1))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .flatten()
            .collect();
        numbered.sort_by_key(|(i, _)| *i);
        let reports: Vec<RecordReport> = numbered.into_iter().map(|(_, r)| r).collect();
        let mut response = SqsBatchResponse::default();
        let done_ms = self.clock.now_ms();
        for r in &reports {
            let reason: String = r.outcome.reason().chars().take(200).collect();
            tracing::info!(
                message_id = %r.message_id, idempotency_key = r.idempotency_key.as_deref().unwrap_or(""),
                event_id = r.event_id.as_deref().unwrap_or(""), outcome = r.outcome.name(), reason = %reason, "record"
            );
            self.metrics.emit(&record_metrics(r, done_ms));
            if r.outcome.is_reported() {
                response.add_failure(r.message_id.clone());
            }
        }
        (response, reports)
    }

    /// Archives the envelopes read from a batch (replays excluded: they come from the
    /// archive) in one write. If that write fails, the records it covered are reported
    /// without running, so nothing runs that could not be shown or replayed later.
    async fn archive_batch(
        &self,
        mut read: Vec<Result<Envelope, RecordOutcome>>,
    ) -> Vec<Result<Envelope, RecordOutcome>> {
        let Some(archive) = &self.archive else {
            return read;
        };
        let fresh: Vec<Envelope> = read
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .filter(|e| e.replay_id.is_none())
            .cloned()
            .collect();
        if fresh.is_empty() {
            return read;
        }
        if let Err(e) = archive.put(&fresh, self.clock.now_ms()).await {
            tracing::error!(error = %e, envelopes = fresh.len(), metric = "ArchiveFailed", "could not archive the batch; its records are retried");
            for r in &mut read {
                if r.as_ref().is_ok_and(|e| e.replay_id.is_none()) {
                    *r = Err(RecordOutcome::StoreFailed(format!("not archived: {e}")));
                }
            }
        }
        read
    }

    async fn process_group(
        &self,
        records: &[SqsMessage],
        read: &[Result<Envelope, RecordOutcome>],
        group: Vec<usize>,
        deadline_ms: Option<i64>,
        stop_after_failure: bool,
    ) -> Vec<(usize, RecordReport)> {
        let mut out: Vec<(usize, RecordReport)> = Vec::with_capacity(group.len());
        for i in group {
            let blocked = stop_after_failure && out.iter().any(|(_, r)| r.outcome.is_reported());
            let report = if blocked {
                RecordReport {
                    message_id: records[i].message_id.clone().unwrap_or_default(),
                    idempotency_key: None,
                    event_id: None,
                    source: None,
                    received_at_ms: None,
                    handler_ms: None,
                    outcome: RecordOutcome::BlockedByGroup,
                }
            } else {
                self.process(&records[i], read[i].clone(), deadline_ms)
                    .await
            };
            out.push((i, report));
        }
        out
    }

    fn lease_expires_at(&self, now_ms: i64, deadline_ms: Option<i64>) -> i64 {
        let remaining = deadline_ms.map_or(self.config.lease_ceiling_ms, |d| d - now_ms);
        now_ms
            + remaining.clamp(
                self.config.lease_floor_ms,
                self.config.lease_ceiling_ms.max(self.config.lease_floor_ms),
            )
    }

    /// Records a success, trying again after 50, 100 and 200 ms (real time) while the store
    /// fails and the deadline allows: a handler that succeeded should not run again because of
    /// a throttled write.
    async fn complete_with_retries(
        &self,
        key: &str,
        attempt: u32,
        outcome: &str,
        done_ms: i64,
        deadline_ms: Option<i64>,
    ) -> Result<(), doorbell::store::StoreError> {
        let mut backoff_ms = 50;
        loop {
            match self.store.complete(key, attempt, outcome, done_ms).await {
                Ok(()) => return Ok(()),
                Err(e @ doorbell::store::StoreError::Unavailable { .. }) => {
                    let time_left =
                        deadline_ms.is_none_or(|d| d - self.clock.now_ms() > backoff_ms + 1_000);
                    if backoff_ms > COMPLETE_RETRY_MAX_BACKOFF_MS || !time_left {
                        return Err(e);
                    }
                    tracing::warn!(idempotency_key = %key, error = %e, "completion not recorded; trying again");
                    tokio::time::sleep(std::time::Duration::from_millis(backoff_ms as u64)).await;
                    backoff_ms *= 2;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads a record's envelope: resolves a claim-check pointer, parses and checks it.
    async fn read(&self, record: &SqsMessage) -> Result<Envelope, RecordOutcome> {
        let message_id = record.message_id.as_deref().unwrap_or_default();
        let raw = record.body.as_deref().unwrap_or("");
        let text = match resolve(raw, self.payloads.as_deref()).await {
            Ok(t) => t,
            Err(ClaimCheckError::Unavailable(e)) => {
                tracing::error!(message_id = %message_id, error = %e, "claim check unavailable");
                return Err(RecordOutcome::StoreFailed(e));
            }
            Err(e @ ClaimCheckError::Unusable(_)) => {
                tracing::error!(message_id = %message_id, error = %e, "claim check unusable");
                return Err(RecordOutcome::BadEnvelope(e.to_string()));
            }
        };
        Envelope::parse(&text).map_err(|e| {
            tracing::error!(message_id = %message_id, error = %e, "unparseable message");
            RecordOutcome::BadEnvelope(e.to_string())
        })
    }

    async fn process(
        &self,
        record: &SqsMessage,
        read: Result<Envelope, RecordOutcome>,
        deadline_ms: Option<i64>,
    ) -> RecordReport {
        let message_id = record.message_id.clone().unwrap_or_default();
        let mut report = RecordReport {
            message_id,
            idempotency_key: None,
            event_id: None,
            source: None,
            received_at_ms: None,
            handler_ms: None,
            outcome: RecordOutcome::Processed,
        };
        let envelope = match read {
            Ok(e) => e,
            Err(outcome) => {
                report.outcome = outcome;
                return report;
            }
        };
        report.idempotency_key = Some(envelope.idempotency_key.clone());
        report.event_id = Some(envelope.event_id.clone());
        report.source = Some(envelope.source.clone());
        report.received_at_ms = envelope.received_at_ms();
        report.outcome = match self
            .run(&envelope, deadline_ms, &mut report.handler_ms)
            .await
        {
            RecordOutcome::Rejected(reason) => {
                self.dead_letter(record, &envelope, DeadLetterReason::Rejected, reason)
                    .await
            }
            RecordOutcome::Conflict(reason) => {
                self.dead_letter(record, &envelope, DeadLetterReason::Conflict, reason)
                    .await
            }
            other => other,
        };
        report
    }

    /// Sends a rejected or conflicting record's message to the dead-letter queue as it came
    /// (body, source and event type attributes, FIFO group), adding `dead_letter_reason`
    /// (`rejected` or `conflict`) and, when it fits, `rejected_reason` (the detail).
    async fn dead_letter(
        &self,
        record: &SqsMessage,
        envelope: &Envelope,
        why: DeadLetterReason,
        reason: String,
    ) -> RecordOutcome {
        let Some(dlq) = &self.dead_letter else {
            return RecordOutcome::HandlerFailed(reason);
        };
        let mut message = OutgoingMessage {
            body: record.body.clone().unwrap_or_default(),
            attributes: vec![
                ("source", envelope.source.clone()),
                ("event_type", envelope.event_type.clone()),
                ("dead_letter_reason", why.as_str().to_owned()),
                ("rejected_reason", reason.chars().take(256).collect()),
            ],
            group_id: record.attributes.get("MessageGroupId").cloned(),
            deduplication_id: dlq.is_fifo().then(|| {
                record
                    .message_id
                    .clone()
                    .unwrap_or_else(|| envelope.body_sha256.clone())
            }),
        };
        if message.size_bytes() > dlq.max_message_bytes() {
            message.attributes.pop();
        }
        match dlq.send(message).await {
            Ok(_) => {
                tracing::warn!(
                    idempotency_key = %envelope.idempotency_key, event_id = %envelope.event_id,
                    reason = %reason, metric = why.metric(), "{}; sent to the dead-letter queue", why.as_str()
                );
                match why {
                    DeadLetterReason::Rejected => RecordOutcome::Rejected(reason),
                    DeadLetterReason::Conflict => RecordOutcome::Conflict(reason),
                }
            }
            Err(e) => {
                tracing::error!(idempotency_key = %envelope.idempotency_key, error = %e, "could not dead-letter the event; it will be retried");
                RecordOutcome::HandlerFailed(format!("{reason} (dead-letter send failed: {e})"))
            }
        }
    }

    /// After a replay ran: the event's own record takes the replay's outcome, so a failed or
    /// ignored event that a replay handled is no longer listed as needing attention. Best
    /// effort: the replay itself is done whatever this write does.
    async fn record_replay(&self, envelope: &Envelope, outcome: &str, now_ms: i64) {
        match self
            .store
            .record_replay(&envelope.idempotency_key, outcome, now_ms)
            .await
        {
            Ok(_) => {}
            Err(e) => tracing::warn!(
                idempotency_key = %envelope.idempotency_key, error = %e,
                "replay done, but the event's record could not be updated"
            ),
        }
    }

    /// Claims and runs one envelope; sets `handler_ms` when a handler ran.
    async fn run(
        &self,
        envelope: &Envelope,
        deadline_ms: Option<i64>,
        handler_ms: &mut Option<i64>,
    ) -> RecordOutcome {
        // Envelope::parse checked the body, so this cannot fail here.
        let Ok(body) = envelope.body_bytes() else {
            return RecordOutcome::BadEnvelope("undecodable body".into());
        };
        let now_ms = self.clock.now_ms();
        let payload = envelope
            .body
            .as_ref()
            .filter(|b| b.len() <= MAX_STORED_PAYLOAD_BYTES)
            .cloned();
        let claim = ClaimRequest {
            key: envelope.claim_key(),
            source: envelope.source.clone(),
            provider: envelope.provider.clone(),
            event_id: envelope.event_id.clone(),
            event_type: envelope.event_type.clone(),
            body_sha256: envelope.body_sha256.clone(),
            received_at: envelope.received_at.clone(),
            payload,
            now_ms,
            lease_expires_at_ms: self.lease_expires_at(now_ms, deadline_ms),
            expires_at_s: now_ms.div_euclid(1000) + self.config.dedupe_window_s,
            stale_after_ms: self.config.stale_after_ms,
            content_keyed: envelope.key_is_content_digest(),
        };
        let attempt = match self.store.claim(&claim).await {
            Ok(ClaimOutcome::Claimed { attempts }) => attempts,
            Ok(ClaimOutcome::Duplicate) => return RecordOutcome::Duplicate,
            Ok(ClaimOutcome::InProgress { .. }) => return RecordOutcome::InProgressElsewhere,
            Ok(ClaimOutcome::Conflict {
                stored_sha256,
                stored_event_type,
            }) => {
                if let Err(e) = self.store.record_conflict(&claim.key, now_ms).await {
                    tracing::error!(idempotency_key = %claim.key, error = %e, "could not count the conflict");
                }
                return RecordOutcome::Conflict(format!(
                    "conflict: {} was first received as {} with body sha256 {}; this delivery is {} with body sha256 {}",
                    claim.key,
                    stored_event_type,
                    stored_sha256,
                    claim.event_type,
                    claim.body_sha256
                ));
            }
            Err(e) => return RecordOutcome::StoreFailed(e.to_string()),
        };

        let (result, outcome_name) = match self.handlers.get(&envelope.source, &envelope.event_type)
        {
            None => (HandlerOutcome::Ok, "ignored"),
            Some(handler) => {
                let event = Event {
                    envelope,
                    body: &body,
                };
                let started_ms = self.clock.now_ms();
                let r = AssertUnwindSafe(handler.handle(&event))
                    .catch_unwind()
                    .await;
                *handler_ms = Some(self.clock.now_ms() - started_ms);
                (
                    r.unwrap_or_else(|_| HandlerOutcome::Retry("handler panicked".into())),
                    "handled",
                )
            }
        };
        let done_ms = self.clock.now_ms();
        match result {
            HandlerOutcome::Ok => match self
                .complete_with_retries(&claim.key, attempt, outcome_name, done_ms, deadline_ms)
                .await
            {
                Ok(()) => {
                    if envelope.replay_id.is_some() {
                        self.record_replay(envelope, outcome_name, done_ms).await;
                    }
                    if outcome_name == "ignored" {
                        RecordOutcome::Ignored
                    } else {
                        RecordOutcome::Processed
                    }
                }
                Err(e) => {
                    // The handler succeeded but the store did not record it: the record stays
                    // IN_PROGRESS until its lease ends, then a redelivery runs it again
                    // (at-least-once); the handler's own writes go through the ordering guard.
                    tracing::error!(
                        idempotency_key = %claim.key, error = %e, metric = "CompletionNotRecorded",
                        "handler succeeded but its completion could not be recorded"
                    );
                    RecordOutcome::StoreFailed(e.to_string())
                }
            },
            HandlerOutcome::Retry(reason) => {
                if let Err(e) = self.store.fail(&claim.key, attempt, &reason, done_ms).await {
                    tracing::error!(idempotency_key = %claim.key, error = %e, "could not record the failure");
                }
                RecordOutcome::HandlerFailed(reason)
            }
            HandlerOutcome::Reject(reason) => {
                if let Err(e) = self.store.fail(&claim.key, attempt, &reason, done_ms).await {
                    // The lease stays until it expires; the record is retried, not dead-lettered.
                    tracing::error!(idempotency_key = %claim.key, error = %e, "could not record the rejection");
                    return RecordOutcome::HandlerFailed(reason);
                }
                RecordOutcome::Rejected(reason)
            }
        }
    }
}

/// One record's metrics document at `done_ms` (epoch **milliseconds**, when its batch ended):
/// its outcome's counter, `HandlerDuration` when a handler ran, `QueueLag` when the record left
/// the queue; per `source` and `outcome`, and in total. No id or key goes in.
fn record_metrics(r: &RecordReport, done_ms: i64) -> MetricsDoc {
    let sets: &[&[&str]] = &[&[metrics::SOURCE, metrics::OUTCOME], &[]];
    let mut doc = MetricsDoc::new(done_ms)
        .dimension(
            metrics::SOURCE,
            r.source.as_deref().unwrap_or(metrics::UNKNOWN_SOURCE),
        )
        .dimension(metrics::OUTCOME, r.outcome.name());
    let counters: &[metrics::Metric] = match &r.outcome {
        RecordOutcome::Processed => &[metrics::PROCESSED],
        RecordOutcome::Ignored => &[metrics::IGNORED],
        RecordOutcome::Duplicate => &[metrics::DUPLICATE],
        RecordOutcome::HandlerFailed(_)
        | RecordOutcome::BadEnvelope(_)
        | RecordOutcome::StoreFailed(_) => &[metrics::FAILED],
        RecordOutcome::InProgressElsewhere | RecordOutcome::BlockedByGroup => &[metrics::DEFERRED],
        RecordOutcome::Rejected(_) => &[metrics::DEAD_LETTERED],
        RecordOutcome::Conflict(_) => &[metrics::DEAD_LETTERED, metrics::CONFLICT],
    };
    for &m in counters {
        doc = doc.put(sets, m, 1);
    }
    if let Some(ms) = r.handler_ms {
        doc = doc.put(sets, metrics::HANDLER_DURATION, ms.max(0));
    }
    if let Some(received) = r.received_at_ms.filter(|_| !r.outcome.is_reported()) {
        doc = doc.put(sets, metrics::QUEUE_LAG, (done_ms - received).max(0));
    }
    doc
}
