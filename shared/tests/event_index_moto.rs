//! The DynamoDB store as the operations layer's [`EventIndex`], on a moto server
//! (`./scripts/test` starts it): the sparse `alerts` index and `BatchGetItem`, plus the
//! unprocessed-keys retry against canned answers.

use std::collections::BTreeSet;

use aws_sdk_dynamodb::types::AttributeValue;
use doorbell::ops::{AlertQuery, EventIndex};
use doorbell::store::{ClaimOutcome, ClaimRequest, DynamoDbEventStore, EventStore, StoreError};
use doorbell::testing::{self, FailingEndpoint, Reply, RequestCounter};
use serde_json::json;

const NOW: i64 = 1_700_000_000_000;

fn req(source: &str, key: &str, now_ms: i64) -> ClaimRequest {
    ClaimRequest {
        key: key.into(),
        source: source.into(),
        provider: "stripe".into(),
        event_id: key.rsplit('#').next().unwrap().into(),
        event_type: "invoice.paid".into(),
        body_sha256: "aa".into(),
        received_at: "2023-11-14T22:13:20.000Z".into(),
        payload: None,
        now_ms,
        lease_expires_at_ms: now_ms + 30_000,
        expires_at_s: now_ms / 1000 + 86_400,
        stale_after_ms: 900_000,
        content_keyed: false,
    }
}

struct Table {
    client: aws_sdk_dynamodb::Client,
    table: String,
    store: DynamoDbEventStore,
    requests: RequestCounter,
}

async fn table() -> Table {
    let config = testing::sdk_config().await;
    let requests = RequestCounter::default();
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&config)
            .interceptor(requests.clone())
            .build(),
    );
    let table = testing::unique("doorbell-index");
    DynamoDbEventStore::create_table(&client, &table)
        .await
        .unwrap();
    let store = DynamoDbEventStore::new(client.clone(), &table);
    Table {
        client,
        table,
        store,
        requests,
    }
}

impl Table {
    async fn raw(&self, key: &str) -> std::collections::HashMap<String, AttributeValue> {
        self.client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.into()))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
            .unwrap()
    }

    async fn claim(&self, source: &str, key: &str, now_ms: i64) -> u32 {
        match self.store.claim(&req(source, key, now_ms)).await.unwrap() {
            ClaimOutcome::Claimed { attempts } => attempts,
            other => panic!("{key}: {other:?}"),
        }
    }

    async fn fail(&self, source: &str, key: &str, now_ms: i64) {
        let attempt = self.claim(source, key, now_ms).await;
        self.store
            .fail(key, attempt, "boom", now_ms + 1)
            .await
            .unwrap();
    }

    async fn alerts(&self, failed: bool, conflicts: bool, source: Option<&str>) -> Vec<String> {
        self.store
            .alerts(&AlertQuery {
                failed,
                conflicts,
                source: source.map(str::to_owned),
                limit: 1000,
            })
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.key)
            .collect()
    }
}

#[tokio::test]
async fn a_successful_event_never_carries_the_alert_attribute() {
    let t = table().await;
    let attempt = t.claim("shop", "shop#evt_ok", NOW).await;
    t.store
        .complete("shop#evt_ok", attempt, "handled", NOW + 5)
        .await
        .unwrap();
    let item = t.raw("shop#evt_ok").await;
    assert!(
        !item.contains_key("alert") && !item.contains_key("alert_at"),
        "a processed item must stay out of the alerts index: {item:?}"
    );
    assert!(t.alerts(true, true, None).await.is_empty());
}

#[tokio::test]
async fn failures_are_listed_newest_first_until_completed_or_replayed() {
    let t = table().await;
    t.fail("shop", "shop#evt_1", NOW).await;
    t.fail("shop", "shop#evt_2", NOW + 1_000).await;
    t.fail("shop", "shop#evt_3", NOW + 2_000).await;
    let item = t.raw("shop#evt_1").await;
    assert_eq!(item.get("alert"), Some(&AttributeValue::S("FAILED".into())));
    assert_eq!(
        item.get("alert_at"),
        Some(&AttributeValue::N((NOW + 1).to_string()))
    );
    assert_eq!(
        t.alerts(true, false, None).await,
        ["shop#evt_3", "shop#evt_2", "shop#evt_1"]
    );
    assert!(t.alerts(false, true, None).await.is_empty());

    // A retry that succeeds takes the item out of the index.
    let attempt = t.claim("shop", "shop#evt_2", NOW + 10_000).await;
    t.store
        .complete("shop#evt_2", attempt, "handled", NOW + 10_001)
        .await
        .unwrap();
    assert!(!t.raw("shop#evt_2").await.contains_key("alert"));
    // So does a replay's outcome.
    assert!(
        t.store
            .record_replay("shop#evt_3", "handled", NOW + 20_000)
            .await
            .unwrap()
    );
    assert!(!t.raw("shop#evt_3").await.contains_key("alert"));
    assert_eq!(t.alerts(true, true, None).await, ["shop#evt_1"]);

    // The limit keeps the newest.
    t.fail("shop", "shop#evt_4", NOW + 30_000).await;
    let newest = t
        .store
        .alerts(&AlertQuery {
            failed: true,
            conflicts: false,
            source: None,
            limit: 1,
        })
        .await
        .unwrap();
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0].key, "shop#evt_4");
    assert_eq!(newest[0].last_error.as_deref(), Some("boom"));
}

