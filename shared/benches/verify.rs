//! Verification + extraction (event id, type, time) per scheme at 1, 2, 20 and 256 KB, beside
//! the floor measured in the same run: a bare HMAC-SHA256 of the same bytes (`hmac_floor`), and
//! what ingest avoids: a full `serde_json::Value` tree of the same body (`json_tree`).
//!
//! `stripe_payload/*` repeats the Stripe case on real-shaped Stripe events of the same sizes.
//!
//! `cargo bench -p doorbell --bench verify` (criterion; reports in `target/criterion`).

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};
use doorbell::envelope::Envelope;
use doorbell::verify::{
    WebhookRequest, generic, github, paddle, shopify, slack, square, standard, stripe, twilio,
    verify_at,
};
use doorbell::{Secret, SourceConfig, Sources};
use hmac::{KeyInit, Mac};
use http::HeaderMap;

const NOW: i64 = 1_700_000_000;
const SIZES: [usize; 4] = [1024, 2048, 20 * 1024, 256 * 1024];
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const URL: &str = "https://hooks.example.com/webhooks/src";

/// A JSON body of exactly `size` bytes carrying every scheme's id and type fields.
fn json_body(size: usize) -> Vec<u8> {
    let head = format!(
        r#"{{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","type":"event_callback","event_id":"Ev0PV52K25","event_type":"transaction.completed","event":{{"type":"message"}},"created":{NOW},"occurred_at":"2023-11-14T22:13:20.000Z","created_at":"2023-11-14T22:13:20Z","team_id":"T0001","data":{{"object":{{"id":"pi_3NG8Du2eZvKYlo2C1","pad":""#
    );
    let tail = r#""}}}"#;
    let pad = size.saturating_sub(head.len() + tail.len());
    let mut b = head.into_bytes();
    b.extend(std::iter::repeat_n(b'x', pad));
    b.extend_from_slice(tail.as_bytes());
    b
}

fn form_body(size: usize) -> Vec<u8> {
    let head = "MessageSid=SM1234567890abcdef1234567890abcdef&AccountSid=AC1234567890abcdef1234567890abcdef&From=%2B15005550006&Body=";
    let mut b = head.as_bytes().to_vec();
    b.extend(std::iter::repeat_n(b'x', size.saturating_sub(head.len())));
    b
}

fn source(json: serde_json::Value) -> SourceConfig {
    let name = json["name"].as_str().unwrap_or("src").to_owned();
    Sources::from_json(&serde_json::json!({"sources": [json]}).to_string())
        .expect("source")
        .get(&name)
        .expect("source")
        .clone()
}

fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, v.parse().expect("header value"));
    }
    h
}

/// `(scheme, source, headers, body)` for one size.
fn cases(size: usize) -> Vec<(&'static str, SourceConfig, HeaderMap, Vec<u8>)> {
    let s = Secret::new(SECRET);
    let body = json_body(size);
    let form = form_body(size);
    let hmac_options: generic::HmacOptions = serde_json::from_value(serde_json::json!({
        "header": "x-signature", "algorithm": "sha256", "encoding": "hex",
        "event_id": "json:/id", "event_type": "json:/type"
    }))
    .expect("options");
    vec![
        (
            "stripe",
            source(serde_json::json!({"name": "src", "provider": "stripe", "secrets": [SECRET]})),
            headers(&[(stripe::SIGNATURE_HEADER, stripe::sign(&s, NOW, &body))]),
            body.clone(),
        ),
        (
            "github",
            source(serde_json::json!({"name": "src", "provider": "github", "secrets": [SECRET]})),
            headers(&[
                (github::SIGNATURE_HEADER, github::sign(&s, &body)),
                (github::EVENT_HEADER, "push".into()),
                (
                    github::DELIVERY_HEADER,
                    "72d3162e-cc78-11e3-81ab-4c9367dc0958".into(),
                ),
            ]),
            body.clone(),
        ),
        (
            "shopify",
            source(serde_json::json!({"name": "src", "provider": "shopify", "secrets": [SECRET]})),
            headers(&[
                (shopify::SIGNATURE_HEADER, shopify::sign(&s, &body)),
                (shopify::TOPIC_HEADER, "orders/create".into()),
                (
                    shopify::EVENT_ID_HEADER,
                    "98880550-7158-44d4-b7cd-2c97c8a091b5".into(),
                ),
                (
                    shopify::WEBHOOK_ID_HEADER,
                    "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043".into(),
                ),
            ]),
            body.clone(),
        ),
        (
            "slack",
            source(serde_json::json!({"name": "src", "provider": "slack", "secrets": [SECRET]})),
            headers(&[
                (slack::SIGNATURE_HEADER, slack::sign(&s, NOW, &body)),
                (slack::TIMESTAMP_HEADER, NOW.to_string()),
            ]),
            body.clone(),
        ),
        (
            "standard",
            source(serde_json::json!({"name": "src", "provider": "standard", "secrets": [SECRET]})),
            headers(&[
                ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek".into()),
                ("webhook-timestamp", NOW.to_string()),
                (
                    "webhook-signature",
                    standard::sign(&s, "msg_p5jXN8AQM9LWM0D4loKWxJek", NOW, &body).expect("sign"),
                ),
            ]),
            body.clone(),
        ),
        (
            "paddle",
            source(serde_json::json!({"name": "src", "provider": "paddle", "secrets": [SECRET]})),
            headers(&[(paddle::SIGNATURE_HEADER, paddle::sign(&s, NOW, &body))]),
            body.clone(),
        ),
        (
            "square",
            source(
                serde_json::json!({"name": "src", "provider": "square", "secrets": [SECRET], "url": URL}),
            ),
            headers(&[(square::SIGNATURE_HEADER, square::sign(&s, URL, &body))]),
            body.clone(),
        ),
        (
            "twilio",
            source(
                serde_json::json!({"name": "src", "provider": "twilio", "secrets": [SECRET], "url": URL}),
            ),
            headers(&[
                (twilio::SIGNATURE_HEADER, twilio::sign(&s, URL, &form)),
                (
                    twilio::IDEMPOTENCY_HEADER,
                    "SM1234567890abcdef1234567890abcdef-1".into(),
                ),
                ("content-type", "application/x-www-form-urlencoded".into()),
            ]),
            form,
        ),
        (
            "hmac",
            source(
                serde_json::json!({"name": "src", "provider": "hmac", "secrets": [SECRET],
                "hmac": {"header": "x-signature", "algorithm": "sha256", "encoding": "hex", "event_id": "json:/id", "event_type": "json:/type"}}),
            ),
            headers(&[("x-signature", generic::sign(&hmac_options, &s, None, &body))]),
            body,
        ),
    ]
}

