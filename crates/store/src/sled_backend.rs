//! The sled backend: one tree per entity, explicit index trees, an issuance journal, and
//! group commit for durability.
//!
//! Why no sled transactions: every sled transaction (and batch) seals a log batch, which sled
//! writes out with `sync_file_range` on its I/O thread pool; measured here that cost more CPU
//! than the issuance's cryptography. Instead the `pending` tree is a write-ahead intent: an
//! issuance writes its journal entry first and removes it last, with compare-and-swap where two
//! callers could race, and [`SledStore::open`] completes or abandons whatever a crash left in
//! the journal. sled recovers a prefix of its log, which is what this ordering relies on; the
//! SIGKILL crash test (`crates/test-support/tests/support/crash.rs`) checks it.

use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use certgate_core::{Identifier, RequesterId, Serial};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::{
    CertificateFilter, CertificatePage, CertificateQuery, CertificateRecord, CertificateStore, JournalStatus, Lineage,
    Revocation, SerialReservation, StoreError,
};

const SERIAL_RESERVED: &[u8] = b"R";
const SERIAL_ISSUED: &[u8] = b"I";
const SERIAL_ABANDONED: &[u8] = b"A";
const MAX_PAGE: usize = 1000;
/// The longest a flush waits for issuances still being signed (see `delay_for_in_flight`).
const MAX_COMMIT_DELAY: std::time::Duration = std::time::Duration::from_millis(2);

/// How often sled's own flusher runs, and with it segment garbage collection, which drains
/// at most one 512 KiB segment per run: at 1 s that reclaimed ~30 MB/min, less than the soak's
/// churn makes (BENCHMARKS.md); at 100 ms it can reclaim ten times that.
const SLED_BACKGROUND_FLUSH_MS: u64 = 100;

/// sled's page cache unless the caller chooses ([`SledStore::open_with_cache`]): bounds the
/// daemon's memory whatever the database size.
pub const DEFAULT_CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// Index entries a sweep handles before letting other tasks run.
pub(crate) const SWEEP_BATCH: usize = 10_000;

/// Why a reservation found at open was abandoned.
const CRASH_REASON: &str = "process stopped after reserving the serial and before recording a certificate; \
                            no certificate with this serial was ever handed out";

#[derive(Debug, Serialize, Deserialize)]
struct AbandonedSerial {
    reservation: SerialReservation,
    why: String,
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
}

/// A sled database holding certgate's state. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SledStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: sled::Db,
    /// Serial -> state byte (reserved, issued, abandoned): the uniqueness guard.
    serials: sled::Tree,
    /// Serial -> reservation, for serials being signed right now: the issuance journal.
    pending: sled::Tree,
    /// Serial -> abandoned reservation with the reason.
    abandoned: sled::Tree,
    /// Serial -> certificate record.
    certs: sled::Tree,
    by_expiry: sled::Tree,
    by_requester: sled::Tree,
    by_identifier: sled::Tree,
    /// len(old serial) || old serial || issued-at || new serial: successors, newest last.
    by_replaces: sled::Tree,
    /// SHA-256(lineage) || inverted issued-at || serial: each lineage newest first, so finding
    /// what a renewal continues reads one or two records however many came before.
    by_lineage: sled::Tree,
    /// Markers of one-time index builds.
    store_meta: sled::Tree,
    /// issuer NUL serial: revoked certificates, for CRLs. Written before the record's
    /// revocation, so a crash leaves at most an entry whose record a reader finds unrevoked.
    revoked: sled::Tree,
    /// Expiry || random part: the ACME nonces redeemed and not yet expired (issuing one writes
    /// nothing).
    nonces: sled::Tree,
    acme: AcmeTrees,
    approvals: crate::sled_approvals::ApprovalTrees,
    est_users: crate::sled_est_users::EstUserTrees,
    scep_challenges: crate::sled_scep_challenges::ScepChallengeTrees,
    durability: Arc<GroupCommit>,
    flusher: Mutex<Option<JoinHandle<()>>>,
    recovered_at_open: u64,
}

/// The ACME trees (see `sled_acme`).
#[derive(Debug)]
pub(crate) struct AcmeTrees {
    /// Account id -> account.
    pub(crate) accounts: sled::Tree,
    /// Endpoint NUL thumbprint -> account id: one account per key and endpoint.
    pub(crate) account_keys: sled::Tree,
    /// Order id -> order.
    pub(crate) orders: sled::Tree,
    /// Account NUL created-at order-id, for the orders list.
    pub(crate) orders_by_account: sled::Tree,
    /// Authorization id -> authorization.
    pub(crate) authzs: sled::Tree,
    /// Account NUL identifier NUL expiry id, for valid authorizations to reuse.
    pub(crate) authzs_by_account: sled::Tree,
    /// EAB key id -> key.
    pub(crate) eab_keys: sled::Tree,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.durability.stop();
        if let Some(handle) = self.flusher.lock().ok().and_then(|mut h| h.take()) {
            let _ = handle.join();
        }
    }
}

