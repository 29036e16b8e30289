//! The attack suite (issue 14): the built daemon, started on its embedded defaults (plus
//! the one setting an area needs, named in its file), driven over real sockets with hostile
//! requests. Every case names the right answer (ACME problem type and status with a
//! `Replay-Nonce`, EST or admin HTTP status, SCEP CertRep FAILURE and failInfo, OCSP
//! status) and, after each one, the runner checks that the store's journal counts
//! (certificates, reserved and abandoned serials) did not move and that `/healthz` still
//! answers on both listeners. One daemon per area:
//!
//! - `acme.rs`, 73 cases: JWS structure, nesting, sizes, nonces, URLs, keys and algorithms;
//!   one account reaching for another's resources; finalize with foreign names or hostile
//!   CSRs; certificates of other protocols; the http-01 echo; the default rate limit.
//! - `est.rs`, 34: missing, wrong and foreign credentials (other endpoint's user, admin
//!   token, a revoked certificate beside a good password); re-enrollment with SCEP, ACME,
//!   revoked or renamed certificates; bodies.
//! - `scep.rs`, 35: junk, truncated, oversized; nesting 40,000 deep in every layer;
//!   challenges; renewal signed by an EST certificate; CertPoll and GetCert of others.
//! - `revocation.rs`, 26: OCSP nesting, sizes, truncation, unknown issuers; CRL paths.
//! - `admin.rs`, 25: tokens, read-only writes, the plain listener, bodies, CSV formulas,
//!   `/metrics` from a network not allowed.
//! - `connections.rs`, 21: 2,000 half-open connections, the per-address cap, timeouts of
//!   idle, trickling and non-reading clients, HTTP/2 stream, header and reset floods.
//!
//! 214 in all (`suite_has_at_least_100_uniquely_named_cases` checks names and count). Run
//! with `cargo test --release -p certgate --test daemon attack` (about 10 s on 2 cores).

mod acme;
mod acme_client;
mod admin;
mod connections;
mod est;
mod h2;
mod harness;
mod hostile;
mod revocation;
mod scep;

#[test]
fn suite_has_at_least_100_uniquely_named_cases() {
    let mut names: Vec<&str> = acme::cases().iter().map(|c| c.name).collect();
    names.extend(est::cases().iter().map(|c| c.name));
    names.extend(scep::cases().iter().map(|c| c.name));
    names.extend(revocation::cases().iter().map(|c| c.name));
    names.extend(admin::cases().iter().map(|c| c.name));
    names.extend(connections::case_names());
    let total = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), total, "case names are unique");
    assert!(total >= 100, "{total} cases");
}
