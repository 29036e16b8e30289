//! The one outbound webhook client of the workspace: a signed JSON POST to an `http://` or
//! `https://` URL. The notifier sends expiry and deployment alerts with it; the daemon asks
//! SCEP challenge webhooks with it.
//!
//! Each request is one fresh HTTP/1.1 connection: name lookup and TCP connect (address
//! fallback), for https a TLS handshake that verifies the receiver's certificate against a CA
//! file or the system's trust store and sends SNI, then the POST with
//! `X-Certgate-Signature: t=<unix>,v1=<hex hmac-sha256 over "<t>.<body>">`. Name lookup,
//! connect and handshake share the connect timeout; the response head must follow within the
//! response timeout. The response body is not read.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{CONNECTION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Request, Uri};
use rustls::{ClientConfig, RootCertStore};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use crate::net::{self, ExchangeError};
use crate::notifier::{DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign};
use crate::{LifecycleError, WebhookSecret};

const USER_AGENT_VALUE: &str = concat!("certgate/", env!("CARGO_PKG_VERSION"));
/// Shorter secrets are refused: the MAC is only as strong as the key.
const MIN_SECRET_LEN: usize = 16;

/// How long an outbound request may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookTimeouts {
    /// Name lookup, TCP connect and (https) TLS handshake together.
    pub connect: Duration,
    /// From the connection being ready to the response head.
    pub response: Duration,
}

/// A checked webhook receiver: URL, signing key, TLS client and timeouts. Cheap to clone.
#[derive(Clone)]
pub struct OutboundWebhook {
    name: String,
    /// Host as in the URL (IPv6 in brackets), for connecting and SNI.
    host: String,
    port: u16,
    /// `Host` header value.
    authority: String,
    path: String,
    key: hmac::Key,
    tls: Option<Arc<ClientConfig>>,
    timeouts: WebhookTimeouts,
}

