//! `doorbell events ls|show`, `dlq ls|show|redrive`, `replay`, `status`: thin views over
//! [`doorbell::ops::Ops`]. This module parses flags, picks the target (the local database or
//! the deployed stack) and prints; the work is the library's.
//!
//! Output: a table by default, `--json` for one JSON object a line (stable field names:
//! those of [`doorbell::ops::EventRow`], [`doorbell::ops::DeadLetter`],
//! [`doorbell::ops::EventDetail`], [`doorbell::ops::StatusReport`]). Text from deliveries
//! (types, ids, errors) is printed with control characters escaped, so a crafted event cannot
//! drive the terminal.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use doorbell::clock::{Clock, SystemClock};
use doorbell::envelope::Envelope;
use doorbell::ops::{
    AuditLine, AuditSink, DeadLetter, EventDetail, EventFilter, EventStatus, MoveOptions, Ops,
    OpsError, StatusReport, Summary,
};

/// Where a command acts: the local pipeline's database, or a deployed stack's AWS resources.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TargetArgs {
    /// The local pipeline: the database `doorbell dev --db` writes [default: doorbell-dev.db].
    #[arg(long, conflicts_with_all = ["stack", "queue_url", "table"])]
    pub db: Option<PathBuf>,
    /// The deployed stack: its outputs name the queues, table and buckets (CloudFormation
    /// `DescribeStacks`). The usual AWS settings apply (AWS_PROFILE, AWS_REGION,
    /// AWS_ENDPOINT_URL).
    #[arg(long, env = "DOORBELL_STACK")]
    pub stack: Option<String>,
    /// The events queue URL (instead of, or over, the stack's output).
    #[arg(long)]
    pub queue_url: Option<String>,
    /// The dead-letter queue URL.
    #[arg(long)]
    pub dlq_url: Option<String>,
    /// The events table.
    #[arg(long)]
    pub table: Option<String>,
    /// The claim-check bucket (envelopes over the queue's limit).
    #[arg(long)]
    pub payload_bucket: Option<String>,
    /// The archive bucket.
    #[arg(long)]
    pub archive_bucket: Option<String>,
    /// The archive's key prefix in its bucket [default: the stack's, else archive/].
    #[arg(long)]
    pub archive_prefix: Option<String>,
}

impl TargetArgs {
    fn is_aws(&self) -> bool {
        self.stack.is_some()
            || self.queue_url.is_some()
            || self.dlq_url.is_some()
            || self.table.is_some()
    }

    /// Opens the operations layer on the target.
    ///
    /// # Errors
    /// A missing database, stack or setting, said plainly.
    pub async fn open(&self, clock: Arc<dyn Clock>) -> anyhow::Result<Ops> {
        if self.is_aws() {
            let aws = aws_config::load_from_env().await;
            let target = doorbell::ops::aws::AwsTarget {
                stack: self.stack.clone(),
                queue_url: self.queue_url.clone(),
                dlq_url: self.dlq_url.clone(),
                table: self.table.clone(),
                payload_bucket: self.payload_bucket.clone(),
                archive_bucket: self.archive_bucket.clone(),
                archive_prefix: self.archive_prefix.clone(),
            };
            return Ok(doorbell::ops::aws::open(&target, &aws, clock).await?);
        }
        let path = self
            .db
            .clone()
            .unwrap_or_else(|| PathBuf::from("doorbell-dev.db"));
        Ok(doorbell::ops::local::open(&path, clock)?)
    }
}

/// Which events: the filters every listing, redrive and replay takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FilterArgs {
    /// Only these statuses (repeat or comma-separate): processed, ignored, failed,
    /// in-progress, conflict, dead-lettered, received.
    #[arg(long, value_delimiter = ',')]
    pub status: Vec<String>,
    /// Only this source.
    #[arg(long)]
    pub source: Option<String>,
    /// Only event types matching this glob, e.g. 'invoice.*'.
    #[arg(long = "type")]
    pub event_type: Option<String>,
    /// Received at or after: RFC 3339 (2026-12-03T08:00:00Z) or a time ago (15m, 1h, 2d).
    /// Default for history from the archive: 24h.
    #[arg(long)]
    pub since: Option<String>,
    /// Received before: RFC 3339 or a time ago.
    #[arg(long)]
    pub until: Option<String>,
    /// Only this event id or idempotency key (repeat for several).
    #[arg(long = "id")]
    pub ids: Vec<String>,
}

