//! Issues certificates through the authority in a loop, from four concurrent tasks, and
//! prints `ISSUED <serial>` only after `issue()` has returned: what a client would have
//! received. The crash test kills it with SIGKILL at arbitrary points.
//!
//! Usage: certgate-crash-worker <issuer-dir> <store-dir>
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)] // a test harness binary

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use certgate_authority::IssueRequest;
use certgate_core::{ParsedCsr, Protocol, RequesterId};
use certgate_signer::{Issuer, IssuerFiles, KeyType, generate_key};
use certgate_store::{CertificateStore, SledStore};
use certgate_test_support::{TestAuthority, TestCa, csr, name, test_endpoint};

fn main() {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [issuer_dir, store_dir] = args.as_slice() else {
        panic!("usage: certgate-crash-worker <issuer-dir> <store-dir>");
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let files = IssuerFiles::in_dir(issuer_dir);
        let issuer = Arc::new(Issuer::load(name("default"), &files, None).expect("issuer loads"));
        let store = SledStore::open(store_dir).expect("the store opens cleanly");
        let status = store.journal_status().await.expect("journal readable");
        println!(
            "OPENED certificates={} recovered={}",
            status.certificates, status.recovered_at_open
        );
        let ca = TestCa {
            dir: tempfile::tempdir().unwrap(),
            issuer,
            root_pem: files.root.clone(),
            issuer_pem: files.cert.clone(),
        };
        let authority = TestAuthority::authority_over(&ca, store, vec![test_endpoint()]);
        let der = csr(&generate_key(KeyType::P256).unwrap(), None, &["crash.example.com"]);
        let csr = ParsedCsr::from_der(&der).unwrap();
        let out = Arc::new(Mutex::new(std::io::stdout()));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let (authority, csr, out) = (Arc::clone(&authority), csr.clone(), Arc::clone(&out));
            tasks.spawn(async move {
                loop {
                    let request = IssueRequest::new(
                        Protocol::Acme,
                        name("default"),
                        csr.clone(),
                        RequesterId::new("crash-test").unwrap(),
                    );
                    let issued = authority.issue(request).await.expect("issuance");
                    let mut out = out.lock().unwrap();
                    writeln!(out, "ISSUED {}", issued.record.serial).unwrap();
                    out.flush().unwrap();
                }
            });
        }
        // The tasks loop until the process is killed; the first one to end is a failure.
        let ended = tasks.join_next().await;
        panic!("an issuing task ended: {ended:?}");
    });
}
