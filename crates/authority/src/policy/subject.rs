//! The subject half of the name policy: which attribute types a certificate's subject may
//! carry, how long each value may be (RFC 5280 Appendix A upper bounds), and the names inside
//! it (a common name that is a DNS name, IP address or email address, an emailAddress), which
//! pass the same rules as subjectAltNames.

use std::collections::HashSet;
use std::fmt;

use certgate_core::{Identifier, Protocol, SubjectAttribute};
use certgate_signer::Usage;
use serde::{Deserialize, Serialize};

use super::NamePolicy;
use crate::AuthorityError;
use crate::certified::identifier_from_common_name;

/// ub-common-name (RFC 5280 Appendix A.1), in characters.
pub(crate) const UB_COMMON_NAME: usize = 64;

/// A subject attribute type, named as OpenSSL and most tools name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SubjectAttributeType {
    /// commonName, 2.5.4.3.
    #[serde(rename = "CN")]
    CommonName,
    /// organizationName, 2.5.4.10.
    #[serde(rename = "O")]
    Organization,
    /// organizationalUnitName, 2.5.4.11.
    #[serde(rename = "OU")]
    OrganizationalUnit,
    /// countryName, 2.5.4.6: two letters (ISO 3166).
    #[serde(rename = "C")]
    Country,
    /// stateOrProvinceName, 2.5.4.8 (`S` in Microsoft's tools).
    #[serde(rename = "ST", alias = "S")]
    State,
    /// localityName, 2.5.4.7.
    #[serde(rename = "L")]
    Locality,
    /// streetAddress, 2.5.4.9.
    #[serde(rename = "street")]
    Street,
    /// postalCode, 2.5.4.17.
    #[serde(rename = "postalCode")]
    PostalCode,
    /// serialNumber, 2.5.4.5 (a device's serial number, not the certificate's).
    #[serde(rename = "serialNumber")]
    SerialNumber,
    /// title, 2.5.4.12.
    #[serde(rename = "title")]
    Title,
    /// surname, 2.5.4.4.
    #[serde(rename = "SN")]
    Surname,
    /// givenName, 2.5.4.42.
    #[serde(rename = "GN", alias = "givenName")]
    GivenName,
    /// domainComponent, 0.9.2342.19200300.100.1.25.
    #[serde(rename = "DC")]
    DomainComponent,
    /// userId, 0.9.2342.19200300.100.1.1.
    #[serde(rename = "UID")]
    UserId,
    /// emailAddress, 1.2.840.113549.1.9.1 (PKCS #9; `E` in Microsoft's tools): an email
    /// name, so it also needs `allow_email` and passes the email rules.
    #[serde(rename = "emailAddress", alias = "E")]
    EmailAddress,
}

/// Each type: its short name, its OID, and the most characters a value may have (RFC 5280
/// Appendix A.1 upper bounds; X.520 for street and postalCode, RFC 1274 for userId, a DNS
/// label for domainComponent).
const TYPES: &[(SubjectAttributeType, &str, &str, usize)] = &[
    (SubjectAttributeType::CommonName, "CN", "2.5.4.3", UB_COMMON_NAME),
    (SubjectAttributeType::Organization, "O", "2.5.4.10", 64),
    (SubjectAttributeType::OrganizationalUnit, "OU", "2.5.4.11", 64),
    (SubjectAttributeType::Country, "C", "2.5.4.6", 2),
    (SubjectAttributeType::State, "ST", "2.5.4.8", 128),
    (SubjectAttributeType::Locality, "L", "2.5.4.7", 128),
    (SubjectAttributeType::Street, "street", "2.5.4.9", 128),
    (SubjectAttributeType::PostalCode, "postalCode", "2.5.4.17", 40),
    (SubjectAttributeType::SerialNumber, "serialNumber", "2.5.4.5", 64),
    (SubjectAttributeType::Title, "title", "2.5.4.12", 64),
    (SubjectAttributeType::Surname, "SN", "2.5.4.4", 32_768),
    (SubjectAttributeType::GivenName, "GN", "2.5.4.42", 32_768),
    (
        SubjectAttributeType::DomainComponent,
        "DC",
        "0.9.2342.19200300.100.1.25",
        63,
    ),
    (SubjectAttributeType::UserId, "UID", "0.9.2342.19200300.100.1.1", 256),
    (
        SubjectAttributeType::EmailAddress,
        "emailAddress",
        "1.2.840.113549.1.9.1",
        255,
    ),
];

