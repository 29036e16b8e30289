//! certgate storage: traits by use, with backend-neutral errors, and the sled backend.
//!
//! What it does: keeps issued certificates with their provenance and revocation state,
//! indexed by expiry, requester and identifier, and an issuance journal (serial reservations)
//! so that a crash between reserving a serial and recording its certificate is resolved
//! on the next open. What it does not do: decide anything. Policy lives in the authority.
//!
//! Durability: [`CertificateStore::record_issued`] and [`CertificateStore::revoke`] return
//! only after the change is on disk. Concurrent callers share one flush (group commit).
#![warn(missing_docs)]

pub mod acme;
pub mod admin_tokens;
pub mod approvals;
pub mod audit;
mod error;
pub mod est_users;
mod model;
pub mod notifications;
pub mod scep_challenges;
mod sled_acme;
mod sled_admin_tokens;
mod sled_approvals;
mod sled_audit;
mod sled_backend;
mod sled_est_users;
mod sled_notifications;
mod sled_scep_challenges;
mod sled_space;

use async_trait::async_trait;
use certgate_core::Serial;
use time::OffsetDateTime;

pub use acme::AcmeStore;
pub use admin_tokens::AdminTokenStore;
pub use approvals::ApprovalStore;
pub use error::StoreError;
pub use est_users::EstUserStore;
pub use model::{
    CertificateFilter, CertificatePage, CertificateQuery, CertificateRecord, JournalStatus, Lineage, Revocation,
    SerialReservation,
};
pub use scep_challenges::ScepChallengeStore;
pub use sled_backend::{DEFAULT_CACHE_BYTES, SledStore};
pub use sled_space::{Admission, ShedPolicy, SpaceSample, SpaceWatch};

/// Every certificate matching `filter`, walking all pages (for exports and tests; the
/// protocol paths page explicitly).
pub async fn list_all(
    store: &(impl CertificateStore + ?Sized),
    filter: CertificateFilter,
) -> Result<Vec<CertificateRecord>, StoreError> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_certificates(&CertificateQuery {
                filter: filter.clone(),
                limit: 1000,
                after,
            })
            .await?;
        all.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(all),
        }
    }
}

/// The ACME nonces (RFC 8555 6.5) that were used. Nonces are issued without the store (the
/// ACME server hands out tokens it can authenticate itself), so an unauthenticated request
/// writes nothing; the store only remembers nonces redeemed by signed requests until they
/// expire, so that each is accepted once. Not flushed per request: the ACME server's nonce key
/// lives as long as its process, so no nonce from before a crash verifies after it.
#[async_trait]
pub trait NonceStore: Send + Sync + std::fmt::Debug {
    /// Records the nonce `id` (its random part), valid until `expires_at`, as used: true the
    /// first time, false if it was recorded before or has expired at `now`. Of concurrent
    /// callers with one nonce exactly one gets true.
    async fn redeem_nonce(
        &self,
        id: &[u8],
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Forgets used nonces that expired before `now` (a replay of one is refused as expired
    /// before it reaches the store); returns how many.
    async fn sweep_nonces(&self, now: OffsetDateTime) -> Result<u64, StoreError>;
}

/// Certificates, their serials and revocations.
#[async_trait]
pub trait CertificateStore: Send + Sync + std::fmt::Debug {
    /// Reserves a serial before signing. `Conflict` if the serial was ever reserved, issued
    /// or abandoned, so a serial is never used twice.
    async fn reserve_serial(&self, reservation: &SerialReservation) -> Result<(), StoreError>;

    /// Gives up a reservation whose signing failed; the serial stays burnt.
    async fn abandon_reservation(&self, serial: &Serial, why: &str) -> Result<(), StoreError>;

    /// Records the certificate for a reserved serial, with its indexes, in one transaction,
    /// and returns once it is durable. `NotFound` without a reservation, `Conflict` if the
    /// serial already has a certificate.
    async fn record_issued(&self, record: &CertificateRecord) -> Result<(), StoreError>;

    /// One certificate by serial.
    async fn certificate(&self, serial: &Serial) -> Result<CertificateRecord, StoreError>;

    /// A page of certificates matching `query`, in index order.
    async fn list_certificates(&self, query: &CertificateQuery) -> Result<CertificatePage, StoreError>;

    /// Marks a certificate revoked (compare-and-swap from not revoked) and returns the new
    /// record once durable. `NotFound` for an unknown serial, `Conflict` if already revoked.
    async fn revoke(&self, serial: &Serial, revocation: &Revocation) -> Result<CertificateRecord, StoreError>;

    /// Every revoked certificate of `issuer` (expired ones too; the caller decides what to
    /// list), in serial order.
    async fn revoked(&self, issuer: &certgate_core::Name) -> Result<Vec<CertificateRecord>, StoreError>;

    /// The newest certificate recorded as replacing `serial`, if any.
    async fn successor(&self, serial: &Serial) -> Result<Option<CertificateRecord>, StoreError>;

    /// How many certificates, reservations in flight and abandoned serials there are.
    async fn journal_status(&self) -> Result<JournalStatus, StoreError>;

    /// Makes every write so far durable (used at shutdown).
    async fn flush(&self) -> Result<(), StoreError>;
}
