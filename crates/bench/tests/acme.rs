//! The ACME client against real peers: its own http-01 responder, a server that drops every
//! connection, and Pebble (skipped when the `pebble` binary is not installed).

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hyper::{Method, StatusCode};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::Map;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use certgate_bench::Error;
use certgate_bench::acme::{
    AccountKey, Client, Connector, Http01Responder, KeyAlg, Payload, RevokeBy, Signer, Status, Trust, csr_p256,
    expect_success,
};
use certgate_bench::load::{self, ChallengeKind, LoadConfig};

fn local() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn plain_client() -> Client {
    let connector = Connector::new(&Trust::DangerInsecure).expect("connector");
    let key = AccountKey::generate(KeyAlg::Es256).expect("key");
    Client::new(&connector, "http://127.0.0.1:1/unused", key)
}

#[tokio::test]
async fn responder_serves_tokens_over_one_kept_alive_connection() {
    let responder = Http01Responder::bind(local()).await.expect("bind");
    let tokens = responder.tokens();
    tokens.insert("tok1", "tok1.thumb");
    let base = format!("http://{}/.well-known/acme-challenge", responder.local_addr());
    let mut client = plain_client();
    let cases = [
        ("good_token", "tok1", StatusCode::OK, "tok1.thumb"),
        ("bad_unknown_token", "nope", StatusCode::NOT_FOUND, ""),
    ];
    for (name, token, status, body) in cases {
        let r = client
            .send(Method::GET, &format!("{base}/{token}"), &[], Vec::new())
            .await
            .expect(name);
        assert_eq!((r.status, &r.body[..]), (status, body.as_bytes()), "{name}");
    }
    tokens.remove("tok1");
    let r = client
        .send(Method::GET, &format!("{base}/tok1"), &[], Vec::new())
        .await
        .expect("removed");
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(client.connections_opened(), 1, "keep-alive held");
    assert!(tokens.is_empty());
}

/// Answers one request per connection, then closes without saying so.
async fn closing_server() -> SocketAddr {
    let listener = TcpListener::bind(local()).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = vec![0; 4096];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await;
        }
    });
    addr
}

#[tokio::test]
async fn reconnects_when_the_server_closed_the_connection() {
    let addr = closing_server().await;
    let mut client = plain_client();
    for i in 0..5 {
        let r = client
            .send(Method::GET, &format!("http://{addr}/x"), &[], Vec::new())
            .await
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(&r.body[..], b"ok");
        // Give the FIN time to arrive on some rounds and not on others.
        if i % 2 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(client.connections_opened(), 5);
}

#[tokio::test]
async fn request_timeout_ends_a_hanging_request() {
    let listener = TcpListener::bind(local()).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let connector = Connector::new(&Trust::DangerInsecure)
        .expect("connector")
        .with_timeout(Duration::from_millis(200));
    let key = AccountKey::generate(KeyAlg::Es256).expect("key");
    let mut client = Client::new(&connector, &format!("http://{addr}/dir"), key);
    let err = client.directory().await.expect_err("must time out");
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
}

/// A Pebble started by `pebble.sh`, killed on drop.
struct Pebble {
    pid: String,
    dir: tempfile::TempDir,
    directory: String,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(&self.pid).status();
    }
}

