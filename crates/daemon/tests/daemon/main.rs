//! End-to-end tests: the built `certgate` binary, real sockets, real TLS, real clients
//! (curl, openssl).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use certgate_test_support::binary::{Spawned, run};
use certgate_test_support::workspace_root;

mod acme_clients;
mod attack;
mod est_clients;
mod instant;
mod scep_clients;

fn certgate() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_certgate"))
}

fn curl(args: &[&str]) -> (bool, String) {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl is installed");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// A daemon on ephemeral ports in a temporary data directory.
struct Daemon {
    process: Spawned,
    dir: tempfile::TempDir,
    https: String,
    http: String,
    root: PathBuf,
}

impl Daemon {
    fn start(extra_config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "data_dir = \"data\"\n[listeners]\nhttps = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nshutdown_grace_seconds = 5\n{extra_config}"
        );
        std::fs::write(dir.path().join("certgate.toml"), config).unwrap();
        let mut process = Spawned::start(certgate(), &["serve", "--config", "certgate.toml"], &[], dir.path());
        let mut https = String::new();
        let mut http = String::new();
        let mut root = PathBuf::new();
        loop {
            let line = process.wait_for_line(Duration::from_secs(60), |_| true);
            if let Some(rest) = line.strip_prefix("https: ") {
                https = rest.split_whitespace().next().unwrap().trim_end_matches('/').to_owned();
            } else if let Some(rest) = line.strip_prefix("http: ") {
                http = rest.split_whitespace().next().unwrap().trim_end_matches('/').to_owned();
            } else if let Some(rest) = line.strip_prefix("root certificate: ") {
                root = dir.path().join(rest);
            } else if line == "ready" {
                break;
            }
        }
        Self {
            process,
            dir,
            https,
            http,
            root,
        }
    }

    fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let mut all = args.to_vec();
        all.extend(["--data-dir", "data"]);
        run(certgate(), &all, self.dir.path())
    }

    fn stop(&mut self) {
        self.process.signal(libc_sigterm());
        self.process.wait_for_line(Duration::from_secs(30), |l| l == "stopped");
        let status = self.process.child.wait().unwrap();
        assert!(status.success(), "clean exit after SIGTERM: {status}");
    }
}

fn libc_sigterm() -> i32 {
    15
}

