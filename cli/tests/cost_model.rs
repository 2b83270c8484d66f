//! The cost model's request counts, from the real clients against moto (`./scripts/test`
//! starts it): what AWS bills per webhook. A new event costs one `SendMessage`, two DynamoDB
//! writes (the claim and the completion) of one write unit each, and no read; a duplicate costs
//! one conditional write and no read. `scripts/bench` turns these counts into dollars per
//! million webhooks (`BENCHMARKS.md`).

use std::sync::Arc;

use doorbell::clock::{Clock, SystemClock};
use doorbell::handler::{Event, Handler, HandlerOutcome, HandlerRegistry};
use doorbell::queue::SqsQueue;
use doorbell::store::DynamoDbEventStore;
use doorbell::testing::{self, RequestCounter};
use doorbell_cli::pipeline::Pipeline;
use doorbell_cli::samples::{self, DEV_STRIPE_SECRET};
use doorbell_worker::WorkerConfig;
use doorbell_worker::poller::EventSource;

/// Headers and body of one delivery.
type Delivery = (Vec<(String, String)>, Vec<u8>);

struct Noop;

#[async_trait::async_trait]
impl Handler for Noop {
    async fn handle(&self, _e: &Event<'_>) -> HandlerOutcome {
        HandlerOutcome::Ok
    }
}

/// DynamoDB's item size for billing: the lengths of attribute names plus values (strings as
/// UTF-8 bytes, numbers about 1 byte per 2 digits + 1), per
/// <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html>.
fn item_bytes(
    item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
) -> usize {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    item.iter()
        .map(|(k, v)| {
            k.len()
                + match v {
                    A::S(s) => s.len(),
                    A::N(n) => n.len().div_ceil(2) + 1,
                    A::Bool(_) | A::Null(_) => 1,
                    other => format!("{other:?}").len(),
                }
        })
        .sum()
}

#[tokio::test]
async fn a_new_event_costs_one_send_and_two_one_unit_writes_and_a_duplicate_one_write_no_read() {
    let config = testing::sdk_config().await;
    let (sqs_count, ddb_count) = (RequestCounter::default(), RequestCounter::default());
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&config)
            .interceptor(sqs_count.clone())
            .build(),
    );
    let ddb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&config)
            .interceptor(ddb_count.clone())
            .build(),
    );
    let name = testing::unique("cost");
    let (queue_url, _dlq) = testing::create_queue_with_dlq(&sqs, &name, 5, 1).await;
    let table = testing::unique("cost-events");
    DynamoDbEventStore::create_table(&ddb, &table)
        .await
        .unwrap();
    let plain_ddb = aws_sdk_dynamodb::Client::new(&config);
    let before = (sqs_count.snapshot(), ddb_count.snapshot());

    let store = Arc::new(DynamoDbEventStore::new(ddb.clone(), &table));
    let mut handlers = HandlerRegistry::new();
    handlers.register("stripe", "payment_intent.succeeded", Arc::new(Noop));
    let p = Pipeline::with_handlers(
        Arc::new(doorbell::catalog::StaticCatalog::new(
            doorbell::Sources::from_json(&samples::dev_sources_json()).unwrap(),
        )),
        Arc::new(SqsQueue::new(sqs.clone(), &queue_url).with_wait_time_seconds(0)),
        store,
        handlers,
        Arc::new(SystemClock),
        EventSource {
            arn: "arn:aws:sqs:us-east-1:123456789012:cost".into(),
            region: "us-east-1".into(),
            batch_size: 10,
        },
        WorkerConfig::default(),
    );
    let deliveries: Vec<Delivery> = (0..10)
        .map(|i| {
            let body = samples::STRIPE_PAYMENT_INTENT_SUCCEEDED
                .replace("evt_3QdemoPaymentIntent0001", &format!("evt_cost_{i:04}"))
                .into_bytes();
            (
                samples::stripe_headers(DEV_STRIPE_SECRET, SystemClock.now_s(), &body),
                body,
            )
        })
        .collect();
    let drain = || async {
        for _ in 0..10 {
            if p.poll_once().await.unwrap().is_empty() {
                break;
            }
        }
    };
    // Every delivery answered 2xx, then the queue worked off.
    let deliver_all = || async {
        for (h, b) in &deliveries {
            assert!(
                p.post("/webhooks/stripe", h, b.clone())
                    .await
                    .status
                    .is_success()
            );
        }
        drain().await;
    };
    let delta = |c: &RequestCounter, before: &std::collections::BTreeMap<String, u64>, op: &str| {
        c.get(op) - before.get(op).copied().unwrap_or(0)
    };

    // Ten new events.
    deliver_all().await;
    let sends = delta(&sqs_count, &before.0, "SQS.SendMessage");
    let writes = delta(&ddb_count, &before.1, "DynamoDB.UpdateItem")
        + delta(&ddb_count, &before.1, "DynamoDB.PutItem");
    let reads = delta(&ddb_count, &before.1, "DynamoDB.GetItem")
        + delta(&ddb_count, &before.1, "DynamoDB.Query");
    println!(
        "10 new events: {:?} {:?}",
        sqs_count.snapshot(),
        ddb_count.snapshot()
    );
    assert_eq!(sends, 10, "one SendMessage per webhook");
    assert_eq!(
        writes, 20,
        "two writes per new event: the claim and the completion"
    );
    assert_eq!(reads, 0, "no read on the path");

    // Every item stays within one 1 KB write unit.
    let item = plain_ddb
        .get_item()
        .table_name(&table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("stripe#evt_cost_0000".into()),
        )
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let size = item_bytes(&item);
    println!("processed item: {size} bytes");
    assert!(
        size <= 1024,
        "{size} bytes: more than one write unit per write"
    );

    // The same ten delivered again (provider retries).
    let mid = (sqs_count.snapshot(), ddb_count.snapshot());
    deliver_all().await;
    let writes = delta(&ddb_count, &mid.1, "DynamoDB.UpdateItem")
        + delta(&ddb_count, &mid.1, "DynamoDB.PutItem");
    let reads = delta(&ddb_count, &mid.1, "DynamoDB.GetItem");
    println!(
        "10 duplicates: {:?} {:?}",
        sqs_count.snapshot(),
        ddb_count.snapshot()
    );
    assert_eq!(writes, 10, "one conditional write per duplicate");
    assert_eq!(reads, 0, "the refused claim returns the old item: no read");
}
