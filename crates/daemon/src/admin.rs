//! The local admin socket (`<data-dir>/admin.sock`, mode 0600): how the CLI reads and changes
//! state while the daemon holds the store. sled allows one process per database, so CLI
//! commands use this socket when the daemon runs and open the store directly when it does
//! not ([`Inventory`]). Access control is the file system's: only the daemon's user can
//! connect.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use certgate_authority::{Authority, AuthorityConfig, AuthorityError, Profile};
use certgate_core::{Clock, Name, RevocationReason, Serial, SystemClock};
use certgate_store::AdminTokenStore;
use certgate_store::admin_tokens::{AdminRole, AdminTokenRecord};
use certgate_store::approvals::{ApprovalFilter, ApprovalKey, ApprovalRecord};
use certgate_store::audit::{AuditEvent, AuditKind, AuditLog, SledAuditLog};
use certgate_store::notifications::NotificationStore;
use certgate_store::{ApprovalStore, CertificateRecord, CertificateStore, EstUserStore, ScepChallengeStore, SledStore};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use crate::http::{Body, json, percent_encode, query_pairs, text, with_type};
use crate::inventory::{InventoryFilter, InventoryPage};

/// Request bodies on the admin socket are small JSON documents.
pub const MAX_ADMIN_BODY: usize = 64 * 1024;

/// The socket's path in a data directory.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.sock")
}

/// A revocation request on the wire.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    /// The reason.
    pub reason: RevocationReason,
}

/// Store counts on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub struct StatusBody {
    /// certgate version.
    pub version: String,
    /// Journal counts.
    pub journal: certgate_store::JournalStatus,
}

/// Which certificates a listing asks for.
#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    /// The filters.
    pub filter: InventoryFilter,
    /// Page size.
    pub limit: usize,
    /// Cursor.
    pub after: Option<String>,
}

impl ListRequest {
    fn to_query_string(&self) -> String {
        let mut parts = vec![format!("limit={}", self.limit)];
        for (key, value) in self.filter.to_pairs() {
            parts.push(format!("{key}={}", percent_encode(&value)));
        }
        if let Some(after) = &self.after {
            parts.push(format!("after={}", percent_encode(after)));
        }
        parts.join("&")
    }

    fn from_query(query: Option<&str>) -> anyhow::Result<Self> {
        let pairs = query_pairs(query);
        Ok(Self {
            filter: InventoryFilter::from_pairs(&pairs)?,
            limit: pairs.get("limit").map(|l| l.parse()).transpose()?.unwrap_or(100),
            after: pairs.get("after").cloned(),
        })
    }
}

/// The state behind the admin socket.
pub struct AdminService {
    /// The authority (revocations go through it).
    pub authority: Arc<Authority>,
    /// The store (reads).
    pub store: SledStore,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The ACME server, for EAB keys.
    pub acme: Option<Arc<certgate_acme::AcmeServer>>,
    /// The EST endpoints' names, for user management.
    pub est_endpoints: Vec<Name>,
    /// The SCEP endpoints' names, for one-time challenges.
    pub scep_endpoints: Vec<Name>,
    /// Where in a certificate's lifetime its renewal window starts (inventory status).
    pub renewal_fraction: f64,
    /// The audit log admin actions are recorded in.
    pub audit: Option<Arc<dyn AuditLog>>,
    /// SHA-256 fingerprints (hex) of client certificates with the admin role.
    pub admin_certificates: Vec<String>,
    /// Deployment verification on demand.
    pub deployment: Option<certgate_lifecycle::DeploymentVerifier>,
}

/// A deployment check request: these `host:port` targets, or the configured ones when empty.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifyBody {
    /// `host:port` addresses.
    pub targets: Vec<String>,
}

/// A new one-time SCEP challenge request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScepChallengeCreateBody {
    /// The SCEP endpoint.
    pub endpoint: String,
    /// Bind it to this subject (RFC 4514 text or the bare common name).
    pub subject: Option<String>,
    /// Lifetime in seconds.
    pub ttl_seconds: u64,
}

/// A new one-time challenge, shown once.
#[derive(Serialize, Deserialize)]
pub struct ScepChallengeBody {
    /// The challenge password to give the device.
    pub challenge: String,
    /// Its id (a hash: what listings show).
    pub id: String,
    /// When it expires.
    pub expires_at: String,
}

/// A one-time challenge as listed (never the challenge itself).
#[derive(Debug, Serialize, Deserialize)]
pub struct ScepChallengeItem {
    /// Endpoint.
    pub endpoint: String,
    /// The challenge's id.
    pub id: String,
    /// The subject it is bound to.
    pub subject: Option<String>,
    /// Created.
    pub created_at: String,
    /// Expires.
    pub expires_at: String,
}

/// The longest lifetime of a one-time challenge: 30 days.
const MAX_CHALLENGE_TTL_SECONDS: u64 = 30 * 86_400;