impl SledStore {
    /// Opens (or creates) the database in `dir` and resolves any reservation left in flight
    /// by a crash: it is marked abandoned, so no serial is ever ambiguous.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// [`SledStore::open`] with sled's page cache capped at `cache_bytes` (sled's own default
    /// is 1 GiB, which a busy daemon fills with pages it will not read again).
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        // Durability points flush explicitly (group commit). The periodic flusher stays on
        // for what only it does in sled 0.34: segment garbage collection (relocating the live
        // pages of mostly-dead segments). Without it the file grows without bound under churn
        // even while the live data stays flat (measured: 75 MB/min in the soak, BENCHMARKS.md).
        let config = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(cache_bytes)
            .flush_every_ms(Some(SLED_BACKGROUND_FLUSH_MS));
        let db = open_when_unlocked(&config)?;
        let tree = |name: &str| db.open_tree(name);
        let (serials, pending, abandoned, certs) =
            (tree("serials")?, tree("pending")?, tree("abandoned")?, tree("certs")?);
        let (by_expiry, by_requester, by_identifier) = (
            tree("certs_by_expiry")?,
            tree("certs_by_requester")?,
            tree("certs_by_identifier")?,
        );
        let (by_replaces, revoked) = (tree("certs_by_replaces")?, tree("certs_revoked")?);
        let (by_lineage, store_meta) = (tree("certs_by_lineage")?, tree("store_meta")?);
        let nonces = tree("acme_used_nonces")?;
        // Earlier layouts held the nonces handed out (`acme_nonces`; before it `nonces` plus a
        // sweep index). Nonces live minutes and die with the process's nonce key anyway; a
        // client holding one gets badNonce once and retries with the fresh one.
        for retired in ["nonces", "nonces_by_expiry", "acme_nonces"] {
            db.drop_tree(retired)?;
        }
        let acme = AcmeTrees {
            accounts: tree("acme_accounts")?,
            account_keys: tree("acme_account_keys")?,
            orders: tree("acme_orders")?,
            orders_by_account: tree("acme_orders_by_account")?,
            authzs: tree("acme_authzs")?,
            authzs_by_account: tree("acme_authzs_by_account")?,
            eab_keys: tree("acme_eab_keys")?,
        };
        let approvals = crate::sled_approvals::ApprovalTrees::open(&db)?;
        let est_users = crate::sled_est_users::EstUserTrees::open(&db)?;
        let scep_challenges = crate::sled_scep_challenges::ScepChallengeTrees::open(&db)?;
        // The flusher starts last: an error above must not leave a thread holding the database.
        let durability = Arc::new(GroupCommit::new(db.clone()));
        let flusher = {
            let durability = Arc::clone(&durability);
            std::thread::Builder::new()
                .name("certgate-store-flush".into())
                .spawn(move || durability.run_flusher())
                .map_err(|e| StoreError::Backend(format!("cannot start flusher thread: {e}")))?
        };
        let mut inner = Inner {
            serials,
            pending,
            abandoned,
            certs,
            by_expiry,
            by_requester,
            by_identifier,
            by_replaces,
            by_lineage,
            store_meta,
            revoked,
            nonces,
            acme,
            approvals,
            est_users,
            scep_challenges,
            db,
            durability,
            flusher: Mutex::new(Some(flusher)),
            recovered_at_open: 0,
        };
        inner.recovered_at_open = inner.recover()?;
        inner.build_lineage_index()?;
        if crate::sled_acme::repair_account_keys(&inner.acme)? > 0 {
            inner.db.flush()?;
        }
        Ok(Self { inner: Arc::new(inner) })
    }

    /// How many durability flushes the group committer has run (each serves every write
    /// made before it started).
    pub fn flush_count(&self) -> u64 {
        self.inner.durability.flushes()
    }

    /// The database, for modules that open their own trees (`open_tree` is a cheap map
    /// lookup once the tree exists).
    pub(crate) fn db(&self) -> &sled::Db {
        &self.inner.db
    }

    pub(crate) fn acme(&self) -> &AcmeTrees {
        &self.inner.acme
    }

    pub(crate) fn approval_trees(&self) -> &crate::sled_approvals::ApprovalTrees {
        &self.inner.approvals
    }

    pub(crate) fn est_user_trees(&self) -> &crate::sled_est_users::EstUserTrees {
        &self.inner.est_users
    }

    pub(crate) fn scep_challenge_trees(&self) -> &crate::sled_scep_challenges::ScepChallengeTrees {
        &self.inner.scep_challenges
    }

    pub(crate) async fn durable(&self) -> Result<(), StoreError> {
        let seq = self.inner.durability.mark_written();
        self.inner.durability.wait_durable(seq).await
    }
}

