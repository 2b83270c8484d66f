//! The operations layer's AWS adapter ([`doorbell::ops::aws`]) on a moto server
//! (`./scripts/test` starts it): SQS queues, the DynamoDB table with its alerts index, the
//! archive bucket read by the S3 archive reader, CloudWatch metrics, and a CloudFormation
//! stack whose outputs name them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use aws_config::SdkConfig;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use doorbell::archive::{ArchiveLayout, hour_path};
use doorbell::clock::{Clock, SystemClock};
use doorbell::envelope::Envelope;
use doorbell::metrics::{self, MetricsDoc, OUTCOME, SOURCE};
use doorbell::ops::aws::{self, AwsTarget};
use doorbell::ops::{AuditLine, AuditSink, EventFilter, EventStatus, MoveOptions, Ops, OpsError};
use doorbell::queue::{ClaimCheckQueue, EventQueue, OutgoingMessage, SqsQueue};
use doorbell::store::{ClaimOutcome, ClaimRequest, DynamoDbEventStore, EventStore};
use doorbell::verify::{Dedupe, Verified};
use doorbell::{Provider, Secret, SourceConfig, testing};

/// One deployment's resources, made for one test.
struct Deployment {
    config: SdkConfig,
    sqs: aws_sdk_sqs::Client,
    s3: aws_sdk_s3::Client,
    store: DynamoDbEventStore,
    target: AwsTarget,
    /// A source name no other test uses.
    source: String,
}

fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .build(),
    )
}

async fn bucket(s3: &aws_sdk_s3::Client, prefix: &str) -> String {
    let name = testing::unique(prefix).to_lowercase();
    s3.create_bucket().bucket(&name).send().await.unwrap();
    name
}

fn now_ms() -> i64 {
    SystemClock.now_ms()
}

async fn deployment() -> Deployment {
    let config = testing::sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let s3 = s3_client(&config);
    let name = testing::unique("doorbell-ops");
    let (queue_url, dlq_url) = testing::create_queue_with_dlq(&sqs, &name, 5, 30).await;
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    DynamoDbEventStore::create_table(&ddb, &name).await.unwrap();
    let target = AwsTarget {
        queue_url: Some(queue_url),
        dlq_url: Some(dlq_url),
        table: Some(name.clone()),
        payload_bucket: Some(bucket(&s3, "doorbell-payloads").await),
        archive_bucket: Some(bucket(&s3, "doorbell-archive").await),
        ..Default::default()
    };
    Deployment {
        store: DynamoDbEventStore::new(ddb, &name),
        config,
        sqs,
        s3,
        target,
        source: testing::unique("shop"),
    }
}

