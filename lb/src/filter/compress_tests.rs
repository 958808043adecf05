use std::io::Read;

use http_body_util::BodyExt;

use super::*;

fn policy(codecs: &[Codec]) -> Compression {
    let spec = model::Compression {
        codecs: codecs.to_vec(),
        level: 5,
        content_types: vec!["text/".into(), "application/json".into()],
        min_size_bytes: 100,
        decompress_requests_max_bytes: Some(10_000),
    };
    Compression::compile(&spec)
}

fn accept(v: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_str(v).expect("value"),
    );
    h
}

fn metrics() -> CompressionMetrics {
    crate::metrics::LbMetrics::new(&prometheus::Registry::new())
        .expect("metrics")
        .compression
}

#[test]
fn negotiation_follows_q_values_then_our_order() {
    let p = policy(&[Codec::Zstd, Codec::Br, Codec::Gzip, Codec::Deflate]);
    assert_eq!(p.negotiate(&HeaderMap::new()), None, "no header: identity");
    assert_eq!(
        p.negotiate(&accept("gzip, deflate, br, zstd")),
        Some(Codec::Zstd)
    );
    assert_eq!(p.negotiate(&accept("gzip, deflate, br")), Some(Codec::Br));
    assert_eq!(
        p.negotiate(&accept("gzip;q=0.5, deflate;q=0.8")),
        Some(Codec::Deflate)
    );
    assert_eq!(
        p.negotiate(&accept("br;q=0, gzip")),
        Some(Codec::Gzip),
        "q=0 refuses"
    );
    assert_eq!(p.negotiate(&accept("GZIP;Q=1.000")), Some(Codec::Gzip));
    assert_eq!(p.negotiate(&accept("x-gzip")), Some(Codec::Gzip));
    assert_eq!(p.negotiate(&accept("*")), Some(Codec::Zstd));
    assert_eq!(p.negotiate(&accept("*;q=0.1, zstd;q=0")), Some(Codec::Br));
    assert_eq!(p.negotiate(&accept("identity")), None);
    assert_eq!(p.negotiate(&accept("*;q=0")), None);
    assert_eq!(p.negotiate(&accept("compress, lzma")), None);
    // Two headers count as one list.
    let mut two = accept("gzip;q=0.2");
    two.append(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("br;q=0.9"),
    );
    assert_eq!(p.negotiate(&two), Some(Codec::Br));
    // Only the route's codecs, in its order.
    let gzip_first = policy(&[Codec::Gzip, Codec::Br]);
    assert_eq!(
        gzip_first.negotiate(&accept("br, gzip, zstd")),
        Some(Codec::Gzip)
    );
    assert_eq!(gzip_first.negotiate(&accept("zstd")), None);
}

#[test]
fn malformed_accept_encoding_is_ignored_not_an_error() {
    let p = policy(&[Codec::Gzip]);
    for bad in [
        "gzip;q=2",
        "gzip;q=0.1234",
        "gzip;q=abc",
        "gzip;q",
        ";;;,,,",
        "gzip;q=-1",
        "gzip;q=1.5",
        "",
    ] {
        assert_eq!(p.negotiate(&accept(bad)), None, "{bad:?}");
    }
    assert_eq!(
        p.negotiate(&accept("gzip;q=bad, gzip;q=0.3")),
        Some(Codec::Gzip)
    );
    let mut h = HeaderMap::new();
    h.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_bytes(b"gz\xffip").expect("opaque"),
    );
    assert_eq!(p.negotiate(&h), None);
}

fn head(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    h
}

