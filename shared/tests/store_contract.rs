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
        content_keyed: false,
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
            stored_sha256: "aa".into(),
            stored_event_type: "payment_intent.succeeded".into(),
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
        conflicts: 0,
        last_conflict_at_ms: None,
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
    old.event_type = "payment_intent.succeeded".into();
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

/// One row of the claim rule ([`doorbell::store::decide`]): a record already under the key
/// (or none), a claim, and what the claim must find.
struct Case {
    name: &'static str,
    /// `None`: no record.
    status: Option<Status>,
    lease_ms: Option<i64>,
    updated_ms: Option<i64>,
    /// Dedupe window end, epoch seconds.
    expires_s: Option<i64>,
    stored_type: &'static str,
    stored_sha: &'static str,
    /// The claim's event type and body digest.
    claim_type: &'static str,
    claim_sha: &'static str,
    content_keyed: bool,
    expect: &'static str,
}

const T: &str = "payment_intent.succeeded";
const LIVE: Option<i64> = Some(NOW + 60_000);
const ENDED: Option<i64> = Some(NOW - 1);
const WINDOW_OPEN: Option<i64> = Some(NOW / 1000 + 86_400);
const WINDOW_OVER: Option<i64> = Some(NOW / 1000 - 86_400);

fn cases() -> Vec<Case> {
    let base = || Case {
        name: "",
        status: None,
        lease_ms: None,
        updated_ms: Some(NOW - 1_000),
        expires_s: WINDOW_OPEN,
        stored_type: T,
        stored_sha: "aa",
        claim_type: T,
        claim_sha: "aa",
        content_keyed: false,
        expect: "",
    };
    use Status::*;
    vec![
        Case {
            name: "no record",
            expect: "claimed",
            ..base()
        },
        Case {
            name: "processed, same event",
            status: Some(Processed),
            expect: "duplicate",
            ..base()
        },
        Case {
            name: "failed, same event (retry or redrive)",
            status: Some(Failed),
            expect: "claimed",
            ..base()
        },
        Case {
            name: "in progress, live lease",
            status: Some(InProgress),
            lease_ms: LIVE,
            expect: "in_progress",
            ..base()
        },
        Case {
            name: "in progress, lease ended (dead worker)",
            status: Some(InProgress),
            lease_ms: ENDED,
            expect: "claimed",
            ..base()
        },
        Case {
            name: "in progress, no lease, updated recently",
            status: Some(InProgress),
            expect: "in_progress",
            ..base()
        },
        Case {
            name: "in progress, no lease, stale",
            status: Some(InProgress),
            updated_ms: Some(NOW - 900_001),
            expect: "claimed",
            ..base()
        },
        Case {
            name: "processed, other body",
            status: Some(Processed),
            claim_sha: "bb",
            expect: "conflict",
            ..base()
        },
        Case {
            name: "failed, other body",
            status: Some(Failed),
            claim_sha: "bb",
            expect: "conflict",
            ..base()
        },
        Case {
            name: "in progress, lease ended, other body",
            status: Some(InProgress),
            lease_ms: ENDED,
            claim_sha: "bb",
            expect: "conflict",
            ..base()
        },
        Case {
            name: "in progress, live lease, other body",
            status: Some(InProgress),
            lease_ms: LIVE,
            claim_sha: "bb",
            expect: "in_progress",
            ..base()
        },
        Case {
            name: "processed, replayed under another type",
            status: Some(Processed),
            claim_type: "orders/paid",
            expect: "conflict",
            ..base()
        },
        Case {
            name: "failed, replayed under another type",
            status: Some(Failed),
            claim_type: "orders/paid",
            expect: "conflict",
            ..base()
        },
        Case {
            name: "content key, processed, re-encoded body",
            status: Some(Processed),
            claim_sha: "bb",
            content_keyed: true,
            expect: "duplicate",
            ..base()
        },
        Case {
            name: "content key, failed, re-encoded body",
            status: Some(Failed),
            claim_sha: "bb",
            content_keyed: true,
            expect: "claimed",
            ..base()
        },
        Case {
            name: "content key, processed, another type",
            status: Some(Processed),
            claim_type: "orders/paid",
            content_keyed: true,
            expect: "conflict",
            ..base()
        },
        Case {
            name: "window over, processed",
            status: Some(Processed),
            expires_s: WINDOW_OVER,
            expect: "claimed",
            ..base()
        },
        Case {
            name: "window over, processed, other body",
            status: Some(Processed),
            expires_s: WINDOW_OVER,
            claim_sha: "bb",
            expect: "claimed",
            ..base()
        },
        Case {
            name: "window over, dead worker, other body (a day later)",
            status: Some(InProgress),
            lease_ms: ENDED,
            expires_s: WINDOW_OVER,
            claim_sha: "bb",
            expect: "claimed",
            ..base()
        },
        Case {
            name: "window over, live lease",
            status: Some(InProgress),
            lease_ms: LIVE,
            expires_s: WINDOW_OVER,
            expect: "in_progress",
            ..base()
        },
        Case {
            name: "no window recorded, processed",
            status: Some(Processed),
            expires_s: None,
            expect: "duplicate",
            ..base()
        },
    ]
}

