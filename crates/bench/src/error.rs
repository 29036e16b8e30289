//! The crate's one error type.

use std::time::Duration;

use hyper::StatusCode;

use crate::acme::Problem;

impl Error {
    /// How long the server asked a client to wait (a shed or rate-limited request), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Server {
                status, retry_after, ..
            } if *status == StatusCode::TOO_MANY_REQUESTS || *status == StatusCode::SERVICE_UNAVAILABLE => *retry_after,
            _ => None,
        }
    }
}

/// Everything that can go wrong in the ACME client, the responder or a load run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A URL could not be parsed or has no host.
    #[error("bad URL {url:?}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A socket, file or TCP-level failure.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// The TLS client configuration could not be built (bad root file, no roots).
    #[error("TLS setup: {0}")]
    Tls(String),
    /// HTTP-level failure on a connection.
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    /// A request header could not be built from the given value.
    #[error("invalid HTTP request: {0}")]
    Request(#[from] hyper::http::Error),
    /// No answer within the per-request timeout.
    #[error("no answer from {url} within {timeout:?}")]
    Timeout {
        /// The URL that did not answer.
        url: String,
        /// The limit that passed.
        timeout: Duration,
    },
    /// A body was not the JSON expected.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The server answered with an error status (its problem document when it sent one).
    #[error("{url}: HTTP {status}: {}", problem.as_ref().map_or("(no problem document)".to_owned(), |p| p.to_string()))]
    Server {
        /// The URL requested.
        url: String,
        /// The status the server answered.
        status: StatusCode,
        /// The RFC 7807 problem document, when the body was one.
        problem: Option<Box<Problem>>,
        /// The answer's `Retry-After`, in seconds.
        retry_after: Option<Duration>,
    },
    /// The answer lacked something RFC 8555 requires (a Location, a Replay-Nonce, a field).
    #[error("{url}: answer lacks {what}")]
    Missing {
        /// The URL requested.
        url: String,
        /// What was missing.
        what: &'static str,
    },
    /// An object the client polled reached a final state other than the one wanted.
    #[error("{url} became {status}: {body}")]
    Failed {
        /// The object's URL.
        url: String,
        /// The final status.
        status: String,
        /// The object as last fetched.
        body: serde_json::Value,
    },
    /// Polling did not reach the wanted state within the poll timeout.
    #[error("{url} still {status} after {timeout:?}")]
    PollTimeout {
        /// The object's URL.
        url: String,
        /// The last status seen.
        status: String,
        /// The limit that passed.
        timeout: Duration,
    },
    /// The authorization offers no challenge of the wanted type.
    #[error("authorization {url} offers no {kind} challenge")]
    NoChallenge {
        /// The authorization URL.
        url: String,
        /// The wanted challenge type.
        kind: String,
    },
    /// A flow helper needs an account URL and the client has none yet.
    #[error("no account: call new_account or set_account first")]
    NoAccount,
    /// A key could not be generated, parsed or used.
    #[error("key: {0}")]
    Key(String),
    /// A JWK lacks a member RFC 7638 needs, or has an unknown key type.
    #[error("JWK: {0}")]
    Jwk(&'static str),
    /// The CSR could not be built.
    #[error("CSR: {0}")]
    Csr(#[from] rcgen::Error),
    /// A spawned task panicked or was cancelled.
    #[error("task failed: {0}")]
    Task(String),
    /// A `/proc` file could not be read or parsed.
    #[error("{path}: {reason}")]
    Proc {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
