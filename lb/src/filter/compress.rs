//! Response compression (zstd, brotli, gzip, deflate) negotiated from `Accept-Encoding`, and
//! optional decompression of request bodies on their way upstream.
//!
//! Negotiation follows RFC 9110 section 12.5.3: q-values decide, `q=0` refuses a coding, `*`
//! stands for the codings not named, and ties go to the route's order of preference. A response
//! is compressed when it is eligible (a listed media type, not already encoded, not
//! `no-transform`, not a range, a body, at least `min_size_bytes` when its length is known);
//! every eligible response gets `Vary: Accept-Encoding`, compressed or not, so shared caches
//! keep the variants apart. Compressing drops `Content-Length`, sets `Content-Encoding`, weakens
//! a strong `ETag` (the bytes differ) and drops `Accept-Ranges`.
//!
//! The body is compressed as it arrives: each frame from upstream goes through the encoder,
//! output goes out in 16 KB pieces, and when upstream pauses for 20 ms the encoder is flushed,
//! so a slow stream reaches the client without waiting for the end. Nothing buffers the whole
//! response.

use std::future::Future;
use std::io::{Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use model::Codec;

use crate::body::{self, Body, BoxError, ClientBodyFault};
use crate::metrics::CompressionMetrics;

/// A route's compiled compression policy.
#[derive(Debug)]
pub struct Compression {
    codecs: Box<[Codec]>,
    level: u32,
    /// Exact media types, or whole types as `text/`.
    types: Box<[Box<str>]>,
    min_size: u64,
    decompress_max: Option<u64>,
}

impl Compression {
    pub fn compile(c: &model::Compression) -> Compression {
        Compression {
            codecs: c.codecs.clone().into(),
            level: c.level,
            types: c.content_types.iter().map(|t| t.as_str().into()).collect(),
            min_size: c.min_size_bytes,
            decompress_max: c.decompress_requests_max_bytes,
        }
    }

    /// The coding to answer with for a request carrying `headers`, if any: the highest q-value
    /// the client gives one of ours, ties going to our order. No `Accept-Encoding`, or nothing
    /// acceptable, is `None` (identity).
    pub fn negotiate(&self, headers: &HeaderMap) -> Option<Codec> {
        let mut q_of = [None::<u16>; 4];
        let mut star = None::<u16>;
        let mut any = false;
        for value in headers.get_all(header::ACCEPT_ENCODING) {
            let Ok(value) = value.to_str() else {
                continue;
            };
            any = true;
            for item in value.split(',') {
                let mut parts = item.split(';');
                let token = parts.next().unwrap_or("").trim();
                let mut q = Some(1000);
                for param in parts {
                    let Some((k, v)) = param.split_once('=') else {
                        q = None;
                        break;
                    };
                    if k.trim().eq_ignore_ascii_case("q") {
                        q = parse_q(v.trim());
                    }
                }
                // A malformed element is ignored, not an error.
                let Some(q) = q else {
                    continue;
                };
                if token == "*" {
                    star = Some(q);
                    continue;
                }
                if let Some(i) = Codec::from_token(token).map(Codec::index) {
                    // The most specific (any) mention wins; a repeat keeps the highest.
                    q_of[i] = Some(q_of[i].map_or(q, |old| old.max(q)));
                }
            }
        }
        if !any {
            return None;
        }
        let mut best: Option<(u16, Codec)> = None;
        for &codec in self.codecs.iter() {
            let q = q_of[codec.index()].or(star).unwrap_or(0);
            if q > 0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, codec));
            }
        }
        best.map(|(_, c)| c)
    }

    /// Whether compression depends on `Accept-Encoding` for this response: a body of a listed
    /// type that is not encoded, ranged, `no-transform` or too small.
    pub fn eligible(&self, head_request: bool, headers: &HeaderMap, status: StatusCode) -> bool {
        if head_request
            || status.is_informational()
            || matches!(
                status,
                StatusCode::NO_CONTENT | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED
            )
        {
            return false;
        }
        if headers
            .get(header::CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
            || headers.contains_key(header::CONTENT_RANGE)
        {
            return false;
        }
        let no_transform = headers.get_all(header::CACHE_CONTROL).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
            })
        });
        if no_transform {
            return false;
        }
        let Some(media) = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim())
        else {
            return false;
        };
        let listed = self.types.iter().any(|t| {
            if t.ends_with('/') {
                media.len() > t.len() && media[..t.len()].eq_ignore_ascii_case(t)
            } else {
                media.eq_ignore_ascii_case(t)
            }
        });
        if !listed {
            return false;
        }
        let len = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        len.is_none_or(|n| n >= self.min_size && n > 0)
    }

    /// Adds `Vary: Accept-Encoding` to an eligible response and, when the client accepts one of
    /// our codings, compresses it.
    pub fn on_response(
        &self,
        codec: Option<Codec>,
        head_request: bool,
        resp: &mut Response<Body>,
        metrics: &CompressionMetrics,
    ) {
        if !self.eligible(head_request, resp.headers(), resp.status()) {
            return;
        }
        add_vary(resp.headers_mut());
        let Some(codec) = codec else {
            return;
        };
        let encoder = match Encoder::new(codec, self.level) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(codec = codec.token(), error = %e, "cannot start an encoder; sending uncompressed");
                return;
            }
        };
        let h = resp.headers_mut();
        h.remove(header::CONTENT_LENGTH);
        h.remove(header::ACCEPT_RANGES);
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(codec.token()),
        );
        if let Some(weak) = h.get(header::ETAG).and_then(weaken) {
            h.insert(header::ETAG, weak);
        }
        let inner = std::mem::replace(resp.body_mut(), body::empty());
        *resp.body_mut() = CompressBody {
            inner,
            encoder: Some(encoder),
            unflushed_since: None,
            last_input: tokio::time::Instant::now(),
            flush_timer: None,
            trailers: None,
            metrics: metrics.codec(codec),
        }
        .boxed();
    }

    /// The cap on a decompressed request body, when the route decompresses requests.
    pub fn decompress_max(&self) -> Option<u64> {
        self.decompress_max
    }
}

