//! Webhook verification: one module per provider scheme, all behind [`Scheme`].
//!
//! Contract of every scheme:
//! - the MAC is computed over the **exact raw body bytes** as received (after API Gateway's
//!   base64 transport encoding is undone, never after JSON parsing or re-serialising);
//! - every comparison is constant time over the full decoded length
//!   ([`hmac::Mac::verify_slice`]); a signature of the wrong length, bad encoding, an unknown
//!   prefix, an empty value or a header that appears twice where the scheme allows one fails closed;
//! - the algorithm is fixed per scheme, never read from the request;
//! - every configured secret is tried, and every signature the header carries is considered;
//! - a secret that cannot key the scheme's MAC ([`check_key`]: empty, only a prefix, not the
//!   encoding or length the scheme requires) is refused when the sources are loaded
//!   ([`crate::Sources::new`]); a verifier handed one anyway never lets it match, so it fails
//!   closed rather than accept a MAC anyone can compute;
//! - timestamps are compared with `now_s` (epoch **seconds**, injected) both ways against the
//!   source's `tolerance_seconds`;
//! - only after the signature verifies is the body read for the event id and type, with a
//!   borrowing deserializer that skips every other field (no JSON tree is built).
//!
//! A source with `enforce = false` (shadow mode) logs and counts a signature or timestamp that
//! does not match, and is accepted anyway; a missing or malformed signature header still fails.
//!
//! Adding a scheme: one file here implementing [`Scheme`], one [`Provider`] variant and one arm
//! in [`scheme_for`].

pub mod generic;
pub mod github;
mod json;
pub mod paddle;
pub mod shopify;
pub mod slack;
pub mod square;
pub mod standard;
pub mod stripe;
pub mod twilio;

use http::HeaderMap;

use crate::config::{Provider, SourceConfig};
use crate::secret::Secret;

/// Longest event id accepted, bytes; keeps idempotency keys well inside DynamoDB's key limit.
pub const MAX_EVENT_ID_BYTES: usize = 512;

/// What a scheme needs from the HTTP request.
#[derive(Clone, Copy)]
pub struct WebhookRequest<'a> {
    /// Request headers (case-insensitive lookup).
    pub headers: &'a HeaderMap,
    /// The raw body bytes, exactly as the provider sent them.
    pub body: &'a [u8],
    /// The request's query string, without `?` (empty when none); schemes that sign the URL
    /// (Twilio) append it to the configured URL.
    pub query: &'a str,
}

impl Verified {
    /// A verified event whose id is signed (so it is the idempotency key), with no headers kept
    /// and no synchronous reply.
    ///
    /// # Errors
    /// [`VerifyError::NoEventId`] if the id or type is empty, too long or not queue-safe.
    pub(crate) fn signed_event(
        id: &str,
        kind: &str,
        occurred_at_ms: Option<i64>,
    ) -> Result<Self, VerifyError> {
        Ok(Self {
            event_id: event_id(id)?,
            event_type: event_type(kind)?,
            occurred_at_ms,
            dedupe: Dedupe::EventId,
            headers: Vec::new(),
            reply: None,
        })
    }
}

impl std::fmt::Debug for WebhookRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header names only: values hold signatures, the body may hold personal data.
        f.debug_struct("WebhookRequest")
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("body_len", &self.body.len())
            .field("query_len", &self.query.len())
            .finish()
    }
}

/// A verified delivery: what the envelope and the event store need to know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The provider's id for the event (Stripe `evt_…`, GitHub `X-GitHub-Delivery`).
    pub event_id: String,
    /// The provider's event type (`payment_intent.succeeded`, `push`, `pull_request.opened`).
    pub event_type: String,
    /// When the provider says the event happened, epoch **milliseconds**, if it says.
    pub occurred_at_ms: Option<i64>,
    /// What identifies the event for deduplication (see [`Dedupe`]).
    pub dedupe: Dedupe,
    /// The few request headers the worker's handlers need, lower-case names.
    pub headers: Vec<(&'static str, String)>,
    /// A JSON body to answer with at once instead of enqueuing: a provider's endpoint
    /// handshake (Slack's `url_verification` challenge), sent only after the signature verified.
    pub reply: Option<String>,
}

