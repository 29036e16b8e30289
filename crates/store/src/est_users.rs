//! EST HTTP Basic users (RFC 7030 3.2.3), per endpoint. The store keeps only a password hash
//! (an Argon2id PHC string made by `certgate-est`); it never sees a password.

use async_trait::async_trait;
use certgate_core::Name;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::StoreError;

/// One EST user of one endpoint.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EstUserRecord {
    /// The endpoint the user may enroll at.
    pub endpoint: Name,
    /// The user name as sent in HTTP Basic (no ':', no control characters).
    pub username: String,
    /// The password's hash, a PHC string (`$argon2id$v=19$…`).
    pub password_hash: String,
    /// Created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Bumped by every update (compare-and-swap).
    pub version: u64,
}

impl std::fmt::Debug for EstUserRecord {
    // The hash is not a secret in the way a password is, but it has no place in logs either.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EstUserRecord")
            .field("endpoint", &self.endpoint)
            .field("username", &self.username)
            .field("created_at", &self.created_at)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Storage for EST users. Every change is durable on return.
#[async_trait]
pub trait EstUserStore: Send + Sync + std::fmt::Debug {
    /// Adds a user; `Conflict` if the endpoint has a user of this name.
    async fn insert_est_user(&self, user: &EstUserRecord) -> Result<(), StoreError>;

    /// A user by endpoint and name; `NotFound` if there is none.
    async fn est_user(&self, endpoint: &Name, username: &str) -> Result<EstUserRecord, StoreError>;

    /// The users of `endpoint` (of every endpoint when `None`), by endpoint and name.
    async fn est_users(&self, endpoint: Option<&Name>) -> Result<Vec<EstUserRecord>, StoreError>;

    /// Replaces a user's record (a new password): `user.version` must be the stored version
    /// plus one (`Conflict` otherwise), `NotFound` for an unknown user.
    async fn update_est_user(&self, user: &EstUserRecord) -> Result<(), StoreError>;

    /// Removes a user; `NotFound` if there is none.
    async fn remove_est_user(&self, endpoint: &Name, username: &str) -> Result<(), StoreError>;
}
