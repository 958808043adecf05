//! HTTP/1.1 on the wire toward members (RFC 9112): the request head as Meridian writes it, the
//! response head parsed with httparse, and the response body's framing and chunked decoding.
//! The pieces both directions share (field lines, framing fields, chunk lines, trailers, the
//! chunked decoder) live here; the client-facing server (`http/h1/wire.rs`) uses them.
//!
//! Everything here works on buffers and never blocks or panics; an answer it cannot frame
//! safely is an error, and the connection it came on is not reused.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

/// Header fields one head may have (hyper's default).
pub const MAX_HEADERS: usize = 100;

/// Longest response head accepted, informational heads before it included.
pub const MAX_HEAD_BYTES: usize = 256 * 1024;

/// Longest chunk-size line, extensions included.
const MAX_CHUNK_LINE: usize = 4096;

/// Largest trailer section.
const MAX_TRAILERS: usize = 16 * 1024;

/// What is known of a request body before it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodySize {
    Empty,
    Exact(u64),
    Unknown,
}

/// How the request body goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outgoing {
    /// Nothing follows the head.
    Empty,
    Length(u64),
    Chunked,
}

/// Why a response cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    Head(httparse::Error),
    HeadTooLarge,
    /// A header value `http` refuses (a control character).
    HeaderValue,
    /// `101 Switching Protocols` to a request that asked for no upgrade.
    UnexpectedSwitch,
    /// `Transfer-Encoding` on an HTTP/1.0 response.
    Http10TransferEncoding,
    ContentLength,
    ChunkSize,
    ChunkLineTooLong,
    ChunkDelimiter,
    Trailers,
    /// The member closed the connection before the body's declared end.
    Truncated,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Head(e) => write!(f, "invalid response head: {e}"),
            WireError::HeadTooLarge => write!(f, "response head over {MAX_HEAD_BYTES} bytes"),
            WireError::HeaderValue => f.write_str("invalid response header value"),
            WireError::UnexpectedSwitch => f.write_str("101 to a request without an upgrade"),
            WireError::Http10TransferEncoding => {
                f.write_str("Transfer-Encoding in an HTTP/1.0 response")
            }
            WireError::ContentLength => f.write_str("invalid Content-Length"),
            WireError::ChunkSize => f.write_str("invalid chunk size"),
            WireError::ChunkLineTooLong => f.write_str("chunk-size line too long"),
            WireError::ChunkDelimiter => f.write_str("missing CRLF after chunk data"),
            WireError::Trailers => f.write_str("invalid trailer section"),
            WireError::Truncated => f.write_str("connection closed before the end of the body"),
        }
    }
}

impl std::error::Error for WireError {}

/// Writes the request head into `dst` (cleared first) and says how the body follows. Framing
/// headers are set to match: an exact size becomes `Content-Length`, an unknown one
/// `Transfer-Encoding: chunked` (or no body for GET, HEAD and CONNECT, as hyper does).
pub fn encode_request(
    dst: &mut Vec<u8>,
    method: &Method,
    target: &str,
    headers: &mut HeaderMap,
    body: BodySize,
) -> Outgoing {
    let outgoing = request_framing(method, headers, body);
    dst.clear();
    dst.extend_from_slice(method.as_str().as_bytes());
    dst.push(b' ');
    dst.extend_from_slice(target.as_bytes());
    dst.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers.iter() {
        encode_field(dst, name, value);
    }
    dst.extend_from_slice(b"\r\n");
    outgoing
}

/// One field line, `name: value\r\n` (both directions write fields this way).
pub fn encode_field(dst: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue) {
    dst.extend_from_slice(name.as_str().as_bytes());
    dst.extend_from_slice(b": ");
    dst.extend_from_slice(value.as_bytes());
    dst.extend_from_slice(b"\r\n");
}

/// Whether a comma-separated field of `name` lists `token` (case-insensitive).
pub fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn request_framing(method: &Method, headers: &mut HeaderMap, body: BodySize) -> Outgoing {
    if body == BodySize::Empty {
        headers.remove(header::TRANSFER_ENCODING);
        return Outgoing::Empty;
    }
    if headers.contains_key(header::TRANSFER_ENCODING) {
        headers.remove(header::CONTENT_LENGTH);
        if !chunked_last(headers) {
            headers.append(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        }
        return Outgoing::Chunked;
    }
    match content_length(headers) {
        Ok(Some(n)) => return Outgoing::Length(n),
        Ok(None) => {}
        Err(_) => {
            headers.remove(header::CONTENT_LENGTH);
        }
    }
    match body {
        BodySize::Exact(n) => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
            Outgoing::Length(n)
        }
        BodySize::Unknown if matches!(*method, Method::GET | Method::HEAD | Method::CONNECT) => {
            Outgoing::Empty
        }
        _ => {
            headers.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
            Outgoing::Chunked
        }
    }
}

