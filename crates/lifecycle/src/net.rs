//! Network plumbing shared by the outbound webhook client and the deployment verifier: name lookup and TCP
//! connect with address fallback, TLS client configurations, and one HTTP/1.1 POST.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use http_body_util::Full;
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::client::Resumption;
use rustls::crypto::{CryptoProvider, aws_lc_rs};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use certgate_validation::DangerAcceptAnyCertificate;

use crate::LifecycleError;

/// Resolves `host` (a DNS name with the system resolver, or an IP literal, IPv6 with or
/// without brackets) and connects to the first address that accepts. While more addresses
/// remain, one attempt may use at most half of the remaining time, so a black-holed address
/// cannot starve the others.
pub(crate) async fn connect(host: &str, port: u16, deadline: Instant) -> Result<TcpStream, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => match tokio::time::timeout_at(deadline, tokio::net::lookup_host((bare, port))).await {
            Err(_) => return Err(format!("resolving {bare}: timed out")),
            Ok(Err(e)) => return Err(format!("resolving {bare}: {e}")),
            Ok(Ok(found)) => found.collect(),
        },
    };
    if addresses.is_empty() {
        return Err(format!("resolving {bare}: no addresses"));
    }
    let mut failures = Vec::new();
    for (i, addr) in addresses.iter().enumerate() {
        let now = Instant::now();
        let attempt_deadline = if i + 1 < addresses.len() {
            now + deadline.saturating_duration_since(now) / 2
        } else {
            deadline
        };
        let why = match tokio::time::timeout_at(attempt_deadline, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                // Small request/response exchanges: do not wait for Nagle.
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(%addr, error = %e, "setting TCP_NODELAY failed");
                }
                return Ok(stream);
            }
            Ok(Err(e)) => describe_io(&e),
            Err(_) => "timed out".to_owned(),
        };
        failures.push(format!("connecting to {addr}: {why}"));
    }
    Err(failures.join("; "))
}

/// Short, stable wording for the usual connect errors (the OS text adds "(os error 111)").
fn describe_io(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
        io::ErrorKind::TimedOut => "timed out".to_owned(),
        io::ErrorKind::HostUnreachable => "host unreachable".to_owned(),
        io::ErrorKind::NetworkUnreachable => "network unreachable".to_owned(),
        _ => e.to_string(),
    }
}

/// The server name a TLS client sends for `host`: SNI for names, none for IP literals.
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_owned()).map_err(|_| format!("{host} cannot be used as a TLS server name"))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

/// A verifying TLS client for https webhooks, trusting `roots`.
pub(crate) fn webhook_tls(roots: RootCertStore) -> Result<Arc<ClientConfig>, String> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The CA certificates in a PEM file.
pub(crate) fn roots_from_file(path: &Path) -> Result<RootCertStore, LifecycleError> {
    let error = |reason: String| LifecycleError::CaFile {
        path: path.to_owned(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| error(e.to_string()))? {
        let cert = cert.map_err(|e| error(e.to_string()))?;
        roots.add(cert).map_err(|e| error(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(error("no CERTIFICATE block".to_owned()));
    }
    Ok(roots)
}

/// The system's trust store (rustls-native-certs: `SSL_CERT_FILE`/`SSL_CERT_DIR`, else the
/// platform's). Certificates that do not parse are skipped.
pub(crate) fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::debug!(error = %e, "skipping a system CA certificate source");
    }
    let mut roots = RootCertStore::empty();
    let (_, ignored) = roots.add_parsable_certificates(found.certs);
    if ignored > 0 {
        tracing::debug!(ignored, "system CA certificates that did not parse");
    }
    if roots.is_empty() {
        return Err("no system CA certificates found; set ca_file".to_owned());
    }
    Ok(roots)
}

/// A TLS client for observing deployments: it accepts any certificate and verifies only
/// that the server signed the handshake with the key of the certificate it presented.
///
/// Why that is safe: the verifier only *looks* at what a server serves. Nothing is sent
/// after the handshake (no request, no secret), and the result is compared byte for byte
/// with certgate's own records; a man in the middle could only make a target look wrong,
/// which is what the alert would then say.
pub(crate) fn observing_tls() -> Result<Arc<ClientConfig>, String> {
    let provider = provider();
    // The same verifier ACME validation uses: any certificate, but the handshake signature
    // must still verify against the served certificate's key.
    let verifier = Arc::new(DangerAcceptAnyCertificate::new(&provider));
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // Each check is a fresh handshake: a resumed session would show no certificate.
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

/// The leaf certificate `target` serves: TCP connect and TLS handshake before `deadline`,
/// then the connection is dropped without sending anything.
pub(crate) async fn served_leaf(
    config: Arc<ClientConfig>,
    host: &str,
    port: u16,
    sni: &str,
    deadline: Instant,
) -> Result<Vec<u8>, String> {
    let name = server_name(sni)?;
    let stream = connect(host, port, deadline).await?;
    let tls = match tokio::time::timeout_at(deadline, TlsConnector::from(config).connect(name, stream)).await {
        Err(_) => return Err("timed out during the TLS handshake".to_owned()),
        Ok(Err(e)) => return Err(format!("TLS handshake failed: {e}")),
        Ok(Ok(tls)) => tls,
    };
    let (_, connection) = tls.get_ref();
    match connection.peer_certificates().and_then(|chain| chain.first()) {
        Some(leaf) => Ok(leaf.as_ref().to_vec()),
        None => Err("the server presented no certificate".to_owned()),
    }
}

/// Stops hyper's connection task when the exchange ends, whatever the peer does.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why an outbound webhook request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
#[non_exhaustive]
pub struct ExchangeError {
    /// The status, when the receiver answered (with something other than 2xx).
    pub status: Option<u16>,
    /// What went wrong, for logs and delivery records (no secret).
    pub error: String,
}

impl ExchangeError {
    pub(crate) fn transport(error: impl Into<String>) -> Self {
        Self {
            status: None,
            error: error.into(),
        }
    }
}

/// Sends `request` on a fresh HTTP/1.1 connection over `io` and returns the status if 2xx.
/// The response head must arrive before `deadline`; the body is not read.
pub(crate) async fn exchange<IO>(io: IO, request: Request<Full<Bytes>>, deadline: Instant) -> Result<u16, ExchangeError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handshake = hyper::client::conn::http1::Builder::new().handshake::<_, Full<Bytes>>(TokioIo::new(io));
    let (mut sender, connection) = match tokio::time::timeout_at(deadline, handshake).await {
        Err(_) => return Err(ExchangeError::transport("timed out starting HTTP")),
        Ok(Err(e)) => return Err(ExchangeError::transport(format!("starting HTTP: {e}"))),
        Ok(Ok(parts)) => parts,
    };
    let _driver = AbortOnDrop(tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "webhook connection ended with an error");
        }
    }));
    let response = match tokio::time::timeout_at(deadline, sender.send_request(request)).await {
        Err(_) => return Err(ExchangeError::transport("timed out waiting for the response")),
        Ok(Err(e)) => return Err(ExchangeError::transport(format!("sending the request: {e}"))),
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    if status.is_success() {
        Ok(status.as_u16())
    } else {
        Err(ExchangeError {
            status: Some(status.as_u16()),
            error: format!("HTTP {status}"),
        })
    }
}
