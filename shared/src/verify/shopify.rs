//! Shopify webhook signatures.
//!
//! Follows Shopify's "Validate the origin of your request"
//! (<https://shopify.dev/docs/apps/build/webhooks/subscribe/https#step-2-validate-the-origin-of-your-request>)
//! and `@shopify/shopify-api`'s `webhooks.validate`:
//!
//! - header `X-Shopify-Hmac-Sha256`: the **base64** (standard alphabet) HMAC-SHA256 of the raw
//!   body, keyed with the app's client secret. A hex digest is not accepted;
//! - webhooks created in a store admin's Notifications settings are signed with that store's
//!   own secret, not the app's: configure both on the source when you receive both;
//! - no signed timestamp: `X-Shopify-Triggered-At` becomes `occurred_at` only;
//! - event id: `X-Shopify-Event-Id`, else `X-Shopify-Webhook-Id`; type: `X-Shopify-Topic`.
//!
//! Shopify signs the body and nothing else ("Webhooks delivery structure",
//! <https://shopify.dev/docs/apps/build/webhooks/delivery-structure>): every `X-Shopify-*`
//! header but the HMAC can be changed by anyone replaying a captured delivery. So the
//! idempotency key is the body's SHA-256 ([`super::Dedupe::BodyDigest`]) and nothing from a
//! header enters it:
//!
//! - a retry resends the identical body and is a duplicate, which is what Shopify's "Ignore
//!   duplicate webhooks" (<https://shopify.dev/docs/apps/build/webhooks/ignore-duplicates>)
//!   asks of a receiver (it names `X-Shopify-Event-Id` as the duplicate marker, but that header
//!   is not signed);
//! - a captured delivery replayed under another topic, event id, webhook id or trigger time
//!   has the same key: a duplicate, or a conflict when its topic differs (the event store keeps
//!   the first and runs neither again). The topic only routes to a handler, which must parse
//!   the body it gets; the trigger time only orders events;
//! - two topics that Shopify really fires with byte-identical bodies (`orders/create` and
//!   `orders/updated` for one change, or one topic on two subscriptions) share one key: the
//!   first is processed and the second is a conflict, dead-lettered for the operator to
//!   resolve. Bodies usually differ (`updated_at`, the resource's state), so this is rare.

use base64::Engine;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

use super::{
    Dedupe, Scheme, Verified, VerifyError, WebhookRequest, base64_signature, event_id, event_type,
    optional_header, shadow, single_header,
};
use crate::config::SourceConfig;
use crate::secret::Secret;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-shopify-hmac-sha256";
/// The topic header (`orders/create`, …).
pub const TOPIC_HEADER: &str = "x-shopify-topic";
/// The event id header (newer API versions).
pub const EVENT_ID_HEADER: &str = "x-shopify-event-id";
/// The delivery id header (the same on retries).
pub const WEBHOOK_ID_HEADER: &str = "x-shopify-webhook-id";
/// The shop header.
pub const SHOP_HEADER: &str = "x-shopify-shop-domain";
/// When Shopify triggered the webhook (RFC 3339).
pub const TRIGGERED_AT_HEADER: &str = "x-shopify-triggered-at";

type HmacSha256 = hmac::Hmac<Sha256>;

/// The Shopify scheme.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shopify;

/// Computes the `X-Shopify-Hmac-Sha256` value for `body`. Used by the CLI and tests.
pub fn sign(secret: &Secret, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes()).expect("any key length");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

