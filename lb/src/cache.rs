//! The response cache (RFC 9111): a route's compiled policy, the cache key, what may be stored
//! and how a stored response is served. The store (memory and disk tiers, coalescing, purges)
//! is in `store`; the pipeline calls into both at phase 4 (lookup) and phase 8 (store, after
//! compression, so each content coding is its own variant).
//!
//! Freshness, validation and `Vary` are decided by http-cache-semantics, from a view of the
//! request that holds only what those rules read: `Cache-Control`, `Pragma` and the headers
//! the response varies on (never `Host`, `Cookie` or `Authorization`, which stay out of the
//! store). The key, not the policy, says which resource a request is for.
//!
//! Rules of our own, on top of RFC 9111:
//! - requests with `Cookie` or `Authorization` are not stored, and are answered from the cache
//!   only by responses marked `public`;
//! - responses with `Set-Cookie` are never stored;
//! - with compression on the route, `Vary: Accept-Encoding` is covered by the variant (the
//!   coding negotiated), so clients with differently worded `Accept-Encoding` share entries;
//! - `Range` requests and methods other than GET and HEAD bypass; a successful unsafe method
//!   removes the stored responses for its URL (section 4.4).

pub mod disk;
pub mod store;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Uri};
use http_cache_semantics::{CacheOptions, CachePolicy, RequestLike, ResponseLike};
use hyper::body::Body as _;

use crate::body::{self, Body};
use crate::metrics::RouteCacheMetrics;
pub use store::{CacheStore, Entry, Flight, FlightGuard, StoreKey, StoreOptions};

pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// The result of a lookup, as `X-Cache` and the metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    Hit = 0,
    Miss = 1,
    Stale = 2,
    Revalidated = 3,
    Bypass = 4,
}

impl CacheResult {
    pub fn header(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            CacheResult::Hit => "HIT",
            CacheResult::Miss | CacheResult::Bypass => "MISS",
            CacheResult::Stale => "STALE",
            CacheResult::Revalidated => "REVALIDATED",
        })
    }
}

/// A route's compiled cache policy.
pub struct RouteCache {
    default_ttl: u64,
    pub max_object: u64,
    swr: Duration,
    sie: Duration,
    ignore_query: bool,
    query_params: Option<Box<[Box<str>]>>,
    key_headers: Box<[HeaderName]>,
    tags_header: HeaderName,
    metrics: RouteCacheMetrics,
}

impl std::fmt::Debug for RouteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteCache")
            .field("default_ttl", &self.default_ttl)
            .field("max_object", &self.max_object)
            .finish_non_exhaustive()
    }
}

impl RouteCache {
    /// Compiles a validated spec; names that still do not parse are left out.
    pub fn compile(c: &model::CacheSpec, metrics: RouteCacheMetrics) -> RouteCache {
        RouteCache {
            default_ttl: c.default_ttl_seconds,
            max_object: c.max_object_bytes,
            swr: Duration::from_secs(c.stale_while_revalidate_seconds),
            sie: Duration::from_secs(c.stale_if_error_seconds),
            ignore_query: c.key.ignore_query,
            query_params: c
                .key
                .query_params
                .as_ref()
                .map(|q| q.iter().map(|p| p.as_str().into()).collect()),
            key_headers: c
                .key
                .headers
                .iter()
                .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
                .collect(),
            tags_header: HeaderName::from_bytes(c.tags_header.as_bytes())
                .unwrap_or(HeaderName::from_static("surrogate-key")),
            metrics,
        }
    }

    pub fn count(&self, result: CacheResult) {
        self.metrics.results[result as usize].inc();
    }

    /// `([hit, miss, stale, revalidated, bypass], coalesced)` so far.
    pub fn counts(&self) -> ([u64; 5], u64) {
        (
            self.metrics.results.each_ref().map(|c| c.get()),
            self.metrics.coalesced.get(),
        )
    }

