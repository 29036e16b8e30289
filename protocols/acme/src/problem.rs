//! RFC 8555 problem documents (RFC 7807 `application/problem+json`), with subproblems. Errors
//! from the rest of certgate become problems only here, at the protocol edge.

use serde::Serialize;

use crate::jws::JwsError;

/// The ACME error types (RFC 8555 6.7, plus RFC 8555's IANA registry entries in use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProblemType {
    /// The request specified an account that does not exist.
    AccountDoesNotExist,
    /// The certificate is already revoked.
    AlreadyRevoked,
    /// The CSR is unacceptable (e.g. its names differ from the order's identifiers).
    BadCsr,
    /// The nonce was unacceptable.
    BadNonce,
    /// The JWS or CSR key is unacceptable.
    BadPublicKey,
    /// The revocation reason is not allowed.
    BadRevocationReason,
    /// The JWS algorithm is not supported.
    BadSignatureAlgorithm,
    /// CAA records forbid issuance.
    Caa,
    /// Several errors: see subproblems.
    Compound,
    /// The server could not connect to the validation target.
    Connection,
    /// A DNS problem during validation.
    Dns,
    /// The server requires external account binding.
    ExternalAccountRequired,
    /// The response to a challenge did not satisfy it.
    IncorrectResponse,
    /// A contact URL for an account was invalid.
    InvalidContact,
    /// The request message was malformed.
    Malformed,
    /// The order is not in a state that allows this request (finalize before ready).
    OrderNotReady,
    /// A rate limit was exceeded.
    RateLimited,
    /// The server will not issue for the identifier.
    RejectedIdentifier,
    /// The server had an internal error.
    ServerInternal,
    /// A TLS problem during validation.
    Tls,
    /// The client lacks authorization.
    Unauthorized,
    /// A contact URL uses an unsupported scheme.
    UnsupportedContact,
    /// An identifier type is not supported.
    UnsupportedIdentifier,
    /// The user must visit the terms of service.
    UserActionRequired,
    /// The requested profile is not offered (draft-aaron-acme-profiles).
    InvalidProfile,
    /// The certificate named in `replaces` was already replaced (RFC 9773).
    AlreadyReplaced,
}

impl ProblemType {
    /// The short name (`badNonce`).
    pub fn name(self) -> &'static str {
        match self {
            Self::AccountDoesNotExist => "accountDoesNotExist",
            Self::AlreadyRevoked => "alreadyRevoked",
            Self::BadCsr => "badCSR",
            Self::BadNonce => "badNonce",
            Self::BadPublicKey => "badPublicKey",
            Self::BadRevocationReason => "badRevocationReason",
            Self::BadSignatureAlgorithm => "badSignatureAlgorithm",
            Self::Caa => "caa",
            Self::Compound => "compound",
            Self::Connection => "connection",
            Self::Dns => "dns",
            Self::ExternalAccountRequired => "externalAccountRequired",
            Self::IncorrectResponse => "incorrectResponse",
            Self::InvalidContact => "invalidContact",
            Self::Malformed => "malformed",
            Self::OrderNotReady => "orderNotReady",
            Self::RateLimited => "rateLimited",
            Self::RejectedIdentifier => "rejectedIdentifier",
            Self::ServerInternal => "serverInternal",
            Self::Tls => "tls",
            Self::Unauthorized => "unauthorized",
            Self::UnsupportedContact => "unsupportedContact",
            Self::UnsupportedIdentifier => "unsupportedIdentifier",
            Self::UserActionRequired => "userActionRequired",
            Self::InvalidProfile => "invalidProfile",
            Self::AlreadyReplaced => "alreadyReplaced",
        }
    }

    /// The `type` URN.
    pub fn urn(self) -> String {
        format!("urn:ietf:params:acme:error:{}", self.name())
    }

    /// The HTTP status used with it (Boulder's choices where RFC 8555 leaves it open).
    pub fn status(self) -> u16 {
        match self {
            Self::Unauthorized
            | Self::OrderNotReady
            | Self::UserActionRequired
            | Self::Caa
            | Self::IncorrectResponse => 403,
            Self::RateLimited => 429,
            Self::AlreadyReplaced => 409,
            Self::ServerInternal => 500,
            _ => 400,
        }
    }
}

/// An identifier as it appears in problems and orders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProblemIdentifier {
    /// `dns` or `ip`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The name.
    pub value: String,
}

/// A subproblem: what went wrong for one identifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subproblem {
    /// The type URN.
    #[serde(rename = "type")]
    pub kind: String,
    /// Human-readable detail.
    pub detail: String,
    /// The identifier it concerns.
    pub identifier: ProblemIdentifier,
}

/// A problem document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The type URN.
    #[serde(rename = "type")]
    pub kind: String,
    /// Human-readable detail; never internal detail.
    pub detail: String,
    /// The HTTP status, repeated in the body (RFC 7807).
    pub status: u16,
    /// Per-identifier problems.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subproblems: Vec<Subproblem>,
    /// For badSignatureAlgorithm: the algorithms that are accepted (RFC 8555 6.2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithms: Option<Vec<&'static str>>,
    /// For rateLimited: seconds until the limit's window ends, for the `Retry-After` header.
    #[serde(skip)]
    pub retry_after_seconds: Option<u64>,
}

impl Problem {
    /// A problem of `kind` with `detail`.
    pub fn new(kind: ProblemType, detail: impl Into<String>) -> Self {
        Self {
            kind: kind.urn(),
            detail: detail.into(),
            status: kind.status(),
            subproblems: Vec::new(),
            algorithms: None,
            retry_after_seconds: None,
        }
    }

    /// The same problem with a `Retry-After` of `seconds`.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_seconds = Some(seconds);
        self
    }

    /// Adds a subproblem for one identifier.
    pub fn with_subproblem(
        mut self,
        kind: ProblemType,
        detail: impl Into<String>,
        identifier: ProblemIdentifier,
    ) -> Self {
        self.subproblems.push(Subproblem {
            kind: kind.urn(),
            detail: detail.into(),
            identifier,
        });
        self
    }

    /// The same problem with another HTTP status (404 for unknown resources, 413, 415, 405).
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// The body, `application/problem+json`.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing these plain strings and numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_else(|_| br#"{"type":"urn:ietf:params:acme:error:serverInternal"}"#.to_vec())
    }
}

impl From<JwsError> for Problem {
    fn from(e: JwsError) -> Self {
        match &e {
            JwsError::Malformed(_) | JwsError::BadSignature => Problem::new(ProblemType::Malformed, e.to_string()),
            JwsError::BadPublicKey(_) => Problem::new(ProblemType::BadPublicKey, e.to_string()),
            JwsError::BadSignatureAlgorithm(_) => Problem {
                algorithms: Some(crate::jws::Algorithm::NAMES.to_vec()),
                ..Problem::new(ProblemType::BadSignatureAlgorithm, e.to_string())
            },
        }
    }
}
