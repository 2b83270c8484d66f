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

/// One canned HTTP answer of a [`FailingEndpoint`].
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: String,
}

impl Reply {
    /// An AWS JSON-protocol answer (SQS, DynamoDB): `status` with `body`.
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Self {
            status,
            content_type: "application/x-amz-json-1.0",
            body: body.to_string(),
        }
    }

    /// An AWS JSON-protocol error, as the services send it: `{"__type": …, "message": …}`.
    pub fn json_error(status: u16, error_type: &str, message: &str) -> Self {
        Self::json(
            status,
            serde_json::json!({"__type": error_type, "message": message}),
        )
    }

    /// An S3 (REST-XML) answer.
    pub fn xml(status: u16, body: &str) -> Self {
        Self {
            status,
            content_type: "application/xml",
            body: body.to_owned(),
        }
    }
}

/// A loopback endpoint that answers every request with the next canned [`Reply`], then with
/// `then` forever: the failing endpoint for errors an emulator cannot produce (throttling,
/// 500s), reached through the real SDK clients and their HTTP stack.
#[derive(Debug, Clone)]
pub struct FailingEndpoint {
    url: String,
    calls: std::sync::Arc<AtomicU64>,
}

impl FailingEndpoint {
    /// Serves `replies` in order, then `then`, on a free loopback port until the runtime ends.
    ///
    /// # Panics
    /// When no loopback port can be bound (a test setup failure).
    pub async fn start(replies: Vec<Reply>, then: Reply) -> Self {
        use axum::response::IntoResponse;
        let queue = std::sync::Arc::new(std::sync::Mutex::new(
            replies
                .into_iter()
                .collect::<std::collections::VecDeque<_>>(),
        ));
        let calls = std::sync::Arc::new(AtomicU64::new(0));
        let (q, c) = (queue.clone(), calls.clone());
        let app = axum::Router::new().fallback(move || {
            let (q, c, then) = (q.clone(), c.clone(), then.clone());
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                let r = q
                    .lock()
                    .ok()
                    .and_then(|mut q| q.pop_front())
                    .unwrap_or(then);
                (
                    axum::http::StatusCode::from_u16(r.status)
                        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR),
                    [(axum::http::header::CONTENT_TYPE, r.content_type)],
                    r.body,
                )
                    .into_response()
            }
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, calls }
    }

    /// The endpoint URL, for [`config_for`].
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Requests answered so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

/// Counts the AWS requests a client sends, by `Service.Operation` (for example
/// `SQS.SendMessage`), every attempt included: attach it with the client config's
/// `.interceptor(counter.clone())`. The cost model's request counts come from it.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter(
    std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, u64>>>,
);

impl RequestCounter {
    /// Requests so far, by `Service.Operation`.
    pub fn snapshot(&self) -> std::collections::BTreeMap<String, u64> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Requests of one `Service.Operation` so far.
    pub fn get(&self, operation: &str) -> u64 {
        self.snapshot().get(operation).copied().unwrap_or(0)
    }
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let op = cfg
            .load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
            .map(|m| format!("{}.{}", m.service(), m.name()))
            .unwrap_or_else(|| "unknown".into());
        if let Ok(mut m) = self.0.lock() {
            *m.entry(op).or_default() += 1;
        }
        Ok(())
    }
}
