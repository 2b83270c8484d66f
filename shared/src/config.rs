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
//! Errors name the place in the document, what was found there and what is allowed:
//! `sources[0] ("payments").provider: unknown provider "stripee"; expected one of stripe, …`,
//! `sources[0] ("stripe"): unknown field "secret" (did you mean "secrets"?)`,
//! `sources[2] ("svix").secrets[0]: empty key after the "whsec_" prefix`. They quote names
//! (providers, fields, sources) but never a secret, nor anything that may be one
//! ([`crate::redact::quotable`]), so a misplaced secret cannot leak into a log.
//!
//! Every secret is checked against its scheme when the sources are loaded
//! ([`crate::verify::check_key`]): an empty key, a prefix with nothing after it, or a
//! Standard Webhooks secret that is not base64 of 24–64 bytes is a configuration error, not a
//! source that answers 401 to every delivery (or accepts a MAC anyone can compute).

use std::collections::{HashMap, HashSet};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::redact::{did_you_mean, quotable};
use crate::secret::Secret;
use crate::verify::KeyError;
use crate::verify::generic::{Algorithm, Encoding, HmacOptions};

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

/// The provider names a sources document accepts, as error messages list them.
const PROVIDER_NAMES: &str =
    "stripe, github, shopify, slack, standard (or svix), paddle, square, twilio, hmac";

impl Provider {
    /// Every provider.
    pub const ALL: [Provider; 9] = [
        Provider::Stripe,
        Provider::Github,
        Provider::Shopify,
        Provider::Slack,
        Provider::Standard,
        Provider::Paddle,
        Provider::Square,
        Provider::Twilio,
        Provider::Hmac,
    ];

