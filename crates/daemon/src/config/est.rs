//! `[endpoints.est]`: an EST endpoint's settings and their mapping to the EST crate.

use std::path::PathBuf;

use certgate_authority::EndpointRef;
use certgate_core::Name;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;

use super::ConfigError;

/// An EST endpoint's protocol settings (`[endpoints.est]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EstSettings {
    /// How clients authenticate for simpleenroll and serverkeygen: `basic` (users from
    /// `certgate est user add`), `certificate` (a TLS client certificate chaining to
    /// `trust_anchors`), `either` or `both`.
    pub auth: EstAuth,
    /// The HTTP Basic realm; "certgate EST <name>" when unset.
    pub realm: Option<String>,
    /// PEM files of the CAs whose certificates authenticate clients (e.g. a device maker's
    /// factory CA). Relative paths are relative to the working directory.
    pub trust_anchors: Vec<PathBuf>,
    /// Require RFC 9266 channel binding: the CSR's challengePassword must be the base64 of
    /// the connection's tls-exporter value.
    pub channel_binding: bool,
    /// What `/csrattrs` announces, and whether CSRs must carry it.
    pub csr_attrs: EstCsrAttrsSettings,
    /// Offer `/serverkeygen` with keys of this type (`p256`, `p384`, `p521`, `rsa2048`,
    /// `rsa3072`, `rsa4096`, `ed25519`); off when unset.
    pub server_keygen: Option<String>,
    /// Issue only after an operator approved (`certgate approvals approve`).
    pub require_approval: bool,
    /// `Retry-After` seconds while a request awaits approval.
    pub approval_retry_after_seconds: u32,
    /// Base64 layout of responses: `single-line` (default), `wrap64` or `wrap76`.
    pub base64: EstBase64,
    /// Issuances in flight at once; beyond it, 503 with Retry-After.
    pub max_in_flight: usize,
    /// How many HTTP Basic password checks one client address may cost.
    pub password_limits: EstPasswordLimits,
    /// Other endpoints (`protocol:name`, e.g. `scep:default`) whose certificates re-enroll
    /// here. Empty by default: a certificate re-enrolls only where it was issued.
    pub renewal_from_endpoints: Vec<EndpointRef>,
}

/// Password checks (Argon2id) per client address (`[endpoints.est.password_limits]`): beyond
/// them the client gets 429 with Retry-After before any check runs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EstPasswordLimits {
    /// Checks of one address running at once.
    pub concurrent_per_client: u32,
    /// Failed checks per minute, on average, once the burst is spent.
    pub failures_per_minute: u32,
    /// Failed checks in a row before the address is refused.
    pub failure_burst: u32,
    /// Client addresses remembered at once.
    pub max_clients: usize,
}

impl Default for EstPasswordLimits {
    /// The EST crate's defaults.
    fn default() -> Self {
        let limits = certgate_est::AuthLimitConfig::default();
        Self {
            concurrent_per_client: limits.concurrent_per_client,
            failures_per_minute: limits.failures_per_minute,
            failure_burst: limits.failure_burst,
            max_clients: limits.max_clients,
        }
    }
}

impl Default for EstSettings {
    fn default() -> Self {
        Self {
            auth: EstAuth::Basic,
            realm: None,
            trust_anchors: Vec::new(),
            channel_binding: false,
            csr_attrs: EstCsrAttrsSettings::default(),
            server_keygen: None,
            require_approval: false,
            approval_retry_after_seconds: 60,
            base64: EstBase64::SingleLine,
            max_in_flight: 64,
            password_limits: EstPasswordLimits::default(),
            renewal_from_endpoints: Vec::new(),
        }
    }
}

/// EST client authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EstAuth {
    /// HTTP Basic.
    #[default]
    Basic,
    /// A TLS client certificate.
    Certificate,
    /// Either.
    Either,
    /// Both.
    Both,
}

/// EST response base64 layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum EstBase64 {
    /// 64 columns, CRLF.
    Wrap64,
    /// 76 columns, CRLF.
    Wrap76,
    /// One line (the default: `certgate_est::Base64Layout` says why).
    #[default]
    SingleLine,
}

/// `[endpoints.est.csr_attrs]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct EstCsrAttrsSettings {
    /// Ask for challengePassword (implied by channel binding).
    pub challenge_password: bool,
    /// Ask for this key type (same names as `server_keygen`).
    pub key: Option<String>,
    /// Ask for these extensions (dotted OIDs) in an extensionRequest.
    pub extensions: Vec<String>,
    /// Refuse CSRs that lack any of them (400).
    pub enforce: bool,
}

