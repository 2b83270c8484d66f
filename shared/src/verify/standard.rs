//! Standard Webhooks (and Svix, which uses the same scheme under `svix-*` headers).
//!
//! Follows the Standard Webhooks specification
//! (<https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md>,
//! "Verifying webhook authenticity") and Svix's "Verifying payloads manually"
//! (<https://docs.svix.com/receiving/verifying-payloads/how-manual>):
//!
//! - headers `webhook-id`, `webhook-timestamp` (epoch seconds), `webhook-signature`; or the
//!   same with the `svix-` prefix;
//! - signed content `{id}.{timestamp}.{raw body}`, HMAC-SHA256, **base64**; the key is the
//!   base64-decoded secret after its `whsec_` prefix, 24 to 64 bytes ([`key_bytes`]);
//! - `webhook-signature` is a space-separated list of `{version},{signature}`; only `v1`
//!   entries are checked, others (such as the asymmetric `v1a`) are skipped, not failed;
//! - the timestamp must be within the tolerance (default 300 s) either way;
//! - event id: `webhook-id` (it is signed, so it is the idempotency key); type: the body's
//!   `type` when it has one, else `message`.
//!
//! Everything that names the event is signed. Unsigned: the query string (not read), the
//! `content-type` header (kept for the handlers), the signature list's other entries, and
//! whether the headers carry the `webhook-` or the `svix-` prefix; none of them changes the
//! id, the type or the key.

use base64::Engine;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

use super::{
    Dedupe, KeyError, Scheme, Verified, VerifyError, WebhookRequest, check_tolerance, event_id,
    event_type, json, optional_header, parse_timestamp, shadow, single_header,
};
use crate::config::SourceConfig;
use crate::secret::Secret;

/// Most `v1` signatures one header may carry.
pub const MAX_SIGNATURES: usize = 8;

type HmacSha256 = hmac::Hmac<Sha256>;

/// One header family.
#[derive(Debug, Clone, Copy)]
struct Family {
    id: &'static str,
    timestamp: &'static str,
    signature: &'static str,
}

const STANDARD: Family = Family {
    id: "webhook-id",
    timestamp: "webhook-timestamp",
    signature: "webhook-signature",
};
const SVIX: Family = Family {
    id: "svix-id",
    timestamp: "svix-timestamp",
    signature: "svix-signature",
};

/// The Standard Webhooks / Svix scheme.
#[derive(Debug, Clone, Copy, Default)]
pub struct StandardWebhooks;

/// The prefix of a symmetric Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// The shortest key the specification allows, bytes (192 bits).
pub const MIN_KEY_BYTES: usize = 24;
/// The longest key the specification allows, bytes (512 bits).
pub const MAX_KEY_BYTES: usize = 64;

/// The HMAC key of a `whsec_…` secret: the standard base64 (padded) after the prefix, which
/// may be left out.
///
/// The Standard Webhooks specification, "Signature scheme", table of symmetric and
/// asymmetric signatures
/// (<https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md#signature-scheme>):
/// the symmetric signing secret is "Random. At least 24 bytes (192 bits, 512 maximum)", and
/// its serialization is "base64 encoded, prefixed with `whsec_` for easy identification". So
/// the decoded key must be [`MIN_KEY_BYTES`] to [`MAX_KEY_BYTES`] bytes. (Svix's secrets are
/// 24 bytes.)
///
/// # Errors
/// [`KeyError::EmptyAfterPrefix`] for `whsec_` alone, [`KeyError::Empty`] for the empty
/// string, [`KeyError::NotBase64`], or [`KeyError::Length`] outside 24–64 bytes. An empty key
/// would let anyone sign, so it is never returned.
pub fn key_bytes(secret: &Secret) -> Result<Vec<u8>, KeyError> {
    let s = secret.expose();
    let (prefix, b64) = match s.strip_prefix(SECRET_PREFIX) {
        Some(rest) => (Some(SECRET_PREFIX), rest),
        None => (None, s),
    };
    if b64.is_empty() {
        return Err(prefix.map_or(KeyError::Empty, KeyError::EmptyAfterPrefix));
    }
    let key = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| KeyError::NotBase64 {
            after_prefix: prefix,
        })?;
    if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&key.len()) {
        return Err(KeyError::Length {
            bytes: key.len(),
            min: MIN_KEY_BYTES,
            max: MAX_KEY_BYTES,
        });
    }
    Ok(key)
}