/// Opens the database, waiting up to a second for its file lock: a store dropped a moment ago
/// in this process holds the lock until sled's background threads have finished. A lock held
/// longer (another process) is refused as before.
fn open_when_unlocked(config: &sled::Config) -> Result<sled::Db, StoreError> {
    const ATTEMPTS: u32 = 50;
    for attempt in 1..=ATTEMPTS {
        match config.open() {
            Err(sled::Error::Io(e)) if attempt < ATTEMPTS && e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return Ok(other?),
        }
    }
    unreachable!("the last attempt returns")
}

impl SledStore {
    /// Forgets certificates that expired before `expired_before` (the caller subtracts its
    /// retention), with their indexes and serial state, all of them, in batches; returns how
    /// many went. Serial uniqueness after that rests on the 126 random bits of
    /// every serial: a collision with a certificate expired beyond retention has probability
    /// near 2^-100 even after billions of issuances.
    pub async fn sweep_expired_certificates(&self, expired_before: OffsetDateTime) -> Result<u64, StoreError> {
        self.sweep_expired_certificates_in_batches(expired_before, SWEEP_BATCH)
            .await
    }

    /// The sweep in batches of `batch` index entries (see [`drain_below`]).
    async fn sweep_expired_certificates_in_batches(
        &self,
        expired_before: OffsetDateTime,
        batch: usize,
    ) -> Result<u64, StoreError> {
        let inner = &self.inner;
        let end = expiry_prefix(expired_before);
        let mut removed = 0;
        drain_below(&inner.by_expiry, &end, batch, |index| {
            let serial_bytes = &index[8..];
            let Some(bytes) = inner.certs.get(serial_bytes)? else {
                return Ok(());
            };
            let record: CertificateRecord = serde_json::from_slice(&bytes)?;
            // Secondary indexes first, the record next, its expiry entry last (drain_below
            // removes it): a crash halfway leaves only what the next sweep finds and finishes.
            inner
                .by_requester
                .remove(with_serial(requester_prefix(&record.requester), &record.serial))?;
            for identifier in &record.identifiers {
                inner
                    .by_identifier
                    .remove(with_serial(identifier_prefix(identifier), &record.serial))?;
            }
            if let Some(old) = &record.replaces {
                inner.by_replaces.remove(successor_key(old, &record))?;
            }
            inner.by_lineage.remove(lineage_key(&record))?;
            for successor in inner.by_replaces.scan_prefix(successors_prefix(&record.serial)).keys() {
                inner.by_replaces.remove(successor?)?;
            }
            inner
                .revoked
                .remove(with_serial(revoked_prefix(&record.issuer), &record.serial))?;
            inner.certs.remove(serial_bytes)?;
            inner.serials.remove(serial_bytes)?;
            removed += 1;
            Ok(())
        })
        .await?;
        if removed > 0 {
            self.durable().await?;
        }
        Ok(removed)
    }
}

