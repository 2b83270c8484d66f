//! The archive: every verified envelope, kept for a retention period, so any event can be
//! shown (`doorbell events show`) and replayed (`doorbell replay`) after its queue message is
//! gone. The event store keeps idempotency state only; history lives here.
//!
//! The worker writes each batch's envelopes with one [`Archive::put`] before it runs any
//! handler (replays, which come from the archive, are not written again). A batch whose
//! archive write fails is reported for retry without running, so nothing is processed that
//! could not be replayed. A delivery received more than once (a retry, a provider's
//! duplicate) is archived each time; [`Archive::list`] returns each distinct delivery once.
//!
//! Adapters:
//! - [`SqliteArchive`], table `archive` in the local pipeline's database (`doorbell dev`);
//! - [`FirehoseArchive`] (Amazon Data Firehose → S3, JSON Lines packed into few records) and
//!   [`S3ArchiveReader`] (the delivered objects), together [`AwsArchive`], in AWS.
//!
//! Units: `*_ms` are epoch **milliseconds**.

mod firehose;
mod s3;
mod sqlite;

use std::fmt;

pub use firehose::{
    FirehoseArchive, MAX_CALL_BYTES, MAX_CALL_RECORDS, MAX_RECORD_BYTES, PUT_ATTEMPTS, Packed,
    RecordLimits, group_calls, json_lines, pack_records,
};
pub use s3::{
    ArchiveLayout, AwsArchive, DEFAULT_PREFIX, HOUR_MS, S3ArchiveReader, hour_path, parse_object,
};
pub use sqlite::SqliteArchive;

use crate::envelope::Envelope;

/// Default retention of archived envelopes, days (the stack's `ArchiveRetentionDays`).
pub const DEFAULT_RETENTION_DAYS: u32 = 30;

/// Why an archive operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The archive could not be written or read.
    #[error("archive {operation} failed: {message}")]
    Unavailable {
        /// `put`, `list`, …
        operation: &'static str,
        /// The service's description.
        message: String,
    },
}

/// Which archived deliveries to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveQuery {
    /// Received at or after, epoch ms.
    pub since_ms: Option<i64>,
    /// Received before, epoch ms.
    pub until_ms: Option<i64>,
    /// Only this source.
    pub source: Option<String>,
    /// Only this idempotency key.
    pub key: Option<String>,
    /// Only this provider event id.
    pub event_id: Option<String>,
    /// At most this many deliveries, newest first (0: no limit).
    pub limit: usize,
    /// Leave the bodies out (`body` and `body_base64` are `None`): for listings, whose memory
    /// then does not grow with the bodies' size.
    pub without_bodies: bool,
}

impl ArchiveQuery {
    /// True when `e` satisfies every set field (the time window on `received_at`).
    pub fn matches(&self, e: &Envelope) -> bool {
        let received = e.received_at_ms().unwrap_or(0);
        self.since_ms.is_none_or(|s| received >= s)
            && self.until_ms.is_none_or(|u| received < u)
            && self.source.as_ref().is_none_or(|s| *s == e.source)
            && self.key.as_ref().is_none_or(|k| *k == e.idempotency_key)
            && self.event_id.as_ref().is_none_or(|i| *i == e.event_id)
    }
}

/// The archive port. See the module docs.
#[async_trait::async_trait]
pub trait Archive: Send + Sync + fmt::Debug {
    /// Archives a batch's envelopes in one write, at `now_ms`.
    ///
    /// # Errors
    /// [`ArchiveError::Unavailable`]: nothing, or not all of them, was archived.
    async fn put(&self, envelopes: &[Envelope], now_ms: i64) -> Result<(), ArchiveError>;

    /// The archived deliveries matching `query`, newest `received_at` first, each distinct
    /// delivery (idempotency key, event type, body digest and event id) once.
    ///
    /// # Errors
    /// [`ArchiveError::Unavailable`].
    async fn list(&self, query: &ArchiveQuery) -> Result<Vec<Envelope>, ArchiveError>;
}

/// Sorts newest first and keeps the first of each (key, event type, body digest).
pub fn distinct_newest_first(mut envelopes: Vec<Envelope>) -> Vec<Envelope> {
    envelopes.sort_by(|a, b| {
        b.received_at
            .cmp(&a.received_at)
            .then_with(|| b.idempotency_key.cmp(&a.idempotency_key))
    });
    let mut seen = std::collections::HashSet::new();
    envelopes.retain(|e| {
        seen.insert((
            e.idempotency_key.clone(),
            e.event_type.clone(),
            e.body_sha256.clone(),
            e.event_id.clone(),
        ))
    });
    envelopes
}
