//! A generic HMAC scheme, for providers that sign the body with an HMAC in one header.
//!
//! Configured per source (`"provider": "hmac"` with an `hmac` object, see
//! [`HmacOptions`]): the header, the hash (SHA-256, SHA-512 or SHA-1), the encoding (hex or
//! base64), an optional prefix before the digest (`sha256=`), an optional timestamp header (then
//! the signed content is `{timestamp}.{body}` and the timestamp must be within the tolerance),
//! and where the event id and type are (`header:<name>` or `json:<JSON pointer>`).
//! The comparison is constant time over the full digest; a signature of the wrong length or
//! encoding fails closed.
//!
//! Only the body (and the timestamp header, when one is configured) is signed; every other
//! header and the query string can be changed by anyone replaying a captured delivery. So an
//! id from the body (`json:`) is the idempotency key, while an id from a header (`header:`)
//! only names the event and the key is the body digest. A type from a header only routes to a
//! handler: a replay under another type keeps the key, and the event store treats it as a
//! conflict, never as a second event. The query string is not read.

use base64::Engine;
use hmac::{KeyInit, Mac};
use serde::Deserialize;

use super::{
    Dedupe, Scheme, Verified, VerifyError, WebhookRequest, check_tolerance, event_id, event_type,
    nonempty_secrets, optional_header_as, parse_timestamp, shadow, single_header_as,
};
use crate::config::SourceConfig;
use crate::secret::Secret;

/// The hash behind the HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// HMAC-SHA256.
    #[default]
    Sha256,
    /// HMAC-SHA512.
    Sha512,
    /// HMAC-SHA1 (only where a provider still uses it).
    Sha1,
}

/// How the digest is written in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Lower- or upper-case hex.
    #[default]
    Hex,
    /// Standard base64, padded.
    Base64,
}

/// Settings of a generic HMAC source.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HmacOptions {
    /// The signature header, e.g. `x-acme-signature`.
    pub header: String,
    /// The hash; default `sha256`.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// The digest encoding; default `hex`.
    #[serde(default)]
    pub encoding: Encoding,
    /// Text before the digest in the header, e.g. `sha256=`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// A header with the signing time (epoch **seconds**); the signed content is then
    /// `{timestamp}.{body}`.
    #[serde(default)]
    pub timestamp_header: Option<String>,
    /// Where the event id is: `header:<name>` or `json:<pointer>` (e.g. `json:/id`). Default:
    /// the body digest.
    #[serde(default)]
    pub event_id: Option<String>,
    /// Where the event type is: `header:<name>` or `json:<pointer>`. Default: `webhook`.
    #[serde(default)]
    pub event_type: Option<String>,
}

/// Why an [`HmacOptions`] cannot work: the field and the problem (never a configured value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InvalidOption {
    /// The option's name (`header`, `timestamp_header`, `event_id`, `event_type`).
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl HmacOptions {
    /// Checks what the JSON shape cannot: the header names are valid HTTP header names, and
    /// `event_id` / `event_type` are `header:<name>` or `json:<JSON pointer>` (a pointer is
    /// empty or starts with `/`, RFC 6901). Without this a typo would fail every delivery.
    ///
    /// # Errors
    /// The first [`InvalidOption`].
    pub fn check(&self) -> Result<(), InvalidOption> {
        fn header_name(field: &'static str, name: &str) -> Result<(), InvalidOption> {
            http::HeaderName::from_bytes(name.trim().as_bytes())
                .map(drop)
                .map_err(|_| InvalidOption {
                    field,
                    problem: "not a valid HTTP header name",
                })
        }
        fn location(field: &'static str, spec: &str) -> Result<(), InvalidOption> {
            if let Some(name) = spec.strip_prefix("header:") {
                return header_name(field, name).map_err(|_| InvalidOption {
                    field,
                    problem: "the name after \"header:\" is not a valid HTTP header name",
                });
            }
            match spec.strip_prefix("json:") {
                Some(p) if p.is_empty() || p.starts_with('/') => Ok(()),
                Some(_) => Err(InvalidOption {
                    field,
                    problem: "the JSON pointer after \"json:\" must be empty or start with \"/\"",
                }),
                None => Err(InvalidOption {
                    field,
                    problem: "expected \"header:<name>\" or \"json:<JSON pointer>\", e.g. \"json:/id\"",
                }),
            }
        }
        header_name("header", &self.header)?;
        if let Some(h) = &self.timestamp_header {
            header_name("timestamp_header", h)?;
        }
        if let Some(spec) = &self.event_id {
            location("event_id", spec)?;
        }
        if let Some(spec) = &self.event_type {
            location("event_type", spec)?;
        }
        Ok(())
    }
}

