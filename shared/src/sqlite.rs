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
//! One connection, owned by one thread, with group commit: the adapters' operations are
//! closures sent to that thread, which runs every operation waiting for it in one
//! transaction (each inside its own savepoint, so one operation's error undoes only its own
//! writes), commits once, and only then answers each caller. Concurrent deliveries and a
//! worker's batch of records therefore share one commit, and no async task ever blocks on a
//! lock. Other processes may read the file while `doorbell dev` runs.

use std::path::Path;
use std::sync::mpsc;

use rusqlite::Connection;

use crate::store::StoreError;

/// Most operations run in one transaction.
const MAX_GROUP: usize = 512;

/// What a committed write survives. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// The process being killed or crashing (`synchronous = NORMAL`).
    #[default]
    Process,
    /// Also a power loss or an operating-system crash (`synchronous = FULL`).
    PowerLoss,
}

/// A handle on the local pipeline's database. Cloning shares it; the connection closes when
/// the last handle is dropped.
#[derive(Debug, Clone)]
pub struct SqliteDb {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

pub(crate) fn unavailable(operation: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable {
        operation,
        message: e.to_string(),
    }
}

/// An operation for the database thread: run it (inside the group's transaction), then, once
/// the group is committed or not, answer its caller.
trait Job: Send {
    fn run(self: Box<Self>, conn: &Connection) -> Box<dyn Answer>;
    fn abort(self: Box<Self>, error: &str);
}

trait Answer: Send {
    fn answer(self: Box<Self>, commit_error: Option<&str>);
}

enum Reply<R> {
    Async(tokio::sync::oneshot::Sender<Result<R, String>>),
    Blocking(mpsc::SyncSender<Result<R, String>>),
}

impl<R> Reply<R> {
    fn send(self, r: Result<R, String>) {
        // A caller that went away (its request was cancelled) needs no answer.
        let _ = match self {
            Reply::Async(tx) => tx.send(r).map_err(|_| ()),
            Reply::Blocking(tx) => tx.send(r).map_err(|_| ()),
        };
    }
}

struct Op<F, R> {
    f: F,
    reply: Reply<R>,
}

struct Done<R> {
    result: Result<R, String>,
    reply: Reply<R>,
}

impl<F, R> Job for Op<F, R>
where
    F: FnOnce(&Connection) -> rusqlite::Result<R> + Send,
    R: Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> Box<dyn Answer> {
        let f = self.f;
        let result = match conn.execute_batch("SAVEPOINT op") {
            Err(e) => Err(e.to_string()),
            Ok(()) => {
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn)));
                match ran {
                    Ok(Ok(r)) => conn
                        .execute_batch("RELEASE op")
                        .map(|()| r)
                        .map_err(|e| e.to_string()),
                    failed => {
                        let _ = conn.execute_batch("ROLLBACK TO op; RELEASE op");
                        Err(match failed {
                            Ok(Err(e)) => e.to_string(),
                            _ => "database operation panicked".to_owned(),
                        })
                    }
                }
            }
        };
        Box::new(Done {
            result,
            reply: self.reply,
        })
    }

    fn abort(self: Box<Self>, error: &str) {
        self.reply.send(Err(error.to_owned()));
    }
}

impl<R: Send> Answer for Done<R> {
    fn answer(self: Box<Self>, commit_error: Option<&str>) {
        let result = match (self.result, commit_error) {
            (Ok(_), Some(e)) => Err(e.to_owned()),
            (r, _) => r,
        };
        self.reply.send(result);
    }
}

