//! The one place where data-plane failures are classified: which side failed, whether a retry
//! on another member is safe, and the status and body the client sees.

use http::{Response, StatusCode};

use crate::body::{self, Body};

/// The side of the proxy a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Downstream,
    Upstream,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The request can no longer be framed (or was smuggling-shaped): answer and close.
    #[error("bad request framing: {0}")]
    BadFraming(&'static str),
    #[error("request target longer than the listener allows")]
    UriTooLong,
    #[error("the client went away before sending the whole request")]
    ClientAbort,
    /// A decompressed request body grew past the route's cap.
    #[error("request body larger than the route allows")]
    PayloadTooLarge,
    #[error("the listener was removed")]
    ListenerGone,
    #[error("no route matches this host and path")]
    NoRoute,
    #[error("pool {0:?} has no healthy member")]
    NoHealthyMember(String),
    /// The pool's `max_concurrent_requests` are all in flight.
    #[error("pool {0:?} is at its limit of requests in flight")]
    PoolBusy(String),
    #[error("could not connect to upstream {0}")]
    Connect(std::net::SocketAddr),
    #[error("upstream {0} did not answer in time")]
    Timeout(std::net::SocketAddr),
    #[error("upstream {addr} failed: {reason}")]
    Upstream {
        addr: std::net::SocketAddr,
        reason: String,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl ProxyError {
    pub fn side(&self) -> Side {
        match self {
            ProxyError::BadRequest(_)
            | ProxyError::BadFraming(_)
            | ProxyError::UriTooLong
            | ProxyError::ClientAbort
            | ProxyError::PayloadTooLarge
            | ProxyError::NoRoute => Side::Downstream,
            ProxyError::NoHealthyMember(_)
            | ProxyError::PoolBusy(_)
            | ProxyError::Connect(_)
            | ProxyError::Timeout(_)
            | ProxyError::Upstream { .. } => Side::Upstream,
            ProxyError::Internal(_) | ProxyError::ListenerGone => Side::Internal,
        }
    }

    /// A short, stable name for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ProxyError::BadRequest(_) => "bad_request",
            ProxyError::BadFraming(_) => "bad_framing",
            ProxyError::UriTooLong => "uri_too_long",
            ProxyError::ClientAbort => "client_abort",
            ProxyError::PayloadTooLarge => "payload_too_large",
            ProxyError::ListenerGone => "listener_gone",
            ProxyError::NoRoute => "no_route",
            ProxyError::NoHealthyMember(_) => "no_healthy_member",
            ProxyError::PoolBusy(_) => "pool_busy",
            ProxyError::Connect(_) => "connect",
            ProxyError::Timeout(_) => "timeout",
            ProxyError::Upstream { .. } => "upstream",
            ProxyError::Internal(_) => "internal",
        }
    }

    /// The request check that refused the request, for `meridian_lb_request_checks_total`.
    pub fn check(&self) -> Option<&'static str> {
        match self {
            ProxyError::BadRequest(why) | ProxyError::BadFraming(why) => Some(match *why {
                "dot-segments in the path" => "dot_segments",
                "a NUL byte in the path" => "nul_byte",
                "invalid Host header"
                | "more than one Host header"
                | "missing Host header"
                | "empty host" => "host",
                "the request body is not valid for its Content-Encoding" => "body_encoding",
                _ => "framing",
            }),
            ProxyError::UriTooLong => Some("uri_too_long"),
            ProxyError::PayloadTooLarge => Some("payload_too_large"),
            _ => None,
        }
    }

    /// Whether the request may go to another member: only when nothing reached the upstream.
    pub fn retryable(&self) -> bool {
        matches!(self, ProxyError::Connect(_))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) | ProxyError::BadFraming(_) | ProxyError::ClientAbort => {
                StatusCode::BAD_REQUEST
            }
            ProxyError::UriTooLong => StatusCode::URI_TOO_LONG,
            ProxyError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::ListenerGone => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::NoHealthyMember(_) | ProxyError::PoolBusy(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::Connect(_) | ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A plain-text answer that says what went wrong without exposing upstream addresses.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let text = match &self {
            ProxyError::BadRequest(why) | ProxyError::BadFraming(why) => {
                format!("400 bad request: {why}\n")
            }
            ProxyError::UriTooLong => "414 request target too long\n".into(),
            ProxyError::ClientAbort => "400 bad request: the request body was cut short\n".into(),
            ProxyError::PayloadTooLarge => {
                "413 payload too large: the decompressed request body is over the limit\n".into()
            }
            ProxyError::ListenerGone => "503 service unavailable: listener removed\n".into(),
            ProxyError::NoRoute => "404 no route matches this host and path\n".to_string(),
            ProxyError::NoHealthyMember(pool) => {
                format!("503 service unavailable: pool {pool} has no healthy member\n")
            }
            ProxyError::PoolBusy(pool) => {
                format!(
                    "503 service unavailable: pool {pool} is at its limit of requests in flight\n"
                )
            }
            ProxyError::Connect(_) => "502 bad gateway: could not connect to any upstream\n".into(),
            ProxyError::Upstream { .. } => "502 bad gateway: the upstream failed\n".into(),
            ProxyError::Timeout(_) => {
                "504 gateway timeout: the upstream did not answer in time\n".into()
            }
            ProxyError::Internal(_) => "500 internal error\n".into(),
        };
        // Per-request failures are counted in metrics; logging each one at a higher level would
        // flood the log exactly when an upstream is down.
        tracing::debug!(error = %self, side = ?self.side(), "proxy error");
        let close = self.closes_connection();
        let mut resp = Response::new(body::full(text));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        resp.headers_mut().insert(
            http::header::HeaderName::from_static("x-meridian-error"),
            http::HeaderValue::from_static("1"),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
        }
        if close {
            // hyper ends the connection after an answer that says so.
            resp.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        resp
    }

    /// Whether the connection must end after this answer because its framing can no longer be
    /// trusted (or the listener is going away).
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            ProxyError::BadFraming(_)
                | ProxyError::UriTooLong
                | ProxyError::ClientAbort
                | ProxyError::ListenerGone
        )
    }
}

/// Why a revision could not be compiled into a routing snapshot. The previous snapshot keeps
/// serving and an alarm names the revision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("header {0:?} cannot be sent")]
    Header(String),
    #[error("{0} is not a redirect status")]
    Redirect(u16),
    #[error("listener {listener:?} names pool {pool:?}, which does not exist")]
    MissingPool { listener: String, pool: String },
    #[error("listener {listener:?}: TLS: {error}")]
    Tls { listener: String, error: String },
}
