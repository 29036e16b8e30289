//! The configuration file (TOML). Every field is documented, defaulted or required, and
//! unknown fields are errors. With no file, [`Config::default`] is the embedded default.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use certgate_authority::{EndpointPolicy, KeyPolicy, NamePolicy, Profile};
use certgate_core::{Name, Protocol};
use certgate_signer::{KeyType, Usage};
use serde::Deserialize;

mod est;
mod listeners;
mod scep;

pub use est::{EstAuth, EstBase64, EstCsrAttrsSettings, EstPasswordLimits, EstSettings, parse_key_kind};
pub use listeners::{ListenerConfig, MetricsAccess};
pub use scep::{CheckedScep, ScepSettings};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the store, CA files and server certificate live (relative paths are relative to
    /// the working directory). `--data-dir` overrides it.
    pub data_dir: PathBuf,
    /// The base URL certificates point at for CRLs, OCSP and CA certificates.
    pub public_base_url: Option<String>,
    /// Logging.
    pub log: LogConfig,
    /// Listening addresses.
    pub listeners: ListenerConfig,
    /// The HTTPS listener's certificate.
    pub tls: TlsConfig,
    /// Issuing CAs.
    pub issuers: Vec<IssuerConfig>,
    /// Certificate profiles, in addition to (or replacing by name) the built-in ones.
    pub profiles: Vec<ProfileConfig>,
    /// Protocol endpoints.
    pub endpoints: Vec<EndpointConfig>,
    /// CRLs and the OCSP responder.
    pub revocation: RevocationConfig,
    /// Expiry monitoring, webhooks and deployment verification.
    pub lifecycle: LifecycleConfig,
    /// The HTTPS admin API.
    pub admin: AdminConfig,
    /// How long finished state is kept before the sweeper removes it.
    pub retention: RetentionConfig,
    /// The embedded database.
    pub store: StoreConfig,
    /// Who may read `/metrics`.
    pub metrics: MetricsAccess,
}

/// The embedded (sled) database in `<data_dir>/db`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The most memory (MiB) sled's page cache may hold.
    pub cache_mib: u64,
    /// New issuance is limited to the rate sled's reclamation sustains, the rest shed with
    /// `Retry-After`, while the database file is larger than this many MiB and more than
    /// `shed_above_ratio` times the live data (`certgate_store::SpaceWatch`). 0 turns it off.
    pub shed_above_mib: u64,
    /// See `shed_above_mib`. 0 turns shedding off.
    pub shed_above_ratio: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        let policy = certgate_store::ShedPolicy::default();
        Self {
            cache_mib: certgate_store::DEFAULT_CACHE_BYTES / (1024 * 1024),
            shed_above_mib: policy.above_bytes / (1024 * 1024),
            shed_above_ratio: policy.max_amplification as u32,
        }
    }
}

impl StoreConfig {
    /// The shedding rule, or None when turned off.
    pub fn shed_policy(&self) -> Option<certgate_store::ShedPolicy> {
        (self.shed_above_mib > 0 && self.shed_above_ratio > 0).then(|| certgate_store::ShedPolicy {
            above_bytes: self.shed_above_mib.saturating_mul(1024 * 1024),
            max_amplification: f64::from(self.shed_above_ratio),
        })
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("certgate-data"),
            public_base_url: Some("http://127.0.0.1:8080".into()),
            log: LogConfig::default(),
            listeners: ListenerConfig::default(),
            tls: TlsConfig::default(),
            issuers: vec![IssuerConfig::default()],
            profiles: Vec::new(),
            endpoints: vec![default_acme_endpoint(), default_est_endpoint(), default_scep_endpoint()],
            revocation: RevocationConfig::default(),
            lifecycle: LifecycleConfig::default(),
            admin: AdminConfig::default(),
            retention: RetentionConfig::default(),
            store: StoreConfig::default(),
            metrics: MetricsAccess::default(),
        }
    }
}

/// CRLs (served at `/crl/<issuer>.crl`) and OCSP (at `/ocsp/<issuer>`), on both listeners.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RevocationConfig {
    /// Hours from a CRL's thisUpdate to its nextUpdate; a new CRL is made after half of it,
    /// and after every revocation.
    pub crl_validity_hours: u32,
    /// Minutes from an OCSP response's thisUpdate to its nextUpdate.
    pub ocsp_validity_minutes: u32,
    /// Days the delegated OCSP signing certificate is valid; it is replaced after two thirds.
    pub ocsp_signer_validity_days: u32,
}

impl Default for RevocationConfig {
    fn default() -> Self {
        Self {
            crl_validity_hours: 24,
            ocsp_validity_minutes: 60,
            ocsp_signer_validity_days: 30,
        }
    }
}

/// Expiry monitoring, notifications and deployment verification.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// Where in its lifetime a certificate's renewal window starts, in percent (default 66:
    /// two thirds).
    pub renewal_window_percent: u8,
    /// A certificate without a live successor this many days before notAfter gets an
    /// `expiring` notification.
    pub expiring_within_days: u32,
    /// Seconds between expiry scans.
    pub scan_interval_seconds: u64,
    /// Webhooks notified of renewal windows, coming expiries and deployment findings.
    pub webhooks: Vec<WebhookConfig>,
    /// Deployment verification.
    pub deployment: DeploymentConfig,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            renewal_window_percent: 66,
            expiring_within_days: 7,
            scan_interval_seconds: 300,
            webhooks: Vec::new(),
            deployment: DeploymentConfig::default(),
        }
    }
}

