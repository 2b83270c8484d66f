//! One suite for the local queues' SQS semantics, run against the in-process queue and the
//! durable SQLite queue: what the worker and the poller rely on must hold for both.

use std::sync::Arc;

use doorbell::clock::ManualClock;
use doorbell::queue::{
    EventQueue, MemoryQueue, MemoryQueueConfig, OutgoingMessage, QueueError, SqliteQueue,
};
use doorbell::sqlite::SqliteDb;

fn config() -> MemoryQueueConfig {
    MemoryQueueConfig {
        visibility_timeout_ms: 1_000,
        max_receive_count: 3,
        max_message_bytes: 100,
    }
}

fn msg(body: &str) -> OutgoingMessage {
    OutgoingMessage {
        body: body.into(),
        attributes: vec![("source", "s".into()), ("event_type", String::new())],
        group_id: None,
        deduplication_id: None,
    }
}

type Pair = (Arc<dyn EventQueue>, Arc<dyn EventQueue>);

fn memory(clock: &ManualClock) -> Pair {
    let dlq = Arc::new(MemoryQueue::new("dlq", config(), Arc::new(clock.clone())));
    let q = MemoryQueue::new("q", config(), Arc::new(clock.clone()))
        .with_dead_letter_queue(dlq.clone());
    (Arc::new(q), dlq)
}

fn sqlite(clock: &ManualClock) -> Pair {
    let q = SqliteQueue::new(
        SqliteDb::in_memory().unwrap(),
        "q",
        config(),
        Arc::new(clock.clone()),
    )
    .unwrap()
    .with_dead_letter_queue("dlq");
    let dlq = q.dead_letter_queue().unwrap();
    (Arc::new(q), Arc::new(dlq))
}

async fn received_message_is_invisible_until_the_visibility_timeout(
    make: fn(&ManualClock) -> Pair,
) {
    let clock = ManualClock::new(0);
    let (q, _) = make(&clock);
    q.send(msg("a")).await.unwrap();
    let r = q.receive(10).await.unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].receive_count, 1);
    assert_eq!(r[0].attributes, vec![("source".to_owned(), "s".to_owned())]);
    assert!(q.receive(10).await.unwrap().is_empty());
    clock.advance_ms(999);
    assert!(q.receive(10).await.unwrap().is_empty());
    clock.advance_ms(1);
    let r2 = q.receive(10).await.unwrap();
    assert_eq!(r2[0].receive_count, 2);
    assert_eq!(r2[0].message_id, r[0].message_id);
    assert_ne!(r2[0].receipt_handle, r[0].receipt_handle);
}

async fn delete_removes_the_message(make: fn(&ManualClock) -> Pair) {
    let clock = ManualClock::new(0);
    let (q, _) = make(&clock);
    q.send(msg("a")).await.unwrap();
    q.send(msg("b")).await.unwrap();
    let r = q.receive(10).await.unwrap();
    let handles: Vec<&str> = r.iter().map(|m| m.receipt_handle.as_str()).collect();
    q.delete(handles[0]).await.unwrap();
    q.delete_batch(&handles[1..]).await.unwrap();
    clock.advance_ms(10_000);
    assert!(q.receive(10).await.unwrap().is_empty());
}

async fn redrives_to_the_dead_letter_queue_after_max_receive_count(make: fn(&ManualClock) -> Pair) {
    let clock = ManualClock::new(0);
    let (q, dlq) = make(&clock);
    let id = q.send(msg("poison")).await.unwrap();
    for n in 1..=3 {
        let r = q.receive(10).await.unwrap();
        assert_eq!(r[0].receive_count, n);
        clock.advance_ms(1_000);
    }
    assert!(q.receive(10).await.unwrap().is_empty());
    let d = dlq.receive(10).await.unwrap();
    assert_eq!(d[0].message_id, id, "SQS keeps the message id");
    assert_eq!(d[0].body, "poison");
    assert_eq!(d[0].sent_timestamp_ms, 0, "and the original send time");
}

async fn rejects_messages_over_the_size_limit_counting_attributes(make: fn(&ManualClock) -> Pair) {
    let clock = ManualClock::new(0);
    let (q, _) = make(&clock);
    let body = "x".repeat(100 - "source".len() - "String".len() - 1);
    assert!(q.send(msg(&body)).await.is_ok());
    assert!(matches!(
        q.send(msg(&format!("{body}x"))).await,
        Err(QueueError::TooLarge {
            bytes: 101,
            max: 100
        })
    ));
}

async fn contract(make: fn(&ManualClock) -> Pair) {
    received_message_is_invisible_until_the_visibility_timeout(make).await;
    delete_removes_the_message(make).await;
    redrives_to_the_dead_letter_queue_after_max_receive_count(make).await;
    rejects_messages_over_the_size_limit_counting_attributes(make).await;
}

#[tokio::test]
async fn the_in_process_queue_has_the_sqs_semantics() {
    contract(memory).await;
}

#[tokio::test]
async fn the_sqlite_queue_has_the_sqs_semantics() {
    contract(sqlite).await;
}
