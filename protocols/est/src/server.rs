//! The HTTP face of EST, independent of the HTTP library: the daemon hands each request under
//! `/.well-known/est/` to [`EstServer::handle`] with the TLS facts of its connection, and
//! writes back the [`EstResponse`]. Handlers parse, authenticate, make one call into the
//! authority (or the approval queue) and render; errors become statuses only in
//! [`EstServer::handle`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use certgate_authority::{Authority, AuthorityError, IssueRequest, Issued};
use certgate_core::{Clock, Name, ParsedCsr, Protocol, RequesterId, Serial};
use certgate_store::approvals::IssuanceClaims;
use certgate_store::est_users::EstUserRecord;
use certgate_store::{ApprovalStore, CertificateRecord, EstUserStore, StoreError};
use der::Decode;
use time::OffsetDateTime;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use x509_cert::Certificate;
use zeroize::Zeroizing;

use crate::codec::{self, CERTS_ONLY, CSRATTRS, MULTIPART_BOUNDARY, Operation};
use crate::config::{ClientAuth, CsrAttrsConfig, EstEndpointConfig};
use crate::tls::{AnchorVerifier, TlsFacts, check_channel_binding};
use crate::{EstError, csrattrs, keygen, password};

mod approval;
mod renew;

/// A request under `/.well-known/est/`, as the daemon received it. Its `Debug` shows neither
/// the credentials nor the body (only whether `Authorization` is present and the body's length).
pub struct EstRequest<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// The query string, without `?` (ignored by EST).
    pub query: Option<&'a str>,
    /// `Content-Type`.
    pub content_type: Option<&'a str>,
    /// `Authorization` (HTTP Basic). Never logged.
    pub authorization: Option<&'a str>,
    /// The body (empty when too large).
    pub body: &'a [u8],
    /// The body exceeded [`crate::MAX_BODY_LEN`].
    pub body_too_large: bool,
    /// The client's address, for logs.
    pub peer: IpAddr,
    /// The TLS connection's facts; `None` for plain HTTP (EST operations other than
    /// cacerts and csrattrs then answer 403).
    pub tls: Option<&'a TlsFacts>,
}

impl std::fmt::Debug for EstRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EstRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("content_type", &self.content_type)
            .field("authorization", &self.authorization.map(|_| "<redacted>"))
            .field("body_len", &self.body.len())
            .field("body_too_large", &self.body_too_large)
            .field("peer", &self.peer)
            .field("tls", &self.tls)
            .finish()
    }
}

