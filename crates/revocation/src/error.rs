use certgate_core::{ErrorKind, Name};
use certgate_signer::SignerError;
use certgate_store::StoreError;

use crate::MAX_REQUEST_LEN;

/// A failure in CRL or OCSP handling.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RevocationError {
    /// The bytes are not a well-formed OCSPRequest (or a GET path's base64 does not decode).
    #[error("malformed OCSP request: {0}")]
    MalformedRequest(&'static str),
    /// The request is larger than [`MAX_REQUEST_LEN`].
    #[error("OCSP request larger than {MAX_REQUEST_LEN} bytes")]
    RequestTooLarge,
    /// No configured issuer has this name.
    #[error("unknown issuer {0}")]
    UnknownIssuer(Name),
    /// The settings or issuers cannot work (a non-positive validity, an issuer listed twice).
    #[error("revocation settings: {0}")]
    Config(String),
    /// Reading the store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Signing a CRL or creating the OCSP signer failed.
    #[error("signer: {0}")]
    Signer(#[from] SignerError),
    /// A response could not be encoded.
    #[error("encoding an OCSP response: {0}")]
    Encoding(der::Error),
    /// A blocking signing task panicked or was cancelled.
    #[error("signing task failed: {0}")]
    Task(String),
}

impl RevocationError {
    /// The cross-crate meaning of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::MalformedRequest(_) | Self::RequestTooLarge => ErrorKind::Malformed,
            Self::UnknownIssuer(_) => ErrorKind::NotFound,
            _ => ErrorKind::Internal,
        }
    }
}

impl From<der::Error> for RevocationError {
    fn from(e: der::Error) -> Self {
        Self::Encoding(e)
    }
}
