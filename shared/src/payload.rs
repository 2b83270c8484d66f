//! The claim-check store: where an envelope too large for the queue is kept while its pointer
//! travels on the queue (the "claim check" pattern of the SQS extended client libraries,
//! <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-s3-messages.html>).
//!
//! [`PayloadStore`] is the port; [`S3PayloadStore`] is an Amazon S3 bucket and
//! [`MemoryPayloadStore`] an in-process map for the local pipeline. Objects are written once
//! under a content-addressed key and never modified, so a retried upload of the same envelope
//! writes the same bytes; the bucket's lifecycle rule removes them after the dead-letter
//! queue's retention (see `template.yaml`, `PayloadRetentionDays`).

use std::collections::HashMap;
use std::sync::Mutex;

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;

/// Why a payload operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// No object under the key (expired by the lifecycle rule, or never written).
    #[error("no payload under {key}")]
    NotFound {
        /// The object key.
        key: String,
    },
    /// The store failed, throttled, or could not be reached.
    #[error("payload {operation} failed: {message}")]
    Unavailable {
        /// `put` or `get`.
        operation: &'static str,
        /// The service's or transport's description.
        message: String,
    },
}

/// The claim-check port. See the module docs.
#[async_trait::async_trait]
pub trait PayloadStore: Send + Sync + std::fmt::Debug {
    /// Stores `bytes` under `key`; returns once the store has durably accepted them.
    ///
    /// # Errors
    /// [`PayloadError::Unavailable`].
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), PayloadError>;

    /// Reads the object under `key`.
    ///
    /// # Errors
    /// [`PayloadError::NotFound`] when there is none; [`PayloadError::Unavailable`].
    async fn get(&self, key: &str) -> Result<Vec<u8>, PayloadError>;

    /// The bucket name written into pointers.
    fn bucket(&self) -> &str;
}

/// An S3 bucket.
#[derive(Debug, Clone)]
pub struct S3PayloadStore {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3PayloadStore {
    /// The bucket `bucket` through `client`.
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    /// A client built from `config`; with a custom endpoint (`AWS_ENDPOINT_URL`, an emulator)
    /// it addresses buckets by path, since `bucket.127.0.0.1` does not resolve.
    pub fn from_conf(config: &aws_types::SdkConfig, bucket: impl Into<String>) -> Self {
        let conf = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(config.endpoint_url().is_some())
            .build();
        Self::new(aws_sdk_s3::Client::from_conf(conf), bucket)
    }
}

#[async_trait::async_trait]
impl PayloadStore for S3PayloadStore {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), PayloadError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| PayloadError::Unavailable {
                operation: "put",
                message: DisplayErrorContext(e).to_string(),
            })
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, PayloadError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                    PayloadError::NotFound {
                        key: key.to_owned(),
                    }
                } else {
                    PayloadError::Unavailable {
                        operation: "get",
                        message: DisplayErrorContext(e).to_string(),
                    }
                }
            })?;
        let data = out
            .body
            .collect()
            .await
            .map_err(|e| PayloadError::Unavailable {
                operation: "get",
                message: e.to_string(),
            })?;
        Ok(data.into_bytes().to_vec())
    }

    fn bucket(&self) -> &str {
        &self.bucket
    }
}

/// An in-process store for the local pipeline and tests.
#[derive(Debug, Default)]
pub struct MemoryPayloadStore {
    bucket: String,
    objects: Mutex<HashMap<String, Vec<u8>>>,
}

impl MemoryPayloadStore {
    /// An empty store named `bucket`.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            objects: Mutex::default(),
        }
    }

    /// How many objects it holds.
    pub fn len(&self) -> usize {
        self.objects.lock().map_or(0, |m| m.len())
    }

    /// True when it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes the object under `key` (as the lifecycle rule would), returning whether one was
    /// there.
    pub fn remove(&self, key: &str) -> bool {
        self.objects
            .lock()
            .is_ok_and(|mut m| m.remove(key).is_some())
    }
}

#[async_trait::async_trait]
impl PayloadStore for MemoryPayloadStore {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), PayloadError> {
        self.objects
            .lock()
            .map_err(|_| PayloadError::Unavailable {
                operation: "put",
                message: "store poisoned".into(),
            })?
            .insert(key.to_owned(), bytes);
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, PayloadError> {
        self.objects
            .lock()
            .map_err(|_| PayloadError::Unavailable {
                operation: "get",
                message: "store poisoned".into(),
            })?
            .get(key)
            .cloned()
            .ok_or_else(|| PayloadError::NotFound {
                key: key.to_owned(),
            })
    }

    fn bucket(&self) -> &str {
        &self.bucket
    }
}

/// The `payloads` table of the local pipeline's database: `key` (the object key), `bytes`.
pub(crate) const PAYLOADS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS payloads (
    key   TEXT PRIMARY KEY,
    bytes BLOB NOT NULL
);
";

/// Claim-checked envelopes in the local pipeline's database ([`crate::sqlite`]), for
/// `doorbell dev`: written before the pointer is enqueued, so a 2xx means both are durable,
/// and deleted by [`crate::queue::SqliteQueue`] when the last message pointing at one is
/// deleted (its event done). Nothing stays in memory.
#[derive(Debug, Clone)]
pub struct SqlitePayloadStore {
    db: crate::sqlite::SqliteDb,
    bucket: String,
}

fn sqlite_unavailable(operation: &'static str, e: String) -> PayloadError {
    PayloadError::Unavailable {
        operation,
        message: e,
    }
}

impl SqlitePayloadStore {
    /// The store in `db`; `bucket` is the name written into pointers.
    ///
    /// # Errors
    /// [`crate::store::StoreError::Unavailable`] if its table cannot be created.
    pub fn new(
        db: crate::sqlite::SqliteDb,
        bucket: impl Into<String>,
    ) -> Result<Self, crate::store::StoreError> {
        db.migrate(PAYLOADS_SCHEMA)?;
        Ok(Self {
            db,
            bucket: bucket.into(),
        })
    }

    /// How many envelopes it holds.
    ///
    /// # Errors
    /// [`PayloadError::Unavailable`].
    pub async fn count(&self) -> Result<usize, PayloadError> {
        self.db
            .call(|c| c.query_row("SELECT count(*) FROM payloads", [], |r| r.get::<_, i64>(0)))
            .await
            .map(|n| n as usize)
            .map_err(|e| sqlite_unavailable("count", e))
    }
}

#[async_trait::async_trait]
impl PayloadStore for SqlitePayloadStore {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), PayloadError> {
        let key = key.to_owned();
        self.db
            .call(move |c| {
                c.execute(
                    "INSERT OR REPLACE INTO payloads (key, bytes) VALUES (?1, ?2)",
                    rusqlite::params![key, bytes],
                )
            })
            .await
            .map(|_| ())
            .map_err(|e| sqlite_unavailable("put", e))
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, PayloadError> {
        use rusqlite::OptionalExtension;
        let k = key.to_owned();
        self.db
            .call(move |c| {
                c.query_row("SELECT bytes FROM payloads WHERE key = ?1", [k], |r| {
                    r.get(0)
                })
                .optional()
            })
            .await
            .map_err(|e| sqlite_unavailable("get", e))?
            .ok_or_else(|| PayloadError::NotFound {
                key: key.to_owned(),
            })
    }

    fn bucket(&self) -> &str {
        &self.bucket
    }
}
