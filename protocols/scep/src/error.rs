//! The crate's one error type. A client's mistake inside a parseable PKIMessage becomes a
//! signed CertRep with pkiStatus FAILURE and a failInfo ([`ScepError::fail_info`]); only input
//! that cannot be parsed at all becomes an HTTP 400, and only server faults a 500
//! ([`ScepError::status`]). Internal detail is logged, never sent.

use certgate_authority::AuthorityError;
use certgate_core::{CsrError, ErrorKind};
use certgate_store::StoreError;

/// RFC 8894 3.2.1.4 failInfo values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailInfo {
    /// 0: unrecognized or unsupported algorithm.
    BadAlg,
    /// 1: integrity check (signature or decryption) failed.
    BadMessageCheck,
    /// 2: transaction not permitted or supported.
    BadRequest,
    /// 3: the signingTime attribute was not sufficiently close to the system time.
    BadTime,
    /// 4: no certificate could be identified matching the provided criteria.
    BadCertId,
}

impl FailInfo {
    /// The decimal string carried in the failInfo attribute.
    pub fn code(self) -> &'static str {
        match self {
            Self::BadAlg => "0",
            Self::BadMessageCheck => "1",
            Self::BadRequest => "2",
            Self::BadTime => "3",
            Self::BadCertId => "4",
        }
    }

    /// The name, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadAlg => "badAlg",
            Self::BadMessageCheck => "badMessageCheck",
            Self::BadRequest => "badRequest",
            Self::BadTime => "badTime",
            Self::BadCertId => "badCertId",
        }
    }

    /// The value for a failInfo code.
    pub fn from_code(code: &str) -> Option<Self> {
        [
            Self::BadAlg,
            Self::BadMessageCheck,
            Self::BadRequest,
            Self::BadTime,
            Self::BadCertId,
        ]
        .into_iter()
        .find(|f| f.code() == code)
    }
}

