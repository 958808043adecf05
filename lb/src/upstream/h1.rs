//! HTTP/1.1 upstream connections, spoken by Meridian itself (`wire.rs`) and driven by the
//! request that uses them.
//!
//! The request's own task writes the head (with the start of the body in the same write),
//! reads the response head into the connection's buffer, and hands the connection to the
//! response body, which reads the rest, finishes sending a request body still under way, and
//! puts the connection back in the worker's idle list as soon as the body ends. No connection
//! task, no channel between tasks, no shared pool lock (each worker has its own `H1Pool`).
//! hyper's client connection, used before, passed every request and response through channels
//! between the request's task and the connection's: about 5 % of a proxied request's CPU
//! (perf/RESULTS.md). Upgrades (WebSocket) still go through hyper, on a connection of their
//! own that never returns to the pool.
//!
//! A connection that comes back from the idle list is polled once before use: one that the
//! member closed (or wrote to) while it sat idle is dropped there, not found out by a request.
//! One that fails before any answer, on a request that can be sent again, is retried once on a
//! new connection.

pub mod wire;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Request, Response};
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::TokioIo;
use prometheus::IntCounter;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::tls::{UpstreamIo, UpstreamTls};
use super::SendError;
use crate::body::{Body, BoxError};
use wire::{BodySize, Chunked, Decoded, Framing, Outgoing, WireError};

/// Bytes asked of the kernel per read at first: a connection's body reads double from here while
/// they fill the buffer, as hyper's adaptive reads do.
const READ_CHUNK: usize = 8 * 1024;

/// And at most. Reads of 64 KiB cost 1 MB answers 40 % more CPU than hyper's (measured).
const READ_MAX: usize = 512 * 1024;

/// One connection to a member.
struct Conn {
    io: UpstreamIo,
    /// Read from the member and not yet consumed.
    read: BytesMut,
    /// The request head being written, kept for the next request's head.
    head: Vec<u8>,
    /// Bytes a body's next read asks for: doubled while reads fill it, halved while they use
    /// less than a quarter, kept from one answer to the next.
    read_size: usize,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

pub struct H1Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    opened: IntCounter,
    tls: Option<Arc<UpstreamTls>>,
}

impl H1Pool {
    pub fn new(
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_idle: usize,
        opened: IntCounter,
        tls: Option<Arc<UpstreamTls>>,
    ) -> H1Pool {
        H1Pool {
            idle: Mutex::default(),
            connect_timeout,
            idle_timeout,
            max_idle,
            opened,
            tls,
        }
    }

