//! Slack request signatures.
//!
//! Follows Slack's "Verifying requests from Slack"
//! (<https://api.slack.com/authentication/verifying-requests-from-slack>) and the Events API's
//! "url_verification" handshake (<https://api.slack.com/events/url_verification>):
//!
//! - headers `X-Slack-Request-Timestamp` (epoch seconds) and `X-Slack-Signature: v0=<hex>`;
//! - signed base string `v0:{timestamp}:{raw body}`, HMAC-SHA256 keyed with the signing secret;
//! - the timestamp must be within the tolerance (default 300 s, Slack's five minutes) either way;
//! - a verified `url_verification` request is answered at once with `{"challenge": …}` and not
//!   enqueued;
//! - Events API deliveries (`event_callback`): event id `event_id` (signed, inside the body),
//!   type `event.type`, time `event_time`. Retries (`X-Slack-Retry-Num`) are enqueued like any
//!   delivery; the worker deduplicates them on the event id;
//! - form posts (slash commands, interactivity): type `command:{command}` or the interactive
//!   payload's `type`; id `trigger_id` when present, else the timestamp and the signature's
//!   first 8 bytes (as lower-case hex, whatever case the header used); deduplication on the
//!   body digest, since a retry resends the same body.
//!
//! Slack signs the timestamp and the body, nothing else: the retry headers (kept for the
//! handlers) and the query string are unsigned and never feed the id, the type or the key, and
//! neither does the spelling of the signature (hex in either case).

use std::borrow::Cow;

use hmac::{KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::{
    Dedupe, Scheme, Verified, VerifyError, WebhookRequest, check_tolerance, event_id, event_type,
    nonempty_secrets, optional_header, parse_timestamp, shadow, single_header,
};
use crate::config::SourceConfig;
use crate::secret::Secret;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-slack-signature";
/// The timestamp header.
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
/// Set on Slack's retries (1, 2, 3).
pub const RETRY_NUM_HEADER: &str = "x-slack-retry-num";
/// Why Slack retried (`http_timeout`, …).
pub const RETRY_REASON_HEADER: &str = "x-slack-retry-reason";

type HmacSha256 = hmac::Hmac<Sha256>;

/// The Slack scheme.
#[derive(Debug, Clone, Copy, Default)]
pub struct Slack;

/// The `X-Slack-Signature` value for `body` at `timestamp_s`. Used by the CLI and tests.
pub fn sign(secret: &Secret, timestamp_s: i64, body: &[u8]) -> String {
    let tag = keyed(secret, &timestamp_s.to_string(), body)
        .finalize()
        .into_bytes();
    format!("v0={}", hex::encode(tag))
}

fn keyed(secret: &Secret, ts: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes()).expect("any key length");
    mac.update(b"v0:");
    mac.update(ts.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac
}

#[derive(Deserialize)]
struct EventsApi<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    challenge: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event_id: Option<Cow<'a, str>>,
    #[serde(default)]
    event_time: Option<i64>,
    #[serde(borrow, default)]
    event: Option<Inner<'a>>,
}

#[derive(Deserialize)]
struct Inner<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
}

