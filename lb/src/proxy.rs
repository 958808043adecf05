//! The HTTP/1.1 reverse-proxy request path: route, pick a member, forward, classify failures.
//!
//! **Architecture Invariant:** the request path loads the routing snapshot once per request and
//! takes no lock; health is read from atomics.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body as _, Incoming};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::error::ProxyError;
use crate::metrics::{LbMetrics, StatusCounters};
use crate::snapshot::{PoolSnapshot, RoutingSnapshot};

pub type Body = BoxBody<Bytes, hyper::Error>;

/// State shared by every connection of every listener.
pub struct Shared {
    pub snapshot: ArcSwap<RoutingSnapshot>,
    client: Client<HttpConnector, Body>,
    pub metrics: LbMetrics,
}

impl Shared {
    pub fn new(metrics: LbMetrics) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(5)));
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(connector);
        Shared {
            snapshot: ArcSwap::from_pointee(RoutingSnapshot::default()),
            client,
            metrics,
        }
    }
}

/// The listener a connection arrived on, as the request path needs it.
pub struct ListenerCtx {
    pub name: Arc<str>,
    pub counters: StatusCounters,
}

/// Serves one request that arrived on `listener` from `peer`.
pub async fn handle(
    shared: Arc<Shared>,
    listener: Arc<ListenerCtx>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let snapshot = shared.snapshot.load_full();
    let resp = match forward(&shared, &snapshot, &listener.name, peer, req).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    };
    listener.counters.inc(resp.status());
    Ok(resp)
}

async fn forward(
    shared: &Shared,
    snapshot: &RoutingSnapshot,
    listener: &str,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, ProxyError> {
    let host = match request_host(&req) {
        Some(h) => h,
        // HTTP/1.0 may omit Host; such a request can only match a route for any host.
        None if req.version() <= http::Version::HTTP_10
            && !req.headers().contains_key(header::HOST) =>
        {
            String::new()
        }
        None => return Err(ProxyError::BadRequest("missing or invalid Host")),
    };
    if has_dot_segments(req.uri().path()) {
        // `/api/../admin` must not reach the api pool's neighbours by way of the api route.
        return Err(ProxyError::BadRequest("dot-segments in the path"));
    }
    let route = snapshot
        .route(listener, &host, req.uri().path())
        .ok_or(ProxyError::NoRoute)?;
    let pool: &PoolSnapshot = &route.pool;

    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    add_forwarded(&mut parts.headers, peer.ip(), &host);
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));

    // A request without a body can be replayed on another member when the first connect
    // fails; only then is a copy of the head kept.
    let attempts = if body.is_end_stream() && pool.members.len() > 1 {
        2
    } else {
        1
    };
    let mut body = Some(body.boxed());
    let mut parts = Some(parts);
    let mut tried: Option<SocketAddr> = None;
    let mut last_err = ProxyError::NoHealthyMember(pool.name.clone());
    for attempt in 1..=attempts {
        let Some(member) = pool.pick(tried) else {
            break;
        };
        tried = Some(member.addr);
        let head = if attempt < attempts {
            parts.clone()
        } else {
            parts.take()
        };
        let Some(mut head) = head else {
            break;
        };
        head.uri = Uri::from_parts({
            let mut u = http::uri::Parts::default();
            u.scheme = Some(Scheme::HTTP);
            u.authority = Some(member.authority.clone());
            u.path_and_query = Some(path.clone());
            u
        })
        .map_err(|_| ProxyError::BadRequest("invalid request target"))?;
        let b = body
            .take()
            .unwrap_or_else(|| Empty::new().map_err(|never| match never {}).boxed());
        match send(shared, member.addr, pool, Request::from_parts(head, b)).await {
            Ok(resp) => return Ok(resp),
            Err(e) if e.retryable() => last_err = e,
            Err(e) => return Err(e),
        }
    }
    Err(last_err)
}

