use std::collections::BTreeMap;

use certgate_core::{Identifier, KeyKind, Name, Protocol, RequesterId, RevocationReason, Serial};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A serial held for a certificate being signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerialReservation {
    /// The serial.
    pub serial: Serial,
    /// The issuer that will sign.
    pub issuer: Name,
    /// The endpoint the request came through.
    pub endpoint: Name,
    /// When it was reserved.
    #[serde(with = "time::serde::rfc3339")]
    pub reserved_at: OffsetDateTime,
}

/// An issued certificate and everything certgate knows about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateRecord {
    /// Serial number.
    pub serial: Serial,
    /// The issuer that signed it.
    pub issuer: Name,
    /// The endpoint it was requested through.
    pub endpoint: Name,
    /// The protocol it was requested with.
    pub protocol: Protocol,
    /// Who requested it.
    pub requester: RequesterId,
    /// The certificate profile used.
    pub profile: Name,
    /// Owner labels (team, service, …) from the endpoint and the requester.
    pub owner_labels: BTreeMap<String, String>,
    /// Subject, RFC 4514 text.
    pub subject: String,
    /// Names in the certificate's subjectAltName.
    pub identifiers: Vec<Identifier>,
    /// The certified key's type.
    pub key: KeyKind,
    /// Validity start.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// Validity end.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// When it was signed.
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    /// The certificate this one renews, if known.
    pub replaces: Option<Serial>,
    /// Set once revoked.
    pub revocation: Option<Revocation>,
    /// The certificate, DER.
    #[serde(with = "base64_bytes")]
    pub der: Vec<u8>,
}

/// A revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Why.
    pub reason: RevocationReason,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub revoked_at: OffsetDateTime,
    /// Who asked (requester id, operator).
    pub by: String,
}

/// Which certificates to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateFilter {
    /// All, ordered by expiry.
    All,
    /// notAfter within [from, to), ordered by expiry.
    ExpiringBetween {
        /// Inclusive start.
        from: OffsetDateTime,
        /// Exclusive end.
        to: OffsetDateTime,
    },
    /// Everything one requester asked for.
    Requester(RequesterId),
    /// Everything naming this identifier.
    Identifier(Identifier),
    /// One lineage, newest first.
    Lineage(Lineage),
}

/// The certificates one requester obtained through one endpoint for exactly one set of names
/// (order and letter case aside): what a renewal without an explicit predecessor continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lineage {
    /// Who requested them.
    pub requester: RequesterId,
    /// The endpoint they came through.
    pub endpoint: Name,
    /// The protocol they came through.
    pub protocol: Protocol,
    /// Their names.
    pub identifiers: Vec<Identifier>,
}

impl Lineage {
    /// The lineage `record` belongs to.
    pub fn of(record: &CertificateRecord) -> Self {
        Self {
            requester: record.requester.clone(),
            endpoint: record.endpoint.clone(),
            protocol: record.protocol,
            identifiers: record.identifiers.clone(),
        }
    }
}

/// A page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateQuery {
    /// What to match.
    pub filter: CertificateFilter,
    /// At most this many (capped at 1000).
    pub limit: usize,
    /// The `next` cursor of the previous page.
    pub after: Option<String>,
}

/// One page of certificates.
#[derive(Debug, Clone)]
pub struct CertificatePage {
    /// The certificates.
    pub items: Vec<CertificateRecord>,
    /// Cursor for the next page, if there may be more.
    pub next: Option<String>,
}

/// Counts from the issuance journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JournalStatus {
    /// Certificates recorded.
    pub certificates: u64,
    /// Serials reserved and neither recorded nor abandoned yet (signing in flight).
    pub reserved: u64,
    /// Serials given up (signing failed, or the process stopped before recording).
    pub abandoned: u64,
    /// Reservations found in flight when the store was opened and abandoned then.
    pub recovered_at_open: u64,
}

pub(crate) mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        STANDARD.decode(text.as_bytes()).map_err(serde::de::Error::custom)
    }
}