/// Why a SCEP request was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScepError {
    /// The path is not a SCEP resource.
    #[error("no such SCEP resource")]
    NotFound,
    /// The path names no SCEP endpoint.
    #[error("no SCEP endpoint named {0:?}")]
    UnknownEndpoint(String),
    /// The method is neither GET nor POST (or POST for a GET-only operation).
    #[error("method not allowed; use {allow}")]
    MethodNotAllowed {
        /// The allowed methods.
        allow: &'static str,
    },
    /// No, or an unknown, `operation` parameter.
    #[error("unknown or missing SCEP operation {0:?}")]
    UnknownOperation(String),
    /// GetNextCACert while the endpoint has no next CA.
    #[error("this endpoint has no next CA certificate")]
    NoNextCa,
    /// A PKIOperation without a message (empty POST body, no `message=`).
    #[error("empty PKIOperation: the request carries no message")]
    EmptyMessage,
    /// The body exceeded the size limit.
    #[error("request body too large")]
    BodyTooLarge,
    /// The message is not a PKIMessage that can be answered at all (not base64, not a
    /// SignedData, no signer, no transactionID, messageType or senderNonce).
    #[error("malformed PKIMessage: {0}")]
    Malformed(&'static str),
    /// A client fault inside a parseable PKIMessage: answered with a signed CertRep FAILURE.
    #[error("{text}")]
    Failure {
        /// failInfo.
        info: FailInfo,
        /// failInfoText (sent to the client: never internal detail).
        text: String,
    },
    /// The CSR does not parse or its signature does not verify.
    #[error("bad CSR: {0}")]
    Csr(#[from] CsrError),
    /// The authority refused or failed.
    #[error(transparent)]
    Authority(#[from] AuthorityError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The signer (RA key) failed.
    #[error("signer: {0}")]
    Signer(#[from] certgate_authority::SignerError),
    /// Encoding a response failed.
    #[error("encoding failed: {0}")]
    Encoding(String),
    /// The challenge webhook could not be asked (unreachable, timeout, bad answer).
    #[error("challenge webhook: {0}")]
    Webhook(String),
    /// A blocking RSA task did not complete.
    #[error("background task failed: {0}")]
    Task(String),
    /// Too many requests in flight on this endpoint.
    #[error("the server is busy; retry later")]
    Overloaded {
        /// Seconds for `Retry-After`.
        retry_after: u32,
    },
    /// Something that cannot happen did.
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// The SCEP configuration is inconsistent.
    #[error("SCEP configuration: {0}")]
    Config(String),
}

impl From<der::Error> for ScepError {
    fn from(e: der::Error) -> Self {
        Self::Encoding(e.to_string())
    }
}

/// The failInfoText of every failure on the decryption path ([`ScepError::undecryptable`]).
const UNDECRYPTABLE_TEXT: &str = "the message could not be decrypted or decoded";

impl ScepError {
    /// A CertRep failure.
    pub fn failure(info: FailInfo, text: impl Into<String>) -> Self {
        Self::Failure {
            info,
            text: text.into(),
        }
    }

    /// The one answer to every failure on the decryption path: the content key does not
    /// unwrap (PKCS#1 v1.5 or OAEP padding, key length), the content does not decrypt or
    /// unpad, or the plaintext does not decode as what the messageType promises (CSR,
    /// IssuerAndSerialNumber, IssuerAndSubject). FAILURE badMessageCheck with one text, so a
    /// client cannot tell which step failed: anything finer is a padding oracle
    /// (Bleichenbacher; RFC 8017 7.2.2 note).
    pub fn undecryptable() -> Self {
        Self::failure(FailInfo::BadMessageCheck, UNDECRYPTABLE_TEXT)
    }

    /// The cross-crate meaning.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound | Self::UnknownEndpoint(_) | Self::NoNextCa => ErrorKind::NotFound,
            Self::MethodNotAllowed { .. }
            | Self::UnknownOperation(_)
            | Self::EmptyMessage
            | Self::BodyTooLarge
            | Self::Malformed(_) => ErrorKind::Malformed,
            Self::Failure { info, .. } => match info {
                FailInfo::BadMessageCheck => ErrorKind::BadSignature,
                FailInfo::BadCertId => ErrorKind::NotFound,
                _ => ErrorKind::Unauthorized,
            },
            Self::Csr(CsrError::BadSignature) => ErrorKind::BadSignature,
            Self::Csr(_) => ErrorKind::Malformed,
            Self::Authority(e) => e.kind(),
            Self::Store(e) => e.kind(),
            Self::Signer(_)
            | Self::Encoding(_)
            | Self::Webhook(_)
            | Self::Task(_)
            | Self::Overloaded { .. }
            | Self::Internal(_)
            | Self::Config(_) => ErrorKind::Internal,
        }
    }

    /// Whether this error is the client's (answered as a CertRep FAILURE when a PKIMessage
    /// was parsed) rather than the server's.
    pub fn is_client_fault(&self) -> bool {
        match self {
            Self::Failure { .. } | Self::Csr(_) => true,
            Self::Authority(e) => !matches!(e.kind(), ErrorKind::Internal),
            _ => false,
        }
    }

    /// The failInfo and failInfoText of the CertRep FAILURE answering this error (for server
    /// faults: badRequest with a generic text).
    pub fn fail_info(&self) -> (FailInfo, String) {
        match self {
            Self::Failure { info, text } => (*info, text.clone()),
            Self::Csr(CsrError::BadSignature) => (FailInfo::BadMessageCheck, self.to_string()),
            Self::Csr(_) => (FailInfo::BadRequest, self.to_string()),
            Self::Authority(e) if !matches!(e.kind(), ErrorKind::Internal) => {
                let info = match e {
                    AuthorityError::WeakSignatureAlgorithm => FailInfo::BadAlg,
                    AuthorityError::Csr(CsrError::BadSignature) => FailInfo::BadMessageCheck,
                    _ => FailInfo::BadRequest,
                };
                (info, e.to_string())
            }
            _ => (
                FailInfo::BadRequest,
                "the server failed to handle the request".to_owned(),
            ),
        }
    }

    /// The HTTP status when this error is answered without a CertRep.
    pub fn status(&self) -> u16 {
        match self {
            Self::NotFound | Self::UnknownEndpoint(_) | Self::NoNextCa => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::BodyTooLarge => 413,
            Self::UnknownOperation(_) | Self::EmptyMessage | Self::Malformed(_) => 400,
            Self::Overloaded { .. } => 503,
            _ if self.is_client_fault() => 400,
            _ => 500,
        }
    }

    /// The plain-text body of an HTTP error: the error's own text for client faults, a
    /// generic sentence for server faults.
    pub fn client_text(&self) -> String {
        if self.status() >= 500 && !matches!(self, Self::Overloaded { .. }) {
            "the server failed to handle the request\n".to_owned()
        } else {
            format!("{self}\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_fail_infos() {
        let cases = [
            ("not_found", ScepError::NotFound, 404, None),
            ("method", ScepError::MethodNotAllowed { allow: "GET, POST" }, 405, None),
            ("empty", ScepError::EmptyMessage, 400, None),
            ("malformed", ScepError::Malformed("x"), 400, None),
            ("overloaded", ScepError::Overloaded { retry_after: 5 }, 503, None),
            (
                "bad_alg",
                ScepError::failure(FailInfo::BadAlg, "SHA-1 refused"),
                400,
                Some(FailInfo::BadAlg),
            ),
            (
                "bad_csr_signature",
                ScepError::Csr(CsrError::BadSignature),
                400,
                Some(FailInfo::BadMessageCheck),
            ),
            (
                "weak_csr",
                ScepError::Authority(AuthorityError::WeakSignatureAlgorithm),
                400,
                Some(FailInfo::BadAlg),
            ),
            (
                "store",
                ScepError::Store(StoreError::Backend("disk on fire".into())),
                500,
                Some(FailInfo::BadRequest),
            ),
        ];
        for (case, error, status, info) in cases {
            assert_eq!(error.status(), status, "case {case}");
            if let Some(info) = info {
                let (got, text) = error.fail_info();
                assert_eq!(got, info, "case {case}");
                assert!(!text.contains("disk"), "case {case}: internal detail leaked");
            }
            if status == 500 {
                assert!(!error.client_text().contains("disk"), "case {case}");
            }
        }
        for code in ["0", "1", "2", "3", "4"] {
            assert_eq!(FailInfo::from_code(code).map(FailInfo::code), Some(code));
        }
    }
}
