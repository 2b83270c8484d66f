//! The envelope: the JSON document ingest puts on the queue, one per verified delivery.
//!
//! Version 1, shape (`?` = omitted when absent):
//!
//! ```json
//! { "v": 1, "source": "stripe", "provider": "stripe",
//!   "event_id": "evt_…", "event_type": "payment_intent.succeeded",
//!   "idempotency_key": "stripe#evt_…",
//!   "received_at": "2023-11-14T22:13:20.000Z", "occurred_at"?: "…",
//!   "content_type"?: "application/json",
//!   "body"?: "<raw body as UTF-8 text>", "body_base64"?: "<raw body, base64>",
//!   "body_sha256": "<hex of SHA-256 over the raw body bytes>",
//!   "headers": { "x-github-event": "push" },
//!   "replay_id"?: "rpl_…" }
//! ```
//!
//! `replay_id` is set only by `doorbell replay` (never by ingest): the worker runs a replay even
//! when its key is `PROCESSED`, once per replay id (it claims `@replay#{replay_id}#{idempotency_key}`),
//! and handlers see it through [`crate::handler::Event::is_replay`].
//!
//! Exactly one of `body` / `body_base64` is present: `body` when the raw bytes are UTF-8 that
//! SQS accepts (SQS rejects U+FFFE and U+FFFF even when JSON-escaped text would carry them),
//! `body_base64` otherwise. Either way the worker gets back the exact bytes that were verified,
//! and checks them against `body_sha256`.
//!
//! The idempotency key is `{source}#{event_id}` where the provider signs the event id (Stripe),
//! and `{source}#sha256:{body_sha256}` where it signs only the body (GitHub): see
//! [`crate::verify::Dedupe`]. It never contains a timestamp or a message id.

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::rfc3339_ms;
use crate::config::SourceConfig;
use crate::verify::{Dedupe, Verified};

/// How the claim keys of replays begin ([`Envelope::claim_key`]).
pub const REPLAY_KEY_PREFIX: &str = "@replay#";

/// The envelope version this crate writes and reads.
pub const ENVELOPE_VERSION: u32 = 1;

/// See the module docs for the JSON shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Always [`ENVELOPE_VERSION`].
    pub v: u32,
    /// The source (endpoint) name.
    pub source: String,
    /// The verification scheme's name.
    pub provider: String,
    /// The provider's event id.
    pub event_id: String,
    /// The provider's event type.
    pub event_type: String,
    /// The key the worker claims in the event store.
    pub idempotency_key: String,
    /// When ingest accepted the delivery, RFC 3339 UTC with milliseconds.
    pub received_at: String,
    /// When the provider says the event happened, RFC 3339 UTC with milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<String>,
    /// The request's `Content-Type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The raw body, when it is SQS-safe UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The raw body, base64 (standard alphabet, padded), otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// Lower-case hex SHA-256 of the raw body bytes.
    pub body_sha256: String,
    /// The request headers handlers need, lower-case names.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Set on a replay of an archived event (`doorbell replay`): the replay's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_id: Option<String>,
}

/// Why a queue message is not a usable envelope.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Not JSON of the envelope's shape (described without quoting the message).
    #[error("message is not an envelope: {0}")]
    Json(String),
    /// A version this build does not read.
    #[error("unsupported envelope version {0}")]
    Version(u32),
    /// Neither or both of `body` and `body_base64`, or bad base64.
    #[error("envelope body is missing or not decodable")]
    Body,
    /// The body does not hash to `body_sha256`.
    #[error("envelope body does not match its body_sha256")]
    Digest,
}

