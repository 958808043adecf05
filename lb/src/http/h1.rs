//! Meridian's own HTTP/1.1 server for client connections (HTTP/2 goes to hyper's server).
//!
//! One loop per connection: read a head into the connection's buffer (`wire::parse_request`,
//! no copy of its target or fields), run the pipeline inline, write the response head and the
//! body frames that are ready in one vectored write, then read the next head. A request body is
//! read by the pipeline through [`H1Body`], straight from the same buffer and socket; the body
//! and the loop share the connection behind one uncontended lock and never both read at once
//! (the loop watches for the client leaving only while a request without a body is in flight).
//!
//! Timeouts: one timer per connection bounds the wait for each head (`header_timeout`, which is
//! also the keep-alive idle bound). It is armed once and re-armed lazily: when it fires early
//! (the deadline moved on since), it is reset to the current deadline, so a keep-alive request
//! touches no timer at all.
//!
//! **Architecture Invariant:** nothing a client sends makes this loop panic; a head it cannot
//! read gets a 400/414/431 of its own and the connection closes; a body it cannot frame ends the
//! body with an error the pipeline charges to the client.

pub mod wire;

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::header;
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::AsyncWrite;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

use crate::body::{Body, RequestBody};
use crate::http::ctx::ConnCtx;
use crate::http::{pipeline, upgrade};
use crate::listener::io::ListenerIo;
use crate::signal::{Fired, Signal};
use crate::snapshot::ListenerLimits;
use crate::upstream::h1::wire::{Chunked, Decoded, WireError};
use wire::{BodyFraming, ChunkLine, HeadError, RequestHead, ResponseFraming};

/// The interim answer to `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Room kept free in the buffer before a read for a head.
const HEAD_READ: usize = 8 * 1024;

/// Room kept free in the buffer before a read for a request body.
const BODY_READ: usize = 64 * 1024;

/// Response bytes gathered from ready body frames before they are written.
const WRITE_BATCH: usize = 64 * 1024;

/// Slices one vectored write takes.
const MAX_SLICES: usize = 32;

/// Set on a request whose head had both `Content-Length` and `Transfer-Encoding`; the pipeline
/// refuses it (`checks::request_head`).
#[derive(Debug, Clone, Copy)]
pub struct FramingRefused;

/// Serves HTTP/1.1 on one client connection until it closes, a head is refused, the header
/// timeout passes, or `drain` fires (then the request in flight finishes and the connection
/// closes). A connection that opens with the HTTP/2 preface is handed to hyper's HTTP/2 server.
pub async fn serve(io: ListenerIo, conn: Arc<ConnCtx>, limits: ListenerLimits, drain: Signal) {
    let metrics = io.metrics().clone();
    let mut server = Server {
        shared: Arc::new(Mutex::new(ConnIo {
            io: Some(io),
            buf: BytesMut::with_capacity(HEAD_READ),
            body: BodyRead::Done,
            generation: 0,
            cont: Continue::None,
            spans: Vec::new(),
        })),
        conn,
        limits,
        drain: drain.clone(),
        out: Outbox::default(),
        sleep: None,
    };
    let mut fired = pin!(drain.clone().fired());
    let mut first = true;
    loop {
        let head = match server.read_head(first, fired.as_mut()).await {
            Next::Head(head) => head,
            Next::Closed => break,
            Next::H2 => {
                let Some(io) = server.take_io() else {
                    return;
                };
                let Server { conn, limits, .. } = server;
                return crate::http::serve_h2(io, conn, limits, drain).await;
            }
            Next::Refused(e) => {
                metrics.protocol.inc();
                tracing::debug!(peer = %server.conn.peer, error = %e, "refused a request head");
                server.refuse(e.status()).await;
                break;
            }
        };
        first = false;
        match server.exchange(head).await {
            Outcome::KeepAlive => {}
            Outcome::Close => break,
            Outcome::Upgraded => return,
        }
    }
    server.close().await;
}