    pub fn count_coalesced(&self) {
        self.metrics.coalesced.inc();
    }

    /// Whether the request may be answered from (and stored in) the cache at all.
    pub fn cacheable_request(method: &Method, headers: &HeaderMap) -> bool {
        (*method == Method::GET || *method == Method::HEAD)
            && !headers.contains_key(header::RANGE)
            && !headers.contains_key(header::UPGRADE)
    }

    /// The key: `host/path`, the query as configured, then the values of the key's headers.
    pub fn key(&self, host: &str, uri: &Uri, headers: &HeaderMap) -> std::sync::Arc<str> {
        let mut k = String::with_capacity(host.len() + uri.path().len() + 16);
        k.push_str(host);
        k.push_str(uri.path());
        match (uri.query(), &self.query_params) {
            (Some(q), None) if !self.ignore_query => {
                k.push('?');
                k.push_str(q);
            }
            (Some(q), Some(params)) => {
                let mut first = true;
                for p in params.iter() {
                    for pair in q.split('&') {
                        let name = pair.split_once('=').map_or(pair, |(n, _)| n);
                        if name == &**p {
                            k.push(if first { '?' } else { '&' });
                            k.push_str(pair);
                            first = false;
                        }
                    }
                }
            }
            _ => {}
        }
        for h in self.key_headers.iter() {
            k.push('\n');
            k.push_str(h.as_str());
            k.push(':');
            for v in headers.get_all(h) {
                k.push_str(&String::from_utf8_lossy(v.as_bytes()));
            }
        }
        k.into()
    }

    /// Removes the tags header from a response that is not stored.
    pub fn strip_tags(&self, headers: &mut HeaderMap) {
        headers.remove(&self.tags_header);
    }

    /// Decides whether the final response (after compression) may be stored, and prepares what
    /// the entry holds besides the body. Removes the tags header from `resp` either way.
    pub fn prepare(
        &self,
        req_headers: &HeaderMap,
        resp: &mut http::response::Parts,
        covers_accept_encoding: bool,
        credentialed: bool,
        now: SystemTime,
    ) -> Option<Prepared> {
        let tags: Box<[Box<str>]> = resp
            .headers
            .get_all(&self.tags_header)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split([' ', ',']))
            .filter(|t| !t.is_empty())
            .map(Into::into)
            .collect();
        resp.headers.remove(&self.tags_header);
        if resp.headers.contains_key(header::SET_COOKIE) {
            return None;
        }
        if resp
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > self.max_object)
        {
            return None;
        }
        let public = has_directive(&resp.headers, "public");
        if credentialed && !public && !has_directive(&resp.headers, "s-maxage") {
            return None;
        }
        // The response as the policy sees it.
        let mut seen = resp.headers.clone();
        let vary = vary_names(&resp.headers, covers_accept_encoding)?;
        seen.remove(header::VARY);
        if !vary.is_empty() {
            let list = vary
                .iter()
                .map(|h| h.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            if let Ok(v) = HeaderValue::from_str(&list) {
                seen.insert(header::VARY, v);
            }
        }
        let explicit = has_directive(&resp.headers, "max-age")
            || has_directive(&resp.headers, "s-maxage")
            || resp.headers.contains_key(header::EXPIRES);
        if !explicit && self.default_ttl > 0 {
            if let Ok(v) = HeaderValue::from_str(&format!("max-age={}", self.default_ttl)) {
                seen.append(header::CACHE_CONTROL, v);
            }
        }
        let request = PolicyRequest {
            headers: policy_headers(req_headers, &vary),
        };
        let policy = CachePolicy::new_options(
            &request,
            &PolicyResponse {
                status: resp.status,
                headers: &seen,
            },
            now,
            CacheOptions::default(),
        );
        if !policy.is_storable() {
            return None;
        }
        let ttl = policy.time_to_live(now);
        let validators = resp.headers.contains_key(header::ETAG)
            || resp.headers.contains_key(header::LAST_MODIFIED);
        let swr = directive_secs(&resp.headers, "stale-while-revalidate").unwrap_or(self.swr);
        let sie = directive_secs(&resp.headers, "stale-if-error").unwrap_or(self.sie);
        // A response stale on arrival is only worth keeping when it can be revalidated or
        // served stale.
        if ttl.is_zero() && !validators && swr.is_zero() && sie.is_zero() {
            return None;
        }
        let mut headers = resp.headers.clone();
        headers.remove(header::AGE);
        headers.remove(X_CACHE);
        Some(Prepared {
            status: resp.status,
            headers,
            policy,
            vary,
            tags,
            fresh_until: now + ttl,
            swr,
            sie,
            public,
        })
    }
}

