//! http-01 (RFC 8555 8.3; RFC 8738 for IP identifiers): fetch the key authorization over
//! HTTP/1.1, following a bounded number of redirects to http or https.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use certgate_core::DnsName;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT, CONNECTION, HOST, LOCATION, USER_AGENT};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use crate::error::excerpt;
use crate::net::{self, Host, TlsConfigs};
use crate::{ValidationConfig, ValidationError, ValidationErrorKind, ValidationRecord};

const USER_AGENT_VALUE: &str = "certgate-validation";
/// Bound on the response head hyper buffers (status line and headers).
const MAX_HEAD: usize = 64 * 1024;

/// One URL to fetch, already checked against the redirect policy.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    https: bool,
    host: Host,
    port: u16,
    /// Origin-form request target: path and query, starting with `/`.
    path: String,
}

impl Target {
    fn default_port(&self) -> u16 {
        if self.https { 443 } else { 80 }
    }

    /// `host[:port]`, the port omitted when it is the scheme's default (as in `Host`).
    fn authority(&self) -> String {
        if self.port == self.default_port() {
            self.host.for_url()
        } else {
            format!("{}:{}", self.host.for_url(), self.port)
        }
    }

    fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority(), self.path)
    }

    /// Resolves a `Location` value against this URL and applies the redirect policy: http or
    /// https only, ports 80 and 443 (or the configured validation ports), no credentials.
    /// Errors describe the Location header without quoting it: it came from the target.
    fn redirect(&self, location: &str, config: &ValidationConfig) -> Result<Target, ValidationError> {
        let from = self.url();
        let malformed = |why: &str| {
            ValidationError::new(
                ValidationErrorKind::Malformed,
                format!(
                    "redirect from {from}: the Location header ({} bytes) is {why}",
                    location.len()
                ),
            )
        };
        let refused = |why: String| {
            ValidationError::new(
                ValidationErrorKind::Connection,
                format!("redirect from {from} refused: {why}"),
            )
        };
        // The fragment never reaches the server.
        let reference = location.split('#').next().unwrap_or_default().trim();
        let scheme_end = reference.find([':', '/', '?']);
        let absolute = match scheme_end {
            Some(i) if reference.get(i..i + 1) == Some(":") => {
                let scheme = reference.get(..i).unwrap_or_default();
                let valid = scheme.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
                    && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
                if !valid {
                    return Err(malformed("not a valid URL"));
                }
                if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
                    // A valid scheme is a few letters, digits and "+-.": naming it is safe.
                    return Err(refused(format!(
                        "scheme \"{}\" is not followed; only http and https are",
                        excerpt(scheme.as_bytes())
                    )));
                }
                Some(reference.to_owned())
            }
            _ if reference.starts_with("//") => {
                Some(format!("{}:{reference}", if self.https { "https" } else { "http" }))
            }
            _ => None,
        };
        let target = match absolute {
            Some(url) => {
                let uri: Uri = url.parse().map_err(|_| malformed("not a valid URL"))?;
                let authority = uri.authority().ok_or_else(|| malformed("no host"))?;
                if authority.as_str().contains('@') {
                    return Err(refused("URLs with credentials are not followed".to_owned()));
                }
                let https = uri.scheme_str().is_some_and(|s| s.eq_ignore_ascii_case("https"));
                let host = parse_host(authority.host()).ok_or_else(|| malformed("invalid host"))?;
                let port = match authority.port() {
                    None => {
                        if https {
                            443
                        } else {
                            80
                        }
                    }
                    Some(port) => port.as_str().parse::<u16>().map_err(|_| malformed("invalid port"))?,
                };
                let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
                let path = if path.is_empty() { "/".to_owned() } else { path };
                Target {
                    https,
                    host,
                    port,
                    path,
                }
            }
            None => {
                let path = if reference.starts_with('/') {
                    reference.to_owned()
                } else {
                    // A relative path replaces the last segment of the current path.
                    let base = self.path.split('?').next().unwrap_or_default();
                    let dir = base.rfind('/').and_then(|i| base.get(..=i)).unwrap_or("/");
                    format!("{dir}{reference}")
                };
                // Checks the characters of the request target.
                let uri: Uri = path.parse().map_err(|_| malformed("not a valid path"))?;
                if uri.authority().is_some() || uri.scheme().is_some() {
                    return Err(malformed("not a valid path"));
                }
                Target { path, ..self.clone() }
            }
        };
        let allowed = [80, 443, config.http_port, config.tls_alpn_port];
        if !allowed.contains(&target.port) {
            let mut ports: Vec<u16> = allowed.to_vec();
            ports.sort_unstable();
            ports.dedup();
            let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
            return Err(refused(format!(
                "port {} is not followed; only {} are",
                target.port,
                ports.join(", ")
            )));
        }
        Ok(target)
    }
}