fn envelope(source: &str, id: &str, event_type: &str, received_ms: i64) -> Envelope {
    let body = format!(r#"{{"id":"{id}","type":"{event_type}"}}"#);
    envelope_with_body(source, id, event_type, body.as_bytes(), received_ms)
}

fn envelope_with_body(
    source: &str,
    id: &str,
    event_type: &str,
    body: &[u8],
    received_ms: i64,
) -> Envelope {
    Envelope::new(
        &SourceConfig::new(source, Provider::Stripe, vec![Secret::new("whsec_test")]),
        Verified {
            event_id: id.into(),
            event_type: event_type.into(),
            occurred_at_ms: None,
            dedupe: Dedupe::EventId,
            reply: None,
            headers: vec![],
        },
        body,
        Some("application/json"),
        received_ms,
    )
}

fn message(e: &Envelope) -> OutgoingMessage {
    OutgoingMessage {
        body: e.to_json(),
        attributes: vec![
            ("source", e.source.clone()),
            ("event_type", e.event_type.clone()),
        ],
        group_id: None,
        deduplication_id: None,
    }
}

impl Deployment {
    async fn ops(&self) -> Ops {
        aws::open(&self.target, &self.config, Arc::new(SystemClock))
            .await
            .unwrap()
    }

    fn queue(&self) -> SqsQueue {
        SqsQueue::new(self.sqs.clone(), self.target.queue_url.clone().unwrap())
    }

    fn dlq(&self) -> SqsQueue {
        SqsQueue::new(self.sqs.clone(), self.target.dlq_url.clone().unwrap())
    }

    fn envelope(&self, id: &str, event_type: &str) -> Envelope {
        envelope(&self.source, id, event_type, now_ms() - 60_000)
    }

    async fn dead_letter(&self, e: &Envelope) {
        self.dlq().send(message(e)).await.unwrap();
    }

    /// Writes `envelopes` to the archive bucket as one JSON Lines object, in the hour the
    /// stack's stream would deliver them to.
    async fn archive(&self, envelopes: &[&Envelope]) {
        let at = envelopes[0].received_at_ms().unwrap();
        let lines: Vec<String> = envelopes.iter().map(|e| e.to_json()).collect();
        let key = format!(
            "archive/{}{}.jsonl",
            hour_path(ArchiveLayout::Partitioned, at),
            testing::unique("doorbell-archive")
        );
        self.s3
            .put_object()
            .bucket(self.target.archive_bucket.as_ref().unwrap())
            .key(key)
            .body(lines.join("\n").into_bytes().into())
            .send()
            .await
            .unwrap();
    }

    async fn claim(&self, e: &Envelope) -> u32 {
        let now = now_ms();
        let req = ClaimRequest {
            key: e.idempotency_key.clone(),
            source: e.source.clone(),
            provider: e.provider.clone(),
            event_id: e.event_id.clone(),
            event_type: e.event_type.clone(),
            body_sha256: e.body_sha256.clone(),
            received_at: e.received_at.clone(),
            payload: None,
            now_ms: now,
            lease_expires_at_ms: now + 30_000,
            expires_at_s: now / 1000 + 86_400,
            stale_after_ms: 900_000,
            content_keyed: e.key_is_content_digest(),
        };
        match self.store.claim(&req).await.unwrap() {
            ClaimOutcome::Claimed { attempts } => attempts,
            other => panic!("{}: {other:?}", e.idempotency_key),
        }
    }

    async fn processed(&self, e: &Envelope) {
        let attempt = self.claim(e).await;
        self.store
            .complete(&e.idempotency_key, attempt, "handled", now_ms())
            .await
            .unwrap();
    }

    async fn failed(&self, e: &Envelope) {
        let attempt = self.claim(e).await;
        self.store
            .fail(&e.idempotency_key, attempt, "handler: boom", now_ms())
            .await
            .unwrap();
    }
}

/// Every message in `queue`, taken (hidden for a minute) until a take brings nothing new:
/// the event id of each envelope.
async fn event_ids(queue: &SqsQueue) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut ids = Vec::new();
    loop {
        let batch = queue.take(10, 60).await.unwrap();
        let mut new = 0;
        for m in batch {
            if seen.insert(m.message_id.clone()) {
                new += 1;
                ids.push(Envelope::parse(&m.body).unwrap().event_id);
            }
        }
        if new == 0 {
            break;
        }
    }
    ids.sort();
    ids
}

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

