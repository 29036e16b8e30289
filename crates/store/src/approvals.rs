//! The manual-approval queue: enrollment requests an operator must approve before a
//! certificate is issued (EST now, SCEP later). A request is keyed by protocol, endpoint and a
//! fingerprint of the request (EST: SHA-256 of the CSR's SubjectPublicKeyInfo; SCEP may use
//! its transactionID), so a client polling with the same request finds its record again.
//!
//! States move `pending -> approved -> issued` or `pending -> denied`, each step a
//! compare-and-swap, so two operators (or an operator and a polling client) racing on one
//! request cannot both move it. A `renew` replaces a finished record (issued, or one whose
//! certificate is gone) with a fresh pending one.

use std::collections::HashSet;
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;
use certgate_core::{Identifier, KeyKind, Name, Protocol, RequesterId, Serial};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::StoreError;

/// Where an approval request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalState {
    /// Waiting for an operator.
    Pending,
    /// Approved: the next poll by the client issues the certificate.
    Approved,
    /// Denied: the client is refused from then on.
    Denied,
    /// The certificate was issued (`certificate` names it).
    Issued,
}

impl ApprovalState {
    /// The lower-case name used in the CLI and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Issued => "issued",
        }
    }
}

impl fmt::Display for ApprovalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a malformed approval key or fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid approval id {0:?}: expected <protocol>:<endpoint>:<fingerprint> (fingerprint: 1 to 128 of a-z, 0-9, '-', '_', '.')"
)]
pub struct ApprovalKeyError(pub String);

/// Identifies one approval request: protocol, endpoint and the request's fingerprint.
/// Written (and parsed) as `est:default:3f2a…`, the id operators type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ApprovalKey {
    /// The protocol the request came through.
    pub protocol: Protocol,
    /// The endpoint.
    pub endpoint: Name,
    fingerprint: String,
}

impl ApprovalKey {
    /// A key; `fingerprint` is 1 to 128 characters from lower-case a-z, 0-9, '-', '_' and '.'
    /// (lower-case hex of a digest, a SCEP transactionID, …).
    pub fn new(protocol: Protocol, endpoint: Name, fingerprint: impl Into<String>) -> Result<Self, ApprovalKeyError> {
        let fingerprint = fingerprint.into();
        let ok = !fingerprint.is_empty()
            && fingerprint.len() <= 128
            && fingerprint
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'));
        if ok {
            Ok(Self {
                protocol,
                endpoint,
                fingerprint,
            })
        } else {
            Err(ApprovalKeyError(fingerprint))
        }
    }

    /// The request fingerprint.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

impl fmt::Display for ApprovalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.protocol, self.endpoint, self.fingerprint)
    }
}

impl std::str::FromStr for ApprovalKey {
    type Err = ApprovalKeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ApprovalKeyError(s.to_owned());
        let mut parts = s.splitn(3, ':');
        let (Some(protocol), Some(endpoint), Some(fingerprint)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let protocol: Protocol = protocol.parse().map_err(|_| bad())?;
        let endpoint = Name::new(endpoint).map_err(|_| bad())?;
        Self::new(protocol, endpoint, fingerprint).map_err(|_| bad())
    }
}

/// One request waiting for (or past) an operator's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    /// Protocol, endpoint and fingerprint.
    pub key: ApprovalKey,
    /// Who asked (an authenticated EST user or client certificate, a SCEP device).
    pub requester: RequesterId,
    /// The CSR's subject, RFC 4514 text, for the operator.
    pub subject: String,
    /// The CSR's subjectAltNames, for the operator.
    pub identifiers: Vec<Identifier>,
    /// The CSR's key type.
    pub key_kind: KeyKind,
    /// The CSR as received, DER: what is issued once approved.
    #[serde(with = "crate::model::base64_bytes")]
    pub csr_der: Vec<u8>,
    /// Where it stands.
    pub state: ApprovalState,
    /// When the client first asked.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When an operator decided.
    #[serde(with = "time::serde::rfc3339::option")]
    pub decided_at: Option<OffsetDateTime>,
    /// Which operator decided.
    pub decided_by: Option<String>,
    /// The operator's reason (for a denial, shown to nobody but operators).
    pub reason: Option<String>,
    /// The issued certificate, once `Issued`.
    pub certificate: Option<Serial>,
    /// Bumped by every change (compare-and-swap).
    pub version: u64,
}

impl ApprovalRecord {
    /// A new pending request (version 1).
    pub fn pending(
        key: ApprovalKey,
        requester: RequesterId,
        subject: String,
        identifiers: Vec<Identifier>,
        key_kind: KeyKind,
        csr_der: Vec<u8>,
        created_at: OffsetDateTime,
    ) -> Self {
        Self {
            key,
            requester,
            subject,
            identifiers,
            key_kind,
            csr_der,
            state: ApprovalState::Pending,
            created_at,
            decided_at: None,
            decided_by: None,
            reason: None,
            certificate: None,
            version: 1,
        }
    }
}

