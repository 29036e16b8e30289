//! The test fixture (authority, store, clock), a webhook receiver that verifies signatures on
//! its own (aws-lc-rs HMAC, not the crate's signing code), and TLS servers.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certgate_authority::{IssueRequest, KeyType};
use certgate_core::{Clock, ManualClock, ParsedCsr, Protocol, RequesterId, Serial};
use certgate_lifecycle::{LifecycleDeps, Notification, NotifierSettings, WebhookConfig, WebhookSecret};
use certgate_store::CertificateRecord;
use certgate_test_support::{TEST_ENDPOINT, TestAuthority, csr, name, rcgen, test_endpoint};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// The secret every test webhook uses.
pub const SECRET: &[u8] = b"test-secret-0123456789-abcdef";

/// An authority over a real sled store, with a manual clock standing at `t0`.
pub struct Fixture {
    pub t: TestAuthority,
    pub clock: Arc<ManualClock>,
    pub t0: OffsetDateTime,
}

impl Fixture {
    pub fn new() -> Self {
        let t0 = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let clock = Arc::new(ManualClock::new(t0));
        let t = TestAuthority::with_clock(KeyType::P256, vec![test_endpoint()], clock.clone());
        Self { t, clock, t0 }
    }

    pub fn deps(&self) -> LifecycleDeps {
        LifecycleDeps {
            certificates: Arc::new(self.t.store.clone()),
            notifications: Arc::new(self.t.store.clone()),
            clock: self.clock.clone(),
        }
    }

    pub fn clock_now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Sets the clock to `t0 + offset`.
    pub fn at(&self, offset: time::Duration) {
        self.clock.set(self.t0 + offset);
    }

    /// Issues a tls-server certificate (90 days) for `sans` at the clock's time; returns the
    /// record, the chain (leaf first) and the key.
    pub async fn issue(
        &self,
        sans: &[&str],
        replaces: Option<&Serial>,
        labels: &[(&str, &str)],
    ) -> (CertificateRecord, Vec<Vec<u8>>, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().unwrap();
        let parsed = ParsedCsr::from_der(&csr(&key, None, sans)).unwrap();
        let mut request = IssueRequest::new(
            Protocol::Acme,
            name(TEST_ENDPOINT),
            parsed,
            RequesterId::new("acme:lifecycle-test").unwrap(),
        );
        request.replaces = replaces.cloned();
        request.owner_labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let issued = self.t.authority.issue(request).await.unwrap();
        (issued.record, issued.chain, key)
    }
}

/// Fast notifier settings for tests: millisecond backoff.
pub fn notifier_settings(webhooks: Vec<WebhookConfig>) -> NotifierSettings {
    NotifierSettings {
        webhooks,
        attempts: 5,
        base_delay_ms: 10,
        max_delay_ms: 200,
        connect_timeout_ms: 2000,
        response_timeout_ms: 2000,
        ..NotifierSettings::default()
    }
}

pub fn webhook(name: &str, url: String) -> WebhookConfig {
    WebhookConfig {
        name: name.into(),
        url,
        secret: WebhookSecret::new(SECRET),
        events: None,
        ca_file: None,
    }
}

/// One request the receiver accepted (signature valid).
#[derive(Debug, Clone)]
pub struct Received {
    pub event: String,
    pub delivery: String,
    pub notification: Notification,
}

#[derive(Default)]
struct ReceiverState {
    accepted: Vec<Received>,
    /// Requests whose signature or headers were wrong (answered 401).
    rejected: Vec<String>,
    /// Statuses to answer with, in order; 200 once empty.
    statuses: VecDeque<u16>,
}

/// A webhook receiver on 127.0.0.1 (plain HTTP or TLS) that checks `X-Certgate-Signature`
/// with its own HMAC code and keeps what it accepted.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<ReceiverState>>,
    task: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    pub async fn start() -> Self {
        Self::start_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), None, Vec::new())
    }

    /// A receiver on `listener`, over TLS if `tls` is given, answering `statuses` first.
    pub fn start_on(listener: TcpListener, tls: Option<TlsAcceptor>, statuses: Vec<u16>) -> Self {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ReceiverState {
            statuses: statuses.into(),
            ..ReceiverState::default()
        }));
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (state, tls) = (Arc::clone(&shared), tls.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| handle(Arc::clone(&state), request));
                    let builder = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        Self { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks/certgate?source=test", self.addr)
    }

    pub fn accepted(&self) -> Vec<Received> {
        self.state.lock().unwrap().accepted.clone()
    }

    pub fn rejected(&self) -> Vec<String> {
        self.state.lock().unwrap().rejected.clone()
    }
}

async fn handle(
    state: Arc<Mutex<ReceiverState>>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (signature, event, delivery) = (
        header("X-Certgate-Signature"),
        header("X-Certgate-Event"),
        header("X-Certgate-Delivery"),
    );
    let path_ok = request.uri().path() == "/hooks/certgate" && request.method() == hyper::Method::POST;
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let verdict = match (signature, event, delivery) {
        (Some(signature), Some(event), Some(delivery)) if path_ok => verify(&signature, &body)
            .and_then(|()| serde_json::from_slice::<Notification>(&body).map_err(|e| e.to_string()))
            .and_then(|notification| {
                if notification.event.as_str() == event {
                    Ok(Received {
                        event,
                        delivery,
                        notification,
                    })
                } else {
                    Err("event header differs from the payload".to_owned())
                }
            }),
        _ => Err("missing header or wrong path".to_owned()),
    };
    let mut state = state.lock().unwrap();
    let status = match verdict {
        Ok(received) => {
            let status = state.statuses.pop_front().unwrap_or(200);
            if status == 200 {
                state.accepted.push(received);
            }
            status
        }
        Err(why) => {
            state.rejected.push(why);
            401
        }
    };
    Ok(Response::builder()
        .status(status)
        .body(Full::new(Bytes::from_static(b"")))
        .unwrap())
}

/// Checks `t=<unix>,v1=<hex>` as a receiver would: HMAC-SHA256 over "<t>.<body>".
fn verify(signature: &str, body: &[u8]) -> Result<(), String> {
    let mut t = None;
    let mut v1 = None;
    for part in signature.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = Some(value),
            Some(("v1", value)) => v1 = Some(value),
            _ => return Err(format!("unexpected signature part {part:?}")),
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return Err("signature lacks t or v1".to_owned());
    };
    t.parse::<i64>().map_err(|_| "t is not a number".to_owned())?;
    let tag = hex::decode(v1).map_err(|_| "v1 is not hex".to_owned())?;
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET);
    let mut message = format!("{t}.").into_bytes();
    message.extend_from_slice(body);
    aws_lc_rs::hmac::verify(&key, &message, &tag).map_err(|_| "bad signature".to_owned())
}

/// Waits until `check` holds, polling; panics after five seconds.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A TLS acceptor serving `chain` with `key`.
pub fn tls_acceptor(chain: &[Vec<u8>], key: &rcgen::KeyPair) -> TlsAcceptor {
    let chain = chain.iter().map(|der| CertificateDer::from(der.clone())).collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

/// A TLS server on 127.0.0.1 that completes handshakes and then closes.
pub struct TlsServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsServer {
    pub async fn start(chain: &[Vec<u8>], key: &rcgen::KeyPair) -> Self {
        let acceptor = tls_acceptor(chain, key);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = acceptor.accept(stream).await;
                });
            }
        });
        Self { addr, task }
    }
}

/// A port on 127.0.0.1 nothing listens on (bound, then closed).
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}
