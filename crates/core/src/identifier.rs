use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The error for a name that cannot be an identifier in a certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentifierError {
    /// Not a valid DNS name (LDH labels of 1 to 63 characters, at most 253 in all, an
    /// optional `*.` as the whole leftmost label).
    #[error("{0:?} is not a valid DNS name")]
    Dns(String),
    /// Not a valid email address.
    #[error("{0:?} is not a valid email address")]
    Email(String),
    /// Not an absolute URI in ASCII.
    #[error("{0:?} is not a valid URI")]
    Uri(String),
}

/// A DNS name in canonical form: lower case, no trailing dot, optionally a wildcard.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DnsName(String);

impl DnsName {
    /// Parses and canonicalises a DNS name.
    pub fn new(name: &str) -> Result<Self, IdentifierError> {
        let err = || IdentifierError::Dns(name.to_owned());
        let lower = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        let rest = lower.strip_prefix("*.").unwrap_or(&lower);
        if lower.len() > 253 || rest.is_empty() {
            return Err(err());
        }
        for label in rest.split('.') {
            let bytes = label.as_bytes();
            let ldh = bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-');
            if bytes.is_empty()
                || bytes.len() > 63
                || !ldh
                || bytes.first() == Some(&b'-')
                || bytes.last() == Some(&b'-')
            {
                return Err(err());
            }
        }
        // A last label of digits only is an IP address written as a name (RFC 1123 2.1: TLDs
        // are alphabetic); as a dNSName it would slip past the IP address rules.
        if rest
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(err());
        }
        Ok(Self(lower))
    }

    /// Whether this is a wildcard (`*.example.com`).
    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with("*.")
    }

    /// The name without a wildcard label.
    pub fn base(&self) -> &str {
        self.0.strip_prefix("*.").unwrap_or(&self.0)
    }

    /// Whether this name equals `suffix` or lies below it (label-wise, not string-wise:
    /// `badexample.com` is not below `example.com`). A leading dot on `suffix` is ignored.
    pub fn is_within(&self, suffix: &str) -> bool {
        let suffix = suffix.trim_start_matches('.').trim_end_matches('.');
        let base = self.base();
        if suffix.is_empty() {
            return true;
        }
        base.eq_ignore_ascii_case(suffix)
            || (base.len() > suffix.len()
                && base.as_bytes()[base.len() - suffix.len() - 1] == b'.'
                && base[base.len() - suffix.len()..].eq_ignore_ascii_case(suffix))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for DnsName {
    type Error = IdentifierError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl From<DnsName> for String {
    fn from(value: DnsName) -> Self {
        value.0
    }
}

/// A name a certificate can be issued for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum Identifier {
    /// A DNS name (dNSName SAN).
    Dns(DnsName),
    /// An IP address (iPAddress SAN).
    Ip(IpAddr),
    /// An email address (rfc822Name SAN).
    Email(String),
    /// A URI (uniformResourceIdentifier SAN), e.g. a SPIFFE ID.
    Uri(String),
}

impl Identifier {
    /// Parses an email address: `local@domain`, ASCII, the domain a DNS name.
    pub fn email(address: &str) -> Result<Self, IdentifierError> {
        let err = || IdentifierError::Email(address.to_owned());
        let (local, domain) = address.rsplit_once('@').ok_or_else(err)?;
        let local_ok =
            !local.is_empty() && local.len() <= 64 && local.bytes().all(|b| b.is_ascii_graphic() && b != b'@');
        let domain = DnsName::new(domain).map_err(|_| err())?;
        if !local_ok || domain.is_wildcard() {
            return Err(err());
        }
        Ok(Self::Email(format!("{local}@{domain}")))
    }

    /// Parses an absolute URI: a scheme, a colon, and printable ASCII without spaces.
    pub fn uri(uri: &str) -> Result<Self, IdentifierError> {
        let err = || IdentifierError::Uri(uri.to_owned());
        let (scheme, rest) = uri.split_once(':').ok_or_else(err)?;
        let scheme_ok = scheme.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        if !scheme_ok || rest.is_empty() || uri.len() > 2048 || !uri.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(err());
        }
        Ok(Self::Uri(uri.to_owned()))
    }

    /// The kind, as used in logs, indexes and policy messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Dns(_) => "dns",
            Self::Ip(_) => "ip",
            Self::Email(_) => "email",
            Self::Uri(_) => "uri",
        }
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(name) => write!(f, "{name}"),
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Email(email) => f.write_str(email),
            Self::Uri(uri) => f.write_str(uri),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        let cases = [
            ("simple", "www.example.com", Some("www.example.com")),
            ("upper_and_trailing_dot", "WWW.Example.COM.", Some("www.example.com")),
            ("single_label", "localhost", Some("localhost")),
            ("wildcard", "*.example.com", Some("*.example.com")),
            ("punycode", "xn--bcher-kva.example", Some("xn--bcher-kva.example")),
            ("wildcard_inside", "a.*.example.com", None),
            ("partial_wildcard", "w*.example.com", None),
            ("bare_wildcard", "*", None),
            ("empty_label", "a..b", None),
            ("leading_hyphen", "-a.example", None),
            ("underscore", "a_b.example", None),
            ("ip_literal_as_name", "10.9.1.1", None),
            ("numeric_tld", "host.123", None),
            ("digits_inside_are_fine", "123.example.com", Some("123.example.com")),
            ("space", "a b.example", None),
            ("long_label", &format!("{}.example", "a".repeat(64)), None),
            ("empty", "", None),
        ];
        for (case, input, want) in cases {
            let got = DnsName::new(input).ok();
            assert_eq!(got.as_ref().map(DnsName::as_str), want, "case {case}");
        }
    }

    #[test]
    fn within() {
        let name = DnsName::new("a.b.example.com").unwrap();
        assert!(name.is_within("example.com"));
        assert!(name.is_within(".example.com"));
        assert!(name.is_within("a.b.example.com"));
        assert!(!name.is_within("ample.com"));
        assert!(!name.is_within("c.example.com"));
        assert!(DnsName::new("*.example.com").unwrap().is_within("example.com"));
    }

    #[test]
    fn emails_and_uris() {
        assert!(Identifier::email("ops@example.com").is_ok());
        assert!(Identifier::email("no-at-sign").is_err());
        assert!(Identifier::email("a b@example.com").is_err());
        assert!(Identifier::email("a@*.example.com").is_err());
        assert!(Identifier::uri("spiffe://example.org/ns/web").is_ok());
        assert!(Identifier::uri("no scheme").is_err());
        assert!(Identifier::uri("1http://x").is_err());
    }
}
