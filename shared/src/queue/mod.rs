//! The queue between ingest and the worker.
//!
//! [`EventQueue`] is the port; [`SqsQueue`] is Amazon SQS (standard or FIFO), [`SqliteQueue`]
//! the local pipeline's durable queue (`doorbell dev`), and [`MemoryQueue`] an in-process
//! queue for tests and the demo. The local queues have the SQS semantics the worker relies on: a received message is
//! invisible for the visibility timeout, every receive increments its receive count, a deleted
//! message is gone, and a message received `max_receive_count` times is moved to the
//! dead-letter queue on its next receive (SQS's redrive policy).
//!
//! Lambda's event source mapping does the receiving and deleting in AWS; the local pipeline
//! and the integration tests do it with [`EventQueue::receive`] and [`EventQueue::delete`],
//! turning messages into the same `SqsEvent` records with [`ReceivedMessage::to_sqs_message`].
//!
//! [`ClaimCheckQueue`] wraps a queue so that envelopes over its maximum message size go to a
//! [`crate::payload::PayloadStore`] (S3) and the message carries a pointer.

pub mod claim_check;
mod memory;
mod sqlite;
mod sqs;

use std::collections::HashMap;

use aws_lambda_events::event::sqs::{SqsMessage, SqsMessageAttribute};

pub use claim_check::{ClaimCheckPointer, ClaimCheckQueue};
pub use memory::{MemoryQueue, MemoryQueueConfig};
pub use sqlite::SqliteQueue;
pub use sqs::SqsQueue;

/// SQS's default maximum message size, bytes (256 KiB); body plus message attributes.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 262_144;

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// The message body (the envelope's JSON).
    pub body: String,
    /// String message attributes (`source`, `event_type`), for filtering; empty values are
    /// dropped (SQS rejects them).
    pub attributes: Vec<(&'static str, String)>,
    /// FIFO message group id (FIFO queues only).
    pub group_id: Option<String>,
    /// FIFO deduplication id (FIFO queues only).
    pub deduplication_id: Option<String>,
}

impl OutgoingMessage {
    /// [`QueueError::TooLarge`] when [`OutgoingMessage::size_bytes`] is over `max` bytes.
    ///
    /// # Errors
    /// As it says.
    pub fn check_size(&self, max: usize) -> Result<(), QueueError> {
        let bytes = self.size_bytes();
        if bytes > max {
            return Err(QueueError::TooLarge { bytes, max });
        }
        Ok(())
    }

    /// Size as SQS counts it: body plus each sent (non-empty) attribute's name, type (`String`)
    /// and value, bytes.
    pub fn size_bytes(&self) -> usize {
        self.body.len()
            + self
                .attributes
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| k.len() + "String".len() + v.len())
                .sum::<usize>()
    }
}

/// A message as received from the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The queue's message id (stable across receives).
    pub message_id: String,
    /// This receive's handle, for [`EventQueue::delete`].
    pub receipt_handle: String,
    /// The body.
    pub body: String,
    /// How many times the message has been received, this receive included.
    pub receive_count: u32,
    /// When it was sent, epoch **milliseconds**.
    pub sent_timestamp_ms: i64,
    /// FIFO message group id.
    pub group_id: Option<String>,
    /// String message attributes.
    pub attributes: Vec<(String, String)>,
}

impl ReceivedMessage {
    /// The record Lambda's SQS event source mapping would deliver for this message.
    pub fn to_sqs_message(&self, event_source_arn: &str, region: &str) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(self.message_id.clone());
        m.receipt_handle = Some(self.receipt_handle.clone());
        m.body = Some(self.body.clone());
        m.event_source = Some("aws:sqs".to_owned());
        m.event_source_arn = Some(event_source_arn.to_owned());
        m.aws_region = Some(region.to_owned());
        let mut attrs = HashMap::new();
        attrs.insert(
            "ApproximateReceiveCount".to_owned(),
            self.receive_count.to_string(),
        );
        attrs.insert(
            "SentTimestamp".to_owned(),
            self.sent_timestamp_ms.to_string(),
        );
        if let Some(g) = &self.group_id {
            attrs.insert("MessageGroupId".to_owned(), g.clone());
        }
        m.attributes = attrs;
        m.message_attributes = self
            .attributes
            .iter()
            .map(|(k, v)| {
                let mut a = SqsMessageAttribute::default();
                a.string_value = Some(v.clone());
                a.data_type = Some("String".to_owned());
                (k.clone(), a)
            })
            .collect();
        m
    }
}

