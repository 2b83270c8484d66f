//! The handlers Doorbell ships, one module per provider, and [`default_registry`], which
//! registers them for every configured source of that provider.
//!
//! They keep their state through [`doorbell::store::EntityStore`] (the ordering guard),
//! newest-wins on the event's own time, so a late older delivery never overwrites newer state
//! and a deletion stays deleted.
//!
//! They read the body through [`Doc`], so a body without a field they need is rejected with a
//! reason that names the event type and the field's path, never a value from the body:
//! `payment_intent.succeeded: missing field data.object.amount_received`.

pub mod github;
pub mod stripe;

use std::sync::Arc;

use doorbell::Provider;
use doorbell::handler::{Event, HandlerOutcome, HandlerRegistry};
use doorbell::store::EntityStore;
use serde_json::Value;

/// Registers the shipped handlers for each `(source, provider)`:
/// Stripe `payment_intent.succeeded` → [`stripe::PaymentIntentSucceeded`], Stripe
/// `customer.subscription.*` → [`stripe::SubscriptionChanged`];
/// GitHub `push` → [`github::Push`].
pub fn default_registry<'a>(
    sources: impl IntoIterator<Item = (&'a str, Provider)>,
    entities: Arc<dyn EntityStore>,
) -> HandlerRegistry {
    let mut registry = HandlerRegistry::new();
    for (name, provider) in sources {
        match provider {
            Provider::Stripe => {
                registry.register(
                    name,
                    "payment_intent.succeeded",
                    Arc::new(stripe::PaymentIntentSucceeded::new(entities.clone())),
                );
                let subscriptions = Arc::new(stripe::SubscriptionChanged::new(entities.clone()));
                for t in stripe::SubscriptionChanged::EVENT_TYPES {
                    registry.register(name, t, subscriptions.clone());
                }
            }
            Provider::Github => {
                registry.register(name, "push", Arc::new(github::Push::new(entities.clone())));
            }
            // No shipped handler: register your own; until then their events are `ignored`.
            Provider::Shopify
            | Provider::Slack
            | Provider::Standard
            | Provider::Paddle
            | Provider::Square
            | Provider::Twilio
            | Provider::Hmac => {}
        }
    }
    registry
}

/// Why a body cannot be handled: what is missing or wrong, and where (a dotted path such as
/// `data.object.amount_received`, with `[i]` for list items). Never quotes a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// The body (or a form body's `payload`) is not JSON.
    #[error("body is not JSON: {0}")]
    NotJson(String),
    /// A required field is absent.
    #[error("missing field {0}")]
    Missing(String),
    /// A field (or the body itself) has another type than the one needed.
    #[error("{} is {found}, expected {expected}", what(path))]
    WrongType {
        /// The field's path; empty for the body itself.
        path: String,
        /// What it is (`a string`, `null`, …).
        found: &'static str,
        /// What it must be.
        expected: &'static str,
    },
}

fn what(path: &str) -> String {
    if path.is_empty() {
        "the body".to_owned()
    } else {
        format!("field {path}")
    }
}

impl FieldError {
    /// The permanent failure for `event`: `{event type}: {self}`.
    pub fn reject(&self, event: &Event<'_>) -> HandlerOutcome {
        HandlerOutcome::Reject(format!("{}: {self}", event.envelope.event_type))
    }
}

/// Parses `event`'s body as JSON (a form body's `payload` field, as GitHub sends it).
///
/// # Errors
/// [`FieldError::NotJson`], described without quoting the body.
pub fn parse_body(event: &Event<'_>) -> Result<Value, FieldError> {
    event
        .json::<Value>()
        .map_err(|e| FieldError::NotJson(doorbell::redact::json_error(&e)))
}

