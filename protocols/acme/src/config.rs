//! Per-endpoint ACME settings.

use certgate_core::Name;
use certgate_validation::ValidationConfig;
use time::Duration;

/// One ACME endpoint's settings (its issuance policy lives in the authority's endpoint).
#[derive(Debug, Clone)]
pub struct AcmeEndpointConfig {
    /// The endpoint name: served at `/acme/{name}/directory`.
    pub name: Name,
    /// `meta.termsOfService`; when set, newAccount requires `termsOfServiceAgreed`.
    pub terms_of_service: Option<String>,
    /// `meta.website`.
    pub website: Option<String>,
    /// `meta.caaIdentities`, and the identities CAA checking accepts.
    pub caa_identities: Vec<String>,
    /// Check CAA (RFC 8659/8657) before an authorization becomes valid.
    pub caa_enabled: bool,
    /// newAccount requires external account binding.
    pub external_account_required: bool,
    /// How long a new order may stay unfinalized.
    pub order_lifetime: Duration,
    /// How long a pending authorization waits for its challenge.
    pub pending_authz_lifetime: Duration,
    /// How long a valid authorization may be reused by its account.
    pub valid_authz_lifetime: Duration,
    /// Reuse an account's valid authorizations in new orders.
    pub reuse_authorizations: bool,
    /// How challenges are validated.
    pub validation: ValidationConfig,
    /// Skip validation: every challenge passes. For benchmarks only: never in production.
    pub danger_always_valid: bool,
    /// How long finalize waits for issuance before answering `processing`.
    pub finalize_wait: std::time::Duration,
    /// Validations run at once (a bounded worker pool).
    pub validation_workers: usize,
    /// Validations that may wait for a worker; a challenge beyond that is answered
    /// `rateLimited` and stays pending.
    pub validation_queue: usize,
    /// Rate limits; see [`RateLimits::default`] for the limits that apply unless changed.
    pub rate_limits: RateLimits,
}

impl AcmeEndpointConfig {
    /// Defaults for an endpoint named `name`.
    pub fn new(name: Name) -> Self {
        Self {
            name,
            terms_of_service: None,
            website: None,
            caa_identities: Vec::new(),
            caa_enabled: false,
            external_account_required: false,
            order_lifetime: Duration::hours(24),
            pending_authz_lifetime: Duration::hours(24),
            valid_authz_lifetime: Duration::days(7),
            reuse_authorizations: true,
            validation: ValidationConfig::default(),
            danger_always_valid: false,
            finalize_wait: std::time::Duration::from_secs(5),
            validation_workers: 32,
            validation_queue: 1024,
            rate_limits: RateLimits::default(),
        }
    }
}

/// Limits per account and per client address (IPv4 address, IPv6 /64), each counted in fixed
/// windows of `window`. `None` = no limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// The window the counts cover.
    pub window: Duration,
    /// New accounts per client address.
    pub new_accounts_per_ip: Option<u32>,
    /// New orders per account.
    pub new_orders_per_account: Option<u32>,
    /// New orders per client address.
    pub new_orders_per_ip: Option<u32>,
    /// Authorizations created (pending) per account.
    pub pending_authorizations_per_account: Option<u32>,
    /// Authorizations created (pending) per client address.
    pub pending_authorizations_per_ip: Option<u32>,
    /// Failed validations per account.
    pub failed_validations_per_account: Option<u32>,
    /// Failed validations per account and identifier.
    pub failed_validations_per_identifier: Option<u32>,
    /// Failed validations per client address.
    pub failed_validations_per_ip: Option<u32>,
}

impl Default for RateLimits {
    /// Limits for a private CA, per hour: well above what one well-behaved client or a fleet's
    /// automation sends (a multiple of Let's Encrypt's limits, which are per three hours),
    /// and low enough that a client stuck in a loop is stopped within minutes. Accounts are the
    /// only ACME records written durably per request and never swept; orders and
    /// authorizations are swept, but fill the store until they expire; failed validations
    /// cost outbound connections and hold a worker up to the validation timeout.
    ///
    /// Per-address limits other than accounts are off: behind a reverse proxy or NAT every
    /// client has the same address, and the per-account limits, with accounts limited per
    /// address, already bound what one address can create in a window.
    fn default() -> Self {
        Self {
            window: Duration::hours(1),
            // Let's Encrypt: 10 per 3 hours. A fleet behind one NAT, or CI jobs that register
            // every run, need more; a registration loop does not get far.
            new_accounts_per_ip: Some(100),
            // Let's Encrypt: 300 per 3 hours. One account of a cluster's automation
            // (cert-manager, Caddy, Traefik) renewing a thousand short-lived certificates.
            new_orders_per_account: Some(1000),
            new_orders_per_ip: None,
            // Three names per order at the order limit (fewer with authorization reuse).
            pending_authorizations_per_account: Some(3000),
            pending_authorizations_per_ip: None,
            // Enough to debug a broken setup across many names, not to keep a validation loop
            // going.
            failed_validations_per_account: Some(100),
            // Let's Encrypt's: 5 per account and identifier per hour.
            failed_validations_per_identifier: Some(5),
            failed_validations_per_ip: None,
        }
    }
}
