//! Endpoint policies: what an endpoint may issue. Pure checks, no I/O.

use std::collections::BTreeMap;

use certgate_core::{DnsName, Identifier, IpNet, KeyKind, Name, ParsedCsr, Protocol};
use certgate_signer::Usage;
use serde::{Deserialize, Serialize};
use time::Duration;

use crate::AuthorityError;

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

/// Which names an endpoint certifies. An empty allow-list allows everything of its kind;
/// deny-lists win over allow-lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NamePolicy {
    /// DNS names must equal or lie below one of these (empty: any).
    pub allowed_dns_suffixes: Vec<String>,
    /// DNS names equal to or below one of these are refused.
    pub denied_dns_suffixes: Vec<String>,
    /// Allow `*.` names.
    pub allow_wildcards: bool,
    /// IP addresses must lie in one of these (empty: any).
    pub allowed_ip_ranges: Vec<IpNet>,
    /// IP addresses in one of these are refused.
    pub denied_ip_ranges: Vec<IpNet>,
    /// Allow IP address names at all.
    pub allow_ip: bool,
    /// Allow email (rfc822Name) names.
    pub allow_email: bool,
    /// Allow URI names (e.g. SPIFFE IDs).
    pub allow_uri: bool,
    /// The most names in one certificate.
    pub max_names: usize,
}

impl Default for NamePolicy {
    fn default() -> Self {
        Self {
            allowed_dns_suffixes: Vec::new(),
            denied_dns_suffixes: Vec::new(),
            allow_wildcards: true,
            allowed_ip_ranges: Vec::new(),
            denied_ip_ranges: Vec::new(),
            allow_ip: true,
            allow_email: true,
            allow_uri: true,
            max_names: 100,
        }
    }
}

impl NamePolicy {
    pub(crate) fn check(&self, identifiers: &[Identifier]) -> Result<(), AuthorityError> {
        if identifiers.len() > self.max_names {
            return Err(AuthorityError::TooManyNames {
                count: identifiers.len(),
                max: self.max_names,
            });
        }
        for identifier in identifiers {
            self.check_one(identifier)?;
        }
        Ok(())
    }

    fn check_one(&self, identifier: &Identifier) -> Result<(), AuthorityError> {
        let refuse = |reason: String| {
            Err(AuthorityError::NameNotAllowed {
                identifier: identifier.clone(),
                reason,
            })
        };
        match identifier {
            Identifier::Dns(name) => {
                if name.is_wildcard() && !self.allow_wildcards {
                    return Err(AuthorityError::WildcardNotAllowed(identifier.clone()));
                }
                // A wildcard also covers denied names one label below its base: `*.example.com`
                // is valid for `secret.example.com`. Refuse it when its base lies above any
                // denied entry.
                let covers_denied = |denied: &String| {
                    name.is_within(denied)
                        || (name.is_wildcard()
                            && DnsName::new(denied).is_ok_and(|d| d.is_within(name.base()) && d.base() != name.base()))
                };
                if let Some(denied) = self.denied_dns_suffixes.iter().find(|d| covers_denied(d)) {
                    return refuse(format!("names under {denied} are denied"));
                }
                if !self.allowed_dns_suffixes.is_empty() && !self.allowed_dns_suffixes.iter().any(|s| name.is_within(s))
                {
                    return refuse(format!(
                        "names must be under one of: {}",
                        self.allowed_dns_suffixes.join(", ")
                    ));
                }
            }
            Identifier::Ip(ip) => {
                if !self.allow_ip {
                    return refuse("this endpoint does not issue for IP addresses".into());
                }
                if let Some(denied) = self.denied_ip_ranges.iter().find(|n| n.contains(*ip)) {
                    return refuse(format!("addresses in {denied} are denied"));
                }
                if !self.allowed_ip_ranges.is_empty() && !self.allowed_ip_ranges.iter().any(|n| n.contains(*ip)) {
                    let ranges: Vec<String> = self.allowed_ip_ranges.iter().map(ToString::to_string).collect();
                    return refuse(format!("addresses must be in one of: {}", ranges.join(", ")));
                }
            }
            Identifier::Email(_) if !self.allow_email => {
                return refuse("this endpoint does not issue for email addresses".into());
            }
            Identifier::Uri(_) if !self.allow_uri => return refuse("this endpoint does not issue for URIs".into()),
            Identifier::Email(_) | Identifier::Uri(_) => {}
        }
        Ok(())
    }
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
    use certgate_core::DnsName;

    fn dns(s: &str) -> Identifier {
        Identifier::Dns(DnsName::new(s).unwrap())
    }

    #[test]
    fn name_policy_cases() {
        let policy = NamePolicy {
            allowed_dns_suffixes: vec!["example.com".into(), "internal".into()],
            denied_dns_suffixes: vec!["secret.example.com".into()],
            allow_wildcards: false,
            allowed_ip_ranges: vec![IpNet::parse("10.0.0.0/8").unwrap()],
            denied_ip_ranges: vec![IpNet::parse("10.9.0.0/16").unwrap()],
            allow_email: false,
            max_names: 3,
            ..NamePolicy::default()
        };
        let cases: Vec<(&str, Vec<Identifier>, bool)> = vec![
            ("good_allowed_suffix", vec![dns("a.example.com")], true),
            ("good_other_suffix", vec![dns("db.internal")], true),
            (
                "good_ip_in_range",
                vec![Identifier::Ip("10.1.2.3".parse().unwrap())],
                true,
            ),
            ("bad_outside_suffixes", vec![dns("evil.example.net")], false),
            ("bad_lookalike_suffix", vec![dns("badexample.com")], false),
            ("bad_denied_wins", vec![dns("x.secret.example.com")], false),
            ("bad_denied_exact", vec![dns("secret.example.com")], false),
            ("bad_wildcard", vec![dns("*.example.com")], false),
            (
                "bad_ip_outside",
                vec![Identifier::Ip("192.168.1.1".parse().unwrap())],
                false,
            ),
            (
                "bad_ip_denied",
                vec![Identifier::Ip("10.9.1.1".parse().unwrap())],
                false,
            ),
            ("bad_email", vec![Identifier::email("a@example.com").unwrap()], false),
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
            assert_eq!(policy.check(&ids).is_ok(), ok, "case {case}");
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
            assert_eq!(policy.check(&[dns(name)]).is_ok(), ok, "case {case}");
        }
    }
}
