//! A durable local queue in the pipeline's SQLite database ([`crate::sqlite`]), with the SQS
//! semantics the worker relies on, for `doorbell dev`.
//!
//! Table `queue_messages`, one row per message: `seq` (the order of sending; the message id is
//! derived from it), `queue` (the queue's name: the events queue and its dead-letter queue
//! share the table), `body`, `attributes` (JSON `[[name, value], …]`), `group_id`, `sent_ms`
//! (epoch **milliseconds**), `receive_count`, `visible_at_ms` (epoch **milliseconds**), and
//! `payload_key` (the claim-checked envelope a pointer body refers to).
//!
//! - [`EventQueue::send`] commits the row before it returns, so an acknowledged message
//!   survives the process being killed (see [`crate::sqlite::Durability`]).
//! - A receive takes the visible messages, oldest visibility first, in one transaction: each
//!   taken message's receive count goes up and it stays invisible for the visibility timeout.
//!   A message already received `max_receive_count` times is moved to the dead-letter queue
//!   instead (SQS's redrive policy: same message id, body, attributes and send time, receive
//!   count reset).
//! - A receipt handle names the message and the receive it came from
//!   (`{seq}.{receive_count}`): a delete with the handle of an earlier receive (a worker whose
//!   visibility timeout ran out before it finished) deletes nothing.
//! - Deleting a message whose body is a claim-check pointer also frees the stored envelope
//!   when no other message points at it, in the same transaction.
//!
//! After a restart on the same file, messages in flight when the process died become visible
//! again once their visibility timeout ends, like SQS's; nothing else is needed to recover.

use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};

use super::claim_check::ClaimCheckPointer;
use super::{EventQueue, MemoryQueueConfig, OutgoingMessage, QueueError, ReceivedMessage};
use crate::clock::Clock;
use crate::payload::PAYLOADS_SCHEMA;
use crate::sqlite::SqliteDb;
use crate::store::StoreError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS queue_messages (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    queue         TEXT NOT NULL,
    body          TEXT NOT NULL,
    attributes    TEXT NOT NULL,
    group_id      TEXT,
    sent_ms       INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    visible_at_ms INTEGER NOT NULL,
    payload_key   TEXT
);
CREATE INDEX IF NOT EXISTS queue_messages_visible ON queue_messages (queue, visible_at_ms);
CREATE INDEX IF NOT EXISTS queue_messages_payload ON queue_messages (payload_key)
    WHERE payload_key IS NOT NULL;
";

/// A queue in the local pipeline's database. Cloning shares it.
#[derive(Debug, Clone)]
pub struct SqliteQueue {
    db: SqliteDb,
    name: Arc<str>,
    config: MemoryQueueConfig,
    clock: Arc<dyn Clock>,
    dead_letter: Option<Arc<str>>,
}

fn unavailable(operation: &'static str, e: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable {
        operation,
        message: e.to_string(),
    }
}

/// The message id of row `seq`: UUID-shaped, stable across receives and the move to the
/// dead-letter queue.
fn message_id(seq: i64) -> String {
    format!("00000000-0000-4000-8000-{seq:012x}")
}

fn parse_receipt(handle: &str) -> Option<(i64, u32)> {
    let (seq, count) = handle.split_once('.')?;
    Some((seq.parse().ok()?, count.parse().ok()?))
}

