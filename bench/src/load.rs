//! A bounded loopback load: `requests` signed Stripe deliveries (each with its own event id),
//! `concurrency` at a time, over HTTP/1.1 keep-alive connections, to a running
//! `doorbell dev`; reports webhooks per second and latency percentiles.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use doorbell::Secret;
use doorbell::verify::stripe;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

/// The load's result.
#[derive(Debug, Serialize)]
pub struct LoadResult {
    /// Requests sent.
    pub requests: usize,
    /// Concurrent requests.
    pub concurrency: usize,
    /// Answered 200.
    pub ok: usize,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Webhooks per second (200s / wall time).
    pub per_second: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
}

/// Sends the load to `base` (for example `http://127.0.0.1:3000`), source `stripe` signed with
/// `secret`, bodies from `template` (its `"id"` replaced per request).
///
/// # Errors
/// When the URL is invalid.
pub async fn run(
    base: &str,
    secret: &str,
    template: &str,
    requests: usize,
    concurrency: usize,
) -> anyhow::Result<LoadResult> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency)
        .build_http();
    let now = doorbell::clock::Clock::now_s(&doorbell::clock::SystemClock);
    let secret = Secret::new(secret);
    let url: hyper::Uri = format!("{base}/webhooks/stripe").parse()?;
    let doc: serde_json::Value = serde_json::from_str(template)?;
    let bodies: Vec<(Bytes, String)> = (0..requests)
        .map(|i| {
            let mut d = doc.clone();
            d["id"] = serde_json::json!(format!("evt_load_{i:08}"));
            let body = Bytes::from(d.to_string());
            let sig = stripe::sign(&secret, now, &body);
            (body, sig)
        })
        .collect();
    let started = Instant::now();
    let results: Vec<(bool, Duration)> =
        futures::StreamExt::collect(futures::StreamExt::buffer_unordered(
            futures::stream::iter(bodies.into_iter().map(|(body, sig)| {
                let client = client.clone();
                let url = url.clone();
                async move {
                    let t = Instant::now();
                    let req = hyper::Request::post(url)
                        .header("content-type", "application/json")
                        .header(stripe::SIGNATURE_HEADER, sig)
                        .body(Full::new(body));
                    let ok = match req {
                        Ok(req) => match client.request(req).await {
                            Ok(resp) => {
                                let ok = resp.status().is_success();
                                let _ = resp.into_body().collect().await;
                                ok
                            }
                            Err(_) => false,
                        },
                        Err(_) => false,
                    };
                    (ok, t.elapsed())
                }
            })),
            concurrency,
        ))
        .await;
    let seconds = started.elapsed().as_secs_f64();
    let mut lat: Vec<f64> = results.iter().map(|(_, d)| d.as_secs_f64() * 1e3).collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let ok = results.iter().filter(|(ok, _)| *ok).count();
    Ok(LoadResult {
        requests,
        concurrency,
        ok,
        seconds,
        per_second: ok as f64 / seconds,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: lat.last().copied().unwrap_or(0.0),
    })
}