/// Calls `each` for every key of `index` below `end` and then removes that key, in batches of
/// `batch`, letting other tasks run between batches, until none is left: one batch per sweep
/// interval fell behind a busy server (the soak's inventory kept growing at 600
/// certificates/s).
pub(crate) async fn drain_below(
    index: &sled::Tree,
    end: &[u8],
    batch: usize,
    mut each: impl FnMut(&[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    loop {
        let mut visited = 0;
        for entry in index.range(..end).take(batch) {
            let (key, _) = entry?;
            each(&key)?;
            index.remove(&key)?;
            visited += 1;
        }
        if visited < batch {
            return Ok(());
        }
        tokio::task::yield_now().await;
    }
}

impl Inner {
    /// Repairs the issuance journal after a crash. A journal entry whose certificate was
    /// recorded gets its indexes and serial state completed (all idempotent); one without a
    /// certificate is abandoned: that certificate was never handed out, because the answer
    /// waits for the durable record.
    fn recover(&self) -> Result<u64, StoreError> {
        let mut abandoned = 0;
        for entry in self.pending.iter() {
            let (serial, reservation) = entry?;
            match self.certs.get(&serial)? {
                Some(record) => self.complete(&serde_json::from_slice(&record)?)?,
                None => {
                    self.abandon(&serial, serde_json::from_slice(&reservation)?, CRASH_REASON)?;
                    tracing::warn!(serial = %hex_key(&serial), "abandoned a serial reserved before a crash");
                    abandoned += 1;
                }
            }
        }
        self.db.flush()?;
        Ok(abandoned)
    }

    /// Writes everything that follows from a recorded certificate, then drops its journal entry.
    fn complete(&self, record: &CertificateRecord) -> Result<(), StoreError> {
        let key = record.serial.as_bytes();
        self.by_expiry.insert(expiry_key(record), &[])?;
        self.by_requester
            .insert(with_serial(requester_prefix(&record.requester), &record.serial), &[])?;
        for identifier in &record.identifiers {
            self.by_identifier
                .insert(with_serial(identifier_prefix(identifier), &record.serial), &[])?;
        }
        if let Some(old) = &record.replaces {
            self.by_replaces.insert(successor_key(old, record), &[])?;
        }
        self.by_lineage.insert(lineage_key(record), &[])?;
        self.serials.insert(key, SERIAL_ISSUED)?;
        self.pending.remove(key)?;
        Ok(())
    }

    /// Fills the lineage index from the certificates of a database written before it existed,
    /// once (the marker is written after the last entry, so an interrupted build reruns).
    fn build_lineage_index(&self) -> Result<(), StoreError> {
        const BUILT: &[u8] = b"lineage_index_built";
        if self.store_meta.contains_key(BUILT)? {
            return Ok(());
        }
        let mut indexed = 0u64;
        for entry in self.certs.iter() {
            let (serial, record) = entry?;
            match serde_json::from_slice::<CertificateRecord>(&record) {
                Ok(record) => {
                    self.by_lineage.insert(lineage_key(&record), &[])?;
                    indexed += 1;
                }
                // One unreadable record must not keep the store from opening; it only goes
                // without a lineage entry.
                Err(e) => tracing::warn!(serial = %hex_key(&serial), error = %e, "unreadable certificate record"),
            }
        }
        self.store_meta.insert(BUILT, &[])?;
        self.db.flush()?;
        if indexed > 0 {
            tracing::info!(certificates = indexed, "built the certificate lineage index");
        }
        Ok(())
    }

    /// Marks a reserved serial abandoned, then drops its journal entry.
    fn abandon(&self, key: &[u8], reservation: SerialReservation, why: &str) -> Result<(), StoreError> {
        let record = AbandonedSerial {
            reservation,
            why: why.to_owned(),
            at: OffsetDateTime::now_utc(),
        };
        self.abandoned.insert(key, serde_json::to_vec(&record)?)?;
        self.serials.insert(key, SERIAL_ABANDONED)?;
        self.pending.remove(key)?;
        Ok(())
    }
}

fn hex_key(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02X}")).collect()
}

fn expiry_key(record: &CertificateRecord) -> Vec<u8> {
    let mut key = expiry_prefix(record.not_after).to_vec();
    key.extend_from_slice(record.serial.as_bytes());
    key
}

pub(crate) fn expiry_prefix(at: OffsetDateTime) -> [u8; 8] {
    // Flip the sign bit so that byte order equals time order, before 1970 too.
    ((at.unix_timestamp() as u64) ^ (1 << 63)).to_be_bytes()
}

fn successors_prefix(old: &Serial) -> Vec<u8> {
    let bytes = old.as_bytes();
    let mut key = Vec::with_capacity(1 + bytes.len() + 8 + 20);
    // Serials are at most 20 bytes (RFC 5280), so one length byte keeps prefixes unambiguous.
    key.push(bytes.len() as u8);
    key.extend_from_slice(bytes);
    key
}

fn successor_key(old: &Serial, new: &CertificateRecord) -> Vec<u8> {
    let mut key = successors_prefix(old);
    key.extend_from_slice(&expiry_prefix(new.issued_at));
    key.extend_from_slice(new.serial.as_bytes());
    key
}

/// The fixed-length prefix of one lineage: a hash, because requesters and names are free text
/// and a set of names has no natural byte order without normalising it first.
fn lineage_prefix(lineage: &Lineage) -> Vec<u8> {
    let mut names: Vec<Vec<u8>> = lineage.identifiers.iter().map(identifier_prefix).collect();
    names.sort();
    names.dedup();
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let parts = [
        lineage.requester.as_str().as_bytes(),
        lineage.endpoint.as_str().as_bytes(),
        lineage.protocol.as_str().as_bytes(),
    ];
    for part in parts.into_iter().chain(names.iter().map(Vec::as_slice)) {
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part);
    }
    context.finish().as_ref().to_vec()
}

fn lineage_key(record: &CertificateRecord) -> Vec<u8> {
    let mut key = lineage_prefix(&Lineage::of(record));
    // Inverted so that ascending keys run newest first.
    let issued_nanos = u64::try_from(record.issued_at.unix_timestamp_nanos()).unwrap_or(0);
    key.extend_from_slice(&(u64::MAX - issued_nanos).to_be_bytes());
    key.extend_from_slice(record.serial.as_bytes());
    key
}

fn revoked_prefix(issuer: &certgate_core::Name) -> Vec<u8> {
    let mut key = issuer.as_str().as_bytes().to_vec();
    key.push(0);
    key
}

fn requester_prefix(requester: &RequesterId) -> Vec<u8> {
    let mut key = requester.as_str().as_bytes().to_vec();
    key.push(0);
    key
}

fn identifier_prefix(identifier: &Identifier) -> Vec<u8> {
    let mut key = format!("{}:{}", identifier.kind(), identifier.to_string().to_ascii_lowercase()).into_bytes();
    key.push(0);
    key
}

fn with_serial(mut prefix: Vec<u8>, serial: &Serial) -> Vec<u8> {
    prefix.extend_from_slice(serial.as_bytes());
    prefix
}

