//! What the AWS archive costs per million events, measured on realistic envelopes (no AWS
//! needed): `cargo test -p doorbell --test archive_cost -- --nocapture` prints the table
//! BENCHMARKS.md shows, and the test fails if a million events cost more than $0.30.
//!
//! Events: half Stripe `payment_intent.succeeded` (`bench/payloads/stripe-2k.json`, a real
//! PaymentIntent's fields, 2,048 bytes), half GitHub `push` (`cli/samples/github-push.json`,
//! 2,582 bytes). Each event gets fresh ids, SHAs and long numbers (every `evt_…`/`pi_…`-style
//! token, 40-hex SHA and number of six digits or more is replaced by random characters of the
//! same kind), so GZIP cannot compress one event against an identical copy.
//!
//! Prices (us-east-1, public price lists):
//! - Amazon Data Firehose, Direct PUT ingestion: $0.029 per GB (first 500 TB a month), each
//!   record rounded up to the next 5 KB (<https://aws.amazon.com/firehose/pricing/>);
//! - Amazon S3 Standard: $0.023 per GB-month (first 50 TB); PUT, COPY, POST, LIST $0.005 per
//!   1,000 requests; GET $0.0004 per 1,000 (<https://aws.amazon.com/s3/pricing/>).
//!
//! GB is 2^30 bytes and the 5 KB increment 5,120 bytes. GZIP at flate2's default level (6);
//! Firehose's own level is not published.

use std::io::Write;

use doorbell::archive::{RecordLimits, json_lines, pack_records};
use doorbell::config::{Provider, SourceConfig};
use doorbell::envelope::Envelope;
use doorbell::secret::Secret;
use doorbell::verify::{Dedupe, Verified};

const STRIPE: &[u8] = include_bytes!("../../bench/payloads/stripe-2k.json");
const GITHUB: &[u8] = include_bytes!("../../cli/samples/github-push.json");

const FIREHOSE_PER_GB: f64 = 0.029;
const S3_GB_MONTH: f64 = 0.023;
const S3_PUT_PER_1000: f64 = 0.005;
const S3_GET_PER_1000: f64 = 0.0004;
const GB: f64 = 1_073_741_824.0;
const FIREHOSE_INCREMENT: usize = 5 * 1024;
/// The stack's buffer interval, seconds, and so at most this many objects a 30-day month.
const BUFFER_INTERVAL_S: u64 = 300;
const OBJECTS_PER_MONTH: f64 = (30 * 24 * 3600 / BUFFER_INTERVAL_S) as f64;
const RETENTION_DAYS: f64 = 30.0;
const DAYS_PER_MONTH: f64 = 30.4375;
const GOAL_PER_MILLION: f64 = 0.30;

/// xorshift64*: deterministic, good enough to make ids differ.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick(&mut self, alphabet: &[u8]) -> u8 {
        alphabet[(self.next() % alphabet.len() as u64) as usize]
    }
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8] = b"0123456789abcdef";
const DIGITS: &[u8] = b"0123456789";

