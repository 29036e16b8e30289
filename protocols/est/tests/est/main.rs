//! certgate-est integration tests (one binary): a real CA, a real sled store in a temporary
//! directory, real CSRs and signatures; issued certificates re-checked with openssl.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should stop the test loudly

mod approval_races;
mod authorization;
mod flows;
mod harness;
mod limits;
mod redaction;