impl LifecycleConfig {
    /// The renewal window start as a fraction of the lifetime.
    pub fn renewal_fraction(&self) -> f64 {
        // 66 means two thirds, as the default says; other values are taken literally.
        if self.renewal_window_percent == 66 {
            2.0 / 3.0
        } else {
            f64::from(self.renewal_window_percent) / 100.0
        }
    }
}

/// One webhook.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Its name (in delivery records and metrics).
    pub name: String,
    /// `http://` or `https://` URL it is POSTed to.
    pub url: String,
    /// The HMAC-SHA256 signing secret, from the first line of this file.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// The signing secret, from this environment variable.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// PEM CA certificates to trust for an `https://` URL (the system's otherwise).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Only these event kinds (`renewal_due`, `expiring`, `deployment`); all when empty.
    #[serde(default)]
    pub events: Vec<String>,
}

/// Deployment verification targets and schedule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeploymentConfig {
    /// Seconds between scheduled checks; 0 turns the schedule off (`certgate
    /// verify-deployment` still works).
    pub interval_seconds: u64,
    /// Seconds one connection may take.
    pub timeout_seconds: u64,
    /// Also check the DNS names of certificates whose `verify_deployment` owner label names a port.
    pub from_inventory: bool,
    /// Endpoints to check.
    pub targets: Vec<DeploymentTargetConfig>,
}

impl Default for DeploymentConfig {
    fn default() -> Self {
        Self {
            interval_seconds: 3600,
            timeout_seconds: 10,
            from_inventory: true,
            targets: Vec::new(),
        }
    }
}

/// One TLS endpoint to check.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentTargetConfig {
    /// `host:port`.
    pub address: String,
    /// The SNI name to send (the host when it is a name).
    #[serde(default)]
    pub server_name: Option<String>,
    /// Who owns it (copied into findings).
    #[serde(default)]
    pub owner: Option<String>,
}

/// The HTTPS admin API at `/admin/v1/` (bearer tokens from `certgate admin token create`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// SHA-256 fingerprints (hex) of client certificates that have the admin role. The
    /// certificate must also chain to a CA the HTTPS listener trusts for client certificates
    /// (certgate's own issuers, or an EST endpoint's anchors).
    pub client_certificate_sha256: Vec<String>,
}

/// How long finished state is kept; the sweeper runs every `sweep_interval_seconds`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Seconds between sweeps.
    pub sweep_interval_seconds: u64,
    /// Seconds an ACME order or authorization is kept after it expired.
    pub acme_seconds_after_expiry: u64,
    /// Seconds a certificate stays in the inventory after notAfter.
    pub certificate_seconds_after_expiry: u64,
    /// Seconds a decided approval is kept; pending ones are dropped after the same time.
    pub approval_seconds: u64,
    /// Days webhook delivery records and deployment observations are kept.
    pub delivery_days: u32,
    /// Audit entries kept in the database; older ones move, unchanged, to segment files in
    /// `<data_dir>/audit/` (still exported and verified as one log).
    pub audit_entries_in_store: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            sweep_interval_seconds: 300,
            acme_seconds_after_expiry: 7 * 86_400,
            certificate_seconds_after_expiry: 365 * 86_400,
            approval_seconds: 30 * 86_400,
            delivery_days: 30,
            audit_entries_in_store: 100_000,
        }
    }
}

/// Log output.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `certgate=debug,info`. `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// Log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The HTTPS listener's certificate: either files the operator provides, or one that
/// certgate issues from its own CA and renews itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM chain (leaf first) to serve instead of a self-issued certificate.
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM, mode 0600).
    pub key_file: Option<PathBuf>,
    /// Names for the self-issued certificate (DNS names or IP addresses).
    pub names: Vec<String>,
    /// The issuer that signs the self-issued certificate.
    pub issuer: String,
    /// Validity of the self-issued certificate, in days; renewed after two thirds of it.
    pub validity_days: u32,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert_file: None,
            key_file: None,
            names: vec!["localhost".into(), "127.0.0.1".into()],
            issuer: "default".into(),
            validity_days: 30,
        }
    }
}

/// One issuing CA.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IssuerConfig {
    /// Its name, referenced by endpoints.
    pub name: String,
    /// Its directory (issuer.pem, issuer.key, chain.pem, root.pem); relative to the data
    /// directory; default `ca/<name>`.
    pub dir: Option<PathBuf>,
    /// Create a root and intermediate on first start if the directory has none.
    pub create_if_missing: bool,
    /// Key type when creating.
    pub key_type: KeyType,
    /// Common name stem when creating.
    pub common_name: String,
    /// A file whose first line is the key passphrase.
    pub key_passphrase_file: Option<PathBuf>,
    /// An environment variable holding the key passphrase.
    pub key_passphrase_env: Option<String>,
}

impl Default for IssuerConfig {
    fn default() -> Self {
        Self {
            name: "default".into(),
            dir: None,
            create_if_missing: true,
            key_type: KeyType::P256,
            common_name: "certgate".into(),
            key_passphrase_file: None,
            key_passphrase_env: None,
        }
    }
}

impl IssuerConfig {
    /// The issuer's directory.
    pub fn dir_in(&self, data_dir: &Path) -> PathBuf {
        match &self.dir {
            Some(dir) if dir.is_absolute() => dir.clone(),
            Some(dir) => data_dir.join(dir),
            None => data_dir.join("ca").join(&self.name),
        }
    }
}

