//! Helpers for tests that run against a moto server (`scripts/test` starts one and exports
//! `DOORBELL_TEST_AWS_ENDPOINT`). Only built with the `test-util` feature.

use std::sync::atomic::{AtomicU64, Ordering};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::types::QueueAttributeName;

/// The emulator's endpoint.
///
/// # Panics
/// When `DOORBELL_TEST_AWS_ENDPOINT` is unset: these tests must not pass silently without
/// the emulator. Run them through `./scripts/test`.
pub fn endpoint() -> String {
    std::env::var("DOORBELL_TEST_AWS_ENDPOINT")
        .expect("DOORBELL_TEST_AWS_ENDPOINT is not set: run ./scripts/test, which starts a moto server for these tests")
}

/// SDK configuration for the emulator: its endpoint, `us-east-1`, static test credentials,
/// one attempt per call (a test wants the error, not retries).
pub async fn sdk_config() -> SdkConfig {
    config_for(&endpoint()).await
}

/// SDK configuration for any endpoint (an unreachable one for failure tests).
pub async fn config_for(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing", "testing", None, None, "moto",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(std::time::Duration::from_secs(2))
                .operation_timeout(std::time::Duration::from_secs(25))
                .build(),
        )
        .load()
        .await
}

/// A name no other test (or process) uses: `{prefix}-{pid}-{n}`.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Creates a queue with a dead-letter queue (redrive after `max_receive_count` receives) and
/// the given visibility timeout (**seconds**). Returns `(queue_url, dlq_url)`.
///
/// # Panics
/// When the emulator refuses (a test setup failure).
pub async fn create_queue_with_dlq(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    max_receive_count: u32,
    visibility_timeout_s: u32,
) -> (String, String) {
    let dlq_url = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .expect("create dlq")
        .queue_url
        .unwrap();
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("dlq arn")
        .attributes
        .unwrap()
        .remove(&QueueAttributeName::QueueArn)
        .unwrap();
    let redrive =
        format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{max_receive_count}"}}"#);
    let url = sqs
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility_timeout_s.to_string(),
        )
        .send()
        .await
        .expect("create queue")
        .queue_url
        .unwrap();
    (url, dlq_url)
}

/// Creates a bucket with a unique name and returns a [`crate::payload::S3PayloadStore`] on it.
///
/// # Panics
/// When the emulator refuses (a test setup failure).
pub async fn create_payload_store(config: &SdkConfig) -> crate::payload::S3PayloadStore {
    let bucket = unique("doorbell-payloads").to_lowercase();
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .build(),
    );
    client
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");
    crate::payload::S3PayloadStore::new(client, bucket)
}
