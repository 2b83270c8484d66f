//! Twilio request signatures.
//!
//! Follows Twilio's "Webhooks security" (<https://www.twilio.com/docs/usage/webhooks/webhooks-security>)
//! and the `twilio` SDKs' `RequestValidator`:
//!
//! - header `X-Twilio-Signature`: base64 HMAC-**SHA1**, keyed with the account's auth token, of
//!   the full URL Twilio requested (the source's `url` plus the request's query string) followed,
//!   for form posts, by every POST parameter name and value, names sorted (values of a repeated
//!   name sorted too);
//! - for JSON bodies the URL carries `bodySHA256=<hex SHA-256 of the body>`: the signature covers
//!   the URL alone, and the body must hash to that value;
//! - no signed timestamp, and no header is signed. Event id: the `I-Twilio-Idempotency-Token`
//!   header (unsigned: it only names the event in logs and the event store), else the form's
//!   `MessageSid`/`CallSid`; type `message.{MessageStatus}` / `call.{CallStatus}`, from the
//!   signed parameters. The status callbacks of one message share its sid, so deduplication is
//!   on a digest of the signed parameters (a retry resends them), never on a header;
//! - Twilio signs the parameters' decoded values, not the bytes of the body ("Validating
//!   Signatures from Twilio": sort the POST parameters by name, append each name and value
//!   with no delimiter). So the body's encoding is not signed: `+` or `%20` for a space, `%2B`
//!   or `%2b`, a percent-encoded letter, the parameters' order or a trailing `&` change neither
//!   the signature nor the key, and the id and type are read from the sorted parameters, so the
//!   order cannot change them either. A re-encoded replay is a duplicate;
//! - the query string is part of the signed URL: a replay under another one does not verify.
//!   The key does not include it (a JSON body's key is the body's digest, which the signed
//!   `bodySHA256` binds);
//! - like the SDKs, the URL is tried as configured and with its default port toggled
//!   (`https://host/…` and `https://host:443/…`), and a repeated identical parameter counts once.

use base64::Engine;
use hmac::{KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::{
    Dedupe, Scheme, Verified, VerifyError, WebhookRequest, base64_signature, event_id, event_type,
    optional_header, shadow, single_header,
};
use crate::config::SourceConfig;
use crate::secret::Secret;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";
/// Twilio's idempotency token (the same on retries).
pub const IDEMPOTENCY_HEADER: &str = "i-twilio-idempotency-token";

type HmacSha1 = hmac::Hmac<Sha1>;

/// The Twilio scheme.
#[derive(Debug, Clone, Copy, Default)]
pub struct Twilio;

/// The full URL Twilio signed: `url`, plus `?query` when there is one.
pub fn full_url(url: &str, query: &str) -> String {
    if query.is_empty() {
        url.to_owned()
    } else {
        format!("{url}?{query}")
    }
}

fn is_form(body: &[u8], full_url: &str) -> bool {
    !full_url.contains("bodySHA256=") && !body.starts_with(b"{")
}

/// The form parameters as Twilio signs them: decoded, sorted by name then value, each distinct
/// `(name, value)` once (the SDKs' `sorted(set(values))`).
fn canonical_params(body: &[u8]) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    params.sort();
    params.dedup();
    params
}

/// The URL as given, and with its default port added or removed: Twilio's SDKs accept either,
/// since Twilio signs some requests with `:443`/`:80` and some without.
fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_owned()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return out;
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let default = match scheme {
        "https" => "443",
        "http" => "80",
        _ => return out,
    };
    match authority.rsplit_once(':') {
        Some((host, port)) if port == default => out.push(format!("{scheme}://{host}{path}")),
        Some(_) => {}
        None => out.push(format!("{scheme}://{authority}:{default}{path}")),
    }
    out
}