fn actions(lines: &[AuditLine]) -> Vec<(&'static str, String)> {
    lines
        .iter()
        .map(|l| (l.action, l.event_id.clone().unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn peeking_the_dead_letter_queue_leaves_every_message_there() {
    let d = deployment().await;
    for (id, t) in [
        ("evt_1", "invoice.paid"),
        ("evt_2", "invoice.payment_failed"),
        ("evt_3", "customer.created"),
    ] {
        d.dead_letter(&d.envelope(id, t)).await;
    }
    let ops = d.ops().await;
    let first = ops.dead_letters(100).await.unwrap();
    let ids = |v: &[doorbell::ops::DeadLetter]| {
        let mut ids: Vec<String> = v
            .iter()
            .map(|d| d.envelope.as_ref().unwrap().event_id.clone())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&first), sorted(&["evt_1", "evt_2", "evt_3"]));
    assert!(first.iter().all(|m| m.reason == "max-receives"));
    assert!(
        first
            .iter()
            .all(|m| m.status == Some(EventStatus::Received))
    );
    // Made visible again at once: a second peek sees them all.
    let second = ops.dead_letters(100).await.unwrap();
    assert_eq!(ids(&second), ids(&first));
    let stats = d.dlq().stats().await.unwrap();
    assert_eq!((stats.visible, stats.in_flight), (3, 0));
}

#[tokio::test]
async fn claim_checked_dead_letters_are_read_from_the_payload_bucket() {
    let d = deployment().await;
    let ops = d.ops().await;
    let big = format!(r#"{{"id":"evt_big","pad":"{}"}}"#, "x".repeat(300_000));
    let e = envelope_with_body(
        &d.source,
        "evt_big",
        "invoice.paid",
        big.as_bytes(),
        now_ms(),
    );
    let payloads = Arc::new(doorbell::payload::S3PayloadStore::from_conf(
        &d.config,
        d.target.payload_bucket.clone().unwrap(),
    ));
    ClaimCheckQueue::new(Arc::new(d.dlq()), payloads)
        .send(message(&e))
        .await
        .unwrap();
    let dead = ops.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].envelope.as_ref(), Some(&e));
}

#[tokio::test]
async fn redrive_moves_only_the_matching_types_and_skips_processed_events() {
    let d = deployment().await;
    let paid = d.envelope("evt_paid", "invoice.paid");
    let done = d.envelope("evt_done", "invoice.payment_failed");
    let customer = d.envelope("evt_cust", "customer.created");
    d.failed(&paid).await;
    d.processed(&done).await;
    d.failed(&customer).await;
    for e in [&paid, &done, &customer] {
        d.dead_letter(e).await;
    }
    let ops = d.ops().await;
    let filter = EventFilter {
        source: Some(d.source.clone()),
        ..Default::default()
    }
    .with_type_glob("invoice.*")
    .unwrap();
    let mut audit: Vec<AuditLine> = Vec::new();
    let summary = ops
        .redrive(
            &filter,
            &MoveOptions {
                hold_s: 30,
                ..Default::default()
            },
            &mut audit,
        )
        .await
        .unwrap();
    assert_eq!(summary, BTreeMap::from([("moved", 1), ("skipped", 1)]));
    let mut got = actions(&audit);
    got.sort();
    assert_eq!(
        got,
        vec![("moved", "evt_paid".into()), ("skipped", "evt_done".into())]
    );
    let skipped = audit.iter().find(|l| l.action == "skipped").unwrap();
    assert!(
        skipped
            .reason
            .as_deref()
            .unwrap()
            .contains("already processed"),
        "{skipped:?}"
    );
    assert_eq!(
        audit.iter().find(|l| l.action == "moved").unwrap().key,
        Some(paid.idempotency_key.clone())
    );
    // Sent to the events queue, with its attributes; deleted from the dead-letter queue. What
    // was not moved is visible again at once.
    let sent = d.queue().take(10, 60).await.unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(Envelope::parse(&sent[0].body).unwrap(), paid);
    let mut attrs = sent[0].attributes.clone();
    attrs.sort();
    assert_eq!(
        attrs,
        vec![
            ("event_type".to_owned(), "invoice.paid".to_owned()),
            ("source".to_owned(), d.source.clone()),
        ]
    );
    assert_eq!(event_ids(&d.dlq()).await, sorted(&["evt_cust", "evt_done"]));
}

#[tokio::test]
async fn a_dry_run_moves_nothing_and_max_caps_the_moves() {
    let d = deployment().await;
    for id in ["evt_a", "evt_b", "evt_c"] {
        let e = d.envelope(id, "invoice.paid");
        d.failed(&e).await;
        d.dead_letter(&e).await;
    }
    let ops = d.ops().await;
    let mut audit = Vec::new();
    let summary = ops
        .redrive(
            &EventFilter::default(),
            &MoveOptions {
                dry_run: true,
                hold_s: 30,
                ..Default::default()
            },
            &mut audit,
        )
        .await
        .unwrap();
    assert_eq!(summary, BTreeMap::from([("would-move", 3)]));
    assert!(audit.iter().all(|l| l.action == "would-move"));
    let (q, dlq) = (
        d.queue().stats().await.unwrap(),
        d.dlq().stats().await.unwrap(),
    );
    assert_eq!((q.visible, q.in_flight), (0, 0));
    assert_eq!((dlq.visible, dlq.in_flight), (3, 0));

    let mut audit = Vec::new();
    let summary = ops
        .redrive(
            &EventFilter::default(),
            &MoveOptions {
                max: Some(2),
                hold_s: 30,
                ..Default::default()
            },
            &mut audit,
        )
        .await
        .unwrap();
    assert_eq!(summary, BTreeMap::from([("moved", 2)]));
    let moved: Vec<String> = audit.iter().filter_map(|l| l.event_id.clone()).collect();
    assert_eq!(event_ids(&d.queue()).await, {
        let mut m = moved.clone();
        m.sort();
        m
    });
    let left = event_ids(&d.dlq()).await;
    assert_eq!(left.len(), 1);
    assert!(!moved.contains(&left[0]));
}

/// Publishes `doc` the way CloudWatch extracts an EMF document: each metric under each of
/// its dimension sets, the dimension values from the document's members.
async fn put_emf(cw: &aws_sdk_cloudwatch::Client, doc: &MetricsDoc) {
    let v = doc.to_value();
    let at = DateTime::from_millis(v["_aws"]["Timestamp"].as_i64().unwrap());
    let mut data = Vec::new();
    for directive in v["_aws"]["CloudWatchMetrics"].as_array().unwrap() {
        for set in directive["Dimensions"].as_array().unwrap() {
            for m in directive["Metrics"].as_array().unwrap() {
                let name = m["Name"].as_str().unwrap();
                let mut datum = MetricDatum::builder()
                    .metric_name(name)
                    .value(v[name].as_f64().unwrap())
                    .unit(StandardUnit::from(m["Unit"].as_str().unwrap()))
                    .timestamp(at);
                for key in set.as_array().unwrap() {
                    let key = key.as_str().unwrap();
                    datum = datum.dimensions(
                        Dimension::builder()
                            .name(key)
                            .value(v[key].as_str().unwrap())
                            .build(),
                    );
                }
                data.push(datum.build());
            }
        }
    }
    cw.put_metric_data()
        .namespace(directive_namespace(&v))
        .set_metric_data(Some(data))
        .send()
        .await
        .unwrap();
}

fn directive_namespace(v: &serde_json::Value) -> String {
    v["_aws"]["CloudWatchMetrics"][0]["Namespace"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The worker's documents for one record: `metric` under `[source, outcome]` and `[]`.
fn worker_doc(at_ms: i64, source: &str, metric: metrics::Metric, outcome: &str) -> MetricsDoc {
    MetricsDoc::new(at_ms)
        .dimension(SOURCE, source)
        .dimension(OUTCOME, outcome)
        .put(&[&[SOURCE, OUTCOME], &[]], metric, 1)
}

#[tokio::test]
async fn status_reports_queue_depths_and_counts_from_cloudwatch() {
    let d = deployment().await;
    for id in ["evt_q1", "evt_q2"] {
        d.queue()
            .send(message(&d.envelope(id, "invoice.paid")))
            .await
            .unwrap();
    }
    d.dead_letter(&d.envelope("evt_dead", "invoice.paid")).await;

    let cw = aws_sdk_cloudwatch::Client::new(&d.config);
    let at = now_ms() - 60_000;
    let other = testing::unique("github");
    let records: Vec<(&str, metrics::Metric, &str)> = vec![
        (&d.source, metrics::PROCESSED, "processed"),
        (&d.source, metrics::PROCESSED, "processed"),
        (&d.source, metrics::PROCESSED, "processed"),
        (&d.source, metrics::IGNORED, "ignored"),
        (&d.source, metrics::FAILED, "handler_failed"),
        (&d.source, metrics::FAILED, "handler_failed"),
        (&d.source, metrics::FAILED, "bad_envelope"),
        (&d.source, metrics::DEAD_LETTERED, "rejected"),
        (&d.source, metrics::CONFLICT, "conflict"),
        (&d.source, metrics::DUPLICATE, "duplicate"),
        (&other, metrics::PROCESSED, "processed"),
    ];
    for (source, metric, outcome) in records {
        put_emf(&cw, &worker_doc(at, source, metric, outcome)).await;
    }
    // Ingest's counter, per source only: not a status.
    put_emf(
        &cw,
        &MetricsDoc::new(at).dimension(SOURCE, &d.source).put(
            &[&[SOURCE], &[]],
            metrics::RECEIVED,
            9,
        ),
    )
    .await;
    // Outside the window.
    put_emf(
        &cw,
        &worker_doc(
            now_ms() - 3 * 3_600_000,
            &d.source,
            metrics::PROCESSED,
            "processed",
        ),
    )
    .await;

    let ops = d.ops().await;
    let report = ops.status(3_600_000).await.unwrap();
    assert_eq!(report.counts_from, "CloudWatch");
    assert_eq!(
        (
            report.queue.stats.visible,
            report.queue.stats.in_flight,
            report.dead_letter_queue.stats.visible
        ),
        (2, 0, 1)
    );
    assert_eq!(
        report.counts.get(&d.source),
        Some(&BTreeMap::from([
            (EventStatus::Processed, 3),
            (EventStatus::Ignored, 1),
            (EventStatus::Failed, 3),
            (EventStatus::Conflict, 1),
            (EventStatus::DeadLettered, 1),
        ]))
    );
    assert_eq!(
        report.counts.get(&other),
        Some(&BTreeMap::from([(EventStatus::Processed, 1)]))
    );
}

#[tokio::test]
async fn oldest_message_ages_come_from_the_sqs_metrics() {
    let d = deployment().await;
    let cw = aws_sdk_cloudwatch::Client::new(&d.config);
    let queue = aws::queue_name(d.target.queue_url.as_deref().unwrap()).to_owned();
    let at = DateTime::from_millis(now_ms() - 30_000);
    let datum = |queue: &str, age: f64| {
        MetricDatum::builder()
            .metric_name("ApproximateAgeOfOldestMessage")
            .dimensions(Dimension::builder().name("QueueName").value(queue).build())
            .value(age)
            .unit(StandardUnit::Seconds)
            .timestamp(at)
            .build()
    };
    cw.put_metric_data()
        .namespace("AWS/SQS")
        .metric_data(datum(&queue, 42.0))
        .send()
        .await
        .unwrap();
    let ops = d.ops().await;
    // No data for the dead-letter queue: unknown, not zero.
    assert_eq!(
        ops.counters.oldest_ages_s().await.unwrap(),
        (Some(42), None)
    );
    let report = ops.status(60_000).await.unwrap();
    assert_eq!(report.queue.oldest_age_s, Some(42));
    assert_eq!(report.dead_letter_queue.oldest_age_s, None);
}

#[tokio::test]
async fn listing_failures_reads_the_alerts_index_and_the_dead_letter_queue() {
    let d = deployment().await;
    let failed = d.envelope("evt_failed", "invoice.paid");
    let dead = d.envelope("evt_dead", "invoice.paid");
    let done = d.envelope("evt_done", "invoice.paid");
    d.failed(&failed).await;
    d.failed(&dead).await;
    d.processed(&done).await;
    d.dead_letter(&dead).await;
    d.archive(&[&failed, &dead, &done]).await;
    let ops = d.ops().await;
    let filter = EventFilter {
        statuses: vec![EventStatus::Failed],
        source: Some(d.source.clone()),
        ..Default::default()
    };
    let page = ops.list(&filter, 50, None).await.unwrap();
    let mut rows: Vec<(String, EventStatus)> = page
        .rows
        .iter()
        .map(|r| (r.event_id.clone(), r.status))
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        vec![
            ("evt_dead".into(), EventStatus::DeadLettered),
            ("evt_failed".into(), EventStatus::Failed),
        ]
    );
    assert!(
        page.rows
            .iter()
            .all(|r| r.last_error.as_deref() == Some("handler: boom"))
    );

    // Without a status, the archive's deliveries with their records' statuses.
    let all = ops
        .list(
            &EventFilter {
                source: Some(d.source.clone()),
                ..Default::default()
            },
            50,
            None,
        )
        .await
        .unwrap();
    let mut rows: Vec<(String, EventStatus)> = all
        .rows
        .iter()
        .map(|r| (r.event_id.clone(), r.status))
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        vec![
            ("evt_dead".into(), EventStatus::DeadLettered),
            ("evt_done".into(), EventStatus::Processed),
            ("evt_failed".into(), EventStatus::Failed),
        ]
    );
}

#[tokio::test]
async fn show_gathers_the_record_the_archive_and_the_dead_letters() {
    let d = deployment().await;
    let dead = d.envelope("evt_show", "invoice.paid");
    d.failed(&dead).await;
    d.dead_letter(&dead).await;
    d.archive(&[&dead]).await;
    let ops = d.ops().await;
    for id in [dead.idempotency_key.as_str(), "evt_show"] {
        let details = ops.show(id).await.unwrap();
        assert_eq!(details.len(), 1, "{id}");
        let detail = &details[0];
        assert_eq!(detail.key, dead.idempotency_key);
        let record = detail.record.as_ref().unwrap();
        assert_eq!(record.status, EventStatus::DeadLettered);
        assert_eq!(record.last_error.as_deref(), Some("handler: boom"));
        assert_eq!(detail.deliveries, vec![dead.clone()]);
        assert_eq!(detail.dead_letters.len(), 1);
        assert_eq!(detail.location, "dead-letter queue");
    }
    let missing = ops
        .show(&format!("{}#evt_nowhere", d.source))
        .await
        .unwrap_err();
    assert!(matches!(missing, OpsError::Invalid(_)), "{missing}");
}

/// A CloudFormation template with the outputs a Doorbell stack has, over the resources the
/// operations layer reads.
fn stack_template(name: &str, archive_bucket: &str) -> String {
    serde_json::json!({
        "Resources": {
            "DeadLetterQueue": {"Type": "AWS::SQS::Queue",
                "Properties": {"QueueName": format!("{name}-dlq")}},
            "EventsQueue": {"Type": "AWS::SQS::Queue", "Properties": {
                "QueueName": name,
                "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
                                  "maxReceiveCount": 5}}},
            "EventsTable": {"Type": "AWS::DynamoDB::Table", "Properties": {
                "TableName": name,
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "alert", "AttributeType": "S"},
                    {"AttributeName": "alert_at", "AttributeType": "N"}],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "GlobalSecondaryIndexes": [{"IndexName": "alerts",
                    "KeySchema": [{"AttributeName": "alert", "KeyType": "HASH"},
                                  {"AttributeName": "alert_at", "KeyType": "RANGE"}],
                    "Projection": {"ProjectionType": "ALL"}}]}},
            "ArchiveBucket": {"Type": "AWS::S3::Bucket",
                "Properties": {"BucketName": archive_bucket}}
        },
        "Outputs": {
            "EventsQueueUrl": {"Value": {"Ref": "EventsQueue"}},
            "DeadLetterQueueUrl": {"Value": {"Ref": "DeadLetterQueue"}},
            "EventsTableName": {"Value": {"Ref": "EventsTable"}},
            "ArchiveBucketName": {"Value": {"Ref": "ArchiveBucket"}},
            "ArchivePrefix": {"Value": "archive/"}
        }
    })
    .to_string()
}

