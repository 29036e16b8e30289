//! SCEP one-time challenge passwords (RFC 8894 2.5, "one-time" enrollment secrets): created by
//! an operator (`certgate scep challenge create`), each valid for one enrollment at one
//! endpoint until it expires, optionally bound to the subject it may be used for.
//!
//! The store never sees a challenge itself: `certgate-scep` hands it an opaque `id` (the
//! lower-case hex SHA-256 of the challenge), so a copy of the database reveals no usable
//! secret. Consuming is a single compare-and-swap removal: of two enrollments racing with one
//! challenge, exactly one wins.

use async_trait::async_trait;
use certgate_core::Name;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::StoreError;

/// One unused one-time challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScepChallengeRecord {
    /// The endpoint it is valid at.
    pub endpoint: Name,
    /// Opaque id derived from the challenge (certgate-scep: lower-case hex SHA-256); 1 to 128
    /// characters of a-z, 0-9, '-', '_', '.'.
    pub id: String,
    /// The subject it may be used for (compared with the CSR's subject by certgate-scep);
    /// `None`: any subject.
    pub subject: Option<String>,
    /// Who created it (operator, for the audit trail).
    pub created_by: Option<String>,
    /// Created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Unusable from this instant on.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// Whether `id` is a well-formed challenge id.
pub fn valid_challenge_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'))
}

/// Storage for one-time SCEP challenges. Creation and consumption are durable on return (a
/// used challenge must stay used after a crash).
#[async_trait]
pub trait ScepChallengeStore: Send + Sync + std::fmt::Debug {
    /// Stores a new challenge. `Conflict` if the endpoint has one with this id or the id is
    /// malformed.
    async fn create_scep_challenge(&self, record: &ScepChallengeRecord) -> Result<(), StoreError>;

    /// Uses a challenge up: removes and returns it when it exists at `endpoint`, has not
    /// expired at `now`, and is unbound or bound to one of `subjects`. `NotFound` for an
    /// unknown, used or expired challenge (an expired one is removed); `Conflict` (and the
    /// challenge stays unused) when it is bound to another subject.
    async fn consume_scep_challenge(
        &self,
        endpoint: &Name,
        id: &str,
        subjects: &[&str],
        now: OffsetDateTime,
    ) -> Result<ScepChallengeRecord, StoreError>;

    /// The unused challenges of `endpoint` (of every endpoint when `None`), expired ones
    /// included, by endpoint and id. At most `limit` (capped at 1000).
    async fn scep_challenges(
        &self,
        endpoint: Option<&Name>,
        limit: usize,
    ) -> Result<Vec<ScepChallengeRecord>, StoreError>;

    /// Revokes an unused challenge. `NotFound` if there is none.
    async fn remove_scep_challenge(&self, endpoint: &Name, id: &str) -> Result<(), StoreError>;

    /// Forgets challenges that expired before `now`; returns how many.
    async fn sweep_scep_challenges(&self, now: OffsetDateTime) -> Result<u64, StoreError>;
}