#[test]
fn only_eligible_responses_are_compressed() {
    let p = policy(&[Codec::Gzip]);
    let ok = StatusCode::OK;
    let text = [("content-type", "text/html; charset=utf-8")];
    assert!(p.eligible(false, &head(&text), ok));
    assert!(p.eligible(false, &head(&[("content-type", "application/json")]), ok));
    assert!(!p.eligible(true, &head(&text), ok), "HEAD");
    for status in [204, 206, 304, 101] {
        let s = StatusCode::from_u16(status).expect("status");
        assert!(!p.eligible(false, &head(&text), s), "{status}");
    }
    assert!(p.eligible(false, &head(&text), StatusCode::NOT_FOUND));
    for extra in [
        ("content-encoding", "br"),
        ("cache-control", "public, No-Transform"),
        ("content-range", "bytes 0-1/2"),
        ("content-length", "99"),
        ("content-length", "0"),
    ] {
        let h = head(&[text[0], extra]);
        assert!(!p.eligible(false, &h, ok), "{extra:?}");
    }
    assert!(p.eligible(false, &head(&[text[0], ("content-length", "100")]), ok));
    assert!(p.eligible(
        false,
        &head(&[text[0], ("content-encoding", "identity")]),
        ok
    ));
    for other in ["image/png", "application/octet-stream", "text", "textual/x"] {
        assert!(
            !p.eligible(false, &head(&[("content-type", other)]), ok),
            "{other}"
        );
    }
    assert!(!p.eligible(false, &HeaderMap::new(), ok), "no type");
}

async fn run(
    codec: Option<Codec>,
    headers: &[(&str, &str)],
    body: &'static [u8],
) -> Response<Body> {
    let p = policy(&[Codec::Zstd, Codec::Br, Codec::Gzip, Codec::Deflate]);
    let mut resp = Response::new(crate::body::full(body));
    *resp.headers_mut() = head(headers);
    p.on_response(codec, false, &mut resp, &metrics());
    resp
}

fn decode(codec: Codec, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match codec {
        Codec::Gzip => flate2::read::GzDecoder::new(bytes).read_to_end(&mut out),
        Codec::Deflate => flate2::read::ZlibDecoder::new(bytes).read_to_end(&mut out),
        Codec::Br => brotli::Decompressor::new(bytes, 4096).read_to_end(&mut out),
        Codec::Zstd => zstd::stream::read::Decoder::new(bytes)
            .expect("decoder")
            .read_to_end(&mut out),
    }
    .expect("decodes");
    out
}

const TEXT: &[u8] =
    b"The quick brown fox jumps over the lazy dog. The quick brown fox jumps over the lazy dog. \
The quick brown fox jumps over the lazy dog. The quick brown fox jumps over the lazy dog.";

#[tokio::test]
async fn each_codec_round_trips_and_the_headers_say_so() {
    for codec in Codec::ALL {
        let resp = run(
            Some(codec),
            &[
                ("content-type", "text/plain"),
                ("content-length", "180"),
                ("etag", "\"v1\""),
                ("accept-ranges", "bytes"),
                ("vary", "Origin"),
            ],
            TEXT,
        )
        .await;
        let h = resp.headers();
        assert_eq!(h[header::CONTENT_ENCODING], codec.token());
        assert!(!h.contains_key(header::CONTENT_LENGTH));
        assert!(!h.contains_key(header::ACCEPT_RANGES));
        assert_eq!(h[header::ETAG], "W/\"v1\"", "a strong ETag is weakened");
        let vary: Vec<_> = h.get_all(header::VARY).iter().collect();
        assert_eq!(vary, ["Origin", "Accept-Encoding"]);
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        assert!(bytes.len() < TEXT.len(), "{codec:?} compresses");
        assert_eq!(decode(codec, &bytes), TEXT, "{codec:?}");
    }
}

#[tokio::test]
async fn an_eligible_response_varies_even_when_not_compressed() {
    let resp = run(None, &[("content-type", "text/plain")], TEXT).await;
    assert_eq!(resp.headers()[header::VARY], "Accept-Encoding");
    assert!(!resp.headers().contains_key(header::CONTENT_ENCODING));
    let resp = run(Some(Codec::Gzip), &[("content-type", "image/png")], TEXT).await;
    assert!(!resp.headers().contains_key(header::VARY));
    assert!(!resp.headers().contains_key(header::CONTENT_ENCODING));
    // A weak ETag stays as it is, and Vary is not repeated.
    let resp = run(
        Some(Codec::Gzip),
        &[
            ("content-type", "text/plain"),
            ("etag", "W/\"x\""),
            ("vary", "accept-encoding"),
        ],
        TEXT,
    )
    .await;
    assert_eq!(resp.headers()[header::ETAG], "W/\"x\"");
    assert_eq!(resp.headers().get_all(header::VARY).iter().count(), 1);
}