/// What the idempotency key is built from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Dedupe {
    /// The event id, where the provider signs it (Stripe's `id` is inside the signed body).
    #[default]
    EventId,
    /// The SHA-256 of the raw body, where the event id is not signed. GitHub signs only the
    /// body: `X-GitHub-Delivery` and `X-GitHub-Hook-ID` are plain headers anyone replaying a
    /// captured delivery can change, so only the body identifies it. A manual redelivery
    /// resends the identical body and is deduplicated; the same event sent to two hooks or
    /// apps differs in its body (`hook`, `installation`) and is not.
    BodyDigest,
    /// A digest (lower-case hex SHA-256) of the canonical signed content, where the raw body
    /// can be re-encoded without breaking the signature (Twilio signs decoded, sorted form
    /// parameters, so `+` and `%20` or another parameter order give the same key). Nothing
    /// unsigned enters it: a header the provider does not sign (Shopify's topic) only ever
    /// decides the event type, and the event store refuses a second type under one key.
    Digest(String),
}

/// Lower-case hex SHA-256 of `parts` joined with NUL separators.
pub(crate) fn digest_of(parts: &[&[u8]]) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update([0u8]);
        }
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// Why a delivery was not accepted. Messages name headers and reasons, never secrets or
/// signature values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A header the scheme requires is absent or empty.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// A header the scheme allows once appears more than once.
    #[error("header {0} appears more than once")]
    DuplicateHeader(&'static str),
    /// A header does not have the scheme's syntax.
    #[error("malformed header {0}")]
    MalformedHeader(&'static str),
    /// The signed timestamp is further from now than the tolerance.
    #[error("signed timestamp is {} s in the {}, outside the tolerance", skew_seconds.unsigned_abs(), if *skew_seconds >= 0 { "past" } else { "future" })]
    TimestampOutsideTolerance {
        /// now − timestamp, **seconds** (positive: in the past).
        skew_seconds: i64,
    },
    /// No signature matched any configured secret.
    #[error("no signature matches")]
    SignatureMismatch,
    /// Verified, but the event id or type could not be found (or is too long).
    #[error("verified, but no event id: {0}")]
    NoEventId(&'static str),
    /// A configured secret cannot key the scheme's MAC (see [`check_key`]); nothing is
    /// verified with such a source. [`crate::Sources::new`] refuses these, so only a source
    /// built around it gets here.
    #[error("secret {index} of the source cannot be used: {problem}")]
    UnusableSecret {
        /// The secret's position in the source's list, from 0.
        index: usize,
        /// What is wrong with it.
        problem: KeyError,
    },
}

impl VerifyError {
    /// True when the signature itself was accepted (the request is authentic but unusable):
    /// such requests answer 400, all others 401.
    pub fn is_authentic(&self) -> bool {
        matches!(self, VerifyError::NoEventId(_))
    }

    /// A short stable reason code for logs and metrics (`missing_header`, `bad_signature`, …).
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::MissingHeader(_) => "missing_header",
            VerifyError::DuplicateHeader(_) => "duplicate_header",
            VerifyError::MalformedHeader(_) => "malformed_header",
            VerifyError::TimestampOutsideTolerance { .. } => "timestamp_outside_tolerance",
            VerifyError::SignatureMismatch => "bad_signature",
            VerifyError::NoEventId(_) => "no_event_id",
            VerifyError::UnusableSecret { .. } => "unusable_secret",
        }
    }
}

/// A provider's verification scheme.
pub trait Scheme: Send + Sync {
    /// Verifies `req` against `source`'s secrets at `now_s` (epoch **seconds**) and reads the
    /// event id and type.
    ///
    /// # Errors
    /// A [`VerifyError`] naming the first check that failed.
    fn verify_at(
        &self,
        req: &WebhookRequest<'_>,
        source: &SourceConfig,
        now_s: i64,
    ) -> Result<Verified, VerifyError>;
}

/// The scheme for `provider`.
pub fn scheme_for(provider: Provider) -> &'static dyn Scheme {
    match provider {
        Provider::Stripe => &stripe::Stripe,
        Provider::Github => &github::GitHub,
        Provider::Shopify => &shopify::Shopify,
        Provider::Paddle => &paddle::Paddle,
        Provider::Square => &square::Square,
        Provider::Twilio => &twilio::Twilio,
        Provider::Hmac => &generic::GenericHmac,
        Provider::Slack => &slack::Slack,
        Provider::Standard => &standard::StandardWebhooks,
    }
}

