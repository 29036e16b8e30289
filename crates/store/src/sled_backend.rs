//! The sled backend: one tree per entity, explicit index trees, multi-tree transactions
//! where an index changes, and group commit for durability.

use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use certgate_core::{Identifier, RequesterId, Serial};
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::{
    CertificateFilter, CertificatePage, CertificateQuery, CertificateRecord, CertificateStore, JournalStatus,
    Revocation, SerialReservation, StoreError,
};

const SERIAL_RESERVED: &[u8] = b"R";
const SERIAL_ISSUED: &[u8] = b"I";
const SERIAL_ABANDONED: &[u8] = b"A";
const MAX_PAGE: usize = 1000;

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
    durability: Arc<GroupCommit>,
    flusher: Mutex<Option<JoinHandle<()>>>,
    recovered_at_open: u64,
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
        let db = sled::Config::new().path(dir).open()?;
        let tree = |name: &str| db.open_tree(name);
        let durability = Arc::new(GroupCommit::new(db.clone()));
        let flusher = {
            let durability = Arc::clone(&durability);
            std::thread::Builder::new()
                .name("certgate-store-flush".into())
                .spawn(move || durability.run_flusher())
                .map_err(|e| StoreError::Backend(format!("cannot start flusher thread: {e}")))?
        };
        let mut inner = Inner {
            serials: tree("serials")?,
            pending: tree("pending")?,
            abandoned: tree("abandoned")?,
            certs: tree("certs")?,
            by_expiry: tree("certs_by_expiry")?,
            by_requester: tree("certs_by_requester")?,
            by_identifier: tree("certs_by_identifier")?,
            db,
            durability,
            flusher: Mutex::new(Some(flusher)),
            recovered_at_open: 0,
        };
        inner.recovered_at_open = inner.recover()?;
        Ok(Self { inner: Arc::new(inner) })
    }

    async fn durable(&self) -> Result<(), StoreError> {
        let seq = self.inner.durability.mark_written();
        self.inner.durability.wait_durable(seq).await
    }
}

impl Inner {
    fn recover(&self) -> Result<u64, StoreError> {
        let mut recovered = 0;
        for entry in self.pending.iter() {
            let (serial, reservation) = entry?;
            let reservation: SerialReservation = serde_json::from_slice(&reservation)?;
            let abandoned = serde_json::to_vec(&AbandonedSerial {
                reservation,
                why: CRASH_REASON.to_owned(),
                at: OffsetDateTime::now_utc(),
            })?;
            (&self.serials, &self.pending, &self.abandoned, &self.certs)
                .transaction(|(serials, pending, abandoned_tree, certs)| {
                    pending.remove(&serial)?;
                    // A recorded certificate removes its reservation in the same transaction,
                    // so this is only a guard against a journal written by an older version.
                    if certs.get(&serial)?.is_none() {
                        serials.insert(&serial, SERIAL_ABANDONED)?;
                        abandoned_tree.insert(&serial, abandoned.as_slice())?;
                    }
                    Ok::<_, ConflictableTransactionError<StoreError>>(())
                })
                .map_err(tx_error)?;
            tracing::warn!(serial = %hex_key(&serial), "abandoned a serial reserved before a crash");
            recovered += 1;
        }
        if recovered > 0 {
            self.db.flush()?;
        }
        Ok(recovered)
    }
}