/// The generic scheme. The key is the secret string as is (its UTF-8 bytes), never empty.
/// The signature, timestamp, and `header:` event id and type each must appear once: a
/// duplicated one fails closed ([`VerifyError::DuplicateHeader`], a 401), as in every scheme.
#[derive(Debug, Clone, Copy, Default)]
pub struct GenericHmac;

fn tag(alg: Algorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    fn run<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut mac = <M as KeyInit>::new_from_slice(key).expect("any key length");
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().to_vec()
    }
    match alg {
        Algorithm::Sha256 => run::<hmac::Hmac<sha2::Sha256>>(key, parts),
        Algorithm::Sha512 => run::<hmac::Hmac<sha2::Sha512>>(key, parts),
        Algorithm::Sha1 => run::<hmac::Hmac<sha1::Sha1>>(key, parts),
    }
}

fn verify(alg: Algorithm, key: &[u8], parts: &[&[u8]], sig: &[u8]) -> bool {
    fn run<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]], sig: &[u8]) -> bool {
        let mut mac = <M as KeyInit>::new_from_slice(key).expect("any key length");
        for p in parts {
            mac.update(p);
        }
        mac.verify_slice(sig).is_ok()
    }
    match alg {
        Algorithm::Sha256 => run::<hmac::Hmac<sha2::Sha256>>(key, parts, sig),
        Algorithm::Sha512 => run::<hmac::Hmac<sha2::Sha512>>(key, parts, sig),
        Algorithm::Sha1 => run::<hmac::Hmac<sha1::Sha1>>(key, parts, sig),
    }
}

/// The header value a sender using `options` writes for `body` (with `timestamp_s` when the
/// options have a timestamp header). Used by the CLI and tests.
pub fn sign(
    options: &HmacOptions,
    secret: &Secret,
    timestamp_s: Option<i64>,
    body: &[u8],
) -> String {
    let ts = timestamp_s.map(|t| t.to_string());
    let parts: Vec<&[u8]> = match &ts {
        Some(t) => vec![t.as_bytes(), b".", body],
        None => vec![body],
    };
    let digest = tag(options.algorithm, secret.expose().as_bytes(), &parts);
    let encoded = match options.encoding {
        Encoding::Hex => hex::encode(digest),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(digest),
    };
    format!("{}{encoded}", options.prefix.as_deref().unwrap_or_default())
}

/// The value at `spec` (`header:<name>` or `json:<pointer>`); a header that appears twice
/// fails closed, naming `label`.
fn locate(
    spec: &str,
    label: &'static str,
    req: &WebhookRequest<'_>,
    doc: &mut Option<Option<serde_json::Value>>,
) -> Result<Option<String>, VerifyError> {
    if let Some(name) = spec.strip_prefix("header:") {
        let name = name.trim().to_ascii_lowercase();
        return Ok(optional_header_as(req.headers, &name, label)?.map(str::to_owned));
    }
    if let Some(pointer) = spec.strip_prefix("json:") {
        let parsed = doc.get_or_insert_with(|| serde_json::from_slice(req.body).ok());
        return Ok(parsed
            .as_ref()
            .and_then(|d| d.pointer(pointer))
            .and_then(|v| match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            }));
    }
    Err(VerifyError::NoEventId(
        "event_id/event_type must start with header: or json:",
    ))
}

