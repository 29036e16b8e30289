//! Raw HTTP/2 frames over TLS (ALPN `h2`), so the HTTP/2 cases can send what no client
//! library would: streams beyond the advertised limit, header lists beyond the limit, and
//! floods of resets and CONTINUATION frames. HPACK is written with literals only.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::harness::{Listener, Target, client_config, connect};

/// Frame types (RFC 9113 6).
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const GOAWAY: u8 = 0x7;
pub const CONTINUATION: u8 = 0x9;
/// Flags.
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const ACK: u8 = 0x1;
/// Error codes.
pub const CANCEL: u32 = 0x8;
pub const REFUSED_STREAM: u32 = 0x7;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;
/// SETTINGS_MAX_CONCURRENT_STREAMS.
pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One frame as received.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Type.
    pub kind: u8,
    /// Flags.
    pub flags: u8,
    /// Stream.
    pub stream: u32,
    /// Payload.
    pub payload: Vec<u8>,
}

impl Frame {
    /// The error code of a RST_STREAM or GOAWAY.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            RST_STREAM => 0,
            GOAWAY => 4,
            _ => return None,
        };
        let bytes: [u8; 4] = self.payload.get(at..at + 4)?.try_into().ok()?;
        Some(u32::from_be_bytes(bytes))
    }

    /// The value of a SETTINGS parameter.
    pub fn setting(&self, id: u16) -> Option<u32> {
        if self.kind != SETTINGS {
            return None;
        }
        self.payload.chunks_exact(6).find_map(|entry| {
            (u16::from_be_bytes([entry[0], entry[1]]) == id)
                .then(|| u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]))
        })
    }
}

/// A frame's bytes.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend((stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with a 7-bit prefix (RFC 7541 5.1).
fn hpack_int(value: usize) -> Vec<u8> {
    if value < 0x7f {
        return vec![value as u8];
    }
    let mut out = vec![0x7f];
    let mut rest = value - 0x7f;
    while rest >= 0x80 {
        out.push((rest % 0x80) as u8 | 0x80);
        rest /= 0x80;
    }
    out.push(rest as u8);
    out
}

/// A literal header field without indexing, new name (RFC 7541 6.2.2).
pub fn literal(name: &str, value: &str) -> Vec<u8> {
    let mut out = vec![0x00];
    out.extend(hpack_int(name.len()));
    out.extend_from_slice(name.as_bytes());
    out.extend(hpack_int(value.len()));
    out.extend_from_slice(value.as_bytes());
    out
}

/// The header block of `GET path`.
pub fn get(authority: &str, path: &str) -> Vec<u8> {
    [
        literal(":method", "GET"),
        literal(":scheme", "https"),
        literal(":authority", authority),
        literal(":path", path),
    ]
    .concat()
}

/// An HTTP/2 connection over TLS to the HTTPS listener.
pub struct H2 {
    stream: TlsStream<TcpStream>,
    received: Vec<u8>,
    /// The authority for request headers.
    pub authority: String,
}

impl H2 {
    /// Connects with ALPN `h2`, sends the preface and an empty SETTINGS.
    pub async fn open(target: &Target) -> std::io::Result<Self> {
        let mut config = (*client_config(&target.root, None)).clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let tcp = connect(target.addr(Listener::Https), None).await?;
        let name = rustls_pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
        let mut stream = TlsConnector::from(std::sync::Arc::new(config))
            .connect(name, tcp)
            .await?;
        let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        if alpn.as_deref() != Some(b"h2") {
            return Err(std::io::Error::other(format!("ALPN h2 not negotiated: {alpn:?}")));
        }
        stream.write_all(PREFACE).await?;
        stream.write_all(&frame(SETTINGS, 0, 0, &[])).await?;
        Ok(Self {
            stream,
            received: Vec::new(),
            authority: target.host(Listener::Https),
        })
    }

    /// Sends bytes (frames).
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Reads frames until `quiet` passes without any, the connection ends, or `limit`
    /// passes; acknowledges the server's SETTINGS. Returns the frames and whether the
    /// connection ended.
    pub async fn read(&mut self, quiet: Duration, limit: Duration) -> (Vec<Frame>, bool) {
        let deadline = tokio::time::Instant::now() + limit;
        let mut frames = Vec::new();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            while let Some(frame) = self.next_frame() {
                if frame.kind == SETTINGS && frame.flags & ACK == 0 {
                    let _ = self.send(&self::frame(SETTINGS, ACK, 0, &[])).await;
                }
                frames.push(frame);
            }
            let wait = quiet.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            match tokio::time::timeout(wait, self.stream.read(&mut buffer)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return (frames, true),
                Ok(Ok(n)) => self.received.extend_from_slice(&buffer[..n]),
                Err(_) => return (frames, false),
            }
        }
    }

    fn next_frame(&mut self) -> Option<Frame> {
        let header = self.received.get(..9)?;
        let len = (usize::from(header[0]) << 16) | (usize::from(header[1]) << 8) | usize::from(header[2]);
        let payload = self.received.get(9..9 + len)?.to_vec();
        let frame = Frame {
            kind: header[3],
            flags: header[4],
            stream: u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff,
            payload,
        };
        self.received.drain(..9 + len);
        Some(frame)
    }
}
