//! The configuration file (TOML). Every field is documented, defaulted or required, and
//! unknown fields are errors. With no file, [`Config::default`] is the embedded default.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use certgate_authority::{EndpointPolicy, KeyPolicy, NamePolicy, Profile};
use certgate_core::{Name, Protocol};
use certgate_signer::{KeyType, Usage};
use serde::Deserialize;

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
            endpoints: vec![default_acme_endpoint()],
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

/// Listening sockets. Port 0 picks a free port (the bound address is printed at start).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerConfig {
    /// HTTPS (ACME, EST, health); None disables it.
    pub https: Option<SocketAddr>,
    /// Plain HTTP (SCEP, CRL, OCSP, CA certificates, health); None disables it.
    pub http: Option<SocketAddr>,
    /// Seconds to let in-flight requests finish after SIGTERM.
    pub shutdown_grace_seconds: u64,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            https: Some(SocketAddr::from(([127, 0, 0, 1], 8443))),
            http: Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
            shutdown_grace_seconds: 30,
        }
    }
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
    pub default_validity_days: u32,
    /// The longest validity allowed.
    pub max_validity_days: u32,
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
            pending_authorization_hours: 24,
            valid_authorization_days: 7,
            reuse_authorizations: true,
            http01_port: 80,
            tls_alpn01_port: 443,
            dns_nameservers: Vec::new(),
            validation_timeout_seconds: 10,
            validation_workers: 32,
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
    /// New accounts per client address per window.
    pub new_accounts_per_ip: Option<u32>,
    /// New orders per account per window.
    pub new_orders_per_account: Option<u32>,
    /// New orders per client address per window.
    pub new_orders_per_ip: Option<u32>,
    /// New (pending) authorizations per account per window.
    pub pending_authorizations_per_account: Option<u32>,
    /// New (pending) authorizations per client address per window.
    pub pending_authorizations_per_ip: Option<u32>,
    /// Failed validations per account per window.
    pub failed_validations_per_account: Option<u32>,
    /// Failed validations per client address per window.
    pub failed_validations_per_ip: Option<u32>,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            window_seconds: 3600,
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

impl AcmeSettings {
    /// The ACME crate's configuration for endpoint `name`.
    pub fn to_endpoint_config(&self, name: Name) -> certgate_acme::AcmeEndpointConfig {
        let mut config = certgate_acme::AcmeEndpointConfig::new(name);
        config.terms_of_service = self.terms_of_service.clone();
        config.website = self.website.clone();
        config.caa_identities = self.caa_identities.clone();
        config.caa_enabled = self.caa;
        config.external_account_required = self.external_account_required;
        config.order_lifetime = time::Duration::hours(self.order_lifetime_hours.into());
        config.pending_authz_lifetime = time::Duration::hours(self.pending_authorization_hours.into());
        config.valid_authz_lifetime = time::Duration::days(self.valid_authorization_days.into());
        config.reuse_authorizations = self.reuse_authorizations;
        config.validation.http_port = self.http01_port;
        config.validation.tls_alpn_port = self.tls_alpn01_port;
        config.validation.dns_nameservers = self.dns_nameservers.clone();
        config.validation.timeout = std::time::Duration::from_secs(self.validation_timeout_seconds);
        config.validation_workers = self.validation_workers;
        config.finalize_wait = std::time::Duration::from_millis(self.finalize_wait_ms);
        config.danger_always_valid = self.danger_always_valid;
        let limits = &self.rate_limits;
        config.rate_limits = certgate_acme::RateLimits {
            window: time::Duration::seconds(limits.window_seconds.try_into().unwrap_or(i64::MAX)),
            new_accounts_per_ip: limits.new_accounts_per_ip,
            new_orders_per_account: limits.new_orders_per_account,
            new_orders_per_ip: limits.new_orders_per_ip,
            pending_authorizations_per_account: limits.pending_authorizations_per_account,
            pending_authorizations_per_ip: limits.pending_authorizations_per_ip,
            failed_validations_per_account: limits.failed_validations_per_account,
            failed_validations_per_ip: limits.failed_validations_per_ip,
        };
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
                default_validity: time::Duration::days(configured.default_validity_days.into()),
                max_validity: time::Duration::days(configured.max_validity_days.into()),
            };
            if configured.max_validity_days > 36_500 {
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
            if configured.acme.is_some() && endpoint.protocol != Protocol::Acme {
                return Err(invalid(format!("{id}: [acme] settings belong to ACME endpoints only")));
            }
            if let Some(acme) = &configured.acme
                && !((1..=8760).contains(&acme.order_lifetime_hours)
                    && (1..=8760).contains(&acme.pending_authorization_hours)
                    && (1..=398).contains(&acme.valid_authorization_days)
                    && (1..=1024).contains(&acme.validation_workers)
                    && (1..=300).contains(&acme.validation_timeout_seconds)
                    && (1..=604_800).contains(&acme.rate_limits.window_seconds)
                    && acme.finalize_wait_ms <= 60_000)
            {
                return Err(invalid(format!(
                    "{id}: acme settings out of range: order_lifetime_hours and pending_authorization_hours \
                     1..=8760, valid_authorization_days 1..=398, validation_workers 1..=1024, \
                     validation_timeout_seconds 1..=300, rate_limits.window_seconds 1..=604800, \
                     finalize_wait_ms <= 60000"
                )));
            }
            if endpoint.keys.min_rsa_bits < 2048 {
                return Err(invalid(format!("{id}: keys.min_rsa_bits must be at least 2048")));
            }
            endpoints.push(endpoint);
        }
        Ok(CheckedConfig {
            config: self,
            profiles,
            endpoints,
        })
    }
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
                "absurd_validity",
                "[[profiles]]\nname = \"p\"\nusage = \"device\"\ndefault_validity_days = 30\nmax_validity_days = 4000000000",
            ),
        ];
        for (case, text) in cases {
            assert!(check(text).is_err(), "case {case} should be refused");
        }
    }

    #[test]
    fn same_endpoint_name_in_different_protocols_is_fine() {
        let text = "[[endpoints]]\nprotocol = \"acme\"\nname = \"default\"\n[[endpoints]]\nprotocol = \"est\"\nname = \"default\"\nprofiles = [\"device\"]";
        assert_eq!(check(text).unwrap().endpoints.len(), 2);
    }
}
