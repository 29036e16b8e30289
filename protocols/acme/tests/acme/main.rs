//! certgate-acme integration tests (one binary).

mod jws;
mod nonce;
mod problem;
