//! http-01 against a small HTTP/1.1 responder (optionally behind rustls).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use certgate_core::Identifier;
use certgate_validation::{ChallengeKind, ValidationErrorKind, Validator};
use rcgen::CertificateParams;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::{
    Task, Want, check, config, dns, fail, key_authorization, run, self_signed, server_config, unused_nameserver,
};

pub(crate) struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Reply {
    pub(crate) fn ok(body: impl Into<Vec<u8>>) -> Self {
        Self {
            status: 200,
            headers: vec![],
            body: body.into(),
        }
    }

    pub(crate) fn redirect(status: u16, location: impl Into<String>) -> Self {
        Self {
            status,
            headers: vec![("Location", location.into())],
            body: b"moved".to_vec(),
        }
    }
}

pub(crate) type Handler = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

pub(crate) struct HttpServer {
    pub(crate) port: u16,
    /// Request heads received, in order.
    pub(crate) requests: Arc<Mutex<Vec<String>>>,
    _task: Task,
}

/// An HTTP/1.1 responder on 127.0.0.1 answering each connection once, then closing it.
pub(crate) async fn http_server(tls: Option<TlsAcceptor>, handler: Handler) -> HttpServer {
    http_server_on(SocketAddr::from(([127, 0, 0, 1], 0)), tls, handler).await
}

/// The same on `addr`.
pub(crate) async fn http_server_on(addr: SocketAddr, tls: Option<TlsAcceptor>, handler: Handler) -> HttpServer {
    let listener = TcpListener::bind(addr).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (handler, seen, tls) = (handler.clone(), seen.clone(), tls.clone());
            tokio::spawn(async move {
                match tls {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            answer(stream, &*handler, &seen).await;
                        }
                    }
                    None => answer(stream, &*handler, &seen).await,
                }
            });
        }
    });
    HttpServer {
        port,
        requests,
        _task: Task(task),
    }
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    handler: &(dyn Fn(&str) -> Reply + Send + Sync),
    seen: &Mutex<Vec<String>>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
    seen.lock().unwrap().push(head);
    let reply = handler(&path);
    let mut out = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (name, value) in &reply.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&reply.body);
    let _ = stream.write_all(&bytes).await;
    let _ = stream.shutdown().await;
}

fn http_handler(tls_port: u16) -> Handler {
    Arc::new(move |path: &str| {
        let Some(token) = path.strip_prefix("/.well-known/acme-challenge/") else {
            // /hop/<total>/<n>: redirect chains; /moved/<token>: a redirect's target.
            if let Some(rest) = path.strip_prefix("/hop/") {
                let mut parts = rest.split('/').map(|p| p.parse::<usize>().unwrap());
                let (total, n) = (parts.next().unwrap(), parts.next().unwrap());
                return if n < total {
                    Reply::redirect(302, format!("/hop/{total}/{}", n + 1))
                } else {
                    Reply::ok(key_authorization(&format!("chain{total}")))
                };
            }
            if let Some(token) = path.strip_prefix("/moved/") {
                return Reply::ok(key_authorization(token));
            }
            return Reply {
                status: 404,
                headers: vec![],
                body: b"no such path".to_vec(),
            };
        };
        let ka = key_authorization(token);
        match token {
            "wrong" => Reply::ok("wrong.thumbprint"),
            "missing" => Reply {
                status: 404,
                headers: vec![],
                body: b"<html>not found\n</html>".to_vec(),
            },
            "big" => Reply::ok(vec![b'a'; 20_000]),
            "newline" => Reply::ok(format!("{ka}\r\n")),
            "redirect" => Reply::redirect(302, "/moved/redirect"),
            "chain10" => Reply::redirect(301, "/hop/10/1"),
            "chain11" => Reply::redirect(307, "/hop/11/1"),
            "ftp" => Reply::redirect(302, "ftp://localhost/file"),
            "badport" => Reply::redirect(302, "http://localhost:1/x"),
            "nolocation" => Reply {
                status: 302,
                headers: vec![],
                body: vec![],
            },
            // The https server itself (tls_port 0) serves the key authorization.
            "https" if tls_port != 0 => Reply::redirect(
                308,
                format!("https://localhost:{tls_port}/.well-known/acme-challenge/https"),
            ),
            _ => Reply::ok(ka),
        }
    })
}

