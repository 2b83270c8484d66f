//! The operations layer: find any event, see why it failed, redrive the dead-letter queue,
//! replay archived events, and count what happened. `doorbell events`, `dlq`, `replay` and
//! `status` are thin views over [`Ops`]; none of them talks to SQS,
//! DynamoDB or SQLite itself.
//!
//! [`Ops`] works over ports, each with a local (SQLite, [`local`]) and an AWS adapter ([`aws`]):
//! - [`crate::store::EventStore`]: one record by key;
//! - [`EventIndex`]: the records that need attention (failed, conflicts) without a scan, and
//!   many records by key;
//! - [`crate::archive::Archive`]: every verified envelope, for history, bodies and replays;
//! - [`crate::queue::EventQueue`] for the events queue and the dead-letter queue
//!   ([`EventQueue::take`], [`EventQueue::release`], [`EventQueue::stats`]);
//! - [`Counters`]: events by source and status over a time window.
//!
//! **Status of a listed event** ([`EventStatus`]), from the record under its key and the
//! delivery the archive holds: `processed` (a handler ran), `ignored` (no handler was
//! registered), `failed`, `in-progress`, `conflict` (another body or type under a key already
//! taken; or, for the record, one that refused such a delivery), `dead-lettered` (its message is
//! in the dead-letter queue), `received` (archived, not yet claimed).
//!
//! **Redrive** ([`Ops::redrive`]) takes the dead-letter queue's messages a batch at a time,
//! hidden for the hold time; for each selected message it sends a copy to the events queue and
//! deletes the original only after that send succeeded. An interruption therefore never loses
//! a message; at worst a message is in both queues, and the worker's idempotency claim runs
//! its handler once. Messages whose event is already `PROCESSED` are skipped (reported, left
//! in the dead-letter queue). Everything not moved is made visible again at the end.
//!
//! **Replay** ([`Ops::replay`]) sends archived envelopes to the events queue with a replay id
//! ([`Envelope::replay_id`]): the worker runs each once per replay id, even for a `PROCESSED`
//! key.
//!
//! Units: `*_ms` epoch **milliseconds**; hold times **seconds**; rates per **second**.

#[cfg(feature = "ops-aws")]
pub mod aws;
pub mod local;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::archive::{Archive, ArchiveError, ArchiveQuery};
use crate::clock::{Clock, rfc3339_ms};
use crate::envelope::Envelope;
use crate::payload::PayloadStore;
use crate::queue::claim_check::resolve;
use crate::queue::{EventQueue, OutgoingMessage, QueueError, QueueStats, ReceivedMessage};
use crate::store::{EventRecord, EventStore, Status, StoreError};

/// Longest time a listing looks back when no `--since` is given, ms (24 hours).
pub const DEFAULT_LOOKBACK_MS: i64 = 24 * 3600 * 1000;
/// Most dead-letter messages one listing or redrive looks at.
pub const MAX_DEAD_LETTERS: usize = 10_000;
/// Most archived deliveries one listing reads.
pub const MAX_ARCHIVE_SCAN: usize = 100_000;

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The event store or index failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The archive failed.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// Metrics could not be read.
    #[error("counters unavailable: {0}")]
    Counters(String),
    /// Bad input: a filter, a time, an id.
    #[error("{0}")]
    Invalid(String),
    /// Writing the audit file failed.
    #[error("audit: {0}")]
    Audit(String),
}

/// An event's status as the operations commands show it; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventStatus {
    /// A handler ran and succeeded.
    Processed,
    /// Processed with no handler registered for its type.
    Ignored,
    /// The handler failed; it will be retried (or is in the dead-letter queue).
    Failed,
    /// A worker holds its claim.
    InProgress,
    /// A delivery refused because its key was taken by another body or type.
    Conflict,
    /// Its message is in the dead-letter queue.
    DeadLettered,
    /// Archived, not yet claimed by a worker.
    Received,
}

impl EventStatus {
    /// Every status, in display order.
    pub const ALL: [EventStatus; 7] = [
        EventStatus::Processed,
        EventStatus::Ignored,
        EventStatus::Failed,
        EventStatus::InProgress,
        EventStatus::Conflict,
        EventStatus::DeadLettered,
        EventStatus::Received,
    ];

    /// `processed`, `ignored`, `failed`, `in-progress`, `conflict`, `dead-lettered`, `received`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Processed => "processed",
            EventStatus::Ignored => "ignored",
            EventStatus::Failed => "failed",
            EventStatus::InProgress => "in-progress",
            EventStatus::Conflict => "conflict",
            EventStatus::DeadLettered => "dead-lettered",
            EventStatus::Received => "received",
        }
    }

    /// Parses [`EventStatus::as_str`] (also with `_` for `-`).
    ///
    /// # Errors
    /// [`OpsError::Invalid`] naming the allowed values.
    pub fn parse(s: &str) -> Result<Self, OpsError> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == norm)
            .ok_or_else(|| {
                OpsError::Invalid(format!(
                    "unknown status {s:?}; expected one of {}",
                    Self::ALL.map(EventStatus::as_str).join(", ")
                ))
            })
    }

    /// The status of `record` on its own.
    pub fn of_record(record: &EventRecord) -> Self {
        Self::of_state(record.status, record.outcome.as_deref())
    }

    /// The status of a record in `status` with `outcome` (`handled`, `ignored`).
    pub fn of_state(status: Status, outcome: Option<&str>) -> Self {
        match status {
            Status::InProgress => EventStatus::InProgress,
            Status::Failed => EventStatus::Failed,
            Status::Processed if outcome == Some("ignored") => EventStatus::Ignored,
            Status::Processed => EventStatus::Processed,
        }
    }

    /// The status of the archived delivery `envelope` given the record under its key: a
    /// delivery whose type or (where the key does not pin the content) body differs from the
    /// record's is a refused conflict.
    pub fn of_delivery(envelope: &Envelope, record: Option<&EventRecord>) -> Self {
        let Some(r) = record else {
            return EventStatus::Received;
        };
        let other_content =
            !envelope.key_is_content_digest() && r.body_sha256 != envelope.body_sha256;
        if r.event_type != envelope.event_type || other_content {
            return EventStatus::Conflict;
        }
        Self::of_record(r)
    }
}

impl fmt::Display for EventStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses a time for `--since`/`--until`: RFC 3339 (`2026-12-03T08:00:00Z`), or a duration
/// before `now_ms` (`90s`, `15m`, `1h`, `2d`, `1h 30m`). Returns epoch ms.
///
/// # Errors
/// [`OpsError::Invalid`] saying what is accepted.
pub fn parse_time(text: &str, now_ms: i64) -> Result<i64, OpsError> {
    let t = text.trim();
    if let Some(ms) = crate::envelope::parse_rfc3339_ms(t) {
        return Ok(ms);
    }
    if let Ok(d) = humantime::parse_duration(t) {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        return Ok(now_ms.saturating_sub(ms));
    }
    Err(OpsError::Invalid(format!(
        "{t:?} is not a time: use RFC 3339 (2026-12-03T08:00:00Z) or a duration ago (90s, 15m, 1h, 2d)"
    )))
}

