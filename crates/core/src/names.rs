use std::fmt;

use serde::{Deserialize, Serialize};

/// The error for a name that is not acceptable as an issuer, profile or endpoint name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid name {0:?}: use 1 to 64 characters from a-z, 0-9, '-' and '_', starting with a letter or digit")]
pub struct NameError(pub String);

/// A configured name: of an issuer, a profile or an endpoint. Lower-case letters, digits,
/// '-' and '_', 1 to 64 characters, so it is safe in URLs, file names and store keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl Name {
    /// Parses a name.
    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        let first_ok = name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let rest_ok = name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if first_ok && rest_ok && name.len() <= 64 {
            Ok(Self(name))
        } else {
            Err(NameError(name))
        }
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Name> for String {
    fn from(value: Name) -> Self {
        value.0
    }
}

impl std::str::FromStr for Name {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The enrollment protocol a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// RFC 8555.
    Acme,
    /// RFC 7030.
    Est,
    /// RFC 8894.
    Scep,
    /// An operator, through the CLI or the admin API (the daemon's own TLS certificate too).
    Admin,
}

impl Protocol {
    /// The lower-case name used in URLs, store keys and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Acme => "acme",
            Self::Est => "est",
            Self::Scep => "scep",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Protocol {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "acme" => Ok(Self::Acme),
            "est" => Ok(Self::Est),
            "scep" => Ok(Self::Scep),
            "admin" => Ok(Self::Admin),
            other => Err(NameError(other.to_owned())),
        }
    }
}

/// Who asked for a certificate: an ACME account URL, an EST user or client certificate, a
/// SCEP device, an operator. Free text chosen by the protocol crate, prefixed with its kind
/// (`acme-account:…`, `est-user:…`), so the inventory can group by it. At most 512 bytes, no
/// control characters, so it is safe in logs and store keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RequesterId(String);

impl RequesterId {
    /// Parses a requester id.
    pub fn new(id: impl Into<String>) -> Result<Self, NameError> {
        let id = id.into();
        if id.is_empty() || id.len() > 512 || id.chars().any(char::is_control) {
            return Err(NameError(id));
        }
        Ok(Self(id))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RequesterId {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<RequesterId> for String {
    fn from(value: RequesterId) -> Self {
        value.0
    }
}

impl fmt::Display for RequesterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let cases = [
            ("plain", "default", true),
            ("digits_and_dashes", "tls-server_2", true),
            ("empty", "", false),
            ("upper", "Default", false),
            ("slash", "a/b", false),
            ("leading_dash", "-a", false),
            ("too_long", &"a".repeat(65), false),
        ];
        for (case, input, ok) in cases {
            assert_eq!(Name::new(input).is_ok(), ok, "case {case}");
        }
    }

    #[test]
    fn requester_ids() {
        assert!(RequesterId::new("acme-account:https://x/acct/1").is_ok());
        assert!(RequesterId::new("").is_err());
        assert!(RequesterId::new("a\nb").is_err());
    }
}
