//! GitHub webhook signatures.
//!
//! Follows GitHub's "Validating webhook deliveries"
//! (<https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries>) and
//! "Delivery headers" (<https://docs.github.com/en/webhooks/webhook-events-and-payloads#delivery-headers>):
//!
//! - header `X-Hub-Signature-256: sha256=<64 lower-case hex>`, HMAC-SHA256 of the raw body keyed
//!   with the webhook secret. The legacy SHA-1 `X-Hub-Signature` is never accepted, not even as
//!   a fallback;
//! - the signature covers the body exactly as sent, for both content types GitHub offers:
//!   `application/json` and `application/x-www-form-urlencoded` (`payload=<url-encoded JSON>`);
//! - GitHub signs no timestamp and no header: only the body. Replays are stopped by the
//!   idempotency key, which is therefore the body's SHA-256 ([`super::Dedupe::BodyDigest`]),
//!   not the delivery GUID (a replayed capture could carry any GUID);
//! - event id: `X-GitHub-Delivery` (a GUID, kept for logs and the event store); event type:
//!   `X-GitHub-Event`, with the body's `action` appended (`pull_request.opened`). Being
//!   unsigned, the event type only routes to a handler, which must parse the body it gets;
//! - a captured delivery replayed under another `X-GitHub-Event`, `X-GitHub-Delivery`,
//!   `X-GitHub-Hook-ID` or query string keeps its key: a duplicate, or a conflict when the type
//!   differs (the event store keeps the first and runs neither again).

use hmac::{KeyInit, Mac};
use sha2::Sha256;

use super::{
    Dedupe, Scheme, Verified, VerifyError, WebhookRequest, event_id, event_type, json,
    optional_header, shadow, single_header,
};
use crate::config::SourceConfig;
use crate::secret::Secret;

/// The signature header (SHA-256).
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// The event name header (`push`, `pull_request`, `ping`, …).
pub const EVENT_HEADER: &str = "x-github-event";
/// The delivery GUID header.
pub const DELIVERY_HEADER: &str = "x-github-delivery";
/// The hook id header.
pub const HOOK_ID_HEADER: &str = "x-github-hook-id";

const PREFIX: &str = "sha256=";

type HmacSha256 = hmac::Hmac<Sha256>;

/// The GitHub scheme.
#[derive(Debug, Clone, Copy, Default)]
pub struct GitHub;

/// Computes the `X-Hub-Signature-256` value GitHub would send for `body`. Used by the CLI and
/// tests.
pub fn sign(secret: &Secret, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes()).expect("any key length");
    mac.update(body);
    format!("{PREFIX}{}", hex::encode(mac.finalize().into_bytes()))
}

/// The JSON document of a GitHub delivery: the body itself, or the `payload` field of a
/// form-encoded body. `None` if neither is there.
pub fn json_payload(body: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    let first = body.iter().copied().find(|b| !b.is_ascii_whitespace());
    if first == Some(b'{') {
        return Some(std::borrow::Cow::Borrowed(body));
    }
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| std::borrow::Cow::Owned(v.into_owned().into_bytes()))
}

