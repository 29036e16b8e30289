//! Slow and half-open clients. With 2,000 half-open connections held from eight loopback
//! addresses (250 each, under the per-address cap), `/healthz` and an ACME issuance still
//! succeed within 2 s; 2,000 from one address are mostly refused. With small timeouts, idle,
//! half-open, trickling and non-reading connections are closed within the configured time,
//! and HTTP/2 streams beyond the limit, oversized header lists and reset or CONTINUATION
//! floods are refused.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::acme_client::{ACME_PATH, Acme, Http01, defaults_with_http01};
use super::h2::{self, END_HEADERS, END_STREAM, H2, HEADERS, frame};
use super::harness::{
    Area, Case, Expect, Listener, Outcome, SendOptions, Target, case, connect, finish, run_cases, run_concurrently,
};

/// Half-open connections held at once, and the addresses they come from.
const HELD: usize = 2_000;
const SOURCES: u8 = 8;
/// The one address of the capped case.
const ONE_SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10));
/// The default per-address cap (`[listeners] max_connections_per_ip`).
const PER_ADDRESS_CAP: usize = 256;
/// What a client must be served within while the half-open connections are held.
const SERVED_WITHIN: Duration = Duration::from_secs(2);

fn source(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// The daemon, the http-01 responder, and the connections held between cases.
pub struct Crowd {
    target: Target,
    http01: Http01,
    held: Mutex<Vec<TcpStream>>,
}

impl Area for Crowd {
    fn target(&self) -> &Target {
        &self.target
    }

    fn target_mut(&mut self) -> &mut Target {
        &mut self.target
    }
}

/// Opens `count` connections from the addresses `sources` hands out, half to each listener:
/// HTTPS ones send nothing (no ClientHello), HTTP ones half a request line.
async fn open_half(target: &Target, count: usize, sources: impl Fn(usize) -> IpAddr) -> Result<Vec<TcpStream>, String> {
    let mut opened = Vec::with_capacity(count);
    for batch in (0..count).collect::<Vec<_>>().chunks(100) {
        let mut connecting = JoinSet::new();
        for &i in batch {
            let (listener, from) = if i % 2 == 0 {
                (Listener::Https, sources(i))
            } else {
                (Listener::Http, sources(i))
            };
            let addr = target.addr(listener);
            connecting.spawn(async move {
                let mut stream = connect(addr, Some(from)).await?;
                if listener == Listener::Http {
                    stream.write_all(b"GET /heal").await?;
                }
                Ok::<_, std::io::Error>(stream)
            });
        }
        while let Some(joined) = connecting.join_next().await {
            let stream = joined.map_err(|e| e.to_string())?.map_err(|e| {
                format!(
                    "connection {} of {count}: {e} (is the open-file limit high enough?)",
                    opened.len()
                )
            })?;
            opened.push(stream);
        }
    }
    Ok(opened)
}

/// How many of `streams` the server has not closed (a read would still block).
fn still_open(streams: &[TcpStream]) -> usize {
    let mut byte = [0u8; 1];
    streams
        .iter()
        .filter(|s| matches!(s.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock))
        .count()
}

/// `/healthz` on both listeners from `from`, each within [`SERVED_WITHIN`].
async fn healthz_within(target: &Target, from: Option<IpAddr>) -> Result<(), String> {
    for listener in [Listener::Https, Listener::Http] {
        let started = Instant::now();
        let bytes = super::harness::request("GET", "/healthz", &target.host(listener), &[], b"");
        let send = SendOptions {
            source: from,
            ..SendOptions::default()
        };
        let outcome = target.exchange_with(listener, bytes, &send).await;
        let took = started.elapsed();
        match outcome {
            Outcome::Answer(a) if a.status == 200 && took <= SERVED_WITHIN => {}
            other => return Err(format!("/healthz on {listener:?} after {took:?}: {other:?}")),
        }
    }
    Ok(())
}

/// directory, newNonce, newAccount, newOrder, http-01, finalize and the certificate, each
/// part timed.
async fn acme_flow(c: &Crowd) -> Result<(), String> {
    let started = Instant::now();
    let target = &c.target;
    let directory = target
        .answer(Listener::Https, "GET", &format!("{ACME_PATH}/directory"), &[], b"")
        .await;
    if directory.status != 200 {
        return Err(format!("directory: {}", directory.text()));
    }
    let acme = Acme::of(target);
    let account = acme.account(target).await;
    let order = acme.order(target, &account, &["127.0.0.1"]).await;
    let ordered = started.elapsed();
    let authz = acme.http01(target, &account, &order, &c.http01, true).await;
    if authz["status"] != "valid" {
        return Err(format!("http-01: {authz}"));
    }
    let ready = acme
        .poll(target, &account, &order.url, |v| v["status"] != "pending")
        .await;
    let order = super::acme_client::Order { body: ready, ..order };
    let issued = acme.finalize(target, &account, order, &["127.0.0.1"]).await;
    let total = started.elapsed();
    if issued.leaf.is_empty() || ordered > SERVED_WITHIN || total > SERVED_WITHIN {
        return Err(format!(
            "directory to newOrder took {ordered:?}, to the certificate {total:?} (limit {SERVED_WITHIN:?})"
        ));
    }
    Ok(())
}

fn crowd_cases() -> Vec<Case<Crowd>> {
    vec![
        case!("conn_2000_half_open_from_8_addresses_all_held", Expect::Checked, |c| {
            let spread = |i: usize| source(2 + (i % usize::from(SOURCES)) as u8);
            let streams = match open_half(&c.target, HELD, spread).await {
                Ok(streams) => streams,
                Err(why) => return Outcome::Checked(Err(why)),
            };
            tokio::time::sleep(Duration::from_millis(500)).await;
            let open = still_open(&streams);
            c.held.lock().expect("held").extend(streams);
            Outcome::Checked(if open == HELD {
                Ok(())
            } else {
                Err(format!(
                    "{open} of {HELD} half-open connections held (all are under the per-address cap)"
                ))
            })
        }),
        case!("conn_healthz_within_2s_while_2000_half_open", Expect::Checked, |c| {
            Outcome::Checked(healthz_within(&c.target, None).await)
        }),
        case!(
            "conn_acme_issuance_within_2s_while_2000_half_open",
            Expect::Served,
            |c| { Outcome::Checked(acme_flow(&c).await) }
        ),
        case!("conn_2000_half_open_released", Expect::Checked, |c| {
            let held = std::mem::take(&mut *c.held.lock().expect("held"));
            let open = still_open(&held);
            drop(held);
            Outcome::Checked(if open == HELD {
                healthz_within(&c.target, None).await
            } else {
                Err(format!("only {open} of {HELD} were still open when released"))
            })
        }),
        case!("conn_2000_from_one_address_capped", Expect::Checked, |c| {
            let streams = match open_half(&c.target, HELD, |_| ONE_SOURCE).await {
                Ok(streams) => streams,
                Err(why) => return Outcome::Checked(Err(why)),
            };
            tokio::time::sleep(Duration::from_millis(1000)).await;
            let open = still_open(&streams);
            let served = healthz_within(&c.target, None).await;
            drop(streams);
            Outcome::Checked(if open > PER_ADDRESS_CAP {
                Err(format!(
                    "{open} connections from one address held (cap {PER_ADDRESS_CAP})"
                ))
            } else {
                served
            })
        }),
        case!("conn_capped_address_served_after_release", Expect::Checked, |c| {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Outcome::Checked(healthz_within(&c.target, Some(ONE_SOURCE)).await)
        }),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn half_open_connections_do_not_starve_the_daemon() {
    let http01 = Http01::start().await;
    let target = Target::start(&defaults_with_http01(http01.port));
    let crowd = Arc::new(Crowd {
        target,
        http01,
        held: Mutex::new(Vec::new()),
    });
    run_cases(Arc::clone(&crowd), crowd_cases()).await;
    finish(crowd);
}

// ---------------------------------------------------------------------------------------------
// Timeouts.

const HEADER: Duration = Duration::from_secs(2);
const BODY: Duration = Duration::from_secs(2);
const IDLE: Duration = Duration::from_secs(3);
const WRITE: Duration = Duration::from_secs(2);
const HANDSHAKE: Duration = Duration::from_secs(2);
const MARGIN: Duration = Duration::from_secs(1);

/// `[listeners]` with small timeouts (the rest of the configuration is the embedded one).
fn timeouts() -> String {
    format!(
        "header_read_timeout_seconds = {}\nbody_read_timeout_seconds = {}\nidle_timeout_seconds = {}\n\
         write_timeout_seconds = {}\ntls_handshake_timeout_seconds = {}\n",
        HEADER.as_secs(),
        BODY.as_secs(),
        IDLE.as_secs(),
        WRITE.as_secs(),
        HANDSHAKE.as_secs()
    )
}

/// The daemon with small timeouts.
pub struct Slow {
    target: Target,
}

impl Area for Slow {
    fn target(&self) -> &Target {
        &self.target
    }

    fn target_mut(&mut self) -> &mut Target {
        &mut self.target
    }
}

/// Reads until the server closes; `Err` when it is still open after `limit` (from `since`).
async fn closed_within<R: AsyncRead + Unpin>(mut reader: R, since: Instant, limit: Duration) -> Result<(), String> {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let left = limit.saturating_sub(since.elapsed());
        match tokio::time::timeout(left, reader.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(()),
            Ok(Ok(_)) => continue,
            Err(_) => return Err(format!("still open after {:?} (limit {limit:?})", since.elapsed())),
        }
    }
}

/// Writes `bytes` one at a time every 500 ms until the write fails or `stop` is dropped.
async fn trickle<W: tokio::io::AsyncWrite + Unpin>(mut writer: W, bytes: Vec<u8>) -> W {
    for byte in bytes {
        if writer.write_all(&[byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    writer
}

/// A client that sends `first` at once, then trickles `rest`, and must be closed within
/// `limit` of connecting.
async fn trickling(target: &Target, listener: Listener, first: &[u8], rest: Vec<u8>, limit: Duration) -> Outcome {
    let since = Instant::now();
    let tcp = match connect(target.addr(listener), None).await {
        Ok(tcp) => tcp,
        Err(e) => return Outcome::Checked(Err(e.to_string())),
    };
    let checked = match listener {
        Listener::Http => trickle_over(tcp, first, rest, since, limit).await,
        Listener::Https => {
            let name = rustls_pki_types::ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
            match target.tls.connect(name, tcp).await {
                Ok(tls) => trickle_over(tls, first, rest, Instant::now(), limit).await,
                Err(e) => Err(format!("TLS handshake: {e}")),
            }
        }
    };
    Outcome::Checked(checked)
}

async fn trickle_over<S>(stream: S, first: &[u8], rest: Vec<u8>, since: Instant, limit: Duration) -> Result<(), String>
where
    S: AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (reader, mut writer) = tokio::io::split(stream);
    writer.write_all(first).await.map_err(|e| e.to_string())?;
    let writing = tokio::spawn(trickle(writer, rest));
    let closed = closed_within(reader, since, limit).await;
    writing.abort();
    closed
}

/// The bytes of a ClientHello for the daemon's name.
fn client_hello(target: &Target) -> Vec<u8> {
    let config = super::harness::client_config(&target.root, None);
    let name = rustls_pki_types::ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
    let mut connection = rustls::ClientConnection::new(config, name).expect("a TLS client");
    let mut hello = Vec::new();
    connection.write_tls(&mut hello).expect("a ClientHello");
    hello
}

/// The state of the daemon's side of a connection, from /proc/net/tcp (`01` established).
fn server_side_state(server: SocketAddr, client: SocketAddr) -> Option<u8> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let parse = |field: &str| -> Option<SocketAddr> {
        let (ip, port) = field.split_once(':')?;
        let ip = Ipv4Addr::from(u32::from_str_radix(ip, 16).ok()?.to_ne_bytes());
        Some(SocketAddr::new(IpAddr::V4(ip), u16::from_str_radix(port, 16).ok()?))
    };
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, remote) = (parse(fields.get(1)?)?, parse(fields.get(2)?)?);
        (local == server && remote == client).then(|| u8::from_str_radix(fields.get(3)?, 16).ok())?
    })
}