/// Verifies `req` with `source`'s scheme at `now_s` (epoch **seconds**).
///
/// # Errors
/// [`VerifyError::UnusableSecret`] if one of the source's secrets is empty (an empty HMAC key
/// is one anyone can use); otherwise see [`Scheme::verify_at`].
pub fn verify_at(
    req: &WebhookRequest<'_>,
    source: &SourceConfig,
    now_s: i64,
) -> Result<Verified, VerifyError> {
    // Sources::new refuses these; this keeps a source built around it failing closed in every
    // scheme. The schemes' own finer checks (a prefix with nothing after it, base64, length)
    // skip the secret inside the scheme.
    if let Some(index) = source.secrets.iter().position(|s| s.expose().is_empty()) {
        return Err(VerifyError::UnusableSecret {
            index,
            problem: KeyError::Empty,
        });
    }
    scheme_for(source.provider).verify_at(req, source, now_s)
}

/// Why a secret cannot key a scheme's MAC. Messages never contain the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The secret is the empty string.
    #[error("empty key")]
    Empty,
    /// The secret is only its prefix (e.g. `whsec_`), with nothing after it.
    #[error("empty key after the {0:?} prefix")]
    EmptyAfterPrefix(&'static str),
    /// The scheme's key is base64 and this is not (standard alphabet, padded).
    #[error("not base64{}", after(.after_prefix))]
    NotBase64 {
        /// The prefix removed before decoding, if there was one.
        after_prefix: Option<&'static str>,
    },
    /// The decoded key is shorter or longer than the scheme allows (Standard Webhooks).
    #[error(
        "the key is {bytes} bytes once base64-decoded; Standard Webhooks requires {min} to {max}"
    )]
    Length {
        /// The decoded key's length, bytes.
        bytes: usize,
        /// The shortest allowed, bytes.
        min: usize,
        /// The longest allowed, bytes.
        max: usize,
    },
}

fn after(prefix: &Option<&'static str>) -> String {
    prefix
        .map(|p| format!(" after the {p:?} prefix"))
        .unwrap_or_default()
}

/// Checks that `secret` can key `provider`'s MAC, as that scheme uses it:
///
/// - `standard` (and `svix`): base64 after an optional `whsec_` prefix, 24 to 64 bytes once
///   decoded ([`standard::key_bytes`]);
/// - `stripe`: the whole string is the key, `whsec_` included; it must not be `whsec_` alone;
/// - every other scheme (`github`, `shopify`, `slack`, `paddle`, `square`, `twilio`, `hmac`):
///   the whole string is the key, which must not be empty.
///
/// # Errors
/// The [`KeyError`] saying what is wrong (never quoting the secret).
pub fn check_key(provider: Provider, secret: &Secret) -> Result<(), KeyError> {
    match provider {
        Provider::Standard => standard::key_bytes(secret).map(drop),
        Provider::Stripe => stripe::check_key(secret),
        Provider::Github
        | Provider::Shopify
        | Provider::Paddle
        | Provider::Square
        | Provider::Twilio
        | Provider::Hmac
        | Provider::Slack => {
            if secret.expose().is_empty() {
                Err(KeyError::Empty)
            } else {
                Ok(())
            }
        }
    }
}

/// The secrets of `source` that are not empty: an empty HMAC key is one anyone can use.
pub(crate) fn nonempty_secrets(source: &SourceConfig) -> impl Iterator<Item = &Secret> {
    source.secrets.iter().filter(|s| !s.expose().is_empty())
}

/// The one value of header `name`.
///
/// # Errors
/// [`VerifyError::MissingHeader`] if absent or empty, [`VerifyError::DuplicateHeader`] if it
/// appears twice, [`VerifyError::MalformedHeader`] if it is not visible ASCII.
pub(crate) fn single_header<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
) -> Result<&'h str, VerifyError> {
    single_header_as(headers, name, name)
}

/// [`single_header`] for a header whose name is configured (not `'static`): errors name it by
/// `label` (e.g. `configured timestamp header`).
///
/// # Errors
/// As [`single_header`], naming `label`.
pub(crate) fn single_header_as<'h>(
    headers: &'h HeaderMap,
    name: &str,
    label: &'static str,
) -> Result<&'h str, VerifyError> {
    let mut values = headers.get_all(name).iter();
    let value = values.next().ok_or(VerifyError::MissingHeader(label))?;
    if values.next().is_some() {
        return Err(VerifyError::DuplicateHeader(label));
    }
    let value = value
        .to_str()
        .map_err(|_| VerifyError::MalformedHeader(label))?
        .trim();
    if value.is_empty() {
        return Err(VerifyError::MissingHeader(label));
    }
    Ok(value)
}

