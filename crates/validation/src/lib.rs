//! ACME identifier validation: proves that an ACME client controls an identifier by fetching
//! what it published over HTTP (http-01, RFC 8555 8.3), DNS (dns-01, RFC 8555 8.4) or TLS with
//! ALPN (tls-alpn-01, RFC 8737), for DNS names and IP addresses (RFC 8738), and checks CAA
//! records before issuance (RFC 8659, with the RFC 8657 `accounturi` and `validationmethods`
//! parameters).
//!
//! The crate is pure: it never touches a store, an account or a key. The ACME crate decides
//! which challenge to run, computes the key authorization, and records the outcome; this crate
//! only talks to the network and says what it saw. Every failure is a typed [`ValidationError`]
//! whose `detail` is written for the ACME client's operator (which URL, which address, what came
//! back), because that text ends up in the problem document they read.
//!
//! Errors describe what was contacted and what came back (status, length, whether it matched)
//! but never quote what a validation target sent: the target is the ACME client's choice, so
//! quoting its answer would let a client read internal HTTP resources through challenge errors.
//! Where validation may connect at all is an [`AddressPolicy`], checked on every address
//! connected to (each http-01 redirect hop included); dns-01 and CAA ask only the configured
//! nameservers, which the operator chose.
//!
//! What it does not do: multi-perspective validation, rate limiting, or retries (a retried
//! challenge is a new call; no DNS answer is cached between calls so the retry sees new records).
#![warn(missing_docs)]
#![allow(
    clippy::result_large_err,
    reason = "ValidationError carries its ValidationRecord by value (the ACME crate's API); errors are \
              rare and follow network round trips, so their size does not matter"
)]

mod address_policy;
mod caa;
mod dns;
mod error;
mod http01;
mod net;
mod tls_alpn;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use certgate_core::{DnsName, Identifier};
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;

pub use crate::address_policy::{AddressPolicy, AddressRefusal};
pub use crate::error::{ValidationError, ValidationErrorKind};
pub use crate::net::DangerAcceptAnyCertificate;

/// How validations reach the network. Built once per ACME endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationConfig {
    /// Port http-01 connects to. RFC 8555 fixes it at 80; configurable so tests can use an
    /// ephemeral port. Redirects may also go to this port.
    pub http_port: u16,
    /// Port tls-alpn-01 connects to. RFC 8737 fixes it at 443; configurable for tests.
    /// http-01 redirects to https may also go to this port.
    pub tls_alpn_port: u16,
    /// DNS servers for dns-01 and CAA (queried over UDP, TCP on truncation). Empty means the
    /// system configuration (`/etc/resolv.conf`). http-01 and tls-alpn-01 always resolve with the
    /// system resolver so that `/etc/hosts` is honoured.
    pub dns_nameservers: Vec<SocketAddr>,
    /// Bound on one whole validation attempt (all lookups, connects, redirects and reads).
    pub timeout: Duration,
    /// How many HTTP redirects http-01 follows before giving up.
    pub max_redirects: usize,
    /// How many bytes of an http-01 response body are read; a longer body fails.
    pub max_body: usize,
    /// CAA checking; `None` (the default) skips it, which suits private zones without CAA.
    pub caa: Option<CaaConfig>,
    /// Which addresses http-01 (every redirect hop) and tls-alpn-01 may connect to. The
    /// default refuses link-local, cloud metadata, unspecified, multicast and broadcast
    /// addresses and allows the rest, private ranges and loopback included.
    pub address_policy: AddressPolicy,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        Self {
            http_port: 80,
            tls_alpn_port: 443,
            dns_nameservers: Vec::new(),
            timeout: Duration::from_secs(10),
            max_redirects: 10,
            max_body: 16 * 1024,
            caa: None,
            address_policy: AddressPolicy::default(),
        }
    }
}

/// CAA settings (RFC 8659).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CaaConfig {
    /// Issuer domain names this CA answers to in `issue`/`issuewild` records, e.g.
    /// `certgate.example`. Compared case-insensitively.
    pub identities: Vec<String>,
}

/// An ACME challenge type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChallengeKind {
    /// `http-01` (RFC 8555 8.3).
    #[serde(rename = "http-01")]
    Http01,
    /// `dns-01` (RFC 8555 8.4).
    #[serde(rename = "dns-01")]
    Dns01,
    /// `tls-alpn-01` (RFC 8737).
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

