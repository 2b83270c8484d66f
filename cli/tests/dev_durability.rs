//! `doorbell dev` keeps what it acknowledged: the real binary, thousands of signed deliveries
//! sent concurrently, the process killed (SIGKILL) or stopped (SIGTERM) at a random point,
//! restarted on the same `--db`, and the deliveries that were not answered 2xx sent again (as a
//! provider retries). Then every delivery answered 2xx must be processed exactly once in effect
//! (its order entity written once), none stuck `IN_PROGRESS`, the queue drained, and the
//! dead-letter queue still holding what was dead-lettered before the stop.
//!
//! Each run prints its figures (acknowledged, processed, lost, stuck) and the seed of its
//! random stop point (`DOORBELL_KILL_SEED` replays one).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::Dev;
use doorbell_cli::samples;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Deliveries per run (the floor is 2,000).
const DELIVERIES: usize = 2_400;
/// Of which this many are rejected by the handler (missing `amount_received`) and go to the
/// dead-letter queue.
const POISON: usize = 40;
const CONCURRENCY: usize = 48;
const VISIBILITY_TIMEOUT_S: u32 = 2;

fn seed() -> u64 {
    std::env::var("DOORBELL_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos() as u64
        })
}

fn start(db: &Path, log: &Path) -> Dev {
    Dev::start(
        db,
        Some(log),
        &["--visibility-timeout", &VISIBILITY_TIMEOUT_S.to_string()],
    )
}

fn stripe_url(dev: &Dev) -> String {
    format!("http://127.0.0.1:{}/webhooks/stripe", dev.port)
}

/// Delivery `i`: a `payment_intent.succeeded` for order `order_{i}` (each its own entity), or,
/// for the poison ones, the same without `amount_received` (the handler rejects it).
fn body(i: usize) -> Bytes {
    let mut doc: serde_json::Value =
        serde_json::from_str(samples::STRIPE_PAYMENT_INTENT_SUCCEEDED).unwrap();
    doc["id"] = format!("evt_kill_{i:05}").into();
    doc["data"]["object"]["id"] = format!("pi_kill_{i:05}").into();
    doc["data"]["object"]["metadata"]["order_id"] = format!("order_{i:05}").into();
    if i < POISON {
        doc["data"]["object"]
            .as_object_mut()
            .unwrap()
            .remove("amount_received");
    }
    Bytes::from(doc.to_string())
}