/// A JSON value and its path from the body's root, with getters whose errors name the path.
#[derive(Debug, Clone)]
pub struct Doc<'a> {
    value: &'a Value,
    path: String,
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "true or false",
        Value::Number(n) if n.is_i64() || n.is_u64() => "a whole number",
        // JSON integers beyond 64 bits are parsed as floating point.
        Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => {
            "a number too large for 64 bits"
        }
        Value::Number(_) => "a fractional number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

impl<'a> Doc<'a> {
    /// The body's root.
    pub fn root(value: &'a Value) -> Self {
        Self {
            value,
            path: String::new(),
        }
    }

    /// The value at `dotted` (`data.object.id`) below this one and its full path, or the path
    /// of the first step that is absent (or `null`).
    ///
    /// # Errors
    /// [`FieldError::WrongType`] when a step's parent is not an object.
    fn lookup(&self, dotted: &str) -> Result<Found<'a>, FieldError> {
        let mut v = self.value;
        let mut path = self.path.clone();
        for step in dotted.split('.') {
            let map = match v {
                Value::Object(m) => m,
                Value::Null => return Ok(Found::Absent(path)),
                other => return Err(Self::wrong(path, other, "an object")),
            };
            path = if path.is_empty() {
                step.to_owned()
            } else {
                format!("{path}.{step}")
            };
            match map.get(step) {
                Some(next) => v = next,
                None => return Ok(Found::Absent(path)),
            }
        }
        Ok(Found::Value(v, path))
    }

    fn wrong(path: String, v: &Value, expected: &'static str) -> FieldError {
        FieldError::WrongType {
            path,
            found: kind(v),
            expected,
        }
    }

    /// A required value (`null` is returned, for the caller to refuse by type).
    fn required(&self, dotted: &str) -> Result<(&'a Value, String), FieldError> {
        match self.lookup(dotted)? {
            Found::Value(v, path) => Ok((v, path)),
            Found::Absent(path) => Err(FieldError::Missing(path)),
        }
    }

    /// An optional value: absent and `null` are `None`.
    fn optional(&self, dotted: &str) -> Result<Option<(&'a Value, String)>, FieldError> {
        match self.lookup(dotted)? {
            Found::Value(Value::Null, _) | Found::Absent(_) => Ok(None),
            Found::Value(v, path) => Ok(Some((v, path))),
        }
    }

    /// A required string.
    ///
    /// # Errors
    /// [`FieldError::Missing`] or [`FieldError::WrongType`] (`null` included).
    pub fn str(&self, dotted: &str) -> Result<&'a str, FieldError> {
        match self.required(dotted)? {
            (Value::String(s), _) => Ok(s),
            (v, path) => Err(Self::wrong(path, v, "a string")),
        }
    }

    /// A required whole number (fits an `i64`).
    ///
    /// # Errors
    /// [`FieldError::Missing`] or [`FieldError::WrongType`] (`null` included).
    pub fn i64(&self, dotted: &str) -> Result<i64, FieldError> {
        let (v, path) = self.required(dotted)?;
        v.as_i64()
            .ok_or_else(|| Self::wrong(path, v, "a whole number"))
    }

    /// An optional string: absent and `null` are `None`.
    ///
    /// # Errors
    /// [`FieldError::WrongType`].
    pub fn opt_str(&self, dotted: &str) -> Result<Option<&'a str>, FieldError> {
        match self.optional(dotted)? {
            None => Ok(None),
            Some((Value::String(s), _)) => Ok(Some(s)),
            Some((v, path)) => Err(Self::wrong(path, v, "a string")),
        }
    }

    /// An optional boolean: absent and `null` are `None`.
    ///
    /// # Errors
    /// [`FieldError::WrongType`].
    pub fn opt_bool(&self, dotted: &str) -> Result<Option<bool>, FieldError> {
        match self.optional(dotted)? {
            None => Ok(None),
            Some((Value::Bool(b), _)) => Ok(Some(*b)),
            Some((v, path)) => Err(Self::wrong(path, v, "true or false")),
        }
    }

    /// Any value, if present and not `null`.
    ///
    /// # Errors
    /// [`FieldError::WrongType`] when a parent on the way is not an object.
    pub fn opt(&self, dotted: &str) -> Result<Option<&'a Value>, FieldError> {
        Ok(self.optional(dotted)?.map(|(v, _)| v))
    }

    /// An optional object: absent and `null` are `None`.
    ///
    /// # Errors
    /// [`FieldError::WrongType`].
    pub fn opt_object(&self, dotted: &str) -> Result<Option<Doc<'a>>, FieldError> {
        match self.optional(dotted)? {
            None => Ok(None),
            Some((value @ Value::Object(_), path)) => Ok(Some(Doc { value, path })),
            Some((v, path)) => Err(Self::wrong(path, v, "an object")),
        }
    }

    /// The items of an optional list (absent and `null` are empty), each with its path
    /// (`commits[2]`).
    ///
    /// # Errors
    /// [`FieldError::WrongType`].
    pub fn list(&self, dotted: &str) -> Result<Vec<Doc<'a>>, FieldError> {
        match self.optional(dotted)? {
            None => Ok(Vec::new()),
            Some((Value::Array(items), path)) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, value)| Doc {
                    value,
                    path: format!("{path}[{i}]"),
                })
                .collect()),
            Some((v, path)) => Err(Self::wrong(path, v, "a list")),
        }
    }
}

