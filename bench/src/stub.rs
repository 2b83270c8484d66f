//! A loopback stub of the two AWS APIs the hot path calls, for benchmarks (never for tests of
//! AWS behaviour, which run against moto): SQS `SendMessage` and DynamoDB `UpdateItem`,
//! `PutItem` and `GetItem`, in the JSON protocols the SDKs speak
//! (<https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html>,
//! <https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_UpdateItem.html>).
//! It answers at once with a well-formed response (`SendMessage` with the MD5 of the body, which
//! the SDKs check; `UpdateItem` with `attempts = 1`) and counts requests per operation.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use md5::{Digest, Md5};

/// Requests seen, by `X-Amz-Target` (for example `AmazonSQS.SendMessage`).
#[derive(Debug, Clone, Default)]
pub struct Counts(Arc<Mutex<BTreeMap<String, u64>>>);

impl Counts {
    /// A snapshot.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }
    fn add(&self, target: &str) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(target.to_owned()).or_default() += 1;
        }
    }
}

async fn handle(State(counts): State<Counts>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    counts.add(&target);
    let json = |v: serde_json::Value, ct: &'static str| {
        (StatusCode::OK, [(header::CONTENT_TYPE, ct)], v.to_string()).into_response()
    };
    match target.as_str() {
        "AmazonSQS.SendMessage" => {
            let msg = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    v.get("MessageBody")
                        .and_then(|b| b.as_str())
                        .map(str::to_owned)
                })
                .unwrap_or_default();
            let md5 = hex::encode(Md5::digest(msg.as_bytes()));
            json(
                serde_json::json!({"MessageId": "4f0e4a3c-7c39-4d1e-9a57-0b6a0f0c0de1", "MD5OfMessageBody": md5}),
                "application/x-amz-json-1.0",
            )
        }
        "DynamoDB_20120810.UpdateItem" => json(
            serde_json::json!({"Attributes": {"attempts": {"N": "1"}}}),
            "application/x-amz-json-1.0",
        ),
        "DynamoDB_20120810.PutItem" | "DynamoDB_20120810.GetItem" => {
            json(serde_json::json!({}), "application/x-amz-json-1.0")
        }
        _ => (StatusCode::BAD_REQUEST, "unknown target").into_response(),
    }
}

/// The stub's router.
pub fn app(counts: Counts) -> Router {
    Router::new()
        .fallback(axum::routing::post(handle))
        .with_state(counts)
}

/// Serves the stub on `addr` until the task is dropped; returns the bound address.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    counts: Counts,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    use axum::serve::ListenerExt;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    // Answer without waiting on delayed ACKs (Nagle), as AWS endpoints do.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app(counts)).await;
    });
    Ok((bound, task))
}

/// Starts the stub on its own thread and runtime (so a benchmark's CPU is not the stub's);
/// returns the endpoint URL, e.g. `http://127.0.0.1:40123`.
///
/// # Panics
/// When no loopback port can be bound.
pub fn spawn_thread(counts: Counts) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("stub runtime");
        rt.block_on(async move {
            let (addr, task) = serve(([127, 0, 0, 1], 0).into(), counts)
                .await
                .expect("stub bind");
            let _ = tx.send(addr);
            let _ = task.await;
        });
    });
    let addr = rx.recv().expect("stub address");
    format!("http://{addr}")
}

/// SDK configuration for the stub at `endpoint`: `us-east-1`, static credentials, and otherwise
/// the SDK's defaults (retry strategy and timeouts as in production, unlike the tests' config,
/// which disables retries), so a benchmark measures the request path a function runs.
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "bench",
        ))
        .load()
        .await
}