/// Whether the last transfer coding named is `chunked`.
pub fn chunked_last(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("chunked"))
}

/// Every `Content-Length` value, which must agree: `None` when there is none.
pub fn content_length(headers: &HeaderMap) -> Result<Option<u64>, WireError> {
    let mut found = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        let text = value.to_str().map_err(|_| WireError::ContentLength)?;
        for part in text.split(',') {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(WireError::ContentLength);
            }
            let n: u64 = part.parse().map_err(|_| WireError::ContentLength)?;
            match found {
                Some(m) if m != n => return Err(WireError::ContentLength),
                _ => found = Some(n),
            }
        }
    }
    Ok(found)
}

/// A final response head, parsed.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
}

/// Parses the response head at the start of `buf`: `Ok(None)` until it is complete. Interim
/// (1xx) heads before it are consumed and skipped; the final head is split off `buf`, whose
/// remaining bytes are the body's.
pub fn parse_response(buf: &mut BytesMut) -> Result<Option<ResponseHead>, WireError> {
    let mut spans = [(0usize, 0usize, 0usize, 0usize); MAX_HEADERS];
    loop {
        let (len, code, minor, count) = {
            let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut []);
            let parsed = httparse::ParserConfig::default()
                .parse_response_with_uninit_headers(&mut resp, buf, &mut slots);
            match parsed {
                Ok(httparse::Status::Complete(len)) => {
                    let base = buf.as_ptr() as usize;
                    for (span, h) in spans.iter_mut().zip(resp.headers.iter()) {
                        let name = h.name.as_ptr() as usize - base;
                        let value = h.value.as_ptr() as usize - base;
                        *span = (name, name + h.name.len(), value, value + h.value.len());
                    }
                    (
                        len,
                        resp.code.unwrap_or(0),
                        resp.version.unwrap_or(1),
                        resp.headers.len(),
                    )
                }
                Ok(httparse::Status::Partial) => {
                    if buf.len() > MAX_HEAD_BYTES {
                        return Err(WireError::HeadTooLarge);
                    }
                    return Ok(None);
                }
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(WireError::Head(httparse::Error::TooManyHeaders))
                }
                Err(e) => return Err(WireError::Head(e)),
            }
        };
        if len > MAX_HEAD_BYTES {
            return Err(WireError::HeadTooLarge);
        }
        match code {
            101 => return Err(WireError::UnexpectedSwitch),
            100..=199 => {
                buf.advance(len);
                continue;
            }
            _ => {}
        }
        let status =
            StatusCode::from_u16(code).map_err(|_| WireError::Head(httparse::Error::Status))?;
        let head = buf.split_to(len).freeze();
        // Room for what the pipeline adds (request id, X-Cache, a route's own fields).
        let mut headers = HeaderMap::with_capacity(count + 3);
        for &(n0, n1, v0, v1) in spans.iter().take(count) {
            let (Some(name), Some(value)) = (head.get(n0..n1), head.get(v0..v1)) else {
                return Err(WireError::Head(httparse::Error::HeaderName));
            };
            let name = HeaderName::from_bytes(name)
                .map_err(|_| WireError::Head(httparse::Error::HeaderName))?;
            let value = HeaderValue::from_maybe_shared(head.slice_ref(value))
                .map_err(|_| WireError::HeaderValue)?;
            headers.append(name, value);
        }
        let version = if minor == 0 {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        return Ok(Some(ResponseHead {
            status,
            version,
            headers,
        }));
    }
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Until the member closes the connection.
    Close,
}

/// The body's framing (RFC 9112 §6.3) and whether the connection may carry another request
/// after it. A response with both `Transfer-Encoding` and `Content-Length` is read as chunked
/// and its connection is closed after it, as the RFC requires of a recipient.
pub fn response_framing(
    method: &Method,
    head: &ResponseHead,
) -> Result<(Framing, bool), WireError> {
    let keep = keep_alive(head);
    let code = head.status.as_u16();
    if *method == Method::HEAD || code == 204 || code == 304 {
        return Ok((Framing::Empty, keep));
    }
    if head.headers.contains_key(header::TRANSFER_ENCODING) {
        if head.version == Version::HTTP_10 {
            return Err(WireError::Http10TransferEncoding);
        }
        let both = head.headers.contains_key(header::CONTENT_LENGTH);
        return Ok(if chunked_last(&head.headers) {
            (Framing::Chunked, keep && !both)
        } else {
            (Framing::Close, false)
        });
    }
    match content_length(&head.headers)? {
        Some(0) => Ok((Framing::Empty, keep)),
        Some(n) => Ok((Framing::Length(n), keep)),
        None => Ok((Framing::Close, false)),
    }
}

