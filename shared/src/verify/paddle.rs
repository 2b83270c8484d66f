//! Paddle Billing webhook signatures.
//!
//! Follows Paddle's "Verify webhook signatures"
//! (<https://developer.paddle.com/webhooks/signature-verification>):
//!
//! - header `Paddle-Signature: ts=<epoch seconds>;h1=<hex>[;h1=<hex>…]` (several `h1` while a
//!   secret is rotated); elements split on `;`, then on the first `=`;
//! - signed payload `{ts}:{raw body}`, HMAC-SHA256, hex, keyed with the notification
//!   destination's secret key (`pdl_ntfset_…`);
//! - the timestamp must be within the source's tolerance either way (Paddle's SDKs default to
//!   5 seconds; Doorbell's default is 300);
//! - event id: body `event_id` (`evt_…`, signed); type: `event_type`; time: `occurred_at`.
//!
//! Everything read is signed: the id (the idempotency key), the type and the time come from the
//! body, and `ts` is in the MAC. No other header and no query string is read; the header's
//! unsigned parts (unknown elements, their order, `h1` values that do not match) change nothing
//! about the event.

use hmac::{KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::{
    Scheme, Verified, VerifyError, WebhookRequest, check_tolerance, nonempty_secrets,
    parse_timestamp, shadow, single_header,
};
use crate::config::SourceConfig;
use crate::secret::Secret;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "paddle-signature";
/// Most `h1` values one header may carry.
pub const MAX_SIGNATURES: usize = 8;

type HmacSha256 = hmac::Hmac<Sha256>;

/// The Paddle scheme.
#[derive(Debug, Clone, Copy, Default)]
pub struct Paddle;

fn keyed(secret: &Secret, ts: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes()).expect("any key length");
    mac.update(ts.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac
}

/// The `Paddle-Signature` value for `body` at `timestamp_s`. Used by the CLI and tests.
pub fn sign(secret: &Secret, timestamp_s: i64, body: &[u8]) -> String {
    let ts = timestamp_s.to_string();
    format!(
        "ts={ts};h1={}",
        hex::encode(keyed(secret, &ts, body).finalize().into_bytes())
    )
}

#[derive(Deserialize)]
struct Notification<'a> {
    #[serde(borrow)]
    event_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    event_type: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    occurred_at: Option<std::borrow::Cow<'a, str>>,
}

