//! The attack suite's harness: one daemon per area ([`Target`]), raw HTTP/1.1 over TCP or
//! TLS with the bytes under the test's control ([`Target::exchange`]), and the runner that
//! plays a table of named cases and checks, after each one, that nothing was issued and that
//! the daemon still answers `/healthz` ([`run_cases`]).

use std::future::Future;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rustls::RootCertStore;
use rustls::crypto::aws_lc_rs::default_provider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

use crate::Daemon;

/// How long one exchange may take before it counts as hung.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one case may take.
const CASE_TIMEOUT: Duration = Duration::from_secs(90);

/// The two listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// HTTPS: ACME, EST, the admin API, health, CRL/OCSP.
    Https,
    /// Plain HTTP: SCEP, CRL/OCSP, health.
    Http,
}

/// An HTTP answer.
#[derive(Clone, Default)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Body (de-chunked).
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.text();
        f.debug_struct("Answer")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &text.chars().take(300).collect::<String>())
            .finish()
    }
}

impl Answer {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn summary(&self) -> String {
        let text = self.text();
        let cut: String = text.chars().take(300).collect();
        format!("HTTP {} {cut:?}", self.status)
    }
}

/// What a case observed.
#[derive(Debug)]
pub enum Outcome {
    /// An HTTP answer.
    Answer(Answer),
    /// The connection ended without a (complete) answer.
    Closed(String),
    /// The case checked the answer itself: `Err` says what was wrong.
    Checked(Result<(), String>),
}

impl Outcome {
    fn summary(&self) -> String {
        match self {
            Self::Answer(answer) => answer.summary(),
            Self::Closed(why) => format!("connection closed without an answer ({why})"),
            Self::Checked(result) => format!("{result:?}"),
        }
    }
}