/// A URL host: an IP literal (IPv6 in brackets) or a DNS name that certgate accepts.
fn parse_host(host: &str) -> Option<Host> {
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse().ok().map(|ip| Host::Ip(IpAddr::V6(ip)));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(Host::Ip(ip));
    }
    let name = DnsName::new(host).ok().filter(|n| !n.is_wildcard())?;
    Some(Host::Name(name.as_str().to_owned()))
}

/// The part of a response validation needs.
struct Response {
    status: StatusCode,
    location: Option<Result<String, Vec<u8>>>,
    body: Vec<u8>,
    /// The body was longer than `max_body`; `body` holds its first `max_body` bytes.
    truncated: bool,
}

/// Fetches the key authorization. No error quotes what the target sent (body or headers): the
/// target is the client's choice, possibly an internal service; errors give the status, the
/// body's length and whether it matched instead.
pub(crate) async fn validate(
    config: &ValidationConfig,
    tls: &TlsConfigs,
    host: Host,
    token: &str,
    key_authorization: &str,
    deadline: Instant,
) -> Result<ValidationRecord, ValidationError> {
    let mut target = Target {
        https: false,
        host,
        port: config.http_port,
        path: format!("/.well-known/acme-challenge/{token}"),
    };
    let mut redirects = 0usize;
    loop {
        let url = target.url();
        let mut record = ValidationRecord {
            url: Some(url.clone()),
            hostname: target.host.to_string(),
            port: Some(target.port),
            addresses_resolved: Vec::new(),
            address_used: None,
        };
        let addresses = net::resolve(&target.host, deadline, &url)
            .await
            .map_err(|e| e.with_record(&record))?;
        record.addresses_resolved.clone_from(&addresses);
        let (stream, ip) = net::connect(&addresses, target.port, &config.address_policy, deadline, &url)
            .await
            .map_err(|e| e.with_record(&record))?;
        record.address_used = Some(ip);
        let peer = SocketAddr::new(ip, target.port);
        let exchange = Exchange {
            target: &target,
            url: &url,
            peer,
            max_body: config.max_body,
            deadline,
        };
        let response = if target.https {
            exchange.fetch_tls(Arc::clone(&tls.https), stream).await
        } else {
            exchange.fetch(stream).await
        }
        .map_err(|e| e.with_record(&record))?;

        let status = response.status;
        if matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
            redirects += 1;
            if redirects > config.max_redirects {
                return Err(ValidationError {
                    kind: ValidationErrorKind::Connection,
                    detail: format!(
                        "too many redirects: {url} ({peer}) answered with redirect number {redirects}; \
                         at most {} are followed",
                        config.max_redirects
                    ),
                    record: Some(record),
                });
            }
            let location = match response.location {
                Some(Ok(location)) => location,
                Some(Err(raw)) => {
                    return Err(ValidationError {
                        kind: ValidationErrorKind::Malformed,
                        detail: format!(
                            "{url} ({peer}) answered HTTP {status} with a Location header ({} bytes) that is not \
                             valid text",
                            raw.len()
                        ),
                        record: Some(record),
                    });
                }
                None => {
                    return Err(ValidationError {
                        kind: ValidationErrorKind::Malformed,
                        detail: format!("{url} ({peer}) answered HTTP {status} without a Location header"),
                        record: Some(record),
                    });
                }
            };
            target = target.redirect(&location, config).map_err(|e| e.with_record(&record))?;
            tracing::debug!(from = %url, to = %target.url(), status = status.as_u16(), "http-01 following redirect");
            continue;
        }
        if status != StatusCode::OK {
            return Err(ValidationError {
                kind: ValidationErrorKind::IncorrectResponse,
                detail: format!(
                    "{url} ({peer}) answered HTTP {status}, not 200 OK, with {}",
                    body_size(&response, config.max_body)
                ),
                record: Some(record),
            });
        }
        if response.truncated {
            return Err(ValidationError {
                kind: ValidationErrorKind::IncorrectResponse,
                detail: format!(
                    "{url} ({peer}) answered with {}; it must hold only the key authorization for token {token} \
                     ({} bytes)",
                    body_size(&response, config.max_body),
                    key_authorization.len()
                ),
                record: Some(record),
            });
        }
        // RFC 8555 8.3: the server should ignore trailing whitespace.
        let body = response.body.trim_ascii_end();
        if body != key_authorization.as_bytes() {
            return Err(ValidationError {
                kind: ValidationErrorKind::IncorrectResponse,
                detail: format!(
                    "the body of {url} ({peer}) is not the key authorization: expected the key authorization for \
                     token {token} ({} bytes), got {}",
                    key_authorization.len(),
                    mismatch(body, token)
                ),
                record: Some(record),
            });
        }
        return Ok(record);
    }
}

