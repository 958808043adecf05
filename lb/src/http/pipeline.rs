//! The HTTP request pipeline: a fixed phase order, each phase a function, one context per
//! request. The order (drawn in ARCHITECTURE.md):
//!
//! 1. request-head checks (`checks`)    2. route (`ListenerSnapshot::route`)
//! 3. request filters (`filter`)        4. cache lookup (`cache`)
//! 5. upstream selection (`balance`)    6. upstream request (`forward`, retries)
//! 7. response filters (`filter`)       8. response body filters (`filter::compress`, then
//!    the cache stores the final variant)
//! 9. log (`log_request`: metrics, access log)
//!
//! **Architecture Invariant:** the pipeline loads the routing snapshot once per request, takes
//! no lock and never panics on input; every failure becomes a `ProxyError` classified in
//! `error.rs`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Body as _;

use crate::accesslog::Record;
use crate::body::{self, Body, ClientBody, ClientBodyFault, ClientBodyState, RequestBody};
use crate::cache::{
    CacheResult, CacheStore, Entry, Flight, FlightGuard, Freshness, RouteCache, StoreKey,
};
use crate::error::ProxyError;
use crate::filter::{FilterEnv, RequestView};
use crate::http::checks;
use crate::http::ctx::{ConnCtx, RequestCtx};
use crate::http::headers;
use crate::http::upgrade;
use crate::snapshot::{ListenerSnapshot, PoolSnapshot};
use crate::upstream::SendError;