/// The right answer to a case.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// An ACME problem document of this type (short name) with this status, a
    /// `Replay-Nonce` header and `application/problem+json`.
    Problem(&'static str, u16),
    /// This HTTP status.
    Status(u16),
    /// One of these HTTP statuses.
    AnyStatus(&'static [u16]),
    /// One of these statuses, or the connection closed without an answer (truncated or
    /// oversized requests the server may drop).
    StatusOrClosed(&'static [u16]),
    /// Whatever the case checked itself ([`Outcome::Checked`]).
    Checked,
    /// A legitimate request that must be served (it may issue): checked by the case itself.
    Served,
}

/// Words that only internal detail would put into an answer.
const INTERNAL_MARKERS: [&str; 10] = [
    "panicked",
    "RUST_BACKTRACE",
    "stack backtrace",
    "/root/",
    "/work/",
    "/home/",
    ".rs:",
    "sled",
    "Backend(",
    "thread '",
];

/// Checks `outcome` against `expect`; `Err` says how it differs.
pub fn check(expect: Expect, outcome: &Outcome) -> Result<(), String> {
    if let Outcome::Answer(answer) = outcome {
        let text = answer.text();
        if let Some(marker) = INTERNAL_MARKERS.iter().find(|m| text.contains(*m)) {
            return Err(format!(
                "the answer shows internal detail ({marker:?}): {}",
                answer.summary()
            ));
        }
    }
    match (expect, outcome) {
        (_, Outcome::Checked(result)) => result.clone(),
        (Expect::Problem(kind, status), Outcome::Answer(answer)) => check_problem(answer, kind, status),
        (Expect::Status(status), Outcome::Answer(answer)) if answer.status == status => Ok(()),
        (Expect::AnyStatus(statuses), Outcome::Answer(answer)) if statuses.contains(&answer.status) => Ok(()),
        (Expect::StatusOrClosed(_), Outcome::Closed(_)) => Ok(()),
        (Expect::StatusOrClosed(statuses), Outcome::Answer(answer)) if statuses.contains(&answer.status) => Ok(()),
        (expect, outcome) => Err(format!("expected {expect:?}, got {}", outcome.summary())),
    }
}

fn check_problem(answer: &Answer, kind: &str, status: u16) -> Result<(), String> {
    let body = answer.json();
    let want = format!("urn:ietf:params:acme:error:{kind}");
    if answer.status != status || body["type"] != want.as_str() {
        return Err(format!("expected {kind} ({status}), got {}", answer.summary()));
    }
    if answer.header("replay-nonce").is_none_or(str::is_empty) {
        return Err(format!("no Replay-Nonce on the problem: {:?}", answer.headers));
    }
    if answer.header("content-type") != Some("application/problem+json") {
        return Err(format!("problem content type: {:?}", answer.header("content-type")));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The daemon under attack.

/// A daemon on ephemeral ports, with its addresses, a TLS client trusting its root, and an
/// admin token for reading the inventory's counts.
pub struct Target {
    /// The daemon (behind a lock: its output reader is not `Sync`).
    daemon: Mutex<Daemon>,
    /// The daemon's root certificate (PEM file).
    pub root: PathBuf,
    /// The daemon's working directory (its data directory is `data` in it).
    pub dir: PathBuf,
    pid: u32,
    /// The HTTPS listener.
    pub https: SocketAddr,
    /// The HTTP listener.
    pub http: SocketAddr,
    /// TLS to the HTTPS listener, trusting only the daemon's root.
    pub tls: TlsConnector,
    /// An admin API token (role admin).
    pub token: String,
}

fn socket_addr(url: &str) -> SocketAddr {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.trim_end_matches('/')
        .parse()
        .unwrap_or_else(|e| panic!("listener address {url}: {e}"))
}

/// A rustls client configuration trusting `root_pem`, with an optional client certificate.
pub fn client_config(root_pem: &std::path::Path, client: Option<(Vec<u8>, Vec<u8>)>) -> Arc<rustls::ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(root_pem).expect("the daemon's root") {
        roots.add(cert.expect("a PEM certificate")).expect("a usable root");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots);
    let config = match client {
        Some((leaf, pkcs8)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(leaf)],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8)),
            )
            .expect("a usable client certificate"),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

impl Target {
    /// Starts a daemon with `config` (see `Daemon::start`) and creates an admin token.
    pub fn start(config: &str) -> Self {
        let daemon = Daemon::start(config);
        let https = socket_addr(&daemon.https);
        let http = socket_addr(&daemon.http);
        let tls = TlsConnector::from(client_config(&daemon.root, None));
        let (ok, out, err) = daemon.cli(&["admin", "token", "create", "--name", "attack-suite"]);
        assert!(ok, "admin token create: {out}{err}");
        let token = out.trim().to_owned();
        Self {
            root: daemon.root.clone(),
            dir: daemon.dir.path().to_owned(),
            pid: daemon.process.child.id(),
            daemon: Mutex::new(daemon),
            https,
            http,
            tls,
            token,
        }
    }

    /// The listener's address.
    pub fn addr(&self, listener: Listener) -> SocketAddr {
        match listener {
            Listener::Https => self.https,
            Listener::Http => self.http,
        }
    }

    /// `host:port` of a listener, as a Host header carries it.
    pub fn host(&self, listener: Listener) -> String {
        self.addr(listener).to_string()
    }

    /// The daemon's data directory's file `rest`.
    pub fn data_file(&self, rest: &str) -> PathBuf {
        self.dir.join("data").join(rest)
    }

    /// A CLI command (through the admin socket while the daemon runs).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        self.daemon.lock().unwrap_or_else(PoisonError::into_inner).cli(args)
    }

    /// Stops the daemon with SIGTERM: it must exit cleanly.
    pub fn stop(&mut self) {
        self.daemon.get_mut().unwrap_or_else(PoisonError::into_inner).stop();
    }

    /// A CLI command (through the admin socket) with `input` on standard input.
    pub fn cli_stdin(&self, args: &[&str], input: &str) -> (bool, String, String) {
        let mut child = Command::new(crate::certgate())
            .args(args)
            .args(["--data-dir", "data"])
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the certgate binary runs");
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input.as_bytes()).expect("CLI standard input");
        }
        let output = child.wait_with_output().expect("the CLI finishes");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Sends `request` as is and reads the answer until the server closes (requests made
    /// by [`request`] say `Connection: close`).
    pub async fn exchange(&self, listener: Listener, request: Vec<u8>) -> Outcome {
        self.exchange_with(listener, request, &SendOptions::default()).await
    }

    /// [`Target::exchange`] with options.
    pub async fn exchange_with(&self, listener: Listener, request: Vec<u8>, send: &SendOptions) -> Outcome {
        let attempt = async {
            let tcp = connect(self.addr(listener), send.source).await?;
            match listener {
                Listener::Http => Ok(converse(tcp, request, send.half_close).await),
                Listener::Https => {
                    let connector = match &send.client_tls {
                        Some(config) => TlsConnector::from(Arc::clone(config)),
                        None => self.tls.clone(),
                    };
                    let name = ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
                    let tls = connector.connect(name, tcp).await?;
                    Ok::<_, std::io::Error>(converse(tls, request, send.half_close).await)
                }
            }
        };
        match tokio::time::timeout(EXCHANGE_TIMEOUT, attempt).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => Outcome::Closed(format!("connect or TLS handshake: {e}")),
            Err(_) => Outcome::Closed(format!("no answer within {EXCHANGE_TIMEOUT:?}")),
        }
    }

    /// A well-formed request with `Connection: close`.
    pub async fn request(
        &self,
        listener: Listener,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Outcome {
        let bytes = request(method, path, &self.host(listener), headers, body);
        self.exchange(listener, bytes).await
    }

    /// A request that must be answered (panics with what happened otherwise).
    pub async fn answer(
        &self,
        listener: Listener,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        match self.request(listener, method, path, headers, body).await {
            Outcome::Answer(answer) => answer,
            other => panic!("{method} {path}: {}", other.summary()),
        }
    }

    /// `Authorization: Bearer` with the suite's admin token.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// The store's journal counts (`/admin/v1/status`): certificates recorded, serials
    /// reserved, serials abandoned.
    pub async fn journal(&self) -> Result<[u64; 3], String> {
        let bearer = self.bearer();
        let answer = match self
            .request(
                Listener::Https,
                "GET",
                "/admin/v1/status",
                &[("authorization", &bearer)],
                b"",
            )
            .await
        {
            Outcome::Answer(answer) if answer.status == 200 => answer,
            other => return Err(format!("/admin/v1/status: {}", other.summary())),
        };
        let journal = &answer.json()["journal"];
        let count = |name: &str| journal[name].as_u64().ok_or_else(|| format!("no {name} in {journal}"));
        Ok([count("certificates")?, count("reserved")?, count("abandoned")?])
    }

    /// `/healthz` on both listeners answers 200 `ok`; otherwise says what happened (and
    /// whether the process is gone).
    pub async fn healthy(&self) -> Result<(), String> {
        for listener in [Listener::Https, Listener::Http] {
            match self.request(listener, "GET", "/healthz", &[], b"").await {
                Outcome::Answer(answer) if answer.status == 200 && answer.text().trim() == "ok" => {}
                other => {
                    return Err(format!(
                        "/healthz on {listener:?}: {}; daemon process: {}",
                        other.summary(),
                        self.process_state()
                    ));
                }
            }
        }
        Ok(())
    }

    /// The certificate `serial` is in the inventory and not revoked.
    pub async fn not_revoked(&self, serial: &str) -> Result<(), String> {
        let bearer = self.bearer();
        let path = format!("/admin/v1/certificates/{serial}");
        match self
            .request(Listener::Https, "GET", &path, &[("authorization", &bearer)], b"")
            .await
        {
            Outcome::Answer(a) if a.status == 200 && a.json()["revocation"].is_null() => Ok(()),
            Outcome::Answer(a) if a.status == 200 => {
                Err(format!("certificate {serial} was revoked: {}", a.json()["revocation"]))
            }
            other => Err(format!("certificate {serial}: {}", other.summary())),
        }
    }

    /// The daemon process's state letter from /proc (`Z` when it died, `gone` when reaped).
    pub fn process_state(&self) -> String {
        let pid = self.pid;
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .map_or_else(|| "unknown".to_owned(), |s| s.to_owned()),
            Err(_) => "gone".to_owned(),
        }
    }
}

