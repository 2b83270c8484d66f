//! `doorbell demo`: the whole local pipeline on the bundled sample deliveries.
//!
//! Signs real Stripe and GitHub payloads with the dev secrets at run time, sends valid,
//! duplicate, tampered, stale, wrongly signed and poison deliveries through the ingest app, lets
//! the worker drain the queue (stepping a simulated clock past each visibility timeout), and
//! prints what happened to each. [`run`] returns whether every outcome was the expected one.

use std::io::Write;
use std::sync::{Arc, Mutex};

use doorbell::Sources;
use doorbell::clock::{Clock, ManualClock, SystemClock};
use doorbell::queue::{
    EventQueue, MemoryQueue, MemoryQueueConfig, OutgoingMessage, QueueError, ReceivedMessage,
};
use doorbell::store::{EntityStore, SqliteEventStore};
use doorbell_worker::WorkerConfig;
use doorbell_worker::poller::EventSource;

use crate::pipeline::Pipeline;
use crate::samples::{self, DEV_GITHUB_SECRET, DEV_STRIPE_SECRET};

/// Visibility timeout of the demo queue, ms.
pub const VISIBILITY_TIMEOUT_MS: i64 = 30_000;
/// `maxReceiveCount` of the demo queue's redrive policy.
pub const MAX_RECEIVE_COUNT: u32 = 5;

/// Records the ids of sent messages, so each delivery can be followed through the pipeline.
#[derive(Debug)]
struct Recording {
    inner: Arc<MemoryQueue>,
    sent: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl EventQueue for Recording {
    async fn send(&self, m: OutgoingMessage) -> Result<String, QueueError> {
        let id = self.inner.send(m).await?;
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(id.clone());
        Ok(id)
    }
    async fn receive(&self, max: u32) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.inner.receive(max).await
    }
    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        self.inner.delete(receipt_handle).await
    }
    fn max_message_bytes(&self) -> usize {
        self.inner.max_message_bytes()
    }
}

struct Delivery {
    name: &'static str,
    path: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    expect_status: u16,
    expect: &'static str,
}

fn deliveries(now_s: i64) -> Vec<Delivery> {
    let pi = samples::STRIPE_PAYMENT_INTENT_SUCCEEDED.as_bytes().to_vec();
    let push = samples::GITHUB_PUSH.as_bytes().to_vec();
    let ping = samples::github_form_body(
        r#"{"zen":"Keep it logically awesome.","hook_id":123456,"hook":{"type":"Repository","id":123456,"events":["push"]}}"#,
    );
    let tampered = String::from_utf8_lossy(&pi)
        .replace("\"amount_received\": 2000", "\"amount_received\": 1")
        .into_bytes();
    let poison = String::from_utf8_lossy(&pi)
        .replace("evt_3QdemoPaymentIntent0001", "evt_3QdemoPoison0009")
        .replace("\"amount_received\": 2000", "\"amount_received\": \"lots\"")
        .into_bytes();
    let json = "application/json";
    let form = "application/x-www-form-urlencoded";
    let push_delivery = "5b1f6c2a-8f3e-11ee-9c4d-0242ac120002";
    vec![
        Delivery {
            name: "stripe payment_intent.succeeded",
            path: "/webhooks/stripe",
            headers: samples::stripe_headers(DEV_STRIPE_SECRET, now_s, &pi),
            body: pi.clone(),
            expect_status: 200,
            expect: "processed",
        },
        Delivery {
            name: "stripe retry of the same event",
            path: "/webhooks/stripe",
            headers: samples::stripe_headers(DEV_STRIPE_SECRET, now_s + 1, &pi),
            body: pi.clone(),
            expect_status: 200,
            expect: "duplicate",
        },
        Delivery {
            name: "github push (JSON)",
            path: "/webhooks/github",
            headers: samples::github_headers(DEV_GITHUB_SECRET, "push", push_delivery, json, &push),
            body: push.clone(),
            expect_status: 200,
            expect: "processed",
        },
        Delivery {
            name: "github ping (form-encoded)",
            path: "/webhooks/github",
            headers: samples::github_headers(
                DEV_GITHUB_SECRET,
                "ping",
                "5b1f6c2a-8f3e-11ee-9c4d-0242ac120001",
                form,
                &ping,
            ),
            body: ping,
            expect_status: 200,
            expect: "ignored",
        },
        Delivery {
            name: "github redelivery of the push",
            path: "/webhooks/github",
            headers: samples::github_headers(DEV_GITHUB_SECRET, "push", push_delivery, json, &push),
            body: push,
            expect_status: 200,
            expect: "duplicate",
        },
        Delivery {
            name: "stripe body tampered after signing",
            path: "/webhooks/stripe",
            headers: samples::stripe_headers(DEV_STRIPE_SECRET, now_s, &pi),
            body: tampered,
            expect_status: 401,
            expect: "rejected",
        },
        Delivery {
            name: "stripe timestamp 10 minutes old",
            path: "/webhooks/stripe",
            headers: samples::stripe_headers(DEV_STRIPE_SECRET, now_s - 600, &pi),
            body: pi.clone(),
            expect_status: 401,
            expect: "rejected",
        },
        Delivery {
            name: "stripe signed with another secret",
            path: "/webhooks/stripe",
            headers: samples::stripe_headers("whsec_not_the_configured_one", now_s, &pi),
            body: pi.clone(),
            expect_status: 401,
            expect: "rejected",
        },
        Delivery {
            name: "unknown source",
            path: "/webhooks/paypal",
            headers: samples::stripe_headers(DEV_STRIPE_SECRET, now_s, &pi),
            body: pi,
            expect_status: 404,
            expect: "rejected",
        },
        Delivery {
            name: "poison: handler always fails",
            path: "/webhooks/stripe",
            headers: samples::stripe_headers(DEV_STRIPE_SECRET, now_s, &poison),
            body: poison,
            expect_status: 200,
            expect: "dead-lettered",
        },
    ]
}

