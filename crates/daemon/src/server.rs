//! Routing: each request to its protocol crate, health, CA certificates and `/metrics`.
//! Handlers here are thin; accepting connections is `listener`'s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use certgate_acme::jws::MAX_JWS_LEN;
use certgate_acme::{AcmeRequest, AcmeServer};
use certgate_authority::Authority;
use certgate_core::Name;
use certgate_est::{EstRequest, EstServer, TlsFacts, TlsVersion};
use certgate_metrics::{Metrics, RequestProtocol};
use certgate_revocation::{RevocationServer, StatusRequest};
use certgate_scep::{ScepRequest, ScepServer};
use certgate_store::{CertificateStore, SledStore};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use subtle::ConstantTimeEq;

use crate::admin::AdminService;
use crate::http::{Body, text, with_type};

/// What request handlers can reach.
pub struct Router {
    /// The authority.
    pub authority: Arc<Authority>,
    /// The store (reads only; writes go through the authority).
    pub store: SledStore,
    /// The ACME endpoints, served under `/acme/`.
    pub acme: Option<Arc<AcmeServer>>,
    /// The EST endpoints, served under `/.well-known/est/`.
    pub est: Option<Arc<EstServer>>,
    /// The SCEP endpoints, served under `/scep/` and at `/cgi-bin/pkiclient.exe`.
    pub scep: Option<Arc<ScepServer>>,
    /// CRLs (`/crl/`) and OCSP (`/ocsp/`), on both listeners.
    pub revocation: Option<Arc<RevocationServer>>,
    /// The admin API (`/admin/v1/`), on the HTTPS listener only.
    pub admin: Option<Arc<AdminService>>,
    /// `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Who may read `/metrics`.
    pub metrics_gate: MetricsGate,
    /// How long a client may take to send a request body.
    pub body_read_timeout: Duration,
}

/// Who may read `/metrics`: clients from listed networks, and any client with the token.
#[derive(Debug, Clone, Default)]
pub struct MetricsGate {
    /// Client networks admitted without a token.
    pub networks: Vec<certgate_core::IpNet>,
    /// SHA-256 of the bearer token that admits any client.
    pub token_sha256: Option<[u8; 32]>,
}

impl MetricsGate {
    /// Whether a request from `peer` with this `Authorization` header may read `/metrics`.
    pub fn admits(&self, peer: std::net::IpAddr, authorization: Option<&str>) -> bool {
        let peer = peer.to_canonical();
        if self.networks.iter().any(|net| net.contains(peer)) {
            return true;
        }
        let presented = authorization.and_then(|value| value.strip_prefix("Bearer "));
        match (&self.token_sha256, presented) {
            (Some(expected), Some(token)) => {
                let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.trim().as_bytes());
                bool::from(digest.as_ref().ct_eq(expected))
            }
            _ => false,
        }
    }
}