impl FilterArgs {
    fn is_empty(&self) -> bool {
        self.status.is_empty()
            && self.source.is_none()
            && self.event_type.is_none()
            && self.since.is_none()
            && self.until.is_none()
            && self.ids.is_empty()
    }

    /// The library's filter.
    ///
    /// # Errors
    /// A bad status, glob or time, with what is accepted.
    pub fn to_filter(&self, now_ms: i64) -> Result<EventFilter, OpsError> {
        let mut f = EventFilter {
            statuses: self
                .status
                .iter()
                .filter(|s| !s.trim().is_empty())
                .map(|s| EventStatus::parse(s))
                .collect::<Result<_, _>>()?,
            source: self.source.clone(),
            event_type: None,
            since_ms: self
                .since
                .as_deref()
                .map(|t| doorbell::ops::parse_time(t, now_ms))
                .transpose()?,
            until_ms: self
                .until
                .as_deref()
                .map(|t| doorbell::ops::parse_time(t, now_ms))
                .transpose()?,
            ids: self.ids.clone(),
        };
        if let Some(t) = &self.event_type {
            f = f.with_type_glob(t)?;
        }
        Ok(f)
    }
}

/// How redrive and replay pace themselves.
#[derive(Debug, Clone, clap::Args)]
pub struct MoveArgs {
    /// Show what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// At most this many messages a second.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// At most this many messages in all (1 or more).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max: Option<u64>,
    /// Append one JSON line per message or event acted on (moved, replayed, skipped, deleted,
    /// failed) to this file.
    #[arg(long)]
    pub audit: Option<PathBuf>,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && (0.001..=100_000.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "{s:?} is not a rate: give messages per second, from 0.001 to 100000 (e.g. 10 or 0.5)"
        )),
    }
}

/// Escapes control characters so delivery text cannot drive the terminal.
fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let _ = doorbell::logging::escape(text, &mut out);
    out
}

