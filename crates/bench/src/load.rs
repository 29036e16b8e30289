//! The load run: C clients, each with its own account and connection, looping full ACME
//! flows until a deadline, and the figures that come out of it.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::Error;
use crate::acme::{AccountKey, Client, Connector, Http01Tokens, KeyAlg, Order, Status, csr_p256};
use crate::proc_stat;

/// Which challenge the clients answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ChallengeKind {
    /// http-01, served by the shared responder.
    #[serde(rename = "http-01")]
    Http01,
    /// dns-01: only POSTed (for servers that validate always; no DNS server here).
    #[serde(rename = "dns-01")]
    Dns01,
    /// tls-alpn-01: only POSTed, likewise.
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

impl ChallengeKind {
    /// The ACME challenge type.
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::Dns01 => "dns-01",
            ChallengeKind::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

impl FromStr for ChallengeKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "http-01" => Ok(ChallengeKind::Http01),
            "dns-01" => Ok(ChallengeKind::Dns01),
            "tls-alpn-01" => Ok(ChallengeKind::TlsAlpn01),
            _ => Err(format!("unknown challenge {s:?} (http-01, dns-01, tls-alpn-01)")),
        }
    }
}

/// One run's settings.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// The server's directory URL.
    pub directory_url: String,
    /// Trust and per-request timeout.
    pub connector: Connector,
    /// Concurrent clients (C).
    pub clients: usize,
    /// The timed window; the run ends at its end even if requests hang.
    pub duration: Duration,
    /// Stop a client after this many orders (still bounded by `duration`).
    pub orders_per_client: Option<u64>,
    /// Start each client's orders at most this often (a paced soak); `None`: back to back.
    pub client_interval: Option<Duration>,
    /// DNS names per order.
    pub names: usize,
    /// The challenge answered.
    pub challenge: ChallengeKind,
    /// The responder's token map, for http-01.
    pub http01: Option<Http01Tokens>,
    /// The server process whose CPU time is measured.
    pub server_pid: Option<u32>,
    /// Account key algorithm.
    pub key_alg: KeyAlg,
    /// Ask for certificates valid this long (newOrder `notAfter`), for soaks where the
    /// server's retention must be seen to remove expired certificates.
    pub validity: Option<Duration>,
}

/// Latency per full order, milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile (nearest rank).
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

impl Latency {
    /// Summarises durations (nearest-rank percentiles).
    pub fn from_samples(samples: &mut [Duration]) -> Self {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let rank = |p: f64| {
            let idx = (p * samples.len() as f64).ceil() as usize;
            samples[idx.clamp(1, samples.len()) - 1]
        };
        let total: Duration = samples.iter().sum();
        Latency {
            p50_ms: ms(rank(0.50)),
            p99_ms: ms(rank(0.99)),
            max_ms: ms(samples[samples.len() - 1]),
            mean_ms: ms(total) / samples.len() as f64,
        }
    }
}

/// The figures of one run at one C.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// Concurrent clients.
    pub clients: usize,
    /// Length of the timed window, seconds.
    pub window_s: f64,
    /// Certificates issued and downloaded within the window.
    pub certificates: u64,
    /// certificates / window.
    pub certs_per_s: f64,
    /// Latency per full order (newOrder to downloaded chain).
    pub latency: Latency,
    /// Orders that failed.
    pub errors: u64,
    /// Orders the server turned away with `Retry-After` (shed or rate-limited); the client
    /// waited as asked before its next order.
    pub shed: u64,
    /// Orders cut off by the deadline.
    pub unfinished: u64,
    /// HTTP requests sent in the window.
    pub requests: u64,
    /// TCP connections opened in the window (0 when keep-alive held).
    pub connections_opened: u64,
    /// Server CPU (user + system) in the window, seconds.
    pub server_cpu_s: Option<f64>,
    /// Server CPU per certificate, milliseconds.
    pub server_cpu_ms_per_cert: Option<f64>,
    /// This process's CPU in the window, seconds.
    pub client_cpu_s: f64,
    /// This process's CPU per certificate, milliseconds.
    pub client_cpu_ms_per_cert: Option<f64>,
    /// Up to five distinct error messages.
    pub error_samples: Vec<String>,
}