impl Envelope {
    /// Builds the envelope for a verified delivery received at `received_at_ms` (epoch
    /// **milliseconds**).
    pub fn new(
        source: &SourceConfig,
        verified: Verified,
        body: &[u8],
        content_type: Option<&str>,
        received_at_ms: i64,
    ) -> Self {
        let body_sha256 = sha256_hex(body);
        let idempotency_key = match &verified.dedupe {
            Dedupe::EventId => format!("{}#{}", source.name, verified.event_id),
            Dedupe::BodyDigest => format!("{}#sha256:{}", source.name, body_sha256),
            Dedupe::Digest(d) => format!("{}#sha256:{}", source.name, d),
        };
        let (text, b64) = match std::str::from_utf8(body) {
            Ok(s) if sqs_safe_text(s) => (Some(s.to_owned()), None),
            _ => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(body)),
            ),
        };
        Self {
            v: ENVELOPE_VERSION,
            source: source.name.clone(),
            provider: source.provider.as_str().to_owned(),
            event_id: verified.event_id,
            event_type: verified.event_type,
            idempotency_key,
            received_at: rfc3339_ms(received_at_ms),
            occurred_at: verified.occurred_at_ms.map(rfc3339_ms),
            content_type: content_type.map(str::to_owned),
            body: text,
            body_base64: b64,
            body_sha256,
            headers: verified
                .headers
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            replay_id: None,
        }
    }

    /// The key the worker claims: the idempotency key, or for a replay
    /// `@replay#{replay_id}#{idempotency_key}`, so each replay runs once however often it is
    /// delivered, even when the event itself is `PROCESSED`. No event's key starts with `@`
    /// (source names never do), and a replay id has no `#`, so the two never collide.
    pub fn claim_key(&self) -> String {
        match &self.replay_id {
            Some(r) => format!("{REPLAY_KEY_PREFIX}{r}#{}", self.idempotency_key),
            None => self.idempotency_key.clone(),
        }
    }

    /// `received_at` as epoch **milliseconds**, when valid.
    pub fn received_at_ms(&self) -> Option<i64> {
        parse_rfc3339_ms(&self.received_at)
    }

    /// True when the idempotency key is a digest of the signed content
    /// (`{source}#sha256:{64 hex}`: GitHub, Shopify, Twilio, generic HMAC without a signed id),
    /// so two bodies under it differ only in encoding ([`crate::store::ClaimRequest::content_keyed`]).
    pub fn key_is_content_digest(&self) -> bool {
        self.idempotency_key
            .strip_prefix(self.source.as_str())
            .and_then(|rest| rest.strip_prefix("#sha256:"))
            .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
    }

    /// Parses and checks a queue message body: version, exactly one body field, digest.
    ///
    /// # Errors
    /// Any [`EnvelopeError`].
    pub fn parse(message: &str) -> Result<Self, EnvelopeError> {
        let env: Envelope = serde_json::from_str(message)
            .map_err(|e| EnvelopeError::Json(crate::redact::json_error(&e)))?;
        if env.v != ENVELOPE_VERSION {
            return Err(EnvelopeError::Version(env.v));
        }
        let body = env.body_bytes()?;
        if sha256_hex(&body) != env.body_sha256 {
            return Err(EnvelopeError::Digest);
        }
        Ok(env)
    }

    /// The envelope as the JSON text sent to the queue.
    pub fn to_json(&self) -> String {
        // Serialising plain strings and maps cannot fail.
        serde_json::to_string(self).expect("envelope serialises")
    }

    /// The raw body bytes.
    ///
    /// # Errors
    /// [`EnvelopeError::Body`] if neither or both body fields are set, or base64 is invalid.
    pub fn body_bytes(&self) -> Result<Cow<'_, [u8]>, EnvelopeError> {
        match (&self.body, &self.body_base64) {
            (Some(t), None) => Ok(Cow::Borrowed(t.as_bytes())),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map(Cow::Owned)
                .map_err(|_| EnvelopeError::Body),
            _ => Err(EnvelopeError::Body),
        }
    }

    /// `occurred_at` as epoch **milliseconds**, when present and valid.
    pub fn occurred_at_ms(&self) -> Option<i64> {
        parse_rfc3339_ms(self.occurred_at.as_deref()?)
    }
}

/// An RFC 3339 time as epoch **milliseconds** (`None` if invalid or before 1970).
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339(text).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