/// A certificate profile.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    /// Its name.
    pub name: String,
    /// `tls-server`, `tls-client` or `device`.
    pub usage: Usage,
    /// Validity when a request names none.
    #[serde(default)]
    pub default_validity_days: u32,
    /// The longest validity allowed.
    #[serde(default)]
    pub max_validity_days: u32,
    /// Validity in minutes instead of `default_validity_days`, for short-lived certificates
    /// (workload identities, soak tests of the retention sweep).
    #[serde(default)]
    pub default_validity_minutes: Option<u32>,
    /// The longest validity in minutes, instead of `max_validity_days`.
    #[serde(default)]
    pub max_validity_minutes: Option<u32>,
}

/// A protocol endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// `acme`, `est` or `scep`.
    pub protocol: Protocol,
    /// Its name (URL segment).
    pub name: String,
    /// The issuer that signs for it.
    #[serde(default = "default_name")]
    pub issuer: String,
    /// Offered profiles; the first is the default.
    #[serde(default = "default_profiles")]
    pub profiles: Vec<String>,
    /// Labels recorded on every certificate it issues.
    #[serde(default)]
    pub owner_labels: BTreeMap<String, String>,
    /// Key policy.
    #[serde(default)]
    pub keys: KeyPolicy,
    /// Name policy.
    #[serde(default)]
    pub names: NamePolicy,
    /// ACME settings (only for `protocol = "acme"`).
    #[serde(default)]
    pub acme: Option<AcmeSettings>,
    /// EST settings (only for `protocol = "est"`).
    #[serde(default)]
    pub est: Option<EstSettings>,
    /// SCEP settings (only for `protocol = "scep"`).
    #[serde(default)]
    pub scep: Option<ScepSettings>,
}

/// An ACME endpoint's protocol settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AcmeSettings {
    /// `meta.termsOfService`; when set, accounts must agree to it.
    pub terms_of_service: Option<String>,
    /// `meta.website`.
    pub website: Option<String>,
    /// `meta.caaIdentities`: the issuer domain names CAA records name this CA by.
    pub caa_identities: Vec<String>,
    /// Check CAA before validating (off by default: private zones rarely publish CAA).
    pub caa: bool,
    /// Require external account binding (keys from `certgate acme eab create`).
    pub external_account_required: bool,
    /// Hours an order may stay unfinalized.
    pub order_lifetime_hours: u32,
    /// Seconds an order may stay unfinalized, overriding `order_lifetime_hours` (short-lived
    /// orders for soak tests, where the sweeper must be seen to keep the store bounded).
    pub order_lifetime_seconds: Option<u32>,
    /// Hours a pending authorization waits.
    pub pending_authorization_hours: u32,
    /// Days a valid authorization is reused.
    pub valid_authorization_days: u32,
    /// Reuse an account's valid authorizations.
    pub reuse_authorizations: bool,
    /// Port http-01 validation connects to.
    pub http01_port: u16,
    /// Port tls-alpn-01 validation connects to.
    pub tls_alpn01_port: u16,
    /// DNS servers for dns-01 and CAA (`ip:port`); the system's when empty.
    pub dns_nameservers: Vec<SocketAddr>,
    /// Seconds one validation may take.
    pub validation_timeout_seconds: u64,
    /// Validations run at once.
    pub validation_workers: usize,
    /// Challenge validations that may wait for a worker; beyond it a challenge POST answers
    /// rateLimited with Retry-After and the challenge stays pending.
    pub validation_queue: usize,
    /// Networks challenge validation may connect to although the default address policy
    /// denies them (link-local and cloud metadata addresses, multicast, unspecified).
    pub validation_allow: Vec<certgate_core::IpNet>,
    /// Networks challenge validation never connects to (wins over `validation_allow`).
    pub validation_deny: Vec<certgate_core::IpNet>,
    /// Milliseconds finalize waits for issuance before answering `processing`.
    pub finalize_wait_ms: u64,
    /// Benchmarks only: every challenge passes without validation.
    pub danger_always_valid: bool,
    /// Rate limits (all off unless set).
    pub rate_limits: RateLimitSettings,
}

impl Default for AcmeSettings {
    fn default() -> Self {
        Self {
            terms_of_service: None,
            website: None,
            caa_identities: Vec::new(),
            caa: false,
            external_account_required: false,
            order_lifetime_hours: 24,
            order_lifetime_seconds: None,
            pending_authorization_hours: 24,
            valid_authorization_days: 7,
            reuse_authorizations: true,
            http01_port: 80,
            tls_alpn01_port: 443,
            dns_nameservers: Vec::new(),
            validation_timeout_seconds: 10,
            validation_workers: 32,
            validation_queue: 1024,
            validation_allow: Vec::new(),
            validation_deny: Vec::new(),
            finalize_wait_ms: 5000,
            danger_always_valid: false,
            rate_limits: RateLimitSettings::default(),
        }
    }
}

/// ACME rate limits over a window.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    /// The window, seconds.
    pub window_seconds: u64,
    /// New accounts per client address per window (0: no limit).
    pub new_accounts_per_ip: u32,
    /// New orders per account per window (0: no limit).
    pub new_orders_per_account: u32,
    /// New orders per client address per window (0: no limit).
    pub new_orders_per_ip: u32,
    /// New (pending) authorizations per account per window (0: no limit).
    pub pending_authorizations_per_account: u32,
    /// New (pending) authorizations per client address per window (0: no limit).
    pub pending_authorizations_per_ip: u32,
    /// Failed validations per account per window (0: no limit).
    pub failed_validations_per_account: u32,
    /// Failed validations per account and identifier per window (0: no limit).
    pub failed_validations_per_identifier: u32,
    /// Failed validations per client address per window (0: no limit).
    pub failed_validations_per_ip: u32,
}

