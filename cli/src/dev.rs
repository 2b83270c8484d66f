//! `doorbell dev`: the pipeline served on a loopback address until stopped.
//!
//! Ingest listens on `--listen` (default `127.0.0.1:3000`), `POST /webhooks/{source}`. A poller
//! drains the queue into the worker continuously, logging each record's outcome. Locally the
//! queue is in-process (visibility timeout, receive count, redrive to a dead-letter queue) and
//! the event store is SQLite, and envelopes over the queue's limit are claim-checked into memory;
//! with `--queue-url` and `--table` the SQS and DynamoDB adapters are used instead, with the
//! SDK's usual configuration (`AWS_ENDPOINT_URL` for an emulator), plus `--dead-letter-queue-url`
//! (where `Reject`ed events go) and `--payload-bucket` (the claim-check bucket) when given.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use doorbell::Sources;
use doorbell::clock::{Clock, SystemClock};
use doorbell::payload::{MemoryPayloadStore, PayloadStore, S3PayloadStore};
use doorbell::queue::{ClaimCheckQueue, EventQueue, MemoryQueue, MemoryQueueConfig, SqsQueue};
use doorbell::store::{DynamoDbEventStore, EntityStore, EventStore, SqliteEventStore};
use doorbell_worker::WorkerConfig;
use doorbell_worker::poller::EventSource;

use crate::pipeline::Pipeline;
use crate::samples;

/// Options of `doorbell dev`.
#[derive(Debug, Clone, clap::Args)]
pub struct DevArgs {
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// Sources document (JSON, see the README); default: `stripe` and `github` with the dev secrets.
    #[arg(long, env = "DOORBELL_SOURCES_FILE")]
    pub sources: Option<PathBuf>,
    /// SQLite database file for the local event store.
    #[arg(long, default_value = "doorbell-dev.db")]
    pub db: PathBuf,
    /// Visibility timeout of the local queue, seconds.
    #[arg(long, default_value_t = 30)]
    pub visibility_timeout: u32,
    /// maxReceiveCount of the local queue's redrive policy.
    #[arg(long, default_value_t = 5)]
    pub max_receive_count: u32,
    /// Use this SQS queue instead of the in-process one.
    #[arg(long, env = "DOORBELL_QUEUE_URL", requires = "table")]
    pub queue_url: Option<String>,
    /// Use this DynamoDB table instead of SQLite.
    #[arg(long, env = "DOORBELL_TABLE", requires = "queue_url")]
    pub table: Option<String>,
    /// With `--queue-url`: the dead-letter queue rejected events are sent to.
    #[arg(long, env = "DOORBELL_DEAD_LETTER_QUEUE_URL", requires = "queue_url")]
    pub dead_letter_queue_url: Option<String>,
    /// With `--queue-url`: the S3 bucket for envelopes over the queue's limit.
    #[arg(long, env = "DOORBELL_PAYLOAD_BUCKET", requires = "queue_url")]
    pub payload_bucket: Option<String>,
}

/// The queue and stores `dev` runs on.
struct Backends {
    queue: Arc<dyn EventQueue>,
    store: Arc<dyn EventStore>,
    entities: Arc<dyn EntityStore>,
    arn: String,
    /// The local dead-letter queue (none with SQS: its redrive policy is the queue's own).
    dlq: Option<Arc<MemoryQueue>>,
    /// Where the worker sends rejected events.
    reject_to: Option<Arc<dyn EventQueue>>,
    /// The claim-check store.
    payloads: Option<Arc<dyn PayloadStore>>,
}

async fn backends(args: &DevArgs, clock: &Arc<dyn Clock>) -> anyhow::Result<Backends> {
    if let (Some(url), Some(table)) = (&args.queue_url, &args.table) {
        let aws = aws_config::load_from_env().await;
        let store = Arc::new(DynamoDbEventStore::new(
            aws_sdk_dynamodb::Client::new(&aws),
            table,
        ));
        let sqs = aws_sdk_sqs::Client::new(&aws);
        let queue = Arc::new(SqsQueue::new(sqs.clone(), url));
        let reject_to = args
            .dead_letter_queue_url
            .as_ref()
            .map(|u| Arc::new(SqsQueue::new(sqs.clone(), u)) as Arc<dyn EventQueue>);
        let payloads = args
            .payload_bucket
            .as_ref()
            .map(|b| Arc::new(S3PayloadStore::from_conf(&aws, b)) as Arc<dyn PayloadStore>);
        return Ok(Backends {
            queue,
            store: store.clone(),
            entities: store,
            arn: url.clone(),
            dlq: None,
            reject_to,
            payloads,
        });
    }
    let cfg = MemoryQueueConfig {
        visibility_timeout_ms: i64::from(args.visibility_timeout) * 1000,
        max_receive_count: args.max_receive_count,
        ..Default::default()
    };
    let dlq = Arc::new(MemoryQueue::new(
        "doorbell-dev-dlq",
        cfg.clone(),
        clock.clone(),
    ));
    let queue = Arc::new(
        MemoryQueue::new("doorbell-dev-events", cfg, clock.clone())
            .with_dead_letter_queue(dlq.clone()),
    );
    let store = Arc::new(SqliteEventStore::open(&args.db)?);
    let arn = queue.arn();
    Ok(Backends {
        queue,
        store: store.clone(),
        entities: store,
        arn,
        dlq: Some(dlq.clone()),
        reject_to: Some(dlq),
        payloads: Some(Arc::new(MemoryPayloadStore::new("doorbell-dev-payloads"))),
    })
}

/// Runs until Ctrl-C.
///
/// # Errors
/// Configuration, bind or store errors.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let sources_json = match &args.sources {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => samples::dev_sources_json(),
    };
    let sources = Sources::from_json(&sources_json)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let b = backends(&args, &clock).await?;
    let (store, entities, arn, dlq) = (b.store, b.entities, b.arn, b.dlq);
    let queue: Arc<dyn EventQueue> = match &b.payloads {
        Some(p) => Arc::new(ClaimCheckQueue::new(b.queue, p.clone())),
        None => b.queue,
    };
    let names: Vec<String> = sources
        .iter()
        .map(|s| format!("{} ({})", s.name, s.provider))
        .collect();
    let pipeline = Pipeline::new(
        sources,
        queue,
        store,
        entities,
        clock,
        EventSource {
            arn,
            region: "local".into(),
            batch_size: 10,
        },
        WorkerConfig::default(),
    );
    let mut pipeline = pipeline;
    if let Some(q) = b.reject_to {
        pipeline.worker = pipeline.worker.with_dead_letter_queue(q);
    }
    if let Some(p) = b.payloads {
        pipeline.worker = pipeline.worker.with_payload_store(p);
    }

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(listen = %args.listen, sources = ?names, "doorbell dev: POST http://{}/webhooks/{{source}}", args.listen);

    let poller = pipeline.clone();
    tokio::spawn(async move {
        let mut dead = 0;
        loop {
            match poller.poll_once().await {
                Ok(reports) if reports.is_empty() => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "poll failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            if let Some(d) = &dlq
                && d.len() > dead
            {
                dead = d.len();
                tracing::warn!(
                    dead_letter_queue = dead,
                    "message moved to the dead-letter queue"
                );
            }
        }
    });
    axum::serve(listener, pipeline.router.clone())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
