//! The per-connection and per-request contexts of the HTTP pipeline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, Method, Version};

use crate::http::headers::ClientHeaders;
use crate::snapshot::CompiledRoute;
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
}

/// One request's state as it moves through the phases; the log phase reads it at the end.
/// `'s` is the routing snapshot the request loaded.
pub struct RequestCtx<'s> {
    pub start: Instant,
    pub method: Method,
    pub version: Version,
    pub request_id: Option<HeaderValue>,
    /// Set by the route phase; its pool is the request's pool.
    pub route: Option<&'s CompiledRoute>,
    /// Members tried, the last one answering.
    pub attempts: u32,
    pub member: Option<SocketAddr>,
    pub upstream_time: Option<Duration>,
    /// Why the proxy answered itself, when it did.
    pub error: Option<&'static str>,
}

impl RequestCtx<'_> {
    pub fn new(method: Method, version: Version) -> Self {
        RequestCtx {
            start: Instant::now(),
            method,
            version,
            request_id: None,
            route: None,
            attempts: 0,
            member: None,
            upstream_time: None,
            error: None,
        }
    }
}
