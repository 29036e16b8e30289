//! The HTTP face of ACME, independent of the HTTP library: the daemon hands each request under
//! `/acme/` to [`AcmeServer::handle`] and writes back the [`AcmeResponse`]. Here: routing,
//! JWS authentication (url, nonce, account, signature), resources as JSON, and problems with
//! `Replay-Nonce` and `Link: rel="index"` on every answer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use base64::Engine;
use certgate_authority::{Authority, AuthorityError, IssueRequest};
use certgate_core::{Clock, Identifier, Name, ParsedCsr, Protocol, RequesterId, RevocationReason, Serial};
use certgate_store::acme::{
    AccountRecord, AccountStatus, AuthzRecord, AuthzStatus, ChallengeStatus, EabKeyRecord, OrderRecord, OrderStatus,
};
use certgate_store::{AcmeStore, NonceStore, StoreError};
use certgate_validation::{Attempt, ChallengeKind, ValidationError, ValidationErrorKind, Validator};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::ari::{self, CertId};
use crate::config::AcmeEndpointConfig;
use crate::eab::ParsedEab;
use crate::flow::{self, OrderIdentifier, problem_identifier, problem_json, rfc3339};
use crate::jws::{AccountKey, AccountVerifier, B64URL, ParsedJws, Signer};
use crate::nonce::Nonces;
use crate::pool::{Place, ValidationPool};
use crate::problem::{Problem, ProblemType};
use crate::ratelimit::{Limiter, Taken};

/// Orders per page of an account's orders list.
const ORDERS_PAGE: usize = 100;
/// How long nonces live. Each nonce redeemed stays in the store's used set this long (about
/// 100 bytes on disk), so the set holds five minutes of signed requests; a client holding a
/// nonce longer gets `badNonce` once and retries with the fresh one.
const NONCE_LIFETIME: time::Duration = time::Duration::minutes(5);
/// Contacts per account.
const MAX_CONTACTS: usize = 10;
const ACCOUNT_CACHE_SHARDS: usize = 16;
/// Cached accounts per shard (parsed keys are a few hundred bytes each).
const ACCOUNT_CACHE_PER_SHARD: usize = 16_384;

/// A request under `/acme/`, as the daemon received it.
#[derive(Debug)]
pub struct AcmeRequest<'a> {
    /// `GET`, `HEAD`, `POST`, ...
    pub method: &'a str,
    /// Scheme, host and port the client used (`https://ca.example:8443`): resource URLs are
    /// built from it, and JWS `url`s must match it.
    pub origin: &'a str,
    /// The path.
    pub path: &'a str,
    /// The query string, without `?`.
    pub query: Option<&'a str>,
    /// `Content-Type`.
    pub content_type: Option<&'a str>,
    /// The body (empty when too large).
    pub body: &'a [u8],
    /// The body exceeded [`crate::jws::MAX_JWS_LEN`].
    pub body_too_large: bool,
    /// The client's address, for rate limits.
    pub peer: IpAddr,
}

