//! What a certificate certifies, decided from the CSR and the profile: the names for its
//! subjectAltName and the attributes of its subject. The endpoint's name policy then checks
//! both (`NamePolicy::check`, `NamePolicy::check_subject`); nothing here refuses.

use certgate_core::{DnsName, Identifier, ParsedCsr, SubjectAttribute};
use certgate_signer::Usage;

use crate::policy::UB_COMMON_NAME;

/// The names to put in subjectAltName: the CSR's SANs, deduplicated in order; for TLS
/// servers also a common name that is a DNS name or IP address (certbot-era CSRs and many
/// devices still put the host only in the CN).
pub(crate) fn identifiers_to_certify(csr: &ParsedCsr, usage: Usage) -> Vec<Identifier> {
    let mut identifiers: Vec<Identifier> = Vec::new();
    let mut push = |id: Identifier| {
        if !identifiers.contains(&id) {
            identifiers.push(id);
        }
    };
    for san in csr.sans() {
        push(san.clone());
    }
    if usage == Usage::TlsServer
        && let Some(cn) = csr.common_name().and_then(identifier_from_common_name)
    {
        push(cn);
    }
    identifiers
}

/// The name a common name stands for, when it is a DNS name (with a dot, or `localhost`) or
/// an IP address.
pub(crate) fn identifier_from_common_name(cn: &str) -> Option<Identifier> {
    if let Ok(ip) = cn.parse() {
        return Some(Identifier::Ip(ip));
    }
    DnsName::new(cn)
        .ok()
        .filter(|n| n.as_str().contains('.') || n.as_str() == "localhost")
        .map(Identifier::Dns)
}

/// TLS server certificates carry only a common name that is one of their SANs (the CA/B
/// Forum rule: nothing unvalidated in the subject) and fits RFC 5280's 64 characters (the SAN
/// carries a longer name alone); client and device certificates keep the CSR's subject, since
/// it identifies the device, and the name policy checks every attribute of it
/// (`NamePolicy::check_subject`).
pub(crate) fn subject_to_certify(csr: &ParsedCsr, usage: Usage, identifiers: &[Identifier]) -> Vec<SubjectAttribute> {
    match usage {
        Usage::TlsServer => csr
            .common_name_attribute()
            .filter(|cn| cn.value.chars().count() <= UB_COMMON_NAME)
            .filter(|cn| identifier_from_common_name(&cn.value).is_some_and(|id| identifiers.contains(&id)))
            .cloned()
            .into_iter()
            .collect(),
        Usage::TlsClient | Usage::Device => csr.subject().to_vec(),
    }
}

pub(crate) fn subject_text(subject: &[SubjectAttribute]) -> String {
    subject
        .iter()
        .map(|a| {
            let key = match a.oid.to_string().as_str() {
                "2.5.4.3" => "CN".to_owned(),
                "2.5.4.6" => "C".to_owned(),
                "2.5.4.7" => "L".to_owned(),
                "2.5.4.8" => "ST".to_owned(),
                "2.5.4.10" => "O".to_owned(),
                "2.5.4.11" => "OU".to_owned(),
                other => other.to_owned(),
            };
            format!("{key}={}", a.value)
        })
        .collect::<Vec<_>>()
        .join(",")
}