/// What reading a head found. Returned once per request and taken apart at once: boxing the
/// head would cost an allocation per request to save stack space for a moment.
#[allow(clippy::large_enum_variant)]
enum Next {
    Head(RequestHead),
    /// The client closed, the wait timed out, or the listener drains.
    Closed,
    H2,
    Refused(HeadError),
}

/// How an exchange left the connection.
enum Outcome {
    KeepAlive,
    Close,
    /// Handed to a tunnel after `101 Switching Protocols`.
    Upgraded,
}

/// The connection's socket and read buffer, shared by the loop and the request body.
struct ConnIo {
    /// `None` once closed or handed on: a body still held somewhere reads an end of stream.
    io: Option<ListenerIo>,
    buf: BytesMut,
    body: BodyRead,
    /// Which request the current body belongs to; an older request's body reads nothing.
    generation: u64,
    cont: Continue,
    /// Scratch space of the head parser.
    spans: Vec<wire::Span>,
}

/// The request body being read from the connection.
#[derive(Debug)]
enum BodyRead {
    /// No body, or all of it read.
    Done,
    Length(u64),
    Chunked(Chunked),
    Failed,
}

/// The interim `100 Continue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Continue {
    None,
    /// Asked for, not yet sent: it goes when the body is first read.
    Due,
    /// Partly written, from this offset.
    Writing(usize),
    Flushing,
}

type Shared = Arc<Mutex<ConnIo>>;

fn lock(shared: &Shared) -> MutexGuard<'_, ConnIo> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ConnIo {
    /// Reads more bytes into the buffer, with at least `room / 2` free: `Ok(0)` at the end.
    fn poll_fill(&mut self, cx: &mut Context<'_>, room: usize) -> Poll<io::Result<usize>> {
        let Some(io) = self.io.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        if self.buf.capacity() - self.buf.len() < room / 2 {
            self.buf.reserve(room);
        }
        tokio_util::io::poll_read_buf(Pin::new(io), cx, &mut self.buf)
    }

    fn poll_continue(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let Some(io) = self.io.as_mut() else {
                return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
            };
            match self.cont {
                Continue::None => return Poll::Ready(Ok(())),
                Continue::Due => self.cont = Continue::Writing(0),
                Continue::Writing(from) => {
                    let rest = CONTINUE.get(from..).unwrap_or_default();
                    if rest.is_empty() {
                        self.cont = Continue::Flushing;
                        continue;
                    }
                    let n = ready!(Pin::new(io).poll_write(cx, rest))?;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    self.cont = Continue::Writing(from + n);
                }
                Continue::Flushing => {
                    ready!(Pin::new(io).poll_flush(cx))?;
                    self.cont = Continue::None;
                }
            }
        }
    }

    fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if self.cont != Continue::None && ready!(self.poll_continue(cx)).is_err() {
            self.body = BodyRead::Failed;
            return Poll::Ready(Some(Err(BodyError::Aborted)));
        }
        loop {
            match &mut self.body {
                BodyRead::Done => return Poll::Ready(None),
                BodyRead::Failed => return Poll::Ready(Some(Err(BodyError::Aborted))),
                BodyRead::Length(left) => {
                    if *left == 0 {
                        self.body = BodyRead::Done;
                        return Poll::Ready(None);
                    }
                    if !self.buf.is_empty() {
                        let take = usize::try_from(*left)
                            .unwrap_or(usize::MAX)
                            .min(self.buf.len());
                        *left -= take as u64;
                        if *left == 0 {
                            self.body = BodyRead::Done;
                        }
                        let data = self.buf.split_to(take).freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                BodyRead::Chunked(decoder) => match decoder.decode(&mut self.buf) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Decoded::Trailers(t)) => {
                        self.body = BodyRead::Done;
                        return Poll::Ready(Some(Ok(Frame::trailers(t))));
                    }
                    Ok(Decoded::End) => {
                        self.body = BodyRead::Done;
                        return Poll::Ready(None);
                    }
                    Ok(Decoded::Pending) => {}
                    Err(e) => {
                        self.body = BodyRead::Failed;
                        return Poll::Ready(Some(Err(BodyError::Malformed(e))));
                    }
                },
            }
            match ready!(self.poll_fill(cx, BODY_READ)) {
                Ok(0) | Err(_) => {
                    self.body = BodyRead::Failed;
                    return Poll::Ready(Some(Err(BodyError::Aborted)));
                }
                Ok(_) => {}
            }
        }
    }
}

