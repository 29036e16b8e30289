//! `[endpoints.scep]`: a SCEP endpoint's settings and their checks.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use certgate_core::{Clock, Name};
use certgate_lifecycle::{OutboundWebhook, WebhookSecret, WebhookTimeouts};
use certgate_scep::ChallengeWebhook;
use certgate_signer::KeyType;
use serde::Deserialize;

use super::ConfigError;
use crate::scep_webhook::ScepChallengeWebhook;

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
    /// Ask this webhook (`https://host[:port]/path`, or `http://` on a trusted network) whether
    /// a challenge is good: certgate POSTs the CSR's facts and the challenge as JSON, signed
    /// (`X-Certgate-Signature`, as lifecycle webhooks); 2xx allows, any other answer refuses.
    pub webhook_url: Option<String>,
    /// The webhook's HMAC-SHA256 signing secret (at least 16 bytes), from the first line of
    /// this file. This or `webhook_secret_env` is required with `webhook_url`.
    pub webhook_secret_file: Option<PathBuf>,
    /// The webhook's signing secret, from this environment variable.
    pub webhook_secret_env: Option<String>,
    /// PEM CA certificates an `https://` webhook's certificate must chain to; the system's
    /// trust store when absent.
    pub webhook_ca_file: Option<PathBuf>,
    /// Seconds the webhook may take, connecting included (1 to 60).
    pub webhook_timeout_seconds: u64,
    /// Accept renewals (RenewalReq, or PKCSReq signed by a certificate certgate issued through
    /// this endpoint, same subject and names): the challenge is then optional.
    pub renewal: bool,
    /// Other endpoints (`protocol:name`, e.g. `est:factory`) whose certificates renew here
    /// without a challenge. Empty by default: a certificate renews only where it was issued.
    pub renewal_from_endpoints: Vec<certgate_authority::EndpointRef>,
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
    /// Accept SHA-1 signatures on requests (on by default: micromdm's scepclient 2.1 and old
    /// devices sign with SHA-1, and the signature only proves possession of the request's key;
    /// the challenge authenticates). Replies and certificates stay SHA-256.
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
            webhook_secret_file: None,
            webhook_secret_env: None,
            webhook_ca_file: None,
            webhook_timeout_seconds: 5,
            renewal: true,
            renewal_from_endpoints: Vec::new(),
            require_approval: false,
            ra_key_type: "rsa2048".into(),
            certrep_include_ca: false,
            getcacert_include_root: false,
            getcacert_exclude_intermediate: false,
            allow_sha1: true,
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
    /// The challenge webhook: URL, signing secret and TLS roots checked, the secret read.
    pub webhook: Option<OutboundWebhook>,
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
        if !(1..=60).contains(&settings.webhook_timeout_seconds) {
            return Err(invalid("webhook_timeout_seconds must be 1 to 60".into()));
        }
        let webhook = webhook(&name, &settings)?;
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
            webhook,
            settings,
            ra_key_type,
        })
    }

    /// The SCEP crate's configuration, with the endpoint's RA, the next CA's certificates
    /// (its chain, as GetNextCACert announces them), and the clock that dates webhook
    /// signatures.
    pub fn to_endpoint_config(
        &self,
        ra: Arc<certgate_authority::RaKey>,
        next_ca: Option<Vec<Vec<u8>>>,
        clock: Arc<dyn Clock>,
    ) -> certgate_scep::ScepEndpointConfig {
        let s = &self.settings;
        let mut config = certgate_scep::ScepEndpointConfig::new(self.name.clone(), ra);
        config.challenge = certgate_scep::ChallengeConfig {
            static_challenge: self.static_challenge.clone(),
            one_time: s.one_time_challenges,
            webhook: self.webhook.clone().map(|outbound| -> Arc<dyn ChallengeWebhook> {
                Arc::new(ScepChallengeWebhook::new(
                    outbound,
                    Duration::from_secs(s.webhook_timeout_seconds),
                    Arc::clone(&clock),
                ))
            }),
        };
        config.renewal = s.renewal;
        config.renewal_from_endpoints = s.renewal_from_endpoints.clone();
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

/// The challenge webhook of endpoint `name`: `None` without `webhook_url`; otherwise its
/// signing secret (required: the receiver must be able to tell certgate's requests from
/// anyone's) and TLS roots, checked.
fn webhook(name: &Name, settings: &ScepSettings) -> Result<Option<OutboundWebhook>, ConfigError> {
    let invalid = |m: String| ConfigError::Invalid(format!("scep endpoint {name}: {m}"));
    let Some(url) = &settings.webhook_url else {
        let stray = settings.webhook_secret_file.is_some()
            || settings.webhook_secret_env.is_some()
            || settings.webhook_ca_file.is_some();
        if stray {
            return Err(invalid(
                "webhook_secret_file, webhook_secret_env and webhook_ca_file need webhook_url".into(),
            ));
        }
        return Ok(None);
    };
    let secret = match (&settings.webhook_secret_file, &settings.webhook_secret_env) {
        (Some(path), None) => {
            let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?);
            WebhookSecret::new(text.lines().next().unwrap_or_default().as_bytes())
        }
        (None, Some(var)) => {
            let value = zeroize::Zeroizing::new(
                std::env::var(var).map_err(|_| invalid(format!("webhook_secret_env: {var} is not set")))?,
            );
            WebhookSecret::new(value.as_bytes())
        }
        _ => {
            return Err(invalid(
                "webhook_url needs one of webhook_secret_file and webhook_secret_env (its signing key)".into(),
            ));
        }
    };
    let timeout = Duration::from_secs(settings.webhook_timeout_seconds);
    let timeouts = WebhookTimeouts {
        connect: timeout,
        response: timeout,
    };
    OutboundWebhook::new(
        &format!("scep-{name}"),
        url,
        &secret,
        settings.webhook_ca_file.as_deref(),
        timeouts,
    )
    .map(Some)
    .map_err(|e| invalid(format!("webhook_url: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_settings() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "0123456789abcdef-secret\n").unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, "short\n").unwrap();
        let settings = |url: Option<&str>, secret: Option<&PathBuf>, ca: Option<&str>| ScepSettings {
            webhook_url: url.map(str::to_owned),
            webhook_secret_file: secret.cloned(),
            webhook_ca_file: ca.map(PathBuf::from),
            ..ScepSettings::default()
        };
        let cases = [
            ("good_none", settings(None, None, None), Some(false)),
            (
                "good_http",
                settings(Some("http://127.0.0.1:9/check"), Some(&secret), None),
                Some(true),
            ),
            (
                "bad_no_secret",
                settings(Some("http://127.0.0.1:9/check"), None, None),
                None,
            ),
            (
                "bad_short_secret",
                settings(Some("http://127.0.0.1:9/"), Some(&short), None),
                None,
            ),
            (
                "bad_scheme",
                settings(Some("ftp://127.0.0.1:9/"), Some(&secret), None),
                None,
            ),
            (
                "bad_missing_ca_file",
                settings(
                    Some("https://hooks.example/"),
                    Some(&secret),
                    Some("/nonexistent/ca.pem"),
                ),
                None,
            ),
            ("bad_secret_without_url", settings(None, Some(&secret), None), None),
            ("bad_ca_without_url", settings(None, None, Some("/etc/ca.pem")), None),
        ];
        let name = Name::new("default").unwrap();
        for (case, settings, want) in cases {
            let got = webhook(&name, &settings).map(|hook| hook.is_some()).ok();
            assert_eq!(got, want, "case {case}");
        }
    }
}
