//! Request-head checks, the first phase after hyper's parser: what RFC 9112 and RFC 9110 require
//! of a request before anything may be routed or forwarded. hyper already refuses invalid bytes,
//! obs-fold, conflicting `Content-Length` values and over-long heads (431); this adds what it
//! leaves to the application.

use std::borrow::Cow;

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::uri::Authority;
use http::Version;

use crate::error::ProxyError;

/// Where the request's host came from; kept as a cheap clone of the parsed bytes so the headers
/// can be edited while the host is still in use.
pub enum HostSource {
    Header(HeaderValue),
    Authority(Authority),
    /// An HTTP/1.0 request without a host: it matches only routes for any host.
    None,
}

impl HostSource {
    /// The host as sent, with its port.
    pub fn raw(&self) -> &str {
        match self {
            HostSource::Header(v) => v.to_str().unwrap_or(""),
            HostSource::Authority(a) => a.as_str(),
            HostSource::None => "",
        }
    }

    /// The host, lowercased, without port or trailing dot.
    pub fn host(&self) -> Cow<'_, str> {
        let host = strip_port(self.raw());
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(host.to_ascii_lowercase())
        } else {
            Cow::Borrowed(host)
        }
    }

    /// The host as a URI authority, for the `:authority` of an HTTP/2 upstream request.
    pub fn authority(&self) -> Option<Authority> {
        match self {
            HostSource::Header(v) => Authority::try_from(v.as_bytes()).ok(),
            HostSource::Authority(a) => Some(a.clone()),
            HostSource::None => None,
        }
    }

    /// The host as the client sent it (with its port), for `X-Forwarded-Host` and for the
    /// `Host` header of an HTTP/1.1 upstream when the client spoke HTTP/2.
    pub fn header_value(&self) -> Option<HeaderValue> {
        match self {
            HostSource::Header(v) => Some(v.clone()),
            HostSource::Authority(a) => HeaderValue::from_str(a.as_str()).ok(),
            HostSource::None => None,
        }
    }
}

fn strip_port(raw: &str) -> &str {
    if raw.starts_with('[') {
        // [v6]:port keeps its brackets.
        return raw.find(']').map_or(raw, |end| &raw[..=end]);
    }
    raw.rsplit_once(':').map_or(raw, |(h, _)| h)
}

