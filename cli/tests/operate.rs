//! The operations commands against the local pipeline, as an on-call engineer runs them: the
//! real `doorbell` binary (`events`, `dlq`, `replay`, `status`) over a database that the
//! pipeline (the same ingest app and worker `doorbell dev` runs, in process here so a test can
//! swap a failing handler for a fixed one) fills.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use doorbell::Sources;
use doorbell::catalog::StaticCatalog;
use doorbell::clock::{Clock, SystemClock};
use doorbell::handler::{Event, Handler, HandlerOutcome, HandlerRegistry};
use doorbell::queue::{ClaimCheckQueue, EventQueue, MemoryQueueConfig};
use doorbell::sqlite::SqliteDb;
use doorbell_cli::pipeline::Pipeline;
use doorbell_cli::samples;
use doorbell_worker::WorkerConfig;
use doorbell_worker::poller::EventSource;

/// Records every event it runs; fails with a downstream error while `failing`.
#[derive(Debug, Default)]
struct Recorder {
    failing: AtomicBool,
    runs: Mutex<Vec<(String, bool)>>,
}

impl Recorder {
    fn runs(&self) -> Vec<(String, bool)> {
        self.runs.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Handler for Recorder {
    async fn handle(&self, event: &Event<'_>) -> HandlerOutcome {
        if self.failing.load(Ordering::SeqCst) {
            return HandlerOutcome::Retry("orders database: connection refused".into());
        }
        self.runs
            .lock()
            .unwrap()
            .push((event.envelope.event_id.clone(), event.is_replay()));
        HandlerOutcome::Ok
    }
}

struct Local {
    db: PathBuf,
    _dir: tempdir::Dir,
    pipeline: Pipeline,
}

mod tempdir {
    /// A fresh folder under the target directory, removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new(name: &str) -> Self {
            let p = std::env::temp_dir().join(format!(
                "doorbell-operate-{name}-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            ));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The local pipeline on `db` with `handler` registered for `stripe` events of `types`:
/// visibility timeout 1 s, dead-lettered after 2 receives.
fn pipeline(db: &Path, handler: Arc<Recorder>, types: &[&str]) -> Pipeline {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let sqlite = SqliteDb::open(db).unwrap();
    let cfg = MemoryQueueConfig {
        visibility_timeout_ms: 1_000,
        max_receive_count: 2,
        ..Default::default()
    };
    let parts = doorbell::ops::local::parts(&sqlite, cfg, clock.clone()).unwrap();
    let mut registry = HandlerRegistry::new();
    for t in types {
        registry.register("stripe", *t, handler.clone());
    }
    let sources = Sources::from_json(&samples::dev_sources_json()).unwrap();
    let queue: Arc<dyn EventQueue> = Arc::new(ClaimCheckQueue::new(
        Arc::new(parts.queue.clone()),
        parts.payloads.clone(),
    ));
    let mut p = Pipeline::with_handlers(
        Arc::new(StaticCatalog::new(sources)),
        queue,
        parts.store.clone(),
        registry,
        clock,
        EventSource {
            arn: parts.queue.arn(),
            region: "local".into(),
            batch_size: 10,
        },
        WorkerConfig {
            lease_floor_ms: 1_000,
            lease_ceiling_ms: 1_000,
            ..WorkerConfig::default()
        },
    );
    p.batch_timeout_ms = 1_000;
    p.worker = p
        .worker
        .clone()
        .with_dead_letter_queue(Arc::new(parts.dlq.clone()))
        .with_payload_store(parts.payloads.clone())
        .with_archive(parts.archive.clone());
    p
}

impl Local {
    fn new(name: &str, handler: Arc<Recorder>, types: &[&str]) -> Self {
        let dir = tempdir::Dir::new(name);
        let db = dir.0.join("doorbell-dev.db");
        let pipeline = pipeline(&db, handler, types);
        Local {
            db,
            _dir: dir,
            pipeline,
        }
    }

    /// Swaps the handler (a fix deployed).
    fn redeploy(&mut self, handler: Arc<Recorder>, types: &[&str]) {
        self.pipeline = pipeline(&self.db, handler, types);
    }

    async fn deliver(&self, id: &str, event_type: &str) {
        let body = serde_json::json!({
            "id": id, "object": "event", "type": event_type, "created": 1_700_000_000,
            "data": {"object": {"id": format!("pi_{id}"), "amount_received": 2000}}
        })
        .to_string();
        let headers = samples::stripe_headers(
            samples::DEV_STRIPE_SECRET,
            SystemClock.now_s(),
            body.as_bytes(),
        );
        let reply = self
            .pipeline
            .post("/webhooks/stripe", &headers, body.into_bytes())
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }

    /// Runs the worker until the events queue is empty (failures retried until they are
    /// dead-lettered).
    async fn drain(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let reports = self.pipeline.poll_once().await.unwrap();
            if reports.is_empty() {
                let s = self.pipeline.queue.stats().await.unwrap();
                if s.visible + s.in_flight == 0 {
                    return;
                }
                assert!(Instant::now() < deadline, "queue did not drain: {s:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Runs `doorbell ARGS --db DB`; returns (success, stdout, stderr).
    fn doorbell(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_doorbell"))
            .args(args)
            .arg("--db")
            .arg(&self.db)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.doorbell(args);
        assert!(ok, "doorbell {args:?} failed:\n{out}\n{err}");
        out
    }

    fn json_lines(&self, args: &[&str]) -> Vec<serde_json::Value> {
        self.ok(args)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect()
    }
}

fn field<'a>(rows: &'a [serde_json::Value], name: &str) -> Vec<&'a str> {
    let mut v: Vec<&str> = rows.iter().map(|r| r[name].as_str().unwrap()).collect();
    v.sort_unstable();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn the_incident_in_the_readme_from_failure_to_processed() {
    let broken = Arc::new(Recorder::default());
    broken.failing.store(true, Ordering::SeqCst);
    let mut local = Local::new("incident", broken.clone(), &["payment_intent.succeeded"]);
    for id in ["evt_a", "evt_b", "evt_c"] {
        local.deliver(id, "payment_intent.succeeded").await;
    }
    local.deliver("evt_other", "customer.created").await;
    local.drain().await;

    // What failed? The three are dead-lettered, and `--status failed` includes them.
    let failed = local.json_lines(&["events", "ls", "--status", "failed", "--json"]);
    assert_eq!(field(&failed, "event_id"), ["evt_a", "evt_b", "evt_c"]);
    assert!(
        failed.iter().all(|r| r["status"] == "dead-lettered"),
        "{failed:?}"
    );
    let table = local.ok(&["events", "ls", "--status", "failed"]);
    assert!(table.starts_with("RECEIVED (UTC)"), "{table}");
    assert!(
        table.contains("orders database: connection refused"),
        "{table}"
    );
    assert_eq!(table.lines().count(), 4, "{table}");

    // Why? `events show` has the error, where the message is, and the body.
    let show = local.ok(&["events", "show", "evt_b"]);
    for want in [
        "event stripe#evt_b",
        "dead-lettered",
        "attempts         2",
        "orders database: connection refused",
        "now in           dead-letter queue",
        "reason max-receives",
        "\"amount_received\": 2000",
        "content-type: application/json",
    ] {
        assert!(show.contains(want), "missing {want:?} in:\n{show}");
    }
    let raw = Command::new(env!("CARGO_BIN_EXE_doorbell"))
        .args(["events", "show", "stripe#evt_b", "--raw", "--db"])
        .arg(&local.db)
        .output()
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(body["id"], "evt_b");

    let dlq = local.json_lines(&["dlq", "ls", "--json"]);
    assert_eq!(dlq.len(), 3);
    assert!(dlq.iter().all(|d| d["reason"] == "max-receives"));
    // Peeking consumed nothing.
    assert_eq!(local.json_lines(&["dlq", "ls", "--json"]).len(), 3);

    // Fix deployed; redrive the failed type.
    let fixed = Arc::new(Recorder::default());
    local.redeploy(fixed.clone(), &["payment_intent.succeeded"]);
    let audit = local.db.with_file_name("audit.jsonl");
    let out = local.ok(&[
        "dlq",
        "redrive",
        "--type",
        "payment_intent.*",
        "--audit",
        audit.to_str().unwrap(),
    ]);
    assert!(out.contains("moved") && out.contains('3'), "{out}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(
        lines
            .iter()
            .all(|l| l["action"] == "moved" && l["source"] == "stripe")
    );
    local.drain().await;

    let mut ran: Vec<String> = fixed.runs().into_iter().map(|(id, _)| id).collect();
    ran.sort();
    assert_eq!(ran, ["evt_a", "evt_b", "evt_c"]);
    assert!(local.json_lines(&["dlq", "ls", "--json"]).is_empty());
    let processed = local.json_lines(&["events", "ls", "--status", "processed", "--json"]);
    assert_eq!(field(&processed, "event_id"), ["evt_a", "evt_b", "evt_c"]);
    let ignored = local.json_lines(&["events", "ls", "--status", "ignored", "--json"]);
    assert_eq!(field(&ignored, "event_id"), ["evt_other"]);
    assert!(
        local
            .json_lines(&["events", "ls", "--status", "failed", "--json"])
            .is_empty()
    );

    let status: serde_json::Value = serde_json::from_str(&local.ok(&["status", "--json"])).unwrap();
    assert_eq!(status["counts"]["stripe"]["processed"], 3, "{status}");
    assert_eq!(status["counts"]["stripe"]["ignored"], 1, "{status}");
    assert_eq!(status["queue"]["visible"], 0);
    assert_eq!(status["dead_letter_queue"]["visible"], 0);
    let text = local.ok(&["status"]);
    assert!(
        text.contains("dead-letter") && text.contains("stripe"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_pick_by_source_type_time_and_id_and_pages_follow_the_cursor() {
    let h = Arc::new(Recorder::default());
    let local = Local::new("filters", h, &["invoice.paid"]);
    for (id, t) in [
        ("evt_1", "invoice.paid"),
        ("evt_2", "invoice.created"),
        ("evt_3", "customer.created"),
    ] {
        local.deliver(id, t).await;
    }
    local.drain().await;
    let all = local.json_lines(&["events", "ls", "--json"]);
    assert_eq!(field(&all, "event_id"), ["evt_1", "evt_2", "evt_3"]);
    let inv = local.json_lines(&["events", "ls", "--type", "invoice.*", "--json"]);
    assert_eq!(field(&inv, "event_id"), ["evt_1", "evt_2"]);
    assert!(
        local
            .json_lines(&["events", "ls", "--source", "github", "--json"])
            .is_empty()
    );
    assert!(
        local
            .json_lines(&["events", "ls", "--until", "1h", "--json"])
            .is_empty()
    );
    assert_eq!(
        local
            .json_lines(&["events", "ls", "--since", "1h", "--json"])
            .len(),
        3
    );
    let one = local.json_lines(&["events", "ls", "--id", "stripe#evt_3", "--json"]);
    assert_eq!(field(&one, "event_id"), ["evt_3"]);
    let by_status = local.json_lines(&["events", "ls", "--status", "processed,ignored", "--json"]);
    assert_eq!(by_status.len(), 3);

    // Paging: one row a page, each page's cursor leads to the next, no row twice.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..4 {
        let mut args = vec!["events", "ls", "--limit", "1", "--json"];
        if let Some(c) = &cursor {
            args.extend(["--cursor", c.as_str()]);
        }
        let (ok, out, err) = local.doorbell(&args);
        assert!(ok, "{err}");
        for l in out.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            seen.push(v["event_id"].as_str().unwrap().to_owned());
        }
        cursor = err
            .split("--cursor ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .map(str::to_owned);
        // Opaque and shell-safe: nothing from a delivery reaches the hint as text.
        assert!(
            cursor.as_deref().is_none_or(|c| c
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')),
            "{err}"
        );
        if cursor.is_none() {
            break;
        }
    }
    seen.sort();
    assert_eq!(seen, ["evt_1", "evt_2", "evt_3"]);

    for (args, want) in [
        (&["events", "ls", "--status", "done"][..], "unknown status"),
        (
            &["events", "ls", "--since", "yesterday"][..],
            "is not a time",
        ),
        (&["events", "ls", "--type", "[a"][..], "--type"),
        (&["events", "show", "evt_nope"][..], "no event"),
        (&["dlq", "redrive"][..], "--all"),
        (&["replay", "--rate", "0"][..], "not a rate"),
    ] {
        let (ok, _, err) = local.doorbell(args);
        assert!(!ok, "{args:?} should fail");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let (ok, _, err) = Local::doorbell_at(Path::new("/nonexistent/doorbell-dev.db"), &["status"]);
    assert!(!ok && err.contains("does not exist"), "{err}");
    // A file that is not dev's database is refused, and left as it was.
    let other = local.db.with_file_name("other.db");
    std::fs::write(&other, b"").unwrap();
    let (ok, _, err) = Local::doorbell_at(&other, &["events", "ls"]);
    assert!(!ok && err.contains("not a doorbell dev database"), "{err}");
    assert_eq!(std::fs::metadata(&other).unwrap().len(), 0);
}

impl Local {
    fn doorbell_at(db: &Path, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_doorbell"))
            .args(args)
            .arg("--db")
            .arg(db)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handler_added_later_catches_up_through_replay_once_per_replay_id() {
    let none = Arc::new(Recorder::default());
    let mut local = Local::new("replay", none, &[]);
    local.deliver("evt_1", "invoice.paid").await;
    local.deliver("evt_2", "invoice.paid").await;
    local.drain().await;
    let ignored = local.json_lines(&["events", "ls", "--status", "ignored", "--json"]);
    assert_eq!(ignored.len(), 2);

    let handler = Arc::new(Recorder::default());
    local.redeploy(handler.clone(), &["invoice.paid"]);

    let out = local.ok(&["replay", "--replay-id", "r1", "--dry-run"]);
    assert!(
        out.contains("would-replay") && out.contains("dry run"),
        "{out}"
    );
    let status: serde_json::Value = serde_json::from_str(&local.ok(&["status", "--json"])).unwrap();
    assert_eq!(status["queue"]["visible"], 0, "a dry run sends nothing");

    local.ok(&["replay", "--replay-id", "r1"]);
    local.drain().await;
    let runs = handler.runs();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(
        runs.iter().all(|(_, replay)| *replay),
        "handlers see a replay"
    );
    let processed = local.json_lines(&["events", "ls", "--status", "processed", "--json"]);
    assert_eq!(field(&processed, "event_id"), ["evt_1", "evt_2"]);

    // The same replay delivered again runs nothing.
    local.ok(&["replay", "--replay-id", "r1", "--include-processed"]);
    local.drain().await;
    assert_eq!(handler.runs().len(), 2);
    // By default only what did not end processed: now nothing.
    let out = local.ok(&["replay"]);
    assert!(out.contains("nothing matched"), "{out}");
    // A new replay of processed events runs them again, once.
    local.ok(&[
        "replay",
        "--include-processed",
        "--id",
        "evt_1",
        "--replay-id",
        "r2",
    ]);
    local.drain().await;
    let again: Vec<_> = handler.runs().into_iter().map(|(id, _)| id).collect();
    assert_eq!(again.len(), 3, "{again:?}");
    assert_eq!(again.iter().filter(|i| *i == "evt_1").count(), 2);
    assert_eq!(again.iter().filter(|i| *i == "evt_2").count(), 1);
    // Replays are not listed as events of their own.
    assert_eq!(local.json_lines(&["events", "ls", "--json"]).len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_moves_nothing_and_processed_events_are_skipped_and_reported() {
    let broken = Arc::new(Recorder::default());
    broken.failing.store(true, Ordering::SeqCst);
    let mut local = Local::new("skip", broken, &["invoice.paid"]);
    for id in ["evt_1", "evt_2", "evt_3"] {
        local.deliver(id, "invoice.paid").await;
    }
    local.drain().await;
    let fixed = Arc::new(Recorder::default());
    local.redeploy(fixed.clone(), &["invoice.paid"]);
    // evt_1 is run by a replay: processed, while its old message stays dead-lettered.
    local.ok(&["replay", "--id", "evt_1"]);
    local.drain().await;
    assert_eq!(fixed.runs().len(), 1);
    let dlq = local.json_lines(&["dlq", "ls", "--json"]);
    assert_eq!(dlq.len(), 3);
    let shown = local.ok(&["dlq", "show", "evt_1"]);
    assert!(shown.contains("event status     processed"), "{shown}");

    let audit = local.db.with_file_name("dry.jsonl");
    let out = local.ok(&[
        "dlq",
        "redrive",
        "--all",
        "--dry-run",
        "--audit",
        audit.to_str().unwrap(),
    ]);
    assert!(
        out.contains("would-move") && out.contains("skipped"),
        "{out}"
    );
    assert_eq!(
        local.json_lines(&["dlq", "ls", "--json"]).len(),
        3,
        "a dry run moves nothing"
    );
    let text = std::fs::read_to_string(&audit).unwrap();
    assert_eq!(text.lines().count(), 3);
    assert!(
        text.contains("\"would-move\"") && text.contains("already processed"),
        "{text}"
    );

    // --status filters dead letters by their event's status; --id takes a message id too.
    let processed = local.json_lines(&["dlq", "ls", "--status", "processed", "--json"]);
    assert_eq!(processed.len(), 1);
    assert_eq!(processed[0]["envelope"]["event_id"], "evt_1");
    let failed = local.json_lines(&["dlq", "ls", "--status", "failed", "--json"]);
    assert_eq!(failed.len(), 2);
    let by_message = local.json_lines(&[
        "dlq",
        "ls",
        "--id",
        processed[0]["message_id"].as_str().unwrap(),
        "--json",
    ]);
    assert_eq!(by_message.len(), 1);
    let out = local.ok(&["dlq", "redrive", "--status", "processed", "--dry-run"]);
    assert!(
        out.contains("skipped") && !out.contains("would-move"),
        "{out}"
    );

    let out = local.ok(&["dlq", "redrive", "--all", "--max", "1"]);
    assert!(out.contains("moved"), "{out}");
    assert_eq!(local.json_lines(&["dlq", "ls", "--json"]).len(), 2);
    local.ok(&["dlq", "redrive", "--all"]);
    let left = local.json_lines(&["dlq", "ls", "--json"]);
    assert_eq!(left.len(), 1, "the processed one stays, skipped");
    assert_eq!(left[0]["envelope"]["event_id"], "evt_1");
    // ... until it is cleared.
    let out = local.ok(&["dlq", "redrive", "--all", "--delete-processed"]);
    assert!(out.contains("deleted"), "{out}");
    assert!(local.json_lines(&["dlq", "ls", "--json"]).is_empty());
    local.drain().await;
    let mut ran: Vec<String> = fixed.runs().into_iter().map(|(id, _)| id).collect();
    ran.sort();
    assert_eq!(ran, ["evt_1", "evt_2", "evt_3"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_redrive_loses_nothing_and_runs_nothing_twice() {
    const N: usize = 20;
    let broken = Arc::new(Recorder::default());
    broken.failing.store(true, Ordering::SeqCst);
    let mut local = Local::new("interrupted", broken, &["invoice.paid"]);
    for i in 0..N {
        local.deliver(&format!("evt_{i:02}"), "invoice.paid").await;
    }
    local.drain().await;
    assert_eq!(local.json_lines(&["dlq", "ls", "--json"]).len(), N);

    let audit = local.db.with_file_name("audit.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_doorbell"))
        .args([
            "dlq", "redrive", "--all", "--rate", "20", "--hold", "2", "--audit",
        ])
        .arg(&audit)
        .arg("--db")
        .arg(&local.db)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&audit).map_or(0, |t| t.lines().count()) < 5 {
        assert!(Instant::now() < deadline, "redrive made no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let moved = std::fs::read_to_string(&audit).unwrap().lines().count();
    assert!(moved < N, "killed half way, not after the end ({moved})");

    // Nothing lost: every event is in one queue or the other.
    let sqlite = SqliteDb::open(&local.db).unwrap();
    let parts =
        doorbell::ops::local::parts(&sqlite, MemoryQueueConfig::default(), Arc::new(SystemClock))
            .unwrap();
    let mut ids: Vec<String> = Vec::new();
    for q in [&parts.queue, &parts.dlq] {
        for b in q.peek_bodies().await.unwrap() {
            ids.push(doorbell::Envelope::parse(&b).unwrap().event_id);
        }
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), N, "{ids:?}");

    // After the hold ends, the rest is redriven; the fixed worker runs each event once.
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let fixed = Arc::new(Recorder::default());
    local.redeploy(fixed.clone(), &["invoice.paid"]);
    local.ok(&["dlq", "redrive", "--all"]);
    assert!(local.json_lines(&["dlq", "ls", "--json"]).is_empty());
    local.drain().await;
    let mut ran: Vec<String> = fixed.runs().into_iter().map(|(id, _)| id).collect();
    ran.sort();
    let want: Vec<String> = (0..N).map(|i| format!("evt_{i:02}")).collect();
    assert_eq!(ran, want);
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_stops_a_redrive_and_makes_what_it_held_visible_again() {
    const N: usize = 12;
    let broken = Arc::new(Recorder::default());
    broken.failing.store(true, Ordering::SeqCst);
    let local = Local::new("sigint", broken, &["invoice.paid"]);
    for i in 0..N {
        local.deliver(&format!("evt_{i:02}"), "invoice.paid").await;
    }
    local.drain().await;
    let audit = local.db.with_file_name("audit.jsonl");
    let child = Command::new(env!("CARGO_BIN_EXE_doorbell"))
        .args(["dlq", "redrive", "--all", "--rate", "4", "--audit"])
        .arg(&audit)
        .arg("--db")
        .arg(&local.db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&audit).map_or(0, |t| t.lines().count()) < 2 {
        assert!(Instant::now() < deadline, "redrive made no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "stopped is not a success");
    assert!(stdout.contains("stopped before the end"), "{stdout}");
    let moved = std::fs::read_to_string(&audit).unwrap().lines().count();
    assert!(moved < N, "{moved}");
    // Nothing is left hidden: the rest is visible in the dead-letter queue at once.
    let status: serde_json::Value = serde_json::from_str(&local.ok(&["status", "--json"])).unwrap();
    assert_eq!(status["dead_letter_queue"]["in_flight"], 0, "{status}");
    assert_eq!(
        status["dead_letter_queue"]["visible"],
        (N - moved) as u64,
        "{status}"
    );
}
