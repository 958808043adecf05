//! Per-route filters: plain data compiled into the snapshot, dispatched by `match` on the request
//! path (no trait objects). Each kind lives in its own small module with its own tests.
//!
//! Order on the request: redirect (answers at once), header edits, path rewrite. On the response:
//! header edits. Later kinds (rate limit, fault, mirror, cache, compression) join these enums.

pub mod compress;
pub mod global;
pub mod headers;
pub mod limit;
pub mod redirect;
pub mod rewrite;

use std::time::Instant;

use http::uri::PathAndQuery;
use http::{HeaderMap, Response};

use crate::body::Body;
use crate::error::CompileError;

/// What filters may depend on besides the request: passed in, so filters are tested without
/// sleeping or seeding a global RNG.
#[derive(Debug, Clone, Copy)]
pub struct FilterEnv {
    pub now: Instant,
    /// One random draw for this request.
    pub random: u64,
}

#[derive(Debug)]
pub enum RequestFilter {
    Redirect(redirect::Redirect),
    Headers(headers::HeaderEdit),
    RewritePrefix(rewrite::RewritePrefix),
}

#[derive(Debug)]
pub enum ResponseFilter {
    Headers(headers::HeaderEdit),
}

/// The request as filters see it.
pub struct RequestView<'a> {
    pub scheme: &'a str,
    /// The host as the client sent it, with its port.
    pub authority: &'a str,
    /// Lowercased, without port.
    pub host: &'a str,
    pub path_and_query: &'a mut PathAndQuery,
    pub headers: &'a mut HeaderMap,
}

/// A route's compiled filters.
#[derive(Debug, Default)]
pub struct RouteFilters {
    request: Box<[RequestFilter]>,
    response: Box<[ResponseFilter]>,
}

impl RouteFilters {
    pub fn compile(route: &model::Route) -> Result<RouteFilters, CompileError> {
        let mut request = Vec::new();
        let mut response = Vec::new();
        if let Some(r) = &route.redirect {
            request.push(RequestFilter::Redirect(redirect::Redirect::compile(r)?));
        }
        if let Some(h) = &route.request_headers {
            request.push(RequestFilter::Headers(headers::HeaderEdit::compile(h)?));
        }
        if let Some(to) = &route.rewrite_prefix {
            request.push(RequestFilter::RewritePrefix(rewrite::RewritePrefix::new(
                &route.path_prefix,
                to,
            )));
        }
        if let Some(h) = &route.response_headers {
            response.push(ResponseFilter::Headers(headers::HeaderEdit::compile(h)?));
        }
        Ok(RouteFilters {
            request: request.into(),
            response: response.into(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty()
    }

    /// Runs the request filters; `Some` is an answer that ends the request here.
    pub fn on_request(
        &self,
        req: &mut RequestView<'_>,
        _env: &FilterEnv,
    ) -> Option<Response<Body>> {
        for f in self.request.iter() {
            match f {
                RequestFilter::Redirect(r) => {
                    return Some(r.apply(req.scheme, req.authority, req.host, req.path_and_query))
                }
                RequestFilter::Headers(h) => h.apply(req.headers),
                RequestFilter::RewritePrefix(r) => {
                    if let Some(p) = r.apply(req.path_and_query) {
                        *req.path_and_query = p;
                    }
                }
            }
        }
        None
    }

    pub fn on_response(&self, headers: &mut HeaderMap) {
        for f in self.response.iter() {
            match f {
                ResponseFilter::Headers(h) => h.apply(headers),
            }
        }
    }
}