impl Default for RateLimitSettings {
    /// The ACME crate's defaults (documented there and in protocols/acme/README.md).
    fn default() -> Self {
        let limits = certgate_acme::RateLimits::default();
        let count = |limit: Option<u32>| limit.unwrap_or(0);
        Self {
            window_seconds: limits.window.whole_seconds().unsigned_abs(),
            new_accounts_per_ip: count(limits.new_accounts_per_ip),
            new_orders_per_account: count(limits.new_orders_per_account),
            new_orders_per_ip: count(limits.new_orders_per_ip),
            pending_authorizations_per_account: count(limits.pending_authorizations_per_account),
            pending_authorizations_per_ip: count(limits.pending_authorizations_per_ip),
            failed_validations_per_account: count(limits.failed_validations_per_account),
            failed_validations_per_identifier: count(limits.failed_validations_per_identifier),
            failed_validations_per_ip: count(limits.failed_validations_per_ip),
        }
    }
}

impl RateLimitSettings {
    /// The ACME crate's limits.
    fn to_limits(&self) -> certgate_acme::RateLimits {
        let limit = |count: u32| (count > 0).then_some(count);
        certgate_acme::RateLimits {
            window: time::Duration::seconds(self.window_seconds.try_into().unwrap_or(i64::MAX)),
            new_accounts_per_ip: limit(self.new_accounts_per_ip),
            new_orders_per_account: limit(self.new_orders_per_account),
            new_orders_per_ip: limit(self.new_orders_per_ip),
            pending_authorizations_per_account: limit(self.pending_authorizations_per_account),
            pending_authorizations_per_ip: limit(self.pending_authorizations_per_ip),
            failed_validations_per_account: limit(self.failed_validations_per_account),
            failed_validations_per_identifier: limit(self.failed_validations_per_identifier),
            failed_validations_per_ip: limit(self.failed_validations_per_ip),
        }
    }
}

impl AcmeSettings {
    /// The ACME crate's configuration for endpoint `name`.
    pub fn to_endpoint_config(&self, name: Name) -> certgate_acme::AcmeEndpointConfig {
        let mut config = certgate_acme::AcmeEndpointConfig::new(name);
        config.terms_of_service = self.terms_of_service.clone();
        config.website = self.website.clone();
        config.caa_identities = self.caa_identities.clone();
        config.caa_enabled = self.caa;
        config.external_account_required = self.external_account_required;
        config.order_lifetime = match self.order_lifetime_seconds {
            Some(seconds) => time::Duration::seconds(seconds.max(60).into()),
            None => time::Duration::hours(self.order_lifetime_hours.into()),
        };
        config.pending_authz_lifetime = time::Duration::hours(self.pending_authorization_hours.into());
        config.valid_authz_lifetime = time::Duration::days(self.valid_authorization_days.into());
        config.reuse_authorizations = self.reuse_authorizations;
        config.validation.http_port = self.http01_port;
        config.validation.tls_alpn_port = self.tls_alpn01_port;
        config.validation.dns_nameservers = self.dns_nameservers.clone();
        config.validation.timeout = std::time::Duration::from_secs(self.validation_timeout_seconds);
        config.validation_workers = self.validation_workers;
        config.validation_queue = self.validation_queue;
        config.validation.address_policy =
            certgate_acme::AddressPolicy::new(self.validation_allow.clone(), self.validation_deny.clone());
        config.finalize_wait = std::time::Duration::from_millis(self.finalize_wait_ms);
        config.danger_always_valid = self.danger_always_valid;
        config.rate_limits = self.rate_limits.to_limits();
        config
    }
}

/// The embedded default ACME endpoint: `/acme/default/directory`, TLS server certificates
/// from the default issuer, any name.
pub fn default_acme_endpoint() -> EndpointConfig {
    EndpointConfig {
        protocol: Protocol::Acme,
        name: "default".into(),
        issuer: default_name(),
        profiles: default_profiles(),
        owner_labels: BTreeMap::new(),
        keys: KeyPolicy::default(),
        names: NamePolicy::default(),
        acme: None,
        est: None,
        scep: None,
    }
}

/// The embedded default SCEP endpoint: `http://<http listener>/scep/default` (and
/// `/cgi-bin/pkiclient.exe`), one-time challenges (`certgate scep challenge create`), device
/// certificates from the default issuer.
pub fn default_scep_endpoint() -> EndpointConfig {
    EndpointConfig {
        protocol: Protocol::Scep,
        name: "default".into(),
        issuer: default_name(),
        profiles: vec!["device".into()],
        owner_labels: BTreeMap::new(),
        keys: KeyPolicy::default(),
        names: NamePolicy::default(),
        acme: None,
        est: None,
        scep: None,
    }
}

/// The embedded default EST endpoint: `/.well-known/est/<op>` on the HTTPS listener, HTTP
/// Basic users (`certgate est user add --endpoint default`), device certificates from the
/// default issuer.
pub fn default_est_endpoint() -> EndpointConfig {
    EndpointConfig {
        protocol: Protocol::Est,
        name: "default".into(),
        issuer: default_name(),
        profiles: vec!["device".into()],
        owner_labels: BTreeMap::new(),
        keys: KeyPolicy::default(),
        names: NamePolicy::default(),
        acme: None,
        est: None,
        scep: None,
    }
}

