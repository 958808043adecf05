//! HTTP/1.1 on the wire toward clients (RFC 9112): request heads parsed with httparse straight
//! out of the connection's buffer, their body framing, and response heads as Meridian writes
//! them. Chunked request bodies are decoded by the same decoder as members' answers
//! (`upstream::h1::wire::Chunked`).
//!
//! Nothing here blocks or panics on input: a head that cannot be read safely is an error naming
//! the status to answer with, and the connection closes after that answer.

use std::mem::MaybeUninit;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};

use crate::upstream::h1::wire::{chunked_last, content_length, encode_field, MAX_HEADERS};
pub use crate::upstream::h1::wire::{encode_trailers, has_token, ChunkLine};

/// Longest request target `http` parses (its own limit); a longer one is answered 414.
const MAX_URI: usize = u16::MAX as usize - 1;

/// How a request body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    Empty,
    Length(u64),
    Chunked,
}

/// A request head read off the connection, with what the connection needs to know of it.
#[derive(Debug)]
pub struct RequestHead {
    pub request: Request<()>,
    pub body: BodyFraming,
    /// The client lets the connection carry another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on a request with a body: the interim answer goes out when the
    /// body is first read.
    pub expect_continue: bool,
    /// `TE: trailers`: the client takes trailer fields after a chunked body.
    pub trailers: bool,
    /// Both `Content-Length` and `Transfer-Encoding`: the shape of request smuggling. The body
    /// is not read; the pipeline refuses the request and the connection closes.
    pub framing_refused: bool,
}

/// Why a request head is refused before it reaches the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Malformed: 400.
    Malformed(&'static str),
    /// Over the listener's head size or field count: 431.
    TooLarge,
    /// A target longer than anything `http` represents: 414.
    UriTooLong,
}

impl HeadError {
    pub fn status(self) -> StatusCode {
        match self {
            HeadError::Malformed(_) => StatusCode::BAD_REQUEST,
            HeadError::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            HeadError::UriTooLong => StatusCode::URI_TOO_LONG,
        }
    }
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeadError::Malformed(why) => f.write_str(why),
            HeadError::TooLarge => f.write_str("request head too large"),
            HeadError::UriTooLong => f.write_str("request target too long"),
        }
    }
}

/// Where one field's name and value lie in the head (start and end offsets of each).
pub type Span = (usize, usize, usize, usize);