impl ChallengeKind {
    /// The challenge type as it appears on the wire and in CAA `validationmethods`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Http01 => "http-01",
            Self::Dns01 => "dns-01",
            Self::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

impl fmt::Display for ChallengeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ChallengeKind {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "http-01" => Ok(Self::Http01),
            "dns-01" => Ok(Self::Dns01),
            "tls-alpn-01" => Ok(Self::TlsAlpn01),
            other => Err(ValidationError::new(
                ValidationErrorKind::Malformed,
                format!("unknown challenge type \"{}\"", error::excerpt(other.as_bytes())),
            )),
        }
    }
}

/// One validation to perform.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// The identifier being proven.
    pub identifier: &'a Identifier,
    /// The challenge type.
    pub kind: ChallengeKind,
    /// The challenge token (base64url, RFC 8555 8.1); part of the http-01 URL.
    pub token: &'a str,
    /// `token || '.' || base64url(JWK thumbprint)`, computed by the caller.
    pub key_authorization: &'a str,
}

/// What a validation contacted, in the style of Boulder's `validationRecord` (RFC 8555 leaves
/// the format open). For http-01 it describes the last request made (after redirects).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidationRecord {
    /// The URL fetched (http-01 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The host name or IP literal contacted, or the DNS name queried (dns-01).
    pub hostname: String,
    /// The port contacted (http-01, tls-alpn-01).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Every address the host name resolved to, in the order tried.
    #[serde(default)]
    pub addresses_resolved: Vec<IpAddr>,
    /// The address the connection was made to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_used: Option<IpAddr>,
}

/// Runs validations and CAA checks. Cheap to clone (shared state behind an `Arc`); `Send + Sync`.
#[derive(Clone)]
pub struct Validator {
    inner: Arc<Inner>,
}

struct Inner {
    config: ValidationConfig,
    dns: dns::Dns,
    tls: net::TlsConfigs,
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Validator")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Validator {
    /// Builds a validator: the DNS resolver (reading `/etc/resolv.conf` when no nameservers are
    /// configured) and the TLS client configurations. Fails only when the system DNS
    /// configuration cannot be read or the config is unusable (zero timeout).
    pub fn new(config: ValidationConfig) -> Result<Self, ValidationError> {
        if config.timeout.is_zero() {
            return Err(ValidationError::new(
                ValidationErrorKind::Malformed,
                "validation timeout must be greater than zero",
            ));
        }
        let dns = dns::Dns::new(&config)?;
        let tls = net::TlsConfigs::new()?;
        Ok(Self {
            inner: Arc::new(Inner { config, dns, tls }),
        })
    }

    /// The configuration this validator was built with.
    pub fn config(&self) -> &ValidationConfig {
        &self.inner.config
    }

    /// Runs one challenge. `Ok` carries what was contacted; `Err` says why the identifier is not
    /// proven. Bounded by [`ValidationConfig::timeout`].
    pub async fn validate(&self, attempt: &Attempt<'_>) -> Result<ValidationRecord, ValidationError> {
        let timeout = self.inner.config.timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let span = tracing::debug_span!(
            "validation",
            identifier = %attempt.identifier,
            challenge = attempt.kind.name()
        );
        let work = self.validate_inner(attempt, deadline).instrument(span.clone());
        // Every step has its own deadline-bound error; this outer bound is a backstop.
        let result = match tokio::time::timeout_at(deadline + Duration::from_millis(100), work).await {
            Ok(result) => result,
            Err(_) => Err(ValidationError::new(
                ValidationErrorKind::Connection,
                format!(
                    "{} validation of {} timed out after {timeout:?}",
                    attempt.kind, attempt.identifier
                ),
            )),
        };
        // One summary event per attempt, inside the attempt's span.
        span.in_scope(|| match &result {
            Ok(record) => tracing::debug!(address = ?record.address_used, "validation succeeded"),
            Err(err) => tracing::debug!(kind = ?err.kind, detail = %err.detail, "validation failed"),
        });
        result
    }

