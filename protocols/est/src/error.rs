//! The crate's one error type, mapped to an HTTP status only at the edge ([`EstError::status`]).

use certgate_authority::AuthorityError;
use certgate_core::{CsrError, ErrorKind};
use certgate_store::StoreError;

/// Why an EST request was refused or failed. Every variant maps to one HTTP status and a
/// plain-text reason for the client ([`EstError::client_text`]); internal detail is logged,
/// never sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EstError {
    /// The path is not an EST operation under `/.well-known/est/`.
    #[error("no such EST resource")]
    NotFound,
    /// The label names no EST endpoint.
    #[error("no EST endpoint labelled {0:?}")]
    UnknownEndpoint(String),
    /// The method is not allowed for the operation.
    #[error("method not allowed; use {allow}")]
    MethodNotAllowed {
        /// The allowed method.
        allow: &'static str,
    },
    /// An operation certgate does not implement (fullcmc).
    #[error("{0} is not implemented by this server")]
    NotImplemented(&'static str),
    /// The body exceeded [`crate::MAX_BODY_LEN`].
    #[error("request body too large")]
    BodyTooLarge,
    /// The Content-Type is none certgate accepts for the operation.
    #[error("unsupported content type {0:?}; send application/pkcs10")]
    UnsupportedContentType(String),
    /// The body is not a base64, PEM or DER PKCS#10 request.
    #[error("malformed request body: {0}")]
    MalformedBody(&'static str),
    /// The CSR does not parse or its signature does not verify.
    #[error("bad CSR: {0}")]
    Csr(#[from] CsrError),
    /// The CSR lacks attributes the endpoint's csrattrs require.
    #[error("the CSR lacks required attributes: {}", .0.join(", "))]
    MissingCsrAttributes(Vec<String>),
    /// No, or wrong, credentials (HTTP Basic or TLS client certificate).
    #[error("authentication required")]
    Unauthenticated {
        /// The realm for `WWW-Authenticate`.
        realm: String,
    },
    /// EST is only served over TLS.
    #[error("EST requires TLS")]
    TlsRequired,
    /// The channel binding in the CSR's challengePassword is missing or does not match
    /// this TLS connection.
    #[error("channel binding failed: {0}")]
    ChannelBinding(&'static str),
    /// The TLS client certificate verified against the endpoint's anchors but certgate issued
    /// it and has revoked it, or it has expired. (A re-enrollment the renewal rule refuses is
    /// [`AuthorityError::RenewalRefused`].)
    #[error("client certificate refused: {0}")]
    CertificateRefused(&'static str),
    /// An operator denied the request, or it belongs to another requester.
    #[error("{0}")]
    ApprovalRefused(&'static str),
    /// The endpoint does not offer server-side key generation.
    #[error("server-side key generation is not enabled on this endpoint")]
    ServerKeygenDisabled,
    /// Too many issuances in flight.
    #[error("the server is busy; retry later")]
    Overloaded {
        /// Seconds for `Retry-After`.
        retry_after: u32,
    },
    /// HTTP Basic checks from the client's address are over its limits (failed checks, or
    /// checks running at once; [`crate::AuthLimitConfig`]): refused before any password is
    /// hashed.
    #[error("too many password checks from this address; retry later")]
    TooManyAuthAttempts {
        /// Seconds for `Retry-After`.
        retry_after: u32,
    },
    /// The authority refused or failed.
    #[error(transparent)]
    Authority(#[from] AuthorityError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Generating a server-side key (or its CSR) failed.
    #[error("server key generation failed: {0}")]
    KeyGeneration(String),
    /// Encoding a response failed.
    #[error("encoding failed: {0}")]
    Encoding(String),
    /// A password check or key generation task did not complete.
    #[error("background task failed: {0}")]
    Task(String),
    /// The EST configuration is inconsistent.
    #[error("EST configuration: {0}")]
    Config(String),
}

impl EstError {
    /// The cross-crate meaning.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound | Self::UnknownEndpoint(_) => ErrorKind::NotFound,
            Self::MethodNotAllowed { .. }
            | Self::NotImplemented(_)
            | Self::BodyTooLarge
            | Self::UnsupportedContentType(_)
            | Self::MalformedBody(_)
            | Self::MissingCsrAttributes(_) => ErrorKind::Malformed,
            Self::Csr(CsrError::BadSignature) => ErrorKind::BadSignature,
            Self::Csr(_) => ErrorKind::Malformed,
            Self::Unauthenticated { .. } | Self::TooManyAuthAttempts { .. } => ErrorKind::Unauthenticated,
            Self::TlsRequired | Self::ChannelBinding(_) | Self::CertificateRefused(_) | Self::ApprovalRefused(_) => {
                ErrorKind::Unauthorized
            }
            Self::ServerKeygenDisabled => ErrorKind::PolicyRefused,
            Self::Overloaded { .. } => ErrorKind::Internal,
            Self::Authority(e) => e.kind(),
            Self::Store(e) => e.kind(),
            Self::KeyGeneration(_) | Self::Encoding(_) | Self::Task(_) | Self::Config(_) => ErrorKind::Internal,
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Self::NotFound | Self::UnknownEndpoint(_) => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::NotImplemented(_) => 501,
            Self::BodyTooLarge => 413,
            Self::UnsupportedContentType(_) => 415,
            Self::Unauthenticated { .. } => 401,
            Self::Overloaded { .. } => 503,
            Self::TooManyAuthAttempts { .. } => 429,
            Self::ServerKeygenDisabled => 404,
            Self::Authority(AuthorityError::UnknownEndpoint { .. }) => 404,
            other => match other.kind() {
                ErrorKind::Malformed | ErrorKind::BadSignature => 400,
                ErrorKind::BadPublicKey
                | ErrorKind::RejectedIdentifier
                | ErrorKind::BadValidity
                | ErrorKind::PolicyRefused
                | ErrorKind::Unauthorized
                | ErrorKind::Conflict => 403,
                ErrorKind::Unauthenticated => 401,
                ErrorKind::NotFound => 404,
                _ => 500,
            },
        }
    }

    /// The plain-text reason sent to the client: the error's own text for client faults, a
    /// generic sentence for server faults (whose detail only goes to the log).
    pub fn client_text(&self) -> String {
        if self.status() >= 500 && !matches!(self, Self::NotImplemented(_) | Self::Overloaded { .. }) {
            "the server failed to handle the request\n".to_owned()
        } else {
            format!("{self}\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use certgate_authority::RenewalRefusal;

    use super::*;

    #[test]
    fn statuses() {
        let cases = [
            ("not_found", EstError::NotFound, 404),
            ("unknown_label", EstError::UnknownEndpoint("x".into()), 404),
            ("method", EstError::MethodNotAllowed { allow: "GET" }, 405),
            ("fullcmc", EstError::NotImplemented("fullcmc"), 501),
            ("too_large", EstError::BodyTooLarge, 413),
            ("content_type", EstError::UnsupportedContentType("a/b".into()), 415),
            ("malformed", EstError::MalformedBody("x"), 400),
            ("bad_signature", EstError::Csr(CsrError::BadSignature), 400),
            ("missing_attrs", EstError::MissingCsrAttributes(vec!["x".into()]), 400),
            ("unauthenticated", EstError::Unauthenticated { realm: "r".into() }, 401),
            ("tls", EstError::TlsRequired, 403),
            ("binding", EstError::ChannelBinding("x"), 403),
            ("certificate_refused", EstError::CertificateRefused("revoked"), 403),
            (
                "renewal_refused",
                EstError::Authority(AuthorityError::RenewalRefused(RenewalRefusal::OtherEndpoint)),
                403,
            ),
            ("denied", EstError::ApprovalRefused("x"), 403),
            ("overloaded", EstError::Overloaded { retry_after: 5 }, 503),
            ("auth_attempts", EstError::TooManyAuthAttempts { retry_after: 6 }, 429),
            ("store", EstError::Store(StoreError::Backend("disk".into())), 500),
            ("keygen", EstError::KeyGeneration("x".into()), 500),
        ];
        for (case, error, status) in cases {
            assert_eq!(error.status(), status, "case {case}");
            let text = error.client_text();
            assert!(text.ends_with('\n'), "case {case}");
            if status == 500 {
                assert!(!text.contains("disk"), "case {case}: internal detail leaked");
            }
        }
    }
}
