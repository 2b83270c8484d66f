//! Every scheme's header parser and verifier on arbitrary headers, bodies and query strings:
//! no panic, and nothing authenticates without a valid MAC.
#![no_main]

use arbitrary::Arbitrary;
use doorbell::verify::{WebhookRequest, verify_at};
use doorbell::{Provider, Secret, SourceConfig};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

const PROVIDERS: [(Provider, &[&str]); 9] = [
    (Provider::Stripe, &["stripe-signature"]),
    (Provider::Github, &["x-hub-signature-256", "x-github-event", "x-github-delivery"]),
    (Provider::Shopify, &["x-shopify-hmac-sha256", "x-shopify-topic", "x-shopify-webhook-id"]),
    (Provider::Slack, &["x-slack-signature", "x-slack-request-timestamp"]),
    (Provider::Standard, &["webhook-id", "webhook-timestamp", "webhook-signature"]),
    (Provider::Paddle, &["paddle-signature"]),
    (Provider::Square, &["x-square-hmacsha256-signature"]),
    (Provider::Twilio, &["x-twilio-signature", "i-twilio-idempotency-token"]),
    (Provider::Hmac, &["x-sig", "x-sig-timestamp"]),
];

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    provider: u8,
    values: [&'a [u8]; 3],
    body: &'a [u8],
    query: &'a str,
    now_s: i64,
}

fuzz_target!(|input: Input<'_>| {
    let (provider, names) = PROVIDERS[input.provider as usize % PROVIDERS.len()];
    let mut headers = HeaderMap::new();
    for (name, value) in names.iter().zip(input.values) {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.append(HeaderName::from_static(name), v);
        }
    }
    let mut source = SourceConfig::new("fuzz", provider, vec![Secret::new("whsec_ZnV6ei1rZXktb2YtdHdlbnR5LWZvdXIh")]);
    source.url = Some("https://example.com/webhooks/fuzz".into());
    source.hmac = Some(doorbell::verify::generic::HmacOptions {
        header: "x-sig".into(),
        algorithm: Default::default(),
        encoding: Default::default(),
        prefix: None,
        timestamp_header: Some("x-sig-timestamp".into()),
        event_id: Some("json:/id".into()),
        event_type: None,
    });
    let r = verify_at(&WebhookRequest { headers: &headers, body: input.body, query: input.query }, &source, input.now_s);
    assert!(matches!(&r, Err(e) if !e.is_authentic()), "forged input accepted: {r:?}");
});
