use certgate_core::{CsrError, ErrorKind, Identifier, KeyKind, Name, Protocol};
use certgate_signer::SignerError;
use certgate_store::StoreError;

use crate::RenewalRefusal;

/// Why the authority refused or failed. A refusal writes nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorityError {
    /// No such endpoint.
    #[error("no {protocol} endpoint named {name}")]
    UnknownEndpoint {
        /// Protocol.
        protocol: Protocol,
        /// Name.
        name: Name,
    },
    /// The endpoint does not offer this profile.
    #[error("profile {0} is not offered by this endpoint")]
    UnknownProfile(Name),
    /// The CSR does not parse or its signature does not verify.
    #[error(transparent)]
    Csr(#[from] CsrError),
    /// The key type or size is refused by the endpoint's key policy.
    #[error("{key} keys are not allowed: {reason}")]
    KeyNotAllowed {
        /// The key.
        key: KeyKind,
        /// Which rule refused it.
        reason: &'static str,
    },
    /// The CSR was signed with SHA-1 and the endpoint does not allow that.
    #[error("the CSR is signed with SHA-1, which this endpoint does not accept")]
    WeakSignatureAlgorithm,
    /// A name is outside the endpoint's name policy.
    #[error("{identifier} is not allowed: {reason}")]
    NameNotAllowed {
        /// The name.
        identifier: Identifier,
        /// Which rule refused it.
        reason: String,
    },
    /// A subject attribute outside the endpoint's name policy: a type it does not certify, a
    /// second common name (or any repeated type), a value that is empty, too long for RFC 5280
    /// or not text. A name inside the subject (a common name that is a DNS name, an
    /// emailAddress) that the policy refuses is [`AuthorityError::NameNotAllowed`].
    #[error("subject attribute {attribute} is not allowed: {reason}")]
    SubjectNotAllowed {
        /// The attribute's short name (`CN`, `O`, …) or dotted OID.
        attribute: String,
        /// Which rule refused it.
        reason: String,
    },
    /// A wildcard name where the endpoint allows none.
    #[error("wildcard {0} is not allowed by this endpoint")]
    WildcardNotAllowed(Identifier),
    /// More names than the endpoint allows.
    #[error("{count} names requested; this endpoint allows at most {max}")]
    TooManyNames {
        /// Requested.
        count: usize,
        /// Allowed.
        max: usize,
    },
    /// Nothing to certify: no subjectAltName and no usable subject.
    #[error("the CSR names nothing to certify (no subjectAltName{0})")]
    NoNames(&'static str),
    /// A kind of subjectAltName certgate cannot issue.
    #[error("subjectAltName of type {0} cannot be issued")]
    UnsupportedSan(&'static str),
    /// The requested validity is refused.
    #[error("validity refused: {0}")]
    BadValidity(String),
    /// No certificate with this serial.
    #[error("no certificate with this serial")]
    NotFound,
    /// The certificate is already revoked.
    #[error("the certificate is already revoked")]
    AlreadyRevoked,
    /// The configuration given to the authority is inconsistent.
    #[error("authority configuration: {0}")]
    Config(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(StoreError),
    /// The signer failed.
    #[error("signer: {0}")]
    Signer(#[from] SignerError),
    /// The blocking signing task did not complete.
    #[error("signing task failed: {0}")]
    SigningTask(String),
    /// New issuance is limited or paused for now (`Authority::admit_issuance`); nothing was
    /// started.
    #[error("new issuance is limited while the server catches up; retry after {retry_after_seconds} seconds")]
    Busy {
        /// How long the client should wait before trying again.
        retry_after_seconds: u64,
    },
    /// A renewal by certificate was refused (`Authority::check_renewal`).
    #[error("renewal refused: {0}")]
    RenewalRefused(RenewalRefusal),
}

impl From<StoreError> for AuthorityError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl AuthorityError {
    /// The cross-crate meaning, for protocol edges to map.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::UnknownEndpoint { .. } | Self::NotFound => ErrorKind::NotFound,
            Self::UnknownProfile(_) | Self::WeakSignatureAlgorithm => ErrorKind::PolicyRefused,
            Self::Csr(CsrError::BadSignature) => ErrorKind::BadSignature,
            Self::Csr(CsrError::UnsupportedCurve(_) | CsrError::UnsupportedKeyAlgorithm(_)) => ErrorKind::BadPublicKey,
            Self::Csr(_) => ErrorKind::Malformed,
            Self::KeyNotAllowed { .. } => ErrorKind::BadPublicKey,
            Self::NameNotAllowed { .. }
            | Self::SubjectNotAllowed { .. }
            | Self::WildcardNotAllowed(_)
            | Self::TooManyNames { .. }
            | Self::NoNames(_)
            | Self::UnsupportedSan(_) => ErrorKind::RejectedIdentifier,
            Self::BadValidity(_) => ErrorKind::BadValidity,
            Self::AlreadyRevoked => ErrorKind::Conflict,
            Self::RenewalRefused(_) => ErrorKind::Unauthorized,
            Self::Busy { .. } => ErrorKind::Unavailable,
            Self::Store(e) => e.kind(),
            Self::Signer(e) => e.kind(),
            Self::Config(_) | Self::SigningTask(_) => ErrorKind::Internal,
        }
    }
}