/// Why a client's HTTP/1.1 request body ended badly.
#[derive(Debug)]
pub enum BodyError {
    /// The client closed (or the connection failed) before the body's end.
    Aborted,
    /// The chunked framing was invalid.
    Malformed(WireError),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Aborted => f.write_str("the client closed before the end of the body"),
            BodyError::Malformed(e) => write!(f, "malformed request body: {e}"),
        }
    }
}

impl std::error::Error for BodyError {}

/// A client's HTTP/1.1 request body, read from its connection as the pipeline pulls it.
pub struct H1Body {
    shared: Shared,
    generation: u64,
    ended: bool,
}

impl HttpBody for H1Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let mut c = lock(&self.shared);
        if c.generation != self.generation {
            drop(c);
            self.ended = true;
            return Poll::Ready(Some(Err(BodyError::Aborted)));
        }
        let r = c.poll_body(cx);
        drop(c);
        if matches!(r, Poll::Ready(None | Some(Err(_)))) {
            self.ended = true;
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.ended || {
            let c = lock(&self.shared);
            c.generation != self.generation || matches!(c.body, BodyRead::Done)
        }
    }

    fn size_hint(&self) -> SizeHint {
        if self.ended {
            return SizeHint::with_exact(0);
        }
        match lock(&self.shared).body {
            BodyRead::Length(n) => SizeHint::with_exact(n),
            BodyRead::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// One piece of the response waiting to be written.
enum Piece {
    /// The outbox's head buffer.
    Head,
    /// The outbox's tail buffer (trailer fields).
    Tail,
    Static(&'static [u8]),
    Line(ChunkLine),
    Data(Bytes),
}

/// The response bytes gathered for the next vectored write.
#[derive(Default)]
struct Outbox {
    head: Vec<u8>,
    tail: Vec<u8>,
    pieces: std::collections::VecDeque<Piece>,
    /// Bytes of the front piece already written.
    sent: usize,
    queued: usize,
}

impl Outbox {
    fn bytes<'a>(&'a self, piece: &'a Piece) -> &'a [u8] {
        match piece {
            Piece::Head => &self.head,
            Piece::Tail => &self.tail,
            Piece::Static(s) => s,
            Piece::Line(l) => l.as_bytes(),
            Piece::Data(d) => d,
        }
    }

    fn push(&mut self, piece: Piece) {
        self.queued += self.bytes(&piece).len();
        self.pieces.push_back(piece);
    }

    fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// Fills `slices` with what is queued, the front piece from where it was left.
    fn slices<'a>(&'a self, slices: &mut [IoSlice<'a>; MAX_SLICES]) -> usize {
        let mut k = 0;
        for (i, piece) in self.pieces.iter().take(MAX_SLICES).enumerate() {
            let b = self.bytes(piece);
            let b = if i == 0 {
                b.get(self.sent..).unwrap_or_default()
            } else {
                b
            };
            slices[k] = IoSlice::new(b);
            k += 1;
        }
        k
    }

    fn advance(&mut self, mut n: usize) {
        self.queued = self.queued.saturating_sub(n);
        while n > 0 {
            let Some(front) = self.pieces.front() else {
                return;
            };
            let left = self.bytes(front).len() - self.sent;
            if n < left {
                self.sent += n;
                return;
            }
            n -= left;
            self.sent = 0;
            self.pieces.pop_front();
        }
        while self
            .pieces
            .front()
            .is_some_and(|p| self.bytes(p).len() == self.sent)
        {
            self.sent = 0;
            self.pieces.pop_front();
        }
    }

    fn clear(&mut self) {
        self.pieces.clear();
        self.sent = 0;
        self.queued = 0;
    }
}

struct Server {
    shared: Shared,
    conn: Arc<ConnCtx>,
    limits: ListenerLimits,
    drain: Signal,
    out: Outbox,
    /// The head timer, armed at the first wait and re-armed lazily.
    sleep: Option<Pin<Box<Sleep>>>,
}

/// What the response writer needs to know of the request.
struct Asked {
    head: bool,
    version: Version,
    keep_alive: bool,
    trailers: bool,
    upgrade: Option<oneshot::Sender<ListenerIo>>,
}

impl Server {
    async fn read_head(&mut self, first: bool, mut fired: Pin<&mut Fired>) -> Next {
        let deadline = Instant::now() + self.limits.header_timeout;
        let max_head = self.limits.max_request_head_bytes;
        let shared = &self.shared;
        let sleep = &mut self.sleep;
        poll_fn(|cx| {
            let mut c = lock(shared);
            loop {
                if c.buf.is_empty() {
                    // Idle between requests: a drain closes the connection now.
                    if fired.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Next::Closed);
                    }
                } else if first && wire::H2_PREFACE.starts_with(&c.buf) {
                    // Part of the HTTP/2 preface: wait for the rest.
                } else if first && c.buf.starts_with(wire::H2_PREFACE) {
                    return Poll::Ready(Next::H2);
                } else {
                    let c = &mut *c;
                    match wire::parse_request(&mut c.buf, max_head, &mut c.spans) {
                        Ok(Some(head)) => return Poll::Ready(Next::Head(head)),
                        Ok(None) => {}
                        Err(e) => return Poll::Ready(Next::Refused(e)),
                    }
                }
                match c.poll_fill(cx, HEAD_READ) {
                    Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(Next::Closed),
                    Poll::Ready(Ok(_)) => {}
                    Poll::Pending => break,
                }
            }
            drop(c);
            let timer = sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            while timer.as_mut().poll(cx).is_ready() {
                if Instant::now() >= deadline {
                    return Poll::Ready(Next::Closed);
                }
                timer.as_mut().reset(deadline);
            }
            Poll::Pending
        })
        .await
    }

    /// One request through the pipeline and its response back.
    async fn exchange(&mut self, head: RequestHead) -> Outcome {
        let RequestHead {
            request,
            body,
            keep_alive,
            expect_continue,
            trailers,
            framing_refused,
        } = head;
        let (mut parts, ()) = request.into_parts();
        let req_body = {
            let mut c = lock(&self.shared);
            c.generation += 1;
            c.cont = Continue::None;
            c.body = match body {
                BodyFraming::Empty => BodyRead::Done,
                BodyFraming::Length(n) => BodyRead::Length(n),
                BodyFraming::Chunked => BodyRead::Chunked(Chunked::Size),
            };
            if body == BodyFraming::Empty {
                RequestBody::Empty
            } else {
                if expect_continue {
                    c.cont = Continue::Due;
                }
                RequestBody::H1(H1Body {
                    shared: self.shared.clone(),
                    generation: c.generation,
                    ended: false,
                })
            }
        };
        if framing_refused {
            parts.extensions.insert(FramingRefused);
        }
        let upgrade = upgrade::requested(parts.version, &parts.headers).then(|| {
            let (tx, rx) = oneshot::channel();
            parts.extensions.insert(upgrade::Downstream::new(rx));
            tx
        });
        let asked = Asked {
            head: parts.method == Method::HEAD,
            version: parts.version,
            keep_alive,
            trailers,
            upgrade,
        };
        // Pinned where it is made: the pipeline's future is large, and is never moved.
        let mut handler = pin!(pipeline::handle(
            self.conn.clone(),
            Request::from_parts(parts, req_body)
        ));
        let resp = if body == BodyFraming::Empty {
            self.watched(handler.as_mut()).await
        } else {
            Some(handler.await)
        };
        match resp {
            Some(Ok(resp)) => self.respond(resp, asked).await,
            Some(Err(never)) => match never {},
            // The client left before the answer: the pipeline was dropped (and counted it).
            None => Outcome::Close,
        }
    }

    /// Runs `fut` while watching the connection: the client closing ends it (dropped), and
    /// bytes it sends meanwhile (a pipelined request) wait in the buffer, up to one head's worth.
    async fn watched<F: Future>(&self, mut fut: Pin<&mut F>) -> Option<F::Output> {
        let limit = self.limits.max_request_head_bytes;
        poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            let mut c = lock(&self.shared);
            while c.buf.len() < limit {
                match c.poll_fill(cx, HEAD_READ) {
                    Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(None),
                    Poll::Ready(Ok(_)) => {}
                    Poll::Pending => break,
                }
            }
            Poll::Pending
        })
        .await
    }

    async fn respond(&mut self, resp: Response<Body>, asked: Asked) -> Outcome {
        let (parts, mut body) = resp.into_parts();
        let status = parts.status;
        self.out.clear();
        {
            // An interim 100 partly written is finished first; one never started is not sent.
            let mut c = lock(&self.shared);
            match c.cont {
                Continue::Writing(from) => {
                    self.out
                        .push(Piece::Static(CONTINUE.get(from..).unwrap_or_default()));
                }
                Continue::Due | Continue::Flushing | Continue::None => {}
            }
            c.cont = Continue::None;
        }
        if status == StatusCode::SWITCHING_PROTOCOLS {
            let Some(tx) = asked.upgrade else {
                return Outcome::Close;
            };
            wire::encode_response(
                &mut self.out.head,
                &wire::ResponseHead {
                    status,
                    headers: &parts.headers,
                    encoded: None,
                    framing: ResponseFraming::None,
                    length: None,
                    close: false,
                    version: asked.version,
                },
            );
            self.out.push(Piece::Head);
            if self.write_out().await.is_err() {
                return Outcome::Close;
            }
            if let Some(io) = self.take_io() {
                let _ = tx.send(io);
            }
            return Outcome::Upgraded;
        }
        let exact = body.size_hint().exact();
        let (framing, length) =
            wire::response_framing(asked.head, status, &parts.headers, exact, asked.version);
        let close = !asked.keep_alive
            || framing == ResponseFraming::Close
            || wire::has_token(&parts.headers, header::CONNECTION, "close")
            || self.drain.is_fired();
        wire::encode_response(
            &mut self.out.head,
            &wire::ResponseHead {
                status,
                headers: &parts.headers,
                encoded: parts.extensions.get::<wire::EncodedFields>(),
                framing,
                length,
                close,
                version: asked.version,
            },
        );
        drop(parts);
        self.out.push(Piece::Head);
        if !self.write_body(&mut body, framing, asked.trailers).await {
            return Outcome::Close;
        }
        drop(body);
        // The request body must have been read to its end for the next head to be found.
        let body_done = {
            let mut c = lock(&self.shared);
            match c.body {
                BodyRead::Done => true,
                BodyRead::Length(n) if n <= c.buf.len() as u64 => {
                    // Unread, but all of it here already: skipped.
                    c.buf.advance(n as usize);
                    c.body = BodyRead::Done;
                    true
                }
                _ => false,
            }
        };
        if close || !body_done {
            Outcome::Close
        } else {
            Outcome::KeepAlive
        }
    }

    /// Writes the head queued in the outbox and the body after it; `false` when the connection
    /// cannot carry another response (a write failed, the body failed or did not match its
    /// declared length).
    async fn write_body(
        &mut self,
        body: &mut Body,
        framing: ResponseFraming,
        trailers: bool,
    ) -> bool {
        let mut left = match framing {
            ResponseFraming::Length(n) => n,
            _ => u64::MAX,
        };
        let mut ended = framing == ResponseFraming::None;
        loop {
            let out = &mut self.out;
            let gathered = poll_fn(|cx| {
                while !ended && out.queued < WRITE_BATCH {
                    match Pin::new(&mut *body).poll_frame(cx) {
                        Poll::Pending if out.is_empty() => return Poll::Pending,
                        Poll::Pending => break,
                        Poll::Ready(Some(Err(_))) => return Poll::Ready(false),
                        Poll::Ready(None) => {
                            ended = true;
                            match framing {
                                ResponseFraming::Chunked => out.push(Piece::Static(b"0\r\n\r\n")),
                                ResponseFraming::Length(_) if left != 0 => {
                                    return Poll::Ready(false)
                                }
                                _ => {}
                            }
                        }
                        Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                            Ok(data) if data.is_empty() => {}
                            Ok(data) => match framing {
                                ResponseFraming::Length(_) => {
                                    let n = data.len() as u64;
                                    if n > left {
                                        return Poll::Ready(false);
                                    }
                                    left -= n;
                                    out.push(Piece::Data(data));
                                }
                                ResponseFraming::Chunked => {
                                    out.push(Piece::Line(ChunkLine::new(data.len())));
                                    out.push(Piece::Data(data));
                                    out.push(Piece::Static(b"\r\n"));
                                }
                                ResponseFraming::Close => out.push(Piece::Data(data)),
                                ResponseFraming::None => {}
                            },
                            Err(frame) => {
                                let Ok(fields) = frame.into_trailers() else {
                                    continue;
                                };
                                if framing == ResponseFraming::Chunked {
                                    ended = true;
                                    if trailers {
                                        out.tail.clear();
                                        wire::encode_trailers(&mut out.tail, &fields);
                                        out.push(Piece::Tail);
                                    } else {
                                        out.push(Piece::Static(b"0\r\n\r\n"));
                                    }
                                }
                            }
                        },
                    }
                }
                Poll::Ready(true)
            })
            .await;
            if !gathered {
                return false;
            }
            if !self.out.is_empty() && self.write_out().await.is_err() {
                return false;
            }
            if ended {
                return framing != ResponseFraming::Close;
            }
        }
    }

    /// Writes everything queued, then flushes.
    async fn write_out(&mut self) -> io::Result<()> {
        let shared = &self.shared;
        let out = &mut self.out;
        poll_fn(|cx| {
            let mut c = lock(shared);
            let Some(io) = c.io.as_mut() else {
                return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
            };
            while !out.is_empty() {
                let n = {
                    let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                    let k = out.slices(&mut slices);
                    ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..k]))?
                };
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                out.advance(n);
            }
            Pin::new(io).poll_flush(cx)
        })
        .await
    }

    /// Answers a head that could not be read, then the connection closes.
    async fn refuse(&mut self, status: StatusCode) {
        self.out.clear();
        wire::encode_refusal(&mut self.out.head, status);
        self.out.push(Piece::Head);
        let _ = self.write_out().await;
    }

    /// The socket, taken out of the shared state with any bytes read ahead put back in front.
    fn take_io(&self) -> Option<ListenerIo> {
        let mut c = lock(&self.shared);
        let mut io = c.io.take()?;
        let rest = c.buf.split().freeze();
        io.unread(rest);
        Some(io)
    }

    /// Ends the connection: TLS sends its close_notify; bounded by the header timeout.
    async fn close(self) {
        let io = lock(&self.shared).io.take();
        if let Some(mut io) = io {
            let shutdown = poll_fn(|cx| Pin::new(&mut io).poll_shutdown(cx));
            let _ = tokio::time::timeout(self.limits.header_timeout, shutdown).await;
        }
    }
}
