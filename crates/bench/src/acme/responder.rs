//! A tiny http-01 responder many clients share: one listener, one token map.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::Error;

/// The path prefix RFC 8555 section 8.3 fixes.
pub const CHALLENGE_PATH: &str = "/.well-known/acme-challenge/";

/// Token → key authorization, shared by every client and the server task.
#[derive(Clone, Debug, Default)]
pub struct Http01Tokens(Arc<RwLock<HashMap<String, String>>>);

impl Http01Tokens {
    /// Serves `key_authorization` at the token's path from now on.
    pub fn insert(&self, token: &str, key_authorization: &str) {
        // A panic while holding the lock cannot leave the map half-updated: ignore poisoning.
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token.to_owned(), key_authorization.to_owned());
    }

    /// Stops serving a token.
    pub fn remove(&self, token: &str) {
        self.0.write().unwrap_or_else(PoisonError::into_inner).remove(token);
    }

    /// The key authorization for a token.
    pub fn get(&self, token: &str) -> Option<String> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            .cloned()
    }

    /// How many tokens are served.
    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// True when no token is served.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The running responder; stops when dropped.
#[derive(Debug)]
pub struct Http01Responder {
    tokens: Http01Tokens,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Http01Responder {
    /// Listens on `addr` (port 0 picks one) and serves until dropped.
    pub async fn bind(addr: SocketAddr) -> Result<Self, Error> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::io(format!("bind http-01 responder on {addr}"), e))?;
        let addr = listener.local_addr().map_err(|e| Error::io("responder address", e))?;
        let tokens = Http01Tokens::default();
        let served = tokens.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _peer)) = listener.accept().await else {
                    // Out of file descriptors and the like: keep accepting.
                    tokio::task::yield_now().await;
                    continue;
                };
                // Validation requests are tiny: do not let Nagle hold the answer.
                let _ = stream.set_nodelay(true);
                let tokens = served.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let tokens = tokens.clone();
                        async move { Ok::<_, Infallible>(answer(&tokens, &req)) }
                    });
                    // A client that goes away mid-request is no concern of the responder.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Http01Responder { tokens, addr, task })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared token map (clone it into each client task).
    pub fn tokens(&self) -> Http01Tokens {
        self.tokens.clone()
    }
}

impl Drop for Http01Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(tokens: &Http01Tokens, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let found = req
        .uri()
        .path()
        .strip_prefix(CHALLENGE_PATH)
        .and_then(|token| tokens.get(token));
    let (status, body) = match found {
        Some(key_authorization) => (StatusCode::OK, key_authorization),
        None => (StatusCode::NOT_FOUND, String::new()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/octet-stream"),
    );
    response
}
