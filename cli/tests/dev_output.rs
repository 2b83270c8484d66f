//! What `doorbell dev` prints: the start-up banner (where to send, where everything is kept,
//! each source with its provider and handlers) and, with `--json`, one JSON object a line per
//! delivery and per outcome.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::Dev;
use doorbell::clock::{Clock, SystemClock};
use doorbell_cli::samples;

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("doorbell-dev-output-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// POSTs `body` with `headers` to `/webhooks/stripe`; returns the status code.
fn post(port: u16, headers: &[(String, String)], body: &[u8]) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req = format!(
        "POST /webhooks/stripe HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn the_banner_says_where_to_send_where_things_are_and_what_each_source_handles() {
    let dir = temp("banner");
    let db = dir.join("dev.db");
    let log = dir.join("dev.log");
    let dev = Dev::start(&db, Some(&log), &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let t = std::fs::read_to_string(&log).unwrap_or_default();
        if t.contains("  look") || Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(dev);
    for want in [
        format!("POST http://127.0.0.1:{}/webhooks/{{source}}", free(&text)),
        format!(
            "{} (queue, dead-letter queue, event store, archive)",
            db.display()
        ),
        "stripe (stripe): handlers for customer.subscription.created".into(),
        "payment_intent.succeeded".into(),
        "github (github): handlers for push".into(),
        format!("doorbell events ls --db {}", db.display()),
    ] {
        assert!(text.contains(&want), "missing {want:?} in:\n{text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The port in the banner's webhooks line (the test does not choose it).
fn free(text: &str) -> String {
    text.split("http://127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or("?")
        .to_owned()
}

#[test]
fn json_prints_one_object_a_line_per_delivery_and_per_outcome() {
    let dir = temp("json");
    let db = dir.join("dev.db");
    let log = dir.join("dev.log");
    let dev = Dev::start_logging(&db, Some(&log), &["--json"], "info");
    let body = samples::STRIPE_PAYMENT_INTENT_SUCCEEDED.as_bytes();
    let headers = samples::stripe_headers(samples::DEV_STRIPE_SECRET, SystemClock.now_s(), body);
    assert_eq!(post(dev.port, &headers, body), 200);
    assert_eq!(post(dev.port, &[], b"{}"), 401);
    let deadline = Instant::now() + Duration::from_secs(15);
    let lines: Vec<serde_json::Value> = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
            .collect();
        if lines.iter().any(|l| l["fields"]["message"] == "record") || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(dev);
    let find = |message: &str, outcome: &str| {
        lines
            .iter()
            .any(|l| l["fields"]["message"] == message && l["fields"]["outcome"] == outcome)
    };
    assert!(find("received", "enqueued"), "{lines:#?}");
    assert!(find("rejected", "signature_rejected"), "{lines:#?}");
    assert!(find("record", "processed"), "{lines:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}