/// What tls-client and device certificates may carry when `subject_attributes` is unset:
/// what device enrollment clients send out of the box (micromdm's scepclient: CN, O, OU, C,
/// ST, L; EST devices add serialNumber), plus emailAddress, which `allow_email` still governs.
const DEFAULT_TYPES: &[SubjectAttributeType] = &[
    SubjectAttributeType::CommonName,
    SubjectAttributeType::Organization,
    SubjectAttributeType::OrganizationalUnit,
    SubjectAttributeType::Country,
    SubjectAttributeType::State,
    SubjectAttributeType::Locality,
    SubjectAttributeType::SerialNumber,
    SubjectAttributeType::EmailAddress,
];

impl SubjectAttributeType {
    fn entry(self) -> (&'static str, &'static str, usize) {
        TYPES
            .iter()
            .find(|(t, ..)| *t == self)
            .map(|(_, name, oid, max)| (*name, *oid, *max))
            // Every variant has a row in TYPES (tested).
            .unwrap_or(("?", "", 0))
    }

    /// The short name (`CN`, `O`, …).
    pub fn short_name(self) -> &'static str {
        self.entry().0
    }

    /// The type with this OID (dotted), if certgate knows it.
    fn from_oid(oid: &str) -> Option<Self> {
        TYPES.iter().find(|(_, _, o, _)| *o == oid).map(|(t, ..)| *t)
    }
}

impl fmt::Display for SubjectAttributeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short_name())
    }
}

impl NamePolicy {
    /// Checks the subject a certificate of `usage` would carry on an endpoint of `protocol`:
    /// every attribute of an allowed type, each type at most once (the signer cannot encode a
    /// repeated type, so a second OU would silently replace the first), each value non-empty,
    /// within its length bound and free of control characters, and every name inside it
    /// allowed as a subjectAltName would be. A common name that is not a name (`device-17`)
    /// only reaches here on tls-client and device certificates.
    pub(crate) fn check_subject(
        &self,
        subject: &[SubjectAttribute],
        usage: Usage,
        protocol: Protocol,
    ) -> Result<(), AuthorityError> {
        let allowed: &[SubjectAttributeType] = match (usage, &self.subject_attributes) {
            // A common name copied from a subjectAltName, and nothing else, by construction.
            (Usage::TlsServer, _) => &[SubjectAttributeType::CommonName],
            (_, Some(configured)) => configured,
            (_, None) => DEFAULT_TYPES,
        };
        let mut seen = HashSet::new();
        for attribute in subject {
            let oid = attribute.oid.to_string();
            let kind = SubjectAttributeType::from_oid(&oid);
            let label = kind.map_or(oid.clone(), |k| k.short_name().to_owned());
            let refuse = |reason: String| {
                Err(AuthorityError::SubjectNotAllowed {
                    attribute: label.clone(),
                    reason,
                })
            };
            let Some(kind) = kind.filter(|k| allowed.contains(k)) else {
                let names: Vec<&str> = allowed.iter().map(|k| k.short_name()).collect();
                return refuse(format!(
                    "this endpoint certifies only these subject attributes: {}",
                    names.join(", ")
                ));
            };
            if !seen.insert(kind) {
                return refuse(if kind == SubjectAttributeType::CommonName {
                    "a subject may hold only one common name".into()
                } else {
                    "it appears more than once; a certificate carries each attribute type once".into()
                });
            }
            if let Some(reason) = value_refusal(kind, &attribute.value) {
                return refuse(reason);
            }
            let name = match kind {
                SubjectAttributeType::CommonName => common_name_identifier(&attribute.value),
                SubjectAttributeType::EmailAddress => match Identifier::email(&attribute.value) {
                    Ok(email) => Some(email),
                    Err(_) => return refuse("it is not a valid email address".into()),
                },
                _ => None,
            };
            if let Some(name) = name {
                self.check_one(&name, protocol)?;
            }
        }
        Ok(())
    }
}

/// Why a value is refused: empty, longer than its type's bound, control characters, or a
/// country that is not two letters.
fn value_refusal(kind: SubjectAttributeType, value: &str) -> Option<String> {
    let (_, _, max) = kind.entry();
    let chars = value.chars().count();
    if chars == 0 {
        return Some("its value is empty".into());
    }
    if chars > max {
        return Some(format!(
            "its value has {chars} characters; RFC 5280 allows at most {max}"
        ));
    }
    if value.chars().any(char::is_control) {
        return Some("its value contains control characters".into());
    }
    if kind == SubjectAttributeType::Country && !value.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Some("it must be a two-letter ISO 3166 country code".into());
    }
    None
}

