//! `doorbell dev`: the pipeline served on a loopback address until stopped.
//!
//! Ingest listens on `--listen` (default `127.0.0.1:3000`), `POST /webhooks/{source}`. A poller
//! drains the queue into the worker continuously, logging each record's outcome.
//!
//! Locally everything lives in one SQLite file (`--db`, [`doorbell::sqlite`]): the event store,
//! the events queue and its dead-letter queue ([`doorbell::queue::SqliteQueue`]: visibility
//! timeout, receive count, redrive after `--max-receive-count`, delete on success) and the
//! claim-checked envelopes of deliveries over the queue's 256 KiB, and the archive of every
//! verified envelope (kept `--archive-retention-days`, for `doorbell events show` and
//! `doorbell replay`). A 2xx is sent only after the
//! message is committed to the file, so whatever `dev` acknowledged is processed after a
//! crash, a kill or a restart on the same `--db`: messages that were in flight come back after
//! their visibility timeout, and a claim whose lease ended is taken over. `--fsync` makes every
//! commit survive a power loss too.
//!
//! With `--queue-url` and `--table` the SQS and DynamoDB adapters are used instead, with the
//! SDK's usual configuration (`AWS_ENDPOINT_URL` for an emulator), plus
//! `--dead-letter-queue-url` (where `Reject`ed events go) and `--payload-bucket` (the
//! claim-check bucket) when given.
//!
//! The HTTP server bounds connections, header and body read times ([`crate::serve`]). SIGINT
//! or SIGTERM stops it gracefully: no new connections, requests in progress finish, the
//! poller finishes its batch.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use doorbell::Sources;
use doorbell::archive::Archive;
use doorbell::clock::{Clock, SystemClock};
use doorbell::ops::local::LocalParts;
use doorbell::payload::{PayloadStore, S3PayloadStore};
use doorbell::queue::{ClaimCheckQueue, EventQueue, MemoryQueueConfig, SqliteQueue, SqsQueue};
use doorbell::sqlite::{Durability, SqliteDb};
use doorbell::store::{DynamoDbEventStore, EntityStore, EventStore};
use doorbell_worker::WorkerConfig;
use doorbell_worker::poller::EventSource;

use crate::pipeline::Pipeline;
use crate::samples;
use crate::serve::{ServeLimits, serve};

/// Options of `doorbell dev`.
#[derive(Debug, Clone, clap::Args)]
pub struct DevArgs {
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// Sources document (JSON, see the README); default: `stripe` and `github` with the dev secrets.
    #[arg(long, env = "DOORBELL_SOURCES_FILE")]
    pub sources: Option<PathBuf>,
    /// SQLite database file holding the local event store, queue, dead-letter queue and
    /// claim-checked envelopes; restart on the same file to resume.
    #[arg(long, default_value = "doorbell-dev.db")]
    pub db: PathBuf,
    /// Sync the database to disk on every commit, so an acknowledged delivery survives a power
    /// loss or an operating-system crash too (without it: the process being killed). Slower.
    #[arg(long)]
    pub fsync: bool,
    /// Visibility timeout of the local queue, seconds (1–43200; SQS also allows 0, the local
    /// queue does not: a message would be visible again while its worker runs).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=43_200))]
    pub visibility_timeout: u32,
    /// maxReceiveCount of the local queue's redrive policy (1–1000, as SQS allows; keep it at
    /// 2 or more so a crash mid-batch does not dead-letter the messages in flight).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub max_receive_count: u32,
    /// Connections served at once (more wait in the listen backlog).
    #[arg(long, default_value_t = 128, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_connections: usize,
    /// Time allowed for a request's headers, and for an idle keep-alive connection, seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout: u64,
    /// Time allowed for a request's whole body, seconds (408 after it).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout: u64,
    /// Request bodies held in memory at once, all connections together, MiB (at least the
    /// largest source's `max_body_bytes`); reading waits while it is spent.
    #[arg(long, default_value_t = 128)]
    pub max_body_memory: usize,
    /// Days the archive keeps every verified envelope (for `doorbell events show` and
    /// `doorbell replay`); older ones are deleted when dev starts.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub archive_retention_days: u32,
    /// Log one JSON object a line on stdout (each delivery received or rejected, each
    /// record's outcome), for piping to `jq` or a log shipper, instead of text on stderr.
    #[arg(long)]
    pub json: bool,
    /// Use this SQS queue instead of the local one in `--db`.
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
    dlq: Option<SqliteQueue>,
    /// Where the worker sends rejected and conflicting events.
    reject_to: Option<Arc<dyn EventQueue>>,
    /// The claim-check store.
    payloads: Option<Arc<dyn PayloadStore>>,
    /// The archive of every verified envelope (local only).
    archive: Option<Arc<dyn Archive>>,
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
            archive: None,
        });
    }
    let durability = if args.fsync {
        Durability::PowerLoss
    } else {
        Durability::Process
    };
    let db = SqliteDb::open_with(&args.db, durability)
        .with_context(|| format!("opening {}", args.db.display()))?;
    let cfg = MemoryQueueConfig {
        visibility_timeout_ms: i64::from(args.visibility_timeout) * 1000,
        max_receive_count: args.max_receive_count,
        ..Default::default()
    };
    let LocalParts {
        store,
        archive,
        queue,
        dlq,
        payloads,
    } = doorbell::ops::local::parts(&db, cfg, clock.clone())?;
    let retention_ms = i64::from(args.archive_retention_days) * 86_400_000;
    let expired = archive.expire(clock.now_ms() - retention_ms).await?;
    if expired > 0 {
        tracing::info!(
            expired,
            days = args.archive_retention_days,
            "deleted archived envelopes older than the retention"
        );
    }
    let orphans = queue.delete_orphan_payloads().await?;
    let (queued, dead) = (queue.count().await?, dlq.count().await?);
    if queued + dead + orphans > 0 {
        tracing::info!(
            db = %args.db.display(), queued, dead_letter_queue = dead, orphan_payloads_deleted = orphans,
            "resuming: queued messages are processed; any that were in flight when the last run stopped come back after the visibility timeout"
        );
    }
    let arn = queue.arn();
    Ok(Backends {
        queue: Arc::new(queue),
        store: store.clone(),
        entities: store,
        arn,
        dlq: Some(dlq.clone()),
        reject_to: Some(Arc::new(dlq)),
        payloads: Some(payloads),
        archive: Some(archive),
    })
}

