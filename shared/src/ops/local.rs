//! The operations layer's local adapter: everything in the `doorbell dev` database.
//!
//! [`open`] assembles an [`Ops`] over the file `doorbell dev --db` writes: the event store
//! ([`SqliteEventStore`], which is also the [`super::EventIndex`]), the archive
//! ([`SqliteArchive`]), the events queue and its dead-letter queue ([`SqliteQueue`], named
//! [`EVENTS_QUEUE`] and [`DEAD_LETTER_QUEUE`]), the claim-check store, and [`SqliteCounters`].
//! The commands can run while `dev` runs: SQLite serialises the two processes' writes.

use std::path::Path;
use std::sync::Arc;

use super::{Counters, Counts, EventStatus, Ops, OpsError};
use crate::archive::SqliteArchive;
use crate::clock::{Clock, rfc3339_ms};
use crate::payload::SqlitePayloadStore;
use crate::queue::{ClaimCheckQueue, MemoryQueueConfig, SqliteQueue};
use crate::sqlite::SqliteDb;
use crate::store::{SqliteEventStore, Status, StoreError};

/// The local events queue's name.
pub const EVENTS_QUEUE: &str = "doorbell-dev-events";
/// The local dead-letter queue's name.
pub const DEAD_LETTER_QUEUE: &str = "doorbell-dev-dlq";
/// The bucket name written into local claim-check pointers.
pub const PAYLOAD_BUCKET: &str = "doorbell-dev-payloads";

/// Counts from the local database: records by the time ingest received them, and the
/// dead-letter queue's messages by the time they were first sent.
#[derive(Debug, Clone)]
pub struct SqliteCounters {
    db: SqliteDb,
}

impl SqliteCounters {
    /// Counters over `db`.
    pub fn new(db: SqliteDb) -> Self {
        Self { db }
    }
}

#[async_trait::async_trait]
impl Counters for SqliteCounters {
    async fn counts(&self, since_ms: i64, until_ms: i64) -> Result<Counts, OpsError> {
        let (since, until) = (rfc3339_ms(since_ms), rfc3339_ms(until_ms));
        type Row = (String, String, Option<String>, i64);
        let (records, dead): (Vec<Row>, Vec<String>) = self
            .db
            .call(move |c| {
                // received_at is RFC 3339 UTC with milliseconds: text order is time order.
                let records = c
                    .prepare(
                        "SELECT source, status, outcome, conflicts FROM webhook_events
                         WHERE received_at >= ?1 AND received_at < ?2 AND substr(pk, 1, 1) <> '@'",
                    )?
                    .query_map([&since, &until], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let dead = match c.prepare(
                    "SELECT attributes FROM queue_messages WHERE queue = ?1 AND sent_ms >= ?2 AND sent_ms < ?3",
                ) {
                    Ok(mut st) => st
                        .query_map(rusqlite::params![DEAD_LETTER_QUEUE, since_ms, until_ms], |r| r.get(0))?
                        .collect::<rusqlite::Result<Vec<_>>>()?,
                    // No queue table yet: nothing was ever queued.
                    Err(_) => Vec::new(),
                };
                Ok((records, dead))
            })
            .await
            .map_err(OpsError::Counters)?;
        let mut out = Counts::new();
        for (source, status, outcome, conflicts) in records {
            let Some(status) = Status::parse(&status) else {
                continue;
            };
            let st = EventStatus::of_state(status, outcome.as_deref());
            let per = out.entry(source).or_default();
            *per.entry(st).or_default() += 1;
            if conflicts > 0 {
                *per.entry(EventStatus::Conflict).or_default() += conflicts as u64;
            }
        }
        for attrs in dead {
            let attrs: Vec<(String, String)> = serde_json::from_str(&attrs).unwrap_or_default();
            let source = attrs
                .into_iter()
                .find(|(k, _)| k == "source")
                .map_or_else(|| "unknown".to_owned(), |(_, v)| v);
            *out.entry(source)
                .or_default()
                .entry(EventStatus::DeadLettered)
                .or_default() += 1;
        }
        Ok(out)
    }

    fn describe(&self) -> &'static str {
        "local database"
    }
}

/// The local pipeline's queues, stores and archive in `db`, as `doorbell dev` opens them.
pub struct LocalParts {
    /// The event store (and index).
    pub store: Arc<SqliteEventStore>,
    /// The archive.
    pub archive: Arc<SqliteArchive>,
    /// The events queue, with its redrive policy to the dead-letter queue.
    pub queue: SqliteQueue,
    /// The dead-letter queue.
    pub dlq: SqliteQueue,
    /// The claim-check store.
    pub payloads: Arc<SqlitePayloadStore>,
}

/// Opens the local pipeline's parts in `db`; `queue_config` sets the events queue's
/// visibility timeout and redrive policy.
///
/// # Errors
/// [`StoreError::Unavailable`] if a table cannot be created.
pub fn parts(
    db: &SqliteDb,
    queue_config: MemoryQueueConfig,
    clock: Arc<dyn Clock>,
) -> Result<LocalParts, StoreError> {
    let queue = SqliteQueue::new(db.clone(), EVENTS_QUEUE, queue_config, clock)?
        .with_dead_letter_queue(DEAD_LETTER_QUEUE);
    let dlq = queue.dead_letter_queue().ok_or(StoreError::Corrupt {
        key: DEAD_LETTER_QUEUE.into(),
        what: "no dead-letter queue",
    })?;
    Ok(LocalParts {
        store: Arc::new(SqliteEventStore::new(db.clone())?),
        archive: Arc::new(SqliteArchive::new(db.clone())?),
        queue,
        dlq,
        payloads: Arc::new(SqlitePayloadStore::new(db.clone(), PAYLOAD_BUCKET)?),
    })
}

/// The operations layer over the `doorbell dev` database at `path`.
///
/// # Errors
/// [`OpsError::Invalid`] when there is no such file (nothing to inspect: say where `dev`
/// keeps it); [`OpsError::Store`] when it cannot be opened.
pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Ops, OpsError> {
    if !path.exists() {
        return Err(OpsError::Invalid(format!(
            "{} does not exist: pass the file `doorbell dev --db` writes (default doorbell-dev.db in the folder dev ran in)",
            path.display()
        )));
    }
    // A read must not turn someone else's file into a Doorbell database.
    let is_doorbell =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| {
                c.prepare(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'webhook_events'",
                )?
                .exists([])
            });
    match is_doorbell {
        Ok(true) => {}
        Ok(false) => {
            return Err(OpsError::Invalid(format!(
                "{} is not a doorbell dev database (no webhook_events table): pass the file `doorbell dev --db` writes",
                path.display()
            )));
        }
        Err(e) => {
            return Err(OpsError::Invalid(format!(
                "{} cannot be read as a doorbell dev database: {e}",
                path.display()
            )));
        }
    }
    let db = SqliteDb::open(path)?;
    let p = parts(&db, MemoryQueueConfig::default(), clock.clone())?;
    let payloads = p.payloads.clone();
    Ok(Ops {
        store: p.store.clone(),
        index: p.store,
        archive: p.archive,
        queue: Arc::new(ClaimCheckQueue::new(Arc::new(p.queue), payloads.clone())),
        dlq: Arc::new(p.dlq),
        payloads: Some(payloads),
        counters: Arc::new(SqliteCounters::new(db)),
        clock,
    })
}
