//! Sources: the webhook endpoints Doorbell serves and how each is verified.
//!
//! A *source* is one endpoint, `POST /webhooks/{name}`. Its configuration, as JSON (a local file,
//! or the Secrets Manager secret in AWS):
//!
//! ```json
//! { "sources": [
//!     { "name": "stripe", "provider": "stripe", "secrets": ["whsec_…", "whsec_…(rotated)"],
//!       "tolerance_seconds": 300, "max_body_bytes": 10485760 },
//!     { "name": "github", "provider": "github", "secrets": ["…"] }
//! ] }
//! ```
//!
//! - `name`: the URL segment, 1–64 of `A–Z a–z 0–9 _ -`.
//! - `provider`: the verification scheme ([`Provider`]): `stripe`, `github`, `shopify`,
//!   `slack`, `standard` (Standard Webhooks; `svix` is the same scheme), `paddle`, `square`,
//!   `twilio`, `hmac` (generic).
//! - `url`: for `square` and `twilio`, the URL the provider calls, as it sees it.
//! - `enforce`: `false` for shadow mode (check and log, accept anyway); default `true`.
//! - `hmac`: for `"provider": "hmac"`, see [`crate::verify::generic::HmacOptions`].
//! - `secrets`: one or more; a signature made with any of them is accepted (rotation without
//!   downtime). Never printed: see [`Secret`].
//! - `tolerance_seconds`: how far (**seconds**) a signed timestamp may be from now, either way;
//!   default 300. Ignored by schemes without a timestamp.
//! - `max_body_bytes`: the largest body accepted (**bytes**); default 10 MiB (the HTTP API
//!   payload maximum); larger answers 413.
//!
//! Parse errors never quote a value from the file, so a misplaced secret cannot leak into a log.

use std::collections::HashMap;

use serde::Deserialize;

use crate::secret::Secret;

/// Default timestamp tolerance, seconds (Stripe's and Slack's documented default).
pub const DEFAULT_TOLERANCE_SECONDS: u64 = 300;
/// Default body limit, bytes: 10 MiB, the API Gateway HTTP API payload maximum.
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// A verification scheme. Each has one module under [`crate::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Stripe: `Stripe-Signature: t=…,v1=…`.
    Stripe,
    /// GitHub: `X-Hub-Signature-256: sha256=…`.
    Github,
    /// Shopify: `X-Shopify-Hmac-Sha256` (base64).
    Shopify,
    /// Paddle Billing: `Paddle-Signature: ts=…;h1=…`.
    Paddle,
    /// Square: `x-square-hmacsha256-signature` over the notification URL and body (needs `url`).
    Square,
    /// Twilio: `X-Twilio-Signature` over the URL and sorted form parameters (needs `url`).
    Twilio,
    /// Any provider that signs the body with an HMAC in one header (needs `hmac`).
    Hmac,
    /// Slack: `X-Slack-Signature: v0=…` with `X-Slack-Request-Timestamp`.
    Slack,
    /// Standard Webhooks, and Svix (`svix` is accepted as a name for it).
    #[serde(alias = "svix")]
    Standard,
}

impl Provider {
    /// The provider's name as it appears in config, envelopes and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Stripe => "stripe",
            Provider::Github => "github",
            Provider::Shopify => "shopify",
            Provider::Paddle => "paddle",
            Provider::Square => "square",
            Provider::Twilio => "twilio",
            Provider::Hmac => "hmac",
            Provider::Slack => "slack",
            Provider::Standard => "standard",
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One webhook endpoint. See the module docs for the JSON shape.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// URL segment: `POST /webhooks/{name}`.
    pub name: String,
    /// Verification scheme.
    pub provider: Provider,
    /// Accepted signing secrets (any one verifies). May be left out of the document when they
    /// come from elsewhere ([`Sources::from_parts`]).
    #[serde(default)]
    pub secrets: Vec<Secret>,
    /// Allowed clock skew either way, **seconds**.
    #[serde(default = "default_tolerance")]
    pub tolerance_seconds: u64,
    /// Largest accepted body, **bytes**.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// The URL the provider calls, exactly as it sees it (scheme, host, path with any stage),
    /// for schemes that sign it: Square (the notification URL), Twilio (the webhook URL; the
    /// request's query string is appended). Needed behind custom domains and proxies.
    #[serde(default)]
    pub url: Option<String>,
    /// `false` runs the source in shadow mode: signatures are checked and the outcome logged
    /// and counted (`ShadowSignatureRejected`), but deliveries are accepted either way. For
    /// migrations and secret rotation; default `true`.
    #[serde(default = "default_enforce")]
    pub enforce: bool,
    /// Settings of a generic HMAC source (`"provider": "hmac"`).
    #[serde(default)]
    pub hmac: Option<crate::verify::generic::HmacOptions>,
}

