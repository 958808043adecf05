//! The one body type of the data plane, and the wrappers that sit between the client's body and
//! the upstream: they record which side failed and let a read-ahead frame go first.
//!
//! Every body filter (later: compressors, cache writers, bandwidth shapers) is a `Body` that can
//! fail with its own error, boxed here, so the request path never names a concrete body type.

use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};

use crate::http::h1::{BodyError, H1Body};

/// Errors of any body in the pipeline.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type every phase passes along.
pub type Body = BoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// What went wrong with the client's request body, as seen while streaming it upstream.
#[derive(Debug, Default)]
pub struct ClientBodyState(AtomicU8);

/// How the client's body ended when it did not end well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientBodyFault {
    /// The client went away before sending the whole body.
    Aborted,
    /// The body's framing was invalid (a malformed chunk, say), or its content coding was.
    Malformed,
    /// The body, once decompressed, was larger than the route allows.
    TooLarge,
}

impl ClientBodyState {
    pub fn fault(&self) -> Option<ClientBodyFault> {
        match self.0.load(Ordering::Relaxed) {
            1 => Some(ClientBodyFault::Aborted),
            2 => Some(ClientBodyFault::Malformed),
            3 => Some(ClientBodyFault::TooLarge),
            _ => None,
        }
    }

    fn record(&self, e: &RequestBodyError) {
        let code = match e {
            RequestBodyError::H1(BodyError::Aborted) => 1,
            RequestBodyError::H1(BodyError::Malformed(_)) => 2,
            RequestBodyError::H2(e) if e.is_incomplete_message() || e.is_closed() => 1,
            RequestBodyError::H2(e) if e.is_canceled() => 1,
            RequestBodyError::H2(e) if e.is_parse() || e.is_user() => 2,
            // An I/O error on the client connection (reset, timeout) is the client going away.
            RequestBodyError::H2(_) => 1,
        };
        self.0.store(code, Ordering::Relaxed);
    }
}

/// A client's request body as the pipeline receives it: none, read by Meridian's HTTP/1.1
/// server, or by hyper's HTTP/2 server.
pub enum RequestBody {
    Empty,
    H1(H1Body),
    H2(Incoming),
}

/// How a client's request body failed.
#[derive(Debug)]
pub enum RequestBodyError {
    H1(BodyError),
    H2(hyper::Error),
}

impl std::fmt::Display for RequestBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestBodyError::H1(e) => e.fmt(f),
            RequestBodyError::H2(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RequestBodyError {}

impl HttpBody for RequestBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        match self.get_mut() {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::H1(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|o| o.map(|r| r.map_err(RequestBodyError::H1))),
            RequestBody::H2(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|o| o.map(|r| r.map_err(RequestBodyError::H2))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::H1(b) => b.is_end_stream(),
            RequestBody::H2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::H1(b) => b.size_hint(),
            RequestBody::H2(b) => b.size_hint(),
        }
    }
}

/// The client's request body on its way upstream: a frame read ahead (if any) goes first, and a
/// failure is recorded so that the error is charged to the client, not to the upstream.
pub struct ClientBody {
    first: Option<Frame<Bytes>>,
    inner: RequestBody,
    state: Arc<ClientBodyState>,
}

impl ClientBody {
    pub fn new(
        inner: RequestBody,
        first: Option<Frame<Bytes>>,
        state: Arc<ClientBodyState>,
    ) -> Self {
        ClientBody {
            first,
            inner,
            state,
        }
    }

    /// Reads the first frame ahead of time, so that a body malformed from its start is refused
    /// before anything is sent upstream. `Ok(None)` when the body is empty.
    pub async fn read_ahead(
        inner: &mut RequestBody,
        state: &ClientBodyState,
    ) -> Result<Option<Frame<Bytes>>, ClientBodyFault> {
        match inner.frame().await {
            None => Ok(None),
            Some(Ok(frame)) => Ok(Some(frame)),
            Some(Err(e)) => {
                state.record(&e);
                Err(state.fault().unwrap_or(ClientBodyFault::Aborted))
            }
        }
    }
}

impl HttpBody for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(frame) = self.first.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => {
                self.state.record(&e);
                Poll::Ready(Some(Err(Box::new(e))))
            }
            other => other.map(|o| o.map(|r| r.map_err(|e| Box::new(e) as BoxError))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let hint = self.inner.size_hint();
        let Some(len) = self
            .first
            .as_ref()
            .and_then(|f| f.data_ref())
            .map(|d| d.len())
        else {
            return hint;
        };
        // Raise the upper bound before the lower one: SizeHint refuses lower > upper.
        let len = len as u64;
        let mut out = SizeHint::new();
        if let Some(upper) = hint.upper() {
            out.set_upper(upper.saturating_add(len));
        }
        out.set_lower(hint.lower().saturating_add(len));
        out
    }
}
