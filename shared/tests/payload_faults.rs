//! S3 errors for the claim check, injected into the real `aws-sdk-s3` client with
//! `aws-smithy-mocks`: a failed upload is a queue failure (ingest answers 503, nothing is
//! sent), a missing object is `NotFound` (the message is unusable), a 503 on read is
//! `Unavailable` (retried).

use std::sync::Arc;

use aws_sdk_s3::Client;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::operation::put_object::PutObjectOutput;
use aws_sdk_s3::types::error::NoSuchKey;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use doorbell::clock::ManualClock;
use doorbell::payload::{PayloadError, PayloadStore, S3PayloadStore};
use doorbell::queue::{
    ClaimCheckQueue, EventQueue, MemoryQueue, MemoryQueueConfig, OutgoingMessage, QueueError,
};

fn big_message() -> OutgoingMessage {
    OutgoingMessage {
        body: serde_json::json!({"v": 1, "source": "github", "event_id": "e", "event_type": "push",
            "idempotency_key": "github#e", "body": "x".repeat(300_000)})
        .to_string(),
        attributes: vec![("source", "github".into())],
        group_id: None,
        deduplication_id: None,
    }
}

#[tokio::test]
async fn a_failed_upload_sends_nothing_and_a_retried_one_sends_the_pointer() {
    let put = mock!(Client::put_object)
        .sequence()
        .http_status(503, Some("<Error><Code>SlowDown</Code></Error>".into()))
        .times(3)
        .output(|| PutObjectOutput::builder().build())
        .build();
    let s3 = mock_client!(aws_sdk_s3, RuleMode::Sequential, [&put]);
    let inner = Arc::new(MemoryQueue::new(
        "events",
        MemoryQueueConfig::default(),
        Arc::new(ManualClock::new(1_700_000_000_000)),
    ));
    let queue = ClaimCheckQueue::new(inner.clone(), Arc::new(S3PayloadStore::new(s3, "b")));
    // The SDK tries three times (standard retry mode); all fail.
    let r = queue.send(big_message()).await;
    assert!(matches!(r, Err(QueueError::Unavailable { .. })), "{r:?}");
    assert!(inner.is_empty(), "no pointer without a stored payload");
    queue.send(big_message()).await.unwrap();
    assert_eq!(inner.len(), 1);
    assert_eq!(
        put.num_calls(),
        4,
        "the SDK's three attempts, then the retry"
    );
}

#[tokio::test]
async fn a_missing_object_is_not_found_and_a_503_is_unavailable() {
    let get = mock!(Client::get_object)
        .sequence()
        .error(|| GetObjectError::NoSuchKey(NoSuchKey::builder().build()))
        .http_status(503, None)
        .repeatedly()
        .build();
    let s3 = mock_client!(aws_sdk_s3, RuleMode::Sequential, [&get]);
    let store = S3PayloadStore::new(s3, "b");
    assert!(matches!(
        store.get("k").await,
        Err(PayloadError::NotFound { .. })
    ));
    assert!(matches!(
        store.get("k").await,
        Err(PayloadError::Unavailable { .. })
    ));
}
