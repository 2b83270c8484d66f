//! Handlers: the user's code that runs once per event.
//!
//! A [`Handler`] is registered for a `(source, event type)` pair in a [`HandlerRegistry`]. The
//! worker claims the event, calls the handler, and records its [`HandlerOutcome`]:
//!
//! - `Ok`: the event is `PROCESSED`; its duplicates are acknowledged without running anything;
//! - `Retry(reason)`: transient failure; the event is `FAILED` and the record is reported in
//!   `batchItemFailures`, so SQS delivers it again after the visibility timeout (and moves it
//!   to the dead-letter queue after `maxReceiveCount` receives);
//! - `Reject(reason)`: permanent failure (the event can never succeed); it is `FAILED` and the
//!   worker sends the message straight to the dead-letter queue instead of burning the
//!   remaining receives (reported like `Retry` when no dead-letter queue is configured).
//!
//! An event type with no handler is `PROCESSED` with outcome `ignored`.
//!
//! Handlers must be idempotent in their own right only where a side effect escapes the
//! worker's claim (for example, a handler that times out after charging a card): the claim
//! guarantees no second *start* while a lease is live or after success.

use std::collections::HashMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::envelope::Envelope;

/// What a handler says about one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerOutcome {
    /// Done.
    Ok,
    /// Transient failure: try again later.
    Retry(String),
    /// Permanent failure: will never succeed.
    Reject(String),
}

/// One event as a handler sees it.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// The envelope (source, provider, ids, times, headers).
    pub envelope: &'a Envelope,
    /// The raw body bytes, exactly as verified.
    pub body: &'a [u8],
}

impl Event<'_> {
    /// True when this delivery is a replay of an archived event (`doorbell replay`): the
    /// handler may have run for it before. See [`Envelope::replay_id`].
    pub fn is_replay(&self) -> bool {
        self.envelope.replay_id.is_some()
    }

    /// The body's JSON document, deserialised. A form-encoded body
    /// (`application/x-www-form-urlencoded`, as GitHub sends when so configured) yields the
    /// JSON in its `payload` field.
    ///
    /// # Errors
    /// The JSON error if the document does not have `T`'s shape.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        match crate::verify::github::json_payload(self.body) {
            Some(doc) => serde_json::from_slice(&doc),
            None => serde_json::from_slice(self.body),
        }
    }
}

/// User code for one kind of event.
#[async_trait::async_trait]
pub trait Handler: Send + Sync {
    /// Handles `event`. Must not panic; report failures as [`HandlerOutcome::Retry`] or
    /// [`HandlerOutcome::Reject`].
    async fn handle(&self, event: &Event<'_>) -> HandlerOutcome;
}

/// Handlers keyed by `(source, event type)`.
#[derive(Clone, Default)]
pub struct HandlerRegistry {
    handlers: HashMap<(String, String), Arc<dyn Handler>>,
}

impl std::fmt::Debug for HandlerRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut keys: Vec<_> = self.handlers.keys().collect();
        keys.sort();
        f.debug_struct("HandlerRegistry")
            .field("handlers", &keys)
            .finish()
    }
}

impl HandlerRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` for events of `event_type` from `source`, replacing any before it.
    pub fn register(
        &mut self,
        source: impl Into<String>,
        event_type: impl Into<String>,
        handler: Arc<dyn Handler>,
    ) -> &mut Self {
        self.handlers
            .insert((source.into(), event_type.into()), handler);
        self
    }

    /// The handler for `(source, event_type)`, if any.
    pub fn get(&self, source: &str, event_type: &str) -> Option<&Arc<dyn Handler>> {
        self.handlers
            .get(&(source.to_owned(), event_type.to_owned()))
    }

    /// The event types `source` has a handler for, sorted.
    pub fn event_types(&self, source: &str) -> Vec<&str> {
        let mut types: Vec<&str> = self
            .handlers
            .keys()
            .filter(|(s, _)| s == source)
            .map(|(_, t)| t.as_str())
            .collect();
        types.sort_unstable();
        types
    }

    /// How many handlers are registered.
    pub fn len(&self) -> usize {
        self.handlers.len()
    }

    /// True when none is registered.
    pub fn is_empty(&self) -> bool {
        self.handlers.is_empty()
    }
}
