//! certgate-bench: an ACME load generator and the small ACME client it is built on.
//!
//! [`acme`] is a client library usable against any RFC 8555 server (certgate's negative test
//! catalogue forges requests with it); [`load`] drives many such clients against a server and
//! measures certificates per second, latency per full order, and CPU per certificate from
//! `/proc`. It depends on no certgate crate, so it measures Pebble and certgate alike.

#![warn(missing_docs)]

pub mod acme;
mod error;
pub mod load;
pub mod proc_stat;

pub use error::Error;
