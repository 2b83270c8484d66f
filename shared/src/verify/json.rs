//! Reading a few top-level fields of a JSON body without building a tree.
//!
//! serde's derive skips unknown fields with `IgnoredAny`, which scans past them without
//! allocating; string fields borrow from the body unless they contain escapes.

use std::borrow::Cow;

use serde::Deserialize;

/// Fields Stripe, Paddle and most JSON providers put at the top level.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Head<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub id: Option<Cow<'a, str>>,
    #[serde(rename = "type", borrow, default, deserialize_with = "borrowed")]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub action: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub created: Option<Created<'a>>,
}

/// A string field borrowed from the body when it has no escapes (serde borrows a bare
/// `Cow<str>` field, but not one inside an `Option`); copied only when JSON escapes must be
/// decoded. Anything but a string is an error, as it is for a plain `Cow<str>` field.
fn borrowed<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct Text;
    impl<'de> serde::de::Visitor<'de> for Text {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
    }
    d.deserialize_str(Text)
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Created<'a> {
    Seconds(i64),
    Text(#[serde(borrow)] Cow<'a, str>),
    Other(serde::de::IgnoredAny),
}

pub(crate) fn rfc3339_to_ms(text: &str) -> Option<i64> {
    let d = humantime::parse_rfc3339_weak(text)
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    i64::try_from(d.as_millis())
        .ok()
        .filter(|ms| *ms <= MAX_EVENT_TIME_MS)
}

/// Latest time an event may claim, epoch ms (9999-12-31T23:59:59.999Z).
pub(crate) const MAX_EVENT_TIME_MS: i64 = 253_402_300_799_999;

impl Head<'_> {
    /// `created` as epoch ms, when present, valid and before year 10000.
    pub fn created_ms(&self) -> Option<i64> {
        let ms = match self.created.as_ref()? {
            Created::Seconds(s) => s.checked_mul(1000)?,
            Created::Text(t) => rfc3339_to_ms(t)?,
            Created::Other(_) => return None,
        };
        (0..=MAX_EVENT_TIME_MS).contains(&ms).then_some(ms)
    }
}

/// Parses the top-level fields of `body`, or `None` if it is not a JSON object of that shape.
pub(crate) fn head(body: &[u8]) -> Option<Head<'_>> {
    serde_json::from_slice(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_top_level_fields_and_skips_the_rest() {
        let h =
            head(br#"{"data":{"id":"inner","type":"x"},"id":"evt_1","type":"a.b","created":17}"#)
                .unwrap();
        assert_eq!(h.id.as_deref(), Some("evt_1"));
        assert_eq!(h.kind.as_deref(), Some("a.b"));
        assert_eq!(h.created_ms(), Some(17_000));
        assert!(h.action.is_none());
        assert!(
            matches!(h.id, Some(Cow::Borrowed("evt_1"))),
            "no copy without escapes"
        );
    }

    #[test]
    fn escaped_strings_are_decoded_and_non_strings_are_errors() {
        let h = head(br#"{"id":"evt_\u0031","type":"a\"b"}"#).unwrap();
        assert_eq!(h.id.as_deref(), Some("evt_1"));
        assert_eq!(h.kind.as_deref(), Some("a\"b"));
        assert!(head(br#"{"id":17}"#).is_none());
        assert!(head(br#"{"id":null}"#).is_none());
    }

    #[test]
    fn created_may_be_seconds_or_rfc3339_and_is_bounded() {
        let t = |body: &str| head(body.as_bytes()).unwrap().created_ms();
        assert_eq!(
            t(r#"{"created":"2024-05-01T12:00:00.123Z"}"#),
            Some(1_714_564_800_123)
        );
        assert_eq!(t(r#"{"created":1700000000}"#), Some(1_700_000_000_000));
        assert_eq!(t(r#"{"created":99999999999999}"#), None);
        assert_eq!(t(r#"{"created":-5}"#), None);
        assert_eq!(t(r#"{"created":"yesterday"}"#), None);
        assert_eq!(t(r#"{"created":{"a":1}}"#), None);
    }

    #[test]
    fn not_an_object_is_none() {
        assert!(head(b"payload=%7B%7D").is_none());
        assert!(head(b"[1,2]").is_none());
        assert!(head(br#"{"id":5}"#).is_none());
    }
}
