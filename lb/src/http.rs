//! HTTP serving: one client connection speaks HTTP/1.1 or HTTP/2 (prior knowledge; ALPN comes
//! with TLS), and every request goes through the pipeline.

pub mod checks;
pub mod ctx;
pub mod h1;
pub mod headers;
pub mod pipeline;
pub mod upgrade;

use std::sync::Arc;

use crate::signal::Signal;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::body::RequestBody;

use crate::listener::io::ListenerIo;
use crate::snapshot::ListenerLimits;
use ctx::ConnCtx;

/// Serves one client connection until it ends, or until `drain` fires: then the connection
/// finishes the requests in flight and closes (HTTP/2 sends GOAWAY). HTTP/1.1 is Meridian's own
/// server (`h1`), which hands a connection opening with the HTTP/2 preface to [`serve_h2`].
pub async fn serve_connection(
    io: ListenerIo,
    conn: Arc<ConnCtx>,
    limits: ListenerLimits,
    drain: Signal,
) {
    h1::serve(io, conn, limits, drain).await;
}

/// Serves HTTP/2 (prior knowledge, or ALPN `h2`) with hyper's server.
pub async fn serve_h2(io: ListenerIo, conn: Arc<ConnCtx>, limits: ListenerLimits, drain: Signal) {
    let metrics = io.metrics().clone();
    let peer = conn.peer;
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_request_head_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256);
    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        pipeline::handle(conn.clone(), req.map(RequestBody::H2))
    });
    let connection = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(connection);
    let drained = drain.fired();
    tokio::pin!(drained);
    let result = tokio::select! {
        biased;
        r = connection.as_mut() => r,
        () = &mut drained => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        // Protocol errors were answered by hyper itself (GOAWAY); count them.
        if e.is_parse() || e.is_parse_too_large() {
            metrics.protocol.inc();
        }
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
