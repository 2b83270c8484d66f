//! Error text that never quotes a secret.
//!
//! serde_json's messages quote the offending value (`invalid type: string "whsec_…"`), and its
//! quoting escapes characters, so stripping quotes afterwards is not reliable. [`json_error`]
//! builds the message from the error's category and position instead.
//!
//! Messages should still show what the user typed where that is safe, such as a misspelt
//! provider or field name: [`quotable`] says when a piece of input may be quoted, and
//! [`did_you_mean`] finds the name it was probably meant to be.

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

/// Prefixes of well-known secrets and tokens: text starting with one is never quoted.
const SECRET_PREFIXES: [&str; 13] = [
    "whsec_",
    "whsk_",
    "whpk_",
    "shpss_",
    "shpat_",
    "shpca_",
    "pdl_",
    "sk_",
    "rk_",
    "xox",
    "ghp_",
    "gho_",
    "github_pat_",
];

/// `s` in double quotes (`"stripee"`), when it is safe to put in an error message; `None`
/// otherwise.
///
/// Safe means it reads as a name, not a key: 1–32 characters of `A–Z a–z 0–9 _ - . /`, not
/// starting like a well-known secret (`whsec_`, `shpss_`, `pdl_`, `sk_`, …), and, when 12
/// characters or longer, without digits (random tokens mix letters and digits; names such as
/// `tolerance_seconds` do not). For values that are never secrets by contract (a provider
/// name, a field name) that a user might still paste a secret into.
pub fn quotable(s: &str) -> Option<String> {
    let lower = s.to_ascii_lowercase();
    let safe = !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'))
        && !SECRET_PREFIXES.iter().any(|p| lower.starts_with(p))
        && (s.len() < 12 || !s.bytes().any(|b| b.is_ascii_digit()));
    safe.then(|| format!("\"{s}\""))
}

/// The one of `candidates` that `input` was probably meant to be: the closest within a small
/// edit distance (one edit for short names, up to a third of the length for long ones), or
/// one that starts with `input` (`tolerance` → `tolerance_seconds`) or that `input` starts
/// with (`secrets_list` → `secrets`). Compared case-insensitively.
pub fn did_you_mean<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let input = input.to_ascii_lowercase();
    let limit = (input.len() / 3).max(1);
    candidates
        .iter()
        .map(|c| (edit_distance(&input, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
        .or_else(|| {
            candidates.iter().copied().find(|c| {
                input.len() >= 4 && (c.starts_with(input.as_str()) || input.starts_with(*c))
            })
        })
}

/// Levenshtein distance over bytes.
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
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

    #[test]
    fn quotes_names_but_not_what_looks_like_a_secret() {
        assert_eq!(quotable("stripee").as_deref(), Some("\"stripee\""));
        assert_eq!(
            quotable("tolerance_seconds").as_deref(),
            Some("\"tolerance_seconds\"")
        );
        for secret in [
            "whsec_FAKE",
            "WHSEC_x",
            "shpss_abc",
            "pdl_ntfset_x",
            "8f14e45fceea167a5a36dedd4bea2543",
            "sekret key",
            "a\"b",
            "",
            &"x".repeat(33),
        ] {
            assert_eq!(quotable(secret), None, "{secret}");
        }
    }

    #[test]
    fn suggests_the_nearest_name() {
        let fields = ["name", "provider", "secrets", "tolerance_seconds", "url"];
        assert_eq!(did_you_mean("secret", &fields), Some("secrets"));
        assert_eq!(did_you_mean("provder", &fields), Some("provider"));
        assert_eq!(did_you_mean("Provider", &fields), Some("provider"));
        assert_eq!(
            did_you_mean("tolerance", &fields),
            Some("tolerance_seconds")
        );
        assert_eq!(did_you_mean("colour", &fields), None);
        assert_eq!(did_you_mean("ur", &fields), Some("url"));
    }
}