/// An entry before its body is in.
pub struct Prepared {
    status: StatusCode,
    headers: HeaderMap,
    policy: CachePolicy,
    vary: Box<[HeaderName]>,
    tags: Box<[Box<str>]>,
    fresh_until: SystemTime,
    swr: Duration,
    sie: Duration,
    public: bool,
}

impl Prepared {
    pub fn into_entry(self, body: Bytes) -> Entry {
        Entry {
            status: self.status,
            headers: self.headers,
            body,
            policy: self.policy,
            vary: self.vary,
            tags: self.tags,
            stored_unix_ms: model::unix_ms(),
            fresh_until: self.fresh_until,
            stale_while_revalidate: self.swr,
            stale_if_error: self.sie,
            public: self.public,
            hits: AtomicU64::new(0),
            encoded: std::sync::OnceLock::new(),
        }
    }
}

/// The header names a response varies on, without `accept-encoding` when the variant covers
/// it; `None` for `Vary: *` and for a response that varies on credentials (never stored).
fn vary_names(headers: &HeaderMap, covers_accept_encoding: bool) -> Option<Box<[HeaderName]>> {
    let mut out = Vec::new();
    for v in headers.get_all(header::VARY) {
        let Ok(v) = v.to_str() else {
            return None;
        };
        for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                return None;
            }
            let Ok(name) = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) else {
                return None;
            };
            if covers_accept_encoding && name == header::ACCEPT_ENCODING {
                continue;
            }
            // Varying on credentials would keep them with the entry (in memory and on disk).
            if name == header::AUTHORIZATION
                || name == header::COOKIE
                || name == header::PROXY_AUTHORIZATION
            {
                return None;
            }
            if !out.contains(&name) {
                out.push(name);
            }
        }
    }
    Some(out.into())
}

/// The request headers the policy reads: cache directives and the varying headers.
fn policy_headers(req: &HeaderMap, vary: &[HeaderName]) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in [header::CACHE_CONTROL, header::PRAGMA]
        .iter()
        .chain(vary.iter())
    {
        for v in req.get_all(name) {
            out.append(name.clone(), v.clone());
        }
    }
    out
}

/// Whether `Cache-Control` carries `name` (with or without a value).
pub fn has_directive(headers: &HeaderMap, name: &str) -> bool {
    directive(headers, name).is_some()
}

fn directive<'h>(headers: &'h HeaderMap, name: &str) -> Option<Option<&'h str>> {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|d| {
            let (k, v) = match d.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
                None => (d.trim(), None),
            };
            k.eq_ignore_ascii_case(name).then_some(v)
        })
}