/// The name a common name stands for: a DNS name or IP address (as for subjectAltNames), or
/// an email address. Anything else (`router-7`, `Jane Doe`) names no host and is not a name the
/// DNS, IP or email rules could judge.
fn common_name_identifier(cn: &str) -> Option<Identifier> {
    identifier_from_common_name(cn).or_else(|| cn.contains('@').then(|| Identifier::email(cn).ok()).flatten())
}

#[cfg(test)]
mod tests {
    use certgate_core::ParsedCsr;
    use certgate_test_support::rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    use super::*;

    const CN: &[u64] = &[2, 5, 4, 3];
    const OU: &[u64] = &[2, 5, 4, 11];
    const SERIAL: &[u64] = &[2, 5, 4, 5];
    const UID: &[u64] = &[0, 9, 2342, 19200300, 100, 1, 1];
    const EMAIL: &[u64] = &[1, 2, 840, 113549, 1, 9, 1];

    /// The subject a CSR with these attributes parses to. A custom type with a known OID adds
    /// a second attribute of that type (rcgen keeps one value per type it knows).
    fn subject(key: &KeyPair, attributes: &[(DnType, &str)]) -> Vec<SubjectAttribute> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        for (kind, value) in attributes {
            params.distinguished_name.push(kind.clone(), *value);
        }
        let der = params.serialize_request(key).unwrap();
        ParsedCsr::from_der(der.der()).unwrap().subject().to_vec()
    }

    fn custom(oid: &[u64]) -> DnType {
        DnType::CustomDnType(oid.to_vec())
    }

    #[test]
    fn every_type_has_a_row() {
        for (kind, name, oid, _) in TYPES {
            assert_eq!(kind.short_name(), *name);
            assert_eq!(SubjectAttributeType::from_oid(oid), Some(*kind));
        }
        assert_eq!(TYPES.len(), 15);
    }

    #[test]
    fn subjects() {
        let key = KeyPair::generate().unwrap();
        let default = NamePolicy::default();
        let only_cn = NamePolicy {
            subject_attributes: Some(vec![SubjectAttributeType::CommonName]),
            ..NamePolicy::default()
        };
        let with_uid = NamePolicy {
            subject_attributes: Some(vec![SubjectAttributeType::CommonName, SubjectAttributeType::UserId]),
            ..NamePolicy::default()
        };
        let restricted = NamePolicy {
            allowed_dns_suffixes: vec!["example.com".into()],
            ..NamePolicy::default()
        };
        let email = NamePolicy {
            allow_email: true,
            allowed_email_domains: vec!["example.com".into()],
            ..NamePolicy::default()
        };
        let ip = NamePolicy {
            allow_ip: Some(true),
            ..NamePolicy::default()
        };
        let org_only = NamePolicy {
            subject_attributes: Some(vec![SubjectAttributeType::Organization]),
            ..NamePolicy::default()
        };
        let long_cn = "a".repeat(65);
        let max_cn = "a".repeat(64);
        let (device, server) = (Usage::Device, Usage::TlsServer);
        type Case<'a> = (&'a str, &'a NamePolicy, Usage, Vec<(DnType, &'a str)>, Option<&'a str>);
        let cases: Vec<Case<'_>> = vec![
            (
                "good_single_cn",
                &default,
                device,
                vec![(DnType::CommonName, "device-1")],
                None,
            ),
            ("good_empty_subject", &default, device, vec![], None),
            (
                "good_scepclient_subject",
                &default,
                device,
                vec![
                    (DnType::CommonName, "device-1"),
                    (DnType::OrganizationName, "certgate-tests"),
                    (DnType::OrganizationalUnitName, "MDM"),
                    (DnType::CountryName, "US"),
                    (DnType::StateOrProvinceName, "California"),
                    (DnType::LocalityName, "San Francisco"),
                ],
                None,
            ),
            (
                "good_serial_number",
                &default,
                device,
                vec![(custom(SERIAL), "SN-0042"), (DnType::CommonName, "factory-device")],
                None,
            ),
            (
                "good_cn_of_64",
                &default,
                device,
                vec![(DnType::CommonName, &max_cn)],
                None,
            ),
            (
                "good_client_name_with_spaces",
                &default,
                Usage::TlsClient,
                vec![(DnType::CommonName, "Jane Doe")],
                None,
            ),
            (
                "bad_two_cns",
                &default,
                device,
                vec![(DnType::CommonName, "a"), (custom(CN), "b")],
                Some("only one common name"),
            ),
            (
                "bad_two_ous",
                &default,
                device,
                vec![(DnType::OrganizationalUnitName, "a"), (custom(OU), "b")],
                Some("more than once"),
            ),
            (
                "bad_o_when_not_allowed",
                &only_cn,
                device,
                vec![(DnType::CommonName, "d"), (DnType::OrganizationName, "Acme")],
                Some("only these subject attributes: CN"),
            ),
            (
                "bad_uid_by_default",
                &default,
                device,
                vec![(custom(UID), "jdoe")],
                Some("only these subject attributes"),
            ),
            (
                "good_uid_when_configured",
                &with_uid,
                device,
                vec![(custom(UID), "jdoe")],
                None,
            ),
            (
                "bad_unknown_oid",
                &default,
                device,
                vec![(custom(&[1, 3, 6, 1, 4, 1, 99999, 1]), "x")],
                Some("only these subject attributes"),
            ),
            (
                "bad_cn_of_65",
                &default,
                device,
                vec![(DnType::CommonName, &long_cn)],
                Some("65 characters"),
            ),
            (
                "bad_country_of_three",
                &default,
                device,
                vec![(DnType::CountryName, "USA")],
                Some("at most 2"),
            ),
            (
                "bad_country_digits",
                &default,
                device,
                vec![(DnType::CountryName, "12")],
                Some("two-letter"),
            ),
            (
                "bad_empty_o",
                &default,
                device,
                vec![(DnType::OrganizationName, "")],
                Some("empty"),
            ),
            (
                "bad_control_character",
                &default,
                device,
                vec![(DnType::OrganizationName, "Acme\nAdmin: yes")],
                Some("control characters"),
            ),
            (
                "good_cn_dns_name_in_suffix",
                &restricted,
                device,
                vec![(DnType::CommonName, "router.example.com")],
                None,
            ),
            (
                "bad_cn_dns_name_outside_suffix",
                &restricted,
                device,
                vec![(DnType::CommonName, "bank.example.net")],
                Some("names must be under one of: example.com"),
            ),
            (
                "good_cn_label_with_suffixes",
                &restricted,
                device,
                vec![(DnType::CommonName, "router-7")],
                None,
            ),
            (
                "bad_cn_ip_by_default",
                &default,
                device,
                vec![(DnType::CommonName, "10.0.0.1")],
                Some("does not issue for IP addresses"),
            ),
            (
                "good_cn_ip_when_allowed",
                &ip,
                device,
                vec![(DnType::CommonName, "10.0.0.1")],
                None,
            ),
            (
                "bad_cn_email_by_default",
                &default,
                device,
                vec![(DnType::CommonName, "jane@example.com")],
                Some("email"),
            ),
            (
                "bad_email_attribute_by_default",
                &default,
                device,
                vec![(custom(EMAIL), "jane@example.com")],
                Some("email"),
            ),
            (
                "good_email_attribute_when_allowed",
                &email,
                device,
                vec![(DnType::CommonName, "Jane"), (custom(EMAIL), "jane@example.com")],
                None,
            ),
            (
                "bad_email_attribute_outside_domain",
                &email,
                device,
                vec![(custom(EMAIL), "jane@example.net")],
                Some("must be at one of: example.com"),
            ),
            (
                "bad_email_attribute_invalid",
                &email,
                device,
                vec![(custom(EMAIL), "not an address")],
                Some("not a valid email address"),
            ),
            (
                "good_server_cn_whatever_subject_attributes_say",
                &org_only,
                server,
                vec![(DnType::CommonName, "www.example.com")],
                None,
            ),
        ];
        for (case, policy, usage, attributes, refused) in cases {
            let subject = subject(&key, &attributes);
            let got = policy.check_subject(&subject, usage, Protocol::Scep);
            match (refused, got) {
                (None, Ok(())) => {}
                (Some(fragment), Err(e)) => {
                    assert!(e.to_string().contains(fragment), "case {case}: {e}");
                    assert_eq!(e.kind(), certgate_core::ErrorKind::RejectedIdentifier, "case {case}");
                }
                (want, got) => panic!("case {case}: want refusal {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn configured_types_parse_by_short_name_and_alias() {
        use serde::de::IntoDeserializer as _;
        use serde::de::value::{Error, StrDeserializer};
        let parse = |text: &str| {
            let deserializer: StrDeserializer<'_, Error> = text.into_deserializer();
            SubjectAttributeType::deserialize(deserializer).ok()
        };
        for (kind, name, ..) in TYPES {
            assert_eq!(parse(name), Some(*kind), "{name}");
        }
        let cases = [
            ("S", Some(SubjectAttributeType::State)),
            ("E", Some(SubjectAttributeType::EmailAddress)),
            ("givenName", Some(SubjectAttributeType::GivenName)),
            ("cn", None),
            ("2.5.4.3", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), want, "{text}");
        }
    }
}
