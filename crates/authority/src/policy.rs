//! Endpoint policies: what an endpoint may issue. Pure checks, no I/O.

mod subject;

use std::collections::BTreeMap;
use std::net::IpAddr;

use certgate_core::{DnsName, Identifier, IpNet, KeyKind, Name, ParsedCsr, Protocol};
use certgate_signer::Usage;
use serde::{Deserialize, Serialize};
use time::Duration;

use crate::AuthorityError;

pub use subject::SubjectAttributeType;
pub(crate) use subject::UB_COMMON_NAME;

/// A certificate profile: what the certificate is for and how long it may live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Its name (`tls-server`, …).
    pub name: Name,
    /// Key usage and EKU.
    pub usage: Usage,
    /// Validity when the request names none.
    pub default_validity: Duration,
    /// The longest validity allowed.
    pub max_validity: Duration,
}

/// Which keys an endpoint certifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyPolicy {
    /// Allow RSA keys.
    pub allow_rsa: bool,
    /// The smallest RSA modulus, in bits (never below 2048).
    pub min_rsa_bits: u32,
    /// Allow ECDSA P-256.
    pub allow_p256: bool,
    /// Allow ECDSA P-384.
    pub allow_p384: bool,
    /// Allow ECDSA P-521.
    pub allow_p521: bool,
    /// Allow Ed25519.
    pub allow_ed25519: bool,
    /// Accept CSRs signed with SHA-1 (old SCEP devices).
    pub allow_sha1_csr_signature: bool,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        Self {
            allow_rsa: true,
            min_rsa_bits: 2048,
            allow_p256: true,
            allow_p384: true,
            allow_p521: true,
            allow_ed25519: true,
            allow_sha1_csr_signature: false,
        }
    }
}

impl KeyPolicy {
    pub(crate) fn check(&self, csr: &ParsedCsr) -> Result<(), AuthorityError> {
        let key = csr.key();
        let refuse = |reason| Err(AuthorityError::KeyNotAllowed { key, reason });
        match key {
            KeyKind::Rsa(_) if !self.allow_rsa => return refuse("this endpoint does not accept RSA keys"),
            KeyKind::Rsa(bits) if bits < self.min_rsa_bits.max(2048) => {
                return refuse("the RSA modulus is shorter than this endpoint's minimum");
            }
            KeyKind::Rsa(bits) if bits > 8192 => return refuse("RSA keys over 8192 bits are not accepted"),
            KeyKind::EcP256 if !self.allow_p256 => return refuse("this endpoint does not accept P-256 keys"),
            KeyKind::EcP384 if !self.allow_p384 => return refuse("this endpoint does not accept P-384 keys"),
            KeyKind::EcP521 if !self.allow_p521 => return refuse("this endpoint does not accept P-521 keys"),
            KeyKind::Ed25519 if !self.allow_ed25519 => return refuse("this endpoint does not accept Ed25519 keys"),
            _ => {}
        }
        if csr.signature_uses_sha1() && !self.allow_sha1_csr_signature {
            return Err(AuthorityError::WeakSignatureAlgorithm);
        }
        Ok(())
    }
}

