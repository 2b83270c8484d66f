//! SQLite event store and entity store, for the local pipeline (`doorbell dev`, `doorbell demo`).
//!
//! Tables: `webhook_events` (one row per idempotency key: `pk`, `source`, `provider`,
//! `event_id`, `topic` (the event type), `payload`, `body_sha256`, `status`, `received_at`,
//! `processed_at`, `attempts`, `lease_expires_at`, `updated_at`, `expires_at`, `last_error`,
//! `outcome`, `conflicts`, `last_conflict_at`) and `entities` (`kind`, `id`, `version`,
//! `state`, `deleted`, `writes`: how many times the state was written). A claim is one `IMMEDIATE`
//! transaction that reads the row, applies [`super::decide`] and writes, so concurrent workers
//! (threads or processes on the same file) serialise on it.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    ClaimOutcome, ClaimRequest, Entity, EntityStore, EntityWrite, EventRecord, EventStore, Status,
    StoreError, decide, truncate_error,
};
use crate::sqlite::{SqliteDb, unavailable};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS webhook_events (
    pk               TEXT PRIMARY KEY,
    source           TEXT NOT NULL,
    provider         TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    topic            TEXT NOT NULL,
    payload          TEXT,
    body_sha256      TEXT NOT NULL,
    status           TEXT NOT NULL,
    received_at      TEXT NOT NULL,
    processed_at     INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease_expires_at INTEGER,
    updated_at       INTEGER,
    expires_at       INTEGER,
    last_error       TEXT,
    outcome          TEXT,
    conflicts        INTEGER NOT NULL DEFAULT 0,
    last_conflict_at INTEGER
);
CREATE TABLE IF NOT EXISTS entities (
    kind    TEXT NOT NULL,
    id      TEXT NOT NULL,
    version INTEGER NOT NULL,
    state   TEXT NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    writes  INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (kind, id)
);
";

const COLUMNS: &str = "pk, source, provider, event_id, topic, status, attempts, received_at, processed_at, lease_expires_at, updated_at, expires_at, body_sha256, last_error, outcome, payload, conflicts, last_conflict_at";

/// Columns added after the first release, with the statement that adds each to an older file.
const ADDED_COLUMNS: [(&str, &str, &str); 4] = [
    (
        "entities",
        "deleted",
        "ALTER TABLE entities ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0",
    ),
    (
        "entities",
        "writes",
        "ALTER TABLE entities ADD COLUMN writes INTEGER NOT NULL DEFAULT 1",
    ),
    (
        "webhook_events",
        "conflicts",
        "ALTER TABLE webhook_events ADD COLUMN conflicts INTEGER NOT NULL DEFAULT 0",
    ),
    (
        "webhook_events",
        "last_conflict_at",
        "ALTER TABLE webhook_events ADD COLUMN last_conflict_at INTEGER",
    ),
];

/// The SQLite store. Cloning shares the database.
#[derive(Debug, Clone)]
pub struct SqliteEventStore {
    db: SqliteDb,
}

impl SqliteEventStore {
    /// The store in `db` (its tables created if needed): the local pipeline's database, which
    /// the queue and the payload store share ([`crate::sqlite`]).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] if the tables cannot be created or migrated.
    pub fn new(db: SqliteDb) -> Result<Self, StoreError> {
        db.migrate(SCHEMA)?;
        // Files written by earlier versions gain the columns added since.
        db.call_blocking(|conn| {
            for (table, column, ddl) in ADDED_COLUMNS {
                let has = conn
                    .prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")
                    .and_then(|mut st| st.exists([table, column]))?;
                if !has {
                    conn.execute_batch(ddl)?;
                }
            }
            Ok(())
        })
        .map_err(|e| unavailable("open", e))?;
        Ok(Self { db })
    }

    /// Opens (creating if needed) the database file at `path` ([`SqliteDb::open`]: write-ahead
    /// log, a commit survives the process being killed) and the store in it.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] if it cannot be opened or migrated.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::new(SqliteDb::open(path)?)
    }

    /// A store in a private in-memory database.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] if SQLite cannot allocate it.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::new(SqliteDb::in_memory()?)
    }

    async fn call<R, F>(&self, operation: &'static str, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
        R: Send + 'static,
    {
        self.db.call(f).await.map_err(|e| unavailable(operation, e))
    }

    /// All records, oldest key first (for the CLI's inspection).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    pub async fn all(&self) -> Result<Vec<EventRecord>, StoreError> {
        self.call("scan", |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM webhook_events ORDER BY rowid"
            ))?;
            stmt.query_map([], row_to_record)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .await?
        .into_iter()
        .collect()
    }
}

