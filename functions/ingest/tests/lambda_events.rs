//! Fixture tests: real API Gateway / function URL event shapes through the exact Lambda path
//! (`LambdaRequest` → base64 guard → lambda_http adapter → app → Lambda response JSON), with an
//! in-process queue and the clock pinned at 1700000000 (the vectors in the failure-case list).

use std::sync::Arc;

use base64::Engine;
use doorbell::clock::ManualClock;
use doorbell::queue::{EventQueue, MemoryQueue, MemoryQueueConfig};
use doorbell::{Envelope, Sources};
use doorbell_ingest::{IngestState, app, lambda};
use lambda_http::request::LambdaRequest;
use lambda_http::{Context, LambdaEvent, Service};
use serde_json::{Value, json};

const NOW: i64 = 1_700_000_000;
const STRIPE_SECRET: &str = "whsec_FAKE_test_secret_0001";
const GITHUB_SECRET: &str = "gh-FAKE-secret";
const S1_B64: &str = "ewogICJpZCI6ICJldnRfRkFLRTAwMDEiLAogICJvYmplY3QiOiAiZXZlbnQiLAogICJ0eXBlIjogImN1c3RvbWVyLnN1YnNjcmlwdGlvbi5jcmVhdGVkIiwKICAiY3JlYXRlZCI6IDE3MDAwMDAwMDAsCiAgImRhdGEiOiB7CiAgICAib2JqZWN0IjogewogICAgICAiaWQiOiAic3ViX0ZBS0UwMDAxIiwKICAgICAgInN0YXR1cyI6ICJpbmNvbXBsZXRlIiwKICAgICAgImRlc2NyaXB0aW9uIjogIkNhZsOpIOKYlSBwbGFuIgogICAgfQogIH0KfQo=";
const S1_SHA256: &str = "61fb449dee2695554d4536fd27349475dd55d6b2434a5a84fd1063af8d8f8c7d";
const S1_HEADER: &str =
    "t=1700000000,v1=cac88ca85c525bd26d085b56585236600593366a4f7bde33ef5fa6dad3a2ce02";
const G1: &str = r#"{"zen":"Fake zen.","hook_id":123456,"hook":{"type":"Repository","id":123456}}"#;
const G1_SIG: &str = "sha256=8805ee1b926f166fa9818a1368ae07d64e8615d2ce30b4bb5d9271ef0058f57a";
const G1_SHA1: &str = "sha1=28080d3ec980c927750e3f956ced4661b1cd7a34";
const G2_B64: &str = "cGF5bG9hZD0lN0IlMjJ6ZW4lMjIlM0ElMjJGYWtlJTIwemVuLiUyMiUyQyUyMmhvb2tfaWQlMjIlM0ExMjM0NTYlMkMlMjJob29rJTIyJTNBJTdCJTIydHlwZSUyMiUzQSUyMlJlcG9zaXRvcnklMjIlMkMlMjJpZCUyMiUzQTEyMzQ1NiU3RCU3RA==";
const G2_SIG: &str = "sha256=6223747bf2d5fae510a980fc1eddbb766d7f8bc779edf37093ff19a950732ffb";
const DELIVERY: &str = "00000000-0000-0000-0000-000000000001";

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn s1() -> String {
    String::from_utf8(b64(S1_B64)).unwrap()
}

struct Harness {
    queue: Arc<MemoryQueue>,
    state: IngestState,
}

impl Harness {
    fn new() -> Self {
        Self::with_queue_limit(262_144)
    }