/// "a body of N bytes" (or "more than N" when it was cut off), never its content.
fn body_size(response: &Response, max_body: usize) -> String {
    if response.truncated {
        format!("a body of more than {max_body} bytes")
    } else {
        format!("a body of {} bytes", response.body.len())
    }
}

/// How a body differs from the key authorization, without quoting it. Whether it starts with
/// `token.` tells a client that served a key authorization for another account key apart from
/// one that served something else; the token is the client's own, so that says nothing about
/// a third party's content.
fn mismatch(body: &[u8], token: &str) -> String {
    if body.is_empty() {
        return "an empty body".to_owned();
    }
    let starts_with_token = body
        .strip_prefix(token.as_bytes())
        .is_some_and(|rest| rest.starts_with(b"."));
    if starts_with_token {
        format!(
            "{} bytes that start with the token but differ after it (a key authorization for another account key?)",
            body.len()
        )
    } else {
        format!("{} bytes that differ", body.len())
    }
}

/// One HTTP/1.1 request on a fresh connection.
struct Exchange<'a> {
    target: &'a Target,
    url: &'a str,
    peer: SocketAddr,
    max_body: usize,
    deadline: Instant,
}

/// Stops hyper's connection task when the exchange ends, whatever the peer does.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Exchange<'_> {
    fn error(&self, kind: ValidationErrorKind, what: impl std::fmt::Display) -> ValidationError {
        ValidationError::new(kind, format!("{} ({}): {what}", self.url, self.peer))
    }

    async fn fetch_tls(
        &self,
        config: Arc<ClientConfig>,
        stream: tokio::net::TcpStream,
    ) -> Result<Response, ValidationError> {
        let server_name = net::server_name(&self.target.host.to_string())?;
        let handshake = TlsConnector::from(config).connect(server_name, stream);
        let tls = match tokio::time::timeout_at(self.deadline, handshake).await {
            Err(_) => return Err(self.error(ValidationErrorKind::Connection, "timed out during the TLS handshake")),
            Ok(Err(e)) => return Err(self.error(ValidationErrorKind::Tls, format_args!("TLS handshake failed: {e}"))),
            Ok(Ok(tls)) => tls,
        };
        self.fetch(tls).await
    }

    async fn fetch<IO>(&self, io: IO) -> Result<Response, ValidationError>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let timed_out = |stage: &str| self.error(ValidationErrorKind::Connection, format_args!("timed out {stage}"));
        let handshake = hyper::client::conn::http1::Builder::new()
            .max_buf_size(MAX_HEAD)
            .handshake::<_, Empty<Bytes>>(TokioIo::new(io));
        let (mut sender, connection) = match tokio::time::timeout_at(self.deadline, handshake).await {
            Err(_) => return Err(timed_out("starting HTTP")),
            Ok(Err(e)) => return Err(self.error(ValidationErrorKind::Connection, e)),
            Ok(Ok(parts)) => parts,
        };
        let _driver = AbortOnDrop(tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "http-01 connection ended with an error");
            }
        }));
        let request = Request::get(self.target.path.as_str())
            .header(HOST, self.target.authority())
            .header(USER_AGENT, USER_AGENT_VALUE)
            .header(ACCEPT, "*/*")
            .header(CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| {
                self.error(
                    ValidationErrorKind::Malformed,
                    format_args!("cannot build the request: {e}"),
                )
            })?;
        let response = match tokio::time::timeout_at(self.deadline, sender.send_request(request)).await {
            Err(_) => return Err(timed_out("waiting for the HTTP response")),
            Ok(Err(e)) => {
                return Err(self.error(
                    ValidationErrorKind::Connection,
                    format_args!("reading the HTTP response: {e}"),
                ));
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        let location = response.headers().get(LOCATION).map(|value| match value.to_str() {
            Ok(text) => Ok(text.to_owned()),
            Err(_) => Err(value.as_bytes().to_vec()),
        });
        if status.is_redirection() {
            // A redirect's body is never looked at.
            return Ok(Response {
                status,
                location,
                body: Vec::new(),
                truncated: false,
            });
        }
        let (body, truncated) = self.read_body(response.into_body()).await?;
        Ok(Response {
            status,
            location,
            body,
            truncated,
        })
    }

    /// Reads at most `max_body` bytes; `true` when more were on offer.
    async fn read_body(&self, mut incoming: Incoming) -> Result<(Vec<u8>, bool), ValidationError> {
        let mut body = Vec::new();
        loop {
            let frame = match tokio::time::timeout_at(self.deadline, incoming.frame()).await {
                Err(_) => {
                    return Err(self.error(ValidationErrorKind::Connection, "timed out reading the response body"));
                }
                Ok(None) => return Ok((body, false)),
                Ok(Some(Err(e))) => {
                    return Err(self.error(
                        ValidationErrorKind::Connection,
                        format_args!("reading the response body: {e}"),
                    ));
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            let room = self.max_body.saturating_sub(body.len());
            if data.len() > room {
                body.extend_from_slice(data.get(..room).unwrap_or_default());
                return Ok((body, true));
            }
            body.extend_from_slice(&data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Target {
        Target {
            https: false,
            host: Host::Name("a.test".into()),
            port: 5002,
            path: "/.well-known/acme-challenge/tok".into(),
        }
    }

    fn config() -> ValidationConfig {
        ValidationConfig {
            http_port: 5002,
            tls_alpn_port: 5003,
            ..ValidationConfig::default()
        }
    }

    #[test]
    fn redirects() {
        let cases: [(&str, &str, Result<&str, ValidationErrorKind>); 15] = [
            ("good_absolute_path", "/other?x=1", Ok("http://a.test:5002/other?x=1")),
            (
                "good_relative_path",
                "next",
                Ok("http://a.test:5002/.well-known/acme-challenge/next"),
            ),
            ("good_absolute_url", "http://b.test/x", Ok("http://b.test/x")),
            ("good_https_default_port", "https://b.test/x", Ok("https://b.test/x")),
            (
                "good_https_tls_port",
                "https://b.test:5003/x#frag",
                Ok("https://b.test:5003/x"),
            ),
            ("good_scheme_relative", "//c.test:5002/y", Ok("http://c.test:5002/y")),
            ("good_ipv6", "http://[::1]/z", Ok("http://[::1]/z")),
            ("good_upper_case", "HTTP://B.TEST/", Ok("http://b.test/")),
            ("bad_ftp", "ftp://b.test/x", Err(ValidationErrorKind::Connection)),
            ("bad_mailto", "mailto:a@b.test", Err(ValidationErrorKind::Connection)),
            ("bad_port", "http://b.test:8080/x", Err(ValidationErrorKind::Connection)),
            (
                "bad_credentials",
                "http://u:p@b.test/x",
                Err(ValidationErrorKind::Connection),
            ),
            ("bad_host", "http://b_c.test/x", Err(ValidationErrorKind::Malformed)),
            ("bad_space_in_path", "/a b", Err(ValidationErrorKind::Malformed)),
            (
                "bad_wildcard_host",
                "http://*.b.test/",
                Err(ValidationErrorKind::Malformed),
            ),
        ];
        for (case, location, want) in cases {
            let got = base()
                .redirect(location, &config())
                .map(|t| t.url())
                .map_err(|e| e.kind);
            assert_eq!(got.as_deref().map_err(|k| *k), want, "case {case}");
        }
    }
}