#[tokio::test]
async fn conflicts_are_listed_apart_from_failures() {
    let t = table().await;
    let attempt = t.claim("shop", "shop#evt_c", NOW).await;
    t.store
        .complete("shop#evt_c", attempt, "handled", NOW + 1)
        .await
        .unwrap();
    t.store
        .record_conflict("shop#evt_c", NOW + 2_000)
        .await
        .unwrap();
    t.fail("shop", "shop#evt_f", NOW + 1_000).await;
    assert_eq!(t.alerts(false, true, None).await, ["shop#evt_c"]);
    assert_eq!(t.alerts(true, false, None).await, ["shop#evt_f"]);
    assert_eq!(
        t.alerts(true, true, None).await,
        ["shop#evt_c", "shop#evt_f"]
    );
    let c = &t
        .store
        .alerts(&AlertQuery {
            failed: false,
            conflicts: true,
            source: None,
            limit: 10,
        })
        .await
        .unwrap()[0];
    assert_eq!(c.conflicts, 1);
    assert_eq!(c.last_conflict_at_ms, Some(NOW + 2_000));
}

#[tokio::test]
async fn the_source_filter_keeps_one_source_and_no_request_scans() {
    let t = table().await;
    for i in 0..4 {
        t.fail("shop", &format!("shop#evt_{i}"), NOW + i).await;
        t.fail("git", &format!("git#d_{i}"), NOW + 100 + i).await;
    }
    let before = t.requests.snapshot();
    let shop = t.alerts(true, true, Some("shop")).await;
    assert_eq!(
        shop,
        ["shop#evt_3", "shop#evt_2", "shop#evt_1", "shop#evt_0"]
    );
    let git = t
        .store
        .alerts(&AlertQuery {
            failed: true,
            conflicts: false,
            source: Some("git".into()),
            limit: 2,
        })
        .await
        .unwrap();
    assert_eq!(
        git.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        ["git#d_3", "git#d_2"]
    );
    let after = t.requests.snapshot();
    let delta =
        |op: &str| after.get(op).copied().unwrap_or(0) - before.get(op).copied().unwrap_or(0);
    assert_eq!(delta("DynamoDB.Scan"), 0);
    // One query per kind for the first listing, one for the second.
    assert_eq!(delta("DynamoDB.Query"), 3);
}

#[tokio::test]
async fn get_many_reads_more_than_a_hundred_keys_in_batches() {
    let t = table().await;
    let existing: Vec<String> = (0..230).map(|i| format!("shop#evt_{i:03}")).collect();
    for (i, k) in existing.iter().enumerate() {
        t.claim("shop", k, NOW + i as i64).await;
    }
    let mut asked: Vec<String> = existing.clone();
    asked.extend((0..20).map(|i| format!("shop#missing_{i}")));
    // A key asked twice is read once (BatchGetItem refuses duplicates).
    asked.push(existing[0].clone());
    let before = t.requests.get("DynamoDB.BatchGetItem");
    let got = t.store.get_many(&asked).await.unwrap();
    assert_eq!(t.requests.get("DynamoDB.BatchGetItem") - before, 3);
    let keys: BTreeSet<String> = got.iter().map(|r| r.key.clone()).collect();
    assert_eq!(got.len(), 230);
    assert_eq!(keys, existing.iter().cloned().collect());
    assert!(got.iter().all(|r| r.event_type == "invoice.paid"));
    assert!(t.store.get_many(&[]).await.unwrap().is_empty());
}

fn item(key: &str) -> serde_json::Value {
    json!({"pk": {"S": key}, "status": {"S": "FAILED"}, "source": {"S": "shop"},
           "event_id": {"S": key.rsplit('#').next().unwrap()}, "event_type": {"S": "t"}})
}

fn unprocessed(table: &str, keys: &[&str]) -> serde_json::Value {
    json!({table: {"Keys": keys.iter().map(|k| json!({"pk": {"S": k}})).collect::<Vec<_>>(),
                   "ConsistentRead": true}})
}

#[tokio::test]
async fn get_many_asks_again_for_unprocessed_keys() {
    let endpoint = FailingEndpoint::start(
        vec![
            Reply::json(
                200,
                json!({"Responses": {"t": [item("shop#a")]},
                       "UnprocessedKeys": unprocessed("t", &["shop#b", "shop#c"])}),
            ),
            Reply::json(
                200,
                json!({"Responses": {"t": [item("shop#b")]},
                       "UnprocessedKeys": unprocessed("t", &["shop#c"])}),
            ),
            Reply::json(
                200,
                json!({"Responses": {"t": [item("shop#c")]}, "UnprocessedKeys": {}}),
            ),
        ],
        Reply::json_error(500, "InternalServerError", "unexpected call"),
    )
    .await;
    let store = DynamoDbEventStore::new(
        aws_sdk_dynamodb::Client::new(&testing::config_for(endpoint.url()).await),
        "t",
    );
    let keys: Vec<String> = ["shop#a", "shop#b", "shop#c"].map(String::from).to_vec();
    let got = store.get_many(&keys).await.unwrap();
    let mut got: Vec<String> = got.into_iter().map(|r| r.key).collect();
    got.sort();
    assert_eq!(got, keys);
    assert_eq!(endpoint.calls(), 3);
}

#[tokio::test]
async fn get_many_gives_up_on_keys_left_unprocessed() {
    let endpoint = FailingEndpoint::start(
        vec![],
        Reply::json(
            200,
            json!({"Responses": {"t": []}, "UnprocessedKeys": unprocessed("t", &["shop#a"])}),
        ),
    )
    .await;
    let store = DynamoDbEventStore::new(
        aws_sdk_dynamodb::Client::new(&testing::config_for(endpoint.url()).await),
        "t",
    );
    let err = store.get_many(&["shop#a".to_owned()]).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Unavailable { operation: "get_many", message } if message.contains("unprocessed")),
        "{err:?}"
    );
    assert_eq!(endpoint.calls(), 8);
}