    fn with_queue_limit(max_message_bytes: usize) -> Self {
        let clock = Arc::new(ManualClock::new(NOW * 1000));
        let queue = Arc::new(MemoryQueue::new(
            "events",
            MemoryQueueConfig {
                max_message_bytes,
                ..Default::default()
            },
            clock.clone(),
        ));
        let sources = Sources::from_json(
            &json!({"sources": [
                {"name": "stripe", "provider": "stripe", "secrets": [STRIPE_SECRET]},
                {"name": "github", "provider": "github", "secrets": [GITHUB_SECRET]},
                {"name": "small", "provider": "github", "secrets": [GITHUB_SECRET], "max_body_bytes": 64},
                {"name": "platform", "provider": "stripe", "secrets": [STRIPE_SECRET]},
                {"name": "connect", "provider": "stripe", "secrets": ["whsec_FAKE_test_secret_0002"]},
                {"name": "shop", "provider": "shopify", "secrets": ["shpss_FAKE_client_secret", "FAKE_admin_notifications_signing_secret"]},
                {"name": "shop-app-only", "provider": "shopify", "secrets": ["shpss_FAKE_client_secret"]},
                {"name": "slack", "provider": "slack", "secrets": ["FAKE_slack_signing_secret_0001"]},
                {"name": "std", "provider": "standard", "secrets": ["whsec_RkFLRS1zdGFuZGFyZC13ZWJob29rcy1rZXktMzJieXQ="]},
                {"name": "shadow", "provider": "stripe", "secrets": ["whsec_not_the_signing_one"], "enforce": false},
                {"name": "shadow-slack", "provider": "slack", "secrets": ["another"], "enforce": false},
                {"name": "shadow-std", "provider": "standard", "secrets": ["whsec_YW5vdGhlci1zdGFuZGFyZC13ZWJob29rcy1rZXk="], "enforce": false},
                {"name": "svix", "provider": "svix", "secrets": ["whsec_RkFLRS1zdGFuZGFyZC13ZWJob29rcy1rZXktMzJieXQ="]},
            ]})
            .to_string(),
        )
        .unwrap();
        let state = IngestState {
            sources: Arc::new(doorbell::catalog::StaticCatalog::new(sources)),
            queue: queue.clone(),
            clock,
        };
        Self { queue, state }
    }

    /// Invokes the Lambda service with a raw event; returns (statusCode, body JSON or text).
    async fn invoke(&self, event: Value) -> (u16, Value) {
        let req: LambdaRequest =
            serde_json::from_value(event).expect("event deserialises as lambda_http does");
        let mut svc = lambda::service(app(self.state.clone()));
        let resp = svc
            .call(LambdaEvent::new(req, Context::default()))
            .await
            .unwrap();
        let resp = serde_json::to_value(resp).unwrap();
        let status = resp["statusCode"].as_u64().unwrap() as u16;
        let body = resp["body"].as_str().unwrap_or("");
        (
            status,
            serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())),
        )
    }

    fn envelopes(&self) -> Vec<Envelope> {
        self.queue
            .peek_bodies()
            .iter()
            .map(|b| Envelope::parse(b).unwrap())
            .collect()
    }
}

fn headers_obj(headers: &[(&str, &str)]) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in headers {
        m.insert((*k).to_owned(), Value::String((*v).to_owned()));
    }
    Value::Object(m)
}

/// HTTP API v2 (payload 2.0) event, `POST /webhooks/{source}`.
fn v2(source: &str, headers: &[(&str, &str)], body: &str, is_b64: bool) -> Value {
    json!({
        "version": "2.0", "routeKey": "POST /webhooks/{source}", "rawPath": format!("/webhooks/{source}"),
        "rawQueryString": "", "headers": headers_obj(headers), "pathParameters": {"source": source},
        "requestContext": {"accountId": "000000000000", "apiId": "fakeapi", "domainName": "fakeapi.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "fakeapi", "http": {"method": "POST", "path": format!("/webhooks/{source}"), "protocol": "HTTP/1.1",
            "sourceIp": "203.0.113.10", "userAgent": "Fake/1.0"}, "requestId": "req-1", "routeKey": "POST /webhooks/{source}",
            "stage": "$default", "time": "14/Nov/2023:22:13:20 +0000", "timeEpoch": 1_700_000_000_000i64},
        "body": body, "isBase64Encoded": is_b64
    })
}

/// REST API v1 event through SAM's default `Prod` stage.
fn v1(source: &str, headers: &[(&str, &str)], body: &str, is_b64: bool) -> Value {
    let multi: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!([v])))
        .collect();
    json!({
        "resource": "/webhooks/{source}", "path": format!("/webhooks/{source}"), "httpMethod": "POST",
        "headers": headers_obj(headers), "multiValueHeaders": multi, "queryStringParameters": null,
        "multiValueQueryStringParameters": null, "pathParameters": {"source": source}, "stageVariables": null,
        "requestContext": {"resourcePath": "/webhooks/{source}", "httpMethod": "POST", "stage": "Prod",
            "path": format!("/Prod/webhooks/{source}"), "requestId": "req-1", "accountId": "000000000000",
            "apiId": "fakeapi", "identity": {"sourceIp": "203.0.113.10"}},
        "body": body, "isBase64Encoded": is_b64
    })
}

