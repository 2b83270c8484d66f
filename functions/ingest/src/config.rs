//! The ingest function's settings, from its environment (set by the SAM template).
//!
//! | variable | meaning |
//! |---|---|
//! | `DOORBELL_QUEUE_URL` | the events queue URL (required) |
//! | `DOORBELL_SOURCES` | the sources document, JSON (see [`doorbell::config`]); required. With `DOORBELL_SECRETS_ARN` it holds no secrets |
//! | `DOORBELL_SECRETS_ARN` | the Secrets Manager secret holding `{"<source>": ["<secret>", …]}` (see [`doorbell::Sources::from_parts`]); without it the secrets must be inline in `DOORBELL_SOURCES` (local use) |
//! | `DOORBELL_SECRETS_TTL_SECONDS` | how long the secrets are cached before they are read again, seconds; default 300 |
//! | `DOORBELL_QUEUE_MAX_MESSAGE_BYTES` | the queue's `MaximumMessageSize`, bytes; default 262144 |
//! | `DOORBELL_PAYLOAD_BUCKET` | the S3 bucket for envelopes over the queue's limit (claim check, [`doorbell::queue::ClaimCheckQueue`]); without it such a delivery gets 413 |

use doorbell::Sources;
use doorbell::config::ConfigError;
use doorbell::queue::DEFAULT_MAX_MESSAGE_BYTES;

/// Ingest settings.
#[derive(Debug)]
pub struct IngestConfig {
    /// Events queue URL.
    pub queue_url: String,
    /// Where sources come from.
    pub sources: SourcesSetting,
    /// Queue message limit, bytes.
    pub max_message_bytes: usize,
    /// Claim-check bucket, if any.
    pub payload_bucket: Option<String>,
}

/// Where the sources and secrets come from.
#[derive(Debug)]
pub enum SourcesSetting {
    /// Inline, secrets included (redacted in `Debug`).
    Inline(Sources),
    /// Settings inline, secrets in Secrets Manager.
    SecretsManager {
        /// The secret's ARN or name.
        secret_id: String,
        /// The settings document (no secrets).
        settings_json: String,
        /// Cache TTL, **seconds**.
        ttl_seconds: u64,
    },
}

/// A missing or invalid setting; names the variable, never its value.
#[derive(Debug, thiserror::Error)]
pub enum IngestConfigError {
    /// A required variable is not set.
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    /// A variable does not parse.
    #[error("environment variable {0} is not valid")]
    Invalid(&'static str),
    /// The sources document is invalid.
    #[error("DOORBELL_SOURCES: {0}")]
    Sources(#[from] ConfigError),
}

impl IngestConfig {
    /// Reads the settings through `var` (for tests); [`IngestConfig::from_env`] reads the
    /// process environment.
    ///
    /// # Errors
    /// [`IngestConfigError`] naming the variable.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, IngestConfigError> {
        let queue_url =
            var("DOORBELL_QUEUE_URL").ok_or(IngestConfigError::Missing("DOORBELL_QUEUE_URL"))?;
        let settings =
            var("DOORBELL_SOURCES").ok_or(IngestConfigError::Missing("DOORBELL_SOURCES"))?;
        let sources = match var("DOORBELL_SECRETS_ARN").filter(|a| !a.is_empty()) {
            Some(secret_id) => {
                let ttl_seconds = match var("DOORBELL_SECRETS_TTL_SECONDS") {
                    Some(v) => v
                        .parse()
                        .map_err(|_| IngestConfigError::Invalid("DOORBELL_SECRETS_TTL_SECONDS"))?,
                    None => 300,
                };
                // Check the settings' shape now; the secrets are joined at the first request.
                Sources::from_parts(&settings, "{}").or_else(|e| match e {
                    ConfigError::NoSecret(_) => Ok(Sources::default()),
                    e => Err(e),
                })?;
                SourcesSetting::SecretsManager {
                    secret_id,
                    settings_json: settings,
                    ttl_seconds,
                }
            }
            None => SourcesSetting::Inline(Sources::from_json(&settings)?),
        };
        let max_message_bytes = match var("DOORBELL_QUEUE_MAX_MESSAGE_BYTES") {
            Some(v) => v
                .parse()
                .map_err(|_| IngestConfigError::Invalid("DOORBELL_QUEUE_MAX_MESSAGE_BYTES"))?,
            None => DEFAULT_MAX_MESSAGE_BYTES,
        };
        Ok(Self {
            queue_url,
            sources,
            max_message_bytes,
            payload_bucket: var("DOORBELL_PAYLOAD_BUCKET").filter(|b| !b.is_empty()),
        })
    }

    /// Reads the process environment.
    ///
    /// # Errors
    /// As [`IngestConfig::from_lookup`].
    pub fn from_env() -> Result<Self, IngestConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_missing_variable_and_never_echoes_secrets() {
        let e = IngestConfig::from_lookup(|_| None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment variable DOORBELL_QUEUE_URL is not set"
        );
        let e = IngestConfig::from_lookup(|k| match k {
            "DOORBELL_QUEUE_URL" => Some("http://q".into()),
            "DOORBELL_SOURCES" => Some(
                r#"{"sources":[{"name":"s","provider":"stripe","secrets":"whsec_LEAK"}]}"#.into(),
            ),
            _ => None,
        })
        .unwrap_err();
        assert!(!format!("{e} {e:?}").contains("LEAK"));
    }

    #[test]
    fn debug_of_a_valid_config_redacts_secrets() {
        let c = IngestConfig::from_lookup(|k| match k {
            "DOORBELL_QUEUE_URL" => Some("http://q".into()),
            "DOORBELL_SOURCES" => Some(
                r#"{"sources":[{"name":"s","provider":"stripe","secrets":["whsec_LEAK"]}]}"#.into(),
            ),
            _ => None,
        })
        .unwrap();
        assert!(!format!("{c:?}").contains("LEAK"));
        assert_eq!(c.max_message_bytes, 262_144);
        assert!(matches!(c.sources, SourcesSetting::Inline(_)));
    }

    #[test]
    fn secrets_arn_moves_the_secrets_to_secrets_manager() {
        let c = IngestConfig::from_lookup(|k| match k {
            "DOORBELL_QUEUE_URL" => Some("http://q".into()),
            "DOORBELL_SOURCES" => Some(r#"{"sources":[{"name":"s","provider":"stripe"}]}"#.into()),
            "DOORBELL_SECRETS_ARN" => {
                Some("arn:aws:secretsmanager:us-east-1:1:secret:doorbell".into())
            }
            "DOORBELL_SECRETS_TTL_SECONDS" => Some("60".into()),
            _ => None,
        })
        .unwrap();
        assert!(matches!(
            c.sources,
            SourcesSetting::SecretsManager {
                ttl_seconds: 60,
                ..
            }
        ));
        let e = IngestConfig::from_lookup(|k| match k {
            "DOORBELL_QUEUE_URL" => Some("http://q".into()),
            "DOORBELL_SOURCES" => Some(r#"{"sources":[{"name":"s","provider":"paypal"}]}"#.into()),
            "DOORBELL_SECRETS_ARN" => Some("arn".into()),
            _ => None,
        })
        .unwrap_err();
        assert!(e.to_string().starts_with("DOORBELL_SOURCES"), "{e}");
    }
}
