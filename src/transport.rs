//! The connections under every gRPC channel, served and dialled (TCP and the
//! unix socket): HTTP/2 frames written during one scheduling pass go out in
//! one syscall.
//!
//! A unary gRPC response is three HTTP/2 frames (headers, data, trailers),
//! and hyper often flushes between them: traced on a loaded leader, a
//! response cost 2.5 `writev` calls and a request 2.1, each of which on
//! loopback also runs the receiver's TCP stack and wakes its reader. A
//! [`Corked`] stream buffers what it is given and, the first time it is
//! asked to flush, yields once to the scheduler (like `TCP_CORK`, released
//! by the next flush instead of a timer): the tasks that are ready to run
//! meanwhile (other responses of the same batch, the rest of this response)
//! add their frames, and the second flush sends them all. The delay is one
//! pass of the runtime's queue, never a timer.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::{Stream, TryStreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint, Uri};

/// Buffered bytes above which a write goes through at once instead of
/// waiting for a flush.
const CORK_LIMIT: usize = 256 * 1024;
/// Buffer capacity kept between flushes; a bulk transfer (a snapshot)
/// grows it up to about `CORK_LIMIT`, and that is given back afterwards, so
/// idle connections hold little.
const KEPT_CAPACITY: usize = 32 * 1024;

/// A stream whose writes wait for a flush, and whose first flush after a
/// write yields once so that frames written by other ready tasks share the
/// syscall (see the module doc). Reads pass straight through.
pub struct Corked<S> {
    inner: S,
    pending: Vec<u8>,
    /// Written out from `pending` already.
    sent: usize,
    /// Whether the flush in progress has already yielded once.
    yielded: bool,
}

impl<S> Corked<S> {
    pub fn new(inner: S) -> Self {
        Corked {
            inner,
            pending: Vec::new(),
            sent: 0,
            yielded: false,
        }
    }
}

