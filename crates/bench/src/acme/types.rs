//! ACME resources as the flow helpers read them; unknown fields and status values are tolerated.

use std::fmt;
use std::time::Duration;

use hyper::body::Bytes;
use hyper::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The directory (RFC 8555 section 7.1.1).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Directory {
    /// newNonce URL.
    pub new_nonce: String,
    /// newAccount URL.
    pub new_account: String,
    /// newOrder URL.
    pub new_order: String,
    /// revokeCert URL.
    #[serde(default)]
    pub revoke_cert: Option<String>,
    /// keyChange URL.
    #[serde(default)]
    pub key_change: Option<String>,
    /// The `meta` object as sent.
    #[serde(default)]
    pub meta: Option<Value>,
}

/// Object status; values this client does not know read as `Unknown` (RFC 8555 allows new ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// pending
    Pending,
    /// ready (orders)
    Ready,
    /// processing
    Processing,
    /// valid
    Valid,
    /// invalid
    Invalid,
    /// revoked
    Revoked,
    /// deactivated
    Deactivated,
    /// expired
    Expired,
    /// Any value not listed above.
    #[serde(other)]
    Unknown,
}

/// An identifier (`{"type": "dns", "value": "example.com"}`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Identifier {
    /// `dns`, `ip`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The name or address.
    pub value: String,
}

/// An account object plus its URL (from the Location header).
#[derive(Clone, Debug, Deserialize)]
pub struct Account {
    /// The account URL, the `kid` of later requests.
    #[serde(skip)]
    pub url: String,
    /// Account status.
    pub status: Status,
    /// Contact URLs.
    #[serde(default)]
    pub contact: Vec<String>,
    /// The orders list URL.
    #[serde(default)]
    pub orders: Option<String>,
}

/// An order object plus its URL.
#[derive(Clone, Debug, Deserialize)]
pub struct Order {
    /// The order URL (Location of newOrder).
    #[serde(skip)]
    pub url: String,
    /// Order status.
    pub status: Status,
    /// Identifiers ordered.
    #[serde(default)]
    pub identifiers: Vec<Identifier>,
    /// Authorization URLs.
    #[serde(default)]
    pub authorizations: Vec<String>,
    /// finalize URL.
    pub finalize: String,
    /// Certificate URL, once valid.
    #[serde(default)]
    pub certificate: Option<String>,
    /// The error that made the order invalid.
    #[serde(default)]
    pub error: Option<Value>,
}

/// An authorization object plus its URL.
#[derive(Clone, Debug, Deserialize)]
pub struct Authorization {
    /// The authorization URL.
    #[serde(skip)]
    pub url: String,
    /// The identifier it is for.
    pub identifier: Identifier,
    /// Authorization status.
    pub status: Status,
    /// Offered challenges.
    #[serde(default)]
    pub challenges: Vec<Challenge>,
    /// True for a wildcard order's base domain.
    #[serde(default)]
    pub wildcard: Option<bool>,
}

impl Authorization {
    /// The challenge of the given type (`http-01`, `dns-01`, `tls-alpn-01`).
    pub fn challenge(&self, kind: &str) -> Option<&Challenge> {
        self.challenges.iter().find(|c| c.kind == kind)
    }
}

/// A challenge object.
#[derive(Clone, Debug, Deserialize)]
pub struct Challenge {
    /// Challenge type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Challenge URL (POST `{}` to it to respond).
    pub url: String,
    /// Challenge status.
    pub status: Status,
    /// The token, for the types that have one.
    #[serde(default)]
    pub token: Option<String>,
    /// The validation error, if any.
    #[serde(default)]
    pub error: Option<Value>,
}

/// An RFC 7807 problem document as ACME servers send them.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// `urn:ietf:params:acme:error:...`
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Human-readable detail.
    #[serde(default)]
    pub detail: Option<String>,
    /// HTTP status repeated in the body.
    #[serde(default)]
    pub status: Option<u16>,
    /// Subproblems (RFC 8555 section 6.7.1), as sent.
    #[serde(default)]
    pub subproblems: Option<Vec<Value>>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

/// The ACME error type URN prefix.
pub const ACME_ERROR: &str = "urn:ietf:params:acme:error:";

/// An HTTP answer, body fully read.
#[derive(Clone, Debug)]
pub struct Response {
    /// HTTP status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Response {
    /// The body as JSON.
    pub fn json(&self) -> Result<Value, crate::Error> {
        Ok(serde_json::from_slice(&self.body)?)
    }

    /// The body as a problem document, when it parses as one with a `type`.
    pub fn problem(&self) -> Option<Problem> {
        serde_json::from_slice::<Problem>(&self.body)
            .ok()
            .filter(|p| !p.kind.is_empty())
    }

    /// True when the body is a problem of the given ACME error (`"badNonce"`, `"malformed"`).
    pub fn is_acme_error(&self, name: &str) -> bool {
        self.problem()
            .and_then(|p| p.kind.strip_prefix(ACME_ERROR).map(|k| k == name))
            .unwrap_or(false)
    }

    /// A header value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `Location` header.
    pub fn location(&self) -> Option<&str> {
        self.header("location")
    }

    /// The `Replay-Nonce` header.
    pub fn nonce(&self) -> Option<&str> {
        self.header("replay-nonce")
    }

    /// `Retry-After` given in seconds (an HTTP date reads as absent: only short waits matter).
    pub fn retry_after(&self) -> Option<Duration> {
        self.header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
    }
}
