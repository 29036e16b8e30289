//! The HTTP face of SCEP, independent of the HTTP library: the daemon hands each request under
//! `/scep/` (and `/cgi-bin/pkiclient.exe`) to [`ScepServer::handle`] and writes back the
//! [`ScepResponse`]. A PKIOperation is parsed, its signature and signingTime checked, its
//! envelope opened with the RA key (off the reactor), the client authenticated, the
//! authority's policy consulted, and one call made into the authority or the approval queue;
//! every outcome of a parseable message is a signed CertRep.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use certgate_authority::{Authority, AuthorityError, IssueRequest};
use certgate_authority::{Issuer, KeyTransport, RaKey};
use certgate_core::{Clock, CsrError, Name, ParsedCsr, Protocol, RequesterId, Serial};
use certgate_store::approvals::{ApprovalRecord, IssuanceClaims};
use certgate_store::{ApprovalStore, CertificateRecord, ScepChallengeStore, StoreError};
use tokio::sync::Semaphore;

use crate::challenge::Webhook;
use crate::codec::{self, Capabilities, Operation};
use crate::config::ScepEndpointConfig;
use crate::crypto::{ContentCipher, DigestAlg};
use crate::message::{self, MessageType, PkiMessage, PkiStatus, ScepAttributes};
use crate::{FailInfo, ScepError};

mod authenticate;
mod retrieve;

/// A request under `/scep/` or `/cgi-bin/pkiclient.exe`, as the daemon received it.
#[derive(Debug)]
pub struct ScepRequest<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// The raw query string, without `?` (not form-decoded: [`codec::decode_message_param`]
    /// needs it as sent).
    pub query: Option<&'a str>,
    /// The body (empty for GET).
    pub body: &'a [u8],
    /// The body exceeded [`codec::MAX_MESSAGE_LEN`] (the daemon stopped reading).
    pub body_too_large: bool,
    /// The client's address, for logs.
    pub peer: IpAddr,
}

