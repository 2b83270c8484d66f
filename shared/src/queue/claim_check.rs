//! The claim check: envelopes larger than the queue's maximum message size go to a
//! [`PayloadStore`] (S3) and the queue carries a pointer (the pattern of AWS's SQS extended
//! client libraries, <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-s3-messages.html>).
//! Nothing is truncated; the worker reads the envelope back and checks its SHA-256.
//!
//! Pointer, the whole SQS message body (JSON; `bytes` in **bytes**, `sha256` lower-case hex over
//! the stored envelope):
//!
//! ```json
//! { "v": 1,
//!   "claim_check": { "bucket": "…", "key": "envelopes/github/<sha256>.json",
//!                    "bytes": 300512, "sha256": "<hex>" },
//!   "source": "github", "event_id": "…", "event_type": "push",
//!   "idempotency_key": "github#sha256:…" }
//! ```
//!
//! The key is content-addressed (`envelopes/{source}/{sha256 of the envelope}.json`): a
//! retried upload writes the same bytes under the same key. The size SQS counts (body plus
//! message attributes, [`OutgoingMessage::size_bytes`]) decides; a message exactly at the
//! limit is sent inline.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{EventQueue, OutgoingMessage, QueueError, ReceivedMessage};
use crate::payload::{PayloadError, PayloadStore};

/// Where a claim-checked envelope is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimCheck {
    /// The bucket.
    pub bucket: String,
    /// The object key.
    pub key: String,
    /// The envelope's size, bytes.
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the stored envelope.
    pub sha256: String,
}

/// The message body that stands for a claim-checked envelope. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimCheckPointer {
    /// Always 1.
    pub v: u32,
    /// Where the envelope is.
    pub claim_check: ClaimCheck,
    /// The envelope's source.
    #[serde(default)]
    pub source: String,
    /// The envelope's event id.
    #[serde(default)]
    pub event_id: String,
    /// The envelope's event type.
    #[serde(default)]
    pub event_type: String,
    /// The envelope's idempotency key (so the worker can order records without the payload).
    #[serde(default)]
    pub idempotency_key: String,
}

impl ClaimCheckPointer {
    /// The pointer in `body`, if `body` is one (`None` for an inline envelope or anything else).
    pub fn parse(body: &str) -> Option<Self> {
        if !body.contains("\"claim_check\"") {
            return None;
        }
        serde_json::from_str(body).ok()
    }
}

/// Why a claim-checked envelope could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum ClaimCheckError {
    /// The store failed: worth retrying.
    #[error("claim check unavailable: {0}")]
    Unavailable(String),
    /// The object is gone, or its bytes are not the ones the pointer names: retrying will not
    /// help.
    #[error("claim check unusable: {0}")]
    Unusable(String),
}

/// Returns the envelope JSON a message body stands for: `body` itself, or, for a
/// [`ClaimCheckPointer`], the stored envelope after checking its size and SHA-256.
///
/// # Errors
/// [`ClaimCheckError::Unavailable`] when the store fails; [`ClaimCheckError::Unusable`] when
/// the body is a pointer but there is no store, the object is missing, or it does not match.
pub async fn resolve<'a>(
    body: &'a str,
    store: Option<&dyn PayloadStore>,
) -> Result<std::borrow::Cow<'a, str>, ClaimCheckError> {
    let Some(pointer) = ClaimCheckPointer::parse(body) else {
        return Ok(std::borrow::Cow::Borrowed(body));
    };
    let Some(store) = store else {
        return Err(ClaimCheckError::Unusable(
            "a claim-checked message but no payload store is configured".into(),
        ));
    };
    let cc = &pointer.claim_check;
    let bytes = match store.get(&cc.key).await {
        Ok(b) => b,
        Err(e @ PayloadError::NotFound { .. }) => {
            return Err(ClaimCheckError::Unusable(e.to_string()));
        }
        Err(e) => return Err(ClaimCheckError::Unavailable(e.to_string())),
    };
    if bytes.len() as u64 != cc.bytes || hex::encode(Sha256::digest(&bytes)) != cc.sha256 {
        return Err(ClaimCheckError::Unusable(format!(
            "object {} does not match its pointer",
            cc.key
        )));
    }
    String::from_utf8(bytes)
        .map(std::borrow::Cow::Owned)
        .map_err(|_| ClaimCheckError::Unusable(format!("object {} is not UTF-8", cc.key)))
}

