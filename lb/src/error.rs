//! The one place where data-plane failures are classified: which side failed, whether a retry
//! on another member is safe, and the status and body the client sees.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::proxy::Body;

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
    #[error("no route matches this host and path")]
    NoRoute,
    #[error("pool {0:?} has no healthy member")]
    NoHealthyMember(String),
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
            ProxyError::BadRequest(_) | ProxyError::NoRoute => Side::Downstream,
            ProxyError::NoHealthyMember(_)
            | ProxyError::Connect(_)
            | ProxyError::Timeout(_)
            | ProxyError::Upstream { .. } => Side::Upstream,
            ProxyError::Internal(_) => Side::Internal,
        }
    }

    /// Whether the request may go to another member: only when nothing reached the upstream.
    pub fn retryable(&self) -> bool {
        matches!(self, ProxyError::Connect(_))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::NoHealthyMember(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Connect(_) | ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A plain-text answer that says what went wrong without exposing upstream addresses.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let text = match &self {
            ProxyError::BadRequest(why) => format!("400 bad request: {why}\n"),
            ProxyError::NoRoute => "404 no route matches this host and path\n".to_string(),
            ProxyError::NoHealthyMember(pool) => {
                format!("503 service unavailable: pool {pool} has no healthy member\n")
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
        let mut resp = Response::new(
            Full::new(Bytes::from(text))
                .map_err(|never| match never {})
                .boxed(),
        );
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        resp.headers_mut().insert(
            http::header::HeaderName::from_static("x-meridian-error"),
            http::HeaderValue::from_static("1"),
        );
        resp
    }
}
