//! Property tests: on arbitrary input, verification never panics and never accepts a delivery
//! without a valid MAC; signing then verifying always authenticates.

use doorbell::verify::{VerifyError, WebhookRequest, github, stripe, verify_at};
use doorbell::{Envelope, Provider, Secret, SourceConfig, Sources};
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

const NOW: i64 = 1_700_000_000;

fn source(provider: Provider) -> SourceConfig {
    SourceConfig::new("s", provider, vec![Secret::new("whsec_prop_secret")])
}

fn headers(pairs: &[(&'static str, Vec<u8>)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        if let Ok(v) = HeaderValue::from_bytes(v) {
            h.append(HeaderName::from_static(k), v);
        }
    }
    h
}

fn json_body() -> impl Strategy<Value = Vec<u8>> {
    ("[a-zA-Z0-9_]{1,20}", "[a-z._]{1,20}", any::<Vec<u8>>()).prop_map(|(id, ty, pad)| {
        format!(
            r#"{{"id":"{id}","type":"{ty}","pad":"{}"}}"#,
            hex::encode(pad)
        )
        .into_bytes()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn stripe_never_panics_and_accepts_only_the_true_signature(header in proptest::collection::vec(any::<u8>(), 0..200), body in any::<Vec<u8>>()) {
        let h = headers(&[(stripe::SIGNATURE_HEADER, header.clone())]);
        let r = verify_at(&WebhookRequest { headers: &h, body: &body , query: ""}, &source(Provider::Stripe), NOW);
        if r.is_ok() || matches!(r, Err(VerifyError::NoEventId(_))) {
            let text = String::from_utf8(header).unwrap();
            let t = text.split(',').find_map(|e| e.strip_prefix("t=")).unwrap();
            let expected = stripe::sign(&Secret::new("whsec_prop_secret"), t.parse().unwrap(), &body);
            prop_assert!(text.contains(expected.split(',').nth(1).unwrap()));
        }
    }

    #[test]
    fn stripe_structured_garbage_never_authenticates(t in "[0-9a-z=]{0,14}", sigs in proptest::collection::vec("[0-9a-fA-Fz]{0,70}", 0..10), body in json_body()) {
        let header = std::iter::once(format!("t={t}")).chain(sigs.iter().map(|s| format!("v1={s}"))).collect::<Vec<_>>().join(",");
        let h = headers(&[(stripe::SIGNATURE_HEADER, header.into_bytes())]);
        let r = verify_at(&WebhookRequest { headers: &h, body: &body , query: ""}, &source(Provider::Stripe), NOW);
        prop_assert!(r.is_err());
    }

    #[test]
    fn stripe_sign_then_verify_always_authenticates(body in json_body(), skew in -300i64..=300) {
        let header = stripe::sign(&Secret::new("whsec_prop_secret"), NOW + skew, &body);
        let h = headers(&[(stripe::SIGNATURE_HEADER, header.into_bytes())]);
        let v = verify_at(&WebhookRequest { headers: &h, body: &body , query: ""}, &source(Provider::Stripe), NOW);
        prop_assert!(v.is_ok(), "{:?}", v);
    }

    #[test]
    fn github_never_panics_and_accepts_only_the_true_signature(sig in proptest::collection::vec(any::<u8>(), 0..100), body in any::<Vec<u8>>(), event in "[a-z_]{0,12}", delivery in proptest::collection::vec(any::<u8>(), 0..40)) {
        let h = headers(&[(github::SIGNATURE_HEADER, sig.clone()), (github::EVENT_HEADER, event.into_bytes()), (github::DELIVERY_HEADER, delivery)]);
        let r = verify_at(&WebhookRequest { headers: &h, body: &body , query: ""}, &source(Provider::Github), NOW);
        if r.is_ok() || matches!(r, Err(VerifyError::NoEventId(_))) {
            let sent = String::from_utf8(sig).unwrap();
            prop_assert_eq!(sent.trim(), github::sign(&Secret::new("whsec_prop_secret"), &body));
        }
    }

    #[test]
    fn github_sign_then_verify_always_authenticates(body in any::<Vec<u8>>(), delivery in "[0-9a-f-]{1,36}") {
        let sig = github::sign(&Secret::new("whsec_prop_secret"), &body);
        let h = headers(&[(github::SIGNATURE_HEADER, sig.into_bytes()), (github::EVENT_HEADER, b"push".to_vec()), (github::DELIVERY_HEADER, delivery.clone().into_bytes())]);
        let v = verify_at(&WebhookRequest { headers: &h, body: &body , query: ""}, &source(Provider::Github), NOW).unwrap();
        prop_assert_eq!(v.event_id, delivery);
    }

    #[test]
    fn envelope_and_sources_parsers_never_panic(text in any::<String>()) {
        let _ = Envelope::parse(&text);
        let _ = Sources::from_json(&text);
    }
}

/// Every scheme's signature-bearing headers, for the no-panic / no-forgery property.
const SCHEME_HEADERS: &[(Provider, &[&str])] = &[
    (
        Provider::Shopify,
        &[
            "x-shopify-hmac-sha256",
            "x-shopify-topic",
            "x-shopify-webhook-id",
            "x-shopify-event-id",
            "x-shopify-triggered-at",
        ],
    ),
    (
        Provider::Slack,
        &[
            "x-slack-signature",
            "x-slack-request-timestamp",
            "x-slack-retry-num",
        ],
    ),
    (
        Provider::Standard,
        &[
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
            "svix-id",
            "svix-timestamp",
            "svix-signature",
        ],
    ),
    (Provider::Paddle, &["paddle-signature"]),
    (Provider::Square, &["x-square-hmacsha256-signature"]),
    (
        Provider::Twilio,
        &["x-twilio-signature", "i-twilio-idempotency-token"],
    ),
    (Provider::Stripe, &["stripe-signature"]),
    (
        Provider::Github,
        &["x-hub-signature-256", "x-github-event", "x-github-delivery"],
    ),
];

fn any_source(provider: Provider) -> SourceConfig {
    let mut s = SourceConfig::new(
        "s",
        provider,
        vec![Secret::new(
            "whsec_cHJvcGVydHktdGVzdC1rZXktb2YtMzItYnl0ZXMhISE=",
        )],
    );
    s.url = Some("https://example.com/webhooks/s".into());
    s.hmac = Some(doorbell::verify::generic::HmacOptions {
        header: "x-sig".into(),
        algorithm: doorbell::verify::generic::Algorithm::Sha256,
        encoding: doorbell::verify::generic::Encoding::Hex,
        prefix: None,
        timestamp_header: Some("x-sig-timestamp".into()),
        event_id: Some("header:x-delivery".into()),
        event_type: Some("json:/type".into()),
    });
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    #[test]
    fn no_scheme_panics_or_authenticates_arbitrary_input(
        which in 0..SCHEME_HEADERS.len(),
        values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 6),
        ts in prop_oneof![Just(NOW.to_string()), "[0-9]{0,13}", ".{0,20}"],
        body in any::<Vec<u8>>(),
        query in ".{0,40}",
    ) {
        let (provider, names) = SCHEME_HEADERS[which];
        let mut h = HeaderMap::new();
        for (name, value) in names.iter().zip(values.iter()) {
            let v = if name.ends_with("timestamp") { ts.clone().into_bytes() } else { value.clone() };
            if let Ok(v) = HeaderValue::from_bytes(&v) {
                h.append(HeaderName::from_static(name), v);
            }
        }
        let r = verify_at(&WebhookRequest { headers: &h, body: &body, query: &query }, &any_source(provider), NOW);
        // A random 160- or 256-bit MAC never matches: nothing is authentic.
        prop_assert!(matches!(&r, Err(e) if !e.is_authentic()), "{provider:?}: {r:?}");
    }
}
