//! certgate-est: Enrollment over Secure Transport (RFC 7030, with RFC 8951's clarifications
//! and RFC 9266 tls-exporter channel binding) for certgate.
//!
//! [`EstServer`] serves `/.well-known/est/<op>` (the endpoint named
//! [`config::DEFAULT_ENDPOINT`]) and `/.well-known/est/<label>/<op>`: `cacerts`,
//! `simpleenroll`, `simplereenroll`, `csrattrs` and `serverkeygen`; `fullcmc` answers 501.
//! It is independent of the HTTP library: the daemon hands it an [`EstRequest`] with the TLS
//! facts of the connection ([`TlsFacts`]) and writes back the [`EstResponse`].
//!
//! What it does: decode request bodies leniently ([`codec`]), authenticate (HTTP Basic users
//! with Argon2id hashes in [`certgate_store::EstUserStore`], client certificates chaining to
//! per-endpoint trust anchors, the renewed certificate for re-enrollment), check channel
//! binding and csrattrs, queue requests for manual approval
//! ([`certgate_store::ApprovalStore`]), and have the authority issue. What it does not do:
//! decide issuance policy (the authority does), touch CA keys, speak HTTP or TLS itself.
#![warn(missing_docs)]

mod auth_limit;
pub mod codec;
pub mod config;
pub mod csrattrs;
mod error;
pub mod keygen;
pub mod password;
mod server;
pub mod tls;

pub use auth_limit::AuthLimitConfig;
pub use codec::{MAX_BODY_LEN, Operation, decode_csr_body, parse_path};
pub use config::{Base64Layout, ClientAuth, CsrAttrsConfig, DEFAULT_ENDPOINT, EstEndpointConfig};
pub use error::EstError;
pub use password::{hash_password, verify_password};
pub use server::{
    EstRequest, EstResponse, EstServer, EstStores, MIN_PASSWORD_CHECKS, approval_fingerprint,
    default_password_check_limit, requester_of_user,
};
pub use tls::{TlsFacts, TlsVersion, check_channel_binding};