    /// Sends `req` to `member` over an idle connection, or a new one. A request that a reused
    /// connection failed before any answer (the member closed it at that moment) goes once more
    /// over a new one when none of it left (its body untouched), or when it has no body and an
    /// idempotent method: a POST the member may have acted on is not sent twice.
    pub async fn send(
        self: &Arc<Self>,
        member: SocketAddr,
        req: Request<Body>,
        upgrade: bool,
    ) -> Result<Response<Body>, SendError> {
        if upgrade {
            return self.send_upgrade(member, req).await;
        }
        let (mut parts, mut body) = req.into_parts();
        let size = body_size(&body);
        if let Some(idle) = self.checkout(member) {
            match self
                .exchange(member, idle.conn, &mut parts, body, size)
                .await
            {
                Ok(resp) => return Ok(resp),
                Err(Failed::Unsent {
                    head_sent,
                    body: Some(b),
                }) if !head_sent || parts.method.is_idempotent() => body = b,
                Err(Failed::Unsent { .. }) => {
                    return Err(SendError::Other(
                        "the member closed a reused connection without answering".into(),
                    ))
                }
                Err(Failed::Sent(e)) => return Err(e),
            }
        }
        let conn = self.connect(member).await?;
        match self.exchange(member, conn, &mut parts, body, size).await {
            Ok(resp) => Ok(resp),
            Err(Failed::Unsent { .. }) => Err(SendError::Other(
                "the member closed the connection without answering".into(),
            )),
            Err(Failed::Sent(e)) => Err(e),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Vec<Idle>>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most recently used live idle connection to `member`.
    fn checkout(&self, member: SocketAddr) -> Option<Idle> {
        loop {
            let mut idle = self.idle().get_mut(&member)?.pop()?;
            if idle.since.elapsed() >= self.idle_timeout {
                continue;
            }
            // A close, an error or bytes nobody asked for all end an idle connection.
            let mut cx = Context::from_waker(Waker::noop());
            let conn = &mut idle.conn;
            match tokio_util::io::poll_read_buf(Pin::new(&mut conn.io), &mut cx, &mut conn.read) {
                Poll::Pending => return Some(idle),
                Poll::Ready(_) => continue,
            }
        }
    }

    fn put(&self, member: SocketAddr, conn: Conn) {
        let mut idle = self.idle();
        let list = idle.entry(member).or_default();
        // Oldest first out when full: they are the likeliest to be closed by the member.
        if list.len() >= self.max_idle {
            if self.max_idle == 0 {
                return;
            }
            list.remove(0);
        }
        list.push(Idle {
            conn,
            since: Instant::now(),
        });
    }

    async fn connect_io(&self, member: SocketAddr) -> Result<UpstreamIo, SendError> {
        let stream =
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(member)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%member, error = %e, "upstream connect failed");
                    return Err(SendError::Connect);
                }
                Err(_) => {
                    tracing::debug!(%member, "upstream connect timed out");
                    return Err(SendError::Connect);
                }
            };
        let _ = stream.set_nodelay(true);
        let io = match &self.tls {
            None => UpstreamIo::Plain(stream),
            Some(tls) => {
                match tokio::time::timeout(self.connect_timeout, tls.connect(member, stream)).await
                {
                    Ok(Ok(io)) => io,
                    Ok(Err(e)) => {
                        tracing::debug!(%member, error = %e, "upstream TLS handshake failed");
                        return Err(SendError::Connect);
                    }
                    Err(_) => {
                        tracing::debug!(%member, "upstream TLS handshake timed out");
                        return Err(SendError::Connect);
                    }
                }
            }
        };
        self.opened.inc();
        Ok(io)
    }

    async fn connect(&self, member: SocketAddr) -> Result<Conn, SendError> {
        Ok(Conn {
            io: self.connect_io(member).await?,
            read: BytesMut::new(),
            head: Vec::new(),
            read_size: READ_CHUNK,
        })
    }

    /// Writes the request and reads the response head; the response body takes the connection
    /// (and what is left of the request body) over from there.
    async fn exchange(
        self: &Arc<Self>,
        member: SocketAddr,
        mut conn: Conn,
        parts: &mut http::request::Parts,
        body: Body,
        size: BodySize,
    ) -> Result<Response<Body>, Failed> {
        let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let outgoing = wire::encode_request(
            &mut conn.head,
            &parts.method,
            target,
            &mut parts.headers,
            size,
        );
        let mut writer = Writer::new(outgoing, body);
        let mut write_failed: Option<io::Error> = None;
        let mut any_bytes = false;
        let head = std::future::poll_fn(|cx| {
            if write_failed.is_none() && !writer.finished {
                match writer.poll_write(&mut conn, cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => write_failed = Some(e),
                    Poll::Pending => {}
                }
            }
            let read = poll_head(&mut conn, cx, &mut any_bytes);
            if read.is_pending() && write_failed.is_some() {
                // Nothing to wait for: the request did not go out.
                return Poll::Ready(Err(HeadError::Write));
            }
            read
        })
        .await;
        let head = match head {
            Ok(head) => head,
            Err(HeadError::Write) if writer.body_error => {
                let e = write_failed.map_or_else(String::new, |e| e.to_string());
                return Err(Failed::Sent(SendError::Other(format!("request body: {e}"))));
            }
            Err(HeadError::Write | HeadError::Closed) if !any_bytes => {
                return Err(writer.unsent(size));
            }
            Err(HeadError::Io(e)) if !any_bytes => {
                tracing::debug!(%member, error = %e, "upstream read failed before any answer");
                return Err(writer.unsent(size));
            }
            Err(HeadError::Write | HeadError::Closed) => {
                return Err(Failed::Sent(SendError::Other(
                    WireError::Truncated.to_string(),
                )))
            }
            Err(HeadError::Io(e)) => return Err(Failed::Sent(SendError::Other(e.to_string()))),
            Err(HeadError::Wire(e)) => return Err(Failed::Sent(SendError::Other(e.to_string()))),
        };
        let (framing, keep) = wire::response_framing(&parts.method, &head)
            .map_err(|e| Failed::Sent(SendError::Other(e.to_string())))?;
        let mut resp = Response::new(crate::body::empty());
        *resp.status_mut() = head.status;
        *resp.version_mut() = head.version;
        *resp.headers_mut() = head.headers;
        let writing = !writer.finished && write_failed.is_none();
        let keep = keep && write_failed.is_none();
        let state = match framing {
            Framing::Empty => {
                // The answer is complete; a request body still going out ends with the connection.
                if keep && writer.finished && conn.read.is_empty() {
                    self.put(member, conn);
                }
                return Ok(resp);
            }
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(Chunked::Size),
            Framing::Close => State::Close,
        };
        *resp.body_mut() = ResponseBody {
            conn: Some(conn),
            writer: writing.then_some(writer),
            state,
            keep,
            pool: self.clone(),
            member,
        }
        .boxed();
        Ok(resp)
    }

    /// Upgrades (WebSocket) take a connection of their own that never returns to the pool.
    async fn send_upgrade(
        &self,
        member: SocketAddr,
        req: Request<Body>,
    ) -> Result<Response<Body>, SendError> {
        let io = self.connect_io(member).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| SendError::Other(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(%member, error = %e, "upstream upgrade connection ended");
            }
        });
        sender
            .send_request(req)
            .await
            .map(|r| r.map(|b| b.map_err(Into::into).boxed()))
            .map_err(|e| SendError::Other(super::error_chain(&e)))
    }
}

