//! Lambda entry point: wiring only. See the library for the contract.

use std::sync::Arc;

use doorbell::SystemClock;
use doorbell::catalog::{SecretsManagerCatalog, SourceCatalog, StaticCatalog};
use doorbell::metrics::EmfStdout;
use doorbell::payload::S3PayloadStore;
use doorbell::queue::{ClaimCheckQueue, EventQueue, SqsQueue};
use doorbell_ingest::config::{IngestConfig, SourcesSetting};
use doorbell_ingest::{IngestState, app};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    doorbell::logging::init_json();
    let config = IngestConfig::from_env()?;
    let aws = aws_config::load_from_env().await;
    let mut queue: Arc<dyn EventQueue> = Arc::new(
        SqsQueue::new(aws_sdk_sqs::Client::new(&aws), config.queue_url)
            .with_max_message_bytes(config.max_message_bytes),
    );
    if let Some(bucket) = config.payload_bucket {
        queue = Arc::new(ClaimCheckQueue::new(
            queue,
            Arc::new(S3PayloadStore::from_conf(&aws, bucket)),
        ));
    }
    let sources: Arc<dyn SourceCatalog> = match config.sources {
        SourcesSetting::Inline(s) => Arc::new(StaticCatalog::new(s)),
        SourcesSetting::SecretsManager {
            secret_id,
            settings_json,
            ttl_seconds,
        } => {
            let client = aws_sdk_secretsmanager::Client::new(&aws);
            Arc::new(SecretsManagerCatalog::new(
                client,
                secret_id,
                settings_json,
                ttl_seconds,
                Arc::new(SystemClock),
            ))
        }
    };
    // Warm the cache during init; a failure here is retried on the first request.
    if let Err(e) = sources.sources().await {
        tracing::error!(error = %e, "could not load the sources at cold start");
    }
    let state = IngestState {
        sources,
        queue,
        clock: Arc::new(SystemClock),
    };
    let app = app(state.with_metrics(Arc::new(EmfStdout)));
    lambda_http::lambda_runtime::run(doorbell_ingest::lambda::service(app)).await
}
