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
use certgate_authority::{Authority, AuthorityConfig, AuthorityError, Profile};
use certgate_core::{Clock, DnsName, Identifier, Name, RequesterId, RevocationReason, Serial, SystemClock};
use certgate_store::approvals::{ApprovalFilter, ApprovalKey, ApprovalRecord};
use certgate_store::{
    ApprovalStore, CertificateFilter, CertificatePage, CertificateQuery, CertificateRecord, CertificateStore,
    EstUserStore, ScepChallengeStore, SledStore,
};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use serde::{Deserialize, Serialize};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use crate::http::{Body, json, percent_encode, query_pairs, text};

/// Request bodies on the admin socket are small JSON documents.
const MAX_ADMIN_BODY: usize = 64 * 1024;

/// The socket's path in a data directory.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.sock")
}

/// A page of certificates on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub struct PageBody {
    /// The certificates.
    pub items: Vec<CertificateRecord>,
    /// Cursor for the next page.
    pub next: Option<String>,
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

/// Which certificates a listing asks for, as the CLI says it.
#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    /// Only those expiring within this many days.
    pub expiring_within_days: Option<u32>,
    /// Only this requester's.
    pub requester: Option<String>,
    /// Only those naming this DNS name or IP address.
    pub name: Option<String>,
    /// Page size.
    pub limit: usize,
    /// Cursor.
    pub after: Option<String>,
}

impl ListRequest {
    fn to_query(&self, clock: &dyn Clock) -> anyhow::Result<CertificateQuery> {
        let filter = match (&self.expiring_within_days, &self.requester, &self.name) {
            (Some(days), None, None) => {
                let now = clock.now();
                let to = now
                    .checked_add(time::Duration::days((*days).into()))
                    .ok_or_else(|| anyhow::anyhow!("expiring_within_days is too large"))?;
                CertificateFilter::ExpiringBetween { from: now, to }
            }
            (None, Some(requester), None) => CertificateFilter::Requester(RequesterId::new(requester.as_str())?),
            (None, None, Some(name)) => CertificateFilter::Identifier(match name.parse() {
                Ok(ip) => Identifier::Ip(ip),
                Err(_) => Identifier::Dns(DnsName::new(name)?),
            }),
            (None, None, None) => CertificateFilter::All,
            _ => bail!("give at most one of --expiring-within, --requester and --name"),
        };
        Ok(CertificateQuery {
            filter,
            limit: self.limit.clamp(1, 1000),
            after: self.after.clone(),
        })
    }

    fn to_query_string(&self) -> String {
        let mut parts = vec![format!("limit={}", self.limit)];
        if let Some(days) = self.expiring_within_days {
            parts.push(format!("expiring_within_days={days}"));
        }
        if let Some(requester) = &self.requester {
            parts.push(format!("requester={}", percent_encode(requester)));
        }
        if let Some(name) = &self.name {
            parts.push(format!("name={}", percent_encode(name)));
        }
        if let Some(after) = &self.after {
            parts.push(format!("after={}", percent_encode(after)));
        }
        parts.join("&")
    }

    fn from_query(query: Option<&str>) -> anyhow::Result<Self> {
        let pairs = query_pairs(query);
        Ok(Self {
            expiring_within_days: pairs.get("expiring_within_days").map(|d| d.parse()).transpose()?,
            requester: pairs.get("requester").cloned(),
            name: pairs.get("name").cloned(),
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

impl AdminService {
    async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().map(str::to_owned);
        let body = match Limited::new(request.into_body(), MAX_ADMIN_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
        };
        let response = self.route(&method, &path, query.as_deref(), &body).await;
        tracing::info!(target: "certgate::request", listener = "admin", method = %method, path = %path, status = response.status().as_u16(), "request");
        response
    }

    async fn route(&self, method: &Method, path: &str, query: Option<&str>, body: &[u8]) -> Response<Body> {
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
                let query = match ListRequest::from_query(query).and_then(|l| l.to_query(self.clock.as_ref())) {
                    Ok(query) => query,
                    Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
                };
                match self.store.list_certificates(&query).await {
                    Ok(CertificatePage { items, next }) => json(StatusCode::OK, &PageBody { items, next }),
                    Err(certgate_store::StoreError::Conflict(why)) => text(StatusCode::BAD_REQUEST, why),
                    Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                }
            }
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
                match self
                    .authority
                    .revoke(&serial, request.reason, "operator:admin-socket")
                    .await
                {
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
                        tracing::info!(target: "certgate::audit", event = "acme-eab-key-created", endpoint = %endpoint, key_id = %key_id, "EAB key created");
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
                    Ok(()) => text(StatusCode::CREATED, "created"),
                    Err((status, why)) => text(status, why),
                }
            }
            (&Method::DELETE, ["v1", "est", "users", endpoint, username]) => {
                let username = crate::http::percent_decode(username);
                match est_user_remove(&self.store, endpoint, &username).await {
                    Ok(()) => text(StatusCode::OK, "removed"),
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
                match scep_challenge_create(
                    &self.store,
                    &self.scep_endpoints,
                    &request,
                    "operator:admin-socket",
                    self.clock.now(),
                )
                .await
                {
                    Ok(created) => json(StatusCode::CREATED, &created),
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
                match approval_decide(&self.store, &id, deny, "operator:admin-socket", self.clock.now()).await {
                    Ok(item) => json(StatusCode::OK, &item),
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

    async fn call_json<T: for<'de> Deserialize<'de>>(
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
        /// An authority for revocations (no issuers: it only records).
        authority: Authority,
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
        let authority = Authority::new(config, Arc::new(store.clone()), Arc::new(SystemClock))?;
        Ok(Self::Store { store, authority })
    }

    /// Whether a running daemon answers these calls.
    pub fn via_daemon(&self) -> bool {
        matches!(self, Self::Daemon(_))
    }

    /// A page of certificates.
    pub async fn list(&self, request: &ListRequest) -> anyhow::Result<PageBody> {
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
            Self::Store { store, .. } => {
                let page = store.list_certificates(&request.to_query(&SystemClock)?).await?;
                Ok(PageBody {
                    items: page.items,
                    next: page.next,
                })
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
            Self::Store { store, .. } => approval_decide(store, id, deny, "operator:cli", SystemClock.now())
                .await
                .map_err(|(_, why)| anyhow!(why)),
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