/// Parses a key type name of the EST settings.
pub fn parse_key_kind(name: &str) -> Option<certgate_core::KeyKind> {
    use certgate_core::KeyKind;
    Some(match name {
        "p256" => KeyKind::EcP256,
        "p384" => KeyKind::EcP384,
        "p521" => KeyKind::EcP521,
        "rsa2048" => KeyKind::Rsa(2048),
        "rsa3072" => KeyKind::Rsa(3072),
        "rsa4096" => KeyKind::Rsa(4096),
        "ed25519" => KeyKind::Ed25519,
        _ => return None,
    })
}

impl EstSettings {
    /// The EST crate's configuration for endpoint `name`; reads the trust anchor files.
    pub fn to_endpoint_config(&self, name: Name) -> Result<certgate_est::EstEndpointConfig, ConfigError> {
        let id = format!("est endpoint {name}");
        let invalid = |m: String| ConfigError::Invalid(format!("{id}: {m}"));
        let key_kind = |field: &str, value: &str| {
            parse_key_kind(value).ok_or_else(|| {
                invalid(format!(
                    "{field} {value:?}: expected p256, p384, p521, rsa2048, rsa3072, rsa4096 or ed25519"
                ))
            })
        };
        let mut config = certgate_est::EstEndpointConfig::new(name);
        config.auth = match self.auth {
            EstAuth::Basic => certgate_est::ClientAuth::Basic,
            EstAuth::Certificate => certgate_est::ClientAuth::Certificate,
            EstAuth::Either => certgate_est::ClientAuth::Either,
            EstAuth::Both => certgate_est::ClientAuth::Both,
        };
        if let Some(realm) = &self.realm {
            if realm.contains(['"', '\\']) || realm.chars().any(char::is_control) {
                return Err(invalid("realm: no quotes, backslashes or control characters".into()));
            }
            config.realm = realm.clone();
        }
        for path in &self.trust_anchors {
            let pem = std::fs::read(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let mut found = 0;
            for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| invalid(format!("trust anchor {}: {e}", path.display())))?;
                config.trust_anchors.push(cert.to_vec());
                found += 1;
            }
            if found == 0 {
                return Err(invalid(format!("trust anchor {} holds no certificate", path.display())));
            }
        }
        if matches!(self.auth, EstAuth::Certificate) && config.trust_anchors.is_empty() {
            return Err(invalid("auth = \"certificate\" needs trust_anchors".into()));
        }
        config.channel_binding = self.channel_binding;
        config.csr_attrs.challenge_password = self.csr_attrs.challenge_password;
        config.csr_attrs.key = self
            .csr_attrs
            .key
            .as_deref()
            .map(|k| key_kind("csr_attrs.key", k))
            .transpose()?;
        for oid in &self.csr_attrs.extensions {
            config.csr_attrs.extensions.push(
                oid.parse()
                    .map_err(|_| invalid(format!("csr_attrs.extensions: {oid:?} is not a dotted OID")))?,
            );
        }
        config.csr_attrs.enforce = self.csr_attrs.enforce;
        config.server_keygen = self
            .server_keygen
            .as_deref()
            .map(|k| key_kind("server_keygen", k))
            .transpose()?;
        if config.server_keygen.is_some() && self.require_approval {
            return Err(invalid("server_keygen and require_approval cannot be combined".into()));
        }
        config.require_approval = self.require_approval;
        config.approval_retry_after = self.approval_retry_after_seconds.clamp(1, 86_400);
        config.base64 = match self.base64 {
            EstBase64::Wrap64 => certgate_est::Base64Layout::Wrap64,
            EstBase64::Wrap76 => certgate_est::Base64Layout::Wrap76,
            EstBase64::SingleLine => certgate_est::Base64Layout::SingleLine,
        };
        if !(1..=100_000).contains(&self.max_in_flight) {
            return Err(invalid("max_in_flight must be 1 to 100000".into()));
        }
        config.max_in_flight = self.max_in_flight;
        config.renewal_from_endpoints = self.renewal_from_endpoints.clone();
        let limits = &self.password_limits;
        if !(1..=1000).contains(&limits.concurrent_per_client)
            || !(1..=100_000).contains(&limits.failures_per_minute)
            || !(1..=100_000).contains(&limits.failure_burst)
            || !(1..=10_000_000).contains(&limits.max_clients)
        {
            return Err(invalid(
                "password_limits: concurrent_per_client 1..=1000, failures_per_minute and failure_burst \
                 1..=100000, max_clients 1..=10000000"
                    .into(),
            ));
        }
        config.auth_limit = certgate_est::AuthLimitConfig {
            concurrent_per_client: limits.concurrent_per_client,
            failures_per_minute: limits.failures_per_minute,
            failure_burst: limits.failure_burst,
            max_clients: limits.max_clients,
        };
        Ok(config)
    }
}
