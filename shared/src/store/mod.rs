//! The event store: one record per `(source, event id)` that makes the worker idempotent.
//!
//! State machine of a record (key = the envelope's idempotency key):
//!
//! ```text
//!  (none) ──claim──▶ IN_PROGRESS ──complete──▶ PROCESSED
//!                       │   ▲                     │ (dedupe window over: expires_at passed)
//!                   fail│   │claim (lease expired,└──claim──▶ IN_PROGRESS
//!                       ▼   │ or FAILED)
//!                     FAILED
//! ```
//!
//! The claim rule ([`decide`]), in this order, over the record found under the key:
//!
//! | record | outcome |
//! |---|---|
//! | none | claimed |
//! | `IN_PROGRESS` with a live lease (or, written without a lease, updated within the stale limit) | [`ClaimOutcome::InProgress`]: another worker may be running the handler; retry later |
//! | its dedupe window is over (`expires_at`, epoch **seconds**, passed) | claimed: a new event under a forgotten key |
//! | another event type, or another body digest where the key does not pin the content | [`ClaimOutcome::Conflict`]: the first stays authoritative, nothing runs |
//! | `FAILED` | claimed (a retry or a redrive) |
//! | `PROCESSED` | [`ClaimOutcome::Duplicate`]: acknowledge, run nothing |
//! | `IN_PROGRESS` whose lease ended (a worker that died or timed out) | claimed: taken over |
//!
//! The event type is part of what must match because it decides which handler runs, and for
//! providers that sign only the body it comes from an unsigned header: a captured delivery
//! replayed under another type is a conflict, never a second event. Where the key is a digest
//! of the signed content ([`ClaimRequest::content_keyed`]: GitHub, Shopify, Twilio, generic
//! HMAC with a header id) a different raw body under it is a re-encoding of the same signed
//! content (Twilio's form parameters), so the body digest is not compared.
//!
//! The SQLite store runs [`decide`] in a transaction; the DynamoDB store writes with one
//! conditional `UpdateItem` whose condition is the same rule, and classifies a refusal by
//! running [`decide`] on the `ALL_OLD` item it returns. `tests/store_contract.rs` runs one
//! table of these cases against both.
//!
//! `complete` and `fail` only apply to the attempt that holds the claim (`IN_PROGRESS` with the
//! same `attempts`); otherwise [`StoreError::LeaseLost`].
//!
//! Units: `*_ms` epoch milliseconds; `expires_at_s` epoch **seconds** (DynamoDB's TTL unit).
//! Expiry is always checked in the claim, never left to TTL deletion, which runs days late.

mod dynamodb;
mod sqlite;

use std::fmt;

pub use dynamodb::DynamoDbEventStore;
pub use sqlite::SqliteEventStore;

/// Longest `last_error` kept, characters.
pub const MAX_ERROR_CHARS: usize = 1_000;
/// Largest payload copied into the record, bytes: small enough that a claimed item (payload
/// plus about 400 bytes of keys, ids and times) stays within one 1 KB DynamoDB write unit, so
/// the claim and the completion cost one write unit each. DynamoDB bills a write by the item's
/// size, the larger of before and after for an update
/// (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html>):
/// copying a 2 KB body would make each of the two writes 3 units. Larger payloads are still in
/// the queue, the dead-letter queue and the claim-check bucket.
pub const MAX_STORED_PAYLOAD_BYTES: usize = 512;

/// Status of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Claimed by a worker whose lease runs until `lease_expires_at_ms`.
    InProgress,
    /// The handler succeeded (or there was none); duplicates are acknowledged.
    Processed,
    /// The handler failed; the next delivery may claim it.
    Failed,
}