fn shorten(text: &str, max: usize) -> String {
    let t = clean(text);
    if t.chars().count() <= max {
        t
    } else {
        let mut s: String = t.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// Prints rows as an aligned table with a header.
fn table(out: &mut impl Write, header: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(c);
                l.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        l.trim_end().to_owned()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for r in rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

fn second(rfc3339: &str) -> String {
    // 2026-12-03T08:00:00.123Z → 2026-12-03 08:00:00
    rfc3339.get(..19).unwrap_or(rfc3339).replace('T', " ")
}

/// `doorbell events ls`.
///
/// # Errors
/// The target's or a filter's error.
pub async fn events_ls(
    target: &TargetArgs,
    filter: &FilterArgs,
    limit: usize,
    cursor: Option<&str>,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ops = target.open(clock.clone()).await?;
    let page = ops
        .list(&filter.to_filter(clock.now_ms())?, limit.max(1), cursor)
        .await?;
    if json {
        for r in &page.rows {
            writeln!(out, "{}", serde_json::to_string(r)?)?;
        }
    } else if page.rows.is_empty() {
        writeln!(out, "no events match")?;
    } else {
        let rows: Vec<Vec<String>> = page
            .rows
            .iter()
            .map(|r| {
                vec![
                    second(&r.received_at),
                    r.status.to_string(),
                    shorten(&r.source, 20),
                    shorten(&r.event_type, 40),
                    shorten(&r.event_id, 40),
                    r.attempts.to_string(),
                    shorten(r.last_error.as_deref().unwrap_or(""), 60),
                ]
            })
            .collect();
        table(
            out,
            &[
                "RECEIVED (UTC)",
                "STATUS",
                "SOURCE",
                "TYPE",
                "EVENT ID",
                "ATTEMPTS",
                "LAST ERROR",
            ],
            &rows,
        )?;
    }
    if page.truncated {
        eprintln!(
            "note: the window holds more than {} archived deliveries; the oldest were not read (narrow --since/--until)",
            doorbell::ops::MAX_ARCHIVE_SCAN
        );
    }
    if let Some(c) = &page.next_cursor {
        eprintln!("more: add --cursor {c} for the next page");
    }
    Ok(())
}

fn write_body(out: &mut impl Write, e: &Envelope) -> anyhow::Result<()> {
    let bytes = e.body_bytes()?;
    let pretty = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok());
    match (pretty, std::str::from_utf8(&bytes)) {
        (Some(p), _) => {
            for l in p.lines() {
                writeln!(out, "    {}", clean(l))?;
            }
        }
        (None, Ok(text)) => {
            for l in text.lines() {
                writeln!(out, "    {}", clean(l))?;
            }
        }
        (None, Err(_)) => writeln!(
            out,
            "    ({} bytes, not UTF-8: use --raw for the exact bytes)",
            bytes.len()
        )?,
    }
    Ok(())
}

fn write_delivery(out: &mut impl Write, title: &str, e: &Envelope) -> anyhow::Result<()> {
    writeln!(
        out,
        "{title}: received {}, type {}, body sha256 {}",
        e.received_at,
        clean(&e.event_type),
        e.body_sha256
    )?;
    if let Some(ct) = &e.content_type {
        writeln!(out, "  content-type: {}", clean(ct))?;
    }
    if !e.headers.is_empty() {
        writeln!(out, "  headers:")?;
        for (k, v) in &e.headers {
            writeln!(out, "    {}: {}", clean(k), clean(v))?;
        }
    }
    writeln!(out, "  body:")?;
    write_body(out, e)
}

fn write_detail(out: &mut impl Write, d: &EventDetail) -> anyhow::Result<()> {
    let dash = || "-".to_owned();
    writeln!(out, "event {}", clean(&d.key))?;
    let mut kv: Vec<(&str, String)> = Vec::new();
    match &d.record {
        Some(r) => {
            kv.push(("status", r.status.to_string()));
            kv.push(("source", format!("{} ({})", clean(&r.source), r.provider)));
            kv.push(("event id", clean(&r.event_id)));
            kv.push(("type", clean(&r.event_type)));
            kv.push(("attempts", r.attempts.to_string()));
            kv.push(("received", r.received_at.clone()));
            kv.push(("processed", r.processed_at.clone().unwrap_or_else(dash)));
            kv.push((
                "lease until",
                r.lease_expires_at.clone().unwrap_or_else(dash),
            ));
            kv.push(("updated", r.updated_at.clone().unwrap_or_else(dash)));
            kv.push((
                "outcome",
                match r.outcome.as_deref() {
                    Some("handled") => "handled (its handler ran and succeeded)".to_owned(),
                    Some("ignored") => {
                        "ignored (no handler was registered for its type; `doorbell replay` runs it once one is)".to_owned()
                    }
                    Some(o) => clean(o),
                    None => dash(),
                },
            ));
            kv.push(("last error", clean(r.last_error.as_deref().unwrap_or("-"))));
            if r.conflicts > 0 {
                kv.push((
                    "conflicts",
                    format!(
                        "{} refused (last {})",
                        r.conflicts,
                        r.last_conflict_at.clone().unwrap_or_else(dash)
                    ),
                ));
            }
            kv.push((
                "remembered until",
                r.expires_at.clone().unwrap_or_else(dash),
            ));
        }
        None => kv.push((
            "status",
            "no record (not yet claimed, or its dedupe window ended)".into(),
        )),
    }
    kv.push(("now in", d.location.clone()));
    for (k, v) in kv {
        writeln!(out, "  {k:<17}{v}")?;
    }
    for m in &d.dead_letters {
        writeln!(
            out,
            "  dead letter      message {}, reason {}{}, sent {}, received {} times",
            m.message_id,
            m.reason,
            m.detail
                .as_deref()
                .map(|x| format!(" ({})", clean(x)))
                .unwrap_or_default(),
            m.sent_at,
            m.receive_count
        )?;
    }
    if let Some(e) = &d.archive_error {
        writeln!(out, "  (archive not read: {})", clean(e))?;
    } else if d.deliveries.is_empty() {
        writeln!(
            out,
            "  (no archived delivery: older than the archive's retention, or not yet archived)"
        )?;
    }
    let n = d.deliveries.len();
    for (i, e) in d.deliveries.iter().enumerate() {
        write_delivery(out, &format!("delivery {} of {n}", i + 1), e)?;
    }
    Ok(())
}

/// `doorbell events show`.
///
/// # Errors
/// The target's error, or nothing known under `id`.
pub async fn events_show(
    target: &TargetArgs,
    id: &str,
    raw: bool,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let ops = target.open(Arc::new(SystemClock)).await?;
    let details = ops.show(id).await?;
    if raw {
        // The delivery the event was processed from (the record's body), else the newest.
        let Some(e) = details
            .iter()
            .flat_map(|d| {
                let stored = d.record.as_ref().map(|r| r.body_sha256.as_str());
                d.deliveries
                    .iter()
                    .find(|e| Some(e.body_sha256.as_str()) == stored)
                    .or(d.deliveries.first())
            })
            .next()
        else {
            bail!("{id}: no archived delivery to print");
        };
        if details.len() > 1 {
            bail!(
                "{id} names {} events ({}): pass one key",
                details.len(),
                details
                    .iter()
                    .map(|d| d.key.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        out.write_all(&e.body_bytes()?)?;
        return Ok(());
    }
    for d in &details {
        if json {
            writeln!(out, "{}", serde_json::to_string(d)?)?;
        } else {
            write_detail(out, d)?;
        }
    }
    Ok(())
}

fn dead_letter_row(d: &DeadLetter) -> Vec<String> {
    let (source, ty, id) = d.envelope.as_ref().map_or_else(
        || ("?".to_owned(), "?".to_owned(), "?".to_owned()),
        |e| {
            (
                shorten(&e.source, 20),
                shorten(&e.event_type, 40),
                shorten(&e.event_id, 40),
            )
        },
    );
    vec![
        d.message_id.clone(),
        second(&d.sent_at),
        d.reason.clone(),
        d.receive_count.to_string(),
        source,
        ty,
        id,
        d.status.map_or_else(|| "-".into(), |s| s.to_string()),
        shorten(
            d.detail
                .as_deref()
                .or(d.unreadable.as_deref())
                .unwrap_or(""),
            50,
        ),
    ]
}

/// `doorbell dlq ls`.
///
/// # Errors
/// The target's or a filter's error.
pub async fn dlq_ls(
    target: &TargetArgs,
    filter: &FilterArgs,
    max: usize,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ops = target.open(clock.clone()).await?;
    let list = ops
        .dead_letters_matching(&filter.to_filter(clock.now_ms())?, max)
        .await?;
    if json {
        for d in &list {
            writeln!(out, "{}", serde_json::to_string(d)?)?;
        }
        return Ok(());
    }
    if list.len() >= max {
        eprintln!("note: showing the first {max} matching messages (--max for more)");
    }
    if list.is_empty() {
        writeln!(out, "the dead-letter queue has no matching messages")?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = list.iter().map(dead_letter_row).collect();
    table(
        out,
        &[
            "MESSAGE ID",
            "SENT (UTC)",
            "REASON",
            "RECEIVES",
            "SOURCE",
            "TYPE",
            "EVENT ID",
            "EVENT STATUS",
            "DETAIL",
        ],
        &rows,
    )?;
    Ok(())
}

/// `doorbell dlq show`: one dead-letter message by message id, event id or key.
///
/// # Errors
/// The target's error, or no such message.
pub async fn dlq_show(
    target: &TargetArgs,
    id: &str,
    raw: bool,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let ops = target.open(Arc::new(SystemClock)).await?;
    let all = ops.dead_letters(doorbell::ops::MAX_DEAD_LETTERS).await?;
    let found: Vec<&DeadLetter> = all
        .iter()
        .filter(|d| {
            d.message_id == id
                || d.envelope
                    .as_ref()
                    .is_some_and(|e| e.event_id == id || e.idempotency_key == id)
        })
        .collect();
    if found.is_empty() {
        bail!(
            "no message {id:?} in the dead-letter queue (pass a message id, event id or key; `doorbell dlq ls` lists them)"
        );
    }
    for d in found {
        if json {
            writeln!(out, "{}", serde_json::to_string(d)?)?;
            continue;
        }
        if raw {
            match &d.envelope {
                Some(e) => out.write_all(&e.body_bytes()?)?,
                None => bail!("message {} is not an envelope", d.message_id),
            }
            continue;
        }
        writeln!(out, "message {}", d.message_id)?;
        writeln!(out, "  sent             {}", d.sent_at)?;
        writeln!(out, "  receives         {}", d.receive_count)?;
        writeln!(out, "  reason           {}", d.reason)?;
        if let Some(x) = &d.detail {
            writeln!(out, "  detail           {}", clean(x))?;
        }
        if let Some(x) = &d.unreadable {
            writeln!(out, "  not an envelope  {}", clean(x))?;
        }
        if let Some(s) = d.status {
            writeln!(out, "  event status     {s}")?;
        }
        if let Some(e) = &d.envelope {
            writeln!(out, "  key              {}", clean(&e.idempotency_key))?;
            write_delivery(out, "envelope", e)?;
        }
    }
    Ok(())
}

/// Writes audit lines to a file (flushed line by line, so an interrupted run leaves whole
/// lines), ticks a progress bar on a terminal, and prints skips and failures.
struct CliAudit {
    file: Option<std::io::BufWriter<std::fs::File>>,
    bar: indicatif::ProgressBar,
    done: Summary,
}

impl CliAudit {
    fn new(path: Option<&PathBuf>, total: Option<u64>) -> anyhow::Result<Self> {
        let file = path
            .map(|p| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("opening the audit file {}", p.display()))
            })
            .transpose()?
            .map(std::io::BufWriter::new);
        let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            let b = total.map_or_else(
                indicatif::ProgressBar::new_spinner,
                indicatif::ProgressBar::new,
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
            ) {
                b.set_style(style);
            }
            b
        } else {
            indicatif::ProgressBar::hidden()
        };
        Ok(Self {
            file,
            bar,
            done: Summary::new(),
        })
    }
}

impl AuditSink for CliAudit {
    fn record(&mut self, line: &AuditLine) -> Result<(), OpsError> {
        if let Some(f) = &mut self.file {
            let json = serde_json::to_string(line).map_err(|e| OpsError::Audit(e.to_string()))?;
            writeln!(f, "{json}")
                .and_then(|()| f.flush())
                .map_err(|e| OpsError::Audit(e.to_string()))?;
        }
        self.bar.inc(1);
        *self.done.entry(line.action).or_default() += 1;
        let what = line
            .key
            .as_deref()
            .or(line.message_id.as_deref())
            .unwrap_or("?");
        if matches!(line.action, "skipped" | "failed") {
            self.bar.suspend(|| {
                eprintln!(
                    "{} {}: {}",
                    line.action,
                    clean(what),
                    clean(line.reason.as_deref().unwrap_or(""))
                );
            });
        } else {
            self.bar.set_message(clean(what));
        }
        Ok(())
    }
}

fn print_summary(out: &mut impl Write, summary: &Summary, dry_run: bool) -> anyhow::Result<()> {
    let notes = [
        "held-elsewhere",
        "stopped",
        "conflicts-not-replayed",
        "not-read (window over the scan limit)",
    ];
    let rows: Vec<Vec<String>> = summary
        .iter()
        .filter(|(k, _)| !notes.contains(k))
        .map(|(k, v)| vec![(*k).to_owned(), v.to_string()])
        .collect();
    if rows.is_empty() {
        writeln!(out, "nothing matched")?;
    } else {
        table(out, &["RESULT", "MESSAGES"], &rows)?;
    }
    if dry_run {
        writeln!(out, "dry run: nothing was changed")?;
    }
    if summary.contains_key("stopped") {
        writeln!(
            out,
            "stopped before the end: what was not moved is visible again; run the same command to go on"
        )?;
    }
    if let Some(n) = summary.get("held-elsewhere") {
        writeln!(
            out,
            "{n} dead-letter messages were held by another reader (a peek or another redrive) and not looked at: run again once they are visible"
        )?;
    }
    if let Some(n) = summary.get("conflicts-not-replayed") {
        writeln!(
            out,
            "{n} refused conflicting deliveries were not replayed: look at them with `doorbell events ls --status conflict`; `--status conflict` replays them"
        )?;
    }
    if summary.contains_key("not-read (window over the scan limit)") {
        writeln!(
            out,
            "the window holds more than {} archived deliveries; the oldest were not read (narrow --since/--until)",
            doorbell::ops::MAX_ARCHIVE_SCAN
        )?;
    }
    Ok(())
}

/// A flag set on Ctrl-C (SIGINT) or SIGTERM, so a redrive or replay stops after the message
/// at hand and releases what it holds.
fn stop_on_signal() -> Arc<std::sync::atomic::AtomicBool> {
    let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f = flag.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            if let Ok(mut term) = signal(SignalKind::terminate()) {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            } else {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        f.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    flag
}

/// Says what was already done when a redrive or replay fails half way.
fn report_partial(done: &Summary) {
    if !done.is_empty() {
        let parts: Vec<String> = done.iter().map(|(k, v)| format!("{k} {v}")).collect();
        eprintln!("before the error: {}", parts.join(", "));
    }
}

/// `doorbell dlq redrive`. Returns false when a message failed to move.
///
/// # Errors
/// The target's, a filter's or the audit file's error.
pub async fn dlq_redrive(
    target: &TargetArgs,
    filter: &FilterArgs,
    all: bool,
    hold_s: u32,
    delete_processed: bool,
    moves: &MoveArgs,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    if filter.is_empty() && !all {
        bail!(
            "say which messages to redrive: --type, --source, --id, --since, --until, --status, or --all for every message"
        );
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ops = target.open(clock.clone()).await?;
    let f = filter.to_filter(clock.now_ms())?;
    let total = ops.dlq.stats().await.ok().map(|s| s.visible);
    let mut audit = CliAudit::new(moves.audit.as_ref(), total)?;
    let opts = MoveOptions {
        dry_run: moves.dry_run,
        rate_per_s: moves.rate,
        max: moves.max,
        hold_s,
        delete_processed,
        stop: Some(stop_on_signal()),
    };
    let summary = ops.redrive(&f, &opts, &mut audit).await;
    audit.bar.finish_and_clear();
    let summary = summary.inspect_err(|_| report_partial(&audit.done))?;
    print_summary(out, &summary, moves.dry_run)?;
    Ok(!["failed", "stopped", "held-elsewhere"]
        .iter()
        .any(|k| summary.contains_key(k)))
}

/// `doorbell replay`. Returns false when an event failed to send.
///
/// # Errors
/// The target's, a filter's or the audit file's error.
pub async fn replay(
    target: &TargetArgs,
    filter: &FilterArgs,
    include_processed: bool,
    replay_id: Option<String>,
    moves: &MoveArgs,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ops = target.open(clock.clone()).await?;
    let f = filter.to_filter(clock.now_ms())?;
    let replay_id = replay_id.unwrap_or_else(|| doorbell::ops::new_replay_id(clock.now_ms()));
    let mut audit = CliAudit::new(moves.audit.as_ref(), None)?;
    let opts = MoveOptions {
        dry_run: moves.dry_run,
        rate_per_s: moves.rate,
        max: moves.max,
        stop: Some(stop_on_signal()),
        ..MoveOptions::default()
    };
    let summary = ops
        .replay(&f, include_processed, &replay_id, &opts, &mut audit)
        .await;
    audit.bar.finish_and_clear();
    let summary = summary.inspect_err(|_| report_partial(&audit.done))?;
    writeln!(out, "replay id {replay_id}")?;
    print_summary(out, &summary, moves.dry_run)?;
    Ok(!["failed", "stopped"]
        .iter()
        .any(|k| summary.contains_key(k)))
}

fn write_status(out: &mut impl Write, r: &StatusReport) -> anyhow::Result<()> {
    let age = |a: Option<i64>, s: &doorbell::queue::QueueStats| match a {
        Some(secs) => format!("{secs} s"),
        None if s.visible + s.in_flight == 0 => "-".to_owned(),
        None => "unknown".to_owned(),
    };
    writeln!(out, "at {}", r.at)?;
    table(
        out,
        &["QUEUE", "WAITING", "IN FLIGHT", "OLDEST"],
        &[
            vec![
                "events".into(),
                r.queue.stats.visible.to_string(),
                r.queue.stats.in_flight.to_string(),
                age(r.queue.oldest_age_s, &r.queue.stats),
            ],
            vec![
                "dead-letter".into(),
                r.dead_letter_queue.stats.visible.to_string(),
                r.dead_letter_queue.stats.in_flight.to_string(),
                age(r.dead_letter_queue.oldest_age_s, &r.dead_letter_queue.stats),
            ],
        ],
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "events received since {} ({}):",
        r.since, r.counts_from
    )?;
    if r.counts.is_empty() {
        writeln!(out, "  none")?;
        return Ok(());
    }
    let statuses = [
        EventStatus::Processed,
        EventStatus::Ignored,
        EventStatus::Failed,
        EventStatus::InProgress,
        EventStatus::Conflict,
        EventStatus::DeadLettered,
    ];
    let mut header = vec!["SOURCE"];
    header.extend(statuses.iter().map(|s| s.as_str()));
    let rows: Vec<Vec<String>> = r
        .counts
        .iter()
        .map(|(source, by)| {
            let mut row = vec![clean(source)];
            row.extend(
                statuses
                    .iter()
                    .map(|s| by.get(s).copied().unwrap_or(0).to_string()),
            );
            row
        })
        .collect();
    table(out, &header, &rows)?;
    Ok(())
}

/// `doorbell status`.
///
/// # Errors
/// The target's error.
pub async fn status(
    target: &TargetArgs,
    window: &str,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let window_ms = humantime::parse_duration(window)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .map_err(|_| anyhow::anyhow!("--window {window:?}: give a duration such as 15m, 1h, 1d"))?;
    let ops = target.open(Arc::new(SystemClock)).await?;
    let report = ops.status(window_ms).await?;
    if json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        write_status(out, &report)?;
    }
    Ok(())
}
