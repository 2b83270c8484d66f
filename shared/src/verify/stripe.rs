//! Stripe webhook signatures.
//!
//! Follows Stripe's "Verify webhook signatures manually"
//! (<https://docs.stripe.com/webhooks#verify-manually>) and the reference verifiers in
//! `stripe-node` / `stripe-python` (`WebhookSignature.verifyHeader`):
//!
//! - header `Stripe-Signature: t=<epoch seconds>,v1=<hex>[,v1=<hex>…][,v0=…]`; elements are
//!   split on `,`, then on the first `=`; `t` must appear exactly once; every `v1` is
//!   considered (Stripe sends one per active secret while a secret is rolled); `v0` and unknown
//!   elements are ignored;
//! - signed payload: `{t}.{raw body}`, HMAC-SHA256, lower-case hex, keyed with the endpoint
//!   secret **as is** (`whsec_…` prefix included); a secret that is the prefix alone is
//!   refused at load ([`check_key`]) and never matches here;
//! - the timestamp must be within the source's tolerance (default 300 s) of now, either way;
//! - event id and type: the body's top-level `id` (`evt_…`) and `type`; `created` becomes the
//!   envelope's `occurred_at`: epoch seconds in snapshot events, an RFC 3339 string in thin
//!   events (`v2.*`, <https://docs.stripe.com/event-destinations>); either form is read.
//!
//! Everything read is signed: the id (the idempotency key), the type and `created` come from
//! the body, and the timestamp is in the MAC. No other header and no query string is read, and
//! the header's unsigned parts (`v0`, unknown elements, their order, `v1` values that do not
//! match) change nothing about the event.

use hmac::{KeyInit, Mac};
use sha2::Sha256;

use super::{
    KeyError, Scheme, Verified, VerifyError, WebhookRequest, check_tolerance, json,
    nonempty_secrets, parse_timestamp, shadow, single_header,
};
use crate::config::SourceConfig;
use crate::secret::Secret;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "stripe-signature";
/// Most `v1` signatures one header may carry; more fails closed (bounds the work per request).
pub const MAX_SIGNATURES: usize = 8;

type HmacSha256 = hmac::Hmac<Sha256>;

/// The Stripe scheme.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stripe;

/// The parts of a `Stripe-Signature` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader<'h> {
    /// The `t` element exactly as sent (it is part of the signed payload).
    pub timestamp_text: &'h str,
    /// `t` parsed, epoch **seconds**.
    pub timestamp_s: i64,
    /// Every `v1` element, undecoded, at most [`MAX_SIGNATURES`] (no heap allocation).
    pub v1: [&'h str; MAX_SIGNATURES],
    /// How many of `v1` are set.
    pub v1_count: usize,
}

impl<'h> SignatureHeader<'h> {
    /// The `v1` elements.
    pub fn signatures(&self) -> &[&'h str] {
        &self.v1[..self.v1_count]
    }
}

/// Parses a `Stripe-Signature` header value.
///
/// # Errors
/// [`VerifyError::MalformedHeader`] if an element has no `=`, `t` is missing, repeated or not
/// decimal, there is no `v1`, or there are more than [`MAX_SIGNATURES`].
pub fn parse_header(value: &str) -> Result<SignatureHeader<'_>, VerifyError> {
    let malformed = VerifyError::MalformedHeader(SIGNATURE_HEADER);
    let mut timestamp_text = None;
    let mut v1 = [""; MAX_SIGNATURES];
    let mut v1_count = 0;
    for element in value.split(',') {
        let (key, val) = element.split_once('=').ok_or(malformed.clone())?;
        match key {
            "t" if timestamp_text.is_none() => timestamp_text = Some(val),
            "t" => return Err(malformed),
            "v1" if v1_count < MAX_SIGNATURES => {
                v1[v1_count] = val;
                v1_count += 1;
            }
            "v1" => return Err(malformed),
            _ => {}
        }
    }
    let timestamp_text = timestamp_text.ok_or(malformed.clone())?;
    let timestamp_s = parse_timestamp(timestamp_text, SIGNATURE_HEADER)?;
    if v1_count == 0 {
        return Err(malformed);
    }
    Ok(SignatureHeader {
        timestamp_text,
        timestamp_s,
        v1,
        v1_count,
    })
}

/// The prefix of Stripe's endpoint secrets (`whsec_…`); it is part of the key.
pub const SECRET_PREFIX: &str = "whsec_";