/// Serves one request that arrived on the connection `conn`.
pub async fn handle(
    conn: Arc<ConnCtx>,
    mut req: Request<RequestBody>,
) -> Result<Response<Body>, Infallible> {
    let snapshot = conn.shared.snapshot.load_full();
    let mut ctx = RequestCtx::new(req.method().clone(), req.version());
    let Some(listener) = snapshot.listener(conn.bind) else {
        // The listener left the config while this connection was open; it is draining.
        return Ok(ProxyError::ListenerGone.into_response());
    };
    // The access log's host and target, taken before the request moves on (only when logging).
    let log_target = conn.shared.access_log.as_ref().map(|_| {
        let host = req
            .uri()
            .host()
            .or_else(|| {
                req.headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
            .unwrap_or("")
            .to_string();
        let target = req
            .uri()
            .path_and_query()
            .map_or_else(|| "/".to_string(), |pq| pq.as_str().to_string());
        (host, target)
    });
    let on_upgrade = upgrade::on(&mut req);
    // The server drops this future when the client goes away mid-request: count that as an abort.
    let mut in_flight = InFlight(Some(&listener.metrics.aborted));
    let result = proxy(&conn, listener, &mut ctx, req, on_upgrade).await;
    in_flight.0 = None;
    let mut resp = match result {
        Ok(resp) => resp,
        Err(e) => {
            ctx.error = Some(e.label());
            match &e {
                ProxyError::ClientAbort => listener.metrics.aborted.inc(),
                e if e.side() == crate::Side::Downstream && !matches!(e, ProxyError::NoRoute) => {
                    listener.metrics.bad_request.inc();
                    if let Some(check) = e.check() {
                        listener.metrics.check_failed(check);
                    }
                }
                _ => {}
            }
            e.into_response()
        }
    };
    if let Some(id) = &ctx.request_id {
        resp.headers_mut().insert(headers::X_REQUEST_ID, id.clone());
    }
    log_request(&conn, listener, &ctx, resp.status(), log_target);
    Ok(resp)
}

async fn proxy<'s>(
    conn: &ConnCtx,
    listener: &'s ListenerSnapshot,
    ctx: &mut RequestCtx<'s>,
    req: Request<RequestBody>,
    on_upgrade: Option<tokio::sync::oneshot::Receiver<crate::listener::io::ListenerIo>>,
) -> Result<Response<Body>, ProxyError> {
    let (mut parts, body) = req.into_parts();

    // 1. Request-head checks.
    let source = checks::request_head(
        &parts,
        listener.limits.max_request_line_bytes,
        parts
            .extensions
            .get::<crate::http::h1::FramingRefused>()
            .is_some(),
    )?;
    let host = source.host();

    // 2. Route.
    let route = listener
        .route(&host, parts.uri.path())
        .ok_or(ProxyError::NoRoute)?;
    ctx.route = Some(route);
    let pool: &PoolSnapshot = &route.pool;

    // Access rules, then the rate limit (which may hold the request, or refuse it).
    let client = conn.peer.ip();
    if let Some(rules) = &route.access {
        if let Some(resp) = rules.check(client, &parts.method) {
            ctx.error = Some("access_denied");
            return Ok(resp);
        }
    }
    let _slot = match &route.rate_limit {
        Some(limit) => match limit.admit(client, &parts.headers).await {
            Ok(slot) => slot,
            Err(refusal) => {
                ctx.error = Some("rate_limited");
                return Ok(crate::filter::limit::refused(&refusal));
            }
        },
        None => None,
    };

    // 3. Request filters.
    let mut pq = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    if !route.filters.is_empty() {
        let env = FilterEnv {
            now: ctx.start,
            random: conn.shared.random(),
        };
        let authority = source.raw();
        let mut view = RequestView {
            scheme: conn.scheme,
            authority,
            host: &host,
            path_and_query: &mut pq,
            headers: &mut parts.headers,
        };
        if let Some(mut resp) = route.filters.on_request(&mut view, &env) {
            route.filters.on_response(resp.headers_mut());
            return Ok(resp);
        }
    }
    // The coding the client accepts, decided on its own headers before they go upstream.
    let encoding = route
        .compression
        .as_ref()
        .and_then(|c| c.negotiate(&parts.headers));

    // 4. Cache lookup: a stored answer ends the request here.
    let mut cached = match &route.cache {
        Some(rc) => match cache_lookup(conn, rc, &parts, &host, encoding, pool).await {
            Ok(c) => Some(c),
            Err(resp) => return Ok(resp),
        },
        None => None,
    };
    if let Some(c) = cached.as_ref().filter(|c| !c.bypass) {
        // The client's own validators are answered here; upstream sees ours (if any). With
        // compression on, upstream sends identity and each coding is a variant of its own.
        parts.headers.remove(header::IF_NONE_MATCH);
        parts.headers.remove(header::IF_MODIFIED_SINCE);
        if route.compression.is_some() {
            parts.headers.remove(header::ACCEPT_ENCODING);
        }
        if let Some(e) = c.stale.as_ref().or(c.background.as_ref()) {
            crate::cache::add_validators(e, &mut parts.headers);
        }
    }

    // Head rewrite for the upstream.
    let upgrade = on_upgrade
        .filter(|_| !pool.http2)
        .map(|on| (on, parts.headers.get(header::UPGRADE).cloned()));
    let chunked =
        ctx.version == Version::HTTP_11 && parts.headers.contains_key(header::TRANSFER_ENCODING);
    headers::strip_hop_by_hop(&mut parts.headers, pool.http2);
    if let Some((_, Some(proto))) = &upgrade {
        parts.headers.insert(header::UPGRADE, proto.clone());
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    ctx.request_id = Some(conn.shared.request_ids.ensure(&mut parts.headers));
    let host_value = source.header_value();
    let host_authority = pool.http2.then(|| source.authority()).flatten();
    if !pool.http2 && !parts.headers.contains_key(header::HOST) {
        // An HTTP/2 client sends :authority, an HTTP/1.1 upstream needs Host.
        if let Some(h) = &host_value {
            parts.headers.insert(header::HOST, h.clone());
        }
    }
    if host_authority.is_some() {
        // :authority carries it on HTTP/2.
        parts.headers.remove(header::HOST);
    }
    headers::add_forwarded(&mut parts.headers, &conn.client_headers, host_value);
    parts.version = if pool.http2 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };

    // Stale within stale-while-revalidate: answered now, refreshed by one request behind it.
    if let Some(c) = cached.as_mut() {
        if let Some(entry) = c.background.take() {
            let now = SystemTime::now();
            let resp =
                crate::cache::serve(&entry, CacheResult::Stale, now, c.head, &c.client, false);
            if let Some(member) = pool.candidates().next().and_then(|i| pool.members.get(i)) {
                let mut head = parts.clone();
                head.uri = member_uri(pool, member, host_authority.as_ref(), &pq)?;
                tokio::spawn(background_refresh(
                    conn.shared.clone(),
                    conn.bind,
                    host.to_string(),
                    parts.uri.path().to_string(),
                    head,
                    member.addr,
                    entry,
                    c.take(),
                    encoding,
                ));
            }
            return Ok(resp);
        }
    }
    drop(host);

    // The body: a chunked HTTP/1.1 body is read one frame ahead so that one malformed from its
    // first chunk is refused before anything goes upstream.
    let mut body = body;
    let replayable = body.is_end_stream();
    // A request without a body needs no wrapper (and no allocation) to watch the client's side.
    let body_state = (!replayable).then(|| Arc::new(ClientBodyState::default()));
    let first = match &body_state {
        Some(state) if chunked && upgrade.is_none() => {
            match ClientBody::read_ahead(&mut body, state).await {
                Ok(f) => f,
                Err(ClientBodyFault::Aborted) => return Err(ProxyError::ClientAbort),
                Err(ClientBodyFault::Malformed) => {
                    return Err(ProxyError::BadFraming("malformed request body"))
                }
                Err(ClientBodyFault::TooLarge) => return Err(ProxyError::PayloadTooLarge),
            }
        }
        _ => None,
    };
    let mut body = Some(match &body_state {
        Some(state) => ClientBody::new(body, first, state.clone()).boxed(),
        None => body::empty(),
    });
    // Request decompression: the whole body, decoded up to the route's cap, goes upstream plain.
    let decompress = route.compression.as_ref().and_then(|c| {
        let max = c.decompress_max()?;
        let codec = crate::filter::compress::request_codec(&parts.headers)?;
        Some((codec, max))
    });
    // Only a body that is to be decoded is taken here; any other goes upstream as it came.
    if let Some(((codec, max), b)) = decompress
        .filter(|_| upgrade.is_none())
        .and_then(|d| Some((d, body.take()?)))
    {
        let metrics = &conn.shared.metrics.compression;
        match crate::filter::compress::decompress_request(b, codec, max, metrics).await {
            Ok(plain) => {
                parts.headers.remove(header::CONTENT_ENCODING);
                parts.headers.remove(header::TRANSFER_ENCODING);
                parts
                    .headers
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(plain.len()));
                body = Some(body::full(plain));
            }
            Err(ClientBodyFault::TooLarge) => return Err(ProxyError::PayloadTooLarge),
            Err(ClientBodyFault::Malformed) => {
                return Err(ProxyError::BadRequest(
                    "the request body is not valid for its Content-Encoding",
                ))
            }
            Err(ClientBodyFault::Aborted) => {
                return Err(match body_state.as_ref().and_then(|s| s.fault()) {
                    Some(ClientBodyFault::Malformed) => {
                        ProxyError::BadFraming("malformed request body")
                    }
                    _ => ProxyError::ClientAbort,
                })
            }
        }
    }

    // The pool's limit of requests in flight: one slot until the response starts.
    let _pool_slot = match &pool.in_flight {
        Some((max, counter)) => Some(
            crate::filter::limit::pool_slot(*max, counter)
                .ok_or_else(|| ProxyError::PoolBusy(pool.name.to_string()))?,
        ),
        None => None,
    };

    // 5. and 6. Upstream selection and request; a retry takes the next candidate.
    let attempts = if replayable { 1 + pool.retries } else { 1 };
    let mut candidates = pool.candidates();
    let mut parts = Some(parts);
    let mut last_err = ProxyError::NoHealthyMember(pool.name.to_string());
    let mut resp = None;
    for attempt in 1..=attempts {
        let Some(i) = candidates.next() else {
            break;
        };
        let Some(member) = pool.members.get(i) else {
            break;
        };
        // The head is copied only when another attempt may follow.
        let head = if attempt < attempts && pool.members.len() > 1 {
            parts.clone()
        } else {
            parts.take()
        };
        let Some(mut head) = head else {
            break;
        };
        head.uri = member_uri(pool, member, host_authority.as_ref(), &pq)?;
        let b = body.take().unwrap_or_else(body::empty);
        ctx.attempts = attempt;
        ctx.member = Some(member.addr);
        let started = Instant::now();
        member.metrics.active.inc();
        let result = forward(
            pool,
            member.addr,
            Request::from_parts(head, b),
            upgrade.is_some(),
        )
        .await;
        member.metrics.active.dec();
        match result {
            Ok(r) => {
                ctx.upstream_time = Some(started.elapsed());
                member.metrics.count(r.status(), started.elapsed());
                pool.metrics.request_sent();
                resp = Some(r);
                break;
            }
            Err(e) => {
                if matches!(e, ProxyError::Connect(_)) {
                    member.metrics.connect_failures.inc();
                }
                // A failure while the client's body was streaming is the client's.
                let e = match body_state.as_ref().and_then(|s| s.fault()) {
                    Some(ClientBodyFault::Aborted) => ProxyError::ClientAbort,
                    Some(ClientBodyFault::Malformed) => {
                        ProxyError::BadFraming("malformed request body")
                    }
                    Some(ClientBodyFault::TooLarge) => ProxyError::PayloadTooLarge,
                    None => e,
                };
                let retryable = e.retryable();
                last_err = e;
                if !retryable {
                    break;
                }
            }
        }
    }
    let Some(mut resp) = resp else {
        // stale-if-error: a stored answer beats an error page.
        if let Some(r) = cached.as_ref().and_then(|c| c.serve_stale_on_error()) {
            return Ok(r);
        }
        return Err(last_err);
    };
    // Revalidation: a 304 refreshes the stored answer; a 5xx may leave it served stale.
    if let Some(c) = cached.as_mut() {
        if resp.status() == StatusCode::NOT_MODIFIED {
            if let Some(r) = c.revalidated(&conn.shared.cache, resp.headers()) {
                return Ok(r);
            }
        } else if resp.status().is_server_error() {
            if let Some(r) = c.serve_stale_on_error() {
                return Ok(r);
            }
        }
    }

    // 7. Response filters.
    headers::strip_hop_by_hop(resp.headers_mut(), false);
    *resp.version_mut() = ctx.version;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some((down, proto)) = upgrade {
            upgrade::tunnel(down, hyper::upgrade::on(&mut resp));
            if let Some(p) = proto {
                resp.headers_mut().insert(header::UPGRADE, p);
            }
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
    }
    route.filters.on_response(resp.headers_mut());

    // 8. Response body filters: compression.
    if let Some(c) = &route.compression {
        let head = ctx.method == http::Method::HEAD;
        c.on_response(encoding, head, &mut resp, &conn.shared.metrics.compression);
    }
    // ... and the cache keeps the variant the client gets.
    if let Some(c) = cached {
        resp = c.store(resp, &conn.shared.cache, route.compression.is_some());
    }
    Ok(resp)
}

