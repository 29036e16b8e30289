//! certgate-acme: RFC 8555 (with RFC 8737 tls-alpn-01, RFC 8738 IP identifiers, RFC 8657/8659
//! CAA, RFC 9773 renewal information and draft-aaron-acme-profiles) for certgate.
//!
//! [`http::AcmeServer`] routes requests under `/acme/{endpoint}/`, authenticates their JWS
//! ([`jws`], [`nonce`]), and drives the account/order/authorization state machine ([`flow`])
//! over an [`certgate_store::AcmeStore`]; validation runs in `certgate-validation`, issuance
//! and revocation in the authority. Errors become problem documents ([`problem`]) only here.
//!
//! Nothing a client sends without a valid JWS signature is written to the store: nonces are
//! issued without state and redeemed only after the signature verified ([`nonce`]). Rate
//! limits are on by default ([`RateLimits::default`], counted in memory by [`ratelimit`]) and
//! validations wait in a bounded queue ([`pool`]).
#![warn(missing_docs)]

pub mod ari;
pub mod config;
pub mod eab;
pub mod flow;
pub mod http;
pub mod jws;
pub mod nonce;
pub mod pool;
pub mod problem;
pub mod ratelimit;

pub use certgate_validation::AddressPolicy;
pub use config::{AcmeEndpointConfig, RateLimits};
pub use http::{AcmeError, AcmeRequest, AcmeResponse, AcmeServer};
