//! certgate, the daemon and its command line. `main.rs` only calls [`cli::main`]; everything
//! here is a library so it can be tested.
//!
//! The daemon wires configuration, issuers, the store and the authority together, serves
//! HTTPS and HTTP listeners and a local admin socket, and holds no protocol logic: protocol
//! crates plug their routers into [`server::Router`].
#![warn(missing_docs)]

pub mod admin;
pub mod cli;
pub mod config;
pub mod connections;
pub mod http;
pub mod inventory;
pub mod jobs;
pub mod listener;
pub mod scep_webhook;
pub mod serve;
pub mod server;
pub mod shedding;
pub mod tls;
pub mod wiring;