/// The database thread: takes every waiting operation, runs them in one transaction,
/// commits, answers. Ends when the last [`SqliteDb`] is dropped.
fn serve(conn: Connection, jobs: mpsc::Receiver<Box<dyn Job>>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(j) => group.push(j),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let e = e.to_string();
            group.into_iter().for_each(|j| j.abort(&e));
            continue;
        }
        let answers: Vec<Box<dyn Answer>> = group.into_iter().map(|j| j.run(&conn)).collect();
        let commit_error = conn.execute_batch("COMMIT").err().map(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            e.to_string()
        });
        for a in answers {
            a.answer(commit_error.as_deref());
        }
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
        Self::start(conn)
    }

    /// A private in-memory database (gone when the last handle is dropped).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] if SQLite cannot allocate it.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::start(Connection::open_in_memory().map_err(|e| unavailable("open", e))?)
    }

    fn start(conn: Connection) -> Result<Self, StoreError> {
        // Another process (an operator's query, a second reader) may hold the file briefly.
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| unavailable("open", e))?;
        let (jobs, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("doorbell-sqlite".into())
            .spawn(move || serve(conn, rx))
            .map_err(|e| unavailable("open", e))?;
        Ok(Self { jobs })
    }

    /// Runs `f` on the database thread within a group's transaction and returns its result
    /// once that transaction is committed.
    ///
    /// # Errors
    /// `f`'s error (its writes undone), or the commit's (everything undone), as text.
    pub(crate) async fn call<R, F>(&self, f: F) -> Result<R, String>
    where
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(Op {
                f,
                reply: Reply::Async(tx),
            }))
            .map_err(|_| "database thread stopped".to_owned())?;
        rx.await.map_err(|_| "database thread stopped".to_owned())?
    }

    /// [`SqliteDb::call`] for synchronous callers (set-up, tools): blocks the calling thread.
    ///
    /// # Errors
    /// As [`SqliteDb::call`].
    pub(crate) fn call_blocking<R, F>(&self, f: F) -> Result<R, String>
    where
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        self.jobs
            .send(Box::new(Op {
                f,
                reply: Reply::Blocking(tx),
            }))
            .map_err(|_| "database thread stopped".to_owned())?;
        rx.recv()
            .map_err(|_| "database thread stopped".to_owned())?
    }

    /// Runs `sql` (several statements) once, for an adapter's schema.
    pub(crate) fn migrate(&self, sql: &'static str) -> Result<(), StoreError> {
        self.call_blocking(move |c| c.execute_batch(sql))
            .map_err(|e| unavailable("open", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pragmas(db: &SqliteDb) -> (String, i64) {
        db.call_blocking(|c| {
            Ok((
                c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?,
                c.query_row("PRAGMA synchronous", [], |r| r.get(0))?,
            ))
        })
        .unwrap()
    }

    #[test]
    fn a_file_logs_ahead_and_syncs_as_its_durability_says() {
        let dir = std::env::temp_dir().join(format!(
            "doorbell-sqlite-wal-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let normal = SqliteDb::open(dir.join("a.db")).unwrap();
        assert_eq!(pragmas(&normal), ("wal".to_owned(), 1), "WAL, NORMAL");
        let full = SqliteDb::open_with(dir.join("b.db"), Durability::PowerLoss).unwrap();
        assert_eq!(pragmas(&full), ("wal".to_owned(), 2), "WAL, FULL");
        drop((normal, full));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn one_operations_error_undoes_only_its_own_writes() {
        let db = SqliteDb::in_memory().unwrap();
        db.migrate("CREATE TABLE t (v INTEGER PRIMARY KEY)")
            .unwrap();
        let ok = db.call(|c| c.execute("INSERT INTO t VALUES (1)", []));
        let bad = db.call(|c| {
            c.execute("INSERT INTO t VALUES (2)", [])?;
            c.execute("INSERT INTO t VALUES (1)", []) // duplicate key: this operation fails
        });
        let (ok, bad) = tokio::join!(ok, bad);
        assert_eq!(ok, Ok(1));
        assert!(bad.is_err());
        let rows: Vec<i64> = db
            .call(|c| {
                c.prepare("SELECT v FROM t ORDER BY v")?
                    .query_map([], |r| r.get(0))?
                    .collect()
            })
            .await
            .unwrap();
        assert_eq!(rows, [1], "the failed operation's first insert was undone");
    }

    #[tokio::test]
    async fn a_panicking_operation_is_an_error_and_the_database_goes_on() {
        let db = SqliteDb::in_memory().unwrap();
        let r: Result<(), String> = db.call(|_| panic!("bug")).await;
        assert_eq!(r, Err("database operation panicked".to_owned()));
        assert_eq!(
            db.call(|c| c.query_row("SELECT 7", [], |r| r.get::<_, i64>(0)))
                .await,
            Ok(7)
        );
    }
}
