//! Bearer tokens for the HTTPS admin API. The store keeps a token's id, name, role and the
//! SHA-256 of its secret; the secret itself is shown once when created and never stored.
//! A plain hash suffices (no password hash): the secret is 256 random bits, not a password.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::StoreError;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdminRole {
    /// Everything: reads, revocations, approvals, users, tokens.
    Admin,
    /// Reads only (listings, exports, the audit log).
    ReadOnly,
}

impl AdminRole {
    /// The name used in the CLI and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::ReadOnly => "read-only",
        }
    }
}

impl std::str::FromStr for AdminRole {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Self::Admin),
            "read-only" | "readonly" | "read" => Ok(Self::ReadOnly),
            other => Err(format!("unknown role {other:?} (admin, read-only)")),
        }
    }
}

/// One admin token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminTokenRecord {
    /// Public id (part of the token; shown in listings and the audit log).
    pub id: String,
    /// What the operator called it.
    pub name: String,
    /// What it may do.
    pub role: AdminRole,
    /// SHA-256 of the secret part, hex.
    pub secret_sha256: String,
    /// Created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Expires, if ever.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Who created it.
    pub created_by: String,
}

impl std::fmt::Debug for AdminTokenRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminTokenRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("role", &self.role)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Storage for admin tokens. Every change is durable on return.
#[async_trait]
pub trait AdminTokenStore: Send + Sync + std::fmt::Debug {
    /// Adds a token; `Conflict` if the id exists.
    async fn insert_admin_token(&self, token: &AdminTokenRecord) -> Result<(), StoreError>;

    /// A token by id; `NotFound` if there is none.
    async fn admin_token(&self, id: &str) -> Result<AdminTokenRecord, StoreError>;

    /// Every token, by id.
    async fn admin_tokens(&self) -> Result<Vec<AdminTokenRecord>, StoreError>;

    /// Removes a token; `NotFound` if there is none.
    async fn remove_admin_token(&self, id: &str) -> Result<(), StoreError>;
}