/// The answer.
#[derive(Debug)]
pub struct EstResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers (Content-Type among them).
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl EstResponse {
    fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn with_body(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        let mut headers = vec![("content-type", content_type.to_owned())];
        // RFC 7030 4.1.3 and 4.5.2 send PKCS#7 and csrattrs with this header; RFC 8951 lets
        // clients ignore it, but older clients (libest-based) look for it.
        if content_type.starts_with("application/pkcs7-mime") || content_type == "application/csrattrs" {
            headers.push(("content-transfer-encoding", "base64".to_owned()));
        }
        Self { status, headers, body }
    }

    fn text(status: u16, text: String) -> Self {
        Self::with_body(status, "text/plain; charset=utf-8", text.into_bytes())
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The first value of header `name`.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The stores EST uses.
#[derive(Debug, Clone)]
pub struct EstStores {
    /// HTTP Basic users.
    pub users: Arc<dyn EstUserStore>,
    /// The manual-approval queue.
    pub approvals: Arc<dyn ApprovalStore>,
}

struct Endpoint {
    config: EstEndpointConfig,
    anchors: Option<AnchorVerifier>,
    /// The `/cacerts` body (base64 certs-only), computed once.
    cacerts: Vec<u8>,
    csr_attrs: CsrAttrsConfig,
    /// The `/csrattrs` body (base64), `None` for 204.
    csrattrs_body: Option<Vec<u8>>,
    slots: Arc<Semaphore>,
    /// Per-client-address limits on HTTP Basic password checks.
    auth_limit: Arc<crate::auth_limit::AuthLimiter>,
}

/// Who a request was authenticated as.
struct Principal {
    requester: RequesterId,
    /// simplereenroll: the certificate being renewed.
    renewing: Option<CertificateRecord>,
}

/// What the summary event of a request reports.
#[derive(Default)]
struct Summary {
    endpoint: Option<Name>,
    operation: Option<&'static str>,
    requester: Option<RequesterId>,
    serial: Option<Serial>,
}

/// Every EST endpoint of the daemon.
pub struct EstServer {
    endpoints: HashMap<Name, Arc<Endpoint>>,
    stores: EstStores,
    authority: Arc<Authority>,
    clock: Arc<dyn Clock>,
    /// Approval keys whose issuance is running in this process, so two polls of one approved
    /// request issue one certificate.
    issuing: IssuanceClaims,
    /// Argon2 password checks running at once (each ~19 MiB and tens of milliseconds on a
    /// blocking thread); beyond it, 503.
    password_checks: Arc<Semaphore>,
}

/// The server-wide number of Argon2 password checks that may run at once unless set with
/// [`EstServer::with_password_check_limit`]: two per available CPU, at least
/// [`MIN_PASSWORD_CHECKS`].
pub fn default_password_check_limit() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .saturating_mul(2)
        .max(MIN_PASSWORD_CHECKS)
}

/// The least [`default_password_check_limit`] returns.
pub const MIN_PASSWORD_CHECKS: usize = 2;

impl std::fmt::Debug for EstServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EstServer")
            .field("endpoints", &self.endpoints.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The requester recorded for an HTTP Basic user.
pub fn requester_of_user(endpoint: &Name, username: &str) -> Option<RequesterId> {
    RequesterId::new(format!("est-user:{endpoint}/{username}")).ok()
}

fn requester_of_certificate(endpoint: &Name, leaf: &[u8]) -> Result<RequesterId, EstError> {
    let unauthenticated = || EstError::Config("client certificate does not parse".into());
    let cert = Certificate::from_der(leaf).map_err(|_| unauthenticated())?;
    let tbs = cert.tbs_certificate();
    let serial: String = tbs
        .serial_number()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let subject: String = codec::printable(&tbs.subject().to_string());
    RequesterId::new(format!("est-cert:{endpoint}/{serial}/{subject}")).map_err(|_| unauthenticated())
}

/// The approval fingerprint of a CSR: lower-case hex SHA-256 of its SubjectPublicKeyInfo.
pub fn approval_fingerprint(csr: &ParsedCsr) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, csr.spki_der());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl EstServer {
    /// Builds the server for `configs`; each must name an EST endpoint of the authority whose
    /// issuer is loaded.
    pub fn new(
        configs: Vec<EstEndpointConfig>,
        stores: EstStores,
        authority: Arc<Authority>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, EstError> {
        let mut endpoints = HashMap::new();
        for config in configs {
            let id = format!("EST endpoint {}", config.name);
            let policy = authority
                .endpoint(Protocol::Est, &config.name)
                .ok_or_else(|| EstError::Config(format!("{id} has no endpoint policy in the authority")))?;
            let issuer = authority
                .issuer(&policy.issuer)
                .ok_or_else(|| EstError::Config(format!("{id}: issuer {} is not loaded", policy.issuer)))?;
            let mut chain: Vec<&[u8]> = vec![issuer.certificate_der()];
            for der in issuer.chain_der().iter().map(Vec::as_slice).chain([issuer.root_der()]) {
                if !chain.contains(&der) {
                    chain.push(der);
                }
            }
            let cacerts = codec::encode_base64(&codec::certs_only(&chain)?, config.base64);
            let anchors = if config.auth.accepts_certificate() {
                if config.trust_anchors.is_empty() {
                    return Err(EstError::Config(format!(
                        "{id} accepts client certificates but has no trust anchors"
                    )));
                }
                Some(AnchorVerifier::new(&config.trust_anchors)?)
            } else {
                None
            };
            if let Some(kind) = config.server_keygen {
                if !keygen::supported(kind) {
                    return Err(EstError::Config(format!("{id}: cannot generate {kind} keys")));
                }
                if config.require_approval {
                    return Err(EstError::Config(format!(
                        "{id}: serverkeygen cannot be combined with manual approval"
                    )));
                }
            }
            let csr_attrs = csrattrs::effective(&config.csr_attrs, config.channel_binding);
            let csrattrs_body = csrattrs::encode(&csr_attrs)?.map(|der| codec::encode_base64(&der, config.base64));
            let endpoint = Endpoint {
                anchors,
                cacerts,
                csr_attrs,
                csrattrs_body,
                slots: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
                auth_limit: Arc::new(crate::auth_limit::AuthLimiter::new(
                    &config.auth_limit,
                    Arc::clone(&clock),
                )),
                config,
            };
            if endpoints
                .insert(endpoint.config.name.clone(), Arc::new(endpoint))
                .is_some()
            {
                return Err(EstError::Config(format!("{id} is defined twice")));
            }
        }
        // Computed now rather than on the first unknown user, which would then answer slower;
        // without it unknown users would be told apart by timing, so it is required.
        password::dummy_hash()?;
        Ok(Self {
            endpoints,
            stores,
            authority,
            clock,
            issuing: IssuanceClaims::default(),
            password_checks: Arc::new(Semaphore::new(default_password_check_limit())),
        })
    }

    /// Sets how many Argon2 password checks may run at once, server-wide (at least 1; the
    /// default is [`default_password_check_limit`]). A Basic request arriving when all are
    /// busy answers 503 with the endpoint's `Retry-After`.
    #[must_use]
    pub fn with_password_check_limit(mut self, limit: usize) -> Self {
        self.password_checks = Arc::new(Semaphore::new(limit.max(1)));
        self
    }

    /// Whether an EST endpoint of this name is served.
    pub fn has_endpoint(&self, name: &Name) -> bool {
        self.endpoints.contains_key(name)
    }

    /// Adds an HTTP Basic user to `endpoint` (for the CLI): hashes the password off the
    /// reactor and stores the PHC string. `Config` for an invalid name or password,
    /// `Store(Conflict)` if the user exists.
    pub async fn add_user(
        store: &dyn EstUserStore,
        endpoint: &Name,
        username: &str,
        password: &[u8],
        now: OffsetDateTime,
    ) -> Result<(), EstError> {
        if !password::valid_username(username) {
            return Err(EstError::Config(format!(
                "invalid user name: 1 to {} characters, no ':' and no control characters",
                password::MAX_USERNAME_LEN
            )));
        }
        let secret = Zeroizing::new(password.to_vec());
        let hash = tokio::task::spawn_blocking(move || password::hash_password(&secret))
            .await
            .map_err(|e| EstError::Task(e.to_string()))??;
        store
            .insert_est_user(&EstUserRecord {
                endpoint: endpoint.clone(),
                username: username.to_owned(),
                password_hash: hash,
                created_at: now,
                version: 1,
            })
            .await?;
        Ok(())
    }

    /// Handles one request under `/.well-known/est/`.
    pub async fn handle(&self, request: &EstRequest<'_>) -> EstResponse {
        let started = Instant::now();
        let mut summary = Summary::default();
        let response = match self.route(request, &mut summary).await {
            Ok(response) => response,
            Err(error) => error_response(&error),
        };
        tracing::info!(
            target: "certgate::est",
            endpoint = summary.endpoint.as_ref().map(Name::as_str),
            operation = summary.operation,
            method = request.method,
            status = response.status,
            requester = summary.requester.as_ref().map(RequesterId::as_str),
            serial = summary.serial.as_ref().map(ToString::to_string),
            peer = %request.peer,
            elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "EST request"
        );
        response
    }

    async fn route(&self, request: &EstRequest<'_>, summary: &mut Summary) -> Result<EstResponse, EstError> {
        let path = codec::parse_path(request.path)?;
        summary.operation = Some(path.operation.as_str());
        let endpoint = self
            .endpoints
            .get(&path.endpoint)
            .cloned()
            .ok_or_else(|| EstError::UnknownEndpoint(path.endpoint.to_string()))?;
        summary.endpoint = Some(endpoint.config.name.clone());
        let allow = path.operation.method();
        if request.method != allow {
            return Err(EstError::MethodNotAllowed { allow });
        }
        match path.operation {
            Operation::CaCerts => Ok(EstResponse::with_body(200, CERTS_ONLY, endpoint.cacerts.clone())),
            Operation::CsrAttrs => Ok(match &endpoint.csrattrs_body {
                Some(body) => EstResponse::with_body(200, CSRATTRS, body.clone()),
                None => EstResponse::new(204),
            }),
            Operation::FullCmc => Err(EstError::NotImplemented("fullcmc")),
            Operation::SimpleEnroll | Operation::SimpleReenroll | Operation::ServerKeygen => {
                self.enroll(&endpoint, path.operation, request, summary).await
            }
        }
    }

    async fn enroll(
        &self,
        endpoint: &Endpoint,
        operation: Operation,
        request: &EstRequest<'_>,
        summary: &mut Summary,
    ) -> Result<EstResponse, EstError> {
        let keygen_kind = match operation {
            Operation::ServerKeygen => Some(endpoint.config.server_keygen.ok_or(EstError::ServerKeygenDisabled)?),
            _ => None,
        };
        let tls = request.tls.ok_or(EstError::TlsRequired)?;
        if request.body_too_large {
            return Err(EstError::BodyTooLarge);
        }
        codec::check_content_type(request.content_type)?;
        // Shed before the password hash, the CSR check or any write.
        self.authority
            .admit_issuance(Protocol::Est, &endpoint.config.name)
            .map_err(shed)?;
        // simplereenroll is authenticated by the certificate it renews, which needs the CSR.
        let principal = match operation {
            Operation::SimpleReenroll if tls.client_chain.is_empty() => {
                return Err(EstError::Unauthenticated {
                    realm: endpoint.config.realm.clone(),
                });
            }
            Operation::SimpleReenroll => None,
            _ => Some(self.authenticate(endpoint, request, tls).await?),
        };
        let csr = codec::decode_csr_body(request.body)?;
        if endpoint.config.channel_binding {
            check_channel_binding(tls, csr.challenge_password())?;
        }
        if endpoint.csr_attrs.enforce {
            let missing = csrattrs::missing(&endpoint.csr_attrs, &csr);
            if !missing.is_empty() {
                return Err(EstError::MissingCsrAttributes(missing));
            }
        }
        let principal = match principal {
            Some(principal) => principal,
            None => self.reenroll_principal(endpoint, request, tls, &csr).await?,
        };
        summary.requester = Some(principal.requester.clone());
        let name = endpoint.config.name.clone();
        let mut issue = IssueRequest::new(Protocol::Est, name, csr, principal.requester.clone());
        issue.replaces = principal.renewing.as_ref().map(|old| old.serial.clone());

        if let Some(kind) = keygen_kind {
            return self.server_keygen(endpoint, issue, kind, summary).await;
        }
        self.authority.check(&issue)?;
        // A renewal accepted by the renewal rule is not queued; a re-enrollment that fell back
        // to the endpoint's own authentication is, like a first enrollment.
        if endpoint.config.require_approval && principal.renewing.is_none() {
            return self.enroll_with_approval(endpoint, issue, summary).await;
        }
        let _slot = acquire(endpoint)?;
        let issued = self.authority.issue(issue).await?;
        self.issued_response(endpoint, operation, issued, summary)
    }

    fn issued_response(
        &self,
        endpoint: &Endpoint,
        operation: Operation,
        issued: Issued,
        summary: &mut Summary,
    ) -> Result<EstResponse, EstError> {
        audit(operation, &endpoint.config.name, &issued.record);
        summary.serial = Some(issued.record.serial.clone());
        let body = codec::encode_base64(&codec::certs_only(&[&issued.record.der])?, endpoint.config.base64);
        Ok(EstResponse::with_body(200, CERTS_ONLY, body))
    }

    /// serverkeygen: the authority's policy is checked on the client's CSR first, so a refused
    /// request costs no key generation; then a key is generated, the CSR re-signed with it and
    /// issued (the authority checks again, now with the generated key).
    async fn server_keygen(
        &self,
        endpoint: &Endpoint,
        mut issue: IssueRequest,
        kind: certgate_core::KeyKind,
        summary: &mut Summary,
    ) -> Result<EstResponse, EstError> {
        self.check_before_keygen(&issue)?;
        let _slot = acquire(endpoint)?;
        let client_csr = issue.csr.der().to_vec();
        let generated = tokio::task::spawn_blocking(move || keygen::generate(kind, &client_csr))
            .await
            .map_err(|e| EstError::Task(e.to_string()))??;
        issue.csr = generated.csr.clone();
        let issued = self.authority.issue(issue).await?;
        audit(Operation::ServerKeygen, &endpoint.config.name, &issued.record);
        summary.serial = Some(issued.record.serial.clone());
        let layout = endpoint.config.base64;
        let certs = codec::encode_base64(&codec::certs_only(&[&issued.record.der])?, layout);
        let key = codec::encode_base64_secret(&generated.pkcs8, layout);
        let content_type = format!("multipart/mixed; boundary={MULTIPART_BOUNDARY}");
        let part_head = |content_type: &str| {
            format!(
                "--{MULTIPART_BOUNDARY}\r\nContent-Type: {content_type}\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            )
        };
        let parts = [
            (part_head("application/pkcs8"), key.as_slice()),
            (part_head(CERTS_ONLY), certs.as_slice()),
        ];
        let close = format!("--{MULTIPART_BOUNDARY}--\r\n");
        // Sized exactly, so the buffer holding the key is never reallocated (which would leave
        // an unzeroed copy behind); the body itself belongs to the HTTP stack once returned.
        let len = parts
            .iter()
            .map(|(head, content)| head.len() + content.len() + 2)
            .sum::<usize>()
            + close.len();
        let mut body = Vec::with_capacity(len);
        for (head, content) in parts {
            body.extend_from_slice(head.as_bytes());
            body.extend_from_slice(content);
            if !content.ends_with(b"\r\n") {
                body.extend_from_slice(b"\r\n");
            }
        }
        body.extend_from_slice(close.as_bytes());
        // RFC 7030 4.4.2 sends the private key in this answer: no cache may keep it.
        Ok(EstResponse::with_body(200, &content_type, body).header("cache-control", "no-store"))
    }

    /// The authority's decision on a serverkeygen request before its key exists. The client's
    /// own key is replaced, so the key policy is left to the final check with the generated
    /// key; a refusal of the client's key still has its names, profile and validity checked.
    fn check_before_keygen(&self, issue: &IssueRequest) -> Result<(), EstError> {
        match self.authority.check(issue) {
            Err(AuthorityError::KeyNotAllowed { .. } | AuthorityError::WeakSignatureAlgorithm) => {
                self.authority.check_order(
                    issue.protocol,
                    &issue.endpoint,
                    issue.csr.sans(),
                    issue.profile.as_ref(),
                    issue.not_before,
                    issue.not_after,
                )?;
                Ok(())
            }
            other => Ok(other?),
        }
    }

    /// simpleenroll / serverkeygen: the endpoint's client authentication.
    async fn authenticate(
        &self,
        endpoint: &Endpoint,
        request: &EstRequest<'_>,
        tls: &TlsFacts,
    ) -> Result<Principal, EstError> {
        let config = &endpoint.config;
        let unauthenticated = || EstError::Unauthenticated {
            realm: config.realm.clone(),
        };
        let certificate_ok = match (&endpoint.anchors, tls.client_chain.first()) {
            (Some(anchors), Some(_)) => anchors.verify(&tls.client_chain, self.clock.now()),
            _ => false,
        };
        if certificate_ok {
            self.refuse_revoked_client_certificate(&tls.client_chain).await?;
        }
        let needs_user = match config.auth {
            ClientAuth::Basic | ClientAuth::Both => true,
            ClientAuth::Certificate => false,
            ClientAuth::Either => !certificate_ok,
        };
        if matches!(config.auth, ClientAuth::Certificate | ClientAuth::Both) && !certificate_ok {
            return Err(unauthenticated());
        }
        if needs_user {
            let user = self.basic_user(endpoint, request).await?.ok_or_else(unauthenticated)?;
            let requester = requester_of_user(&config.name, &user).ok_or_else(unauthenticated)?;
            return Ok(Principal {
                requester,
                renewing: None,
            });
        }
        let leaf = tls.client_chain.first().ok_or_else(unauthenticated)?;
        Ok(Principal {
            requester: requester_of_certificate(&config.name, leaf).map_err(|_| unauthenticated())?,
            renewing: None,
        })
    }

    /// The user name if the request carries valid HTTP Basic credentials for the endpoint.
    /// An unknown user costs the same Argon2 evaluation as a known one. `Overloaded` when the
    /// server-wide password-check limit is reached, `TooManyAuthAttempts` when the client's
    /// address is over its own (an unknown user counts as a failure there).
    async fn basic_user(&self, endpoint: &Endpoint, request: &EstRequest<'_>) -> Result<Option<String>, EstError> {
        let Some(credentials) = request.authorization.and_then(password::parse_basic) else {
            return Ok(None);
        };
        // The client address's limits first, so an address over them costs no store read, no
        // permit and no Argon2 (429). Like the permit, the attempt moves into the blocking task.
        let attempt = endpoint.auth_limit.admit(request.peer)?;
        // Taken before anything else and moved into the blocking task, so a check keeps its
        // permit until Argon2 returns even if the client goes away meanwhile.
        let permit = Arc::clone(&self.password_checks)
            .try_acquire_owned()
            .map_err(|_| EstError::Overloaded {
                retry_after: endpoint.config.overload_retry_after,
            })?;
        let hash = match self
            .stores
            .users
            .est_user(&endpoint.config.name, &credentials.username)
            .await
        {
            Ok(user) => Some(user.password_hash),
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e.into()),
        };
        let known = hash.is_some();
        let hash = match hash {
            Some(hash) => hash,
            None => password::dummy_hash()?.to_owned(),
        };
        let username = credentials.username.clone();
        let matches = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            password::verify_attempt(attempt, &hash, credentials.password(), known)
        })
        .await
        .map_err(|e| EstError::Task(e.to_string()))?;
        Ok(matches.then_some(username))
    }
}