/// What one client task brings back.
#[derive(Default)]
struct ClientOutcome {
    latencies: Vec<Duration>,
    errors: u64,
    shed: u64,
    unfinished: u64,
    requests: u64,
    connections: u64,
    samples: BTreeSet<String>,
    finished_at: Option<Instant>,
}

const MAX_SAMPLES: usize = 5;

/// Creates the accounts (untimed), then runs the timed window.
pub async fn run(cfg: &LoadConfig) -> Result<RunReport, Error> {
    let clients = setup(cfg).await?;

    let server_before = cfg.server_pid.map(|p| proc_stat::cpu_time(Some(p))).transpose()?;
    let client_before = proc_stat::cpu_time(None)?;
    let start = Instant::now();
    let deadline = start + cfg.duration;

    let mut tasks = JoinSet::new();
    for (index, (client, baseline)) in clients.into_iter().enumerate() {
        let names: Vec<String> = (0..cfg.names).map(|i| format!("c{index}-{i}.bench.test")).collect();
        let cfg = cfg.clone();
        tasks.spawn(client_loop(client, baseline, names, cfg, deadline));
    }
    let mut total = ClientOutcome::default();
    while let Some(joined) = tasks.join_next().await {
        // A panicking client task is a bug in this crate; count it as an error, keep the run.
        let outcome = joined.unwrap_or_else(|e| ClientOutcome {
            errors: 1,
            samples: BTreeSet::from([format!("client task failed: {e}")]),
            ..ClientOutcome::default()
        });
        total.latencies.extend(outcome.latencies);
        total.errors += outcome.errors;
        total.shed += outcome.shed;
        total.unfinished += outcome.unfinished;
        total.requests += outcome.requests;
        total.connections += outcome.connections;
        total.samples.extend(outcome.samples);
        total.finished_at = total.finished_at.max(outcome.finished_at);
    }
    let end = total.finished_at.unwrap_or_else(Instant::now).min(deadline);
    let client_after = proc_stat::cpu_time(None)?;
    // A server that died during the run leaves its figures unknown, not the whole run lost.
    let server_after = cfg.server_pid.and_then(|p| {
        proc_stat::cpu_time(Some(p))
            .inspect_err(|e| tracing::warn!(error = %e, "server CPU after the run"))
            .ok()
    });

    let window_s = end.duration_since(start).as_secs_f64().max(1e-9);
    let certificates = total.latencies.len() as u64;
    let per_cert = |cpu_s: f64| (certificates > 0).then(|| cpu_s * 1000.0 / certificates as f64);
    let server_cpu_s = match (server_before, server_after) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b).as_secs_f64()),
        _ => None,
    };
    let client_cpu_s = client_after.saturating_sub(client_before).as_secs_f64();
    Ok(RunReport {
        clients: cfg.clients,
        window_s,
        certificates,
        certs_per_s: certificates as f64 / window_s,
        latency: Latency::from_samples(&mut total.latencies),
        errors: total.errors,
        shed: total.shed,
        unfinished: total.unfinished,
        requests: total.requests,
        connections_opened: total.connections,
        server_cpu_s,
        server_cpu_ms_per_cert: server_cpu_s.and_then(per_cert),
        client_cpu_s,
        client_cpu_ms_per_cert: per_cert(client_cpu_s),
        error_samples: total.samples.into_iter().take(MAX_SAMPLES).collect(),
    })
}