fn keyed(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `webhook-signature` value for a message: `v1,{base64}`. Used by the CLI and tests.
///
/// # Errors
/// As [`key_bytes`], when the secret is not a usable key.
pub fn sign(secret: &Secret, id: &str, timestamp_s: i64, body: &[u8]) -> Result<String, KeyError> {
    let key = key_bytes(secret)?;
    let tag = keyed(&key, id, &timestamp_s.to_string(), body)
        .finalize()
        .into_bytes();
    Ok(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag)
    ))
}

impl Scheme for StandardWebhooks {
    fn verify_at(
        &self,
        req: &WebhookRequest<'_>,
        source: &SourceConfig,
        now_s: i64,
    ) -> Result<Verified, VerifyError> {
        let family = if req.headers.contains_key(STANDARD.id) {
            STANDARD
        } else if req.headers.contains_key(SVIX.id) {
            SVIX
        } else {
            STANDARD
        };
        let id = single_header(req.headers, family.id)?;
        let ts_text = single_header(req.headers, family.timestamp)?;
        let ts = parse_timestamp(ts_text, family.timestamp)?;
        let list = single_header(req.headers, family.signature)?;
        check_tolerance(ts, now_s, source.tolerance_seconds).or_else(|e| shadow(source, e))?;

        let mut candidates = [[0u8; 32]; MAX_SIGNATURES];
        let mut n = 0;
        for entry in list.split(' ').filter(|e| !e.is_empty()) {
            let Some((version, sig)) = entry.split_once(',') else {
                return Err(VerifyError::MalformedHeader(family.signature));
            };
            if version != "v1" {
                continue;
            }
            if n == MAX_SIGNATURES {
                return Err(VerifyError::MalformedHeader(family.signature));
            }
            let mut buf = [0u8; 32];
            if matches!(
                base64::engine::general_purpose::STANDARD.decode_slice(sig, &mut buf),
                Ok(32)
            ) {
                candidates[n] = buf;
                n += 1;
            }
        }
        if n == 0 {
            // No well-formed v1 signature: malformed, in shadow mode too.
            return Err(VerifyError::MalformedHeader(family.signature));
        }
        // An unusable secret (Sources::new refuses them) keys nothing: it never matches.
        let matched = source
            .secrets
            .iter()
            .filter_map(|s| key_bytes(s).ok())
            .any(|key| {
                let mac = keyed(&key, id, ts_text, req.body);
                candidates[..n]
                    .iter()
                    .any(|c| mac.clone().verify_slice(c).is_ok())
            });
        if !matched {
            shadow(source, VerifyError::SignatureMismatch)?;
        }
        let kind = json::head(req.body)
            .and_then(|h| h.kind.map(|k| k.into_owned()))
            .unwrap_or_else(|| "message".to_owned());
        let mut headers = vec![(family.id, id.to_owned())];
        if let Some(v) = optional_header(req.headers, "content-type")? {
            headers.push(("content-type", v.to_owned()));
        }
        Ok(Verified {
            event_id: event_id(id)?,
            event_type: event_type(&kind)?,
            occurred_at_ms: ts.checked_mul(1000),
            dedupe: Dedupe::EventId,
            reply: None,
            headers,
        })
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;
    use crate::config::Provider;

    const SECRET: &str = "whsec_RkFLRS1zdGFuZGFyZC13ZWJob29rcy1rZXktMzJieXQ=";
    const BODY: &str = r#"{"type":"invoice.paid","data":{"id":"inv_FAKE"}}"#;
    const SIG: &str = "v1,2SN30+jjy12LCZS7Guobulp92bq8dwDXuj40zhlFRW0=";
    const SIG_UNDECODED_KEY: &str = "v1,RO8bVoeH4FWz35IdVCfXgNAG+C7hqJmTfDxRvLCMLmc=";
    const SIG_ID_2: &str = "v1,M/4WeKIe57k9stF4rs0FoNwdbN0PsVy8IFX05rzbvUA=";
    const NOW: i64 = 1_700_000_000;

    fn check(
        family: &str,
        id: &str,
        ts: &str,
        sig: Option<&str>,
        now: i64,
    ) -> Result<Verified, VerifyError> {
        let mut h = HeaderMap::new();
        h.insert(
            http::HeaderName::from_bytes(format!("{family}-id").as_bytes()).unwrap(),
            id.parse().unwrap(),
        );
        h.insert(
            http::HeaderName::from_bytes(format!("{family}-timestamp").as_bytes()).unwrap(),
            ts.parse().unwrap(),
        );
        if let Some(s) = sig {
            h.insert(
                http::HeaderName::from_bytes(format!("{family}-signature").as_bytes()).unwrap(),
                s.parse().unwrap(),
            );
        }
        let src = SourceConfig::new("std", Provider::Standard, vec![Secret::new(SECRET)]);
        StandardWebhooks.verify_at(
            &WebhookRequest {
                headers: &h,
                body: BODY.as_bytes(),
                query: "",
            },
            &src,
            now,
        )
    }

    #[test]
    fn accepts_the_known_answer_under_both_header_families() {
        for family in ["webhook", "svix"] {
            let v = check(family, "msg_FAKE0001", "1700000000", Some(SIG), NOW).unwrap();
            assert_eq!(
                (v.event_id.as_str(), v.event_type.as_str()),
                ("msg_FAKE0001", "invoice.paid")
            );
        }
        assert_eq!(
            sign(&Secret::new(SECRET), "msg_FAKE0001", NOW, BODY.as_bytes()).unwrap(),
            SIG
        );
    }

    #[test]
    fn the_key_is_the_decoded_secret_and_the_id_is_signed() {
        assert_eq!(
            check(
                "webhook",
                "msg_FAKE0001",
                "1700000000",
                Some(SIG_UNDECODED_KEY),
                NOW
            ),
            Err(VerifyError::SignatureMismatch)
        );
        assert_eq!(
            check("webhook", "msg_FAKE0001", "1700000000", Some(SIG_ID_2), NOW),
            Err(VerifyError::SignatureMismatch)
        );
        assert!(check("webhook", "msg_FAKE0002", "1700000000", Some(SIG_ID_2), NOW).is_ok());
    }

    #[test]
    fn skips_unknown_versions_and_considers_every_v1() {
        let list = format!("v1a,AAAA v2,BBBB v1,{} {SIG}", "A".repeat(44));
        assert!(check("webhook", "msg_FAKE0001", "1700000000", Some(&list), NOW).is_ok());
        assert_eq!(
            check(
                "webhook",
                "msg_FAKE0001",
                "1700000000",
                Some("v1a,AAAA"),
                NOW
            ),
            Err(VerifyError::MalformedHeader("webhook-signature"))
        );
    }

    #[test]
    fn rejects_one_second_past_the_tolerance_both_ways() {
        assert!(
            check(
                "webhook",
                "msg_FAKE0001",
                "1700000000",
                Some(SIG),
                NOW + 300
            )
            .is_ok()
        );
        assert!(
            check(
                "webhook",
                "msg_FAKE0001",
                "1700000000",
                Some(SIG),
                NOW - 300
            )
            .is_ok()
        );
        for now in [NOW + 301, NOW - 301] {
            assert!(matches!(
                check("webhook", "msg_FAKE0001", "1700000000", Some(SIG), now),
                Err(VerifyError::TimestampOutsideTolerance { .. })
            ));
        }
    }

    fn source_with(secret: &str) -> SourceConfig {
        SourceConfig::new("std", Provider::Standard, vec![Secret::new(secret)])
    }

    #[test]
    fn rejects_whsec_prefix_with_empty_key() {
        assert_eq!(
            key_bytes(&Secret::new("whsec_")),
            Err(KeyError::EmptyAfterPrefix("whsec_"))
        );
        assert_eq!(key_bytes(&Secret::new("")), Err(KeyError::Empty));
        assert!(sign(&Secret::new("whsec_"), "msg_FAKE0001", NOW, BODY.as_bytes()).is_err());
        // A signature made with the empty key, which anyone can compute, is not accepted.
        let forged = format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(
                keyed(&[], "msg_FAKE0001", "1700000000", BODY.as_bytes())
                    .finalize()
                    .into_bytes()
            )
        );
        let mut h = HeaderMap::new();
        h.insert("webhook-id", "msg_FAKE0001".parse().unwrap());
        h.insert("webhook-timestamp", "1700000000".parse().unwrap());
        h.insert("webhook-signature", forged.parse().unwrap());
        let req = WebhookRequest {
            headers: &h,
            body: BODY.as_bytes(),
            query: "",
        };
        assert_eq!(
            StandardWebhooks.verify_at(&req, &source_with("whsec_"), NOW),
            Err(VerifyError::SignatureMismatch)
        );
        assert!(crate::verify::verify_at(&req, &source_with(""), NOW).is_err());
    }

