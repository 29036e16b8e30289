//! ACME protocol state: accounts, orders, authorizations (with their challenges) and external
//! account binding keys. Every update is a compare-and-swap on the record's `version`, so two
//! requests racing on one order cannot both move it.

use async_trait::async_trait;
use certgate_core::{Identifier, Name, Serial};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::StoreError;

/// An account's state (RFC 8555 7.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    /// Usable.
    Valid,
    /// Deactivated by its holder: refused from then on.
    Deactivated,
    /// Revoked by the server.
    Revoked,
}

/// An ACME account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    /// Random id; the account URL ends with it.
    pub id: String,
    /// The endpoint it belongs to.
    pub endpoint: Name,
    /// The public key as canonical JWK JSON (RFC 7638 member order).
    pub jwk: String,
    /// RFC 7638 thumbprint of `jwk`: unique per endpoint.
    pub thumbprint: String,
    /// `mailto:` contacts.
    pub contact: Vec<String>,
    /// Status.
    pub status: AccountStatus,
    /// Whether the holder agreed to the terms of service.
    pub terms_agreed: bool,
    /// The EAB key this account was bound with.
    pub eab_key_id: Option<String>,
    /// Created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Bumped by every update (compare-and-swap).
    pub version: u64,
}

/// An order's state (RFC 8555 7.1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    /// Authorizations outstanding.
    Pending,
    /// Every authorization valid: may be finalized.
    Ready,
    /// Finalized, certificate being issued.
    Processing,
    /// Certificate issued.
    Valid,
    /// Failed or expired.
    Invalid,
}

/// An ACME order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderRecord {
    /// Random id.
    pub id: String,
    /// Endpoint.
    pub endpoint: Name,
    /// Owning account id.
    pub account_id: String,
    /// Status.
    pub status: OrderStatus,
    /// When the order expires unless finalized.
    #[serde(with = "time::serde::rfc3339")]
    pub expires: OffsetDateTime,
    /// The identifiers, in the client's order.
    pub identifiers: Vec<Identifier>,
    /// Requested notBefore.
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_before: Option<OffsetDateTime>,
    /// Requested notAfter.
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_after: Option<OffsetDateTime>,
    /// Requested profile.
    pub profile: Option<Name>,
    /// The certificate this order replaces (ARI), by serial.
    pub replaces: Option<Serial>,
    /// `replaces` as the client sent it (the ARI certificate identifier).
    pub replaces_id: Option<String>,
    /// Authorization ids, one per identifier.
    pub authorizations: Vec<String>,
    /// The problem that made the order invalid, as problem+json.
    pub error: Option<serde_json::Value>,
    /// The issued certificate.
    pub certificate: Option<Serial>,
    /// Created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When finalize started (for orders stuck in processing after a crash).
    #[serde(with = "time::serde::rfc3339::option")]
    pub processing_since: Option<OffsetDateTime>,
    /// Bumped by every update.
    pub version: u64,
}

/// An authorization's state (RFC 8555 7.1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthzStatus {
    /// Awaiting a challenge.
    Pending,
    /// Validated.
    Valid,
    /// A challenge failed.
    Invalid,
    /// Deactivated by the client.
    Deactivated,
    /// Past its expiry.
    Expired,
    /// Revoked by the server.
    Revoked,
}

/// A challenge's state (RFC 8555 7.1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChallengeStatus {
    /// Not yet attempted.
    Pending,
    /// Being validated.
    Processing,
    /// Passed.
    Valid,
    /// Failed.
    Invalid,
}

/// One challenge of an authorization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChallengeRecord {
    /// `http-01`, `dns-01`, `tls-alpn-01`.
    pub kind: String,
    /// The token (128 random bits, base64url).
    pub token: String,
    /// Status.
    pub status: ChallengeStatus,
    /// When it passed.
    #[serde(with = "time::serde::rfc3339::option")]
    pub validated: Option<OffsetDateTime>,
    /// Why it failed, as problem+json.
    pub error: Option<serde_json::Value>,
    /// What the validator saw (addresses, URL), as JSON.
    pub validation_record: Option<serde_json::Value>,
}

/// An ACME authorization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthzRecord {
    /// Random id.
    pub id: String,
    /// Endpoint.
    pub endpoint: Name,
    /// Owning account id.
    pub account_id: String,
    /// The identifier, without the wildcard label.
    pub identifier: Identifier,
    /// Whether the order asked for `*.identifier`.
    pub wildcard: bool,
    /// Status.
    pub status: AuthzStatus,
    /// When it expires.
    #[serde(with = "time::serde::rfc3339")]
    pub expires: OffsetDateTime,
    /// Its challenges.
    pub challenges: Vec<ChallengeRecord>,
    /// Bumped by every update.
    pub version: u64,
}

