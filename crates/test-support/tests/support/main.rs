//! certgate-test-support integration tests (one binary): the crash test and the layering check.

mod crash;
mod layering;
