//! certgate-lifecycle against real parts: a real authority issuing into a real sled store, a
//! real webhook receiver (hyper on 127.0.0.1) that checks every signature independently, and
//! real TLS servers (tokio-rustls) for deployment checks. Time is a `ManualClock`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should stop the test loudly

mod deployment;
mod monitor;
mod notifier;
mod support;
