//! Sample deliveries: real Stripe and GitHub event payloads, bundled, and signing helpers that
//! produce the headers the provider would send.

use doorbell::Secret;
use doorbell::verify::{github, stripe};

/// A Stripe `payment_intent.succeeded` event (Stripe's Event object shape).
pub const STRIPE_PAYMENT_INTENT_SUCCEEDED: &str =
    include_str!("../samples/stripe-payment_intent.succeeded.json");
/// A GitHub `push` delivery (GitHub's push payload shape).
pub const GITHUB_PUSH: &str = include_str!("../samples/github-push.json");

/// The dev secret of the local `stripe` source. Not a real secret: only for local runs.
pub const DEV_STRIPE_SECRET: &str = "whsec_doorbell_local_development_only";
/// The dev secret of the local `github` source. Not a real secret: only for local runs.
pub const DEV_GITHUB_SECRET: &str = "doorbell-local-development-only";

/// The local sources document: `stripe` and `github` with the dev secrets.
pub fn dev_sources_json() -> String {
    serde_json::json!({"sources": [
        {"name": "stripe", "provider": "stripe", "secrets": [DEV_STRIPE_SECRET]},
        {"name": "github", "provider": "github", "secrets": [DEV_GITHUB_SECRET]},
    ]})
    .to_string()
}

/// Headers of a Stripe delivery of `body` signed with `secret` at `timestamp_s` (epoch seconds).
pub fn stripe_headers(secret: &str, timestamp_s: i64, body: &[u8]) -> Vec<(String, String)> {
    vec![
        (
            "content-type".into(),
            "application/json; charset=utf-8".into(),
        ),
        (
            "user-agent".into(),
            "Stripe/1.0 (+https://stripe.com/docs/webhooks)".into(),
        ),
        (
            stripe::SIGNATURE_HEADER.into(),
            stripe::sign(&Secret::new(secret), timestamp_s, body),
        ),
    ]
}

/// Headers of a GitHub delivery of `body` (`content_type` JSON or form) signed with `secret`.
pub fn github_headers(
    secret: &str,
    event: &str,
    delivery: &str,
    content_type: &str,
    body: &[u8],
) -> Vec<(String, String)> {
    vec![
        ("content-type".into(), content_type.into()),
        ("user-agent".into(), "GitHub-Hookshot/demo".into()),
        (github::EVENT_HEADER.into(), event.into()),
        (github::DELIVERY_HEADER.into(), delivery.into()),
        (github::HOOK_ID_HEADER.into(), "123456".into()),
        (
            github::SIGNATURE_HEADER.into(),
            github::sign(&Secret::new(secret), body),
        ),
    ]
}

/// `payload=<url-encoded JSON>`, as GitHub sends with content type
/// `application/x-www-form-urlencoded`.
pub fn github_form_body(json: &str) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", json)
        .finish()
        .into_bytes()
}