/// A client that pipelines requests for `/metrics` and never reads: the daemon's writes
/// stall, and the write timeout must close its side.
async fn never_reads(target: &Target) -> Result<(), String> {
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket.set_recv_buffer_size(4096).map_err(|e| e.to_string())?;
    let stream = socket.connect(target.http).await.map_err(|e| e.to_string())?;
    let local = stream.local_addr().map_err(|e| e.to_string())?;
    let (_reader, mut writer) = stream.into_split();
    let request = format!("GET /metrics HTTP/1.1\r\nhost: {}\r\n\r\n", target.http).repeat(3000);
    let since = Instant::now();
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(request.as_bytes()).await;
        writer
    });
    let limit = WRITE + MARGIN * 2;
    let outcome = loop {
        match server_side_state(target.http, local) {
            Some(0x01) if since.elapsed() < limit => tokio::time::sleep(Duration::from_millis(100)).await,
            Some(0x01) => {
                break Err(format!(
                    "the daemon still holds the connection after {:?}",
                    since.elapsed()
                ));
            }
            _ => break Ok(()),
        }
    };
    writing.abort();
    outcome
}

/// A connection that sends `bytes` and then nothing, closed within `limit`.
async fn silent_after(target: &Target, listener: Listener, bytes: &[u8], limit: Duration) -> Outcome {
    let since = Instant::now();
    let checked = async {
        let mut tcp = connect(target.addr(listener), None).await.map_err(|e| e.to_string())?;
        tcp.write_all(bytes).await.map_err(|e| e.to_string())?;
        closed_within(tcp, since, limit).await
    };
    Outcome::Checked(checked.await)
}

