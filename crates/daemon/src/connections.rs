//! What a client connection may hold: admission against a global and a per-address cap, and
//! an I/O wrapper that closes a connection whose reads or writes make no progress.
//!
//! Hyper's own header-read timeout bounds how long one request's head may take (and, since
//! hyper 1.6, how long a keep-alive connection may sit idle); the body deadline is the
//! router's. What is here covers the rest: a peer that stops reading our answer, an HTTP/2
//! connection that goes quiet, and more sockets than the process can serve. It does not
//! look inside requests, and it does not rate-limit requests (the protocols do that).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

pub use certgate_metrics::ConnectionRefusal as Refusal;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// File descriptors kept back from the connection cap for the store, the admin socket,
/// outbound validation and webhook connections, and log files.
const RESERVED_DESCRIPTORS: u64 = 256;

/// How many connections are open, in all and per client address.
#[derive(Debug)]
pub struct ConnectionTracker {
    max_total: usize,
    max_per_address: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

impl ConnectionTracker {
    /// A tracker admitting at most `max_total` connections, `max_per_address` from any one
    /// client address (0: no per-address cap).
    pub fn new(max_total: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_address,
            open: Mutex::new(Open::default()),
        })
    }

    /// Admits a connection from `address`, or says why not. The permit gives the place back
    /// when dropped.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<ConnectionPermit, Refusal> {
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if open.total >= self.max_total {
            return Err(Refusal::TooManyConnections);
        }
        let from_address = open.per_address.entry(address).or_insert(0);
        if self.max_per_address > 0 && *from_address >= self.max_per_address {
            return Err(Refusal::TooManyFromAddress);
        }
        *from_address += 1;
        open.total += 1;
        Ok(ConnectionPermit {
            tracker: Arc::clone(self),
            address,
        })
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).total
    }
}

/// A place held by one open connection.
#[derive(Debug)]
pub struct ConnectionPermit {
    tracker: Arc<ConnectionTracker>,
    address: IpAddr,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut open = self
            .tracker
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.per_address.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.per_address.remove(&self.address);
            }
        }
    }
}

/// Raises the soft open-file limit to the hard one (best effort: a sandbox may forbid it) and
/// returns how many connections the process can hold beside its own files: the cap actually
/// applied is the smaller of this and the configured one.
pub fn connection_capacity() -> usize {
    let raised = rlimit::increase_nofile_limit(u64::MAX);
    let limit = match raised {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "could not read or raise the open-file limit");
            return usize::MAX;
        }
    };
    usize::try_from(limit.saturating_sub(RESERVED_DESCRIPTORS).max(16)).unwrap_or(usize::MAX)
}

/// An I/O stream that fails a read with no progress for `read_idle`, and a write with no
/// progress for `write_idle`: an idle keep-alive or HTTP/2 connection, a half-open socket and
/// a peer that stops reading our answer are all closed by it.
pub struct Deadlined<S> {
    inner: S,
    read_idle: Duration,
    write_idle: Duration,
    read_deadline: Option<Pin<Box<Sleep>>>,
    write_deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> Deadlined<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, read_idle: Duration, write_idle: Duration) -> Self {
        Self {
            inner,
            read_idle,
            write_idle,
            read_deadline: None,
            write_deadline: None,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// Polls `deadline` (arming it `idle` from now when it is not armed): an error once it has
/// passed, pending otherwise.
fn stalled(
    deadline: &mut Option<Pin<Box<Sleep>>>,
    idle: Duration,
    cx: &mut Context<'_>,
    what: &str,
) -> Poll<io::Error> {
    let sleep = deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + idle)));
    match sleep.as_mut().poll(cx) {
        Poll::Ready(()) => Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no {what} progress for {} s", idle.as_secs()),
        )),
        Poll::Pending => Poll::Pending,
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deadlined<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.read_deadline = None;
                Poll::Ready(result)
            }
            Poll::Pending => stalled(&mut this.read_deadline, this.read_idle, cx, "read").map(Err),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deadlined<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(result) => {
                this.write_deadline = None;
                Poll::Ready(result)
            }
            Poll::Pending => stalled(&mut this.write_deadline, this.write_idle, cx, "write").map(Err),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => {
                this.write_deadline = None;
                Poll::Ready(result)
            }
            Poll::Pending => stalled(&mut this.write_deadline, this.write_idle, cx, "write").map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(result) => {
                this.write_deadline = None;
                Poll::Ready(result)
            }
            Poll::Pending => stalled(&mut this.write_deadline, this.write_idle, cx, "write").map(Err),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Ready(result) => {
                this.write_deadline = None;
                Poll::Ready(result)
            }
            Poll::Pending => stalled(&mut this.write_deadline, this.write_idle, cx, "write").map(Err),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn address(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    #[test]
    fn admission_caps_each_address_and_the_total() {
        let tracker = ConnectionTracker::new(3, 2);
        let first = tracker.admit(address(1)).expect("first");
        let _second = tracker.admit(address(1)).expect("second from the same address");
        assert_eq!(tracker.admit(address(1)).unwrap_err(), Refusal::TooManyFromAddress);
        let _third = tracker.admit(address(2)).expect("another address");
        assert_eq!(tracker.admit(address(3)).unwrap_err(), Refusal::TooManyConnections);
        drop(first);
        assert_eq!(tracker.open_connections(), 2);
        tracker.admit(address(1)).expect("a place given back is free again");
    }

    #[test]
    fn zero_per_address_means_no_per_address_cap() {
        let tracker = ConnectionTracker::new(3, 0);
        let _held: Vec<_> = (0..3).map(|_| tracker.admit(address(1)).expect("admitted")).collect();
        assert_eq!(tracker.admit(address(1)).unwrap_err(), Refusal::TooManyConnections);
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_without_progress_times_out() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut stream = Deadlined::new(ours, Duration::from_secs(5), Duration::from_secs(5));
        theirs.write_all(b"x").await.expect("write");
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.expect("data that arrives is read");
        let error = stream.read(&mut byte).await.expect_err("silence ends in an error");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_never_reads_times_out() {
        let (ours, _theirs) = tokio::io::duplex(16);
        let mut stream = Deadlined::new(ours, Duration::from_secs(5), Duration::from_secs(5));
        let error = stream
            .write_all(&[0u8; 1024])
            .await
            .expect_err("a full pipe ends in an error");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }
}
