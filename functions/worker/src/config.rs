//! The worker function's settings, from its environment (set by the SAM template).
//!
//! | variable | meaning |
//! |---|---|
//! | `DOORBELL_TABLE` | the `webhook_events` table name (required) |
//! | `DOORBELL_SOURCES` | sources as JSON: the worker reads only `name` and `provider` (optional; without it no handler is registered and every event is `ignored`) |
//! | `DOORBELL_MAX_CONCURRENCY` | records processed at once; default 10 |
//! | `DOORBELL_DEAD_LETTER_QUEUE_URL` | the dead-letter queue; a handler's `Reject` sends the message there at once (without it, `Reject` is retried like `Retry` until the redrive policy moves it) |
//! | `DOORBELL_PAYLOAD_BUCKET` | the S3 bucket holding claim-checked envelopes (required to process envelopes over the queue's limit) |
//! | `DOORBELL_ARCHIVE_STREAM` | the Firehose delivery stream every batch's envelopes are archived to before they run (optional; without it nothing is archived) |
//! | `DOORBELL_ARCHIVE_BUCKET` | the archive bucket, where an envelope too large for a Firehose record (over 1,000 KiB) is written directly, under `archive/` (optional; without it such an envelope's batch fails to archive) |
//! | `DOORBELL_DEDUPE_WINDOW_SECONDS` | how long processed events are remembered, seconds; default 604800 (7 days), at least 3600 |

use doorbell::Provider;

use crate::WorkerConfig;

/// Shortest accepted dedupe window, **seconds**: longer than any lease, so a record is never
/// forgotten while a handler may still be running.
pub const MIN_DEDUPE_WINDOW_SECONDS: i64 = 3_600;

/// Worker settings.
#[derive(Debug)]
pub struct WorkerSettings {
    /// Table name.
    pub table: String,
    /// `(source name, provider)` pairs, for handler registration.
    pub sources: Vec<(String, Provider)>,
    /// Tuning.
    pub worker: WorkerConfig,
    /// The dead-letter queue URL, for `Reject`.
    pub dead_letter_queue_url: Option<String>,
    /// The claim-check bucket.
    pub payload_bucket: Option<String>,
    /// The archive's Firehose delivery stream.
    pub archive_stream: Option<String>,
    /// The archive bucket, for envelopes too large for a Firehose record.
    pub archive_bucket: Option<String>,
}

/// A missing or invalid setting; names the variable, never its value.
#[derive(Debug, thiserror::Error)]
pub enum WorkerConfigError {
    /// A required variable is not set.
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    /// A variable does not parse.
    #[error("environment variable {0} is not valid")]
    Invalid(&'static str),
    /// `DOORBELL_SOURCES` is not a valid sources document (the message names the path, what
    /// was found and what is allowed; never a secret).
    #[error("environment variable DOORBELL_SOURCES: {0}")]
    Sources(doorbell::config::ConfigError),
}

impl WorkerSettings {
    /// Reads the settings through `var`.
    ///
    /// # Errors
    /// [`WorkerConfigError`] naming the variable.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, WorkerConfigError> {
        let table = var("DOORBELL_TABLE").ok_or(WorkerConfigError::Missing("DOORBELL_TABLE"))?;
        let sources = match var("DOORBELL_SOURCES") {
            Some(json) => doorbell::Sources::settings_from_json(&json)
                .map_err(WorkerConfigError::Sources)?
                .into_iter()
                .map(|s| (s.name, s.provider))
                .collect(),
            None => Vec::new(),
        };
        let mut worker = WorkerConfig::default();
        if let Some(v) = var("DOORBELL_MAX_CONCURRENCY") {
            worker.max_concurrency = v
                .parse()
                .map_err(|_| WorkerConfigError::Invalid("DOORBELL_MAX_CONCURRENCY"))?;
        }
        if let Some(v) = var("DOORBELL_DEDUPE_WINDOW_SECONDS") {
            worker.dedupe_window_s = v
                .parse()
                .ok()
                .filter(|s: &i64| *s >= MIN_DEDUPE_WINDOW_SECONDS)
                .ok_or(WorkerConfigError::Invalid("DOORBELL_DEDUPE_WINDOW_SECONDS"))?;
        }
        Ok(Self {
            table,
            sources,
            worker,
            dead_letter_queue_url: var("DOORBELL_DEAD_LETTER_QUEUE_URL").filter(|v| !v.is_empty()),
            payload_bucket: var("DOORBELL_PAYLOAD_BUCKET").filter(|v| !v.is_empty()),
            archive_stream: var("DOORBELL_ARCHIVE_STREAM").filter(|v| !v.is_empty()),
            archive_bucket: var("DOORBELL_ARCHIVE_BUCKET").filter(|v| !v.is_empty()),
        })
    }

    /// Reads the process environment.
    ///
    /// # Errors
    /// As [`WorkerSettings::from_lookup`].
    pub fn from_env() -> Result<Self, WorkerConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_table_sources_and_tuning() {
        let s = WorkerSettings::from_lookup(|k| match k {
            "DOORBELL_TABLE" => Some("t".into()),
            "DOORBELL_SOURCES" => {
                Some(r#"{"sources":[{"name":"pay","provider":"stripe","secrets":["x"]}]}"#.into())
            }
            "DOORBELL_MAX_CONCURRENCY" => Some("4".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(s.sources, vec![("pay".to_owned(), Provider::Stripe)]);
        assert_eq!(s.worker.max_concurrency, 4);
        assert_eq!((s.archive_stream, s.archive_bucket), (None, None));
        for bad in ["0", "-5", "60", "soon"] {
            let e = WorkerSettings::from_lookup(|k| match k {
                "DOORBELL_TABLE" => Some("t".into()),
                "DOORBELL_DEDUPE_WINDOW_SECONDS" => Some(bad.into()),
                _ => None,
            })
            .unwrap_err();
            assert!(
                matches!(
                    e,
                    WorkerConfigError::Invalid("DOORBELL_DEDUPE_WINDOW_SECONDS")
                ),
                "{bad}"
            );
        }
        assert_eq!(
            WorkerSettings::from_lookup(|_| None)
                .unwrap_err()
                .to_string(),
            "environment variable DOORBELL_TABLE is not set"
        );
    }

    #[test]
    fn reads_the_archive_stream_and_bucket_and_treats_empty_as_unset() {
        let s = WorkerSettings::from_lookup(|k| match k {
            "DOORBELL_TABLE" => Some("t".into()),
            "DOORBELL_ARCHIVE_STREAM" => Some("doorbell-archive".into()),
            "DOORBELL_ARCHIVE_BUCKET" => Some(String::new()),
            _ => None,
        })
        .unwrap();
        assert_eq!(s.archive_stream.as_deref(), Some("doorbell-archive"));
        assert_eq!(s.archive_bucket, None);
    }

    #[test]
    fn a_bad_sources_document_names_the_path_and_what_is_allowed() {
        let e = WorkerSettings::from_lookup(|k| match k {
            "DOORBELL_TABLE" => Some("t".into()),
            "DOORBELL_SOURCES" => {
                Some(r#"{"sources":[{"name":"pay","provider":"stripee"}]}"#.into())
            }
            _ => None,
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("environment variable DOORBELL_SOURCES: "),
            "{e}"
        );
        assert!(
            e.contains(r#"sources[0] ("pay").provider: unknown provider "stripee""#),
            "{e}"
        );
    }
}