/// Checks the request head; returns where its host came from. `framing_refused`: the HTTP/1.1
/// server saw both `Content-Length` and `Transfer-Encoding` (`h1::FramingRefused`), the shape of
/// request smuggling, which RFC 9112 lets a server refuse and Meridian does.
pub fn request_head(
    parts: &Parts,
    max_target: usize,
    framing_refused: bool,
) -> Result<HostSource, ProxyError> {
    if framing_refused {
        return Err(ProxyError::BadFraming(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    let target_len = parts.uri.path_and_query().map_or(0, |pq| pq.as_str().len())
        + parts.uri.authority().map_or(0, |a| a.as_str().len());
    if target_len > max_target {
        return Err(ProxyError::UriTooLong);
    }
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let host_header = hosts.next();
    if hosts.next().is_some() {
        return Err(ProxyError::BadFraming("more than one Host header"));
    }
    let source = match (parts.uri.authority(), host_header) {
        // An absolute-form target (or HTTP/2's :authority) wins over Host (RFC 9112 §3.2.2).
        (Some(a), _) => HostSource::Authority(a.clone()),
        (None, Some(h)) => {
            if !is_valid_host(h.as_bytes()) {
                return Err(ProxyError::BadFraming("invalid Host header"));
            }
            HostSource::Header(h.clone())
        }
        (None, None) if parts.version <= Version::HTTP_10 => HostSource::None,
        (None, None) => return Err(ProxyError::BadFraming("missing Host header")),
    };
    if matches!(&source, HostSource::Header(_) | HostSource::Authority(_))
        && source.host().is_empty()
    {
        return Err(ProxyError::BadFraming("empty host"));
    }
    if has_dot_segments(parts.uri.path()) {
        // `/api/../admin` must not reach the api pool's neighbours by way of the api route.
        return Err(ProxyError::BadRequest("dot-segments in the path"));
    }
    if has_nul(parts.uri.path()) {
        // `%00` truncates paths in C backends: `/img.png%00.php`.
        return Err(ProxyError::BadRequest("a NUL byte in the path"));
    }
    Ok(source)
}

/// `uri-host [ ":" port ]` (RFC 9110 §7.2): a reg-name, an IPv4 address or a bracketed IPv6
/// literal, then optional digits.
fn is_valid_host(v: &[u8]) -> bool {
    if v.is_empty() || v.len() > 255 {
        return false;
    }
    let (host, port) = if v.first() == Some(&b'[') {
        let Some(end) = v.iter().position(|&b| b == b']') else {
            return false;
        };
        let (lit, rest) = v.split_at(end + 1);
        let inner = &lit[1..lit.len() - 1];
        if inner.is_empty()
            || !inner
                .iter()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
        {
            return false;
        }
        (&[][..], rest)
    } else {
        match v.iter().rposition(|&b| b == b':') {
            Some(i) => (&v[..i], &v[i..]),
            None => (v, &[][..]),
        }
    };
    let port_ok = port.is_empty()
        || (port.first() == Some(&b':')
            && port.len() <= 6
            && port[1..].iter().all(u8::is_ascii_digit));
    let host_ok = host.iter().all(|&b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'%'
            )
    });
    port_ok && host_ok
}

/// `.` or `..` segments, also percent-encoded, which upstreams may resolve differently than
/// routing did.
pub fn has_dot_segments(path: &str) -> bool {
    if !path.contains('.') && !path.contains('%') {
        return false;
    }
    // A backend that decodes `%2f` (or `%5c`, or takes `\\`) as a separator sees segments
    // there too: `/api/..%2fadmin` is `/api/../admin` to it. One pass, no allocation.
    let b = path.as_bytes();
    let mut start = 0;
    let mut i = 0;
    loop {
        let sep = if i >= b.len() {
            Some(0)
        } else {
            match b[i] {
                b'/' | b'\\' => Some(1),
                b'%' if b.len() >= i + 3
                    && ((b[i + 1] == b'2' && (b[i + 2] | 0x20) == b'f')
                        || (b[i + 1] == b'5' && (b[i + 2] | 0x20) == b'c')) =>
                {
                    Some(3)
                }
                _ => None,
            }
        };
        if let Some(len) = sep {
            if matches!(dot_count(&b[start..i]), Some(1 | 2)) {
                return true;
            }
            if i >= b.len() {
                return false;
            }
            i += len;
            start = i;
        } else {
            i += 1;
        }
    }
}

/// How many dots a segment made only of `.` and `%2e` holds; `None` for anything else.
fn dot_count(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    let mut n = 0;
    while i < s.len() {
        if s[i] == b'.' {
            i += 1;
        } else if s.len() >= i + 3 && s[i] == b'%' && s[i + 1] == b'2' && (s[i + 2] | 0x20) == b'e'
        {
            i += 3;
        } else {
            return None;
        }
        n += 1;
    }
    Some(n)
}

/// A `%00` anywhere in the path.
pub fn has_nul(path: &str) -> bool {
    path.as_bytes().windows(3).any(|w| w == b"%00")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn parts(version: Version, uri: &str, hosts: &[&str]) -> Parts {
        let mut b = Request::builder().version(version).uri(uri);
        for h in hosts {
            b = b.header(header::HOST, *h);
        }
        b.body(()).expect("request").into_parts().0
    }

    fn host(p: &Parts) -> Result<String, ProxyError> {
        request_head(p, 8192, false).map(|s| s.host().into_owned())
    }

    #[test]
    fn host_is_lowercased_and_port_stripped() {
        let v11 = Version::HTTP_11;
        assert_eq!(
            host(&parts(v11, "/", &["App.Example.com:8080"]))
                .ok()
                .as_deref(),
            Some("app.example.com")
        );
        assert_eq!(
            host(&parts(v11, "/", &["[::1]:80"])).ok().as_deref(),
            Some("[::1]")
        );
        assert_eq!(
            host(&parts(v11, "http://h.test/x", &[])).ok().as_deref(),
            Some("h.test")
        );
        assert_eq!(
            host(&parts(v11, "/", &["A.test."])).ok().as_deref(),
            Some("a.test")
        );
        assert_eq!(
            host(&parts(Version::HTTP_10, "/", &[])).ok().as_deref(),
            Some("")
        );
    }

    #[test]
    fn bad_hosts_and_targets_are_refused() {
        let v11 = Version::HTTP_11;
        assert!(matches!(
            host(&parts(v11, "/", &[])),
            Err(ProxyError::BadFraming(_))
        ));
        assert!(matches!(
            host(&parts(v11, "/", &["a.test", "b.test"])),
            Err(ProxyError::BadFraming(_))
        ));
        assert!(matches!(
            host(&parts(v11, "/", &[""])),
            Err(ProxyError::BadFraming(_))
        ));
        assert!(matches!(
            host(&parts(v11, "/", &["a b"])),
            Err(ProxyError::BadFraming(_))
        ));
        assert!(matches!(
            host(&parts(v11, "/", &["a.test:80x"])),
            Err(ProxyError::BadFraming(_))
        ));
        assert!(matches!(
            host(&parts(v11, "/", &["a/b"])),
            Err(ProxyError::BadFraming(_))
        ));
        let long = format!("/{}", "a".repeat(9000));
        assert!(matches!(
            host(&parts(v11, &long, &["a.test"])),
            Err(ProxyError::UriTooLong)
        ));
        let p = parts(v11, "/", &["a.test"]);
        assert!(matches!(
            request_head(&p, 8192, true),
            Err(ProxyError::BadFraming(_))
        ));
    }

    #[test]
    fn dot_segments_are_spotted_even_when_encoded() {
        assert!(has_dot_segments("/api/../admin"));
        assert!(has_dot_segments("/api/%2E%2e/admin"));
        assert!(has_dot_segments("/./x"));
        assert!(has_dot_segments("/x/.."));
        assert!(!has_dot_segments("/a.b/c..d/.well-known/..."));
        assert!(!has_dot_segments("/plain/path"));
        // Encoded separators a backend may decode.
        assert!(has_dot_segments("/api/..%2fadmin"));
        assert!(has_dot_segments("/api/..%2Fadmin"));
        assert!(has_dot_segments("/api/..%5cadmin"));
        assert!(has_dot_segments("/api\\..\\admin"));
        assert!(has_dot_segments("/api%2f%2e%2e%2fadmin"));
        assert!(!has_dot_segments("/files/a%2fb.txt"));
        assert!(!has_dot_segments("/100%25/x.y"));
        assert!(has_nul("/img.png%00.php"));
        assert!(!has_nul("/img%0.png"));
    }
}
