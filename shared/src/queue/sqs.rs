//! Amazon SQS adapter.
//!
//! Uses the SQS JSON protocol through `aws-sdk-sqs`. The client is built once (at cold start)
//! and shared. `send` returns only after `SendMessage` succeeded, i.e. SQS has stored the
//! message redundantly; any error, throttling included, is [`QueueError::Unavailable`].

use std::collections::HashMap;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
};

use super::{DEFAULT_MAX_MESSAGE_BYTES, EventQueue, OutgoingMessage, QueueError, ReceivedMessage};

/// An SQS queue.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
    max_message_bytes: usize,
    wait_time_seconds: i32,
    visibility_timeout_seconds: Option<i32>,
}

impl SqsQueue {
    /// The queue at `queue_url`, with SQS's default 256 KiB message limit, 1 s long polling for
    /// [`EventQueue::receive`] and the queue's own visibility timeout.
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            wait_time_seconds: 1,
            visibility_timeout_seconds: None,
        }
    }

    /// Sets the largest message to send, bytes (the queue's `MaximumMessageSize`).
    #[must_use]
    pub fn with_max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// Sets the long-poll wait for receives, **seconds** (0–20).
    #[must_use]
    pub fn with_wait_time_seconds(mut self, seconds: i32) -> Self {
        self.wait_time_seconds = seconds.clamp(0, 20);
        self
    }

    /// Overrides the visibility timeout of received messages, **seconds**.
    #[must_use]
    pub fn with_visibility_timeout_seconds(mut self, seconds: i32) -> Self {
        self.visibility_timeout_seconds = Some(seconds);
        self
    }

    /// The queue URL.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }
}

fn unavailable<E: std::error::Error>(operation: &'static str, e: E) -> QueueError {
    QueueError::Unavailable {
        operation,
        message: DisplayErrorContext(e).to_string(),
    }
}

#[async_trait::async_trait]
impl EventQueue for SqsQueue {
    async fn send(&self, message: OutgoingMessage) -> Result<String, QueueError> {
        message.check_size(self.max_message_bytes)?;
        let mut attributes = HashMap::with_capacity(message.attributes.len());
        for (name, value) in message.attributes {
            if value.is_empty() {
                continue;
            }
            let v = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| unavailable("send", e))?;
            attributes.insert(name.to_owned(), v);
        }
        let out = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(message.body)
            .set_message_attributes((!attributes.is_empty()).then_some(attributes))
            .set_message_group_id(message.group_id)
            .set_message_deduplication_id(message.deduplication_id)
            .send()
            .await
            .map_err(|e| unavailable("send", e))?;
        Ok(out.message_id.unwrap_or_default())
    }

    async fn receive(&self, max: u32) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.receive_with(max, self.wait_time_seconds, self.visibility_timeout_seconds)
            .await
    }

    /// Long-polls for up to the receive wait (default 1 s): a short poll asks only some of
    /// SQS's servers and may come back empty while messages wait, and the operations layer
    /// reads an empty take as "nothing left" (SQS Developer Guide, "Short and long polling").
    /// The wait is spent only when the queue has nothing visible.
    async fn take(&self, max: u32, hold_s: u32) -> Result<Vec<ReceivedMessage>, QueueError> {
        let hold = i32::try_from(hold_s.min(43_200)).unwrap_or(43_200);
        self.receive_with(max, self.wait_time_seconds, Some(hold))
            .await
    }

    async fn release(&self, receipt_handles: &[&str]) -> Result<(), QueueError> {
        for chunk in receipt_handles.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(*h)
                        .visibility_timeout(0)
                        .build()
                        .map_err(|e| unavailable("release", e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            // Entries that fail (a handle whose message was deleted or received again) hold
            // nothing any more; they are left as they are.
            self.client
                .change_message_visibility_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| unavailable("release", e))?;
        }
        Ok(())
    }

    async fn stats(&self) -> Result<super::QueueStats, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| unavailable("stats", e))?;
        let attrs = out.attributes.unwrap_or_default();
        let num = |k: QueueAttributeName| {
            attrs
                .get(&k)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(super::QueueStats {
            visible: num(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: num(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            oldest_sent_ms: None,
        })
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        self.delete_one(receipt_handle).await
    }

    async fn delete_batch(&self, receipt_handles: &[&str]) -> Result<(), QueueError> {
        for chunk in receipt_handles.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(*h)
                        .build()
                        .map_err(|e| unavailable("delete", e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| unavailable("delete", e))?;
            if let Some(f) = out.failed.first() {
                return Err(QueueError::Unavailable {
                    operation: "delete",
                    message: format!(
                        "{} of {} not deleted: {}",
                        out.failed.len(),
                        chunk.len(),
                        f.message.as_deref().unwrap_or(&f.code)
                    ),
                });
            }
        }
        Ok(())
    }

    fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    fn is_fifo(&self) -> bool {
        self.queue_url.ends_with(".fifo")
    }
}

impl SqsQueue {
    async fn receive_with(
        &self,
        max: u32,
        wait_s: i32,
        visibility_s: Option<i32>,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .wait_time_seconds(wait_s)
            .set_visibility_timeout(visibility_s)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| unavailable("receive", e))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                let sys = m.attributes.unwrap_or_default();
                let num =
                    |k: MessageSystemAttributeName| sys.get(&k).and_then(|v| v.parse::<i64>().ok());
                ReceivedMessage {
                    message_id: m.message_id.unwrap_or_default(),
                    receipt_handle: m.receipt_handle.unwrap_or_default(),
                    body: m.body.unwrap_or_default(),
                    receive_count: num(MessageSystemAttributeName::ApproximateReceiveCount)
                        .unwrap_or(1) as u32,
                    sent_timestamp_ms: num(MessageSystemAttributeName::SentTimestamp).unwrap_or(0),
                    group_id: sys
                        .get(&MessageSystemAttributeName::MessageGroupId)
                        .cloned(),
                    attributes: m
                        .message_attributes
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|(k, v)| v.string_value.map(|s| (k, s)))
                        .collect(),
                }
            })
            .collect())
    }

    async fn delete_one(&self, receipt_handle: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map_err(|e| unavailable("delete", e))?;
        Ok(())
    }
}
