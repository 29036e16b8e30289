//! `certgate-bench`: parses arguments and runs [`certgate_bench::load`].

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;
use tracing_subscriber::EnvFilter;

use certgate_bench::acme::{Connector, Http01Responder, KeyAlg, Trust};
use certgate_bench::load::{self, ChallengeKind, LoadConfig};

/// Load generator for ACME servers (certgate, Pebble, any RFC 8555 server).
#[derive(Parser)]
#[command(name = "certgate-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs full ACME flows (account once, then order → challenge → finalize → download).
    Acme(AcmeArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum KeyArg {
    Es256,
    Rs256,
    Eddsa,
}

#[derive(Args)]
struct AcmeArgs {
    /// The server's directory URL.
    #[arg(long)]
    directory: String,
    /// Root CA (PEM) that issued the server's TLS certificate.
    #[arg(long, conflicts_with = "insecure")]
    ca_cert: Option<PathBuf>,
    /// Accept any server certificate (Pebble's self-signed one). Never for production.
    #[arg(long)]
    insecure: bool,
    /// Concurrent clients; repeat or comma-separate to run several ("1,8,32").
    #[arg(long, value_delimiter = ',', default_value = "1")]
    clients: Vec<usize>,
    /// Length of each timed run, seconds; the run stops here even if requests hang.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Orders per client (the run still ends at --duration).
    #[arg(long)]
    orders: Option<u64>,
    /// DNS names per order (c<client>-<i>.bench.test).
    #[arg(long, default_value_t = 1)]
    names: usize,
    /// Challenge to answer: http-01 is served; dns-01 and tls-alpn-01 are only POSTed.
    #[arg(long, default_value = "http-01")]
    challenge: ChallengeKind,
    /// Address of the shared http-01 responder.
    #[arg(long, default_value = "127.0.0.1:5002")]
    http01_listen: SocketAddr,
    /// Server process whose CPU time per certificate is reported.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Name for this server/config in the output.
    #[arg(long, default_value = "acme")]
    label: String,
    /// Also write the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Tokio worker threads (client and server often share the machine).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Per-request timeout, seconds (also the polling limit).
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Account key algorithm.
    #[arg(long, value_enum, default_value = "es256")]
    key: KeyArg,
    /// Request certificates valid this many seconds (newOrder notAfter).
    #[arg(long)]
    validity_seconds: Option<u64>,
    /// Orders per second across all clients, paced (for soaks); unset: as fast as they go.
    #[arg(long)]
    rate: Option<f64>,
}

// The load generator shares the machine with the server: the cheaper it is, the less it skews.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        .init();
    let Command::Acme(args) = Cli::parse().command;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(acme(args))
}

async fn acme(args: AcmeArgs) -> anyhow::Result<()> {
    let trust = match (&args.ca_cert, args.insecure) {
        (Some(path), _) => Trust::RootPem(path.clone()),
        (None, true) => Trust::DangerInsecure,
        (None, false) => bail!("give --ca-cert ROOT.pem or --insecure"),
    };
    let timeout = Duration::try_from_secs_f64(args.timeout).context("--timeout")?;
    let duration = Duration::try_from_secs_f64(args.duration).context("--duration")?;
    let connector = Connector::new(&trust)?.with_timeout(timeout);
    let responder = match args.challenge {
        ChallengeKind::Http01 => Some(Http01Responder::bind(args.http01_listen).await?),
        _ => None,
    };
    let key_alg = match args.key {
        KeyArg::Es256 => KeyAlg::Es256,
        KeyArg::Rs256 => KeyAlg::Rs256,
        KeyArg::Eddsa => KeyAlg::EdDsa,
    };

    let mut reports = Vec::new();
    for &clients in &args.clients {
        let cfg = LoadConfig {
            directory_url: args.directory.clone(),
            connector: connector.clone(),
            clients,
            duration,
            orders_per_client: args.orders,
            client_interval: match args.rate {
                Some(rate) if rate > 0.0 && rate.is_finite() => {
                    Some(Duration::try_from_secs_f64(clients as f64 / rate).context("--rate")?)
                }
                Some(_) => bail!("--rate must be a positive number of orders per second"),
                None => None,
            },
            names: args.names,
            challenge: args.challenge,
            http01: responder.as_ref().map(Http01Responder::tokens),
            server_pid: args.server_pid,
            key_alg,
            validity: args.validity_seconds.map(Duration::from_secs),
        };
        let report = load::run(&cfg).await.with_context(|| format!("run with C={clients}"))?;
        tracing::info!(clients, certs_per_s = report.certs_per_s, "run done");
        reports.push(report);
    }

    let mut stdout = std::io::stdout().lock();
    write!(stdout, "{}", load::table(&args.label, &reports))?;
    stdout.flush()?;
    if let Some(path) = &args.json {
        let doc = json!({
            "label": args.label,
            "directory": args.directory,
            "challenge": args.challenge,
            "names": args.names,
            "threads": args.threads,
            "duration_s": args.duration,
            "orders_per_client": args.orders,
            "runs": reports,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}