/// A keep-alive request answered, then silence: closed within `limit` of the answer.
async fn idle_after_answer(target: &Target) -> Result<(), String> {
    let mut tcp = connect(target.http, None).await.map_err(|e| e.to_string())?;
    let request = format!("GET /healthz HTTP/1.1\r\nhost: {}\r\n\r\n", target.http);
    tcp.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    while super::harness::parse_answer(&received).is_none() {
        let n = tcp.read(&mut buffer).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before answering".into());
        }
        received.extend_from_slice(&buffer[..n]);
    }
    closed_within(tcp, Instant::now(), HEADER.max(IDLE) + MARGIN).await
}

/// A POST whose body trickles in: 408 and closed, or closed, within the body timeout.
async fn slow_body(target: &Target) -> Outcome {
    let head = format!(
        "POST {ACME_PATH}/new-account HTTP/1.1\r\nhost: {}\r\ncontent-type: application/jose+json\r\n\
         content-length: 1000\r\n\r\n",
        target.https
    );
    let body = vec![b' '; 1000];
    trickling(target, Listener::Https, head.as_bytes(), body, BODY + MARGIN).await
}

fn timeout_cases() -> Vec<Case<Slow>> {
    vec![
        case!("conn_silent_tcp_on_http_closed", Expect::Checked, |c| {
            silent_after(&c.target, Listener::Http, b"", HEADER.max(IDLE) + MARGIN).await
        }),
        case!("conn_silent_tcp_on_https_closed", Expect::Checked, |c| {
            silent_after(&c.target, Listener::Https, b"", HANDSHAKE.max(IDLE) + MARGIN).await
        }),
        case!("conn_partial_request_line_closed", Expect::Checked, |c| {
            silent_after(&c.target, Listener::Http, b"GET /heal", HEADER + MARGIN).await
        }),
        case!("conn_stalled_client_hello_closed", Expect::Checked, |c| {
            let hello = client_hello(&c.target);
            silent_after(
                &c.target,
                Listener::Https,
                &hello[..hello.len() / 2],
                HANDSHAKE.max(IDLE) + MARGIN,
            )
            .await
        }),
        case!("conn_trickled_client_hello_closed", Expect::Checked, |c| {
            let hello = client_hello(&c.target);
            let since = Instant::now();
            let checked = async {
                let tcp = connect(c.target.https, None).await.map_err(|e| e.to_string())?;
                trickle_over(tcp, &hello[..5], hello[5..].to_vec(), since, HANDSHAKE + MARGIN).await
            };
            Outcome::Checked(checked.await)
        }),
        case!("conn_slowloris_headers_on_http_closed", Expect::Checked, |c| {
            let first = format!("GET /healthz HTTP/1.1\r\nhost: {}\r\nx-a: ", c.target.http);
            trickling(
                &c.target,
                Listener::Http,
                first.as_bytes(),
                vec![b'a'; 100],
                HEADER + MARGIN,
            )
            .await
        }),
        case!("conn_slowloris_headers_on_https_closed", Expect::Checked, |c| {
            let first = format!("GET /healthz HTTP/1.1\r\nhost: {}\r\nx-a: ", c.target.https);
            trickling(
                &c.target,
                Listener::Https,
                first.as_bytes(),
                vec![b'a'; 100],
                HEADER + MARGIN,
            )
            .await
        }),
        case!("conn_slow_body_closed", Expect::Checked, |c| slow_body(&c.target).await),
        case!("conn_keep_alive_idle_closed", Expect::Checked, |c| Outcome::Checked(
            idle_after_answer(&c.target).await
        )),
        case!("conn_client_never_reads_closed", Expect::Checked, |c| Outcome::Checked(
            never_reads(&c.target).await
        )),
        case!("conn_h2_idle_closed", Expect::Checked, |c| {
            Outcome::Checked(
                async {
                    let mut h2 = H2::open(&c.target).await.map_err(|e| e.to_string())?;
                    let since = Instant::now();
                    let (_, ended) = h2.read(IDLE + MARGIN * 2, IDLE + MARGIN).await;
                    if ended {
                        Ok(())
                    } else {
                        Err(format!("an idle HTTP/2 connection is open after {:?}", since.elapsed()))
                    }
                }
                .await,
            )
        }),
    ]
}

