//! The ingest function's settings, from its environment (set by the SAM template).
//!
//! | variable | meaning |
//! |---|---|
//! | `DOORBELL_QUEUE_URL` | the events queue URL (required) |
//! | `DOORBELL_SOURCES` | the sources document, JSON (see [`doorbell::config`]); required |
//! | `DOORBELL_QUEUE_MAX_MESSAGE_BYTES` | the queue's `MaximumMessageSize`, bytes; default 262144 |

use doorbell::Sources;
use doorbell::config::ConfigError;
use doorbell::queue::DEFAULT_MAX_MESSAGE_BYTES;

/// Ingest settings.
#[derive(Debug)]
pub struct IngestConfig {
    /// Events queue URL.
    pub queue_url: String,
    /// Sources and their secrets (redacted in `Debug`).
    pub sources: Sources,
    /// Queue message limit, bytes.
    pub max_message_bytes: usize,
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
        let sources = Sources::from_json(
            &var("DOORBELL_SOURCES").ok_or(IngestConfigError::Missing("DOORBELL_SOURCES"))?,
        )?;
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
    }
}
