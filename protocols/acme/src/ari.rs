//! ACME Renewal Information (RFC 9773): certificate identifiers and suggested windows.

use base64::Engine;
use certgate_core::Serial;
use certgate_store::CertificateRecord;
use der::Decode;
use time::{Duration, OffsetDateTime};
use x509_cert::Certificate;

use crate::jws::B64URL;
use crate::problem::{Problem, ProblemType};

/// How long clients should wait before asking again (RFC 9773 4.3: Retry-After).
pub const RETRY_AFTER_SECONDS: u64 = 6 * 60 * 60;

/// A parsed certificate identifier: `base64url(AKI keyIdentifier) "." base64url(serial)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertId {
    /// The authority key identifier.
    pub key_identifier: Vec<u8>,
    /// The serial.
    pub serial: Serial,
}

impl CertId {
    /// Parses an identifier as clients send it in the renewalInfo path and in `replaces`.
    pub fn parse(text: &str) -> Result<Self, Problem> {
        let bad = |why: &str| {
            Problem::new(
                ProblemType::Malformed,
                format!("invalid ARI certificate identifier: {why}"),
            )
        };
        let (aki, serial) = text.split_once('.').ok_or_else(|| bad("no \".\""))?;
        let key_identifier = B64URL
            .decode(aki)
            .map_err(|_| bad("the key identifier is not base64url"))?;
        let serial_bytes = B64URL.decode(serial).map_err(|_| bad("the serial is not base64url"))?;
        if key_identifier.is_empty() {
            return Err(bad("the key identifier is empty"));
        }
        let serial =
            Serial::from_der_integer(&serial_bytes).map_err(|_| bad("the serial is not a valid serial number"))?;
        Ok(Self { key_identifier, serial })
    }
}

/// The keyIdentifier of a certificate's authority key identifier extension.
pub fn authority_key_identifier(der: &[u8]) -> Option<Vec<u8>> {
    let certificate = Certificate::from_der(der).ok()?;
    let extensions = certificate.tbs_certificate().extensions()?;
    let aki = extensions
        .iter()
        .find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_AUTHORITY_KEY_IDENTIFIER)?;
    let aki = x509_cert::ext::pkix::AuthorityKeyIdentifier::from_der(aki.extn_value.as_bytes()).ok()?;
    aki.key_identifier.map(|k| k.as_bytes().to_vec())
}

/// The identifier of a stored certificate.
pub fn cert_id(record: &CertificateRecord) -> Option<String> {
    let aki = authority_key_identifier(&record.der)?;
    Some(format!(
        "{}.{}",
        B64URL.encode(aki),
        B64URL.encode(record.serial.as_bytes())
    ))
}

/// The window in which the client should renew: the middle of the last third of the
/// certificate's life (from two thirds to five sixths), so that a failed renewal still has
/// time to be retried; for a revoked certificate, a window that has already begun.
pub fn suggested_window(record: &CertificateRecord, now: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
    if record.revocation.is_some() {
        return (now - Duration::hours(1), now);
    }
    let lifetime = record.not_after - record.not_before;
    (
        record.not_before + lifetime * 2 / 3,
        record.not_before + lifetime * 5 / 6,
    )
}