/// Which names an endpoint certifies: every name that ends up in a certificate, each
/// subjectAltName and each subject attribute, passes it. An empty allow-list allows everything
/// of its kind; deny-lists win over allow-lists.
///
/// Email and URI names are refused unless allowed; IP addresses unless allowed or, when
/// `allow_ip` is unset, on ACME endpoints (each is proven by http-01 or tls-alpn-01, RFC 8738)
/// and the daemon's own admin endpoint (names the operator configured). EST and SCEP requesters
/// merely claim the names in their CSRs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NamePolicy {
    /// DNS names must equal or lie below one of these (empty: any). Also applies to URI hosts,
    /// to common names that are DNS names, and to email domains unless
    /// `allowed_email_domains` is set.
    pub allowed_dns_suffixes: Vec<String>,
    /// DNS names equal to or below one of these are refused; so are email domains and URI
    /// hosts there.
    pub denied_dns_suffixes: Vec<String>,
    /// Allow `*.` names.
    pub allow_wildcards: bool,
    /// IP addresses must lie in one of these (empty: any).
    pub allowed_ip_ranges: Vec<IpNet>,
    /// IP addresses in one of these are refused.
    pub denied_ip_ranges: Vec<IpNet>,
    /// Allow IP address names (SANs, and common names or URI hosts that are addresses).
    /// Unset: allowed on ACME and admin endpoints, refused on EST and SCEP endpoints.
    pub allow_ip: Option<bool>,
    /// Allow email addresses (rfc822Name SANs, emailAddress subject attributes and common names
    /// that are email addresses). Off by default.
    pub allow_email: bool,
    /// Email domains must equal or lie below one of these (empty: `allowed_dns_suffixes`
    /// applies to them).
    pub allowed_email_domains: Vec<String>,
    /// Allow URI names (e.g. SPIFFE IDs); their host passes the DNS name or IP rules, and a URI
    /// without a host is refused when `allowed_dns_suffixes` is set. Off by default.
    pub allow_uri: bool,
    /// The most subjectAltNames in one certificate.
    pub max_names: usize,
    /// The subject attribute types tls-client and device certificates may carry (`CN`, `O`,
    /// `OU`, `C`, `ST`, `L`, `street`, `postalCode`, `serialNumber`, `title`, `SN`, `GN`,
    /// `DC`, `UID`, `emailAddress`). Unset: `CN`, `O`, `OU`, `C`, `ST`, `L`, `serialNumber`
    /// and `emailAddress` (which still needs `allow_email`). TLS server certificates carry at
    /// most a common name copied from a subjectAltName, whatever this says.
    pub subject_attributes: Option<Vec<SubjectAttributeType>>,
}

impl Default for NamePolicy {
    fn default() -> Self {
        Self {
            allowed_dns_suffixes: Vec::new(),
            denied_dns_suffixes: Vec::new(),
            allow_wildcards: true,
            allowed_ip_ranges: Vec::new(),
            denied_ip_ranges: Vec::new(),
            allow_ip: None,
            allow_email: false,
            allowed_email_domains: Vec::new(),
            allow_uri: false,
            max_names: 100,
            subject_attributes: None,
        }
    }
}

impl NamePolicy {
    /// Checks the subjectAltNames of a certificate for an endpoint of `protocol`.
    pub(crate) fn check(&self, identifiers: &[Identifier], protocol: Protocol) -> Result<(), AuthorityError> {
        if identifiers.len() > self.max_names {
            return Err(AuthorityError::TooManyNames {
                count: identifiers.len(),
                max: self.max_names,
            });
        }
        for identifier in identifiers {
            self.check_one(identifier, protocol)?;
        }
        Ok(())
    }

    /// Whether IP address names are allowed on an endpoint of `protocol`.
    fn ip_allowed(&self, protocol: Protocol) -> bool {
        self.allow_ip
            .unwrap_or(matches!(protocol, Protocol::Acme | Protocol::Admin))
    }

    pub(crate) fn check_one(&self, identifier: &Identifier, protocol: Protocol) -> Result<(), AuthorityError> {
        let refuse = |reason: String| {
            Err(AuthorityError::NameNotAllowed {
                identifier: identifier.clone(),
                reason,
            })
        };
        let outcome = match identifier {
            Identifier::Dns(name) => {
                if name.is_wildcard() && !self.allow_wildcards {
                    return Err(AuthorityError::WildcardNotAllowed(identifier.clone()));
                }
                self.dns_refusal(name)
            }
            Identifier::Ip(ip) => self.ip_refusal(*ip, protocol),
            Identifier::Email(address) => self.email_refusal(address),
            Identifier::Uri(uri) => self.uri_refusal(uri, protocol),
        };
        match outcome {
            Some(reason) => refuse(reason),
            None => Ok(()),
        }
    }