/// Creates the C clients with their accounts, concurrently, before the window opens. Returns
/// each client with its request and connection counts so far, to subtract later.
async fn setup(cfg: &LoadConfig) -> Result<Vec<(Client, (u64, u64))>, Error> {
    let mut tasks = JoinSet::new();
    for index in 0..cfg.clients {
        let cfg = cfg.clone();
        tasks.spawn(async move {
            let key = AccountKey::generate(cfg.key_alg)?;
            let mut client = Client::new(&cfg.connector, &cfg.directory_url, key);
            client.directory().await?;
            client.new_account(&[], true, None).await?;
            Ok::<_, Error>((index, client))
        });
    }
    let mut clients = Vec::with_capacity(cfg.clients);
    while let Some(joined) = tasks.join_next().await {
        let (index, client) = joined.map_err(|e| Error::Task(e.to_string()))??;
        clients.push((index, client));
    }
    clients.sort_by_key(|(index, _)| *index);
    Ok(clients
        .into_iter()
        .map(|(_, c)| {
            let baseline = (c.requests_sent(), c.connections_opened());
            (c, baseline)
        })
        .collect())
}

async fn client_loop(
    mut client: Client,
    baseline: (u64, u64),
    names: Vec<String>,
    cfg: LoadConfig,
    deadline: Instant,
) -> ClientOutcome {
    let mut out = ClientOutcome::default();
    let mut attempts = 0u64;
    let mut paced_from = None;
    loop {
        if cfg.orders_per_client.is_some_and(|n| attempts >= n) || Instant::now() >= deadline {
            break;
        }
        if let Some(interval) = cfg.client_interval {
            // Paced on a fixed schedule from the first order, so a slow order is caught up.
            let started = *paced_from.get_or_insert_with(Instant::now);
            let due = started + interval.saturating_mul(u32::try_from(attempts).unwrap_or(u32::MAX));
            if due >= deadline {
                break;
            }
            tokio::time::sleep_until(due).await;
        }
        attempts += 1;
        let began = Instant::now();
        let flow = full_order(&mut client, &names, cfg.challenge, cfg.http01.as_ref(), cfg.validity);
        match tokio::time::timeout_at(deadline, flow).await {
            Ok(Ok(())) => out.latencies.push(began.elapsed()),
            Ok(Err(e)) if e.retry_after().is_some() => {
                // A polite client: waits as the server asked before its next order.
                out.shed += 1;
                let wait = e.retry_after().unwrap_or_default();
                tokio::time::sleep_until(deadline.min(Instant::now() + wait)).await;
            }
            Ok(Err(e)) => {
                out.errors += 1;
                tracing::debug!(error = %e, "order failed");
                if out.samples.len() < MAX_SAMPLES {
                    out.samples.insert(e.to_string());
                }
                // Let other tasks run even when a server fails every request at once.
                tokio::task::yield_now().await;
            }
            Err(_) => {
                out.unfinished += 1;
                break;
            }
        }
    }
    out.finished_at = Some(Instant::now());
    out.requests = client.requests_sent() - baseline.0;
    out.connections = client.connections_opened() - baseline.1;
    out
}

/// Removes served tokens when the order is done or abandoned.
struct ServedTokens<'a> {
    tokens: Option<&'a Http01Tokens>,
    served: Vec<String>,
}

impl Drop for ServedTokens<'_> {
    fn drop(&mut self) {
        if let Some(tokens) = self.tokens {
            for token in &self.served {
                tokens.remove(token);
            }
        }
    }
}