/// Options of one exchange.
#[derive(Clone, Default)]
pub struct SendOptions {
    /// Connect from this local address (within 127.0.0.0/8).
    pub source: Option<IpAddr>,
    /// Shut down our sending side after the request (a truncated body then ends there).
    pub half_close: bool,
    /// Another TLS client configuration (a client certificate).
    pub client_tls: Option<Arc<rustls::ClientConfig>>,
}

/// A TCP connection to `addr`, from `source` when given.
pub async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Writes `request` while reading the answer (a server may answer before reading it all),
/// then parses what came back.
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(stream: S, request: Vec<u8>, half_close: bool) -> Outcome {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let write = async move {
        let written = writer.write_all(&request).await;
        if half_close {
            let _ = writer.shutdown().await;
        }
        // Keep the writing half until the read is done: dropping it must not close anything.
        (written, writer)
    };
    let read = async move {
        let mut received = Vec::new();
        let result = reader.read_to_end(&mut received).await;
        (received, result)
    };
    let ((_, _writer), (received, result)) = tokio::join!(write, read);
    match parse_answer(&received) {
        Some(answer) => Outcome::Answer(answer),
        None => Outcome::Closed(match result {
            Ok(_) if received.is_empty() => "closed by the server".to_owned(),
            Ok(_) => format!("incomplete answer: {:?}", String::from_utf8_lossy(&received)),
            Err(e) => format!("{e}"),
        }),
    }
}