/// Runs the demo, writing the report to `out`. Returns `true` when every delivery ended as
/// expected.
///
/// # Errors
/// Only I/O on `out` or setting up SQLite; outcomes that differ are reported as `false`.
pub async fn run(out: &mut dyn Write) -> anyhow::Result<bool> {
    let clock = ManualClock::new(SystemClock.now_ms());
    let shared_clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let cfg = MemoryQueueConfig {
        visibility_timeout_ms: VISIBILITY_TIMEOUT_MS,
        max_receive_count: MAX_RECEIVE_COUNT,
        ..Default::default()
    };
    let dlq = Arc::new(MemoryQueue::new(
        "doorbell-demo-dlq",
        cfg.clone(),
        shared_clock.clone(),
    ));
    let events = Arc::new(
        MemoryQueue::new("doorbell-demo-events", cfg, shared_clock.clone())
            .with_dead_letter_queue(dlq.clone()),
    );
    let queue = Arc::new(Recording {
        inner: events.clone(),
        sent: Mutex::default(),
    });
    let store = Arc::new(SqliteEventStore::in_memory()?);
    let sources = Sources::from_json(&samples::dev_sources_json())?;
    let event_source = EventSource {
        arn: events.arn(),
        region: "local".into(),
        batch_size: 10,
    };
    let pipeline = Pipeline::new(
        sources,
        queue.clone(),
        store.clone(),
        store.clone(),
        shared_clock.clone(),
        event_source,
        WorkerConfig::default(),
    );

    writeln!(
        out,
        "Doorbell demo: ingest -> in-process queue (visibility timeout {} s, maxReceiveCount {}, dead-letter queue) -> worker -> SQLite",
        VISIBILITY_TIMEOUT_MS / 1000,
        MAX_RECEIVE_COUNT
    )?;
    writeln!(out)?;

    let list = deliveries(clock.now_s());
    let mut sent: Vec<(u16, Option<String>)> = Vec::new();
    for d in &list {
        let before = queue.sent.lock().unwrap_or_else(|p| p.into_inner()).len();
        let reply = pipeline.post(d.path, &d.headers, d.body.clone()).await;
        let ids = queue.sent.lock().unwrap_or_else(|p| p.into_inner()).clone();
        sent.push((reply.status.as_u16(), ids.get(before).cloned()));
    }

    // Drain: what Lambda's event source mapping does, with time stepped past each visibility
    // timeout when nothing is visible.
    let mut history: std::collections::HashMap<String, Vec<&'static str>> = Default::default();
    for _ in 0..(MAX_RECEIVE_COUNT as usize + 3) * 2 {
        let reports = pipeline.poll_once().await?;
        if reports.is_empty() {
            if events.is_empty() {
                break;
            }
            clock.advance_ms(VISIBILITY_TIMEOUT_MS);
            continue;
        }
        for r in reports {
            history
                .entry(r.message_id.clone())
                .or_default()
                .push(r.outcome.name());
        }
    }
    let dead: Vec<String> = {
        let mut ids = Vec::new();
        while let Ok(batch) = dlq.receive(10).await {
            if batch.is_empty() {
                break;
            }
            ids.extend(batch.into_iter().map(|m| m.message_id));
        }
        ids
    };

    writeln!(
        out,
        "{:>2}  {:<36} {:>4}  {:<14} {:<14} {:<8}",
        "#", "delivery", "HTTP", "outcome", "expected", "receives"
    )?;
    let mut all_ok = true;
    for (i, (d, (status, message_id))) in list.iter().zip(&sent).enumerate() {
        let steps = message_id.as_ref().and_then(|m| history.get(m));
        let outcome = match (message_id, steps) {
            (None, _) => "rejected",
            (Some(m), _) if dead.contains(m) => "dead-lettered",
            (Some(_), Some(s)) => s.last().copied().unwrap_or("queued"),
            (Some(_), None) => "queued",
        };
        let ok = *status == d.expect_status && outcome == d.expect;
        all_ok &= ok;
        let receives = steps.map_or(0, Vec::len);
        writeln!(
            out,
            "{:>2}  {:<36} {:>4}  {:<14} {:<14} {:<8} {}",
            i + 1,
            d.name,
            status,
            outcome,
            d.expect,
            receives,
            if ok { "ok" } else { "UNEXPECTED" }
        )?;
    }
    writeln!(out)?;
    let order = store.get_entity("order", "order_1001").await?;
    if let Some(o) = order {
        writeln!(out, "order order_1001: {}", o.state)?;
    }
    if let Some(b) = store
        .get_entity("branch", "Codertocat/Hello-World:refs/heads/main")
        .await?
    {
        writeln!(
            out,
            "branch Codertocat/Hello-World:refs/heads/main: {}",
            b.state
        )?;
    }
    writeln!(
        out,
        "events queue: {} message(s) left; dead-letter queue: {} message(s)",
        events.len(),
        dead.len()
    )?;
    for r in store.all().await? {
        writeln!(
            out,
            "event store: {:<52} {:<11} attempts={} {}",
            r.key,
            r.status.as_str(),
            r.attempts,
            r.last_error
                .as_deref()
                .map(|e| format!("last_error={e}"))
                .unwrap_or_default()
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "{}",
        if all_ok {
            "demo: every delivery ended as expected"
        } else {
            "demo: some deliveries did NOT end as expected"
        }
    )?;
    Ok(all_ok)
}