/// Whether valid UTF-8 `text` holds only characters an SQS message body may carry as text,
/// other than the control characters JSON escapes anyway: everything but U+FFFE and U+FFFF
/// (the SQS `SendMessage` reference: `#x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD |
/// #x10000 to #x10FFFF`; UTF-8 cannot encode the surrogates). Both encode as `EF BF BE`/`EF BF
/// BF`, and `EF` leads only the three-byte sequences U+F000..=U+FFFF, so a byte search finds them
/// without decoding every character.
fn sqs_safe_text(text: &str) -> bool {
    let b = text.as_bytes();
    !memchr::memchr_iter(0xEF, b)
        .any(|i| b.get(i + 1) == Some(&0xBF) && matches!(b.get(i + 2), Some(0xBE | 0xBF)))
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Provider;
    use crate::secret::Secret;

    fn verified() -> Verified {
        Verified {
            event_id: "evt_1".into(),
            event_type: "a.b".into(),
            occurred_at_ms: Some(1_700_000_000_000),
            dedupe: Dedupe::EventId,
            reply: None,
            headers: vec![("x-k", "v".into())],
        }
    }

    fn src() -> SourceConfig {
        SourceConfig::new("shop", Provider::Stripe, vec![Secret::new("s")])
    }

    #[test]
    fn round_trips_utf8_body_byte_for_byte() {
        let body = "{\n  \"id\": \"evt_1\",\n  \"d\": \"Café ☕\"\n}\n".as_bytes();
        let e = Envelope::new(
            &src(),
            verified(),
            body,
            Some("application/json"),
            1_700_000_000_123,
        );
        assert_eq!(e.idempotency_key, "shop#evt_1");
        assert_eq!(e.received_at, "2023-11-14T22:13:20.123Z");
        assert_eq!(e.occurred_at.as_deref(), Some("2023-11-14T22:13:20.000Z"));
        assert_eq!(e.occurred_at_ms(), Some(1_700_000_000_000));
        let back = Envelope::parse(&e.to_json()).unwrap();
        assert_eq!(back.body_bytes().unwrap().as_ref(), body);
        assert_eq!(back, e);
    }

    use proptest::strategy::Strategy;

    proptest::proptest! {
        /// The byte search agrees with a character-by-character check on any text, including
        /// the neighbours of U+FFFE and U+FFFF and text that ends inside the pattern.
        #[test]
        fn sqs_safe_text_matches_a_char_scan(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::char::any().prop_map(|c| c.to_string()),
                    proptest::sample::select(vec!['\u{EFFF}', '\u{F000}', '\u{FFBE}', '\u{FFFD}', '\u{FFFE}', '\u{FFFF}', '\u{10000}', '\u{FEFF}'])
                        .prop_map(|c| c.to_string()),
                ],
                0..40,
            )
        ) {
            let text = parts.concat();
            proptest::prop_assert_eq!(sqs_safe_text(&text), !text.contains(['\u{FFFE}', '\u{FFFF}']));
        }
    }

    #[test]
    fn binary_and_sqs_unsafe_bodies_travel_as_base64() {
        for body in [&[0x00u8, 0x01, 0xff][..], "a\u{FFFF}b".as_bytes()] {
            let e = Envelope::new(&src(), verified(), body, None, 0);
            assert!(e.body.is_none());
            let json = e.to_json();
            assert!(!json.contains('\u{FFFF}'));
            assert_eq!(
                Envelope::parse(&json)
                    .unwrap()
                    .body_bytes()
                    .unwrap()
                    .as_ref(),
                body
            );
        }
    }

    #[test]
    fn body_digest_dedupe_keys_on_the_body_not_the_event_id() {
        let mut v = verified();
        v.dedupe = Dedupe::BodyDigest;
        let e = Envelope::new(&src(), v.clone(), b"{}", None, 0);
        assert_eq!(
            e.idempotency_key,
            format!("shop#sha256:{}", sha256_hex(b"{}"))
        );
        v.event_id = "another".into();
        assert_eq!(
            Envelope::new(&src(), v, b"{}", None, 0).idempotency_key,
            e.idempotency_key
        );
    }

    #[test]
    fn rejects_tampered_unversioned_and_bodiless_envelopes() {
        let e = Envelope::new(&src(), verified(), b"{}", None, 0);
        let mut t = e.clone();
        t.body = Some("{ }".into());
        assert!(matches!(
            Envelope::parse(&t.to_json()),
            Err(EnvelopeError::Digest)
        ));
        let mut t = e.clone();
        t.v = 2;
        assert!(matches!(
            Envelope::parse(&t.to_json()),
            Err(EnvelopeError::Version(2))
        ));
        let mut t = e.clone();
        t.body = None;
        assert!(matches!(
            Envelope::parse(&t.to_json()),
            Err(EnvelopeError::Body)
        ));
        assert!(matches!(
            Envelope::parse("not json"),
            Err(EnvelopeError::Json(_))
        ));
    }
}
