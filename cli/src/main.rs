//! `doorbell`: run the webhook pipeline locally. Wiring only; see the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use doorbell::Sources;
use doorbell::clock::{Clock, SystemClock};
use doorbell_cli::ops::{FilterArgs, MoveArgs, TargetArgs};

/// Doorbell: receive webhooks on AWS, verified, queued, processed exactly once.
#[derive(Debug, Parser)]
#[command(name = "doorbell", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole pipeline on bundled sample deliveries and report what happened to each.
    /// Exits non-zero if any delivery did not end as expected.
    Demo {
        /// Instead, inject each fault (SQS, DynamoDB or S3 failing, a worker killed after its
        /// claim, 50 concurrent deliveries, poison, rejected and out-of-order events) and count
        /// the events lost and side effects duplicated.
        #[arg(long)]
        faults: bool,
    },
    /// Serve the pipeline on 127.0.0.1 until stopped, logging each event's path.
    Dev(doorbell_cli::dev::DevArgs),
    /// Re-sign an ingest event (events/ingest-*.json) for its source at the current time and
    /// print it, e.g. for `sam local invoke IngestFunction -e <(doorbell sign FILE)`.
    Sign {
        /// The API Gateway or function URL event file.
        event: PathBuf,
        #[command(flatten)]
        opts: LocalOpts,
    },
    /// Run a Lambda event through the real function code in-process and print the response,
    /// as `sam local invoke` would.
    Invoke {
        /// Which function.
        function: Function,
        /// The event file (events/ingest-*.json or events/worker-*.json).
        event: PathBuf,
        #[command(flatten)]
        opts: LocalOpts,
        /// SQLite event store for `worker` (default: in memory, so every run starts empty).
        #[arg(long)]
        db: Option<PathBuf>,
    },
    /// Find events and see what happened to them (`ls`, `show`); sample Lambda events.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// The dead-letter queue: list, show, and redrive messages back to the events queue.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Send archived events through the worker again, with a replay id: by default those that
    /// did not end processed by a handler (ignored, failed, dead-lettered), so a handler added
    /// later catches up; refused conflicts only with `--status conflict`. Each replay runs
    /// once per replay id, even for a processed event.
    Replay {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        filter: FilterArgs,
        #[command(flatten)]
        moves: MoveArgs,
        /// Replay processed events too.
        #[arg(long)]
        include_processed: bool,
        /// The replay id (default: a new one). Reuse one to resume an interrupted replay
        /// without running anything twice.
        #[arg(long)]
        replay_id: Option<String>,
    },
    /// Queue depth, in flight, dead-letter depth, oldest message, and events by source and
    /// status over the last hour.
    Status {
        #[command(flatten)]
        target: TargetArgs,
        /// How far back the counts go.
        #[arg(long, default_value = "1h")]
        window: String,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// List the dead-letter queue's messages (peeked: they stay in the queue).
    Ls {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many (1–10000).
        #[arg(long, default_value_t = 1000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
        max: usize,
        /// One JSON object a line.
        #[arg(long)]
        json: bool,
    },
    /// Show one dead-letter message (by message id, event id or key): why it is there, its
    /// headers and body.
    Show {
        /// Message id, event id or idempotency key.
        id: String,
        #[command(flatten)]
        target: TargetArgs,
        /// Print the exact body bytes only.
        #[arg(long)]
        raw: bool,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Move matching messages back to the events queue: each is sent there, then deleted from
    /// the dead-letter queue, so an interruption loses nothing. Events already processed are
    /// skipped and reported.
    Redrive {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        filter: FilterArgs,
        #[command(flatten)]
        moves: MoveArgs,
        /// Redrive every message (required when no filter is given).
        #[arg(long)]
        all: bool,
        /// Delete the matching messages whose event is already processed (by a replay, or a
        /// copy that got through) instead of skipping them; each is audited `deleted`.
        #[arg(long)]
        delete_processed: bool,
        /// How long messages being looked at stay hidden from other readers, seconds.
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=43_200))]
        hold: u32,
    },
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// List events, newest first: failures and conflicts from the event store's index, the
    /// rest from the archive (default: received in the last 24 hours).
    Ls {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        filter: FilterArgs,
        /// Rows per page (1–100000).
        #[arg(long, default_value_t = 50, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
        limit: usize,
        /// Continue after the previous page (the cursor it printed).
        #[arg(long)]
        cursor: Option<String>,
        /// One JSON object a line.
        #[arg(long)]
        json: bool,
    },
    /// Everything about one event (by event id or idempotency key): status, attempts, times,
    /// last error, where its message is, headers and body.
    Show {
        /// Event id or idempotency key (`source#event_id`).
        id: String,
        #[command(flatten)]
        target: TargetArgs,
        /// Print the exact body bytes only.
        #[arg(long)]
        raw: bool,
        /// One JSON object per event.
        #[arg(long)]
        json: bool,
    },
    /// Print the dev sources document (the local `stripe` and `github` sources, dev secrets
    /// inline), for `DOORBELL_SOURCES` when running the functions locally.
    DevSources,
    /// Write the sample Lambda events and expected.json into DIR.
    Write {
        /// Target folder.
        #[arg(default_value = "events")]
        dir: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Function {
    Ingest,
    Worker,
}

#[derive(Debug, clap::Args)]
struct LocalOpts {
    /// Sources document (JSON, secrets inline); default: the dev sources `stripe` and `github`.
    #[arg(long, env = "DOORBELL_SOURCES_FILE")]
    sources: Option<PathBuf>,
    /// The time to act at, epoch seconds (default: now).
    #[arg(long)]
    now: Option<i64>,
}

impl LocalOpts {
    fn sources(&self) -> anyhow::Result<Sources> {
        let json = match &self.sources {
            Some(p) => {
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
            }
            None => doorbell_cli::samples::dev_sources_json(),
        };
        Ok(Sources::from_json(&json)?)
    }
    fn now_s(&self) -> i64 {
        self.now.unwrap_or_else(|| SystemClock.now_s())
    }
}

fn read_json(path: &PathBuf) -> anyhow::Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    match run().await {
        // The reader went away (`doorbell events show … | head`): not an error.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            Ok(std::process::ExitCode::SUCCESS)
        }
        other => other,
    }
}