    /// The provider called `name` in a sources document (`svix` is [`Provider::Standard`]).
    pub fn from_name(name: &str) -> Option<Provider> {
        if name == "svix" {
            return Some(Provider::Standard);
        }
        Provider::ALL.into_iter().find(|p| p.as_str() == name)
    }

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

/// Why a configuration was refused. Messages quote names (sources, providers, fields) but
/// never a secret or anything that may be one.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A document is not JSON.
    #[error("{document}: {message}")]
    Parse {
        /// Which document: `sources document` or `secrets document`.
        document: &'static str,
        /// What is wrong and where, never quoting a value ([`crate::redact::json_error`]).
        message: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// A value is missing, of the wrong type, or not one of those allowed.
    #[error("{path}: {message}")]
    Invalid {
        /// Where: `sources[0] ("stripe").provider`, `sources document`, `secrets["gh"]`.
        path: String,
        /// What was found and what is allowed.
        message: String,
    },
    /// A secret cannot key its source's scheme ([`crate::verify::check_key`]).
    #[error("{path}: {problem}")]
    BadSecret {
        /// Where: `sources[2] ("svix").secrets[0]`, or `secrets["svix"][0]` when it came from
        /// the secrets document.
        path: String,
        /// What is wrong with it.
        problem: KeyError,
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

/// Where a source's secrets came from, for the paths in error messages.
enum SecretsFrom {
    /// The sources themselves (`sources[0] ("stripe").secrets[1]`).
    Settings,
    /// The secrets document of [`Sources::from_parts`] (`secrets["stripe"][1]`); the names
    /// given there as one string rather than a list.
    Document { single: HashSet<String> },
}

impl SecretsFrom {
    fn path(&self, at: &str, name: &str, index: usize) -> String {
        match self {
            SecretsFrom::Settings => format!("{at}.secrets[{index}]"),
            SecretsFrom::Document { single } if single.contains(name) => {
                format!("secrets[{name:?}]")
            }
            SecretsFrom::Document { .. } => format!("secrets[{name:?}][{index}]"),
        }
    }
}

/// True for a valid source name: 1–64 of `A–Z a–z 0–9 _ -`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `sources[i] ("name")`, or `sources[i]` when the name is not a valid one.
fn source_path(index: usize, name: &str) -> String {
    if valid_name(name) {
        format!("sources[{index}] ({name:?})")
    } else {
        format!("sources[{index}]")
    }
}

impl Sources {
    /// Validates and indexes sources.
    ///
    /// # Errors
    /// [`ConfigError::BadName`], [`ConfigError::NoSecret`] (no secret at all),
    /// [`ConfigError::BadSecret`] (a secret that cannot key the source's scheme, see
    /// [`crate::verify::check_key`]), [`ConfigError::NoUrl`], [`ConfigError::NoHmacOptions`],
    /// [`ConfigError::Invalid`] (generic HMAC options that cannot work) or
    /// [`ConfigError::Duplicate`].
    pub fn new(sources: Vec<SourceConfig>) -> Result<Self, ConfigError> {
        Self::build(sources, &SecretsFrom::Settings)
    }

    fn build(sources: Vec<SourceConfig>, from: &SecretsFrom) -> Result<Self, ConfigError> {
        let mut by_name = HashMap::with_capacity(sources.len());
        for (i, s) in sources.into_iter().enumerate() {
            if !valid_name(&s.name) {
                return Err(ConfigError::BadName(s.name));
            }
            let at = source_path(i, &s.name);
            if s.secrets.is_empty() {
                return Err(ConfigError::NoSecret(s.name));
            }
            for (j, secret) in s.secrets.iter().enumerate() {
                crate::verify::check_key(s.provider, secret).map_err(|problem| {
                    ConfigError::BadSecret {
                        path: from.path(&at, &s.name, j),
                        problem,
                    }
                })?;
            }
            if matches!(s.provider, Provider::Square | Provider::Twilio)
                && s.url.as_deref().is_none_or(str::is_empty)
            {
                return Err(ConfigError::NoUrl(s.name));
            }
            if s.provider == Provider::Hmac {
                let Some(options) = &s.hmac else {
                    return Err(ConfigError::NoHmacOptions(s.name));
                };
                options.check().map_err(|e| ConfigError::Invalid {
                    path: format!("{at}.hmac.{}", e.field),
                    message: e.problem.to_owned(),
                })?;
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
    /// [`ConfigError::Parse`] (not JSON), [`ConfigError::Invalid`] (a value missing, of the
    /// wrong type or not allowed, an unknown field), or any error of [`Sources::new`].
    pub fn from_json(json: &str) -> Result<Self, ConfigError> {
        Self::new(parse_settings(json)?)
    }

    /// Reads a settings document (the module's shape, `secrets` optional and not checked) into
    /// its sources, for a reader that needs names and providers only (the worker, which holds
    /// no secret).
    ///
    /// # Errors
    /// [`ConfigError::Parse`] or [`ConfigError::Invalid`], naming the path and what is allowed.
    pub fn settings_from_json(json: &str) -> Result<Vec<SourceConfig>, ConfigError> {
        parse_settings(json)
    }

    /// Builds sources from a settings document without secrets (the module's shape, `secrets`
    /// left out) and a secrets document mapping each source name to its secret or secrets:
    /// `{"stripe": ["whsec_new", "whsec_old"], "github": "…"}`. This is how Doorbell runs in
    /// AWS: settings in an environment variable, secrets in one Secrets Manager secret.
    /// Secrets for names that are not configured are ignored.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] or [`ConfigError::Invalid`] for either document,
    /// [`ConfigError::NoSecret`] for a source the secrets document does not cover,
    /// [`ConfigError::BadSecret`] naming the entry of the secrets document, or any error of
    /// [`Sources::new`].
    pub fn from_parts(settings_json: &str, secrets_json: &str) -> Result<Self, ConfigError> {
        let mut sources = parse_settings(settings_json)?;
        let mut secrets = parse_secrets(secrets_json)?;
        let mut single = HashSet::new();
        for source in &mut sources {
            source.secrets = match secrets.remove(&source.name) {
                Some((list, one)) => {
                    if one {
                        single.insert(source.name.clone());
                    }
                    list
                }
                None => Vec::new(),
            };
        }
        Self::build(sources, &SecretsFrom::Document { single })
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

const SETTINGS: &str = "sources document";
const SECRETS: &str = "secrets document";
const SOURCE_FIELDS: [&str; 8] = [
    "name",
    "provider",
    "secrets",
    "tolerance_seconds",
    "max_body_bytes",
    "url",
    "enforce",
    "hmac",
];
const HMAC_FIELDS: [&str; 7] = [
    "header",
    "algorithm",
    "encoding",
    "prefix",
    "timestamp_header",
    "event_id",
    "event_type",
];

fn parse(document: &'static str, json: &str) -> Result<Value, ConfigError> {
    serde_json::from_str(json).map_err(|e| ConfigError::Parse {
        document,
        message: crate::redact::json_error(&e),
        line: e.line(),
        column: e.column(),
    })
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

/// What a JSON value is, for "found …" (never the value itself).
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "true or false",
        Value::Number(n) if n.as_u64().is_some() => "a whole number",
        Value::Number(n) if n.as_i64().is_some() => "a negative number",
        Value::Number(_) => "a fractional or very large number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Refuses a key of `map` that is not in `allowed`, quoting it when that is safe and
/// suggesting the field it was probably meant to be.
fn known_fields(at: &str, map: &Map<String, Value>, allowed: &[&str]) -> Result<(), ConfigError> {
    let Some(key) = map.keys().find(|k| !allowed.contains(&k.as_str())) else {
        return Ok(());
    };
    let message = match (quotable(key), did_you_mean(key, allowed)) {
        (Some(q), Some(s)) => format!("unknown field {q} (did you mean {s:?}?)"),
        (Some(q), None) => format!("unknown field {q}; expected {}", allowed.join(", ")),
        (None, _) => format!(
            "unknown field (its name is not shown); expected {}",
            allowed.join(", ")
        ),
    };
    Err(invalid(at, message))
}

/// A value that must be one of `allowed`: `unknown {what} "x"; expected one of …`.
fn unknown_value(path: String, what: &str, value: &str, allowed: &str) -> ConfigError {
    let shown = quotable(value).unwrap_or_else(|| "(not shown)".to_owned());
    invalid(
        path,
        format!("unknown {what} {shown}; expected one of {allowed}"),
    )
}

/// The fields of one object, each read with the path of the error it may raise.
struct Fields<'a> {
    at: String,
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn path(&self, field: &str) -> String {
        format!("{}.{field}", self.at)
    }

    /// A present, non-null value.
    fn get(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    fn required_str(&self, field: &str) -> Result<&'a str, ConfigError> {
        match self.map.get(field) {
            None => Err(invalid(&self.at, format!("missing field {field:?}"))),
            Some(Value::String(s)) => Ok(s),
            Some(v) => Err(invalid(
                self.path(field),
                format!("expected a string, found {}", kind(v)),
            )),
        }
    }

    fn optional_str(&self, field: &str) -> Result<Option<&'a str>, ConfigError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(invalid(
                self.path(field),
                format!("expected a string, found {}", kind(v)),
            )),
        }
    }

    fn optional_u64(&self, field: &str, what: &str) -> Result<Option<u64>, ConfigError> {
        match self.map.get(field) {
            None => Ok(None),
            Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
            Some(v) => Err(invalid(
                self.path(field),
                format!("expected {what}, found {}", kind(v)),
            )),
        }
    }

    fn optional_bool(&self, field: &str) -> Result<Option<bool>, ConfigError> {
        match self.map.get(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(invalid(
                self.path(field),
                format!("expected true or false, found {}", kind(v)),
            )),
        }
    }
}

/// Reads the settings document: `{"sources": [ … ]}` (module docs), checking every field's
/// presence, type and allowed values with the path of each.
fn parse_settings(json: &str) -> Result<Vec<SourceConfig>, ConfigError> {
    let doc = parse(SETTINGS, json)?;
    let Value::Object(top) = &doc else {
        return Err(invalid(
            SETTINGS,
            format!(
                "expected an object {{\"sources\": [ … ]}}, found {}",
                kind(&doc)
            ),
        ));
    };
    known_fields(SETTINGS, top, &["sources"])?;
    match top.get("sources") {
        None => Err(invalid(SETTINGS, "missing field \"sources\"")),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, v)| parse_source(i, v))
            .collect(),
        Some(v) => Err(invalid(
            "sources",
            format!("expected a list of sources, found {}", kind(v)),
        )),
    }
}

fn parse_source(index: usize, value: &Value) -> Result<SourceConfig, ConfigError> {
    let Value::Object(map) = value else {
        return Err(invalid(
            format!("sources[{index}]"),
            format!(
                "expected an object with name, provider and secrets, found {}",
                kind(value)
            ),
        ));
    };
    let mut f = Fields {
        at: format!("sources[{index}]"),
        map,
    };
    let name = f.required_str("name")?;
    f.at = source_path(index, name);
    known_fields(&f.at, map, &SOURCE_FIELDS)?;
    let provider_name = f.required_str("provider")?;
    let provider = Provider::from_name(provider_name).ok_or_else(|| {
        unknown_value(
            f.path("provider"),
            "provider",
            provider_name,
            PROVIDER_NAMES,
        )
    })?;
    let secrets = match map.get("secrets") {
        None => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(j, v)| match v {
                Value::String(s) => Ok(Secret::new(s.as_str())),
                v => Err(invalid(
                    format!("{}.secrets[{j}]", f.at),
                    format!("expected a string, found {}", kind(v)),
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(v) => {
            return Err(invalid(
                f.path("secrets"),
                format!("expected a list of strings, found {}", kind(v)),
            ));
        }
    };
    let tolerance_seconds = f
        .optional_u64("tolerance_seconds", "a whole number of seconds, 0 or more")?
        .unwrap_or(DEFAULT_TOLERANCE_SECONDS);
    let max_body_bytes = match f.optional_u64("max_body_bytes", "a whole number of bytes")? {
        None => DEFAULT_MAX_BODY_BYTES,
        Some(n) => usize::try_from(n).map_err(|_| {
            invalid(
                f.path("max_body_bytes"),
                "expected a whole number of bytes, found a number too large",
            )
        })?,
    };
    let url = f.optional_str("url")?.map(str::to_owned);
    let enforce = f.optional_bool("enforce")?.unwrap_or(true);
    let hmac = match f.get("hmac") {
        None => None,
        Some(Value::Object(m)) => Some(parse_hmac(f.path("hmac"), m)?),
        Some(v) => {
            return Err(invalid(
                f.path("hmac"),
                format!(
                    "expected an object with {}, found {}",
                    HMAC_FIELDS.join(", "),
                    kind(v)
                ),
            ));
        }
    };
    Ok(SourceConfig {
        name: name.to_owned(),
        provider,
        secrets,
        tolerance_seconds,
        max_body_bytes,
        url,
        enforce,
        hmac,
    })
}

fn parse_hmac(at: String, map: &Map<String, Value>) -> Result<HmacOptions, ConfigError> {
    known_fields(&at, map, &HMAC_FIELDS)?;
    let f = Fields { at, map };
    let algorithm = match f.optional_str("algorithm")? {
        None => Algorithm::default(),
        Some("sha256") => Algorithm::Sha256,
        Some("sha512") => Algorithm::Sha512,
        Some("sha1") => Algorithm::Sha1,
        Some(other) => {
            return Err(unknown_value(
                f.path("algorithm"),
                "algorithm",
                other,
                "sha256, sha512, sha1",
            ));
        }
    };
    let encoding = match f.optional_str("encoding")? {
        None => Encoding::default(),
        Some("hex") => Encoding::Hex,
        Some("base64") => Encoding::Base64,
        Some(other) => {
            return Err(unknown_value(
                f.path("encoding"),
                "encoding",
                other,
                "hex, base64",
            ));
        }
    };
    let owned = |field: &str| f.optional_str(field).map(|v| v.map(str::to_owned));
    Ok(HmacOptions {
        header: f.required_str("header")?.to_owned(),
        algorithm,
        encoding,
        prefix: owned("prefix")?,
        timestamp_header: owned("timestamp_header")?,
        event_id: owned("event_id")?,
        event_type: owned("event_type")?,
    })
}

/// Reads the secrets document of [`Sources::from_parts`]: source name → secret or list of
/// secrets. Each entry is the list and whether it was given as one string.
fn parse_secrets(json: &str) -> Result<HashMap<String, (Vec<Secret>, bool)>, ConfigError> {
    let doc = parse(SECRETS, json)?;
    let Value::Object(map) = doc else {
        return Err(invalid(
            SECRETS,
            format!(
                "expected an object from source name to its secret or list of secrets, found {}",
                kind(&doc)
            ),
        ));
    };
    let mut out = HashMap::with_capacity(map.len());
    for (name, value) in map {
        let at = match quotable(&name) {
            Some(q) => format!("secrets[{q}]"),
            None => "secrets[(a name not shown)]".to_owned(),
        };
        let entry = match value {
            Value::String(s) => (vec![Secret::new(s)], true),
            Value::Array(list) => {
                let mut secrets = Vec::with_capacity(list.len());
                for (j, v) in list.into_iter().enumerate() {
                    match v {
                        Value::String(s) => secrets.push(Secret::new(s)),
                        v => {
                            return Err(invalid(
                                format!("{at}[{j}]"),
                                format!("expected a string, found {}", kind(&v)),
                            ));
                        }
                    }
                }
                (secrets, false)
            }
            v => {
                return Err(invalid(
                    at,
                    format!(
                        "expected a secret (a string) or a list of them, found {}",
                        kind(&v)
                    ),
                ));
            }
        };
        out.insert(name, entry);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::generic::{Algorithm, Encoding, HmacOptions};

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
        assert_eq!(
            err.to_string(),
            r#"sources[0] ("s").secrets: expected a list of strings, found a string"#
        );
        // Syntax errors say where, by line and column.
        let err =
            Sources::from_json(r#"{"sources":[{"name":"s" "whsec_TOPSECRET"}]}"#).unwrap_err();
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
            ConfigError::BadSecret {
                problem: KeyError::Empty,
                ..
            }
        ));
        assert!(matches!(
            bad(
                r#"{"sources":[{"name":"a","provider":"github","secrets":["x"]},{"name":"a","provider":"stripe","secrets":["y"]}]}"#
            ),
            ConfigError::Duplicate(_)
        ));
        assert!(matches!(
            bad(r#"{"sources":[{"name":"a","provider":"paypal","secrets":["x"]}]}"#),
            ConfigError::Invalid { .. }
        ));
    }

    const SVIX_KEY: &str = "whsec_RkFLRS1zdGFuZGFyZC13ZWJob29rcy1rZXktMzJieXQ=";

    fn three_with_svix_secret(secret: &str) -> String {
        serde_json::json!({"sources": [
            {"name": "stripe", "provider": "stripe", "secrets": ["whsec_a"]},
            {"name": "github", "provider": "github", "secrets": ["g"]},
            {"name": "svix", "provider": "svix", "secrets": [secret, SVIX_KEY]},
        ]})
        .to_string()
    }

    #[test]
    fn rejects_whsec_prefix_with_empty_key() {
        let err = Sources::from_json(&three_with_svix_secret("whsec_")).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"sources[2] ("svix").secrets[0]: empty key after the "whsec_" prefix"#
        );
        // Stripe keys with the whole string, but `whsec_` alone is a placeholder anyone knows.
        let err = Sources::from_json(
            r#"{"sources":[{"name":"s","provider":"stripe","secrets":["whsec_x","whsec_"]}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"sources[0] ("s").secrets[1]: empty key after the "whsec_" prefix"#
        );
        // Every scheme: an empty secret names the source and field.
        for provider in Provider::ALL {
            let mut s = SourceConfig::new("p", provider, vec![Secret::new("")]);
            s.url = Some("https://example.com/webhooks/p".into());
            s.hmac = Some(HmacOptions {
                header: "x-sig".into(),
                algorithm: Algorithm::Sha256,
                encoding: Encoding::Hex,
                prefix: None,
                timestamp_header: None,
                event_id: None,
                event_type: None,
            });
            let err = Sources::new(vec![s]).unwrap_err();
            assert_eq!(
                err.to_string(),
                r#"sources[0] ("p").secrets[0]: empty key"#,
                "{provider}"
            );
        }
    }

    #[test]
    fn rejects_standard_secrets_that_are_not_base64_of_24_to_64_bytes() {
        for (secret, problem) in [
            (
                "whsec_TOPSECRET!!",
                r#"not base64 after the "whsec_" prefix"#,
            ),
            (
                "whsec_VE9QU0VDUkVU",
                "the key is 9 bytes once base64-decoded; Standard Webhooks requires 24 to 64",
            ),
        ] {
            let err = Sources::from_json(&three_with_svix_secret(secret)).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(r#"sources[2] ("svix").secrets[0]: {problem}"#)
            );
            let text = format!("{err:?}");
            assert!(
                !text.contains("TOPSECRET") && !text.contains("VE9Q"),
                "{text}"
            );
        }
        // The same secret from the secrets document is named by its place there.
        let err = Sources::from_parts(
            r#"{"sources":[{"name":"svix","provider":"standard"}]}"#,
            r#"{"svix":"whsec_"}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"secrets["svix"]: empty key after the "whsec_" prefix"#
        );
        let err = Sources::from_parts(
            r#"{"sources":[{"name":"svix","provider":"standard"}]}"#,
            &serde_json::json!({"svix": [SVIX_KEY, "whsec_%%"]}).to_string(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"secrets["svix"][1]: not base64 after the "whsec_" prefix"#
        );
        assert!(Sources::from_json(&three_with_svix_secret(SVIX_KEY)).is_ok());
    }

    #[test]
    fn unknown_provider_error_names_path_value_and_allowed() {
        let err = Sources::from_json(
            r#"{"sources":[{"name":"payments","provider":"stripee","secrets":["whsec_x"]}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"sources[0] ("payments").provider: unknown provider "stripee"; expected one of stripe, github, shopify, slack, standard (or svix), paddle, square, twilio, hmac"#
        );
        // A secret pasted into the provider field is not quoted.
        let err = Sources::from_json(
            r#"{"sources":[{"name":"p","provider":"whsec_TOPSECRET","secrets":["x"]}]}"#,
        )
        .unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("TOPSECRET"), "{text}");
        assert!(text.contains("sources[0] (\"p\").provider: unknown provider (not shown)"));
    }

    #[test]
    fn unknown_field_error_suggests_the_field_meant() {
        let err = Sources::from_json(
            r#"{"sources":[{"name":"stripe","provider":"stripe","secret":["whsec_x"]}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"sources[0] ("stripe"): unknown field "secret" (did you mean "secrets"?)"#
        );
        let err = Sources::from_json(
            r#"{"sources":[{"name":"s","provider":"stripe","secrets":["x"],"colour":1}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"sources[0] ("s"): unknown field "colour"; expected name, provider, secrets, tolerance_seconds, max_body_bytes, url, enforce, hmac"#
        );
        // A field whose name may be a secret is not quoted.
        let err = Sources::from_json(
            r#"{"sources":[{"name":"s","provider":"stripe","secrets":["x"],"whsec_TOPSECRET":1}]}"#,
        )
        .unwrap_err();
        assert!(!format!("{err}{err:?}").contains("TOPSECRET"));
        assert!(
            err.to_string()
                .contains("unknown field (its name is not shown)")
        );
        let err = Sources::from_json(r#"{"source":[]}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"sources document: unknown field "source" (did you mean "sources"?)"#
        );
    }

    #[test]
    fn type_errors_name_the_path_and_what_was_found() {
        let bad = |source: &str| {
            Sources::from_json(&format!(r#"{{"sources":[{source}]}}"#))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            bad(r#"{"name":"s","provider":"stripe","secrets":["x"],"tolerance_seconds":"300"}"#),
            r#"sources[0] ("s").tolerance_seconds: expected a whole number of seconds, 0 or more, found a string"#
        );
        assert_eq!(
            bad(r#"{"name":"s","provider":"stripe","secrets":["x", 5]}"#),
            r#"sources[0] ("s").secrets[1]: expected a string, found a whole number"#
        );
        assert_eq!(
            bad(r#"{"name":"s","provider":"stripe","secrets":["x"],"enforce":"no"}"#),
            r#"sources[0] ("s").enforce: expected true or false, found a string"#
        );
        assert_eq!(
            bad(r#"{"provider":"stripe","secrets":["x"]}"#),
            r#"sources[0]: missing field "name""#
        );
        assert_eq!(
            bad(r#"{"name":"s","secrets":["x"]}"#),
            r#"sources[0] ("s"): missing field "provider""#
        );
        assert_eq!(
            bad(
                r#"{"name":"acme","provider":"hmac","secrets":["x"],"hmac":{"header":"x-sig","algorithm":"sha265"}}"#
            ),
            r#"sources[0] ("acme").hmac.algorithm: unknown algorithm "sha265"; expected one of sha256, sha512, sha1"#
        );
        assert_eq!(
            bad(
                r#"{"name":"acme","provider":"hmac","secrets":["x"],"hmac":{"header":"x-sig","event_id":"id"}}"#
            ),
            r#"sources[0] ("acme").hmac.event_id: expected "header:<name>" or "json:<JSON pointer>", e.g. "json:/id""#
        );
        let err = Sources::from_parts(r#"{"sources":[]}"#, r#"{"gh": 5}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"secrets["gh"]: expected a secret (a string) or a list of them, found a whole number"#
        );
    }
}