fn default_enforce() -> bool {
    true
}

fn default_tolerance() -> u64 {
    DEFAULT_TOLERANCE_SECONDS
}
fn default_max_body() -> usize {
    DEFAULT_MAX_BODY_BYTES
}

impl SourceConfig {
    /// A source with the default tolerance and body limit.
    pub fn new(name: impl Into<String>, provider: Provider, secrets: Vec<Secret>) -> Self {
        Self {
            name: name.into(),
            provider,
            secrets,
            tolerance_seconds: DEFAULT_TOLERANCE_SECONDS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            url: None,
            enforce: true,
            hmac: None,
        }
    }
}

/// Why a configuration was refused. Messages never contain a configured value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The JSON did not parse or did not have the documented shape.
    #[error("source configuration is not valid: {message}")]
    Parse {
        /// What is wrong and where, never quoting a value ([`crate::redact::json_error`]).
        message: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// A source name is empty, too long or has a character outside `A–Z a–z 0–9 _ -`.
    #[error("source name {0:?} is not valid: use 1-64 of A-Z a-z 0-9 _ -")]
    BadName(String),
    /// Two sources share a name.
    #[error("source {0:?} is configured twice")]
    Duplicate(String),
    /// A source whose scheme signs its URL has no `url`.
    #[error("source {0:?} needs `url`: the URL the provider calls, as it sees it")]
    NoUrl(String),
    /// A generic HMAC source has no `hmac` settings.
    #[error("source {0:?} needs `hmac`: the header, algorithm and encoding of its signature")]
    NoHmacOptions(String),
    /// A source has no secret, or an empty one.
    #[error("source {0:?} needs at least one non-empty secret")]
    NoSecret(String),
}

/// All configured sources, looked up by name.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    by_name: HashMap<String, SourceConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourcesFile {
    sources: Vec<SourceConfig>,
}

impl Sources {
    /// Validates and indexes sources.
    ///
    /// # Errors
    /// [`ConfigError::BadName`], [`ConfigError::Duplicate`] or [`ConfigError::NoSecret`].
    pub fn new(sources: Vec<SourceConfig>) -> Result<Self, ConfigError> {
        let mut by_name = HashMap::with_capacity(sources.len());
        for s in sources {
            let valid = !s.name.is_empty()
                && s.name.len() <= 64
                && s.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !valid {
                return Err(ConfigError::BadName(s.name));
            }
            if s.secrets.is_empty() || s.secrets.iter().any(|x| x.expose().is_empty()) {
                return Err(ConfigError::NoSecret(s.name));
            }
            if matches!(s.provider, Provider::Square | Provider::Twilio)
                && s.url.as_deref().is_none_or(str::is_empty)
            {
                return Err(ConfigError::NoUrl(s.name));
            }
            if s.provider == Provider::Hmac && s.hmac.is_none() {
                return Err(ConfigError::NoHmacOptions(s.name));
            }
            if by_name.contains_key(&s.name) {
                return Err(ConfigError::Duplicate(s.name));
            }
            by_name.insert(s.name.clone(), s);
        }
        Ok(Self { by_name })
    }

    /// Parses the JSON document described in the module docs.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] (values redacted), or any error of [`Sources::new`].
    pub fn from_json(json: &str) -> Result<Self, ConfigError> {
        let file: SourcesFile = parse(json)?;
        Self::new(file.sources)
    }

