//! HTTP/1.1 upstream connections driven by the request that uses them.
//!
//! hyper-util's pooled client runs each upstream connection as a task of its own and passes every
//! request and response through channels between that task and the request's task. Here the
//! request's own task polls the connection while it waits for the response head, and the
//! response body carries the connection along until the body ends, then puts it back in the
//! worker's idle list. One task, no channel hop, no shared pool lock (each worker has its own
//! `H1Pool`, so its mutex is never contended).
//!
//! A connection that comes back from the idle list is polled once before use: one that the
//! member closed while it sat idle is dropped there, not found out by a request.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use prometheus::IntCounter;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::tls::{UpstreamIo, UpstreamTls};
use super::SendError;
use crate::body::{Body, BoxError};

type Conn = http1::Connection<TokioIo<UpstreamIo>, Body>;

struct Idle {
    sender: SendRequest<Body>,
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
    /// connection could not take (the member closed it at that moment) goes over a new one.
    pub async fn send(
        self: &Arc<Self>,
        member: SocketAddr,
        req: Request<Body>,
        upgrade: bool,
    ) -> Result<Response<Body>, SendError> {
        if upgrade {
            return self.send_upgrade(member, req).await;
        }
        let mut req = req;
        if let Some(idle) = self.checkout(member) {
            match self.exchange(member, idle.sender, idle.conn, req).await {
                Ok(resp) => return Ok(resp),
                Err(Failed::Unsent(r)) => req = r,
                Err(Failed::Sent(e)) => return Err(e),
            }
        }
        let (sender, conn) = self.connect(member).await?;
        match self.exchange(member, sender, conn, req).await {
            Ok(resp) => Ok(resp),
            Err(Failed::Unsent(_)) => Err(SendError::Other(
                "a new connection refused the request".into(),
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
            // Let the connection notice a close (or finish reading the last response) now.
            let mut cx = Context::from_waker(Waker::noop());
            if Pin::new(&mut idle.conn).poll(&mut cx).is_ready() {
                continue;
            }
            if idle.sender.is_ready() {
                return Some(idle);
            }
        }
    }

    fn put(&self, member: SocketAddr, sender: SendRequest<Body>, conn: Conn) {
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
            sender,
            conn,
            since: Instant::now(),
        });
    }

    async fn connect(&self, member: SocketAddr) -> Result<(SendRequest<Body>, Conn), SendError> {
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
        let (sender, conn) = http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| SendError::Other(e.to_string()))?;
        self.opened.inc();
        Ok((sender, conn))
    }

    /// Drives `conn` while the request goes out and the response head comes back; the response
    /// body takes the connection over from there.
    async fn exchange(
        self: &Arc<Self>,
        member: SocketAddr,
        mut sender: SendRequest<Body>,
        mut conn: Conn,
        req: Request<Body>,
    ) -> Result<Response<Body>, Failed> {
        let sending = sender.try_send_request(req);
        tokio::pin!(sending);
        let mut conn_ended = false;
        let result = std::future::poll_fn(|cx| {
            if !conn_ended && Pin::new(&mut conn).poll(cx).is_ready() {
                conn_ended = true;
            }
            sending.as_mut().poll(cx)
        })
        .await;
        match result {
            Ok(resp) => {
                let kept = (!conn_ended).then_some((sender, conn));
                Ok(resp.map(|inner| {
                    PooledBody {
                        inner,
                        kept,
                        pool: self.clone(),
                        member,
                    }
                    .boxed()
                }))
            }
            Err(mut e) => match e.take_message() {
                Some(req) => Err(Failed::Unsent(req)),
                None => Err(Failed::Sent(SendError::Other(super::error_chain(
                    e.error(),
                )))),
            },
        }
    }

    /// Upgrades (WebSocket) take a connection of their own that never returns to the pool.
    async fn send_upgrade(
        &self,
        member: SocketAddr,
        req: Request<Body>,
    ) -> Result<Response<Body>, SendError> {
        let (mut sender, conn) = self.connect(member).await?;
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

/// Returned by value on the failure path only; boxing the request would cost an allocation.
#[allow(clippy::large_enum_variant)]
enum Failed {
    /// The connection did not take the request: it may go over another one.
    Unsent(Request<Body>),
    Sent(SendError),
}

/// A response body that keeps its connection going and hands it back to the idle list once the
/// body ended. Dropped early (the client went away), it closes the connection instead.
struct PooledBody {
    inner: Incoming,
    kept: Option<(SendRequest<Body>, Conn)>,
    pool: Arc<H1Pool>,
    member: SocketAddr,
}

impl HttpBody for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some((_, conn)) = &mut this.kept {
            if Pin::new(conn).poll(cx).is_ready() {
                this.kept = None;
            }
        }
        Pin::new(&mut this.inner)
            .poll_frame(cx)
            .map(|o| o.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        if !self.inner.is_end_stream() {
            return;
        }
        if let Some((sender, conn)) = self.kept.take() {
            self.pool.put(self.member, sender, conn);
        }
    }
}