    #[test]
    fn key_must_be_base64_of_24_to_64_bytes() {
        use base64::engine::general_purpose::STANDARD as B64;
        let with = |n: usize| Secret::new(format!("whsec_{}", B64.encode(vec![7u8; n])));
        assert_eq!(key_bytes(&with(24)).unwrap().len(), 24);
        assert_eq!(key_bytes(&with(64)).unwrap().len(), 64);
        for n in [1, 23, 65] {
            assert_eq!(
                key_bytes(&with(n)),
                Err(KeyError::Length {
                    bytes: n,
                    min: 24,
                    max: 64
                }),
                "{n}"
            );
        }
        assert_eq!(
            key_bytes(&Secret::new("whsec_not base64!")),
            Err(KeyError::NotBase64 {
                after_prefix: Some("whsec_")
            })
        );
        // The prefix may be left out, as the reference libraries allow.
        assert_eq!(
            key_bytes(&Secret::new(&SECRET["whsec_".len()..])),
            key_bytes(&Secret::new(SECRET))
        );
        // A secret that is not a usable key (here 5 bytes) never verifies.
        let src = source_with("whsec_c2hvcnQ=");
        let sig = format!(
            "v1,{}",
            B64.encode(
                keyed(b"short", "msg_FAKE0001", "1700000000", BODY.as_bytes())
                    .finalize()
                    .into_bytes()
            )
        );
        let mut h = HeaderMap::new();
        h.insert("webhook-id", "msg_FAKE0001".parse().unwrap());
        h.insert("webhook-timestamp", "1700000000".parse().unwrap());
        h.insert("webhook-signature", sig.parse().unwrap());
        let req = WebhookRequest {
            headers: &h,
            body: BODY.as_bytes(),
            query: "",
        };
        assert_eq!(
            StandardWebhooks.verify_at(&req, &src, NOW),
            Err(VerifyError::SignatureMismatch)
        );
    }

