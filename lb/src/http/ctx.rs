//! The per-connection and per-request contexts of the HTTP pipeline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, Method, StatusCode, Version};

use crate::http::framing::FramingFlags;
use crate::http::headers::ClientHeaders;
use crate::Shared;

/// What every request on one client connection shares, built once at accept.
pub struct ConnCtx {
    pub shared: Arc<Shared>,
    /// The listener's address: the key of its routes in every snapshot.
    pub bind: SocketAddr,
    /// The client: the TCP peer, or the source a trusted PROXY protocol header named.
    pub peer: SocketAddr,
    pub scheme: &'static str,
    pub client_headers: ClientHeaders,
    /// Requests the framing watch refused, by index.
    pub framing: Arc<FramingFlags>,
}

/// One request's state as it moves through the phases; the log phase reads it at the end.
pub struct RequestCtx {
    pub start: Instant,
    pub method: Method,
    pub version: Version,
    pub request_id: Option<HeaderValue>,
    /// Set by the route phase.
    pub route: Option<Arc<str>>,
    pub pool: Option<Arc<str>>,
    /// Members tried, the last one answering.
    pub attempts: u32,
    pub member: Option<SocketAddr>,
    pub upstream_time: Option<Duration>,
    pub status: StatusCode,
    /// Why the proxy answered itself, when it did.
    pub error: Option<&'static str>,
    pub upgraded: bool,
}

impl RequestCtx {
    pub fn new(method: Method, version: Version) -> RequestCtx {
        RequestCtx {
            start: Instant::now(),
            method,
            version,
            request_id: None,
            route: None,
            pool: None,
            attempts: 0,
            member: None,
            upstream_time: None,
            status: StatusCode::OK,
            error: None,
            upgraded: false,
        }
    }
}