#[async_trait]
impl CertificateStore for SledStore {
    async fn reserve_serial(&self, reservation: &SerialReservation) -> Result<(), StoreError> {
        let key = reservation.serial.as_bytes();
        let inner = &self.inner;
        // Journal first: if the process dies after the next line, the open-time repair finds
        // this entry and abandons the serial, so a reserved serial is never left unexplained.
        let journal_entry = Some(serde_json::to_vec(reservation)?);
        if inner
            .pending
            .compare_and_swap(key, None as Option<&[u8]>, journal_entry)?
            .is_err()
        {
            return Err(StoreError::Conflict("serial already used"));
        }
        if inner
            .serials
            .compare_and_swap(key, None as Option<&[u8]>, Some(SERIAL_RESERVED))?
            .is_err()
        {
            inner.pending.remove(key)?;
            return Err(StoreError::Conflict("serial already used"));
        }
        inner.durability.reserved();
        Ok(())
    }

    async fn abandon_reservation(&self, serial: &Serial, why: &str) -> Result<(), StoreError> {
        let key = serial.as_bytes();
        let inner = &self.inner;
        if inner.serials.get(key)?.as_deref() != Some(SERIAL_RESERVED) {
            return Err(StoreError::NotFound);
        }
        let reservation = inner.pending.get(key)?.ok_or(StoreError::NotFound)?;
        // A certificate already written for this serial is never abandoned: finish recording it.
        if let Some(record) = inner.certs.get(key)? {
            let completed = inner.complete(&serde_json::from_slice(&record)?);
            inner.durability.settled();
            completed?;
            return Err(StoreError::Conflict(
                "a certificate was already recorded for this serial",
            ));
        }
        inner.abandon(key, serde_json::from_slice(&reservation)?, why)?;
        inner.durability.settled();
        Ok(())
    }

    async fn record_issued(&self, record: &CertificateRecord) -> Result<(), StoreError> {
        let key = record.serial.as_bytes();
        let inner = &self.inner;
        match inner.serials.get(key)?.as_deref() {
            Some(SERIAL_RESERVED) => {}
            Some(SERIAL_ISSUED) => return Err(StoreError::Conflict("serial already has a certificate")),
            _ => return Err(StoreError::NotFound),
        }
        // The certificate first (compare-and-swap: one record per serial, even if two callers
        // race), then its indexes and serial state, and the journal entry last. A crash in
        // between leaves the journal entry, and the open-time repair completes the rest.
        if inner
            .certs
            .compare_and_swap(key, None as Option<&[u8]>, Some(serde_json::to_vec(record)?))?
            .is_err()
        {
            return Err(StoreError::Conflict("serial already has a certificate"));
        }
        let completed = inner.complete(record);
        inner.durability.settled();
        completed?;
        self.durable().await
    }

    async fn certificate(&self, serial: &Serial) -> Result<CertificateRecord, StoreError> {
        let value = self.inner.certs.get(serial.as_bytes())?.ok_or(StoreError::NotFound)?;
        Ok(serde_json::from_slice(&value)?)
    }

    async fn list_certificates(&self, query: &CertificateQuery) -> Result<CertificatePage, StoreError> {
        let inner = &self.inner;
        // The index, the key range, and where the serial starts in a key.
        let (tree, prefix, end, serial_at): (&sled::Tree, Vec<u8>, Option<Vec<u8>>, usize) = match &query.filter {
            CertificateFilter::All => (&inner.by_expiry, Vec::new(), None, 8),
            CertificateFilter::ExpiringBetween { from, to } => (
                &inner.by_expiry,
                expiry_prefix(*from).to_vec(),
                Some(expiry_prefix(*to).to_vec()),
                8,
            ),
            CertificateFilter::Requester(requester) => {
                let prefix = requester_prefix(requester);
                let at = prefix.len();
                (&inner.by_requester, prefix, None, at)
            }
            CertificateFilter::Identifier(identifier) => {
                let prefix = identifier_prefix(identifier);
                let at = prefix.len();
                (&inner.by_identifier, prefix, None, at)
            }
            CertificateFilter::Lineage(lineage) => {
                let prefix = lineage_prefix(lineage);
                let at = prefix.len() + 8;
                (&inner.by_lineage, prefix, None, at)
            }
        };
        let start = match &query.after {
            Some(cursor) => {
                let after = decode_cursor(cursor)?;
                if !after.starts_with(&prefix) && end.is_none() {
                    return Err(StoreError::Conflict("cursor does not belong to this query"));
                }
                Bound::Excluded(after)
            }
            None => Bound::Included(prefix.clone()),
        };
        let limit = query.limit.clamp(1, MAX_PAGE);
        let mut items = Vec::new();
        let mut last_key = None;
        for entry in tree.range((start, Bound::Unbounded)) {
            let (key, _) = entry?;
            let in_range = match &end {
                Some(end) => key.as_ref() < end.as_slice(),
                None => key.starts_with(&prefix),
            };
            if !in_range {
                last_key = None;
                break;
            }
            if items.len() == limit {
                break;
            }
            let Some(serial_bytes) = key.get(serial_at..) else {
                continue;
            };
            last_key = Some(key.to_vec());
            // An expiry entry whose certificate is gone was left by a retention sweep that
            // stopped halfway (it removes that entry last); the next sweep removes it.
            let Some(record) = inner.certs.get(serial_bytes)? else {
                continue;
            };
            items.push(serde_json::from_slice(&record)?);
        }
        let next = if items.len() == limit {
            last_key.map(|k| hex_key(&k))
        } else {
            None
        };
        Ok(CertificatePage { items, next })
    }