impl std::fmt::Debug for OutboundWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the key, not the URL's query (which may hold a token).
        f.debug_struct("OutboundWebhook")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("https", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl OutboundWebhook {
    /// Checks a receiver: `name` (1 to 64 printable ASCII characters, for errors and logs),
    /// `url` (`http://` or `https://`, no credentials), `secret` (at least 16 bytes), and for
    /// https the roots its certificate must chain to: the CA certificates in `ca_file`, else
    /// the system's trust store (rustls-native-certs). Timeouts must be positive.
    pub fn new(
        name: &str,
        url: &str,
        secret: &WebhookSecret,
        ca_file: Option<&Path>,
        timeouts: WebhookTimeouts,
    ) -> Result<Self, LifecycleError> {
        Self::with_roots(name, url, secret, ca_file, timeouts, &mut None)
    }

    /// [`OutboundWebhook::new`], loading the system's trust store at most once into
    /// `system_roots` across calls.
    pub(crate) fn with_roots(
        name: &str,
        url: &str,
        secret: &WebhookSecret,
        ca_file: Option<&Path>,
        timeouts: WebhookTimeouts,
        system_roots: &mut Option<RootCertStore>,
    ) -> Result<Self, LifecycleError> {
        let error = |reason: &str| LifecycleError::Webhook {
            webhook: name.to_owned(),
            reason: reason.to_owned(),
        };
        let name_ok = !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_graphic());
        if !name_ok {
            return Err(error("the name must be 1 to 64 printable ASCII characters"));
        }
        if secret.expose().len() < MIN_SECRET_LEN {
            return Err(error("the secret must be at least 16 bytes"));
        }
        if timeouts.connect.is_zero() || timeouts.response.is_zero() {
            return Err(error("the timeouts must be positive"));
        }
        let uri: Uri = url.parse().map_err(|_| error("the URL does not parse"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(error("the URL must start with http:// or https://")),
        };
        let authority = uri.authority().ok_or_else(|| error("the URL has no host"))?;
        if authority.as_str().contains('@') {
            return Err(error(
                "the URL must not hold credentials; the signature authenticates certgate",
            ));
        }
        let host = authority.host().to_owned();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let tls = if https {
            net::server_name(&host).map_err(|e| error(&e))?;
            let roots = match ca_file {
                Some(path) => net::roots_from_file(path)?,
                None => match system_roots {
                    Some(roots) => roots.clone(),
                    None => {
                        let roots = net::system_roots().map_err(|e| error(&e))?;
                        system_roots.insert(roots).clone()
                    }
                },
            };
            Some(net::webhook_tls(roots).map_err(|e| error(&e))?)
        } else {
            None
        };
        Ok(Self {
            name: name.to_owned(),
            host,
            port,
            authority: authority.as_str().to_owned(),
            path,
            key: hmac::Key::new(hmac::HMAC_SHA256, secret.expose()),
            tls,
            timeouts,
        })
    }

    /// The receiver's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether requests go over TLS.
    pub fn is_https(&self) -> bool {
        self.tls.is_some()
    }

    /// POSTs `body` (JSON) with `X-Certgate-Event: event`, `X-Certgate-Delivery: id` and the
    /// signature for `timestamp` (unix seconds). Returns the status of a 2xx answer; any other
    /// status is an error carrying it, and a failure before an answer (lookup, connect, TLS
    /// verification, timeout) one without.
    pub async fn post_json(&self, event: &str, id: &str, timestamp: i64, body: Bytes) -> Result<u16, ExchangeError> {
        let signature = sign(&self.key, timestamp, &body);
        let request = Request::post(self.path.as_str())
            .header(HOST, self.authority.as_str())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, USER_AGENT_VALUE)
            .header(EVENT_HEADER, event)
            .header(DELIVERY_HEADER, id)
            .header(SIGNATURE_HEADER, signature)
            .header(CONNECTION, "close")
            .body(Full::new(body))
            .map_err(|e| ExchangeError::transport(format!("cannot build the request: {e}")))?;
        let connect_deadline = Instant::now() + self.timeouts.connect;
        let stream = net::connect(&self.host, self.port, connect_deadline)
            .await
            .map_err(ExchangeError::transport)?;
        let response_deadline = || Instant::now() + self.timeouts.response;
        let Some(tls) = &self.tls else {
            return net::exchange(stream, request, response_deadline()).await;
        };
        let name = net::server_name(&self.host).map_err(ExchangeError::transport)?;
        let handshake = TlsConnector::from(Arc::clone(tls)).connect(name, stream);
        let stream = match tokio::time::timeout_at(connect_deadline, handshake).await {
            Err(_) => return Err(ExchangeError::transport("timed out during the TLS handshake")),
            Ok(Err(e)) => return Err(ExchangeError::transport(format!("TLS handshake failed: {e}"))),
            Ok(Ok(stream)) => stream,
        };
        net::exchange(stream, request, response_deadline()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef";

    fn timeouts() -> WebhookTimeouts {
        WebhookTimeouts {
            connect: Duration::from_secs(1),
            response: Duration::from_secs(1),
        }
    }

    #[test]
    fn receiver_cases() {
        let secret = WebhookSecret::new(SECRET);
        let zero = WebhookTimeouts {
            connect: Duration::ZERO,
            ..timeouts()
        };
        let cases = [
            (
                "good_http",
                "ops",
                "http://127.0.0.1:8080/hook?x=1",
                &secret,
                timeouts(),
                true,
            ),
            ("good_ipv6", "ops", "http://[::1]:9/", &secret, timeouts(), true),
            ("bad_scheme", "ops", "ftp://example.test/", &secret, timeouts(), false),
            ("bad_relative", "ops", "/hook", &secret, timeouts(), false),
            (
                "bad_credentials",
                "ops",
                "http://u:p@example.test/",
                &secret,
                timeouts(),
                false,
            ),
            (
                "bad_short_secret",
                "ops",
                "http://example.test/",
                &WebhookSecret::new("short"),
                timeouts(),
                false,
            ),
            ("bad_empty_name", "", "http://example.test/", &secret, timeouts(), false),
            (
                "bad_name_with_space",
                "o ps",
                "http://example.test/",
                &secret,
                timeouts(),
                false,
            ),
            ("bad_zero_timeout", "ops", "http://example.test/", &secret, zero, false),
            (
                "bad_missing_ca_file",
                "ops",
                "https://example.test/",
                &secret,
                timeouts(),
                false,
            ),
        ];
        for (case, name, url, secret, timeouts, ok) in cases {
            let ca_file = (case == "bad_missing_ca_file").then(|| Path::new("/nonexistent/ca.pem"));
            assert_eq!(
                OutboundWebhook::new(name, url, secret, ca_file, timeouts).is_ok(),
                ok,
                "case {case}"
            );
        }
        let hook = OutboundWebhook::new("ops", "http://[::1]:9/a?b=c", &secret, None, timeouts()).unwrap();
        assert_eq!(
            (
                hook.host.as_str(),
                hook.port,
                hook.authority.as_str(),
                hook.path.as_str()
            ),
            ("[::1]", 9, "[::1]:9", "/a?b=c")
        );
        assert!(!hook.is_https());
        assert!(!format!("{hook:?}").contains("b=c"));
    }
}
