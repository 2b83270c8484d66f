//! Structured JSON logs for the Lambda functions.
//!
//! One JSON object per line: `{"level":"WARN","fields":{"message":"rejected","source":…,
//! "metric":"SignatureRejected",…},"target":"doorbell_ingest"}`. No timestamp (CloudWatch adds
//! one). The template's metric filter reads `$.fields.metric`. Filter with `RUST_LOG`
//! (default `info`). Nothing logged carries a body, a signature header or a secret.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// A JSON subscriber writing to `writer`, filtered by `RUST_LOG` (default `info`).
pub fn json_subscriber<W>(writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_current_span(false)
        .with_span_list(false)
        .without_time()
        .with_writer(writer)
        .finish()
}

/// Installs [`json_subscriber`] on stdout as the global subscriber (once, in `main`).
pub fn init_json() {
    // Fails only if a subscriber is already set, which leaves logging working.
    let _ = tracing::subscriber::set_global_default(json_subscriber(std::io::stdout));
}