/// Posts each of `ids` once, `CONCURRENCY` at a time; returns the ids answered 2xx. `on_ack`
/// runs after each 2xx with the number acknowledged so far.
async fn send_all(url: &str, ids: &[usize], on_ack: impl Fn(usize) + Send + Sync) -> Vec<usize> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(CONCURRENCY)
        .build_http();
    let url: hyper::Uri = url.parse().unwrap();
    let acked = AtomicUsize::new(0);
    let on_ack = &on_ack;
    let acked = &acked;
    let results = futures::stream::iter(ids.iter().copied())
        .map(|i| {
            let client = client.clone();
            let url = url.clone();
            async move {
                let b = body(i);
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs() as i64;
                let mut req = hyper::Request::post(url);
                for (k, v) in samples::stripe_headers(samples::DEV_STRIPE_SECRET, now, &b) {
                    req = req.header(k, v);
                }
                let req = req.body(Full::new(b)).unwrap();
                let ok = match tokio::time::timeout(Duration::from_secs(20), client.request(req))
                    .await
                {
                    Ok(Ok(resp)) => {
                        let ok = resp.status().is_success();
                        // An acknowledgment is the whole response, as a provider reads it.
                        ok && resp.into_body().collect().await.is_ok()
                    }
                    _ => false,
                };
                if ok {
                    on_ack(acked.fetch_add(1, Ordering::SeqCst) + 1);
                }
                ok.then_some(i)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    results.into_iter().flatten().collect()
}

use futures::StreamExt;

struct Counts {
    processed: usize,
    failed: usize,
    in_progress: usize,
    queued: usize,
    dead: usize,
    /// Distinct messages in the dead-letter queue (a stop between the dead-letter send and
    /// the delete sends one twice: at least once, like SQS).
    dead_distinct: usize,
}

fn counts(db: &Path) -> Counts {
    let c = rusqlite::Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    let q =
        |sql: &str| -> usize { c.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap_or(0) as usize };
    Counts {
        processed: q("SELECT count(*) FROM webhook_events WHERE status = 'PROCESSED'"),
        failed: q("SELECT count(*) FROM webhook_events WHERE status = 'FAILED'"),
        in_progress: q("SELECT count(*) FROM webhook_events WHERE status = 'IN_PROGRESS'"),
        queued: q("SELECT count(*) FROM queue_messages WHERE queue = 'doorbell-dev-events'"),
        dead: q("SELECT count(*) FROM queue_messages WHERE queue = 'doorbell-dev-dlq'"),
        dead_distinct: q(
            "SELECT count(DISTINCT body) FROM queue_messages WHERE queue = 'doorbell-dev-dlq'",
        ),
    }
}

/// Waits until every delivery in `ids` has ended (processed, or failed and dead-lettered) and
/// the events queue is empty.
fn wait_until_drained(db: &Path, ids: &BTreeSet<usize>) -> Counts {
    let poison = ids.iter().filter(|&&i| i < POISON).count();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let c = counts(db);
        if (c.processed + c.failed >= ids.len() && c.queued == 0 && c.dead_distinct >= poison)
            || Instant::now() > deadline
        {
            return c;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("doorbell-{name}-{}-{}", std::process::id(), seed()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Sends signal `sig` to process `pid` (our own child, not yet waited for).
fn signal(pid: u32, sig: i32) {
    unsafe extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    // SAFETY: kill(2) takes plain integers; the pid is our child's, which is still ours to
    // signal because it has not been reaped.
    assert_eq!(unsafe { kill(pid as i32, sig) }, 0);
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stop {
    Kill,
    Term,
}

async fn stop_restart_and_check(stop: Stop) {
    let seed = seed();
    let dir = temp_dir(&format!("{stop:?}").to_lowercase());
    let db = dir.join("dev.db");
    let log = dir.join("dev.log");
    // The stop point: after 10% to 80% of the deliveries were acknowledged.
    let stop_after = DELIVERIES / 10 + (seed as usize) % (DELIVERIES * 7 / 10);

    let mut dev = start(&db, &log);
    let url = stripe_url(&dev);
    // The poison deliveries first, until they are all in the dead-letter queue, so the stop
    // always finds a dead-letter queue to keep.
    let poison: Vec<usize> = (0..POISON).collect();
    let mut first = send_all(&url, &poison, |_| {}).await;
    assert_eq!(first.len(), POISON);
    let deadline = Instant::now() + Duration::from_secs(60);
    while counts(&db).dead_distinct < POISON {
        assert!(
            Instant::now() < deadline,
            "the poison deliveries were dead-lettered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let all: Vec<usize> = (0..DELIVERIES).collect();
    let rest: Vec<usize> = (POISON..DELIVERIES).collect();
    let pid = dev.child.id();
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let dead_before_stop = Arc::new(AtomicUsize::new(0));
    first.extend({
        let stopped = stopped.clone();
        let dead_before_stop = dead_before_stop.clone();
        let db = db.clone();
        send_all(&url, &rest, move |n| {
            if n == stop_after && !stopped.swap(true, Ordering::SeqCst) {
                dead_before_stop.store(counts(&db).dead, Ordering::SeqCst);
                signal(pid, if stop == Stop::Kill { 9 } else { 15 });
            }
        })
        .await
    });
    let status = dev.child.wait().unwrap();
    if stop == Stop::Term {
        assert!(status.success(), "SIGTERM ends dev cleanly: {status:?}");
    }
    let at_stop = counts(&db);
    let dead_before = dead_before_stop.load(Ordering::SeqCst);
    assert!(
        dead_before >= POISON && at_stop.dead >= dead_before,
        "the dead-letter queue survived the stop ({} before, {} after)",
        dead_before,
        at_stop.dead
    );

    // Restart on the same file; the provider retries what was not acknowledged.
    dev = start(&db, &log);
    let acked: BTreeSet<usize> = first.iter().copied().collect();
    let retry: Vec<usize> = all.iter().copied().filter(|i| !acked.contains(i)).collect();
    let second = send_all(&stripe_url(&dev), &retry, |_| {}).await;
    assert_eq!(
        second.len(),
        retry.len(),
        "every retry is acknowledged once dev is back"
    );
    let everything: BTreeSet<usize> = all.iter().copied().collect();
    let end = wait_until_drained(&db, &everything);

    // Per delivery: its record and its one entity write.
    let c = rusqlite::Connection::open(&db).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut lost = Vec::new();
    let mut twice = Vec::new();
    for &i in &acked {
        let status: Option<String> = c
            .query_row(
                "SELECT status FROM webhook_events WHERE pk = ?1",
                [format!("stripe#evt_kill_{i:05}")],
                |r| r.get(0),
            )
            .ok();
        let writes: Option<i64> = c
            .query_row(
                "SELECT writes FROM entities WHERE kind = 'order' AND id = ?1",
                [format!("order_{i:05}")],
                |r| r.get(0),
            )
            .ok();
        let expected = if i < POISON { "FAILED" } else { "PROCESSED" };
        if status.as_deref() != Some(expected) || (i >= POISON && writes.is_none()) {
            lost.push(i);
        }
        if writes.unwrap_or(0) > 1 {
            twice.push(i);
        }
    }
    let poison_acked = acked.iter().filter(|&&i| i < POISON).count();
    println!(
        "{stop:?} at ack {stop_after} (seed {seed}): acknowledged before the stop {}, \
         answered 2xx after the restart {}, processed {}, rejected to the dead-letter queue {}, \
         lost {}, written twice {}, stuck in progress {}, left queued {}, dead-letter queue \
         {} before the stop and {} after; at the stop {} queued and {} in progress",
        acked.len(),
        second.len(),
        end.processed,
        end.failed,
        lost.len(),
        twice.len(),
        end.in_progress,
        end.queued,
        dead_before,
        end.dead,
        at_stop.queued,
        at_stop.in_progress
    );
    assert!(lost.is_empty(), "acknowledged but not processed: {lost:?}");
    assert!(twice.is_empty(), "side effect written twice: {twice:?}");
    assert_eq!(end.in_progress, 0, "no claim left stuck");
    assert_eq!(end.queued, 0, "the events queue drained");
    assert_eq!(end.processed, DELIVERIES - POISON);
    assert_eq!(end.failed, POISON);
    assert_eq!(
        end.dead_distinct, POISON,
        "every poison delivery is in the dead-letter queue"
    );
    assert!(poison_acked <= POISON);
    drop(dev);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_no_acknowledged_delivery_and_runs_none_twice() {
    stop_restart_and_check(Stop::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_stream_stops_cleanly_and_keeps_the_dead_letter_queue() {
    stop_restart_and_check(Stop::Term).await;
}
