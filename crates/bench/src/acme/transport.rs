//! One kept-alive HTTP/1.1 connection per client, TLS by rustls, TCP_NODELAY always.
//!
//! Without TCP_NODELAY a small POST waits for the delayed ACK of the previous segment (~40 ms
//! per request), which would measure Nagle instead of the server.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HOST, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::types::Response;
use crate::Error;

/// Which server certificates the client accepts.
#[derive(Clone, Debug)]
pub enum Trust {
    /// Roots from a PEM file (the CA that issued the server's certificate).
    RootPem(PathBuf),
    /// Roots given as DER.
    Roots(Vec<CertificateDer<'static>>),
    /// Any certificate (Pebble's self-signed API certificate). Never for production.
    DangerInsecure,
}

/// Shared connection settings: the TLS configuration (and its session cache) and the timeout.
#[derive(Clone, Debug)]
pub struct Connector {
    tls: Arc<ClientConfig>,
    timeout: Duration,
}

/// The per-request limit unless [`Connector::with_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl Connector {
    /// Builds the TLS client configuration once; clients share it and its session cache.
    pub fn new(trust: &Trust) -> Result<Self, Error> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?;
        let mut config = match trust {
            Trust::DangerInsecure => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
                .with_no_client_auth(),
            Trust::RootPem(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
                builder.with_root_certificates(root_store(certs)?).with_no_client_auth()
            }
            Trust::Roots(certs) => builder
                .with_root_certificates(root_store(certs.clone())?)
                .with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Connector {
            tls: Arc::new(config),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Sets the per-request limit (connect, send and read the whole answer).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The per-request limit.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

fn root_store(certs: Vec<CertificateDer<'static>>) -> Result<RootCertStore, Error> {
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(Error::Tls("no usable root certificate".into()));
    }
    Ok(store)
}

/// Accepts any certificate but still checks the handshake signature, so TLS itself works.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Where a URL's connection goes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    https: bool,
    host: String,
    port: u16,
    authority: String,
}

fn parse_url(url: &str) -> Result<(Target, String), Error> {
    let bad = |reason| Error::Url {
        url: url.to_owned(),
        reason,
    };
    let uri: Uri = url.parse().map_err(|_| bad("not a URI"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(bad("scheme is not http or https")),
    };
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path = uri.path_and_query().map_or("/".to_owned(), |p| p.as_str().to_owned());
    Ok((
        Target {
            https,
            host,
            port,
            authority: authority.as_str().to_owned(),
        },
        path,
    ))
}

/// The failures of a kept-alive connection the server closed while it was idle.
fn is_stale_connection(e: &Error) -> bool {
    matches!(e, Error::Http(h) if h.is_canceled() || h.is_closed() || h.is_incomplete_message())
}

/// A kept-alive connection that reconnects when the server closed it.
#[derive(Debug)]
pub(crate) struct Connection {
    connector: Connector,
    target: Option<Target>,
    sender: Option<SendRequest<Full<Bytes>>>,
    /// Connections opened so far (1 for a well-behaved keep-alive server).
    pub(crate) connects: u64,
}

impl Connection {
    pub(crate) fn new(connector: Connector) -> Self {
        Connection {
            connector,
            target: None,
            sender: None,
            connects: 0,
        }
    }

    async fn connect(&mut self, target: &Target) -> Result<SendRequest<Full<Bytes>>, Error> {
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| Error::io(format!("connect {}", target.authority), e))?;
        tcp.set_nodelay(true).map_err(|e| Error::io("set TCP_NODELAY", e))?;
        let sender = if target.https {
            let name = ServerName::try_from(target.host.clone()).map_err(|_| Error::Url {
                url: target.authority.clone(),
                reason: "host is not a valid TLS server name",
            })?;
            let tls = TlsConnector::from(self.connector.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| Error::io(format!("TLS handshake with {}", target.authority), e))?;
            let (sender, conn) = http1::handshake(TokioIo::new(tls)).await?;
            // The connection task ends when the peer or the sender goes away: nothing to report.
            tokio::spawn(async move {
                let _ = conn.await;
            });
            sender
        } else {
            let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            sender
        };
        self.target = Some(target.clone());
        self.connects += 1;
        Ok(sender)
    }

    /// Sends one request and reads the whole answer. A request that fails on a reused
    /// connection before any answer (the server closed it while idle) is sent once more on a
    /// new connection.
    pub(crate) async fn request(
        &mut self,
        method: Method,
        url: &str,
        headers: &[(&'static str, &str)],
        body: Bytes,
    ) -> Result<Response, Error> {
        let (target, path) = parse_url(url)?;
        let timeout = self.connector.timeout;
        let mut retried = false;
        loop {
            let attempt = self.attempt(&method, &target, &path, headers, &body);
            match tokio::time::timeout(timeout, attempt).await {
                Ok(Ok(response)) => return Ok(response),
                Ok(Err((e, reused))) => {
                    self.sender = None;
                    if !retried && reused && is_stale_connection(&e) {
                        retried = true;
                        continue;
                    }
                    return Err(e);
                }
                Err(_) => {
                    self.sender = None;
                    return Err(Error::Timeout {
                        url: url.to_owned(),
                        timeout,
                    });
                }
            }
        }
    }

    /// One try; the flag in the error says whether it ran on a reused connection.
    async fn attempt(
        &mut self,
        method: &Method,
        target: &Target,
        path: &str,
        headers: &[(&'static str, &str)],
        body: &Bytes,
    ) -> Result<Response, (Error, bool)> {
        let idle = if self.target.as_ref() == Some(target) {
            self.sender.take().filter(|s| !s.is_closed())
        } else {
            None
        };
        let (mut sender, mut reused) = match idle {
            Some(s) => (s, true),
            None => (self.connect(target).await.map_err(|e| (e, false))?, false),
        };
        if sender.ready().await.is_err() {
            // Closed between the check and now: open a fresh one.
            sender = self.connect(target).await.map_err(|e| (e, false))?;
            reused = false;
        }
        let host =
            HeaderValue::from_str(&target.authority).map_err(|e| (hyper::http::Error::from(e).into(), reused))?;
        let mut builder = Request::builder().method(method.clone()).uri(path).header(HOST, host);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Full::new(body.clone())).map_err(|e| (e.into(), reused))?;
        let response = sender.send_request(request).await.map_err(|e| (e.into(), reused))?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| (e.into(), reused))?.to_bytes();
        self.sender = Some(sender);
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_url_cases() {
        let cases = [
            (
                "good_https_port",
                "https://127.0.0.1:14000/dir",
                true,
                "127.0.0.1",
                14000,
                "/dir",
            ),
            (
                "good_http_default",
                "http://localhost/a?b=c",
                false,
                "localhost",
                80,
                "/a?b=c",
            ),
            ("good_https_default", "https://ca.test", true, "ca.test", 443, "/"),
            ("good_ipv6", "https://[::1]:8443/x", true, "::1", 8443, "/x"),
        ];
        for (name, url, https, host, port, path) in cases {
            let (t, p) = parse_url(url).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                (t.https, t.host.as_str(), t.port, p.as_str()),
                (https, host, port, path),
                "{name}"
            );
        }
        for bad in ["ftp://x/", "/relative", "not a url"] {
            assert!(parse_url(bad).is_err(), "bad_{bad}");
        }
    }
}