/// Which events a command acts on. Empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Any of these statuses.
    pub statuses: Vec<EventStatus>,
    /// This source.
    pub source: Option<String>,
    /// Event types matching this glob (`*`, `?`, `[…]`), e.g. `invoice.*`.
    pub event_type: Option<glob::Pattern>,
    /// Received at or after, epoch ms.
    pub since_ms: Option<i64>,
    /// Received before, epoch ms.
    pub until_ms: Option<i64>,
    /// Only these event ids or idempotency keys.
    pub ids: Vec<String>,
}

impl EventFilter {
    /// Sets the type glob.
    ///
    /// # Errors
    /// [`OpsError::Invalid`] for a malformed pattern.
    pub fn with_type_glob(mut self, pattern: &str) -> Result<Self, OpsError> {
        self.event_type = Some(
            glob::Pattern::new(pattern)
                .map_err(|e| OpsError::Invalid(format!("--type {pattern:?}: {e}")))?,
        );
        Ok(self)
    }

    /// True when every set field matches (statuses aside).
    pub fn matches_event(
        &self,
        source: &str,
        event_type: &str,
        ids: [&str; 2],
        received_ms: i64,
    ) -> bool {
        self.source.as_deref().is_none_or(|s| s == source)
            && self
                .event_type
                .as_ref()
                .is_none_or(|p| p.matches(event_type))
            && self.since_ms.is_none_or(|s| received_ms >= s)
            && self.until_ms.is_none_or(|u| received_ms < u)
            && (self.ids.is_empty() || self.ids.iter().any(|i| ids.contains(&i.as_str())))
    }

    /// True when `status` is wanted. A dead-lettered event is a failed one that ran out of
    /// receives, so asking for `failed` includes them.
    pub fn wants(&self, status: EventStatus) -> bool {
        self.statuses.is_empty()
            || self.statuses.contains(&status)
            || (status == EventStatus::DeadLettered && self.statuses.contains(&EventStatus::Failed))
    }
}

/// One line of `doorbell events ls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRow {
    /// Idempotency key.
    pub key: String,
    /// Source name.
    pub source: String,
    /// Provider event id.
    pub event_id: String,
    /// Event type.
    pub event_type: String,
    /// See [`EventStatus`].
    pub status: EventStatus,
    /// When ingest received it, RFC 3339.
    pub received_at: String,
    /// Claims so far.
    pub attempts: u32,
    /// The last handler error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Hex SHA-256 of the body.
    pub body_sha256: String,
    #[serde(skip)]
    received_ms: i64,
}

impl EventRow {
    fn from_record(r: &EventRecord, status: EventStatus) -> Self {
        Self {
            key: r.key.clone(),
            source: r.source.clone(),
            event_id: r.event_id.clone(),
            event_type: r.event_type.clone(),
            status,
            received_at: r.received_at.clone(),
            attempts: r.attempts,
            last_error: r.last_error.clone(),
            body_sha256: r.body_sha256.clone(),
            received_ms: crate::envelope::parse_rfc3339_ms(&r.received_at).unwrap_or(0),
        }
    }

    fn from_delivery(e: &Envelope, r: Option<&EventRecord>, status: EventStatus) -> Self {
        Self {
            key: e.idempotency_key.clone(),
            source: e.source.clone(),
            event_id: e.event_id.clone(),
            event_type: e.event_type.clone(),
            status,
            received_at: e.received_at.clone(),
            attempts: r.map_or(0, |r| r.attempts),
            last_error: r.and_then(|r| r.last_error.clone()),
            body_sha256: e.body_sha256.clone(),
            received_ms: e.received_at_ms().unwrap_or(0),
        }
    }

    fn cursor(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{}:{}", self.received_ms, self.key))
    }

    fn before(&self, cursor: &(i64, String)) -> bool {
        (self.received_ms, self.key.as_str()) < (cursor.0, cursor.1.as_str())
    }
}

/// One page of rows, newest first, and the cursor of the next page.
#[derive(Debug, Clone, Default)]
pub struct EventPage {
    /// The rows.
    pub rows: Vec<EventRow>,
    /// Pass as `cursor` for the next page; `None` on the last.
    pub next_cursor: Option<String>,
    /// The archive held more deliveries in the window than one listing reads
    /// ([`MAX_ARCHIVE_SCAN`]): the oldest were not looked at; narrow `--since`/`--until`.
    pub truncated: bool,
}

/// What [`EventIndex::alerts`] lists.
#[derive(Debug, Clone, Default)]
pub struct AlertQuery {
    /// Include failed records.
    pub failed: bool,
    /// Include records that refused a conflicting delivery.
    pub conflicts: bool,
    /// Only this source.
    pub source: Option<String>,
    /// Most records.
    pub limit: usize,
}

/// Listing records without a scan. See the module docs.
#[async_trait::async_trait]
pub trait EventIndex: Send + Sync + fmt::Debug {
    /// Records that need attention (failed, or that refused a conflicting delivery), most
    /// recent first: the sparse `alerts` index in DynamoDB.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    async fn alerts(&self, query: &AlertQuery) -> Result<Vec<EventRecord>, StoreError>;

    /// The records under `keys` that exist, in any order.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    async fn get_many(&self, keys: &[String]) -> Result<Vec<EventRecord>, StoreError>;
}

/// Events by source and status.
pub type Counts = BTreeMap<String, BTreeMap<EventStatus, u64>>;

/// Counting events over a window: SQL locally, CloudWatch metrics in AWS.
#[async_trait::async_trait]
pub trait Counters: Send + Sync + fmt::Debug {
    /// Events received in `[since_ms, until_ms)`, by source and status.
    ///
    /// # Errors
    /// [`OpsError::Counters`].
    async fn counts(&self, since_ms: i64, until_ms: i64) -> Result<Counts, OpsError>;

    /// Where the counts come from, for the report (`local database`, `CloudWatch`).
    fn describe(&self) -> &'static str;

    /// Age of the oldest message in the events queue and in the dead-letter queue,
    /// **seconds**, for queues whose [`QueueStats::oldest_sent_ms`] is unknown (SQS: from
    /// CloudWatch's `ApproximateAgeOfOldestMessage`). By default unknown.
    ///
    /// # Errors
    /// [`OpsError::Counters`].
    async fn oldest_ages_s(&self) -> Result<(Option<i64>, Option<i64>), OpsError> {
        Ok((None, None))
    }
}

