//! certgate-scep integration tests (one binary): a real CA and RA, a real sled store in a
//! temporary directory, PKIMessages built by the crate's test client (`test-client` feature)
//! with real crypto; issued certificates and one CertRep re-checked with openssl.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should stop the test loudly

mod approval_races;
mod authorization;
mod flows;
mod harness;
mod real_clients;
mod shedding;
