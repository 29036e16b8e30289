//! Real ACME clients against the built daemon: certbot (from the workspace's venv) and lego
//! obtain, renew and revoke certificates with http-01 and tls-alpn-01 on loopback ports the
//! endpoint validates against. Test names resolve to 127.0.0.1 through /etc/hosts entries
//! these tests add (CI runs as root).

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use certgate_test_support::{openssl_verify, pkilint, unwaived, workspace_root};

use super::Daemon;

/// Names the clients ask for; each test uses its own.
const HOST_NAMES: [&str; 7] = [
    "certbot-a.certgate.test",
    "certbot-b.certgate.test",
    "lego-a.certgate.test",
    "lego-b.certgate.test",
    "lego-alpn.certgate.test",
    "instant.certgate.test",
    "revoked.certgate.test",
];

/// Makes the test names resolve to 127.0.0.1 for the validator (getaddrinfo honours
/// /etc/hosts), appending them once.
pub fn ensure_test_hosts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        let missing: Vec<&str> = HOST_NAMES
            .iter()
            .copied()
            .filter(|name| !hosts.split_whitespace().any(|w| w == *name))
            .collect();
        if missing.is_empty() {
            return;
        }
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open("/etc/hosts")
            .expect("these tests add names to /etc/hosts and must run as root (CI does)");
        writeln!(file, "127.0.0.1 {}  # certgate tests", missing.join(" ")).unwrap();
    });
}

/// A port that was free a moment ago (the client binds it; certgate connects to it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An ACME endpoint validating http-01 and tls-alpn-01 against the given loopback ports.
pub fn acme_config(http_port: u16, alpn_port: u16, extra: &str) -> String {
    format!(
        "[[issuers]]\nname = \"default\"\ncreate_if_missing = true\n\
         [[endpoints]]\nprotocol = \"acme\"\nname = \"default\"\n\
         [endpoints.acme]\nhttp01_port = {http_port}\ntls_alpn01_port = {alpn_port}\nfinalize_wait_ms = 10000\n{extra}"
    )
}

fn run_client(program: &Path, args: &[&str], env: &[(&str, &Path)], dir: &Path) -> String {
    let output = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{} {args:?} failed:\n{text}",
        program.display()
    );
    text
}

fn certbot() -> PathBuf {
    let path = workspace_root().join(".venv/bin/certbot");
    assert!(
        path.exists(),
        "certbot is not installed in .venv (./test installs it: .venv/bin/pip install certbot)"
    );
    path
}

/// The serial as `openssl x509 -serial` prints it.
fn serial_of(cert: &Path) -> String {
    let output = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(cert)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_owned()
}

fn der_of(cert: &Path) -> Vec<u8> {
    let output = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(cert)
        .output()
        .unwrap();
    assert!(output.status.success());
    output.stdout
}

/// openssl verify and pkilint on an issued leaf, with its chain as the client saved it.
fn check_issued(daemon: &Daemon, leaf: &Path, chain: &Path) {
    openssl_verify(&daemon.root, chain, leaf, Some("sslserver")).unwrap();
    let findings = unwaived(pkilint(&der_of(leaf), true), false);
    assert!(findings.is_empty(), "pkilint: {findings:#?}");
}

fn inventory_status(daemon: &Daemon, serial: &str) -> String {
    let (ok, out, err) = daemon.cli(&["cert", "show", serial]);
    assert!(ok, "cert show {serial}: {out}{err}");
    out
}