impl Router {
    /// Routes one request and logs one summary event for it.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        listener: &'static str,
        peer: SocketAddr,
        tls: Option<&TlsFacts>,
    ) -> Response<Body> {
        let started = Instant::now();
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let (response, protocol) = match (&self.acme, &self.est, &self.scep) {
            (Some(acme), _, _) if path.starts_with("/acme/") => (
                acme_request(acme, request, listener, peer, self.body_read_timeout).await,
                RequestProtocol::Acme,
            ),
            (_, Some(est), _) if path.starts_with("/.well-known/est/") => (
                est_request(est, request, peer, tls, self.body_read_timeout).await,
                RequestProtocol::Est,
            ),
            (_, _, Some(scep)) if path.starts_with("/scep/") || path == "/cgi-bin/pkiclient.exe" => (
                scep_request(scep, request, peer, self.body_read_timeout).await,
                RequestProtocol::Scep,
            ),
            _ => match &self.revocation {
                Some(revocation) if path.starts_with("/crl/") => (
                    status_request(revocation, request, self.body_read_timeout).await,
                    RequestProtocol::Crl,
                ),
                Some(revocation) if path == "/ocsp" || path.starts_with("/ocsp/") => (
                    status_request(revocation, request, self.body_read_timeout).await,
                    RequestProtocol::Ocsp,
                ),
                _ => match &self.admin {
                    Some(admin) if path.starts_with("/admin/") && listener == "https" => (
                        admin_request(admin, request, tls, self.body_read_timeout).await,
                        RequestProtocol::Admin,
                    ),
                    _ => (self.route(&request, peer).await, RequestProtocol::Other),
                },
            },
        };
        let elapsed = started.elapsed();
        self.metrics.observe_request(protocol, elapsed);
        tracing::info!(
            target: "certgate::request",
            listener,
            peer = %peer.ip(),
            method = %method,
            path = %path,
            status = response.status().as_u16(),
            micros = elapsed.as_micros() as u64,
            "request"
        );
        response
    }

    async fn route(&self, request: &Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let (method, path) = (request.method(), request.uri().path());
        let readable = matches!(*method, Method::GET | Method::HEAD);
        match path {
            "/healthz" if readable => text(StatusCode::OK, "ok"),
            "/readyz" if readable => match self.store.journal_status().await {
                Ok(_) => text(StatusCode::OK, "ready"),
                Err(e) => {
                    tracing::error!(error = %e, "readiness check failed");
                    text(StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
                }
            },
            "/metrics" if readable => {
                let authorization = request
                    .headers()
                    .get(hyper::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok());
                if !self.metrics_gate.admits(peer.ip(), authorization) {
                    return text(StatusCode::FORBIDDEN, "metrics are not open to this client");
                }
                let mut response = text(StatusCode::OK, self.metrics.render());
                response.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static(certgate_metrics::CONTENT_TYPE),
                );
                response
            }
            "/healthz" | "/readyz" | "/metrics" => method_not_allowed(),
            _ => match path.strip_prefix("/ca/").and_then(|rest| rest.strip_suffix(".crt")) {
                Some(issuer) if readable => self.issuer_certificate(issuer),
                Some(_) => method_not_allowed(),
                None => text(StatusCode::NOT_FOUND, "no such resource"),
            },
        }
    }

    /// The issuing CA certificate, DER, as AIA caIssuers points at (RFC 5280 4.2.2.1).
    fn issuer_certificate(&self, issuer: &str) -> Response<Body> {
        let issuer = Name::new(issuer).ok().and_then(|name| self.authority.issuer(&name));
        match issuer {
            Some(issuer) => with_type(
                StatusCode::OK,
                "application/pkix-cert",
                issuer.certificate_der().to_vec(),
            ),
            None => text(StatusCode::NOT_FOUND, "no such issuer"),
        }
    }
}