/// Whether the response lets the connection carry another request.
fn keep_alive(head: &ResponseHead) -> bool {
    match head.version {
        Version::HTTP_10 => has_token(&head.headers, header::CONNECTION, "keep-alive"),
        _ => !has_token(&head.headers, header::CONNECTION, "close"),
    }
}

/// What the chunked decoder found in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Data(Bytes),
    Trailers(HeaderMap),
    /// The body ended (after any trailers).
    End,
    /// More bytes are needed.
    Pending,
}

/// A chunked body being read (RFC 9112 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunked {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

impl Chunked {
    /// Takes what it can from `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, WireError> {
        loop {
            match *self {
                Chunked::Size => {
                    let (used, size) = match httparse::parse_chunk_size(buf) {
                        Ok(httparse::Status::Complete(c)) => c,
                        Ok(httparse::Status::Partial) => {
                            if buf.len() > MAX_CHUNK_LINE {
                                return Err(WireError::ChunkLineTooLong);
                            }
                            return Ok(Decoded::Pending);
                        }
                        Err(_) => return Err(WireError::ChunkSize),
                    };
                    if used > MAX_CHUNK_LINE {
                        return Err(WireError::ChunkLineTooLong);
                    }
                    buf.advance(used);
                    *self = if size == 0 {
                        Chunked::Trailers
                    } else {
                        Chunked::Data(size)
                    };
                }
                Chunked::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::Pending);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(take).freeze();
                    let left = left - take as u64;
                    *self = if left == 0 {
                        Chunked::DataEnd
                    } else {
                        Chunked::Data(left)
                    };
                    return Ok(Decoded::Data(data));
                }
                Chunked::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::Pending);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(WireError::ChunkDelimiter);
                    }
                    buf.advance(2);
                    *self = Chunked::Size;
                }
                Chunked::Trailers => {
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        *self = Chunked::Done;
                        return Ok(Decoded::End);
                    }
                    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    match httparse::parse_headers(buf, &mut slots) {
                        Ok(httparse::Status::Complete((used, fields))) => {
                            if used > MAX_TRAILERS {
                                return Err(WireError::Trailers);
                            }
                            let mut trailers = HeaderMap::with_capacity(fields.len());
                            for f in fields {
                                let name = HeaderName::from_bytes(f.name.as_bytes())
                                    .map_err(|_| WireError::Trailers)?;
                                let value = HeaderValue::from_bytes(f.value)
                                    .map_err(|_| WireError::Trailers)?;
                                trailers.append(name, value);
                            }
                            buf.advance(used);
                            *self = Chunked::Done;
                            return Ok(Decoded::Trailers(trailers));
                        }
                        Ok(httparse::Status::Partial) => {
                            if buf.len() > MAX_TRAILERS {
                                return Err(WireError::Trailers);
                            }
                            return Ok(Decoded::Pending);
                        }
                        Err(_) => return Err(WireError::Trailers),
                    }
                }
                Chunked::Done => return Ok(Decoded::End),
            }
        }
    }
}

/// The line that starts a chunk of `len` bytes, in hexadecimal, kept on the stack.
#[derive(Debug, Clone, Copy)]
pub struct ChunkLine {
    buf: [u8; 18],
    start: u8,
}

impl ChunkLine {
    pub fn new(len: usize) -> ChunkLine {
        let mut buf = [0u8; 18];
        buf[16] = b'\r';
        buf[17] = b'\n';
        let mut i = 16;
        let mut n = len as u64;
        loop {
            i -= 1;
            buf[i] = b"0123456789abcdef"[(n & 0xf) as usize];
            n >>= 4;
            if n == 0 {
                break;
            }
        }
        ChunkLine {
            buf,
            start: i as u8,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[usize::from(self.start)..]
    }
}

/// Trailer fields after the last chunk, then the blank line that ends the body.
pub fn encode_trailers(dst: &mut Vec<u8>, trailers: &HeaderMap) {
    dst.extend_from_slice(b"0\r\n");
    for (name, value) in trailers {
        encode_field(dst, name, value);
    }
    dst.extend_from_slice(b"\r\n");
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