fn acquire(endpoint: &Endpoint) -> Result<OwnedSemaphorePermit, EstError> {
    Arc::clone(&endpoint.slots)
        .try_acquire_owned()
        .map_err(|_| EstError::Overloaded {
            retry_after: endpoint.config.overload_retry_after,
        })
}

/// An authority that paused new issuance answers like a full endpoint: 503 with `Retry-After`.
fn shed(e: AuthorityError) -> EstError {
    match e {
        AuthorityError::Busy { retry_after_seconds } => EstError::Overloaded {
            retry_after: u32::try_from(retry_after_seconds).unwrap_or(u32::MAX),
        },
        other => other.into(),
    }
}

fn audit(operation: Operation, endpoint: &Name, record: &CertificateRecord) {
    tracing::info!(
        target: "certgate::audit",
        event = "est_enrollment",
        operation = operation.as_str(),
        endpoint = %endpoint,
        serial = %record.serial,
        requester = %record.requester,
        replaces = record.replaces.as_ref().map(ToString::to_string),
        "EST certificate issued"
    );
}

fn error_response(error: &EstError) -> EstResponse {
    let status = error.status();
    if status >= 500 && !matches!(error, EstError::NotImplemented(_) | EstError::Overloaded { .. }) {
        tracing::error!(target: "certgate::est", error = %error, "EST request failed inside the server");
    }
    let mut response = EstResponse::text(status, error.client_text());
    match error {
        EstError::Unauthenticated { realm } => {
            let realm = realm.replace(['"', '\\'], "");
            response = response.header("www-authenticate", format!("Basic realm=\"{realm}\""));
        }
        EstError::Overloaded { retry_after } | EstError::TooManyAuthAttempts { retry_after } => {
            response = response.header("retry-after", retry_after.to_string());
        }
        EstError::MethodNotAllowed { allow } => response = response.header("allow", *allow),
        _ => {}
    }
    response
}