/// `body` with every id-like token replaced by random characters of its kind (see the module
/// docs). Token = a run of ASCII letters, digits and `_`.
fn fresh_ids(body: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = body.to_vec();
    let mut i = 0;
    while i < out.len() {
        let is_tok = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        if !is_tok(out[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < out.len() && is_tok(out[i]) {
            i += 1;
        }
        let tok = &out[start..i];
        let prefixed = tok.iter().position(|b| *b == b'_').is_some_and(|p| {
            (2..=5).contains(&p)
                && tok.len() >= p + 9
                && tok[..p].iter().all(u8::is_ascii_lowercase)
                && tok[p + 1..]
                    .iter()
                    .any(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
        });
        let sha = tok.len() == 40 && tok.iter().all(|b| HEX.contains(b));
        let number = tok.len() >= 6 && tok.iter().all(u8::is_ascii_digit);
        let (from, alphabet) = if prefixed {
            (tok.iter().position(|b| *b == b'_').unwrap() + 1, ALNUM)
        } else if sha {
            (0, HEX)
        } else if number {
            (1, DIGITS)
        } else {
            continue;
        };
        for b in &mut out[start + from..i] {
            if *b != b'_' {
                *b = rng.pick(alphabet);
            }
        }
    }
    out
}

fn events(n: usize) -> Vec<Envelope> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let stripe = SourceConfig::new("stripe", Provider::Stripe, vec![Secret::new("s")]);
    let github = SourceConfig::new("github", Provider::Github, vec![Secret::new("s")]);
    (0..n)
        .map(|i| {
            let at = 1_700_000_000_000 + i as i64 * 250;
            if i % 2 == 0 {
                let body = fresh_ids(STRIPE, &mut rng);
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let verified = Verified {
                    event_id: v["id"].as_str().unwrap().into(),
                    event_type: v["type"].as_str().unwrap().into(),
                    occurred_at_ms: Some(at - 900),
                    dedupe: Dedupe::EventId,
                    reply: None,
                    headers: vec![],
                };
                Envelope::new(
                    &stripe,
                    verified,
                    &body,
                    Some("application/json; charset=utf-8"),
                    at,
                )
            } else {
                let body = fresh_ids(GITHUB, &mut rng);
                let delivery: String = (0..32).map(|_| rng.pick(HEX) as char).collect();
                let verified = Verified {
                    event_id: delivery.clone(),
                    event_type: "push".into(),
                    occurred_at_ms: None,
                    dedupe: Dedupe::BodyDigest,
                    reply: None,
                    headers: vec![
                        ("x-github-event", "push".into()),
                        ("x-github-delivery", delivery),
                        ("x-github-hook-id", "412345678".into()),
                    ],
                };
                Envelope::new(&github, verified, &body, Some("application/json"), at)
            }
        })
        .collect()
}

fn billed(record: &[u8]) -> usize {
    record.len().div_ceil(FIREHOSE_INCREMENT) * FIREHOSE_INCREMENT
}

/// Firehose's billed bytes per event when the worker's batches hold `batch` events, packed into
/// records as [`pack_records`] does, or one record per envelope when `packed` is false.
fn billed_per_event(lines: &[Vec<u8>], batch: usize, packed: bool) -> f64 {
    let total: usize = lines
        .chunks(batch)
        .map(|b| {
            if packed {
                pack_records(b, &RecordLimits::FIREHOSE)
                    .records
                    .iter()
                    .map(|r| billed(r))
                    .sum::<usize>()
            } else {
                b.iter().map(|l| billed(l)).sum()
            }
        })
        .sum();
    total as f64 / lines.len() as f64
}

#[test]
fn a_million_archived_events_cost_at_most_thirty_cents() {
    let n = 20_000;
    let envelopes = events(n);
    let lines = json_lines(&envelopes);
    let raw: usize = lines.iter().map(Vec::len).sum();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for l in &lines {
        gz.write_all(l).unwrap();
    }
    let compressed = gz.finish().unwrap().len();
    let line_bytes = raw as f64 / n as f64;
    let gz_bytes = compressed as f64 / n as f64;

    let per_m = 1e6;
    let firehose = |billed: f64| billed * per_m / GB * FIREHOSE_PER_GB;
    let (b1, b10) = (
        billed_per_event(&lines, 1, true),
        billed_per_event(&lines, 10, true),
    );
    let b10_unpacked = billed_per_event(&lines, 10, false);
    // At a million events a month (one every 2.6 s) every 300 s buffer flushes on its
    // interval: at most 8,640 objects a month, one S3 PUT each.
    let puts = OBJECTS_PER_MONTH / 1000.0 * S3_PUT_PER_1000;
    // Each event is stored for the retention period.
    let storage = gz_bytes * per_m / GB * S3_GB_MONTH * RETENTION_DAYS / DAYS_PER_MONTH;
    let total_b1 = firehose(b1) + puts + storage;
    let total_b10 = firehose(b10) + puts + storage;

    // Reads by `doorbell events` / `replay` (per query, not per event): one LIST per hour
    // prefix, one GET per object.
    let read =
        |hours: f64| hours / 1000.0 * S3_PUT_PER_1000 + hours * 12.0 / 1000.0 * S3_GET_PER_1000;
    let (day, month) = (read(24.0 + 2.0), read(30.0 * 24.0 + 2.0));

    println!(
        "events: {n}, half Stripe payment_intent.succeeded (2,048-byte body), half GitHub push (2,582)"
    );
    println!(
        "envelope line: {line_bytes:.0} bytes; GZIP: {gz_bytes:.0} bytes ({:.1}x)",
        line_bytes / gz_bytes
    );
    println!(
        "Firehose billed bytes per event: batch of 1 {b1:.0}, batch of 10 packed {b10:.0} (one record per envelope: {b10_unpacked:.0})"
    );
    println!();
    println!("| item | basis | $ per million events |");
    println!("|---|---|---|");
    println!(
        "| Firehose ingestion, batches of 1 | {b1:.0} billed bytes per event (5 KB rounding) x $0.029/GB | {:.4} |",
        firehose(b1)
    );
    println!(
        "| Firehose ingestion, batches of 10 | {b10:.0} billed bytes per event, one record per batch | {:.4} |",
        firehose(b10)
    );
    println!(
        "| S3 PUTs by Firehose | at most {OBJECTS_PER_MONTH:.0} objects a month (one per 300 s flush) x $0.005/1,000 | {puts:.4} |"
    );
    println!(
        "| S3 storage, 30 days | {gz_bytes:.0} GZIP bytes per event x $0.023/GB-month x 30/30.4 | {storage:.4} |"
    );
    println!("| **total, batches of 1** | | **{total_b1:.4}** |");
    println!("| **total, batches of 10** | | **{total_b10:.4}** |");
    println!();
    println!(
        "reads: a 24-hour listing ${day:.5}, a 30-day lookup by key ${month:.5} (12 objects an hour)"
    );

    // Packing is what keeps a batch of ten small events from being billed ten times 5 KB.
    assert!(b10 < b10_unpacked);
    assert!(total_b1 <= GOAL_PER_MILLION, "{total_b1}");
    assert!(total_b10 <= GOAL_PER_MILLION, "{total_b10}");
}

#[test]
fn fresh_ids_change_ids_and_keep_the_shape() {
    let mut rng = Rng(1);
    let a = fresh_ids(STRIPE, &mut rng);
    let b = fresh_ids(STRIPE, &mut rng);
    assert_eq!(a.len(), STRIPE.len());
    assert_ne!(a, b);
    let (va, vb): (serde_json::Value, serde_json::Value) = (
        serde_json::from_slice(&a).unwrap(),
        serde_json::from_slice(&b).unwrap(),
    );
    assert_ne!(va["id"], vb["id"]);
    assert!(va["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(va["type"], "payment_intent.succeeded");
    let g: serde_json::Value = serde_json::from_slice(&fresh_ids(GITHUB, &mut rng)).unwrap();
    assert_eq!(g["ref"], "refs/heads/main");
}