/// newOrder, authorizations, challenges, wait for ready, finalize, wait for valid, download.
pub async fn full_order(
    client: &mut Client,
    names: &[String],
    challenge: ChallengeKind,
    http01: Option<&Http01Tokens>,
    validity: Option<Duration>,
) -> Result<(), Error> {
    let identifiers: Vec<(&str, &str)> = names.iter().map(|n| ("dns", n.as_str())).collect();
    let extra = validity.map(|validity| {
        let not_after = time::OffsetDateTime::now_utc() + validity;
        let text = not_after
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        serde_json::Map::from_iter([("notAfter".to_owned(), serde_json::Value::String(text))])
    });
    let order = client.new_order(&identifiers, extra).await?;
    if order.status == Status::Pending {
        let mut served = ServedTokens {
            tokens: http01,
            served: Vec::new(),
        };
        for url in &order.authorizations {
            let authz = client.authorization(url).await?;
            if authz.status != Status::Pending {
                continue;
            }
            let chosen = authz.challenge(challenge.as_str()).ok_or_else(|| Error::NoChallenge {
                url: url.clone(),
                kind: challenge.as_str().to_owned(),
            })?;
            if chosen.status != Status::Pending {
                continue;
            }
            if let (ChallengeKind::Http01, Some(tokens), Some(token)) = (challenge, http01, chosen.token.as_deref()) {
                tokens.insert(token, &client.key().key_authorization(token));
                served.served.push(token.to_owned());
            }
            let challenge_url = chosen.url.clone();
            client.respond(&challenge_url).await?;
        }
        client.poll_status(&order.url, &["ready"]).await?;
    }
    let csr = csr_p256(names)?;
    let mut order = client.finalize(&order, &csr.csr_der).await?;
    if order.status != Status::Valid {
        let url = order.url.clone();
        let object = client.poll_status(&url, &["valid"]).await?;
        order = order_from(object, url)?;
    }
    let cert_url = order.certificate.ok_or_else(|| Error::Missing {
        url: order.url.clone(),
        what: "certificate URL",
    })?;
    let pem = client.download(&cert_url).await?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(Error::Missing {
            url: cert_url,
            what: "a PEM certificate",
        });
    }
    Ok(())
}

fn order_from(object: Value, url: String) -> Result<Order, Error> {
    let mut order: Order = serde_json::from_value(object)?;
    order.url = url;
    Ok(order)
}

/// The human table: one line per run.
pub fn table(label: &str, reports: &[RunReport]) -> String {
    let opt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "{:<12} {:>4} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>6} {:>6} {:>6} {:>7} {:>11} {:>11} {:>5}",
        "label",
        "C",
        "secs",
        "certs",
        "certs/s",
        "p50_ms",
        "p99_ms",
        "max_ms",
        "errors",
        "shed",
        "unfin",
        "req/crt",
        "srv_ms/crt",
        "cli_ms/crt",
        "conns"
    );
    for r in reports {
        let req_per_cert = (r.certificates > 0).then(|| r.requests as f64 / r.certificates as f64);
        let _ = writeln!(
            out,
            "{:<12} {:>4} {:>7.2} {:>7} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>6} {:>6} {:>6} {:>7} {:>11} {:>11} {:>5}",
            label,
            r.clients,
            r.window_s,
            r.certificates,
            r.certs_per_s,
            r.latency.p50_ms,
            r.latency.p99_ms,
            r.latency.max_ms,
            r.errors,
            r.shed,
            r.unfinished,
            opt(req_per_cert),
            opt(r.server_cpu_ms_per_cert),
            opt(r.client_cpu_ms_per_cert),
            r.connections_opened,
        );
    }
    for r in reports {
        for sample in &r.error_samples {
            let _ = writeln!(out, "  C={} error: {sample}", r.clients);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles() {
        let mut samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let l = Latency::from_samples(&mut samples);
        assert_eq!((l.p50_ms, l.p99_ms, l.max_ms), (50.0, 99.0, 100.0));
        assert!((l.mean_ms - 50.5).abs() < 1e-9);
        let mut one = vec![Duration::from_millis(7)];
        let l = Latency::from_samples(&mut one);
        assert_eq!((l.p50_ms, l.p99_ms, l.max_ms), (7.0, 7.0, 7.0));
        assert_eq!(Latency::from_samples(&mut []).max_ms, 0.0);
    }

    #[test]
    fn challenge_kind_parses() {
        for kind in [ChallengeKind::Http01, ChallengeKind::Dns01, ChallengeKind::TlsAlpn01] {
            assert_eq!(kind.as_str().parse::<ChallengeKind>(), Ok(kind));
        }
        assert!("http-02".parse::<ChallengeKind>().is_err());
    }
}