impl Scheme for Paddle {
    fn verify_at(
        &self,
        req: &WebhookRequest<'_>,
        source: &SourceConfig,
        now_s: i64,
    ) -> Result<Verified, VerifyError> {
        let malformed = VerifyError::MalformedHeader(SIGNATURE_HEADER);
        let value = single_header(req.headers, SIGNATURE_HEADER)?;
        let mut ts_text = None;
        let mut candidates = [[0u8; 32]; MAX_SIGNATURES];
        let mut n = 0;
        let mut h1_seen = 0;
        for element in value.split(';') {
            let (k, v) = element.split_once('=').ok_or(malformed.clone())?;
            match k {
                "ts" if ts_text.is_none() => ts_text = Some(v),
                "ts" => return Err(malformed),
                "h1" => {
                    h1_seen += 1;
                    if h1_seen > MAX_SIGNATURES {
                        return Err(malformed);
                    }
                    if hex::decode_to_slice(v, &mut candidates[n]).is_ok() {
                        n += 1;
                    }
                }
                _ => {}
            }
        }
        let ts_text = ts_text.ok_or(malformed.clone())?;
        if h1_seen == 0 {
            return Err(malformed);
        }
        let ts = parse_timestamp(ts_text, SIGNATURE_HEADER)?;
        check_tolerance(ts, now_s, source.tolerance_seconds).or_else(|e| shadow(source, e))?;
        if n < h1_seen {
            // An h1 that is not 64 hex digits: malformed, in shadow mode too.
            return Err(malformed);
        }
        let matched = nonempty_secrets(source).any(|s| {
            let mac = keyed(s, ts_text, req.body);
            candidates[..n]
                .iter()
                .any(|c| mac.clone().verify_slice(c).is_ok())
        });
        if !matched {
            shadow(source, VerifyError::SignatureMismatch)?;
        }
        let note: Notification<'_> = serde_json::from_slice(req.body)
            .map_err(|_| VerifyError::NoEventId("body has no event_id or event_type"))?;
        let occurred_at_ms = note
            .occurred_at
            .and_then(|t| super::json::rfc3339_to_ms(&t));
        Verified::signed_event(&note.event_id, &note.event_type, occurred_at_ms)
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;
    use crate::config::Provider;

    const SECRET: &str = "pdl_ntfset_01FAKE_conformance";
    const BODY: &str = r#"{"event_id":"evt_01hv8x2acma2gz9cpr9a9bkz4n","event_type":"transaction.completed","occurred_at":"2024-04-12T10:18:49.621022Z","notification_id":"ntf_01","data":{"id":"txn_01"}}"#;
    const NOW: i64 = 1_712_917_130;

    fn check(header: Option<&str>, now: i64) -> Result<Verified, VerifyError> {
        let mut h = HeaderMap::new();
        if let Some(v) = header {
            h.insert(SIGNATURE_HEADER, v.parse().unwrap());
        }
        let src = SourceConfig::new(
            "paddle",
            Provider::Paddle,
            vec![Secret::new("old"), Secret::new(SECRET)],
        );
        Paddle.verify_at(
            &WebhookRequest {
                headers: &h,
                body: BODY.as_bytes(),
                query: "",
            },
            &src,
            now,
        )
    }

    /// Independent known answer: `printf '%s' "1712917130:$BODY" | openssl dgst -sha256 -hmac "$SECRET"`.
    const KNOWN: &str = "ts=1712917130;h1=KNOWN_ANSWER";

    #[test]
    fn accepts_the_known_answer_and_reads_the_event() {
        let header = KNOWN.replace("KNOWN_ANSWER", super::tests_known::HEX);
        let v = check(Some(&header), NOW).unwrap();
        assert_eq!(
            (v.event_id.as_str(), v.event_type.as_str()),
            ("evt_01hv8x2acma2gz9cpr9a9bkz4n", "transaction.completed")
        );
        assert_eq!(v.occurred_at_ms, Some(1_712_917_129_621));
        assert_eq!(sign(&Secret::new(SECRET), NOW, BODY.as_bytes()), header);
    }

    #[test]
    fn any_h1_matches_and_the_timestamp_is_bounded_both_ways() {
        let good = sign(&Secret::new(SECRET), NOW, BODY.as_bytes());
        let h1 = good.split(";h1=").nth(1).unwrap();
        let two = format!("ts={NOW};h1={};h1={h1}", "0".repeat(64));
        assert!(check(Some(&two), NOW).is_ok());
        assert!(check(Some(&good), NOW + 300).is_ok());
        for now in [NOW + 301, NOW - 301] {
            assert!(matches!(
                check(Some(&good), now),
                Err(VerifyError::TimestampOutsideTolerance { .. })
            ));
        }
    }

    #[test]
    fn malformed_headers_fail_closed() {
        for bad in [
            "",
            "ts=1712917130",
            "h1=abc",
            "garbage",
            "ts=abc;h1=00",
            "ts=1;ts=2;h1=00",
            &format!("ts={NOW};h1=zz"),
        ] {
            assert!(check(Some(bad), NOW).is_err(), "{bad:?}");
        }
        assert_eq!(
            check(None, NOW),
            Err(VerifyError::MissingHeader(SIGNATURE_HEADER))
        );
    }

    #[test]
    fn paddle_replay_under_other_headers_keeps_the_key() {
        let verify = |header: &str, extra: &[(&'static str, &str)], query: &str| {
            let mut h = HeaderMap::new();
            h.insert(SIGNATURE_HEADER, header.parse().unwrap());
            for (k, v) in extra {
                h.insert(*k, v.parse().unwrap());
            }
            let src = SourceConfig::new("paddle", Provider::Paddle, vec![Secret::new(SECRET)]);
            Paddle
                .verify_at(
                    &WebhookRequest {
                        headers: &h,
                        body: BODY.as_bytes(),
                        query,
                    },
                    &src,
                    NOW,
                )
                .unwrap()
        };
        let good = sign(&Secret::new(SECRET), NOW, BODY.as_bytes());
        let h1 = good.split(";h1=").nth(1).unwrap();
        let first = verify(&good, &[], "");
        assert_eq!(first.dedupe, crate::verify::Dedupe::EventId);
        let zeros = "0".repeat(64);
        for replay in [
            verify(&format!("h1={h1};ts={NOW}"), &[], ""),
            verify(&format!("ts={NOW};h1={zeros};h1={h1};x=y"), &[], ""),
            verify(&good, &[], "event_id=evt_forged"),
            verify(&good, &[("content-type", "text/plain")], ""),
        ] {
            assert_eq!(replay, first);
        }
    }
}

#[cfg(test)]
mod tests_known {
    /// HMAC-SHA256 hex of `1712917130:{BODY}` keyed with the test secret, computed with openssl.
    pub const HEX: &str = "55f16a7fc86dedfe726d275513ef86da4602be828769ea5de77316bf37a45ec2";
}