    /// Builds sources from a settings document without secrets (the module's shape, `secrets`
    /// left out) and a secrets document mapping each source name to its secret or secrets:
    /// `{"stripe": ["whsec_new", "whsec_old"], "github": "…"}`. This is how Doorbell runs in
    /// AWS: settings in an environment variable, secrets in one Secrets Manager secret.
    /// Secrets for names that are not configured are ignored.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] for either document (values redacted), [`ConfigError::NoSecret`]
    /// for a source the secrets document does not cover, or any error of [`Sources::new`].
    pub fn from_parts(settings_json: &str, secrets_json: &str) -> Result<Self, ConfigError> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(Secret),
            Many(Vec<Secret>),
        }
        let mut file: SourcesFile = parse(settings_json)?;
        let mut secrets: HashMap<String, OneOrMany> = parse(secrets_json)?;
        for source in &mut file.sources {
            source.secrets = match secrets.remove(&source.name) {
                Some(OneOrMany::One(s)) => vec![s],
                Some(OneOrMany::Many(v)) => v,
                None => Vec::new(),
            };
        }
        Self::new(file.sources)
    }

    /// The source named `name`, if configured.
    pub fn get(&self, name: &str) -> Option<&SourceConfig> {
        self.by_name.get(name)
    }

    /// All sources, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &SourceConfig> {
        self.by_name.values()
    }
}

fn parse<'a, T: Deserialize<'a>>(json: &'a str) -> Result<T, ConfigError> {
    serde_json::from_str(json).map_err(|e| ConfigError::Parse {
        message: crate::redact::json_error(&e),
        line: e.line(),
        column: e.column(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sources_with_defaults() {
        let s = Sources::from_json(
            r#"{"sources":[{"name":"stripe","provider":"stripe","secrets":["a","b"]}]}"#,
        )
        .unwrap();
        let src = s.get("stripe").unwrap();
        assert_eq!(src.provider, Provider::Stripe);
        assert_eq!(src.secrets.len(), 2);
        assert_eq!(src.tolerance_seconds, 300);
        assert_eq!(src.max_body_bytes, 10 * 1024 * 1024);
        assert!(s.get("github").is_none());
    }

    #[test]
    fn parse_errors_never_quote_a_secret() {
        // A secret given as a string where a list is expected: serde would quote it.
        let err = Sources::from_json(
            r#"{"sources":[{"name":"s","provider":"stripe","secrets":"whsec_TOPSECRET"}]}"#,
        )
        .unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("TOPSECRET"), "{text}");
        assert!(text.contains("line 1"), "{text}");
    }

    #[test]
    fn from_parts_joins_settings_and_secrets() {
        let s = Sources::from_parts(
            r#"{"sources":[{"name":"stripe","provider":"stripe","tolerance_seconds":60},{"name":"gh","provider":"github"}]}"#,
            r#"{"stripe":["new","old"],"gh":"only","unused":"x"}"#,
        )
        .unwrap();
        assert_eq!(
            s.get("stripe").unwrap().secrets,
            vec![Secret::new("new"), Secret::new("old")]
        );
        assert_eq!(s.get("stripe").unwrap().tolerance_seconds, 60);
        assert_eq!(s.get("gh").unwrap().secrets, vec![Secret::new("only")]);
        let e = Sources::from_parts(
            r#"{"sources":[{"name":"gh","provider":"github"}]}"#,
            r#"{"other":"x"}"#,
        )
        .unwrap_err();
        assert!(matches!(e, ConfigError::NoSecret(_)));
        let e = Sources::from_parts(r#"{"sources":[]}"#, r#"{"gh": 5, "leak": "TOPSECRET"}"#)
            .unwrap_err();
        assert!(!format!("{e}{e:?}").contains("TOPSECRET"));
    }

    #[test]
    fn rejects_bad_names_duplicates_and_missing_secrets() {
        let bad = |j: &str| Sources::from_json(j).unwrap_err();
        assert!(matches!(
            bad(r#"{"sources":[{"name":"a/b","provider":"github","secrets":["x"]}]}"#),
            ConfigError::BadName(_)
        ));
        assert!(matches!(
            bad(r#"{"sources":[{"name":"a","provider":"github","secrets":[]}]}"#),
            ConfigError::NoSecret(_)
        ));
        assert!(matches!(
            bad(r#"{"sources":[{"name":"a","provider":"github","secrets":[""]}]}"#),
            ConfigError::NoSecret(_)
        ));
        assert!(matches!(
            bad(
                r#"{"sources":[{"name":"a","provider":"github","secrets":["x"]},{"name":"a","provider":"stripe","secrets":["y"]}]}"#
            ),
            ConfigError::Duplicate(_)
        ));
        assert!(matches!(
            bad(r#"{"sources":[{"name":"a","provider":"paypal","secrets":["x"]}]}"#),
            ConfigError::Parse { .. }
        ));
    }
}