fn h2_cases() -> Vec<Case<Slow>> {
    vec![
        case!("conn_h2_streams_beyond_the_limit_refused", Expect::Checked, |c| {
            Outcome::Checked(h2_streams(&c.target).await)
        }),
        case!("conn_h2_header_list_too_big_refused", Expect::Checked, |c| {
            Outcome::Checked(h2_big_headers(&c.target).await)
        }),
        case!("conn_h2_rapid_reset_goaway", Expect::Checked, |c| {
            Outcome::Checked(
                h2_flood(&c.target, |id, authority| {
                    let mut bytes = frame(HEADERS, END_HEADERS | END_STREAM, id, &h2::get(authority, "/healthz"));
                    bytes.extend(frame(h2::RST_STREAM, 0, id, &h2::CANCEL.to_be_bytes()));
                    bytes
                })
                .await,
            )
        }),
        case!("conn_h2_continuation_flood_goaway", Expect::Checked, |c| {
            Outcome::Checked(
                h2_flood(&c.target, |id, authority| {
                    if id == 1 {
                        frame(HEADERS, END_STREAM, 1, &h2::get(authority, "/healthz"))
                    } else {
                        frame(h2::CONTINUATION, 0, 1, &[])
                    }
                })
                .await,
            )
        }),
    ]
}