impl Status {
    /// `IN_PROGRESS`, `PROCESSED` or `FAILED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::InProgress => "IN_PROGRESS",
            Status::Processed => "PROCESSED",
            Status::Failed => "FAILED",
        }
    }

    /// Parses [`Status::as_str`]'s output.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "IN_PROGRESS" => Some(Status::InProgress),
            "PROCESSED" => Some(Status::Processed),
            "FAILED" => Some(Status::Failed),
            _ => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A claim attempt.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// The idempotency key (`{source}#{event_id}`).
    pub key: String,
    /// Source name.
    pub source: String,
    /// Provider name.
    pub provider: String,
    /// Provider's event id.
    pub event_id: String,
    /// Provider's event type.
    pub event_type: String,
    /// Hex SHA-256 of the raw body.
    pub body_sha256: String,
    /// When ingest received it, RFC 3339.
    pub received_at: String,
    /// The body, when it is text no larger than [`MAX_STORED_PAYLOAD_BYTES`].
    pub payload: Option<String>,
    /// Now, epoch ms.
    pub now_ms: i64,
    /// End of this claim's lease, epoch ms.
    pub lease_expires_at_ms: i64,
    /// End of the dedupe window (TTL), epoch **seconds**.
    pub expires_at_s: i64,
    /// A record `IN_PROGRESS` without a lease is stale once not updated for this long, ms.
    pub stale_after_ms: i64,
    /// True when the key is a digest of the signed content (`{source}#sha256:…`): a different
    /// raw body under it is a re-encoding, not a conflict. See the module docs.
    pub content_keyed: bool,
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// This worker holds the claim; `attempts` counts claims so far, this one included.
    Claimed {
        /// Claims of this key so far (1 for the first).
        attempts: u32,
    },
    /// Already processed: acknowledge, run nothing.
    Duplicate,
    /// Another worker holds a live lease: retry later.
    InProgress {
        /// When that lease ends, epoch ms.
        lease_expires_at_ms: Option<i64>,
    },
    /// Same key, another event type or body: keep the first, run nothing.
    Conflict {
        /// The stored body's digest.
        stored_sha256: String,
        /// The stored event type.
        stored_event_type: String,
    },
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// Idempotency key.
    pub key: String,
    /// Source name.
    pub source: String,
    /// Provider name.
    pub provider: String,
    /// Provider's event id.
    pub event_id: String,
    /// Provider's event type.
    pub event_type: String,
    /// Current status.
    pub status: Status,
    /// Claims so far.
    pub attempts: u32,
    /// RFC 3339, first receipt.
    pub received_at: String,
    /// Epoch ms of completion.
    pub processed_at_ms: Option<i64>,
    /// Epoch ms the current lease ends.
    pub lease_expires_at_ms: Option<i64>,
    /// Epoch ms of the last write.
    pub updated_at_ms: Option<i64>,
    /// TTL, epoch **seconds**.
    pub expires_at_s: Option<i64>,
    /// Hex SHA-256 of the first body.
    pub body_sha256: String,
    /// Last handler error (truncated to [`MAX_ERROR_CHARS`]).
    pub last_error: Option<String>,
    /// `handled` or `ignored` (no handler registered) once processed.
    pub outcome: Option<String>,
    /// Stored body, if it fit.
    pub payload: Option<String>,
    /// Deliveries refused as conflicts under this key ([`EventStore::record_conflict`]).
    pub conflicts: u32,
    /// Epoch ms of the last conflict.
    pub last_conflict_at_ms: Option<i64>,
}

