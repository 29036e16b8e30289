use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use certgate_core::{
    Clock, Identifier, Name, ParsedCsr, Protocol, RequesterId, RevocationReason, Serial, SubjectAttribute,
};
use certgate_signer::{Issuer, IssuerUrls, LeafSpec, Usage};
use certgate_store::audit::{AuditEvent, AuditKind, AuditLog};
use certgate_store::{
    CertificateFilter, CertificateQuery, CertificateRecord, CertificateStore, Lineage, Revocation, SerialReservation,
    StoreError,
};
use time::{Duration, OffsetDateTime};

use crate::certified::{identifiers_to_certify, subject_text, subject_to_certify};
use crate::{AdmissionGate, AuthorityError, EndpointPolicy, Profile};

/// How far notBefore is backdated, to tolerate client clock skew.
const BACKDATE: Duration = Duration::minutes(1);
/// How far in the past a requested notBefore may lie.
const MAX_NOT_BEFORE_PAST: Duration = Duration::minutes(5);
/// Attempts to find an unused serial (a collision of 126 random bits means a broken RNG).
const SERIAL_ATTEMPTS: usize = 3;

/// Everything the authority is built from.
#[derive(Debug)]
pub struct AuthorityConfig {
    /// Loaded issuers.
    pub issuers: Vec<Arc<Issuer>>,
    /// Certificate profiles.
    pub profiles: Vec<Profile>,
    /// Endpoints.
    pub endpoints: Vec<EndpointPolicy>,
    /// The public base URL certificates point at for CRLs, OCSP and CA certificates, e.g.
    /// `http://127.0.0.1:8080`; None leaves those extensions out.
    pub public_base_url: Option<String>,
}

/// A request for a certificate, already authenticated by the protocol that received it.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    /// The protocol of the endpoint.
    pub protocol: Protocol,
    /// The endpoint's name.
    pub endpoint: Name,
    /// The parsed, signature-checked CSR.
    pub csr: ParsedCsr,
    /// Who asked.
    pub requester: RequesterId,
    /// A profile other than the endpoint's default.
    pub profile: Option<Name>,
    /// A requested notBefore.
    pub not_before: Option<OffsetDateTime>,
    /// A requested notAfter.
    pub not_after: Option<OffsetDateTime>,
    /// The certificate this one renews.
    pub replaces: Option<Serial>,
    /// Labels from the requester (merged over the endpoint's).
    pub owner_labels: BTreeMap<String, String>,
}

impl IssueRequest {
    /// A request with no options: default profile and validity.
    pub fn new(protocol: Protocol, endpoint: Name, csr: ParsedCsr, requester: RequesterId) -> Self {
        Self {
            protocol,
            endpoint,
            csr,
            requester,
            profile: None,
            not_before: None,
            not_after: None,
            replaces: None,
            owner_labels: BTreeMap::new(),
        }
    }
}

/// Abandons a reserved serial unless disarmed; on drop (a cancelled issuance) it does so in a
/// spawned task.
struct ReservationGuard {
    store: Arc<dyn CertificateStore>,
    serial: Option<Serial>,
}

impl ReservationGuard {
    async fn abandon(&mut self, why: &str) {
        if let Some(serial) = self.serial.take()
            && let Err(e) = self.store.abandon_reservation(&serial, why).await
        {
            tracing::warn!(%serial, error = %e, "could not abandon a reserved serial");
        }
    }

    fn disarm(&mut self) {
        self.serial = None;
    }
}

impl Drop for ReservationGuard {
    fn drop(&mut self) {
        let Some(serial) = self.serial.take() else { return };
        let store = Arc::clone(&self.store);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = store.abandon_reservation(&serial, "issuance cancelled").await {
                        tracing::warn!(%serial, error = %e, "could not abandon the serial of a cancelled issuance");
                    }
                });
            }
            // No runtime: the journal repair at the next open resolves it.
            Err(_) => {
                tracing::warn!(%serial, "issuance cancelled outside a runtime; the serial is resolved at next open")
            }
        }
    }
}

/// An issued certificate, already durable in the store.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The stored record (with the leaf's DER).
    pub record: CertificateRecord,
    /// Leaf first, then the chain up to (not including) the root, DER.
    pub chain: Vec<Vec<u8>>,
}

impl Issued {
    /// The chain as PEM, leaf first (`application/pem-certificate-chain`).
    pub fn chain_pem(&self) -> String {
        certgate_signer::certificates_to_pem(self.chain.iter().map(Vec::as_slice))
    }
}

