//! Accepting connections: admission against the connection caps, the TLS handshake under its
//! deadline, and hyper's HTTP/1 and HTTP/2 with the configured limits, each connection's
//! I/O closed when the client stops making progress. Routing is `server::Router`'s.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use certgate_est::TlsFacts;
use hyper::StatusCode;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::ListenerConfig;
use crate::connections::{ConnectionTracker, Deadlined};
use crate::http::text;
use crate::server::{Router, tls_facts};

/// HTTP/2 streams a client may reset before the server has answered them, per connection
/// (CVE-2023-44487, "rapid reset"; hyper's own default, stated here so it stays).
const HTTP2_MAX_PENDING_RESETS: usize = 20;

/// What every connection on a listener is held to.
#[derive(Debug, Clone)]
pub struct ListenerSettings {
    /// The listener's name in logs and metrics (`https`, `http`).
    pub name: &'static str,
    /// Timeouts and caps.
    pub limits: ListenerConfig,
    /// Open connections, shared by both listeners.
    pub tracker: Arc<ConnectionTracker>,
    /// How long open connections may finish after shutdown.
    pub grace: Duration,
}

fn http_builder(limits: &ListenerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout())
        .max_buf_size(limits.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(HTTP2_MAX_PENDING_RESETS);
    builder
}

/// Accepts connections on `listener` until `shutdown` fires, then lets open connections
/// finish for up to the grace period.
pub async fn serve_tcp(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Arc<Router>,
    settings: ListenerSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = settings.name;
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(http_builder(&settings.limits));
    let limits = Arc::new(settings.limits);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let permit = match settings.tracker.admit(peer.ip()) {
            Ok(permit) => permit,
            Err(refusal) => {
                // Closing at once frees the descriptor; the client sees a reset, which every
                // HTTP client retries or reports.
                tracing::debug!(listener = name, %peer, ?refusal, "connection refused");
                router.metrics.connection_refused(refusal);
                continue;
            }
        };
        // Without this, Nagle plus delayed ACK stall each small exchange by ~40 ms.
        let _ = stream.set_nodelay(true);
        let stream = Deadlined::new(stream, limits.idle_timeout(), limits.write_timeout());
        let router = Arc::clone(&router);
        let router_wants_tls_facts = router.est.is_some() || router.admin.is_some();
        let builder = Arc::clone(&builder);
        let limits = Arc::clone(&limits);
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let serve = |facts: Option<Arc<TlsFacts>>| {
                service_fn(move |request| {
                    let router = Arc::clone(&router);
                    let facts = facts.clone();
                    // A task of its own, so that a client going away mid-request cannot stop a
                    // handler between two writes (an EAB key bound and no account, a rate-limit
                    // count given back for an account that was created).
                    let handled =
                        tokio::spawn(async move { router.handle(request, name, peer, facts.as_deref()).await });
                    async move {
                        Ok::<_, Infallible>(handled.await.unwrap_or_else(|e| {
                            tracing::error!(error = %e, "request handler failed");
                            text(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
                        }))
                    }
                })
            };
            let result = match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(limits.tls_handshake_timeout(), acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            // Only EST and the admin API read them.
                            let facts = router_wants_tls_facts.then(|| Arc::new(tls_facts(stream.get_ref().1)));
                            watcher
                                .watch(builder.serve_connection(TokioIo::new(stream), serve(facts)))
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(listener = name, %peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(listener = name, %peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
                None => {
                    watcher
                        .watch(builder.serve_connection(TokioIo::new(stream), serve(None)))
                        .await
                }
            };
            if let Err(e) = result {
                tracing::debug!(listener = name, %peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(settings.grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            listener = name,
            "connections still open after the shutdown grace period; closing them"
        );
    }
}