/// What phase 4 decided for a request on a caching route, carried to phase 8.
struct CacheCtx<'r> {
    rc: &'r RouteCache,
    key: StoreKey,
    /// Neither answered from nor stored in the cache.
    bypass: bool,
    /// An unsafe method: its success removes the stored answers for the URL.
    invalidate: bool,
    /// This request is the one upstream for the key; others wait for it.
    lead: Option<FlightGuard>,
    /// A stored answer being revalidated (conditional request upstream).
    stale: Option<Arc<Entry>>,
    /// A stored answer to serve now while one request refreshes it.
    background: Option<Arc<Entry>>,
    credentialed: bool,
    head: bool,
    /// The client's request headers (`Vary`, `If-None-Match`), before the upstream rewrite.
    client: http::HeaderMap,
}

impl CacheCtx<'_> {
    /// Moves the parts a background refresh needs out of this context.
    fn take(&mut self) -> Refresh {
        Refresh {
            key: self.key.clone(),
            lead: self.lead.take(),
            client: std::mem::take(&mut self.client),
        }
    }

    fn serve_stale_on_error(&self) -> Option<Response<Body>> {
        let entry = self.stale.as_ref()?;
        let now = SystemTime::now();
        if entry.staleness(now) > entry.stale_if_error {
            return None;
        }
        self.rc.count(CacheResult::Stale);
        Some(crate::cache::serve(
            entry,
            CacheResult::Stale,
            now,
            self.head,
            &self.client,
            false,
        ))
    }

    /// A 304 to our conditional request: the refreshed entry, stored and served.
    fn revalidated(
        &mut self,
        store: &Arc<CacheStore>,
        not_modified: &http::HeaderMap,
    ) -> Option<Response<Body>> {
        let entry = self.stale.as_ref()?;
        let now = SystemTime::now();
        let mut parts = Response::new(()).into_parts().0;
        parts.status = StatusCode::NOT_MODIFIED;
        parts.headers = not_modified.clone();
        let fresh = match crate::cache::refresh(entry, &self.client, &parts, now) {
            Some(e) => {
                let e = Arc::new(e);
                store.insert(self.key.clone(), e.clone());
                e
            }
            // Upstream's 304 does not match what is stored: the stored answer is all we have.
            None => entry.clone(),
        };
        self.lead = None;
        self.rc.count(CacheResult::Revalidated);
        Some(crate::cache::serve(
            &fresh,
            CacheResult::Revalidated,
            now,
            self.head,
            &self.client,
            false,
        ))
    }

    /// Phase 8: the final response goes out through the cache's writer when it may be stored.
    fn store(
        mut self,
        resp: Response<Body>,
        store: &Arc<CacheStore>,
        covers_accept_encoding: bool,
    ) -> Response<Body> {
        let (mut parts, body) = resp.into_parts();
        let ok = parts.status.is_success() || parts.status.is_redirection();
        if self.invalidate {
            if ok {
                store.invalidate(self.key.url());
            }
            self.rc.strip_tags(&mut parts.headers);
            return Response::from_parts(parts, body);
        }
        parts
            .headers
            .insert(crate::cache::X_CACHE, CacheResult::Miss.header());
        // A HEAD's answer has no body to keep (its revalidation with a 304 was handled before).
        if self.bypass || self.head {
            self.rc.strip_tags(&mut parts.headers);
            return Response::from_parts(parts, body);
        }
        if self.stale.is_some() {
            self.rc.count(CacheResult::Miss);
        }
        let now = SystemTime::now();
        let prepared = self.rc.prepare(
            &self.client,
            &mut parts,
            covers_accept_encoding,
            self.credentialed,
            now,
        );
        let body = match prepared {
            Some(p) => crate::cache::StoreBody::new(
                body,
                p,
                self.key,
                store.clone(),
                self.rc.max_object,
                self.lead.take(),
            )
            .boxed(),
            None => body,
        };
        Response::from_parts(parts, body)
    }
}