fn default_name() -> String {
    "default".into()
}

fn default_profiles() -> Vec<String> {
    vec!["tls-server".into()]
}

/// A configuration problem, with where it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Error.
        source: std::io::Error,
    },
    /// The TOML is invalid or has unknown or mistyped fields.
    #[error("{path}: {message}")]
    Parse {
        /// File.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The values are inconsistent.
    #[error("{0}")]
    Invalid(String),
}

/// A configuration whose names and references were checked.
#[derive(Debug, Clone)]
pub struct CheckedConfig {
    /// The configuration as written.
    pub config: Config,
    /// Profiles: built-ins overridden by configured ones.
    pub profiles: Vec<Profile>,
    /// Endpoint policies.
    pub endpoints: Vec<EndpointPolicy>,
    /// EST endpoints' protocol settings (trust anchors read).
    pub est: Vec<certgate_est::EstEndpointConfig>,
    /// SCEP endpoints' settings (challenges read; RA keys are loaded at start).
    pub scep: Vec<CheckedScep>,
}

impl Config {
    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses TOML text; `path` is only for messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        })
    }

    fn check_lifecycle(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let lifecycle = &self.lifecycle;
        if !(1..=99).contains(&lifecycle.renewal_window_percent) {
            return invalid("lifecycle.renewal_window_percent must be between 1 and 99".into());
        }
        if lifecycle.scan_interval_seconds == 0 || self.retention.sweep_interval_seconds == 0 {
            return invalid(
                "lifecycle.scan_interval_seconds and retention.sweep_interval_seconds must be positive".into(),
            );
        }
        if !(16..=1_048_576).contains(&self.store.cache_mib) {
            return invalid("store.cache_mib must be between 16 and 1048576".into());
        }
        if self.retention.audit_entries_in_store == 0 {
            return invalid("retention.audit_entries_in_store must be positive (the newest entry stays)".into());
        }
        let mut names = Vec::new();
        for hook in &lifecycle.webhooks {
            let id = format!("webhook {:?}", hook.name);
            if hook.name.is_empty() || names.contains(&hook.name) {
                return invalid(format!("{id}: names must be unique and not empty"));
            }
            names.push(hook.name.clone());
            if !(hook.url.starts_with("http://") || hook.url.starts_with("https://")) {
                return invalid(format!("{id}: url must be http:// or https://"));
            }
            if hook.secret_file.is_some() == hook.secret_env.is_some() {
                return invalid(format!("{id}: give exactly one of secret_file and secret_env"));
            }
            if let Some(kind) = hook
                .events
                .iter()
                .find(|e| !matches!(e.as_str(), "renewal_due" | "expiring" | "deployment"))
            {
                return invalid(format!(
                    "{id}: unknown event {kind:?} (renewal_due, expiring, deployment)"
                ));
            }
        }
        for target in &lifecycle.deployment.targets {
            let ok = target
                .address
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
            if !ok {
                return invalid(format!("deployment target {:?}: expected host:port", target.address));
            }
        }
        for fingerprint in &self.admin.client_certificate_sha256 {
            if fingerprint.len() != 64 || !fingerprint.chars().all(|c| c.is_ascii_hexdigit()) {
                return invalid(format!(
                    "admin.client_certificate_sha256 {fingerprint:?}: expected 64 hex digits"
                ));
            }
        }
        Ok(())
    }

    /// Checks names and cross-references (every endpoint's issuer and profiles exist, names
    /// are unique, TLS files come in pairs).
    pub fn check(self) -> Result<CheckedConfig, ConfigError> {
        let invalid = |m: String| ConfigError::Invalid(m);
        let name = |kind: &str, s: &str| Name::new(s).map_err(|e| invalid(format!("{kind}: {e}")));

        let mut issuer_names = Vec::new();
        for issuer in &self.issuers {
            let n = name("issuer", &issuer.name)?;
            if issuer_names.contains(&n) {
                return Err(invalid(format!("issuer {n} is defined twice")));
            }
            if issuer.key_passphrase_file.is_some() && issuer.key_passphrase_env.is_some() {
                return Err(invalid(format!(
                    "issuer {n}: give key_passphrase_file or key_passphrase_env, not both"
                )));
            }
            issuer_names.push(n);
        }
        if self.issuers.is_empty() {
            return Err(invalid("at least one issuer is required".into()));
        }
        self.listeners.check().map_err(invalid)?;
        if self.metrics.token_file.is_some() && self.metrics.token_env.is_some() {
            return Err(invalid("metrics: give token_file or token_env, not both".into()));
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err(invalid("tls: cert_file and key_file go together".into()));
        }
        if self.tls.cert_file.is_none() {
            if !issuer_names.contains(&name("tls.issuer", &self.tls.issuer)?) {
                return Err(invalid(format!("tls: unknown issuer {}", self.tls.issuer)));
            }
            if self.tls.names.is_empty() || !(1..=398).contains(&self.tls.validity_days) {
                return Err(invalid(
                    "tls: the self-issued certificate needs names and a validity of 1 to 398 days".into(),
                ));
            }
        }
        if let Some(url) = &self.public_base_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid(format!(
                "public_base_url {url:?} must start with http:// or https://"
            )));
        }

        let mut profiles = Profile::builtin();
        for configured in &self.profiles {
            let profile = Profile {
                name: name("profile", &configured.name)?,
                usage: configured.usage,
                default_validity: match configured.default_validity_minutes {
                    Some(minutes) => time::Duration::minutes(minutes.into()),
                    None => time::Duration::days(configured.default_validity_days.into()),
                },
                max_validity: match configured.max_validity_minutes {
                    Some(minutes) => time::Duration::minutes(minutes.into()),
                    None => time::Duration::days(configured.max_validity_days.into()),
                },
            };
            if configured.max_validity_days > 36_500 || profile.max_validity > time::Duration::days(36_500) {
                return Err(invalid(format!(
                    "profile {}: max_validity_days is at most 36500",
                    profile.name
                )));
            }
            if profile.default_validity.is_zero() || profile.default_validity > profile.max_validity {
                return Err(invalid(format!(
                    "profile {}: default_validity_days must be between 1 and max_validity_days",
                    profile.name
                )));
            }
            profiles.retain(|p| p.name != profile.name);
            profiles.push(profile);
        }

        let mut endpoints: Vec<EndpointPolicy> = Vec::new();
        let mut est = Vec::new();
        let mut scep = Vec::new();
        for configured in &self.endpoints {
            let endpoint = EndpointPolicy {
                protocol: configured.protocol,
                name: name("endpoint", &configured.name)?,
                issuer: name("endpoint issuer", &configured.issuer)?,
                profiles: configured
                    .profiles
                    .iter()
                    .map(|p| name("endpoint profile", p))
                    .collect::<Result<_, _>>()?,
                keys: configured.keys.clone(),
                names: configured.names.clone(),
                owner_labels: configured.owner_labels.clone(),
            };
            let id = format!("{} endpoint {}", endpoint.protocol, endpoint.name);
            if endpoint.protocol == Protocol::Admin {
                return Err(invalid(format!("{id}: protocol must be acme, est or scep")));
            }
            if !issuer_names.contains(&endpoint.issuer) {
                return Err(invalid(format!("{id}: unknown issuer {}", endpoint.issuer)));
            }
            if endpoint.profiles.is_empty() {
                return Err(invalid(format!("{id}: names no profile")));
            }
            if let Some(p) = endpoint
                .profiles
                .iter()
                .find(|p| !profiles.iter().any(|q| &q.name == *p))
            {
                return Err(invalid(format!("{id}: unknown profile {p}")));
            }
            if endpoints
                .iter()
                .any(|e| e.protocol == endpoint.protocol && e.name == endpoint.name)
            {
                return Err(invalid(format!("{id} is defined twice")));
            }
            if configured.scep.is_some() && endpoint.protocol != Protocol::Scep {
                return Err(invalid(format!("{id}: [scep] settings belong to SCEP endpoints only")));
            }
            if endpoint.protocol == Protocol::Scep {
                scep.push(CheckedScep::check(
                    endpoint.name.clone(),
                    endpoint.issuer.clone(),
                    configured.scep.clone().unwrap_or_default(),
                    &issuer_names,
                )?);
            }
            if configured.est.is_some() && endpoint.protocol != Protocol::Est {
                return Err(invalid(format!("{id}: [est] settings belong to EST endpoints only")));
            }
            if configured.acme.is_some() && endpoint.protocol != Protocol::Acme {
                return Err(invalid(format!("{id}: [acme] settings belong to ACME endpoints only")));
            }
            if let Some(acme) = &configured.acme
                && !((1..=8760).contains(&acme.order_lifetime_hours)
                    && (1..=8760).contains(&acme.pending_authorization_hours)
                    && (1..=398).contains(&acme.valid_authorization_days)
                    && (1..=1024).contains(&acme.validation_workers)
                    && (1..=1_000_000).contains(&acme.validation_queue)
                    && (1..=300).contains(&acme.validation_timeout_seconds)
                    && (1..=604_800).contains(&acme.rate_limits.window_seconds)
                    && acme.finalize_wait_ms <= 60_000)
            {
                return Err(invalid(format!(
                    "{id}: acme settings out of range: order_lifetime_hours and pending_authorization_hours \
                     1..=8760, valid_authorization_days 1..=398, validation_workers 1..=1024, validation_queue 1..=1000000, \
                     validation_timeout_seconds 1..=300, rate_limits.window_seconds 1..=604800, \
                     finalize_wait_ms <= 60000"
                )));
            }
            if endpoint.protocol == Protocol::Est {
                est.push(
                    configured
                        .est
                        .clone()
                        .unwrap_or_default()
                        .to_endpoint_config(endpoint.name.clone())?,
                );
            }
            if endpoint.keys.min_rsa_bits < 2048 {
                return Err(invalid(format!("{id}: keys.min_rsa_bits must be at least 2048")));
            }
            endpoints.push(endpoint);
        }
        check_renewal_sources(&endpoints, &est, &scep)?;
        self.check_lifecycle()?;
        Ok(CheckedConfig {
            config: self,
            profiles,
            endpoints,
            est,
            scep,
        })
    }
}

