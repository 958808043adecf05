use super::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn encode(method: Method, h: &[(&str, &str)], body: BodySize) -> (String, Outgoing) {
    let mut dst = Vec::new();
    let mut h = headers(h);
    let out = encode_request(&mut dst, &method, "/a?b=1", &mut h, body);
    (String::from_utf8(dst).unwrap(), out)
}

#[test]
fn a_bodiless_request_is_its_head_alone() {
    let (head, out) = encode(
        Method::GET,
        &[("host", "example.com"), ("transfer-encoding", "chunked")],
        BodySize::Empty,
    );
    assert_eq!(head, "GET /a?b=1 HTTP/1.1\r\nhost: example.com\r\n\r\n");
    assert_eq!(out, Outgoing::Empty);
}

#[test]
fn the_body_size_decides_the_framing_headers() {
    let (head, out) = encode(Method::POST, &[("host", "h")], BodySize::Exact(5));
    assert_eq!(
        head,
        "POST /a?b=1 HTTP/1.1\r\nhost: h\r\ncontent-length: 5\r\n\r\n"
    );
    assert_eq!(out, Outgoing::Length(5));

    let (head, out) = encode(Method::PUT, &[("host", "h")], BodySize::Unknown);
    assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
    assert_eq!(out, Outgoing::Chunked);

    // As hyper does: a GET whose body size is unknown sends none.
    let (head, out) = encode(Method::GET, &[("host", "h")], BodySize::Unknown);
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert_eq!(out, Outgoing::Empty);
}

#[test]
fn framing_headers_already_there_are_kept_or_repaired() {
    let (head, out) = encode(
        Method::POST,
        &[("host", "h"), ("content-length", "7")],
        BodySize::Unknown,
    );
    assert_eq!(out, Outgoing::Length(7));
    assert!(head.contains("content-length: 7\r\n"));

    // Transfer-Encoding wins over Content-Length, and ends in chunked.
    let (head, out) = encode(
        Method::POST,
        &[("content-length", "7"), ("transfer-encoding", "gzip")],
        BodySize::Exact(7),
    );
    assert_eq!(out, Outgoing::Chunked);
    assert!(!head.contains("content-length"), "{head}");
    assert!(
        head.contains("transfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n"),
        "{head}"
    );

    // An invalid length is replaced by the body's own.
    let (head, out) = encode(
        Method::POST,
        &[("content-length", "1, 2")],
        BodySize::Exact(3),
    );
    assert_eq!(out, Outgoing::Length(3));
    assert_eq!(head.matches("content-length").count(), 1, "{head}");
}

fn parse(bytes: &[u8]) -> (Result<Option<ResponseHead>, WireError>, BytesMut) {
    let mut buf = BytesMut::from(bytes);
    let r = parse_response(&mut buf);
    (r, buf)
}

#[test]
fn a_response_head_is_parsed_once_complete_and_leaves_the_body() {
    let full = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: 1\r\nX-A: 2\r\n\r\nabc";
    for cut in 0..full.len() - 3 {
        let (r, buf) = parse(&full[..cut]);
        assert!(matches!(r, Ok(None)), "cut at {cut}: {r:?}");
        assert_eq!(buf.len(), cut);
    }
    let (r, buf) = parse(full);
    let head = r.unwrap().unwrap();
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.version, Version::HTTP_11);
    assert_eq!(head.headers.get_all("x-a").iter().count(), 2);
    assert_eq!(&buf[..], b"abc");
}

#[test]
fn interim_heads_are_skipped() {
    let (r, buf) = parse(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.0 404 Not Found\r\n\r\nx",
    );
    let head = r.unwrap().unwrap();
    assert_eq!(head.status, StatusCode::NOT_FOUND);
    assert_eq!(head.version, Version::HTTP_10);
    assert!(head.headers.get("link").is_none());
    assert_eq!(&buf[..], b"x");
}

#[test]
fn bad_response_heads_are_errors() {
    let cases: &[(&[u8], WireError)] = &[
        (
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            WireError::UnexpectedSwitch,
        ),
        (
            b"HTTP/1.1 20 OK\r\n\r\n",
            WireError::Head(httparse::Error::Status),
        ),
        (
            b"HTTX/1.1 200 OK\r\n\r\n",
            WireError::Head(httparse::Error::Version),
        ),
        (
            b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
            WireError::Head(httparse::Error::HeaderName),
        ),
        // A folded header line (obs-fold) is refused, as hyper does.
        (
            b"HTTP/1.1 200 OK\r\nA: x\r\n y\r\n\r\n",
            WireError::Head(httparse::Error::HeaderName),
        ),
    ];
    for (bytes, want) in cases {
        let (r, _) = parse(bytes);
        assert_eq!(r.unwrap_err(), *want, "{}", String::from_utf8_lossy(bytes));
    }
    let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        many.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(
        parse(&many).0.unwrap_err(),
        WireError::Head(httparse::Error::TooManyHeaders)
    );
    let mut long = b"HTTP/1.1 200 OK\r\nx: ".to_vec();
    long.resize(MAX_HEAD_BYTES + 10, b'a');
    assert_eq!(parse(&long).0.unwrap_err(), WireError::HeadTooLarge);
}