    async fn revoke(&self, serial: &Serial, revocation: &Revocation) -> Result<CertificateRecord, StoreError> {
        let key = serial.as_bytes();
        loop {
            let current = self.inner.certs.get(key)?.ok_or(StoreError::NotFound)?;
            let mut record: CertificateRecord = serde_json::from_slice(&current)?;
            if record.revocation.is_some() {
                return Err(StoreError::Conflict("certificate already revoked"));
            }
            // Index first: readers trust the record, so an entry left by a crash is harmless.
            self.inner
                .revoked
                .insert(with_serial(revoked_prefix(&record.issuer), serial), &[])?;
            record.revocation = Some(revocation.clone());
            let updated = serde_json::to_vec(&record)?;
            match self.inner.certs.compare_and_swap(key, Some(current), Some(updated))? {
                Ok(()) => {
                    self.durable().await?;
                    return Ok(record);
                }
                Err(_) => continue, // raced with another writer: re-read and decide again
            }
        }
    }

    async fn revoked(&self, issuer: &certgate_core::Name) -> Result<Vec<CertificateRecord>, StoreError> {
        let prefix = revoked_prefix(issuer);
        let mut records = Vec::new();
        for entry in self.inner.revoked.scan_prefix(&prefix) {
            let (key, _) = entry?;
            let Some(bytes) = self.inner.certs.get(&key[prefix.len()..])? else {
                continue;
            };
            let record: CertificateRecord = serde_json::from_slice(&bytes)?;
            if record.revocation.is_some() {
                records.push(record);
            }
        }
        Ok(records)
    }

    async fn successor(&self, serial: &Serial) -> Result<Option<CertificateRecord>, StoreError> {
        let prefix = successors_prefix(serial);
        let Some(entry) = self.inner.by_replaces.scan_prefix(&prefix).next_back() else {
            return Ok(None);
        };
        let (key, _) = entry?;
        let new_serial = &key[prefix.len() + 8..];
        match self.inner.certs.get(new_serial)? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Err(StoreError::Backend(format!(
                "successor index entry without certificate: {}",
                hex_key(new_serial)
            ))),
        }
    }

    async fn journal_status(&self) -> Result<JournalStatus, StoreError> {
        Ok(JournalStatus {
            certificates: self.inner.certs.len() as u64,
            reserved: self.inner.pending.len() as u64,
            abandoned: self.inner.abandoned.len() as u64,
            recovered_at_open: self.inner.recovered_at_open,
        })
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.durable().await
    }
}

#[async_trait]
impl crate::NonceStore for SledStore {
    async fn redeem_nonce(
        &self,
        id: &[u8],
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let expiry = expiry_prefix(expires_at);
        // At the sweep's one-second granularity: whatever a sweep may already have forgotten
        // is refused here as expired, so a sweep never reopens a nonce for a replay.
        if expiry <= expiry_prefix(now) {
            return Ok(false);
        }
        let mut key = Vec::with_capacity(expiry.len() + id.len());
        key.extend_from_slice(&expiry);
        key.extend_from_slice(id);
        // insert() is atomic and returns what was there: of two requests racing with one
        // nonce, only one finds nothing.
        Ok(self.inner.nonces.insert(key, &[])?.is_none())
    }

    async fn sweep_nonces(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let mut swept = 0;
        drain_below(&self.inner.nonces, &expiry_prefix(now), SWEEP_BATCH, |_| {
            swept += 1;
            Ok(())
        })
        .await?;
        Ok(swept)
    }
}

fn decode_cursor(cursor: &str) -> Result<Vec<u8>, StoreError> {
    // Slicing below is by byte: only ASCII input may reach it.
    if !cursor.is_ascii() || !cursor.len().is_multiple_of(2) || cursor.len() > 4096 {
        return Err(StoreError::Conflict("malformed cursor"));
    }
    (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&cursor[i..i + 2], 16).map_err(|_| StoreError::Conflict("malformed cursor")))
        .collect()
}

/// Group commit: writers note a sequence number after their write; one thread flushes sled
/// for everything written so far and wakes every writer the flush covered. Under load one
/// flush serves many requests; alone, a writer waits for exactly one flush.
#[derive(Debug)]
struct GroupCommit {
    db: sled::Db,
    written: AtomicU64,
    flush_count: AtomicU64,
    /// Serials reserved and not yet recorded or abandoned: issuances being signed right now,
    /// which will want a flush within a fraction of a millisecond.
    in_flight: AtomicU64,
    requests: Mutex<FlushRequests>,
    wake: Condvar,
    flushed: watch::Sender<FlushState>,
}

