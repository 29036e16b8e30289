//! Per-endpoint EST settings. The endpoint's issuance policy (issuer, profiles, key and name
//! policy) lives in the authority's `EndpointPolicy` of the same name with protocol `est`;
//! these are only the protocol's own settings.

use certgate_authority::EndpointRef;
use certgate_core::{KeyKind, Name};
use const_oid::ObjectIdentifier;

use crate::AuthLimitConfig;

/// The name of the endpoint served at the unlabelled paths (`/.well-known/est/<op>`).
pub const DEFAULT_ENDPOINT: &str = "default";

/// How clients of an endpoint authenticate for simpleenroll and serverkeygen (cacerts and
/// csrattrs need none, RFC 7030 4.1.1 and 4.5.1). simplereenroll is authenticated by the TLS
/// client certificate being renewed (see [`EstEndpointConfig::renewal_from_endpoints`]), plus
/// HTTP Basic when this is [`ClientAuth::Both`]; a re-enrollment the renewal rule refuses
/// needs this authentication, as a first enrollment does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// HTTP Basic with a user of the endpoint (`certgate est user add`).
    #[default]
    Basic,
    /// A TLS client certificate chaining to one of the endpoint's trust anchors.
    Certificate,
    /// Either of the two.
    Either,
    /// Both: a valid client certificate and a valid user.
    Both,
}

impl ClientAuth {
    /// Whether a client certificate can authenticate.
    pub fn accepts_certificate(self) -> bool {
        matches!(self, Self::Certificate | Self::Either | Self::Both)
    }

    /// Whether HTTP Basic can authenticate.
    pub fn accepts_basic(self) -> bool {
        matches!(self, Self::Basic | Self::Either | Self::Both)
    }
}

/// How base64 response bodies are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Base64Layout {
    /// Lines of 64 characters ending in CRLF (for decoders that need breaks, such as
    /// `openssl base64 -d` without `-A`).
    Wrap64,
    /// Lines of 76 characters ending in CRLF (MIME).
    Wrap76,
    /// One line, no line break at all: the default, since some clients cannot skip line breaks
    /// (strongSwan's `pki --est`) while every client tried reads one line (libest switches its
    /// decoder by whether the body has breaks, curl + `base64 -d` ignores them).
    #[default]
    SingleLine,
}

/// What `/csrattrs` announces (RFC 7030 4.5.2) and, with `enforce`, what every CSR must carry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CsrAttrsConfig {
    /// Ask for the challengePassword attribute. Implied by `channel_binding`.
    pub challenge_password: bool,
    /// Ask for this key type (announced as RFC 7030 4.5.2 does: id-ecPublicKey with the curve
    /// and the ECDSA signature OID; rsaEncryption with the modulus size; id-Ed25519).
    pub key: Option<KeyKind>,
    /// Ask for these extensions in an extensionRequest (announced as RFC 7030 4.5.2's example
    /// does: the extensionRequest attribute with the extension OIDs as its values).
    pub extensions: Vec<ObjectIdentifier>,
    /// Refuse (400) a CSR that lacks any of the above.
    pub enforce: bool,
}

/// One EST endpoint's protocol settings.
#[derive(Debug, Clone)]
pub struct EstEndpointConfig {
    /// The endpoint name, served at `/.well-known/est/<name>/<op>`; the endpoint named
    /// [`DEFAULT_ENDPOINT`] is also served at `/.well-known/est/<op>`. The authority must have
    /// an EST endpoint of this name.
    pub name: Name,
    /// How clients authenticate.
    pub auth: ClientAuth,
    /// The HTTP Basic realm (`WWW-Authenticate: Basic realm="…"`).
    pub realm: String,
    /// Trust anchors (DER certificates, e.g. a device maker's CA) client certificates must
    /// chain to when `auth` accepts certificates. This crate verifies the chain itself against
    /// these anchors (the daemon's TLS verifier accepts the union of every endpoint's anchors).
    pub trust_anchors: Vec<Vec<u8>>,
    /// Require RFC 9266 / RFC 7030 3.5 channel binding: the CSR's challengePassword must be
    /// the base64 of the connection's tls-exporter value (tls-unique on TLS 1.2).
    pub channel_binding: bool,
    /// What `/csrattrs` announces and whether it is enforced.
    pub csr_attrs: CsrAttrsConfig,
    /// Offer `/serverkeygen`, generating keys of this type. Off (None) by default.
    pub server_keygen: Option<KeyKind>,
    /// Issue only after an operator approved the request (`certgate approvals approve`):
    /// simpleenroll answers 202 with `Retry-After` until then.
    pub require_approval: bool,
    /// Seconds in `Retry-After` while a request awaits approval.
    pub approval_retry_after: u32,
    /// Layout of base64 response bodies.
    pub base64: Base64Layout,
    /// Issuances (and server key generations) in flight at once; beyond it, 503.
    pub max_in_flight: usize,
    /// Seconds in `Retry-After` of a 503.
    pub overload_retry_after: u32,
    /// Other endpoints whose certificates simplereenroll renews here (e.g. `scep:default`).
    /// Empty by default: a certificate renews only through the EST endpoint that issued it,
    /// with the same subject and subjectAltNames (`certgate_authority::Authority::check_renewal`).
    pub renewal_from_endpoints: Vec<EndpointRef>,
    /// Per-client-address limits on HTTP Basic password checks (beyond them, 429).
    pub auth_limit: AuthLimitConfig,
}

impl EstEndpointConfig {
    /// Defaults for an endpoint named `name`: HTTP Basic, no channel binding, nothing
    /// announced in csrattrs, no server key generation, no approval, 64-column base64.
    pub fn new(name: Name) -> Self {
        let realm = format!("certgate EST {name}");
        Self {
            name,
            auth: ClientAuth::Basic,
            realm,
            trust_anchors: Vec::new(),
            channel_binding: false,
            csr_attrs: CsrAttrsConfig::default(),
            server_keygen: None,
            require_approval: false,
            approval_retry_after: 60,
            base64: Base64Layout::SingleLine,
            max_in_flight: 64,
            overload_retry_after: 5,
            renewal_from_endpoints: Vec::new(),
            auth_limit: AuthLimitConfig::default(),
        }
    }
}