#[tokio::test]
async fn http01() {
    let (cert, key) = self_signed(CertificateParams::new(vec!["localhost".to_owned()]).unwrap());
    let acceptor = TlsAcceptor::from(server_config(cert, key, &[b"http/1.1"]));
    let https = http_server(Some(acceptor), http_handler(0)).await;
    let http = http_server(None, http_handler(https.port)).await;
    let validator = Validator::new(config(http.port, https.port, unused_nameserver())).unwrap();
    let localhost = dns("localhost");
    let url = |token: &str| format!("http://localhost:{}/.well-known/acme-challenge/{token}", http.port);
    let redirect_fail = |frag: &str| fail(ValidationErrorKind::Connection, &["redirect from", frag]);

    let cases: Vec<(&str, &str, Want)> = vec![
        ("good", "good", Want::Pass),
        ("good_trailing_newline", "newline", Want::Pass),
        (
            "bad_wrong_body",
            "wrong",
            fail(
                ValidationErrorKind::IncorrectResponse,
                &[
                    &url("wrong"),
                    "127.0.0.1",
                    "expected the key authorization for token wrong (25 bytes), got 16 bytes that start with the token",
                ],
            ),
        ),
        (
            "bad_404",
            "missing",
            fail(
                ValidationErrorKind::IncorrectResponse,
                &["404 Not Found", "with a body of 23 bytes"],
            ),
        ),
        (
            "bad_body_over_cap",
            "big",
            fail(
                ValidationErrorKind::IncorrectResponse,
                &["a body of more than 16384 bytes", "token big (21 bytes)"],
            ),
        ),
        ("good_redirect_other_path", "redirect", Want::Pass),
        ("good_10_redirects", "chain10", Want::Pass),
        (
            "bad_11_redirects",
            "chain11",
            fail(ValidationErrorKind::Connection, &["too many redirects", "at most 10"]),
        ),
        (
            "bad_redirect_ftp",
            "ftp",
            redirect_fail("scheme \"ftp\" is not followed"),
        ),
        ("bad_redirect_port", "badport", redirect_fail("port 1 is not followed")),
        (
            "bad_redirect_no_location",
            "nolocation",
            fail(ValidationErrorKind::Malformed, &["without a Location header"]),
        ),
        ("good_redirect_to_https", "https", Want::Pass),
    ];
    for (case, token, want) in &cases {
        let got = run(&validator, &localhost, ChallengeKind::Http01, token).await;
        check(case, &got, want);
    }

    // What the record says and what the server saw.
    let record = run(&validator, &localhost, ChallengeKind::Http01, "good")
        .await
        .unwrap();
    assert_eq!(record.url.as_deref(), Some(url("good").as_str()));
    assert_eq!(record.hostname, "localhost");
    assert_eq!(record.port, Some(http.port));
    assert_eq!(record.address_used, Some(IpAddr::from([127, 0, 0, 1])));
    assert!(record.addresses_resolved.contains(&IpAddr::from([127, 0, 0, 1])));
    let head = http.requests.lock().unwrap().last().unwrap().to_ascii_lowercase();
    assert!(
        head.starts_with("get /.well-known/acme-challenge/good http/1.1\r\n"),
        "{head}"
    );
    assert!(head.contains("user-agent: certgate-validation\r\n"), "{head}");
    assert!(head.contains(&format!("host: localhost:{}\r\n", http.port)), "{head}");

    // After redirects, the record describes the last request.
    let record = run(&validator, &localhost, ChallengeKind::Http01, "https")
        .await
        .unwrap();
    let https_url = format!("https://localhost:{}/.well-known/acme-challenge/https", https.port);
    assert_eq!(record.url.as_deref(), Some(https_url.as_str()));
    assert_eq!(
        https.requests.lock().unwrap().len(),
        2,
        "the https server was asked once per validation"
    );
}

#[tokio::test]
async fn http01_ip_identifier() {
    let http = http_server(None, http_handler(0)).await;
    let validator = Validator::new(config(http.port, 443, unused_nameserver())).unwrap();
    let ip = Identifier::Ip(IpAddr::from([127, 0, 0, 1]));
    let record = run(&validator, &ip, ChallengeKind::Http01, "good").await.unwrap();
    let url = format!("http://127.0.0.1:{}/.well-known/acme-challenge/good", http.port);
    assert_eq!(record.url.as_deref(), Some(url.as_str()));
    assert_eq!(record.addresses_resolved, vec![IpAddr::from([127, 0, 0, 1])]);
    let head = http.requests.lock().unwrap().last().unwrap().to_ascii_lowercase();
    assert!(head.contains(&format!("host: 127.0.0.1:{}\r\n", http.port)), "{head}");
}

