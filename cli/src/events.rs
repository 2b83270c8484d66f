//! The sample Lambda events in `events/`: real API Gateway (HTTP API v2, REST v1), function URL
//! and SQS event shapes, one file per scenario, signed with the dev secrets at
//! [`SAMPLE_TIME_S`]. `doorbell events write events/` regenerates them (a test checks the
//! committed files match); `events/expected.json` says what each must produce.
//!
//! The shapes follow the AWS docs' examples ("Working with AWS Lambda proxy integrations for
//! HTTP APIs", "Lambda function URLs: request payload", "Using Lambda with Amazon SQS").

use base64::Engine;
use doorbell::verify::{Dedupe, Verified};
use doorbell::{Envelope, Provider, Secret, SourceConfig};
use serde_json::{Value, json};

use crate::samples::{self, DEV_GITHUB_SECRET, DEV_STRIPE_SECRET};

/// When the sample deliveries were signed, epoch seconds. Re-sign with `doorbell sign` to
/// verify them at another time.
pub const SAMPLE_TIME_S: i64 = 1_700_000_000;

/// What a sample event must produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// The ingest function answers this HTTP status.
    Status(u16),
    /// The worker reports exactly these message ids in `batchItemFailures`.
    Failures(Vec<&'static str>),
}

/// One sample event file.
#[derive(Debug, Clone)]
pub struct Sample {
    /// File name under `events/`.
    pub file: &'static str,
    /// What it shows.
    pub about: &'static str,
    /// The Lambda event.
    pub event: Value,
    /// What it must produce.
    pub expect: Expect,
}

fn headers_obj(headers: &[(String, String)]) -> Value {
    Value::Object(
        headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// HTTP API v2 (payload format 2.0) event for `POST /webhooks/{source}`.
pub fn http_api_v2(
    source: &str,
    headers: &[(String, String)],
    body: &[u8],
    base64_body: bool,
) -> Value {
    let path = format!("/webhooks/{source}");
    json!({
        "version": "2.0",
        "routeKey": "POST /webhooks/{source}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers_obj(headers),
        "pathParameters": {"source": source},
        "requestContext": {
            "accountId": "123456789012", "apiId": "a1b2c3d4e5", "domainName": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "a1b2c3d4e5",
            "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.10", "userAgent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"},
            "requestId": "JKJaXmPLvHcESHA=", "routeKey": "POST /webhooks/{source}", "stage": "$default",
            "time": "14/Nov/2023:22:13:20 +0000", "timeEpoch": SAMPLE_TIME_S * 1000
        },
        "body": body_text(body, base64_body),
        "isBase64Encoded": base64_body
    })
}

/// REST API (v1) event through SAM's default `Prod` stage.
pub fn rest_v1(source: &str, headers: &[(String, String)], body: &[u8]) -> Value {
    let path = format!("/webhooks/{source}");
    let multi: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.clone(), json!([v])))
        .collect();
    json!({
        "resource": "/webhooks/{source}", "path": path, "httpMethod": "POST",
        "headers": headers_obj(headers), "multiValueHeaders": multi,
        "queryStringParameters": null, "multiValueQueryStringParameters": null,
        "pathParameters": {"source": source}, "stageVariables": null,
        "requestContext": {
            "accountId": "123456789012", "apiId": "a1b2c3d4e5", "resourceId": "abc123", "resourcePath": "/webhooks/{source}",
            "httpMethod": "POST", "stage": "Prod", "path": format!("/Prod{path}"), "protocol": "HTTP/1.1",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef", "requestTimeEpoch": SAMPLE_TIME_S * 1000,
            "identity": {"sourceIp": "203.0.113.10", "userAgent": "Stripe/1.0"}
        },
        "body": String::from_utf8_lossy(body), "isBase64Encoded": false
    })
}

/// Lambda function URL event.
pub fn function_url(source: &str, headers: &[(String, String)], body: &[u8]) -> Value {
    let path = format!("/webhooks/{source}");
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": headers_obj(headers),
        "requestContext": {
            "accountId": "anonymous", "apiId": "f2k3example", "domainName": "f2k3example.lambda-url.us-east-1.on.aws",
            "domainPrefix": "f2k3example",
            "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.10", "userAgent": "Stripe/1.0"},
            "requestId": "id", "routeKey": "$default", "stage": "$default", "time": "14/Nov/2023:22:13:20 +0000", "timeEpoch": SAMPLE_TIME_S * 1000
        },
        "body": String::from_utf8_lossy(body), "isBase64Encoded": false
    })
}