fn keyed(secret: &Secret, full_url: &str, params: Option<&[(String, String)]>) -> HmacSha1 {
    let mut mac = HmacSha1::new_from_slice(secret.expose().as_bytes()).expect("any key length");
    mac.update(full_url.as_bytes());
    for (k, v) in params.unwrap_or_default() {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    mac
}

/// The `X-Twilio-Signature` for a request to `full_url` with `body`. Used by the CLI and tests.
pub fn sign(secret: &Secret, full_url: &str, body: &[u8]) -> String {
    let params = is_form(body, full_url).then(|| canonical_params(body));
    base64::engine::general_purpose::STANDARD.encode(
        keyed(secret, full_url, params.as_deref())
            .finalize()
            .into_bytes(),
    )
}

impl Scheme for Twilio {
    fn verify_at(
        &self,
        req: &WebhookRequest<'_>,
        source: &SourceConfig,
        _now_s: i64,
    ) -> Result<Verified, VerifyError> {
        let value = single_header(req.headers, SIGNATURE_HEADER)?;
        let sig: [u8; 20] = base64_signature(value, SIGNATURE_HEADER)?;
        let url = full_url(source.url.as_deref().unwrap_or_default(), req.query);
        let form = is_form(req.body, &url);
        let params = form.then(|| canonical_params(req.body));
        let urls = url_variants(source.url.as_deref().unwrap_or_default());
        let matched = urls.iter().any(|u| {
            let signed_url = full_url(u, req.query);
            source.secrets.iter().any(|s| {
                keyed(s, &signed_url, params.as_deref())
                    .verify_slice(&sig)
                    .is_ok()
            })
        });
        if !matched {
            shadow(source, VerifyError::SignatureMismatch)?;
        }
        if !form {
            // JSON body: the signed URL carries the body's digest.
            let want = form_urlencoded::parse(req.query.as_bytes())
                .find(|(k, _)| k == "bodySHA256")
                .map(|(_, v)| v.into_owned());
            let got = hex::encode(Sha256::digest(req.body));
            if want.as_deref() != Some(got.as_str()) {
                shadow(source, VerifyError::SignatureMismatch)?;
            }
        }
        // What was signed identifies the delivery: the canonical parameters (a re-encoded body
        // with the same parameters is the same delivery), or the body bound by bodySHA256.
        let dedupe = match &params {
            Some(p) => {
                let flat: Vec<&[u8]> = p
                    .iter()
                    .flat_map(|(k, v)| [k.as_bytes(), v.as_bytes()])
                    .collect();
                Dedupe::Digest(super::digest_of(&flat))
            }
            None => Dedupe::BodyDigest,
        };
        // Read from the sorted parameters, so that their order in the body (not signed) cannot
        // change the id or the type.
        let sorted;
        let fields = match &params {
            Some(p) => p.as_slice(),
            None => {
                sorted = canonical_params(req.body);
                sorted.as_slice()
            }
        };
        let mut sid = None;
        let mut kind = None;
        let mut status = None;
        for (k, v) in fields {
            match k.as_str() {
                "MessageSid" | "SmsSid" if sid.is_none() => {
                    sid = Some(v.as_str());
                    kind = Some("message");
                }
                "CallSid" => {
                    sid = Some(v.as_str());
                    kind = Some("call");
                }
                "MessageStatus" | "SmsStatus" | "CallStatus" if status.is_none() => {
                    status = Some(v.as_str())
                }
                _ => {}
            }
        }
        let token = optional_header(req.headers, IDEMPOTENCY_HEADER)?;
        let id = token.or(sid).ok_or(VerifyError::NoEventId(
            "no I-Twilio-Idempotency-Token, MessageSid or CallSid",
        ))?;
        let kind = match (kind, status) {
            (Some(k), Some(s)) => format!("{k}.{}", s.to_ascii_lowercase()),
            (Some(k), None) => k.to_owned(),
            (None, _) => "twilio".to_owned(),
        };
        let headers = token
            .map(|t| vec![(IDEMPOTENCY_HEADER, t.to_owned())])
            .unwrap_or_default();
        Ok(Verified {
            event_id: event_id(id)?,
            event_type: event_type(&kind)?,
            occurred_at_ms: None,
            dedupe,
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

    const TOKEN: &str = "12345";
    // Twilio's documented example ("Validating Signatures from Twilio"): this URL, these
    // parameters and auth token 12345 give 0/KCTR6DLpKmkAf8muzZqo1nDgQ= in their docs.
    const URL: &str = "https://mycompany.com/myapp.php";
    const QUERY: &str = "foo=1&bar=2";
    const BODY: &str = "CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1234&From=%2B12349013030&To=%2B18005551212";
    const DOC_SIG: &str = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";
    /// `BODY` posted to `URL` without a query string.
    const DOC_SIG_NO_QUERY: &str = "Ypq+VXPywuZieSsITFOUZpGRDLQ=";

    fn check(sig: &str, query: &str, body: &str, url: &str) -> Result<Verified, VerifyError> {
        let mut h = HeaderMap::new();
        h.insert(SIGNATURE_HEADER, sig.parse().unwrap());
        let mut src = SourceConfig::new("twilio", Provider::Twilio, vec![Secret::new(TOKEN)]);
        src.url = Some(url.to_owned());
        Twilio.verify_at(
            &WebhookRequest {
                headers: &h,
                body: body.as_bytes(),
                query,
            },
            &src,
            0,
        )
    }

    #[test]
    fn accepts_twilios_documented_example() {
        let v = check(DOC_SIG, QUERY, BODY, URL).unwrap();
        assert_eq!(
            (v.event_id.as_str(), v.event_type.as_str()),
            ("CA1234567890ABCDE", "call")
        );
        assert_eq!(
            sign(&Secret::new(TOKEN), &full_url(URL, QUERY), BODY.as_bytes()),
            DOC_SIG
        );
    }

    #[test]
    fn the_url_query_and_every_parameter_are_signed() {
        assert_eq!(
            check(DOC_SIG, "foo=1&bar=3", BODY, URL),
            Err(VerifyError::SignatureMismatch)
        );
        assert_eq!(
            check(DOC_SIG, QUERY, BODY, "https://mycompany.com/Prod/myapp.php"),
            Err(VerifyError::SignatureMismatch)
        );
        assert_eq!(
            check(DOC_SIG, QUERY, &BODY.replace("1234&", "1235&"), URL),
            Err(VerifyError::SignatureMismatch)
        );
        // Parameter order in the body does not matter (they are sorted).
        let reordered = "To=%2B18005551212&From=%2B12349013030&Digits=1234&Caller=%2B12349013030&CallSid=CA1234567890ABCDE";
        assert!(check(DOC_SIG, QUERY, reordered, URL).is_ok());
    }

    #[test]
    fn json_bodies_are_bound_by_body_sha256_in_the_signed_url() {
        let body = r#"{"MessageSid":"SM1","MessageStatus":"delivered"}"#;
        let query = format!(
            "bodySHA256={}",
            hex::encode(Sha256::digest(body.as_bytes()))
        );
        let sig = sign(&Secret::new(TOKEN), &full_url(URL, &query), body.as_bytes());
        let mut h = HeaderMap::new();
        h.insert(SIGNATURE_HEADER, sig.parse().unwrap());
        h.insert(IDEMPOTENCY_HEADER, "tok-1".parse().unwrap());
        let mut src = SourceConfig::new("twilio", Provider::Twilio, vec![Secret::new(TOKEN)]);
        src.url = Some(URL.to_owned());
        let ok = Twilio
            .verify_at(
                &WebhookRequest {
                    headers: &h,
                    body: body.as_bytes(),
                    query: &query,
                },
                &src,
                0,
            )
            .unwrap();
        assert_eq!(ok.event_id, "tok-1");
        let tampered = body.replace("delivered", "failed");
        let r = Twilio.verify_at(
            &WebhookRequest {
                headers: &h,
                body: tampered.as_bytes(),
                query: &query,
            },
            &src,
            0,
        );
        assert_eq!(r, Err(VerifyError::SignatureMismatch));
    }

    #[test]
    fn a_reencoded_body_is_the_same_delivery() {
        let mut src = SourceConfig::new("twilio", Provider::Twilio, vec![Secret::new(TOKEN)]);
        src.url = Some(URL.to_owned());
        let keys: Vec<String> = [
            BODY.to_owned(),
            format!("{BODY}&"),
            BODY.replace("CA12", "CA%312"),
        ]
        .iter()
        .map(|b| {
            let mut h = HeaderMap::new();
            h.insert(SIGNATURE_HEADER, DOC_SIG.parse().unwrap());
            let v = Twilio
                .verify_at(
                    &WebhookRequest {
                        headers: &h,
                        body: b.as_bytes(),
                        query: QUERY,
                    },
                    &src,
                    0,
                )
                .unwrap();
            crate::Envelope::new(&src, v, b.as_bytes(), None, 0).idempotency_key
        })
        .collect();
        assert_eq!(keys[0], keys[1]);
        assert_eq!(keys[0], keys[2]);
        assert!(keys[0].starts_with("twilio#sha256:"));
        // A different delivery (another parameter value) has another key.
        let other = BODY.replace("1234&", "1235&");
        let sig = sign(&Secret::new(TOKEN), &full_url(URL, QUERY), other.as_bytes());
        let mut h = HeaderMap::new();
        h.insert(SIGNATURE_HEADER, sig.parse().unwrap());
        let v = Twilio
            .verify_at(
                &WebhookRequest {
                    headers: &h,
                    body: other.as_bytes(),
                    query: QUERY,
                },
                &src,
                0,
            )
            .unwrap();
        assert_ne!(
            crate::Envelope::new(&src, v, other.as_bytes(), None, 0).idempotency_key,
            keys[0]
        );
    }

    #[test]
    fn default_port_variants_and_repeated_parameters_verify_as_the_sdk_does() {
        let with_port = sign(
            &Secret::new(TOKEN),
            &full_url("https://mycompany.com:443/myapp.php", QUERY),
            BODY.as_bytes(),
        );
        assert!(check(&with_port, QUERY, BODY, URL).is_ok());
        assert!(check(DOC_SIG, QUERY, BODY, "https://mycompany.com:443/myapp.php").is_ok());
        let repeated = format!("{BODY}&To=%2B18005551212");
        assert!(check(DOC_SIG, QUERY, &repeated, URL).is_ok());
        assert!(check(DOC_SIG, QUERY, &format!("{BODY}&To=%2B18005551213"), URL).is_err());
    }

    #[test]
    fn malformed_signatures_fail_closed() {
        for bad in [
            "!!!",
            "abc",
            &DOC_SIG[..10],
            "aOf0iykvAxVrslfoomm2TOsvnRvwJsL4IJ+mfhVaId8=",
        ] {
            assert!(
                matches!(
                    check(bad, QUERY, BODY, URL),
                    Err(VerifyError::MalformedHeader(_))
                ),
                "{bad}"
            );
        }
    }

    /// Verifies `body` posted to `URL` (no query) with `sig` and `headers`; returns the result
    /// and the key its envelope gets.
    fn verify_form(sig: &str, body: &str, headers: &[(&'static str, &str)]) -> (Verified, String) {
        let mut h = HeaderMap::new();
        h.insert(SIGNATURE_HEADER, sig.parse().unwrap());
        for (k, v) in headers {
            h.insert(*k, v.parse().unwrap());
        }
        let mut src = SourceConfig::new("twilio", Provider::Twilio, vec![Secret::new(TOKEN)]);
        src.url = Some(URL.to_owned());
        let v = Twilio
            .verify_at(
                &WebhookRequest {
                    headers: &h,
                    body: body.as_bytes(),
                    query: "",
                },
                &src,
                0,
            )
            .unwrap();
        let key = crate::Envelope::new(&src, v.clone(), body.as_bytes(), None, 0).idempotency_key;
        (v, key)
    }

    #[test]
    fn reencoded_parameters_keep_the_key_the_id_and_the_type() {
        // Body "Hello world+1", From/To "+1…": one set of parameters, encoded five ways.
        let encodings = [
            "Body=Hello%20world%2B1&From=%2B15551230000&MessageSid=SM123&MessageStatus=delivered&To=%2B15559870000",
            "Body=Hello+world%2B1&From=%2B15551230000&MessageSid=SM123&MessageStatus=delivered&To=%2B15559870000",
            "Body=Hello+world%2b1&From=%2b15551230000&MessageSid=SM123&MessageStatus=delivered&To=%2b15559870000",
            "To=%2B15559870000&MessageStatus=delivered&MessageSid=SM123&From=%2B15551230000&Body=Hello%20world%2B1",
            "Body=Hello%20w%6Frld%2B1&From=%2B15551230000&MessageSid=%53M123&MessageStatus=delivered&To=%2B15559870000&",
        ];
        let sig = sign(&Secret::new(TOKEN), URL, encodings[0].as_bytes());
        let (first, want) = verify_form(&sig, encodings[0], &[]);
        assert_eq!(
            (first.event_id.as_str(), first.event_type.as_str()),
            ("SM123", "message.delivered")
        );
        assert!(matches!(first.dedupe, Dedupe::Digest(_)));
        for body in &encodings[1..] {
            let (v, key) = verify_form(&sig, body, &[]);
            assert_eq!(key, want, "{body}");
            assert_eq!(v.dedupe, first.dedupe, "{body}");
            assert_eq!(
                (&v.event_id, &v.event_type),
                (&first.event_id, &first.event_type)
            );
        }
        // A value that differs once decoded is another delivery (and another signature).
        let plus = encodings[0].replace("Hello%20world", "Hello%2Bworld");
        assert_ne!(sign(&Secret::new(TOKEN), URL, plus.as_bytes()), sig);
    }

    #[test]
    fn the_order_of_repeated_parameters_cannot_change_the_type() {
        let a = "MessageSid=SM1&MessageStatus=delivered&MessageStatus=failed";
        let b = "MessageStatus=failed&MessageStatus=delivered&MessageSid=SM1";
        let sig = sign(&Secret::new(TOKEN), URL, a.as_bytes());
        assert_eq!(sign(&Secret::new(TOKEN), URL, b.as_bytes()), sig);
        let (va, ka) = verify_form(&sig, a, &[]);
        let (vb, kb) = verify_form(&sig, b, &[]);
        assert_eq!(ka, kb);
        assert_eq!(va, vb);
    }

    #[test]
    fn twilio_replay_under_other_headers_keeps_the_key() {
        let (first, want) = verify_form(DOC_SIG_NO_QUERY, BODY, &[]);
        for (name, value) in [
            (IDEMPOTENCY_HEADER, "another-token"),
            ("x-home-region", "ie1"),
            ("user-agent", "TwilioProxy/forged"),
            ("content-type", "text/plain"),
        ] {
            let (v, key) = verify_form(DOC_SIG_NO_QUERY, BODY, &[(name, value)]);
            assert_eq!(v.dedupe, first.dedupe, "{name}");
            assert_eq!(key, want, "{name}: {value}");
        }
        // What the token may change: the displayed id.
        let (v, _) = verify_form(DOC_SIG_NO_QUERY, BODY, &[(IDEMPOTENCY_HEADER, "tok-2")]);
        assert_eq!(v.event_id, "tok-2");
        // The query string is signed: a replay under another one does not verify (see
        // the_url_query_and_every_parameter_are_signed).
    }
}
