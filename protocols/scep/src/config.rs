//! Per-endpoint SCEP settings. The endpoint's issuance policy (issuer, profiles, key and name
//! policy) lives in the authority's `EndpointPolicy` of the same name with protocol `scep`;
//! these are only the protocol's own settings.

use std::sync::Arc;
use std::time::Duration;

use certgate_authority::{EndpointRef, RaKey};
use certgate_core::Name;
use zeroize::Zeroizing;

use crate::challenge::ChallengeWebhook;

/// A static challenge password. Never printed.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(Zeroizing::new(secret.into()))
    }

    /// The secret's bytes.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Interoperability switches; every default is the standard behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompatSwitches {
    /// Put the CA chain (issuer and intermediates, not the root) next to the issued
    /// certificate inside the CertRep (Cisco VPN clients need it; Juniper refuses it).
    pub certrep_include_ca: bool,
    /// GetCACert: also send the root certificate.
    pub getcacert_include_root: bool,
    /// GetCACert: leave out the issuing (intermediate) CA and any intermediates above it,
    /// sending only the RA certificate (and the root when `getcacert_include_root`).
    pub getcacert_exclude_intermediate: bool,
    /// Accept SHA-1 signatures on PKIMessages (and advertise SHA-1 in GetCACaps). Replies are
    /// still signed with SHA-256.
    pub allow_sha1: bool,
    /// Reply with single DES when the request used single DES. Otherwise a DES request is
    /// answered with 3DES.
    pub allow_des_reply: bool,
}

/// The certificates GetNextCACert announces while a CA rollover is prepared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextCa {
    /// The next CA certificate, its chain, and the RA certificate that goes with it (DER).
    pub certificates: Vec<Vec<u8>>,
}

/// How PKCSReq clients authenticate. Renewal by signer certificate is separate
/// ([`ScepEndpointConfig::renewal`]) and tried first. The validators are tried in this order:
/// static, one-time, webhook; the first that accepts wins. Authentication comes before the
/// authority's policy check, so a one-time challenge is used up even when the policy then
/// refuses the CSR (the store cannot check a challenge without consuming it).
#[derive(Debug, Clone, Default)]
pub struct ChallengeConfig {
    /// A static challenge password (compared in constant time).
    pub static_challenge: Option<Secret>,
    /// Accept one-time challenges from the store (`certgate scep challenge create`).
    pub one_time: bool,
    /// Ask a webhook: certgate sends it the CSR's facts (subject, common name, SANs, key
    /// type), the challenge and the transactionID ([`crate::challenge::WebhookRequest`]); it
    /// allows or refuses the enrollment.
    pub webhook: Option<Arc<dyn ChallengeWebhook>>,
}

impl ChallengeConfig {
    /// Whether any validator is configured.
    pub fn any(&self) -> bool {
        self.static_challenge.is_some() || self.one_time || self.webhook.is_some()
    }
}

/// One SCEP endpoint's protocol settings.
#[derive(Debug, Clone)]
pub struct ScepEndpointConfig {
    /// The endpoint name, served at `/scep/<name>` (and `/scep/<name>/pkiclient.exe`); the
    /// endpoint named [`crate::DEFAULT_ENDPOINT`] is also served at `/cgi-bin/pkiclient.exe`.
    /// The authority must have a SCEP endpoint of this name.
    pub name: Name,
    /// The RA key and certificate (issued by the endpoint's CA; see
    /// `certgate_authority::RaKey::load_or_create`). An RA whose certificate *is* the issuing CA
    /// certificate (an RSA CA acting as its own RA) makes GetCACert answer the bare DER CA
    /// certificate.
    pub ra: Arc<RaKey>,
    /// Challenge validators for PKCSReq.
    pub challenge: ChallengeConfig,
    /// Accept renewal: a RenewalReq, or a PKCSReq signed by a certificate certgate issued
    /// through this endpoint (or one of [`Self::renewal_from_endpoints`]), unexpired and
    /// unrevoked, whose CSR repeats that certificate's subject and subjectAltNames
    /// (`certgate_authority::Authority::check_renewal`); the challenge and approval are then
    /// skipped. A renewal failing that rule enrolls only with a valid challenge, as a first
    /// enrollment would (approval included).
    pub renewal: bool,
    /// Other endpoints whose certificates this endpoint renews without a challenge (e.g.
    /// `est:factory`). Empty by default: a certificate renews only through the endpoint and
    /// protocol that issued it.
    pub renewal_from_endpoints: Vec<EndpointRef>,
    /// Issue only after an operator approved the request: PKCSReq answers PENDING, CertPoll
    /// with the same transactionID returns the certificate once approved. Renewals
    /// authenticated by their signer certificate are not queued.
    pub require_approval: bool,
    /// Interoperability switches.
    pub compat: CompatSwitches,
    /// A prepared next CA: GetNextCACert is served (and advertised) only while this is set.
    pub next_ca: Option<NextCa>,
    /// PKIOperations in flight at once; beyond it, 503.
    pub max_in_flight: usize,
    /// Seconds in `Retry-After` of a 503.
    pub overload_retry_after: u32,
    /// How far a PKIMessage's signingTime may be from the server's clock, either way, before
    /// the message is refused with FAILURE badTime. Checked after the signature verifies;
    /// a message without signingTime is accepted. `None` turns the check off (devices without
    /// a real-time clock, which sign with whatever time they booted into). Default: 24 hours.
    pub max_clock_skew: Option<Duration>,
}

/// The default [`ScepEndpointConfig::max_clock_skew`]: 24 hours.
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(24 * 60 * 60);

impl ScepEndpointConfig {
    /// Defaults for an endpoint named `name` with RA `ra`: no challenge (configure one),
    /// renewal on (of this endpoint's certificates only), no approval, standard behaviour, no
    /// next CA, signingTime within 24 hours.
    pub fn new(name: Name, ra: Arc<RaKey>) -> Self {
        Self {
            name,
            ra,
            challenge: ChallengeConfig::default(),
            renewal: true,
            renewal_from_endpoints: Vec::new(),
            require_approval: false,
            compat: CompatSwitches::default(),
            next_ca: None,
            max_in_flight: 64,
            overload_retry_after: 5,
            max_clock_skew: Some(DEFAULT_MAX_CLOCK_SKEW),
        }
    }
}