/// The answer.
#[derive(Debug)]
pub struct AcmeResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers (Content-Type among them).
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl AcmeResponse {
    fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn json(status: u16, value: &Value) -> Self {
        let mut response = Self::new(status);
        response.headers.push(("content-type", "application/json".into()));
        response.body = serde_json::to_vec(value).unwrap_or_default();
        response
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

/// Why the ACME server could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcmeError {
    /// A configuration problem.
    #[error("ACME configuration: {0}")]
    Config(String),
    /// The system's random number generator failed (drawing the nonce key).
    #[error("the system random number generator failed")]
    Random,
}

/// An account with its parsed key, cached so each request skips the JWK parse.
#[derive(Debug)]
struct CachedAccount {
    record: AccountRecord,
    verifier: AccountVerifier,
}

impl CachedAccount {
    fn key(&self) -> &AccountKey {
        self.verifier.key()
    }
}

struct Endpoint {
    config: AcmeEndpointConfig,
    validator: Validator,
    validations: ValidationPool,
    accounts: Limiter,
    orders: Limiter,
    authorizations: Limiter,
    failures: Limiter,
}

struct Shared {
    store: Arc<dyn AcmeStore>,
    authority: Arc<Authority>,
    clock: Arc<dyn Clock>,
    nonces: Nonces,
    accounts: Vec<RwLock<HashMap<String, Arc<CachedAccount>>>>,
    /// Validation outcomes are counted here when set.
    metrics: Option<Arc<certgate_metrics::Metrics>>,
}

/// Every ACME endpoint of the daemon.
pub struct AcmeServer {
    endpoints: HashMap<Name, Arc<Endpoint>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AcmeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeServer")
            .field("endpoints", &self.endpoints.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Who signed a request.
enum Auth {
    Account(Arc<CachedAccount>),
    Key(AccountKey),
}

/// What a handler needs to know about the request.
struct Ctx<'a> {
    endpoint: Arc<Endpoint>,
    /// `{origin}/acme/{name}`.
    base: String,
    request: &'a AcmeRequest<'a>,
}

impl Ctx<'_> {
    fn url(&self, rest: &str) -> String {
        format!("{}{rest}", self.base)
    }

    fn request_url(&self) -> String {
        match self.request.query {
            Some(query) => format!("{}{}?{query}", self.request.origin, self.request.path),
            None => format!("{}{}", self.request.origin, self.request.path),
        }
    }

    fn account_url(&self, id: &str) -> String {
        self.url(&format!("/acct/{id}"))
    }

    fn name(&self) -> &Name {
        &self.endpoint.config.name
    }
}

type Handled = Result<AcmeResponse, Problem>;

fn not_found(what: &str) -> Problem {
    Problem::new(ProblemType::Malformed, format!("no such {what}")).with_status(404)
}

fn internal(e: impl std::fmt::Display) -> Problem {
    tracing::error!(error = %e, "ACME request failed inside the server");
    Problem::new(ProblemType::ServerInternal, "the server failed to handle the request")
}

fn store_problem(e: StoreError, what: &str) -> Problem {
    match e {
        StoreError::NotFound => not_found(what),
        other => internal(other),
    }
}

/// The requester recorded with certificates an account obtains (`None` only for an id no
/// account can have: too long or with control characters).
pub fn requester_of(endpoint: &Name, account_id: &str) -> Option<RequesterId> {
    RequesterId::new(format!("acme-account:{endpoint}/{account_id}")).ok()
}

impl AcmeServer {
    /// Counts validation outcomes in `metrics`. Call before sharing the server.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<certgate_metrics::Metrics>) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.metrics = Some(metrics);
        }
        self
    }

    /// Builds the server for `configs` (each must name an ACME endpoint of the authority).
    pub fn new(
        configs: Vec<AcmeEndpointConfig>,
        store: Arc<dyn AcmeStore>,
        nonce_store: Arc<dyn NonceStore>,
        authority: Arc<Authority>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, AcmeError> {
        let mut endpoints = HashMap::new();
        for mut config in configs {
            if authority.endpoint(Protocol::Acme, &config.name).is_none() {
                return Err(AcmeError::Config(format!(
                    "ACME endpoint {} has no endpoint policy in the authority",
                    config.name
                )));
            }
            if config.caa_enabled {
                config.validation.caa = Some(certgate_validation::CaaConfig {
                    identities: config.caa_identities.clone(),
                });
            }
            let validator = Validator::new(config.validation.clone())
                .map_err(|e| AcmeError::Config(format!("endpoint {}: validation: {e}", config.name)))?;
            let window = config.rate_limits.window;
            let endpoint = Endpoint {
                validations: ValidationPool::new(config.validation_workers, config.validation_queue),
                validator,
                accounts: Limiter::new(window),
                orders: Limiter::new(window),
                authorizations: Limiter::new(window),
                failures: Limiter::new(window),
                config,
            };
            endpoints.insert(endpoint.config.name.clone(), Arc::new(endpoint));
        }
        let nonces = Nonces::new(nonce_store, Arc::clone(&clock), NONCE_LIFETIME)?;
        Ok(Self {
            endpoints,
            shared: Arc::new(Shared {
                store,
                authority,
                clock,
                nonces,
                metrics: None,
                accounts: (0..ACCOUNT_CACHE_SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            }),
        })
    }

    /// Whether an ACME endpoint of this name is served.
    pub fn has_endpoint(&self, name: &Name) -> bool {
        self.endpoints.contains_key(name)
    }

    /// Forgets expired nonces; returns how many.
    pub async fn sweep_nonces(&self) -> u64 {
        self.shared.nonces.sweep().await
    }

    /// Makes a new external account binding key for `endpoint`: its id and MAC key
    /// (base64url), to hand to the client once.
    pub async fn create_eab_key(
        store: &dyn AcmeStore,
        endpoint: &Name,
        now: OffsetDateTime,
    ) -> Result<(String, String), Problem> {
        let key_id = flow::random_id()?;
        let mac = crate::eab::generate_mac_key()?;
        store
            .insert_eab_key(&EabKeyRecord {
                key_id: key_id.clone(),
                endpoint: endpoint.clone(),
                hmac_key: mac.to_vec(),
                created_at: now,
                account_id: None,
            })
            .await
            .map_err(internal)?;
        Ok((key_id, B64URL.encode(mac)))
    }

    /// Handles one request under `/acme/`.
    pub async fn handle(&self, request: &AcmeRequest<'_>) -> AcmeResponse {
        let Some(rest) = request.path.strip_prefix("/acme/") else {
            return self.finish(None, Err(not_found("resource"))).await;
        };
        let (name, rest) = rest.split_once('/').unwrap_or((rest, ""));
        let endpoint = Name::new(name).ok().and_then(|n| self.endpoints.get(&n)).cloned();
        let Some(endpoint) = endpoint else {
            return self.finish(None, Err(not_found("ACME endpoint"))).await;
        };
        let ctx = Ctx {
            base: format!("{}/acme/{}", request.origin, endpoint.config.name),
            endpoint,
            request,
        };
        let result = self.route(&ctx, rest).await;
        self.finish(Some(&ctx), result).await
    }

    /// Adds what every answer carries: a fresh nonce, the index link, no caching.
    async fn finish(&self, ctx: Option<&Ctx<'_>>, result: Handled) -> AcmeResponse {
        let mut response = match result {
            Ok(response) => response,
            Err(problem) => {
                let mut response = AcmeResponse::new(problem.status);
                response
                    .headers
                    .push(("content-type", "application/problem+json".into()));
                if let Some(seconds) = problem.retry_after_seconds {
                    response.headers.push(("retry-after", seconds.to_string()));
                }
                response.body = problem.to_json();
                response
            }
        };
        // Nonces only for endpoints that exist (issuing one stores nothing, see `nonce`).
        if ctx.is_some() {
            match self.shared.nonces.issue() {
                Ok(nonce) => response.headers.push(("replay-nonce", nonce)),
                Err(problem) => tracing::error!(detail = %problem.detail, "no nonce for an answer"),
            }
        }
        if let Some(ctx) = ctx {
            response
                .headers
                .push(("link", format!("<{}>;rel=\"index\"", ctx.url("/directory"))));
        }
        if !response.headers.iter().any(|(n, _)| *n == "cache-control") {
            response.headers.push(("cache-control", "no-store".into()));
        }
        response
    }

    async fn route(&self, ctx: &Ctx<'_>, rest: &str) -> Handled {
        let method = ctx.request.method;
        let segments: Vec<&str> = rest.split('/').collect();
        match (method, segments.as_slice()) {
            ("GET" | "HEAD", ["directory"]) => Ok(self.directory(ctx)),
            ("HEAD", ["new-nonce"]) => Ok(AcmeResponse::new(200)),
            ("GET", ["new-nonce"]) => Ok(AcmeResponse::new(204)),
            ("GET", ["renewal-info", id]) => self.renewal_info(ctx, id).await,
            // Before POST: a POST to a GET resource is 405, not an unknown resource.
            (_, ["directory" | "new-nonce" | "renewal-info", ..]) => Err(Problem::new(
                ProblemType::Malformed,
                format!("{method} is not allowed here; use GET"),
            )
            .with_status(405)),
            ("POST", _) => {
                check_post(ctx.request)?;
                match segments.as_slice() {
                    ["new-account"] => self.new_account(ctx).await,
                    ["new-order"] => self.new_order(ctx).await,
                    ["revoke-cert"] => self.revoke_cert(ctx).await,
                    ["key-change"] => self.key_change(ctx).await,
                    ["acct", id] => self.account(ctx, id).await,
                    ["acct", id, "orders"] => self.orders_list(ctx, id).await,
                    ["order", id] => self.order(ctx, id).await,
                    ["order", id, "finalize"] => self.finalize(ctx, id).await,
                    ["authz", id] => self.authorization(ctx, id).await,
                    ["chall", authz, kind] => self.challenge(ctx, authz, kind).await,
                    ["cert", serial] => self.certificate(ctx, serial).await,
                    _ => Err(not_found("resource")),
                }
            }
            (_, [known, ..]) if KNOWN_POST.contains(known) => Err(Problem::new(
                ProblemType::Malformed,
                format!("{method} is not allowed here; use POST"),
            )
            .with_status(405)),
            _ => Err(not_found("resource")),
        }
    }

    fn directory(&self, ctx: &Ctx<'_>) -> AcmeResponse {
        let config = &ctx.endpoint.config;
        let mut meta = serde_json::Map::new();
        if let Some(terms) = &config.terms_of_service {
            meta.insert("termsOfService".into(), json!(terms));
        }
        if let Some(website) = &config.website {
            meta.insert("website".into(), json!(website));
        }
        if !config.caa_identities.is_empty() {
            meta.insert("caaIdentities".into(), json!(config.caa_identities));
        }
        meta.insert(
            "externalAccountRequired".into(),
            json!(config.external_account_required),
        );
        let profiles: serde_json::Map<String, Value> = self
            .shared
            .authority
            .endpoint_profiles(Protocol::Acme, ctx.name())
            .iter()
            .map(|p| (p.to_string(), json!(format!("certgate profile {p}"))))
            .collect();
        meta.insert("profiles".into(), Value::Object(profiles));
        AcmeResponse::json(
            200,
            &json!({
                "newNonce": ctx.url("/new-nonce"),
                "newAccount": ctx.url("/new-account"),
                "newOrder": ctx.url("/new-order"),
                "revokeCert": ctx.url("/revoke-cert"),
                "keyChange": ctx.url("/key-change"),
                "renewalInfo": ctx.url("/renewal-info"),
                "meta": meta,
            }),
        )
        .header("cache-control", "public, max-age=0, no-cache")
    }

    // ---- authentication ----

    /// Parses and checks a POST's JWS: url, nonce (authentic and unexpired), then the signer
    /// (`jwk` only where `allow_jwk`, `kid` unless `jwk_only`) and the signature, and only then
    /// redeems the nonce: a request its key did not sign writes nothing and leaves its nonce
    /// usable. Returns the payload.
    async fn authenticate(&self, ctx: &Ctx<'_>, allow_jwk: bool, jwk_only: bool) -> Result<(Auth, Vec<u8>), Problem> {
        let jws = ParsedJws::parse(ctx.request.body)?;
        let header = jws.header().clone();
        if header.url != ctx.request_url() {
            return Err(Problem::new(
                ProblemType::Unauthorized,
                format!(
                    "the JWS url {:?} is not the URL this request was sent to ({:?})",
                    header.url,
                    ctx.request_url()
                ),
            ));
        }
        let nonce = self.shared.nonces.check(&header.nonce)?;
        let nonces = &self.shared.nonces;
        match header.signer {
            Signer::Jwk(key) => {
                if !allow_jwk {
                    return Err(Problem::new(
                        ProblemType::Malformed,
                        "this request must be signed with the account's \"kid\", not a \"jwk\"",
                    ));
                }
                let payload = jws.verify(&key)?;
                nonces.redeem(&nonce).await?;
                Ok((Auth::Key(key), payload))
            }
            Signer::Kid(kid) => {
                if jwk_only {
                    return Err(Problem::new(
                        ProblemType::Malformed,
                        "newAccount must be signed with a \"jwk\", not a \"kid\"",
                    ));
                }
                let account = self.account_for_kid(ctx, &kid).await?;
                let payload = jws.verify_with(&account.verifier)?;
                nonces.redeem(&nonce).await?;
                if account.record.status != AccountStatus::Valid {
                    return Err(Problem::new(
                        ProblemType::Unauthorized,
                        "the account is deactivated; it can no longer be used",
                    ));
                }
                Ok((Auth::Account(account), payload))
            }
        }
    }

    async fn authenticate_account(&self, ctx: &Ctx<'_>) -> Result<(Arc<CachedAccount>, Vec<u8>), Problem> {
        match self.authenticate(ctx, false, false).await? {
            (Auth::Account(account), payload) => Ok((account, payload)),
            (Auth::Key(_), _) => Err(internal("a jwk-signed request passed a kid-only check")),
        }
    }

    async fn account_for_kid(&self, ctx: &Ctx<'_>, kid: &str) -> Result<Arc<CachedAccount>, Problem> {
        let prefix = ctx.url("/acct/");
        let id = kid
            .strip_prefix(&prefix)
            .filter(|id| !id.is_empty() && !id.contains('/'))
            .ok_or_else(|| {
                Problem::new(
                    ProblemType::AccountDoesNotExist,
                    format!("the JWS kid {kid:?} is not an account URL of this endpoint"),
                )
            })?;
        if let Some(cached) = self.cached_account(id) {
            // The cache serves every endpoint: an account of another endpoint does not exist here.
            if cached.record.endpoint != *ctx.name() {
                return Err(Problem::new(
                    ProblemType::AccountDoesNotExist,
                    "no account exists with this kid",
                ));
            }
            return Ok(cached);
        }
        let record = match self.shared.store.account(id).await {
            Ok(record) if record.endpoint == *ctx.name() => record,
            Ok(_) | Err(StoreError::NotFound) => {
                return Err(Problem::new(
                    ProblemType::AccountDoesNotExist,
                    "no account exists with this kid",
                ));
            }
            Err(e) => return Err(internal(e)),
        };
        self.cache_account(record)
    }

    fn cache_shard(&self, id: &str) -> &RwLock<HashMap<String, Arc<CachedAccount>>> {
        let hash = id
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        &self.shared.accounts[hash % ACCOUNT_CACHE_SHARDS]
    }

    fn cached_account(&self, id: &str) -> Option<Arc<CachedAccount>> {
        self.cache_shard(id)
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    fn forget_account(&self, id: &str) {
        self.cache_shard(id)
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    fn cache_account(&self, record: AccountRecord) -> Result<Arc<CachedAccount>, Problem> {
        let jwk: Value = serde_json::from_str(&record.jwk).map_err(internal)?;
        let key = AccountKey::from_jwk(&jwk).map_err(internal)?;
        let cached = Arc::new(CachedAccount {
            record,
            verifier: AccountVerifier::new(key),
        });
        let mut shard = self
            .cache_shard(&cached.record.id)
            .write()
            .unwrap_or_else(|p| p.into_inner());
        // Bounded: past the cap a shard starts over (entries reload from the store on use).
        if shard.len() >= ACCOUNT_CACHE_PER_SHARD && !shard.contains_key(&cached.record.id) {
            shard.clear();
        }
        // A slower request may come back with an older version: never let it replace a newer
        // one (that would bring back a replaced key or undo a deactivation).
        match shard.get(&cached.record.id) {
            Some(existing) if existing.record.version > cached.record.version => Ok(Arc::clone(existing)),
            _ => {
                shard.insert(cached.record.id.clone(), Arc::clone(&cached));
                Ok(cached)
            }
        }
    }

    // ---- accounts ----

    fn account_json(&self, ctx: &Ctx<'_>, account: &AccountRecord) -> Value {
        json!({
            "status": match account.status {
                AccountStatus::Valid => "valid",
                AccountStatus::Deactivated => "deactivated",
                AccountStatus::Revoked => "revoked",
            },
            "contact": account.contact,
            "termsOfServiceAgreed": account.terms_agreed,
            "orders": ctx.url(&format!("/acct/{}/orders", account.id)),
            "createdAt": rfc3339(account.created_at),
        })
    }

    async fn new_account(&self, ctx: &Ctx<'_>) -> Handled {
        let (auth, payload) = self.authenticate(ctx, true, true).await?;
        let Auth::Key(key) = auth else {
            return Err(internal("a kid-signed request passed a jwk-only check"));
        };
        let payload = json_object(&payload, "newAccount")?;
        let config = &ctx.endpoint.config;
        let thumbprint = key.thumbprint();
        let existing = self
            .shared
            .store
            .account_by_thumbprint(ctx.name(), &thumbprint)
            .await
            .map_err(internal)?;
        if let Some(existing) = existing {
            if existing.status != AccountStatus::Valid {
                return Err(Problem::new(
                    ProblemType::Unauthorized,
                    "the account for this key is deactivated",
                ));
            }
            return Ok(AcmeResponse::json(200, &self.account_json(ctx, &existing))
                .header("location", ctx.account_url(&existing.id)));
        }
        if payload.get("onlyReturnExisting").and_then(Value::as_bool) == Some(true) {
            return Err(Problem::new(
                ProblemType::AccountDoesNotExist,
                "no account exists for this key",
            ));
        }
        let peer = client_key(ctx.request.peer);
        let counted = self.take_rate(
            &ctx.endpoint.accounts,
            &peer,
            1,
            config.rate_limits.new_accounts_per_ip,
            "new accounts from this address",
        )?;
        let contact = parse_contacts(payload.get("contact"))?;
        let terms_agreed = payload.get("termsOfServiceAgreed").and_then(Value::as_bool) == Some(true);
        if let Some(terms) = &config.terms_of_service
            && !terms_agreed
        {
            return Err(Problem::new(
                ProblemType::Malformed,
                format!("the terms of service ({terms}) must be agreed to: set termsOfServiceAgreed"),
            ));
        }
        let eab = match payload.get("externalAccountBinding") {
            Some(binding) => {
                let parsed = ParsedEab::parse(binding, &key, &ctx.url("/new-account"))?;
                let stored = match self.shared.store.eab_key(&parsed.key_id).await {
                    Ok(stored) if stored.endpoint == *ctx.name() => stored,
                    Ok(_) | Err(StoreError::NotFound) => {
                        return Err(Problem::new(
                            ProblemType::Unauthorized,
                            "the externalAccountBinding names an unknown EAB key",
                        ));
                    }
                    Err(e) => return Err(internal(e)),
                };
                parsed.verify(&stored.hmac_key)?;
                if stored.account_id.is_some() {
                    return Err(Problem::new(
                        ProblemType::Unauthorized,
                        "this EAB key was used already; each key binds one account",
                    ));
                }
                Some(parsed.key_id)
            }
            None if config.external_account_required => {
                return Err(Problem::new(
                    ProblemType::ExternalAccountRequired,
                    "this endpoint requires an externalAccountBinding (ask the operator for an EAB key)",
                ));
            }
            None => None,
        };
        let record = AccountRecord {
            id: flow::random_id()?,
            endpoint: ctx.name().clone(),
            jwk: key.canonical_jwk(),
            thumbprint,
            contact,
            status: AccountStatus::Valid,
            terms_agreed,
            eab_key_id: eab.clone(),
            created_at: self.shared.clock.now(),
            version: 1,
        };
        if let Some(key_id) = &eab {
            match self.shared.store.bind_eab_key(key_id, &record.id).await {
                Ok(()) => {}
                Err(StoreError::Conflict(_)) => {
                    return Err(Problem::new(
                        ProblemType::Unauthorized,
                        "this EAB key was used already; each key binds one account",
                    ));
                }
                Err(e) => return Err(internal(e)),
            }
        }
        match self.shared.store.insert_account(&record).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                // Another request created the account for this key meanwhile: answer with it.
                if let Some(key_id) = &eab {
                    let _ = self.shared.store.unbind_eab_key(key_id, &record.id).await;
                }
                let existing = self
                    .shared
                    .store
                    .account_by_thumbprint(ctx.name(), &record.thumbprint)
                    .await
                    .map_err(internal)?
                    .ok_or_else(|| internal("account vanished after a conflict"))?;
                return Ok(AcmeResponse::json(200, &self.account_json(ctx, &existing))
                    .header("location", ctx.account_url(&existing.id)));
            }
            Err(e) => {
                // The account was not created: the EAB key must stay usable.
                if let Some(key_id) = &eab {
                    let _ = self.shared.store.unbind_eab_key(key_id, &record.id).await;
                }
                return Err(internal(e));
            }
        }
        tracing::info!(
            target: "certgate::audit",
            event = "acme-account-created",
            endpoint = %ctx.name(),
            account = %record.id,
            eab = record.eab_key_id.as_deref().unwrap_or("-"),
            "ACME account created"
        );
        counted.keep();
        let body = self.account_json(ctx, &record);
        let location = ctx.account_url(&record.id);
        self.cache_account(record)?;
        Ok(AcmeResponse::json(201, &body).header("location", location))
    }

    async fn account(&self, ctx: &Ctx<'_>, id: &str) -> Handled {
        let (account, payload) = self.authenticate_account(ctx).await?;
        if account.record.id != id {
            return Err(Problem::new(
                ProblemType::Unauthorized,
                "the request is signed by another account",
            ));
        }
        if payload.is_empty() {
            return Ok(AcmeResponse::json(200, &self.account_json(ctx, &account.record)));
        }
        let payload = json_object(&payload, "account update")?;
        let mut record = account.record.clone();
        if let Some(status) = payload.get("status") {
            if status != "deactivated" {
                return Err(Problem::new(
                    ProblemType::Malformed,
                    "an account's status can only be set to \"deactivated\"",
                ));
            }
            record.status = AccountStatus::Deactivated;
        }
        if payload.contains_key("contact") {
            record.contact = parse_contacts(payload.get("contact"))?;
        }
        if record == account.record {
            return Ok(AcmeResponse::json(200, &self.account_json(ctx, &record)));
        }
        record.version += 1;
        self.store_account_update(&record).await?;
        if record.status == AccountStatus::Deactivated {
            tracing::info!(target: "certgate::audit", event = "acme-account-deactivated", endpoint = %ctx.name(), account = %record.id, "ACME account deactivated");
        }
        let body = self.account_json(ctx, &record);
        self.cache_account(record)?;
        Ok(AcmeResponse::json(200, &body))
    }

    async fn store_account_update(&self, record: &AccountRecord) -> Result<(), Problem> {
        match self.shared.store.update_account(record).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict(_)) => {
                // Our cache was stale: drop it so the next request reloads.
                self.forget_account(&record.id);
                Err(Problem::new(ProblemType::Malformed, "the account changed concurrently; retry").with_status(409))
            }
            Err(e) => Err(internal(e)),
        }
    }

    async fn orders_list(&self, ctx: &Ctx<'_>, id: &str) -> Handled {
        let (account, _) = self.authenticate_account(ctx).await?;
        if account.record.id != id {
            return Err(Problem::new(
                ProblemType::Unauthorized,
                "the orders list belongs to another account",
            ));
        }
        let cursor = ctx
            .request
            .query
            .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("cursor=")));
        let page = self
            .shared
            .store
            .orders_of_account(id, cursor, ORDERS_PAGE)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => Problem::new(ProblemType::Malformed, "malformed cursor"),
                other => internal(other),
            })?;
        let orders: Vec<String> = page.ids.iter().map(|o| ctx.url(&format!("/order/{o}"))).collect();
        let mut response = AcmeResponse::json(200, &json!({ "orders": orders }));
        if let Some(next) = page.next {
            response = response.header(
                "link",
                format!(
                    "<{}>;rel=\"next\"",
                    ctx.url(&format!("/acct/{id}/orders?cursor={next}"))
                ),
            );
        }
        Ok(response)
    }

    async fn key_change(&self, ctx: &Ctx<'_>) -> Handled {
        let (account, payload) = self.authenticate_account(ctx).await?;
        let inner = ParsedJws::parse_key_change_inner(&payload)?;
        let header = inner.header().clone();
        let Signer::Jwk(new_key) = header.signer else {
            return Err(Problem::new(
                ProblemType::Malformed,
                "the inner keyChange JWS must be signed with the new key as \"jwk\"",
            ));
        };
        if header.url != ctx.request_url() {
            return Err(Problem::new(
                ProblemType::Malformed,
                "the inner keyChange JWS url differs from the outer one",
            ));
        }
        let inner_payload = inner.verify(&new_key)?;
        let inner_payload = json_object(&inner_payload, "keyChange inner payload")?;
        if inner_payload.get("account").and_then(Value::as_str) != Some(ctx.account_url(&account.record.id).as_str()) {
            return Err(Problem::new(
                ProblemType::Unauthorized,
                "the inner keyChange payload names another account",
            ));
        }
        let old_key = inner_payload
            .get("oldKey")
            .ok_or_else(|| Problem::new(ProblemType::Malformed, "the keyChange payload has no oldKey"))
            .and_then(|jwk| AccountKey::from_jwk(jwk).map_err(Problem::from))?;
        if old_key != *account.key() {
            return Err(Problem::new(
                ProblemType::Unauthorized,
                "oldKey is not the account's current key",
            ));
        }
        if new_key == *account.key() {
            return Err(Problem::new(ProblemType::Malformed, "the new key is the current key"));
        }
        let mut record = account.record.clone();
        record.jwk = new_key.canonical_jwk();
        record.thumbprint = new_key.thumbprint();
        record.version += 1;
        match self
            .shared
            .store
            .change_account_key(&account.record.thumbprint, &record)
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                self.forget_account(&account.record.id);
                let holder = self
                    .shared
                    .store
                    .account_by_thumbprint(ctx.name(), &record.thumbprint)
                    .await
                    .map_err(internal)?;
                let problem =
                    Problem::new(ProblemType::Malformed, "the new key already belongs to an account").with_status(409);
                return match holder {
                    Some(holder) => Ok(AcmeResponse {
                        status: 409,
                        headers: vec![
                            ("content-type", "application/problem+json".into()),
                            ("location", ctx.account_url(&holder.id)),
                        ],
                        body: problem.to_json(),
                    }),
                    None => Err(problem),
                };
            }
            Err(e) => return Err(internal(e)),
        }
        tracing::info!(target: "certgate::audit", event = "acme-account-key-changed", endpoint = %ctx.name(), account = %record.id, "ACME account key changed");
        let body = self.account_json(ctx, &record);
        self.cache_account(record)?;
        Ok(AcmeResponse::json(200, &body))
    }

    // ---- orders ----

    fn check_rate(&self, limiter: &Limiter, key: &str, limit: Option<u32>, what: &str) -> Result<(), Problem> {
        match limiter.exceeded(key, limit, self.shared.clock.now()) {
            Some(wait) => Err(rate_limited(what, wait)),
            None => Ok(()),
        }
    }

    /// Counts `n` of what the request is about to create against `limit`; see [`Limiter::take`].
    fn take_rate<'l>(
        &self,
        limiter: &'l Limiter,
        key: &str,
        n: u32,
        limit: Option<u32>,
        what: &str,
    ) -> Result<Taken<'l>, Problem> {
        if let Some(limit) = limit
            && n > limit
        {
            // No window will ever have room: waiting would not help, so not rateLimited.
            return Err(Problem::new(
                ProblemType::Malformed,
                format!("this request needs {n} {what}, more than the {limit} allowed per window"),
            ));
        }
        limiter
            .take(key, n, limit, self.shared.clock.now())
            .map_err(|wait| rate_limited(what, wait))
    }

    async fn new_order(&self, ctx: &Ctx<'_>) -> Handled {
        let (account, payload) = self.authenticate_account(ctx).await?;
        // Shed before anything is counted or written; orders admitted earlier still finalize.
        self.shared
            .authority
            .admit_issuance(Protocol::Acme, ctx.name())
            .map_err(|e| authority_problem(e, &[]))?;
        let endpoint = &ctx.endpoint;
        let limits = &endpoint.config.rate_limits;
        let account_id = account.record.id.as_str();
        let peer = client_key(ctx.request.peer);
        let mut counted = vec![
            self.take_rate(
                &endpoint.orders,
                account_id,
                1,
                limits.new_orders_per_account,
                "new orders for this account",
            )?,
            self.take_rate(
                &endpoint.orders,
                &peer,
                1,
                limits.new_orders_per_ip,
                "new orders from this address",
            )?,
        ];
        let payload = json_object(&payload, "newOrder")?;
        let identifiers = flow::parse_identifiers(payload.get("identifiers"))?;
        let not_before = flow::parse_time(payload.get("notBefore"), "notBefore")?;
        let not_after = flow::parse_time(payload.get("notAfter"), "notAfter")?;
        let profile = match payload.get("profile") {
            None | Some(Value::Null) => None,
            Some(Value::String(name)) => {
                let offered = self.shared.authority.endpoint_profiles(Protocol::Acme, ctx.name());
                match Name::new(name.as_str()).ok().filter(|n| offered.contains(n)) {
                    Some(profile) => Some(profile),
                    None => {
                        return Err(Problem::new(
                            ProblemType::InvalidProfile,
                            format!(
                                "profile {name:?} is not offered here; choose one of: {}",
                                offered.iter().map(Name::as_str).collect::<Vec<_>>().join(", ")
                            ),
                        ));
                    }
                }
            }
            Some(_) => return Err(Problem::new(ProblemType::Malformed, "profile must be a string")),
        };
        let (replaces, replaces_id) = match payload.get("replaces") {
            None | Some(Value::Null) => (None, None),
            Some(Value::String(id)) => {
                let serial = self.check_replaces(ctx, &account, id, &identifiers).await?;
                (Some(serial), Some(id.clone()))
            }
            Some(_) => return Err(Problem::new(ProblemType::Malformed, "replaces must be a string")),
        };
        let requested: Vec<Identifier> = identifiers.iter().map(|i| i.requested.clone()).collect();
        self.shared
            .authority
            .check_order(
                Protocol::Acme,
                ctx.name(),
                &requested,
                profile.as_ref(),
                not_before,
                not_after,
            )
            .map_err(|e| authority_problem(e, &identifiers))?;

        let now = self.shared.clock.now();
        let config = &endpoint.config;
        let mut authorization_ids = Vec::with_capacity(identifiers.len());
        let mut new_authorizations = Vec::new();
        let mut all_valid = true;
        for identifier in &identifiers {
            let reused = if config.reuse_authorizations {
                self.shared
                    .store
                    .reusable_authorization(account_id, &identifier.authorized, identifier.wildcard, now)
                    .await
                    .map_err(internal)?
            } else {
                None
            };
            match reused {
                Some(authz) => authorization_ids.push(authz.id),
                None => {
                    all_valid = false;
                    let authz = AuthzRecord {
                        id: flow::random_id()?,
                        endpoint: ctx.name().clone(),
                        account_id: account_id.to_owned(),
                        identifier: identifier.authorized.clone(),
                        wildcard: identifier.wildcard,
                        status: AuthzStatus::Pending,
                        expires: now + config.pending_authz_lifetime,
                        challenges: flow::new_challenges(identifier)?,
                        version: 1,
                    };
                    authorization_ids.push(authz.id.clone());
                    new_authorizations.push(authz);
                }
            }
        }
        let created = new_authorizations.len() as u32;
        if created > 0 {
            counted.push(self.take_rate(
                &endpoint.authorizations,
                account_id,
                created,
                limits.pending_authorizations_per_account,
                "pending authorizations for this account",
            )?);
            counted.push(self.take_rate(
                &endpoint.authorizations,
                &peer,
                created,
                limits.pending_authorizations_per_ip,
                "pending authorizations from this address",
            )?);
        }
        let order = OrderRecord {
            id: flow::random_id()?,
            endpoint: ctx.name().clone(),
            account_id: account_id.to_owned(),
            status: if all_valid {
                OrderStatus::Ready
            } else {
                OrderStatus::Pending
            },
            expires: now + config.order_lifetime,
            identifiers: requested,
            not_before,
            not_after,
            profile,
            replaces,
            replaces_id,
            authorizations: authorization_ids,
            error: None,
            certificate: None,
            created_at: now,
            processing_since: None,
            version: 1,
        };
        self.shared
            .store
            .insert_order(&order, &new_authorizations)
            .await
            .map_err(internal)?;
        counted.into_iter().for_each(Taken::keep);
        Ok(AcmeResponse::json(201, &self.order_json(ctx, &order))
            .header("location", ctx.url(&format!("/order/{}", order.id))))
    }

    /// Checks an ARI `replaces`: a certificate of this endpoint, obtained by this account,
    /// sharing an identifier with the new order, and not yet replaced by a finished order.
    async fn check_replaces(
        &self,
        ctx: &Ctx<'_>,
        account: &CachedAccount,
        id: &str,
        identifiers: &[OrderIdentifier],
    ) -> Result<Serial, Problem> {
        let cert_id = CertId::parse(id)?;
        let record = match self.shared.authority.store().certificate(&cert_id.serial).await {
            Ok(record) => record,
            Err(StoreError::NotFound) => {
                return Err(Problem::new(
                    ProblemType::Malformed,
                    "replaces names a certificate this server did not issue",
                ));
            }
            Err(e) => return Err(internal(e)),
        };
        if ari::authority_key_identifier(&record.der).as_deref() != Some(cert_id.key_identifier.as_slice()) {
            return Err(Problem::new(
                ProblemType::Malformed,
                "replaces names a certificate this server did not issue",
            ));
        }
        if Some(&record.requester) != requester_of(ctx.name(), &account.record.id).as_ref() {
            return Err(Problem::new(
                ProblemType::Unauthorized,
                "replaces names a certificate another account obtained",
            ));
        }
        if !identifiers.iter().any(|i| record.identifiers.contains(&i.requested)) {
            return Err(Problem::new(
                ProblemType::Malformed,
                "the replaced certificate shares no identifier with the new order",
            ));
        }
        let successors = certgate_store::list_all(
            self.shared.authority.store().as_ref(),
            certgate_store::CertificateFilter::Requester(record.requester.clone()),
        )
        .await
        .map_err(internal)?;
        if successors.iter().any(|c| c.replaces.as_ref() == Some(&record.serial)) {
            return Err(Problem::new(
                ProblemType::AlreadyReplaced,
                "the certificate in replaces was already replaced by another order",
            ));
        }
        Ok(record.serial)
    }

    fn order_json(&self, ctx: &Ctx<'_>, order: &OrderRecord) -> Value {
        let mut object = json!({
            "status": flow::order_status_name(order.status),
            "expires": rfc3339(order.expires),
            "identifiers": order.identifiers.iter().map(|i| json!({"type": i.kind(), "value": i.to_string()})).collect::<Vec<_>>(),
            "authorizations": order.authorizations.iter().map(|a| ctx.url(&format!("/authz/{a}"))).collect::<Vec<_>>(),
            "finalize": ctx.url(&format!("/order/{}/finalize", order.id)),
        });
        let Some(map) = object.as_object_mut() else {
            return object;
        };
        if let Some(nb) = order.not_before {
            map.insert("notBefore".into(), json!(rfc3339(nb)));
        }
        if let Some(na) = order.not_after {
            map.insert("notAfter".into(), json!(rfc3339(na)));
        }
        if let Some(profile) = &order.profile {
            map.insert("profile".into(), json!(profile.as_str()));
        }
        if let Some(replaces) = &order.replaces_id {
            map.insert("replaces".into(), json!(replaces));
        }
        if let Some(error) = &order.error {
            map.insert("error".into(), error.clone());
        }
        if let Some(serial) = &order.certificate {
            map.insert(
                "certificate".into(),
                json!(ctx.url(&format!("/cert/{}", serial.to_hex()))),
            );
        }
        object
    }

    /// Loads an order owned by `account`, with its status brought up to date.
    async fn load_order(&self, ctx: &Ctx<'_>, account: &CachedAccount, id: &str) -> Result<OrderRecord, Problem> {
        let mut order = self
            .shared
            .store
            .order(id)
            .await
            .map_err(|e| store_problem(e, "order"))?;
        owned_by(ctx, account, &order.endpoint, &order.account_id, "order")?;
        let now = self.shared.clock.now();
        let mut authorizations = Vec::new();
        // A ready order is re-checked too: an authorization deactivated or expired since makes
        // it invalid rather than finalizable.
        if matches!(order.status, OrderStatus::Pending | OrderStatus::Ready) {
            for authz_id in &order.authorizations {
                authorizations.push(self.load_authorization(authz_id, now).await?);
            }
        }
        if flow::refresh_order(&mut order, &authorizations, now) {
            match self.shared.store.update_order(&order).await {
                Ok(()) => {}
                // Someone else moved it: theirs is at least as new.
                Err(StoreError::Conflict(_)) => {
                    order = self.shared.store.order(id).await.map_err(internal)?;
                }
                Err(e) => return Err(internal(e)),
            }
        }
        Ok(order)
    }

    async fn load_authorization(&self, id: &str, now: OffsetDateTime) -> Result<AuthzRecord, Problem> {
        let authz = self
            .shared
            .store
            .authorization(id)
            .await
            .map_err(|e| store_problem(e, "authorization"))?;
        self.refreshed_authorization(authz, now).await
    }

    /// The authorization as of `now`, its expiry written back if it just expired.
    async fn refreshed_authorization(
        &self,
        mut authz: AuthzRecord,
        now: OffsetDateTime,
    ) -> Result<AuthzRecord, Problem> {
        let id = authz.id.clone();
        if flow::refresh_authorization(&mut authz, now) {
            match self.shared.store.update_authorization(&authz).await {
                Ok(()) => {}
                Err(StoreError::Conflict(_)) => {
                    authz = self.shared.store.authorization(&id).await.map_err(internal)?;
                }
                Err(e) => return Err(internal(e)),
            }
        }
        Ok(authz)
    }

    async fn order(&self, ctx: &Ctx<'_>, id: &str) -> Handled {
        let (account, _) = self.authenticate_account(ctx).await?;
        let order = self.load_order(ctx, &account, id).await?;
        Ok(self.order_response(ctx, &order, 200))
    }

    fn order_response(&self, ctx: &Ctx<'_>, order: &OrderRecord, status: u16) -> AcmeResponse {
        let mut response = AcmeResponse::json(status, &self.order_json(ctx, order))
            .header("location", ctx.url(&format!("/order/{}", order.id)));
        if order.status == OrderStatus::Processing {
            response = response.header("retry-after", "1");
        }
        response
    }

    async fn finalize(&self, ctx: &Ctx<'_>, id: &str) -> Handled {
        let (account, payload) = self.authenticate_account(ctx).await?;
        let order = self.load_order(ctx, &account, id).await?;
        if order.status != OrderStatus::Ready {
            return Err(Problem::new(
                ProblemType::OrderNotReady,
                format!(
                    "the order is {}; only a ready order can be finalized",
                    flow::order_status_name(order.status)
                ),
            ));
        }
        let payload = json_object(&payload, "finalize")?;
        let csr_der = payload
            .get("csr")
            .and_then(Value::as_str)
            .ok_or_else(|| Problem::new(ProblemType::Malformed, "finalize needs a \"csr\""))
            .and_then(|text| {
                B64URL
                    .decode(text)
                    .map_err(|_| Problem::new(ProblemType::BadCsr, "the csr is not base64url DER"))
            })?;
        let csr = ParsedCsr::from_der(&csr_der)
            .map_err(|e| Problem::new(ProblemType::BadCsr, format!("the CSR is not acceptable: {e}")))?;
        flow::check_csr_names(&csr, &order)?;
        if AccountKey::from_spki_der(csr.spki_der()).is_some_and(|k| k == *account.key()) {
            return Err(Problem::new(
                ProblemType::BadCsr,
                "the CSR's key is the account key; certificates need a key of their own",
            ));
        }
        let mut request = IssueRequest::new(
            Protocol::Acme,
            ctx.name().clone(),
            csr,
            requester_of(ctx.name(), &account.record.id)
                .ok_or_else(|| internal("an account id that is not a valid requester id"))?,
        );
        request.profile = order.profile.clone();
        request.not_before = order.not_before;
        request.not_after = order.not_after;
        request.replaces = order.replaces.clone();
        let identifiers: Vec<OrderIdentifier> = order
            .identifiers
            .iter()
            .map(|i| OrderIdentifier {
                requested: i.clone(),
                authorized: i.clone(),
                wildcard: false,
            })
            .collect();
        self.shared
            .authority
            .check(&request)
            .map_err(|e| authority_problem(e, &identifiers))?;

        let mut processing = order.clone();
        processing.status = OrderStatus::Processing;
        processing.processing_since = Some(self.shared.clock.now());
        processing.version += 1;
        match self.shared.store.update_order(&processing).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                return Err(Problem::new(
                    ProblemType::OrderNotReady,
                    "the order is being finalized by another request",
                ));
            }
            Err(e) => return Err(internal(e)),
        }
        // Issue in a task of its own: a client that hangs up does not stop it half-way.
        let shared = Arc::clone(&self.shared);
        let task = tokio::spawn(async move {
            let result = shared.authority.issue(request).await;
            complete_order(&shared, processing, result).await
        });
        let order = match tokio::time::timeout(ctx.endpoint.config.finalize_wait, task).await {
            Ok(Ok(Ok(order))) => order,
            Ok(Ok(Err(problem))) => return Err(problem),
            Ok(Err(e)) => return Err(internal(e)),
            Err(_) => self.shared.store.order(id).await.map_err(internal)?,
        };
        Ok(self.order_response(ctx, &order, 200))
    }

    // ---- authorizations and challenges ----

    fn authorization_json(&self, ctx: &Ctx<'_>, authz: &AuthzRecord) -> Value {
        let challenges: Vec<Value> = authz
            .challenges
            .iter()
            .map(|c| self.challenge_json(ctx, authz, c))
            .collect();
        let mut object = json!({
            "identifier": {"type": authz.identifier.kind(), "value": authz.identifier.to_string()},
            "status": flow::authz_status_name(authz.status),
            "expires": rfc3339(authz.expires),
            "challenges": challenges,
        });
        if authz.wildcard {
            object["wildcard"] = json!(true);
        }
        object
    }

    fn challenge_json(
        &self,
        ctx: &Ctx<'_>,
        authz: &AuthzRecord,
        challenge: &certgate_store::acme::ChallengeRecord,
    ) -> Value {
        let mut object = json!({
            "type": challenge.kind,
            "url": ctx.url(&format!("/chall/{}/{}", authz.id, challenge.kind)),
            "status": flow::challenge_status_name(challenge.status),
            "token": challenge.token,
        });
        if let Some(validated) = challenge.validated {
            object["validated"] = json!(rfc3339(validated));
        }
        if let Some(error) = &challenge.error {
            object["error"] = error.clone();
        }
        if let Some(record) = &challenge.validation_record {
            object["validationRecord"] = record.clone();
        }
        object
    }

    async fn owned_authorization(
        &self,
        ctx: &Ctx<'_>,
        account: &CachedAccount,
        id: &str,
    ) -> Result<AuthzRecord, Problem> {
        // Ownership first: a stranger's request must not even write an expiry back.
        let authz = self
            .shared
            .store
            .authorization(id)
            .await
            .map_err(|e| store_problem(e, "authorization"))?;
        owned_by(ctx, account, &authz.endpoint, &authz.account_id, "authorization")?;
        self.refreshed_authorization(authz, self.shared.clock.now()).await
    }

    async fn authorization(&self, ctx: &Ctx<'_>, id: &str) -> Handled {
        let (account, payload) = self.authenticate_account(ctx).await?;
        let mut authz = self.owned_authorization(ctx, &account, id).await?;
        if !payload.is_empty() {
            let payload = json_object(&payload, "authorization update")?;
            if payload.get("status").and_then(Value::as_str) != Some("deactivated") {
                return Err(Problem::new(
                    ProblemType::Malformed,
                    "an authorization's status can only be set to \"deactivated\"",
                ));
            }
            if !matches!(authz.status, AuthzStatus::Pending | AuthzStatus::Valid) {
                return Err(Problem::new(
                    ProblemType::Malformed,
                    format!(
                        "a {} authorization cannot be deactivated",
                        flow::authz_status_name(authz.status)
                    ),
                ));
            }
            authz.status = AuthzStatus::Deactivated;
            authz.version += 1;
            self.shared
                .store
                .update_authorization(&authz)
                .await
                .map_err(|e| match e {
                    StoreError::Conflict(_) => {
                        Problem::new(ProblemType::Malformed, "the authorization changed concurrently; retry")
                            .with_status(409)
                    }
                    other => internal(other),
                })?;
        }
        let mut response = AcmeResponse::json(200, &self.authorization_json(ctx, &authz));
        if authz.status == AuthzStatus::Pending
            && authz.challenges.iter().any(|c| c.status == ChallengeStatus::Processing)
        {
            response = response.header("retry-after", "1");
        }
        Ok(response)
    }

    async fn challenge(&self, ctx: &Ctx<'_>, authz_id: &str, kind: &str) -> Handled {
        let (account, payload) = self.authenticate_account(ctx).await?;
        let mut authz = self.owned_authorization(ctx, &account, authz_id).await?;
        let index = authz.challenges.iter().position(|c| c.kind == kind).ok_or_else(|| {
            let why = if authz.wildcard {
                "; wildcard names validate only with dns-01"
            } else {
                ""
            };
            Problem::new(
                ProblemType::Malformed,
                format!("this authorization offers no {kind} challenge{why}"),
            )
            .with_status(404)
        })?;
        let up = format!("<{}>;rel=\"up\"", ctx.url(&format!("/authz/{}", authz.id)));
        let start = !payload.is_empty()
            && authz.status == AuthzStatus::Pending
            && authz.challenges[index].status == ChallengeStatus::Pending;
        if !payload.is_empty() {
            json_object(&payload, "challenge response")?;
        }
        if start {
            let endpoint = &ctx.endpoint;
            let limits = &endpoint.config.rate_limits;
            self.check_rate(
                &endpoint.failures,
                &account.record.id,
                limits.failed_validations_per_account,
                "failed validations for this account",
            )?;
            self.check_rate(
                &endpoint.failures,
                &client_key(ctx.request.peer),
                limits.failed_validations_per_ip,
                "failed validations from this address",
            )?;
            self.check_rate(
                &endpoint.failures,
                &identifier_key(&account.record.id, &authz.identifier),
                limits.failed_validations_per_identifier,
                "failed validations of this identifier for this account",
            )?;
            // A place in the validation pool before anything is written: when it is full the
            // challenge stays pending and the client retries later.
            let place = if endpoint.config.danger_always_valid {
                None
            } else {
                let place = endpoint.validations.try_enter().ok_or_else(|| {
                    let wait =
                        time::Duration::try_from(endpoint.config.validation.timeout).unwrap_or(time::Duration::MINUTE);
                    rate_limited("validations waiting on this server", wait)
                })?;
                Some(place)
            };
            let now = self.shared.clock.now();
            if endpoint.config.danger_always_valid {
                let challenge = &mut authz.challenges[index];
                challenge.status = ChallengeStatus::Valid;
                challenge.validated = Some(now);
                authz.status = AuthzStatus::Valid;
                authz.expires = now + endpoint.config.valid_authz_lifetime;
            } else {
                authz.challenges[index].status = ChallengeStatus::Processing;
            }
            authz.version += 1;
            match self.shared.store.update_authorization(&authz).await {
                Ok(()) => {
                    if let Some(place) = place {
                        self.spawn_validation(ctx, &account, &authz, index, place);
                    }
                }
                // Another request started it: show what is stored now.
                Err(StoreError::Conflict(_)) => {
                    authz = self.shared.store.authorization(authz_id).await.map_err(internal)?;
                }
                Err(e) => return Err(internal(e)),
            }
        }
        let challenge = &authz.challenges[index];
        let mut response = AcmeResponse::json(200, &self.challenge_json(ctx, &authz, challenge)).header("link", up);
        if challenge.status == ChallengeStatus::Processing {
            response = response.header("retry-after", "1");
        }
        Ok(response)
    }

    fn spawn_validation(
        &self,
        ctx: &Ctx<'_>,
        account: &CachedAccount,
        authz: &AuthzRecord,
        index: usize,
        place: Place,
    ) {
        let shared = Arc::clone(&self.shared);
        let endpoint = Arc::clone(&ctx.endpoint);
        let authz_id = authz.id.clone();
        let identifier = authz.identifier.clone();
        let wildcard = authz.wildcard;
        let kind_name = authz.challenges[index].kind.clone();
        let key_authorization = format!("{}.{}", authz.challenges[index].token, account.record.thumbprint);
        let token = authz.challenges[index].token.clone();
        let account_url = ctx.account_url(&account.record.id);
        let account_id = account.record.id.clone();
        let identifier_failures = identifier_key(&account_id, &identifier);
        let peer = client_key(ctx.request.peer);
        tokio::spawn(place.run(async move {
            let kind: ChallengeKind = match kind_name.parse() {
                Ok(kind) => kind,
                Err(_) => return,
            };
            let attempt = Attempt {
                identifier: &identifier,
                kind,
                token: &token,
                key_authorization: &key_authorization,
            };
            let mut result = endpoint.validator.validate(&attempt).await;
            if result.is_ok()
                && let Identifier::Dns(name) = &identifier
                && let Err(e) = endpoint.validator.check_caa(name, wildcard, &account_url, kind).await
            {
                result = Err(e);
            }
            let now = shared.clock.now();
            if result.is_err() {
                endpoint.failures.record(&account_id, 1, now);
                endpoint.failures.record(&identifier_failures, 1, now);
                endpoint.failures.record(&peer, 1, now);
            }
            if let Some(metrics) = &shared.metrics {
                use certgate_metrics::{ValidationOutcome, ValidationType};
                let outcome = match &result {
                    Ok(_) => ValidationOutcome::Valid,
                    Err(e) => ValidationOutcome::from_acme_problem(&validation_problem_type(&e.kind).urn()),
                };
                if let Some(kind) = ValidationType::from_name(&kind_name) {
                    metrics.validation(kind, outcome);
                }
            }
            record_validation(&shared, &endpoint, &authz_id, &kind_name, result, now).await;
        }));
    }

    // ---- certificates ----

    async fn certificate(&self, ctx: &Ctx<'_>, serial: &str) -> Handled {
        let (account, _) = self.authenticate_account(ctx).await?;
        let serial = Serial::parse_hex(serial).map_err(|_| not_found("certificate"))?;
        let record = self
            .shared
            .authority
            .store()
            .certificate(&serial)
            .await
            .map_err(|e| store_problem(e, "certificate"))?;
        if record.protocol != Protocol::Acme || record.endpoint != *ctx.name() {
            return Err(not_found("certificate"));
        }
        if Some(&record.requester) != requester_of(ctx.name(), &account.record.id).as_ref() {
            return Err(Problem::new(
                ProblemType::Unauthorized,
                "the certificate was obtained by another account",
            ));
        }
        let pem = self
            .shared
            .authority
            .chain_pem(&record)
            .ok_or_else(|| internal("the certificate's issuer is no longer configured"))?;
        let mut response = AcmeResponse::new(200);
        response
            .headers
            .push(("content-type", "application/pem-certificate-chain".into()));
        response.body = pem.into_bytes();
        Ok(response)
    }

    async fn revoke_cert(&self, ctx: &Ctx<'_>) -> Handled {
        let (auth, payload) = self.authenticate(ctx, true, false).await?;
        let payload = json_object(&payload, "revokeCert")?;
        let der = payload
            .get("certificate")
            .and_then(Value::as_str)
            .and_then(|text| B64URL.decode(text).ok())
            .ok_or_else(|| Problem::new(ProblemType::Malformed, "revokeCert needs a base64url \"certificate\""))?;
        let reason = match payload.get("reason") {
            None | Some(Value::Null) => RevocationReason::Unspecified,
            Some(value) => value
                .as_u64()
                .and_then(|code| u8::try_from(code).ok())
                .filter(|code| [0, 1, 3, 4, 5, 9].contains(code))
                .and_then(RevocationReason::from_code)
                .ok_or_else(|| {
                    Problem::new(
                        ProblemType::BadRevocationReason,
                        "the reason must be one of 0, 1, 3, 4, 5, 9 (RFC 5280 reason codes ACME allows)",
                    )
                })?,
        };
        let (serial, spki) = certificate_serial_and_key(&der)
            .ok_or_else(|| Problem::new(ProblemType::Malformed, "the certificate does not parse"))?;
        // Only certificates this ACME endpoint issued: EST and SCEP certificates are revoked
        // through their own front ends or the operator.
        let record = match self.shared.authority.store().certificate(&serial).await {
            Ok(record) if record.der == der && record.protocol == Protocol::Acme && record.endpoint == *ctx.name() => {
                record
            }
            Ok(_) | Err(StoreError::NotFound) => {
                return Err(
                    Problem::new(ProblemType::Malformed, "this server did not issue that certificate").with_status(404),
                );
            }
            Err(e) => return Err(internal(e)),
        };
        let by = match &auth {
            Auth::Key(key) => {
                if AccountKey::from_spki_der(&spki).as_ref() != Some(key) {
                    return Err(Problem::new(
                        ProblemType::Unauthorized,
                        "the request is signed neither by an account nor by the certificate's key",
                    ));
                }
                "acme: the certificate's key".to_owned()
            }
            Auth::Account(account) => {
                let owns = Some(&record.requester) == requester_of(ctx.name(), &account.record.id).as_ref();
                if !owns
                    && !self
                        .holds_authorizations(&account.record.id, &record.identifiers)
                        .await?
                {
                    return Err(Problem::new(
                        ProblemType::Unauthorized,
                        "the account neither obtained this certificate nor holds valid authorizations for all its names",
                    ));
                }
                format!("acme-account:{}/{}", ctx.name(), account.record.id)
            }
        };
        match self.shared.authority.revoke(&serial, reason, &by).await {
            Ok(_) => Ok(AcmeResponse::new(200)),
            Err(AuthorityError::AlreadyRevoked) => Err(Problem::new(
                ProblemType::AlreadyRevoked,
                "the certificate is already revoked",
            )),
            Err(AuthorityError::NotFound) => Err(not_found("certificate")),
            Err(e) => Err(internal(e)),
        }
    }

    async fn holds_authorizations(&self, account_id: &str, identifiers: &[Identifier]) -> Result<bool, Problem> {
        let now = self.shared.clock.now();
        for identifier in identifiers {
            let (authorized, wildcard) = match identifier {
                Identifier::Dns(name) if name.is_wildcard() => (
                    certgate_core::DnsName::new(name.base())
                        .map(Identifier::Dns)
                        .map_err(internal)?,
                    true,
                ),
                other => (other.clone(), false),
            };
            let held = self
                .shared
                .store
                .reusable_authorization(account_id, &authorized, wildcard, now)
                .await
                .map_err(internal)?;
            if held.is_none() {
                return Ok(false);
            }
        }
        Ok(!identifiers.is_empty())
    }

    async fn renewal_info(&self, ctx: &Ctx<'_>, id: &str) -> Handled {
        let cert_id = CertId::parse(id).map_err(|p| p.with_status(400))?;
        let record = match self.shared.authority.store().certificate(&cert_id.serial).await {
            Ok(record) => record,
            Err(StoreError::NotFound) => return Err(not_found("certificate")),
            Err(e) => return Err(internal(e)),
        };
        if record.endpoint != *ctx.name()
            || record.protocol != Protocol::Acme
            || ari::authority_key_identifier(&record.der).as_deref() != Some(cert_id.key_identifier.as_slice())
        {
            return Err(not_found("certificate"));
        }
        let (start, end) = ari::suggested_window(&record, self.shared.clock.now());
        Ok(AcmeResponse::json(
            200,
            &json!({"suggestedWindow": {"start": rfc3339(start), "end": rfc3339(end)}}),
        )
        .header("retry-after", ari::RETRY_AFTER_SECONDS.to_string()))
    }
}