fn body_size(body: &Body) -> BodySize {
    if body.is_end_stream() {
        return BodySize::Empty;
    }
    match body.size_hint().exact() {
        Some(n) => BodySize::Exact(n),
        None => BodySize::Unknown,
    }
}

enum Failed {
    /// No answer came. `head_sent`: the whole request head went out (the member may have acted
    /// on it); `body`: the request body, when none of it was taken.
    Unsent {
        head_sent: bool,
        body: Option<Body>,
    },
    Sent(SendError),
}

enum HeadError {
    /// The request could not be written.
    Write,
    /// The member closed the connection before the head was complete.
    Closed,
    Io(io::Error),
    Wire(WireError),
}

/// Reads until the response head is complete.
fn poll_head(
    conn: &mut Conn,
    cx: &mut Context<'_>,
    any_bytes: &mut bool,
) -> Poll<Result<wire::ResponseHead, HeadError>> {
    loop {
        if !conn.read.is_empty() {
            match wire::parse_response(&mut conn.read) {
                Ok(Some(head)) => return Poll::Ready(Ok(head)),
                Ok(None) => {}
                Err(e) => return Poll::Ready(Err(HeadError::Wire(e))),
            }
        }
        conn.read.reserve(READ_CHUNK);
        match ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut conn.io),
            cx,
            &mut conn.read
        )) {
            Ok(0) => return Poll::Ready(Err(HeadError::Closed)),
            Ok(_) => *any_bytes = true,
            Err(e) => return Poll::Ready(Err(HeadError::Io(e))),
        }
    }
}

/// The request going out: the head in the connection's buffer, then the body's frames, framed
/// as `outgoing` says.
struct Writer {
    outgoing: Outgoing,
    body: Option<Body>,
    /// Body bytes taken from `body` so far.
    taken: u64,
    head_pos: usize,
    head_sent: bool,
    queue: VecDeque<Bytes>,
    /// Everything written and flushed.
    finished: bool,
    /// The failure was the request body's own (the client's side).
    body_error: bool,
}