#[derive(Debug, Default)]
struct FlushRequests {
    requested: u64,
    stop: bool,
    /// The flusher is waiting on the condition variable (not flushing): only then does a
    /// writer need to wake it. Under load the flusher goes straight from one flush to the
    /// next, and writers skip the wake-up system call.
    idle: bool,
    /// The flusher is holding a flush back until in-flight issuances have been recorded.
    delaying: bool,
}

#[derive(Debug, Clone, Default)]
struct FlushState {
    flushed: u64,
    failed_upto: u64,
    error: Option<Arc<str>>,
}

impl GroupCommit {
    fn new(db: sled::Db) -> Self {
        Self {
            db,
            written: AtomicU64::new(0),
            flush_count: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            requests: Mutex::new(FlushRequests::default()),
            wake: Condvar::new(),
            flushed: watch::Sender::new(FlushState::default()),
        }
    }

    /// Call after a write has been applied; the returned number is covered by the next flush.
    fn mark_written(&self) -> u64 {
        self.written.fetch_add(1, Ordering::SeqCst) + 1
    }

    async fn wait_durable(&self, seq: u64) -> Result<(), StoreError> {
        {
            let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
            if requests.requested < seq {
                requests.requested = seq;
            }
            let last_in_flight = requests.delaying && self.in_flight.load(Ordering::SeqCst) == 0;
            if requests.idle || last_in_flight {
                self.wake.notify_one();
            }
        }
        let mut receiver = self.flushed.subscribe();
        let state = receiver
            .wait_for(|s| s.flushed >= seq || s.failed_upto >= seq)
            .await
            .map_err(|_| StoreError::Backend("store closed before flushing".into()))?
            .clone();
        if state.flushed >= seq {
            Ok(())
        } else {
            Err(StoreError::Backend(format!(
                "flush failed: {}",
                state.error.as_deref().unwrap_or("unknown error")
            )))
        }
    }

