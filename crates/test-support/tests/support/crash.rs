//! Crash test: a process issuing through the authority is killed with SIGKILL and restarted
//! 25 times on the same store. Every certificate it reported (a caller received) must be in
//! the store, no serial may appear twice, no reservation may stay in flight, and the store
//! must open cleanly every time.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use certgate_signer::KeyType;
use certgate_store::{CertificateFilter, CertificateStore, SledStore};
use certgate_test_support::TestCa;
use certgate_test_support::binary::Spawned;

const ROUNDS: u64 = 25;

#[tokio::test]
#[allow(clippy::print_stderr)] // the figures are the test's report
async fn sigkill_during_issuance_loses_nothing() {
    let ca = TestCa::new(KeyType::P256);
    let store_dir = tempfile::tempdir().unwrap();
    let worker = Path::new(env!("CARGO_BIN_EXE_certgate-crash-worker"));
    let issuer_dir = ca.issuer_pem.parent().unwrap().to_str().unwrap().to_owned();
    let store_path = store_dir.path().to_str().unwrap().to_owned();

    let mut received: Vec<String> = Vec::new();
    let mut recovered_total = 0u64;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for round in 0..ROUNDS {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let mut process = Spawned::start(worker, &[&issuer_dir, &store_path], &[], store_dir.path());
        let opened = process.wait_for_line(Duration::from_secs(60), |l| {
            l.starts_with("OPENED") || l.contains("panicked")
        });
        assert!(
            opened.starts_with("OPENED"),
            "round {round}: the store did not open cleanly: {:?}",
            process.seen
        );
        recovered_total += opened.rsplit('=').next().unwrap().parse::<u64>().unwrap();
        // Kill at varied points: right after opening, or after 1..400 issuances, plus a
        // few hundred microseconds so the kill lands inside the next issuances.
        let target = if round % 5 == 0 { 0 } else { 1 + (seed >> 33) % 400 };
        let mut issued_this_round = 0;
        while issued_this_round < target {
            let line = process.wait_for_line(Duration::from_secs(60), |l| {
                l.starts_with("ISSUED") || l.contains("panicked")
            });
            assert!(
                line.starts_with("ISSUED"),
                "round {round}: worker failed: {:?}",
                process.seen
            );
            received.push(line["ISSUED ".len()..].to_owned());
            issued_this_round += 1;
        }
        std::thread::sleep(Duration::from_micros((seed >> 40) % 700));
        process.kill();
        // Lines already written before the kill were received by "the caller" too.
        while let Some(line) = process.next_line(Duration::from_millis(200)) {
            if let Some(serial) = line.strip_prefix("ISSUED ") {
                received.push(serial.to_owned());
            }
        }
    }

    let store = SledStore::open(store_dir.path()).expect("the store opens cleanly after the last kill");
    let status = store.journal_status().await.unwrap();
    assert_eq!(status.reserved, 0, "no reservation left in flight");
    let unique: HashSet<&String> = received.iter().collect();
    assert_eq!(unique.len(), received.len(), "a serial was handed out twice");
    for serial in &received {
        let serial = certgate_core::Serial::parse_hex(serial).unwrap();
        store
            .certificate(&serial)
            .await
            .unwrap_or_else(|e| panic!("received certificate {serial} is missing: {e}"));
    }
    // Every stored certificate appears once in the index; abandoned serials never became certificates.
    let mut listed = HashSet::new();
    for record in certgate_store::list_all(&store, CertificateFilter::All).await.unwrap() {
        assert!(
            listed.insert(record.serial.clone()),
            "serial {} listed twice",
            record.serial
        );
    }
    assert_eq!(listed.len() as u64, status.certificates);
    assert!(listed.len() >= received.len());
    assert_eq!(
        status.abandoned,
        recovered_total + status.recovered_at_open,
        "every abandoned serial is accounted for"
    );
    eprintln!(
        "crash test: {ROUNDS} SIGKILLs, {} certificates received, {} stored, {} serials abandoned in flight",
        received.len(),
        status.certificates,
        status.abandoned
    );
}