/// A message in the dead-letter queue.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// The queue's message id.
    pub message_id: String,
    /// When it was first sent, RFC 3339.
    pub sent_at: String,
    /// Receives so far: SQS counts those in the events queue before the move and every peek
    /// since; the local queue starts again from 0 at the move.
    pub receive_count: u32,
    /// `rejected`, `conflict`, or `max-receives` (moved by the redrive policy).
    pub reason: String,
    /// The handler's or the claim's explanation, when the worker sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The envelope, when the body is one (claim-checked envelopes resolved).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envelope: Option<Envelope>,
    /// Why the body is not an envelope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
    /// The record under the envelope's key, as a status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<EventStatus>,
    #[serde(skip)]
    message: ReceivedMessage,
}

impl DeadLetter {
    /// True when the filter selects this message: its statuses are the event's status (or
    /// `dead-lettered`, which every message here is), and `--id` may also name the message id.
    fn matches(&self, filter: &EventFilter) -> bool {
        let status_ok = filter.statuses.is_empty()
            || filter.statuses.contains(&EventStatus::DeadLettered)
            || self.status.is_some_and(|s| filter.wants(s));
        if !status_ok {
            return false;
        }
        let by_message_id = filter.ids.contains(&self.message_id);
        let without_ids;
        let filter = if by_message_id {
            without_ids = EventFilter {
                ids: Vec::new(),
                ..filter.clone()
            };
            &without_ids
        } else {
            filter
        };
        match &self.envelope {
            Some(e) => filter.matches_event(
                &e.source,
                &e.event_type,
                [&e.event_id, &e.idempotency_key],
                e.received_at_ms().unwrap_or(0),
            ),
            None => {
                filter.source.is_none()
                    && filter.event_type.is_none()
                    && (filter.ids.is_empty() || filter.ids.contains(&self.message_id))
            }
        }
    }
}

/// `doorbell events show`: everything known about one event.
#[derive(Debug, Clone, Serialize)]
pub struct EventDetail {
    /// The idempotency key.
    pub key: String,
    /// The record, if one exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordView>,
    /// Where its message is now: `done`, `queue`, `dead-letter queue`, `in progress`, `unknown`.
    pub location: String,
    /// Every distinct delivery archived under the key, newest first.
    pub deliveries: Vec<Envelope>,
    /// Why the archive could not be read, when it could not (the rest is still shown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_error: Option<String>,
    /// Its messages in the dead-letter queue.
    pub dead_letters: Vec<DeadLetter>,
}

/// An [`EventRecord`] for display, times as RFC 3339.
#[derive(Debug, Clone, Serialize)]
pub struct RecordView {
    /// See [`EventStatus`].
    pub status: EventStatus,
    /// Source.
    pub source: String,
    /// Provider.
    pub provider: String,
    /// Event id.
    pub event_id: String,
    /// Event type.
    pub event_type: String,
    /// Claims so far.
    pub attempts: u32,
    /// First received.
    pub received_at: String,
    /// Completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processed_at: Option<String>,
    /// The current lease's end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_expires_at: Option<String>,
    /// Last written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// When the key is forgotten (the dedupe window's end).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// `handled` or `ignored`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The last handler error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Conflicting deliveries refused.
    pub conflicts: u32,
    /// The last of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_conflict_at: Option<String>,
    /// The first body's digest.
    pub body_sha256: String,
}

impl From<&EventRecord> for RecordView {
    fn from(r: &EventRecord) -> Self {
        Self {
            status: EventStatus::of_record(r),
            source: r.source.clone(),
            provider: r.provider.clone(),
            event_id: r.event_id.clone(),
            event_type: r.event_type.clone(),
            attempts: r.attempts,
            received_at: r.received_at.clone(),
            processed_at: r.processed_at_ms.map(rfc3339_ms),
            lease_expires_at: r.lease_expires_at_ms.map(rfc3339_ms),
            updated_at: r.updated_at_ms.map(rfc3339_ms),
            expires_at: r.expires_at_s.map(|s| rfc3339_ms(s.saturating_mul(1000))),
            outcome: r.outcome.clone(),
            last_error: r.last_error.clone(),
            conflicts: r.conflicts,
            last_conflict_at: r.last_conflict_at_ms.map(rfc3339_ms),
            body_sha256: r.body_sha256.clone(),
        }
    }
}

/// What a redrive or replay did with one message or event: one line of the `--audit` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditLine {
    /// When, RFC 3339.
    pub at: String,
    /// `moved`, `would-move`, `skipped`, `failed`, `replayed`, `would-replay`.
    pub action: &'static str,
    /// The dead-letter message id (redrive) or the new message id (replay).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Idempotency key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Event type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// Event id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The replay id (replay only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_id: Option<String>,
    /// Why it was skipped or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Where each [`AuditLine`] goes as it happens (a file, a progress bar, a test's list).
pub trait AuditSink: Send {
    /// Records one line.
    ///
    /// # Errors
    /// [`OpsError::Audit`]: the command stops before acting on anything else.
    fn record(&mut self, line: &AuditLine) -> Result<(), OpsError>;
}

impl AuditSink for Vec<AuditLine> {
    fn record(&mut self, line: &AuditLine) -> Result<(), OpsError> {
        self.push(line.clone());
        Ok(())
    }
}

/// Counts of a redrive or replay by action, for the summary table.
pub type Summary = BTreeMap<&'static str, u64>;

/// Options of [`Ops::redrive`] and [`Ops::replay`].
#[derive(Debug, Clone)]
pub struct MoveOptions {
    /// Report what would happen; change nothing.
    pub dry_run: bool,
    /// At most this many sends per second (`None`: as fast as the queue takes them).
    pub rate_per_s: Option<f64>,
    /// Move or replay at most this many.
    pub max: Option<u64>,
    /// How long taken dead-letter messages stay hidden while the redrive runs, **seconds**.
    pub hold_s: u32,
    /// Redrive: delete dead letters whose event is already processed (audited `deleted`)
    /// instead of skipping them.
    pub delete_processed: bool,
    /// Set to stop after the message at hand (Ctrl-C); what was taken is released.
    pub stop: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl MoveOptions {
    fn stopped(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst))
    }
}

impl Default for MoveOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            rate_per_s: None,
            max: None,
            hold_s: 300,
            delete_processed: false,
            stop: None,
        }
    }
}

/// `doorbell status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// When, RFC 3339.
    pub at: String,
    /// The events queue.
    pub queue: QueueStatus,
    /// The dead-letter queue.
    pub dead_letter_queue: QueueStatus,
    /// The window the counts cover, RFC 3339.
    pub since: String,
    /// Where the counts come from.
    pub counts_from: &'static str,
    /// Events by source and status over the window.
    pub counts: Counts,
}