/// `q=` values have at most three decimals (RFC 9110 section 12.4.2): thousandths, or `None`
/// when malformed.
fn parse_q(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits = frac.bytes();
    let mut thousandths: u16 = 0;
    for _ in 0..3 {
        thousandths = thousandths * 10 + digits.next().map_or(0, |b| u16::from(b - b'0'));
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn add_vary(h: &mut HeaderMap) {
    let present = h.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',').any(|t| {
                let t = t.trim();
                t == "*" || t.eq_ignore_ascii_case("accept-encoding")
            })
        })
    });
    if !present {
        h.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// `W/"x"` for a strong `"x"`; `None` when already weak or not an entity tag.
fn weaken(etag: &HeaderValue) -> Option<HeaderValue> {
    let b = etag.as_bytes();
    if b.starts_with(b"W/") || !b.starts_with(b"\"") {
        return None;
    }
    let mut v = Vec::with_capacity(b.len() + 2);
    v.extend_from_slice(b"W/");
    v.extend_from_slice(b);
    HeaderValue::from_bytes(&v).ok()
}

/// Compressed output is sent once this much is waiting (or when upstream pauses, or ends).
const EMIT_BYTES: usize = 16 * 1024;
/// How long upstream may stay silent before what it sent so far is flushed to the client...
const FLUSH_AFTER: std::time::Duration = std::time::Duration::from_millis(20);
/// ...and how long input may wait at most, however steadily it trickles in.
const FLUSH_AT_MOST: std::time::Duration = std::time::Duration::from_millis(200);

/// One streaming encoder writing into a buffer the body drains.
enum Encoder {
    /// gzip and deflate: zlib-rs with zlib's scale of levels (`zlib-tune`: level N is at least
    /// as small as zlib's N, faster).
    Zlib(zlib_tune::Encoder),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    fn new(codec: Codec, level: u32) -> std::io::Result<Encoder> {
        Ok(match codec {
            Codec::Gzip => Encoder::Zlib(zlib_tune::Encoder::new(zlib_tune::Format::Gzip, level)?),
            Codec::Deflate => {
                Encoder::Zlib(zlib_tune::Encoder::new(zlib_tune::Format::Zlib, level)?)
            }
            // A 4 MiB window (lgwin 22) as browsers expect; the quality is the level.
            Codec::Br => Encoder::Br(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                16 * 1024,
                level,
                22,
            ))),
            Codec::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(
                Vec::new(),
                i32::try_from(level).unwrap_or(3),
            )?),
        })
    }

    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Encoder::Zlib(e) => e.write_all(data),
            Encoder::Br(e) => e.write_all(data),
            Encoder::Zstd(e) => e.write_all(data),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Encoder::Zlib(e) => e.flush(),
            Encoder::Br(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }

    /// Compressed bytes waiting to be taken.
    fn buffered(&self) -> usize {
        match self {
            Encoder::Zlib(e) => e.get_ref().len(),
            Encoder::Br(e) => e.get_ref().len(),
            Encoder::Zstd(e) => e.get_ref().len(),
        }
    }

    /// The compressed bytes produced so far.
    fn take(&mut self) -> Vec<u8> {
        std::mem::take(match self {
            Encoder::Zlib(e) => e.get_mut(),
            Encoder::Br(e) => e.get_mut(),
            Encoder::Zstd(e) => e.get_mut(),
        })
    }

    /// Ends the stream: the last bytes.
    fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Encoder::Zlib(e) => e.finish(),
            Encoder::Br(e) => Ok(e.into_inner()),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

