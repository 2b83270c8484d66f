//! `doorbell`: run the webhook pipeline locally. Wiring only; see the library.

use clap::{Parser, Subcommand};

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
    Demo,
    /// Serve the pipeline on 127.0.0.1 until stopped, logging each event's path.
    Dev(doorbell_cli::dev::DevArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    // The demo prints a report; its per-record logs are opt-in (RUST_LOG=info).
    let default_level = if matches!(cli.command, Command::Demo) {
        "error"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_level.into()),
        )
        .init();
    match cli.command {
        Command::Demo => {
            let ok = doorbell_cli::demo::run(&mut std::io::stdout()).await?;
            Ok(if ok {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            })
        }
        Command::Dev(args) => {
            doorbell_cli::dev::run(args).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}