impl SqliteQueue {
    /// The queue named `name` in `db` (its table created if needed).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] if the tables cannot be created.
    pub fn new(
        db: SqliteDb,
        name: &str,
        config: MemoryQueueConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StoreError> {
        db.migrate(SCHEMA)?;
        db.migrate(PAYLOADS_SCHEMA)?;
        Ok(Self {
            db,
            name: name.into(),
            config,
            clock,
            dead_letter: None,
        })
    }

    /// Adds a redrive policy: messages received `max_receive_count` times move to the queue
    /// named `dlq` in the same database.
    #[must_use]
    pub fn with_dead_letter_queue(mut self, dlq: &str) -> Self {
        self.dead_letter = Some(dlq.into());
        self
    }

    /// The dead-letter queue, if any (the same settings, no redrive policy of its own).
    pub fn dead_letter_queue(&self) -> Option<SqliteQueue> {
        self.dead_letter.as_ref().map(|name| SqliteQueue {
            db: self.db.clone(),
            name: name.clone(),
            config: self.config.clone(),
            clock: self.clock.clone(),
            dead_letter: None,
        })
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A pseudo ARN for `SqsEvent` records: `arn:aws:sqs:local:000000000000:{name}`.
    pub fn arn(&self) -> String {
        format!("arn:aws:sqs:local:000000000000:{}", self.name)
    }

    async fn call<R, F>(&self, operation: &'static str, f: F) -> Result<R, QueueError>
    where
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
        R: Send + 'static,
    {
        self.db.call(f).await.map_err(|e| unavailable(operation, e))
    }

    /// Messages in the queue, visible or in flight.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`].
    pub async fn count(&self) -> Result<usize, QueueError> {
        let name = self.name.clone();
        self.call("count", move |c| {
            c.query_row(
                "SELECT count(*) FROM queue_messages WHERE queue = ?1",
                [&*name],
                |r| r.get::<_, i64>(0),
            )
        })
        .await
        .map(|n| n as usize)
    }

    /// Bodies of all messages, oldest first (for inspection; receives nothing).
    ///
    /// # Errors
    /// [`QueueError::Unavailable`].
    pub async fn peek_bodies(&self) -> Result<Vec<String>, QueueError> {
        let name = self.name.clone();
        self.call("peek", move |c| {
            c.prepare("SELECT body FROM queue_messages WHERE queue = ?1 ORDER BY seq")?
                .query_map([&*name], |r| r.get(0))?
                .collect()
        })
        .await
    }

    /// Deletes claim-checked envelopes no message in any queue of the database points at: left
    /// by a process killed between storing an envelope and enqueuing its pointer (nothing was
    /// acknowledged for them). Call it before serving, when no send is in flight. Returns how
    /// many were deleted.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`].
    pub async fn delete_orphan_payloads(&self) -> Result<usize, QueueError> {
        self.call("delete", |c| {
            c.execute(
                "DELETE FROM payloads WHERE NOT EXISTS
                 (SELECT 1 FROM queue_messages WHERE payload_key = payloads.key)",
                [],
            )
        })
        .await
    }

    fn delete_in(conn: &Connection, queue: &str, handle: &str) -> rusqlite::Result<()> {
        let Some((seq, count)) = parse_receipt(handle) else {
            return Ok(());
        };
        let payload: Option<Option<String>> = conn
            .prepare_cached(
                "DELETE FROM queue_messages WHERE seq = ?1 AND queue = ?2 AND receive_count = ?3
                 RETURNING payload_key",
            )?
            .query_row(params![seq, queue, count], |r| r.get(0))
            .optional()?;
        if let Some(Some(key)) = payload {
            conn.execute(
                "DELETE FROM payloads WHERE key = ?1
                 AND NOT EXISTS (SELECT 1 FROM queue_messages WHERE payload_key = ?1)",
                [key],
            )?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl EventQueue for SqliteQueue {
    async fn send(&self, message: OutgoingMessage) -> Result<String, QueueError> {
        message.check_size(self.config.max_message_bytes)?;
        let attributes: Vec<(&str, &str)> = message
            .attributes
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        let attributes = serde_json::to_string(&attributes).map_err(|e| unavailable("send", e))?;
        let payload_key = ClaimCheckPointer::parse(&message.body).map(|p| p.claim_check.key);
        let now = self.clock.now_ms();
        let name = self.name.clone();
        let OutgoingMessage { body, group_id, .. } = message;
        let seq = self
            .call("send", move |c| {
                c.prepare_cached(
                    "INSERT INTO queue_messages (queue, body, attributes, group_id, sent_ms, visible_at_ms, payload_key)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
                )?
                .execute(params![&*name, body, attributes, group_id, now, payload_key])?;
                Ok(c.last_insert_rowid())
            })
            .await?;
        Ok(message_id(seq))
    }

    async fn receive(&self, max: u32) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.receive_for(max, self.config.visibility_timeout_ms)
            .await
    }

    async fn take(&self, max: u32, hold_s: u32) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.receive_for(max, i64::from(hold_s) * 1000).await
    }

    async fn release(&self, receipt_handles: &[&str]) -> Result<(), QueueError> {
        let name = self.name.clone();
        let now = self.clock.now_ms();
        let handles: Vec<(i64, u32)> = receipt_handles
            .iter()
            .filter_map(|h| parse_receipt(h))
            .collect();
        self.call("release", move |c| {
            let mut stmt = c.prepare_cached(
                "UPDATE queue_messages SET visible_at_ms = ?4
                 WHERE seq = ?1 AND queue = ?2 AND receive_count = ?3",
            )?;
            for (seq, count) in handles {
                stmt.execute(params![seq, &*name, count, now])?;
            }
            Ok(())
        })
        .await
    }

    async fn peek(&self, max: usize) -> Result<Option<Vec<ReceivedMessage>>, QueueError> {
        let name = self.name.clone();
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        self.call("peek", move |c| {
            c.prepare_cached(
                "SELECT seq, body, attributes, group_id, sent_ms, receive_count
                 FROM queue_messages WHERE queue = ?1 ORDER BY seq LIMIT ?2",
            )?
            .query_map(params![&*name, max], |r| {
                let (seq, attributes, count): (i64, String, u32) =
                    (r.get(0)?, r.get(2)?, r.get(5)?);
                Ok(ReceivedMessage {
                    message_id: message_id(seq),
                    // A handle of no receive: it deletes and releases nothing.
                    receipt_handle: String::new(),
                    body: r.get(1)?,
                    receive_count: count,
                    sent_timestamp_ms: r.get(4)?,
                    group_id: r.get(3)?,
                    attributes: serde_json::from_str(&attributes).unwrap_or_default(),
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map(Some)
        })
        .await
    }

    async fn stats(&self) -> Result<super::QueueStats, QueueError> {
        let name = self.name.clone();
        let now = self.clock.now_ms();
        self.call("stats", move |c| {
            c.query_row(
                "SELECT COALESCE(SUM(visible_at_ms <= ?2), 0), COALESCE(SUM(visible_at_ms > ?2), 0), MIN(sent_ms)
                 FROM queue_messages WHERE queue = ?1",
                params![&*name, now],
                |r| {
                    Ok(super::QueueStats {
                        visible: r.get::<_, i64>(0)? as u64,
                        in_flight: r.get::<_, i64>(1)? as u64,
                        oldest_sent_ms: r.get(2)?,
                    })
                },
            )
        })
        .await
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        self.delete_batch(&[receipt_handle]).await
    }

    async fn delete_batch(&self, receipt_handles: &[&str]) -> Result<(), QueueError> {
        let name = self.name.clone();
        let handles: Vec<String> = receipt_handles.iter().map(|h| (*h).to_owned()).collect();
        self.call("delete", move |c| {
            handles
                .iter()
                .try_for_each(|h| Self::delete_in(c, &name, h))
        })
        .await
    }

    fn max_message_bytes(&self) -> usize {
        self.config.max_message_bytes
    }

    fn is_fifo(&self) -> bool {
        self.name.ends_with(".fifo")
    }
}

impl SqliteQueue {
    /// A receive whose messages stay invisible for `visibility_ms`.
    async fn receive_for(
        &self,
        max: u32,
        visibility_ms: i64,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let now = self.clock.now_ms();
        let max = max.clamp(1, 10) as usize;
        let redrive_after = self
            .dead_letter
            .as_ref()
            .map(|dlq| (dlq, self.config.max_receive_count));
        let redrive_after = redrive_after.map(|(dlq, n)| (dlq.clone(), n));
        let name = self.name.clone();
        // One operation of the database thread: what it takes is taken atomically.
        self.call("receive", move |c| {
            let mut out = Vec::new();
            let mut taken: Vec<i64> = Vec::new();
            loop {
                let rows: Vec<(i64, String, String, Option<String>, i64, u32)> = c
                    .prepare_cached(
                        "SELECT seq, body, attributes, group_id, sent_ms, receive_count
                         FROM queue_messages WHERE queue = ?1 AND visible_at_ms <= ?2
                         ORDER BY visible_at_ms, seq LIMIT ?3",
                    )?
                    .query_map(params![&*name, now, (max - out.len()) as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                // A message taken in this call is never taken again by it (with a visibility
                // timeout of 0 it would be visible at once).
                let rows: Vec<_> = rows
                    .into_iter()
                    .filter(|r| !taken.contains(&r.0))
                    .collect();
                if rows.is_empty() {
                    break;
                }
                for (seq, body, attributes, group_id, sent_ms, count) in rows {
                    if let Some((dlq, max_count)) = &redrive_after
                        && count >= *max_count
                    {
                        // SQS keeps the message id, body, attributes and the original send time.
                        c.prepare_cached(
                            "UPDATE queue_messages SET queue = ?2, receive_count = 0, visible_at_ms = ?3
                             WHERE seq = ?1",
                        )?
                        .execute(params![seq, &**dlq, now])?;
                        tracing::warn!(
                            message_id = %message_id(seq), receive_count = count, dead_letter_queue = %dlq,
                            "message moved to the dead-letter queue after its maximum receives"
                        );
                        continue;
                    }
                    let count = count + 1;
                    c.prepare_cached(
                        "UPDATE queue_messages SET receive_count = ?2, visible_at_ms = ?3 WHERE seq = ?1",
                    )?
                    .execute(params![seq, count, now + visibility_ms])?;
                    taken.push(seq);
                    let attributes: Vec<(String, String)> =
                        serde_json::from_str(&attributes).unwrap_or_default();
                    out.push(ReceivedMessage {
                        message_id: message_id(seq),
                        receipt_handle: format!("{seq}.{count}"),
                        body,
                        receive_count: count,
                        sent_timestamp_ms: sent_ms,
                        group_id,
                        attributes,
                    });
                }
                if out.len() >= max {
                    break;
                }
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::payload::{PayloadStore, SqlitePayloadStore};
    use crate::queue::ClaimCheckQueue;

    fn msg(body: &str) -> OutgoingMessage {
        OutgoingMessage {
            body: body.into(),
            attributes: vec![("source", "s".into()), ("event_type", String::new())],
            group_id: None,
            deduplication_id: None,
        }
    }

    fn queue(db: &SqliteDb, clock: &ManualClock) -> (SqliteQueue, SqliteQueue) {
        let cfg = MemoryQueueConfig {
            visibility_timeout_ms: 1_000,
            max_receive_count: 3,
            max_message_bytes: 100,
        };
        let q = SqliteQueue::new(db.clone(), "q", cfg, Arc::new(clock.clone()))
            .unwrap()
            .with_dead_letter_queue("dlq");
        let dlq = q.dead_letter_queue().unwrap();
        (q, dlq)
    }

    #[tokio::test]
    async fn only_the_latest_receipt_handle_deletes() {
        let clock = ManualClock::new(0);
        let (q, _) = queue(&SqliteDb::in_memory().unwrap(), &clock);
        q.send(msg("a")).await.unwrap();
        let first = q.receive(1).await.unwrap().remove(0);
        clock.advance_ms(1_000);
        let second = q.receive(1).await.unwrap().remove(0);
        q.delete(&first.receipt_handle).await.unwrap();
        assert_eq!(
            q.count().await.unwrap(),
            1,
            "a stale handle deletes nothing"
        );
        q.delete(&second.receipt_handle).await.unwrap();
        q.delete("not a handle").await.unwrap();
        clock.advance_ms(10_000);
        assert!(q.receive(10).await.unwrap().is_empty());
        assert_eq!(q.count().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn one_receive_takes_a_message_once_even_with_no_visibility_timeout() {
        let clock = ManualClock::new(0);
        let cfg = MemoryQueueConfig {
            visibility_timeout_ms: 0,
            ..MemoryQueueConfig::default()
        };
        let q =
            SqliteQueue::new(SqliteDb::in_memory().unwrap(), "q", cfg, Arc::new(clock)).unwrap();
        q.send(msg("a")).await.unwrap();
        let r = q.receive(10).await.unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(q.receive(10).await.unwrap()[0].receive_count, 2);
    }

    #[tokio::test]
    async fn receives_in_order_and_at_most_ten() {
        let clock = ManualClock::new(0);
        let (q, _) = queue(&SqliteDb::in_memory().unwrap(), &clock);
        for i in 0..12 {
            q.send(msg(&i.to_string())).await.unwrap();
        }
        let r = q.receive(50).await.unwrap();
        let bodies: Vec<_> = r.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
        assert_eq!(q.receive(10).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn messages_and_the_dead_letter_queue_survive_reopening_the_file() {
        let dir = std::env::temp_dir().join(format!(
            "doorbell-sqlite-queue-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dev.db");
        let clock = ManualClock::new(0);
        {
            let (q, dlq) = queue(&SqliteDb::open(&path).unwrap(), &clock);
            q.send(msg("kept")).await.unwrap();
            dlq.send(msg("dead")).await.unwrap();
            q.receive(1).await.unwrap(); // in flight when the process "dies"
        }
        let (q, dlq) = queue(&SqliteDb::open(&path).unwrap(), &clock);
        assert!(q.receive(10).await.unwrap().is_empty(), "still invisible");
        clock.advance_ms(1_000);
        let r = q.receive(10).await.unwrap();
        assert_eq!((r[0].body.as_str(), r[0].receive_count), ("kept", 2));
        assert_eq!(dlq.peek_bodies().await.unwrap(), ["dead"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn deleting_the_last_pointer_frees_the_claim_checked_envelope() {
        let clock = ManualClock::new(0);
        let db = SqliteDb::in_memory().unwrap();
        let cfg = MemoryQueueConfig {
            max_message_bytes: 400,
            ..MemoryQueueConfig::default()
        };
        let q = SqliteQueue::new(db.clone(), "q", cfg, Arc::new(clock.clone()))
            .unwrap()
            .with_dead_letter_queue("dlq");
        let dlq = q.dead_letter_queue().unwrap();
        let payloads = Arc::new(SqlitePayloadStore::new(db.clone(), "local").unwrap());
        let cc = ClaimCheckQueue::new(Arc::new(q.clone()), payloads.clone());
        let big = format!(
            r#"{{"idempotency_key":"k","source":"s","body":"{}"}}"#,
            "x".repeat(500)
        );
        let big_msg = || OutgoingMessage {
            body: big.clone(),
            attributes: vec![],
            group_id: None,
            deduplication_id: None,
        };
        cc.send(big_msg()).await.unwrap();
        cc.send(big_msg()).await.unwrap(); // the same envelope twice: one stored object
        assert_eq!(payloads.count().await.unwrap(), 1);
        let r = q.receive(10).await.unwrap();
        assert_eq!(r.len(), 2);
        q.delete(&r[0].receipt_handle).await.unwrap();
        assert_eq!(
            payloads.count().await.unwrap(),
            1,
            "still referenced by the other message"
        );
        // A message moved to the dead-letter queue keeps its envelope.
        dlq.send(OutgoingMessage {
            body: r[1].body.clone(),
            attributes: vec![],
            group_id: None,
            deduplication_id: None,
        })
        .await
        .unwrap();
        q.delete(&r[1].receipt_handle).await.unwrap();
        assert_eq!(
            payloads.count().await.unwrap(),
            1,
            "the dead-lettered copy points at it"
        );
        let d = dlq.receive(1).await.unwrap();
        dlq.delete(&d[0].receipt_handle).await.unwrap();
        assert_eq!(payloads.count().await.unwrap(), 0);
        assert!(payloads.get("anything").await.is_err());
    }
}