fn free_port() -> u16 {
    StdListener::bind(local())
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn start_pebble(eab: Option<(&str, &str)>) -> Option<Pebble> {
    let installed = Command::new("sh")
        .args(["-c", "command -v pebble"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = format!("127.0.0.1:{}", free_port());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("pebble.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script)
        .arg(dir.path())
        .env("PEBBLE_LISTEN", &listen)
        .env("PEBBLE_MGMT", format!("127.0.0.1:{}", free_port()))
        .env("PEBBLE_HTTP_PORT", free_port().to_string())
        .env("PEBBLE_TLS_PORT", free_port().to_string());
    if let Some((kid, hmac)) = eab {
        cmd.env("PEBBLE_EAB_KID", kid).env("PEBBLE_EAB_HMAC", hmac);
    }
    let out = cmd.output().expect("run pebble.sh");
    assert!(
        out.status.success(),
        "pebble.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(Pebble {
        pid: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        dir,
        directory: format!("https://{listen}/dir"),
    })
}

fn pebble_client(pebble: &Pebble, alg: KeyAlg) -> Client {
    let connector = Connector::new(&Trust::RootPem(pebble.dir.path().join("ca.pem"))).expect("connector");
    Client::new(&connector, &pebble.directory, AccountKey::generate(alg).expect("key"))
}

fn leaf_der(pem: &str) -> Vec<u8> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("PEM")
        .to_vec()
}

/// Order → challenge → finalize → download; returns the chain and the CSR's key.
async fn issue(client: &mut Client, name: &str) -> (String, AccountKey) {
    let order = client.new_order(&[("dns", name)], None).await.expect("order");
    assert_eq!(order.status, Status::Pending);
    for url in &order.authorizations {
        let authz = client.authorization(url).await.expect("authz");
        let challenge = authz.challenge("http-01").expect("http-01 offered");
        client.respond(&challenge.url).await.expect("respond");
    }
    client.poll_status(&order.url, &["ready"]).await.expect("ready");
    let csr = csr_p256(&[name.to_owned()]).expect("csr");
    let finalized = client.finalize(&order, &csr.csr_der).await.expect("finalize");
    let valid = client.poll_status(&finalized.url, &["valid"]).await.expect("valid");
    let cert_url = valid["certificate"].as_str().expect("certificate URL");
    let pem = client.download(cert_url).await.expect("download");
    (pem, csr.key().expect("cert key"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr, reason = "a skipped test says why")]
async fn pebble_full_lifecycle() {
    let Some(pebble) = start_pebble(None) else {
        eprintln!("pebble not installed: skipped");
        return;
    };
    let mut client = pebble_client(&pebble, KeyAlg::Es256);
    let account = client
        .new_account(&["mailto:bench@example.test".to_owned()], true, None)
        .await
        .expect("account");
    assert_eq!(account.status, Status::Valid);
    assert_eq!(client.account_url(), Some(account.url.as_str()));

    let (pem, cert_key) = issue(&mut client, "one.bench.test").await;
    assert!(pem.matches("BEGIN CERTIFICATE").count() >= 2, "leaf and chain");
    client
        .revoke(&leaf_der(&pem), Some(4), RevokeBy::Account)
        .await
        .expect("revoke by account");
    let (pem, cert_key2) = issue(&mut client, "two.bench.test").await;
    client
        .revoke(&leaf_der(&pem), None, RevokeBy::CertKey(&cert_key2))
        .await
        .expect("revoke by certificate key");
    let (pem, _) = issue(&mut client, "three.bench.test").await;
    let err = client
        .revoke(&leaf_der(&pem), None, RevokeBy::CertKey(&cert_key))
        .await
        .expect_err("another certificate's key may not revoke");
    assert!(matches!(err, Error::Server { .. }), "{err}");

    // Nonce handling: a bad nonce fails without the retry and is cured by it.
    client.set_retry_bad_nonce(false);
    client.set_nonce(Some("bogus".to_owned()));
    let url = account.url.clone();
    let r = client.post_as_account(&url, Payload::Empty).await.expect("send");
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.is_acme_error("badNonce"), "{:?}", r.problem());
    client.set_retry_bad_nonce(true);
    client.set_nonce(Some("bogus".to_owned()));
    let r = client.post_as_account(&url, Payload::Empty).await.expect("send");
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.problem());

    // Forged header through post_with: a kid request that also carries a jwk is malformed.
    let key = client.key().clone();
    let kid = url.clone();
    let r = client
        .post_with(&url, |nonce| {
            Ok(
                certgate_bench::acme::JwsParts::new(&url, Some(nonce), &Payload::Empty, &Signer::Kid(&key, &kid))
                    .set("jwk", key.jwk())
                    .sign(&key)?
                    .to_body(),
            )
        })
        .await
        .expect("send");
    assert!(r.status.is_client_error(), "{}", r.status);

    // Key rollover, then the new key works and the old one does not.
    let old = client.key().clone();
    let new = AccountKey::generate(KeyAlg::Es256).expect("key");
    client.key_change(new.clone()).await.expect("key change");
    assert_eq!(client.key().thumbprint(), new.thumbprint());
    client
        .new_order(&[("dns", "four.bench.test")], Some(Map::new()))
        .await
        .expect("order with the new key");
    let r = client
        .post(&url, Payload::Empty, &Signer::Kid(&old, &url))
        .await
        .expect("send");
    assert!(r.status.is_client_error(), "old key refused: {}", r.status);

    let account = client.deactivate().await.expect("deactivate");
    assert_eq!(account.status, Status::Deactivated);
    let err = client
        .new_order(&[("dns", "five.bench.test")], None)
        .await
        .expect_err("deactivated");
    assert!(matches!(err, Error::Server { .. }), "{err}");
    assert_eq!(client.connections_opened(), 1, "one kept-alive connection throughout");
}

/// An EAB (key identifier, MAC key) as `new_account` takes it.
type Eab<'a> = Option<(&'a str, &'a [u8])>;

#[tokio::test]
#[allow(clippy::print_stderr, reason = "a skipped test says why")]
async fn pebble_external_account_binding() {
    // Pebble's example MAC key (base64url), as its EAB example config ships it.
    let hmac_b64 = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let Some(pebble) = start_pebble(Some(("kid-1", hmac_b64))) else {
        eprintln!("pebble not installed: skipped");
        return;
    };
    use base64::Engine;
    let hmac = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(hmac_b64)
        .expect("base64url");
    let cases: [(&str, Eab<'_>, bool); 3] = [
        ("bad_no_eab", None, false),
        ("bad_wrong_mac_key", Some(("kid-1", b"wrong key")), false),
        ("good_eab", Some(("kid-1", &hmac)), true),
    ];
    for (name, eab, ok) in cases {
        let mut client = pebble_client(&pebble, KeyAlg::Es256);
        let result = client.new_account(&[], true, eab).await;
        assert_eq!(result.is_ok(), ok, "{name}: {result:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr, reason = "a skipped test says why")]
async fn pebble_load_run_reports_figures() {
    let Some(pebble) = start_pebble(None) else {
        eprintln!("pebble not installed: skipped");
        return;
    };
    let responder = Http01Responder::bind(local()).await.expect("bind");
    let pid = pebble.pid.parse().expect("pid");
    let cfg = LoadConfig {
        directory_url: pebble.directory.clone(),
        connector: Connector::new(&Trust::DangerInsecure).expect("connector"),
        clients: 2,
        duration: Duration::from_secs(2),
        orders_per_client: Some(5),
        names: 2,
        challenge: ChallengeKind::Http01,
        http01: Some(responder.tokens()),
        server_pid: Some(pid),
        key_alg: KeyAlg::Es256,
        validity: None,
        client_interval: None,
    };
    let report = load::run(&cfg).await.expect("run");
    assert_eq!(report.errors, 0, "{:?}", report.error_samples);
    assert_eq!(report.certificates + report.unfinished, 10);
    assert!(report.certificates > 0);
    assert!(report.server_cpu_ms_per_cert.is_some());

    // Paced (--rate 4 with 2 clients): each client starts an order every 500 ms, so a
    // 2-second window holds at most 4 per client however fast the server is.
    let paced = LoadConfig {
        orders_per_client: None,
        client_interval: Some(Duration::from_millis(500)),
        ..cfg.clone()
    };
    let report = load::run(&paced).await.expect("paced run");
    assert_eq!(report.errors, 0, "{:?}", report.error_samples);
    assert!(
        (1..=8).contains(&report.certificates),
        "{} certificates in a paced 2 s window",
        report.certificates
    );
    assert!(report.latency.p50_ms > 0.0 && report.latency.p50_ms <= report.latency.max_ms);
    assert!(responder.tokens().is_empty(), "tokens removed after each order");
    let table = load::table("pebble", &[report]);
    assert!(table.contains("pebble"));
    // The client is still usable after a run: a HEAD newNonce passes expect_success.
    let mut client = pebble_client(&pebble, KeyAlg::Es256);
    let dir = client.directory().await.expect("directory");
    let r = client
        .send(Method::HEAD, &dir.new_nonce, &[], Vec::new())
        .await
        .expect("nonce");
    assert!(expect_success(&dir.new_nonce, r).is_ok());
}