fn body_text(body: &[u8], base64_body: bool) -> String {
    if base64_body {
        base64::engine::general_purpose::STANDARD.encode(body)
    } else {
        String::from_utf8_lossy(body).into_owned()
    }
}

/// An SQS event of `(messageId, body, receive count)` records, as Lambda delivers them.
pub fn sqs_event(records: &[(&str, String, u32)]) -> Value {
    let records: Vec<Value> = records
        .iter()
        .map(|(id, body, count)| {
            json!({
                "messageId": id,
                "receiptHandle": format!("AQEB{id}handle"),
                "body": body,
                "attributes": {"ApproximateReceiveCount": count.to_string(), "SentTimestamp": (SAMPLE_TIME_S * 1000).to_string(),
                    "SenderId": "AROAEXAMPLE:doorbell-ingest", "ApproximateFirstReceiveTimestamp": (SAMPLE_TIME_S * 1000 + 5).to_string()},
                "messageAttributes": {
                    "source": {"stringValue": "stripe", "stringListValues": [], "binaryListValues": [], "dataType": "String"}
                },
                "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:doorbell-EventsQueue",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

fn envelope(
    source: &str,
    provider: Provider,
    event_id: &str,
    event_type: &str,
    body: &[u8],
    content_type: &str,
) -> String {
    let src = SourceConfig::new(source, provider, vec![Secret::new("unused")]);
    let verified = Verified {
        event_id: event_id.into(),
        event_type: event_type.into(),
        occurred_at_ms: None,
        dedupe: if provider == Provider::Github {
            Dedupe::BodyDigest
        } else {
            Dedupe::EventId
        },
        reply: None,
        headers: vec![],
    };
    Envelope::new(
        &src,
        verified,
        body,
        Some(content_type),
        SAMPLE_TIME_S * 1000,
    )
    .to_json()
}

/// A Stripe `customer.subscription.{kind}` envelope for `sub_1Doorbell0001`, `offset_s` seconds
/// after the sample time.
fn subscription_envelope(event_id: &str, kind: &str, offset_s: i64, status: &str) -> String {
    let body = json!({
        "id": event_id, "object": "event", "api_version": "2024-06-20",
        "created": SAMPLE_TIME_S + offset_s, "livemode": false,
        "type": format!("customer.subscription.{kind}"),
        "data": {"object": {
            "id": "sub_1Doorbell0001", "object": "subscription", "status": status,
            "customer": "cus_Doorbell0001", "cancel_at_period_end": false,
            "items": {"object": "list", "data": [{"object": "subscription_item", "price": {"id": "price_1Doorbell0001"}}]}
        }}
    });
    // Sorted keys: the same bytes whatever map order serde_json keeps.
    let body = sorted(&body).to_string();
    envelope(
        "stripe",
        Provider::Stripe,
        event_id,
        &format!("customer.subscription.{kind}"),
        body.as_bytes(),
        "application/json; charset=utf-8",
    )
}

/// Every sample, in file order.
pub fn samples() -> Vec<Sample> {
    let t = SAMPLE_TIME_S;
    let pi = samples::STRIPE_PAYMENT_INTENT_SUCCEEDED.as_bytes();
    let push = samples::GITHUB_PUSH.as_bytes();
    let json = "application/json";
    let stripe = samples::stripe_headers(DEV_STRIPE_SECRET, t, pi);
    let mut bad_sig = stripe.clone();
    bad_sig[2].1 = format!("t={t},v1={}", "0".repeat(64));
    let no_sig: Vec<_> = stripe
        .iter()
        .filter(|(k, _)| k != "stripe-signature")
        .cloned()
        .collect();
    let gh_push = samples::github_headers(
        DEV_GITHUB_SECRET,
        "push",
        "9c1a6e10-8f3e-11ee-9c4d-0242ac120002",
        json,
        push,
    );
    let ping = samples::github_form_body(
        r#"{"zen":"Design for failure.","hook_id":123456,"hook":{"type":"Repository","id":123456,"events":["push"]}}"#,
    );
    let gh_ping = samples::github_headers(
        DEV_GITHUB_SECRET,
        "ping",
        "9c1a6e10-8f3e-11ee-9c4d-0242ac120001",
        "application/x-www-form-urlencoded",
        &ping,
    );
    let mut sha1_only: Vec<_> = gh_push
        .iter()
        .filter(|(k, _)| k != "x-hub-signature-256")
        .cloned()
        .collect();
    sha1_only.push((
        "x-hub-signature".into(),
        "sha1=0000000000000000000000000000000000000000".into(),
    ));

    let env_pi = envelope(
        "stripe",
        Provider::Stripe,
        "evt_3QdemoPaymentIntent0001",
        "payment_intent.succeeded",
        pi,
        json,
    );
    let env_push = envelope(
        "github",
        Provider::Github,
        "9c1a6e10-8f3e-11ee-9c4d-0242ac120002",
        "push",
        push,
        json,
    );
    let env_unknown = envelope(
        "stripe",
        Provider::Stripe,
        "evt_1Unhandled0001",
        "customer.created",
        br#"{"id":"evt_1Unhandled0001","type":"customer.created"}"#,
        json,
    );
    let mut tampered: Value = serde_json::from_str(&env_pi).unwrap_or_default();
    tampered["body"] = Value::String(samples::STRIPE_PAYMENT_INTENT_SUCCEEDED.replace("2000", "1"));
    tampered["event_id"] = json!("evt_3QdemoTampered0001");
    tampered["idempotency_key"] = json!("stripe#evt_3QdemoTampered0001");

    vec![
        Sample {
            file: "ingest-stripe-http-api.json",
            about: "Stripe payment_intent.succeeded through an HTTP API (payload 2.0)",
            event: http_api_v2("stripe", &stripe, pi, false),
            expect: Expect::Status(200),
        },
        Sample {
            file: "ingest-stripe-base64.json",
            about: "the same delivery with the body base64-encoded by API Gateway",
            event: http_api_v2("stripe", &stripe, pi, true),
            expect: Expect::Status(200),
        },
        Sample {
            file: "ingest-stripe-rest-api.json",
            about: "the same delivery through a REST API, stage Prod",
            event: rest_v1("stripe", &stripe, pi),
            expect: Expect::Status(200),
        },
        Sample {
            file: "ingest-stripe-sam-local.json",
            about: "the shape `sam local start-api` sends: REST v1 with a version field and no stage in the path",
            event: {
                let mut e = rest_v1("stripe", &stripe, pi);
                e["version"] = json!("1.0");
                e["requestContext"]["stage"] = json!("Prod");
                e["requestContext"]["path"] = json!("/webhooks/stripe");
                e
            },
            expect: Expect::Status(200),
        },
        Sample {
            file: "ingest-stripe-function-url.json",
            about: "the same delivery through a Lambda function URL",
            event: function_url("stripe", &stripe, pi),
            expect: Expect::Status(200),
        },
        Sample {
            file: "ingest-stripe-bad-signature.json",
            about: "a Stripe-Signature that does not match",
            event: http_api_v2("stripe", &bad_sig, pi, false),
            expect: Expect::Status(401),
        },
        Sample {
            file: "ingest-stripe-missing-signature.json",
            about: "no Stripe-Signature header",
            event: http_api_v2("stripe", &no_sig, pi, false),
            expect: Expect::Status(401),
        },
        Sample {
            file: "ingest-github-push.json",
            about: "GitHub push, JSON",
            event: http_api_v2("github", &gh_push, push, false),
            expect: Expect::Status(200),
        },
        Sample {
            file: "ingest-github-form-ping.json",
            about: "GitHub ping, form-encoded (payload=…), base64 as HTTP APIs deliver form bodies",
            event: http_api_v2("github", &gh_ping, &ping, true),
            expect: Expect::Status(200),
        },
        Sample {
            file: "ingest-github-sha1-only.json",
            about: "GitHub push with only the legacy SHA-1 header",
            event: http_api_v2("github", &sha1_only, push, false),
            expect: Expect::Status(401),
        },
        Sample {
            file: "ingest-unknown-source.json",
            about: "a source that is not configured",
            event: http_api_v2("paypal", &stripe, pi, false),
            expect: Expect::Status(404),
        },
        Sample {
            file: "ingest-invalid-base64.json",
            about: "isBase64Encoded true with a body that is not base64",
            event: {
                let mut e = http_api_v2("stripe", &stripe, pi, true);
                e["body"] = json!("%%% not base64 %%%");
                e
            },
            expect: Expect::Status(400),
        },
        Sample {
            file: "worker-new-events.json",
            about: "two new events: a Stripe payment and a GitHub push",
            event: sqs_event(&[
                ("059f36b4-87a3-44ab-83d2-661975830a7d", env_pi.clone(), 1),
                ("2e1424d4-f796-459a-8184-9c92662be6da", env_push, 1),
            ]),
            expect: Expect::Failures(vec![]),
        },
        Sample {
            file: "worker-duplicate.json",
            about: "the same event delivered twice (a provider retry): its handler runs once",
            event: sqs_event(&[
                ("b9e6a2a4-0001-4c38-9d7b-000000000001", env_pi.clone(), 1),
                ("b9e6a2a4-0002-4c38-9d7b-000000000002", env_pi.clone(), 1),
            ]),
            expect: Expect::Failures(vec![]),
        },
        Sample {
            file: "worker-poison.json",
            about: "a message that is not an envelope: reported, dead-lettered after maxReceiveCount",
            event: sqs_event(&[(
                "c0ffee00-0000-4000-8000-00000000dead",
                "{\"not\":\"an envelope\"}".into(),
                5,
            )]),
            expect: Expect::Failures(vec!["c0ffee00-0000-4000-8000-00000000dead"]),
        },
        Sample {
            file: "worker-subscription-out-of-order.json",
            about: "Stripe subscription events out of order (deleted, then created and updated): the subscription stays deleted",
            event: sqs_event(&[
                (
                    "e5000000-0000-4000-8000-000000000003",
                    subscription_envelope("evt_1SubDeleted0003", "deleted", 3, "canceled"),
                    1,
                ),
                (
                    "e5000000-0000-4000-8000-000000000001",
                    subscription_envelope("evt_1SubCreated0001", "created", 1, "incomplete"),
                    1,
                ),
                (
                    "e5000000-0000-4000-8000-000000000002",
                    subscription_envelope("evt_1SubUpdated0002", "updated", 2, "active"),
                    1,
                ),
            ]),
            expect: Expect::Failures(vec![]),
        },
        Sample {
            file: "worker-mixed.json",
            about: "a batch with a new event, an event without a handler, a tampered envelope and a poison message",
            event: sqs_event(&[
                ("d1000000-0000-4000-8000-000000000001", env_pi, 1),
                ("d1000000-0000-4000-8000-000000000002", env_unknown, 1),
                (
                    "d1000000-0000-4000-8000-000000000003",
                    sorted(&tampered).to_string(),
                    2,
                ),
                ("d1000000-0000-4000-8000-000000000004", "not json".into(), 3),
            ]),
            expect: Expect::Failures(vec![
                "d1000000-0000-4000-8000-000000000003",
                "d1000000-0000-4000-8000-000000000004",
            ]),
        },
    ]
}

/// `events/expected.json`: file → `{"kind","about","status"|"batchItemFailures"}`.
pub fn expected_json() -> Value {
    let mut m = serde_json::Map::new();
    for s in samples() {
        let v = match &s.expect {
            Expect::Status(code) => {
                json!({"function": "ingest", "about": s.about, "statusCode": code})
            }
            Expect::Failures(ids) => {
                json!({"function": "worker", "about": s.about, "batchItemFailures": ids})
            }
        };
        m.insert(s.file.to_owned(), v);
    }
    Value::Object(m)
}

/// Pretty JSON with a trailing newline, as the files are written.
pub fn to_file_text(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(&sorted(v)).unwrap_or_default();
    s.push('\n');
    s
}

/// `v` with every object's keys in sorted order, whatever order `serde_json`'s map keeps
/// (insertion order when a crate in the build enables its `preserve_order` feature).
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&m[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Writes every sample and `expected.json` into `dir`.
///
/// # Errors
/// I/O errors.
pub fn write_all(dir: &std::path::Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let all = samples();
    for s in &all {
        std::fs::write(dir.join(s.file), to_file_text(&s.event))?;
    }
    std::fs::write(dir.join("expected.json"), to_file_text(&expected_json()))?;
    Ok(all.len())
}
