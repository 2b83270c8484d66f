//! One state-machine suite, run against both event stores: SQLite (in memory) and DynamoDB on
//! a moto server (`./scripts/test` starts it). The same claims must give the same outcomes.

use doorbell::store::{
    ClaimOutcome, ClaimRequest, DynamoDbEventStore, EntityStore, EntityWrite, EventRecord,
    EventStore, SqliteEventStore, Status, StoreError,
};
use doorbell::testing;
use serde_json::json;

const NOW: i64 = 1_700_000_000_000;

fn req(key: &str, sha: &str, now_ms: i64, lease_ms: i64) -> ClaimRequest {
    ClaimRequest {
        key: key.into(),
        source: "stripe".into(),
        provider: "stripe".into(),
        event_id: key.rsplit('#').next().unwrap().into(),
        event_type: "payment_intent.succeeded".into(),
        body_sha256: sha.into(),
        received_at: "2023-11-14T22:13:20.000Z".into(),
        payload: Some(r#"{"id":"evt"}"#.into()),
        now_ms,
        lease_expires_at_ms: now_ms + lease_ms,
        expires_at_s: now_ms / 1000 + 7 * 86_400,
        stale_after_ms: 900_000,
    }
}

async fn contract<S: EventStore + EntityStore>(store: &S, p: &str) {
    let k = |s: &str| format!("{p}#{s}");

    // New → claimed; a second claim during the lease sees it in progress.
    let a = k("evt_a");
    assert_eq!(
        store.claim(&req(&a, "aa", NOW, 30_000)).await.unwrap(),
        ClaimOutcome::Claimed { attempts: 1 }
    );
    let rec = store.get(&a).await.unwrap().unwrap();
    assert_eq!(rec.status, Status::InProgress);
    assert_eq!(rec.lease_expires_at_ms, Some(NOW + 30_000));
    assert_eq!(rec.payload.as_deref(), Some(r#"{"id":"evt"}"#));
    // C29: the TTL attribute is epoch seconds (a millisecond value would never expire).
    let ttl = rec.expires_at_s.unwrap();
    assert!(
        ttl > NOW / 1000 && ttl < 100_000_000_000,
        "expires_at {ttl} must be epoch seconds"
    );
    assert_eq!(
        store
            .claim(&req(&a, "aa", NOW + 1_000, 30_000))
            .await
            .unwrap(),
        ClaimOutcome::InProgress {
            lease_expires_at_ms: Some(NOW + 30_000)
        }
    );

    // Completed → duplicates; a different body → conflict, first body kept.
    store.complete(&a, 1, "handled", NOW + 2_000).await.unwrap();
    let rec = store.get(&a).await.unwrap().unwrap();
    assert_eq!(
        (rec.status, rec.processed_at_ms, rec.lease_expires_at_ms),
        (Status::Processed, Some(NOW + 2_000), None)
    );
    assert_eq!(rec.outcome.as_deref(), Some("handled"));
    assert_eq!(
        store
            .claim(&req(&a, "aa", NOW + 3_000, 30_000))
            .await
            .unwrap(),
        ClaimOutcome::Duplicate
    );
    assert_eq!(
        store
            .claim(&req(&a, "bb", NOW + 3_000, 30_000))
            .await
            .unwrap(),
        ClaimOutcome::Conflict {
            stored_sha256: "aa".into()
        }
    );

    // Failed → claimable again; only the current attempt may finish.
    let b = k("evt_b");
    assert_eq!(
        store.claim(&req(&b, "aa", NOW, 30_000)).await.unwrap(),
        ClaimOutcome::Claimed { attempts: 1 }
    );
    store.fail(&b, 1, "boom", NOW + 1).await.unwrap();
    let rec = store.get(&b).await.unwrap().unwrap();
    assert_eq!(
        (rec.status, rec.last_error.as_deref()),
        (Status::Failed, Some("boom"))
    );
    assert_eq!(
        store.claim(&req(&b, "aa", NOW + 5, 30_000)).await.unwrap(),
        ClaimOutcome::Claimed { attempts: 2 }
    );
    assert!(matches!(
        store.complete(&b, 1, "handled", NOW + 6).await,
        Err(StoreError::LeaseLost { .. })
    ));
    store.complete(&b, 2, "handled", NOW + 7).await.unwrap();

    // An expired lease is taken over; the old attempt then cannot finish.
    let c = k("evt_c");
    store.claim(&req(&c, "aa", NOW, 1_000)).await.unwrap();
    assert_eq!(
        store
            .claim(&req(&c, "aa", NOW + 1_000, 30_000))
            .await
            .unwrap(),
        ClaimOutcome::InProgress {
            lease_expires_at_ms: Some(NOW + 1_000)
        }
    );
    assert_eq!(
        store
            .claim(&req(&c, "aa", NOW + 1_001, 30_000))
            .await
            .unwrap(),
        ClaimOutcome::Claimed { attempts: 2 }
    );
    assert!(matches!(
        store.fail(&c, 1, "late", NOW + 1_002).await,
        Err(StoreError::LeaseLost { .. })
    ));

    // C29: a processed record whose dedupe window ended is claimable, even if TTL has not
    // deleted it yet.
    let d = k("evt_d");
    let mut old = EventRecord {
        key: d.clone(),
        source: "stripe".into(),
        provider: "stripe".into(),
        event_id: "evt_d".into(),
        event_type: "t".into(),
        status: Status::Processed,
        attempts: 1,
        received_at: "r".into(),
        processed_at_ms: Some(NOW - 100_000),
        lease_expires_at_ms: None,
        updated_at_ms: Some(NOW - 100_000),
        expires_at_s: Some(NOW / 1000 - 10),
        body_sha256: "zz".into(),
        last_error: None,
        outcome: Some("handled".into()),
        payload: None,
    };
    store.put_record(&old).await.unwrap();
    assert_eq!(
        store.claim(&req(&d, "aa", NOW, 30_000)).await.unwrap(),
        ClaimOutcome::Claimed { attempts: 2 }
    );

    // C27(c): IN_PROGRESS written without a lease is stale only after the limit.
    let e = k("evt_e");
    old.key = e.clone();
    old.status = Status::InProgress;
    old.expires_at_s = Some(NOW / 1000 + 86_400);
    old.body_sha256 = "aa".into();
    old.updated_at_ms = Some(NOW - 1_000);
    store.put_record(&old).await.unwrap();
    assert!(matches!(
        store.claim(&req(&e, "aa", NOW, 30_000)).await.unwrap(),
        ClaimOutcome::InProgress { .. }
    ));
    assert_eq!(
        store
            .claim(&req(&e, "aa", NOW + 900_000, 30_000))
            .await
            .unwrap(),
        ClaimOutcome::Claimed { attempts: 2 }
    );

    // Entities: newest wins; a deletion is never undone.
    let id = format!("{p}-order-1");
    let put = |v: i64, st: serde_json::Value| {
        let id = id.clone();
        async move { store.put_if_newer("order", &id, v, &st).await.unwrap() }
    };
    assert_eq!(put(2, json!({"s": 2})).await, EntityWrite::Written);
    assert_eq!(put(1, json!({"s": 1})).await, EntityWrite::Stale);
    assert_eq!(put(2, json!({"s": "again"})).await, EntityWrite::Stale);
    assert_eq!(put(3, json!({"s": 3})).await, EntityWrite::Written);
    let ent = store.get_entity("order", &id).await.unwrap().unwrap();
    assert_eq!(
        (ent.version, ent.state, ent.deleted),
        (3, json!({"s": 3}), false)
    );
    // An older deletion still deletes; nothing after it, older or newer, writes.
    assert_eq!(
        store
            .delete("order", &id, 2, &json!({"s": "gone"}))
            .await
            .unwrap(),
        EntityWrite::Written
    );
    assert_eq!(put(9, json!({"s": 9})).await, EntityWrite::Deleted);
    assert_eq!(put(1, json!({"s": 1})).await, EntityWrite::Deleted);
    assert_eq!(
        store.delete("order", &id, 10, &json!({})).await.unwrap(),
        EntityWrite::Deleted
    );
    let ent = store.get_entity("order", &id).await.unwrap().unwrap();
    assert_eq!((ent.state, ent.deleted), (json!({"s": "gone"}), true));
    // A deletion of an entity never seen is remembered too (deleted before created).
    let id2 = format!("{p}-order-2");
    assert_eq!(
        store
            .delete("order", &id2, 5, &json!({"s": "gone"}))
            .await
            .unwrap(),
        EntityWrite::Written
    );
    assert_eq!(
        store
            .put_if_newer("order", &id2, 4, &json!({"s": "created"}))
            .await
            .unwrap(),
        EntityWrite::Deleted
    );
    assert!(store.get_entity("order", "nope").await.unwrap().is_none());
    assert!(store.get(&k("never")).await.unwrap().is_none());
}

#[tokio::test]
async fn sqlite_store_follows_the_contract() {
    contract(&SqliteEventStore::in_memory().unwrap(), "stripe").await;
}

#[tokio::test]
async fn sqlite_file_store_follows_the_contract_across_reopen() {
    let dir = std::env::temp_dir().join(testing::unique("doorbell-sqlite"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("events.db");
    contract(&SqliteEventStore::open(&path).unwrap(), "stripe").await;
    let reopened = SqliteEventStore::open(&path).unwrap();
    assert_eq!(
        reopened.get("stripe#evt_a").await.unwrap().unwrap().status,
        Status::Processed
    );
    // The file is in write-ahead-log mode (persistent in the file).
    let raw = rusqlite::Connection::open(&path).unwrap();
    let mode: String = raw
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    drop(raw);
    drop(reopened);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn dynamodb_store_follows_the_contract_on_moto() {
    let config = testing::sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let table = testing::unique("webhook-events");
    DynamoDbEventStore::create_table(&client, &table)
        .await
        .unwrap();
    contract(&DynamoDbEventStore::new(client.clone(), &table), "stripe").await;
    // C29: DynamoDB's TTL reads a Number attribute in epoch seconds.
    let item = client
        .get_item()
        .table_name(&table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("stripe#evt_a".into()),
        )
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let ttl = match item.get("expires_at") {
        Some(aws_sdk_dynamodb::types::AttributeValue::N(n)) => n.parse::<i64>().unwrap(),
        other => panic!("expires_at must be a Number, got {other:?}"),
    };
    assert!((NOW / 1000..100_000_000_000).contains(&ttl), "{ttl}");
}

#[tokio::test]
async fn dynamodb_unreachable_is_unavailable_not_a_claim() {
    let config = testing::config_for("http://127.0.0.1:9").await;
    let store = DynamoDbEventStore::new(aws_sdk_dynamodb::Client::new(&config), "t");
    let r = store.claim(&req("stripe#evt_x", "aa", NOW, 30_000)).await;
    assert!(
        matches!(
            r,
            Err(StoreError::Unavailable {
                operation: "claim",
                ..
            })
        ),
        "{r:?}"
    );
}
