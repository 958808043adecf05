//! Header rewriting between the client and the upstream: hop-by-hop headers are dropped, and the
//! proxy's own headers (`X-Forwarded-*`, `Forwarded`, `X-Request-Id`) are added.
//!
//! The per-connection parts (the client address as a header value) are built once when the
//! connection is accepted, so a request without client-sent forwarding headers adds them without
//! allocating.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const FORWARDED: HeaderName = header::FORWARDED;

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

/// Removes hop-by-hop headers and those the `Connection` header lists. `te: trailers` survives
/// when `keep_te_trailers` (an HTTP/2 upstream, where gRPC needs it).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_te_trailers: bool) {
    // One pass over the names finds which hop-by-hop headers are there (comparing standard
    // names is an enum compare); most messages carry one or none, so most removals are skipped.
    let mut present = [false; 9];
    let mut any = false;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present[i] = true;
            any = true;
        }
    }
    if !any {
        return;
    }
    let te_trailers = keep_te_trailers
        && headers
            .get(header::TE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    // Only a `Connection` header that names more than close/keep-alive/upgrade costs a list.
    let mut listed: Vec<HeaderName> = Vec::new();
    for v in headers.get_all(header::CONNECTION) {
        for token in v.to_str().unwrap_or("").split(',') {
            let token = token.trim();
            if token.is_empty()
                || token.eq_ignore_ascii_case("close")
                || token.eq_ignore_ascii_case("keep-alive")
                || token.eq_ignore_ascii_case("upgrade")
            {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                listed.push(name);
            }
        }
    }
    for name in &listed {
        headers.remove(name);
    }
    for (name, there) in HOP_BY_HOP.iter().zip(present) {
        if there {
            headers.remove(name);
        }
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// The forwarding headers that depend only on the connection.
#[derive(Debug, Clone)]
pub struct ClientHeaders {
    pub ip: HeaderValue,
    pub forwarded: HeaderValue,
    pub proto: HeaderValue,
    /// HTTPS listeners with client certificates: the headers that carry it, and their values
    /// when the client presented one.
    pub client_cert: Option<Box<ClientCertHeaders>>,
}

#[derive(Debug, Clone)]
pub struct ClientCertHeaders {
    pub subject_name: HeaderName,
    pub sans_name: HeaderName,
    pub values: Option<(HeaderValue, HeaderValue)>,
}

impl ClientHeaders {
    pub fn new(client: IpAddr, scheme: &'static str) -> ClientHeaders {
        let ip = client.to_string();
        // RFC 7239 §6: an IPv6 node is quoted and bracketed.
        let node = if client.is_ipv6() {
            format!("\"[{ip}]\"")
        } else {
            ip.clone()
        };
        ClientHeaders {
            ip: HeaderValue::from_str(&ip).unwrap_or(HeaderValue::from_static("unknown")),
            forwarded: HeaderValue::from_str(&format!("for={node};proto={scheme}"))
                .unwrap_or(HeaderValue::from_static("for=unknown")),
            proto: HeaderValue::from_static(scheme),
            client_cert: None,
        }
    }
}

/// Adds `X-Forwarded-For` (appended to the client's list), `-Proto`, `-Host`, and `Forwarded`.
pub fn add_forwarded(headers: &mut HeaderMap, client: &ClientHeaders, host: Option<HeaderValue>) {
    // Several X-Forwarded-For headers form one list (RFC 9110 §5.3).
    let mut prior = headers.get_all(X_FORWARDED_FOR).iter();
    let xff = match (prior.next(), prior.next()) {
        (None, _) => client.ip.clone(),
        (Some(first), second) => {
            let mut value: Vec<u8> = first.as_bytes().to_vec();
            for v in second.into_iter().chain(prior) {
                value.extend_from_slice(b", ");
                value.extend_from_slice(v.as_bytes());
            }
            value.extend_from_slice(b", ");
            value.extend_from_slice(client.ip.as_bytes());
            HeaderValue::from_bytes(&value).unwrap_or_else(|_| client.ip.clone())
        }
    };
    headers.insert(X_FORWARDED_FOR, xff);
    headers.insert(X_FORWARDED_PROTO, client.proto.clone());
    if let Some(h) = host {
        headers.insert(X_FORWARDED_HOST, h);
    }
    headers.append(FORWARDED, client.forwarded.clone());
    if let Some(c) = &client.client_cert {
        // What a client sends under these names is never passed on: only the listener's own
        // verified values are.
        headers.remove(&c.subject_name);
        headers.remove(&c.sans_name);
        if let Some((subject, sans)) = &c.values {
            headers.insert(c.subject_name.clone(), subject.clone());
            headers.insert(c.sans_name.clone(), sans.clone());
        }
    }
}

/// Request ids: a random per-process prefix and a counter, unique without coordination.
#[derive(Debug)]
pub struct RequestIds {
    prefix: u64,
    next: AtomicU64,
}

impl RequestIds {
    pub fn new(prefix: u64) -> RequestIds {
        RequestIds {
            prefix,
            next: AtomicU64::new(1),
        }
    }

    /// The request's id: the client's `X-Request-Id` when it sent one, else a new one (added to
    /// the request).
    pub fn ensure(&self, headers: &mut HeaderMap) -> HeaderValue {
        if let Some(v) = headers.get(X_REQUEST_ID) {
            if !v.is_empty() && v.len() <= 200 {
                return v.clone();
            }
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 32];
        hex16(self.prefix, &mut buf[..16]);
        hex16(n, &mut buf[16..]);
        let v = HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("0"));
        headers.insert(X_REQUEST_ID, v.clone());
        v
    }
}

fn hex16(mut n: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(n & 0xf) as usize];
        n >>= 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        strip_hop_by_hop(&mut h, false);
        let client = ClientHeaders::new("10.1.2.3".parse().expect("ip"), "http");
        add_forwarded(&mut h, &client, Some(HeaderValue::from_static("a.test")));
        assert_eq!(
            h.get("x-forwarded-for").map(|v| v.as_bytes()),
            Some(&b"203.0.113.8, 203.0.113.9, 10.1.2.3"[..])
        );
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        for gone in [
            "proxy-authorization",
            "x-secret",
            "keep-alive",
            "connection",
            "te",
        ] {
            assert!(h.get(gone).is_none(), "{gone} was forwarded");
        }
        assert_eq!(
            h.get("x-forwarded-host").map(|v| v.as_bytes()),
            Some(&b"a.test"[..])
        );
        assert_eq!(
            h.get("x-forwarded-proto").map(|v| v.as_bytes()),
            Some(&b"http"[..])
        );
        assert_eq!(
            h.get("forwarded").map(|v| v.as_bytes()),
            Some(&b"for=10.1.2.3;proto=http"[..])
        );
    }

    #[test]
    fn te_trailers_survives_for_http2_upstreams_and_ipv6_is_quoted() {
        let mut h = HeaderMap::new();
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(
            h.get(header::TE).map(|v| v.as_bytes()),
            Some(&b"trailers"[..])
        );
        let c = ClientHeaders::new("2001:db8::1".parse().expect("ip"), "http");
        assert_eq!(c.forwarded.as_bytes(), b"for=\"[2001:db8::1]\";proto=http");
    }

    #[test]
    fn request_ids_are_kept_or_generated_uniquely() {
        let ids = RequestIds::new(0xabc);
        let mut h = HeaderMap::new();
        let a = ids.ensure(&mut h);
        assert_eq!(a.len(), 32);
        assert_eq!(h.get(X_REQUEST_ID), Some(&a));
        let b = ids.ensure(&mut HeaderMap::new());
        assert_ne!(a, b);
        let mut given = HeaderMap::new();
        given.insert(X_REQUEST_ID, HeaderValue::from_static("client-id-1"));
        assert_eq!(ids.ensure(&mut given), "client-id-1");
    }
}