    #[test]
    fn malformed_empty_and_missing_parts_fail_closed() {
        for sig in ["v1,", "v1", "garbage", "v1,!!!", &SIG[..SIG.len() - 4]] {
            assert!(
                check("webhook", "msg_FAKE0001", "1700000000", Some(sig), NOW).is_err(),
                "{sig}"
            );
        }
        assert_eq!(
            check("webhook", "msg_FAKE0001", "1700000000", None, NOW),
            Err(VerifyError::MissingHeader("webhook-signature"))
        );
        assert!(check("webhook", "msg_FAKE0001", "17e8", Some(SIG), NOW).is_err());
    }

    #[test]
    fn standard_replay_under_other_headers_keeps_the_key() {
        let verify = |family: &str, sig: &str, extra: &[(&'static str, &str)], query: &str| {
            let mut h = HeaderMap::new();
            for (name, value) in [
                ("id", "msg_FAKE0001"),
                ("timestamp", "1700000000"),
                ("signature", sig),
            ] {
                h.insert(
                    http::HeaderName::from_bytes(format!("{family}-{name}").as_bytes()).unwrap(),
                    value.parse().unwrap(),
                );
            }
            for (k, v) in extra {
                h.insert(*k, v.parse().unwrap());
            }
            let src = SourceConfig::new("std", Provider::Standard, vec![Secret::new(SECRET)]);
            StandardWebhooks
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
        let first = verify("webhook", SIG, &[], "");
        assert_eq!(first.dedupe, Dedupe::EventId);
        let key = |v: &Verified| (v.event_id.clone(), v.event_type.clone(), v.dedupe.clone());
        let list = format!("v1a,AAAA {SIG_ID_2} {SIG}");
        for replay in [
            verify("svix", SIG, &[], ""),
            verify("webhook", &list, &[], ""),
            verify("webhook", SIG, &[], "webhook-id=msg_forged"),
            verify("webhook", SIG, &[("content-type", "text/plain")], ""),
            verify("webhook", SIG, &[("svix-id", "msg_forged")], ""),
        ] {
            assert_eq!(key(&replay), key(&first));
        }
    }
}