async fn run() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    // The demo and the one-shot commands print results; their logs are opt-in (RUST_LOG).
    // `demo --faults` injects failures on purpose: their error logs would only be noise.
    let default_level = match cli.command {
        Command::Dev(_) => "info",
        Command::Demo { faults: true } => "off",
        _ => "error",
    };
    // Every field and message is escaped: a source name from the URL cannot forge a line.
    if matches!(&cli.command, Command::Dev(args) if args.json) {
        doorbell::logging::init_json();
    } else {
        doorbell::logging::text_subscriber(
            std::io::stderr,
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            default_level,
        )
        .init();
    }
    let exit = |ok: bool| {
        if ok {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::FAILURE
        }
    };
    // Not locked for the whole run: `dev --json` logs to stdout from other threads.
    let out = &mut std::io::stdout();
    match cli.command {
        Command::Events {
            command:
                EventsCommand::Ls {
                    target,
                    filter,
                    limit,
                    cursor,
                    json,
                },
        } => {
            doorbell_cli::ops::events_ls(&target, &filter, limit, cursor.as_deref(), json, out)
                .await?
        }
        Command::Events {
            command:
                EventsCommand::Show {
                    id,
                    target,
                    raw,
                    json,
                },
        } => doorbell_cli::ops::events_show(&target, &id, raw, json, out).await?,
        Command::Dlq {
            command:
                DlqCommand::Ls {
                    target,
                    filter,
                    max,
                    json,
                },
        } => doorbell_cli::ops::dlq_ls(&target, &filter, max, json, out).await?,
        Command::Dlq {
            command:
                DlqCommand::Show {
                    id,
                    target,
                    raw,
                    json,
                },
        } => doorbell_cli::ops::dlq_show(&target, &id, raw, json, out).await?,
        Command::Dlq {
            command:
                DlqCommand::Redrive {
                    target,
                    filter,
                    moves,
                    all,
                    delete_processed,
                    hold,
                },
        } => {
            let ok = doorbell_cli::ops::dlq_redrive(
                &target,
                &filter,
                all,
                hold,
                delete_processed,
                &moves,
                out,
            )
            .await?;
            return Ok(exit(ok));
        }
        Command::Replay {
            target,
            filter,
            moves,
            include_processed,
            replay_id,
        } => {
            let ok = doorbell_cli::ops::replay(
                &target,
                &filter,
                include_processed,
                replay_id,
                &moves,
                out,
            )
            .await?;
            return Ok(exit(ok));
        }
        Command::Status {
            target,
            window,
            json,
        } => doorbell_cli::ops::status(&target, &window, json, out).await?,
        Command::Demo { faults } => {
            let ok = if faults {
                doorbell_cli::faults::run(&mut std::io::stdout()).await?
            } else {
                doorbell_cli::demo::run(&mut std::io::stdout()).await?
            };
            return Ok(if ok {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            });
        }
        Command::Dev(args) => doorbell_cli::dev::run(args).await?,
        Command::Sign { event, opts } => {
            let mut ev = read_json(&event)?;
            doorbell_cli::invoke::sign_event(&mut ev, &opts.sources()?, opts.now_s())?;
            println!("{}", serde_json::to_string_pretty(&ev)?);
        }
        Command::Invoke {
            function,
            event,
            opts,
            db,
        } => {
            let ev = read_json(&event)?;
            let now_ms = opts.now_s() * 1000;
            let response = match function {
                Function::Ingest => {
                    let run = doorbell_cli::invoke::run_ingest(ev, opts.sources()?, now_ms).await?;
                    eprintln!("{}", run.status_line());
                    for body in &run.enqueued {
                        eprintln!("enqueued: {body}");
                    }
                    run.response
                }
                Function::Worker => {
                    let store = match &db {
                        Some(p) => doorbell::store::SqliteEventStore::open(p)?,
                        None => doorbell::store::SqliteEventStore::in_memory()?,
                    };
                    doorbell_cli::invoke::invoke_worker(
                        ev,
                        &opts.sources()?,
                        std::sync::Arc::new(store),
                        now_ms,
                    )
                    .await?
                }
            };
            println!("{}", serde_json::to_string_pretty(&response)?);
        }
        Command::Events {
            command: EventsCommand::DevSources,
        } => println!("{}", doorbell_cli::samples::dev_sources_json()),
        Command::Events {
            command: EventsCommand::Write { dir },
        } => {
            let n = doorbell_cli::events::write_all(&dir)?;
            eprintln!("wrote {n} events and expected.json to {}", dir.display());
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