/// What [`Doc::lookup`] found.
enum Found<'a> {
    /// The value and its path.
    Value(&'a Value, String),
    /// Absent: the path of the first step that is missing (or `null`).
    Absent(String),
}

/// An envelope for `body` as a verified delivery of `event_type`, for the handlers' tests.
#[cfg(test)]
pub(crate) fn test_envelope(
    provider: Provider,
    event_type: &str,
    body: &str,
) -> doorbell::envelope::Envelope {
    let source = doorbell::SourceConfig::new(
        provider.as_str(),
        provider,
        vec![doorbell::Secret::new("s")],
    );
    let verified = doorbell::verify::Verified {
        event_id: "evt_FAKE0001".into(),
        event_type: event_type.into(),
        occurred_at_ms: None,
        dedupe: Default::default(),
        reply: None,
        headers: vec![],
    };
    doorbell::envelope::Envelope::new(
        &source,
        verified,
        body.as_bytes(),
        Some("application/json"),
        1_700_000_000_000,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_nested_fields_and_list_items() {
        let v = serde_json::json!({"a": {"b": "x", "n": 1.5, "z": null}, "l": [{"id": 1}]});
        let d = Doc::root(&v);
        assert_eq!(d.str("a.b"), Ok("x"));
        assert_eq!(d.str("a.c"), Err(FieldError::Missing("a.c".into())));
        assert_eq!(d.str("q.r.s"), Err(FieldError::Missing("q".into())));
        assert_eq!(d.opt_str("q.r.s"), Ok(None));
        assert_eq!(
            d.str("a.b.c").unwrap_err().to_string(),
            "field a.b is a string, expected an object"
        );
        assert_eq!(
            d.i64("a.n").unwrap_err().to_string(),
            "field a.n is a fractional number, expected a whole number"
        );
        assert_eq!(
            d.str("a.z").unwrap_err().to_string(),
            "field a.z is null, expected a string"
        );
        let huge = serde_json::json!({"created": serde_json::from_str::<Value>("1000000000000000000000000000000").unwrap()});
        assert_eq!(
            Doc::root(&huge).i64("created").unwrap_err().to_string(),
            "field created is a number too large for 64 bits, expected a whole number"
        );
        assert_eq!(d.opt_str("a.z"), Ok(None));
        let items = d.list("l").unwrap();
        assert_eq!(
            items[0].str("id").unwrap_err().to_string(),
            "field l[0].id is a whole number, expected a string"
        );
        assert_eq!(
            d.list("a").unwrap_err().to_string(),
            "field a is an object, expected a list"
        );
    }
}