impl Scheme for GenericHmac {
    fn verify_at(
        &self,
        req: &WebhookRequest<'_>,
        source: &SourceConfig,
        now_s: i64,
    ) -> Result<Verified, VerifyError> {
        // Sources::new requires the options for this provider.
        let Some(options) = source.hmac.as_ref() else {
            return Err(VerifyError::MissingHeader("hmac options"));
        };
        let name = options.header.trim().to_ascii_lowercase();
        let value = single_header_as(req.headers, &name, "configured signature header")?;
        let digest_text = match &options.prefix {
            Some(p) => value
                .strip_prefix(p.as_str())
                .ok_or(VerifyError::MalformedHeader("configured signature header"))?,
            None => value,
        };
        let sig = match options.encoding {
            Encoding::Hex => hex::decode(digest_text).ok(),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(digest_text)
                .ok(),
        }
        .filter(|s| !s.is_empty())
        .ok_or(VerifyError::MalformedHeader("configured signature header"))?;

        let ts_text = match &options.timestamp_header {
            Some(h) => {
                let h = h.trim().to_ascii_lowercase();
                let t = single_header_as(req.headers, &h, "configured timestamp header")?;
                let ts = parse_timestamp(t, "configured timestamp header")?;
                check_tolerance(ts, now_s, source.tolerance_seconds)
                    .or_else(|e| shadow(source, e))?;
                Some(t.to_owned())
            }
            None => None,
        };
        let parts: Vec<&[u8]> = match &ts_text {
            Some(t) => vec![t.as_bytes(), b".", req.body],
            None => vec![req.body],
        };
        if !nonempty_secrets(source)
            .any(|s| verify(options.algorithm, s.expose().as_bytes(), &parts, &sig))
        {
            shadow(source, VerifyError::SignatureMismatch)?;
        }

        let mut doc = None;
        let (id, dedupe) = match &options.event_id {
            Some(spec) => {
                let id = locate(spec, "configured event id header", req, &mut doc)?
                    .ok_or(VerifyError::NoEventId("the configured event id is missing"))?;
                (
                    id,
                    if spec.starts_with("json:") {
                        Dedupe::EventId
                    } else {
                        Dedupe::BodyDigest
                    },
                )
            }
            None => (crate::envelope::sha256_hex(req.body), Dedupe::BodyDigest),
        };
        let kind = match &options.event_type {
            Some(spec) => locate(spec, "configured event type header", req, &mut doc)?
                .unwrap_or_else(|| "webhook".to_owned()),
            None => "webhook".to_owned(),
        };
        let occurred_at_ms = ts_text
            .and_then(|t| t.parse::<i64>().ok())
            .and_then(|t| t.checked_mul(1000));
        Ok(Verified {
            event_id: event_id(&id)?,
            event_type: event_type(&kind)?,
            occurred_at_ms,
            dedupe,
            headers: Vec::new(),
            reply: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;
    use crate::config::Provider;

    const BODY: &str = r#"{"id":"ev_42","type":"thing.happened","n":1}"#;

    fn source(options: HmacOptions) -> SourceConfig {
        let mut s = SourceConfig::new("acme", Provider::Hmac, vec![Secret::new("acme-secret")]);
        s.hmac = Some(options);
        s
    }

    fn opts(alg: Algorithm, enc: Encoding, prefix: Option<&str>, ts: Option<&str>) -> HmacOptions {
        HmacOptions {
            header: "X-Acme-Signature".into(),
            algorithm: alg,
            encoding: enc,
            prefix: prefix.map(str::to_owned),
            timestamp_header: ts.map(str::to_owned),
            event_id: Some("json:/id".into()),
            event_type: Some("json:/type".into()),
        }
    }

    fn check(
        o: &HmacOptions,
        headers: &[(&'static str, String)],
        body: &str,
        now: i64,
    ) -> Result<Verified, VerifyError> {
        check_query(o, headers, body, now, "")
    }

    fn check_query(
        o: &HmacOptions,
        headers: &[(&'static str, String)],
        body: &str,
        now: i64,
        query: &str,
    ) -> Result<Verified, VerifyError> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, v.parse().unwrap());
        }
        GenericHmac.verify_at(
            &WebhookRequest {
                headers: &h,
                body: body.as_bytes(),
                query,
            },
            &source(o.clone()),
            now,
        )
    }

    #[test]
    fn every_algorithm_and_encoding_round_trips_and_rejects_tampering() {
        for alg in [Algorithm::Sha256, Algorithm::Sha512, Algorithm::Sha1] {
            for enc in [Encoding::Hex, Encoding::Base64] {
                let o = opts(alg, enc, Some("v1="), None);
                let sig = sign(&o, &Secret::new("acme-secret"), None, BODY.as_bytes());
                let v = check(&o, &[("x-acme-signature", sig.clone())], BODY, 0).unwrap();
                assert_eq!(
                    (v.event_id.as_str(), v.event_type.as_str(), v.dedupe),
                    ("ev_42", "thing.happened", Dedupe::EventId)
                );
                assert_eq!(
                    check(
                        &o,
                        &[("x-acme-signature", sig.clone())],
                        &BODY.replace('1', "2"),
                        0
                    ),
                    Err(VerifyError::SignatureMismatch)
                );
                assert!(
                    check(&o, &[("x-acme-signature", sig[3..].to_owned())], BODY, 0).is_err(),
                    "prefix required"
                );
                assert!(
                    check(
                        &o,
                        &[("x-acme-signature", sig[..sig.len() - 2].to_owned())],
                        BODY,
                        0
                    )
                    .is_err(),
                    "truncated"
                );
            }
        }
    }

    #[test]
    fn known_answer_matches_openssl() {
        // printf '%s' "$BODY" | openssl dgst -sha256 -hmac acme-secret
        let o = opts(Algorithm::Sha256, Encoding::Hex, None, None);
        assert_eq!(
            sign(&o, &Secret::new("acme-secret"), None, BODY.as_bytes()),
            "762d6e8df041cbb7b7214806bb4ff41e16e9d9002e2e48d8b04e5a30270c01f0"
        );
    }

    #[test]
    fn timestamp_header_is_signed_and_bounded_both_ways() {
        let o = opts(
            Algorithm::Sha256,
            Encoding::Hex,
            None,
            Some("X-Acme-Timestamp"),
        );
        let sig = sign(
            &o,
            &Secret::new("acme-secret"),
            Some(1_700_000_000),
            BODY.as_bytes(),
        );
        let h = vec![
            ("x-acme-signature", sig),
            ("x-acme-timestamp", "1700000000".to_owned()),
        ];
        assert!(check(&o, &h, BODY, 1_700_000_300).is_ok());
        assert!(matches!(
            check(&o, &h, BODY, 1_700_000_301),
            Err(VerifyError::TimestampOutsideTolerance { .. })
        ));
        assert!(matches!(
            check(&o, &h, BODY, 1_699_999_699),
            Err(VerifyError::TimestampOutsideTolerance { .. })
        ));
        let moved = vec![h[0].clone(), ("x-acme-timestamp", "1700000001".to_owned())];
        assert_eq!(
            check(&o, &moved, BODY, 1_700_000_000),
            Err(VerifyError::SignatureMismatch)
        );
        assert!(
            check(&o, &h[..1], BODY, 1_700_000_000).is_err(),
            "timestamp header missing"
        );
    }

    fn with_duplicate(headers: &[(&'static str, String)], name: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(*k, v.parse().unwrap());
        }
        h.append(name, "1700000001".parse().unwrap());
        h
    }

    #[test]
    fn generic_hmac_rejects_duplicate_timestamp_header() {
        let mut o = opts(
            Algorithm::Sha256,
            Encoding::Hex,
            None,
            Some("X-Acme-Timestamp"),
        );
        o.event_id = Some("header:X-Acme-Delivery".into());
        o.event_type = Some("header:X-Acme-Event".into());
        let sig = sign(
            &o,
            &Secret::new("acme-secret"),
            Some(1_700_000_000),
            BODY.as_bytes(),
        );
        let good = vec![
            ("x-acme-signature", sig),
            ("x-acme-timestamp", "1700000000".to_owned()),
            ("x-acme-delivery", "d-1".to_owned()),
            ("x-acme-event", "thing.happened".to_owned()),
        ];
        let run = |h: &HeaderMap| {
            GenericHmac.verify_at(
                &WebhookRequest {
                    headers: h,
                    body: BODY.as_bytes(),
                    query: "",
                },
                &source(o.clone()),
                1_700_000_000,
            )
        };
        assert!(run(&with_duplicate(&good, "x-unrelated")).is_ok());
        for (name, label) in [
            ("x-acme-timestamp", "configured timestamp header"),
            ("x-acme-delivery", "configured event id header"),
            ("x-acme-event", "configured event type header"),
            ("x-acme-signature", "configured signature header"),
        ] {
            let r = run(&with_duplicate(&good, name));
            assert_eq!(r, Err(VerifyError::DuplicateHeader(label)), "{name}");
            assert!(!r.unwrap_err().is_authentic(), "{name}: answered 401");
        }
    }

    #[test]
    fn options_with_bad_header_names_or_locations_are_refused() {
        let base = opts(Algorithm::Sha256, Encoding::Hex, None, None);
        assert_eq!(base.check(), Ok(()));
        let field = |o: HmacOptions| o.check().unwrap_err().field;
        assert_eq!(
            field(HmacOptions {
                header: "X Acme".into(),
                ..base.clone()
            }),
            "header"
        );
        assert_eq!(
            field(HmacOptions {
                timestamp_header: Some("".into()),
                ..base.clone()
            }),
            "timestamp_header"
        );
        for bad in ["/id", "json:id", "header:", "body:/id"] {
            assert_eq!(
                field(HmacOptions {
                    event_id: Some(bad.into()),
                    ..base.clone()
                }),
                "event_id",
                "{bad}"
            );
        }
        assert_eq!(
            field(HmacOptions {
                event_type: Some("type".into()),
                ..base.clone()
            }),
            "event_type"
        );
    }

    #[test]
    fn header_ids_are_not_signed_so_the_body_digest_dedupes() {
        let mut o = opts(Algorithm::Sha256, Encoding::Hex, None, None);
        o.event_id = Some("header:X-Acme-Delivery".into());
        let sig = sign(&o, &Secret::new("acme-secret"), None, BODY.as_bytes());
        let v = check(
            &o,
            &[("x-acme-signature", sig), ("x-acme-delivery", "d-1".into())],
            BODY,
            0,
        )
        .unwrap();
        assert_eq!((v.event_id.as_str(), v.dedupe), ("d-1", Dedupe::BodyDigest));
    }

    #[test]
    fn generic_replay_under_other_headers_keeps_the_key() {
        let key = |o: &HmacOptions, v: Verified| {
            crate::Envelope::new(&source(o.clone()), v, BODY.as_bytes(), None, 0).idempotency_key
        };
        let mut from_headers = opts(
            Algorithm::Sha256,
            Encoding::Hex,
            None,
            Some("X-Acme-Timestamp"),
        );
        from_headers.event_id = Some("header:X-Acme-Delivery".into());
        from_headers.event_type = Some("header:X-Acme-Event".into());
        let mut from_body = from_headers.clone();
        from_body.event_id = Some("json:/id".into());
        for (o, dedupe) in [
            (&from_headers, Dedupe::BodyDigest),
            (&from_body, Dedupe::EventId),
        ] {
            let sig = sign(
                o,
                &Secret::new("acme-secret"),
                Some(1_700_000_000),
                BODY.as_bytes(),
            );
            let base = vec![
                ("x-acme-signature", sig),
                ("x-acme-timestamp", "1700000000".to_owned()),
                ("x-acme-delivery", "d-1".to_owned()),
                ("x-acme-event", "thing.happened".to_owned()),
            ];
            let first = check(o, &base, BODY, 1_700_000_000).unwrap();
            assert_eq!(first.dedupe, dedupe);
            let want = key(o, first.clone());
            for (name, value) in [
                ("x-acme-delivery", "d-2"),
                ("x-acme-event", "thing.refunded"),
                ("x-acme-event", "made.up"),
                ("content-type", "text/plain"),
            ] {
                let mut h: Vec<_> = base.iter().filter(|(k, _)| *k != name).cloned().collect();
                h.push((name, value.to_owned()));
                let replay = check(o, &h, BODY, 1_700_000_000).unwrap();
                assert_eq!(replay.dedupe, first.dedupe, "{name}");
                assert_eq!(key(o, replay), want, "{name}: {value}");
            }
            let replay = check_query(o, &base, BODY, 1_700_000_000, "id=x&type=y").unwrap();
            assert_eq!(replay, first);
        }
    }
}