#[tokio::test]
async fn a_stack_s_outputs_name_the_resources() {
    let config = testing::sdk_config().await;
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    let name = testing::unique("doorbell-stack");
    let archive_bucket = testing::unique("doorbell-stack-archive").to_lowercase();
    cfn.create_stack()
        .stack_name(&name)
        .template_body(stack_template(&name, &archive_bucket))
        .send()
        .await
        .unwrap();
    let target = AwsTarget {
        stack: Some(name.clone()),
        ..Default::default()
    };
    let found = aws::resolve(&target, &config).await.unwrap();
    assert!(found.queue_url.ends_with(&format!("/{name}")), "{found:?}");
    assert!(
        found.dlq_url.ends_with(&format!("/{name}-dlq")),
        "{found:?}"
    );
    assert_eq!(found.table, name);
    assert_eq!(
        found.archive_bucket.as_deref(),
        Some(archive_bucket.as_str())
    );
    assert_eq!(found.payload_bucket, None);
    assert_eq!(found.archive_prefix, "archive/");

    // The operations layer works through those names.
    let ops = aws::open(&target, &config, Arc::new(SystemClock))
        .await
        .unwrap();
    let source = testing::unique("shop");
    let e = envelope(&source, "evt_stack", "invoice.paid", now_ms() - 60_000);
    let store = DynamoDbEventStore::new(aws_sdk_dynamodb::Client::new(&config), &name);
    let now = now_ms();
    let claimed = store
        .claim(&ClaimRequest {
            key: e.idempotency_key.clone(),
            source: e.source.clone(),
            provider: e.provider.clone(),
            event_id: e.event_id.clone(),
            event_type: e.event_type.clone(),
            body_sha256: e.body_sha256.clone(),
            received_at: e.received_at.clone(),
            payload: None,
            now_ms: now,
            lease_expires_at_ms: now + 30_000,
            expires_at_s: now / 1000 + 86_400,
            stale_after_ms: 900_000,
            content_keyed: false,
        })
        .await
        .unwrap();
    assert_eq!(claimed, ClaimOutcome::Claimed { attempts: 1 });
    store
        .fail(&e.idempotency_key, 1, "boom", now)
        .await
        .unwrap();
    ops.dlq.send(message(&e)).await.unwrap();
    let report = ops.status(60_000).await.unwrap();
    assert_eq!(report.dead_letter_queue.stats.visible, 1);
    let failed = ops
        .list(
            &EventFilter {
                statuses: vec![EventStatus::Failed],
                source: Some(source),
                ..Default::default()
            },
            10,
            None,
        )
        .await
        .unwrap();
    assert_eq!(failed.rows.len(), 1);
    assert_eq!(failed.rows[0].status, EventStatus::DeadLettered);

    // An explicit name wins over the output.
    let over = aws::resolve(
        &AwsTarget {
            stack: Some(name.clone()),
            table: Some("other-table".into()),
            ..Default::default()
        },
        &config,
    )
    .await
    .unwrap();
    assert_eq!(over.table, "other-table");
    assert_eq!(over.queue_url, found.queue_url);
}

