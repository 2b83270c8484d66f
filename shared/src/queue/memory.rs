//! An in-process queue with SQS semantics, for the local pipeline and tests.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::{DEFAULT_MAX_MESSAGE_BYTES, EventQueue, OutgoingMessage, QueueError, ReceivedMessage};
use crate::clock::Clock;

/// Settings of a [`MemoryQueue`].
#[derive(Debug, Clone)]
pub struct MemoryQueueConfig {
    /// How long a received message stays invisible, **milliseconds**.
    pub visibility_timeout_ms: i64,
    /// Receives after which the next receive moves the message to the dead-letter queue
    /// (SQS `maxReceiveCount`); only used with a dead-letter queue.
    pub max_receive_count: u32,
    /// Largest message accepted, bytes.
    pub max_message_bytes: usize,
}

impl Default for MemoryQueueConfig {
    fn default() -> Self {
        Self {
            visibility_timeout_ms: 30_000,
            max_receive_count: 5,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

#[derive(Debug, Clone)]
struct Stored {
    message_id: String,
    body: String,
    attributes: Vec<(String, String)>,
    group_id: Option<String>,
    sent_ms: i64,
    receive_count: u32,
    visible_at_ms: i64,
    receipt_handle: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    messages: VecDeque<Stored>,
    next_id: u64,
}

/// An in-process queue. Cloning shares the queue.
#[derive(Debug, Clone)]
pub struct MemoryQueue {
    name: Arc<str>,
    config: MemoryQueueConfig,
    clock: Arc<dyn Clock>,
    dead_letter: Option<Arc<MemoryQueue>>,
    state: Arc<Mutex<State>>,
}

impl MemoryQueue {
    /// A queue named `name` (used in message ids and the event source ARN).
    pub fn new(name: &str, config: MemoryQueueConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            name: name.into(),
            config,
            clock,
            dead_letter: None,
            state: Arc::default(),
        }
    }

    /// Adds a redrive policy: messages received `max_receive_count` times move to `dlq`.
    #[must_use]
    pub fn with_dead_letter_queue(mut self, dlq: Arc<MemoryQueue>) -> Self {
        self.dead_letter = Some(dlq);
        self
    }

    /// The dead-letter queue, if any.
    pub fn dead_letter_queue(&self) -> Option<&Arc<MemoryQueue>> {
        self.dead_letter.as_ref()
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A pseudo ARN for `SqsEvent` records: `arn:aws:sqs:local:000000000000:{name}`.
    pub fn arn(&self) -> String {
        format!("arn:aws:sqs:local:000000000000:{}", self.name)
    }

    /// Messages in the queue, visible or in flight.
    pub fn len(&self) -> usize {
        self.lock().messages.len()
    }

    /// True when the queue holds no message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bodies of all messages, in order (for inspection; does not receive).
    pub fn peek_bodies(&self) -> Vec<String> {
        self.lock()
            .messages
            .iter()
            .map(|m| m.body.clone())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State inconsistent (each method's
        // mutations are single steps), so a poisoned lock is safe to reuse.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, m: Stored) {
        self.lock().messages.push_back(m);
    }
}

#[async_trait::async_trait]
impl EventQueue for MemoryQueue {
    async fn send(&self, message: OutgoingMessage) -> Result<String, QueueError> {
        message.check_size(self.config.max_message_bytes)?;
        let now = self.clock.now_ms();
        let mut state = self.lock();
        state.next_id += 1;
        let message_id = format!(
            "{:08x}-0000-4000-8000-{:012x}",
            now.rem_euclid(1 << 32),
            state.next_id
        );
        state.messages.push_back(Stored {
            message_id: message_id.clone(),
            body: message.body,
            attributes: message
                .attributes
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            group_id: message.group_id,
            sent_ms: now,
            receive_count: 0,
            visible_at_ms: now,
            receipt_handle: None,
        });
        Ok(message_id)
    }

    async fn receive(&self, max: u32) -> Result<Vec<ReceivedMessage>, QueueError> {
        let now = self.clock.now_ms();
        let max = max.clamp(1, 10) as usize;
        let mut out = Vec::new();
        let mut redriven = Vec::new();
        {
            let mut state = self.lock();
            let mut serial = state.next_id;
            let mut i = 0;
            while i < state.messages.len() && out.len() < max {
                let m = &mut state.messages[i];
                if m.visible_at_ms > now {
                    i += 1;
                    continue;
                }
                if self.dead_letter.is_some() && m.receive_count >= self.config.max_receive_count {
                    if let Some(m) = state.messages.remove(i) {
                        redriven.push(m);
                    }
                    continue;
                }
                serial += 1;
                m.receive_count += 1;
                m.visible_at_ms = now + self.config.visibility_timeout_ms;
                let handle = format!("{}-rh-{serial}", m.message_id);
                m.receipt_handle = Some(handle.clone());
                out.push(ReceivedMessage {
                    message_id: m.message_id.clone(),
                    receipt_handle: handle,
                    body: m.body.clone(),
                    receive_count: m.receive_count,
                    sent_timestamp_ms: m.sent_ms,
                    group_id: m.group_id.clone(),
                    attributes: m.attributes.clone(),
                });
                i += 1;
            }
            state.next_id = serial;
        }
        if let Some(dlq) = &self.dead_letter {
            for mut m in redriven {
                // SQS keeps the message id, body, attributes and the original enqueue time.
                m.visible_at_ms = now;
                m.receipt_handle = None;
                m.receive_count = 0;
                dlq.push(m);
            }
        }
        Ok(out)
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        let mut state = self.lock();
        // Received messages sit near the front (receive takes the oldest visible first), so
        // the search is short even with a long backlog behind them.
        if let Some(i) = state
            .messages
            .iter()
            .position(|m| m.receipt_handle.as_deref() == Some(receipt_handle))
        {
            state.messages.remove(i);
        }
        Ok(())
    }

    fn max_message_bytes(&self) -> usize {
        self.config.max_message_bytes
    }

    fn is_fifo(&self) -> bool {
        self.name.ends_with(".fifo")
    }
}