/// Whether `req` may claim over `existing`: `None` means yes, otherwise the outcome that says
/// why not. See the module docs for the rule.
pub fn decide(existing: Option<&EventRecord>, req: &ClaimRequest) -> Option<ClaimOutcome> {
    let old = existing?;
    if old.status == Status::InProgress {
        let live = match old.lease_expires_at_ms {
            Some(lease) => lease >= req.now_ms,
            None => old
                .updated_at_ms
                .is_some_and(|u| u >= req.now_ms - req.stale_after_ms),
        };
        if live {
            return Some(ClaimOutcome::InProgress {
                lease_expires_at_ms: old.lease_expires_at_ms,
            });
        }
    }
    if old
        .expires_at_s
        .is_some_and(|e| e < req.now_ms.div_euclid(1000))
    {
        return None;
    }
    if old.event_type != req.event_type
        || (!req.content_keyed && old.body_sha256 != req.body_sha256)
    {
        return Some(ClaimOutcome::Conflict {
            stored_sha256: old.body_sha256.clone(),
            stored_event_type: old.event_type.clone(),
        });
    }
    match old.status {
        Status::Processed => Some(ClaimOutcome::Duplicate),
        Status::Failed | Status::InProgress => None,
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed, throttled or could not be reached.
    #[error("event store {operation} failed: {message}")]
    Unavailable {
        /// The operation (`claim`, `complete`, …).
        operation: &'static str,
        /// The service's description.
        message: String,
    },
    /// `complete`/`fail` found the record no longer held by this attempt (its lease expired and
    /// another worker claimed it).
    #[error("claim on {key} was lost (lease expired and another attempt took over)")]
    LeaseLost {
        /// The idempotency key.
        key: String,
    },
    /// A stored record does not have the expected shape.
    #[error("stored record {key} is malformed: {what}")]
    Corrupt {
        /// The idempotency key.
        key: String,
        /// What is wrong.
        what: &'static str,
    },
}

/// The idempotency store port. See the module docs.
#[async_trait::async_trait]
pub trait EventStore: Send + Sync + fmt::Debug {
    /// Tries to claim `req.key` (one conditional write).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`]; the caller reports the record for retry.
    async fn claim(&self, req: &ClaimRequest) -> Result<ClaimOutcome, StoreError>;

    /// Marks the claim `attempt` of `key` `PROCESSED` with `outcome` at `now_ms`.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] if the claim is no longer this attempt's;
    /// [`StoreError::Unavailable`].
    async fn complete(
        &self,
        key: &str,
        attempt: u32,
        outcome: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Marks the claim `attempt` of `key` `FAILED` with `error` (truncated) at `now_ms`.
    ///
    /// # Errors
    /// As [`EventStore::complete`].
    async fn fail(
        &self,
        key: &str,
        attempt: u32,
        error: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Reads a record.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    async fn get(&self, key: &str) -> Result<Option<EventRecord>, StoreError>;

    /// Counts a delivery refused as a [`ClaimOutcome::Conflict`] on `key`'s record
    /// (`conflicts` + 1, `last_conflict_at_ms` = `now_ms`); the record is otherwise unchanged.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    async fn record_conflict(&self, key: &str, now_ms: i64) -> Result<(), StoreError>;

    /// Records that a replay of `key` (its claim `@replay#{id}#{key}` done) ran with `outcome`
    /// at `now_ms`: the event's own record becomes `PROCESSED` with that outcome and stops
    /// needing attention (no longer listed as failed or as a conflict), unless a live claim
    /// holds it. Returns `false` when there was no record to update (expired, or held).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    async fn record_replay(
        &self,
        key: &str,
        outcome: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Writes a whole record unconditionally: for operators' tools (reset, import) and tests.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    async fn put_record(&self, record: &EventRecord) -> Result<(), StoreError>;
}

/// A handler's per-entity state with its version.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    /// The version the state was written at (the event's own time, epoch ms).
    pub version: i64,
    /// The state document.
    pub state: serde_json::Value,
    /// True once a deletion was written ([`EntityStore::delete`]); nothing overwrites it.
    pub deleted: bool,
}

/// What an [`EntityStore`] write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityWrite {
    /// Written: the entity was absent or older.
    Written,
    /// Not written: the stored version is the same or newer (a late, older event).
    Stale,
    /// Not written: the entity is deleted, and a deletion is never undone.
    Deleted,
}

/// Per-entity state for handlers (an order, a subscription), the ordering guard of
/// `DESIGN.md` ("Ordering"): providers do not deliver in order, so a handler writes an entity
/// with the event's own time as `version` (Stripe's `created`, `X-Shopify-Triggered-At`, …)
/// and the store writes only when that is newer than what it holds, in one conditional write
/// (no read-modify-write race between workers). A deletion is a tombstone: once written, no
/// later or earlier event brings the entity back.
#[async_trait::async_trait]
pub trait EntityStore: Send + Sync + fmt::Debug {
    /// Writes `state` for `(kind, id)` at `version` (epoch **milliseconds** of the event) if
    /// nothing is stored, or the stored version is older and not deleted.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    async fn put_if_newer(
        &self,
        kind: &str,
        id: &str,
        version: i64,
        state: &serde_json::Value,
    ) -> Result<EntityWrite, StoreError>;

    /// Marks `(kind, id)` deleted at `version` with its final `state`, whatever version is
    /// stored (a deletion wins over every update, earlier or later); [`EntityWrite::Deleted`]
    /// if it already was.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    async fn delete(
        &self,
        kind: &str,
        id: &str,
        version: i64,
        state: &serde_json::Value,
    ) -> Result<EntityWrite, StoreError>;

    /// Reads `(kind, id)`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    async fn get_entity(&self, kind: &str, id: &str) -> Result<Option<Entity>, StoreError>;
}

