//! The local archive: table `archive` in the pipeline's SQLite database ([`crate::sqlite`]).
//!
//! Columns: `seq`, `idempotency_key`, `source`, `event_id`, `event_type`, `body_sha256`,
//! `received_at_ms` and `archived_at_ms` (epoch **milliseconds**), `envelope` (the envelope's
//! JSON, body byte for byte). A delivery archived again (a retry) is stored once: the row is
//! unique on (key, event type, body digest). [`SqliteArchive::expire`] deletes rows archived
//! before the retention period.

use rusqlite::params;

use super::{Archive, ArchiveError, ArchiveQuery};
use crate::envelope::Envelope;
use crate::sqlite::SqliteDb;
use crate::store::StoreError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS archive (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL,
    source          TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    body_sha256     TEXT NOT NULL,
    received_at_ms  INTEGER NOT NULL,
    archived_at_ms  INTEGER NOT NULL,
    envelope        TEXT NOT NULL,
    UNIQUE (idempotency_key, event_type, body_sha256, event_id)
);
CREATE INDEX IF NOT EXISTS archive_received ON archive (received_at_ms);
CREATE INDEX IF NOT EXISTS archive_event_id ON archive (event_id);
CREATE INDEX IF NOT EXISTS archive_archived ON archive (archived_at_ms);
";

/// The archive in the local pipeline's database. Cloning shares it.
#[derive(Debug, Clone)]
pub struct SqliteArchive {
    db: SqliteDb,
}

fn unavailable(operation: &'static str, e: impl std::fmt::Display) -> ArchiveError {
    ArchiveError::Unavailable {
        operation,
        message: e.to_string(),
    }
}

impl SqliteArchive {
    /// The archive in `db` (its table created if needed).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] if the table cannot be created.
    pub fn new(db: SqliteDb) -> Result<Self, StoreError> {
        db.migrate(SCHEMA)?;
        Ok(Self { db })
    }

    /// Deletes deliveries archived before `before_ms` (epoch ms); returns how many.
    ///
    /// # Errors
    /// [`ArchiveError::Unavailable`].
    pub async fn expire(&self, before_ms: i64) -> Result<usize, ArchiveError> {
        self.db
            .call(move |c| c.execute("DELETE FROM archive WHERE archived_at_ms < ?1", [before_ms]))
            .await
            .map_err(|e| unavailable("expire", e))
    }
}

#[async_trait::async_trait]
impl Archive for SqliteArchive {
    async fn put(&self, envelopes: &[Envelope], now_ms: i64) -> Result<(), ArchiveError> {
        let rows: Vec<_> = envelopes
            .iter()
            .map(|e| {
                (
                    e.idempotency_key.clone(),
                    e.source.clone(),
                    e.event_id.clone(),
                    e.event_type.clone(),
                    e.body_sha256.clone(),
                    e.received_at_ms().unwrap_or(now_ms),
                    e.to_json(),
                )
            })
            .collect();
        self.db
            .call(move |c| {
                let mut stmt = c.prepare_cached(
                    "INSERT OR IGNORE INTO archive (idempotency_key, source, event_id, event_type, \
                     body_sha256, received_at_ms, archived_at_ms, envelope) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                for (k, s, id, t, sha, received, json) in rows {
                    stmt.execute(params![k, s, id, t, sha, received, now_ms, json])?;
                }
                Ok(())
            })
            .await
            .map_err(|e| unavailable("put", e))
    }

    async fn list(&self, q: &ArchiveQuery) -> Result<Vec<Envelope>, ArchiveError> {
        let q = q.clone();
        let texts: Vec<String> = self
            .db
            .call(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT CASE WHEN ?7 THEN json_remove(envelope, '$.body', '$.body_base64') \
                            ELSE envelope END FROM archive \
                     WHERE received_at_ms >= ?1 AND received_at_ms < ?2 \
                       AND (?3 IS NULL OR source = ?3) \
                       AND (?4 IS NULL OR idempotency_key = ?4) \
                       AND (?5 IS NULL OR event_id = ?5) \
                     ORDER BY received_at_ms DESC, idempotency_key DESC LIMIT ?6",
                )?;
                let limit = if q.limit == 0 { -1 } else { q.limit as i64 };
                stmt.query_map(
                    params![
                        q.since_ms.unwrap_or(i64::MIN),
                        q.until_ms.unwrap_or(i64::MAX),
                        q.source,
                        q.key,
                        q.event_id,
                        limit,
                        q.without_bodies
                    ],
                    |r| r.get(0),
                )?
                .collect()
            })
            .await
            .map_err(|e| unavailable("list", e))?;
        // The rows were written from parsed envelopes; one that no longer parses is skipped
        // rather than hiding every other.
        Ok(texts
            .iter()
            .filter_map(|t| serde_json::from_str::<Envelope>(t).ok())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Provider, SourceConfig};
    use crate::secret::Secret;
    use crate::verify::{Dedupe, Verified};

    fn env(id: &str, body: &str, at_ms: i64) -> Envelope {
        let src = SourceConfig::new("shop", Provider::Stripe, vec![Secret::new("s")]);
        let v = Verified {
            event_id: id.into(),
            event_type: "a.b".into(),
            occurred_at_ms: None,
            dedupe: Dedupe::EventId,
            reply: None,
            headers: vec![],
        };
        Envelope::new(&src, v, body.as_bytes(), None, at_ms)
    }

    #[tokio::test]
    async fn keeps_each_delivery_once_newest_first_and_expires_by_archive_time() {
        let a = SqliteArchive::new(SqliteDb::in_memory().unwrap()).unwrap();
        let (e1, e2, e1b) = (
            env("1", "{}", 1_000),
            env("2", "{}", 2_000),
            env("1", "{ }", 3_000),
        );
        a.put(&[e1.clone(), e2.clone()], 10_000).await.unwrap();
        a.put(&[e1.clone(), e1b.clone()], 20_000).await.unwrap();
        let all = a.list(&ArchiveQuery::default()).await.unwrap();
        assert_eq!(all, vec![e1b.clone(), e2.clone(), e1.clone()]);
        let q = ArchiveQuery {
            key: Some(e1.idempotency_key.clone()),
            ..Default::default()
        };
        assert_eq!(a.list(&q).await.unwrap(), vec![e1b.clone(), e1.clone()]);
        let q = ArchiveQuery {
            since_ms: Some(1_500),
            until_ms: Some(3_000),
            ..Default::default()
        };
        assert_eq!(a.list(&q).await.unwrap(), vec![e2.clone()]);
        let q = ArchiveQuery {
            without_bodies: true,
            ..Default::default()
        };
        let bare = a.list(&q).await.unwrap();
        assert_eq!(bare.len(), 3);
        assert!(
            bare.iter()
                .all(|e| e.body.is_none() && e.body_base64.is_none())
        );
        assert_eq!(bare[0].body_sha256, e1b.body_sha256);
        assert_eq!(a.expire(15_000).await.unwrap(), 2);
        assert_eq!(a.list(&ArchiveQuery::default()).await.unwrap(), vec![e1b]);
    }
}