/// What a background refresh carries from the request that started it.
struct Refresh {
    key: StoreKey,
    lead: Option<FlightGuard>,
    client: http::HeaderMap,
}

/// Phase 4: answers from the cache when it can; otherwise says how the request goes upstream
/// (and, for a miss, makes it the one request for its key, or waits for that one).
async fn cache_lookup<'r>(
    conn: &ConnCtx,
    rc: &'r RouteCache,
    parts: &http::request::Parts,
    host: &str,
    encoding: Option<model::Codec>,
    pool: &PoolSnapshot,
) -> Result<CacheCtx<'r>, Response<Body>> {
    let store = &conn.shared.cache;
    let variant = encoding.map_or(0, |c| u8::try_from(c.index() + 1).unwrap_or(0));
    let credentialed = parts.headers.contains_key(header::AUTHORIZATION)
        || parts.headers.contains_key(header::COOKIE);
    let mut c = CacheCtx {
        rc,
        key: StoreKey {
            key: rc.key(host, &parts.uri, &parts.headers),
            variant,
        },
        bypass: false,
        invalidate: false,
        lead: None,
        stale: None,
        background: None,
        credentialed,
        head: parts.method == http::Method::HEAD,
        client: http::HeaderMap::new(),
    };
    // An answer from a stored entry, counted.
    let answer = |entry: &Entry, result: CacheResult, now: SystemTime| {
        rc.count(result);
        crate::cache::serve(
            entry,
            result,
            now,
            parts.method == http::Method::HEAD,
            &parts.headers,
            parts.version <= Version::HTTP_11,
        )
    };
    if !RouteCache::cacheable_request(&parts.method, &parts.headers) {
        c.bypass = true;
        c.invalidate = !parts.method.is_safe();
        rc.count(CacheResult::Bypass);
        return Ok(c);
    }
    let now = SystemTime::now();
    if let Some(entry) = store.get(&c.key).await {
        if credentialed && !entry.public {
            c.bypass = true;
            rc.count(CacheResult::Bypass);
            return Ok(c);
        }
        match crate::cache::freshness(&entry, &parts.headers, now) {
            Freshness::Fresh => return Err(answer(&entry, CacheResult::Hit, now)),
            Freshness::Stale { matches: true } => {
                let wants_fresh = crate::cache::has_directive(&parts.headers, "no-cache")
                    || parts.headers.contains_key(header::PRAGMA);
                if entry.staleness(now) <= entry.stale_while_revalidate && !wants_fresh {
                    match store.flight(&c.key) {
                        Flight::Lead(g) => {
                            rc.count(CacheResult::Stale);
                            c.lead = Some(g);
                            c.background = Some(entry);
                            c.client = parts.headers.clone();
                            return Ok(c);
                        }
                        // A refresh is under way already.
                        Flight::Wait(_) => return Err(answer(&entry, CacheResult::Stale, now)),
                    }
                }
                c.stale = Some(entry);
            }
            // Another variant of the resource (Vary): a miss that replaces it.
            Freshness::Stale { matches: false } => {}
        }
    } else if credentialed {
        // Stored only if the answer says public; never coalesced with other clients.
        rc.count(CacheResult::Miss);
        c.client = parts.headers.clone();
        return Ok(c);
    }
    if c.head && c.stale.is_none() {
        c.bypass = true;
        rc.count(CacheResult::Miss);
        return Ok(c);
    }
    match store.flight(&c.key) {
        Flight::Lead(g) => c.lead = Some(g),
        Flight::Wait(mut rx) => {
            rc.count_coalesced();
            // The leader's answer is stored before it wakes us (or it had none to store).
            let _ = tokio::time::timeout(pool.timeout, rx.changed()).await;
            if let Some(entry) = store.get(&c.key).await {
                let now = SystemTime::now();
                if (!credentialed || entry.public)
                    && matches!(
                        crate::cache::freshness(&entry, &parts.headers, now),
                        Freshness::Fresh
                    )
                {
                    return Err(answer(&entry, CacheResult::Hit, now));
                }
            }
        }
    }
    if c.stale.is_none() {
        rc.count(CacheResult::Miss);
    }
    c.client = parts.headers.clone();
    Ok(c)
}