/// A base64 (standard alphabet) signature of exactly `N` bytes.
///
/// # Errors
/// [`VerifyError::MalformedHeader`] naming `header` if `value` is not base64 of that length.
pub(crate) fn base64_signature<const N: usize>(
    value: &str,
    header: &'static str,
) -> Result<[u8; N], VerifyError> {
    use base64::Engine;
    let mut sig = [0u8; N];
    match base64::engine::general_purpose::STANDARD.decode_slice(value, &mut sig) {
        Ok(n) if n == N => Ok(sig),
        _ => Err(VerifyError::MalformedHeader(header)),
    }
}

/// Like [`single_header`], but absence is not an error.
pub(crate) fn optional_header<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
) -> Result<Option<&'h str>, VerifyError> {
    optional_header_as(headers, name, name)
}

/// Like [`single_header_as`], but absence is not an error.
pub(crate) fn optional_header_as<'h>(
    headers: &'h HeaderMap,
    name: &str,
    label: &'static str,
) -> Result<Option<&'h str>, VerifyError> {
    match single_header_as(headers, name, label) {
        Ok(v) => Ok(Some(v)),
        Err(VerifyError::MissingHeader(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Checks an event id's length and characters and returns it owned.
pub(crate) fn event_id(id: &str) -> Result<String, VerifyError> {
    if id.is_empty() {
        return Err(VerifyError::NoEventId("empty event id"));
    }
    if id.len() > MAX_EVENT_ID_BYTES {
        return Err(VerifyError::NoEventId("event id longer than 512 bytes"));
    }
    if !queue_safe(id) {
        return Err(VerifyError::NoEventId("event id has control characters"));
    }
    Ok(id.to_owned())
}

/// Checks an event type's length and characters (it travels as an SQS message attribute).
pub(crate) fn event_type(kind: &str) -> Result<String, VerifyError> {
    if kind.is_empty() || kind.len() > 256 || !queue_safe(kind) {
        return Err(VerifyError::NoEventId(
            "event type is empty, too long or has control characters",
        ));
    }
    Ok(kind.to_owned())
}

/// True when `s` is printable text SQS accepts verbatim (no control characters, no
/// U+FFFE/U+FFFF): SQS rejects a message or attribute holding them, which would turn an
/// authentic delivery into a 503 forever.
pub(crate) fn queue_safe(s: &str) -> bool {
    s.chars()
        .all(|c| !c.is_control() && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// What a scheme does with a failed signature or timestamp check: fail, or, for a source in
/// shadow mode (`enforce = false`), log and count it (`metric = "ShadowSignatureRejected"`)
/// and go on. Missing or malformed signature headers fail in either mode.
pub(crate) fn shadow(source: &SourceConfig, error: VerifyError) -> Result<(), VerifyError> {
    if source.enforce {
        return Err(error);
    }
    tracing::warn!(
        source = %source.name, provider = %source.provider, reason = error.reason(), detail = %error,
        metric = "ShadowSignatureRejected", "signature check failed; accepted in shadow mode"
    );
    Ok(())
}

/// Checks `|now_s - timestamp_s| <= tolerance_s` (all **seconds**).
pub(crate) fn check_tolerance(
    timestamp_s: i64,
    now_s: i64,
    tolerance_s: u64,
) -> Result<(), VerifyError> {
    let skew = now_s.saturating_sub(timestamp_s);
    if skew.unsigned_abs() > tolerance_s {
        return Err(VerifyError::TimestampOutsideTolerance { skew_seconds: skew });
    }
    Ok(())
}

/// Parses a decimal epoch-seconds timestamp: ASCII digits only, at most 12 of them.
pub(crate) fn parse_timestamp(s: &str, header: &'static str) -> Result<i64, VerifyError> {
    if s.is_empty() || s.len() > 12 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifyError::MalformedHeader(header));
    }
    s.parse().map_err(|_| VerifyError::MalformedHeader(header))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_secret_fails_closed_in_every_scheme_and_in_shadow_mode() {
        let headers = HeaderMap::new();
        let req = WebhookRequest {
            headers: &headers,
            body: b"{}",
            query: "",
        };
        for provider in Provider::ALL {
            let mut source =
                SourceConfig::new("s", provider, vec![Secret::new("whsec_x"), Secret::new("")]);
            source.enforce = false;
            assert_eq!(
                verify_at(&req, &source, 0),
                Err(VerifyError::UnusableSecret {
                    index: 1,
                    problem: KeyError::Empty
                }),
                "{provider}"
            );
            assert_eq!(check_key(provider, &Secret::new("")), Err(KeyError::Empty));
        }
        assert_eq!(
            VerifyError::UnusableSecret {
                index: 1,
                problem: KeyError::Empty
            }
            .reason(),
            "unusable_secret"
        );
    }
}