/// Creates a one-time SCEP challenge after checking the endpoint exists.
pub async fn scep_challenge_create(
    store: &SledStore,
    scep_endpoints: &[Name],
    request: &ScepChallengeCreateBody,
    by: &str,
    now: time::OffsetDateTime,
) -> Result<ScepChallengeBody, (StatusCode, String)> {
    let endpoint = match Name::new(request.endpoint.as_str()) {
        Ok(name) if scep_endpoints.contains(&name) => name,
        _ => {
            return Err((
                StatusCode::NOT_FOUND,
                format!("no SCEP endpoint named {:?}", request.endpoint),
            ));
        }
    };
    if !(1..=MAX_CHALLENGE_TTL_SECONDS).contains(&request.ttl_seconds) {
        return Err((
            StatusCode::BAD_REQUEST,
            format!(
                "the lifetime must be 1 second to {} days",
                MAX_CHALLENGE_TTL_SECONDS / 86_400
            ),
        ));
    }
    let ttl = time::Duration::seconds(request.ttl_seconds.try_into().unwrap_or(i64::MAX));
    match certgate_scep::create_one_time_challenge(
        store,
        &endpoint,
        request.subject.clone(),
        ttl,
        Some(by.to_owned()),
        now,
    )
    .await
    {
        Ok((challenge, record)) => Ok(ScepChallengeBody {
            challenge: challenge.to_string(),
            id: record.id,
            expires_at: rfc3339(record.expires_at),
        }),
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// Lists unused one-time challenges (ids only).
pub async fn scep_challenge_list(store: &SledStore, endpoint: Option<&str>) -> anyhow::Result<Vec<ScepChallengeItem>> {
    let endpoint = endpoint.map(Name::new).transpose()?;
    Ok(store
        .scep_challenges(endpoint.as_ref(), 1000)
        .await?
        .into_iter()
        .map(|c| ScepChallengeItem {
            endpoint: c.endpoint.to_string(),
            id: c.id,
            subject: c.subject,
            created_at: rfc3339(c.created_at),
            expires_at: rfc3339(c.expires_at),
        })
        .collect())
}

/// A new EST user; the password travels only over the admin socket and is hashed here.
#[derive(Serialize, Deserialize)]
pub struct EstUserCreateBody {
    /// The EST endpoint.
    pub endpoint: String,
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

/// An EST user as listed (never the hash).
#[derive(Debug, Serialize, Deserialize)]
pub struct EstUserItem {
    /// Endpoint.
    pub endpoint: String,
    /// User name.
    pub username: String,
    /// Created.
    pub created_at: String,
}

/// An approval request as listed (the CSR left out).
#[derive(Debug, Serialize, Deserialize)]
pub struct ApprovalItem {
    /// The id operators type (`est:default:<fingerprint>`).
    pub id: String,
    /// pending, approved, denied or issued.
    pub state: String,
    /// Who asked.
    pub requester: String,
    /// The CSR's subject.
    pub subject: String,
    /// The CSR's names.
    pub names: Vec<String>,
    /// The CSR's key type.
    pub key: String,
    /// When the client first asked.
    pub created_at: String,
    /// Which operator decided.
    pub decided_by: Option<String>,
    /// The operator's reason.
    pub reason: Option<String>,
    /// The certificate issued, once issued.
    pub certificate: Option<String>,
}

impl From<ApprovalRecord> for ApprovalItem {
    fn from(record: ApprovalRecord) -> Self {
        Self {
            id: record.key.to_string(),
            state: record.state.to_string(),
            requester: record.requester.to_string(),
            subject: record.subject,
            names: record.identifiers.iter().map(ToString::to_string).collect(),
            key: record.key_kind.to_string(),
            created_at: rfc3339(record.created_at),
            decided_by: record.decided_by,
            reason: record.reason,
            certificate: record.certificate.map(|s| s.to_string()),
        }
    }
}

/// An operator's denial.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenyBody {
    /// Why (kept for operators).
    pub reason: Option<String>,
}

/// Records an action the CLI took on the store directly (no daemon running).
async fn record_admin_action(audit: &SledAuditLog, action: &str, subject: &str) {
    let event = AuditEvent {
        kind: AuditKind::Admin,
        actor: "operator:cli".into(),
        subject: subject.to_owned(),
        details: std::collections::BTreeMap::from([("action".to_owned(), action.to_owned())]),
    };
    if let Err(e) = audit.append_durable(&event, SystemClock.now()).await {
        tracing::error!(error = %e, action, "could not record an admin action in the audit log");
    }
}

fn unauthorized(why: &str) -> Response<Body> {
    let mut response = text(StatusCode::UNAUTHORIZED, why);
    response.headers_mut().insert(
        hyper::header::WWW_AUTHENTICATE,
        hyper::header::HeaderValue::from_static("Bearer realm=\"certgate-admin\""),
    );
    response
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Adds an EST user after checking the endpoint exists.
pub async fn est_user_add(
    store: &SledStore,
    est_endpoints: &[Name],
    request: &EstUserCreateBody,
    now: time::OffsetDateTime,
) -> Result<(), (StatusCode, String)> {
    let endpoint = match Name::new(request.endpoint.as_str()) {
        Ok(name) if est_endpoints.contains(&name) => name,
        _ => {
            return Err((
                StatusCode::NOT_FOUND,
                format!("no EST endpoint named {:?}", request.endpoint),
            ));
        }
    };
    match certgate_est::EstServer::add_user(store, &endpoint, &request.username, request.password.as_bytes(), now).await
    {
        Ok(()) => {
            tracing::info!(target: "certgate::audit", event = "est-user-added", endpoint = %endpoint, username = %request.username, "EST user added");
            Ok(())
        }
        Err(certgate_est::EstError::Store(certgate_store::StoreError::Conflict(_))) => Err((
            StatusCode::CONFLICT,
            format!("user {:?} already exists at EST endpoint {endpoint}", request.username),
        )),
        Err(certgate_est::EstError::Config(why)) => Err((StatusCode::BAD_REQUEST, why)),
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// Removes an EST user.
pub async fn est_user_remove(store: &SledStore, endpoint: &str, username: &str) -> Result<(), (StatusCode, String)> {
    let not_found = || {
        (
            StatusCode::NOT_FOUND,
            format!("no user {username:?} at EST endpoint {endpoint:?}"),
        )
    };
    let Ok(name) = Name::new(endpoint) else {
        return Err(not_found());
    };
    match store.remove_est_user(&name, username).await {
        Ok(()) => {
            tracing::info!(target: "certgate::audit", event = "est-user-removed", endpoint = %name, username = %username, "EST user removed");
            Ok(())
        }
        Err(certgate_store::StoreError::NotFound) => Err(not_found()),
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// Lists EST users (never their hashes).
pub async fn est_user_list(store: &SledStore, endpoint: Option<&str>) -> anyhow::Result<Vec<EstUserItem>> {
    let endpoint = endpoint.map(Name::new).transpose()?;
    Ok(store
        .est_users(endpoint.as_ref())
        .await?
        .into_iter()
        .map(|u| EstUserItem {
            endpoint: u.endpoint.to_string(),
            username: u.username,
            created_at: rfc3339(u.created_at),
        })
        .collect())
}

/// Lists approval requests: pending ones, or all with `all`.
pub async fn approval_list(store: &SledStore, all: bool) -> anyhow::Result<Vec<ApprovalItem>> {
    let filter = if all {
        ApprovalFilter::default()
    } else {
        ApprovalFilter::pending()
    };
    Ok(store
        .approvals(&filter, 1000)
        .await?
        .into_iter()
        .map(ApprovalItem::from)
        .collect())
}

/// Approves or denies (with `deny = Some(reason)`) one request.
pub async fn approval_decide(
    store: &SledStore,
    id: &str,
    deny: Option<Option<String>>,
    by: &str,
    now: time::OffsetDateTime,
) -> Result<ApprovalItem, (StatusCode, String)> {
    let key: ApprovalKey = id
        .parse()
        .map_err(|e: certgate_store::approvals::ApprovalKeyError| (StatusCode::BAD_REQUEST, e.to_string()))?;
    let result = match &deny {
        None => store.approve(&key, by, now).await,
        Some(reason) => store.deny(&key, by, reason.as_deref(), now).await,
    };
    match result {
        Ok(record) => {
            let event = if deny.is_some() {
                "approval-denied"
            } else {
                "approval-approved"
            };
            tracing::info!(target: "certgate::audit", event, id = %key, by, requester = %record.requester, "approval decided");
            Ok(record.into())
        }
        Err(certgate_store::StoreError::NotFound) => Err((StatusCode::NOT_FOUND, format!("no approval request {id}"))),
        Err(certgate_store::StoreError::Conflict(_)) => match store.approval(&key).await {
            Ok(record) => Err((
                StatusCode::CONFLICT,
                format!("approval request {id} is already {}", record.state),
            )),
            Err(_) => Err((StatusCode::CONFLICT, format!("approval request {id} changed meanwhile"))),
        },
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// A new EAB key request.
#[derive(Debug, Serialize, Deserialize)]
pub struct EabCreateBody {
    /// The ACME endpoint.
    pub endpoint: String,
}

/// A new EAB key, shown once.
#[derive(Debug, Serialize, Deserialize)]
pub struct EabKeyBody {
    /// The key id (`kid` of the binding).
    pub key_id: String,
    /// The MAC key, base64url.
    pub hmac_key: String,
}

/// An EAB key as listed (never the MAC key).
#[derive(Debug, Serialize, Deserialize)]
pub struct EabListItem {
    /// Key id.
    pub key_id: String,
    /// Endpoint.
    pub endpoint: String,
    /// Created.
    pub created_at: String,
    /// The account it bound, once used.
    pub account: Option<String>,
}

/// Lists EAB keys without their secrets.
pub async fn eab_list(store: &SledStore) -> anyhow::Result<Vec<EabListItem>> {
    use certgate_store::AcmeStore;
    Ok(store
        .eab_keys(None)
        .await?
        .into_iter()
        .map(|k| EabListItem {
            key_id: k.key_id,
            endpoint: k.endpoint.to_string(),
            created_at: k
                .created_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            account: k.account_id,
        })
        .collect())
}

/// Who calls the admin API, and what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// How the audit log and the logs name them.
    pub name: String,
    /// What they may do.
    pub role: AdminRole,
}

impl Actor {
    /// The local socket's caller: file-system access is the authorization.
    pub fn socket() -> Self {
        Self {
            name: "operator:admin-socket".into(),
            role: AdminRole::Admin,
        }
    }
}

/// The token prefix: makes a leaked token recognisable to secret scanners.
const TOKEN_PREFIX: &str = "cgt_";

/// A new admin token: the string to give the operator (shown once) and the record to store.
pub fn new_admin_token(
    name: &str,
    role: AdminRole,
    expires_at: Option<time::OffsetDateTime>,
    by: &str,
    now: time::OffsetDateTime,
) -> anyhow::Result<(String, AdminTokenRecord)> {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    aws_lc_rs::rand::fill(&mut id).map_err(|_| anyhow!("random number generator failed"))?;
    aws_lc_rs::rand::fill(&mut secret).map_err(|_| anyhow!("random number generator failed"))?;
    let id = hex::encode(id);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let record = AdminTokenRecord {
        id: id.clone(),
        name: name.to_owned(),
        role,
        secret_sha256: hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes())),
        created_at: now,
        expires_at,
        created_by: by.to_owned(),
    };
    Ok((format!("{TOKEN_PREFIX}{id}_{secret}"), record))
}

/// The actor a bearer token stands for, or why not. The secret is compared in constant time
/// (as its SHA-256), so response timing says nothing about it.
pub async fn authenticate_token(
    store: &dyn AdminTokenStore,
    token: &str,
    now: time::OffsetDateTime,
) -> Result<Actor, &'static str> {
    let Some((id, secret)) = token.strip_prefix(TOKEN_PREFIX).and_then(|t| t.split_once('_')) else {
        return Err("malformed admin token");
    };
    let record = match store.admin_token(id).await {
        Ok(record) => record,
        Err(_) => return Err("unknown admin token"),
    };
    let presented = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes()));
    if !bool::from(presented.as_bytes().ct_eq(record.secret_sha256.as_bytes())) {
        return Err("unknown admin token");
    }
    if record.expires_at.is_some_and(|at| at <= now) {
        return Err("the admin token has expired");
    }
    Ok(Actor {
        name: format!("token:{}:{}", record.id, record.name),
        role: record.role,
    })
}

/// A new admin token request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenCreateBody {
    /// What to call it.
    pub name: String,
    /// `admin` or `read-only`.
    pub role: AdminRole,
    /// Lifetime in seconds; none for no expiry.
    pub ttl_seconds: Option<u64>,
}

/// A token as listed (never its secret).
#[derive(Debug, Serialize, Deserialize)]
pub struct TokenItem {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Role.
    pub role: AdminRole,
    /// Created.
    pub created_at: String,
    /// Expires.
    pub expires_at: Option<String>,
    /// Created by.
    pub created_by: String,
}

impl From<AdminTokenRecord> for TokenItem {
    fn from(record: AdminTokenRecord) -> Self {
        Self {
            id: record.id,
            name: record.name,
            role: record.role,
            created_at: rfc3339(record.created_at),
            expires_at: record.expires_at.map(rfc3339),
            created_by: record.created_by,
        }
    }
}

/// A new token, shown once.
#[derive(Debug, Serialize, Deserialize)]
pub struct TokenCreatedBody {
    /// The bearer token.
    pub token: String,
    /// Its listing.
    pub item: TokenItem,
}

impl AdminService {
    async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().map(str::to_owned);
        let body = match Limited::new(request.into_body(), MAX_ADMIN_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
        };
        let response = self
            .route(&Actor::socket(), &method, &path, query.as_deref(), &body)
            .await;
        tracing::info!(target: "certgate::request", listener = "admin", method = %method, path = %path, status = response.status().as_u16(), "request");
        response
    }

    /// The HTTPS admin API (`/admin/v1/...` on the HTTPS listener): a bearer token or a
    /// client certificate whose SHA-256 fingerprint is configured as an admin.
    pub async fn handle_https(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        authorization: Option<&str>,
        client_leaf: Option<&[u8]>,
        body: &[u8],
    ) -> Response<Body> {
        let now = self.clock.now();
        let actor = match authorization.and_then(|a| a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("bearer "))) {
            Some(token) => match authenticate_token(&self.store, token.trim(), now).await {
                Ok(actor) => actor,
                Err(why) => return unauthorized(why),
            },
            None => {
                let fingerprint =
                    client_leaf.map(|der| hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der)));
                match fingerprint {
                    Some(fp)
                        if self
                            .admin_certificates
                            .iter()
                            .any(|pinned| pinned.eq_ignore_ascii_case(&fp)) =>
                    {
                        Actor {
                            name: format!("client-certificate:{fp}"),
                            role: AdminRole::Admin,
                        }
                    }
                    _ => return unauthorized("an admin bearer token or admin client certificate is required"),
                }
            }
        };
        let Some(path) = path.strip_prefix("/admin") else {
            return text(StatusCode::NOT_FOUND, "no such admin resource");
        };
        self.route(&actor, method, path, query, body).await
    }

    /// Records an operator's action in the audit log (and the logs); a failure to record is
    /// logged, not fatal: the action itself already happened and was durable.
    async fn audit_admin(&self, actor: &Actor, action: &str, subject: &str, details: &[(&str, String)]) {
        tracing::info!(target: "certgate::audit", event = "admin", action, actor = %actor.name, subject, "admin action");
        if let Some(audit) = &self.audit {
            let mut map = std::collections::BTreeMap::new();
            map.insert("action".to_owned(), action.to_owned());
            for (k, v) in details {
                map.insert((*k).to_owned(), v.clone());
            }
            let event = AuditEvent {
                kind: AuditKind::Admin,
                actor: actor.name.clone(),
                subject: subject.to_owned(),
                details: map,
            };
            if let Err(e) = audit.append_durable(&event, self.clock.now()).await {
                tracing::error!(error = %e, action, "could not record an admin action in the audit log");
            }
        }
    }

    async fn route(
        &self,
        actor: &Actor,
        method: &Method,
        path: &str,
        query: Option<&str>,
        body: &[u8],
    ) -> Response<Body> {
        if actor.role == AdminRole::ReadOnly && *method != Method::GET {
            return text(StatusCode::FORBIDDEN, "this token may only read");
        }
        let by = actor.name.as_str();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method, segments.as_slice()) {
            (&Method::GET, ["v1", "status"]) => match self.store.journal_status().await {
                Ok(journal) => json(
                    StatusCode::OK,
                    &StatusBody {
                        version: env!("CARGO_PKG_VERSION").into(),
                        journal,
                    },
                ),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            },
            (&Method::GET, ["v1", "certificates"]) => {
                let request = match ListRequest::from_query(query) {
                    Ok(request) => request,
                    Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
                };
                match crate::inventory::list(
                    &self.store,
                    &request.filter,
                    request.limit,
                    request.after,
                    self.clock.now(),
                    self.renewal_fraction,
                )
                .await
                {
                    Ok(page) => json(StatusCode::OK, &page),
                    Err(certgate_store::StoreError::Conflict(why)) => text(StatusCode::BAD_REQUEST, why),
                    Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                }
            }
            (&Method::GET, ["v1", "certificates", "export"]) => {
                let pairs = query_pairs(query);
                let filter = match InventoryFilter::from_pairs(&pairs) {
                    Ok(filter) => filter,
                    Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
                };
                let items =
                    match crate::inventory::list_all(&self.store, &filter, self.clock.now(), self.renewal_fraction)
                        .await
                    {
                        Ok(items) => items,
                        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                    };
                match pairs.get("format").map(String::as_str) {
                    Some("csv") => with_type(
                        StatusCode::OK,
                        "text/csv; charset=utf-8",
                        crate::inventory::to_csv(&items).into_bytes(),
                    ),
                    Some("json") | None => json(StatusCode::OK, &items),
                    Some(other) => text(
                        StatusCode::BAD_REQUEST,
                        format!("unknown export format {other:?} (csv, json)"),
                    ),
                }
            }
            (&Method::GET, ["v1", "audit"]) => {
                let pairs = query_pairs(query);
                let after: u64 = pairs.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
                let limit: usize = pairs
                    .get("limit")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(1000)
                    .clamp(1, 10_000);
                let Some(audit) = &self.audit else {
                    return text(StatusCode::NOT_FOUND, "no audit log");
                };
                match audit.entries(after, limit).await {
                    Ok(entries) => {
                        let mut lines = String::new();
                        for entry in entries {
                            match serde_json::to_string(&entry) {
                                Ok(line) => {
                                    lines.push_str(&line);
                                    lines.push('\n');
                                }
                                Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                            }
                        }
                        with_type(StatusCode::OK, "application/jsonl", lines.into_bytes())
                    }
                    Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                }
            }
            (&Method::POST, ["v1", "deployments", "verify"]) => {
                let request: VerifyBody = if body.is_empty() {
                    VerifyBody::default()
                } else {
                    match serde_json::from_slice(body) {
                        Ok(request) => request,
                        Err(e) => return text(StatusCode::BAD_REQUEST, format!("expected {{\"targets\": […]}}: {e}")),
                    }
                };
                let Some(verifier) = &self.deployment else {
                    return text(StatusCode::NOT_FOUND, "deployment verification is not configured");
                };
                let result = if request.targets.is_empty() {
                    verifier.run_once().await
                } else {
                    let settings = match crate::wiring::deployment_settings(&Default::default(), &request.targets) {
                        Ok(settings) => settings,
                        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
                    };
                    verifier.verify_targets(&settings.targets).await
                };
                match result {
                    Ok(reports) => json(StatusCode::OK, &reports),
                    Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                }
            }
            (&Method::GET, ["v1", "deployments"]) => match self.store.deployments().await {
                Ok(observations) => json(StatusCode::OK, &observations),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            },
            (&Method::GET, ["v1", "deliveries"]) => {
                let pairs = query_pairs(query);
                let query = certgate_store::notifications::DeliveryQuery {
                    webhook: pairs.get("webhook").cloned(),
                    alert_key: pairs.get("alert_key").cloned(),
                    failed_only: pairs.get("failed").is_some_and(|v| v == "true"),
                    limit: pairs.get("limit").and_then(|l| l.parse().ok()).unwrap_or(0),
                };
                match self.store.deliveries(&query).await {
                    Ok(records) => json(StatusCode::OK, &records),
                    Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                }
            }
            (&Method::POST, ["v1", "tokens"]) => {
                let request: TokenCreateBody = match serde_json::from_slice(body) {
                    Ok(request) => request,
                    Err(e) => {
                        return text(
                            StatusCode::BAD_REQUEST,
                            format!("expected {{\"name\": …, \"role\": …}}: {e}"),
                        );
                    }
                };
                let now = self.clock.now();
                let expires_at = request
                    .ttl_seconds
                    .map(|s| now + time::Duration::seconds(s.min(10 * 365 * 86_400) as i64));
                let (token, record) = match new_admin_token(&request.name, request.role, expires_at, by, now) {
                    Ok(created) => created,
                    Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                };
                if let Err(e) = self.store.insert_admin_token(&record).await {
                    return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
                }
                self.audit_admin(
                    actor,
                    "token-created",
                    &record.id,
                    &[("name", record.name.clone()), ("role", record.role.as_str().into())],
                )
                .await;
                json(
                    StatusCode::CREATED,
                    &TokenCreatedBody {
                        token,
                        item: record.into(),
                    },
                )
            }
            (&Method::GET, ["v1", "tokens"]) => match self.store.admin_tokens().await {
                Ok(tokens) => json(
                    StatusCode::OK,
                    &tokens.into_iter().map(TokenItem::from).collect::<Vec<_>>(),
                ),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            },
            (&Method::DELETE, ["v1", "tokens", id]) => match self.store.remove_admin_token(id).await {
                Ok(()) => {
                    self.audit_admin(actor, "token-removed", id, &[]).await;
                    text(StatusCode::OK, "removed")
                }
                Err(certgate_store::StoreError::NotFound) => text(StatusCode::NOT_FOUND, "no such token"),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            },
            (&Method::GET, ["v1", "certificates", serial]) => {
                let Ok(serial) = Serial::parse_hex(serial) else {
                    return text(StatusCode::BAD_REQUEST, "the serial must be hexadecimal");
                };
                match self.store.certificate(&serial).await {
                    Ok(record) => json(StatusCode::OK, &record),
                    Err(certgate_store::StoreError::NotFound) => {
                        text(StatusCode::NOT_FOUND, "no certificate with this serial")
                    }
                    Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                }
            }
            (&Method::POST, ["v1", "certificates", serial, "revoke"]) => {
                let Ok(serial) = Serial::parse_hex(serial) else {
                    return text(StatusCode::BAD_REQUEST, "the serial must be hexadecimal");
                };
                let request: RevokeBody = match serde_json::from_slice(body) {
                    Ok(request) => request,
                    Err(e) => return text(StatusCode::BAD_REQUEST, format!("expected {{\"reason\": …}}: {e}")),
                };
                match self.authority.revoke(&serial, request.reason, by).await {
                    Ok(record) => json(StatusCode::OK, &record),
                    Err(AuthorityError::NotFound) => text(StatusCode::NOT_FOUND, "no certificate with this serial"),
                    Err(AuthorityError::AlreadyRevoked) => {
                        text(StatusCode::CONFLICT, "the certificate is already revoked")
                    }
                    Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                }
            }
            (&Method::POST, ["v1", "acme", "eab"]) => {
                let request: EabCreateBody = match serde_json::from_slice(body) {
                    Ok(request) => request,
                    Err(e) => return text(StatusCode::BAD_REQUEST, format!("expected {{\"endpoint\": …}}: {e}")),
                };
                let endpoint = match Name::new(request.endpoint.as_str()) {
                    Ok(name) if self.acme.as_ref().is_some_and(|a| a.has_endpoint(&name)) => name,
                    _ => {
                        return text(
                            StatusCode::NOT_FOUND,
                            format!("no ACME endpoint named {:?}", request.endpoint),
                        );
                    }
                };
                match certgate_acme::AcmeServer::create_eab_key(&self.store, &endpoint, self.clock.now()).await {
                    Ok((key_id, hmac_key)) => {
                        self.audit_admin(
                            actor,
                            "acme-eab-key-created",
                            &key_id,
                            &[("endpoint", endpoint.to_string())],
                        )
                        .await;
                        json(StatusCode::CREATED, &EabKeyBody { key_id, hmac_key })
                    }
                    Err(problem) => text(StatusCode::INTERNAL_SERVER_ERROR, problem.detail),
                }
            }
            (&Method::GET, ["v1", "acme", "eab"]) => match eab_list(&self.store).await {
                Ok(list) => json(StatusCode::OK, &list),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            },
            (&Method::POST, ["v1", "est", "users"]) => {
                let request: EstUserCreateBody = match serde_json::from_slice(body) {
                    Ok(request) => request,
                    Err(_) => {
                        return text(
                            StatusCode::BAD_REQUEST,
                            "expected {\"endpoint\": …, \"username\": …, \"password\": …}",
                        );
                    }
                };
                match est_user_add(&self.store, &self.est_endpoints, &request, self.clock.now()).await {
                    Ok(()) => {
                        let subject = format!("{}/{}", request.endpoint, request.username);
                        self.audit_admin(actor, "est-user-added", &subject, &[]).await;
                        text(StatusCode::CREATED, "created")
                    }
                    Err((status, why)) => text(status, why),
                }
            }
            (&Method::DELETE, ["v1", "est", "users", endpoint, username]) => {
                let username = crate::http::percent_decode(username);
                match est_user_remove(&self.store, endpoint, &username).await {
                    Ok(()) => {
                        self.audit_admin(actor, "est-user-removed", &format!("{endpoint}/{username}"), &[])
                            .await;
                        text(StatusCode::OK, "removed")
                    }
                    Err((status, why)) => text(status, why),
                }
            }
            (&Method::GET, ["v1", "est", "users"]) => {
                let pairs = query_pairs(query);
                match est_user_list(&self.store, pairs.get("endpoint").map(String::as_str)).await {
                    Ok(list) => json(StatusCode::OK, &list),
                    Err(e) => text(StatusCode::BAD_REQUEST, e.to_string()),
                }
            }
            (&Method::POST, ["v1", "scep", "challenges"]) => {
                let request: ScepChallengeCreateBody = match serde_json::from_slice(body) {
                    Ok(request) => request,
                    Err(e) => {
                        return text(
                            StatusCode::BAD_REQUEST,
                            format!("expected {{\"endpoint\": …, \"subject\": …, \"ttl_seconds\": …}}: {e}"),
                        );
                    }
                };
                match scep_challenge_create(&self.store, &self.scep_endpoints, &request, by, self.clock.now()).await {
                    Ok(created) => {
                        self.audit_admin(
                            actor,
                            "scep-challenge-created",
                            &created.id,
                            &[("endpoint", request.endpoint.clone())],
                        )
                        .await;
                        json(StatusCode::CREATED, &created)
                    }
                    Err((status, why)) => text(status, why),
                }
            }
            (&Method::GET, ["v1", "scep", "challenges"]) => {
                let pairs = query_pairs(query);
                match scep_challenge_list(&self.store, pairs.get("endpoint").map(String::as_str)).await {
                    Ok(list) => json(StatusCode::OK, &list),
                    Err(e) => text(StatusCode::BAD_REQUEST, e.to_string()),
                }
            }
            (&Method::GET, ["v1", "approvals"]) => {
                let all = query_pairs(query).get("all").is_some_and(|v| v == "true");
                match approval_list(&self.store, all).await {
                    Ok(list) => json(StatusCode::OK, &list),
                    Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                }
            }
            (&Method::POST, ["v1", "approvals", id, decision @ ("approve" | "deny")]) => {
                let deny = if *decision == "deny" {
                    match serde_json::from_slice::<DenyBody>(body) {
                        Ok(request) => Some(request.reason),
                        Err(_) if body.is_empty() => Some(None),
                        Err(e) => return text(StatusCode::BAD_REQUEST, format!("expected {{\"reason\": …}}: {e}")),
                    }
                } else {
                    None
                };
                let id = crate::http::percent_decode(id);
                match approval_decide(&self.store, &id, deny, by, self.clock.now()).await {
                    Ok(item) => {
                        self.audit_admin(actor, &format!("approval-{decision}"), &id, &[]).await;
                        json(StatusCode::OK, &item)
                    }
                    Err((status, why)) => text(status, why),
                }
            }
            _ => text(StatusCode::NOT_FOUND, format!("no admin resource {method} {path}")),
        }
    }
}

