//! Shared plumbing for http-01 and tls-alpn-01: hosts, system-resolver lookups, TCP connects
//! with address fallback, and TLS client configurations that accept any certificate.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, aws_lc_rs};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, PeerMisbehaved, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use tokio::net::TcpStream;
use tokio::time::Instant;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::{AddressPolicy, ValidationError, ValidationErrorKind};

/// The ALPN protocol of tls-alpn-01 (RFC 8737 4).
pub(crate) const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// A host to contact: a DNS name (resolved with the system resolver) or an IP literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Host {
    /// A canonical (lower-case, no trailing dot) DNS name.
    Name(String),
    Ip(IpAddr),
}

impl Host {
    /// The host as written in a URL or a `Host` header (IPv6 in brackets).
    pub(crate) fn for_url(&self) -> String {
        match self {
            Self::Name(name) => name.clone(),
            Self::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
            Self::Ip(IpAddr::V4(ip)) => ip.to_string(),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(name) => f.write_str(name),
            Self::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Resolves `host` with the system resolver (getaddrinfo, so `/etc/hosts` is honoured).
/// IPv6 addresses come first, then IPv4, each in resolver order, without duplicates.
/// `context` names what the lookup is for (a URL) in error messages.
pub(crate) async fn resolve(host: &Host, deadline: Instant, context: &str) -> Result<Vec<IpAddr>, ValidationError> {
    let name = match host {
        Host::Ip(ip) => return Ok(vec![*ip]),
        Host::Name(name) => name,
    };
    let dns_error = |why: String| {
        ValidationError::new(
            ValidationErrorKind::Dns,
            format!("resolving {name} for {context}: {why}"),
        )
    };
    let found = match tokio::time::timeout_at(deadline, tokio::net::lookup_host((name.as_str(), 0))).await {
        Err(_) => return Err(dns_error("timed out".to_owned())),
        Ok(Err(e)) => return Err(dns_error(e.to_string())),
        Ok(Ok(found)) => found,
    };
    let mut addresses: Vec<IpAddr> = Vec::new();
    for addr in found {
        if !addresses.contains(&addr.ip()) {
            addresses.push(addr.ip());
        }
    }
    // A stable sort keeps the resolver's order within each family.
    addresses.sort_by_key(|ip| ip.is_ipv4());
    if addresses.is_empty() {
        return Err(dns_error("no addresses found".to_owned()));
    }
    Ok(addresses)
}

/// Connects to the first address that `policy` permits and that accepts, trying them in order.
/// Every address is checked right before its connection, so what was checked is what is
/// connected to. While more addresses remain, one attempt may use at most half of the remaining
/// time, so a black-holed address cannot starve the others. The error lists every address and
/// what happened (refused by the policy, or the connection's failure).
pub(crate) async fn connect(
    addresses: &[IpAddr],
    port: u16,
    policy: &AddressPolicy,
    deadline: Instant,
    context: &str,
) -> Result<(TcpStream, IpAddr), ValidationError> {
    let mut failures = Vec::new();
    for (i, ip) in addresses.iter().enumerate() {
        let addr = SocketAddr::new(*ip, port);
        if let Err(refusal) = policy.check(*ip) {
            tracing::debug!(%addr, %refusal, "validation address refused by policy");
            failures.push(format!(
                "not connecting to {addr} for {context}: refused by the validation address policy: {refusal}"
            ));
            continue;
        }
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
                return Ok((stream, *ip));
            }
            Ok(Err(e)) => describe_io(&e),
            Err(_) => "timed out".to_owned(),
        };
        failures.push(format!("connecting to {addr} for {context}: {why}"));
    }
    Err(ValidationError::new(
        ValidationErrorKind::Connection,
        failures.join("; "),
    ))
}

/// Short, stable wording for the usual connect errors (the OS text adds "(os error 111)").
pub(crate) fn describe_io(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
        io::ErrorKind::TimedOut => "timed out".to_owned(),
        io::ErrorKind::HostUnreachable => "host unreachable".to_owned(),
        io::ErrorKind::NetworkUnreachable => "network unreachable".to_owned(),
        _ => e.to_string(),
    }
}

/// The reverse-DNS name of an address (RFC 8738 6: the tls-alpn-01 SNI for IP identifiers).
pub(crate) fn reverse_dns_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(v6) => {
            let mut name = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                name.push_str(&format!("{:x}.{:x}.", byte & 0x0f, byte >> 4));
            }
            name.push_str("ip6.arpa");
            name
        }
    }
}

/// The server name a TLS client sends for `host`: SNI for names, none for IP literals.
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, ValidationError> {
    ServerName::try_from(host.to_owned()).map_err(|_| {
        ValidationError::new(
            ValidationErrorKind::Malformed,
            format!("{host} cannot be used as a TLS server name"),
        )
    })
}