    /// Why the DNS suffix rules refuse `name`, if they do.
    fn dns_refusal(&self, name: &DnsName) -> Option<String> {
        // A wildcard also covers denied names one label below its base: `*.example.com` is
        // valid for `secret.example.com`. Refuse it when its base lies above any denied entry.
        let covers_denied = |denied: &String| {
            name.is_within(denied)
                || (name.is_wildcard()
                    && DnsName::new(denied).is_ok_and(|d| d.is_within(name.base()) && d.base() != name.base()))
        };
        if let Some(denied) = self.denied_dns_suffixes.iter().find(|d| covers_denied(d)) {
            return Some(format!("names under {denied} are denied"));
        }
        if !self.allowed_dns_suffixes.is_empty() && !self.allowed_dns_suffixes.iter().any(|s| name.is_within(s)) {
            return Some(format!(
                "names must be under one of: {}",
                self.allowed_dns_suffixes.join(", ")
            ));
        }
        None
    }

    fn ip_refusal(&self, ip: IpAddr, protocol: Protocol) -> Option<String> {
        if !self.ip_allowed(protocol) {
            return Some(format!(
                "this endpoint does not issue for IP addresses{}",
                if self.allow_ip.is_none() {
                    " (allow_ip is off by default on EST and SCEP endpoints)"
                } else {
                    ""
                }
            ));
        }
        if let Some(denied) = self.denied_ip_ranges.iter().find(|n| n.contains(ip)) {
            return Some(format!("addresses in {denied} are denied"));
        }
        if !self.allowed_ip_ranges.is_empty() && !self.allowed_ip_ranges.iter().any(|n| n.contains(ip)) {
            let ranges: Vec<String> = self.allowed_ip_ranges.iter().map(ToString::to_string).collect();
            return Some(format!("addresses must be in one of: {}", ranges.join(", ")));
        }
        None
    }

    fn email_refusal(&self, address: &str) -> Option<String> {
        if !self.allow_email {
            return Some("this endpoint does not issue for email addresses (allow_email is off)".into());
        }
        // `Identifier::email` checked the domain; a domain that does not parse is refused.
        let Some(domain) = address.rsplit_once('@').and_then(|(_, d)| DnsName::new(d).ok()) else {
            return Some("the email address has no valid domain".into());
        };
        if let Some(denied) = self.denied_dns_suffixes.iter().find(|d| domain.is_within(d)) {
            return Some(format!("addresses at {denied} are denied"));
        }
        let allowed = if self.allowed_email_domains.is_empty() {
            &self.allowed_dns_suffixes
        } else {
            &self.allowed_email_domains
        };
        if !allowed.is_empty() && !allowed.iter().any(|s| domain.is_within(s)) {
            return Some(format!("email addresses must be at one of: {}", allowed.join(", ")));
        }
        None
    }

    fn uri_refusal(&self, uri: &str, protocol: Protocol) -> Option<String> {
        if !self.allow_uri {
            return Some("this endpoint does not issue for URIs (allow_uri is off)".into());
        }
        match uri_host(uri) {
            UriHost::None if !self.allowed_dns_suffixes.is_empty() => Some(format!(
                "URIs must name a host under one of: {}",
                self.allowed_dns_suffixes.join(", ")
            )),
            UriHost::None => None,
            UriHost::Invalid => Some("the URI's host is not a DNS name or an IP address".into()),
            UriHost::Name(name) if name.is_wildcard() => Some("the URI's host is a wildcard".into()),
            UriHost::Name(name) => self.dns_refusal(&name).map(|why| format!("its host: {why}")),
            UriHost::Ip(ip) => self.ip_refusal(ip, protocol).map(|why| format!("its host: {why}")),
        }
    }
}