pub(crate) fn truncate_error(error: &str) -> String {
    error.chars().take(MAX_ERROR_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(now_ms: i64) -> ClaimRequest {
        ClaimRequest {
            key: "s#e".into(),
            source: "s".into(),
            provider: "stripe".into(),
            event_id: "e".into(),
            event_type: "t".into(),
            body_sha256: "aa".into(),
            received_at: "r".into(),
            payload: None,
            now_ms,
            lease_expires_at_ms: now_ms + 30_000,
            expires_at_s: now_ms / 1000 + 86_400,
            stale_after_ms: 900_000,
            content_keyed: false,
        }
    }

    fn rec(status: Status) -> EventRecord {
        EventRecord {
            key: "s#e".into(),
            source: "s".into(),
            provider: "stripe".into(),
            event_id: "e".into(),
            event_type: "t".into(),
            status,
            attempts: 1,
            received_at: "r".into(),
            processed_at_ms: None,
            lease_expires_at_ms: None,
            updated_at_ms: None,
            expires_at_s: None,
            body_sha256: "aa".into(),
            last_error: None,
            outcome: None,
            payload: None,
            conflicts: 0,
            last_conflict_at_ms: None,
        }
    }

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn new_and_failed_records_are_claimable() {
        assert_eq!(decide(None, &req(NOW)), None);
        assert_eq!(decide(Some(&rec(Status::Failed)), &req(NOW)), None);
    }

    #[test]
    fn processed_is_a_duplicate_until_the_dedupe_window_ends() {
        let mut r = rec(Status::Processed);
        assert_eq!(decide(Some(&r), &req(NOW)), Some(ClaimOutcome::Duplicate));
        r.expires_at_s = Some(NOW / 1000);
        assert_eq!(decide(Some(&r), &req(NOW)), Some(ClaimOutcome::Duplicate));
        r.expires_at_s = Some(NOW / 1000 - 10);
        assert_eq!(decide(Some(&r), &req(NOW)), None);
    }

    #[test]
    fn in_progress_is_taken_over_only_after_its_lease() {
        let mut r = rec(Status::InProgress);
        r.lease_expires_at_ms = Some(NOW - 1_000);
        assert_eq!(decide(Some(&r), &req(NOW)), None);
        r.lease_expires_at_ms = Some(NOW + 60_000);
        assert_eq!(
            decide(Some(&r), &req(NOW)),
            Some(ClaimOutcome::InProgress {
                lease_expires_at_ms: Some(NOW + 60_000)
            })
        );
        r.lease_expires_at_ms = Some(NOW);
        assert!(
            decide(Some(&r), &req(NOW)).is_some(),
            "lease ending exactly now is still live"
        );
    }

    #[test]
    fn in_progress_without_lease_is_stale_only_after_the_limit() {
        let mut r = rec(Status::InProgress);
        r.updated_at_ms = Some(NOW - 1_000);
        assert!(matches!(
            decide(Some(&r), &req(NOW)),
            Some(ClaimOutcome::InProgress { .. })
        ));
        r.updated_at_ms = Some(NOW - 900_001);
        assert_eq!(decide(Some(&r), &req(NOW)), None);
        r.updated_at_ms = None;
        assert_eq!(decide(Some(&r), &req(NOW)), None);
    }

    #[test]
    fn different_body_or_type_is_a_conflict_unless_a_live_lease_holds_it() {
        let conflict = Some(ClaimOutcome::Conflict {
            stored_sha256: "bb".into(),
            stored_event_type: "t".into(),
        });
        for s in [Status::Processed, Status::Failed, Status::InProgress] {
            let mut r = rec(s);
            r.body_sha256 = "bb".into();
            assert_eq!(decide(Some(&r), &req(NOW)), conflict, "{s}");
        }
        let mut r = rec(Status::Processed);
        r.event_type = "other".into();
        assert!(matches!(
            decide(Some(&r), &req(NOW)),
            Some(ClaimOutcome::Conflict { .. })
        ));
        let mut r = rec(Status::InProgress);
        r.body_sha256 = "bb".into();
        r.lease_expires_at_ms = Some(NOW + 1);
        assert!(matches!(
            decide(Some(&r), &req(NOW)),
            Some(ClaimOutcome::InProgress { .. })
        ));
    }

    #[test]
    fn a_content_key_ignores_the_raw_body_but_not_the_type() {
        let mut q = req(NOW);
        q.content_keyed = true;
        let mut r = rec(Status::Processed);
        r.body_sha256 = "re-encoded".into();
        assert_eq!(decide(Some(&r), &q), Some(ClaimOutcome::Duplicate));
        r.event_type = "orders/paid".into();
        assert!(matches!(
            decide(Some(&r), &q),
            Some(ClaimOutcome::Conflict { .. })
        ));
    }

    #[test]
    fn an_ended_dedupe_window_frees_the_key_unless_a_live_lease_holds_it() {
        let mut r = rec(Status::InProgress);
        r.expires_at_s = Some(NOW / 1000 - 10);
        r.body_sha256 = "bb".into();
        r.lease_expires_at_ms = Some(NOW - 1);
        assert_eq!(decide(Some(&r), &req(NOW)), None);
        r.lease_expires_at_ms = Some(NOW + 1_000);
        assert!(matches!(
            decide(Some(&r), &req(NOW)),
            Some(ClaimOutcome::InProgress { .. })
        ));
    }
}
