//! What ingest writes to its log, in the JSON format the Lambda functions use: rejected
//! signatures carry `fields.metric = "SignatureRejected"` (the template's metric filter), and
//! no line holds a secret, a signature or the body.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::Request;
use doorbell::catalog::StaticCatalog;
use doorbell::clock::ManualClock;
use doorbell::queue::{MemoryQueue, MemoryQueueConfig};
use doorbell::verify::stripe;
use doorbell::{Secret, Sources};
use doorbell_ingest::{IngestState, app};
use tower::ServiceExt;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

const SECRET: &str = "whsec_LOGTEST_secret_value";

/// The ingest app's state over `sources` (JSON), an in-process queue and a clock at
/// 2023-11-14T22:13:20Z.
fn ingest_state(sources: &str) -> IngestState {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    IngestState {
        sources: Arc::new(StaticCatalog::new(Sources::from_json(sources).unwrap())),
        queue: Arc::new(MemoryQueue::new(
            "q",
            MemoryQueueConfig::default(),
            clock.clone(),
        )),
        clock,
    }
}
const BODY: &str = r#"{"id":"evt_log_1","type":"invoice.paid","card":"4242-BODY-MARKER"}"#;

#[test]
fn rejected_signatures_are_counted_and_nothing_sensitive_is_logged() {
    let buffer = Buffer::default();
    let good = stripe::sign(&Secret::new(SECRET), 1_700_000_000, BODY.as_bytes());
    let subscriber = doorbell::logging::json_subscriber(buffer.clone());
    tracing::subscriber::with_default(subscriber, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let state = ingest_state(&format!(
                r#"{{"sources":[{{"name":"stripe","provider":"stripe","secrets":["{SECRET}"]}},{{"name":"shadow","provider":"stripe","secrets":["{SECRET}"],"enforce":false}}]}}"#
            ));
            let forged =
                "t=1700000000,v1=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
            for sig in [good.as_str(), forged] {
                let req = Request::post("/webhooks/stripe")
                    .header("stripe-signature", sig)
                    .body(Body::from(BODY))
                    .unwrap();
                app(state.clone()).oneshot(req).await.unwrap();
            }
            let req = Request::post("/webhooks/shadow").header("stripe-signature", forged).body(Body::from(BODY)).unwrap();
            assert_eq!(app(state.clone()).oneshot(req).await.unwrap().status(), 200);
        });
    });
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    let rejected: Vec<_> = lines
        .iter()
        .filter(|l| l["fields"]["metric"] == "SignatureRejected")
        .collect();
    assert_eq!(rejected.len(), 1, "{text}");
    let shadowed: Vec<_> = lines
        .iter()
        .filter(|l| l["fields"]["metric"] == "ShadowSignatureRejected")
        .collect();
    assert_eq!(shadowed.len(), 1, "{text}");
    assert_eq!(shadowed[0]["fields"]["source"], "shadow");
    assert_eq!(rejected[0]["fields"]["source"], "stripe");
    assert_eq!(rejected[0]["fields"]["reason"], "bad_signature");
    assert!(lines.iter().any(|l| l["fields"]["outcome"] == "enqueued" && l["fields"]["event_id"] == "evt_log_1"), "{text}");
    for needle in [SECRET, "0123456789abcdef", &good[20..], "4242-BODY-MARKER"] {
        assert!(!text.contains(needle), "log contains {needle:?}: {text}");
    }
}

/// Sends, through the ingest app with `subscriber` installed: a source name with `%0a`, one with
/// ESC and NUL (both unknown: 404), and a signed event whose type holds U+2028. Returns what
/// was logged.
fn log_of_forging_requests(
    subscriber: impl tracing::Subscriber + Send + Sync,
    buffer: &Buffer,
) -> String {
    let body = r#"{"id":"evt_log_2","type":"invoice.paid\u2028FAKE","created":1700000000}"#;
    let sig = stripe::sign(&Secret::new(SECRET), 1_700_000_000, body.as_bytes());
    tracing::subscriber::with_default(subscriber, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let state = ingest_state(&format!(
                r#"{{"sources":[{{"name":"stripe","provider":"stripe","secrets":["{SECRET}"]}}]}}"#
            ));
            for path in ["/webhooks/a%0aFAKE%20LINE", "/webhooks/%1b[31mx%00"] {
                let req = Request::post(path).body(Body::from(BODY)).unwrap();
                assert_eq!(
                    app(state.clone()).oneshot(req).await.unwrap().status(),
                    404,
                    "{path}"
                );
            }
            let req = Request::post("/webhooks/stripe")
                .header("stripe-signature", sig)
                .body(Body::from(body))
                .unwrap();
            assert_eq!(app(state.clone()).oneshot(req).await.unwrap().status(), 200);
        });
    });
    String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
}

/// Bytes no log line may carry raw: C0 controls but the line's own end, DEL, C1 controls,
/// U+2028/U+2029.
fn assert_no_raw_controls(text: &str) {
    for line in text.lines() {
        if let Some(c) = line
            .chars()
            .find(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
        {
            panic!("raw {c:?} in {line:?}");
        }
    }
    assert!(!text.contains('\r'), "{text:?}");
}

#[test]
fn request_values_cannot_forge_a_text_log_line() {
    let buffer = Buffer::default();
    let subscriber = doorbell::logging::text_subscriber(buffer.clone(), false, "info").finish();
    let text = log_of_forging_requests(subscriber, &buffer);
    // One line per event: two rejections and one enqueued event, each starting with its time
    // and level; nothing a request sent starts a line of its own.
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for line in &lines {
        assert!(
            line.starts_with("20") && line.contains(" doorbell_ingest: "),
            "{line:?}"
        );
    }
    assert_no_raw_controls(&text);
    assert!(lines[0].contains(r"source=a\nFAKE LINE"), "{text}");
    assert!(lines[1].contains(r"source=\x1b[31mx\x00"), "{text}");
    assert!(
        lines[2].contains(r"event_type=invoice.paid\u{2028}FAKE"),
        "{text}"
    );
}

#[test]
fn request_values_cannot_forge_a_json_log_line() {
    let buffer = Buffer::default();
    let subscriber = doorbell::logging::json_subscriber(buffer.clone());
    let text = log_of_forging_requests(subscriber, &buffer);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_no_raw_controls(&text);
    // The values are intact once the JSON is read.
    assert_eq!(lines[0]["fields"]["source"], "a\nFAKE LINE");
    assert_eq!(lines[1]["fields"]["source"], "\u{1b}[31mx\0");
    assert_eq!(lines[2]["fields"]["event_type"], "invoice.paid\u{2028}FAKE");
}