/// The host of a URI with an authority (`scheme://[userinfo@]host[:port]/…`).
#[derive(Debug, PartialEq, Eq)]
enum UriHost {
    /// No authority, or an empty host (`urn:…`, `file:///…`).
    None,
    Name(DnsName),
    Ip(IpAddr),
    /// A host that is neither a DNS name certgate accepts nor an IP address.
    Invalid,
}

fn uri_host(uri: &str) -> UriHost {
    let Some(rest) = uri.split_once(':').and_then(|(_, rest)| rest.strip_prefix("//")) else {
        return UriHost::None;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    if let Some(bracketed) = host_port.strip_prefix('[') {
        return match bracketed
            .split_once(']')
            .map(|(v6, _)| v6.parse::<std::net::Ipv6Addr>())
        {
            Some(Ok(v6)) => UriHost::Ip(IpAddr::V6(v6)),
            _ => UriHost::Invalid,
        };
    }
    let host = host_port.split(':').next().unwrap_or_default();
    if host.is_empty() {
        return UriHost::None;
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return UriHost::Ip(ip);
    }
    DnsName::new(host).map_or(UriHost::Invalid, UriHost::Name)
}

/// One endpoint: a protocol front end with its issuer, profiles and policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPolicy {
    /// The protocol it serves.
    pub protocol: Protocol,
    /// Its name, unique within the protocol.
    pub name: Name,
    /// The issuer that signs for it.
    pub issuer: Name,
    /// The profiles it offers; the first is the default.
    pub profiles: Vec<Name>,
    /// Key policy.
    pub keys: KeyPolicy,
    /// Name policy.
    pub names: NamePolicy,
    /// Labels copied to every certificate it issues (team, cost centre, …).
    pub owner_labels: BTreeMap<String, String>,
}

