//! `[listeners]` (addresses, timeouts, connection caps) and `[metrics]` (who may scrape).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use certgate_core::IpNet;
use serde::Deserialize;

/// Listening sockets, and the timeouts and caps every client connection on them is held to.
/// Port 0 picks a free port (the bound address is printed at start). The connection defaults
/// follow common web-server practice (nginx: 60 s header, body and send timeouts, 75 s
/// keep-alive) made shorter where enrollment clients never need the time.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerConfig {
    /// HTTPS (ACME, EST, health); None disables it.
    pub https: Option<SocketAddr>,
    /// Plain HTTP (SCEP, CRL, OCSP, CA certificates, health); None disables it.
    pub http: Option<SocketAddr>,
    /// Seconds to let in-flight requests finish after SIGTERM.
    pub shutdown_grace_seconds: u64,
    /// Seconds a client has to send a request's whole head (request line and headers), and
    /// that a keep-alive HTTP/1 connection may wait for its next request.
    pub header_read_timeout_seconds: u64,
    /// Seconds a client has to send a request's whole body.
    pub body_read_timeout_seconds: u64,
    /// Seconds a connection may go without the client sending anything while the server
    /// waits for it (idle HTTP/2 connections, half-open sockets, stalled TLS).
    pub idle_timeout_seconds: u64,
    /// Seconds a write may wait for a client that does not read its answer.
    pub write_timeout_seconds: u64,
    /// Seconds a TLS handshake may take.
    pub tls_handshake_timeout_seconds: u64,
    /// Open client connections at most, both listeners together (lowered at start to what
    /// the open-file limit allows).
    pub max_connections: usize,
    /// Open connections at most from one client address (0: no cap; behind a load balancer
    /// every client has its address).
    pub max_connections_per_ip: usize,
    /// Concurrent streams one HTTP/2 connection may open.
    pub http2_max_concurrent_streams: u32,
    /// Bytes of request head (HTTP/1 buffer, HTTP/2 header list) accepted.
    pub max_header_bytes: usize,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            https: Some(SocketAddr::from(([127, 0, 0, 1], 8443))),
            http: Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
            shutdown_grace_seconds: 30,
            header_read_timeout_seconds: 10,
            body_read_timeout_seconds: 30,
            idle_timeout_seconds: 60,
            write_timeout_seconds: 30,
            tls_handshake_timeout_seconds: 10,
            max_connections: 10_000,
            max_connections_per_ip: 256,
            http2_max_concurrent_streams: 64,
            max_header_bytes: 64 * 1024,
        }
    }
}

/// The smallest head buffer hyper accepts.
const MIN_HEADER_BYTES: usize = 8192;

impl ListenerConfig {
    /// Checks the values can be used.
    pub fn check(&self) -> Result<(), String> {
        let timeouts = [
            ("header_read_timeout_seconds", self.header_read_timeout_seconds),
            ("body_read_timeout_seconds", self.body_read_timeout_seconds),
            ("idle_timeout_seconds", self.idle_timeout_seconds),
            ("write_timeout_seconds", self.write_timeout_seconds),
            ("tls_handshake_timeout_seconds", self.tls_handshake_timeout_seconds),
        ];
        if let Some((name, _)) = timeouts.iter().find(|(_, value)| *value == 0 || *value > 3600) {
            return Err(format!("[listeners] {name} must be between 1 and 3600"));
        }
        if self.max_connections == 0 {
            return Err("[listeners] max_connections must be at least 1".into());
        }
        if self.http2_max_concurrent_streams == 0 {
            return Err("[listeners] http2_max_concurrent_streams must be at least 1".into());
        }
        if !(MIN_HEADER_BYTES..=1024 * 1024).contains(&self.max_header_bytes) {
            return Err(format!(
                "[listeners] max_header_bytes must be between {MIN_HEADER_BYTES} and 1048576"
            ));
        }
        Ok(())
    }

    /// The header-read timeout.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_seconds)
    }

    /// The body-read timeout.
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_secs(self.body_read_timeout_seconds)
    }

    /// The idle (no bytes from the client) timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_seconds)
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_seconds)
    }

    /// The TLS handshake timeout.
    pub fn tls_handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.tls_handshake_timeout_seconds)
    }
}

/// Who may read `/metrics`: clients from `allow_networks`, and anyone presenting the bearer
/// token when one is configured. The default admits loopback and private networks, where
/// scrapers run, and refuses the rest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsAccess {
    /// Client networks admitted without a token (`[]` admits none: token only).
    pub allow_networks: Vec<IpNet>,
    /// A file holding a bearer token that admits a scraper from any address.
    pub token_file: Option<PathBuf>,
    /// An environment variable holding that token.
    pub token_env: Option<String>,
}

impl Default for MetricsAccess {
    fn default() -> Self {
        let networks = [
            "127.0.0.0/8",
            "::1/128",
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "fc00::/7",
        ];
        Self {
            allow_networks: networks
                .iter()
                .map(|net| IpNet::parse(net).expect("constant networks parse"))
                .collect(),
            token_file: None,
            token_env: None,
        }
    }
}

impl MetricsAccess {
    /// Whether a client at `address` is admitted without a token.
    pub fn admits_address(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.allow_networks.iter().any(|net| net.contains(address))
    }
}