fn directive_secs(headers: &HeaderMap, name: &str) -> Option<Duration> {
    directive(headers, name)
        .flatten()
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// The request as the policy sees it: always GET (a HEAD is answered from a GET's entry), a
/// fixed URI (the key picked the entry), and only the headers its rules read.
pub struct PolicyRequest {
    headers: HeaderMap,
}

impl PolicyRequest {
    pub fn for_entry(req: &HeaderMap, entry: &Entry) -> PolicyRequest {
        PolicyRequest {
            headers: policy_headers(req, &entry.vary),
        }
    }
}

static GET: Method = Method::GET;

impl RequestLike for PolicyRequest {
    fn uri(&self) -> Uri {
        Uri::from_static("/")
    }
    fn is_same_uri(&self, _other: &Uri) -> bool {
        true
    }
    fn method(&self) -> &Method {
        &GET
    }
    fn headers(&self) -> &HeaderMap {
        &self.headers
    }
}

pub struct PolicyResponse<'a> {
    pub status: StatusCode,
    pub headers: &'a HeaderMap,
}

impl ResponseLike for PolicyResponse<'_> {
    fn status(&self) -> StatusCode {
        self.status
    }
    fn headers(&self) -> &HeaderMap {
        self.headers
    }
}

/// How a lookup found an entry.
pub enum Freshness {
    /// Serve it.
    Fresh,
    /// Stale for this request (or the client asked to revalidate); `matches` is false when
    /// the entry is another variant (`Vary`).
    Stale { matches: bool },
}

/// Judges `entry` for a request with `req` headers.
pub fn freshness(entry: &Entry, req: &HeaderMap, now: SystemTime) -> Freshness {
    // The common case, decided as the policy would: no request directives, no Vary, fresh.
    if entry.vary.is_empty()
        && !req.contains_key(header::CACHE_CONTROL)
        && !req.contains_key(header::PRAGMA)
    {
        return if now < entry.fresh_until {
            Freshness::Fresh
        } else {
            Freshness::Stale { matches: true }
        };
    }
    match entry
        .policy
        .before_request(&PolicyRequest::for_entry(req, entry), now)
    {
        http_cache_semantics::BeforeRequest::Fresh(_) => Freshness::Fresh,
        http_cache_semantics::BeforeRequest::Stale { matches, .. } => Freshness::Stale { matches },
    }
}

/// The response a stored entry gives: its head with `Age` and `X-Cache`, its body (none for a
/// HEAD), or 304 when the client's `If-None-Match` names its entity tag. `h1`: the client speaks
/// HTTP/1.x, whose server takes the stored fields already encoded (one reference, not a copy of
/// every field) and adds `Age` and `X-Cache` from the head's own map.
pub fn serve(
    entry: &Entry,
    result: CacheResult,
    now: SystemTime,
    head: bool,
    req: &HeaderMap,
    h1: bool,
) -> Response<Body> {
    entry.hits.fetch_add(1, Ordering::Relaxed);
    let age = entry.policy.age(now).as_secs();
    if not_modified(entry, req) {
        let mut resp = Response::new(body::empty());
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        let h = resp.headers_mut();
        for name in [
            header::ETAG,
            header::CACHE_CONTROL,
            header::EXPIRES,
            header::VARY,
            header::CONTENT_LOCATION,
            header::DATE,
        ] {
            if let Some(v) = entry.headers.get(&name) {
                h.insert(name, v.clone());
            }
        }
        h.insert(header::AGE, HeaderValue::from(age));
        h.insert(X_CACHE, result.header());
        return resp;
    }
    let body = if head {
        body::empty()
    } else {
        body::full(entry.body.clone())
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = entry.status;
    if h1 {
        resp.extensions_mut().insert(entry.encoded().clone());
    } else {
        *resp.headers_mut() = entry.headers.clone();
    }
    let h = resp.headers_mut();
    if head {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(entry.body.len()));
    }
    h.insert(header::AGE, HeaderValue::from(age));
    h.insert(X_CACHE, result.header());
    resp
}

/// Whether the client's `If-None-Match` names the entry's entity tag (weak comparison).
fn not_modified(entry: &Entry, req: &HeaderMap) -> bool {
    let Some(inm) = req.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(etag) = entry
        .headers
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_string();
    let mine = opaque(etag);
    inm.split(',').any(|t| t.trim() == "*" || opaque(t) == mine)
}