/// TLS client configurations, built once per validator.
pub(crate) struct TlsConfigs {
    /// For http-01 redirects to https: ALPN http/1.1.
    pub(crate) https: Arc<ClientConfig>,
    /// For tls-alpn-01: ALPN acme-tls/1 only.
    pub(crate) acme: Arc<ClientConfig>,
}

impl TlsConfigs {
    pub(crate) fn new() -> Result<Self, ValidationError> {
        let provider = Arc::new(aws_lc_rs::default_provider());
        let verifier = Arc::new(DangerAcceptAnyCertificate::new(&provider));
        let build = |alpn: &[u8]| -> Result<Arc<ClientConfig>, ValidationError> {
            let mut config = ClientConfig::builder_with_provider(Arc::clone(&provider) as Arc<CryptoProvider>)
                // TLS 1.2 and 1.3 (RFC 8737 4 requires at least 1.2).
                .with_safe_default_protocol_versions()
                .map_err(|e| ValidationError::new(ValidationErrorKind::Tls, format!("TLS client setup: {e}")))?
                .dangerous()
                .with_custom_certificate_verifier(verifier.clone())
                .with_no_client_auth();
            config.alpn_protocols = vec![alpn.to_vec()];
            // Each validation is a fresh handshake: no session state carries over.
            config.resumption = Resumption::disabled();
            Ok(Arc::new(config))
        };
        Ok(Self {
            https: build(b"http/1.1")?,
            acme: build(ACME_TLS_ALPN)?,
        })
    }
}

/// Accepts any server certificate, as validation must: tls-alpn-01 certificates are
/// self-signed by design (RFC 8737 3), and http-01 redirects to https are followed without
/// checking the certificate (as Let's Encrypt does), since the key authorization in the body is
/// the proof. The handshake signature is still verified against the certificate's public key,
/// so the peer must hold the matching private key.
///
/// The key is read with x509-parser rather than webpki: webpki refuses certificates with
/// unknown critical extensions, and the tls-alpn-01 acmeIdentifier extension is critical.
///
/// Deployment verification (`certgate-lifecycle`) uses it too, to observe what a TLS endpoint
/// serves.
#[derive(Debug)]
pub struct DangerAcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl DangerAcceptAnyCertificate {
    /// A verifier checking handshake signatures with `provider`'s algorithms.
    pub fn new(provider: &CryptoProvider) -> Self {
        Self {
            algorithms: provider.signature_verification_algorithms,
        }
    }

    fn with_public_key<T>(
        cert: &CertificateDer<'_>,
        f: impl FnOnce(&SubjectPublicKeyInfo<'_>) -> Result<T, rustls::Error>,
    ) -> Result<T, rustls::Error> {
        let (_, parsed) = X509Certificate::from_der(cert.as_ref())
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        f(parsed.public_key())
    }
}

impl ServerCertVerifier for DangerAcceptAnyCertificate {
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
        // As rustls does for TLS 1.2: a scheme may map to several algorithms; any may verify.
        let candidates = self
            .algorithms
            .mapping
            .iter()
            .find(|(scheme, _)| *scheme == dss.scheme)
            .map(|(_, algorithms)| *algorithms)
            .ok_or(rustls::Error::PeerMisbehaved(
                PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
            ))?;
        Self::with_public_key(cert, |spki| {
            let key = &spki.subject_public_key.data;
            if candidates
                .iter()
                .any(|alg| alg.verify_signature(key, message, dss.signature()).is_ok())
            {
                Ok(HandshakeSignatureValid::assertion())
            } else {
                Err(rustls::Error::InvalidCertificate(CertificateError::BadSignature))
            }
        })
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Self::with_public_key(cert, |spki| {
            let spki = SubjectPublicKeyInfoDer::from(spki.raw);
            rustls::crypto::verify_tls13_signature_with_raw_key(message, &spki, dss, &self.algorithms)
        })
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names() {
        let cases = [
            ("v4", "127.0.0.1", "1.0.0.127.in-addr.arpa"),
            ("v4_rfc8738", "192.0.2.5", "5.2.0.192.in-addr.arpa"),
            (
                "v6",
                "2001:db8::1",
                "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
            ),
        ];
        for (case, ip, want) in cases {
            assert_eq!(reverse_dns_name(ip.parse().unwrap()), want, "case {case}");
        }
    }

    #[test]
    fn hosts_in_urls() {
        assert_eq!(Host::Ip("::1".parse().unwrap()).for_url(), "[::1]");
        assert_eq!(Host::Ip("127.0.0.1".parse().unwrap()).for_url(), "127.0.0.1");
        assert_eq!(Host::Name("a.test".into()).for_url(), "a.test");
    }
}