/// An [`EventQueue`] that claim-checks messages too large for `inner` into `store`.
/// Receives and deletes go to `inner` unchanged (the worker resolves pointers with
/// [`resolve`]).
#[derive(Debug, Clone)]
pub struct ClaimCheckQueue {
    inner: Arc<dyn EventQueue>,
    store: Arc<dyn PayloadStore>,
}

/// The largest envelope this queue takes, bytes: 48 MiB, above every provider's payload cap
/// (GitHub's is 25 MB) once base64 and the envelope are added.
pub const MAX_CLAIM_CHECK_BYTES: usize = 48 * 1024 * 1024;

impl ClaimCheckQueue {
    /// `inner`, with messages over its limit stored in `store`.
    pub fn new(inner: Arc<dyn EventQueue>, store: Arc<dyn PayloadStore>) -> Self {
        Self { inner, store }
    }
}

#[derive(Deserialize)]
struct Ids<'a> {
    #[serde(borrow, default)]
    source: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    event_id: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    event_type: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    idempotency_key: std::borrow::Cow<'a, str>,
}

#[async_trait::async_trait]
impl EventQueue for ClaimCheckQueue {
    async fn send(&self, message: OutgoingMessage) -> Result<String, QueueError> {
        let max = self.inner.max_message_bytes();
        let bytes = message.size_bytes();
        if bytes <= max {
            return self.inner.send(message).await;
        }
        if message.body.len() > MAX_CLAIM_CHECK_BYTES {
            return Err(QueueError::TooLarge {
                bytes,
                max: MAX_CLAIM_CHECK_BYTES,
            });
        }
        let sha256 = hex::encode(Sha256::digest(message.body.as_bytes()));
        let ids: Ids<'_> = serde_json::from_str(&message.body).unwrap_or(Ids {
            source: "".into(),
            event_id: "".into(),
            event_type: "".into(),
            idempotency_key: "".into(),
        });
        let folder: String = ids
            .source
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect();
        let folder = if folder.is_empty() {
            "_".into()
        } else {
            folder
        };
        let key = format!("envelopes/{folder}/{sha256}.json");
        let pointer = ClaimCheckPointer {
            v: 1,
            claim_check: ClaimCheck {
                bucket: self.store.bucket().to_owned(),
                key: key.clone(),
                bytes: message.body.len() as u64,
                sha256,
            },
            source: ids.source.into_owned(),
            event_id: ids.event_id.into_owned(),
            event_type: ids.event_type.into_owned(),
            idempotency_key: ids.idempotency_key.into_owned(),
        };
        let pointer = serde_json::to_string(&pointer).map_err(|e| QueueError::Unavailable {
            operation: "send",
            message: e.to_string(),
        })?;
        self.store
            .put(&key, message.body.into_bytes())
            .await
            .map_err(|e| QueueError::Unavailable {
                operation: "send",
                message: e.to_string(),
            })?;
        tracing::info!(key = %key, bytes, "envelope claim-checked");
        self.inner
            .send(OutgoingMessage {
                body: pointer,
                ..message
            })
            .await
    }

    async fn receive(&self, max: u32) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.inner.receive(max).await
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        self.inner.delete(receipt_handle).await
    }

    async fn delete_batch(&self, receipt_handles: &[&str]) -> Result<(), QueueError> {
        self.inner.delete_batch(receipt_handles).await
    }

    async fn take(&self, max: u32, hold_s: u32) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.inner.take(max, hold_s).await
    }

    async fn release(&self, receipt_handles: &[&str]) -> Result<(), QueueError> {
        self.inner.release(receipt_handles).await
    }

    async fn peek(&self, max: usize) -> Result<Option<Vec<ReceivedMessage>>, QueueError> {
        self.inner.peek(max).await
    }

    async fn stats(&self) -> Result<super::QueueStats, QueueError> {
        self.inner.stats().await
    }

    fn max_message_bytes(&self) -> usize {
        MAX_CLAIM_CHECK_BYTES
    }

    fn is_fifo(&self) -> bool {
        self.inner.is_fifo()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::payload::MemoryPayloadStore;
    use crate::queue::{MemoryQueue, MemoryQueueConfig};

    fn envelope_of(len: usize) -> String {
        serde_json::json!({
            "v": 1, "source": "github", "event_id": "e1", "event_type": "push",
            "idempotency_key": "github#e1", "body": "x".repeat(len)
        })
        .to_string()
    }

    fn setup(max: usize) -> (ClaimCheckQueue, Arc<MemoryQueue>, Arc<MemoryPayloadStore>) {
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let inner = Arc::new(MemoryQueue::new(
            "q",
            MemoryQueueConfig {
                max_message_bytes: max,
                ..MemoryQueueConfig::default()
            },
            clock,
        ));
        let store = Arc::new(MemoryPayloadStore::new("bucket"));
        (
            ClaimCheckQueue::new(inner.clone(), store.clone()),
            inner,
            store,
        )
    }

    fn message(body: String) -> OutgoingMessage {
        OutgoingMessage {
            body,
            attributes: vec![("source", "github".into())],
            group_id: None,
            deduplication_id: None,
        }
    }

    #[tokio::test]
    async fn at_the_limit_goes_inline_and_one_byte_over_goes_to_the_store() {
        let (q, inner, store) = setup(1000);
        let attrs = "source".len() + "String".len() + "github".len();
        let fits = envelope_of(0);
        let pad = 1000 - attrs - fits.len();
        let at_limit = envelope_of(pad);
        assert_eq!(message(at_limit.clone()).size_bytes(), 1000);
        q.send(message(at_limit.clone())).await.unwrap();
        assert_eq!(inner.peek_bodies(), vec![at_limit]);
        assert!(store.is_empty());

        let over = envelope_of(pad + 1);
        q.send(message(over.clone())).await.unwrap();
        assert_eq!(store.len(), 1);
        let sent = inner.peek_bodies().pop().unwrap();
        let p = ClaimCheckPointer::parse(&sent).expect("a pointer");
        assert_eq!(p.claim_check.bytes, over.len() as u64);
        assert_eq!(p.idempotency_key, "github#e1");
        assert!(p.claim_check.key.starts_with("envelopes/github/"));
        let back = resolve(&sent, Some(store.as_ref())).await.unwrap();
        assert_eq!(back, over);
    }

    #[tokio::test]
    async fn a_missing_or_altered_object_is_unusable_and_an_inline_body_passes_through() {
        let (q, inner, store) = setup(400);
        q.send(message(envelope_of(800))).await.unwrap();
        let sent = inner.peek_bodies().pop().unwrap();
        let p = ClaimCheckPointer::parse(&sent).unwrap();
        store
            .put(&p.claim_check.key, b"{\"v\":1}".to_vec())
            .await
            .unwrap();
        assert!(matches!(
            resolve(&sent, Some(store.as_ref())).await,
            Err(ClaimCheckError::Unusable(_))
        ));
        assert!(store.remove(&p.claim_check.key));
        assert!(matches!(
            resolve(&sent, Some(store.as_ref())).await,
            Err(ClaimCheckError::Unusable(_))
        ));
        assert!(matches!(
            resolve(&sent, None).await,
            Err(ClaimCheckError::Unusable(_))
        ));
        let inline = envelope_of(3);
        assert_eq!(resolve(&inline, None).await.unwrap(), inline);
        // An inline envelope whose text mentions the pointer's field name is still inline.
        let sneaky = serde_json::json!({"v":1,"body":"\"claim_check\""}).to_string();
        assert_eq!(resolve(&sneaky, None).await.unwrap(), sneaky);
    }
}