/// One queue in a [`StatusReport`].
#[derive(Debug, Clone, Serialize)]
pub struct QueueStatus {
    /// Depth.
    #[serde(flatten)]
    pub stats: QueueStats,
    /// Age of the oldest message, **seconds**, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_age_s: Option<i64>,
}

/// The operations layer over its ports. See the module docs.
#[derive(Debug, Clone)]
pub struct Ops {
    /// Records by key.
    pub store: Arc<dyn EventStore>,
    /// Failures and bulk reads.
    pub index: Arc<dyn EventIndex>,
    /// Every verified envelope.
    pub archive: Arc<dyn Archive>,
    /// The events queue (claim-checked when a payload store is configured).
    pub queue: Arc<dyn EventQueue>,
    /// The dead-letter queue.
    pub dlq: Arc<dyn EventQueue>,
    /// The claim-check store, to read large envelopes.
    pub payloads: Option<Arc<dyn PayloadStore>>,
    /// Counts by status.
    pub counters: Arc<dyn Counters>,
    /// Now.
    pub clock: Arc<dyn Clock>,
}

/// A cursor is opaque (base64url of `{received ms}:{key}`): keys are delivery text, and a
/// cursor is meant to be pasted into a shell.
fn parse_cursor(c: &str) -> Result<(i64, String), OpsError> {
    use base64::Engine;
    let bad = || OpsError::Invalid("bad cursor: pass the one the last page printed".into());
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (ms, key) = text.split_once(':').ok_or_else(bad)?;
    Ok((ms.parse().map_err(|_| bad())?, key.to_owned()))
}

impl Ops {
    fn audit(&self, action: &'static str) -> AuditLine {
        AuditLine {
            at: rfc3339_ms(self.clock.now_ms()),
            action,
            message_id: None,
            key: None,
            source: None,
            event_type: None,
            event_id: None,
            replay_id: None,
            reason: None,
        }
    }

    async fn records(
        &self,
        keys: impl Iterator<Item = &String>,
    ) -> Result<HashMap<String, EventRecord>, OpsError> {
        let keys: Vec<String> = keys.cloned().collect::<HashSet<_>>().into_iter().collect();
        let mut out = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(100) {
            for r in self.index.get_many(chunk).await? {
                out.insert(r.key.clone(), r);
            }
        }
        Ok(out)
    }

