//! CPU per webhook for Doorbell's ingest, measured the way the peers measure theirs
//! (`bench/peers/`): the same 2 KB Stripe payload, the same secret, the same loopback SQS
//! stub, one client created up front, `--warmup` then `--iterations` deliveries; verification
//! alone, then verify-and-send through the whole ingest app. CPU is the calling thread's
//! (`getrusage(RUSAGE_THREAD)`, user + system) on a current-thread runtime, so the stub, which
//! runs on its own thread, is not counted.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::Request;
use doorbell::catalog::StaticCatalog;
use doorbell::clock::SystemClock;
use doorbell::queue::SqsQueue;
use doorbell::verify::{WebhookRequest, stripe, verify_at};
use doorbell::{Secret, Sources};
use doorbell_ingest::{IngestState, app};
use serde::Serialize;
use tower::ServiceExt;

/// Thread CPU time (user + system), microseconds.
pub fn thread_cpu_us() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_THREAD with a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// One peer's result (the same fields the Python and Node peers print).
#[derive(Debug, Serialize)]
pub struct PeerResult {
    /// `doorbell`.
    pub peer: &'static str,
    /// `rust`.
    pub runtime: String,
    /// Payload size, bytes.
    pub payload_bytes: usize,
    /// Measured iterations.
    pub iterations: u32,
    /// Verification alone, CPU µs per webhook.
    pub verify_cpu_us: f64,
    /// Verification alone, wall µs per webhook.
    pub verify_wall_us: f64,
    /// The whole request (verify, envelope, SendMessage, response), CPU µs per webhook.
    pub verify_and_send_cpu_us: f64,
    /// The same, wall µs per webhook.
    pub verify_and_send_wall_us: f64,
    /// The transport floor: the same SendMessage request, prepared once, POSTed with a bare
    /// hyper client over the same kept-alive loopback connection (no signing, no SDK), CPU µs.
    pub bare_post_cpu_us: f64,
}

/// Runs the measurement against the SQS endpoint `endpoint` (the stub).
///
/// # Errors
/// When a delivery is not accepted.
pub async fn measure(
    endpoint: &str,
    payload: &[u8],
    secret: &str,
    warmup: u32,
    iterations: u32,
) -> anyhow::Result<PeerResult> {
    let sources = Sources::from_json(
        &serde_json::json!({"sources": [{"name": "stripe", "provider": "stripe", "secrets": [secret]}]})
            .to_string(),
    )?;
    let config = crate::stub::sdk_config(endpoint).await;
    let queue = SqsQueue::new(
        aws_sdk_sqs::Client::new(&config),
        format!("{endpoint}/123456789012/bench"),
    );
    let router = app(IngestState {
        sources: Arc::new(StaticCatalog::new(sources.clone())),
        queue: Arc::new(queue),
        clock: Arc::new(SystemClock),
    });
    let now = doorbell::clock::Clock::now_s(&SystemClock);
    let header = stripe::sign(&Secret::new(secret), now, payload);
    let source = sources
        .get("stripe")
        .ok_or_else(|| anyhow::anyhow!("no stripe source"))?;

    let mut headers = axum::http::HeaderMap::new();
    headers.insert(stripe::SIGNATURE_HEADER, header.parse()?);
    let verify_once = || {
        verify_at(
            &WebhookRequest {
                headers: &headers,
                body: payload,
                query: "",
            },
            source,
            now,
        )
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("verification failed: {e}"))
    };
    for _ in 0..warmup {
        verify_once()?;
    }
    let (c0, t0) = (thread_cpu_us(), Instant::now());
    for _ in 0..iterations {
        verify_once()?;
    }
    let verify_cpu = (thread_cpu_us() - c0) / f64::from(iterations);
    let verify_wall = t0.elapsed().as_secs_f64() * 1e6 / f64::from(iterations);

    let send_once = || {
        let router = router.clone();
        let req = Request::post("/webhooks/stripe")
            .header("content-type", "application/json")
            .header(stripe::SIGNATURE_HEADER, header.as_str())
            .body(Body::from(payload.to_vec()));
        async move {
            let resp = router.oneshot(req?).await?;
            anyhow::ensure!(
                resp.status().is_success(),
                "ingest answered {}",
                resp.status()
            );
            Ok::<(), anyhow::Error>(())
        }
    };
    for _ in 0..warmup {
        send_once().await?;
    }
    let (c0, t0) = (thread_cpu_us(), Instant::now());
    for _ in 0..iterations {
        send_once().await?;
    }
    let send_cpu = (thread_cpu_us() - c0) / f64::from(iterations);
    let send_wall = t0.elapsed().as_secs_f64() * 1e6 / f64::from(iterations);

    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<axum::body::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let queue_url = format!("{endpoint}/123456789012/bench");
    let send_body = axum::body::Bytes::from(serde_json::to_vec(&serde_json::json!({
        "QueueUrl": queue_url,
        "MessageBody": String::from_utf8_lossy(payload),
    }))?);
    let uri: hyper::Uri = format!("{endpoint}/").parse()?;
    let post_once = || {
        let req = hyper::Request::post(uri.clone())
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-target", "AmazonSQS.SendMessage")
            .body(http_body_util::Full::new(send_body.clone()));
        let client = client.clone();
        async move {
            let resp = client.request(req?).await?;
            anyhow::ensure!(
                resp.status().is_success(),
                "stub answered {}",
                resp.status()
            );
            http_body_util::BodyExt::collect(resp.into_body()).await?;
            Ok::<(), anyhow::Error>(())
        }
    };
    for _ in 0..warmup {
        post_once().await?;
    }
    let c0 = thread_cpu_us();
    for _ in 0..iterations {
        post_once().await?;
    }
    let bare_post_cpu = (thread_cpu_us() - c0) / f64::from(iterations);
    Ok(PeerResult {
        peer: "doorbell",
        runtime: "rust".into(),
        payload_bytes: payload.len(),
        iterations,
        verify_cpu_us: verify_cpu,
        verify_wall_us: verify_wall,
        verify_and_send_cpu_us: send_cpu,
        verify_and_send_wall_us: send_wall,
        bare_post_cpu_us: bare_post_cpu,
    })
}
