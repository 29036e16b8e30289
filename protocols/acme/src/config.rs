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
    /// Rate limits; all off by default.
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
            rate_limits: RateLimits::default(),
        }
    }
}

/// Limits per account and per client IP address over a sliding `window`. `None` = no limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// The window the counts cover.
    pub window: Duration,
    /// New accounts per client IP.
    pub new_accounts_per_ip: Option<u32>,
    /// New orders per account.
    pub new_orders_per_account: Option<u32>,
    /// New orders per client IP.
    pub new_orders_per_ip: Option<u32>,
    /// Authorizations created (pending) per account.
    pub pending_authorizations_per_account: Option<u32>,
    /// Authorizations created (pending) per client IP.
    pub pending_authorizations_per_ip: Option<u32>,
    /// Failed validations per account.
    pub failed_validations_per_account: Option<u32>,
    /// Failed validations per client IP.
    pub failed_validations_per_ip: Option<u32>,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            window: Duration::hours(1),
            new_accounts_per_ip: None,
            new_orders_per_account: None,
            new_orders_per_ip: None,
            pending_authorizations_per_account: None,
            pending_authorizations_per_ip: None,
            failed_validations_per_account: None,
            failed_validations_per_ip: None,
        }
    }
}