/// Refreshes a stale entry behind the answer already given: a conditional request to one
/// member; a 304 refreshes the entry, a new answer goes through the route's response filters
/// and compression and is stored.
#[allow(clippy::too_many_arguments)]
async fn background_refresh(
    shared: Arc<crate::Shared>,
    bind: std::net::SocketAddr,
    host: String,
    path: String,
    head: http::request::Parts,
    addr: std::net::SocketAddr,
    entry: Arc<Entry>,
    refresh: Refresh,
    encoding: Option<model::Codec>,
) {
    let snapshot = shared.snapshot.load_full();
    let Some(route) = snapshot.listener(bind).and_then(|l| l.route(&host, &path)) else {
        return;
    };
    let Some(rc) = &route.cache else {
        return;
    };
    let Ok(mut resp) = forward(
        &route.pool,
        addr,
        Request::from_parts(head, body::empty()),
        false,
    )
    .await
    else {
        return;
    };
    let now = SystemTime::now();
    if resp.status() == StatusCode::NOT_MODIFIED {
        let (parts, _) = resp.into_parts();
        if let Some(fresh) = crate::cache::refresh(&entry, &refresh.client, &parts, now) {
            shared.cache.insert(refresh.key, Arc::new(fresh));
        }
        return;
    }
    headers::strip_hop_by_hop(resp.headers_mut(), false);
    route.filters.on_response(resp.headers_mut());
    if let Some(c) = &route.compression {
        c.on_response(encoding, false, &mut resp, &shared.metrics.compression);
    }
    let (mut parts, body) = resp.into_parts();
    let Some(prepared) = rc.prepare(
        &refresh.client,
        &mut parts,
        route.compression.is_some(),
        false,
        now,
    ) else {
        return;
    };
    // Drained here (no client): the cache's writer keeps the body and stores it at its end,
    // within the route's size bound, then releases the key.
    let mut body = crate::cache::StoreBody::new(
        body,
        prepared,
        refresh.key,
        shared.cache.clone(),
        rc.max_object,
        refresh.lead,
    );
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            return;
        }
    }
}