/// Hands memory freed while the queue was busy back to the operating system once it drains:
/// glibc keeps freed heap (a burst of claim-checked deliveries of megabytes each) for reuse
/// otherwise, and the process's resident size would stay at its peak.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim only returns free heap pages to the kernel; it takes no pointers.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The start-up banner: where to send deliveries, where everything is kept, each source with
/// its provider and the event types it has handlers for, and the commands to look around.
pub fn banner(
    args: &DevArgs,
    sources: &[(String, String)],
    handlers: &doorbell::handler::HandlerRegistry,
) -> String {
    let db = args.db.display().to_string();
    let mut out = String::from("\ndoorbell dev\n");
    out.push_str(&format!(
        "  webhooks  POST http://{}/webhooks/{{source}}\n",
        args.listen
    ));
    if args.queue_url.is_some() {
        out.push_str("  queue     SQS and DynamoDB (--queue-url, --table)\n");
    } else {
        out.push_str(&format!(
            "  database  {db} (queue, dead-letter queue, event store, archive)\n"
        ));
    }
    for (i, (name, provider)) in sources.iter().enumerate() {
        let types = handlers.event_types(name);
        let handled = if types.is_empty() {
            "no handlers: its events end ignored".to_owned()
        } else {
            format!("handlers for {}", types.join(", "))
        };
        let label = if i == 0 { "sources" } else { "" };
        out.push_str(&format!("  {label:<8}  {name} ({provider}): {handled}\n"));
    }
    if args.queue_url.is_none() {
        out.push_str(&format!(
            "  look      doorbell events ls --db {db} · doorbell dlq ls --db {db} · doorbell status --db {db}\n"
        ));
    }
    out.push('\n');
    out
}

/// Runs until SIGINT or SIGTERM.
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
    let largest_body = sources.iter().map(|s| s.max_body_bytes).max().unwrap_or(0);
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
    let sources_list: Vec<(String, String)> = sources
        .iter()
        .map(|s| (s.name.clone(), s.provider.to_string()))
        .collect();
    // A batch's leases end with its visibility timeout, never after it, so a redelivery after
    // a crash takes the claim over as soon as the message is visible again.
    let visibility_ms = i64::from(args.visibility_timeout) * 1000;
    let mut pipeline = Pipeline::new(
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
        WorkerConfig {
            lease_floor_ms: visibility_ms.min(WorkerConfig::default().lease_floor_ms),
            lease_ceiling_ms: visibility_ms,
            ..WorkerConfig::default()
        },
    );
    pipeline.batch_timeout_ms = visibility_ms;
    if let Some(q) = b.reject_to {
        pipeline.worker = pipeline.worker.with_dead_letter_queue(q);
    }
    if let Some(p) = b.payloads {
        pipeline.worker = pipeline.worker.with_payload_store(p);
    }
    if let Some(a) = b.archive {
        pipeline.worker = pipeline.worker.with_archive(a);
    }

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(listen = %args.listen, sources = ?names, db = %args.db.display(), "doorbell dev: POST http://{}/webhooks/{{source}}", args.listen);
    if !args.json {
        eprint!(
            "{}",
            banner(&args, &sources_list, pipeline.worker.handlers())
        );
    }

    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let poller = pipeline.clone();
    let polling = tokio::spawn(async move {
        let dead_letters = async |dlq: &Option<SqliteQueue>| match dlq {
            Some(d) => d.count().await.ok(),
            None => None,
        };
        let mut dead = dead_letters(&dlq).await.unwrap_or(0);
        let mut busy = false;
        while !*stop_rx.borrow() {
            let idle = match poller.poll_once().await {
                Ok(reports) if reports.is_empty() => {
                    if std::mem::take(&mut busy) {
                        release_free_memory();
                    }
                    Duration::from_millis(200)
                }
                Ok(reports) => {
                    busy = true;
                    if reports.iter().any(|r| r.outcome.name() != "processed")
                        && let Some(n) = dead_letters(&dlq).await
                        && n > dead
                    {
                        tracing::warn!(
                            dead_letter_queue = n,
                            "message moved to the dead-letter queue"
                        );
                        dead = n;
                    }
                    Duration::ZERO
                }
                Err(e) => {
                    tracing::error!(error = %e, "poll failed");
                    Duration::from_secs(1)
                }
            };
            if !idle.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(idle) => {}
                    _ = stop_rx.changed() => {}
                }
            }
        }
    });
    let limits = ServeLimits {
        max_connections: args.max_connections,
        header_timeout: Duration::from_secs(args.header_timeout),
        body_timeout: Duration::from_secs(args.body_timeout),
        max_body_memory: args
            .max_body_memory
            .saturating_mul(1024 * 1024)
            .max(largest_body),
        ..ServeLimits::default()
    };
    serve(listener, pipeline.router.clone(), limits, stop_signal()).await?;
    let _ = stop_tx.send(true);
    let _ = polling.await;
    tracing::info!("doorbell dev stopped");
    Ok(())
}
