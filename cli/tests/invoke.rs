//! `doorbell invoke ingest` prints, beside the status, why ingest refused a request: the reason
//! code and words it logged (the response body stays generic, as the provider sees it).

use std::process::Command;

use doorbell::Sources;
use doorbell_cli::events::SAMPLE_TIME_S;
use doorbell_cli::invoke::run_ingest;
use doorbell_cli::samples;
use serde_json::Value;

fn event_file(name: &str) -> String {
    format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs `doorbell invoke ingest FILE --now SAMPLE_TIME_S`; returns (stdout, stderr).
fn invoke(name: &str) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_doorbell"))
        .args(["invoke", "ingest", &event_file(name), "--now"])
        .arg(SAMPLE_TIME_S.to_string())
        .env_remove("DOORBELL_SOURCES_FILE")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn invoke_ingest_prints_the_rejection_reason_beside_the_401() {
    let (stdout, stderr) = invoke("ingest-stripe-bad-signature.json");
    assert!(
        stderr
            .lines()
            .any(|l| l == "401 Unauthorized: bad_signature (no signature matches)"),
        "{stderr}"
    );
    // The Lambda response itself is unchanged: a generic body, as the caller gets it.
    let response: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(response["statusCode"], 401);
    assert!(!response["body"].as_str().unwrap().contains("bad_signature"));

    let (_, stderr) = invoke("ingest-stripe-missing-signature.json");
    assert!(
        stderr
            .lines()
            .any(|l| l == "401 Unauthorized: missing_header (missing header stripe-signature)"),
        "{stderr}"
    );
    let (_, stderr) = invoke("ingest-unknown-source.json");
    assert!(
        stderr.lines().any(|l| l == "404 Not Found: unknown_source"),
        "{stderr}"
    );
    let (_, stderr) = invoke("ingest-stripe-http-api.json");
    assert!(stderr.lines().next() == Some("200 OK"), "{stderr}");
}

#[tokio::test]
async fn run_ingest_reports_a_stale_timestamp_and_nothing_for_a_success() {
    let event: Value = serde_json::from_str(
        &std::fs::read_to_string(event_file("ingest-stripe-http-api.json")).unwrap(),
    )
    .unwrap();
    let sources = || Sources::from_json(&samples::dev_sources_json()).unwrap();
    let ok = run_ingest(event.clone(), sources(), SAMPLE_TIME_S * 1000)
        .await
        .unwrap();
    assert_eq!(
        (ok.status_line(), ok.rejection),
        ("200 OK".to_owned(), None)
    );
    let stale = run_ingest(event, sources(), (SAMPLE_TIME_S + 301) * 1000)
        .await
        .unwrap();
    assert_eq!(
        stale.status_line(),
        "401 Unauthorized: timestamp_outside_tolerance (signed timestamp is 301 s in the past, outside the tolerance)"
    );
}