/// A body that yields one chunk, then stays pending until told to go on: the compressed bytes
/// of the first chunk must come out while upstream is paused.
struct Paused {
    sent: bool,
    gate: std::sync::Arc<tokio::sync::Notify>,
    released: bool,
}

impl HttpBody for Paused {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if !self.sent {
            self.sent = true;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(TEXT)))));
        }
        if self.released {
            return Poll::Ready(None);
        }
        let gate = self.gate.clone();
        let notified = gate.notified();
        tokio::pin!(notified);
        if notified.poll(cx).is_ready() {
            self.released = true;
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

use std::future::Future;

#[tokio::test]
async fn output_streams_while_upstream_pauses() {
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let p = policy(&[Codec::Gzip]);
    let mut resp = Response::new(
        Paused {
            sent: false,
            gate: gate.clone(),
            released: false,
        }
        .boxed(),
    );
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    p.on_response(Some(Codec::Gzip), false, &mut resp, &metrics());
    let mut body = resp.into_body();
    // Everything upstream sent so far is decodable before upstream goes on.
    let mut got = Vec::new();
    loop {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(2), body.frame())
            .await
            .expect("output comes while upstream is paused")
            .expect("a frame")
            .expect("ok");
        got.extend_from_slice(&frame.into_data().expect("data"));
        let mut partial = Vec::new();
        let _ = flate2::read::GzDecoder::new(&got[..]).read_to_end(&mut partial);
        if partial == TEXT {
            break;
        }
    }
    gate.notify_one();
    while let Some(f) = body.frame().await {
        got.extend_from_slice(&f.expect("ok").into_data().unwrap_or_default());
    }
    assert_eq!(decode(Codec::Gzip, &got), TEXT);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).expect("write");
    e.finish().expect("finish")
}

#[tokio::test]
async fn request_bodies_decompress_up_to_the_cap() {
    let m = metrics();
    let plain = decompress_request(crate::body::full(gzip(TEXT)), Codec::Gzip, 10_000, &m)
        .await
        .expect("decodes");
    assert_eq!(&plain[..], TEXT);
    // A bomb: 10 MB of zeros is about 10 KB compressed; the cap stops it.
    let bomb = gzip(&vec![0u8; 10 << 20]);
    assert!(bomb.len() < 20_000);
    let err = decompress_request(crate::body::full(bomb), Codec::Gzip, 1 << 20, &m)
        .await
        .expect_err("over the cap");
    assert_eq!(err, ClientBodyFault::TooLarge);
    let err = decompress_request(crate::body::full(&b"not gzip"[..]), Codec::Gzip, 10_000, &m)
        .await
        .expect_err("garbage");
    assert_eq!(err, ClientBodyFault::Malformed);
    for codec in [Codec::Br, Codec::Zstd, Codec::Deflate] {
        let err = decompress_request(
            crate::body::full(&b"\x00\x01garbage"[..]),
            codec,
            10_000,
            &m,
        )
        .await
        .expect_err("garbage");
        assert_eq!(err, ClientBodyFault::Malformed, "{codec:?}");
    }
}

#[test]
fn request_codings_we_decode() {
    let h = |v: &str| head(&[("content-encoding", v)]);
    assert_eq!(request_codec(&h("gzip")), Some(Codec::Gzip));
    assert_eq!(request_codec(&h("X-GZIP")), Some(Codec::Gzip));
    assert_eq!(request_codec(&h("zstd")), Some(Codec::Zstd));
    assert_eq!(request_codec(&h("identity")), None);
    assert_eq!(
        request_codec(&h("gzip, br")),
        None,
        "several codings pass through"
    );
    assert_eq!(request_codec(&HeaderMap::new()), None);
}