#[async_trait::async_trait]
impl crate::ops::EventIndex for SqliteEventStore {
    async fn alerts(&self, q: &crate::ops::AlertQuery) -> Result<Vec<EventRecord>, StoreError> {
        let q = q.clone();
        self.call("alerts", move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM webhook_events
                 WHERE ((?1 AND status = 'FAILED') OR (?2 AND conflicts > 0))
                   AND (?3 IS NULL OR source = ?3)
                 ORDER BY COALESCE(updated_at, 0) DESC LIMIT ?4"
            ))?;
            stmt.query_map(
                params![q.failed, q.conflicts, q.source, q.limit as i64],
                row_to_record,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .await?
        .into_iter()
        .collect()
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<EventRecord>, StoreError> {
        let keys = keys.to_vec();
        self.call("get_many", move |conn| {
            let mut out = Vec::with_capacity(keys.len());
            for k in &keys {
                if let Some(r) = read(conn, k)? {
                    out.push(r);
                }
            }
            Ok(out)
        })
        .await?
        .into_iter()
        .collect()
    }
}

type RowResult = Result<EventRecord, StoreError>;

fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<RowResult> {
    let key: String = row.get(0)?;
    let status: String = row.get(5)?;
    let Some(status) = Status::parse(&status) else {
        return Ok(Err(StoreError::Corrupt {
            key,
            what: "unknown status",
        }));
    };
    Ok(Ok(EventRecord {
        key,
        source: row.get(1)?,
        provider: row.get(2)?,
        event_id: row.get(3)?,
        event_type: row.get(4)?,
        status,
        attempts: row.get(6)?,
        received_at: row.get(7)?,
        processed_at_ms: row.get(8)?,
        lease_expires_at_ms: row.get(9)?,
        updated_at_ms: row.get(10)?,
        expires_at_s: row.get(11)?,
        body_sha256: row.get(12)?,
        last_error: row.get(13)?,
        outcome: row.get(14)?,
        payload: row.get(15)?,
        conflicts: row.get(16)?,
        last_conflict_at_ms: row.get(17)?,
    }))
}

fn read(conn: &Connection, key: &str) -> rusqlite::Result<Option<RowResult>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM webhook_events WHERE pk = ?1"
    ))?
    .query_row([key], row_to_record)
    .optional()
}

/// How a claim ends.
enum Finish {
    Processed { outcome: String },
    Failed { error: String },
}

/// Marks the claim `attempt` of `key` finished; `false` when it is no longer that attempt's.
fn finish(
    conn: &Connection,
    key: &str,
    attempt: u32,
    how: Finish,
    now_ms: i64,
) -> rusqlite::Result<bool> {
    let (status, processed_at, outcome, error) = match how {
        Finish::Processed { outcome } => (Status::Processed, Some(now_ms), Some(outcome), None),
        Finish::Failed { error } => (Status::Failed, None, None, Some(truncate_error(&error))),
    };
    let n = conn
        .prepare_cached(
            "UPDATE webhook_events SET status = ?1, processed_at = COALESCE(?2, processed_at),
             outcome = COALESCE(?3, outcome), last_error = COALESCE(?4, last_error),
             lease_expires_at = NULL, updated_at = ?5
         WHERE pk = ?6 AND status = 'IN_PROGRESS' AND attempts = ?7",
        )?
        .execute(params![
            status.as_str(),
            processed_at,
            outcome,
            error,
            now_ms,
            key,
            attempt
        ])?;
    Ok(n == 1)
}

impl SqliteEventStore {
    async fn finish(
        &self,
        op: &'static str,
        key: &str,
        attempt: u32,
        how: Finish,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let k = key.to_owned();
        if self
            .call(op, move |conn| finish(conn, &k, attempt, how, now_ms))
            .await?
        {
            Ok(())
        } else {
            Err(StoreError::LeaseLost {
                key: key.to_owned(),
            })
        }
    }
}

#[async_trait::async_trait]
impl EventStore for SqliteEventStore {
    async fn claim(&self, req: &ClaimRequest) -> Result<ClaimOutcome, StoreError> {
        let req = req.clone();
        // Runs inside the database thread's transaction: the read, the decision and the write
        // are one atomic step.
        self.call("claim", move |conn| {
            let existing = match read(conn, &req.key)?.transpose() {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            if let Some(outcome) = decide(existing.as_ref(), &req) {
                return Ok(Ok(outcome));
            }
            let attempts = existing.as_ref().map_or(0, |r| r.attempts) + 1;
            conn.prepare_cached(
                "INSERT INTO webhook_events (pk, source, provider, event_id, topic, payload, body_sha256,
                     status, received_at, attempts, lease_expires_at, updated_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'IN_PROGRESS', ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT (pk) DO UPDATE SET status = 'IN_PROGRESS', attempts = excluded.attempts,
                     topic = excluded.topic, body_sha256 = excluded.body_sha256,
                     payload = COALESCE(webhook_events.payload, excluded.payload),
                     lease_expires_at = excluded.lease_expires_at, updated_at = excluded.updated_at,
                     expires_at = excluded.expires_at, processed_at = NULL",
            )?
            .execute(params![
                req.key, req.source, req.provider, req.event_id, req.event_type, req.payload,
                req.body_sha256, req.received_at, attempts, req.lease_expires_at_ms, req.now_ms,
                req.expires_at_s
            ])?;
            Ok(Ok(ClaimOutcome::Claimed { attempts }))
        })
        .await?
    }

    async fn complete(
        &self,
        key: &str,
        attempt: u32,
        outcome: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let how = Finish::Processed {
            outcome: outcome.to_owned(),
        };
        self.finish("complete", key, attempt, how, now_ms).await
    }

    async fn fail(
        &self,
        key: &str,
        attempt: u32,
        error: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let how = Finish::Failed {
            error: error.to_owned(),
        };
        self.finish("fail", key, attempt, how, now_ms).await
    }

    async fn get(&self, key: &str) -> Result<Option<EventRecord>, StoreError> {
        let key = key.to_owned();
        self.call("get", move |conn| read(conn, &key))
            .await?
            .transpose()
    }

    async fn record_conflict(&self, key: &str, now_ms: i64) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.call("record_conflict", move |conn| {
            conn.execute(
                "UPDATE webhook_events SET conflicts = conflicts + 1, last_conflict_at = ?2 WHERE pk = ?1",
                params![key, now_ms],
            )
        })
        .await
        .map(|_| ())
    }

