//! Renewal by certificate: the one rule every protocol's renewal goes through (SCEP
//! RenewalReq and PKCSReq signed by an issued certificate, EST simplereenroll), and the
//! inventory standing of a certificate a client presents (EST client-certificate
//! authentication asks it too).
//!
//! A renewal authenticated by the old certificate alone may only repeat what that certificate
//! already says: it must be a certificate of this inventory (byte for byte), issued through
//! the same protocol and endpoint (or one the renewing endpoint explicitly accepts), not
//! revoked, inside its validity, and the new certificate must name exactly the same subject
//! and subjectAltNames. Anything else is a new enrollment, with the endpoint's own
//! authentication and approval.

use std::collections::HashSet;
use std::fmt;

use certgate_core::{Identifier, Name, ParsedCsr, Protocol, Serial};
use certgate_store::{CertificateRecord, StoreError};
use der::asn1::ObjectIdentifier;
use der::{Decode, Tag, Tagged};
use serde::{Deserialize, Serialize};
use x509_cert::Certificate;

use crate::certified::{identifiers_to_certify, subject_to_certify};
use crate::{Authority, AuthorityError};

/// A protocol endpoint, written `protocol:name` (`est:factory`, `scep:default`): in
/// configuration, the endpoints whose certificates another endpoint renews.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EndpointRef {
    /// The protocol.
    pub protocol: Protocol,
    /// The endpoint's name.
    pub name: Name,
}

/// The error for text that is not `protocol:name`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid endpoint {0:?}: expected <protocol>:<name>, e.g. est:factory")]
pub struct EndpointRefError(pub String);

impl std::str::FromStr for EndpointRef {
    type Err = EndpointRefError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || EndpointRefError(s.to_owned());
        let (protocol, name) = s.split_once(':').ok_or_else(bad)?;
        Ok(Self {
            protocol: protocol.parse().map_err(|_| bad())?,
            name: Name::new(name).map_err(|_| bad())?,
        })
    }
}

impl TryFrom<String> for EndpointRef {
    type Error = EndpointRefError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<EndpointRef> for String {
    fn from(value: EndpointRef) -> Self {
        value.to_string()
    }
}

impl fmt::Display for EndpointRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.protocol, self.name)
    }
}

/// What the inventory says about a certificate a client presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Not a certificate of this inventory (unknown serial, or another certificate under it:
    /// a foreign CA's, or one the inventory has forgotten after its retention).
    Unknown,
    /// Issued here, not revoked, inside its validity.
    Good(Box<CertificateRecord>),
    /// Issued here and revoked.
    Revoked(Box<CertificateRecord>),
    /// Issued here, not revoked, but expired (or not yet valid).
    OutsideValidity(Box<CertificateRecord>),
}

/// Why a renewal by certificate was refused. The request may still enroll as new, with the
/// endpoint's own authentication and approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RenewalRefusal {
    /// The certificate is not one certgate issued (or no longer in its inventory).
    NotIssuedHere,
    /// It was issued through another protocol or endpoint, and this endpoint does not accept
    /// renewals of that one's certificates.
    OtherEndpoint,
    /// It is revoked.
    Revoked,
    /// It is expired or not yet valid.
    OutsideValidity,
    /// The new subject differs from the certificate's.
    SubjectChanged,
    /// The new subjectAltNames differ from the certificate's (added, removed or changed).
    NamesChanged,
}

impl fmt::Display for RenewalRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotIssuedHere => "the certificate was not issued by this server",
            Self::OtherEndpoint => "the certificate was issued through another endpoint",
            Self::Revoked => "the certificate is revoked",
            Self::OutsideValidity => "the certificate is expired or not yet valid",
            Self::SubjectChanged => "the CSR's subject differs from the certificate being renewed",
            Self::NamesChanged => "the CSR's subjectAltNames differ from the certificate being renewed",
        })
    }
}

/// One renewal to check.
#[derive(Debug, Clone, Copy)]
pub struct RenewalCheck<'a> {
    /// The protocol of the renewing endpoint.
    pub protocol: Protocol,
    /// The renewing endpoint.
    pub endpoint: &'a Name,
    /// The certificate being renewed, DER, as the client presented it (SCEP: the message's
    /// signer certificate; EST: the TLS client certificate).
    pub presented: &'a [u8],
    /// The parsed, signature-checked CSR of the renewal.
    pub csr: &'a ParsedCsr,
    /// The profile the renewal asks for (`None`: the endpoint's default), whose usage decides
    /// which subject and names the new certificate would carry.
    pub profile: Option<&'a Name>,
    /// Other endpoints whose certificates this endpoint renews too (configured explicitly;
    /// empty by default).
    pub also_from: &'a [EndpointRef],
}

/// A renewal that passed [`Authority::check_renewal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewalOf {
    /// The certificate being renewed.
    pub old: CertificateRecord,
}

impl RenewalOf {
    /// The serial the new certificate records as `replaces`.
    pub fn replaces(&self) -> &Serial {
        &self.old.serial
    }
}