fn outcome_name(o: &ClaimOutcome) -> &'static str {
    match o {
        ClaimOutcome::Claimed { .. } => "claimed",
        ClaimOutcome::Duplicate => "duplicate",
        ClaimOutcome::InProgress { .. } => "in_progress",
        ClaimOutcome::Conflict { .. } => "conflict",
    }
}

/// Runs every [`cases`] row against `store`, and checks [`doorbell::store::decide`] agrees.
async fn claim_rule<S: EventStore>(store: &S, prefix: &str) {
    for (i, c) in cases().into_iter().enumerate() {
        let key = format!("{prefix}#rule-{i}");
        let mut claim = req(&key, c.claim_sha, NOW, 30_000);
        claim.event_type = c.claim_type.into();
        claim.content_keyed = c.content_keyed;
        let existing = c.status.map(|status| EventRecord {
            key: key.clone(),
            source: "stripe".into(),
            provider: "stripe".into(),
            event_id: format!("rule-{i}"),
            event_type: c.stored_type.into(),
            status,
            attempts: 1,
            received_at: "2023-11-14T22:13:20.000Z".into(),
            processed_at_ms: None,
            lease_expires_at_ms: c.lease_ms,
            updated_at_ms: c.updated_ms,
            expires_at_s: c.expires_s,
            body_sha256: c.stored_sha.into(),
            last_error: None,
            outcome: None,
            payload: None,
            conflicts: 0,
            last_conflict_at_ms: None,
        });
        if let Some(r) = &existing {
            store.put_record(r).await.unwrap();
        }
        let decided = doorbell::store::decide(existing.as_ref(), &claim)
            .as_ref()
            .map_or("claimed", outcome_name);
        assert_eq!(decided, c.expect, "decide(): {}", c.name);
        let got = store.claim(&claim).await.unwrap();
        assert_eq!(outcome_name(&got), c.expect, "{}: {got:?}", c.name);
        let after = store.get(&key).await.unwrap().unwrap();
        if c.expect == "claimed" {
            assert_eq!(
                (
                    after.status,
                    after.event_type.as_str(),
                    after.body_sha256.as_str()
                ),
                (Status::InProgress, c.claim_type, c.claim_sha),
                "{}",
                c.name
            );
        } else {
            assert_eq!(
                Some(&after),
                existing.as_ref(),
                "{}: refused claims write nothing",
                c.name
            );
        }
    }
}

#[tokio::test]
async fn sqlite_store_applies_the_claim_rule_table() {
    claim_rule(&SqliteEventStore::in_memory().unwrap(), "stripe").await;
}

#[tokio::test]
async fn dynamodb_store_applies_the_claim_rule_table_on_moto() {
    let config = testing::sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let table = testing::unique("claim-rule");
    DynamoDbEventStore::create_table(&client, &table)
        .await
        .unwrap();
    claim_rule(&DynamoDbEventStore::new(client, &table), "stripe").await;
}

async fn conflicts_are_counted<S: EventStore>(store: &S) {
    let key = "stripe#evt_conflict";
    store.claim(&req(key, "aa", NOW, 30_000)).await.unwrap();
    store.complete(key, 1, "handled", NOW + 1).await.unwrap();
    store.record_conflict(key, NOW + 5).await.unwrap();
    store.record_conflict(key, NOW + 9).await.unwrap();
    let r = store.get(key).await.unwrap().unwrap();
    assert_eq!(
        (
            r.status,
            r.conflicts,
            r.last_conflict_at_ms,
            r.body_sha256.as_str()
        ),
        (Status::Processed, 2, Some(NOW + 9), "aa")
    );
    store.record_conflict("stripe#never", NOW).await.unwrap();
    assert!(
        store.get("stripe#never").await.unwrap().is_none(),
        "a conflict never creates a record"
    );
}

#[tokio::test]
async fn sqlite_store_counts_conflicts() {
    conflicts_are_counted(&SqliteEventStore::in_memory().unwrap()).await;
}

#[tokio::test]
async fn dynamodb_store_counts_conflicts_on_moto() {
    let config = testing::sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let table = testing::unique("conflicts");
    DynamoDbEventStore::create_table(&client, &table)
        .await
        .unwrap();
    conflicts_are_counted(&DynamoDbEventStore::new(client, &table)).await;
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