/// A queue's depth. SQS reports the counts as approximate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    /// Messages waiting to be received (`ApproximateNumberOfMessages`).
    pub visible: u64,
    /// Messages received and not yet deleted (`ApproximateNumberOfMessagesNotVisible`).
    pub in_flight: u64,
    /// When the oldest message was sent, epoch **milliseconds**, when the queue can tell
    /// (SQS cannot through its API: CloudWatch's `ApproximateAgeOfOldestMessage` can).
    pub oldest_sent_ms: Option<i64>,
}

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The message is larger than the queue accepts.
    #[error("message of {bytes} bytes exceeds the queue's {max} bytes")]
    TooLarge {
        /// The message's size, bytes.
        bytes: usize,
        /// The queue's limit, bytes.
        max: usize,
    },
    /// The queue service failed, throttled, or could not be reached.
    #[error("queue {operation} failed: {message}")]
    Unavailable {
        /// `send`, `receive` or `delete`.
        operation: &'static str,
        /// The service's or transport's description.
        message: String,
    },
}

/// The queue port. See the module docs.
#[async_trait::async_trait]
pub trait EventQueue: Send + Sync + std::fmt::Debug {
    /// Sends one message; returns the queue's message id once the queue has durably accepted it.
    ///
    /// # Errors
    /// [`QueueError::TooLarge`] before sending anything; [`QueueError::Unavailable`] when the
    /// queue did not take it.
    async fn send(&self, message: OutgoingMessage) -> Result<String, QueueError>;

    /// Receives up to `max` (1–10) visible messages, waiting at most the queue's configured wait.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`].
    async fn receive(&self, max: u32) -> Result<Vec<ReceivedMessage>, QueueError>;

    /// Deletes a received message by its receipt handle.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`].
    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError>;

    /// Deletes several received messages (SQS `DeleteMessageBatch`); by default one
    /// [`EventQueue::delete`] each.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`]; messages before the failing one may be deleted.
    async fn delete_batch(&self, receipt_handles: &[&str]) -> Result<(), QueueError> {
        for handle in receipt_handles {
            self.delete(handle).await?;
        }
        Ok(())
    }

    /// Receives up to `max` (1–10) visible messages and keeps them invisible for `hold_s`
    /// **seconds** (SQS `ReceiveMessage` with `VisibilityTimeout`), without waiting: for
    /// operators' tools that look at or move messages ([`crate::ops`]). Each call counts as a
    /// receive.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`], also when the queue does not support it.
    async fn take(&self, max: u32, hold_s: u32) -> Result<Vec<ReceivedMessage>, QueueError> {
        let _ = (max, hold_s);
        Err(QueueError::Unavailable {
            operation: "take",
            message: "not supported by this queue".into(),
        })
    }

    /// Reads up to `max` messages, oldest first, visible or not, without receiving them (no
    /// receive count, no visibility change), where the queue can: `Ok(None)` where it cannot
    /// (SQS, whose only read is a receive: use [`EventQueue::take`] and
    /// [`EventQueue::release`]).
    ///
    /// # Errors
    /// [`QueueError::Unavailable`].
    async fn peek(&self, max: usize) -> Result<Option<Vec<ReceivedMessage>>, QueueError> {
        let _ = max;
        Ok(None)
    }

    /// Makes taken messages visible again at once (SQS `ChangeMessageVisibilityBatch` with
    /// timeout 0). A handle that no longer holds its message is ignored.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`].
    async fn release(&self, receipt_handles: &[&str]) -> Result<(), QueueError> {
        let _ = receipt_handles;
        Err(QueueError::Unavailable {
            operation: "release",
            message: "not supported by this queue".into(),
        })
    }

    /// The queue's depth ([`QueueStats`]).
    ///
    /// # Errors
    /// [`QueueError::Unavailable`].
    async fn stats(&self) -> Result<QueueStats, QueueError> {
        Err(QueueError::Unavailable {
            operation: "stats",
            message: "not supported by this queue".into(),
        })
    }

    /// The largest message the queue accepts, bytes.
    fn max_message_bytes(&self) -> usize;

    /// True for a FIFO queue (its name ends in `.fifo`): sends need a message group id and a
    /// deduplication id.
    fn is_fifo(&self) -> bool {
        false
    }
}