/// The client preface of HTTP/2 with prior knowledge (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Parses the request head at the start of `buf`: `Ok(None)` until it is complete. The head is
/// split off `buf` (its bytes back the request's target and field values without a copy); what
/// stays in `buf` is the body's, or the next request's. `spans` is scratch space the connection
/// keeps, so that no parse clears a table for every field a head may have.
pub fn parse_request(
    buf: &mut BytesMut,
    max_head: usize,
    spans: &mut Vec<Span>,
) -> Result<Option<RequestHead>, HeadError> {
    spans.clear();
    let (len, method, target, minor) = {
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        match req.parse_with_uninit_headers(buf, &mut slots) {
            Ok(httparse::Status::Complete(len)) => {
                let base = buf.as_ptr() as usize;
                spans.extend(req.headers.iter().map(|h| {
                    let name = h.name.as_ptr() as usize - base;
                    let value = h.value.as_ptr() as usize - base;
                    (name, name + h.name.len(), value, value + h.value.len())
                }));
                let target = req.path.map_or((0, 0), |p| {
                    let start = p.as_ptr() as usize - base;
                    (start, start + p.len())
                });
                let method = Method::from_bytes(req.method.unwrap_or("").as_bytes())
                    .map_err(|_| HeadError::Malformed("invalid method"))?;
                (len, method, target, req.version.unwrap_or(1))
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() > max_head {
                    return Err(HeadError::TooLarge);
                }
                return Ok(None);
            }
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
            Err(e) => return Err(HeadError::Malformed(malformed(e))),
        }
    };
    if len > max_head {
        return Err(HeadError::TooLarge);
    }
    let head = buf.split_to(len).freeze();
    let uri = match head.get(target.0..target.1) {
        Some(t) if t.len() > MAX_URI => return Err(HeadError::UriTooLong),
        Some(t) if !t.is_empty() => Uri::from_maybe_shared(head.slice_ref(t))
            .map_err(|_| HeadError::Malformed("invalid request target"))?,
        _ => return Err(HeadError::Malformed("invalid request target")),
    };
    // Room for the fields the pipeline adds (forwarding headers, request id) without a regrow.
    let mut headers = HeaderMap::with_capacity(spans.len() + 6);
    for &(n0, n1, v0, v1) in spans.iter() {
        let (Some(name), Some(value)) = (head.get(n0..n1), head.get(v0..v1)) else {
            return Err(HeadError::Malformed("invalid header"));
        };
        let name = HeaderName::from_bytes(name)
            .map_err(|_| HeadError::Malformed("invalid header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice_ref(value))
            .map_err(|_| HeadError::Malformed("invalid header value"))?;
        headers.append(name, value);
    }
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let has_te = headers.contains_key(header::TRANSFER_ENCODING);
    let length =
        content_length(&headers).map_err(|_| HeadError::Malformed("invalid Content-Length"))?;
    let framing_refused = has_te && length.is_some();
    let body = if has_te {
        if version == Version::HTTP_10 {
            return Err(HeadError::Malformed(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        if !chunked_last(&headers) {
            // RFC 9112 §6.3: the length cannot be determined; 400 and close.
            return Err(HeadError::Malformed(
                "Transfer-Encoding without chunked last",
            ));
        }
        BodyFraming::Chunked
    } else {
        match length {
            None | Some(0) => BodyFraming::Empty,
            Some(n) => BodyFraming::Length(n),
        }
    };
    let keep_alive = match version {
        Version::HTTP_10 => has_token(&headers, header::CONNECTION, "keep-alive"),
        _ => !has_token(&headers, header::CONNECTION, "close"),
    };
    let expect_continue = version == Version::HTTP_11
        && body != BodyFraming::Empty
        && headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let trailers = has_token(&headers, header::TE, "trailers");
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    Ok(Some(RequestHead {
        request,
        body: if framing_refused {
            BodyFraming::Empty
        } else {
            body
        },
        keep_alive: keep_alive && !framing_refused,
        expect_continue: expect_continue && !framing_refused,
        trailers,
        framing_refused,
    }))
}

fn malformed(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid request line",
        httparse::Error::TooManyHeaders => "too many header fields",
        httparse::Error::Version => "invalid HTTP version",
    }
}

/// How a response body goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body follows the head (HEAD, 1xx, 204, 304).
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (an HTTP/1.0 client, a body of unknown size).
    Close,
}

/// The response's framing: no body for HEAD, 1xx, 204 and 304; a body's exact size, else the
/// `Content-Length` it came with; else chunked to an HTTP/1.1 client and close-delimited to an
/// HTTP/1.0 one. The second value is the `Content-Length` to write (replacing any in the head).
pub fn response_framing(
    head_request: bool,
    status: StatusCode,
    headers: &HeaderMap,
    exact: Option<u64>,
    version: Version,
) -> (ResponseFraming, Option<u64>) {
    let code = status.as_u16();
    if head_request || code == 304 || status.is_informational() || code == 204 {
        return (ResponseFraming::None, None);
    }
    if let Some(n) = exact {
        return (ResponseFraming::Length(n), Some(n));
    }
    if let Ok(Some(n)) = content_length(headers) {
        return (ResponseFraming::Length(n), Some(n));
    }
    if version == Version::HTTP_10 {
        (ResponseFraming::Close, None)
    } else {
        (ResponseFraming::Chunked, None)
    }
}

/// Header fields already in HTTP/1.1 syntax (`name: value\r\n` each), carried in a response's
/// extensions: the server copies them after the status line, before the fields of the
/// response's own map. A cache entry keeps its own, made once.
#[derive(Debug, Clone)]
pub struct EncodedFields {
    bytes: Bytes,
    has_date: bool,
}

impl EncodedFields {
    /// `headers` without the fields named in `skip`.
    pub fn new(headers: &HeaderMap, skip: &[HeaderName]) -> EncodedFields {
        let mut out = Vec::new();
        let mut has_date = false;
        for (name, value) in headers {
            if skip.contains(name) {
                continue;
            }
            has_date |= name == header::DATE;
            encode_field(&mut out, name, value);
        }
        EncodedFields {
            bytes: Bytes::from(out),
            has_date,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// A response head as the HTTP/1.1 server writes it.
#[derive(Debug, Clone, Copy)]
pub struct ResponseHead<'a> {
    pub status: StatusCode,
    pub headers: &'a HeaderMap,
    /// Fields already encoded (a cache entry's), written before `headers`.
    pub encoded: Option<&'a EncodedFields>,
    pub framing: ResponseFraming,
    /// The `Content-Length` to write, if any (`response_framing` says).
    pub length: Option<u64>,
    /// The connection ends after this response.
    pub close: bool,
    /// The request's version.
    pub version: Version,
}

/// Writes the response head into `dst` (cleared first). The framing headers are Meridian's:
/// `Content-Length` or `Transfer-Encoding: chunked` as `framing` says (a HEAD, 304's own
/// `Content-Length` kept as the member sent it); `Date` added when absent; `Connection: close`
/// when the connection ends after it, `Connection: keep-alive` to an HTTP/1.0 client it stays
/// open for.
pub fn encode_response(dst: &mut Vec<u8>, head: &ResponseHead<'_>) {
    let ResponseHead {
        status,
        headers,
        encoded,
        framing,
        length,
        close,
        version,
    } = *head;
    dst.clear();
    dst.extend_from_slice(b"HTTP/1.1 ");
    dst.extend_from_slice(status.as_str().as_bytes());
    dst.push(b' ');
    dst.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    dst.extend_from_slice(b"\r\n");
    if let Some(e) = encoded {
        dst.extend_from_slice(&e.bytes);
    }
    let keep_length = framing == ResponseFraming::None && status.as_u16() != 204;
    let mut has_connection = false;
    for (name, value) in headers {
        if name == header::TRANSFER_ENCODING
            || (name == header::CONTENT_LENGTH && !keep_length)
            || (name == header::CONNECTION && close)
        {
            continue;
        }
        has_connection |= name == header::CONNECTION;
        encode_field(dst, name, value);
    }
    match (framing, length) {
        (ResponseFraming::Length(_), Some(n)) => {
            dst.extend_from_slice(b"content-length: ");
            let mut digits = [0u8; 20];
            dst.extend_from_slice(format_u64(n, &mut digits));
            dst.extend_from_slice(b"\r\n");
        }
        (ResponseFraming::Chunked, _) => dst.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        _ => {}
    }
    if !headers.contains_key(header::DATE) && !encoded.is_some_and(|e| e.has_date) {
        dst.extend_from_slice(b"date: ");
        DATE.with(|d| {
            let mut d = d.borrow_mut();
            d.refresh();
            dst.extend_from_slice(&d.text);
        });
        dst.extend_from_slice(b"\r\n");
    }
    if close {
        dst.extend_from_slice(b"connection: close\r\n");
    } else if version == Version::HTTP_10 && !has_connection {
        dst.extend_from_slice(b"connection: keep-alive\r\n");
    }
    dst.extend_from_slice(b"\r\n");
}

/// A head Meridian answers with itself when a request head cannot be read: no body, and the
/// connection closes.
pub fn encode_refusal(dst: &mut Vec<u8>, status: StatusCode) {
    encode_response(
        dst,
        &ResponseHead {
            status,
            headers: &HeaderMap::new(),
            encoded: None,
            framing: ResponseFraming::Length(0),
            length: Some(0),
            close: true,
            version: Version::HTTP_11,
        },
    );
}

/// `n` in decimal, in `buf`'s tail.
fn format_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// The `Date` value of this second, formatted once per second per worker thread.
struct DateCache {
    second: u64,
    text: [u8; 29],
}

impl DateCache {
    fn refresh(&mut self) {
        let now = SystemTime::now();
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if second != self.second {
            let text = httpdate::fmt_http_date(now);
            if text.len() == self.text.len() {
                self.text.copy_from_slice(text.as_bytes());
                self.second = second;
            }
        }
    }
}

thread_local! {
    static DATE: std::cell::RefCell<DateCache> = const {
        std::cell::RefCell::new(DateCache { second: 0, text: *b"Thu, 01 Jan 1970 00:00:00 GMT" })
    };
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
