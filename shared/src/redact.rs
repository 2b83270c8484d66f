//! Error text that never quotes input.
//!
//! serde_json's messages quote the offending value (`invalid type: string "whsec_…"`), and its
//! quoting escapes characters, so stripping quotes afterwards is not reliable. These helpers
//! build the message from the error's category and position instead.

/// Describes a JSON error by kind and position only: `missing field `name` at line 1 column 9`,
/// `a value has the wrong type or form at line 1 column 40`, `not valid JSON at …`. Field
/// names appear only for missing fields (they come from the expected shape, not the input).
pub fn json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let msg = e.to_string();
    let what = match msg
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        Some(field)
            if field
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            format!("missing field `{field}`")
        }
        _ => match e.classify() {
            Category::Syntax => "not valid JSON".to_owned(),
            Category::Eof => "unexpected end of input".to_owned(),
            Category::Io => "could not be read".to_owned(),
            Category::Data if msg.starts_with("unknown field") => "unknown field".to_owned(),
            Category::Data => "a value has the wrong type or form".to_owned(),
        },
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Shape {
        name: String,
        n: Option<u64>,
    }

    fn err(json: &str) -> String {
        json_error(&serde_json::from_str::<Shape>(json).unwrap_err())
    }

    #[test]
    fn never_quotes_values_even_with_escapes_or_numbers() {
        for (json, secret) in [
            (r#"{"name":5,"n":1}"#, "5"),
            (r#"{"name":"a","n":"pa\"TOPSECRET"}"#, "TOPSECRET"),
            (r#"{"name":"a","n":8675309123456.5}"#, "8675309"),
            (r#"{"name":"a","whsec_KEY":1}"#, "whsec_KEY"),
            (r#"{"name":"a" "TOPSECRET"#, "TOPSECRET"),
        ] {
            let m = err(json);
            assert!(!m.contains(secret), "{m}");
            assert!(m.contains("at line 1 column"), "{m}");
        }
        assert_eq!(err(r#"{"n":1}"#), "missing field `name` at line 1 column 7");
    }
}