#[test]
fn certbot_obtains_renews_and_revokes_two_names_with_http01() {
    ensure_test_hosts();
    let http_port = free_port();
    let mut daemon = Daemon::start(&acme_config(http_port, free_port(), ""));
    let work = daemon.dir.path().join("certbot");
    std::fs::create_dir_all(&work).unwrap();
    let directory = format!("{}/acme/default/directory", daemon.https);
    let port = http_port.to_string();
    let dirs = [
        "--config-dir",
        "w/config",
        "--work-dir",
        "w/work",
        "--logs-dir",
        "w/logs",
    ];
    let env = [("REQUESTS_CA_BUNDLE", daemon.root.as_path())];
    let mut obtain = vec!["certonly", "--server", &directory];
    obtain.extend(dirs);
    obtain.extend([
        "--non-interactive",
        "--agree-tos",
        "--register-unsafely-without-email",
        "--standalone",
        "--preferred-challenges",
        "http-01",
        "--http-01-address",
        "127.0.0.1",
        "--http-01-port",
        &port,
        "--cert-name",
        "t",
        "-d",
        "certbot-a.certgate.test",
        "-d",
        "certbot-b.certgate.test",
    ]);
    run_client(&certbot(), &obtain, &env, &work);
    let live = work.join("w/config/live/t");
    check_issued(&daemon, &live.join("cert.pem"), &live.join("chain.pem"));
    let first = serial_of(&live.join("cert.pem"));
    assert!(inventory_status(&daemon, &first).contains("certbot-b.certgate.test"));

    let mut renew = vec!["renew", "--force-renewal", "--server", &directory];
    renew.extend(dirs);
    renew.extend(["--non-interactive", "--no-random-sleep-on-renew"]);
    run_client(&certbot(), &renew, &env, &work);
    let second = serial_of(&live.join("cert.pem"));
    assert_ne!(first, second, "renewal issues a new certificate");
    check_issued(&daemon, &live.join("cert.pem"), &live.join("chain.pem"));

    let cert_path = live.join("cert.pem");
    let cert_path = cert_path.to_str().unwrap();
    let mut revoke = vec!["revoke", "--server", &directory];
    revoke.extend(dirs);
    revoke.extend([
        "--non-interactive",
        "--cert-path",
        cert_path,
        "--reason",
        "keycompromise",
        "--no-delete-after-revoke",
    ]);
    run_client(&certbot(), &revoke, &env, &work);
    let shown = inventory_status(&daemon, &second);
    assert!(shown.contains("revoked") && shown.contains("keyCompromise"), "{shown}");
    daemon.stop();
}

#[test]
fn lego_obtains_renews_and_revokes_with_http01_and_obtains_with_tls_alpn01() {
    ensure_test_hosts();
    let (http_port, alpn_port) = (free_port(), free_port());
    let mut daemon = Daemon::start(&acme_config(http_port, alpn_port, ""));
    let work = daemon.dir.path().join("lego");
    std::fs::create_dir_all(&work).unwrap();
    let directory = format!("{}/acme/default/directory", daemon.https);
    let lego = Path::new("/usr/bin/lego");
    let env = [("LEGO_CA_CERTIFICATES", daemon.root.as_path())];
    let http = format!("127.0.0.1:{http_port}");
    let alpn = format!("127.0.0.1:{alpn_port}");
    let common = [
        "--server",
        directory.as_str(),
        "--accept-tos",
        "--email",
        "ops@example.test",
        "--path",
        "w",
        "--key-type",
        "ec256",
        "--domains",
        "lego-a.certgate.test",
        "--domains",
        "lego-b.certgate.test",
        "--http",
        "--http.port",
        http.as_str(),
    ];
    let with = |extra: &[&'static str]| {
        let mut args: Vec<&str> = common.to_vec();
        args.extend(extra);
        args
    };
    run_client(lego, &with(&["run"]), &env, &work);
    let cert = work.join("w/certificates/lego-a.certgate.test.crt");
    let issuer = work.join("w/certificates/lego-a.certgate.test.issuer.crt");
    check_issued(&daemon, &cert, &issuer);
    let first = serial_of(&cert);

    run_client(
        lego,
        &with(&["renew", "--days", "999", "--no-random-sleep"]),
        &env,
        &work,
    );
    let second = serial_of(&cert);
    assert_ne!(first, second, "renewal issues a new certificate");
    check_issued(&daemon, &cert, &issuer);

    run_client(lego, &with(&["revoke", "--keep"]), &env, &work);
    assert!(inventory_status(&daemon, &second).contains("revoked"));

    let alpn_args = [
        "--server",
        directory.as_str(),
        "--accept-tos",
        "--email",
        "ops@example.test",
        "--path",
        "w",
        "--key-type",
        "rsa2048",
        "--domains",
        "lego-alpn.certgate.test",
        "--tls",
        "--tls.port",
        alpn.as_str(),
        "run",
    ];
    run_client(lego, &alpn_args, &env, &work);
    check_issued(
        &daemon,
        &work.join("w/certificates/lego-alpn.certgate.test.crt"),
        &work.join("w/certificates/lego-alpn.certgate.test.issuer.crt"),
    );
    daemon.stop();
}