/// 200 streams opened at once on one connection: the daemon advertises its limit and
/// refuses the streams beyond it.
async fn h2_streams(target: &Target) -> Result<(), String> {
    let mut h2 = H2::open(target).await.map_err(|e| e.to_string())?;
    let (frames, _) = h2.read(Duration::from_millis(300), Duration::from_secs(2)).await;
    let limit = frames
        .iter()
        .find_map(|f| f.setting(h2::MAX_CONCURRENT_STREAMS))
        .ok_or("no SETTINGS_MAX_CONCURRENT_STREAMS from the server")?;
    let mut bytes = Vec::new();
    for i in 0..200u32 {
        bytes.extend(frame(
            HEADERS,
            END_HEADERS,
            2 * i + 1,
            &h2::get(&h2.authority, "/healthz"),
        ));
    }
    h2.send(&bytes).await.map_err(|e| e.to_string())?;
    let (frames, ended) = h2.read(Duration::from_millis(500), Duration::from_secs(5)).await;
    let answered: std::collections::BTreeSet<u32> =
        frames.iter().filter(|f| f.kind == HEADERS).map(|f| f.stream).collect();
    let refused = frames
        .iter()
        .filter(|f| f.kind == h2::RST_STREAM && f.error_code() == Some(h2::REFUSED_STREAM))
        .count();
    let goaway = frames.iter().any(|f| f.kind == h2::GOAWAY);
    if answered.len() > limit as usize || (refused == 0 && !goaway && !ended) {
        return Err(format!(
            "limit {limit}: {} streams answered, {refused} refused, GOAWAY {goaway}",
            answered.len()
        ));
    }
    Ok(())
}