/// An external account binding key (RFC 8555 7.3.4), single use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EabKeyRecord {
    /// The key identifier the client puts in `kid`.
    pub key_id: String,
    /// The endpoint it is valid for.
    pub endpoint: Name,
    /// The HMAC-SHA256 key.
    #[serde(with = "crate::model::base64_bytes")]
    pub hmac_key: Vec<u8>,
    /// Created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The account it was used for, once used.
    pub account_id: Option<String>,
}

/// A page of order ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderPage {
    /// Order ids, oldest first.
    pub ids: Vec<String>,
    /// Cursor for the next page.
    pub next: Option<String>,
}

/// What one ACME sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AcmeSweep {
    /// Orders removed.
    pub orders: u64,
    /// Authorizations removed.
    pub authorizations: u64,
}

/// Storage for ACME state. Updates take the record with `version` already bumped by one and
/// succeed only if the stored record still has the previous version (`Conflict` otherwise).
#[async_trait]
pub trait AcmeStore: Send + Sync + std::fmt::Debug {
    /// Stores a new account; `Conflict` if its key already has an account on the endpoint.
    /// Durable on return.
    async fn insert_account(&self, account: &AccountRecord) -> Result<(), StoreError>;
    /// An account by id.
    async fn account(&self, id: &str) -> Result<AccountRecord, StoreError>;
    /// The account holding `thumbprint` on `endpoint`, if any.
    async fn account_by_thumbprint(
        &self,
        endpoint: &Name,
        thumbprint: &str,
    ) -> Result<Option<AccountRecord>, StoreError>;
    /// Updates an account (contact, status). Durable on return.
    async fn update_account(&self, account: &AccountRecord) -> Result<(), StoreError>;
    /// Moves an account to a new key (`account` carries the new jwk and thumbprint):
    /// `Conflict` if another account holds the new key. Durable on return.
    async fn change_account_key(&self, old_thumbprint: &str, account: &AccountRecord) -> Result<(), StoreError>;

    /// Stores a new order with its new authorizations (reused ones are already stored).
    async fn insert_order(&self, order: &OrderRecord, new_authorizations: &[AuthzRecord]) -> Result<(), StoreError>;
    /// An order by id.
    async fn order(&self, id: &str) -> Result<OrderRecord, StoreError>;
    /// Updates an order.
    async fn update_order(&self, order: &OrderRecord) -> Result<(), StoreError>;
    /// An account's orders, oldest first, `limit` per page.
    async fn orders_of_account(
        &self,
        account_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<OrderPage, StoreError>;

    /// An authorization by id.
    async fn authorization(&self, id: &str) -> Result<AuthzRecord, StoreError>;
    /// Updates an authorization.
    async fn update_authorization(&self, authz: &AuthzRecord) -> Result<(), StoreError>;
    /// An account's valid authorization for `identifier` (and wildcard-ness) that is still
    /// valid at `valid_until`, for reuse in a new order.
    async fn reusable_authorization(
        &self,
        account_id: &str,
        identifier: &Identifier,
        wildcard: bool,
        valid_until: OffsetDateTime,
    ) -> Result<Option<AuthzRecord>, StoreError>;

    /// Removes orders and authorizations that expired before `expired_before` (the caller
    /// subtracts its retention), at most a bounded batch per call; returns what went.
    async fn sweep_acme(&self, expired_before: OffsetDateTime) -> Result<AcmeSweep, StoreError>;

    /// Stores a new EAB key. Durable on return.
    async fn insert_eab_key(&self, key: &EabKeyRecord) -> Result<(), StoreError>;
    /// An EAB key by id.
    async fn eab_key(&self, key_id: &str) -> Result<EabKeyRecord, StoreError>;
    /// EAB keys of an endpoint (all endpoints when `None`).
    async fn eab_keys(&self, endpoint: Option<&Name>) -> Result<Vec<EabKeyRecord>, StoreError>;
    /// Binds an unused EAB key to an account; `Conflict` if it was used already. Durable.
    async fn bind_eab_key(&self, key_id: &str, account_id: &str) -> Result<(), StoreError>;
    /// Releases a binding made for an account that was then not created (a lost race).
    async fn unbind_eab_key(&self, key_id: &str, account_id: &str) -> Result<(), StoreError>;
}