impl Scheme for Shopify {
    fn verify_at(
        &self,
        req: &WebhookRequest<'_>,
        source: &SourceConfig,
        _now_s: i64,
    ) -> Result<Verified, VerifyError> {
        let value = single_header(req.headers, SIGNATURE_HEADER)?;
        let sig: [u8; 32] = base64_signature(value, SIGNATURE_HEADER)?;
        let matched = source.secrets.iter().any(|secret| {
            let mut mac =
                HmacSha256::new_from_slice(secret.expose().as_bytes()).expect("any key length");
            mac.update(req.body);
            mac.verify_slice(&sig).is_ok()
        });
        if !matched {
            shadow(source, VerifyError::SignatureMismatch)?;
        }
        let id = match optional_header(req.headers, EVENT_ID_HEADER)? {
            Some(id) => id,
            None => optional_header(req.headers, WEBHOOK_ID_HEADER)?.ok_or(
                VerifyError::NoEventId("missing X-Shopify-Event-Id and X-Shopify-Webhook-Id"),
            )?,
        };
        let topic = optional_header(req.headers, TOPIC_HEADER)?
            .ok_or(VerifyError::NoEventId("missing X-Shopify-Topic"))?;
        let triggered = optional_header(req.headers, TRIGGERED_AT_HEADER)?;
        let occurred_at_ms = triggered.and_then(super::json::rfc3339_to_ms);
        let mut headers = vec![(TOPIC_HEADER, topic.to_owned())];
        for name in [SHOP_HEADER, WEBHOOK_ID_HEADER, TRIGGERED_AT_HEADER] {
            if let Some(v) = optional_header(req.headers, name)? {
                headers.push((name, v.to_owned()));
            }
        }
        Ok(Verified {
            event_id: event_id(id)?,
            event_type: event_type(topic)?,
            occurred_at_ms,
            dedupe: Dedupe::BodyDigest,
            headers,
            reply: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;
    use crate::config::Provider;

    const APP: &str = "shpss_FAKE_client_secret";
    const ADMIN: &str = "FAKE_admin_notifications_signing_secret";
    const H1: &str = r#"{"id":1001,"email":"buyer@example.invalid","note":"café"}"#;
    const H1_SIG: &str = "aOf0iykvAxVrslfoomm2TOsvnRvwJsL4IJ+mfhVaId8=";
    const H1_HEX: &str = "68e7f48b292f03156bb257e8a269b64ceb2f9d1bf026c2f8209fa67e155a21df";
    const H1_ADMIN_SIG: &str = "kDRjVqlZ2DQ0wz2TXVfq8J91jo/gpOSug1kj/56HRVs=";

    fn check(
        sig: Option<&str>,
        secrets: &[&str],
        extra: &[(&'static str, &str)],
    ) -> Result<Verified, VerifyError> {
        check_query(sig, secrets, extra, "")
    }

    fn check_query(
        sig: Option<&str>,
        secrets: &[&str],
        extra: &[(&'static str, &str)],
        query: &str,
    ) -> Result<Verified, VerifyError> {
        let mut h = HeaderMap::new();
        if let Some(s) = sig {
            h.insert(SIGNATURE_HEADER, s.parse().unwrap());
        }
        h.insert(TOPIC_HEADER, "orders/create".parse().unwrap());
        h.insert(
            WEBHOOK_ID_HEADER,
            "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043".parse().unwrap(),
        );
        h.insert(SHOP_HEADER, "fake.myshopify.com".parse().unwrap());
        for (k, v) in extra {
            h.insert(*k, v.parse().unwrap());
        }
        let src = SourceConfig::new(
            "shop",
            Provider::Shopify,
            secrets.iter().map(|s| Secret::new(*s)).collect(),
        );
        Shopify.verify_at(
            &WebhookRequest {
                headers: &h,
                body: H1.as_bytes(),
                query,
            },
            &src,
            0,
        )
    }

    #[test]
    fn c13_accepts_the_base64_digest_and_rejects_the_hex_form() {
        let v = check(Some(H1_SIG), &[APP], &[]).unwrap();
        assert_eq!(v.event_id, "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043");
        assert_eq!(v.event_type, "orders/create");
        assert_eq!(v.dedupe, Dedupe::BodyDigest);
        assert_eq!(sign(&Secret::new(APP), H1.as_bytes()), H1_SIG);
        assert_eq!(
            check(Some(H1_HEX), &[APP], &[]),
            Err(VerifyError::MalformedHeader(SIGNATURE_HEADER))
        );
    }

    #[test]
    fn c13_admin_created_webhooks_need_the_admin_secret_configured() {
        assert!(check(Some(H1_ADMIN_SIG), &[APP, ADMIN], &[]).is_ok());
        assert_eq!(
            check(Some(H1_ADMIN_SIG), &[APP], &[]),
            Err(VerifyError::SignatureMismatch)
        );
    }

    #[test]
    fn malformed_truncated_and_missing_signatures_fail_closed() {
        for bad in [
            "!!!",
            "",
            "aOf0iykvAxVrslfoomm2TOsvnRvwJsL4IJ+mfhVaId8",
            "aOf0iykv",
            "aOf0iykvAxVrslfoomm2TOsvnRvwJsL4IJ+mfhVaId8=AAAA",
        ] {
            let r = check(Some(bad), &[APP], &[]);
            assert!(
                matches!(
                    r,
                    Err(VerifyError::MalformedHeader(_) | VerifyError::MissingHeader(_))
                ),
                "{bad}: {r:?}"
            );
        }
        assert_eq!(
            check(None, &[APP], &[]),
            Err(VerifyError::MissingHeader(SIGNATURE_HEADER))
        );
    }

    #[test]
    fn event_id_header_wins_and_triggered_at_is_the_event_time() {
        let v = check(
            Some(H1_SIG),
            &[APP],
            &[
                (EVENT_ID_HEADER, "98880550-7158-44d4-b7cd-2c97c8a091b5"),
                (TRIGGERED_AT_HEADER, "2023-03-29T18:00:27.877041743Z"),
            ],
        )
        .unwrap();
        assert_eq!(v.event_id, "98880550-7158-44d4-b7cd-2c97c8a091b5");
        assert_eq!(v.occurred_at_ms, Some(1_680_112_827_877));
    }

    /// The idempotency key the envelope of `v` (a delivery of `H1`) gets.
    fn key(v: Verified) -> String {
        let src = SourceConfig::new("shop", Provider::Shopify, vec![Secret::new(APP)]);
        crate::Envelope::new(&src, v, H1.as_bytes(), None, 0).idempotency_key
    }

    #[test]
    fn shopify_replay_under_another_topic_keeps_the_key() {
        let first = check(Some(H1_SIG), &[APP], &[]).unwrap();
        let want = key(first);
        assert_eq!(
            want,
            format!("shop#sha256:{}", crate::envelope::sha256_hex(H1.as_bytes()))
        );
        // Every header but the HMAC is unsigned: none of them moves the key.
        for (name, value) in [
            (TOPIC_HEADER, "orders/paid"),
            (TOPIC_HEADER, "orders/cancelled"),
            (TOPIC_HEADER, "made/up"),
            (EVENT_ID_HEADER, "98880550-7158-44d4-b7cd-2c97c8a091b5"),
            (WEBHOOK_ID_HEADER, "00000000-0000-0000-0000-000000000000"),
            (TRIGGERED_AT_HEADER, "2030-01-01T00:00:00Z"),
            (SHOP_HEADER, "other.myshopify.com"),
            ("x-shopify-api-version", "2020-01"),
            ("content-type", "text/plain"),
        ] {
            let replay = check(Some(H1_SIG), &[APP], &[(name, value)]).unwrap();
            assert_eq!(replay.dedupe, Dedupe::BodyDigest, "{name}");
            assert_eq!(key(replay), want, "{name}: {value}");
        }
        // Neither does a query string (Shopify signs no URL).
        let replay = check_query(Some(H1_SIG), &[APP], &[], "topic=orders/paid&id=2").unwrap();
        assert_eq!(key(replay), want);
        // What the unsigned headers may change: the type it routes to, the displayed id, the
        // event time.
        let replay = check(
            Some(H1_SIG),
            &[APP],
            &[
                (TOPIC_HEADER, "orders/paid"),
                (EVENT_ID_HEADER, "evt-2"),
                (TRIGGERED_AT_HEADER, "2030-01-01T00:00:00Z"),
            ],
        )
        .unwrap();
        assert_eq!(
            (replay.event_type.as_str(), replay.event_id.as_str()),
            ("orders/paid", "evt-2")
        );
        assert_eq!(replay.occurred_at_ms, Some(1_893_456_000_000));
    }
}