/// A 100 KB header (HEADERS and CONTINUATION frames) where the limit is 64 KiB: 431, a
/// reset stream or GOAWAY, never a 200.
async fn h2_big_headers(target: &Target) -> Result<(), String> {
    let mut h2 = H2::open(target).await.map_err(|e| e.to_string())?;
    let block = [
        h2::get(&h2.authority, "/healthz"),
        h2::literal("x-big", &"a".repeat(100_000)),
    ]
    .concat();
    let chunks: Vec<&[u8]> = block.chunks(16_384).collect();
    let mut bytes = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let last = if i + 1 == chunks.len() { END_HEADERS } else { 0 };
        bytes.extend(match i {
            0 => frame(HEADERS, END_STREAM | last, 1, chunk),
            _ => frame(h2::CONTINUATION, last, 1, chunk),
        });
    }
    let _ = h2.send(&bytes).await;
    let (frames, ended) = h2.read(Duration::from_millis(500), Duration::from_secs(5)).await;
    let ok_answer = frames
        .iter()
        .any(|f| f.kind == HEADERS && f.stream == 1 && f.payload.first() == Some(&0x88));
    let refused = frames.iter().any(|f| {
        (f.kind == h2::RST_STREAM && f.stream == 1) || f.kind == h2::GOAWAY || (f.kind == HEADERS && f.stream == 1)
    });
    if ok_answer || !(refused || ended) {
        return Err(format!("a 100 KB header list was not refused: {frames:?}"));
    }
    Ok(())
}

/// 2,000 groups of frames from `group(id, authority)` in one write: the daemon must end
/// the connection with GOAWAY ENHANCE_YOUR_CALM (and keep serving others: the runner checks).
async fn h2_flood(target: &Target, group: impl Fn(u32, &str) -> Vec<u8>) -> Result<(), String> {
    let mut h2 = H2::open(target).await.map_err(|e| e.to_string())?;
    let _ = h2.read(Duration::from_millis(300), Duration::from_secs(2)).await;
    let mut bytes = Vec::new();
    for i in 0..2_000u32 {
        bytes.extend(group(2 * i + 1, &h2.authority));
    }
    let _ = h2.send(&bytes).await;
    let (frames, ended) = h2.read(Duration::from_secs(2), Duration::from_secs(10)).await;
    let goaway = frames.iter().find(|f| f.kind == h2::GOAWAY);
    match goaway {
        Some(frame) if frame.error_code() == Some(h2::ENHANCE_YOUR_CALM) => Ok(()),
        other => Err(format!(
            "no GOAWAY ENHANCE_YOUR_CALM after the flood ({} frames, GOAWAY {other:?}, ended {ended})",
            frames.len()
        )),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_and_idle_connections_are_closed_in_time() {
    let slow = Arc::new(Slow {
        target: Target::start(&timeouts()),
    });
    let mut cases = timeout_cases();
    cases.extend(h2_cases());
    run_concurrently(Arc::clone(&slow), cases).await;
    finish(slow);
}

/// Every connection case.
pub fn case_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = crowd_cases().iter().map(|c| c.name).collect();
    names.extend(timeout_cases().iter().map(|c| c.name));
    names.extend(h2_cases().iter().map(|c| c.name));
    names
}
