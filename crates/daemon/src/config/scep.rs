//! `[endpoints.scep]`: a SCEP endpoint's settings and their checks.

use std::path::PathBuf;

use certgate_core::Name;
use certgate_signer::KeyType;
use serde::Deserialize;

use super::ConfigError;

/// A SCEP endpoint's protocol settings (`[endpoints.scep]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScepSettings {
    /// A static challenge password, from the first line of this file (mode 0600 advised).
    pub challenge_file: Option<PathBuf>,
    /// A static challenge password, from this environment variable.
    pub challenge_env: Option<String>,
    /// Accept one-time challenges made by `certgate scep challenge create`.
    pub one_time_challenges: bool,
    /// Ask this webhook (`http://host:port/path`) whether a challenge is good: 2xx allows.
    pub webhook_url: Option<String>,
    /// Seconds the webhook may take.
    pub webhook_timeout_seconds: u64,
    /// Accept renewals (RenewalReq, or PKCSReq signed by a certificate certgate issued, same
    /// subject): the challenge is then optional.
    pub renewal: bool,
    /// Issue only after an operator approved (`certgate approvals approve`): PENDING until then.
    pub require_approval: bool,
    /// The RA key's size: `rsa2048`, `rsa3072` or `rsa4096`.
    pub ra_key_type: String,
    /// Put the CA chain in CertReps (Cisco VPN clients need it; Juniper refuses it).
    pub certrep_include_ca: bool,
    /// GetCACert: also send the root.
    pub getcacert_include_root: bool,
    /// GetCACert: leave out the issuing CA (only the RA, and the root if included).
    pub getcacert_exclude_intermediate: bool,
    /// Accept SHA-1 signatures (old devices); replies stay SHA-256.
    pub allow_sha1: bool,
    /// Reply with single DES to a single-DES request (otherwise 3DES).
    pub allow_des_reply: bool,
    /// A second configured issuer announced by GetNextCACert while a CA rollover is prepared.
    pub next_ca_issuer: Option<String>,
    /// PKIOperations in flight at once; beyond it, 503 with Retry-After.
    pub max_in_flight: usize,
    /// Refuse (FAILURE badTime) a message whose signingTime is further than this from the
    /// server's clock; 0 turns the check off (devices without a real-time clock).
    pub max_clock_skew_seconds: u64,
}

impl Default for ScepSettings {
    fn default() -> Self {
        Self {
            challenge_file: None,
            challenge_env: None,
            one_time_challenges: true,
            webhook_url: None,
            webhook_timeout_seconds: 5,
            renewal: true,
            require_approval: false,
            ra_key_type: "rsa2048".into(),
            certrep_include_ca: false,
            getcacert_include_root: false,
            getcacert_exclude_intermediate: false,
            allow_sha1: false,
            allow_des_reply: false,
            next_ca_issuer: None,
            max_in_flight: 64,
            max_clock_skew_seconds: 86_400,
        }
    }
}

/// A SCEP endpoint's checked settings; the RA key is loaded or created at start.
#[derive(Debug, Clone)]
pub struct CheckedScep {
    /// The endpoint.
    pub name: Name,
    /// Its issuer.
    pub issuer: Name,
    /// The settings as written.
    pub settings: ScepSettings,
    /// The static challenge, read from its file or variable.
    pub static_challenge: Option<certgate_scep::Secret>,
    /// The RA key type.
    pub ra_key_type: KeyType,
}

