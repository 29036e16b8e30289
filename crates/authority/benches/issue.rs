//! Benchmark: `Authority::issue` with durable storage (sled, group commit), P-256 CA,
//! P-256 CSRs, at 1 and 8 concurrent callers. Each issuance parses and verifies the CSR
//! (proof of possession), applies policy, reserves a serial, signs, records durably.
//!
//! Run: cargo bench -p certgate-authority --bench issue [-- SECONDS] [p256|rsa2048]
#![allow(clippy::print_stdout, clippy::unwrap_used)] // a benchmark reports on stdout

use std::sync::Arc;
use std::time::{Duration, Instant};

use certgate_authority::IssueRequest;
use certgate_core::{ParsedCsr, Protocol, RequesterId};
use certgate_signer::{KeyType, generate_key};
use certgate_test_support::{TestAuthority, csr, name, test_endpoint};

fn cpu_seconds() -> f64 {
    // utime + stime of this process, from /proc (clock ticks of 1/100 s on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

async fn run(concurrency: usize, duration: Duration, ca: KeyType) -> (f64, f64, Duration, f64) {
    let t = TestAuthority::new(ca, vec![test_endpoint()]);
    // Distinct CSRs per caller, as distinct clients would send.
    let csrs: Vec<Vec<u8>> = (0..concurrency)
        .map(|i| {
            csr(
                &generate_key(KeyType::P256).unwrap(),
                None,
                &[&format!("host{i}.example.com")],
            )
        })
        .collect();
    // Warm up (page in sled, first flush).
    for der in &csrs {
        let request = IssueRequest::new(
            Protocol::Acme,
            name("default"),
            ParsedCsr::from_der(der).unwrap(),
            RequesterId::new("bench").unwrap(),
        );
        t.authority.issue(request).await.unwrap();
    }
    let flushes_before = t.store.flush_count();
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for der in csrs {
        let authority = Arc::clone(&t.authority);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let began = Instant::now();
                let csr = ParsedCsr::from_der(&der).unwrap();
                let request =
                    IssueRequest::new(Protocol::Acme, name("default"), csr, RequesterId::new("bench").unwrap());
                authority.issue(request).await.unwrap();
                latencies.push(began.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    latencies.sort_unstable();
    let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    let count = latencies.len() as f64;
    let per_flush = count / (t.store.flush_count() - flushes_before).max(1) as f64;
    (count / elapsed, cpu / count * 1e6, p99, per_flush)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: u64 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(5);
    let only: Option<KeyType> = args.iter().find_map(|a| a.parse().ok());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "authority.issue, durable sled store, P-256 CSRs, {seconds} s per row, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<10} {:>11} {:>14} {:>16} {:>10} {:>17}",
        "CA key", "concurrency", "issuances/s", "CPU us/issuance", "p99 ms", "issuances/flush"
    );
    for ca in [KeyType::P256, KeyType::Rsa2048]
        .into_iter()
        .filter(|ca| only.is_none_or(|o| o == *ca))
    {
        for concurrency in [1, 8] {
            let (rate, cpu_us, p99, per_flush) = runtime.block_on(run(concurrency, Duration::from_secs(seconds), ca));
            println!(
                "{:<10} {:>11} {:>14.0} {:>16.0} {:>10.2} {:>17.1}",
                ca.to_string(),
                concurrency,
                rate,
                cpu_us,
                p99.as_secs_f64() * 1e3,
                per_flush
            );
        }
    }
}
