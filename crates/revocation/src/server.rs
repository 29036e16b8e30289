//! HTTP mapping, independent of the HTTP library: `GET /crl/{issuer}.crl`,
//! `POST /ocsp/{issuer}` and `GET /ocsp/{issuer}/{base64}` (RFC 6960 A.1; `/ocsp` and
//! `/ocsp/{base64}` without an issuer too).

use std::sync::Arc;
use std::time::Instant;

use crate::request::decode_get_path;
use crate::{OcspAnswer, OcspResponseStatus, RevocationError, RevocationService};
use certgate_core::Name;

/// One HTTP request, as the daemon read it.
#[derive(Debug, Clone, Copy)]
pub struct StatusRequest<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path; a query, if left on, is ignored.
    pub path: &'a str,
    /// `Content-Type`, if sent (not required: clients differ).
    pub content_type: Option<&'a str>,
    /// The body (empty when too large).
    pub body: &'a [u8],
    /// The body exceeded [`crate::MAX_REQUEST_LEN`] (the daemon reads no more than that).
    pub body_too_large: bool,
}

/// The HTTP answer to write back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers, Content-Type among them.
    pub headers: Vec<(String, String)>,
    /// Body (empty for HEAD).
    pub body: Vec<u8>,
}

impl StatusResponse {
    fn new(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body,
        }
    }

    fn text(status: u16, text: &str) -> Self {
        Self::new(status, "text/plain; charset=utf-8", format!("{text}\n").into_bytes())
    }

    fn method_not_allowed(allow: &str) -> Self {
        let mut response = Self::text(405, "method not allowed");
        response.headers.push(("allow".into(), allow.into()));
        response
    }

    fn header(mut self, name: &str, value: String) -> Self {
        self.headers.push((name.into(), value));
        self
    }

    /// The header's value, if present (for tests and the daemon's logs).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Where a path leads.
enum Route<'a> {
    Crl(&'a str),
    OcspPost(Option<Name>),
    OcspGet,
    NotFound,
}

/// Serves CRLs and OCSP over HTTP for a [`RevocationService`].
#[derive(Debug, Clone)]
pub struct RevocationServer {
    service: Arc<RevocationService>,
}

impl RevocationServer {
    /// A server over `service`.
    pub fn new(service: Arc<RevocationService>) -> Self {
        Self { service }
    }

    /// The service behind it.
    pub fn service(&self) -> &Arc<RevocationService> {
        &self.service
    }

    /// Answers one request. OCSP answers are HTTP 200 whatever their OCSP status (RFC 6960
    /// A.1); HTTP errors are for what is not OCSP at all: unknown paths (404), methods (405),
    /// bodies over the limit (413) and GET paths over it (414).
    pub async fn handle(&self, request: &StatusRequest<'_>) -> StatusResponse {
        let started = Instant::now();
        let path = request.path.split_once('?').map_or(request.path, |(p, _)| p);
        let head = request.method == "HEAD";
        let (response, kind, ocsp) = match route(path) {
            Route::Crl(issuer) => (self.crl(request.method, issuer).await, "crl", None),
            Route::OcspPost(hint) => match request.method {
                "POST" if request.body_too_large || request.body.len() > crate::MAX_REQUEST_LEN => {
                    (StatusResponse::text(413, "OCSP request too large"), "ocsp", None)
                }
                "POST" => {
                    let answer = self.service.ocsp(hint.as_ref(), request.body).await;
                    (ocsp_response(&answer, false), "ocsp", Some(answer))
                }
                _ => (StatusResponse::method_not_allowed("POST"), "ocsp", None),
            },
            Route::OcspGet => match request.method {
                "GET" | "HEAD" => match decode_get_path(path) {
                    Ok(get) => {
                        let answer = self.service.ocsp(get.issuer.as_ref(), &get.der).await;
                        (ocsp_response(&answer, true), "ocsp", Some(answer))
                    }
                    Err(RevocationError::RequestTooLarge) => {
                        (StatusResponse::text(414, "OCSP request too large"), "ocsp", None)
                    }
                    Err(error) => {
                        tracing::debug!(%error, "OCSP GET path refused");
                        let answer = OcspAnswer::unsigned(OcspResponseStatus::MalformedRequest);
                        (ocsp_response(&answer, true), "ocsp", Some(answer))
                    }
                },
                _ => (StatusResponse::method_not_allowed("GET, HEAD"), "ocsp", None),
            },
            Route::NotFound => (StatusResponse::text(404, "not found"), "none", None),
        };
        tracing::info!(
            target: "certgate::revocation",
            kind,
            method = request.method,
            content_type = request.content_type,
            status = response.status,
            ocsp_status = ocsp.as_ref().map(|a| a.status.as_str()),
            cached = ocsp.as_ref().map(|a| a.from_cache),
            elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "revocation status request"
        );
        if head {
            StatusResponse {
                body: Vec::new(),
                ..response
            }
        } else {
            response
        }
    }

    async fn crl(&self, method: &str, issuer: &str) -> StatusResponse {
        if !matches!(method, "GET" | "HEAD") {
            return StatusResponse::method_not_allowed("GET, HEAD");
        }
        let Ok(name) = Name::new(issuer) else {
            return StatusResponse::text(404, "unknown issuer");
        };
        match self.service.crl(&name).await {
            Ok(Some(crl)) => {
                let max_age = (crl.next_update - self.service.clock.now()).whole_seconds().max(0);
                StatusResponse::new(200, "application/pkix-crl", crl.der.to_vec())
                    .header("cache-control", format!("public, max-age={max_age}"))
            }
            Ok(None) => StatusResponse::text(404, "unknown issuer"),
            Err(error) => {
                tracing::error!(issuer = %name, %error, "no CRL to serve");
                StatusResponse::text(503, "CRL temporarily unavailable").header("retry-after", "60".into())
            }
        }
    }
}

fn route(path: &str) -> Route<'_> {
    if let Some(file) = path.strip_prefix("/crl/") {
        return match file.strip_suffix(".crl") {
            Some(issuer) if !issuer.contains('/') => Route::Crl(issuer),
            _ => Route::NotFound,
        };
    }
    if path == "/ocsp" || path == "/ocsp/" {
        return Route::OcspPost(None);
    }
    let Some(rest) = path.strip_prefix("/ocsp/") else {
        return Route::NotFound;
    };
    // `/ocsp/{issuer}` (or with a trailing slash) is the POST URL; anything longer, or a first
    // segment that is no issuer name (base64 of DER starts with 'M'), is a GET request.
    match Name::new(rest.strip_suffix('/').unwrap_or(rest)) {
        Ok(name) => Route::OcspPost(Some(name)),
        Err(_) => Route::OcspGet,
    }
}

fn ocsp_response(answer: &OcspAnswer, get: bool) -> StatusResponse {
    let response = StatusResponse::new(200, "application/ocsp-response", answer.der.to_vec());
    // Only GET answers are cacheable by HTTP caches (RFC 5019 5); nonce answers never are.
    let cache_control = match (get, answer.max_age, answer.status) {
        (true, Some(max_age), OcspResponseStatus::Successful) => format!("public, max-age={max_age}, no-transform"),
        (true, _, _) => "no-store".into(),
        (false, _, _) => return response,
    };
    response.header("cache-control", cache_control)
}