/// The response body, compressed as it streams.
struct CompressBody {
    inner: Body,
    /// `None` once finished.
    encoder: Option<Encoder>,
    /// When input was first written after the last flush; `None` when all is flushed.
    unflushed_since: Option<tokio::time::Instant>,
    last_input: tokio::time::Instant,
    /// Armed while upstream pauses with input not yet flushed (kept and reset, not re-made).
    flush_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Trailers held back until the encoder's last bytes are out.
    trailers: Option<HeaderMap>,
    metrics: [prometheus::IntCounter; 2],
}

impl CompressBody {
    fn out(&self, bytes: Vec<u8>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.metrics[1].inc_by(bytes.len() as u64);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(bytes)))))
    }
}

impl HttpBody for CompressBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let Some(encoder) = this.encoder.as_mut() else {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            };
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        encoder.write(&data)?;
                        this.metrics[0].inc_by(data.len() as u64);
                        let now = tokio::time::Instant::now();
                        this.last_input = now;
                        this.unflushed_since.get_or_insert(now);
                        // Small outputs wait for more (fewer, larger chunks to the client);
                        // a pause upstream or the end sends them.
                        if encoder.buffered() >= EMIT_BYTES {
                            let out = encoder.take();
                            return this.out(out);
                        }
                    }
                    Err(frame) => {
                        // Trailers end the body: finish first, send them after.
                        this.trailers = frame.into_trailers().ok();
                        return this.finish();
                    }
                },
                Poll::Ready(None) => return this.finish(),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Pending => {
                    // Upstream paused: what it sent so far goes out once it has been silent
                    // for FLUSH_AFTER (or input has waited FLUSH_AT_MOST). A flush ends a
                    // deflate block, so flushing at every short gap between reads would cost
                    // ratio (5 % with 2 KB reads).
                    let Some(since) = this.unflushed_since else {
                        return Poll::Pending;
                    };
                    let deadline = (this.last_input + FLUSH_AFTER).min(since + FLUSH_AT_MOST);
                    let timer = this
                        .flush_timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                    if timer.deadline() != deadline {
                        timer.as_mut().reset(deadline);
                    }
                    if timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.unflushed_since = None;
                    encoder.flush()?;
                    let out = encoder.take();
                    if !out.is_empty() {
                        return this.out(out);
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.encoder.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl CompressBody {
    fn finish(&mut self) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(encoder) = self.encoder.take() else {
            return Poll::Ready(None);
        };
        let last = encoder.finish()?;
        if last.is_empty() {
            return Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))));
        }
        self.out(last)
    }
}

/// The codec named by a request's `Content-Encoding`, when it is one coding we decode;
/// anything else (identity, several codings, unknown ones) goes upstream as it is.
pub fn request_codec(headers: &HeaderMap) -> Option<Codec> {
    let mut values = headers.get_all(header::CONTENT_ENCODING).iter();
    let v = values.next()?.to_str().ok()?.trim();
    if values.next().is_some() {
        return None;
    }
    Codec::from_token(v)
}

/// Reads a whole compressed request body (at most `max` bytes of it) and decompresses it, at
/// most `max` bytes out: a zip bomb stops at the cap. Returns the plain body.
pub async fn decompress_request(
    mut body: Body,
    codec: Codec,
    max: u64,
    metrics: &CompressionMetrics,
) -> Result<Bytes, ClientBodyFault> {
    let mut compressed = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ClientBodyFault::Aborted)?;
        if let Ok(data) = frame.into_data() {
            if compressed.len() as u64 + data.len() as u64 > max {
                metrics.request_rejected(ClientBodyFault::TooLarge);
                return Err(ClientBodyFault::TooLarge);
            }
            compressed.extend_from_slice(&data);
        }
    }
    match decode_capped(codec, &compressed, max) {
        Ok(out) => {
            metrics.request_decoded(codec, compressed.len(), out.len());
            Ok(Bytes::from(out))
        }
        Err(fault) => {
            metrics.request_rejected(fault);
            Err(fault)
        }
    }
}

/// Decodes `input`, never holding more than `max + 1` bytes of output.
fn decode_capped(codec: Codec, input: &[u8], max: u64) -> Result<Vec<u8>, ClientBodyFault> {
    let reader: Box<dyn Read + '_> = match codec {
        Codec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Codec::Deflate => Box::new(flate2::read::ZlibDecoder::new(input)),
        Codec::Br => Box::new(brotli::Decompressor::new(input, 16 * 1024)),
        Codec::Zstd => Box::new(
            zstd::stream::read::Decoder::new(input).map_err(|_| ClientBodyFault::Malformed)?,
        ),
    };
    let mut out = Vec::new();
    match reader.take(max + 1).read_to_end(&mut out) {
        Ok(_) if out.len() as u64 > max => Err(ClientBodyFault::TooLarge),
        Ok(_) => Ok(out),
        Err(_) => Err(ClientBodyFault::Malformed),
    }
}

#[cfg(test)]
#[path = "compress_tests.rs"]
mod tests;