async fn send(
    shared: &Shared,
    addr: SocketAddr,
    pool: &PoolSnapshot,
    req: Request<Body>,
) -> Result<Response<Body>, ProxyError> {
    let resp = match tokio::time::timeout(pool.timeout, shared.client.request(req)).await {
        Err(_) => return Err(ProxyError::Timeout(addr)),
        Ok(Err(e)) if e.is_connect() => return Err(ProxyError::Connect(addr)),
        Ok(Err(e)) => {
            return Err(ProxyError::Upstream {
                addr,
                reason: e.to_string(),
            })
        }
        Ok(Ok(resp)) => resp,
    };
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, body.boxed()))
}

/// The request's host, lowercased and without a port, from the Host header or the URI.
fn request_host<B>(req: &Request<B>) -> Option<String> {
    let raw = match req.headers().get(header::HOST) {
        Some(h) => h.to_str().ok()?.to_string(),
        None => req.uri().host()?.to_string(),
    };
    let host = if let Some(rest) = raw.strip_prefix('[') {
        // [v6]:port
        let end = rest.find(']')?;
        &raw[..end + 2]
    } else {
        raw.rsplit_once(':').map_or(raw.as_str(), |(h, _)| h)
    };
    // A fully qualified `example.com.` is the same host as `example.com`.
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > 255 {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

/// `.` or `..` segments, also percent-encoded, which upstreams may resolve differently than
/// routing did.
fn has_dot_segments(path: &str) -> bool {
    path.split('/').any(|seg| {
        let seg = seg.to_ascii_lowercase().replace("%2e", ".");
        seg == "." || seg == ".."
    })
}

/// Headers that describe one hop (RFC 9110 §7.6.1) or belong to a proxy, never forwarded.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

fn add_forwarded(headers: &mut HeaderMap, client: IpAddr, host: &str) {
    let xff = HeaderName::from_static("x-forwarded-for");
    // Several X-Forwarded-For headers form one list (RFC 9110 §5.3).
    let mut value = headers
        .get_all(&xff)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ");
    if !value.is_empty() {
        value.push_str(", ");
    }
    value.push_str(&client.to_string());
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(xff, v);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("http"),
    );
    if let Ok(v) = HeaderValue::from_str(host) {
        headers.insert(HeaderName::from_static("x-forwarded-host"), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(host: Option<&str>, uri: &str) -> Request<()> {
        let mut b = Request::get(uri);
        if let Some(h) = host {
            b = b.header(header::HOST, h);
        }
        b.body(()).expect("request")
    }

    #[test]
    fn host_is_lowercased_and_port_stripped() {
        assert_eq!(
            request_host(&req(Some("App.Example.com:8080"), "/")),
            Some("app.example.com".into())
        );
        assert_eq!(
            request_host(&req(Some("[::1]:80"), "/")),
            Some("[::1]".into())
        );
        assert_eq!(
            request_host(&req(None, "http://h.test/x")),
            Some("h.test".into())
        );
        assert_eq!(request_host(&req(None, "/x")), None);
        assert_eq!(request_host(&req(Some(""), "/")), None);
        assert_eq!(
            request_host(&req(Some("A.test."), "/")),
            Some("a.test".into())
        );
    }

    #[test]
    fn dot_segments_are_spotted_even_when_encoded() {
        assert!(has_dot_segments("/api/../admin"));
        assert!(has_dot_segments("/api/%2E%2e/admin"));
        assert!(has_dot_segments("/./x"));
        assert!(!has_dot_segments("/a.b/c..d/.well-known"));
    }

    #[test]
    fn forwarded_headers_append_client_and_hop_by_hop_are_removed() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.8"));
        h.append("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        h.insert(
            "proxy-authorization",
            HeaderValue::from_static("Basic eA=="),
        );
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        strip_hop_by_hop(&mut h);
        add_forwarded(&mut h, "10.1.2.3".parse().expect("ip"), "a.test");
        assert_eq!(
            h.get("x-forwarded-for").map(|v| v.as_bytes()),
            Some(&b"203.0.113.8, 203.0.113.9, 10.1.2.3"[..])
        );
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert!(h.get("proxy-authorization").is_none());
        assert!(h.get("x-secret").is_none());
        assert!(h.get("keep-alive").is_none());
        assert!(h.get(header::CONNECTION).is_none());
        assert_eq!(
            h.get("x-forwarded-host").map(|v| v.as_bytes()),
            Some(&b"a.test"[..])
        );
    }
}