/// Which approval requests to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApprovalFilter {
    /// Only in this state (`None`: any).
    pub state: Option<ApprovalState>,
    /// Only of this protocol.
    pub protocol: Option<Protocol>,
    /// Only of this endpoint.
    pub endpoint: Option<Name>,
}

impl ApprovalFilter {
    /// Every pending request, oldest first.
    pub fn pending() -> Self {
        Self {
            state: Some(ApprovalState::Pending),
            ..Self::default()
        }
    }

    /// Whether `record` matches.
    pub fn matches(&self, record: &ApprovalRecord) -> bool {
        self.state.is_none_or(|s| s == record.state)
            && self.protocol.is_none_or(|p| p == record.key.protocol)
            && self.endpoint.as_ref().is_none_or(|e| *e == record.key.endpoint)
    }
}

/// The approvals being issued by this process right now. A poll claims its approval before
/// issuing and re-reads the record under the claim, so two polls of one approved request never
/// issue twice (EST and SCEP both rely on it). Per process: replicas sharing a database would
/// need the claim in the store.
#[derive(Debug, Default)]
pub struct IssuanceClaims {
    keys: Mutex<HashSet<ApprovalKey>>,
}

impl IssuanceClaims {
    /// Claims `key` until the returned claim is dropped; None while another caller holds it.
    pub fn claim(&self, key: &ApprovalKey) -> Option<IssuanceClaim<'_>> {
        let mut keys = self.keys.lock().unwrap_or_else(|poison| poison.into_inner());
        keys.insert(key.clone()).then(|| IssuanceClaim {
            claims: self,
            key: key.clone(),
        })
    }
}

/// A held claim on one approval (see [`IssuanceClaims`]).
#[derive(Debug)]
pub struct IssuanceClaim<'a> {
    claims: &'a IssuanceClaims,
    key: ApprovalKey,
}

impl Drop for IssuanceClaim<'_> {
    fn drop(&mut self) {
        self.claims
            .keys
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .remove(&self.key);
    }
}

/// Storage for the approval queue. Every change is durable on return: an operator's decision
/// and a pending request must survive a restart.
#[async_trait]
pub trait ApprovalStore: Send + Sync + std::fmt::Debug {
    /// Stores a new pending request; `Conflict` if a request with its key exists.
    async fn create_approval(&self, record: &ApprovalRecord) -> Result<(), StoreError>;

    /// One request by key; `NotFound` if there is none.
    async fn approval(&self, key: &ApprovalKey) -> Result<ApprovalRecord, StoreError>;

    /// The requests matching `filter`: pending ones oldest first (from the pending index),
    /// otherwise in key order. At most `limit` (capped at 1000).
    async fn approvals(&self, filter: &ApprovalFilter, limit: usize) -> Result<Vec<ApprovalRecord>, StoreError>;

    /// Approves a pending request. `NotFound` for an unknown key, `Conflict` unless pending.
    async fn approve(&self, key: &ApprovalKey, by: &str, at: OffsetDateTime) -> Result<ApprovalRecord, StoreError>;

    /// Denies a pending request. `NotFound` for an unknown key, `Conflict` unless pending: an
    /// approved request may be being issued by a polling client at this moment, so an approval
    /// is final (revoke the certificate instead).
    async fn deny(
        &self,
        key: &ApprovalKey,
        by: &str,
        reason: Option<&str>,
        at: OffsetDateTime,
    ) -> Result<ApprovalRecord, StoreError>;

    /// Records the certificate issued for an approved request. `Conflict` unless approved
    /// (of two callers racing, exactly one succeeds).
    async fn mark_issued(&self, key: &ApprovalKey, serial: &Serial) -> Result<ApprovalRecord, StoreError>;

    /// Replaces a finished request (issued, or approved whose issuance failed) with a fresh
    /// pending one: `record` must carry the stored version plus one and state `Pending`.
    /// `Conflict` if the stored record changed meanwhile or is pending or denied.
    async fn renew_approval(&self, record: &ApprovalRecord) -> Result<(), StoreError>;

    /// Forgets a request (operator clean-up). `NotFound` for an unknown key.
    async fn remove_approval(&self, key: &ApprovalKey) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_refuse_junk() {
        let cases = [
            ("good_hex", "est:default:3f2a9c", true),
            ("good_scep_txid", "scep:mdm:abc-123_x.y", true),
            ("bad_protocol", "http:default:3f2a", false),
            ("bad_endpoint", "est:Default:3f2a", false),
            ("bad_empty_fingerprint", "est:default:", false),
            ("bad_upper_fingerprint", "est:default:ABC", false),
            ("bad_missing_part", "est:default", false),
            ("bad_colon_in_fingerprint", "est:default:a:b", false),
        ];
        for (case, text, ok) in cases {
            let parsed = text.parse::<ApprovalKey>();
            assert_eq!(parsed.is_ok(), ok, "case {case}");
            if let Ok(key) = parsed {
                assert_eq!(key.to_string(), text, "case {case}");
            }
        }
    }
}