impl Writer {
    fn new(outgoing: Outgoing, body: Body) -> Writer {
        Writer {
            outgoing,
            // A body that is not to be sent is dropped here, unread.
            body: (outgoing != Outgoing::Empty).then_some(body),
            taken: 0,
            head_pos: 0,
            head_sent: false,
            queue: VecDeque::new(),
            finished: false,
            body_error: false,
        }
    }

    /// Writes what it can; `Ready(Ok)` once the whole request is written and flushed.
    fn poll_write(&mut self, conn: &mut Conn, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A body ready at once goes out in the head's write.
        if self.head_pos == 0 && self.queue.is_empty() {
            if let Some(body) = self.body.as_mut() {
                if let Poll::Ready(frame) = Pin::new(body).poll_frame(cx) {
                    self.take(frame)?;
                }
            }
        }
        loop {
            while self.head_pos < conn.head.len() || !self.queue.is_empty() {
                let mut slices = [io::IoSlice::new(&[]); 8];
                let mut k = 0;
                if let Some(rest) = conn.head.get(self.head_pos..).filter(|r| !r.is_empty()) {
                    slices[0] = io::IoSlice::new(rest);
                    k = 1;
                }
                for b in self.queue.iter().take(slices.len() - k) {
                    slices[k] = io::IoSlice::new(b);
                    k += 1;
                }
                let mut n = ready!(Pin::new(&mut conn.io).poll_write_vectored(cx, &slices[..k]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                let head_left = conn.head.len() - self.head_pos;
                let from_head = n.min(head_left);
                self.head_pos += from_head;
                n -= from_head;
                if self.head_pos == conn.head.len() {
                    self.head_sent = true;
                }
                while n > 0 {
                    let Some(front) = self.queue.front_mut() else {
                        break;
                    };
                    if n >= front.len() {
                        n -= front.len();
                        self.queue.pop_front();
                    } else {
                        front.advance(n);
                        n = 0;
                    }
                }
            }
            let Some(body) = self.body.as_mut() else {
                ready!(Pin::new(&mut conn.io).poll_flush(cx))?;
                self.finished = true;
                return Poll::Ready(Ok(()));
            };
            match Pin::new(body).poll_frame(cx) {
                Poll::Pending => {
                    ready!(Pin::new(&mut conn.io).poll_flush(cx))?;
                    return Poll::Pending;
                }
                Poll::Ready(frame) => self.take(frame)?,
            }
        }
    }

    /// Queues what the body gave.
    fn take(&mut self, frame: Option<Result<Frame<Bytes>, BoxError>>) -> io::Result<()> {
        match frame {
            None => self.end(),
            Some(Err(e)) => {
                self.body_error = true;
                Err(io::Error::other(e))
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => self.data(data),
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        self.trailers(&trailers);
                    }
                    Ok(())
                }
            },
        }
    }

    /// The request got no answer: what is left of it for another try.
    fn unsent(&mut self, size: BodySize) -> Failed {
        let body = match size {
            BodySize::Empty => Some(crate::body::empty()),
            _ if self.taken == 0 && !self.head_sent => self.body.take(),
            _ => None,
        };
        Failed::Unsent {
            head_sent: self.head_sent,
            body,
        }
    }

    fn data(&mut self, data: Bytes) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.taken += data.len() as u64;
        match self.outgoing {
            Outgoing::Length(n) if self.taken > n => {
                self.body_error = true;
                Err(io::Error::other(
                    "request body longer than its Content-Length",
                ))
            }
            Outgoing::Chunked => {
                self.queue.push_back(Bytes::copy_from_slice(
                    wire::ChunkLine::new(data.len()).as_bytes(),
                ));
                self.queue.push_back(data);
                self.queue.push_back(Bytes::from_static(b"\r\n"));
                Ok(())
            }
            _ => {
                self.queue.push_back(data);
                Ok(())
            }
        }
    }

    fn trailers(&mut self, trailers: &HeaderMap) {
        if self.outgoing != Outgoing::Chunked {
            return;
        }
        let mut t = Vec::new();
        wire::encode_trailers(&mut t, trailers);
        self.queue.push_back(Bytes::from(t));
        self.outgoing = Outgoing::Empty;
        self.body = None;
    }

    fn end(&mut self) -> io::Result<()> {
        self.body = None;
        match self.outgoing {
            Outgoing::Chunked => {
                self.queue.push_back(Bytes::from_static(b"0\r\n\r\n"));
                Ok(())
            }
            Outgoing::Length(n) if self.taken < n => {
                self.body_error = true;
                Err(io::Error::other(
                    "request body shorter than its Content-Length",
                ))
            }
            _ => Ok(()),
        }
    }
}