const KNOWN_POST: [&str; 9] = [
    "new-account",
    "new-order",
    "revoke-cert",
    "key-change",
    "acct",
    "order",
    "authz",
    "chall",
    "cert",
];

/// Refuses a resource of another endpoint (as unknown) or of another account (unauthorized).
fn owned_by(ctx: &Ctx<'_>, account: &CachedAccount, endpoint: &Name, owner: &str, what: &str) -> Result<(), Problem> {
    if endpoint != ctx.name() {
        return Err(not_found(what));
    }
    if owner != account.record.id {
        return Err(Problem::new(
            ProblemType::Unauthorized,
            format!("the {what} belongs to another account"),
        ));
    }
    Ok(())
}

/// The key client-address rate limits count under: the address for IPv4, the /64 for IPv6
/// (one host usually holds a whole /64).
fn client_key(peer: IpAddr) -> String {
    match peer {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The key failed validations count under per account and identifier (a space separates:
/// neither account ids nor addresses, the limiter's other keys, contain one).
fn identifier_key(account_id: &str, identifier: &Identifier) -> String {
    format!("{account_id} {identifier}")
}

fn check_post(request: &AcmeRequest<'_>) -> Result<(), Problem> {
    if request.body_too_large {
        return Err(Problem::new(
            ProblemType::Malformed,
            format!("the request body exceeds {} bytes", crate::jws::MAX_JWS_LEN),
        )
        .with_status(413));
    }
    let content_type = request
        .content_type
        .map(|t| t.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    if content_type.as_deref() != Some("application/jose+json") {
        return Err(Problem::new(
            ProblemType::Malformed,
            "ACME requests must have Content-Type application/jose+json",
        )
        .with_status(415));
    }
    Ok(())
}

fn json_object(payload: &[u8], what: &str) -> Result<serde_json::Map<String, Value>, Problem> {
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(Problem::new(
            ProblemType::Malformed,
            format!("the {what} payload must be a JSON object"),
        )),
        Err(e) => Err(Problem::new(
            ProblemType::Malformed,
            format!("the {what} payload is not JSON: {e}"),
        )),
    }
}

fn parse_contacts(value: Option<&Value>) -> Result<Vec<String>, Problem> {
    let list = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(Problem::new(ProblemType::Malformed, "contact must be an array of URLs")),
    };
    if list.len() > MAX_CONTACTS {
        return Err(Problem::new(
            ProblemType::InvalidContact,
            format!("at most {MAX_CONTACTS} contacts"),
        ));
    }
    list.iter()
        .map(|item| {
            let text = item
                .as_str()
                .ok_or_else(|| Problem::new(ProblemType::InvalidContact, "a contact is not a string"))?;
            let Some(address) = text.strip_prefix("mailto:") else {
                return Err(Problem::new(
                    ProblemType::UnsupportedContact,
                    format!("contact {text:?}: only mailto: URLs are supported"),
                ));
            };
            let valid = !address.contains(['?', ',', ' ', '<', '>'])
                && address.split_once('@').is_some_and(|(local, domain)| {
                    !local.is_empty()
                        && !domain.contains('@')
                        && certgate_core::DnsName::new(domain).is_ok_and(|d| !d.is_wildcard())
                });
            if !valid {
                return Err(Problem::new(
                    ProblemType::InvalidContact,
                    format!("contact {text:?} is not a single valid email address"),
                ));
            }
            Ok(text.to_owned())
        })
        .collect()
}

/// The serial and SubjectPublicKeyInfo (DER) of a certificate.
fn certificate_serial_and_key(der: &[u8]) -> Option<(Serial, Vec<u8>)> {
    use der::{Decode, Encode};
    let certificate = x509_cert::Certificate::from_der(der).ok()?;
    let tbs = certificate.tbs_certificate();
    let serial = Serial::from_der_integer(tbs.serial_number().as_bytes()).ok()?;
    let spki = tbs.subject_public_key_info().to_der().ok()?;
    Some((serial, spki))
}

/// `rateLimited` with a `Retry-After` of the rest of the limit's window.
fn rate_limited(what: &str, wait: time::Duration) -> Problem {
    // Rounded up: a client retrying on the dot must find the window over.
    let seconds = u64::try_from((wait + time::Duration::nanoseconds(999_999_999)).whole_seconds())
        .unwrap_or(0)
        .max(1);
    Problem::new(
        ProblemType::RateLimited,
        format!("too many {what}; retry after {seconds} seconds"),
    )
    .with_retry_after(seconds)
}

/// Maps an authority refusal to the problem RFC 8555 names for it.
fn authority_problem(e: AuthorityError, identifiers: &[OrderIdentifier]) -> Problem {
    let detail = e.to_string();
    match e {
        AuthorityError::NameNotAllowed { identifier, reason } => Problem::new(
            ProblemType::RejectedIdentifier,
            format!("{identifier} is not allowed here"),
        )
        .with_subproblem(ProblemType::RejectedIdentifier, reason, problem_identifier(&identifier)),
        AuthorityError::WildcardNotAllowed(identifier) => Problem::new(ProblemType::RejectedIdentifier, detail.clone())
            .with_subproblem(ProblemType::RejectedIdentifier, detail, problem_identifier(&identifier)),
        AuthorityError::TooManyNames { .. } => Problem::new(ProblemType::RejectedIdentifier, detail),
        AuthorityError::UnknownProfile(_) => Problem::new(ProblemType::InvalidProfile, detail),
        AuthorityError::BadValidity(_) => Problem::new(ProblemType::Malformed, detail),
        AuthorityError::Busy { retry_after_seconds } => {
            Problem::new(ProblemType::RateLimited, detail).with_retry_after(retry_after_seconds)
        }
        AuthorityError::KeyNotAllowed { .. }
        | AuthorityError::Csr(_)
        | AuthorityError::WeakSignatureAlgorithm
        | AuthorityError::NoNames(_)
        | AuthorityError::UnsupportedSan(_)
        | AuthorityError::SubjectNotAllowed { .. } => Problem::new(ProblemType::BadCsr, detail),
        other => {
            let _ = identifiers;
            internal(other)
        }
    }
}

/// Records the end of an issuance on its order; returns the order or the problem to answer.
async fn complete_order(
    shared: &Shared,
    mut order: OrderRecord,
    result: Result<certgate_authority::Issued, AuthorityError>,
) -> Result<OrderRecord, Problem> {
    let outcome = match result {
        Ok(issued) => {
            order.status = OrderStatus::Valid;
            order.certificate = Some(issued.record.serial);
            Ok(())
        }
        Err(e) => {
            let problem = authority_problem(e, &[]);
            order.status = OrderStatus::Invalid;
            order.error = Some(problem_json(&problem));
            Err(problem)
        }
    };
    order.version += 1;
    if let Err(e) = shared.store.update_order(&order).await {
        tracing::error!(order = %order.id, error = %e, "recording the end of an issuance on its order failed");
    }
    outcome.map(|()| order)
}

/// Writes a validation's outcome on its authorization (retrying on concurrent changes).
async fn record_validation(
    shared: &Shared,
    endpoint: &Endpoint,
    authz_id: &str,
    kind: &str,
    result: Result<certgate_validation::ValidationRecord, ValidationError>,
    now: OffsetDateTime,
) {
    for _ in 0..5 {
        let mut authz = match shared.store.authorization(authz_id).await {
            Ok(authz) => authz,
            Err(e) => {
                tracing::error!(authz = authz_id, error = %e, "loading an authorization after validation failed");
                return;
            }
        };
        // An authorization that expired while this validation waited stays expired.
        flow::refresh_authorization(&mut authz, now);
        let still_pending = authz.status == AuthzStatus::Pending;
        let Some(challenge) = authz.challenges.iter_mut().find(|c| c.kind == kind) else {
            return;
        };
        if challenge.status != ChallengeStatus::Processing {
            return;
        }
        match &result {
            Ok(record) => {
                challenge.status = ChallengeStatus::Valid;
                challenge.validated = Some(now);
                challenge.validation_record = serde_json::to_value([record]).ok();
                if still_pending {
                    authz.status = AuthzStatus::Valid;
                    authz.expires = now + endpoint.config.valid_authz_lifetime;
                }
            }
            Err(e) => {
                let problem = Problem::new(validation_problem_type(&e.kind), e.detail.clone());
                challenge.status = ChallengeStatus::Invalid;
                challenge.error = Some(problem_json(&problem));
                challenge.validation_record = e.record.as_ref().and_then(|r| serde_json::to_value([r]).ok());
                if still_pending {
                    authz.status = AuthzStatus::Invalid;
                }
            }
        }
        authz.version += 1;
        match shared.store.update_authorization(&authz).await {
            Ok(()) => {
                tracing::info!(
                    target: "certgate::validation",
                    endpoint = %endpoint.config.name,
                    identifier = %authz.identifier,
                    challenge = kind,
                    outcome = if result.is_ok() { "valid" } else { "invalid" },
                    detail = result.as_ref().err().map(|e| e.detail.as_str()).unwrap_or(""),
                    "validation finished"
                );
                return;
            }
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => {
                tracing::error!(authz = authz_id, error = %e, "recording a validation failed");
                return;
            }
        }
    }
}

fn validation_problem_type(kind: &ValidationErrorKind) -> ProblemType {
    match kind {
        ValidationErrorKind::Dns => ProblemType::Dns,
        ValidationErrorKind::Connection => ProblemType::Connection,
        ValidationErrorKind::IncorrectResponse => ProblemType::IncorrectResponse,
        ValidationErrorKind::Tls => ProblemType::Tls,
        ValidationErrorKind::Caa => ProblemType::Caa,
        ValidationErrorKind::Unauthorized => ProblemType::Unauthorized,
        ValidationErrorKind::Malformed => ProblemType::Malformed,
        ValidationErrorKind::RejectedIdentifier => ProblemType::RejectedIdentifier,
        _ => ProblemType::ServerInternal,
    }
}

#[cfg(test)]
mod tests {
    use super::client_key;

    #[test]
    fn rate_limit_keys_group_ipv6_by_64() {
        let cases = [
            ("ipv4", "192.0.2.7", "192.0.2.7"),
            ("ipv4_mapped", "::ffff:192.0.2.7", "192.0.2.7"),
            ("ipv6_host", "2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
            ("ipv6_same_64", "2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
            ("ipv6_other_64", "2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ];
        for (name, peer, key) in cases {
            assert_eq!(peer.parse().map(client_key), Ok(key.to_owned()), "{name}");
        }
    }
}
