//! Webhook signing secrets.
//!
//! A [`Secret`] never prints: its `Debug` and `Display` are redacted, it is not `Serialize`, and
//! no error type in this crate carries one. Only the verifiers read its bytes.

use serde::{Deserialize, Deserializer};

/// A signing secret as the provider shows it (e.g. Stripe's `whsec_…`, GitHub's free text).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<str>);

impl Secret {
    /// Wraps a secret string.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into().into_boxed_str())
    }

    /// The secret's text, for a verifier to key its MAC with.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_secret() {
        let s = Secret::new("whsec_FAKE_test_secret_0001");
        assert!(!format!("{s:?}").contains("FAKE"));
        assert!(!format!("{s}").contains("FAKE"));
        assert!(!format!("{:?}", vec![s.clone()]).contains("whsec"));
        assert_eq!(s.expose(), "whsec_FAKE_test_secret_0001");
    }
}