    fn stop(&self) {
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).stop = true;
        self.wake.notify_one();
    }

    /// Commit delay: when other issuances are being signed, they will ask for a flush within a
    /// fraction of a millisecond. Waiting for them (bounded by [`MAX_COMMIT_DELAY`]) lets one
    /// flush serve them all instead of each paying for its own. A lone writer never waits.
    fn delay_for_in_flight(&self) {
        if self.in_flight.load(Ordering::SeqCst) == 0 {
            return;
        }
        let deadline = std::time::Instant::now() + MAX_COMMIT_DELAY;
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        while self.in_flight.load(Ordering::SeqCst) > 0 && !requests.stop {
            let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) else {
                break;
            };
            requests.delaying = true;
            requests = self
                .wake
                .wait_timeout(requests, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            requests.delaying = false;
        }
    }

    fn reserved(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    fn settled(&self) {
        // Saturating: recovery-time records and foreign callers must not underflow it.
        let previous = self
            .in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        // The last in-flight issuance settled: a flusher holding a flush back for it may go.
        if previous == Ok(1) && self.requests.lock().unwrap_or_else(|p| p.into_inner()).delaying {
            self.wake.notify_one();
        }
    }

    fn flushes(&self) -> u64 {
        self.flush_count.load(Ordering::Relaxed)
    }

    fn run_flusher(&self) {
        let mut done = 0;
        loop {
            {
                let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
                while requests.requested <= done && !requests.stop {
                    requests.idle = true;
                    requests = self.wake.wait(requests).unwrap_or_else(|p| p.into_inner());
                    requests.idle = false;
                }
                if requests.stop && requests.requested <= done {
                    return;
                }
            }
            self.delay_for_in_flight();
            // Everything marked written before this load was applied before it, so this
            // flush covers it.
            let target = self.written.load(Ordering::SeqCst);
            self.flush_count.fetch_add(1, Ordering::Relaxed);
            match self.db.flush() {
                Ok(_) => self.flushed.send_modify(|s| s.flushed = target),
                Err(e) => {
                    tracing::error!(error = %e, "store flush failed");
                    let error: Arc<str> = Arc::from(e.to_string());
                    self.flushed.send_modify(|s| {
                        s.failed_upto = target;
                        s.error = Some(error);
                    });
                }
            }
            done = target;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use certgate_core::{DnsName, KeyKind, Name, Protocol};

    use super::*;

    fn record(serial: &Serial) -> CertificateRecord {
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        CertificateRecord {
            serial: serial.clone(),
            issuer: Name::new("default").unwrap(),
            endpoint: Name::new("default").unwrap(),
            protocol: Protocol::Est,
            requester: RequesterId::new("est-user:alice").unwrap(),
            profile: Name::new("device").unwrap(),
            owner_labels: BTreeMap::new(),
            subject: "CN=dev".into(),
            identifiers: vec![Identifier::Dns(DnsName::new("dev.example.com").unwrap())],
            key: KeyKind::EcP256,
            not_before: now,
            not_after: now + time::Duration::days(30),
            issued_at: now,
            replaces: None,
            revocation: None,
            der: vec![1, 2, 3],
        }
    }

    /// Reserves the record's serial and records it, as an issuance does.
    async fn issue(store: &SledStore, rec: &CertificateRecord) {
        let reservation = SerialReservation {
            serial: rec.serial.clone(),
            issuer: rec.issuer.clone(),
            endpoint: rec.endpoint.clone(),
            reserved_at: rec.issued_at,
        };
        store.reserve_serial(&reservation).await.unwrap();
        store.record_issued(rec).await.unwrap();
    }

    /// A crash after the certificate was written but before its indexes, serial state and
    /// journal removal: opening completes them.
    #[tokio::test]
    async fn open_completes_a_half_recorded_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let serial = Serial::from_random([3; 16]);
        let rec = record(&serial);
        {
            let store = SledStore::open(dir.path()).unwrap();
            let reservation = SerialReservation {
                serial: serial.clone(),
                issuer: rec.issuer.clone(),
                endpoint: rec.endpoint.clone(),
                reserved_at: rec.issued_at,
            };
            store.reserve_serial(&reservation).await.unwrap();
            // Only the first step of record_issued, as if the process died right after it.
            store
                .inner
                .certs
                .insert(serial.as_bytes(), serde_json::to_vec(&rec).unwrap())
                .unwrap();
            store.inner.db.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        let status = store.journal_status().await.unwrap();
        assert_eq!(
            (
                status.certificates,
                status.reserved,
                status.abandoned,
                status.recovered_at_open
            ),
            (1, 0, 0, 0)
        );
        let by_name = store
            .list_certificates(&CertificateQuery {
                filter: CertificateFilter::Identifier(rec.identifiers[0].clone()),
                limit: 10,
                after: None,
            })
            .await
            .unwrap();
        assert_eq!(by_name.items, vec![rec.clone()], "index completed");
        let by_requester = store
            .list_certificates(&CertificateQuery {
                filter: CertificateFilter::Requester(rec.requester.clone()),
                limit: 10,
                after: None,
            })
            .await
            .unwrap();
        assert_eq!(by_requester.items.len(), 1);
        assert_eq!(
            store.inner.serials.get(serial.as_bytes()).unwrap().as_deref(),
            Some(SERIAL_ISSUED)
        );
        let again = SerialReservation {
            serial: serial.clone(),
            issuer: rec.issuer,
            endpoint: rec.endpoint,
            reserved_at: rec.issued_at,
        };
        assert!(matches!(
            store.reserve_serial(&again).await,
            Err(StoreError::Conflict(_))
        ));
    }

    /// A database written before the lineage index existed gets it built once, at open.
    #[tokio::test]
    async fn open_builds_the_lineage_index_of_an_older_database() {
        let dir = tempfile::tempdir().unwrap();
        let records: Vec<CertificateRecord> = (1..=3u8)
            .map(|n| {
                let mut rec = record(&Serial::from_random([n; 16]));
                rec.issued_at += time::Duration::seconds(n.into());
                rec
            })
            .collect();
        {
            let store = SledStore::open(dir.path()).unwrap();
            for rec in &records {
                issue(&store, rec).await;
            }
            // As an older version left it: no lineage entries, no marker.
            store.inner.by_lineage.clear().unwrap();
            store.inner.store_meta.clear().unwrap();
            store.inner.db.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        let lineage = crate::list_all(&store, CertificateFilter::Lineage(Lineage::of(&records[0])))
            .await
            .unwrap();
        let newest_first: Vec<CertificateRecord> = records.iter().rev().cloned().collect();
        assert_eq!(lineage, newest_first);
        assert_eq!(store.inner.by_lineage.len(), 3);
        drop(store);
        // Built once: the marker stops a second build (an entry removed now stays removed).
        let store = SledStore::open(dir.path()).unwrap();
        let first = store.inner.by_lineage.first().unwrap().unwrap().0;
        store.inner.by_lineage.remove(first).unwrap();
        store.inner.db.flush().unwrap();
        drop(store);
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.inner.by_lineage.len(), 2);
    }

    /// A backlog larger than one batch is swept in one call, batch after batch.
    #[tokio::test]
    async fn a_sweep_takes_every_batch_of_a_backlog() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let expired = OffsetDateTime::now_utc() - time::Duration::days(40);
        for n in 1..=7u8 {
            let mut rec = record(&Serial::from_random([n; 16]));
            rec.not_before = expired - time::Duration::days(30);
            rec.not_after = expired;
            issue(&store, &rec).await;
        }
        let cutoff = OffsetDateTime::now_utc() - time::Duration::days(30);
        assert_eq!(store.sweep_expired_certificates_in_batches(cutoff, 3).await.unwrap(), 7);
        assert_eq!(store.inner.certs.len(), 0);
        assert_eq!(store.inner.by_expiry.len(), 0);
    }
}
