//! Conformance: payloads signed by the providers' own SDKs (`conformance/generate.mjs`: the
//! `stripe` package's test-header helper, `@octokit/webhooks-methods` over every
//! `@octokit/webhooks-examples` payload) are accepted by the ingest app, enqueued byte for byte,
//! and rejected once altered. `./scripts/test` generates the vectors and sets
//! `DOORBELL_CONFORMANCE_VECTORS`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use base64::Engine;
use doorbell::clock::ManualClock;
use doorbell::queue::{MemoryQueue, MemoryQueueConfig};
use doorbell::verify::{github, paddle, shopify, slack, square, standard, stripe, twilio};
use doorbell::{Envelope, Secret, Sources};
use doorbell_ingest::{IngestState, app};
use serde::Deserialize;
use serde_json::json;
use tower::ServiceExt;

#[derive(Deserialize, Clone)]
struct Vector {
    provider: String,
    name: String,
    secret: String,
    timestamp: i64,
    headers: std::collections::BTreeMap<String, String>,
    body_base64: String,
    /// The URL the provider signed (Square, Twilio).
    #[serde(default)]
    url: Option<String>,
    /// The request's query string (Twilio).
    #[serde(default)]
    query: String,
}

fn vectors() -> Vec<Vector> {
    let path = std::env::var("DOORBELL_CONFORMANCE_VECTORS").expect(
        "DOORBELL_CONFORMANCE_VECTORS is not set: run ./scripts/test, which signs the vectors with the providers' SDKs",
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

async fn post(
    v: &Vector,
    headers: &std::collections::BTreeMap<String, String>,
    body: Vec<u8>,
) -> (u16, Vec<String>) {
    let clock = Arc::new(ManualClock::new(v.timestamp * 1000));
    let queue = Arc::new(MemoryQueue::new(
        "q",
        MemoryQueueConfig::default(),
        clock.clone(),
    ));
    let sources = Sources::from_json(&json!({"sources": [{"name": "src", "provider": v.provider, "secrets": [v.secret], "url": v.url}]}).to_string()).unwrap();
    let state = IngestState {
        sources: Arc::new(doorbell::catalog::StaticCatalog::new(sources)),
        queue: queue.clone(),
        clock,
    };
    let uri = if v.query.is_empty() {
        "/webhooks/src".to_owned()
    } else {
        format!("/webhooks/src?{}", v.query)
    };
    let mut req = Request::post(uri);
    for (k, val) in headers {
        req = req.header(k, val);
    }
    let resp = app(state)
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    (resp.status().as_u16(), queue.peek_bodies())
}

#[tokio::test]
async fn provider_sdk_signed_payloads_are_accepted_and_any_alteration_is_rejected() {
    let vectors = vectors();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for v in &vectors {
        let body = base64::engine::general_purpose::STANDARD
            .decode(&v.body_base64)
            .unwrap();
        let (status, queued) = post(v, &v.headers, body.clone()).await;
        assert_eq!(status, 200, "{} / {}", v.provider, v.name);
        if queued.is_empty() {
            // An endpoint handshake (Slack url_verification) is answered, not enqueued.
            assert!(v.name.contains("url_verification"), "{}", v.name);
        } else {
            let env = Envelope::parse(&queued[0]).unwrap();
            assert_eq!(
                env.body_bytes().unwrap().as_ref(),
                body.as_slice(),
                "{}",
                v.name
            );
        }

        // One byte of the body changed (first, middle, last).
        for i in [0, body.len() / 2, body.len() - 1] {
            let mut altered = body.clone();
            altered[i] ^= 0x20;
            let (status, queued) = post(v, &v.headers, altered).await;
            assert_eq!(
                (status, queued.len()),
                (401, 0),
                "{} altered at {i}",
                v.name
            );
        }
        let secret = Secret::new(&v.secret);
        let ts = v.timestamp;
        // The signed timestamp or id changed (where the scheme signs them), and our signer
        // agrees with the SDK on the same input.
        let bump =
            |h: &mut std::collections::BTreeMap<String, String>, name: &str, value: String| {
                h.insert(name.to_owned(), value);
            };
        match v.provider.as_str() {
            "stripe" => {
                let mut h = v.headers.clone();
                let sig =
                    h["stripe-signature"].replacen(&format!("t={ts}"), &format!("t={}", ts + 1), 1);
                bump(&mut h, "stripe-signature", sig);
                assert_eq!(
                    post(v, &h, body.clone()).await.0,
                    401,
                    "{} timestamp",
                    v.name
                );
                let ours = stripe::sign(&secret, ts, &body);
                assert!(
                    v.headers["stripe-signature"].contains(ours.split(',').nth(1).unwrap()),
                    "{}",
                    v.name
                );
            }
            "github" => {
                let mut h = v.headers.clone();
                bump(
                    &mut h,
                    "x-hub-signature-256",
                    github::sign(&Secret::new("another secret"), &body),
                );
                assert_eq!(
                    post(v, &h, body.clone()).await.0,
                    401,
                    "{} other secret",
                    v.name
                );
                assert_eq!(
                    github::sign(&secret, &body),
                    v.headers["x-hub-signature-256"]
                );
            }
            "standard" => {
                let family = if v.headers.contains_key("svix-id") {
                    "svix"
                } else {
                    "webhook"
                };
                let id = v.headers[&format!("{family}-id")].clone();
                let mut h = v.headers.clone();
                bump(&mut h, &format!("{family}-timestamp"), (ts + 1).to_string());
                assert_eq!(
                    post(v, &h, body.clone()).await.0,
                    401,
                    "{} timestamp",
                    v.name
                );
                let mut h = v.headers.clone();
                bump(&mut h, &format!("{family}-id"), format!("{id}x"));
                assert_eq!(post(v, &h, body.clone()).await.0, 401, "{} id", v.name);
                assert_eq!(
                    standard::sign(&secret, &id, ts, &body).unwrap(),
                    v.headers[&format!("{family}-signature")]
                );
            }
            "slack" => {
                let mut h = v.headers.clone();
                bump(&mut h, "x-slack-request-timestamp", (ts + 1).to_string());
                assert_eq!(
                    post(v, &h, body.clone()).await.0,
                    401,
                    "{} timestamp",
                    v.name
                );
                assert_eq!(
                    slack::sign(&secret, ts, &body),
                    v.headers["x-slack-signature"]
                );
            }
            "shopify" => {
                assert_eq!(
                    shopify::sign(&secret, &body),
                    v.headers["x-shopify-hmac-sha256"]
                );
                let mut h = v.headers.clone();
                bump(
                    &mut h,
                    "x-shopify-hmac-sha256",
                    shopify::sign(&Secret::new("another secret"), &body),
                );
                assert_eq!(
                    post(v, &h, body.clone()).await.0,
                    401,
                    "{} other secret",
                    v.name
                );
            }
            "paddle" => {
                let mut h = v.headers.clone();
                let sig = h["paddle-signature"].replacen(
                    &format!("ts={ts}"),
                    &format!("ts={}", ts + 1),
                    1,
                );
                bump(&mut h, "paddle-signature", sig);
                assert_eq!(
                    post(v, &h, body.clone()).await.0,
                    401,
                    "{} timestamp",
                    v.name
                );
                assert_eq!(
                    paddle::sign(&secret, ts, &body),
                    v.headers["paddle-signature"]
                );
            }
            "square" => {
                let url = v.url.as_deref().unwrap();
                assert_eq!(
                    square::sign(&secret, url, &body),
                    v.headers["x-square-hmacsha256-signature"]
                );
                let other = Vector {
                    url: Some(format!("{url}/other")),
                    ..v.clone()
                };
                assert_eq!(
                    post(&other, &v.headers, body.clone()).await.0,
                    401,
                    "{} url",
                    v.name
                );
            }
            "twilio" => {
                let url = twilio::full_url(v.url.as_deref().unwrap(), &v.query);
                assert_eq!(
                    twilio::sign(&secret, &url, &body),
                    v.headers["x-twilio-signature"]
                );
                let other = Vector {
                    query: format!("{}&extra=1", v.query),
                    ..v.clone()
                };
                assert_eq!(
                    post(&other, &v.headers, body.clone()).await.0,
                    401,
                    "{} query",
                    v.name
                );
            }
            other => panic!("no conformance checks for provider {other}"),
        }
        *counts.entry(v.provider.clone()).or_default() += 1;
    }
    eprintln!("conformance vectors verified: {counts:?}");
    assert!(
        counts.get("github").copied().unwrap_or(0) >= 100,
        "{counts:?}"
    );
    for provider in [
        "stripe", "shopify", "slack", "standard", "paddle", "square", "twilio",
    ] {
        assert!(
            counts.get(provider).copied().unwrap_or(0) >= 2,
            "no vectors for {provider}: {counts:?}"
        );
    }
}
