//! certgate-acme integration tests (one binary).

mod catalogue;
mod flows;
mod harness;
mod jws;
mod limits;
mod nonce;
mod problem;
