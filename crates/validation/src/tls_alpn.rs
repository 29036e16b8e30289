//! tls-alpn-01 (RFC 8737; RFC 8738 6 for IP identifiers): a TLS handshake offering only the
//! `acme-tls/1` protocol, then a look at the self-signed certificate the server presents.
//! Errors say what is wrong with the certificate without quoting what it holds (names,
//! extension values): the server is the client's choice, possibly an internal one.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use aws_lc_rs::digest;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::net::{self, ACME_TLS_ALPN, Host, TlsConfigs};
use crate::{ValidationConfig, ValidationError, ValidationErrorKind, ValidationRecord};

/// DER content octets of id-pe-acmeIdentifier, 1.3.6.1.5.5.7.1.31 (RFC 8737 6.1).
const ACME_IDENTIFIER_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f];

pub(crate) async fn validate(
    config: &ValidationConfig,
    tls: &TlsConfigs,
    host: Host,
    key_authorization: &str,
    deadline: Instant,
) -> Result<ValidationRecord, ValidationError> {
    let port = config.tls_alpn_port;
    let context = format!("tls-alpn-01 on {}:{port}", host.for_url());
    let mut record = ValidationRecord {
        url: None,
        hostname: host.to_string(),
        port: Some(port),
        addresses_resolved: Vec::new(),
        address_used: None,
    };
    let addresses = net::resolve(&host, deadline, &context)
        .await
        .map_err(|e| e.with_record(&record))?;
    record.addresses_resolved.clone_from(&addresses);
    let (stream, ip) = net::connect(&addresses, port, &config.address_policy, deadline, &context)
        .await
        .map_err(|e| e.with_record(&record))?;
    record.address_used = Some(ip);
    let peer = SocketAddr::new(ip, port);

    // RFC 8737 3: SNI is the name being validated; RFC 8738 6: the reverse-DNS name for an IP.
    let sni = match &host {
        Host::Name(name) => name.clone(),
        Host::Ip(ip) => net::reverse_dns_name(*ip),
    };
    let server_name = net::server_name(&sni).map_err(|e| e.with_record(&record))?;
    let fail = |kind: ValidationErrorKind, what: String| ValidationError {
        kind,
        detail: format!("{context} ({peer}, SNI {sni}): {what}"),
        record: Some(record.clone()),
    };
    let handshake = TlsConnector::from(Arc::clone(&tls.acme)).connect(server_name, stream);
    let stream = match tokio::time::timeout_at(deadline, handshake).await {
        Err(_) => {
            return Err(fail(
                ValidationErrorKind::Connection,
                "timed out during the TLS handshake".to_owned(),
            ));
        }
        Ok(Err(e)) => {
            return Err(fail(
                ValidationErrorKind::Tls,
                format!("TLS handshake offering ALPN acme-tls/1 failed: {e}"),
            ));
        }
        Ok(Ok(stream)) => stream,
    };
    let (_, connection) = stream.get_ref();
    match connection.alpn_protocol() {
        Some(ACME_TLS_ALPN) => {}
        Some(other) => {
            return Err(fail(
                ValidationErrorKind::Tls,
                format!(
                    "the server negotiated another ALPN protocol ({} bytes), not acme-tls/1",
                    other.len()
                ),
            ));
        }
        None => {
            return Err(fail(
                ValidationErrorKind::Tls,
                "the server did not negotiate ALPN acme-tls/1".to_owned(),
            ));
        }
    }
    let Some(leaf) = connection.peer_certificates().and_then(|certs| certs.first()) else {
        return Err(fail(
            ValidationErrorKind::Tls,
            "the server presented no certificate".to_owned(),
        ));
    };
    check_certificate(leaf.as_ref(), &host, key_authorization)
        .map_err(|why| fail(ValidationErrorKind::IncorrectResponse, format!("the certificate {why}")))?;
    Ok(record)
}

/// RFC 8737 3: exactly one SAN, equal to the identifier, and a critical acmeIdentifier
/// extension holding SHA-256 of the key authorization. `Err` completes "the certificate ...".
fn check_certificate(der: &[u8], host: &Host, key_authorization: &str) -> Result<(), String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("cannot be parsed: {e}"))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("has an invalid subjectAltName extension: {e}"))?
        .ok_or_else(|| format!("has no subjectAltName extension; exactly one entry, {host}, is required"))?;
    match san.value.general_names.as_slice() {
        [only] => {
            if !san_matches(only, host) {
                return Err(format!("names {} instead of {host}", describe_san(only)));
            }
        }
        names => {
            return Err(format!(
                "has {} subjectAltName entries; exactly one, {host}, is required",
                names.len()
            ));
        }
    }
    let mut found = cert
        .extensions()
        .iter()
        .filter(|e| e.oid.as_bytes() == ACME_IDENTIFIER_OID);
    let extension = found
        .next()
        .ok_or("has no acmeIdentifier extension (1.3.6.1.5.5.7.1.31)")?;
    if found.next().is_some() {
        return Err("has more than one acmeIdentifier extension".to_owned());
    }
    if !extension.critical {
        return Err("has an acmeIdentifier extension that is not marked critical".to_owned());
    }
    let expected = digest::digest(&digest::SHA256, key_authorization.as_bytes());
    // DER OCTET STRING of 32 bytes: tag 0x04, length 0x20, the digest.
    let value = extension.value;
    let got = match value {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => rest,
        _ => {
            return Err(format!(
                "has an acmeIdentifier value of {} bytes that is not a DER OCTET STRING of 32 bytes",
                value.len()
            ));
        }
    };
    if got != expected.as_ref() {
        return Err(format!(
            "has an acmeIdentifier that differs from SHA-256 of the key authorization ({})",
            hex(expected.as_ref())
        ));
    }
    Ok(())
}

fn san_matches(name: &GeneralName<'_>, host: &Host) -> bool {
    match (name, host) {
        (GeneralName::DNSName(dns), Host::Name(want)) => dns.eq_ignore_ascii_case(want),
        (GeneralName::IPAddress(bytes), Host::Ip(want)) => ip_from_bytes(bytes) == Some(*want),
        _ => false,
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Some(IpAddr::from(v4));
    }
    <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from)
}

/// The kind of a name, not the name: the certificate is the target's content.
fn describe_san(name: &GeneralName<'_>) -> &'static str {
    match name {
        GeneralName::DNSName(_) => "another DNS name",
        GeneralName::IPAddress(_) => "another IP address",
        _ => "a name of another type",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