impl<S: AsyncWrite + Unpin> Corked<S> {
    /// Writes out everything buffered.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.pending.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.pending.clear();
        self.pending.shrink_to(KEPT_CAPACITY);
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Makes room before buffering more: drains first once the buffer is
    /// over its limit.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.pending.len() >= CORK_LIMIT {
            ready!(self.poll_drain(cx))?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Corked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Corked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_room(cx))?;
        let mut written = 0;
        for buf in bufs {
            this.pending.extend_from_slice(buf);
            written += buf.len();
        }
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending.len() > this.sent {
            if !this.yielded {
                // Woken while running, a Tokio task goes to the back of its
                // worker's queue: the tasks ready now run before this flush.
                this.yielded = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            ready!(this.poll_drain(cx))?;
        }
        this.yielded = false;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<S: Connected> Connected for Corked<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> S::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Accepted TCP connections, with Nagle off, corked.
pub fn tcp_incoming(listener: TcpListener) -> impl Stream<Item = io::Result<Corked<TcpStream>>> {
    TcpListenerStream::new(listener).map_ok(|stream| {
        // Failing only on a socket that is already gone, which the first
        // read reports.
        let _ = stream.set_nodelay(true);
        Corked::new(stream)
    })
}

/// Accepted unix-socket connections, corked.
pub fn unix_incoming(listener: UnixListener) -> impl Stream<Item = io::Result<Corked<UnixStream>>> {
    UnixListenerStream::new(listener).map_ok(Corked::new)
}

/// Opens a channel to `address` (`host:port`, `http://host:port` or
/// `unix:/path`), at once, over a corked connection. The endpoint's
/// connect timeout applies.
pub async fn connect_channel(
    endpoint: Endpoint,
    address: &str,
) -> Result<Channel, tonic::transport::Error> {
    if address.starts_with("unix:") {
        // tonic's own unix-socket connector; such clients are ctr-style
        // tools, not the hot path.
        endpoint.connect().await
    } else {
        endpoint
            .connect_with_connector(tower::service_fn(connect))
            .await
    }
}

/// A channel to a TCP peer over corked connections, connecting on first use.
pub fn lazy_channel(endpoint: Endpoint) -> Channel {
    endpoint.connect_with_connector_lazy(tower::service_fn(connect))
}

/// Connects to `uri`'s host and port, with Nagle off, corked: the
/// connector of TCP channels.
async fn connect(uri: Uri) -> io::Result<TokioIo<Corked<TcpStream>>> {
    let host = uri
        .host()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("no host in {uri}")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((host, port)).await?;
    stream.set_nodelay(true)?;
    Ok(TokioIo::new(Corked::new(stream)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::task::ArcWake;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;

    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl ArcWake for CountingWaker {
        fn wake_by_ref(arc_self: &Arc<Self>) {
            arc_self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn pair() -> (Corked<DuplexStream>, DuplexStream) {
        let (near, far) = tokio::io::duplex(4 * CORK_LIMIT);
        (Corked::new(near), far)
    }

    /// What the far end can read without waiting.
    async fn readable_now(far: &mut DuplexStream) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        while let Ok(Ok(n)) =
            tokio::time::timeout(std::time::Duration::from_millis(20), far.read(&mut buf)).await
        {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    #[tokio::test]
    async fn a_flush_yields_once_then_sends_everything_written_before_it() {
        let (mut near, mut far) = pair();
        let wakes = Arc::new(CountingWaker::default());
        let waker = futures::task::waker(wakes.clone());
        let mut cx = Context::from_waker(&waker);

        near.write_all(b"headers|").await.unwrap();
        assert!(
            readable_now(&mut far).await.is_empty(),
            "sent before a flush"
        );
        assert!(Pin::new(&mut near).poll_flush(&mut cx).is_pending());
        assert_eq!(
            wakes.0.load(Ordering::SeqCst),
            1,
            "the yield must wake the task"
        );
        assert!(
            readable_now(&mut far).await.is_empty(),
            "sent by the yielding flush"
        );

        // Frames added while the task waited join the same write.
        let slices = [IoSlice::new(b"data|"), IoSlice::new(b"trailers")];
        let n = match Pin::new(&mut near).poll_write_vectored(&mut cx, &slices) {
            Poll::Ready(result) => result.unwrap(),
            Poll::Pending => panic!("a buffered write must not wait"),
        };
        assert_eq!(n, 13);
        assert!(Pin::new(&mut near).poll_flush(&mut cx).is_ready());
        assert_eq!(readable_now(&mut far).await, b"headers|data|trailers");

        // An empty flush neither yields nor writes.
        assert!(Pin::new(&mut near).poll_flush(&mut cx).is_ready());
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);

        // The next write yields again before it goes out.
        near.write_all(b"next").await.unwrap();
        assert!(Pin::new(&mut near).poll_flush(&mut cx).is_pending());
        near.flush().await.unwrap();
        assert_eq!(readable_now(&mut far).await, b"next");
    }

    #[tokio::test]
    async fn a_full_buffer_goes_out_without_waiting_for_a_flush() {
        let (mut near, mut far) = pair();
        let bulk: Vec<u8> = (0..CORK_LIMIT).map(|i| (i % 251) as u8).collect();
        near.write_all(&bulk).await.unwrap();
        assert!(readable_now(&mut far).await.is_empty());
        near.write_all(b"more").await.unwrap();
        assert_eq!(readable_now(&mut far).await, bulk);
        assert!(near.pending.capacity() <= KEPT_CAPACITY.max(4));
        near.flush().await.unwrap();
        assert_eq!(readable_now(&mut far).await, b"more");
    }

    #[tokio::test]
    async fn shutdown_sends_what_is_buffered_then_closes() {
        let (mut near, mut far) = pair();
        near.write_all(b"last words").await.unwrap();
        near.shutdown().await.unwrap();
        let mut all = Vec::new();
        far.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"last words");
    }
}