/// Checks a Stripe secret: the whole string is the key, so any non-empty string works, but
/// `whsec_` alone (a placeholder, and a key anyone knows) is refused.
///
/// # Errors
/// [`KeyError::Empty`] or [`KeyError::EmptyAfterPrefix`].
pub fn check_key(secret: &Secret) -> Result<(), KeyError> {
    match secret.expose() {
        "" => Err(KeyError::Empty),
        SECRET_PREFIX => Err(KeyError::EmptyAfterPrefix(SECRET_PREFIX)),
        _ => Ok(()),
    }
}

/// Computes the `Stripe-Signature` value Stripe would send for `body` at `timestamp_s`
/// (epoch **seconds**): `t={timestamp_s},v1={hex}`. Used by the CLI and tests.
pub fn sign(secret: &Secret, timestamp_s: i64, body: &[u8]) -> String {
    let t = timestamp_s.to_string();
    let tag = keyed(secret, &t, body).finalize().into_bytes();
    format!("t={t},v1={}", hex::encode(tag))
}

fn keyed(secret: &Secret, timestamp_text: &str, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes()).expect("any key length");
    mac.update(timestamp_text.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

impl Scheme for Stripe {
    fn verify_at(
        &self,
        req: &WebhookRequest<'_>,
        source: &SourceConfig,
        now_s: i64,
    ) -> Result<Verified, VerifyError> {
        let header = parse_header(single_header(req.headers, SIGNATURE_HEADER)?)?;
        check_tolerance(header.timestamp_s, now_s, source.tolerance_seconds)
            .or_else(|e| shadow(source, e))?;

        let mut candidates = [[0u8; 32]; MAX_SIGNATURES];
        let mut n = 0;
        for sig in header.signatures() {
            // Wrong length or non-hex can never match: skip it, constant time is kept for
            // the well-formed ones.
            if hex::decode_to_slice(sig, &mut candidates[n]).is_ok() {
                n += 1;
            }
        }
        if n == 0 {
            // No well-formed v1 at all: malformed, in shadow mode too.
            return Err(VerifyError::MalformedHeader(SIGNATURE_HEADER));
        }
        let matched = nonempty_secrets(source)
            .filter(|s| s.expose() != SECRET_PREFIX)
            .any(|secret| {
                let mac = keyed(secret, header.timestamp_text, req.body);
                candidates[..n]
                    .iter()
                    .any(|c| mac.clone().verify_slice(c).is_ok())
            });
        if !matched {
            shadow(source, VerifyError::SignatureMismatch)?;
        }

        let head =
            json::head(req.body).ok_or(VerifyError::NoEventId("body is not a JSON object"))?;
        let occurred_at_ms = head.created_ms();
        let id = head.id.ok_or(VerifyError::NoEventId("body has no id"))?;
        let kind = head
            .kind
            .ok_or(VerifyError::NoEventId("body has no type"))?;
        Verified::signed_event(&id, &kind, occurred_at_ms)
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use http::HeaderMap;

    use super::*;
    use crate::config::Provider;

    const NOW: i64 = 1_700_000_000;
    const S1_B64: &str = "ewogICJpZCI6ICJldnRfRkFLRTAwMDEiLAogICJvYmplY3QiOiAiZXZlbnQiLAogICJ0eXBlIjogImN1c3RvbWVyLnN1YnNjcmlwdGlvbi5jcmVhdGVkIiwKICAiY3JlYXRlZCI6IDE3MDAwMDAwMDAsCiAgImRhdGEiOiB7CiAgICAib2JqZWN0IjogewogICAgICAiaWQiOiAic3ViX0ZBS0UwMDAxIiwKICAgICAgInN0YXR1cyI6ICJpbmNvbXBsZXRlIiwKICAgICAgImRlc2NyaXB0aW9uIjogIkNhZsOpIOKYlSBwbGFuIgogICAgfQogIH0KfQo=";
    const S1_SIG: &str = "cac88ca85c525bd26d085b56585236600593366a4f7bde33ef5fa6dad3a2ce02";
    const S1_SIG_ROTATED: &str = "091eb312287912148416a9240054122c7dbfbe9a5f9f5375e319bd8b65cdc49d";

    fn s1() -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(S1_B64)
            .unwrap()
    }

    fn source(secrets: &[&str]) -> SourceConfig {
        SourceConfig::new(
            "stripe",
            Provider::Stripe,
            secrets.iter().map(|s| Secret::new(*s)).collect(),
        )
    }

    fn check(
        header: Option<&str>,
        body: &[u8],
        secrets: &[&str],
        now: i64,
    ) -> Result<Verified, VerifyError> {
        let mut headers = HeaderMap::new();
        if let Some(h) = header {
            headers.insert(SIGNATURE_HEADER, h.parse().unwrap());
        }
        Stripe.verify_at(
            &WebhookRequest {
                headers: &headers,
                body,
                query: "",
            },
            &source(secrets),
            now,
        )
    }

    const SECRET: &str = "whsec_FAKE_test_secret_0001";
    const ROTATED: &str = "whsec_FAKE_test_secret_0002";

    #[test]
    fn accepts_known_answer_vector_and_reads_id_type_created() {
        let v = check(Some(&format!("t={NOW},v1={S1_SIG}")), &s1(), &[SECRET], NOW).unwrap();
        assert_eq!(v.event_id, "evt_FAKE0001");
        assert_eq!(v.event_type, "customer.subscription.created");
        assert_eq!(v.occurred_at_ms, Some(NOW * 1000));
    }

    #[test]
    fn sign_reproduces_the_known_answer() {
        assert_eq!(
            sign(&Secret::new(SECRET), NOW, &s1()),
            format!("t={NOW},v1={S1_SIG}")
        );
    }

    #[test]
    fn rejects_reserialized_body() {
        let parsed: serde_json::Value = serde_json::from_slice(&s1()).unwrap();
        let reserialized = serde_json::to_vec(&parsed).unwrap();
        assert_ne!(reserialized, s1());
        let r = check(
            Some(&format!("t={NOW},v1={S1_SIG}")),
            &reserialized,
            &[SECRET],
            NOW,
        );
        assert_eq!(r, Err(VerifyError::SignatureMismatch));
    }

    #[test]
    fn accepts_any_configured_secret_and_any_v1() {
        // Rotated secret configured second.
        let h = format!("t={NOW},v1={S1_SIG_ROTATED}");
        assert!(check(Some(&h), &s1(), &[SECRET, ROTATED], NOW).is_ok());
        assert_eq!(
            check(Some(&h), &s1(), &[SECRET], NOW),
            Err(VerifyError::SignatureMismatch)
        );
        // Several v1, only the last valid; v0 ignored.
        let h = format!("t={NOW},v1={},v0={S1_SIG},v1={S1_SIG}", "ab".repeat(32));
        assert!(check(Some(&h), &s1(), &[SECRET], NOW).is_ok());
    }

    #[test]
    fn rejects_timestamp_one_second_past_tolerance_both_ways() {
        let h = format!("t={NOW},v1={S1_SIG}");
        assert!(check(Some(&h), &s1(), &[SECRET], NOW + 300).is_ok());
        assert!(check(Some(&h), &s1(), &[SECRET], NOW - 300).is_ok());
        assert_eq!(
            check(Some(&h), &s1(), &[SECRET], NOW + 301),
            Err(VerifyError::TimestampOutsideTolerance { skew_seconds: 301 })
        );
        assert_eq!(
            check(Some(&h), &s1(), &[SECRET], NOW - 301),
            Err(VerifyError::TimestampOutsideTolerance { skew_seconds: -301 })
        );
    }

    #[test]
    fn rejects_missing_truncated_empty_and_malformed_signatures() {
        let body = s1();
        let bad = |h: Option<&str>| check(h, &body, &[SECRET], NOW).unwrap_err();
        assert_eq!(bad(None), VerifyError::MissingHeader(SIGNATURE_HEADER));
        assert_eq!(bad(Some("")), VerifyError::MissingHeader(SIGNATURE_HEADER));
        assert_eq!(
            bad(Some("garbage")),
            VerifyError::MalformedHeader(SIGNATURE_HEADER)
        );
        assert_eq!(
            bad(Some("t=abc,v1=zz")),
            VerifyError::MalformedHeader(SIGNATURE_HEADER)
        );
        assert_eq!(
            bad(Some(&format!("v1={S1_SIG}"))),
            VerifyError::MalformedHeader(SIGNATURE_HEADER)
        );
        assert_eq!(
            bad(Some(&format!("t={NOW}"))),
            VerifyError::MalformedHeader(SIGNATURE_HEADER)
        );
        assert_eq!(
            bad(Some(&format!("t={NOW},t={NOW},v1={S1_SIG}"))),
            VerifyError::MalformedHeader(SIGNATURE_HEADER)
        );
        for sig in [
            &S1_SIG[..63],
            &S1_SIG[..32],
            "",
            &format!("{S1_SIG}0"),
            &"z".repeat(64),
        ] {
            assert_eq!(
                bad(Some(&format!("t={NOW},v1={sig}"))),
                VerifyError::MalformedHeader(SIGNATURE_HEADER),
                "v1={sig}"
            );
        }
        let many = format!("t={NOW}") + &format!(",v1={S1_SIG}").repeat(MAX_SIGNATURES + 1);
        assert_eq!(
            bad(Some(&many)),
            VerifyError::MalformedHeader(SIGNATURE_HEADER)
        );
    }

    #[test]
    fn rejects_duplicated_signature_header() {
        let mut headers = HeaderMap::new();
        let h = format!("t={NOW},v1={S1_SIG}");
        headers.append(SIGNATURE_HEADER, h.parse().unwrap());
        headers.append(SIGNATURE_HEADER, h.parse().unwrap());
        let r = Stripe.verify_at(
            &WebhookRequest {
                headers: &headers,
                body: &s1(),
                query: "",
            },
            &source(&[SECRET]),
            NOW,
        );
        assert_eq!(r, Err(VerifyError::DuplicateHeader(SIGNATURE_HEADER)));
    }

    #[test]
    fn a_secret_that_is_only_the_prefix_never_verifies() {
        // `whsec_` alone is a key anyone knows: Sources::new refuses it, and the scheme never
        // lets it match.
        assert_eq!(
            check_key(&Secret::new("whsec_")),
            Err(KeyError::EmptyAfterPrefix("whsec_"))
        );
        assert_eq!(check_key(&Secret::new("")), Err(KeyError::Empty));
        assert_eq!(check_key(&Secret::new("whsec_x")), Ok(()));
        let body = s1();
        let forged = sign(&Secret::new("whsec_"), NOW, &body);
        assert_eq!(
            check(Some(&forged), &body, &["whsec_"], NOW),
            Err(VerifyError::SignatureMismatch)
        );
        let forged = sign(&Secret::new(""), NOW, &body);
        assert_eq!(
            check(Some(&forged), &body, &[""], NOW),
            Err(VerifyError::SignatureMismatch)
        );
    }

    #[test]
    fn verified_body_without_id_is_authentic_but_has_no_event_id() {
        let body = br#"{"type":"x"}"#;
        let h = sign(&Secret::new(SECRET), NOW, body);
        let e = check(Some(&h), body, &[SECRET], NOW).unwrap_err();
        assert!(e.is_authentic());
        let body = b"not json";
        let h = sign(&Secret::new(SECRET), NOW, body);
        assert!(
            check(Some(&h), body, &[SECRET], NOW)
                .unwrap_err()
                .is_authentic()
        );
    }

    #[test]
    fn any_one_byte_change_is_rejected() {
        let body = s1();
        let h = format!("t={NOW},v1={S1_SIG}");
        for i in (0..body.len()).step_by(7) {
            let mut b = body.clone();
            b[i] ^= 0x01;
            assert_eq!(
                check(Some(&h), &b, &[SECRET], NOW),
                Err(VerifyError::SignatureMismatch)
            );
        }
    }

    #[test]
    fn stripe_replay_under_other_headers_keeps_the_key() {
        let body = s1();
        let verify = |header: &str, extra: &[(&'static str, &str)], query: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(SIGNATURE_HEADER, header.parse().unwrap());
            for (k, v) in extra {
                headers.insert(*k, v.parse().unwrap());
            }
            Stripe
                .verify_at(
                    &WebhookRequest {
                        headers: &headers,
                        body: &body,
                        query,
                    },
                    &source(&[SECRET]),
                    NOW,
                )
                .unwrap()
        };
        let first = verify(&format!("t={NOW},v1={S1_SIG}"), &[], "");
        assert_eq!(first.dedupe, crate::verify::Dedupe::EventId);
        let garbage = "0".repeat(64);
        for replay in [
            verify(&format!("v1={S1_SIG},t={NOW}"), &[], ""),
            verify(
                &format!("t={NOW},v1={garbage},v1={S1_SIG},v0={garbage}"),
                &[],
                "",
            ),
            verify(&format!("t={NOW},v1={S1_SIG},x=y"), &[], ""),
            verify(
                &format!("t={NOW},v1={S1_SIG}"),
                &[],
                "id=evt_2&type=charge.refunded",
            ),
            verify(
                &format!("t={NOW},v1={S1_SIG}"),
                &[("content-type", "text/plain"), ("user-agent", "forged")],
                "",
            ),
        ] {
            assert_eq!(replay, first);
        }
    }
}