    async fn record_replay(
        &self,
        key: &str,
        outcome: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let (key, outcome) = (key.to_owned(), outcome.to_owned());
        self.call("record_replay", move |conn| {
            conn.execute(
                "UPDATE webhook_events SET status = 'PROCESSED', outcome = ?2, processed_at = ?3,
                     updated_at = ?3, lease_expires_at = NULL
                 WHERE pk = ?1 AND (status <> 'IN_PROGRESS' OR COALESCE(lease_expires_at, 0) < ?3)",
                params![key, outcome, now_ms],
            )
        })
        .await
        .map(|n| n == 1)
    }

    async fn put_record(&self, r: &EventRecord) -> Result<(), StoreError> {
        let r = r.clone();
        self.call("put", move |conn| {
            conn.execute(
                &format!("INSERT OR REPLACE INTO webhook_events ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"),
                params![
                    r.key, r.source, r.provider, r.event_id, r.event_type, r.status.as_str(), r.attempts,
                    r.received_at, r.processed_at_ms, r.lease_expires_at_ms, r.updated_at_ms, r.expires_at_s,
                    r.body_sha256, r.last_error, r.outcome, r.payload, r.conflicts, r.last_conflict_at_ms
                ],
            )
        })
        .await
        .map(|_| ())
    }
}

#[async_trait::async_trait]
impl EntityStore for SqliteEventStore {
    async fn put_if_newer(
        &self,
        kind: &str,
        id: &str,
        version: i64,
        state: &serde_json::Value,
    ) -> Result<EntityWrite, StoreError> {
        let (kind, id, state) = (kind.to_owned(), id.to_owned(), state.to_string());
        self.call("put_entity", move |conn| {
            let n = conn
                .prepare_cached(
                    "INSERT INTO entities (kind, id, version, state) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (kind, id) DO UPDATE SET version = excluded.version, state = excluded.state,
                         writes = entities.writes + 1
                     WHERE excluded.version > entities.version AND entities.deleted = 0",
                )?
                .execute(params![kind, id, version, state])?;
            if n == 1 {
                return Ok(EntityWrite::Written);
            }
            let deleted: bool = conn.query_row(
                "SELECT deleted FROM entities WHERE kind = ?1 AND id = ?2",
                [&kind, &id],
                |r| r.get(0),
            )?;
            Ok(if deleted {
                EntityWrite::Deleted
            } else {
                EntityWrite::Stale
            })
        })
        .await
    }

    async fn delete(
        &self,
        kind: &str,
        id: &str,
        version: i64,
        state: &serde_json::Value,
    ) -> Result<EntityWrite, StoreError> {
        let (kind, id, state) = (kind.to_owned(), id.to_owned(), state.to_string());
        let n = self
            .call("delete_entity", move |conn| {
                conn.execute(
                    "INSERT INTO entities (kind, id, version, state, deleted) VALUES (?1, ?2, ?3, ?4, 1)
                     ON CONFLICT (kind, id) DO UPDATE SET version = excluded.version, state = excluded.state, deleted = 1,
                         writes = entities.writes + 1
                     WHERE entities.deleted = 0",
                    params![kind, id, version, state],
                )
            })
            .await?;
        Ok(if n == 1 {
            EntityWrite::Written
        } else {
            EntityWrite::Deleted
        })
    }

    async fn get_entity(&self, kind: &str, id: &str) -> Result<Option<Entity>, StoreError> {
        let (k, i) = (kind.to_owned(), id.to_owned());
        let row: Option<(i64, String, bool)> = self
            .call("get_entity", move |conn| {
                conn.query_row(
                    "SELECT version, state, deleted FROM entities WHERE kind = ?1 AND id = ?2",
                    [k, i],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
            })
            .await?;
        row.map(|(version, state, deleted)| {
            serde_json::from_str(&state)
                .map(|state| Entity {
                    version,
                    state,
                    deleted,
                })
                .map_err(|_| StoreError::Corrupt {
                    key: format!("{kind}#{id}"),
                    what: "state is not JSON",
                })
        })
        .transpose()
    }
}