impl Scheme for Slack {
    fn verify_at(
        &self,
        req: &WebhookRequest<'_>,
        source: &SourceConfig,
        now_s: i64,
    ) -> Result<Verified, VerifyError> {
        let ts_text = single_header(req.headers, TIMESTAMP_HEADER)?;
        let ts = parse_timestamp(ts_text, TIMESTAMP_HEADER)?;
        let value = single_header(req.headers, SIGNATURE_HEADER)?;
        check_tolerance(ts, now_s, source.tolerance_seconds).or_else(|e| shadow(source, e))?;
        let hex_sig = value
            .strip_prefix("v0=")
            .ok_or(VerifyError::MalformedHeader(SIGNATURE_HEADER))?;
        let mut sig = [0u8; 32];
        hex::decode_to_slice(hex_sig, &mut sig)
            .map_err(|_| VerifyError::MalformedHeader(SIGNATURE_HEADER))?;
        let authentic = nonempty_secrets(source)
            .any(|s| keyed(s, ts_text, req.body).verify_slice(&sig).is_ok());
        if !authentic {
            shadow(source, VerifyError::SignatureMismatch)?;
        }

        let mut headers = Vec::new();
        for name in [RETRY_NUM_HEADER, RETRY_REASON_HEADER] {
            if let Some(v) = optional_header(req.headers, name)? {
                headers.push((name, v.to_owned()));
            }
        }
        if let Ok(api) = serde_json::from_slice::<EventsApi<'_>>(req.body) {
            let kind = api.kind.as_deref().unwrap_or_default();
            if kind == "url_verification" {
                // The challenge is echoed only for a verified request, shadow mode or not.
                if !authentic {
                    return Err(VerifyError::SignatureMismatch);
                }
                let challenge = api.challenge.ok_or(VerifyError::NoEventId(
                    "url_verification without a challenge",
                ))?;
                return Ok(Verified {
                    event_id: "url_verification".into(),
                    event_type: "url_verification".into(),
                    occurred_at_ms: None,
                    dedupe: Dedupe::BodyDigest,
                    headers,
                    reply: Some(serde_json::json!({ "challenge": challenge }).to_string()),
                });
            }
            let id = api
                .event_id
                .ok_or(VerifyError::NoEventId("body has no event_id"))?;
            let inner = api.event.and_then(|e| e.kind).map(|k| k.into_owned());
            return Ok(Verified {
                event_id: event_id(&id)?,
                event_type: event_type(&inner.unwrap_or_else(|| kind.to_owned()))?,
                occurred_at_ms: api.event_time.and_then(|t| t.checked_mul(1000)),
                dedupe: Dedupe::EventId,
                headers,
                reply: None,
            });
        }
        // A form post: a slash command, or an interactive payload (`payload=<json>`).
        let mut command = None;
        let mut trigger = None;
        let mut payload_type = None;
        for (k, v) in form_urlencoded::parse(req.body) {
            match k.as_ref() {
                "command" => command = Some(v.into_owned()),
                "trigger_id" => trigger = Some(v.into_owned()),
                "payload" => {
                    #[derive(Deserialize)]
                    struct Interactive {
                        #[serde(rename = "type")]
                        kind: Option<String>,
                        trigger_id: Option<String>,
                    }
                    if let Ok(p) = serde_json::from_str::<Interactive>(&v) {
                        payload_type = p.kind;
                        trigger = trigger.or(p.trigger_id);
                    }
                }
                _ => {}
            }
        }
        let kind = match (command, payload_type) {
            (Some(c), _) => format!("command:{c}"),
            (None, Some(t)) => t,
            (None, None) => {
                return Err(VerifyError::NoEventId(
                    "neither an Events API body nor a command or interactive payload",
                ));
            }
        };
        let id = trigger.unwrap_or_else(|| format!("{ts_text}-{}", hex::encode(&sig[..8])));
        Ok(Verified {
            event_id: event_id(&id)?,
            event_type: event_type(&kind)?,
            occurred_at_ms: ts.checked_mul(1000),
            dedupe: Dedupe::BodyDigest,
            headers,
            reply: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use http::HeaderMap;

    use super::*;
    use crate::config::Provider;

    const SECRET: &str = "FAKE_slack_signing_secret_0001";
    const K1: &str =
        r#"{"token":"FAKE","challenge":"FAKE_challenge_abc123","type":"url_verification"}"#;
    const K1_SIG: &str = "v0=5092966c197d8fb5cc20484f3e47339c4ac74101e8297cbc9383019c485e67ec";
    const K2_B64: &str = "dG9rZW49RkFLRSZ0ZWFtX2lkPVQwMDAxJmNvbW1hbmQ9JTJGd2VhdGhlciZ0ZXh0PTk0MDcwJnJlc3BvbnNlX3VybD1odHRwcyUzQSUyRiUyRmhvb2tzLnNsYWNrLmNvbSUyRmNvbW1hbmRzJTJGRkFLRQ==";
    const K2_SIG: &str = "v0=def028e76ba6045efea0fd9ca355c4937bf41fa57bde7edada75010b2b5b6c46";
    const NOW: i64 = 1_700_000_000;

    fn check(
        sig: Option<&str>,
        ts: Option<&str>,
        body: &[u8],
        now: i64,
        extra: &[(&'static str, &str)],
    ) -> Result<Verified, VerifyError> {
        check_query(sig, ts, body, now, extra, "")
    }

    fn check_query(
        sig: Option<&str>,
        ts: Option<&str>,
        body: &[u8],
        now: i64,
        extra: &[(&'static str, &str)],
        query: &str,
    ) -> Result<Verified, VerifyError> {
        let mut h = HeaderMap::new();
        if let Some(s) = sig {
            h.insert(SIGNATURE_HEADER, s.parse().unwrap());
        }
        if let Some(t) = ts {
            h.insert(TIMESTAMP_HEADER, t.parse().unwrap());
        }
        for (k, v) in extra {
            h.insert(*k, v.parse().unwrap());
        }
        let src = SourceConfig::new("slack", Provider::Slack, vec![Secret::new(SECRET)]);
        Slack.verify_at(
            &WebhookRequest {
                headers: &h,
                body,
                query,
            },
            &src,
            now,
        )
    }

    #[test]
    fn c14_url_verification_is_answered_with_the_challenge_only_when_verified() {
        let v = check(Some(K1_SIG), Some("1700000000"), K1.as_bytes(), NOW, &[]).unwrap();
        assert_eq!(
            v.reply.as_deref(),
            Some(r#"{"challenge":"FAKE_challenge_abc123"}"#)
        );
        assert_eq!(sign(&Secret::new(SECRET), NOW, K1.as_bytes()), K1_SIG);
        let bad = format!("v0={}", "0".repeat(64));
        assert_eq!(
            check(Some(&bad), Some("1700000000"), K1.as_bytes(), NOW, &[]),
            Err(VerifyError::SignatureMismatch)
        );
    }

    #[test]
    fn c03_slash_command_form_body_verifies_over_the_raw_bytes() {
        let k2 = base64::engine::general_purpose::STANDARD
            .decode(K2_B64)
            .unwrap();
        let v = check(Some(K2_SIG), Some("1700000000"), &k2, NOW, &[]).unwrap();
        assert_eq!(v.event_type, "command:/weather");
        assert_eq!(v.dedupe, Dedupe::BodyDigest);
    }

    #[test]
    fn c15_retries_verify_and_keep_the_event_id_for_deduplication() {
        let body = br#"{"type":"event_callback","team_id":"T0001","event_id":"Ev_FAKE1","event_time":1700000000,"event":{"type":"message","channel":"C1","ts":"1.2"}}"#;
        let sig = sign(&Secret::new(SECRET), NOW, body);
        let first = check(Some(&sig), Some("1700000000"), body, NOW, &[]).unwrap();
        let retry = check(
            Some(&sig),
            Some("1700000000"),
            body,
            NOW,
            &[
                (RETRY_NUM_HEADER, "1"),
                (RETRY_REASON_HEADER, "http_timeout"),
            ],
        )
        .unwrap();
        assert_eq!(
            (first.event_id.as_str(), first.event_type.as_str()),
            ("Ev_FAKE1", "message")
        );
        assert_eq!(retry.event_id, first.event_id);
        assert_eq!(first.dedupe, Dedupe::EventId);
        assert!(retry.headers.contains(&(RETRY_NUM_HEADER, "1".to_owned())));
    }

    #[test]
    fn rejects_one_second_past_the_tolerance_both_ways_and_fails_closed() {
        assert!(
            check(
                Some(K1_SIG),
                Some("1700000000"),
                K1.as_bytes(),
                NOW + 300,
                &[]
            )
            .is_ok()
        );
        assert!(
            check(
                Some(K1_SIG),
                Some("1700000000"),
                K1.as_bytes(),
                NOW - 300,
                &[]
            )
            .is_ok()
        );
        for now in [NOW + 301, NOW - 301] {
            assert!(matches!(
                check(Some(K1_SIG), Some("1700000000"), K1.as_bytes(), now, &[]),
                Err(VerifyError::TimestampOutsideTolerance { .. })
            ));
        }
        assert_eq!(
            check(None, Some("1700000000"), K1.as_bytes(), NOW, &[]),
            Err(VerifyError::MissingHeader(SIGNATURE_HEADER))
        );
        assert_eq!(
            check(Some(K1_SIG), None, K1.as_bytes(), NOW, &[]),
            Err(VerifyError::MissingHeader(TIMESTAMP_HEADER))
        );
        for bad in [
            "v0=",
            "v1=5092966c",
            &K1_SIG[..K1_SIG.len() - 2],
            "5092966c197d8fb5cc20484f3e47339c4ac74101e8297cbc9383019c485e67ec",
        ] {
            assert!(
                check(Some(bad), Some("1700000000"), K1.as_bytes(), NOW, &[]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn slack_replay_under_other_headers_keeps_the_key() {
        let event = br#"{"type":"event_callback","event_id":"Ev_FAKE2","event_time":1700000000,"event":{"type":"message"}}"#;
        let event_sig = sign(&Secret::new(SECRET), NOW, event);
        let k2 = base64::engine::general_purpose::STANDARD
            .decode(K2_B64)
            .unwrap();
        for (body, sig) in [(&event[..], event_sig.as_str()), (&k2[..], K2_SIG)] {
            let src = SourceConfig::new("slack", Provider::Slack, vec![Secret::new(SECRET)]);
            let key = |v: Verified| crate::Envelope::new(&src, v, body, None, 0).idempotency_key;
            let first = check(Some(sig), Some("1700000000"), body, NOW, &[]).unwrap();
            let want = (
                first.event_id.clone(),
                first.event_type.clone(),
                key(first.clone()),
            );
            let upper = format!("v0={}", sig[3..].to_ascii_uppercase());
            let replays = [
                check(
                    Some(sig),
                    Some("1700000000"),
                    body,
                    NOW,
                    &[(RETRY_NUM_HEADER, "3")],
                ),
                check(
                    Some(sig),
                    Some("1700000000"),
                    body,
                    NOW,
                    &[
                        (RETRY_REASON_HEADER, "http_error"),
                        ("content-type", "text/plain"),
                    ],
                ),
                check_query(Some(sig), Some("1700000000"), body, NOW, &[], "event_id=x"),
                check(Some(&upper), Some("1700000000"), body, NOW, &[]),
            ];
            for replay in replays {
                let replay = replay.unwrap();
                assert_eq!(replay.dedupe, first.dedupe);
                assert_eq!(
                    (
                        replay.event_id.clone(),
                        replay.event_type.clone(),
                        key(replay)
                    ),
                    want
                );
            }
        }
    }
}