enum State {
    Length(u64),
    Chunked(Chunked),
    Close,
    Done,
}

/// A response body that reads from its connection and hands it back to the idle list once the
/// body ended. Dropped early (the client went away), it closes the connection instead.
struct ResponseBody {
    conn: Option<Conn>,
    /// The request body, when it was still going out as the answer started.
    writer: Option<Writer>,
    state: State,
    keep: bool,
    pool: Arc<H1Pool>,
    member: SocketAddr,
}

impl ResponseBody {
    /// The body ended: the connection goes back when it can carry another request.
    fn finish(&mut self) {
        self.state = State::Done;
        let Some(conn) = self.conn.take() else {
            return;
        };
        if self.keep && self.writer.is_none() && conn.read.is_empty() {
            self.pool.put(self.member, conn);
        }
    }

    /// The body ended badly (or by the member's close): the connection goes with it.
    fn abandon(&mut self) {
        self.keep = false;
        self.finish();
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(None);
        };
        if let Some(w) = self.writer.as_mut() {
            match w.poll_write(conn, cx) {
                Poll::Ready(Ok(())) => self.writer = None,
                // The answer goes on; the request body does not, nor does the connection.
                Poll::Ready(Err(_)) => {
                    self.writer = None;
                    self.keep = false;
                }
                Poll::Pending => {}
            }
        }
        loop {
            let ask;
            match &mut self.state {
                State::Done => return Poll::Ready(None),
                State::Length(left) => {
                    if !conn.read.is_empty() {
                        let take = usize::try_from(*left)
                            .unwrap_or(usize::MAX)
                            .min(conn.read.len());
                        let data = conn.read.split_to(take).freeze();
                        *left -= take as u64;
                        if *left == 0 {
                            self.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    let left = usize::try_from(*left).unwrap_or(usize::MAX);
                    ask = left.min(conn.read_size);
                }
                State::Chunked(chunked) => match chunked.decode(&mut conn.read) {
                    Ok(Decoded::Data(d)) => return Poll::Ready(Some(Ok(Frame::data(d)))),
                    Ok(Decoded::Trailers(t)) => {
                        return Poll::Ready(Some(Ok(Frame::trailers(t))));
                    }
                    Ok(Decoded::End) => {
                        self.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Decoded::Pending) => ask = conn.read_size,
                    Err(e) => {
                        self.abandon();
                        return Poll::Ready(Some(Err(e.into())));
                    }
                },
                State::Close => {
                    if !conn.read.is_empty() {
                        let data = conn.read.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    ask = conn.read_size;
                }
            }
            conn.read.reserve(ask);
            match ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut conn.io),
                cx,
                &mut conn.read
            )) {
                Ok(0) => {
                    let closed = matches!(self.state, State::Close);
                    self.abandon();
                    return Poll::Ready(if closed {
                        None
                    } else {
                        Some(Err(WireError::Truncated.into()))
                    });
                }
                Ok(n) => {
                    if n >= ask {
                        conn.read_size = (conn.read_size * 2).min(READ_MAX);
                    } else if ask == conn.read_size && n < ask / 4 {
                        conn.read_size = (conn.read_size / 2).max(READ_CHUNK);
                    }
                }
                Err(e) => {
                    self.abandon();
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.poll_next(cx)
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(n) => SizeHint::with_exact(n),
            State::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
#[path = "h1_tests.rs"]
mod tests;