/// What `decide` settled for one request.
struct Decision<'a> {
    endpoint: &'a EndpointPolicy,
    profile: &'a Profile,
    entry: &'a IssuerEntry,
    identifiers: Vec<Identifier>,
    subject: Vec<SubjectAttribute>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

struct IssuerEntry {
    issuer: Arc<Issuer>,
    urls: IssuerUrls,
}

/// The authority. Cheap to share behind an `Arc`; no global lock on the request path.
pub struct Authority {
    issuers: HashMap<Name, IssuerEntry>,
    profiles: HashMap<Name, Profile>,
    endpoints: HashMap<(Protocol, Name), EndpointPolicy>,
    store: Arc<dyn CertificateStore>,
    clock: Arc<dyn Clock>,
    /// Bumped after every revocation, so CRLs and cached OCSP answers know they are stale.
    revocations: tokio::sync::watch::Sender<u64>,
    /// Where issuances and revocations are recorded, hash-chained.
    audit: Option<Arc<dyn AuditLog>>,
    /// Where issuance results and revocations are counted.
    pub(crate) metrics: Option<Arc<certgate_metrics::Metrics>>,
    /// Whether new issuance is admitted (`admission`).
    pub(crate) admission: AdmissionGate,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("issuers", &self.issuers.keys().collect::<Vec<_>>())
            .field("endpoints", &self.endpoints.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// Builds an authority, checking that every endpoint names an existing issuer and profiles.
    pub fn new(
        config: AuthorityConfig,
        store: Arc<dyn CertificateStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, AuthorityError> {
        let base = config
            .public_base_url
            .as_deref()
            .map(|b| b.trim_end_matches('/').to_owned());
        let issuers: HashMap<Name, IssuerEntry> = config
            .issuers
            .into_iter()
            .map(|issuer| {
                let name = issuer.name().clone();
                let urls = match &base {
                    Some(base) => IssuerUrls {
                        crl: Some(format!("{base}/crl/{name}.crl")),
                        ocsp: Some(format!("{base}/ocsp/{name}")),
                        ca_issuers: Some(format!("{base}/ca/{name}.crt")),
                    },
                    None => IssuerUrls::default(),
                };
                (name, IssuerEntry { issuer, urls })
            })
            .collect();
        let profiles: HashMap<Name, Profile> = config.profiles.into_iter().map(|p| (p.name.clone(), p)).collect();
        for profile in profiles.values() {
            if profile.default_validity > profile.max_validity || profile.default_validity <= Duration::ZERO {
                return Err(AuthorityError::Config(format!(
                    "profile {}: default validity must be positive and at most the maximum",
                    profile.name
                )));
            }
        }
        let mut endpoints = HashMap::new();
        for endpoint in config.endpoints {
            let id = format!("{} endpoint {}", endpoint.protocol, endpoint.name);
            if !issuers.contains_key(&endpoint.issuer) {
                return Err(AuthorityError::Config(format!(
                    "{id}: unknown issuer {}",
                    endpoint.issuer
                )));
            }
            if endpoint.profiles.is_empty() {
                return Err(AuthorityError::Config(format!("{id}: names no profile")));
            }
            if let Some(missing) = endpoint.profiles.iter().find(|p| !profiles.contains_key(*p)) {
                return Err(AuthorityError::Config(format!("{id}: unknown profile {missing}")));
            }
            let key = (endpoint.protocol, endpoint.name.clone());
            if endpoints.insert(key, endpoint).is_some() {
                return Err(AuthorityError::Config(format!("{id} is defined twice")));
            }
        }
        Ok(Self {
            issuers,
            profiles,
            endpoints,
            store,
            clock,
            revocations: tokio::sync::watch::Sender::new(0),
            audit: None,
            metrics: None,
            admission: AdmissionGate::new(),
        })
    }

    /// Counts issuance results and revocations in `metrics` from now on.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<certgate_metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Reads admission of new issuance from `gate` (shared with whoever opens and closes it).
    #[must_use]
    pub fn with_admission(mut self, gate: AdmissionGate) -> Self {
        self.admission = gate;
        self
    }

    /// Records every issuance and revocation in `audit` from now on.
    #[must_use]
    pub fn with_audit(mut self, audit: Arc<dyn AuditLog>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Appends to the audit log, if there is one. The entry rides on the store's next
    /// group-committed flush, which the caller's own durable write triggers.
    async fn audit(&self, event: AuditEvent, at: OffsetDateTime) -> Result<(), AuthorityError> {
        if let Some(audit) = &self.audit {
            audit.append(&event, at).await?;
        }
        Ok(())
    }

    /// A receiver whose value changes after every revocation.
    pub fn revocation_updates(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    /// The store, for protocol crates' reads.
    pub fn store(&self) -> &Arc<dyn CertificateStore> {
        &self.store
    }

    /// An endpoint's policy.
    pub fn endpoint(&self, protocol: Protocol, name: &Name) -> Option<&EndpointPolicy> {
        self.endpoints.get(&(protocol, name.clone()))
    }

    /// The authority's clock reading.
    pub(crate) fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// An issuer by name.
    pub fn issuer(&self, name: &Name) -> Option<&Arc<Issuer>> {
        self.issuers.get(name).map(|e| &e.issuer)
    }

    /// Every issuer.
    pub fn issuers(&self) -> impl Iterator<Item = &Arc<Issuer>> {
        self.issuers.values().map(|e| &e.issuer)
    }

    /// A stored certificate's chain as PEM, leaf first, up to (not including) the root:
    /// `None` when its issuer is no longer configured.
    pub fn chain_pem(&self, record: &CertificateRecord) -> Option<String> {
        let entry = self.issuers.get(&record.issuer)?;
        let mut chain: Vec<&[u8]> = vec![&record.der];
        chain.extend(entry.issuer.chain_after_leaf());
        Some(certgate_signer::certificates_to_pem(chain))
    }

    /// Everything `issue` would refuse, checked without signing or writing anything: lets a
    /// protocol refuse a request (an ACME finalize, say) while its own state stays untouched.
    pub fn check(&self, request: &IssueRequest) -> Result<(), AuthorityError> {
        self.decide(request, self.clock.now()).map(|_| ())
    }

    /// Checks what an order asks for before any CSR exists: the identifiers against the
    /// endpoint's name policy, the profile, and the requested validity.
    pub fn check_order(
        &self,
        protocol: Protocol,
        endpoint: &Name,
        identifiers: &[Identifier],
        profile: Option<&Name>,
        not_before: Option<OffsetDateTime>,
        not_after: Option<OffsetDateTime>,
    ) -> Result<(), AuthorityError> {
        let (endpoint, profile, entry) = self.resolve(protocol, endpoint, profile)?;
        endpoint.names.check(identifiers, endpoint.protocol)?;
        validity(not_before, not_after, profile, &entry.issuer, self.clock.now()).map(|_| ())
    }

    /// The profile names an endpoint offers, its default first.
    pub fn endpoint_profiles(&self, protocol: Protocol, endpoint: &Name) -> Vec<Name> {
        self.endpoint(protocol, endpoint)
            .map(|e| e.profiles.clone())
            .unwrap_or_default()
    }

    fn resolve(
        &self,
        protocol: Protocol,
        endpoint_name: &Name,
        profile: Option<&Name>,
    ) -> Result<(&EndpointPolicy, &Profile, &IssuerEntry), AuthorityError> {
        let endpoint = self
            .endpoint(protocol, endpoint_name)
            .ok_or_else(|| AuthorityError::UnknownEndpoint {
                protocol,
                name: endpoint_name.clone(),
            })?;
        let profile_name = profile.unwrap_or(&endpoint.profiles[0]);
        if !endpoint.profiles.contains(profile_name) {
            return Err(AuthorityError::UnknownProfile(profile_name.clone()));
        }
        let profile = self
            .profiles
            .get(profile_name)
            .ok_or_else(|| AuthorityError::UnknownProfile(profile_name.clone()))?;
        let entry = self
            .issuers
            .get(&endpoint.issuer)
            .ok_or_else(|| AuthorityError::Config(format!("unknown issuer {}", endpoint.issuer)))?;
        Ok((endpoint, profile, entry))
    }

    /// The usage of the profile `profile` (default: the endpoint's first) of an endpoint.
    pub(crate) fn usage(
        &self,
        protocol: Protocol,
        endpoint: &Name,
        profile: Option<&Name>,
    ) -> Result<Usage, AuthorityError> {
        self.resolve(protocol, endpoint, profile)
            .map(|(_, profile, _)| profile.usage)
    }

    fn decide<'a>(&'a self, request: &IssueRequest, now: OffsetDateTime) -> Result<Decision<'a>, AuthorityError> {
        let (endpoint, profile, entry) = self.resolve(request.protocol, &request.endpoint, request.profile.as_ref())?;
        let csr = &request.csr;
        endpoint.keys.check(csr)?;
        if let Some(kind) = csr.unsupported_sans().first() {
            return Err(AuthorityError::UnsupportedSan(kind));
        }
        let identifiers = identifiers_to_certify(csr, profile.usage);
        let subject = subject_to_certify(csr, profile.usage, &identifiers);
        if identifiers.is_empty() && (profile.usage == Usage::TlsServer || subject.is_empty()) {
            return Err(AuthorityError::NoNames(if profile.usage == Usage::TlsServer {
                " and no DNS name or IP address as common name"
            } else {
                " and an empty subject"
            }));
        }
        endpoint.names.check(&identifiers, endpoint.protocol)?;
        endpoint
            .names
            .check_subject(&subject, profile.usage, endpoint.protocol)?;
        let (not_before, not_after) = validity(request.not_before, request.not_after, profile, &entry.issuer, now)?;
        Ok(Decision {
            endpoint,
            profile,
            entry,
            identifiers,
            subject,
            not_before,
            not_after,
        })
    }

    /// Decides, signs and durably records one certificate. A refusal writes nothing.
    pub async fn issue(&self, request: IssueRequest) -> Result<Issued, AuthorityError> {
        let (endpoint, protocol) = (request.endpoint.clone(), request.protocol);
        let result = self.issue_counted(request).await;
        if let Some(metrics) = &self.metrics {
            use certgate_metrics::IssuanceResult;
            let outcome = match &result {
                Ok(_) => IssuanceResult::Issued,
                Err(e) if e.kind() == certgate_core::ErrorKind::Internal => IssuanceResult::Error,
                Err(_) => IssuanceResult::Refused,
            };
            let protocol = certgate_metrics::Protocol::from_name(protocol.as_str());
            if let Some(protocol) = protocol {
                metrics.issuance(endpoint.as_str(), protocol, outcome);
            }
        }
        result
    }

    async fn issue_counted(&self, request: IssueRequest) -> Result<Issued, AuthorityError> {
        let now = self.clock.now();
        let Decision {
            endpoint,
            profile,
            entry,
            identifiers,
            subject,
            not_before,
            not_after,
        } = self.decide(&request, now)?;
        let csr = &request.csr;
        let replaces = match &request.replaces {
            Some(serial) => Some(serial.clone()),
            None => self.implied_predecessor(&request, &identifiers, now).await?,
        };

        let serial = self.reserve_serial(&entry.issuer, &request.endpoint, now).await?;
        // If this future is dropped from here on (client gone, shutdown), the guard gives the
        // serial up, so no reservation is left waiting for the next restart.
        let mut guard = ReservationGuard {
            store: Arc::clone(&self.store),
            serial: Some(serial.clone()),
        };
        let der = match self
            .sign(
                entry,
                csr,
                &serial,
                &subject,
                &identifiers,
                profile.usage,
                not_before,
                not_after,
            )
            .await
        {
            Ok(der) => der,
            Err(e) => {
                guard.abandon(&e.to_string()).await;
                return Err(e);
            }
        };

        let mut owner_labels = endpoint.owner_labels.clone();
        owner_labels.extend(request.owner_labels.clone());
        let record = CertificateRecord {
            serial,
            issuer: endpoint.issuer.clone(),
            endpoint: request.endpoint.clone(),
            protocol: request.protocol,
            requester: request.requester.clone(),
            profile: profile.name.clone(),
            owner_labels,
            subject: subject_text(&subject),
            identifiers,
            key: csr.key(),
            not_before,
            not_after,
            issued_at: now,
            replaces,
            revocation: None,
            der,
        };
        // The audit entry goes first, so that the flush that makes the certificate durable
        // makes its entry durable too. Should the record then fail, the entry stays (the log is
        // append-only) and the abandonment below is logged: the serial was signed, never handed out.
        let event = AuditEvent::new(
            AuditKind::Issuance,
            record.requester.as_str(),
            record.serial.to_string(),
        )
        .detail("issuer", record.issuer.as_str())
        .detail("endpoint", record.endpoint.as_str())
        .detail("protocol", record.protocol.as_str())
        .detail("profile", record.profile.as_str())
        .detail(
            "identifiers",
            record
                .identifiers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
        )
        .detail("subject", record.subject.as_str())
        .detail("not_after", record.not_after.to_string());
        let event = match &record.replaces {
            Some(old) => event.detail("replaces", old.to_string()),
            None => event,
        };
        if let Err(e) = self.audit(event, now).await {
            guard.abandon(&e.to_string()).await;
            return Err(e);
        }
        if let Err(e) = self.store.record_issued(&record).await {
            // Signed but never handed out: give the serial up (the store finishes the record
            // instead if the certificate was already written) and refuse.
            guard.abandon(&e.to_string()).await;
            return Err(e.into());
        }
        guard.disarm();
        tracing::info!(
            target: "certgate::audit",
            event = "issuance",
            serial = %record.serial,
            issuer = %record.issuer,
            protocol = %record.protocol,
            endpoint = %record.endpoint,
            requester = %record.requester,
            profile = %record.profile,
            identifiers = %record.identifiers.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            key = %record.key,
            not_after = %record.not_after,
            "certificate issued"
        );
        let mut chain = vec![record.der.clone()];
        chain.extend(entry.issuer.chain_after_leaf().into_iter().map(<[u8]>::to_vec));
        Ok(Issued { record, chain })
    }

    /// The certificate a request renews when it does not say so: the newest live certificate
    /// of the same requester and endpoint with exactly the same names (what Boulder and
    /// step-ca treat as a renewal). Read from the store's lineage index, newest first; only a
    /// certificate without a successor qualifies, so a chain of renewals stays a chain.
    async fn implied_predecessor(
        &self,
        request: &IssueRequest,
        identifiers: &[Identifier],
        now: OffsetDateTime,
    ) -> Result<Option<Serial>, AuthorityError> {
        /// Newest certificates looked at: past this many revoked or expired ones in a row,
        /// the lineage has lapsed and the request starts a new one.
        const MAX_CANDIDATES: usize = 32;
        // Certificates without names (devices) are linked only by their protocol's own renewal:
        // a shared requester (a SCEP challenge, an EST bootstrap user) would otherwise chain
        // every device's certificate to another device's.
        if identifiers.is_empty() {
            return Ok(None);
        }
        let lineage = Lineage {
            requester: request.requester.clone(),
            endpoint: request.endpoint.clone(),
            protocol: request.protocol,
            identifiers: identifiers.to_vec(),
        };
        let wanted: HashSet<&Identifier> = identifiers.iter().collect();
        // The index is keyed by a hash; the comparison below keeps a collision harmless.
        let is_live_same = |candidate: &CertificateRecord| {
            candidate.requester == request.requester
                && candidate.endpoint == request.endpoint
                && candidate.protocol == request.protocol
                && candidate.revocation.is_none()
                && candidate.not_after > now
                && candidate.identifiers.len() == identifiers.len()
                && candidate.identifiers.iter().all(|i| wanted.contains(i))
        };
        // The newest certificate is nearly always the one, and every record read costs a parse:
        // read it alone first.
        let (mut newest_live, mut seen, mut after) = (None, 0, None);
        while newest_live.is_none() && seen < MAX_CANDIDATES {
            let page = self
                .store
                .list_certificates(&CertificateQuery {
                    filter: CertificateFilter::Lineage(lineage.clone()),
                    limit: if seen == 0 { 1 } else { 8 },
                    after,
                })
                .await?;
            seen += page.items.len();
            newest_live = page.items.into_iter().find(is_live_same);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let Some(best) = newest_live else { return Ok(None) };
        if self.store.successor(&best.serial).await?.is_some() {
            return Ok(None);
        }
        Ok(Some(best.serial))
    }

    async fn reserve_serial(
        &self,
        issuer: &Issuer,
        endpoint: &Name,
        now: OffsetDateTime,
    ) -> Result<Serial, AuthorityError> {
        for _ in 0..SERIAL_ATTEMPTS {
            let mut random = [0u8; 16];
            aws_lc_rs::rand::fill(&mut random)
                .map_err(|_| AuthorityError::SigningTask("random number generator failed".into()))?;
            let serial = Serial::from_random(random);
            let reservation = SerialReservation {
                serial: serial.clone(),
                issuer: issuer.name().clone(),
                endpoint: endpoint.clone(),
                reserved_at: now,
            };
            match self.store.reserve_serial(&reservation).await {
                Ok(()) => return Ok(serial),
                Err(StoreError::Conflict(_)) => {
                    tracing::warn!(%serial, "serial collision; drawing another");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(AuthorityError::SigningTask(
            "no unused serial after repeated draws".into(),
        ))
    }

    #[allow(clippy::too_many_arguments)] // private: the pieces of one LeafSpec, owned for the blocking task
    async fn sign(
        &self,
        entry: &IssuerEntry,
        csr: &ParsedCsr,
        serial: &Serial,
        subject: &[SubjectAttribute],
        identifiers: &[Identifier],
        usage: Usage,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Vec<u8>, AuthorityError> {
        let issuer = Arc::clone(&entry.issuer);
        let urls = entry.urls.clone();
        let spki = csr.spki_der().to_vec();
        let key = csr.key();
        let (serial, subject, identifiers) = (serial.clone(), subject.to_vec(), identifiers.to_vec());
        let sign = move || {
            issuer.sign_leaf(&LeafSpec {
                serial: &serial,
                spki_der: &spki,
                key,
                subject: &subject,
                sans: &identifiers,
                usage,
                not_before,
                not_after,
                urls: &urls,
            })
        };
        // An RSA private-key operation takes about a millisecond: keep it off the reactor.
        if entry.issuer.signs_slowly() {
            Ok(tokio::task::spawn_blocking(sign)
                .await
                .map_err(|e| AuthorityError::SigningTask(e.to_string()))??)
        } else {
            Ok(sign()?)
        }
    }

    /// Records a revocation. `NotFound` for an unknown serial, `AlreadyRevoked` on a second call.
    pub async fn revoke(
        &self,
        serial: &Serial,
        reason: RevocationReason,
        by: &str,
    ) -> Result<CertificateRecord, AuthorityError> {
        let revocation = Revocation {
            reason,
            revoked_at: self.clock.now(),
            by: by.to_owned(),
        };
        // Checked first so the audit log records only revocations that can happen; the
        // store's compare-and-swap below still decides a race.
        match self.store.certificate(serial).await {
            Ok(record) if record.revocation.is_some() => return Err(AuthorityError::AlreadyRevoked),
            Ok(_) => {}
            Err(StoreError::NotFound) => return Err(AuthorityError::NotFound),
            Err(e) => return Err(e.into()),
        }
        self.audit(
            AuditEvent::new(AuditKind::Revocation, by, serial.to_string()).detail("reason", reason.as_str()),
            revocation.revoked_at,
        )
        .await?;
        let record = self.store.revoke(serial, &revocation).await.map_err(|e| match e {
            StoreError::NotFound => AuthorityError::NotFound,
            StoreError::Conflict(_) => AuthorityError::AlreadyRevoked,
            other => AuthorityError::Store(other),
        })?;
        self.revocations.send_modify(|generation| *generation += 1);
        if let Some(metrics) = &self.metrics {
            metrics.revocation(reason.as_str());
        }
        tracing::info!(
            target: "certgate::audit",
            event = "revocation",
            serial = %record.serial,
            issuer = %record.issuer,
            reason = %reason,
            by = by,
            "certificate revoked"
        );
        Ok(record)
    }
}

fn validity(
    requested_not_before: Option<OffsetDateTime>,
    requested_not_after: Option<OffsetDateTime>,
    profile: &Profile,
    issuer: &Issuer,
    now: OffsetDateTime,
) -> Result<(OffsetDateTime, OffsetDateTime), AuthorityError> {
    let bad = |why: &str| Err(AuthorityError::BadValidity(why.to_owned()));
    let start = match requested_not_before {
        Some(nb) if nb < now - MAX_NOT_BEFORE_PAST => return bad("notBefore lies in the past"),
        Some(nb) if nb > now + profile.max_validity => return bad("notBefore lies too far in the future"),
        Some(nb) => nb,
        None => now,
    };
    if start >= issuer.not_after() {
        return bad("notBefore is after the issuing CA's expiry");
    }
    // The certificate starts at the backdated time: measure every length from there, so the
    // profile maximum holds for the certificate as issued.
    let not_before = start - BACKDATE;
    let not_after = match requested_not_after {
        Some(na) if na <= start => return bad("notAfter is not after notBefore"),
        Some(na) if na - not_before > profile.max_validity => {
            return Err(AuthorityError::BadValidity(format!(
                "the validity exceeds profile {}'s maximum of {} days",
                profile.name,
                profile.max_validity.whole_days()
            )));
        }
        Some(na) if na > issuer.not_after() => return bad("notAfter is after the issuing CA's expiry"),
        Some(na) => na,
        // Never outlive the issuer: cap the default at its expiry.
        None => (not_before + profile.default_validity).min(issuer.not_after()),
    };
    if not_after <= now || not_after <= start {
        return bad("the issuing CA expires before this certificate could start");
    }
    Ok((not_before, not_after))
}
