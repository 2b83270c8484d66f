//! Worker contract tests: real SQS event shapes in, the partial batch response out, against the
//! SQLite event store (the same state machine the DynamoDB store runs; see the moto tests).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use doorbell::clock::ManualClock;
use doorbell::envelope::sha256_hex;
use doorbell::handler::{Event, Handler, HandlerOutcome, HandlerRegistry};
use doorbell::store::{EntityStore, EventRecord, EventStore, SqliteEventStore, Status};
use doorbell::verify::Verified;
use doorbell::{Envelope, Provider, Secret, SourceConfig};
use doorbell_worker::{RecordOutcome, Worker, WorkerConfig, handlers};
use serde_json::{Value, json};

const NOW_MS: i64 = 1_700_000_000_000;

/// A handler that counts calls and answers from a script (by call number, 1-based).
struct Scripted {
    calls: AtomicUsize,
    script: fn(usize) -> HandlerOutcome,
}

impl Scripted {
    fn new(script: fn(usize) -> HandlerOutcome) -> Arc<Self> {
        Arc::new(Self {
            calls: AtomicUsize::new(0),
            script,
        })
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Handler for Scripted {
    async fn handle(&self, _event: &Event<'_>) -> HandlerOutcome {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        (self.script)(n)
    }
}

struct Panics;

#[async_trait::async_trait]
impl Handler for Panics {
    async fn handle(&self, _event: &Event<'_>) -> HandlerOutcome {
        panic!("handler bug")
    }
}

fn envelope(event_id: &str, event_type: &str, body: &str) -> Envelope {
    let source = SourceConfig::new("stripe", Provider::Stripe, vec![Secret::new("s")]);
    let verified = Verified {
        event_id: event_id.into(),
        event_type: event_type.into(),
        occurred_at_ms: None,
        dedupe: Default::default(),
        reply: None,
        headers: vec![],
    };
    Envelope::new(
        &source,
        verified,
        body.as_bytes(),
        Some("application/json"),
        NOW_MS,
    )
}

/// An SQS event of (messageId, body, receive count) records, in the shape Lambda delivers.
fn sqs_event(records: &[(&str, String)]) -> SqsEvent {
    let records: Vec<Value> = records
        .iter()
        .map(|(id, body)| {
            json!({
                "messageId": id, "receiptHandle": format!("rh-{id}"), "body": body,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1700000000000", "SenderId": "FAKE",
                    "ApproximateFirstReceiveTimestamp": "1700000000001"},
                "messageAttributes": {}, "md5OfBody": "x", "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:webhooks", "awsRegion": "us-east-1"
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

fn failures(r: &SqsBatchResponse) -> Vec<String> {
    r.batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

struct Setup {
    store: Arc<SqliteEventStore>,
    clock: ManualClock,
    worker: Worker,
}

fn setup(register: impl FnOnce(&mut HandlerRegistry)) -> Setup {
    let store = Arc::new(SqliteEventStore::in_memory().unwrap());
    let clock = ManualClock::new(NOW_MS);
    let mut registry = HandlerRegistry::new();
    register(&mut registry);
    let worker = Worker::new(
        store.clone(),
        registry,
        Arc::new(clock.clone()),
        WorkerConfig::default(),
    );
    Setup {
        store,
        clock,
        worker,
    }
}

#[tokio::test]
async fn c20_mixed_batch_reports_exactly_the_failed_records_in_camel_case() {
    let handler = Scripted::new(|_| HandlerOutcome::Ok);
    let failing = Scripted::new(|_| HandlerOutcome::Retry("downstream 503".into()));
    let s = setup(|r| {
        r.register("stripe", "ok.type", handler.clone());
        r.register("stripe", "failing.type", failing.clone());
    });
    let event = sqs_event(&[
        ("m-1", envelope("evt_1", "ok.type", "{}").to_json()),
        ("m-2", envelope("evt_2", "failing.type", "{}").to_json()),
        ("m-3", "not json".into()),
        ("m-4", envelope("evt_4", "ok.type", "{}").to_json()),
    ]);
    let response = s.worker.handle(event, Some(NOW_MS + 30_000)).await;
    assert_eq!(
        serde_json::to_value(&response).unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": "m-2"}, {"itemIdentifier": "m-3"}]})
    );
    assert_eq!(handler.calls(), 2);
    for key in ["stripe#evt_1", "stripe#evt_4"] {
        assert_eq!(
            s.store.get(key).await.unwrap().unwrap().status,
            Status::Processed
        );
    }
    let failed = s.store.get("stripe#evt_2").await.unwrap().unwrap();
    assert_eq!(failed.status, Status::Failed);
    assert_eq!(failed.last_error.as_deref(), Some("downstream 503"));
}

#[tokio::test]
async fn empty_batch_response_serialises_as_an_empty_list() {
    let s = setup(|_| {});
    let response = s.worker.handle(sqs_event(&[]), None).await;
    assert_eq!(
        serde_json::to_string(&response).unwrap(),
        r#"{"batchItemFailures":[]}"#
    );
}

#[tokio::test]
async fn c26_duplicate_delivery_in_a_later_invocation_runs_nothing_and_is_not_a_failure() {
    let handler = Scripted::new(|_| HandlerOutcome::Ok);
    let s = setup(|r| {
        r.register("stripe", "t", handler.clone());
    });
    let body = envelope("evt_FAKE0001", "t", "{}").to_json();
    let r1 = s
        .worker
        .handle(sqs_event(&[("m-1", body.clone())]), None)
        .await;
    let r2 = s.worker.handle(sqs_event(&[("m-2", body)]), None).await;
    assert!(failures(&r1).is_empty() && failures(&r2).is_empty());
    assert_eq!(handler.calls(), 1);
    let rec = s.store.get("stripe#evt_FAKE0001").await.unwrap().unwrap();
    assert_eq!((rec.status, rec.attempts), (Status::Processed, 1));
}

#[tokio::test]
async fn c26_duplicates_in_one_batch_run_the_handler_once() {
    let handler = Scripted::new(|_| HandlerOutcome::Ok);
    let s = setup(|r| {
        r.register("stripe", "t", handler.clone());
    });
    let body = envelope("evt_FAKE0001", "t", "{}").to_json();
    let (response, reports) = s
        .worker
        .handle_detailed(
            sqs_event(&[("m-1", body.clone()), ("m-2", body.clone()), ("m-3", body)]),
            None,
        )
        .await;
    assert_eq!(handler.calls(), 1);
    for r in &reports[1..] {
        assert!(
            matches!(
                r.outcome,
                RecordOutcome::Duplicate | RecordOutcome::InProgressElsewhere
            ),
            "{r:?}"
        );
    }
    // Whatever was reported comes back later and is then a plain duplicate.
    let reported = failures(&response);
    let again: Vec<(&str, String)> = reported
        .iter()
        .map(|id| (id.as_str(), envelope("evt_FAKE0001", "t", "{}").to_json()))
        .collect();
    let r = s.worker.handle(sqs_event(&again), None).await;
    assert!(failures(&r).is_empty());
    assert_eq!(handler.calls(), 1);
}

/// A worker with the shipped handlers for one source, over an in-memory SQLite store.
fn shipped_worker(source: &str, provider: Provider) -> (Arc<SqliteEventStore>, Worker) {
    let store = Arc::new(SqliteEventStore::in_memory().unwrap());
    let registry = handlers::default_registry([(source, provider)], store.clone());
    let worker = Worker::new(
        store.clone(),
        registry,
        Arc::new(ManualClock::new(NOW_MS)),
        WorkerConfig::default(),
    );
    (store, worker)
}

fn seeded(status: Status, lease: Option<i64>, updated: Option<i64>) -> EventRecord {
    EventRecord {
        key: "stripe#evt_FAKE0002".into(),
        source: "stripe".into(),
        provider: "stripe".into(),
        event_id: "evt_FAKE0002".into(),
        event_type: "t".into(),
        status,
        attempts: 1,
        received_at: "2023-11-14T22:13:20.000Z".into(),
        processed_at_ms: None,
        lease_expires_at_ms: lease,
        updated_at_ms: updated,
        expires_at_s: Some(NOW_MS / 1000 + 86_400),
        body_sha256: sha256_hex(b"{}"),
        last_error: None,
        outcome: None,
        payload: None,
        conflicts: 0,
        last_conflict_at_ms: None,
    }
}

#[tokio::test]
async fn c27_expired_lease_is_taken_over_live_lease_is_retried_and_leaseless_is_not_stuck() {
    let cases = [
        (
            "expired lease",
            seeded(
                Status::InProgress,
                Some(NOW_MS - 1_000),
                Some(NOW_MS - 60_000),
            ),
            1,
            false,
        ),
        (
            "live lease",
            seeded(Status::InProgress, Some(NOW_MS + 60_000), Some(NOW_MS)),
            0,
            true,
        ),
        (
            "no lease, recently updated",
            seeded(Status::InProgress, None, Some(NOW_MS - 1_000)),
            0,
            true,
        ),
        (
            "no lease, stale",
            seeded(Status::InProgress, None, Some(NOW_MS - 3_600_000)),
            1,
            false,
        ),
        (
            "no lease, no timestamps",
            seeded(Status::InProgress, None, None),
            1,
            false,
        ),
    ];
    for (name, record, calls, reported) in cases {
        let handler = Scripted::new(|_| HandlerOutcome::Ok);
        let s = setup(|r| {
            r.register("stripe", "t", handler.clone());
        });
        s.store.put_record(&record).await.unwrap();
        let r = s
            .worker
            .handle(
                sqs_event(&[("m-x", envelope("evt_FAKE0002", "t", "{}").to_json())]),
                None,
            )
            .await;
        assert_eq!(handler.calls(), calls, "{name}");
        assert_eq!(failures(&r) == ["m-x"], reported, "{name}");
        let status = s
            .store
            .get("stripe#evt_FAKE0002")
            .await
            .unwrap()
            .unwrap()
            .status;
        assert_eq!(
            status,
            if calls == 1 {
                Status::Processed
            } else {
                Status::InProgress
            },
            "{name}"
        );
    }
}

/// Reads the record's lease while the handler runs.
struct LeaseProbe {
    store: Arc<SqliteEventStore>,
    seen: std::sync::Mutex<Option<i64>>,
}

#[async_trait::async_trait]
impl Handler for LeaseProbe {
    async fn handle(&self, event: &Event<'_>) -> HandlerOutcome {
        let rec = self
            .store
            .get(&event.envelope.idempotency_key)
            .await
            .unwrap()
            .unwrap();
        *self.seen.lock().unwrap() = rec.lease_expires_at_ms;
        HandlerOutcome::Ok
    }
}

#[tokio::test]
async fn c27_lease_follows_the_deadline_and_never_falls_below_the_floor() {
    for (deadline, expected) in [
        (Some(NOW_MS + 60_000), NOW_MS + 60_000),
        (Some(NOW_MS), NOW_MS + 5_000),
        (Some(NOW_MS - 10_000), NOW_MS + 5_000),
        (Some(NOW_MS + 86_400_000), NOW_MS + 900_000),
        (None, NOW_MS + 900_000),
    ] {
        let store = Arc::new(SqliteEventStore::in_memory().unwrap());
        let probe = Arc::new(LeaseProbe {
            store: store.clone(),
            seen: Default::default(),
        });
        let mut registry = HandlerRegistry::new();
        registry.register("stripe", "t", probe.clone());
        let worker = Worker::new(
            store,
            registry,
            Arc::new(ManualClock::new(NOW_MS)),
            WorkerConfig::default(),
        );
        worker
            .handle(
                sqs_event(&[("m-1", envelope("evt_1", "t", "{}").to_json())]),
                deadline,
            )
            .await;
        assert_eq!(
            *probe.seen.lock().unwrap(),
            Some(expected),
            "deadline {deadline:?}"
        );
    }
}

#[tokio::test]
async fn c28_failed_handler_is_retried_on_the_next_delivery_and_then_completes() {
    let handler = Scripted::new(|n| {
        if n == 1 {
            HandlerOutcome::Retry("first call fails".into())
        } else {
            HandlerOutcome::Ok
        }
    });
    let s = setup(|r| {
        r.register("stripe", "t", handler.clone());
    });
    let body = envelope("evt_FAKE0003", "t", "{}").to_json();
    let r1 = s
        .worker
        .handle(sqs_event(&[("m-x", body.clone())]), None)
        .await;
    assert_eq!(failures(&r1), ["m-x"]);
    assert_eq!(
        s.store
            .get("stripe#evt_FAKE0003")
            .await
            .unwrap()
            .unwrap()
            .status,
        Status::Failed
    );
    s.clock.advance_ms(30_000);
    let r2 = s.worker.handle(sqs_event(&[("m-x", body)]), None).await;
    assert!(failures(&r2).is_empty());
    assert_eq!(handler.calls(), 2);
    let rec = s.store.get("stripe#evt_FAKE0003").await.unwrap().unwrap();
    assert_eq!((rec.status, rec.attempts), (Status::Processed, 2));
}

#[tokio::test]
async fn rejected_and_panicking_handlers_are_failed_and_reported_without_failing_the_batch() {
    let rejecting = Scripted::new(|_| HandlerOutcome::Reject("cannot ever work".into()));
    let s = setup(|r| {
        r.register("stripe", "reject", rejecting.clone());
        r.register("stripe", "panic", Arc::new(Panics));
    });
    let r = s
        .worker
        .handle(
            sqs_event(&[
                ("m-1", envelope("evt_r", "reject", "{}").to_json()),
                ("m-2", envelope("evt_p", "panic", "{}").to_json()),
                ("m-3", envelope("evt_i", "unhandled.type", "{}").to_json()),
            ]),
            None,
        )
        .await;
    assert_eq!(failures(&r), ["m-1", "m-2"]);
    let p = s.store.get("stripe#evt_p").await.unwrap().unwrap();
    assert_eq!(
        (p.status, p.last_error.as_deref()),
        (Status::Failed, Some("handler panicked"))
    );
    let i = s.store.get("stripe#evt_i").await.unwrap().unwrap();
    assert_eq!(
        (i.status, i.outcome.as_deref()),
        (Status::Processed, Some("ignored"))
    );
}

#[tokio::test]
async fn a_conflict_runs_nothing_and_goes_to_the_dead_letter_queue_never_deleted() {
    use doorbell::queue::EventQueue;
    // The first delivery FAILED; a second one under the same key with another body arrives.
    let handler = Scripted::new(|n| {
        if n == 1 {
            HandlerOutcome::Retry("downstream timeout".into())
        } else {
            HandlerOutcome::Ok
        }
    });
    let mut s = setup(|r| {
        r.register("stripe", "t", handler.clone());
    });
    let first = envelope("evt_c", "t", r#"{"a":1}"#).to_json();
    let second = envelope("evt_c", "t", r#"{"a":2}"#).to_json();
    let (r, _) = s
        .worker
        .handle_detailed(sqs_event(&[("m-1", first.clone())]), None)
        .await;
    assert_eq!(failures(&r), ["m-1"]);

    // Without a dead-letter queue the conflicting record is reported, so SQS keeps it and its
    // redrive policy moves it to the dead-letter queue: it is never acknowledged and lost.
    let (r, reports) = s
        .worker
        .handle_detailed(sqs_event(&[("m-2", second.clone())]), None)
        .await;
    assert_eq!(failures(&r), ["m-2"]);
    assert!(
        reports[0]
            .outcome
            .reason()
            .starts_with("conflict: stripe#evt_c"),
        "{:?}",
        reports[0]
    );

    // With one, it goes there at once with reason `conflict`, is counted, and acknowledged.
    let dlq = memory_queue("webhooks-dlq", 262_144);
    s.worker = s.worker.with_dead_letter_queue(dlq.clone());
    let (r, reports) = s
        .worker
        .handle_detailed(sqs_event(&[("m-2", second.clone())]), None)
        .await;
    assert!(failures(&r).is_empty());
    assert_eq!(reports[0].outcome.name(), "conflict");
    assert_eq!(
        handler.calls(),
        1,
        "nothing ran for the conflicting delivery"
    );
    let dead = dlq.receive(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, second, "dead-lettered as it came");
    let attr = |k: &str| {
        dead[0]
            .attributes
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.to_owned())
    };
    assert_eq!(attr("dead_letter_reason").as_deref(), Some("conflict"));
    assert!(
        attr("rejected_reason")
            .unwrap()
            .contains(&sha256_hex(br#"{"a":2}"#))
    );
    let rec = s.store.get("stripe#evt_c").await.unwrap().unwrap();
    assert_eq!(
        (rec.status, rec.body_sha256, rec.conflicts),
        (Status::Failed, sha256_hex(br#"{"a":1}"#), 2),
        "the first delivery stays authoritative; both refusals are counted"
    );
    assert_eq!(rec.last_conflict_at_ms, Some(NOW_MS));

    // The first delivery's own retry still runs.
    let (r, _) = s
        .worker
        .handle_detailed(sqs_event(&[("m-1", first)]), None)
        .await;
    assert!(failures(&r).is_empty());
    assert_eq!(handler.calls(), 2);
}

#[tokio::test]
async fn a_replay_under_another_event_type_is_a_conflict_not_a_second_event() {
    let created = Scripted::new(|_| HandlerOutcome::Ok);
    let paid = Scripted::new(|_| HandlerOutcome::Ok);
    let mut s = setup(|r| {
        r.register("stripe", "orders/create", created.clone());
        r.register("stripe", "orders/paid", paid.clone());
    });
    let dlq = memory_queue("webhooks-dlq", 262_144);
    s.worker = s.worker.with_dead_letter_queue(dlq.clone());
    let body = r#"{"id":1001}"#;
    let content_keyed = |kind: &str| {
        let source = SourceConfig::new("stripe", Provider::Stripe, vec![Secret::new("s")]);
        let verified = Verified {
            event_id: "delivery-1".into(),
            event_type: kind.into(),
            occurred_at_ms: None,
            dedupe: doorbell::verify::Dedupe::BodyDigest,
            reply: None,
            headers: vec![],
        };
        Envelope::new(&source, verified, body.as_bytes(), None, NOW_MS).to_json()
    };
    let (r, reports) = s
        .worker
        .handle_detailed(
            sqs_event(&[
                ("m-1", content_keyed("orders/create")),
                ("m-2", content_keyed("orders/paid")),
                ("m-3", content_keyed("orders/create")),
            ]),
            None,
        )
        .await;
    assert!(failures(&r).is_empty());
    let outcomes: Vec<_> = reports.iter().map(|r| r.outcome.name()).collect();
    assert_eq!(outcomes, ["processed", "conflict", "duplicate"]);
    assert_eq!((created.calls(), paid.calls()), (1, 0));
    assert_eq!(dlq.len(), 1);
}

#[tokio::test]
async fn tampered_envelope_body_is_a_bad_envelope() {
    let s = setup(|_| {});
    let mut e = envelope("evt_t", "t", "{}");
    e.body = Some("{\"x\":1}".into());
    let (r, reports) = s
        .worker
        .handle_detailed(sqs_event(&[("m-1", e.to_json())]), None)
        .await;
    assert_eq!(failures(&r), ["m-1"]);
    assert!(matches!(reports[0].outcome, RecordOutcome::BadEnvelope(_)));
}

#[tokio::test]
async fn c03_github_form_encoded_push_reaches_the_push_handler_as_json() {
    let (store, worker) = shipped_worker("github", Provider::Github);
    let push = r#"{"ref":"refs/heads/main","before":"a","after":"b","repository":{"full_name":"o/r","pushed_at":1700000000},"commits":[{"id":"b"}],"pusher":{"name":"n"}}"#;
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", push)
        .finish();
    let source = SourceConfig::new("github", Provider::Github, vec![Secret::new("s")]);
    let verified = Verified {
        event_id: "d-1".into(),
        event_type: "push".into(),
        occurred_at_ms: None,
        dedupe: Default::default(),
        reply: None,
        headers: vec![],
    };
    let env = Envelope::new(
        &source,
        verified,
        form.as_bytes(),
        Some("application/x-www-form-urlencoded"),
        NOW_MS,
    );
    let r = worker
        .handle(sqs_event(&[("m-1", env.to_json())]), None)
        .await;
    assert!(failures(&r).is_empty());
    let branch = store
        .get_entity("branch", "o/r:refs/heads/main")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(branch.state["after"], "b");
    assert_eq!(branch.version, 1_700_000_000_000);
}

#[tokio::test]
async fn an_older_payment_event_never_overwrites_newer_order_state() {
    let (store, worker) = shipped_worker("stripe", Provider::Stripe);
    let pi = |id: &str, created: i64, amount: i64| {
        let body = json!({"id": id, "type": "payment_intent.succeeded", "created": created,
            "data": {"object": {"id": "pi_1", "amount_received": amount, "currency": "eur", "metadata": {"order_id": "o-1"}}}})
        .to_string();
        envelope(id, "payment_intent.succeeded", &body).to_json()
    };
    worker
        .handle(sqs_event(&[("m-1", pi("evt_new", 200, 2000))]), None)
        .await;
    worker
        .handle(sqs_event(&[("m-2", pi("evt_old", 100, 1000))]), None)
        .await;
    let order = store.get_entity("order", "o-1").await.unwrap().unwrap();
    assert_eq!(order.state["amount_received"], 2000);
    assert_eq!(order.state["status"], "paid");
    assert_eq!(order.version, 200_000);
}

#[tokio::test]
async fn malformed_payment_intent_is_rejected_by_its_handler() {
    let (store, worker) = shipped_worker("stripe", Provider::Stripe);
    let body = json!({"id": "evt_bad", "type": "payment_intent.succeeded", "created": 1,
        "data": {"object": {"id": "pi_1", "amount_received": "lots", "currency": "eur"}}})
    .to_string();
    let r = worker
        .handle(
            sqs_event(&[(
                "m-1",
                envelope("evt_bad", "payment_intent.succeeded", &body).to_json(),
            )]),
            None,
        )
        .await;
    assert_eq!(failures(&r), ["m-1"]);
    let rec = store.get("stripe#evt_bad").await.unwrap().unwrap();
    assert_eq!(
        rec.last_error.as_deref(),
        Some(
            "payment_intent.succeeded: field data.object.amount_received is a string, expected a whole number"
        )
    );
}

/// An SQS FIFO event: `(messageId, group, body)` records with `MessageGroupId`.
fn fifo_event(records: &[(&str, &str, String)]) -> SqsEvent {
    let records: Vec<Value> = records
        .iter()
        .enumerate()
        .map(|(n, (id, group, body))| {
            json!({
                "messageId": id, "receiptHandle": format!("rh-{id}"), "body": body,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1700000000000", "SenderId": "FAKE",
                    "ApproximateFirstReceiveTimestamp": "1700000000001", "MessageGroupId": group,
                    "SequenceNumber": format!("1880000000000000{n:04}"), "MessageDeduplicationId": id},
                "messageAttributes": {}, "md5OfBody": "x", "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:webhooks.fifo", "awsRegion": "us-east-1"
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

#[tokio::test]
async fn c21_fifo_group_stops_at_its_first_failure_and_other_groups_go_on() {
    let ok = Scripted::new(|_| HandlerOutcome::Ok);
    let failing = Scripted::new(|_| HandlerOutcome::Retry("downstream 503".into()));
    let s = setup(|r| {
        r.register("stripe", "ok.type", ok.clone());
        r.register("stripe", "failing.type", failing.clone());
    });
    let event = fifo_event(&[
        ("m-1", "A", envelope("evt_a1", "ok.type", "{}").to_json()),
        (
            "m-2",
            "A",
            envelope("evt_a2", "failing.type", "{}").to_json(),
        ),
        ("m-3", "A", envelope("evt_a3", "ok.type", "{}").to_json()),
        ("m-4", "B", envelope("evt_b1", "ok.type", "{}").to_json()),
    ]);
    let (response, reports) = s.worker.handle_detailed(event, None).await;
    assert_eq!(failures(&response), ["m-2", "m-3"]);
    assert_eq!(reports[2].outcome, RecordOutcome::BlockedByGroup);
    assert_eq!(ok.calls(), 2, "m-1 and m-4 ran; m-3 did not");
    assert_eq!(failing.calls(), 1);
    assert!(
        s.store.get("stripe#evt_a3").await.unwrap().is_none(),
        "a blocked record is not even claimed"
    );
    assert_eq!(
        s.store.get("stripe#evt_b1").await.unwrap().unwrap().status,
        Status::Processed
    );
}

fn memory_queue(name: &str, max_message_bytes: usize) -> Arc<doorbell::queue::MemoryQueue> {
    Arc::new(doorbell::queue::MemoryQueue::new(
        name,
        doorbell::queue::MemoryQueueConfig {
            max_message_bytes,
            ..Default::default()
        },
        Arc::new(ManualClock::new(NOW_MS)),
    ))
}

#[tokio::test]
async fn reject_sends_the_message_straight_to_the_dead_letter_queue_and_acknowledges_it() {
    use doorbell::queue::EventQueue;
    let rejecting = Scripted::new(|_| HandlerOutcome::Reject("unknown customer".into()));
    let ok = Scripted::new(|_| HandlerOutcome::Ok);
    let mut s = setup(|r| {
        r.register("stripe", "reject", rejecting.clone());
        r.register("stripe", "ok", ok.clone());
    });
    let dlq = memory_queue("webhooks-dlq", 262_144);
    s.worker = s.worker.with_dead_letter_queue(dlq.clone());
    let body = envelope("evt_rej", "reject", "{}").to_json();
    let (response, reports) = s
        .worker
        .handle_detailed(
            sqs_event(&[
                ("m-1", body.clone()),
                ("m-2", envelope("evt_ok", "ok", "{}").to_json()),
            ]),
            None,
        )
        .await;
    assert!(
        failures(&response).is_empty(),
        "a rejected record is acknowledged: no receives burnt"
    );
    assert_eq!(
        reports[0].outcome,
        RecordOutcome::Rejected("unknown customer".into())
    );
    assert_eq!(reports[1].outcome, RecordOutcome::Processed);
    let dead = dlq.receive(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].body, body,
        "the message is dead-lettered as it came"
    );
    let attr = |k: &str| {
        dead[0]
            .attributes
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(attr("rejected_reason"), Some("unknown customer"));
    assert_eq!(attr("source"), Some("stripe"));
    let rec = s.store.get("stripe#evt_rej").await.unwrap().unwrap();
    assert_eq!(
        (rec.status, rec.last_error.as_deref()),
        (Status::Failed, Some("unknown customer"))
    );
    assert_eq!(rejecting.calls(), 1);

    // Redriven from the dead-letter queue later (the bug fixed), the FAILED event runs again.
    let (response, _) = s
        .worker
        .handle_detailed(sqs_event(&[("m-1b", body)]), None)
        .await;
    assert!(failures(&response).is_empty());
    assert_eq!(rejecting.calls(), 2);
}

#[tokio::test]
async fn reject_without_a_dead_letter_queue_or_when_its_send_fails_is_reported_like_retry() {
    let rejecting = Scripted::new(|_| HandlerOutcome::Reject("bad".into()));
    let s = setup(|r| {
        r.register("stripe", "reject", rejecting.clone());
    });
    let r = s
        .worker
        .handle(
            sqs_event(&[("m-1", envelope("evt_r1", "reject", "{}").to_json())]),
            None,
        )
        .await;
    assert_eq!(failures(&r), ["m-1"]);

    // A dead-letter queue that refuses the message (too small here): reported, not lost.
    let worker = s
        .worker
        .clone()
        .with_dead_letter_queue(memory_queue("tiny-dlq", 16));
    let (r, reports) = worker
        .handle_detailed(
            sqs_event(&[("m-2", envelope("evt_r2", "reject", "{}").to_json())]),
            None,
        )
        .await;
    assert_eq!(failures(&r), ["m-2"]);
    assert!(
        matches!(&reports[0].outcome, RecordOutcome::HandlerFailed(reason) if reason.contains("dead-letter send failed")),
        "{:?}",
        reports[0].outcome
    );
}

#[tokio::test]
async fn fifo_reject_keeps_the_message_group_and_lets_the_group_go_on() {
    use doorbell::queue::EventQueue;
    let rejecting = Scripted::new(|_| HandlerOutcome::Reject("bad".into()));
    let ok = Scripted::new(|_| HandlerOutcome::Ok);
    let mut s = setup(|r| {
        r.register("stripe", "reject", rejecting.clone());
        r.register("stripe", "ok", ok.clone());
    });
    let dlq = memory_queue("webhooks-dlq.fifo", 262_144);
    s.worker = s.worker.with_dead_letter_queue(dlq.clone());
    let (response, _) = s
        .worker
        .handle_detailed(
            fifo_event(&[
                ("m-1", "A", envelope("evt_f1", "reject", "{}").to_json()),
                ("m-2", "A", envelope("evt_f2", "ok", "{}").to_json()),
            ]),
            None,
        )
        .await;
    assert!(failures(&response).is_empty());
    assert_eq!(
        ok.calls(),
        1,
        "a dead-lettered record does not block its group"
    );
    let dead = dlq.receive(10).await.unwrap();
    assert_eq!(dead[0].group_id.as_deref(), Some("A"));
}

#[derive(Debug)]
struct Unreachable;

#[async_trait::async_trait]
impl doorbell::payload::PayloadStore for Unreachable {
    async fn put(&self, _k: &str, _b: Vec<u8>) -> Result<(), doorbell::payload::PayloadError> {
        Err(doorbell::payload::PayloadError::Unavailable {
            operation: "put",
            message: "unreachable".into(),
        })
    }
    async fn get(&self, _k: &str) -> Result<Vec<u8>, doorbell::payload::PayloadError> {
        Err(doorbell::payload::PayloadError::Unavailable {
            operation: "get",
            message: "unreachable".into(),
        })
    }
    fn bucket(&self) -> &str {
        "unreachable"
    }
}

#[tokio::test]
async fn c07_claim_checked_envelope_is_read_back_checked_and_processed() {
    use doorbell::payload::{MemoryPayloadStore, PayloadStore};
    use doorbell::queue::{ClaimCheckQueue, EventQueue, OutgoingMessage};
    let ok = Scripted::new(|_| HandlerOutcome::Ok);
    let mut s = setup(|r| {
        r.register("stripe", "big", ok.clone());
    });
    let payloads = Arc::new(MemoryPayloadStore::new("payloads"));
    let inner = memory_queue("webhooks", 262_144);
    let queue = ClaimCheckQueue::new(inner.clone(), payloads.clone());
    let big_body = format!("{{\"pad\":\"{}\"}}", "x".repeat(300_000));
    let env = envelope("evt_big", "big", &big_body);
    queue
        .send(OutgoingMessage {
            body: env.to_json(),
            attributes: vec![("source", "stripe".into())],
            group_id: None,
            deduplication_id: None,
        })
        .await
        .unwrap();
    let pointer = inner.receive(1).await.unwrap().remove(0).body;
    assert!(pointer.len() < 1_000, "the queue carries a pointer");

    // Without the store the pointer cannot be read: reported (and dead-lettered in time).
    let (r, reports) = s
        .worker
        .handle_detailed(sqs_event(&[("m-0", pointer.clone())]), None)
        .await;
    assert_eq!(failures(&r), ["m-0"]);
    assert_eq!(reports[0].outcome.name(), "bad_envelope");

    // The store unreachable: reported for retry, not a bad envelope.
    let unreachable = s.worker.clone().with_payload_store(Arc::new(Unreachable));
    let (_, reports) = unreachable
        .handle_detailed(sqs_event(&[("m-0", pointer.clone())]), None)
        .await;
    assert_eq!(reports[0].outcome.name(), "store_failed");
    assert_eq!(ok.calls(), 0);

    s.worker = s.worker.with_payload_store(payloads.clone());
    let (r, reports) = s
        .worker
        .handle_detailed(sqs_event(&[("m-1", pointer.clone())]), None)
        .await;
    assert!(failures(&r).is_empty());
    assert_eq!(reports[0].outcome, RecordOutcome::Processed);
    assert_eq!(ok.calls(), 1);
    let rec = s.store.get("stripe#evt_big").await.unwrap().unwrap();
    assert_eq!(rec.body_sha256, sha256_hex(big_body.as_bytes()));

    // The stored object altered: its digest no longer matches the pointer.
    let p = doorbell::queue::ClaimCheckPointer::parse(&pointer).unwrap();
    payloads
        .put(
            &p.claim_check.key,
            env.to_json().replace("xxxx", "yyyy").into_bytes(),
        )
        .await
        .unwrap();
    let (r, reports) = s
        .worker
        .handle_detailed(sqs_event(&[("m-2", pointer)]), None)
        .await;
    assert_eq!(failures(&r), ["m-2"]);
    assert_eq!(reports[0].outcome.name(), "bad_envelope");
}