fn framing(method: Method, bytes: &[u8]) -> Result<(Framing, bool), WireError> {
    let (r, _) = parse(bytes);
    response_framing(&method, &r.unwrap().unwrap())
}

#[test]
fn the_body_framing_follows_rfc_9112() {
    let ok = |h: &str| format!("HTTP/1.1 200 OK\r\n{h}\r\n").into_bytes();
    assert_eq!(
        framing(Method::GET, &ok("Content-Length: 10\r\n")),
        Ok((Framing::Length(10), true))
    );
    assert_eq!(
        framing(
            Method::GET,
            &ok("Content-Length: 10\r\nContent-Length: 10\r\n")
        ),
        Ok((Framing::Length(10), true))
    );
    assert_eq!(
        framing(Method::HEAD, &ok("Content-Length: 10\r\n")),
        Ok((Framing::Empty, true))
    );
    assert_eq!(
        framing(
            Method::GET,
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"
        ),
        Ok((Framing::Empty, true))
    );
    assert_eq!(
        framing(Method::GET, &ok("Transfer-Encoding: gzip, chunked\r\n")),
        Ok((Framing::Chunked, true))
    );
    // Both: chunked, and the connection is not reused.
    assert_eq!(
        framing(
            Method::GET,
            &ok("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n")
        ),
        Ok((Framing::Chunked, false))
    );
    assert_eq!(
        framing(Method::GET, &ok("Transfer-Encoding: gzip\r\n")),
        Ok((Framing::Close, false))
    );
    assert_eq!(framing(Method::GET, &ok("")), Ok((Framing::Close, false)));
    assert_eq!(
        framing(
            Method::GET,
            &ok("Connection: x, Close\r\nContent-Length: 1\r\n")
        ),
        Ok((Framing::Length(1), false))
    );
    assert_eq!(
        framing(Method::GET, b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n"),
        Ok((Framing::Length(1), false))
    );
    assert_eq!(
        framing(
            Method::GET,
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n"
        ),
        Ok((Framing::Length(1), true))
    );
    for bad in [
        "Content-Length: 1\r\nContent-Length: 2\r\n",
        "Content-Length: -1\r\n",
        "Content-Length: 1x\r\n",
        "Content-Length: 99999999999999999999999\r\n",
    ] {
        assert_eq!(
            framing(Method::GET, &ok(bad)),
            Err(WireError::ContentLength),
            "{bad}"
        );
    }
    assert_eq!(
        framing(
            Method::GET,
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        ),
        Err(WireError::Http10TransferEncoding)
    );
}

/// Decodes `wire` fed `step` bytes at a time.
fn dechunk(wire: &[u8], step: usize) -> Result<(Vec<u8>, Option<HeaderMap>), WireError> {
    let mut state = Chunked::Size;
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    let mut trailers = None;
    let mut fed = 0;
    loop {
        match state.decode(&mut buf)? {
            Decoded::Data(d) => body.extend_from_slice(&d),
            Decoded::Trailers(t) => trailers = Some(t),
            Decoded::End => return Ok((body, trailers)),
            Decoded::Pending => {
                if fed == wire.len() {
                    return Err(WireError::Truncated);
                }
                let end = (fed + step).min(wire.len());
                buf.extend_from_slice(&wire[fed..end]);
                fed = end;
            }
        }
    }
}

#[test]
fn chunked_bodies_decode_however_they_arrive() {
    let wire = b"5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n";
    for step in [1, 2, 3, 7, wire.len()] {
        let (body, trailers) = dechunk(wire, step).unwrap();
        assert_eq!(body, b"helloabcdefghijklmnopqrstuvwxyz", "step {step}");
        assert!(trailers.is_none());
    }
    let wire = b"3\r\nabc\r\n0\r\nX-Sum: 42\r\n\r\n";
    for step in [1, 5, wire.len()] {
        let (body, trailers) = dechunk(wire, step).unwrap();
        assert_eq!(body, b"abc");
        assert_eq!(trailers.unwrap().get("x-sum").unwrap(), "42");
    }
}

#[test]
fn malformed_chunked_bodies_are_errors() {
    assert_eq!(dechunk(b"zz\r\n", 4).unwrap_err(), WireError::ChunkSize);
    assert_eq!(
        dechunk(b"3\r\nabcX\r\n0\r\n\r\n", 100).unwrap_err(),
        WireError::ChunkDelimiter
    );
    assert_eq!(
        dechunk(b"fffffffffffffffff\r\n", 100).unwrap_err(),
        WireError::ChunkSize
    );
    let mut long = b"1;".to_vec();
    long.resize(MAX_CHUNK_LINE + 10, b'a');
    assert_eq!(
        dechunk(&long, long.len()).unwrap_err(),
        WireError::ChunkLineTooLong
    );
    assert_eq!(dechunk(b"3\r\nab", 100).unwrap_err(), WireError::Truncated);
    // A trailer section over the cap is refused whether it arrives whole or in pieces.
    let mut big = b"0\r\nx: ".to_vec();
    big.resize(MAX_TRAILERS + 10, b'a');
    big.extend_from_slice(b"\r\n\r\n");
    for step in [1000, big.len()] {
        assert_eq!(
            dechunk(&big, step).unwrap_err(),
            WireError::Trailers,
            "step {step}"
        );
    }
}