/// Hands a request to the ACME server: the body is read up to the JWS size limit, and the
/// origin (scheme, host, port) comes from the request so resource URLs match what the
/// client called.
async fn acme_request(
    acme: &AcmeServer,
    request: Request<Incoming>,
    listener: &'static str,
    peer: SocketAddr,
    body_deadline: Duration,
) -> Response<Body> {
    let scheme = if listener == "https" { "https" } else { "http" };
    let (parts, body) = request.into_parts();
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            parts
                .headers
                .get(hyper::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let origin = format!("{scheme}://{host}");
    let Ok((body, body_too_large)) = read_body(body, MAX_JWS_LEN, body_deadline).await else {
        return body_timed_out();
    };
    let content_type = parts
        .headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let answer = acme
        .handle(&AcmeRequest {
            method: parts.method.as_str(),
            origin: &origin,
            path: parts.uri.path(),
            query: parts.uri.query(),
            content_type,
            body: &body,
            body_too_large,
            peer: peer.ip(),
        })
        .await;
    let head_only = parts.method == Method::HEAD;
    let mut response = Response::new(Full::new(if head_only {
        Bytes::new()
    } else {
        Bytes::from(answer.body)
    }));
    *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in answer.headers {
        if let Ok(value) = hyper::header::HeaderValue::from_str(&value) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// Hands a request to the CRL and OCSP server.
async fn status_request(
    revocation: &RevocationServer,
    request: Request<Incoming>,
    body_deadline: Duration,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let Ok((body, body_too_large)) = read_body(body, certgate_revocation::MAX_REQUEST_LEN, body_deadline).await else {
        return body_timed_out();
    };
    let content_type = parts
        .headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let answer = revocation
        .handle(&StatusRequest {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            content_type,
            body: &body,
            body_too_large,
        })
        .await;
    into_response(&parts.method, answer.status, answer.headers, answer.body)
}

/// Hands a request to the admin API with its credentials: a bearer token, or the client
/// certificate the TLS handshake verified.
async fn admin_request(
    admin: &AdminService,
    request: Request<Incoming>,
    tls: Option<&TlsFacts>,
    body_deadline: Duration,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let Ok((body, body_too_large)) = read_body(body, crate::admin::MAX_ADMIN_BODY, body_deadline).await else {
        return body_timed_out();
    };
    if body_too_large {
        return text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    }
    let authorization = parts
        .headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let client_leaf = tls.and_then(|facts| facts.client_chain.first()).map(Vec::as_slice);
    admin
        .handle_https(
            &parts.method,
            parts.uri.path(),
            parts.uri.query(),
            authorization,
            client_leaf,
            &body,
        )
        .await
}

fn into_response(method: &Method, status: u16, headers: Vec<(String, String)>, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Full::new(if *method == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from(body)
    }));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(&value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// How much of an oversized body is read and thrown away so the client, still sending, can
/// read the 413 (answering early makes HTTP/1.1 clients fail with a broken pipe and HTTP/2
/// clients with a stream error). Beyond it the connection is simply dropped.
const MAX_DISCARDED_BODY: usize = 4 * 1024 * 1024;

/// A request body that did not arrive within the body-read timeout.
struct BodyTimedOut;

/// 408, and the connection closed: a client that stalled mid-body is not kept.
fn body_timed_out() -> Response<Body> {
    let mut response = text(StatusCode::REQUEST_TIMEOUT, "request body not received in time");
    response.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    response
}

/// Reads a request body up to `limit` bytes within `deadline`; `(empty, true)` when it is
/// larger (or broken).
async fn read_body(body: Incoming, limit: usize, deadline: Duration) -> Result<(Bytes, bool), BodyTimedOut> {
    tokio::time::timeout(deadline, read_body_unbounded(body, limit))
        .await
        .map_err(|_| BodyTimedOut)
}

async fn read_body_unbounded(mut body: Incoming, limit: usize) -> (Bytes, bool) {
    let mut collected = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return (Bytes::new(), true);
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        seen = seen.saturating_add(data.len());
        if seen > limit {
            collected = Vec::new();
            if seen > MAX_DISCARDED_BODY {
                break;
            }
        } else {
            collected.extend_from_slice(&data);
        }
    }
    if seen > limit {
        (Bytes::new(), true)
    } else {
        (Bytes::from(collected), false)
    }
}

/// Hands a request to the EST server with what the TLS connection proved (none on the plain
/// listener, which the EST server refuses).
async fn est_request(
    est: &EstServer,
    request: Request<Incoming>,
    peer: SocketAddr,
    tls: Option<&TlsFacts>,
    body_deadline: Duration,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let Ok((body, body_too_large)) = read_body(body, certgate_est::MAX_BODY_LEN, body_deadline).await else {
        return body_timed_out();
    };
    let header = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v: &hyper::header::HeaderValue| v.to_str().ok())
    };
    let answer = est
        .handle(&EstRequest {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query(),
            content_type: header(hyper::header::CONTENT_TYPE),
            authorization: header(hyper::header::AUTHORIZATION),
            body: &body,
            body_too_large,
            peer: peer.ip(),
            tls,
        })
        .await;
    let mut response = Response::new(Full::new(if parts.method == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from(answer.body)
    }));
    *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in answer.headers {
        if let Ok(value) = hyper::header::HeaderValue::from_str(&value) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// Hands a request to the SCEP server with its raw query (SCEP's GET messages need it as
/// sent: `+`, `/` and `%0A` variants are decoded there).
async fn scep_request(
    scep: &ScepServer,
    request: Request<Incoming>,
    peer: SocketAddr,
    body_deadline: Duration,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let Ok((body, body_too_large)) = read_body(body, certgate_scep::MAX_MESSAGE_LEN, body_deadline).await else {
        return body_timed_out();
    };
    let answer = scep
        .handle(&ScepRequest {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query(),
            body: &body,
            body_too_large,
            peer: peer.ip(),
        })
        .await;
    let mut response = Response::new(Full::new(if parts.method == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from(answer.body)
    }));
    *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in answer.headers {
        if let Ok(value) = hyper::header::HeaderValue::from_str(&value) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// What a TLS connection proved, for EST: the client's certificate chain, the version, and
/// the RFC 9266 tls-exporter value for channel binding.
pub(crate) fn tls_facts(connection: &rustls::ServerConnection) -> TlsFacts {
    let mut exporter = [0u8; certgate_est::tls::EXPORTER_LEN];
    let exporter = connection
        .export_keying_material(&mut exporter, certgate_est::tls::EXPORTER_LABEL, None)
        .ok()
        .map(|value| *value);
    TlsFacts {
        version: match connection.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => Some(TlsVersion::Tls13),
            Some(rustls::ProtocolVersion::TLSv1_2) => Some(TlsVersion::Tls12),
            _ => None,
        },
        client_chain: connection
            .peer_certificates()
            .map(|chain| chain.iter().map(|c| c.to_vec()).collect())
            .unwrap_or_default(),
        exporter,
        // rustls does not expose tls-unique; TLS 1.2 clients bind with the exporter, which
        // rustls computes with the extended master secret it always negotiates.
        tls_unique: None,
    }
}

fn method_not_allowed() -> Response<Body> {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response.headers_mut().insert(
        hyper::header::ALLOW,
        hyper::header::HeaderValue::from_static("GET, HEAD"),
    );
    response
}