/// The README's first command: `certgate serve` with no configuration, in a fresh
/// directory, answers /healthz over HTTPS verified with the root it printed.
#[test]
fn readme_defaults_serve_healthz_over_verified_https() {
    let dir = tempfile::tempdir().unwrap();
    let mut process = Spawned::start(certgate(), &["serve"], &[], dir.path());
    let root_line = process.wait_for_line(Duration::from_secs(60), |l| l.starts_with("root certificate: "));
    let root = dir.path().join(root_line.trim_start_matches("root certificate: "));
    assert_eq!(root, dir.path().join("certgate-data/ca/default/root.pem"));
    process.wait_for_line(Duration::from_secs(60), |l| {
        l.starts_with("https: https://127.0.0.1:8443/")
    });
    process.wait_for_line(Duration::from_secs(60), |l| l == "ready");

    let root_arg = root.to_str().unwrap();
    let (ok, body) = curl(&["--cacert", root_arg, "https://127.0.0.1:8443/healthz"]);
    assert!(ok && body.trim() == "ok", "verified HTTPS health check: {body}");
    let (ok, body) = curl(&["--cacert", root_arg, "https://localhost:8443/readyz"]);
    assert!(ok && body.trim() == "ready", "{body}");
    let (ok, body) = curl(&["http://127.0.0.1:8080/healthz"]);
    assert!(ok && body.trim() == "ok", "{body}");
    // Without the root, verification fails: the certificate is really from our CA.
    let (ok, _) = curl(&["https://127.0.0.1:8443/healthz"]);
    assert!(!ok, "curl must not trust the daemon without the root");

    for key in [
        "certgate-data/ca/default/issuer.key",
        "certgate-data/ca/default/root.key",
        "certgate-data/tls/server.key",
    ] {
        let mode = std::fs::metadata(dir.path().join(key)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    process.signal(libc_sigterm());
    process.wait_for_line(Duration::from_secs(30), |l| l == "stopped");
    assert!(process.child.wait().unwrap().success());
}

/// The server certificate and the CA certificate endpoint, checked with openssl.
#[test]
fn https_certificate_chains_to_root_and_ca_endpoint_serves_issuer() {
    let mut daemon = Daemon::start("");
    let work = daemon.dir.path();
    let host_port = daemon.https.trim_start_matches("https://");
    let output = Command::new("openssl")
        .args(["s_client", "-connect", host_port, "-servername", "localhost", "-CAfile"])
        .arg(&daemon.root)
        .args(["-verify_return_error", "-brief"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("Verification: OK"), "openssl s_client: {text}");

    let issuer_der = work.join("issuer.der");
    let (ok, body) = curl(&[
        "-o",
        issuer_der.to_str().unwrap(),
        &format!("{}/ca/default.crt", daemon.http),
    ]);
    assert!(ok, "{body}");
    let (ok, _, err) = run(
        Path::new("openssl"),
        &["x509", "-inform", "DER", "-in", "issuer.der", "-noout", "-subject"],
        work,
    );
    assert!(ok, "the CA endpoint serves a DER certificate: {err}");
    let (ok, body) = curl(&["-f", &format!("{}/ca/nope.crt", daemon.http)]);
    assert!(!ok && body.contains("404"), "{body}");
    let (ok, body) = curl(&["-f", "-X", "POST", &format!("{}/healthz", daemon.http)]);
    assert!(!ok && body.contains("405"), "{body}");
    daemon.stop();
}

/// `certgate cert list|show|revoke` work through the admin socket while the daemon runs and
/// directly on the store once it stopped; serials are hex as openssl prints them.
#[test]
fn cert_commands_work_with_the_daemon_running_and_stopped() {
    let mut daemon = Daemon::start("");
    let (ok, out, err) = daemon.cli(&["cert", "list"]);
    assert!(ok, "{err}");
    let serial = out
        .lines()
        .nth(1)
        .and_then(|l| l.split('\t').next())
        .expect("the daemon's own certificate is listed")
        .to_owned();

    let server_pem = daemon.dir.path().join("data/tls/server.pem");
    let (ok, openssl_serial, _) = run(
        Path::new("openssl"),
        &["x509", "-in", server_pem.to_str().unwrap(), "-noout", "-serial"],
        daemon.dir.path(),
    );
    assert!(ok);
    assert_eq!(openssl_serial.trim(), format!("serial={serial}"), "same hex as openssl");

    let (ok, out, err) = daemon.cli(&["cert", "show", &serial.to_lowercase()]);
    assert!(
        ok && out.contains("\"status\": \"valid\"") && out.contains("daemon-tls"),
        "{out}{err}"
    );
    let (ok, out, _) = daemon.cli(&["cert", "show", &serial, "--pem"]);
    assert!(ok && out.starts_with("-----BEGIN CERTIFICATE-----"));
    let (ok, out, err) = daemon.cli(&["cert", "revoke", &serial, "--reason", "superseded"]);
    assert!(ok && out.contains("through the running daemon"), "{out}{err}");
    let (ok, _, err) = daemon.cli(&["cert", "revoke", &serial]);
    assert!(!ok && err.contains("already revoked"), "{err}");
    let (ok, out, _) = daemon.cli(&["cert", "list", "--name", "localhost", "--format", "json"]);
    assert!(ok && out.contains("superseded"), "{out}");
    daemon.stop();
    assert!(
        !daemon.dir.path().join("data/admin.sock").exists(),
        "socket removed at shutdown"
    );

    let (ok, out, err) = daemon.cli(&["cert", "show", &serial]);
    assert!(ok && out.contains("\"status\": \"revoked\""), "{out}{err}");
    let (ok, _, err) = daemon.cli(&["cert", "revoke", &serial, "--reason", "keyCompromise"]);
    assert!(!ok && err.contains("already revoked"), "{err}");
    let (ok, _, err) = daemon.cli(&["cert", "show", "0BADC0DE"]);
    assert!(!ok && err.contains("no certificate"), "{err}");
    let (ok, _, err) = daemon.cli(&["cert", "show", "not-hex"]);
    assert!(!ok && err.contains("hexadecimal"), "{err}");
    let (ok, out, err) = daemon.cli(&["cert", "list", "--expiring-within", "400"]);
    assert!(ok && out.contains(&serial) && out.contains("revoked"), "{out}{err}");

    // A revoked listener certificate is replaced at the next start.
    let mut again = Daemon {
        process: Spawned::start(
            certgate(),
            &["serve", "--config", "certgate.toml"],
            &[],
            daemon.dir.path(),
        ),
        ..daemon
    };
    again.process.wait_for_line(Duration::from_secs(60), |l| l == "ready");
    let (ok, out, _) = again.cli(&["cert", "list"]);
    assert!(
        ok && out.lines().count() == 3,
        "a new listener certificate was issued: {out}"
    );
    again.stop();
}

/// A second daemon on the same data directory is refused with a clear message.
#[test]
fn second_daemon_on_the_same_store_is_refused() {
    let mut daemon = Daemon::start("");
    let (ok, _, err) = run(certgate(), &["serve", "--config", "certgate.toml"], daemon.dir.path());
    assert!(!ok && err.contains("already running"), "{err}");
    daemon.stop();
}

#[test]
fn config_check_accepts_the_examples_and_names_problems() {
    let root = workspace_root();
    for example in ["deploy/certgate.toml", "deploy/container.toml"] {
        let (ok, out, err) = run(certgate(), &["config", "check", example], &root);
        assert!(ok && out.contains(": ok"), "{example}: {out}{err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("unknown_field", "colour = 1\n", "unknown field"),
        (
            "unknown_issuer",
            "[[endpoints]]\nprotocol = \"acme\"\nname = \"a\"\nissuer = \"x\"\n",
            "unknown issuer",
        ),
    ];
    for (case, text, want) in cases {
        std::fs::write(dir.path().join("bad.toml"), text).unwrap();
        let (ok, _, err) = run(certgate(), &["config", "check", "bad.toml"], dir.path());
        assert!(!ok && err.contains(want), "case {case}: {err}");
    }
}

/// `ca init` for an extra issuer with an encrypted key, `ca root`, `ca import` of a CA made
/// by openssl, and `ca list`.
#[test]
fn ca_commands() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    std::fs::write(work.join("pass"), "s3cret\n").unwrap();
    let (ok, out, err) = run(
        certgate(),
        &[
            "ca",
            "init",
            "--data-dir",
            "data",
            "--name",
            "rsa",
            "--key-type",
            "rsa2048",
            "--passphrase-file",
            "pass",
        ],
        work,
    );
    assert!(ok, "{out}{err}");
    let key = std::fs::read_to_string(work.join("data/ca/rsa/issuer.key")).unwrap();
    assert!(key.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    let (ok, _, err) = run(certgate(), &["ca", "init", "--data-dir", "data", "--name", "rsa"], work);
    assert!(!ok && err.contains("already exists"), "no overwrite: {err}");
    let (ok, out, _) = run(certgate(), &["ca", "root", "--data-dir", "data", "--name", "rsa"], work);
    assert!(ok && out == std::fs::read_to_string(work.join("data/ca/rsa/root.pem")).unwrap());

    // An existing CA made with openssl: a self-signed P-384 root used directly as issuer.
    let (ok, _, err) = run(
        Path::new("openssl"),
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
            "-nodes",
            "-keyout",
            "ext.key",
            "-out",
            "ext.pem",
            "-days",
            "365",
            "-subj",
            "/CN=External Root",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        work,
    );
    assert!(ok, "{err}");
    let (ok, out, err) = run(
        certgate(),
        &[
            "ca",
            "import",
            "--data-dir",
            "data",
            "--name",
            "ext",
            "--cert",
            "ext.pem",
            "--key",
            "ext.key",
        ],
        work,
    );
    assert!(ok, "{out}{err}");
    let mode = std::fs::metadata(work.join("data/ca/ext/issuer.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let (ok, _, err) = run(
        certgate(),
        &[
            "ca",
            "import",
            "--data-dir",
            "data",
            "--name",
            "mismatch",
            "--cert",
            "ext.pem",
            "--key",
            "data/ca/rsa/root.key",
        ],
        work,
    );
    assert!(!ok, "a key that is not the certificate's is refused: {err}");
    let (ok, out, _) = run(certgate(), &["ca", "list", "--data-dir", "data"], work);
    assert!(
        ok && out.contains("ext\tCN=External Root") && out.contains("rsa\t"),
        "{out}"
    );
}

/// The admin socket answers an absurd day count with 400, not a panic.
#[test]
fn admin_socket_refuses_absurd_queries() {
    let mut daemon = Daemon::start("");
    let (ok, _, err) = daemon.cli(&["cert", "list", "--expiring-within", "4000000000"]);
    assert!(!ok && err.contains("too large"), "{err}");
    let (ok, out, _) = daemon.cli(&["cert", "list"]);
    assert!(ok && out.lines().count() >= 2, "the daemon still answers: {out}");
    daemon.stop();
}