/// Binds the admin socket (replacing a stale one) with mode 0600.
pub fn bind(data_dir: &Path) -> anyhow::Result<UnixListener> {
    let path = socket_path(data_dir);
    if path.exists() {
        // Only a stale socket can be here: the store lock already proved no other daemon runs.
        fs::remove_file(&path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    let listener = UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves the admin socket until `shutdown` fires.
pub async fn serve(
    listener: UnixListener,
    service: Arc<AdminService>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "admin socket accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let service = Arc::clone(&service);
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let svc = service_fn(move |request| {
                let service = Arc::clone(&service);
                async move { Ok::<_, std::convert::Infallible>(service.handle(request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
            let _ = watcher.watch(connection).await;
        });
    }
    let _ = tokio::time::timeout(grace, graceful.shutdown()).await;
}

/// A client of a running daemon's admin socket.
#[derive(Debug, Clone)]
pub struct AdminClient {
    path: PathBuf,
}

impl AdminClient {
    /// Connects if a daemon answers on the data directory's socket.
    pub async fn connect(data_dir: &Path) -> Option<Self> {
        let path = socket_path(data_dir);
        UnixStream::connect(&path).await.ok().map(|_| Self { path })
    }

    async fn call(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> anyhow::Result<(StatusCode, Bytes)> {
        let stream = UnixStream::connect(&self.path)
            .await
            .with_context(|| format!("connecting to {}", self.path.display()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "certgate-admin")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    /// Calls the daemon and decodes a JSON answer (an error for a non-2xx status).
    pub async fn call_json<T: for<'de> Deserialize<'de>>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<T> {
        let (status, bytes) = self.call(method, path, body).await?;
        if !status.is_success() {
            bail!("{}", String::from_utf8_lossy(&bytes).trim());
        }
        serde_json::from_slice(&bytes).context("decoding the daemon's answer")
    }
}

/// Where CLI commands read and change state: through a running daemon, or directly in the
/// store when none runs.
pub enum Inventory {
    /// A running daemon.
    Daemon(AdminClient),
    /// The store, opened by this process.
    Store {
        /// The store.
        store: SledStore,
        /// An authority for revocations (no issuers: it only records). Boxed: far larger than
        /// the daemon variant.
        authority: Box<Authority>,
        /// The store's audit log.
        audit: Arc<SledAuditLog>,
    },
}

impl Inventory {
    /// Uses the daemon's admin socket if it answers, else opens the store.
    pub async fn open(data_dir: &Path) -> anyhow::Result<Self> {
        if let Some(client) = AdminClient::connect(data_dir).await {
            return Ok(Self::Daemon(client));
        }
        if !data_dir.join("db").exists() {
            bail!(
                "no certgate store in {} (start the daemon once, or pass --data-dir)",
                data_dir.display()
            );
        }
        let store = crate::wiring::open_store(data_dir)?;
        let config = AuthorityConfig {
            issuers: Vec::new(),
            profiles: Profile::builtin(),
            endpoints: Vec::new(),
            public_base_url: None,
        };
        let audit = Arc::new(crate::wiring::open_audit_log(&store, data_dir)?);
        let authority = Box::new(
            Authority::new(config, Arc::new(store.clone()), Arc::new(SystemClock))?
                .with_audit(Arc::clone(&audit) as Arc<dyn AuditLog>),
        );
        Ok(Self::Store {
            store,
            authority,
            audit,
        })
    }

    /// Whether a running daemon answers these calls.
    pub fn via_daemon(&self) -> bool {
        matches!(self, Self::Daemon(_))
    }

    /// A page of certificates.
    pub async fn list(&self, request: &ListRequest, renewal_fraction: f64) -> anyhow::Result<InventoryPage> {
        match self {
            Self::Daemon(client) => {
                client
                    .call_json(
                        Method::GET,
                        &format!("/v1/certificates?{}", request.to_query_string()),
                        None,
                    )
                    .await
            }
            Self::Store { store, .. } => Ok(crate::inventory::list(
                store,
                &request.filter,
                request.limit,
                request.after.clone(),
                SystemClock.now(),
                renewal_fraction,
            )
            .await?),
        }
    }

    /// Every certificate matching `filter`, as CSV or JSON text.
    pub async fn export(&self, filter: &InventoryFilter, csv: bool, renewal_fraction: f64) -> anyhow::Result<String> {
        match self {
            Self::Daemon(client) => {
                let mut query = vec![format!("format={}", if csv { "csv" } else { "json" })];
                for (key, value) in filter.to_pairs() {
                    query.push(format!("{key}={}", percent_encode(&value)));
                }
                let (status, bytes) = client
                    .call(
                        Method::GET,
                        &format!("/v1/certificates/export?{}", query.join("&")),
                        None,
                    )
                    .await?;
                if !status.is_success() {
                    bail!("{}", String::from_utf8_lossy(&bytes));
                }
                Ok(String::from_utf8(bytes.to_vec())?)
            }
            Self::Store { store, .. } => {
                let items = crate::inventory::list_all(store, filter, SystemClock.now(), renewal_fraction).await?;
                Ok(if csv {
                    crate::inventory::to_csv(&items)
                } else {
                    serde_json::to_string_pretty(&items)?
                })
            }
        }
    }

    /// Creates an admin token; returns the token (shown once) and its listing.
    pub async fn create_token(&self, request: &TokenCreateBody) -> anyhow::Result<TokenCreatedBody> {
        match self {
            Self::Daemon(client) => {
                client
                    .call_json(Method::POST, "/v1/tokens", Some(serde_json::to_vec(request)?))
                    .await
            }
            Self::Store { store, audit, .. } => {
                let now = SystemClock.now();
                let expires_at = request.ttl_seconds.map(|s| now + time::Duration::seconds(s as i64));
                let (token, record) = new_admin_token(&request.name, request.role, expires_at, "operator:cli", now)?;
                store.insert_admin_token(&record).await?;
                record_admin_action(audit, "token-created", &record.id).await;
                Ok(TokenCreatedBody {
                    token,
                    item: record.into(),
                })
            }
        }
    }

    /// Lists admin tokens.
    pub async fn list_tokens(&self) -> anyhow::Result<Vec<TokenItem>> {
        match self {
            Self::Daemon(client) => client.call_json(Method::GET, "/v1/tokens", None).await,
            Self::Store { store, .. } => Ok(store.admin_tokens().await?.into_iter().map(TokenItem::from).collect()),
        }
    }

    /// Removes an admin token.
    pub async fn remove_token(&self, id: &str) -> anyhow::Result<()> {
        match self {
            Self::Daemon(client) => {
                let (status, bytes) = client
                    .call(Method::DELETE, &format!("/v1/tokens/{}", percent_encode(id)), None)
                    .await?;
                if !status.is_success() {
                    bail!("{}", String::from_utf8_lossy(&bytes));
                }
                Ok(())
            }
            Self::Store { store, audit, .. } => {
                store.remove_admin_token(id).await.map_err(|e| match e {
                    certgate_store::StoreError::NotFound => anyhow!("no admin token {id}"),
                    other => other.into(),
                })?;
                record_admin_action(audit, "token-removed", id).await;
                Ok(())
            }
        }
    }

    /// The audit log as JSON lines, from entry `after + 1` on.
    pub async fn audit_lines(&self, after: u64, limit: usize) -> anyhow::Result<String> {
        match self {
            Self::Daemon(client) => {
                let (status, bytes) = client
                    .call(Method::GET, &format!("/v1/audit?after={after}&limit={limit}"), None)
                    .await?;
                if !status.is_success() {
                    bail!("{}", String::from_utf8_lossy(&bytes));
                }
                Ok(String::from_utf8(bytes.to_vec())?)
            }
            Self::Store { audit, .. } => {
                let mut lines = String::new();
                for entry in audit.entries(after, limit).await? {
                    lines.push_str(&serde_json::to_string(&entry)?);
                    lines.push('\n');
                }
                Ok(lines)
            }
        }
    }

    /// One certificate.
    pub async fn show(&self, serial: &Serial) -> anyhow::Result<CertificateRecord> {
        match self {
            Self::Daemon(client) => {
                client
                    .call_json(Method::GET, &format!("/v1/certificates/{serial}"), None)
                    .await
            }
            Self::Store { store, .. } => store.certificate(serial).await.map_err(|e| match e {
                certgate_store::StoreError::NotFound => anyhow!("no certificate with serial {serial}"),
                other => other.into(),
            }),
        }
    }

    /// Revokes a certificate.
    pub async fn revoke(&self, serial: &Serial, reason: RevocationReason) -> anyhow::Result<CertificateRecord> {
        match self {
            Self::Daemon(client) => {
                let body = serde_json::to_vec(&RevokeBody { reason })?;
                client
                    .call_json(Method::POST, &format!("/v1/certificates/{serial}/revoke"), Some(body))
                    .await
            }
            Self::Store { authority, .. } => Ok(authority.revoke(serial, reason, "operator:cli").await?),
        }
    }

    /// Creates an EAB key for ACME endpoint `endpoint` (checked against `acme_endpoints`
    /// when no daemon runs).
    pub async fn create_eab_key(&self, endpoint: &str, acme_endpoints: &[Name]) -> anyhow::Result<EabKeyBody> {
        match self {
            Self::Daemon(client) => {
                let body = serde_json::to_vec(&EabCreateBody {
                    endpoint: endpoint.to_owned(),
                })?;
                client.call_json(Method::POST, "/v1/acme/eab", Some(body)).await
            }
            Self::Store { store, .. } => {
                let name = Name::new(endpoint)?;
                if !acme_endpoints.contains(&name) {
                    bail!("no ACME endpoint named {endpoint:?} in the configuration");
                }
                let (key_id, hmac_key) = certgate_acme::AcmeServer::create_eab_key(store, &name, SystemClock.now())
                    .await
                    .map_err(|p| anyhow!("{}", p.detail))?;
                Ok(EabKeyBody { key_id, hmac_key })
            }
        }
    }

    /// Lists EAB keys.
    pub async fn list_eab_keys(&self) -> anyhow::Result<Vec<EabListItem>> {
        match self {
            Self::Daemon(client) => client.call_json(Method::GET, "/v1/acme/eab", None).await,
            Self::Store { store, .. } => eab_list(store).await,
        }
    }

    /// Adds an EST user (the endpoint is checked against `est_endpoints` when no daemon runs).
    pub async fn add_est_user(&self, request: &EstUserCreateBody, est_endpoints: &[Name]) -> anyhow::Result<()> {
        match self {
            Self::Daemon(client) => {
                let (status, bytes) = client
                    .call(Method::POST, "/v1/est/users", Some(serde_json::to_vec(request)?))
                    .await?;
                if !status.is_success() {
                    bail!("{}", String::from_utf8_lossy(&bytes).trim());
                }
                Ok(())
            }
            Self::Store { store, .. } => est_user_add(store, est_endpoints, request, SystemClock.now())
                .await
                .map_err(|(_, why)| anyhow!(why)),
        }
    }

    /// Removes an EST user.
    pub async fn remove_est_user(&self, endpoint: &str, username: &str) -> anyhow::Result<()> {
        match self {
            Self::Daemon(client) => {
                let path = format!(
                    "/v1/est/users/{}/{}",
                    percent_encode(endpoint),
                    percent_encode(username)
                );
                let (status, bytes) = client.call(Method::DELETE, &path, None).await?;
                if !status.is_success() {
                    bail!("{}", String::from_utf8_lossy(&bytes).trim());
                }
                Ok(())
            }
            Self::Store { store, .. } => est_user_remove(store, endpoint, username)
                .await
                .map_err(|(_, why)| anyhow!(why)),
        }
    }

    /// Lists EST users.
    pub async fn list_est_users(&self, endpoint: Option<&str>) -> anyhow::Result<Vec<EstUserItem>> {
        match self {
            Self::Daemon(client) => {
                let path = match endpoint {
                    Some(e) => format!("/v1/est/users?endpoint={}", percent_encode(e)),
                    None => "/v1/est/users".to_owned(),
                };
                client.call_json(Method::GET, &path, None).await
            }
            Self::Store { store, .. } => est_user_list(store, endpoint).await,
        }
    }

    /// Creates a one-time SCEP challenge (the endpoint is checked against `scep_endpoints`
    /// when no daemon runs).
    pub async fn create_scep_challenge(
        &self,
        request: &ScepChallengeCreateBody,
        scep_endpoints: &[Name],
    ) -> anyhow::Result<ScepChallengeBody> {
        match self {
            Self::Daemon(client) => {
                client
                    .call_json(Method::POST, "/v1/scep/challenges", Some(serde_json::to_vec(request)?))
                    .await
            }
            Self::Store { store, .. } => {
                scep_challenge_create(store, scep_endpoints, request, "operator:cli", SystemClock.now())
                    .await
                    .map_err(|(_, why)| anyhow!(why))
            }
        }
    }

    /// Lists unused one-time SCEP challenges.
    pub async fn list_scep_challenges(&self, endpoint: Option<&str>) -> anyhow::Result<Vec<ScepChallengeItem>> {
        match self {
            Self::Daemon(client) => {
                let path = match endpoint {
                    Some(e) => format!("/v1/scep/challenges?endpoint={}", percent_encode(e)),
                    None => "/v1/scep/challenges".to_owned(),
                };
                client.call_json(Method::GET, &path, None).await
            }
            Self::Store { store, .. } => scep_challenge_list(store, endpoint).await,
        }
    }

    /// Lists approval requests (pending only unless `all`).
    pub async fn list_approvals(&self, all: bool) -> anyhow::Result<Vec<ApprovalItem>> {
        match self {
            Self::Daemon(client) => {
                let path = if all { "/v1/approvals?all=true" } else { "/v1/approvals" };
                client.call_json(Method::GET, path, None).await
            }
            Self::Store { store, .. } => approval_list(store, all).await,
        }
    }

    /// Approves a request, or denies it with `deny = Some(reason)`.
    pub async fn decide_approval(&self, id: &str, deny: Option<Option<String>>) -> anyhow::Result<ApprovalItem> {
        match self {
            Self::Daemon(client) => {
                let (path, body) = match &deny {
                    None => (format!("/v1/approvals/{}/approve", percent_encode(id)), None),
                    Some(reason) => (
                        format!("/v1/approvals/{}/deny", percent_encode(id)),
                        Some(serde_json::to_vec(&DenyBody { reason: reason.clone() })?),
                    ),
                };
                client.call_json(Method::POST, &path, body).await
            }
            Self::Store { store, audit, .. } => {
                let action = if deny.is_some() {
                    "approval-deny"
                } else {
                    "approval-approve"
                };
                let item = approval_decide(store, id, deny, "operator:cli", SystemClock.now())
                    .await
                    .map_err(|(_, why)| anyhow!(why))?;
                record_admin_action(audit, action, id).await;
                Ok(item)
            }
        }
    }

    /// Flushes a directly opened store.
    pub async fn close(self) -> anyhow::Result<()> {
        if let Self::Store { store, .. } = self {
            store.flush().await?;
        }
        Ok(())
    }
}