impl Profile {
    /// The built-in profiles: `tls-server` (90 days, at most 398, the CA/B Forum limit),
    /// `tls-client` (90 days, at most 398) and `device` (365 days, at most 825).
    pub fn builtin() -> Vec<Self> {
        let profile = |name: &str, usage, default_days, max_days| Profile {
            name: Name::new(name).unwrap_or_else(|_| unreachable!("built-in names are valid")),
            usage,
            default_validity: Duration::days(default_days),
            max_validity: Duration::days(max_days),
        };
        vec![
            profile("tls-server", Usage::TlsServer, 90, 398),
            profile("tls-client", Usage::TlsClient, 90, 398),
            profile("device", Usage::Device, 365, 825),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(s: &str) -> Identifier {
        Identifier::Dns(DnsName::new(s).unwrap())
    }

    fn ip(s: &str) -> Identifier {
        Identifier::Ip(s.parse().unwrap())
    }

    fn email(s: &str) -> Identifier {
        Identifier::email(s).unwrap()
    }

    fn uri(s: &str) -> Identifier {
        Identifier::uri(s).unwrap()
    }

    #[test]
    fn name_policy_cases() {
        let policy = NamePolicy {
            allowed_dns_suffixes: vec!["example.com".into(), "internal".into()],
            denied_dns_suffixes: vec!["secret.example.com".into()],
            allow_wildcards: false,
            allowed_ip_ranges: vec![IpNet::parse("10.0.0.0/8").unwrap()],
            denied_ip_ranges: vec![IpNet::parse("10.9.0.0/16").unwrap()],
            max_names: 3,
            ..NamePolicy::default()
        };
        let cases: Vec<(&str, Vec<Identifier>, bool)> = vec![
            ("good_allowed_suffix", vec![dns("a.example.com")], true),
            ("good_other_suffix", vec![dns("db.internal")], true),
            ("good_ip_in_range", vec![ip("10.1.2.3")], true),
            ("bad_outside_suffixes", vec![dns("evil.example.net")], false),
            ("bad_lookalike_suffix", vec![dns("badexample.com")], false),
            ("bad_denied_wins", vec![dns("x.secret.example.com")], false),
            ("bad_denied_exact", vec![dns("secret.example.com")], false),
            ("bad_wildcard", vec![dns("*.example.com")], false),
            ("bad_ip_outside", vec![ip("192.168.1.1")], false),
            ("bad_ip_denied", vec![ip("10.9.1.1")], false),
            ("bad_email", vec![email("a@example.com")], false),
            (
                "bad_too_many",
                vec![
                    dns("a.example.com"),
                    dns("b.example.com"),
                    dns("c.example.com"),
                    dns("d.example.com"),
                ],
                false,
            ),
        ];
        for (case, ids, ok) in cases {
            assert_eq!(policy.check(&ids, Protocol::Acme).is_ok(), ok, "case {case}");
        }
    }

    /// Each kind of subjectAltName against the defaults and the options that open it.
    #[test]
    fn san_kinds() {
        let default = NamePolicy::default();
        let ip_on = NamePolicy {
            allow_ip: Some(true),
            ..NamePolicy::default()
        };
        let ip_off = NamePolicy {
            allow_ip: Some(false),
            ..NamePolicy::default()
        };
        let email_any = NamePolicy {
            allow_email: true,
            ..NamePolicy::default()
        };
        let email_domains = NamePolicy {
            allow_email: true,
            allowed_email_domains: vec!["example.com".into()],
            denied_dns_suffixes: vec!["hr.example.com".into()],
            ..NamePolicy::default()
        };
        let email_by_dns = NamePolicy {
            allow_email: true,
            allowed_dns_suffixes: vec!["corp.example".into()],
            ..NamePolicy::default()
        };
        let uri_any = NamePolicy {
            allow_uri: true,
            ..NamePolicy::default()
        };
        let uri_suffixes = NamePolicy {
            allow_uri: true,
            allowed_dns_suffixes: vec!["example.org".into()],
            denied_dns_suffixes: vec!["secret.example.org".into()],
            ..NamePolicy::default()
        };
        use Protocol::{Acme, Admin, Est, Scep};
        let cases: Vec<(&str, &NamePolicy, Protocol, Identifier, bool)> = vec![
            ("good_ip_on_acme_by_default", &default, Acme, ip("192.0.2.1"), true),
            ("good_ip_on_admin_by_default", &default, Admin, ip("127.0.0.1"), true),
            ("bad_ip_on_est_by_default", &default, Est, ip("192.0.2.1"), false),
            ("bad_ip_on_scep_by_default", &default, Scep, ip("192.0.2.1"), false),
            ("good_ip_on_scep_when_allowed", &ip_on, Scep, ip("192.0.2.1"), true),
            ("bad_ip_on_acme_when_disallowed", &ip_off, Acme, ip("192.0.2.1"), false),
            (
                "good_dns_on_scep_by_default",
                &default,
                Scep,
                dns("device.example.com"),
                true,
            ),
            (
                "bad_email_san_by_default",
                &default,
                Est,
                email("jane@example.com"),
                false,
            ),
            (
                "bad_email_san_by_default_on_acme",
                &default,
                Acme,
                email("jane@example.com"),
                false,
            ),
            (
                "good_email_san_when_allowed",
                &email_any,
                Est,
                email("jane@example.net"),
                true,
            ),
            (
                "good_email_san_when_allowed_and_in_domain",
                &email_domains,
                Est,
                email("jane@eng.example.com"),
                true,
            ),
            (
                "bad_email_san_outside_domain",
                &email_domains,
                Est,
                email("jane@example.net"),
                false,
            ),
            (
                "bad_email_san_denied_domain",
                &email_domains,
                Est,
                email("jane@hr.example.com"),
                false,
            ),
            (
                "good_email_san_under_dns_suffix",
                &email_by_dns,
                Est,
                email("jane@corp.example"),
                true,
            ),
            (
                "bad_email_san_outside_dns_suffix",
                &email_by_dns,
                Est,
                email("jane@gmail.com"),
                false,
            ),
            (
                "bad_uri_san_by_default",
                &default,
                Est,
                uri("spiffe://example.org/ns/web"),
                false,
            ),
            (
                "good_uri_san_when_allowed",
                &uri_any,
                Est,
                uri("spiffe://example.org/ns/web"),
                true,
            ),
            (
                "good_uri_without_host_when_unrestricted",
                &uri_any,
                Est,
                uri("urn:uuid:1234"),
                true,
            ),
            (
                "good_uri_host_in_suffix",
                &uri_suffixes,
                Est,
                uri("https://app.example.org:8443/x"),
                true,
            ),
            (
                "bad_uri_host_outside_suffix",
                &uri_suffixes,
                Est,
                uri("https://example.net/x"),
                false,
            ),
            (
                "bad_uri_host_denied",
                &uri_suffixes,
                Est,
                uri("spiffe://secret.example.org/ns/db"),
                false,
            ),
            (
                "bad_uri_userinfo_does_not_hide_host",
                &uri_suffixes,
                Est,
                uri("https://app.example.org@evil.example.net/"),
                false,
            ),
            (
                "bad_uri_without_host_when_restricted",
                &uri_suffixes,
                Est,
                uri("urn:uuid:1234"),
                false,
            ),
            (
                "bad_uri_invalid_host",
                &uri_any,
                Est,
                uri("spiffe://trust_domain/ns"),
                false,
            ),
            (
                "bad_uri_wildcard_host",
                &uri_any,
                Est,
                uri("https://*.example.org/"),
                false,
            ),
            (
                "bad_uri_ip_host_on_scep_by_default",
                &uri_any,
                Scep,
                uri("https://10.0.0.1/x"),
                false,
            ),
            (
                "good_uri_ip_host_on_acme",
                &uri_any,
                Acme,
                uri("https://[2001:db8::1]:443/x"),
                true,
            ),
        ];
        for (case, policy, protocol, identifier, ok) in cases {
            let got = policy.check(std::slice::from_ref(&identifier), protocol);
            assert_eq!(got.is_ok(), ok, "case {case}: {got:?}");
            if let Err(e) = got {
                assert!(matches!(e, AuthorityError::NameNotAllowed { .. }), "case {case}: {e:?}");
            }
        }
    }

    #[test]
    fn uri_hosts() {
        let name = |s: &str| UriHost::Name(DnsName::new(s).unwrap());
        let cases = [
            ("plain", "https://a.example/x", name("a.example")),
            ("port", "https://a.example:8443", name("a.example")),
            ("userinfo", "https://u:p@a.example/", name("a.example")),
            ("ipv4", "http://10.0.0.1:80/", UriHost::Ip("10.0.0.1".parse().unwrap())),
            ("ipv6", "http://[::1]:80/", UriHost::Ip("::1".parse().unwrap())),
            ("query_right_after_host", "https://a.example?x=@b", name("a.example")),
            ("no_authority", "urn:uuid:1", UriHost::None),
            ("empty_host", "file:///etc/hosts", UriHost::None),
            ("underscore", "spiffe://my_domain/x", UriHost::Invalid),
            ("bad_ipv6", "http://[nope]/", UriHost::Invalid),
        ];
        for (case, uri, want) in cases {
            assert_eq!(uri_host(uri), want, "case {case}");
        }
    }

    #[test]
    fn wildcards_cannot_cover_denied_names() {
        let policy = NamePolicy {
            denied_dns_suffixes: vec!["secret.example.com".into()],
            ..NamePolicy::default()
        };
        let cases = [
            ("bad_parent_wildcard_covers_denied", "*.example.com", false),
            ("bad_wildcard_below_denied", "*.secret.example.com", false),
            ("bad_tld_wildcard", "*.com", false),
            ("good_sibling_wildcard", "*.public.example.com", true),
            ("good_unrelated_wildcard", "*.example.org", true),
            ("good_sibling_name", "www.example.com", true),
        ];
        for (case, name, ok) in cases {
            assert_eq!(policy.check(&[dns(name)], Protocol::Acme).is_ok(), ok, "case {case}");
        }
    }
}
