//! Cold starts: a local Lambda Runtime API
//! (<https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html>) that starts a function's
//! `bootstrap` as Lambda does (environment from the Lambda docs' reserved variables plus the
//! function's own), hands it one event, and measures:
//!
//! - init: from `exec` to the first `GET /runtime/invocation/next`, wall and CPU (the sum of
//!   every thread's `/proc/<pid>/task/*/schedstat` run time, nanosecond resolution);
//! - the first invocation: from handing over the event to its response, wall and CPU;
//! - peak RSS (`VmHWM` in `/proc/<pid>/status`) after the first invocation, KiB.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::routing::{get, post};
use serde::Serialize;
use tokio::sync::Notify;

/// One cold start's measurements.
#[derive(Debug, Clone, Serialize)]
pub struct ColdStart {
    /// exec → first `next`, ms.
    pub init_wall_ms: f64,
    /// CPU of the process until its first `next`, ms.
    pub init_cpu_ms: f64,
    /// Event handed over → response received, ms.
    pub first_invoke_wall_ms: f64,
    /// CPU of the process during the first invocation, ms.
    pub first_invoke_cpu_ms: f64,
    /// Peak resident set after the first invocation, KiB.
    pub peak_rss_kib: u64,
    /// The function's response body.
    pub response: String,
}

#[derive(Default)]
struct Shared {
    next_calls: u32,
    first_next: Option<(Instant, f64)>,
    response: Option<(Instant, f64, String)>,
    pid: u32,
}

#[derive(Clone)]
struct Api {
    shared: Arc<Mutex<Shared>>,
    event: Arc<Vec<u8>>,
    got_response: Arc<Notify>,
    hold: Arc<Notify>,
}

/// CPU time of every thread of `pid`, ms (from `schedstat`, nanoseconds).
pub fn process_cpu_ms(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let mut ns: u64 = 0;
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
            ns += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    ns as f64 / 1e6
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn next(State(api): State<Api>) -> (HeaderMap, Bytes) {
    let first = {
        let mut s = api.shared.lock().unwrap_or_else(|p| p.into_inner());
        s.next_calls += 1;
        if s.next_calls == 1 {
            let cpu = process_cpu_ms(s.pid);
            s.first_next = Some((Instant::now(), cpu));
            true
        } else {
            false
        }
    };
    if !first {
        // The second `next`: the function is idle; hold it until the harness ends it.
        api.hold.notified().await;
    }
    let mut h = HeaderMap::new();
    h.insert(
        "lambda-runtime-aws-request-id",
        HeaderValue::from_static("8476a536-e9f4-11e8-9739-2dfe598c3fcd"),
    );
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() + 10_000)
        .unwrap_or(0);
    if let Ok(v) = HeaderValue::from_str(&deadline.to_string()) {
        h.insert("lambda-runtime-deadline-ms", v);
    }
    h.insert(
        "lambda-runtime-invoked-function-arn",
        HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:doorbell-bench"),
    );
    h.insert(
        "lambda-runtime-trace-id",
        HeaderValue::from_static(
            "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1",
        ),
    );
    (h, Bytes::from(api.event.as_ref().clone()))
}

async fn response(
    State(api): State<Api>,
    UrlPath(_id): UrlPath<String>,
    body: Bytes,
) -> &'static str {
    {
        let mut s = api.shared.lock().unwrap_or_else(|p| p.into_inner());
        let cpu = process_cpu_ms(s.pid);
        s.response = Some((
            Instant::now(),
            cpu,
            String::from_utf8_lossy(&body).into_owned(),
        ));
    }
    api.got_response.notify_one();
    "{\"status\":\"OK\"}"
}

async fn error(State(api): State<Api>, body: Bytes) -> &'static str {
    {
        let mut s = api.shared.lock().unwrap_or_else(|p| p.into_inner());
        s.response = Some((
            Instant::now(),
            0.0,
            format!("ERROR {}", String::from_utf8_lossy(&body)),
        ));
    }
    api.got_response.notify_one();
    "{\"status\":\"OK\"}"
}

/// Starts `bootstrap` with `env` against a fresh Runtime API, gives it `event`, measures.
///
/// # Errors
/// When the process cannot start, or does not answer within 20 s.
pub async fn cold_start(
    bootstrap: &Path,
    env: &HashMap<String, String>,
    event: &[u8],
) -> anyhow::Result<ColdStart> {
    let api = Api {
        shared: Arc::default(),
        event: Arc::new(event.to_vec()),
        got_response: Arc::new(Notify::new()),
        hold: Arc::new(Notify::new()),
    };
    let router = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(error))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });

    let mut cmd = tokio::process::Command::new(bootstrap);
    cmd.env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "doorbell-bench")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/doorbell-bench")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/29/[$LATEST]bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_SESSION_TOKEN", "test")
        .envs(env)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = cmd.spawn()?;
    let pid = child.id().unwrap_or(0);
    api.shared.lock().unwrap_or_else(|p| p.into_inner()).pid = pid;

    let got = tokio::time::timeout(Duration::from_secs(20), api.got_response.notified()).await;
    let rss = peak_rss_kib(pid);
    let _ = child.start_kill();
    let _ = child.wait().await;
    api.hold.notify_waiters();
    server.abort();
    anyhow::ensure!(got.is_ok(), "no response within 20 s");
    let s = api.shared.lock().unwrap_or_else(|p| p.into_inner());
    let (t_next, cpu_next) = s
        .first_next
        .ok_or_else(|| anyhow::anyhow!("no next call"))?;
    let (t_resp, cpu_resp, body) = s
        .response
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no response"))?;
    Ok(ColdStart {
        init_wall_ms: (t_next - started).as_secs_f64() * 1e3,
        init_cpu_ms: cpu_next,
        first_invoke_wall_ms: (t_resp - t_next).as_secs_f64() * 1e3,
        first_invoke_cpu_ms: cpu_resp - cpu_next,
        peak_rss_kib: rss,
        response: body,
    })
}
