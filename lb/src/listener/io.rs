//! The one I/O type of client connections: plain TCP or TLS (kernel-TLS streams become a further
//! `Transport` variant), so the protocols above never change.
//! Bytes in and out are counted here, once for every protocol.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::metrics::ListenerMetrics;

enum Transport {
    Plain(TcpStream),
    /// TLS in userspace (rustls).
    Tls(Box<tokio_rustls::server::TlsStream<Rewound>>),
    /// TLS in userspace after a handshake that could have moved into the kernel but did not
    /// (a suite the kernel lacks): the handshake ran over a `CorkStream`.
    TlsCork(Box<tokio_rustls::server::TlsStream<ktls::CorkStream<Rewound>>>),
    /// TLS with the record layer in the kernel: reads and writes are plain socket calls.
    Ktls(Box<ktls::KtlsStream<Rewound>>),
}

/// A TCP stream whose first bytes were read ahead (after a PROXY protocol header) and are
/// served again before the socket's: the TLS handshake reads the ClientHello through it.
pub struct Rewound {
    prefix: Bytes,
    tcp: TcpStream,
}

impl Rewound {
    pub fn new(prefix: Bytes, tcp: TcpStream) -> Rewound {
        Rewound { prefix, tcp }
    }
}

impl std::os::fd::AsRawFd for Rewound {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.tcp.as_raw_fd()
    }
}

impl ktls::AsyncReadReady for Rewound {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp.poll_read_ready(cx)
    }
}

impl AsyncRead for Rewound {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewound {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// The largest read a shaped connection makes at once.
const SHAPED_READ: usize = 16 * 1024;

impl Transport {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Transport::TlsCork(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Transport::Ktls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

pub struct ListenerIo {
    transport: Transport,
    /// Bytes read ahead of the protocol (after a PROXY protocol header), served first.
    prefix: Bytes,
    metrics: Arc<ListenerMetrics>,
    /// Bandwidth shaping, when the listener asks for it.
    shaper: Option<Box<super::shape::Shaper>>,
}

impl ListenerIo {
    pub fn plain(stream: TcpStream, prefix: Bytes, metrics: Arc<ListenerMetrics>) -> ListenerIo {
        ListenerIo {
            transport: Transport::Plain(stream),
            prefix,
            metrics,
            shaper: None,
        }
    }

    /// A TLS connection after its handshake; bytes are counted as plaintext.
    pub fn tls(
        stream: tokio_rustls::server::TlsStream<Rewound>,
        metrics: Arc<ListenerMetrics>,
    ) -> ListenerIo {
        ListenerIo {
            transport: Transport::Tls(Box::new(stream)),
            prefix: Bytes::new(),
            metrics,
            shaper: None,
        }
    }

    /// A TLS connection whose handshake ran over a `CorkStream` and stayed in userspace.
    pub fn tls_cork(
        stream: tokio_rustls::server::TlsStream<ktls::CorkStream<Rewound>>,
        metrics: Arc<ListenerMetrics>,
    ) -> ListenerIo {
        ListenerIo {
            transport: Transport::TlsCork(Box::new(stream)),
            prefix: Bytes::new(),
            metrics,
            shaper: None,
        }
    }

    /// A TLS connection whose record layer the kernel runs.
    pub fn ktls(stream: ktls::KtlsStream<Rewound>, metrics: Arc<ListenerMetrics>) -> ListenerIo {
        ListenerIo {
            transport: Transport::Ktls(Box::new(stream)),
            prefix: Bytes::new(),
            metrics,
            shaper: None,
        }
    }

    /// Shapes the connection's bandwidth as the listener says.
    pub fn with_shaping(mut self, shaping: Option<&super::shape::Shaping>) -> ListenerIo {
        self.shaper = shaping.map(|s| Box::new(super::shape::Shaper::new(s)));
        self
    }

    /// Puts bytes read ahead back in front of what is still to be read (the HTTP/1.1 server
    /// hands a connection on to HTTP/2 or to an upgrade tunnel this way).
    pub fn unread(&mut self, bytes: Bytes) {
        if self.prefix.is_empty() {
            self.prefix = bytes;
        } else if !bytes.is_empty() {
            let mut joined = bytes::BytesMut::with_capacity(bytes.len() + self.prefix.len());
            joined.extend_from_slice(&bytes);
            joined.extend_from_slice(&self.prefix);
            self.prefix = joined.freeze();
        }
    }

    pub fn metrics(&self) -> &Arc<ListenerMetrics> {
        &self.metrics
    }
}

impl AsyncRead for ListenerIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let this = &mut *self;
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let this = &mut *self;
        if let Some(shaper) = &mut this.shaper {
            // Read at most what the shaper grants, through a small buffer of our own.
            let want = buf.remaining().min(SHAPED_READ);
            let granted = match shaper.grant(super::shape::Dir::In, want, cx) {
                Poll::Ready(n) => n,
                Poll::Pending => return Poll::Pending,
            };
            let mut tmp = [0u8; SHAPED_READ];
            let mut small = ReadBuf::new(&mut tmp[..granted]);
            let r = this.transport.poll_read(cx, &mut small);
            let n = small.filled().len();
            shaper.refund(super::shape::Dir::In, granted - n);
            buf.put_slice(small.filled());
            if n > 0 {
                this.metrics.bytes_in.inc_by(n as u64);
            }
            return r;
        }
        let r = this.transport.poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            this.metrics.bytes_in.inc_by(n as u64);
        }
        r
    }
}

impl AsyncWrite for ListenerIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let buf = match &mut this.shaper {
            Some(shaper) => match shaper.grant(super::shape::Dir::Out, buf.len(), cx) {
                Poll::Ready(n) => &buf[..n],
                Poll::Pending => return Poll::Pending,
            },
            None => buf,
        };
        let r = match &mut this.transport {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Transport::TlsCork(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Transport::Ktls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        };
        if let Some(shaper) = &mut this.shaper {
            let moved = match &r {
                Poll::Ready(Ok(n)) => *n,
                _ => 0,
            };
            shaper.refund(super::shape::Dir::Out, buf.len() - moved);
        }
        if let Poll::Ready(Ok(n)) = &r {
            this.metrics.bytes_out.inc_by(*n as u64);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.shaper.is_some() {
            // Shaped: one slice at a time, through the shaper.
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            return self.poll_write(cx, first);
        }
        let this = &mut *self;
        let r = match &mut this.transport {
            Transport::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Transport::TlsCork(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Transport::Ktls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        };
        if let Poll::Ready(Ok(n)) = &r {
            this.metrics.bytes_out.inc_by(*n as u64);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        if self.shaper.is_some() {
            return false;
        }
        match &self.transport {
            Transport::Plain(s) => s.is_write_vectored(),
            Transport::Tls(s) => s.is_write_vectored(),
            Transport::TlsCork(s) => s.is_write_vectored(),
            Transport::Ktls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.transport {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Transport::TlsCork(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Transport::Ktls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.transport {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Transport::TlsCork(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Transport::Ktls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
