//! The local pipeline's database: one SQLite file (`doorbell dev --db FILE`) holding everything
//! `doorbell dev` must not lose, behind one connection shared by its adapters:
//!
//! - the event store and entity store ([`crate::store::SqliteEventStore`]: `webhook_events`,
//!   `entities`);
//! - the events queue and its dead-letter queue ([`crate::queue::SqliteQueue`]:
//!   `queue_messages`, one row per message, the queue's name in a column);
//! - the claim-checked envelopes ([`crate::payload::SqlitePayloadStore`]: `payloads`), freed
//!   when the last message pointing at them is deleted.
//!
//! Every write is one transaction, committed before the call returns: a message `send`
//! returns (and ingest answers 2xx) only after its row is committed. The file is in
//! write-ahead-log mode (<https://sqlite.org/wal.html>). With [`Durability::Process`] (the
//! default, `synchronous = NORMAL`) a commit survives the process crashing or being killed;
//! a power loss or an operating-system crash can undo the last commits, never corrupt the
//! file. With [`Durability::PowerLoss`] (`synchronous = FULL`) every commit is synced to disk
//! before it returns (<https://sqlite.org/pragma.html#pragma_synchronous>), at several times
//! the cost per commit. The `-wal` and `-shm` files beside the database belong to it.
//!
//! One connection, one lock: the adapters' operations are short transactions, and SQLite has
//! one writer at a time anyway. Other processes may read the file while `doorbell dev` runs.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;

use crate::store::StoreError;

/// What a committed write survives. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// The process being killed or crashing (`synchronous = NORMAL`).
    #[default]
    Process,
    /// Also a power loss or an operating-system crash (`synchronous = FULL`).
    PowerLoss,
}

/// A shared connection to the local pipeline's database. Cloning shares it.
#[derive(Debug, Clone)]
pub struct SqliteDb {
    conn: Arc<Mutex<Connection>>,
}

pub(crate) fn unavailable(operation: &'static str, e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable {
        operation,
        message: e.to_string(),
    }
}

impl SqliteDb {
    /// Opens (creating if needed) the database file at `path` with [`Durability::Process`].
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] if it cannot be opened or put in write-ahead-log mode.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, Durability::default())
    }

    /// Opens (creating if needed) the database file at `path` with `durability`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] if it cannot be opened or put in write-ahead-log mode.
    pub fn open_with(path: impl AsRef<Path>, durability: Durability) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(|e| unavailable("open", e))?;
        let synchronous = match durability {
            Durability::Process => "NORMAL",
            Durability::PowerLoss => "FULL",
        };
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
            .and_then(|_| conn.pragma_update(None, "synchronous", synchronous))
            .map_err(|e| unavailable("open", e))?;
        Self::init(conn)
    }

    /// A private in-memory database (gone when the last clone is dropped).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] if SQLite cannot allocate it.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(|e| unavailable("open", e))?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        // Another process (an operator's query, a second reader) may hold the file briefly.
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| unavailable("open", e))?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// The connection, locked.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Connection> {
        // rusqlite rolls back an unfinished transaction on drop, so a poisoned lock is safe.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `sql` (several statements) once, for an adapter's schema.
    pub(crate) fn migrate(&self, sql: &str) -> Result<(), StoreError> {
        self.lock()
            .execute_batch(sql)
            .map_err(|e| unavailable("open", e))
    }
}
