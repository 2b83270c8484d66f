//! S3 errors for the claim check, answered by a failing loopback endpoint to the real
//! `aws-sdk-s3` client: a failed upload is a queue failure (ingest answers 503, nothing is
//! sent), a missing object is `NotFound` (the message is unusable), a 503 on read is
//! `Unavailable` (retried).

use std::sync::Arc;

use doorbell::clock::ManualClock;
use doorbell::payload::{PayloadError, PayloadStore, S3PayloadStore};
use doorbell::queue::{
    ClaimCheckQueue, EventQueue, MemoryQueue, MemoryQueueConfig, OutgoingMessage, QueueError,
};
use doorbell::testing::{self, FailingEndpoint, Reply};

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

async fn store(endpoint: &FailingEndpoint) -> S3PayloadStore {
    S3PayloadStore::from_conf(&testing::config_for(endpoint.url()).await, "payloads")
}

#[tokio::test]
async fn a_failed_upload_sends_nothing_and_a_retried_one_sends_the_pointer() {
    let endpoint = FailingEndpoint::start(
        vec![Reply::xml(
            503,
            "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>",
        )],
        Reply::xml(200, ""),
    )
    .await;
    let inner = Arc::new(MemoryQueue::new(
        "events",
        MemoryQueueConfig::default(),
        Arc::new(ManualClock::new(1_700_000_000_000)),
    ));
    let queue = ClaimCheckQueue::new(inner.clone(), Arc::new(store(&endpoint).await));
    let r = queue.send(big_message()).await;
    assert!(matches!(r, Err(QueueError::Unavailable { .. })), "{r:?}");
    assert!(inner.is_empty(), "no pointer without a stored payload");
    queue.send(big_message()).await.unwrap();
    assert_eq!(inner.len(), 1);
    assert_eq!(endpoint.calls(), 2);
}

#[tokio::test]
async fn a_missing_object_is_not_found_and_a_503_is_unavailable() {
    let endpoint = FailingEndpoint::start(
        vec![Reply::xml(
            404,
            "<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>",
        )],
        Reply::xml(503, "<Error><Code>ServiceUnavailable</Code></Error>"),
    )
    .await;
    let s = store(&endpoint).await;
    assert!(matches!(
        s.get("k").await,
        Err(PayloadError::NotFound { .. })
    ));
    assert!(matches!(
        s.get("k").await,
        Err(PayloadError::Unavailable { .. })
    ));
}
