//! Square webhook signatures.
//!
//! Follows Square's "Verify and Validate an Event Notification"
//! (<https://developer.squareup.com/docs/webhooks/step3validate>) and the `square` SDK's
//! `WebhooksHelper.isValidWebhookEventSignature`:
//!
//! - header `x-square-hmacsha256-signature`: base64 HMAC-SHA256, keyed with the subscription's
//!   signature key, of the **notification URL** (exactly as configured in Square, the source's
//!   `url`) followed by the raw body;
//! - no signed timestamp;
//! - event id: body `event_id` (signed); type: `type`; time: `created_at`. The id is the
//!   idempotency key, as "Create a Notification URL"
//!   (<https://developer.squareup.com/docs/webhooks>) asks: Square resends a notification with
//!   the same `event_id`;
//! - what Square signs is the URL it was configured with, not the URL it requested: the
//!   request's own path and query string are not signed, and are not read. Neither is any
//!   header but the signature (`square-version`, `square-environment`, retry headers). So
//!   nothing unsigned feeds the id, the type, the time or the key.

use base64::Engine;
use hmac::{KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::{
    Scheme, Verified, VerifyError, WebhookRequest, base64_signature, shadow, single_header,
};
use crate::config::SourceConfig;
use crate::secret::Secret;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-square-hmacsha256-signature";

type HmacSha256 = hmac::Hmac<Sha256>;

/// The Square scheme.
#[derive(Debug, Clone, Copy, Default)]
pub struct Square;

fn keyed(secret: &Secret, url: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes()).expect("any key length");
    mac.update(url.as_bytes());
    mac.update(body);
    mac
}

/// The signature Square sends for `body` posted to `url`. Used by the CLI and tests.
pub fn sign(secret: &Secret, url: &str, body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(keyed(secret, url, body).finalize().into_bytes())
}

#[derive(Deserialize)]
struct Notification<'a> {
    #[serde(borrow)]
    event_id: std::borrow::Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    created_at: Option<std::borrow::Cow<'a, str>>,
}

impl Scheme for Square {
    fn verify_at(
        &self,
        req: &WebhookRequest<'_>,
        source: &SourceConfig,
        _now_s: i64,
    ) -> Result<Verified, VerifyError> {
        let value = single_header(req.headers, SIGNATURE_HEADER)?;
        let sig: [u8; 32] = base64_signature(value, SIGNATURE_HEADER)?;
        // Sources::new requires `url` for Square; an empty one can only fail to match.
        let url = source.url.as_deref().unwrap_or_default();
        if !source
            .secrets
            .iter()
            .any(|s| keyed(s, url, req.body).verify_slice(&sig).is_ok())
        {
            shadow(source, VerifyError::SignatureMismatch)?;
        }
        let note: Notification<'_> = serde_json::from_slice(req.body)
            .map_err(|_| VerifyError::NoEventId("body has no event_id or type"))?;
        let occurred_at_ms = note.created_at.and_then(|t| super::json::rfc3339_to_ms(&t));
        Verified::signed_event(&note.event_id, &note.kind, occurred_at_ms)
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;
    use crate::config::Provider;

    const KEY: &str = "FAKE-square-signature-key";
    const URL: &str = "https://example.com/webhooks/square";
    const BODY: &str = r#"{"merchant_id":"6SSW7HV8K2ST5","type":"payment.updated","event_id":"13b867cf-db3d-4b1c-90b6-2f32a9d78124","created_at":"2024-05-01T12:00:00Z","data":{"type":"payment","id":"KkAkhdMs"}}"#;
    /// `printf '%s' "$URL$BODY" | openssl dgst -sha256 -hmac "$KEY" -binary | base64`
    const SIG: &str = "2tOcyyDle48OAO/GxsTPYx2R1G+mBozcr3n4lM55DRk=";

    fn check(sig: &str, url: &str) -> Result<Verified, VerifyError> {
        check_request(sig, url, &[], "")
    }

    fn check_request(
        sig: &str,
        url: &str,
        extra: &[(&'static str, &str)],
        query: &str,
    ) -> Result<Verified, VerifyError> {
        let mut h = HeaderMap::new();
        h.insert(SIGNATURE_HEADER, sig.parse().unwrap());
        for (k, v) in extra {
            h.insert(*k, v.parse().unwrap());
        }
        let mut src = SourceConfig::new("square", Provider::Square, vec![Secret::new(KEY)]);
        src.url = Some(url.to_owned());
        Square.verify_at(
            &WebhookRequest {
                headers: &h,
                body: BODY.as_bytes(),
                query,
            },
            &src,
            0,
        )
    }

    #[test]
    fn accepts_the_known_answer_for_the_configured_url_only() {
        let v = check(SIG, URL).unwrap();
        assert_eq!(
            (v.event_id.as_str(), v.event_type.as_str()),
            ("13b867cf-db3d-4b1c-90b6-2f32a9d78124", "payment.updated")
        );
        assert_eq!(sign(&Secret::new(KEY), URL, BODY.as_bytes()), SIG);
        assert_eq!(
            check(SIG, "https://example.com/Prod/webhooks/square"),
            Err(VerifyError::SignatureMismatch)
        );
        assert_eq!(
            check(SIG, "http://example.com/webhooks/square"),
            Err(VerifyError::SignatureMismatch)
        );
    }

    #[test]
    fn malformed_signatures_fail_closed() {
        for bad in [
            "!!!",
            "abc",
            &SIG[..20],
            "68e7f48b292f03156bb257e8a269b64ceb2f9d1bf026c2f8209fa67e155a21df",
        ] {
            assert!(
                matches!(check(bad, URL), Err(VerifyError::MalformedHeader(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn square_replay_under_another_query_or_header_keeps_the_key() {
        let first = check(SIG, URL).unwrap();
        assert_eq!(first.dedupe, crate::verify::Dedupe::EventId);
        for (extra, query) in [
            (&[][..], "event_id=forged&type=refund.created"),
            (&[][..], "a=1"),
            (&[("square-version", "2020-01-22")][..], ""),
            (&[("square-environment", "Sandbox")][..], ""),
            (&[("square-retry-number", "3")][..], ""),
            (&[("x-square-signature", "forged")][..], ""),
            (&[("content-type", "text/plain")][..], ""),
        ] {
            let replay = check_request(SIG, URL, extra, query).unwrap();
            assert_eq!(replay, first, "{extra:?} {query}");
        }
    }
}
