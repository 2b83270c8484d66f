//! `doorbell-bench`: the measurements behind `scripts/bench`. See the library docs.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use doorbell::verify::Verified;
use doorbell::{Envelope, Provider, Secret, SourceConfig};
use doorbell_bench::{cpu, load, runtime_api, stub};
use doorbell_cli::samples::{self, DEV_STRIPE_SECRET};

#[derive(Parser)]
#[command(name = "doorbell-bench", about = "Doorbell's measurement tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Function {
    Ingest,
    Worker,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the loopback SQS/DynamoDB stub; prints its endpoint URL, runs until killed.
    Stub {
        /// Port (0 = any free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// CPU per webhook of Doorbell's ingest (verify, then verify-and-send), as JSON.
    Cpu {
        /// Raw body to deliver.
        #[arg(long)]
        payload: PathBuf,
        /// Stripe signing secret.
        #[arg(long, default_value = DEV_STRIPE_SECRET)]
        secret: String,
        /// SQS endpoint (default: a stub on its own thread).
        #[arg(long)]
        endpoint: Option<String>,
        #[arg(long, default_value_t = 20_000)]
        iterations: u32,
        #[arg(long, default_value_t = 2_000)]
        warmup: u32,
    },
    /// Cold starts of a function's `bootstrap` under a local Runtime API, as JSON.
    ColdStart {
        /// The bootstrap executable (a native release build).
        #[arg(long)]
        bootstrap: PathBuf,
        /// Which function it is (decides its environment and event).
        #[arg(long, value_enum)]
        function: Function,
        /// Cold starts to measure.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Extra environment for the bootstrap, `NAME=VALUE` (repeatable), e.g.
        /// `SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt`.
        #[arg(long = "env", value_parser = parse_env)]
        extra_env: Vec<(String, String)>,
    },
    /// Throughput of a running `doorbell dev`, as JSON.
    Load {
        /// Base URL of `doorbell dev`.
        #[arg(long, default_value = "http://127.0.0.1:3000")]
        url: String,
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Body template (its `id` is replaced per request); default: the sample Stripe event.
        #[arg(long)]
        payload: Option<PathBuf>,
    },
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected NAME=VALUE, got {s:?}"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn sources_json() -> String {
    serde_json::json!({"sources": [{"name": "stripe", "provider": "stripe", "secrets": [DEV_STRIPE_SECRET]}]}).to_string()
}

fn function_setup(function: Function, endpoint: &str) -> (HashMap<String, String>, Vec<u8>) {
    let mut env = HashMap::from([
        ("AWS_ENDPOINT_URL".to_owned(), endpoint.to_owned()),
        ("DOORBELL_SOURCES".to_owned(), sources_json()),
        ("RUST_LOG".to_owned(), "info".to_owned()),
    ]);
    let now = doorbell::clock::Clock::now_s(&doorbell::clock::SystemClock);
    let body = samples::STRIPE_PAYMENT_INTENT_SUCCEEDED.as_bytes();
    match function {
        Function::Ingest => {
            env.insert(
                "DOORBELL_QUEUE_URL".into(),
                format!("{endpoint}/123456789012/bench"),
            );
            let headers = samples::stripe_headers(DEV_STRIPE_SECRET, now, body);
            let event = doorbell_cli::events::http_api_v2("stripe", &headers, body, false);
            (env, event.to_string().into_bytes())
        }
        Function::Worker => {
            env.insert("DOORBELL_TABLE".into(), "bench".into());
            let source = SourceConfig::new("stripe", Provider::Stripe, vec![Secret::new("unused")]);
            let verified = Verified {
                event_id: "evt_3QdemoPaymentIntent0001".into(),
                event_type: "payment_intent.succeeded".into(),
                occurred_at_ms: None,
                dedupe: Default::default(),
                reply: None,
                headers: vec![],
            };
            let envelope = Envelope::new(
                &source,
                verified,
                body,
                Some("application/json"),
                now * 1000,
            );
            let event = doorbell_cli::events::sqs_event(&[(
                "059f36b4-87a3-44ab-83d2-661975830a7d",
                envelope.to_json(),
                1,
            )]);
            (env, event.to_string().into_bytes())
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Stub { port } => {
            let counts = stub::Counts::default();
            let (addr, task) = stub::serve(([127, 0, 0, 1], port).into(), counts).await?;
            println!("http://{addr}");
            task.await?;
        }
        Command::Cpu {
            payload,
            secret,
            endpoint,
            iterations,
            warmup,
        } => {
            let body = std::fs::read(&payload)
                .with_context(|| format!("reading {}", payload.display()))?;
            let endpoint = endpoint.unwrap_or_else(|| stub::spawn_thread(stub::Counts::default()));
            // A current-thread runtime: every CPU cycle of the request is on this thread.
            let result = tokio::task::spawn_blocking(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(anyhow::Error::from)
                    .and_then(|rt| {
                        rt.block_on(cpu::measure(&endpoint, &body, &secret, warmup, iterations))
                    })
            })
            .await??;
            println!("{}", serde_json::to_string(&result)?);
        }
        Command::ColdStart {
            bootstrap,
            function,
            runs,
            extra_env,
        } => {
            let counts = stub::Counts::default();
            let endpoint = stub::spawn_thread(counts.clone());
            let mut all = Vec::new();
            for _ in 0..runs {
                let (mut env, event) = function_setup(function, &endpoint);
                env.extend(extra_env.iter().cloned());
                all.push(runtime_api::cold_start(&bootstrap, &env, &event).await?);
            }
            let size = std::fs::metadata(&bootstrap)?.len();
            let pick = |f: fn(&runtime_api::ColdStart) -> f64| median(all.iter().map(f).collect());
            let out = serde_json::json!({
                "bootstrap": bootstrap.display().to_string(),
                "bytes": size,
                "runs": runs,
                "extra_env": extra_env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
                "init_wall_ms_median": pick(|c| c.init_wall_ms),
                "init_cpu_ms_median": pick(|c| c.init_cpu_ms),
                "first_invoke_wall_ms_median": pick(|c| c.first_invoke_wall_ms),
                "first_invoke_cpu_ms_median": pick(|c| c.first_invoke_cpu_ms),
                "peak_rss_kib_max": all.iter().map(|c| c.peak_rss_kib).max().unwrap_or(0),
                "response": all.first().map(|c| c.response.clone()).unwrap_or_default(),
                "stub_requests": counts.snapshot(),
            });
            println!("{out}");
        }
        Command::Load {
            url,
            requests,
            concurrency,
            payload,
        } => {
            let template = match payload {
                Some(p) => std::fs::read_to_string(&p)
                    .with_context(|| format!("reading {}", p.display()))?,
                None => samples::STRIPE_PAYMENT_INTENT_SUCCEEDED.to_owned(),
            };
            let r = load::run(&url, DEV_STRIPE_SECRET, &template, requests, concurrency).await?;
            println!("{}", serde_json::to_string(&r)?);
        }
    }
    Ok(())
}
