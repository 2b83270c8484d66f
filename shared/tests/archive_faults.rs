//! Firehose's partial failures, answered by a failing loopback endpoint to the real
//! `aws-sdk-firehose` client (moto never fails a record): only the records Firehose reports as
//! failed are sent again, up to three tries, then the put is `Unavailable` and the worker
//! retries the batch. Every answer must have one entry per record sent, so a canned answer with
//! one entry also checks that exactly one record was resent.

use std::time::Duration;

use doorbell::archive::{Archive, ArchiveError, FirehoseArchive, PUT_ATTEMPTS, RecordLimits};
use doorbell::config::{Provider, SourceConfig};
use doorbell::envelope::Envelope;
use doorbell::secret::Secret;
use doorbell::testing::{self, FailingEndpoint, Reply};
use doorbell::verify::{Dedupe, Verified};
use serde_json::json;

fn envelope(id: &str) -> Envelope {
    let src = SourceConfig::new("stripe", Provider::Stripe, vec![Secret::new("s")]);
    let v = Verified {
        event_id: id.into(),
        event_type: "a.b".into(),
        occurred_at_ms: None,
        dedupe: Dedupe::EventId,
        reply: None,
        headers: vec![],
    };
    Envelope::new(
        &src,
        v,
        format!("{{\"id\":\"{id}\"}}").as_bytes(),
        None,
        1_700_000_000_000,
    )
}

/// Two envelopes, one record each.
fn two_records() -> (Vec<Envelope>, RecordLimits) {
    let limits = RecordLimits {
        record_bytes: envelope("evt_1").to_json().len() + 1,
        ..RecordLimits::FIREHOSE
    };
    (vec![envelope("evt_1"), envelope("evt_2")], limits)
}

fn answer(entries: serde_json::Value) -> Reply {
    let failed = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e.get("ErrorCode").is_some())
        .count();
    Reply::json(
        200,
        json!({"FailedPutCount": failed, "Encrypted": false, "RequestResponses": entries}),
    )
}

fn throttled() -> serde_json::Value {
    json!({"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down."})
}

async fn archive(endpoint: &FailingEndpoint, limits: RecordLimits) -> FirehoseArchive {
    FirehoseArchive::from_conf(&testing::config_for(endpoint.url()).await, "archive")
        .with_limits(limits)
        .with_retry_delay(Duration::ZERO)
}

#[tokio::test]
async fn only_the_failed_record_is_resent_and_then_the_put_succeeds() {
    let (batch, limits) = two_records();
    let endpoint = FailingEndpoint::start(
        vec![answer(json!([{"RecordId": "r1"}, throttled()]))],
        // One entry: the resend carried exactly one record.
        answer(json!([{"RecordId": "r2"}])),
    )
    .await;
    archive(&endpoint, limits)
        .await
        .put(&batch, 0)
        .await
        .unwrap();
    assert_eq!(endpoint.calls(), 2);
}

#[tokio::test]
async fn a_record_still_failing_after_three_tries_fails_the_put() {
    let endpoint = FailingEndpoint::start(vec![], answer(json!([throttled()]))).await;
    let err = archive(&endpoint, RecordLimits::FIREHOSE)
        .await
        .put(&[envelope("evt_1")], 0)
        .await
        .unwrap_err();
    let ArchiveError::Unavailable { operation, message } = err;
    assert_eq!(operation, "put");
    assert!(message.contains("after 3 tries"), "{message}");
    assert!(message.contains("ServiceUnavailableException"), "{message}");
    assert_eq!(endpoint.calls(), u64::from(PUT_ATTEMPTS));
}

#[tokio::test]
async fn an_answer_that_does_not_match_the_records_sent_fails_the_put() {
    let (batch, limits) = two_records();
    let endpoint = FailingEndpoint::start(vec![], answer(json!([{"RecordId": "r1"}]))).await;
    let err = archive(&endpoint, limits).await.put(&batch, 0).await;
    assert!(
        matches!(&err, Err(ArchiveError::Unavailable { message, .. }) if message.contains("1 entries for 2 records")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_refused_call_is_unavailable() {
    let endpoint = FailingEndpoint::start(
        vec![],
        Reply::json_error(
            400,
            "ResourceNotFoundException",
            "Firehose archive not found under account 123456789012.",
        ),
    )
    .await;
    let err = archive(&endpoint, RecordLimits::FIREHOSE)
        .await
        .put(&[envelope("evt_1")], 0)
        .await;
    assert!(
        matches!(&err, Err(ArchiveError::Unavailable { message, .. }) if message.contains("ResourceNotFoundException")),
        "{err:?}"
    );
}
