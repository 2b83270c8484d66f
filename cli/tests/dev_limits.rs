//! `doorbell dev` bounds what a client can hold: slow headers and slow bodies are cut off after
//! their timeouts, connections beyond the cap wait instead of piling up, and a large body is
//! claim-checked into the database and freed once its event is done.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;

use common::Dev;
use doorbell_cli::samples;

/// `doorbell dev` on a database of its own, removed afterwards.
struct Local {
    dev: Dev,
    dir: PathBuf,
}

impl Local {
    fn start(name: &str, extra: &[&str]) -> Local {
        let dir =
            std::env::temp_dir().join(format!("doorbell-limits-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let dev = Dev::start(&dir.join("dev.db"), None, extra);
        Local { dev, dir }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.dev.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }

    fn db(&self) -> PathBuf {
        self.dir.join("dev.db")
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = self.dev.child.kill();
        let _ = self.dev.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reads until the server closes the connection; returns what it sent.
fn read_to_close(mut s: TcpStream) -> String {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A signed Stripe delivery as raw HTTP/1.1 (`Connection: close`).
fn signed_request(body: &str) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut req = format!(
        "POST /webhooks/stripe HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in samples::stripe_headers(samples::DEV_STRIPE_SECRET, now, body.as_bytes()) {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

fn send(dev: &Local, body: &str) -> String {
    let mut s = dev.connect();
    s.write_all(&signed_request(body)).unwrap();
    read_to_close(s)
}

fn event(id: &str, padding: usize) -> String {
    let mut doc: serde_json::Value =
        serde_json::from_str(samples::STRIPE_PAYMENT_INTENT_SUCCEEDED).unwrap();
    doc["id"] = id.into();
    doc["data"]["object"]["metadata"]["order_id"] = format!("order_{id}").into();
    doc["data"]["object"]["description"] = "x".repeat(padding).into();
    doc.to_string()
}

fn count(db: &Path, sql: &str) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn slow_headers_and_slow_bodies_are_cut_off_and_the_cap_holds_the_rest_back() {
    let dev = Local::start(
        "slow",
        &[
            "--header-timeout",
            "1",
            "--body-timeout",
            "1",
            "--max-connections",
            "4",
        ],
    );
    let started = Instant::now();
    // Six clients that never finish their headers: more than the cap.
    let slow_headers: Vec<TcpStream> = (0..6)
        .map(|_| {
            let mut s = dev.connect();
            s.write_all(b"POST /webhooks/stripe HTTP/1.1\r\nhost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    // One whose body stops short of its Content-Length.
    let mut slow_body = dev.connect();
    let body = event("evt_slow_body", 0);
    let req = signed_request(&body);
    slow_body.write_all(&req[..req.len() - 10]).unwrap();

    // Every one of them is closed by the server, none answered 2xx, and a well-behaved
    // delivery gets through once the cap frees up.
    let answered: Vec<String> = slow_headers.into_iter().map(read_to_close).collect();
    for a in &answered {
        assert!(!a.contains(" 200 "), "{a}");
    }
    let body_answer = read_to_close(slow_body);
    assert!(
        body_answer.starts_with("HTTP/1.1 408"),
        "a stalled body gets 408: {body_answer:?}"
    );
    let ok = send(&dev, &event("evt_after_slow", 0));
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "held connections were released by the timeouts, not by the clients ({:?})",
        started.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(
        &dev.db(),
        "SELECT count(*) FROM webhook_events WHERE status = 'PROCESSED'",
    ) < 1
    {
        assert!(Instant::now() < deadline, "the good delivery was processed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(count(&dev.db(), "SELECT count(*) FROM webhook_events"), 1);
}

#[test]
fn large_deliveries_are_claim_checked_into_the_database_and_freed_when_done() {
    let dev = Local::start("large", &[]);
    // 2 MB bodies: over the local queue's 256 KiB, so each envelope goes to the payloads table.
    for i in 0..5 {
        let answer = send(&dev, &event(&format!("evt_large_{i}"), 2_000_000));
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(
        &dev.db(),
        "SELECT count(*) FROM webhook_events WHERE status = 'PROCESSED'",
    ) < 5
    {
        assert!(
            Instant::now() < deadline,
            "the large deliveries were processed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(&dev.db(), "SELECT count(*) FROM payloads") > 0 {
        assert!(
            Instant::now() < deadline,
            "claim-checked envelopes are freed once their event is done"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(count(&dev.db(), "SELECT count(*) FROM queue_messages"), 0);
    assert_eq!(
        count(
            &dev.db(),
            "SELECT sum(writes) FROM entities WHERE kind = 'order'"
        ),
        5
    );
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024.0
}

#[test]
fn bodies_held_open_take_no_more_memory_than_the_budget() {
    let dev = Local::start(
        "budget",
        &["--max-body-memory", "16", "--body-timeout", "3"],
    );
    let pid = dev.dev.child.id();
    let before = rss_mib(pid);
    // Twenty clients each announce 10 MiB and send 9 MiB of it, then stall: 180 MiB if every
    // body were buffered.
    let port = dev.dev.port;
    let clients: Vec<_> = (0..20)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let head = format!(
                    "POST /webhooks/stripe HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                     stripe-signature: t=1,v1=00\r\ncontent-length: {}\r\n\r\n",
                    10 * 1024 * 1024
                );
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(&vec![b'x'; 9 * 1024 * 1024]);
                let mut answer = String::new();
                let _ = s.read_to_string(&mut answer);
                answer
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(2_000));
    let during = rss_mib(pid);
    let answers: Vec<String> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert!(answers.iter().all(|a| !a.contains(" 200 ")), "{answers:?}");
    assert!(
        during - before < 80.0,
        "bodies held open took {:.0} MiB (from {before:.0} to {during:.0}); the budget is 16",
        during - before
    );
    let ok = send(&dev, &event("evt_after_budget", 0));
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
}

#[test]
fn settings_sqs_would_refuse_are_refused_at_start() {
    for (flag, value) in [
        ("--max-receive-count", "0"),
        ("--max-receive-count", "1001"),
        ("--visibility-timeout", "0"),
        ("--visibility-timeout", "43201"),
        ("--max-connections", "0"),
        ("--body-timeout", "0"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_doorbell"))
            .args(["dev", "--db", "/nonexistent/never-created.db", flag, value])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag} {value}");
        assert!(
            err.contains(flag) && err.contains("not in"),
            "{flag} {value}: {err}"
        );
    }
}
