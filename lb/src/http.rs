//! HTTP serving: one client connection speaks HTTP/1.1 or HTTP/2 (prior knowledge; ALPN comes
//! with TLS), and every request goes through the pipeline.

pub mod checks;
pub mod ctx;
pub mod framing;
pub mod headers;
pub mod pipeline;
pub mod upgrade;

use std::sync::Arc;

use crate::signal::Signal;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;

use crate::listener::io::ListenerIo;
use crate::snapshot::ListenerLimits;
use ctx::ConnCtx;

/// Serves one client connection until it ends, or until `drain` fires: then the connection
/// finishes the requests in flight and closes (HTTP/2 sends GOAWAY).
pub async fn serve_connection(
    io: ListenerIo,
    conn: Arc<ConnCtx>,
    limits: ListenerLimits,
    drain: Signal,
) {
    let metrics = io.metrics().clone();
    let peer = conn.peer;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_request_head_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_request_head_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256);
    let svc = service_fn(move |req| pipeline::handle(conn.clone(), req));
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
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
        // Parse errors were answered by hyper itself (400, 414, 431); count them.
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_parse() || h.is_parse_too_large() {
                metrics.protocol.inc();
            }
        }
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