/// The request target for `member`: HTTP/2 carries the client's host as :authority (the member
/// is only where to connect); HTTP/1.1 sends origin-form and the Host header names the host.
fn member_uri(
    pool: &PoolSnapshot,
    member: &crate::snapshot::MemberSnapshot,
    host_authority: Option<&http::uri::Authority>,
    pq: &PathAndQuery,
) -> Result<Uri, ProxyError> {
    match (host_authority, pool.http2) {
        (Some(a), true) => upstream_uri(a, pq),
        (None, true) => upstream_uri(&member.authority, pq),
        (_, false) => Ok(Uri::from(pq.clone())),
    }
}

/// Counts a client abort when dropped before the pipeline finished.
struct InFlight<'a>(Option<&'a prometheus::IntCounter>);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(aborted) = self.0 {
            aborted.inc();
        }
    }
}

fn upstream_uri(authority: &http::uri::Authority, pq: &PathAndQuery) -> Result<Uri, ProxyError> {
    let mut u = http::uri::Parts::default();
    u.scheme = Some(Scheme::HTTP);
    u.authority = Some(authority.clone());
    u.path_and_query = Some(pq.clone());
    Uri::from_parts(u).map_err(|_| ProxyError::BadRequest("invalid request target"))
}

/// One upstream exchange, bounded by the pool's timeout up to the response head.
async fn forward(
    pool: &PoolSnapshot,
    addr: std::net::SocketAddr,
    req: Request<Body>,
    upgrade: bool,
) -> Result<Response<Body>, ProxyError> {
    match tokio::time::timeout(pool.timeout, pool.client.send(addr, req, upgrade)).await {
        Err(_) => Err(ProxyError::Timeout(addr)),
        Ok(Err(SendError::Connect)) => Err(ProxyError::Connect(addr)),
        Ok(Err(SendError::Other(reason))) => Err(ProxyError::Upstream { addr, reason }),
        Ok(Ok(resp)) => Ok(resp),
    }
}

/// 9. Log: listener and route metrics always, the access log when one is configured.
fn log_request(
    conn: &ConnCtx,
    listener: &ListenerSnapshot,
    ctx: &RequestCtx<'_>,
    status: StatusCode,
    target: Option<(String, String)>,
) {
    let elapsed = ctx.start.elapsed();
    listener.metrics.count(status, elapsed);
    if let Some(route) = ctx.route {
        route.metrics.count(status, elapsed);
    }
    let (Some(log), Some((host, path))) = (&conn.shared.access_log, target) else {
        return;
    };
    log.log(Record {
        time: SystemTime::now(),
        listener: listener.name.clone(),
        client: conn.peer,
        method: ctx.method.clone(),
        host,
        path,
        version: ctx.version,
        status: status.as_u16(),
        route: ctx.route.map(|r| r.name.clone()),
        pool: ctx.route.map(|r| r.pool.name.clone()),
        member: ctx.member,
        attempts: ctx.attempts,
        duration_ms: elapsed.as_secs_f64() * 1000.0,
        upstream_ms: ctx.upstream_time.map(|d| d.as_secs_f64() * 1000.0),
        request_id: ctx
            .request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        error: ctx.error,
    });
}
