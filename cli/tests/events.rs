//! Fixture tests over every file in `events/`: each is a real Lambda event shape, runs through
//! the real function code (the same path `sam local invoke` and Lambda take) and produces what
//! `events/expected.json` says. The files are what `doorbell events write` generates.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use doorbell::Sources;
use doorbell::store::SqliteEventStore;
use doorbell_cli::events::{self, SAMPLE_TIME_S};
use doorbell_cli::invoke::{invoke_ingest, invoke_worker, sign_event};
use doorbell_cli::samples;
use serde_json::Value;

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events")
}

fn dev_sources() -> Sources {
    Sources::from_json(&samples::dev_sources_json()).unwrap()
}

fn event_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(events_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json") && p.file_name().unwrap() != "expected.json"
        })
        .collect();
    files.sort();
    files
}

fn read(p: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn committed_events_are_what_the_generator_writes() {
    let dir = events_dir();
    let mut expected: BTreeSet<String> = events::samples()
        .iter()
        .map(|s| s.file.to_owned())
        .collect();
    expected.insert("expected.json".into());
    expected.insert("README.md".into());
    let present: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        present, expected,
        "run `cargo run -p doorbell-cli -- events write events`"
    );
    for s in events::samples() {
        let on_disk = std::fs::read_to_string(dir.join(s.file)).unwrap();
        assert_eq!(
            on_disk,
            events::to_file_text(&s.event),
            "{} is stale: run `doorbell events write events`",
            s.file
        );
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("expected.json")).unwrap(),
        events::to_file_text(&events::expected_json())
    );
}

#[tokio::test]
async fn every_event_file_produces_its_expected_result() {
    let expected = read(&events_dir().join("expected.json"));
    let files = event_files();
    assert!(files.len() >= 15);
    for path in files {
        let name = path.file_name().unwrap().to_str().unwrap();
        let want = &expected[name];
        assert!(want.is_object(), "{name} has no entry in expected.json");
        let event = read(&path);
        match want["function"].as_str().unwrap() {
            "ingest" => {
                // C32: the pinned lambda_http deserialises the shape and converts it to a request
                // (after the base64 guard, which keeps its decoder from panicking).
                let mut req: lambda_http::request::LambdaRequest =
                    serde_json::from_value(event.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
                doorbell_ingest::lambda::sanitize(&mut req);
                let _request: lambda_http::Request = req.into();
                let (resp, enqueued) = invoke_ingest(event, dev_sources(), SAMPLE_TIME_S * 1000)
                    .await
                    .unwrap();
                assert_eq!(resp["statusCode"], want["statusCode"], "{name}: {resp}");
                assert_eq!(
                    enqueued.len(),
                    usize::from(resp["statusCode"] == 200),
                    "{name}"
                );
            }
            "worker" => {
                let store = Arc::new(SqliteEventStore::in_memory().unwrap());
                let resp = invoke_worker(event, &dev_sources(), store, SAMPLE_TIME_S * 1000)
                    .await
                    .unwrap();
                let got: Vec<&str> = resp["batchItemFailures"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f["itemIdentifier"].as_str().unwrap())
                    .collect();
                let want: Vec<&str> = want["batchItemFailures"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap())
                    .collect();
                assert_eq!(got, want, "{name}");
            }
            other => panic!("{name}: unknown function {other}"),
        }
    }
}

#[tokio::test]
async fn signed_events_verify_at_any_later_time() {
    let later = SAMPLE_TIME_S + 86_400;
    for path in event_files().into_iter().filter(|p| {
        p.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("ingest-stripe-http-api")
    }) {
        let mut event = read(&path);
        let (stale, _) = invoke_ingest(event.clone(), dev_sources(), later * 1000)
            .await
            .unwrap();
        assert_eq!(
            stale["statusCode"], 401,
            "a day-old Stripe signature is outside the tolerance"
        );
        sign_event(&mut event, &dev_sources(), later).unwrap();
        let (fresh, _) = invoke_ingest(event, dev_sources(), later * 1000)
            .await
            .unwrap();
        assert_eq!(fresh["statusCode"], 200);
    }
    // A REST v1 event keeps its multiValueHeaders in step with its headers.
    let mut v1 = read(&events_dir().join("ingest-stripe-rest-api.json"));
    sign_event(&mut v1, &dev_sources(), later).unwrap();
    assert_eq!(
        v1["headers"]["stripe-signature"],
        v1["multiValueHeaders"]["stripe-signature"][0]
    );
    let (resp, _) = invoke_ingest(v1, dev_sources(), later * 1000)
        .await
        .unwrap();
    assert_eq!(resp["statusCode"], 200);
}

#[tokio::test]
async fn worker_duplicate_sample_runs_the_payment_handler_once() {
    let store = Arc::new(SqliteEventStore::in_memory().unwrap());
    let event = read(&events_dir().join("worker-duplicate.json"));
    invoke_worker(event, &dev_sources(), store.clone(), SAMPLE_TIME_S * 1000)
        .await
        .unwrap();
    let rec =
        doorbell::store::EventStore::get(store.as_ref(), "stripe#evt_3QdemoPaymentIntent0001")
            .await
            .unwrap()
            .unwrap();
    assert_eq!(rec.attempts, 1);
    let order = doorbell::store::EntityStore::get_entity(store.as_ref(), "order", "order_1001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(order.state["status"], "paid");
}

#[tokio::test]
async fn worker_subscription_sample_keeps_the_deletion_whatever_arrives_after() {
    let store = Arc::new(SqliteEventStore::in_memory().unwrap());
    let event = read(&events_dir().join("worker-subscription-out-of-order.json"));
    invoke_worker(event, &dev_sources(), store.clone(), SAMPLE_TIME_S * 1000)
        .await
        .unwrap();
    let sub = doorbell::store::EntityStore::get_entity(
        store.as_ref(),
        "subscription",
        "sub_1Doorbell0001",
    )
    .await
    .unwrap()
    .unwrap();
    assert!(sub.deleted);
    assert_eq!(sub.state["status"], "canceled");
    assert_eq!(sub.state["event_id"], "evt_1SubDeleted0003");
}