impl Scheme for GitHub {
    fn verify_at(
        &self,
        req: &WebhookRequest<'_>,
        source: &SourceConfig,
        _now_s: i64,
    ) -> Result<Verified, VerifyError> {
        let value = single_header(req.headers, SIGNATURE_HEADER)?;
        let hex_sig = value
            .strip_prefix(PREFIX)
            .ok_or(VerifyError::MalformedHeader(SIGNATURE_HEADER))?;
        let mut sig = [0u8; 32];
        hex::decode_to_slice(hex_sig, &mut sig)
            .map_err(|_| VerifyError::MalformedHeader(SIGNATURE_HEADER))?;
        let matched = source.secrets.iter().any(|secret| {
            let mut mac =
                HmacSha256::new_from_slice(secret.expose().as_bytes()).expect("any key length");
            mac.update(req.body);
            mac.verify_slice(&sig).is_ok()
        });
        if !matched {
            shadow(source, VerifyError::SignatureMismatch)?;
        }

        let delivery = optional_header(req.headers, DELIVERY_HEADER)?
            .ok_or(VerifyError::NoEventId("missing X-GitHub-Delivery"))?;
        let event = optional_header(req.headers, EVENT_HEADER)?
            .ok_or(VerifyError::NoEventId("missing X-GitHub-Event"))?;
        let hook_id = optional_header(req.headers, HOOK_ID_HEADER)?;
        let action = json_payload(req.body)
            .and_then(|p| json::head(&p).and_then(|h| h.action.map(|a| a.into_owned())));
        let kind = match action {
            Some(a) if !a.is_empty() => format!("{event}.{a}"),
            _ => event.to_owned(),
        };
        let mut headers = vec![
            (EVENT_HEADER, event.to_owned()),
            (DELIVERY_HEADER, delivery.to_owned()),
        ];
        if let Some(h) = hook_id {
            headers.push((HOOK_ID_HEADER, h.to_owned()));
        }
        Ok(Verified {
            event_id: event_id(delivery)?,
            event_type: event_type(&kind)?,
            occurred_at_ms: None,
            dedupe: Dedupe::BodyDigest,
            reply: None,
            headers,
        })
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use http::HeaderMap;

    use super::*;
    use crate::config::Provider;

    const SECRET: &str = "gh-FAKE-secret";
    const G1: &str =
        r#"{"zen":"Fake zen.","hook_id":123456,"hook":{"type":"Repository","id":123456}}"#;
    const G1_SIG: &str = "sha256=8805ee1b926f166fa9818a1368ae07d64e8615d2ce30b4bb5d9271ef0058f57a";
    const G1_SHA1: &str = "sha1=28080d3ec980c927750e3f956ced4661b1cd7a34";
    const G2_B64: &str = "cGF5bG9hZD0lN0IlMjJ6ZW4lMjIlM0ElMjJGYWtlJTIwemVuLiUyMiUyQyUyMmhvb2tfaWQlMjIlM0ExMjM0NTYlMkMlMjJob29rJTIyJTNBJTdCJTIydHlwZSUyMiUzQSUyMlJlcG9zaXRvcnklMjIlMkMlMjJpZCUyMiUzQTEyMzQ1NiU3RCU3RA==";
    const G2_SIG: &str = "sha256=6223747bf2d5fae510a980fc1eddbb766d7f8bc779edf37093ff19a950732ffb";
    const DELIVERY: &str = "00000000-0000-0000-0000-000000000001";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn base(sig: &str) -> Vec<(&'static str, String)> {
        vec![
            (SIGNATURE_HEADER, sig.to_owned()),
            (EVENT_HEADER, "ping".to_owned()),
            (DELIVERY_HEADER, DELIVERY.to_owned()),
        ]
    }

    fn check(pairs: &[(&'static str, String)], body: &[u8]) -> Result<Verified, VerifyError> {
        check_query(pairs, body, "")
    }

    fn check_query(
        pairs: &[(&'static str, String)],
        body: &[u8],
        query: &str,
    ) -> Result<Verified, VerifyError> {
        let pairs: Vec<(&'static str, &str)> =
            pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let h = headers(&pairs);
        let src = SourceConfig::new(
            "github",
            Provider::Github,
            vec![Secret::new("old"), Secret::new(SECRET)],
        );
        GitHub.verify_at(
            &WebhookRequest {
                headers: &h,
                body,
                query,
            },
            &src,
            0,
        )
    }

    #[test]
    fn accepts_known_answer_vector() {
        let v = check(&base(G1_SIG), G1.as_bytes()).unwrap();
        assert_eq!(v.event_id, DELIVERY);
        assert_eq!(v.event_type, "ping");
        assert_eq!(sign(&Secret::new(SECRET), G1.as_bytes()), G1_SIG);
    }

    #[test]
    fn accepts_form_body_signed_over_raw_form_bytes() {
        let g2 = base64::engine::general_purpose::STANDARD
            .decode(G2_B64)
            .unwrap();
        assert!(check(&base(G2_SIG), &g2).is_ok());
        // The inner JSON's digest does not verify the form body.
        assert_eq!(
            check(&base(G1_SIG), &g2),
            Err(VerifyError::SignatureMismatch)
        );
        assert_eq!(json_payload(&g2).unwrap().as_ref(), G1.as_bytes());
    }

    #[test]
    fn never_falls_back_to_sha1() {
        let only_sha1 = vec![
            ("x-hub-signature", G1_SHA1.to_owned()),
            (EVENT_HEADER, "ping".to_owned()),
            (DELIVERY_HEADER, DELIVERY.to_owned()),
        ];
        assert_eq!(
            check(&only_sha1, G1.as_bytes()),
            Err(VerifyError::MissingHeader(SIGNATURE_HEADER))
        );
        let mut both = base(G1_SIG);
        both.push(("x-hub-signature", G1_SHA1.to_owned()));
        assert!(check(&both, G1.as_bytes()).is_ok());
        let mut garbage_sha1 = base(G1_SIG);
        garbage_sha1.push(("x-hub-signature", "sha1=garbage".to_owned()));
        assert!(check(&garbage_sha1, G1.as_bytes()).is_ok());
    }

    #[test]
    fn rejects_malformed_signatures_with_401_class_errors() {
        let body = G1.as_bytes();
        for sig in [
            "sha256=abc".to_owned(),
            format!("sha256={}", "z".repeat(64)),
            format!("md5={}", &G1_SIG[7..]),
            format!("sha256={}0", &G1_SIG[7..]),
            G1_SIG[..G1_SIG.len() - 1].to_owned(),
            "sha256=".to_owned(),
            G1_SIG[7..].to_owned(),
            format!("{G1_SIG},{G1_SIG}"),
        ] {
            let e = check(&base(&sig), body).unwrap_err();
            assert!(!e.is_authentic(), "{sig}: {e:?}");
        }
        let mut twice = base(G1_SIG);
        twice.push((SIGNATURE_HEADER, G1_SIG.to_owned()));
        assert_eq!(
            check(&twice, body),
            Err(VerifyError::DuplicateHeader(SIGNATURE_HEADER))
        );
    }

    #[test]
    fn each_identifying_header_missing_in_turn() {
        for missing in [EVENT_HEADER, DELIVERY_HEADER] {
            let pairs: Vec<_> = base(G1_SIG)
                .into_iter()
                .filter(|(k, _)| *k != missing)
                .collect();
            let e = check(&pairs, G1.as_bytes()).unwrap_err();
            assert!(e.is_authentic(), "{missing}: {e:?}");
        }
        let pairs: Vec<_> = base(G1_SIG)
            .into_iter()
            .filter(|(k, _)| *k != SIGNATURE_HEADER)
            .collect();
        assert_eq!(
            check(&pairs, G1.as_bytes()),
            Err(VerifyError::MissingHeader(SIGNATURE_HEADER))
        );
    }

    #[test]
    fn event_type_includes_action_and_the_body_is_the_dedupe_identity() {
        let body = br#"{"action":"opened","number":1}"#;
        let sig = sign(&Secret::new(SECRET), body);
        let mut pairs = base(&sig);
        pairs[1].1 = "pull_request".to_owned();
        pairs.push((HOOK_ID_HEADER, "42".to_owned()));
        let v = check(&pairs, body).unwrap();
        assert_eq!(v.event_type, "pull_request.opened");
        assert_eq!(v.dedupe, Dedupe::BodyDigest);
    }

    #[test]
    fn github_replay_under_other_headers_keeps_the_key() {
        let key = |v: Verified, body: &[u8]| {
            let src = SourceConfig::new("github", Provider::Github, vec![Secret::new(SECRET)]);
            crate::Envelope::new(&src, v, body, None, 0).idempotency_key
        };
        let g2 = base64::engine::general_purpose::STANDARD
            .decode(G2_B64)
            .unwrap();
        for (body, sig) in [(G1.as_bytes(), G1_SIG), (g2.as_slice(), G2_SIG)] {
            let want = key(check(&base(sig), body).unwrap(), body);
            assert_eq!(
                want,
                format!("github#sha256:{}", crate::envelope::sha256_hex(body))
            );
            // Every header but X-Hub-Signature-256 is unsigned, and so is the query string.
            for (name, value) in [
                (EVENT_HEADER, "push"),
                (EVENT_HEADER, "made_up"),
                (DELIVERY_HEADER, "00000000-0000-0000-0000-0000000000ff"),
                (HOOK_ID_HEADER, "999"),
                ("x-github-hook-installation-target-id", "1"),
                (
                    "x-hub-signature",
                    "sha1=0000000000000000000000000000000000000000",
                ),
                ("user-agent", "GitHub-Hookshot/forged"),
                ("content-type", "text/plain"),
            ] {
                let mut pairs: Vec<_> = base(sig).into_iter().filter(|(k, _)| *k != name).collect();
                pairs.push((name, value.to_owned()));
                let replay = check(&pairs, body).unwrap();
                assert_eq!(replay.dedupe, Dedupe::BodyDigest, "{name}");
                assert_eq!(key(replay, body), want, "{name}: {value}");
            }
            let replay = check_query(&base(sig), body, "event=push&delivery=2").unwrap();
            assert_eq!(key(replay, body), want);
        }
        // What the unsigned headers may change: the type it routes to and the displayed id.
        let mut pairs = base(G1_SIG);
        pairs[1].1 = "push".to_owned();
        pairs[2].1 = "d-2".to_owned();
        let replay = check(&pairs, G1.as_bytes()).unwrap();
        assert_eq!(
            (replay.event_type.as_str(), replay.event_id.as_str()),
            ("push", "d-2")
        );
    }
}