/// Lambda function URL event (payload 2.0 without route or path parameters).
fn function_url(path: &str, headers: &[(&str, &str)], body: &str, is_b64: bool) -> Value {
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "", "headers": headers_obj(headers),
        "requestContext": {"accountId": "anonymous", "apiId": "fakeurlid", "domainName": "fakeurlid.lambda-url.us-east-1.on.aws",
            "domainPrefix": "fakeurlid", "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1",
            "sourceIp": "203.0.113.10", "userAgent": "Fake/1.0"}, "requestId": "req-1", "routeKey": "$default",
            "stage": "$default", "time": "14/Nov/2023:22:13:20 +0000", "timeEpoch": 1_700_000_000_000i64},
        "body": body, "isBase64Encoded": is_b64
    })
}

fn stripe_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("content-type", "application/json; charset=utf-8"),
        ("stripe-signature", S1_HEADER),
    ]
}

fn github_headers(
    sig: &'static str,
    content_type: Option<&'static str>,
) -> Vec<(&'static str, &'static str)> {
    let mut h = vec![
        ("x-hub-signature-256", sig),
        ("x-github-event", "ping"),
        ("x-github-delivery", DELIVERY),
        ("x-github-hook-id", "123456"),
    ];
    if let Some(ct) = content_type {
        h.push(("content-type", ct));
    }
    h
}

#[tokio::test]
async fn c01_verifies_the_exact_raw_body_and_enqueues_it_byte_for_byte() {
    let h = Harness::new();
    let (status, body) = h
        .invoke(v2("stripe", &stripe_headers(), &s1(), false))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"received": true, "id": "evt_FAKE0001"}));
    let envs = h.envelopes();
    assert_eq!(envs.len(), 1);
    assert_eq!(envs[0].body_sha256, S1_SHA256);
    assert_eq!(
        envs[0].body_bytes().unwrap().as_ref(),
        b64(S1_B64).as_slice()
    );
    assert_eq!(envs[0].idempotency_key, "stripe#evt_FAKE0001");
    assert_eq!(envs[0].event_type, "customer.subscription.created");
}

#[tokio::test]
async fn c01_reserialized_body_with_the_original_signature_is_401() {
    let h = Harness::new();
    let v: Value = serde_json::from_str(&s1()).unwrap();
    let (status, body) = h
        .invoke(v2("stripe", &stripe_headers(), &v.to_string(), false))
        .await;
    assert_eq!(status, 401);
    assert_eq!(body, json!({"error": "invalid signature"}));
    assert!(h.queue.is_empty());
}

#[tokio::test]
async fn c02_base64_bodies_are_decoded_before_verification() {
    let h = Harness::new();
    // (a) REST v1, binary media type delivery.
    let (status, _) = h
        .invoke(v1("stripe", &stripe_headers(), S1_B64, true))
        .await;
    assert_eq!(status, 200);
    // (b) HTTP API v2, no content-type: API Gateway base64-encodes the body.
    let g1_b64 = base64::engine::general_purpose::STANDARD.encode(G1);
    let (status, _) = h
        .invoke(v2("github", &github_headers(G1_SIG, None), &g1_b64, true))
        .await;
    assert_eq!(status, 200);
    let envs = h.envelopes();
    assert_eq!(
        envs[0].body_bytes().unwrap().as_ref(),
        b64(S1_B64).as_slice()
    );
    assert_eq!(envs[1].body_bytes().unwrap().as_ref(), G1.as_bytes());
}

