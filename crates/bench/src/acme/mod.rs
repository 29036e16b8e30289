//! A small RFC 8555 ACME client, cheap enough to be a load generator and loose enough to forge
//! bad requests for negative tests.
//!
//! It does: one kept-alive HTTP/1.1 connection per [`Client`] (TCP_NODELAY, rustls), nonce
//! bookkeeping with one `badNonce` retry, JWS signing with ES256, RS256 or EdDSA, EAB, the
//! account, order, challenge, finalize, download, revoke, key-change and deactivate flows, CSRs,
//! and a shared http-01 responder. It does not: validate a server's answers beyond what the
//! flows need, serve dns-01 or tls-alpn-01 answers, or keep state on disk.

mod client;
mod csr;
mod jws;
mod key;
mod responder;
#[cfg(test)]
mod testutil;
mod transport;
mod types;

pub use client::{Client, JOSE_JSON, MAX_POLL_BACKOFF, MAX_RETRY_AFTER, RevokeBy, expect_success};
pub use csr::{CsrKey, csr_p256};
pub use jws::{FlatJws, JwsParts, Payload, Signer, eab_jws, key_change_inner};
pub use key::{AccountKey, KeyAlg, b64, dns01_txt_value, jwk_thumbprint};
pub use responder::{CHALLENGE_PATH, Http01Responder, Http01Tokens};
pub use transport::{Connector, DEFAULT_TIMEOUT, Trust};
pub use types::{
    ACME_ERROR, Account, Authorization, Challenge, Directory, Identifier, Order, Problem, Response, Status,
};

pub use crate::Error;