impl Authority {
    /// The inventory's standing of `presented` (a DER certificate a client presented). Only a
    /// byte-identical inventory record counts; validity is judged at the authority's clock.
    pub async fn standing(&self, presented: &[u8]) -> Result<Standing, AuthorityError> {
        let Ok(cert) = Certificate::from_der(presented) else {
            return Ok(Standing::Unknown);
        };
        let Ok(serial) = Serial::from_der_integer(cert.tbs_certificate().serial_number().as_bytes()) else {
            return Ok(Standing::Unknown);
        };
        let record = match self.store().certificate(&serial).await {
            Ok(record) if record.der == presented => Box::new(record),
            Ok(_) | Err(StoreError::NotFound) => return Ok(Standing::Unknown),
            Err(e) => return Err(e.into()),
        };
        let now = self.now();
        Ok(if record.revocation.is_some() {
            Standing::Revoked(record)
        } else if now < record.not_before || now >= record.not_after {
            Standing::OutsideValidity(record)
        } else {
            Standing::Good(record)
        })
    }

    /// Whether `check.csr` may be issued as a renewal of `check.presented` on the renewing
    /// endpoint without any other authentication or approval. Refusals are
    /// [`AuthorityError::RenewalRefused`]; nothing is written either way.
    pub async fn check_renewal(&self, check: &RenewalCheck<'_>) -> Result<RenewalOf, AuthorityError> {
        let usage = self.usage(check.protocol, check.endpoint, check.profile)?;
        let refuse = |why| Err(AuthorityError::RenewalRefused(why));
        let (old, standing) = match self.standing(check.presented).await? {
            Standing::Unknown => return refuse(RenewalRefusal::NotIssuedHere),
            Standing::Good(old) => (old, None),
            Standing::Revoked(old) => (old, Some(RenewalRefusal::Revoked)),
            Standing::OutsideValidity(old) => (old, Some(RenewalRefusal::OutsideValidity)),
        };
        let same_endpoint = old.protocol == check.protocol && old.endpoint == *check.endpoint;
        let accepted = check
            .also_from
            .iter()
            .any(|e| e.protocol == old.protocol && e.name == old.endpoint);
        if !same_endpoint && !accepted {
            return refuse(RenewalRefusal::OtherEndpoint);
        }
        if let Some(why) = standing {
            return refuse(why);
        }
        // Compared as the authority would certify them, so a renewal reproduces the names of
        // the certificate it replaces and nothing else.
        let csr = check.csr;
        if !csr.unsupported_sans().is_empty() {
            return refuse(RenewalRefusal::NamesChanged);
        }
        let identifiers = identifiers_to_certify(csr, usage);
        let wanted: HashSet<&Identifier> = identifiers.iter().collect();
        let had: HashSet<&Identifier> = old.identifiers.iter().collect();
        if wanted != had {
            return refuse(RenewalRefusal::NamesChanged);
        }
        let certified = subject_to_certify(csr, usage, &identifiers);
        let subject: Vec<(ObjectIdentifier, &str)> = certified.iter().map(|a| (a.oid, a.value.as_str())).collect();
        let old_subject = certificate_subject(&old.der)?;
        let old_subject: Vec<(ObjectIdentifier, &str)> =
            old_subject.iter().map(|(oid, value)| (*oid, value.as_str())).collect();
        if subject != old_subject {
            return refuse(RenewalRefusal::SubjectChanged);
        }
        Ok(RenewalOf { old: *old })
    }
}

/// A certificate's subject attributes in order, their values decoded as text the way
/// `ParsedCsr` decodes a CSR's (a value of another string type compares unequal).
fn certificate_subject(der: &[u8]) -> Result<Vec<(ObjectIdentifier, String)>, AuthorityError> {
    // The record's DER was signed by certgate: it parses.
    let cert = Certificate::from_der(der)
        .map_err(|e| AuthorityError::Config(format!("an inventory certificate does not parse: {e}")))?;
    Ok(cert
        .tbs_certificate()
        .subject()
        .iter()
        .map(|atv| (atv.oid, attribute_text(atv.value.tag(), atv.value.value())))
        .collect())
}

fn attribute_text(tag: Tag, bytes: &[u8]) -> String {
    match tag {
        Tag::BmpString => {
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .filter_map(|pair| <[u8; 2]>::try_from(pair).ok().map(u16::from_be_bytes))
                .collect();
            String::from_utf16_lossy(&units)
        }
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_refs() {
        let cases = [
            ("good_est", "est:factory", Some((Protocol::Est, "factory"))),
            ("good_scep", "scep:default", Some((Protocol::Scep, "default"))),
            ("bad_no_protocol", "factory", None),
            ("bad_protocol", "cmp:factory", None),
            ("bad_name", "est:", None),
            ("bad_name_chars", "est:a b", None),
        ];
        for (case, text, want) in cases {
            let got = text.parse::<EndpointRef>().ok();
            assert_eq!(got.as_ref().map(|e| (e.protocol, e.name.as_str())), want, "case {case}");
            if let Some(parsed) = got {
                assert_eq!(parsed.to_string(), text, "case {case}: round trip");
            }
        }
    }
}