/// An HTTP/1.1 request with `Host`, `Content-Length` (when there is a body or it is a POST)
/// and `Connection: close`.
pub fn request(method: &str, path: &str, host: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// `Authorization: Basic` for `user:password`.
pub fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", B64.encode(format!("{user}:{password}")))
}

/// Parses a complete HTTP/1.1 answer (the first one, when several came).
pub fn parse_answer(bytes: &[u8]) -> Option<Answer> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(bytes.get(..end)?).ok()?;
    let rest = bytes.get(end + 4..)?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let value = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let body = if value("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else if let Some(length) = value("content-length") {
        rest.get(..length.parse::<usize>().ok()?)?.to_vec()
    } else {
        rest.to_vec()
    };
    Some(Answer { status, headers, body })
}

fn dechunk(mut bytes: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = bytes.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(bytes.get(..line_end)?).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        bytes = bytes.get(line_end + 2..)?;
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(bytes.get(..size)?);
        bytes = bytes.get(size + 2..)?;
    }
}

// ---------------------------------------------------------------------------------------------
// The runner.

/// A case's future.
pub type Run = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// One named case: how to attack, and the right answer.
pub struct Case<C> {
    /// Its name (unique in the suite).
    pub name: &'static str,
    /// The right answer.
    pub expect: Expect,
    /// Sends the attack and returns what came back.
    pub run: fn(Arc<C>) -> Run,
}

/// A case table entry: `case!("name", Expect::..., |ctx| async body returning Outcome)`.
macro_rules! case {
    ($name:literal, $expect:expr, |$ctx:ident| $body:block) => {
        $crate::attack::harness::Case {
            name: $name,
            expect: $expect,
            run: |$ctx| Box::pin(async move $body),
        }
    };
    ($name:literal, $expect:expr, |$ctx:ident| $body:expr) => {
        $crate::attack::harness::Case {
            name: $name,
            expect: $expect,
            run: |$ctx| Box::pin(async move { $body }),
        }
    };
}
pub(crate) use case;