#[tokio::test]
async fn c02_body_claiming_base64_that_is_not_is_400_without_panic() {
    let h = Harness::new();
    let (status, body) = h
        .invoke(v2("stripe", &stripe_headers(), "%%%not base64%%%", true))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(h.queue.is_empty());
    // A client cannot forge the marker to make a valid request fail differently.
    let mut headers = stripe_headers();
    headers.push((lambda::INVALID_BODY_HEADER, "base64"));
    let (status, _) = h.invoke(v2("stripe", &headers, &s1(), false)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn c03_github_form_body_verifies_over_the_raw_form_bytes() {
    let h = Harness::new();
    let form = Some("application/x-www-form-urlencoded");
    let (status, _) = h
        .invoke(v2("github", &github_headers(G2_SIG, form), G2_B64, true))
        .await;
    assert_eq!(status, 200);
    let envs = h.envelopes();
    assert_eq!(
        envs[0].body_bytes().unwrap().as_ref(),
        b64(G2_B64).as_slice()
    );
    assert_eq!(
        envs[0].content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    // The inner JSON's digest does not verify the form bytes.
    let (status, _) = h
        .invoke(v2("github", &github_headers(G1_SIG, form), G2_B64, true))
        .await;
    assert_eq!(status, 401);
    assert_eq!(h.queue.len(), 1);
}

#[tokio::test]
async fn c05_every_event_shape_routes_and_verifies() {
    let h = Harness::new();
    // Function URL.
    let (status, _) = h
        .invoke(function_url(
            "/webhooks/stripe",
            &stripe_headers(),
            &s1(),
            false,
        ))
        .await;
    assert_eq!(status, 200);
    // REST v1 with the header in its original case.
    let (status, _) = h
        .invoke(v1(
            "stripe",
            &[
                ("Content-Type", "application/json"),
                ("Stripe-Signature", S1_HEADER),
            ],
            &s1(),
            false,
        ))
        .await;
    assert_eq!(status, 200);
    // Console test event: headers null → 401 (missing signature), not a deserialisation error.
    let mut ev = v1("stripe", &[], &s1(), false);
    ev["headers"] = Value::Null;
    ev["multiValueHeaders"] = Value::Null;
    let (status, _) = h.invoke(ev).await;
    assert_eq!(status, 401);
    // HTTP API with payload format 1.0: v1 shape, no requestContext.http.
    let mut ev = v1("stripe", &stripe_headers(), &s1(), false);
    ev["version"] = json!("1.0");
    ev["requestContext"]["stage"] = json!("$default");
    ev["requestContext"]["path"] = json!("/webhooks/stripe");
    let (status, _) = h.invoke(ev).await;
    assert_eq!(status, 200);
    assert_eq!(h.queue.len(), 3);
}

#[tokio::test]
async fn c05_signature_headers_combined_by_api_gateway_are_a_deterministic_401() {
    let h = Harness::new();
    let combined = format!("{G1_SIG},{G1_SIG}");
    let mut headers = github_headers(G1_SIG, Some("application/json"));
    headers[0].1 = Box::leak(combined.into_boxed_str());
    let (status, _) = h.invoke(v2("github", &headers, G1, false)).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn c06_stage_in_the_path_still_routes() {
    let h = Harness::new();
    let mut ev = v1("stripe", &stripe_headers(), &s1(), false);
    ev["path"] = json!("/Prod/webhooks/stripe");
    let (status, _) = h.invoke(ev).await;
    assert_eq!(status, 200);
    let mut ev = v2("stripe", &stripe_headers(), &s1(), false);
    ev["rawPath"] = json!("/live/webhooks/stripe");
    ev["requestContext"]["stage"] = json!("live");
    let (status, _) = h.invoke(ev).await;
    assert_eq!(status, 200);
    let (status, body) = h.invoke(v2("nope", &stripe_headers(), &s1(), false)).await;
    assert_eq!(status, 404);
    assert_eq!(body, json!({"error": "unknown source"}));
    assert_eq!(h.queue.len(), 2);
}

#[tokio::test]
async fn c08_malformed_signatures_are_401_and_enqueue_nothing() {
    let h = Harness::new();
    let github_bad = [
        "sha256=abc".to_owned(),
        format!("sha256={}", "z".repeat(64)),
        format!("md5={}", &G1_SIG[7..]),
        String::new(),
        format!("sha256={}", "a".repeat(65)),
    ];
    for sig in github_bad {
        let leaked: &'static str = Box::leak(sig.clone().into_boxed_str());
        let mut headers = github_headers(leaked, Some("application/json"));
        if sig.is_empty() {
            headers.remove(0);
            headers.push(("x-hub-signature-256", ""));
        }
        let (status, body) = h.invoke(v2("github", &headers, G1, false)).await;
        assert_eq!(status, 401, "github {sig:?}: {body}");
    }
    for sig in ["t=abc,v1=zz", "garbage", "", "t=1700000000,v1="] {
        let (status, _) = h
            .invoke(v2(
                "stripe",
                &[
                    ("content-type", "application/json"),
                    ("stripe-signature", sig),
                ],
                &s1(),
                false,
            ))
            .await;
        assert_eq!(status, 401, "stripe {sig:?}");
    }
    assert!(h.queue.is_empty());
}

#[tokio::test]
async fn c12_only_the_sha256_header_counts_and_ping_is_accepted() {
    let h = Harness::new();
    let only_sha1 = [
        ("x-hub-signature", G1_SHA1),
        ("x-github-event", "ping"),
        ("x-github-delivery", DELIVERY),
    ];
    assert_eq!(h.invoke(v2("github", &only_sha1, G1, false)).await.0, 401);
    let mut both = github_headers(G1_SIG, Some("application/json"));
    both.push(("x-hub-signature", G1_SHA1));
    assert_eq!(h.invoke(v2("github", &both, G1, false)).await.0, 200);
    let mut garbage = github_headers(G1_SIG, Some("application/json"));
    garbage.push(("x-hub-signature", "sha1=garbage"));
    assert_eq!(h.invoke(v2("github", &garbage, G1, false)).await.0, 200);
    let envs = h.envelopes();
    assert_eq!(envs.len(), 2);
    assert_eq!(envs[0].event_type, "ping");
    assert_eq!(envs[0].event_id, DELIVERY);
    assert!(envs[0].idempotency_key.starts_with("github#sha256:"));
}

#[tokio::test]
async fn oversized_body_is_413_and_verified_body_without_event_id_is_400() {
    let h = Harness::new();
    let big = "x".repeat(65);
    let (status, _) = h
        .invoke(v2("small", &github_headers(G1_SIG, None), &big, false))
        .await;
    assert_eq!(status, 413);
    // Signed correctly, but no X-GitHub-Delivery: authentic, unusable → 400.
    let headers = [("x-hub-signature-256", G1_SIG), ("x-github-event", "ping")];
    let (status, body) = h.invoke(v2("github", &headers, G1, false)).await;
    assert_eq!(status, 400);
    assert_eq!(body, json!({"error": "no event id"}));
    assert!(h.queue.is_empty());
}

#[tokio::test]
async fn envelope_over_the_queue_limit_is_413_never_2xx() {
    let h = Harness::with_queue_limit(300);
    let (status, _) = h
        .invoke(v2("stripe", &stripe_headers(), &s1(), false))
        .await;
    assert_eq!(status, 413);
    assert!(h.queue.is_empty());
}

#[tokio::test]
async fn c18_idempotency_keys_come_from_what_the_provider_signs() {
    // GitHub signs only the body: a redelivery, or a captured delivery replayed under any other
    // GUID or hook id, has the same key; a different body (another app's installation, another
    // event) has another key even under the same GUID.
    let h = Harness::new();
    let other_body = r#"{"zen":"Fake zen.","hook_id":654321,"hook":{"type":"App","id":654321}}"#;
    let other_sig = doorbell::verify::github::sign(
        &doorbell::Secret::new(GITHUB_SECRET),
        other_body.as_bytes(),
    );
    let deliveries = [
        (G1, G1_SIG, DELIVERY, "111"),
        (G1, G1_SIG, DELIVERY, "111"),
        (G1, G1_SIG, "11111111-2222-3333-4444-555555555555", "999"),
        (other_body, other_sig.as_str(), DELIVERY, "222"),
    ];
    for (body, sig, delivery, hook) in deliveries {
        let headers = [
            ("x-hub-signature-256", sig),
            ("x-github-event", "ping"),
            ("x-github-delivery", delivery),
            ("x-github-hook-id", hook),
        ];
        assert_eq!(h.invoke(v2("github", &headers, body, false)).await.0, 200);
    }
    let keys: Vec<String> = h
        .envelopes()
        .into_iter()
        .map(|e| e.idempotency_key)
        .collect();
    let g1_key = format!(
        "github#sha256:{}",
        doorbell::envelope::sha256_hex(G1.as_bytes())
    );
    assert_eq!(keys[..3], [g1_key.clone(), g1_key.clone(), g1_key.clone()]);
    assert_ne!(keys[3], g1_key);
    // Stripe: the key is the source and the event id, whatever the signature time.
    let h = Harness::new();
    let body = s1();
    for t in [NOW, NOW - 100] {
        let sig = doorbell::verify::stripe::sign(
            &doorbell::Secret::new(STRIPE_SECRET),
            t,
            body.as_bytes(),
        );
        let headers = [("stripe-signature", sig.as_str())];
        assert_eq!(h.invoke(v2("stripe", &headers, &body, false)).await.0, 200);
    }
    let keys: Vec<String> = h
        .envelopes()
        .into_iter()
        .map(|e| e.idempotency_key)
        .collect();
    assert_eq!(keys, vec!["stripe#evt_FAKE0001", "stripe#evt_FAKE0001"]);
}

#[tokio::test]
async fn rejections_never_echo_secrets_or_signatures() {
    let h = Harness::new();
    let headers = [("stripe-signature", "t=1700000000,v1=deadbeef")];
    let (_, body) = h.invoke(v2("stripe", &headers, &s1(), false)).await;
    let text = body.to_string();
    assert!(
        !text.contains("deadbeef") && !text.contains("whsec"),
        "{text}"
    );
}

#[tokio::test]
async fn c11_each_stripe_endpoint_verifies_with_its_own_secret() {
    let h = Harness::new();
    let rotated =
        "t=1700000000,v1=091eb312287912148416a9240054122c7dbfbe9a5f9f5375e319bd8b65cdc49d";
    let headers = [
        ("content-type", "application/json"),
        ("stripe-signature", rotated),
    ];
    assert_eq!(
        h.invoke(v2("platform", &headers, &s1(), false)).await.0,
        401
    );
    assert_eq!(h.invoke(v2("connect", &headers, &s1(), false)).await.0, 200);
    let envs = h.envelopes();
    assert_eq!(envs.len(), 1);
    assert_eq!(
        (envs[0].source.as_str(), envs[0].idempotency_key.as_str()),
        ("connect", "connect#evt_FAKE0001")
    );
}

#[tokio::test]
async fn c13_shopify_base64_digest_and_per_shop_secrets() {
    let h = Harness::new();
    let h1 = r#"{"id":1001,"email":"buyer@example.invalid","note":"café"}"#;
    let with = |sig: &'static str| {
        vec![
            ("x-shopify-hmac-sha256", sig),
            ("x-shopify-topic", "orders/create"),
            (
                "x-shopify-webhook-id",
                "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
            ),
            ("x-shopify-shop-domain", "fake.myshopify.com"),
            ("content-type", "application/json"),
        ]
    };
    assert_eq!(
        h.invoke(v2(
            "shop",
            &with("aOf0iykvAxVrslfoomm2TOsvnRvwJsL4IJ+mfhVaId8="),
            h1,
            false
        ))
        .await
        .0,
        200
    );
    assert_eq!(
        h.invoke(v2(
            "shop",
            &with("68e7f48b292f03156bb257e8a269b64ceb2f9d1bf026c2f8209fa67e155a21df"),
            h1,
            false
        ))
        .await
        .0,
        401
    );
    assert_eq!(
        h.invoke(v2(
            "shop",
            &with("kDRjVqlZ2DQ0wz2TXVfq8J91jo/gpOSug1kj/56HRVs="),
            h1,
            false
        ))
        .await
        .0,
        200
    );
    assert_eq!(
        h.invoke(v2(
            "shop-app-only",
            &with("kDRjVqlZ2DQ0wz2TXVfq8J91jo/gpOSug1kj/56HRVs="),
            h1,
            false
        ))
        .await
        .0,
        401
    );
    assert_eq!(h.invoke(v2("shop", &with("!!!"), h1, false)).await.0, 401);
    assert_eq!(h.envelopes().len(), 2);
}

#[tokio::test]
async fn c14_slack_url_verification_is_echoed_synchronously_and_not_enqueued() {
    let h = Harness::new();
    let k1 = r#"{"token":"FAKE","challenge":"FAKE_challenge_abc123","type":"url_verification"}"#;
    let headers = [
        (
            "x-slack-signature",
            "v0=5092966c197d8fb5cc20484f3e47339c4ac74101e8297cbc9383019c485e67ec",
        ),
        ("x-slack-request-timestamp", "1700000000"),
        ("content-type", "application/json"),
    ];
    let (status, body) = h.invoke(v2("slack", &headers, k1, false)).await;
    assert_eq!(
        (status, body),
        (200, json!({"challenge": "FAKE_challenge_abc123"}))
    );
    assert!(h.queue.is_empty());
    let bad = [
        (
            "x-slack-signature",
            "v0=0000000000000000000000000000000000000000000000000000000000000000",
        ),
        ("x-slack-request-timestamp", "1700000000"),
    ];
    let (status, body) = h.invoke(v2("slack", &bad, k1, false)).await;
    assert_eq!(status, 401);
    assert!(
        !body.to_string().contains("FAKE_challenge"),
        "the challenge is echoed only after verification"
    );
}

#[tokio::test]
async fn c03_slack_slash_command_form_body_arrives_base64_and_verifies() {
    let h = Harness::new();
    let k2 = "dG9rZW49RkFLRSZ0ZWFtX2lkPVQwMDAxJmNvbW1hbmQ9JTJGd2VhdGhlciZ0ZXh0PTk0MDcwJnJlc3BvbnNlX3VybD1odHRwcyUzQSUyRiUyRmhvb2tzLnNsYWNrLmNvbSUyRmNvbW1hbmRzJTJGRkFLRQ==";
    let headers = [
        (
            "x-slack-signature",
            "v0=def028e76ba6045efea0fd9ca355c4937bf41fa57bde7edada75010b2b5b6c46",
        ),
        ("x-slack-request-timestamp", "1700000000"),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    assert_eq!(h.invoke(v2("slack", &headers, k2, true)).await.0, 200);
    let env = &h.envelopes()[0];
    assert_eq!(env.body_bytes().unwrap().as_ref(), b64(k2).as_slice());
    assert_eq!(env.event_type, "command:/weather");
}

#[tokio::test]
async fn c15_slack_retries_are_accepted_and_share_the_event_id() {
    let h = Harness::new();
    let secret = doorbell::Secret::new("FAKE_slack_signing_secret_0001");
    let body = r#"{"type":"event_callback","team_id":"T0001","event_id":"Ev_FAKE1","event_time":1700000000,"event":{"type":"message","channel":"C1","ts":"1.2"}}"#;
    let body2 = r#"{"type":"event_callback","team_id":"T0001","event_id":"Ev_FAKE2","event_time":1700000000,"event":{"type":"message","channel":"C1","ts":"1.2"}}"#;
    for (b, retry) in [(body, None), (body, Some("1")), (body2, None)] {
        let sig = doorbell::verify::slack::sign(&secret, NOW, b.as_bytes());
        let mut headers = vec![
            ("x-slack-signature", sig.as_str()),
            ("x-slack-request-timestamp", "1700000000"),
        ];
        if let Some(n) = retry {
            headers.push(("x-slack-retry-num", n));
            headers.push(("x-slack-retry-reason", "http_timeout"));
        }
        assert_eq!(h.invoke(v2("slack", &headers, b, false)).await.0, 200);
    }
    let keys: Vec<String> = h
        .envelopes()
        .into_iter()
        .map(|e| e.idempotency_key)
        .collect();
    assert_eq!(keys, ["slack#Ev_FAKE1", "slack#Ev_FAKE1", "slack#Ev_FAKE2"]);
}

#[tokio::test]
async fn c25_binary_body_with_many_headers_travels_base64_with_few_attributes() {
    let h = Harness::new();
    let body = [0x00u8, 0x01, 0xff];
    let secret = doorbell::Secret::new("whsec_RkFLRS1zdGFuZGFyZC13ZWJob29rcy1rZXktMzJieXQ=");
    let sig = doorbell::verify::standard::sign(&secret, "msg_bin_1", NOW, &body).unwrap();
    let mut headers: Vec<(String, String)> = vec![
        ("webhook-id".into(), "msg_bin_1".into()),
        ("webhook-timestamp".into(), NOW.to_string()),
        ("webhook-signature".into(), sig),
        ("content-type".into(), "application/octet-stream".into()),
    ];
    for i in 0..11 {
        headers.push((format!("x-extra-{i}"), format!("value-{i}")));
    }
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let body_b64 = base64::engine::general_purpose::STANDARD.encode(body);
    let (status, _) = h.invoke(v2("std", &pairs, &body_b64, true)).await;
    assert_eq!(status, 200);
    let raw = &h.queue.peek_bodies()[0];
    let env = Envelope::parse(raw).unwrap();
    assert!(env.body.is_none() && env.body_base64.is_some());
    assert_eq!(env.body_bytes().unwrap().as_ref(), &body);
    assert!(env.headers.len() <= 3, "{:?}", env.headers);
    assert_eq!(env.idempotency_key, "std#msg_bin_1");
    let received = h.queue.receive(1).await.unwrap();
    assert!(
        received[0].attributes.len() <= 3,
        "{:?}",
        received[0].attributes
    );
}

#[tokio::test]
async fn svix_headers_verify_under_the_svix_alias() {
    let h = Harness::new();
    let body = r#"{"type":"invoice.paid","data":{"id":"inv_FAKE"}}"#;
    let headers = [
        ("svix-id", "msg_FAKE0001"),
        ("svix-timestamp", "1700000000"),
        (
            "svix-signature",
            "v1,2SN30+jjy12LCZS7Guobulp92bq8dwDXuj40zhlFRW0=",
        ),
    ];
    assert_eq!(h.invoke(v2("svix", &headers, body, false)).await.0, 200);
    assert_eq!(h.envelopes()[0].event_type, "invoice.paid");
}

#[tokio::test]
async fn shadow_mode_accepts_a_mismatched_signature_but_not_a_missing_one() {
    let h = Harness::new();
    // Signed with the 0001 secret; the shadow source only knows another one.
    let (status, body) = h
        .invoke(v2("shadow", &stripe_headers(), &s1(), false))
        .await;
    assert_eq!(status, 200, "{body}");
    let stale = [(
        "stripe-signature",
        "t=1600000000,v1=cac88ca85c525bd26d085b56585236600593366a4f7bde33ef5fa6dad3a2ce02",
    )];
    assert_eq!(
        h.invoke(v2("shadow", &stale, &s1(), false)).await.0,
        200,
        "timestamp waived too"
    );
    assert_eq!(
        h.invoke(v2(
            "shadow",
            &[("content-type", "application/json")],
            &s1(),
            false
        ))
        .await
        .0,
        401
    );
    assert_eq!(
        h.invoke(v2(
            "shadow",
            &[("stripe-signature", "garbage")],
            &s1(),
            false
        ))
        .await
        .0,
        401
    );
    assert_eq!(h.envelopes().len(), 2);
    // The same delivery to an enforcing source is refused.
    let rotated = [(
        "stripe-signature",
        "t=1700000000,v1=091eb312287912148416a9240054122c7dbfbe9a5f9f5375e319bd8b65cdc49d",
    )];
    assert_eq!(
        h.invoke(v2("platform", &rotated, &s1(), false)).await.0,
        401
    );
}

#[tokio::test]
async fn shadow_mode_never_echoes_a_challenge_or_accepts_malformed_signatures() {
    let h = Harness::new();
    let k1 = r#"{"token":"FAKE","challenge":"attacker-chosen","type":"url_verification"}"#;
    let headers = [
        (
            "x-slack-signature",
            "v0=0000000000000000000000000000000000000000000000000000000000000000",
        ),
        ("x-slack-request-timestamp", "1700000000"),
    ];
    let (status, body) = h.invoke(v2("shadow-slack", &headers, k1, false)).await;
    assert_eq!(status, 401);
    assert!(!body.to_string().contains("attacker-chosen"));
    for sig in ["v1,", "v1,!!!", "v2,AAAA"] {
        let headers = [
            ("webhook-id", "msg_forged"),
            ("webhook-timestamp", "1700000000"),
            ("webhook-signature", sig),
        ];
        assert_eq!(
            h.invoke(v2("shadow-std", &headers, r#"{"type":"x"}"#, false))
                .await
                .0,
            401,
            "{sig}"
        );
    }
    assert!(h.queue.is_empty());
}

#[tokio::test]
async fn shopify_topics_are_unsigned_so_one_body_under_any_topic_shares_one_key() {
    let h = Harness::new();
    let h1 = r#"{"id":1001,"email":"buyer@example.invalid","note":"café"}"#;
    for topic in ["orders/create", "orders/updated", "orders/create"] {
        let headers = [
            (
                "x-shopify-hmac-sha256",
                "aOf0iykvAxVrslfoomm2TOsvnRvwJsL4IJ+mfhVaId8=",
            ),
            ("x-shopify-topic", topic),
            (
                "x-shopify-webhook-id",
                "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
            ),
        ];
        assert_eq!(h.invoke(v2("shop", &headers, h1, false)).await.0, 200);
    }
    let keys: Vec<String> = h
        .envelopes()
        .into_iter()
        .map(|e| e.idempotency_key)
        .collect();
    // The topic header is not signed: a captured delivery replayed under another topic keeps
    // its key, so the worker sees a duplicate or a conflict, never a second event.
    assert_eq!(keys[0], keys[1]);
    assert_eq!(keys[0], keys[2]);
    let types: Vec<String> = h.envelopes().into_iter().map(|e| e.event_type).collect();
    assert_eq!(types, ["orders/create", "orders/updated", "orders/create"]);
}