fn tx_error(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => e.into(),
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

fn expiry_prefix(at: OffsetDateTime) -> [u8; 8] {
    // Flip the sign bit so that byte order equals time order, before 1970 too.
    ((at.unix_timestamp() as u64) ^ (1 << 63)).to_be_bytes()
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
        let value = serde_json::to_vec(reservation)?;
        let inner = &self.inner;
        (&inner.serials, &inner.pending)
            .transaction(|(serials, pending)| {
                if serials.get(key)?.is_some() {
                    return Err(ConflictableTransactionError::Abort(StoreError::Conflict(
                        "serial already used",
                    )));
                }
                serials.insert(key, SERIAL_RESERVED)?;
                pending.insert(key, value.as_slice())?;
                Ok(())
            })
            .map_err(tx_error)
    }

    async fn abandon_reservation(&self, serial: &Serial, why: &str) -> Result<(), StoreError> {
        let key = serial.as_bytes();
        let inner = &self.inner;
        (&inner.serials, &inner.pending, &inner.abandoned)
            .transaction(|(serials, pending, abandoned)| {
                let Some(reservation) = pending.remove(key)? else {
                    return Err(ConflictableTransactionError::Abort(StoreError::NotFound));
                };
                let reservation: SerialReservation =
                    serde_json::from_slice(&reservation).map_err(|e| ConflictableTransactionError::Abort(e.into()))?;
                let record = AbandonedSerial {
                    reservation,
                    why: why.to_owned(),
                    at: OffsetDateTime::now_utc(),
                };
                let record = serde_json::to_vec(&record).map_err(|e| ConflictableTransactionError::Abort(e.into()))?;
                serials.insert(key, SERIAL_ABANDONED)?;
                abandoned.insert(key, record)?;
                Ok(())
            })
            .map_err(tx_error)
    }

    async fn record_issued(&self, record: &CertificateRecord) -> Result<(), StoreError> {
        let key = record.serial.as_bytes();
        let value = serde_json::to_vec(record)?;
        let expiry = expiry_key(record);
        let requester = with_serial(requester_prefix(&record.requester), &record.serial);
        let identifiers: Vec<Vec<u8>> = record
            .identifiers
            .iter()
            .map(|id| with_serial(identifier_prefix(id), &record.serial))
            .collect();
        let inner = &self.inner;
        (
            &inner.serials,
            &inner.pending,
            &inner.certs,
            &inner.by_expiry,
            &inner.by_requester,
            &inner.by_identifier,
        )
            .transaction(|(serials, pending, certs, by_expiry, by_requester, by_identifier)| {
                match serials.get(key)?.as_deref() {
                    Some(SERIAL_RESERVED) => {}
                    Some(SERIAL_ISSUED) => {
                        return Err(ConflictableTransactionError::Abort(StoreError::Conflict(
                            "serial already has a certificate",
                        )));
                    }
                    _ => return Err(ConflictableTransactionError::Abort(StoreError::NotFound)),
                }
                pending.remove(key)?;
                serials.insert(key, SERIAL_ISSUED)?;
                certs.insert(key, value.as_slice())?;
                by_expiry.insert(expiry.as_slice(), &[])?;
                by_requester.insert(requester.as_slice(), &[])?;
                for identifier in &identifiers {
                    by_identifier.insert(identifier.as_slice(), &[])?;
                }
                Ok(())
            })
            .map_err(tx_error)?;
        self.durable().await
    }

    async fn certificate(&self, serial: &Serial) -> Result<CertificateRecord, StoreError> {
        let value = self.inner.certs.get(serial.as_bytes())?.ok_or(StoreError::NotFound)?;
        Ok(serde_json::from_slice(&value)?)
    }

    async fn list_certificates(&self, query: &CertificateQuery) -> Result<CertificatePage, StoreError> {
        let inner = &self.inner;
        let (tree, prefix, end): (&sled::Tree, Vec<u8>, Option<Vec<u8>>) = match &query.filter {
            CertificateFilter::All => (&inner.by_expiry, Vec::new(), None),
            CertificateFilter::ExpiringBetween { from, to } => (
                &inner.by_expiry,
                expiry_prefix(*from).to_vec(),
                Some(expiry_prefix(*to).to_vec()),
            ),
            CertificateFilter::Requester(requester) => (&inner.by_requester, requester_prefix(requester), None),
            CertificateFilter::Identifier(identifier) => (&inner.by_identifier, identifier_prefix(identifier), None),
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
        let ranged_by_time = end.is_some();
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
            let serial_bytes = if ranged_by_time || prefix.is_empty() {
                &key[8..]
            } else {
                &key[prefix.len()..]
            };
            let record = inner.certs.get(serial_bytes)?.ok_or_else(|| {
                StoreError::Backend(format!("index entry without certificate: {}", hex_key(serial_bytes)))
            })?;
            items.push(serde_json::from_slice(&record)?);
            last_key = Some(key.to_vec());
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
    requests: Mutex<FlushRequests>,
    wake: Condvar,
    flushed: watch::Sender<FlushState>,
}

#[derive(Debug, Default)]
struct FlushRequests {
    requested: u64,
    stop: bool,
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

    fn run_flusher(&self) {
        let mut done = 0;
        loop {
            {
                let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
                while requests.requested <= done && !requests.stop {
                    requests = self.wake.wait(requests).unwrap_or_else(|p| p.into_inner());
                }
                if requests.stop && requests.requested <= done {
                    return;
                }
            }
            // Everything marked written before this load was applied before it, so this
            // flush covers it.
            let target = self.written.load(Ordering::SeqCst);
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
