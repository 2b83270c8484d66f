//! Reading a few top-level fields of a JSON body without building a tree.
//!
//! serde's derive skips unknown fields with `IgnoredAny`, which scans past them without
//! allocating; string fields borrow from the body unless they contain escapes.

use std::borrow::Cow;

use serde::Deserialize;

/// Fields Stripe, Paddle and most JSON providers put at the top level.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Head<'a> {
    #[serde(borrow, default)]
    pub id: Option<Cow<'a, str>>,
    #[serde(rename = "type", borrow, default)]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub action: Option<Cow<'a, str>>,
    #[serde(default)]
    pub created: Option<i64>,
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
        assert_eq!(h.created, Some(17));
        assert!(h.action.is_none());
    }

    #[test]
    fn not_an_object_is_none() {
        assert!(head(b"payload=%7B%7D").is_none());
        assert!(head(b"[1,2]").is_none());
        assert!(head(br#"{"id":5}"#).is_none());
    }
}