/// The two references every group is read against: a bare HMAC-SHA256 of `body`
/// (`hmac_floor`) and a full `serde_json::Value` tree of it (`json_tree`).
fn floors(g: &mut BenchmarkGroup<'_, WallTime>, body: &[u8]) {
    g.bench_function("hmac_floor", |b| {
        b.iter(|| {
            let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
            m.update(black_box(body));
            black_box(m.finalize().into_bytes())
        })
    });
    g.bench_function("json_tree", |b| {
        b.iter(|| {
            black_box(serde_json::from_slice::<serde_json::Value>(black_box(body)).expect("json"))
        })
    });
}

fn verify(c: &mut Criterion) {
    for size in SIZES {
        let mut g = c.benchmark_group(format!("verify/{}k", size / 1024));
        g.throughput(Throughput::Bytes(size as u64));
        let body = json_body(size);
        floors(&mut g, &body);
        for (name, source, headers, body) in cases(size) {
            // Every case must authenticate, or the number would measure a rejection.
            let req = WebhookRequest {
                headers: &headers,
                body: &body,
                query: "",
            };
            verify_at(&req, &source, NOW).unwrap_or_else(|e| panic!("{name}: {e}"));
            g.bench_with_input(BenchmarkId::from_parameter(name), &req, |b, req| {
                b.iter(|| black_box(verify_at(black_box(req), &source, NOW)))
            });
        }
        g.finish();
    }
}

/// Stripe events as Stripe sends them (`bench/payloads/stripe-{1k,2k,20k,256k}.json`: a
/// `payment_intent.succeeded` event, `type` after `data` as in Stripe's own payloads), so the
/// extraction walks the whole object the way it does in production; beside the same two floors.
fn verify_stripe_payloads(c: &mut Criterion) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/payloads");
    let source =
        source(serde_json::json!({"name": "src", "provider": "stripe", "secrets": [SECRET]}));
    for name in ["1k", "2k", "20k", "256k"] {
        let body = std::fs::read(dir.join(format!("stripe-{name}.json"))).expect("payload");
        let mut g = c.benchmark_group(format!("stripe_payload/{name}"));
        g.throughput(Throughput::Bytes(body.len() as u64));
        floors(&mut g, &body);
        let headers = headers(&[(
            stripe::SIGNATURE_HEADER,
            stripe::sign(&Secret::new(SECRET), NOW, &body),
        )]);
        let req = WebhookRequest {
            headers: &headers,
            body: &body,
            query: "",
        };
        verify_at(&req, &source, NOW).expect("stripe payload verifies");
        g.bench_function("verify_extract", |b| {
            b.iter(|| black_box(verify_at(black_box(&req), &source, NOW)))
        });
        // Ingest's own work without the HTTP framework and the queue: verify, extract, hash the
        // body and write the envelope the queue message carries.
        g.bench_function("verify_envelope", |b| {
            b.iter(|| {
                let verified = verify_at(black_box(&req), &source, NOW).expect("verified");
                let envelope = Envelope::new(
                    &source,
                    verified,
                    &body,
                    Some("application/json"),
                    NOW * 1000,
                );
                black_box(envelope.to_json())
            })
        });
        g.finish();
    }
}

criterion_group!(benches, verify, verify_stripe_payloads);
criterion_main!(benches);
