//! certgate-acme: RFC 8555 for certgate. Work in progress (issue 3): this crate has the JWS
//! profile (strict flattened-JSON parsing, key and algorithm checks, signature verification on
//! aws-lc-rs, RFC 7638 thumbprints), replay nonces over the store, and problem documents. The HTTP layer, the
//! account/order/authorization state machine and the daemon wiring are not built yet; the daemon
//! serves no ACME endpoint.
#![warn(missing_docs)]

pub mod jws;
pub mod nonce;
pub mod problem;