impl CheckedScep {
    pub(super) fn check(
        name: Name,
        issuer: Name,
        settings: ScepSettings,
        issuer_names: &[Name],
    ) -> Result<Self, ConfigError> {
        let invalid = |m: String| ConfigError::Invalid(format!("scep endpoint {name}: {m}"));
        let static_challenge = match (&settings.challenge_file, &settings.challenge_env) {
            (Some(_), Some(_)) => return Err(invalid("give challenge_file or challenge_env, not both".into())),
            (Some(path), None) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                Some(text.lines().next().unwrap_or_default().to_owned())
            }
            (None, Some(var)) => {
                Some(std::env::var(var).map_err(|_| invalid(format!("challenge_env: {var} is not set")))?)
            }
            (None, None) => None,
        };
        if static_challenge.as_deref().is_some_and(str::is_empty) {
            return Err(invalid("the static challenge is empty".into()));
        }
        if !(settings.one_time_challenges
            || static_challenge.is_some()
            || settings.webhook_url.is_some()
            || settings.renewal)
        {
            return Err(invalid(
                "no way to authenticate: set a challenge, one_time_challenges, webhook_url or renewal".into(),
            ));
        }
        if let Some(url) = &settings.webhook_url
            && !url.starts_with("http://")
        {
            return Err(invalid(format!("webhook_url {url:?} must be an http:// URL")));
        }
        if !(1..=60).contains(&settings.webhook_timeout_seconds) {
            return Err(invalid("webhook_timeout_seconds must be 1 to 60".into()));
        }
        if !(1..=100_000).contains(&settings.max_in_flight) {
            return Err(invalid("max_in_flight must be 1 to 100000".into()));
        }
        if settings.max_clock_skew_seconds > 10 * 365 * 86_400 {
            return Err(invalid(
                "max_clock_skew_seconds is at most ten years (0 turns the check off)".into(),
            ));
        }
        let ra_key_type = match settings.ra_key_type.as_str() {
            "rsa2048" => KeyType::Rsa2048,
            "rsa3072" => KeyType::Rsa3072,
            "rsa4096" => KeyType::Rsa4096,
            other => {
                return Err(invalid(format!(
                    "ra_key_type {other:?}: expected rsa2048, rsa3072 or rsa4096"
                )));
            }
        };
        if let Some(next) = &settings.next_ca_issuer {
            let next = Name::new(next.as_str()).map_err(|e| invalid(format!("next_ca_issuer: {e}")))?;
            if !issuer_names.contains(&next) || next == issuer {
                return Err(invalid(format!(
                    "next_ca_issuer {next} must be another configured issuer"
                )));
            }
        }
        Ok(Self {
            name,
            issuer,
            static_challenge: static_challenge.map(certgate_scep::Secret::new),
            settings,
            ra_key_type,
        })
    }

    /// The SCEP crate's configuration, with the endpoint's RA and the next CA's certificates
    /// (its chain, as GetNextCACert announces them).
    pub fn to_endpoint_config(
        &self,
        ra: std::sync::Arc<certgate_authority::RaKey>,
        next_ca: Option<Vec<Vec<u8>>>,
    ) -> certgate_scep::ScepEndpointConfig {
        let s = &self.settings;
        let mut config = certgate_scep::ScepEndpointConfig::new(self.name.clone(), ra);
        config.challenge = certgate_scep::ChallengeConfig {
            static_challenge: self.static_challenge.clone(),
            one_time: s.one_time_challenges,
            webhook: s.webhook_url.as_ref().map(|url| certgate_scep::WebhookConfig {
                url: url.clone(),
                timeout: std::time::Duration::from_secs(s.webhook_timeout_seconds),
            }),
        };
        config.renewal = s.renewal;
        config.require_approval = s.require_approval;
        config.compat = certgate_scep::CompatSwitches {
            certrep_include_ca: s.certrep_include_ca,
            getcacert_include_root: s.getcacert_include_root,
            getcacert_exclude_intermediate: s.getcacert_exclude_intermediate,
            allow_sha1: s.allow_sha1,
            allow_des_reply: s.allow_des_reply,
        };
        config.next_ca = next_ca.map(|certificates| certgate_scep::NextCa { certificates });
        config.max_in_flight = s.max_in_flight;
        config.max_clock_skew =
            (s.max_clock_skew_seconds > 0).then(|| std::time::Duration::from_secs(s.max_clock_skew_seconds));
        config
    }
}