    async fn validate_inner(
        &self,
        attempt: &Attempt<'_>,
        deadline: tokio::time::Instant,
    ) -> Result<ValidationRecord, ValidationError> {
        check_token(attempt.token)?;
        let kind = attempt.kind;
        let target = match attempt.identifier {
            Identifier::Dns(name) => {
                if name.is_wildcard() && kind != ChallengeKind::Dns01 {
                    // RFC 8555 7.1.3: wildcard authorizations offer dns-01 only.
                    return Err(ValidationError::new(
                        ValidationErrorKind::RejectedIdentifier,
                        format!("{kind} cannot validate the wildcard name {name}; use dns-01"),
                    ));
                }
                net::Host::Name(name.base().to_owned())
            }
            Identifier::Ip(ip) => {
                if kind == ChallengeKind::Dns01 {
                    // RFC 8738 7: dns-01 is not defined for IP identifiers.
                    return Err(ValidationError::new(
                        ValidationErrorKind::RejectedIdentifier,
                        format!("dns-01 cannot validate the IP address {ip}; use http-01 or tls-alpn-01"),
                    ));
                }
                net::Host::Ip(*ip)
            }
            other => {
                return Err(ValidationError::new(
                    ValidationErrorKind::RejectedIdentifier,
                    format!("{kind} cannot validate an identifier of type {}", other.kind()),
                ));
            }
        };
        let inner = &*self.inner;
        match kind {
            ChallengeKind::Http01 => {
                http01::validate(
                    &inner.config,
                    &inner.tls,
                    target,
                    attempt.token,
                    attempt.key_authorization,
                    deadline,
                )
                .await
            }
            ChallengeKind::Dns01 => {
                let net::Host::Name(name) = target else {
                    // Unreachable: IP identifiers were refused above.
                    return Err(ValidationError::new(
                        ValidationErrorKind::RejectedIdentifier,
                        "dns-01 needs a name",
                    ));
                };
                inner
                    .dns
                    .validate_dns01(&name, attempt.key_authorization, deadline)
                    .await
            }
            ChallengeKind::TlsAlpn01 => {
                tls_alpn::validate(&inner.config, &inner.tls, target, attempt.key_authorization, deadline).await
            }
        }
    }

    /// Checks CAA (RFC 8659 with the RFC 8657 parameters) for `name` before issuance.
    /// `wildcard` selects `issuewild` (a wildcard `name` implies it). `Ok(())` when
    /// [`ValidationConfig::caa`] is `None` or no CAA record applies.
    pub async fn check_caa(
        &self,
        name: &DnsName,
        wildcard: bool,
        account_uri: &str,
        method: ChallengeKind,
    ) -> Result<(), ValidationError> {
        let Some(caa) = &self.inner.config.caa else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + self.inner.config.timeout;
        let wildcard = wildcard || name.is_wildcard();
        let result = self
            .inner
            .dns
            .check_caa(name.base(), wildcard, &caa.identities, account_uri, method, deadline)
            .await;
        if let Err(err) = &result {
            tracing::debug!(name = %name, kind = ?err.kind, detail = %err.detail, "CAA check refused issuance");
        }
        result
    }
}

/// The dns-01 TXT record value for a key authorization: base64url(SHA-256(keyAuthorization))
/// without padding (RFC 8555 8.4).
pub fn dns01_digest(key_authorization: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, key_authorization.as_bytes()))
}

/// Tokens go into URLs and logs, so anything but base64url is refused before any I/O.
fn check_token(token: &str) -> Result<(), ValidationError> {
    let ok = !token.is_empty()
        && token.len() <= 256
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            ValidationErrorKind::Malformed,
            "challenge token is not 1 to 256 base64url characters",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_matches_rfc_8555_example_shape() {
        // SHA-256 of "" is well known; its base64url form checks encoding and padding.
        assert_eq!(dns01_digest(""), "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU");
    }

    #[test]
    fn challenge_kind_round_trip() {
        for kind in [ChallengeKind::Http01, ChallengeKind::Dns01, ChallengeKind::TlsAlpn01] {
            assert_eq!(kind.name().parse::<ChallengeKind>().ok(), Some(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.name()));
        }
        let err = "http-02".parse::<ChallengeKind>().unwrap_err();
        assert_eq!(err.kind, ValidationErrorKind::Malformed);
    }

    #[test]
    fn tokens() {
        let cases = [
            ("good_base64url", "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA", true),
            ("bad_empty", "", false),
            ("bad_slash", "a/../b", false),
            ("bad_query", "a?b", false),
            ("bad_too_long", &"a".repeat(257), false),
        ];
        for (case, token, ok) in cases {
            assert_eq!(check_token(token).is_ok(), ok, "case {case}");
        }
    }

    #[test]
    fn record_serializes_camel_case() {
        let record = ValidationRecord {
            url: Some("http://example.test/.well-known/acme-challenge/x".into()),
            hostname: "example.test".into(),
            port: Some(80),
            addresses_resolved: vec!["127.0.0.1".parse().unwrap()],
            address_used: Some("127.0.0.1".parse().unwrap()),
        };
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["addressesResolved"][0], "127.0.0.1");
        assert_eq!(json["addressUsed"], "127.0.0.1");
        let dns_only = ValidationRecord {
            url: None,
            hostname: "example.test".into(),
            port: None,
            addresses_resolved: vec![],
            address_used: None,
        };
        let json = serde_json::to_value(&dns_only).unwrap();
        assert!(json.get("url").is_none() && json.get("port").is_none());
    }
}