    /// `doorbell events ls`: events matching `filter`, newest first, `limit` a page, after
    /// `cursor` (from the previous page). Failures and conflicts come from the index (any
    /// age); other statuses from the archive (received within the window, by default the last
    /// 24 hours); dead-lettered ones from the dead-letter queue (peeked, not consumed).
    ///
    /// # Errors
    /// Any port's error; [`OpsError::Invalid`] for a bad cursor.
    pub async fn list(
        &self,
        filter: &EventFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<EventPage, OpsError> {
        let cursor = cursor.map(parse_cursor).transpose()?;
        let now = self.clock.now_ms();
        let only_alerts = !filter.statuses.is_empty()
            && filter.statuses.iter().all(|s| {
                matches!(
                    s,
                    EventStatus::Failed | EventStatus::Conflict | EventStatus::DeadLettered
                )
            });
        let mut rows: Vec<EventRow> = Vec::new();
        let mut dead_keys: HashSet<String> = HashSet::new();
        let dead = if filter.wants(EventStatus::DeadLettered) || filter.wants(EventStatus::Failed) {
            self.dead_letters(MAX_DEAD_LETTERS).await?
        } else {
            Vec::new()
        };
        for d in &dead {
            if let Some(e) = &d.envelope {
                dead_keys.insert(e.idempotency_key.clone());
            }
        }
        let mut seen: HashSet<(String, String)> = HashSet::new();
        let mut truncated = false;
        if only_alerts {
            let q = AlertQuery {
                failed: filter.wants(EventStatus::Failed)
                    || filter.wants(EventStatus::DeadLettered),
                conflicts: filter.wants(EventStatus::Conflict),
                source: filter.source.clone(),
                limit: MAX_ARCHIVE_SCAN,
            };
            for r in self.index.alerts(&q).await? {
                let mut status = if r.conflicts > 0 && r.status != Status::Failed {
                    EventStatus::Conflict
                } else {
                    EventStatus::of_record(&r)
                };
                if status == EventStatus::Failed && dead_keys.contains(&r.key) {
                    status = EventStatus::DeadLettered;
                }
                seen.insert((r.key.clone(), r.body_sha256.clone()));
                rows.push(EventRow::from_record(&r, status));
            }
        } else {
            let q = ArchiveQuery {
                since_ms: Some(filter.since_ms.unwrap_or(now - DEFAULT_LOOKBACK_MS)),
                until_ms: filter.until_ms,
                source: filter.source.clone(),
                key: None,
                event_id: None,
                limit: MAX_ARCHIVE_SCAN,
                without_bodies: true,
            };
            let deliveries = self.archive.list(&q).await?;
            truncated = deliveries.len() >= MAX_ARCHIVE_SCAN;
            let records = self
                .records(deliveries.iter().map(|e| &e.idempotency_key))
                .await?;
            for e in &deliveries {
                let r = records.get(&e.idempotency_key);
                let mut status = EventStatus::of_delivery(e, r);
                if status == EventStatus::Failed && dead_keys.contains(&e.idempotency_key) {
                    status = EventStatus::DeadLettered;
                }
                seen.insert((e.idempotency_key.clone(), e.body_sha256.clone()));
                rows.push(EventRow::from_delivery(e, r, status));
            }
        }
        // Dead-lettered messages whose delivery the listing above did not show (archived
        // outside the window). A message whose event has since been processed (by a replay,
        // or a copy that got through) shows the event's status: it no longer needs anyone.
        if filter.wants(EventStatus::DeadLettered) || !filter.statuses.is_empty() {
            let keys = self
                .records(
                    dead.iter()
                        .filter_map(|d| d.envelope.as_ref().map(|e| &e.idempotency_key)),
                )
                .await?;
            for d in &dead {
                if let Some(e) = &d.envelope
                    && seen.insert((e.idempotency_key.clone(), e.body_sha256.clone()))
                {
                    let r = keys.get(&e.idempotency_key);
                    let status = match EventStatus::of_delivery(e, r) {
                        EventStatus::Failed | EventStatus::Received | EventStatus::InProgress => {
                            EventStatus::DeadLettered
                        }
                        other => other,
                    };
                    rows.push(EventRow::from_delivery(e, r, status));
                }
            }
        }
        rows.retain(|r| {
            filter.wants(r.status)
                && filter.matches_event(
                    &r.source,
                    &r.event_type,
                    [&r.event_id, &r.key],
                    r.received_ms,
                )
                && !r.key.starts_with(crate::envelope::REPLAY_KEY_PREFIX)
                && cursor.as_ref().is_none_or(|c| r.before(c))
        });
        rows.sort_by(|a, b| (b.received_ms, &b.key).cmp(&(a.received_ms, &a.key)));
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = more.then(|| rows.last().map(EventRow::cursor)).flatten();
        Ok(EventPage {
            rows,
            next_cursor,
            truncated,
        })
    }

    /// The keys `id` names: itself if it is a key (`source#…`), else the keys archived in the
    /// last 24 hours or listed as failed or conflicting with that event id (older events: pass
    /// the key).
    async fn resolve_keys(&self, id: &str, dead: &[DeadLetter]) -> Result<Vec<String>, OpsError> {
        if id.contains('#') {
            return Ok(vec![id.to_owned()]);
        }
        let q = ArchiveQuery {
            event_id: Some(id.to_owned()),
            since_ms: Some(self.clock.now_ms() - DEFAULT_LOOKBACK_MS),
            without_bodies: true,
            ..Default::default()
        };
        // An unreadable archive still leaves the failures and the dead letters to search.
        let mut keys: Vec<String> = self
            .archive
            .list(&q)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.idempotency_key)
            .collect();
        for d in dead {
            if let Some(e) = &d.envelope
                && e.event_id == id
            {
                keys.push(e.idempotency_key.clone());
            }
        }
        for r in self
            .index
            .alerts(&AlertQuery {
                failed: true,
                conflicts: true,
                source: None,
                limit: MAX_ARCHIVE_SCAN,
            })
            .await?
        {
            if r.event_id == id {
                keys.push(r.key);
            }
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// `doorbell events show ID|KEY`: the record, every archived delivery, and the messages
    /// in the dead-letter queue, for each key `id` names (an event id may exist in several
    /// sources).
    ///
    /// # Errors
    /// Any port's error; [`OpsError::Invalid`] when nothing is known under `id`.
    pub async fn show(&self, id: &str) -> Result<Vec<EventDetail>, OpsError> {
        // One look at the dead-letter queue serves both finding the keys and showing them.
        let dead = self.dead_letters(MAX_DEAD_LETTERS).await?;
        let keys = self.resolve_keys(id, &dead).await?;
        let mut out = Vec::new();
        for key in keys {
            let record = self.store.get(&key).await?;
            // The record bounds where its deliveries are: from an hour before the first
            // receipt to an hour after its last write or conflict (the archive is read by
            // time; without a record, the default lookback).
            let hour = 3_600_000;
            let (since_ms, until_ms) = match &record {
                Some(r) => {
                    let first = crate::envelope::parse_rfc3339_ms(&r.received_at).unwrap_or(0);
                    let last = [r.updated_at_ms, r.last_conflict_at_ms, r.processed_at_ms]
                        .into_iter()
                        .flatten()
                        .max()
                        .unwrap_or(first)
                        .max(first);
                    (Some(first - hour), Some(last + hour))
                }
                None => (Some(self.clock.now_ms() - DEFAULT_LOOKBACK_MS), None),
            };
            // Without the archive the record and the dead letters still say most of it.
            let (deliveries, archive_error) = match self
                .archive
                .list(&ArchiveQuery {
                    key: Some(key.clone()),
                    since_ms,
                    until_ms,
                    ..Default::default()
                })
                .await
            {
                Ok(d) => (d, None),
                Err(e) => (Vec::new(), Some(e.to_string())),
            };
            let dead_letters: Vec<DeadLetter> = dead
                .iter()
                .filter(|d| {
                    d.envelope
                        .as_ref()
                        .is_some_and(|e| e.idempotency_key == key)
                })
                .cloned()
                .collect();
            if record.is_none() && deliveries.is_empty() && dead_letters.is_empty() {
                continue;
            }
            let now = self.clock.now_ms();
            let location = if !dead_letters.is_empty() {
                "dead-letter queue"
            } else {
                match &record {
                    Some(r) if r.status == Status::Processed => "done",
                    Some(r)
                        if r.status == Status::InProgress
                            && r.lease_expires_at_ms.is_some_and(|l| l >= now) =>
                    {
                        "in progress"
                    }
                    Some(_) => "queue",
                    None => "queue",
                }
            };
            let mut view = record.as_ref().map(RecordView::from);
            if let Some(v) = &mut view
                && v.status == EventStatus::Failed
                && !dead_letters.is_empty()
            {
                v.status = EventStatus::DeadLettered;
            }
            out.push(EventDetail {
                key,
                record: view,
                location: location.to_owned(),
                deliveries,
                archive_error,
                dead_letters,
            });
        }
        if out.is_empty() {
            return Err(OpsError::Invalid(format!(
                "no event {id:?}: not in the event store, the archive or the dead-letter queue (an event id is looked up among the last 24 hours' events and the failures; for older events pass its key, e.g. stripe#evt_…)"
            )));
        }
        Ok(out)
    }

    fn dead_letter(&self, m: ReceivedMessage, envelope: Result<Envelope, String>) -> DeadLetter {
        let attr = |name: &str| {
            m.attributes
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let (envelope, unreadable) = match envelope {
            Ok(e) => (Some(e), None),
            Err(e) => (None, Some(e)),
        };
        DeadLetter {
            message_id: m.message_id.clone(),
            sent_at: rfc3339_ms(m.sent_timestamp_ms),
            receive_count: m.receive_count,
            reason: attr("dead_letter_reason").unwrap_or_else(|| "max-receives".into()),
            detail: attr("rejected_reason"),
            envelope,
            unreadable,
            status: None,
            message: m,
        }
    }

    async fn read_envelope(&self, body: &str) -> Result<Envelope, String> {
        let text = resolve(body, self.payloads.as_deref())
            .await
            .map_err(|e| e.to_string())?;
        Envelope::parse(&text).map_err(|e| e.to_string())
    }

    /// Takes every message of the dead-letter queue, up to `max`, a batch at a time (each
    /// hidden for `hold_s` seconds); stops when a receive returns nothing new.
    async fn take_all(&self, max: usize, hold_s: u32) -> Result<Vec<ReceivedMessage>, OpsError> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut extra = Vec::new();
        while out.len() < max {
            let batch = self.dlq.take(10, hold_s).await?;
            if batch.is_empty() {
                break;
            }
            let mut new = 0;
            for m in batch {
                if seen.insert(m.message_id.clone()) {
                    new += 1;
                    out.push(m);
                } else {
                    extra.push(m.receipt_handle);
                }
            }
            if new == 0 {
                break;
            }
        }
        if !extra.is_empty() {
            let handles: Vec<&str> = extra.iter().map(String::as_str).collect();
            self.dlq.release(&handles).await?;
        }
        Ok(out)
    }

    /// `doorbell dlq ls`: up to `max` dead-letter messages, oldest first, peeked: each is
    /// received, read, and made visible again before this returns.
    ///
    /// # Errors
    /// Any port's error (messages already taken are released first where possible).
    pub async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, OpsError> {
        // A queue that can be read without receiving (the local one) is: readers then never
        // hide messages from each other or from a redrive.
        let (taken, handles) = match self.dlq.peek(max).await? {
            Some(all) => (all, Vec::new()),
            None => {
                let taken = self.take_all(max, 60).await?;
                let handles: Vec<String> = taken.iter().map(|m| m.receipt_handle.clone()).collect();
                (taken, handles)
            }
        };
        let mut out = Vec::with_capacity(taken.len());
        for m in taken {
            let env = self.read_envelope(&m.body).await;
            out.push(self.dead_letter(m, env));
        }
        if !handles.is_empty() {
            let refs: Vec<&str> = handles.iter().map(String::as_str).collect();
            self.dlq.release(&refs).await?;
        }
        let records = self
            .records(
                out.iter()
                    .filter_map(|d| d.envelope.as_ref().map(|e| &e.idempotency_key)),
            )
            .await?;
        for d in &mut out {
            if let Some(e) = &d.envelope {
                d.status = Some(EventStatus::of_delivery(e, records.get(&e.idempotency_key)));
            }
        }
        out.sort_by_key(|d| d.message.sent_timestamp_ms);
        Ok(out)
    }

    /// `doorbell dlq ls` with a filter: statuses are the events' (`dead-lettered` selects
    /// all), `--id` may be a message id.
    ///
    /// # Errors
    /// As [`Ops::dead_letters`].
    pub async fn dead_letters_matching(
        &self,
        filter: &EventFilter,
        max: usize,
    ) -> Result<Vec<DeadLetter>, OpsError> {
        Ok(self
            .dead_letters(MAX_DEAD_LETTERS)
            .await?
            .into_iter()
            .filter(|d| d.matches(filter))
            .take(max)
            .collect())
    }

    async fn pace(&self, opts: &MoveOptions, started: std::time::Instant, sent: u64) {
        if let Some(rate) = opts.rate_per_s.filter(|r| *r > 0.0) {
            let due = std::time::Duration::try_from_secs_f64(sent as f64 / rate)
                .unwrap_or(std::time::Duration::MAX);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }

    /// `doorbell dlq redrive`: moves the dead-letter messages matching `filter` back to the
    /// events queue (see the module docs for the guarantees), recording one [`AuditLine`]
    /// per message moved, skipped or failed.
    ///
    /// # Errors
    /// A queue's error when taking or releasing messages, or the audit sink's; messages
    /// moved before it stay moved (and audited).
    pub async fn redrive(
        &self,
        filter: &EventFilter,
        opts: &MoveOptions,
        audit: &mut dyn AuditSink,
    ) -> Result<Summary, OpsError> {
        let mut summary = Summary::new();
        let mut taken: Vec<String> = Vec::new();
        let result = self
            .redrive_inner(filter, opts, audit, &mut summary, &mut taken)
            .await;
        // Everything taken and not deleted is made visible again, whatever happened (a
        // released handle of a deleted message holds nothing and is ignored).
        if !taken.is_empty() {
            let refs: Vec<&str> = taken.iter().map(String::as_str).collect();
            let released = self.dlq.release(&refs).await;
            result?;
            released?;
        } else {
            result?;
        }
        // Messages another reader holds (a peek, another redrive) were not looked at.
        if let Ok(s) = self.dlq.stats().await
            && s.in_flight > 0
        {
            summary.insert("held-elsewhere", s.in_flight);
        }
        Ok(summary)
    }

    async fn redrive_inner(
        &self,
        filter: &EventFilter,
        opts: &MoveOptions,
        audit: &mut dyn AuditSink,
        summary: &mut Summary,
        taken: &mut Vec<String>,
    ) -> Result<(), OpsError> {
        let started = std::time::Instant::now();
        let mut seen = HashSet::new();
        let mut moved = 0u64;
        while !opts.stopped() {
            let batch = self.dlq.take(10, opts.hold_s).await?;
            if batch.is_empty() {
                break;
            }
            taken.extend(batch.iter().map(|m| m.receipt_handle.clone()));
            let mut new = 0;
            for m in batch {
                if opts.stopped() {
                    break;
                }
                if !seen.insert(m.message_id.clone()) {
                    continue;
                }
                new += 1;
                let env = self.read_envelope(&m.body).await;
                let mut d = self.dead_letter(m, env);
                let record = match &d.envelope {
                    Some(e) => self.store.get(&e.idempotency_key).await?,
                    None => None,
                };
                if let Some(e) = &d.envelope {
                    d.status = Some(EventStatus::of_delivery(e, record.as_ref()));
                }
                if !d.matches(filter) || opts.max.is_some_and(|n| moved >= n) {
                    continue;
                }
                let mut line = self.audit("skipped");
                line.message_id = Some(d.message_id.clone());
                let mut processed = false;
                if let Some(e) = &d.envelope {
                    line.key = Some(e.idempotency_key.clone());
                    line.source = Some(e.source.clone());
                    line.event_type = Some(e.event_type.clone());
                    line.event_id = Some(e.event_id.clone());
                    match d.status {
                        Some(status @ (EventStatus::Processed | EventStatus::Ignored)) => {
                            processed = true;
                            line.reason = Some(format!(
                                "already {status}: the handler would not run again (use `doorbell replay` to run it, --delete-processed to clear it)"
                            ));
                        }
                        Some(EventStatus::Conflict) => {
                            line.reason = Some("conflict: its key holds another body or type; a redrive would conflict again (look at it with `doorbell events show`; `doorbell replay --status conflict` runs it)".into());
                        }
                        _ => {}
                    }
                }
                if processed && opts.delete_processed {
                    line.action = if opts.dry_run {
                        "would-delete"
                    } else {
                        "deleted"
                    };
                    if !opts.dry_run {
                        self.dlq.delete(&d.message.receipt_handle).await?;
                    }
                    *summary.entry(line.action).or_default() += 1;
                    audit.record(&line)?;
                    continue;
                }
                if line.reason.is_some() {
                    *summary.entry("skipped").or_default() += 1;
                    audit.record(&line)?;
                    continue;
                }
                if opts.dry_run {
                    line.action = "would-move";
                    *summary.entry("would-move").or_default() += 1;
                    audit.record(&line)?;
                    moved += 1;
                    continue;
                }
                self.pace(opts, started, moved).await;
                let message = OutgoingMessage {
                    body: d.message.body.clone(),
                    attributes: d
                        .message
                        .attributes
                        .iter()
                        .filter_map(|(k, v)| match k.as_str() {
                            "source" => Some(("source", v.clone())),
                            "event_type" => Some(("event_type", v.clone())),
                            _ => None,
                        })
                        .collect(),
                    group_id: d.message.group_id.clone(),
                    deduplication_id: self
                        .queue
                        .is_fifo()
                        .then(|| format!("redrive-{}", d.message_id)),
                };
                if let Err(e) = self.queue.send(message).await {
                    line.action = "failed";
                    line.reason = Some(format!("not sent, left in the dead-letter queue: {e}"));
                    *summary.entry("failed").or_default() += 1;
                    audit.record(&line)?;
                    continue;
                }
                // Deleted only now that the events queue holds the copy.
                line.action = "moved";
                if let Err(e) = self.dlq.delete(&d.message.receipt_handle).await {
                    line.reason = Some(format!(
                        "sent, but not deleted from the dead-letter queue ({e}): the copy there will be skipped once processed"
                    ));
                }
                moved += 1;
                *summary.entry("moved").or_default() += 1;
                audit.record(&line)?;
            }
            if new == 0 {
                break;
            }
        }
        if opts.stopped() {
            summary.insert("stopped", 1);
        }
        Ok(())
    }

    /// `doorbell replay`: sends the archived deliveries matching `filter` back to the events
    /// queue with `replay_id`. Without statuses in the filter it replays what did not end
    /// processed by a handler (`ignored`, `failed`, `dead-lettered`), or also `processed` when
    /// `include_processed`; refused conflicting deliveries only when `conflict` is asked for
    /// (counted as `conflicts-not-replayed` otherwise). Each event's status is read again
    /// right before it is sent, so one processed meanwhile is skipped. Events in progress are
    /// skipped. Oldest first.
    ///
    /// # Errors
    /// Any port's error, or the audit sink's; events replayed before it stay replayed.
    pub async fn replay(
        &self,
        filter: &EventFilter,
        include_processed: bool,
        replay_id: &str,
        opts: &MoveOptions,
        audit: &mut dyn AuditSink,
    ) -> Result<Summary, OpsError> {
        if replay_id.is_empty()
            || replay_id.len() > 64
            || !replay_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(OpsError::Invalid(format!(
                "replay id {replay_id:?}: use 1–64 letters, digits, '-' or '_'"
            )));
        }
        let now = self.clock.now_ms();
        let q = ArchiveQuery {
            since_ms: Some(filter.since_ms.unwrap_or(now - DEFAULT_LOOKBACK_MS)),
            until_ms: filter.until_ms,
            source: filter.source.clone(),
            key: None,
            event_id: None,
            limit: MAX_ARCHIVE_SCAN,
            without_bodies: opts.dry_run,
        };
        let mut deliveries = self.archive.list(&q).await?;
        let truncated = deliveries.len() >= MAX_ARCHIVE_SCAN;
        deliveries.reverse();
        let records = self
            .records(deliveries.iter().map(|e| &e.idempotency_key))
            .await?;
        let dead: HashSet<String> =
            if filter.wants(EventStatus::DeadLettered) && !filter.statuses.is_empty() {
                self.dead_letters(MAX_DEAD_LETTERS)
                    .await?
                    .into_iter()
                    .filter_map(|d| d.envelope.map(|e| e.idempotency_key))
                    .collect()
            } else {
                HashSet::new()
            };
        // Conflicts are replayed only when asked for by name: their body or type was refused
        // under a key already taken, and for providers that sign only the body the type came
        // from an unsigned header, so running them is a decision, not a default.
        let default_statuses = [
            EventStatus::Ignored,
            EventStatus::Failed,
            EventStatus::DeadLettered,
        ];
        let wanted = |status: EventStatus| {
            if filter.statuses.is_empty() {
                default_statuses.contains(&status)
                    || (include_processed && status == EventStatus::Processed)
            } else {
                filter.statuses.contains(&status)
                    || (status == EventStatus::DeadLettered
                        && filter.statuses.contains(&EventStatus::Failed))
            }
        };
        let mut summary = Summary::new();
        if truncated {
            summary.insert("not-read (window over the scan limit)", 1);
        }
        let started = std::time::Instant::now();
        let mut sent = 0u64;
        for e in deliveries {
            if opts.stopped() {
                summary.insert("stopped", 1);
                break;
            }
            let mut status = EventStatus::of_delivery(&e, records.get(&e.idempotency_key));
            if status == EventStatus::Failed && dead.contains(&e.idempotency_key) {
                status = EventStatus::DeadLettered;
            }
            if filter.statuses.is_empty() && status == EventStatus::Conflict {
                *summary.entry("conflicts-not-replayed").or_default() += 1;
            }
            if !wanted(status)
                || !filter.matches_event(
                    &e.source,
                    &e.event_type,
                    [&e.event_id, &e.idempotency_key],
                    e.received_at_ms().unwrap_or(0),
                )
            {
                continue;
            }
            if opts.max.is_some_and(|n| sent >= n) {
                break;
            }
            let mut line = self.audit("replayed");
            line.key = Some(e.idempotency_key.clone());
            line.source = Some(e.source.clone());
            line.event_type = Some(e.event_type.clone());
            line.event_id = Some(e.event_id.clone());
            line.replay_id = Some(replay_id.to_owned());
            if status == EventStatus::InProgress {
                line.action = "skipped";
                line.reason = Some("in progress: a worker holds its claim".into());
                *summary.entry("skipped").or_default() += 1;
                audit.record(&line)?;
                continue;
            }
            if opts.dry_run {
                line.action = "would-replay";
                *summary.entry("would-replay").or_default() += 1;
                audit.record(&line)?;
                sent += 1;
                continue;
            }
            self.pace(opts, started, sent).await;
            // Its status may have changed since the listing (a retry processed it while this
            // replay was pacing): look again right before sending.
            let fresh = self.store.get(&e.idempotency_key).await?;
            let now_status = EventStatus::of_delivery(&e, fresh.as_ref());
            let now_status =
                if now_status == EventStatus::Failed && status == EventStatus::DeadLettered {
                    status
                } else {
                    now_status
                };
            if now_status != status
                && (!wanted(now_status) || now_status == EventStatus::InProgress)
            {
                line.action = "skipped";
                line.reason = Some(format!("{now_status} since the listing"));
                *summary.entry("skipped").or_default() += 1;
                audit.record(&line)?;
                continue;
            }
            let mut replay = e.clone();
            replay.replay_id = Some(replay_id.to_owned());
            let message = OutgoingMessage {
                body: replay.to_json(),
                attributes: vec![
                    ("source", replay.source.clone()),
                    ("event_type", replay.event_type.clone()),
                ],
                group_id: self.queue.is_fifo().then(|| replay.source.clone()),
                deduplication_id: self
                    .queue
                    .is_fifo()
                    .then(|| crate::envelope::sha256_hex(replay.claim_key().as_bytes())),
            };
            match self.queue.send(message).await {
                Ok(id) => {
                    line.message_id = Some(id);
                    sent += 1;
                    *summary.entry("replayed").or_default() += 1;
                }
                Err(err) => {
                    line.action = "failed";
                    line.reason = Some(format!("not sent: {err}"));
                    *summary.entry("failed").or_default() += 1;
                }
            }
            audit.record(&line)?;
        }
        Ok(summary)
    }

    /// `doorbell status`: both queues' depth and events by source and status over the last
    /// `window_ms` milliseconds.
    ///
    /// # Errors
    /// Any port's error.
    pub async fn status(&self, window_ms: i64) -> Result<StatusReport, OpsError> {
        let now = self.clock.now_ms();
        let since = now - window_ms;
        let age = |s: &QueueStats| s.oldest_sent_ms.map(|t| (now - t).max(0) / 1000);
        let (q, d) = (self.queue.stats().await?, self.dlq.stats().await?);
        let (mut q_age, mut d_age) = (age(&q), age(&d));
        if q_age.is_none() || d_age.is_none() {
            let (qa, da) = self.counters.oldest_ages_s().await?;
            q_age = q_age.or(qa);
            d_age = d_age.or(da);
        }
        Ok(StatusReport {
            at: rfc3339_ms(now),
            queue: QueueStatus {
                oldest_age_s: q_age,
                stats: q,
            },
            dead_letter_queue: QueueStatus {
                oldest_age_s: d_age,
                stats: d,
            },
            since: rfc3339_ms(since),
            counts_from: self.counters.describe(),
            counts: self.counters.counts(since, now).await?,
        })
    }
}

/// A new replay id: `rpl-{epoch ms}-{random hex}`.
pub fn new_replay_id(now_ms: i64) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(now_ms);
    format!("rpl-{now_ms}-{:08x}", h.finish() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn times_are_rfc3339_or_a_duration_ago() {
        assert_eq!(parse_time("2027-01-15T08:00:00Z", NOW).unwrap(), NOW);
        assert_eq!(parse_time("1h", NOW).unwrap(), NOW - 3_600_000);
        assert_eq!(parse_time(" 90s ", NOW).unwrap(), NOW - 90_000);
        assert_eq!(parse_time("2d", NOW).unwrap(), NOW - 2 * 86_400_000);
        for bad in ["yesterday", "", "-1h", "2027-13-01T00:00:00Z"] {
            let e = parse_time(bad, NOW).unwrap_err().to_string();
            assert!(e.contains("RFC 3339"), "{bad}: {e}");
        }
    }

    #[test]
    fn statuses_parse_in_either_spelling_and_name_the_choices_otherwise() {
        for s in EventStatus::ALL {
            assert_eq!(EventStatus::parse(s.as_str()).unwrap(), s);
        }
        assert_eq!(
            EventStatus::parse("Dead_Lettered").unwrap(),
            EventStatus::DeadLettered
        );
        let e = EventStatus::parse("done").unwrap_err().to_string();
        assert!(e.contains("processed, ignored, failed"), "{e}");
    }

    #[test]
    fn filters_match_source_type_glob_window_and_ids() {
        let f = EventFilter {
            source: Some("shop".into()),
            since_ms: Some(100),
            until_ms: Some(200),
            ..Default::default()
        }
        .with_type_glob("orders/*")
        .unwrap();
        assert!(f.matches_event("shop", "orders/create", ["1", "shop#1"], 100));
        assert!(!f.matches_event("shop", "orders/create", ["1", "shop#1"], 200));
        assert!(!f.matches_event("shop", "refunds/create", ["1", "shop#1"], 150));
        assert!(!f.matches_event("pay", "orders/create", ["1", "pay#1"], 150));
        let ids = EventFilter {
            ids: vec!["shop#2".into()],
            ..Default::default()
        };
        assert!(ids.matches_event("shop", "t", ["2", "shop#2"], 0));
        assert!(!ids.matches_event("shop", "t", ["1", "shop#1"], 0));
        assert!(EventFilter::default().with_type_glob("[a").is_err());
    }

    #[test]
    fn asking_for_failed_includes_dead_lettered() {
        let f = EventFilter {
            statuses: vec![EventStatus::Failed],
            ..Default::default()
        };
        assert!(f.wants(EventStatus::DeadLettered));
        assert!(!f.wants(EventStatus::Processed));
        let d = EventFilter {
            statuses: vec![EventStatus::DeadLettered],
            ..Default::default()
        };
        assert!(!d.wants(EventStatus::Failed));
    }

    #[test]
    fn a_delivery_whose_body_or_type_differs_from_its_record_is_a_conflict() {
        let src = crate::config::SourceConfig::new(
            "pay",
            crate::config::Provider::Stripe,
            vec![crate::secret::Secret::new("s")],
        );
        let v = crate::verify::Verified {
            event_id: "evt_1".into(),
            event_type: "a".into(),
            occurred_at_ms: None,
            dedupe: crate::verify::Dedupe::EventId,
            reply: None,
            headers: vec![],
        };
        let e = Envelope::new(&src, v, b"{}", None, NOW);
        let mut r = EventRecord {
            key: e.idempotency_key.clone(),
            source: "pay".into(),
            provider: "stripe".into(),
            event_id: "evt_1".into(),
            event_type: "a".into(),
            status: Status::Processed,
            attempts: 1,
            received_at: e.received_at.clone(),
            processed_at_ms: Some(NOW),
            lease_expires_at_ms: None,
            updated_at_ms: Some(NOW),
            expires_at_s: None,
            body_sha256: e.body_sha256.clone(),
            last_error: None,
            outcome: Some("ignored".into()),
            payload: None,
            conflicts: 0,
            last_conflict_at_ms: None,
        };
        assert_eq!(EventStatus::of_delivery(&e, None), EventStatus::Received);
        assert_eq!(EventStatus::of_delivery(&e, Some(&r)), EventStatus::Ignored);
        r.outcome = Some("handled".into());
        assert_eq!(
            EventStatus::of_delivery(&e, Some(&r)),
            EventStatus::Processed
        );
        r.body_sha256 = "other".into();
        assert_eq!(
            EventStatus::of_delivery(&e, Some(&r)),
            EventStatus::Conflict
        );
    }
}
