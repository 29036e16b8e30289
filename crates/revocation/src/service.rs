//! The service: configured issuers with their CRL state, OCSP signer and hashes, the store,
//! the clock and the revocation generation. CRL logic is in `crl.rs`, OCSP in `responder.rs`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use aws_lc_rs::digest;
use der::{Decode, Encode};
use time::{Duration, OffsetDateTime};
use tokio::sync::watch;

use crate::RevocationError;
use crate::cache::ResponseCache;
use crate::crl::CurrentCrl;
use crate::request::{CertIdHash, ParsedCertId};
use certgate_core::{Clock, Name};
use certgate_signer::{Issuer, OCSP_SIGNER_LIFETIME, OcspSigner};
use certgate_store::CertificateStore;

/// How CRLs and OCSP responses are made. Every field has a default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationSettings {
    /// nextUpdate − thisUpdate of a CRL (default 24 hours). A CRL is regenerated once half of
    /// it has passed, and after every revocation.
    pub crl_validity: Duration,
    /// nextUpdate − thisUpdate of an OCSP response (default 1 hour). Cached responses are
    /// served until a tenth of it remains.
    pub ocsp_validity: Duration,
    /// Validity of a delegated OCSP signing certificate (default 30 days, never beyond the
    /// issuer's); rotated when a third of it remains. Must be at least three times
    /// `ocsp_validity`, so every response's signer outlives the response.
    pub ocsp_signer_lifetime: Duration,
    /// How many OCSP responses are cached (default 10 000; 0 turns the cache off).
    pub ocsp_cache_entries: usize,
    /// The public base URL the certificates' CRL distribution points were built from (the
    /// authority's `public_base_url`). When set, CRLs carry an issuing distribution point
    /// `{base}/crl/{issuer}.crl`. Leave it unset if the base URL ever changed: a relying party
    /// refuses a CRL whose IDP differs from the certificate's distribution point.
    pub crl_idp_base_url: Option<String>,
}

impl Default for RevocationSettings {
    fn default() -> Self {
        Self {
            crl_validity: Duration::hours(24),
            ocsp_validity: Duration::hours(1),
            ocsp_signer_lifetime: OCSP_SIGNER_LIFETIME,
            ocsp_cache_entries: 10_000,
            crl_idp_base_url: None,
        }
    }
}

/// What the service works on.
pub struct RevocationDeps {
    /// The issuers to serve, each by its name.
    pub issuers: Vec<Arc<Issuer>>,
    /// The certificate store (read only).
    pub store: Arc<dyn CertificateStore>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Where the delegated OCSP signers live: `{ocsp_signer_dir}/{issuer}/ocsp-signer.{key,crt}`
    /// (the daemon passes `<data-dir>/ocsp`).
    pub ocsp_signer_dir: PathBuf,
    /// A value that changes after every revocation (the daemon bumps it once the store has
    /// the revocation). A change makes the CRLs stale and empties the OCSP cache.
    pub revocations: watch::Receiver<u64>,
}

/// Counters, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RevocationStats {
    /// OCSP responses signed.
    pub ocsp_signatures: u64,
    /// OCSP requests answered from the cache.
    pub ocsp_cache_hits: u64,
    /// CRLs generated.
    pub crl_generations: u64,
    /// OCSP signers rotated after start.
    pub signer_rotations: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub ocsp_signatures: AtomicU64,
    pub ocsp_cache_hits: AtomicU64,
    pub crl_generations: AtomicU64,
    pub signer_rotations: AtomicU64,
}

/// The issuer's subject and key hashed for CertID matching, with both supported algorithms.
#[derive(Debug)]
pub(crate) struct IssuerHashes {
    sha1_name: Vec<u8>,
    sha1_key: Vec<u8>,
    sha256_name: Vec<u8>,
    sha256_key: Vec<u8>,
}

impl IssuerHashes {
    fn new(issuer: &Issuer) -> Result<Self, RevocationError> {
        let cert = x509_cert::Certificate::from_der(issuer.certificate_der())
            .map_err(|e| RevocationError::Config(format!("issuer {}: certificate: {e}", issuer.name())))?;
        let name = cert.tbs_certificate().subject().to_der()?;
        let key = cert
            .tbs_certificate()
            .subject_public_key_info()
            .subject_public_key
            .raw_bytes();
        let hash = |alg, data: &[u8]| digest::digest(alg, data).as_ref().to_vec();
        Ok(Self {
            sha1_name: hash(&digest::SHA1_FOR_LEGACY_USE_ONLY, &name),
            sha1_key: hash(&digest::SHA1_FOR_LEGACY_USE_ONLY, key),
            sha256_name: hash(&digest::SHA256, &name),
            sha256_key: hash(&digest::SHA256, key),
        })
    }

    pub fn matches(&self, id: &ParsedCertId) -> bool {
        let (name, key) = match id.hash {
            Some(CertIdHash::Sha1) => (&self.sha1_name, &self.sha1_key),
            Some(CertIdHash::Sha256) => (&self.sha256_name, &self.sha256_key),
            None => return false,
        };
        id.issuer_name_hash == *name && id.issuer_key_hash == *key
    }
}

/// One issuer's state.
pub(crate) struct IssuerState {
    pub issuer: Arc<Issuer>,
    pub hashes: IssuerHashes,
    /// The last good CRL.
    pub crl: RwLock<Option<Arc<CurrentCrl>>>,
    /// Held while a CRL is made; holds the last cRLNumber used.
    pub crl_regeneration: tokio::sync::Mutex<u128>,
    pub signer: RwLock<Arc<OcspSigner>>,
    /// Held while the signer rotates.
    pub signer_rotation: tokio::sync::Mutex<()>,
    pub signer_dir: PathBuf,
}