/// The answer.
#[derive(Debug)]
pub struct ScepResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers (Content-Type among them).
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl ScepResponse {
    fn with_body(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        Self {
            status,
            headers: vec![("content-type", content_type.to_owned())],
            body,
        }
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

/// Where GetCRL answers come from. The default ([`NoCrl`]) answers FAILURE badRequest
/// "CRL not available yet" until certgate publishes CRLs.
#[async_trait]
pub trait CrlSource: Send + Sync + std::fmt::Debug {
    /// The current CRL (DER) of `issuer` for `endpoint`, if there is one.
    async fn crl(&self, endpoint: &Name, issuer: &Issuer) -> Result<Option<Vec<u8>>, ScepError>;
}

/// No CRLs yet.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCrl;

#[async_trait]
impl CrlSource for NoCrl {
    async fn crl(&self, _endpoint: &Name, _issuer: &Issuer) -> Result<Option<Vec<u8>>, ScepError> {
        Ok(None)
    }
}

/// The stores SCEP uses.
#[derive(Debug, Clone)]
pub struct ScepStores {
    /// The manual-approval queue (shared with EST).
    pub approvals: Arc<dyn ApprovalStore>,
    /// One-time challenges.
    pub challenges: Arc<dyn ScepChallengeStore>,
}

struct Endpoint {
    config: ScepEndpointConfig,
    issuer: Arc<Issuer>,
    webhook: Option<Webhook>,
    caps: String,
    /// GetCACert: (content type, body).
    ca_cert: (&'static str, Vec<u8>),
    /// GetNextCACert: the signed answer, when a next CA is configured.
    next_ca: Option<Vec<u8>>,
    /// The CA certificates put next to an issued certificate when `certrep_include_ca`.
    certrep_chain: Vec<Vec<u8>>,
    slots: Arc<Semaphore>,
}

/// What the summary event of a request reports.
#[derive(Default)]
struct Summary {
    endpoint: Option<Name>,
    operation: Option<&'static str>,
    message_type: Option<&'static str>,
    transaction_id: Option<String>,
    pki_status: Option<&'static str>,
    fail_info: Option<&'static str>,
    /// The failInfoText sent (never secrets: texts say what was wrong, not with what).
    fail_text: Option<String>,
    requester: Option<RequesterId>,
    serial: Option<Serial>,
}

/// How a client was authenticated for an enrollment.
struct Principal {
    requester: RequesterId,
    /// The certificate being renewed (renewal by signer certificate).
    renewing: Option<CertificateRecord>,
}

/// What a PKIOperation's handler decided, before it is rendered as a CertRep.
enum Reply {
    /// SUCCESS with this degenerate SignedData (certificates or a CRL), to be encrypted.
    Success(Vec<u8>),
    /// PENDING.
    Pending,
}

/// What the CertRep needs to know about the request.
struct ReplyContext {
    digest: DigestAlg,
    cipher: ContentCipher,
    transport: KeyTransport,
}

/// Every SCEP endpoint of the daemon.
pub struct ScepServer {
    endpoints: HashMap<Name, Arc<Endpoint>>,
    stores: ScepStores,
    authority: Arc<Authority>,
    clock: Arc<dyn Clock>,
    crl: Arc<dyn CrlSource>,
    /// Approval keys whose issuance is running in this process.
    issuing: IssuanceClaims,
}

impl std::fmt::Debug for ScepServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScepServer")
            .field("endpoints", &self.endpoints.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Text safe for logs and error messages: printable ASCII, at most 64 characters.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(64)
        .collect()
}

/// The approval fingerprint of a SCEP request: lower-case hex SHA-256 over its transactionID
/// (length-prefixed) and the SubjectPublicKeyInfo of the certificate that signed it
/// (`signer_certificate`, DER). A CertPoll or repeated PKCSReq finds the queued request only
/// when signed with the same key (RFC 8894 3.3.3), so nobody else can poll for it.
pub fn approval_fingerprint(transaction_id: &str, signer_certificate: &[u8]) -> Result<String, ScepError> {
    let spki = retrieve::spki_of(signer_certificate)?;
    let length = u32::try_from(transaction_id.len()).map_err(|_| ScepError::Internal("transactionID length"))?;
    let mut bound = length.to_be_bytes().to_vec();
    bound.extend_from_slice(transaction_id.as_bytes());
    bound.extend_from_slice(&spki);
    Ok(DigestAlg::Sha256
        .digest(&bound)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The requester recorded for a SCEP enrollment: `scep-device:{endpoint}/{how}` where `how`
/// is `static`, `one-time` or `webhook` for challenge enrollments and the renewed
/// certificate's serial (hex) for renewals.
pub fn requester_of(endpoint: &Name, how: &str) -> Result<RequesterId, ScepError> {
    RequesterId::new(format!("scep-device:{endpoint}/{how}")).map_err(|_| ScepError::Internal("invalid requester id"))
}

impl ScepServer {
    /// Builds the server for `configs`; each must name a SCEP endpoint of the authority whose
    /// issuer is loaded. Signs the GetNextCACert answers (RSA) once, here.
    pub fn new(
        configs: Vec<ScepEndpointConfig>,
        stores: ScepStores,
        authority: Arc<Authority>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ScepError> {
        let mut endpoints = HashMap::new();
        for config in configs {
            let id = format!("SCEP endpoint {}", config.name);
            let policy = authority
                .endpoint(Protocol::Scep, &config.name)
                .ok_or_else(|| ScepError::Config(format!("{id} has no endpoint policy in the authority")))?;
            let issuer = Arc::clone(
                authority
                    .issuer(&policy.issuer)
                    .ok_or_else(|| ScepError::Config(format!("{id}: issuer {} is not loaded", policy.issuer)))?,
            );
            let webhook = config.challenge.webhook.as_ref().map(Webhook::new).transpose()?;
            let caps = codec::render_caps(Capabilities {
                sha1: config.compat.allow_sha1,
                next_ca: config.next_ca.is_some(),
                renewal: config.renewal,
            });
            let ca_cert = ca_cert_body(&config, &issuer)?;
            let certrep_chain = issuer.chain_after_leaf().into_iter().map(<[u8]>::to_vec).collect();
            let next_ca = match &config.next_ca {
                Some(next) => {
                    let ders: Vec<&[u8]> = next.certificates.iter().map(Vec::as_slice).collect();
                    let content = message::degenerate(&ders, &[])?;
                    let tbs = message::to_be_signed(
                        Some(content),
                        None,
                        DigestAlg::Sha256,
                        config.ra.certificate_der(),
                        clock.now(),
                    )?;
                    let signature = config.ra.sign(DigestAlg::Sha256.to_ra(), &tbs.signed_attrs_der)?;
                    Some(tbs.finish(signature)?)
                }
                None => None,
            };
            let endpoint = Endpoint {
                issuer,
                webhook,
                caps,
                ca_cert,
                next_ca,
                certrep_chain,
                slots: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
                config,
            };
            if endpoints
                .insert(endpoint.config.name.clone(), Arc::new(endpoint))
                .is_some()
            {
                return Err(ScepError::Config(format!("{id} is defined twice")));
            }
        }
        Ok(Self {
            endpoints,
            stores,
            authority,
            clock,
            crl: Arc::new(NoCrl),
            issuing: IssuanceClaims::default(),
        })
    }

    /// Plugs in a CRL source for GetCRL.
    pub fn with_crl_source(mut self, crl: Arc<dyn CrlSource>) -> Self {
        self.crl = crl;
        self
    }

    /// Whether a SCEP endpoint of this name is served.
    pub fn has_endpoint(&self, name: &Name) -> bool {
        self.endpoints.contains_key(name)
    }

    /// Handles one request.
    pub async fn handle(&self, request: &ScepRequest<'_>) -> ScepResponse {
        let started = Instant::now();
        let mut summary = Summary::default();
        let response = match self.route(request, &mut summary).await {
            Ok(response) => response,
            Err(error) => error_response(&error),
        };
        tracing::info!(
            target: "certgate::scep",
            endpoint = summary.endpoint.as_ref().map(Name::as_str),
            operation = summary.operation,
            message_type = summary.message_type,
            transaction_id = summary.transaction_id.as_deref(),
            pki_status = summary.pki_status,
            fail_info = summary.fail_info,
            fail_text = summary.fail_text.as_deref(),
            method = request.method,
            status = response.status,
            requester = summary.requester.as_ref().map(RequesterId::as_str),
            serial = summary.serial.as_ref().map(ToString::to_string),
            peer = %request.peer,
            elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "SCEP request"
        );
        response
    }

    async fn route(&self, request: &ScepRequest<'_>, summary: &mut Summary) -> Result<ScepResponse, ScepError> {
        let name = codec::parse_path(request.path)?;
        let endpoint = self
            .endpoints
            .get(&name)
            .cloned()
            .ok_or_else(|| ScepError::UnknownEndpoint(name.to_string()))?;
        summary.endpoint = Some(name);
        let query = codec::parse_query(request.query);
        let is_post = request.method == "POST";
        if request.method != "GET" && !is_post {
            return Err(ScepError::MethodNotAllowed { allow: "GET, POST" });
        }
        let operation = match query.operation.as_deref() {
            Some(op) => Operation::parse(op).ok_or_else(|| ScepError::UnknownOperation(printable(op)))?,
            // Lenient: a POST without a query is a PKIOperation.
            None if is_post => Operation::PkiOperation,
            None => return Err(ScepError::UnknownOperation(String::new())),
        };
        summary.operation = Some(operation.as_str());
        match operation {
            Operation::GetCaCaps => Ok(ScepResponse::with_body(
                200,
                "text/plain",
                endpoint.caps.clone().into_bytes(),
            )),
            // Cisco sends message=<trustpoint name>: ignored.
            Operation::GetCaCert => {
                let (content_type, body) = &endpoint.ca_cert;
                Ok(ScepResponse::with_body(200, content_type, body.clone()))
            }
            Operation::GetNextCaCert => match &endpoint.next_ca {
                Some(body) => Ok(ScepResponse::with_body(200, codec::NEXT_CA_CERT, body.clone())),
                None => Err(ScepError::NoNextCa),
            },
            Operation::PkiOperation => {
                if request.body_too_large {
                    return Err(ScepError::BodyTooLarge);
                }
                let der = if is_post {
                    codec::decode_post_body(request.body)?
                } else {
                    codec::decode_message_param(query.message.ok_or(ScepError::EmptyMessage)?)?
                };
                let message = message::parse_pki_message(&der)?;
                summary.message_type = Some(message.message_type.as_str());
                summary.transaction_id = Some(printable(&message.transaction_id));
                let _slot = Arc::clone(&endpoint.slots)
                    .try_acquire_owned()
                    .map_err(|_| ScepError::Overloaded {
                        retry_after: endpoint.config.overload_retry_after,
                    })?;
                self.pki_operation(&endpoint, &message, summary).await
            }
        }
    }

    async fn pki_operation(
        &self,
        endpoint: &Endpoint,
        message: &PkiMessage,
        summary: &mut Summary,
    ) -> Result<ScepResponse, ScepError> {
        let mut context = ReplyContext {
            digest: message.digest.unwrap_or(DigestAlg::Sha256),
            cipher: ContentCipher::Aes256,
            transport: KeyTransport::Pkcs1v15,
        };
        let outcome = self.process(endpoint, message, &mut context, summary).await;
        let (status, content, fail) = match outcome {
            Ok(Reply::Success(content)) => (PkiStatus::Success, Some(content), None),
            Ok(Reply::Pending) => (PkiStatus::Pending, None, None),
            Err(error @ ScepError::Overloaded { .. }) => return Err(error),
            Err(error) => {
                if !error.is_client_fault() {
                    tracing::error!(target: "certgate::scep", error = %error, "SCEP request failed inside the server");
                }
                let (info, text) = error.fail_info();
                summary.fail_info = Some(info.as_str());
                summary.fail_text = Some(text.clone());
                (PkiStatus::Failure, None, Some((info, text)))
            }
        };
        summary.pki_status = Some(status.as_str());
        let body = self
            .cert_rep(endpoint, message, &context, status, content, fail)
            .await?;
        Ok(ScepResponse::with_body(200, codec::PKI_MESSAGE, body))
    }

    /// Signs (and for SUCCESS, encrypts) the CertRep.
    async fn cert_rep(
        &self,
        endpoint: &Endpoint,
        request: &PkiMessage,
        context: &ReplyContext,
        status: PkiStatus,
        content: Option<Vec<u8>>,
        fail: Option<(FailInfo, String)>,
    ) -> Result<Vec<u8>, ScepError> {
        let sealed = match (content, request.signer_certificate.as_deref()) {
            (Some(content), Some(recipient)) => {
                let mut cipher = context.cipher;
                if cipher == ContentCipher::Des && !endpoint.config.compat.allow_des_reply {
                    cipher = ContentCipher::Des3;
                }
                message::seal(&content, recipient, cipher, context.transport)?
            }
            // RFC 8894 3.3.2: PENDING and FAILURE carry no messageData; the eContent is empty
            // (as micromdm and EJBCA send it) rather than absent, which some parsers need.
            _ => Vec::new(),
        };
        let attributes = ScepAttributes {
            message_type: MessageType::CertRep,
            transaction_id: request.transaction_id_value.clone(),
            sender_nonce: crate::crypto::random_bytes(16)?,
            recipient_nonce: Some(request.sender_nonce.clone()),
            pki_status: Some(status),
            fail,
        };
        let digest = DigestAlg::from_ra(context.digest.reply_digest());
        let tbs = message::to_be_signed(
            Some(sealed),
            Some(&attributes),
            digest,
            endpoint.config.ra.certificate_der(),
            self.clock.now(),
        )?;
        let ra = Arc::clone(&endpoint.config.ra);
        let to_sign = tbs.signed_attrs_der.clone();
        let signature = tokio::task::spawn_blocking(move || ra.sign(digest.to_ra(), &to_sign))
            .await
            .map_err(|e| ScepError::Task(e.to_string()))??;
        tbs.finish(signature)
    }

    async fn process(
        &self,
        endpoint: &Endpoint,
        message: &PkiMessage,
        context: &mut ReplyContext,
        summary: &mut Summary,
    ) -> Result<Reply, ScepError> {
        context.digest = message.verify(endpoint.config.compat.allow_sha1)?;
        // Only a verified signingTime is evidence; checked before any decryption work.
        self.check_signing_time(endpoint, message)?;
        match message.message_type {
            MessageType::PkcsReq | MessageType::RenewalReq => self.enroll(endpoint, message, context, summary).await,
            MessageType::CertPoll => self.poll(endpoint, message, context, summary).await,
            MessageType::GetCert => self.get_cert(endpoint, message, context, summary).await,
            MessageType::GetCrl => self.get_crl(endpoint, message, context).await,
            MessageType::CertRep | MessageType::Other(_) => {
                Err(ScepError::failure(FailInfo::BadRequest, "unsupported messageType"))
            }
        }
    }

    /// FAILURE badTime when the message's signingTime is further from the server's clock than
    /// the endpoint allows. No signingTime, or no limit configured: accepted.
    fn check_signing_time(&self, endpoint: &Endpoint, message: &PkiMessage) -> Result<(), ScepError> {
        let Some(max_skew) = endpoint.config.max_clock_skew else {
            return Ok(());
        };
        let Some(signed_at) = message.signing_time()? else {
            return Ok(());
        };
        let offset = signed_at - self.clock.now();
        let skew = offset.unsigned_abs();
        if skew <= max_skew {
            return Ok(());
        }
        let direction = if offset.is_positive() { "ahead of" } else { "behind" };
        Err(ScepError::failure(
            FailInfo::BadTime,
            format!(
                "the signingTime is {} {direction} the server's clock; at most {} is allowed",
                describe_duration(skew),
                describe_duration(max_skew)
            ),
        ))
    }

    /// Opens the request's EnvelopedData with the RA key, off the reactor.
    async fn open(
        &self,
        endpoint: &Endpoint,
        message: &PkiMessage,
        context: &mut ReplyContext,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, ScepError> {
        let sealed = message::parse_envelope(&message.content, endpoint.config.ra.certificate_der())?;
        context.cipher = sealed.cipher;
        context.transport = sealed.transport;
        let ra: Arc<RaKey> = Arc::clone(&endpoint.config.ra);
        tokio::task::spawn_blocking(move || sealed.open(&ra))
            .await
            .map_err(|e| ScepError::Task(e.to_string()))?
    }

    async fn enroll(
        &self,
        endpoint: &Endpoint,
        message: &PkiMessage,
        context: &mut ReplyContext,
        summary: &mut Summary,
    ) -> Result<Reply, ScepError> {
        // Shed before the RSA decryption, the challenge check or any write: HTTP 503 with
        // `Retry-After`, as for a full endpoint.
        self.authority
            .admit_issuance(Protocol::Scep, &endpoint.config.name)
            .map_err(|e| match e {
                AuthorityError::Busy { retry_after_seconds } => ScepError::Overloaded {
                    retry_after: u32::try_from(retry_after_seconds).unwrap_or(u32::MAX),
                },
                other => other.into(),
            })?;
        let plain = self.open(endpoint, message, context).await?;
        let csr = ParsedCsr::from_der(&plain).map_err(|e| match e {
            // Undecodable content looks the same whether the key or the client was wrong.
            CsrError::Malformed(_) | CsrError::TooLarge => ScepError::failure(
                FailInfo::BadMessageCheck,
                "the message could not be decrypted or decoded",
            ),
            other => ScepError::Csr(other),
        })?;
        let config = &endpoint.config;
        let approval_key = retrieve::approval_key(endpoint, message)?;
        // A client re-sending the PKCSReq of a queued request (same transactionID and CSR)
        // is polling.
        if config.require_approval
            && let Ok(record) = self.stores.approvals.approval(&approval_key).await
            && record.csr_der == csr.der()
        {
            summary.requester = Some(record.requester.clone());
            return self.approval_state(endpoint, record, summary).await;
        }
        // Authenticate first: an unauthenticated client learns nothing about the policy. A
        // one-time challenge is used up here even if the policy refuses below (the store
        // cannot check one without consuming it); `authenticate` tries the validators without
        // side effects (renewal signer, static) first.
        let principal = self.authenticate(endpoint, message, &csr).await?;
        summary.requester = Some(principal.requester.clone());
        let mut issue = IssueRequest::new(Protocol::Scep, config.name.clone(), csr, principal.requester.clone());
        issue.replaces = principal.renewing.as_ref().map(|old| old.serial.clone());
        self.authority.check(&issue)?;
        if config.require_approval && principal.renewing.is_none() {
            let record = ApprovalRecord::pending(
                approval_key.clone(),
                issue.requester.clone(),
                issue.csr.subject_text().to_owned(),
                issue.csr.sans().to_vec(),
                issue.csr.key(),
                issue.csr.der().to_vec(),
                self.clock.now(),
            );
            match self.stores.approvals.create_approval(&record).await {
                Ok(()) => tracing::info!(
                    target: "certgate::audit",
                    event = "approval_requested",
                    approval = %approval_key,
                    requester = %issue.requester,
                    subject = issue.csr.subject_text(),
                    "certificate request queued for approval"
                ),
                // The transactionID is queued already (another CSR): keep the first.
                Err(StoreError::Conflict(_)) => {
                    return Err(ScepError::failure(
                        FailInfo::BadRequest,
                        "a different request with this transactionID is queued",
                    ));
                }
                Err(e) => return Err(e.into()),
            }
            return Ok(Reply::Pending);
        }
        let issued = self.authority.issue(issue).await?;
        audit(message.message_type, &config.name, &issued.record);
        summary.serial = Some(issued.record.serial.clone());
        self.certificates_reply(endpoint, &issued.record.der)
    }

    fn certificates_reply(&self, endpoint: &Endpoint, leaf: &[u8]) -> Result<Reply, ScepError> {
        let mut certs: Vec<&[u8]> = vec![leaf];
        if endpoint.config.compat.certrep_include_ca {
            certs.extend(endpoint.certrep_chain.iter().map(Vec::as_slice));
        }
        Ok(Reply::Success(message::degenerate(&certs, &[])?))
    }
}

/// A duration for a failInfoText, in whole seconds: `1d 2h 3m 4s`, leaving out zero parts
/// (`0s` for less than a second).
fn describe_duration(duration: Duration) -> String {
    let total = duration.as_secs();
    let parts = [
        (total / 86_400, "d"),
        (total / 3_600 % 24, "h"),
        (total / 60 % 60, "m"),
        (total % 60, "s"),
    ];
    let text: Vec<String> = parts
        .iter()
        .filter(|(value, _)| *value > 0)
        .map(|(value, unit)| format!("{value}{unit}"))
        .collect();
    if text.is_empty() {
        "0s".to_owned()
    } else {
        text.join(" ")
    }
}

/// The GetCACert answer: the DER CA certificate when the RA is the CA itself, else a
/// degenerate PKCS#7 of the RA certificate first, then the issuing CA and intermediates
/// (unless excluded), then the root (when included).
fn ca_cert_body(config: &ScepEndpointConfig, issuer: &Issuer) -> Result<(&'static str, Vec<u8>), ScepError> {
    let ra = config.ra.certificate_der();
    if ra == issuer.certificate_der() {
        return Ok((codec::CA_CERT, ra.to_vec()));
    }
    let mut certs: Vec<&[u8]> = vec![ra];
    if !config.compat.getcacert_exclude_intermediate {
        certs.extend(issuer.chain_after_leaf());
    }
    let root = issuer.root_der();
    let issuer_is_root = issuer.certificate_der() == root;
    if (config.compat.getcacert_include_root || issuer_is_root && !config.compat.getcacert_exclude_intermediate)
        && !certs.contains(&root)
    {
        certs.push(root);
    }
    Ok((codec::CA_RA_CERT, message::degenerate(&certs, &[])?))
}

fn audit(message_type: MessageType, endpoint: &Name, record: &CertificateRecord) {
    tracing::info!(
        target: "certgate::audit",
        event = "scep_enrollment",
        message_type = message_type.as_str(),
        endpoint = %endpoint,
        serial = %record.serial,
        requester = %record.requester,
        replaces = record.replaces.as_ref().map(ToString::to_string),
        "SCEP certificate issued"
    );
}

fn error_response(error: &ScepError) -> ScepResponse {
    let status = error.status();
    if status >= 500 && !matches!(error, ScepError::Overloaded { .. }) {
        tracing::error!(target: "certgate::scep", error = %error, "SCEP request failed inside the server");
    }
    let mut response = ScepResponse::with_body(status, "text/plain; charset=utf-8", error.client_text().into_bytes());
    match error {
        ScepError::Overloaded { retry_after } => response = response.header("retry-after", retry_after.to_string()),
        ScepError::MethodNotAllowed { allow } => response = response.header("allow", *allow),
        _ => {}
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_for_fail_info_text() {
        let cases = [
            ("zero", Duration::ZERO, "0s"),
            ("sub_second", Duration::from_millis(999), "0s"),
            ("seconds", Duration::from_secs(59), "59s"),
            ("minutes_and_seconds", Duration::from_secs(90), "1m 30s"),
            ("one_day", Duration::from_secs(86_400), "1d"),
            ("day_and_hour", Duration::from_secs(90_000), "1d 1h"),
            (
                "everything",
                Duration::from_secs(86_400 + 2 * 3_600 + 3 * 60 + 4),
                "1d 2h 3m 4s",
            ),
        ];
        for (case, duration, want) in cases {
            assert_eq!(describe_duration(duration), want, "case {case}");
        }
    }
}