/// What an area's context gives the runner.
pub trait Area: Send + Sync + 'static {
    /// The daemon under attack.
    fn target(&self) -> &Target;

    /// The same, to stop it.
    fn target_mut(&mut self) -> &mut Target;
}

/// Stops the area's daemon with SIGTERM: it must still be running and exit cleanly.
pub fn finish<C: Area>(ctx: Arc<C>) {
    match Arc::try_unwrap(ctx) {
        Ok(mut ctx) => ctx.target_mut().stop(),
        Err(_) => panic!("a case still holds the area's context"),
    }
}

/// Plays `cases` one after the other against the area's daemon. After each case: the answer
/// is the right one, the journal counts (certificates, reservations, abandoned serials) did
/// not change, and `/healthz` answers on both listeners. Every failing case is reported at
/// the end, by name.
pub async fn run_cases<C: Area>(ctx: Arc<C>, cases: Vec<Case<C>>) {
    let mut failures = Vec::new();
    for case in &cases {
        if let Err(why) = play(&ctx, case).await {
            failures.push(format!("{}: {why}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n  {}",
        failures.len(),
        cases.len(),
        failures.join("\n  ")
    );
}

async fn play<C: Area>(ctx: &Arc<C>, case: &Case<C>) -> Result<(), String> {
    let target = ctx.target();
    let before = target.journal().await?;
    let outcome = outcome_of(ctx, case).await;
    let answer = check(case.expect, &outcome);
    target.healthy().await?;
    let after = target.journal().await?;
    answer?;
    unchanged(case.expect, before, after)
}

/// Runs a case in a task of its own (a panic in it is its failure) under the case timeout.
async fn outcome_of<C: Area>(ctx: &Arc<C>, case: &Case<C>) -> Outcome {
    let run = tokio::spawn((case.run)(Arc::clone(ctx)));
    match tokio::time::timeout(CASE_TIMEOUT, run).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => Outcome::Checked(Err(format!("the case itself failed: {e}"))),
        Err(_) => Outcome::Checked(Err(format!("no outcome within {CASE_TIMEOUT:?}"))),
    }
}

fn unchanged(expect: Expect, before: [u64; 3], after: [u64; 3]) -> Result<(), String> {
    if before == after || matches!(expect, Expect::Served) {
        Ok(())
    } else {
        Err(format!(
            "the store changed: [certificates, reserved, abandoned] {before:?} -> {after:?}"
        ))
    }
}

/// Plays `cases` all at once (slow-client cases that each wait for a timeout), then checks
/// the answers, that nothing was issued, and that `/healthz` answers.
pub async fn run_concurrently<C: Area>(ctx: Arc<C>, cases: Vec<Case<C>>) {
    let target = ctx.target();
    let before = target.journal().await.expect("journal counts");
    let mut running = Vec::new();
    for case in &cases {
        let ctx = Arc::clone(&ctx);
        let run = case.run;
        let expect = case.expect;
        let name = case.name;
        running.push(tokio::spawn(async move {
            let case = Case { name, expect, run };
            (name, check(expect, &outcome_of(&ctx, &case).await))
        }));
    }
    let mut failures = Vec::new();
    for task in running {
        match task.await {
            Ok((_, Ok(()))) => {}
            Ok((name, Err(why))) => failures.push(format!("{name}: {why}")),
            Err(e) => failures.push(format!("a case task failed: {e}")),
        }
    }
    if let Err(why) = target.healthy().await {
        failures.push(format!("after the batch: {why}"));
    }
    let after = target.journal().await.expect("journal counts");
    if cases.iter().all(|c| !matches!(c.expect, Expect::Served))
        && let Err(why) = unchanged(Expect::Checked, before, after)
    {
        failures.push(format!("after the batch: {why}"));
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n  {}",
        failures.len(),
        cases.len(),
        failures.join("\n  ")
    );
}