/// Each endpoint named in a `renewal_from_endpoints` must be configured, and another endpoint:
/// a typo would otherwise silently renew nothing.
fn check_renewal_sources(
    endpoints: &[EndpointPolicy],
    est: &[certgate_est::EstEndpointConfig],
    scep: &[CheckedScep],
) -> Result<(), ConfigError> {
    let lists = est
        .iter()
        .map(|e| (Protocol::Est, &e.name, &e.renewal_from_endpoints))
        .chain(
            scep.iter()
                .map(|s| (Protocol::Scep, &s.name, &s.settings.renewal_from_endpoints)),
        );
    for (protocol, name, sources) in lists {
        for source in sources {
            let known = endpoints
                .iter()
                .any(|e| e.protocol == source.protocol && e.name == source.name);
            if !known || (source.protocol == protocol && &source.name == name) {
                return Err(ConfigError::Invalid(format!(
                    "{protocol} endpoint {name}: renewal_from_endpoints: {source} is not another configured endpoint"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<CheckedConfig, ConfigError> {
        Config::parse(text, Path::new("test.toml"))?.check()
    }

    #[test]
    fn embedded_defaults_are_valid() {
        let checked = Config::default().check().unwrap();
        assert_eq!(checked.profiles.len(), 3);
        assert_eq!(
            check("").unwrap().config,
            Config::default(),
            "an empty file means the defaults"
        );
    }

    #[test]
    fn bad_configs() {
        let cases = [
            ("unknown_top_level_field", "colour = \"blue\""),
            ("unknown_nested_field", "[log]\nfmt = \"json\""),
            ("bad_log_format", "[log]\nformat = \"xml\""),
            ("bad_listen_address", "[listeners]\nhttps = \"nowhere\""),
            ("zero_header_timeout", "[listeners]\nheader_read_timeout_seconds = 0"),
            (
                "header_buffer_below_hyper_minimum",
                "[listeners]\nmax_header_bytes = 1024",
            ),
            ("no_connections", "[listeners]\nmax_connections = 0"),
            ("no_http2_streams", "[listeners]\nhttp2_max_concurrent_streams = 0"),
            ("unknown_listener_field", "[listeners]\nkeepalive = 5"),
            ("bad_metrics_network", "[metrics]\nallow_networks = [\"everywhere\"]"),
            ("two_metrics_tokens", "[metrics]\ntoken_file = \"t\"\ntoken_env = \"T\""),
            ("bad_key_type", "[[issuers]]\nname = \"a\"\nkey_type = \"dsa\""),
            (
                "duplicate_issuer",
                "[[issuers]]\nname = \"a\"\n[[issuers]]\nname = \"a\"",
            ),
            ("no_issuers", "issuers = []"),
            ("tls_cert_without_key", "[tls]\ncert_file = \"x.pem\""),
            ("tls_unknown_issuer", "[tls]\nissuer = \"other\""),
            ("tls_validity_too_long", "[tls]\nvalidity_days = 4000"),
            (
                "endpoint_unknown_issuer",
                "[[endpoints]]\nprotocol = \"acme\"\nname = \"a\"\nissuer = \"other\"",
            ),
            (
                "endpoint_unknown_profile",
                "[[endpoints]]\nprotocol = \"acme\"\nname = \"a\"\nprofiles = [\"nope\"]",
            ),
            (
                "endpoint_bad_protocol",
                "[[endpoints]]\nprotocol = \"ftp\"\nname = \"a\"",
            ),
            (
                "endpoint_admin_protocol",
                "[[endpoints]]\nprotocol = \"admin\"\nname = \"a\"",
            ),
            (
                "endpoint_bad_name",
                "[[endpoints]]\nprotocol = \"acme\"\nname = \"A B\"",
            ),
            (
                "endpoint_twice",
                "[[endpoints]]\nprotocol = \"est\"\nname = \"a\"\n[[endpoints]]\nprotocol = \"est\"\nname = \"a\"",
            ),
            (
                "weak_rsa_minimum",
                "[[endpoints]]\nprotocol = \"acme\"\nname = \"a\"\n[endpoints.keys]\nmin_rsa_bits = 1024",
            ),
            (
                "bad_cidr",
                "[[endpoints]]\nprotocol = \"acme\"\nname = \"a\"\n[endpoints.names]\nallowed_ip_ranges = [\"10.0.0.1/8\"]",
            ),
            (
                "profile_default_over_max",
                "[[profiles]]\nname = \"p\"\nusage = \"device\"\ndefault_validity_days = 30\nmax_validity_days = 10",
            ),
            ("bad_base_url", "public_base_url = \"ftp://x\""),
            (
                "acme_settings_on_est",
                "[[endpoints]]\nprotocol = \"est\"\nname = \"a\"\n[endpoints.acme]\ncaa = true",
            ),
            (
                "acme_order_lifetime_overflows",
                "[[endpoints]]\nprotocol = \"acme\"\nname = \"a\"\n[endpoints.acme]\norder_lifetime_hours = 4294967295",
            ),
            (
                "acme_zero_authorization_reuse",
                "[[endpoints]]\nprotocol = \"acme\"\nname = \"a\"\n[endpoints.acme]\nvalid_authorization_days = 0",
            ),
            (
                "acme_unknown_setting",
                "[[endpoints]]\nprotocol = \"acme\"\nname = \"a\"\n[endpoints.acme]\nhttp_port = 80",
            ),
            (
                "est_settings_on_acme",
                "[[endpoints]]\nprotocol = \"acme\"\nname = \"a\"\n[endpoints.est]\nchannel_binding = true",
            ),
            (
                "est_unknown_setting",
                "[[endpoints]]\nprotocol = \"est\"\nname = \"a\"\n[endpoints.est]\nbinding = true",
            ),
            (
                "est_bad_auth",
                "[[endpoints]]\nprotocol = \"est\"\nname = \"a\"\n[endpoints.est]\nauth = \"kerberos\"",
            ),
            (
                "est_certificate_auth_without_anchors",
                "[[endpoints]]\nprotocol = \"est\"\nname = \"a\"\n[endpoints.est]\nauth = \"certificate\"",
            ),
            (
                "est_missing_anchor_file",
                "[[endpoints]]\nprotocol = \"est\"\nname = \"a\"\n[endpoints.est]\nauth = \"either\"\ntrust_anchors = [\"/nonexistent/ca.pem\"]",
            ),
            (
                "est_bad_keygen_type",
                "[[endpoints]]\nprotocol = \"est\"\nname = \"a\"\n[endpoints.est]\nserver_keygen = \"dsa\"",
            ),
            (
                "est_keygen_with_approval",
                "[[endpoints]]\nprotocol = \"est\"\nname = \"a\"\n[endpoints.est]\nserver_keygen = \"p256\"\nrequire_approval = true",
            ),
            (
                "est_bad_extension_oid",
                "[[endpoints]]\nprotocol = \"est\"\nname = \"a\"\n[endpoints.est.csr_attrs]\nextensions = [\"subjectAltName\"]",
            ),
            (
                "est_realm_with_quote",
                "[[endpoints]]\nprotocol = \"est\"\nname = \"a\"\n[endpoints.est]\nrealm = \"a\\\"b\"",
            ),
            (
                "est_zero_in_flight",
                "[[endpoints]]\nprotocol = \"est\"\nname = \"a\"\n[endpoints.est]\nmax_in_flight = 0",
            ),
            (
                "est_password_limit_zero",
                "[[endpoints]]\nprotocol = \"est\"\nname = \"a\"\n[endpoints.est.password_limits]\nfailure_burst = 0",
            ),
            ("store_cache_too_small", "[store]\ncache_mib = 1"),
            ("audit_entries_in_store_zero", "[retention]\naudit_entries_in_store = 0"),
            (
                "absurd_validity",
                "[[profiles]]\nname = \"p\"\nusage = \"device\"\ndefault_validity_days = 30\nmax_validity_days = 4000000000",
            ),
        ];
        for (case, text) in cases {
            assert!(check(text).is_err(), "case {case} should be refused");
        }
    }

    #[test]
    fn renewal_sources_must_be_other_configured_endpoints() {
        let config = |scep_sources: &str| {
            format!(
                "[[endpoints]]\nprotocol = \"est\"\nname = \"factory\"\nprofiles = [\"device\"]\n\
                 [endpoints.est]\nrenewal_from_endpoints = [\"scep:devices\"]\n\
                 [[endpoints]]\nprotocol = \"scep\"\nname = \"devices\"\nprofiles = [\"device\"]\n\
                 [endpoints.scep]\nrenewal_from_endpoints = [{scep_sources}]"
            )
        };
        let checked = check(&config("\"est:factory\"")).unwrap();
        let est_factory: certgate_authority::EndpointRef = "est:factory".parse().unwrap();
        let scep_devices: certgate_authority::EndpointRef = "scep:devices".parse().unwrap();
        assert_eq!(checked.scep[0].settings.renewal_from_endpoints, [est_factory]);
        assert_eq!(checked.est[0].renewal_from_endpoints, [scep_devices]);
        for bad in ["\"est:nosuch\"", "\"scep:devices\"", "\"acme:factory\"", "\"factory\""] {
            assert!(check(&config(bad)).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn est_settings_map_to_the_est_crate() {
        let text = "[[endpoints]]\nprotocol = \"est\"\nname = \"labs\"\nprofiles = [\"device\"]\n\
                    [endpoints.est]\nauth = \"both\"\nrealm = \"lab devices\"\nchannel_binding = true\n\
                    server_keygen = \"rsa3072\"\nbase64 = \"single-line\"\nmax_in_flight = 8\n\
                    [endpoints.est.csr_attrs]\nkey = \"p384\"\nextensions = [\"2.5.29.17\"]\nenforce = true";
        let checked = check(text).unwrap();
        let [est] = checked.est.as_slice() else {
            panic!("one EST endpoint: {:?}", checked.est)
        };
        assert_eq!(est.name.as_str(), "labs");
        assert_eq!(est.auth, certgate_est::ClientAuth::Both);
        assert_eq!(est.realm, "lab devices");
        assert!(est.channel_binding);
        assert_eq!(est.server_keygen, Some(certgate_core::KeyKind::Rsa(3072)));
        assert_eq!(est.base64, certgate_est::Base64Layout::SingleLine);
        assert_eq!(est.max_in_flight, 8);
        assert_eq!(est.csr_attrs.key, Some(certgate_core::KeyKind::EcP384));
        assert_eq!(est.csr_attrs.extensions.len(), 1);
        assert!(est.csr_attrs.enforce);
        // The embedded defaults serve one EST endpoint, `default`, with HTTP Basic.
        let defaults = Config::default().check().unwrap();
        assert_eq!(defaults.est.len(), 1);
        assert_eq!(defaults.est[0].name.as_str(), certgate_est::DEFAULT_ENDPOINT);
        assert_eq!(defaults.est[0].auth, certgate_est::ClientAuth::Basic);
    }

    #[test]
    fn same_endpoint_name_in_different_protocols_is_fine() {
        let text = "[[endpoints]]\nprotocol = \"acme\"\nname = \"default\"\n[[endpoints]]\nprotocol = \"est\"\nname = \"default\"\nprofiles = [\"device\"]";
        assert_eq!(check(text).unwrap().endpoints.len(), 2);
    }
}
