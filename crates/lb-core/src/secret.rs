//! A secret string (API key, master key) that never prints.

use std::fmt;
use std::sync::Arc;

/// An API key or other credential.
///
/// `Debug` and `Display` print `***`; there is no `Serialize`. The value is
/// reachable only through [`Secret::expose`], so every use is explicit.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Self(value.into())
    }

    /// The secret value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints() {
        let s = Secret::new("sk-very-secret");
        assert!(!format!("{s:?}").contains("sk-very"));
        assert!(!format!("{s}").contains("sk-very"));
        assert!(!format!("{:#?}", Some(&s)).contains("sk-very"));
        assert_eq!(s.expose(), "sk-very-secret");
    }
}