/// CRLs and OCSP for every configured issuer. Cheap to share behind an `Arc`; every method
/// takes `&self`.
pub struct RevocationService {
    pub(crate) issuers: Vec<IssuerState>,
    pub(crate) by_name: HashMap<Name, usize>,
    pub(crate) store: Arc<dyn CertificateStore>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) settings: RevocationSettings,
    pub(crate) revocations: watch::Receiver<u64>,
    pub(crate) cache: Mutex<ResponseCache>,
    pub(crate) counters: Counters,
}

impl std::fmt::Debug for RevocationService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationService")
            .field("issuers", &self.by_name.keys().collect::<Vec<_>>())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl RevocationService {
    /// Checks the settings, and loads or creates each issuer's OCSP signer (file I/O and,
    /// for a new signer, one CA signature: call it at start-up, or on a blocking thread).
    /// CRLs are made on first use, or by [`RevocationService::refresh`].
    pub fn new(deps: RevocationDeps, settings: RevocationSettings) -> Result<Self, RevocationError> {
        if settings.crl_validity < Duration::minutes(2) {
            return Err(RevocationError::Config(
                "crl_validity must be at least 2 minutes".into(),
            ));
        }
        if settings.ocsp_validity < Duration::minutes(1) {
            return Err(RevocationError::Config(
                "ocsp_validity must be at least a minute".into(),
            ));
        }
        if settings.ocsp_signer_lifetime < settings.ocsp_validity * 3 {
            return Err(RevocationError::Config(
                "ocsp_signer_lifetime must be at least three times ocsp_validity".into(),
            ));
        }
        let now = deps.clock.now();
        let mut issuers = Vec::with_capacity(deps.issuers.len());
        let mut by_name = HashMap::new();
        for issuer in deps.issuers {
            let name = issuer.name().clone();
            if by_name.insert(name.clone(), issuers.len()).is_some() {
                return Err(RevocationError::Config(format!("issuer {name} is listed twice")));
            }
            let signer_dir = deps.ocsp_signer_dir.join(name.as_str());
            let signer = OcspSigner::load_or_create(&signer_dir, &issuer, now, settings.ocsp_signer_lifetime)?;
            issuers.push(IssuerState {
                hashes: IssuerHashes::new(&issuer)?,
                issuer,
                crl: RwLock::new(None),
                crl_regeneration: tokio::sync::Mutex::new(0),
                signer: RwLock::new(Arc::new(signer)),
                signer_rotation: tokio::sync::Mutex::new(()),
                signer_dir,
            });
        }
        Ok(Self {
            issuers,
            by_name,
            store: deps.store,
            clock: deps.clock,
            cache: Mutex::new(ResponseCache::new(settings.ocsp_cache_entries)),
            settings,
            revocations: deps.revocations,
            counters: Counters::default(),
        })
    }

    /// The settings in force.
    pub fn settings(&self) -> &RevocationSettings {
        &self.settings
    }

    /// The names of the served issuers.
    pub fn issuer_names(&self) -> impl Iterator<Item = &Name> {
        self.issuers.iter().map(|s| s.issuer.name())
    }

    /// The current delegated OCSP signing certificate of `issuer`, DER.
    pub fn ocsp_signer_certificate(&self, issuer: &Name) -> Option<Vec<u8>> {
        let state = self.state(issuer)?;
        Some(read(&state.signer).certificate_der().to_vec())
    }

    /// Counters since start.
    pub fn stats(&self) -> RevocationStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RevocationStats {
            ocsp_signatures: load(&self.counters.ocsp_signatures),
            ocsp_cache_hits: load(&self.counters.ocsp_cache_hits),
            crl_generations: load(&self.counters.crl_generations),
            signer_rotations: load(&self.counters.signer_rotations),
        }
    }

    /// Whether [`RevocationService::refresh`] has work: a CRL missing or stale (a revocation
    /// since, or half its validity passed) or an OCSP signer due for rotation.
    pub fn refresh_due(&self, now: OffsetDateTime) -> bool {
        let generation = self.generation();
        self.issuers
            .iter()
            .any(|s| !self.crl_fresh(s, now, generation) || read(&s.signer).needs_rotation(now))
    }

    /// Regenerates stale CRLs, rotates due OCSP signers and drops expired cached responses.
    /// The daemon calls it from a timer (every minute, say) and once at start-up. Every issuer
    /// is tried; the first failure is returned.
    pub async fn refresh(&self, now: OffsetDateTime) -> Result<(), RevocationError> {
        let mut first_error = None;
        for state in &self.issuers {
            if let Err(error) = self.refresh_crl(state, now).await {
                tracing::error!(issuer = %state.issuer.name(), %error, "CRL regeneration failed");
                first_error.get_or_insert(error);
            }
            if let Err(error) = self.signer(state, now).await {
                tracing::error!(issuer = %state.issuer.name(), %error, "OCSP signer rotation failed");
                first_error.get_or_insert(error);
            }
        }
        lock(&self.cache).sweep(now);
        first_error.map_or(Ok(()), Err)
    }

    pub(crate) fn state(&self, name: &Name) -> Option<&IssuerState> {
        self.by_name.get(name).and_then(|i| self.issuers.get(*i))
    }

    pub(crate) fn generation(&self) -> u64 {
        *self.revocations.borrow()
    }

    pub(crate) fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Reads a lock, recovering from poisoning: the guarded values are replaced whole, so a
/// panicking writer cannot leave them half-written.
pub(crate) fn read<T: Clone>(lock: &RwLock<T>) -> T {
    lock.read().unwrap_or_else(|p| p.into_inner()).clone()
}

pub(crate) fn write<T>(lock: &RwLock<T>, value: T) {
    *lock.write().unwrap_or_else(|p| p.into_inner()) = value;
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