#[tokio::test]
async fn http01_connection_failures() {
    // A port nothing listens on: bind, note the port, close.
    let closed_port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let validator = Validator::new(config(closed_port, 443, unused_nameserver())).unwrap();
    let got = run(&validator, &dns("localhost"), ChallengeKind::Http01, "good").await;
    let expected = format!(
        "connecting to 127.0.0.1:{closed_port} for http://localhost:{closed_port}/.well-known/acme-challenge/good: \
         connection refused"
    );
    check(
        "bad_refused",
        &got,
        &fail(ValidationErrorKind::Connection, &[&expected]),
    );
    let record = got.unwrap_err().record.unwrap();
    assert_eq!(record.address_used, None);
    assert!(record.addresses_resolved.contains(&IpAddr::from([127, 0, 0, 1])));

    let got = run(&validator, &dns("no-such-host.invalid"), ChallengeKind::Http01, "good").await;
    check(
        "bad_unresolvable",
        &got,
        &fail(ValidationErrorKind::Dns, &["resolving no-such-host.invalid"]),
    );
}

/// Whatever the target answers, no error quotes it: the target may be an internal service the
/// client wants to read through challenge errors. The errors give the address, the status and
/// the body's length instead.
#[tokio::test]
async fn http01_errors_never_quote_the_target() {
    const SECRET: &str = "SECRET-aws-access-key-AKIAEXAMPLE";
    let handler: Handler = Arc::new(|path: &str| {
        let token = path.rsplit('/').next().unwrap_or_default();
        let reply = |status: u16, headers: Vec<(&'static str, String)>, body: Vec<u8>| Reply { status, headers, body };
        match token {
            "wrong" => Reply::ok(SECRET),
            "missing" => reply(404, vec![], SECRET.into()),
            "forbidden" => reply(403, vec![("X-Secret", SECRET.into())], SECRET.into()),
            "big" => Reply::ok(SECRET.repeat(1000)),
            "badlocation" => Reply::redirect(302, format!("http://[{SECRET}/")),
            "badscheme" => Reply::redirect(302, format!("gopher://{SECRET}/")),
            _ => Reply::ok(key_authorization(token)),
        }
    });
    let http = http_server(None, handler).await;
    let validator = Validator::new(config(http.port, 443, unused_nameserver())).unwrap();
    let address = format!("127.0.0.1:{}", http.port);
    let cases: [(&str, &str, Want); 6] = [
        (
            "bad_wrong_body",
            "wrong",
            fail(
                ValidationErrorKind::IncorrectResponse,
                &[&address, "got 33 bytes that differ", "token wrong (25 bytes)"],
            ),
        ),
        (
            "bad_404",
            "missing",
            fail(
                ValidationErrorKind::IncorrectResponse,
                &[&address, "404 Not Found", "a body of 33 bytes"],
            ),
        ),
        (
            "bad_403_with_header",
            "forbidden",
            fail(ValidationErrorKind::IncorrectResponse, &[&address, "403 Forbidden"]),
        ),
        (
            "bad_body_over_cap",
            "big",
            fail(
                ValidationErrorKind::IncorrectResponse,
                &[&address, "a body of more than 16384 bytes"],
            ),
        ),
        (
            "bad_location",
            "badlocation",
            fail(ValidationErrorKind::Malformed, &["the Location header (42 bytes)"]),
        ),
        (
            "bad_scheme",
            "badscheme",
            fail(ValidationErrorKind::Connection, &["scheme \"gopher\" is not followed"]),
        ),
    ];
    for (case, token, want) in &cases {
        let got = run(&validator, &dns("localhost"), ChallengeKind::Http01, token).await;
        check(case, &got, want);
        let err = got.unwrap_err();
        assert!(!err.detail.contains("SECRET"), "case {case}: {}", err.detail);
        let json = format!("{:?}", err.record);
        assert!(!json.contains("SECRET"), "case {case}: record {json}");
    }
}