/// The conditional headers that revalidate `entry` upstream.
pub fn add_validators(entry: &Entry, headers: &mut HeaderMap) {
    if let Some(etag) = entry.headers.get(header::ETAG) {
        headers.insert(header::IF_NONE_MATCH, etag.clone());
    }
    if let Some(lm) = entry.headers.get(header::LAST_MODIFIED) {
        headers.insert(header::IF_MODIFIED_SINCE, lm.clone());
    }
}

/// The entry a 304 refreshes: the policy updated by http-cache-semantics, and the stored head
/// with the 304's freshness and validator fields.
pub fn refresh(
    entry: &Entry,
    req: &HeaderMap,
    not_modified: &http::response::Parts,
    now: SystemTime,
) -> Option<Entry> {
    let request = PolicyRequest::for_entry(req, entry);
    let response = PolicyResponse {
        status: not_modified.status,
        headers: &not_modified.headers,
    };
    match entry.policy.after_response(&request, &response, now) {
        http_cache_semantics::AfterResponse::NotModified(policy, _) => {
            let mut headers = entry.headers.clone();
            for name in [
                header::CACHE_CONTROL,
                header::EXPIRES,
                header::DATE,
                header::LAST_MODIFIED,
            ] {
                if let Some(v) = not_modified.headers.get(&name) {
                    headers.insert(name, v.clone());
                }
            }
            Some(entry.refreshed(headers, policy, now))
        }
        http_cache_semantics::AfterResponse::Modified(..) => None,
    }
}

pin_project_lite::pin_project! {
    /// A response body on its way to the client that is also kept for the cache: when it ends
    /// within the route's size bound, the entry is stored; then (or when it is dropped) the
    /// requests waiting on the same key are woken.
    pub struct StoreBody {
        #[pin]
        inner: Body,
        buf: BytesMut,
        max: u64,
        pending: Option<(Prepared, StoreKey, std::sync::Arc<CacheStore>)>,
        guard: Option<FlightGuard>,
    }
}

impl StoreBody {
    pub fn new(
        inner: Body,
        prepared: Prepared,
        key: StoreKey,
        store: std::sync::Arc<CacheStore>,
        max: u64,
        guard: Option<FlightGuard>,
    ) -> StoreBody {
        let empty = inner.is_end_stream();
        let mut b = StoreBody {
            inner,
            buf: BytesMut::new(),
            max,
            pending: Some((prepared, key, store)),
            guard,
        };
        if empty {
            // The client's side will never poll an empty body: store it now.
            finish(&mut b.pending, &mut b.buf, &mut b.guard);
        }
        b
    }
}

/// Stores what was kept, then wakes the waiters.
fn finish(
    pending: &mut Option<(Prepared, StoreKey, std::sync::Arc<CacheStore>)>,
    buf: &mut BytesMut,
    guard: &mut Option<FlightGuard>,
) {
    if let Some((prepared, key, store)) = pending.take() {
        let body = std::mem::take(buf).freeze();
        store.insert(key, std::sync::Arc::new(prepared.into_entry(body)));
    }
    *guard = None;
}

impl hyper::body::Body for StoreBody {
    type Data = Bytes;
    type Error = body::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, body::BoxError>>> {
        use std::task::Poll;
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if this.pending.is_some() {
                    match frame.data_ref() {
                        Some(d) if (this.buf.len() + d.len()) as u64 <= *this.max => {
                            this.buf.extend_from_slice(d);
                            // A body that knows it is done is not polled again.
                            if this.inner.is_end_stream() {
                                finish(this.pending, this.buf, this.guard);
                            }
                        }
                        // Too large, or trailers: pass it on without storing.
                        _ => {
                            *this.pending = None;
                            *this.buf = BytesMut::new();
                            *this.guard = None;
                        }
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => {
                *this.pending = None;
                *this.guard = None;
            }
            Poll::Ready(None) => finish(this.pending, this.buf, this.guard),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
