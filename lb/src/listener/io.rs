//! The one I/O type of client connections. Plain TCP today; TLS and kernel-TLS streams become
//! further `Transport` variants, so the accept loop and the protocols above never change.
//! Bytes in and out are counted here, once for every protocol.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::http::framing::FramingWatch;
use crate::metrics::ListenerMetrics;

enum Transport {
    Plain(TcpStream),
}

pub struct ListenerIo {
    transport: Transport,
    /// Bytes read ahead of the protocol (after a PROXY protocol header), served first.
    prefix: Bytes,
    metrics: Arc<ListenerMetrics>,
    /// HTTP/1.1 framing checks on the bytes read (HTTP listeners only).
    watch: Option<FramingWatch>,
}

impl ListenerIo {
    pub fn plain(stream: TcpStream, prefix: Bytes, metrics: Arc<ListenerMetrics>) -> ListenerIo {
        ListenerIo {
            transport: Transport::Plain(stream),
            prefix,
            metrics,
            watch: None,
        }
    }

    /// Watches the bytes read for framing that hyper accepts and Meridian refuses.
    pub fn with_framing_watch(mut self, watch: FramingWatch) -> ListenerIo {
        self.watch = Some(watch);
        self
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
            if let Some(w) = &mut this.watch {
                w.observe(&this.prefix[..n]);
            }
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let this = &mut *self;
        let r = match &mut this.transport {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
        };
        let n = buf.filled().len() - before;
        if n > 0 {
            this.metrics.bytes_in.inc_by(n as u64);
            if let Some(w) = &mut this.watch {
                w.observe(&buf.filled()[before..]);
            }
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
        let r = match &mut this.transport {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
        };
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
        let this = &mut *self;
        let r = match &mut this.transport {
            Transport::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        };
        if let Poll::Ready(Ok(n)) = &r {
            this.metrics.bytes_out.inc_by(*n as u64);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        match &self.transport {
            Transport::Plain(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.transport {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.transport {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