#[tokio::test]
async fn a_missing_stack_or_one_without_the_outputs_is_said_plainly() {
    let config = testing::sdk_config().await;
    let missing = testing::unique("no-such-stack");
    let err = aws::resolve(
        &AwsTarget {
            stack: Some(missing.clone()),
            ..Default::default()
        },
        &config,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains(&format!("no stack {missing}")), "{err}");

    let cfn = aws_sdk_cloudformation::Client::new(&config);
    let other = testing::unique("web-stack");
    let bucket = testing::unique("web-stack-assets").to_lowercase();
    cfn.create_stack()
        .stack_name(&other)
        .template_body(
            serde_json::json!({
                "Resources": {"Assets": {"Type": "AWS::S3::Bucket",
                                         "Properties": {"BucketName": bucket}}},
                "Outputs": {"AssetsBucket": {"Value": {"Ref": "Assets"}}}
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    let err = aws::open(
        &AwsTarget {
            stack: Some(other.clone()),
            ..Default::default()
        },
        &config,
        Arc::new(SystemClock),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&format!(
            "stack {other} has no output EventsQueueUrl: is it a Doorbell stack?"
        )),
        "{err}"
    );
}

/// An audit sink that fails on its `ok + 1`th line (a full disk, a closed pipe).
struct FailingAudit {
    ok: usize,
    lines: Vec<AuditLine>,
}

impl AuditSink for FailingAudit {
    fn record(&mut self, line: &AuditLine) -> Result<(), OpsError> {
        if self.lines.len() == self.ok {
            return Err(OpsError::Audit("no space left on device".into()));
        }
        self.lines.push(line.clone());
        Ok(())
    }
}

const HOLD_S: u32 = 2;

/// After an interruption and the hold time: every id is in the events queue or the
/// dead-letter queue (possibly both). Returns (in the events queue, in the dead-letter queue).
async fn after_the_hold(d: &Deployment, ids: &[String]) -> (Vec<String>, Vec<String>) {
    tokio::time::sleep(std::time::Duration::from_millis(
        u64::from(HOLD_S) * 1000 + 1_500,
    ))
    .await;
    let (q, dlq) = (
        d.queue().stats().await.unwrap(),
        d.dlq().stats().await.unwrap(),
    );
    assert!(
        q.visible + q.in_flight + dlq.visible + dlq.in_flight >= ids.len() as u64,
        "{q:?} {dlq:?}"
    );
    assert_eq!(dlq.in_flight, 0, "the hold is over: {dlq:?}");
    let (in_queue, in_dlq) = (event_ids(&d.queue()).await, event_ids(&d.dlq()).await);
    let all: BTreeSet<String> = in_queue.iter().chain(&in_dlq).cloned().collect();
    assert_eq!(
        all,
        ids.iter().cloned().collect::<BTreeSet<_>>(),
        "a message was lost: queue {in_queue:?}, dead-letter queue {in_dlq:?}"
    );
    (in_queue, in_dlq)
}

async fn dead_letters(d: &Deployment, n: usize) -> Vec<String> {
    let ids: Vec<String> = (0..n).map(|i| format!("evt_{i:02}")).collect();
    for id in &ids {
        d.dead_letter(&d.envelope(id, "invoice.paid")).await;
    }
    ids
}

#[tokio::test]
async fn a_redrive_stopped_by_its_audit_sink_loses_nothing() {
    let d = deployment().await;
    let ids = dead_letters(&d, 6).await;
    let ops = d.ops().await;
    let mut audit = FailingAudit {
        ok: 2,
        lines: Vec::new(),
    };
    let err = ops
        .redrive(
            &EventFilter::default(),
            &MoveOptions {
                hold_s: HOLD_S,
                ..Default::default()
            },
            &mut audit,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, OpsError::Audit(_)), "{err}");
    assert_eq!(audit.lines.len(), 2);
    let (in_queue, in_dlq) = after_the_hold(&d, &ids).await;
    // The third message was moved before its line failed; the rest were never touched.
    assert_eq!((in_queue.len(), in_dlq.len()), (3, 3));
    let audited: BTreeSet<String> = audit
        .lines
        .iter()
        .filter_map(|l| l.event_id.clone())
        .collect();
    assert!(audited.iter().all(|id| in_queue.contains(id)));
}

/// Run as a child process by [`a_killed_redrive_loses_nothing`]: redrives the queues named
/// in the environment slowly, printing each audit line as it happens, until it is killed.
#[tokio::test]
#[ignore = "the child process of a_killed_redrive_loses_nothing"]
async fn redrive_until_killed() {
    struct Stdout;
    impl AuditSink for Stdout {
        fn record(&mut self, line: &AuditLine) -> Result<(), OpsError> {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            writeln!(out, "AUDIT {}", serde_json::to_string(line).unwrap())
                .and_then(|()| out.flush())
                .map_err(|e| OpsError::Audit(e.to_string()))
        }
    }
    let var = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| {
            panic!("{k} is not set: this test is run by a_killed_redrive_loses_nothing")
        })
    };
    let target = AwsTarget {
        queue_url: Some(var("DOORBELL_TEST_REDRIVE_QUEUE")),
        dlq_url: Some(var("DOORBELL_TEST_REDRIVE_DLQ")),
        table: Some(var("DOORBELL_TEST_REDRIVE_TABLE")),
        ..Default::default()
    };
    let config = testing::sdk_config().await;
    let ops = aws::open(&target, &config, Arc::new(SystemClock))
        .await
        .unwrap();
    ops.redrive(
        &EventFilter::default(),
        &MoveOptions {
            hold_s: HOLD_S,
            rate_per_s: Some(5.0),
            ..Default::default()
        },
        &mut Stdout,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_killed_redrive_loses_nothing() {
    use tokio::io::AsyncBufReadExt;
    let d = deployment().await;
    let ids = dead_letters(&d, 8).await;
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "redrive_until_killed",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            "DOORBELL_TEST_REDRIVE_QUEUE",
            d.target.queue_url.as_ref().unwrap(),
        )
        .env(
            "DOORBELL_TEST_REDRIVE_DLQ",
            d.target.dlq_url.as_ref().unwrap(),
        )
        .env(
            "DOORBELL_TEST_REDRIVE_TABLE",
            d.target.table.as_ref().unwrap(),
        )
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut moved = 0;
    while moved < 3 {
        let line = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
            .await
            .expect("the redrive printed nothing for a minute")
            .unwrap()
            .expect("the redrive ended before it was killed");
        if line.starts_with("AUDIT ") && line.contains(r#""action":"moved""#) {
            moved += 1;
        }
    }
    // SIGKILL: no release, no clean-up; the taken messages stay hidden for the hold time.
    child.kill().await.unwrap();
    let status = child.wait().await.unwrap();
    assert!(!status.success());
    let (in_queue, in_dlq) = after_the_hold(&d, &ids).await;
    assert!(in_queue.len() >= 3, "{in_queue:?}");
    assert!(in_dlq.len() < ids.len(), "{in_dlq:?}");
}
