//! What a certificate certifies, decided from the CSR and the profile: the names for its
//! subjectAltName and the attributes of its subject. The endpoint's policies then check
//! them; nothing here refuses.

use certgate_core::{DnsName, Identifier, ParsedCsr, SubjectAttribute};
use certgate_signer::Usage;

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

fn identifier_from_common_name(cn: &str) -> Option<Identifier> {
    if let Ok(ip) = cn.parse() {
        return Some(Identifier::Ip(ip));
    }
    DnsName::new(cn)
        .ok()
        .filter(|n| n.as_str().contains('.') || n.as_str() == "localhost")
        .map(Identifier::Dns)
}

/// TLS server certificates carry only a common name that is one of their SANs (the CA/B
/// Forum rule: nothing unvalidated in the subject); client and device certificates keep
/// the CSR's subject, since it identifies the device.
pub(crate) fn subject_to_certify(csr: &ParsedCsr, usage: Usage, identifiers: &[Identifier]) -> Vec<SubjectAttribute> {
    match usage {
        Usage::TlsServer => csr
            .common_name_attribute()
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
