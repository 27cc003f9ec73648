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

/// `url` without what may be a credential: the user and password before
/// `@`, the query and the fragment (for logs, errors and `Debug` output).
pub fn url_without_credentials(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let rest = match rest[..authority_end].rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    format!("{scheme}{rest}")
}

#[cfg(test)]
mod url_tests {
    use super::url_without_credentials as strip;

    #[test]
    fn user_password_query_and_fragment_are_left_out() {
        assert_eq!(
            strip("https://user:pw@host.example:8443/v1?api-key=k#x"),
            "https://host.example:8443/v1"
        );
        assert_eq!(strip("http://127.0.0.1:9/v1"), "http://127.0.0.1:9/v1");
        assert_eq!(
            strip("https://h/path@not-userinfo"),
            "https://h/path@not-userinfo"
        );
        assert_eq!(strip("host:1?key=k"), "host:1");
    }
}
