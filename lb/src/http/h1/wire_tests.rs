use super::*;

fn parse(text: &str) -> Result<Option<RequestHead>, HeadError> {
    let mut buf = BytesMut::from(text);
    parse_request(&mut buf, 8192, &mut Vec::new())
}

fn head(text: &str) -> RequestHead {
    match parse(text) {
        Ok(Some(h)) => h,
        other => panic!("{text:?} did not parse: {other:?}"),
    }
}

#[test]
fn a_get_parses_without_copies_and_leaves_the_next_request_in_the_buffer() {
    let mut buf = BytesMut::from(
        "GET /a/b?c=1 HTTP/1.1\r\nHost: example.test\r\nX-Two: 1\r\nX-Two: 2\r\n\r\nGET /next",
    );
    let h = parse_request(&mut buf, 8192, &mut Vec::new())
        .expect("valid")
        .expect("complete");
    assert_eq!(&buf[..], b"GET /next");
    assert_eq!(h.request.method(), Method::GET);
    assert_eq!(h.request.uri(), "/a/b?c=1");
    assert_eq!(h.request.version(), Version::HTTP_11);
    assert_eq!(h.request.headers()["host"], "example.test");
    let two: Vec<_> = h.request.headers().get_all("x-two").iter().collect();
    assert_eq!(two, ["1", "2"]);
    assert_eq!(h.body, BodyFraming::Empty);
    assert!(h.keep_alive);
    assert!(!h.expect_continue && !h.trailers && !h.framing_refused);
}

#[test]
fn every_strict_prefix_of_a_head_is_incomplete() {
    let text =
        "POST http://example.test/x HTTP/1.1\r\nHost: example.test\r\nContent-Length: 3\r\n\r\n";
    for end in 0..text.len() {
        let mut buf = BytesMut::from(&text[..end]);
        assert!(
            matches!(parse_request(&mut buf, 8192, &mut Vec::new()), Ok(None)),
            "prefix of {end} bytes"
        );
        assert_eq!(buf.len(), end, "a partial head is left in place");
    }
    let h = head(text);
    assert_eq!(h.request.uri().host(), Some("example.test"));
    assert_eq!(h.body, BodyFraming::Length(3));
}

#[test]
fn body_framing_follows_rfc_9112() {
    assert_eq!(
        head("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").body,
        BodyFraming::Empty
    );
    assert_eq!(
        head("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7, 7\r\n\r\n").body,
        BodyFraming::Length(7)
    );
    assert_eq!(
        head("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").body,
        BodyFraming::Chunked
    );
    // Both: not read, refused by the pipeline, and the connection closes after.
    let both = head(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    assert!(both.framing_refused);
    assert_eq!(both.body, BodyFraming::Empty);
    assert!(!both.keep_alive);
    for (text, why) in [
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
            "chunked last",
        ),
        (
            "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.0",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "Content-Length",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
            "Content-Length",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "Content-Length",
        ),
    ] {
        match parse(text) {
            Err(HeadError::Malformed(m)) => assert!(m.contains(why), "{text:?}: {m}"),
            other => panic!("{text:?}: {other:?}"),
        }
    }
}

#[test]
fn keep_alive_expect_and_te_follow_the_client() {
    assert!(!head("GET / HTTP/1.0\r\n\r\n").keep_alive);
    assert!(head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
    assert!(!head("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n").keep_alive);
    assert!(
        head("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n")
            .expect_continue
    );
    // Nothing to wait for without a body.
    assert!(!head("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n").expect_continue);
    assert!(head("GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n").trailers);
}

#[test]
fn bad_heads_are_refused_with_the_status_to_answer() {
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "b".repeat(9000)
    );
    assert_eq!(parse(&big).err(), Some(HeadError::TooLarge));
    // Still incomplete, but already over the limit.
    assert_eq!(parse(&big[..8500]).err(), Some(HeadError::TooLarge));
    let many: String = (0..120).map(|i| format!("X-{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
    assert_eq!(parse(&many).err(), Some(HeadError::TooLarge));
    assert_eq!(HeadError::TooLarge.status(), 431);
    for text in [
        "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  continued\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-A : 1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-A: \x01\r\n\r\n",
        "G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http://[::1 HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        match parse(text) {
            Err(e @ HeadError::Malformed(_)) => assert_eq!(e.status(), 400, "{text:?}"),
            other => panic!("{text:?}: {other:?}"),
        }
    }
}

fn encoded(
    status: u16,
    headers: &[(&str, &str)],
    framing: ResponseFraming,
    length: Option<u64>,
    close: bool,
    version: Version,
) -> String {
    let mut map = HeaderMap::new();
    for (n, v) in headers {
        map.append(
            HeaderName::from_bytes(n.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    let mut dst = b"stale".to_vec();
    encode_response(
        &mut dst,
        &ResponseHead {
            status: StatusCode::from_u16(status).expect("status"),
            headers: &map,
            encoded: None,
            framing,
            length,
            close,
            version,
        },
    );
    String::from_utf8(dst).expect("ascii")
}

#[test]
fn response_heads_carry_meridians_framing_date_and_connection() {
    let head = encoded(
        200,
        &[
            ("content-type", "text/plain"),
            ("content-length", "99"),
            ("transfer-encoding", "chunked"),
        ],
        ResponseFraming::Length(5),
        Some(5),
        false,
        Version::HTTP_11,
    );
    assert!(
        head.starts_with(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\ndate: "
        ),
        "{head}"
    );
    assert!(head.ends_with(" GMT\r\n\r\n"), "{head}");
    assert_eq!(head.matches("content-length").count(), 1);
    assert!(!head.contains("transfer-encoding"));
    // The date is today's, in IMF-fixdate.
    let date = head
        .split("date: ")
        .nth(1)
        .and_then(|d| d.split("\r\n").next())
        .expect("date");
    let parsed = httpdate::parse_http_date(date).expect("an HTTP date");
    let skew = SystemTime::now().duration_since(parsed).unwrap_or_default();
    assert!(skew.as_secs() < 5, "{date}");

    let chunked = encoded(
        502,
        &[("date", "x"), ("connection", "keep-alive")],
        ResponseFraming::Chunked,
        None,
        true,
        Version::HTTP_11,
    );
    assert_eq!(
        chunked,
        "HTTP/1.1 502 Bad Gateway\r\ndate: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    // A HEAD (or 304) keeps the length the member gave; a 204 has none.
    let head_resp = encoded(
        200,
        &[("date", "x"), ("content-length", "42")],
        ResponseFraming::None,
        None,
        false,
        Version::HTTP_11,
    );
    assert_eq!(
        head_resp,
        "HTTP/1.1 200 OK\r\ndate: x\r\ncontent-length: 42\r\n\r\n"
    );
    let no_content = encoded(
        204,
        &[("date", "x"), ("content-length", "0")],
        ResponseFraming::None,
        None,
        false,
        Version::HTTP_11,
    );
    assert_eq!(no_content, "HTTP/1.1 204 No Content\r\ndate: x\r\n\r\n");
    // An HTTP/1.0 client kept open is told so.
    let old = encoded(
        200,
        &[("date", "x")],
        ResponseFraming::Length(0),
        Some(0),
        false,
        Version::HTTP_10,
    );
    assert_eq!(
        old,
        "HTTP/1.1 200 OK\r\ndate: x\r\ncontent-length: 0\r\nconnection: keep-alive\r\n\r\n"
    );
}

#[test]
fn response_framing_table() {
    let none = HeaderMap::new();
    let mut cl = HeaderMap::new();
    cl.insert(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
    let ok = StatusCode::OK;
    let v11 = Version::HTTP_11;
    assert_eq!(
        response_framing(true, ok, &cl, Some(0), v11),
        (ResponseFraming::None, None)
    );
    for code in [100, 204, 304] {
        let s = StatusCode::from_u16(code).expect("status");
        assert_eq!(
            response_framing(false, s, &cl, None, v11).0,
            ResponseFraming::None
        );
    }
    assert_eq!(
        response_framing(false, ok, &cl, Some(3), v11),
        (ResponseFraming::Length(3), Some(3))
    );
    assert_eq!(
        response_framing(false, ok, &cl, None, v11),
        (ResponseFraming::Length(12), Some(12))
    );
    assert_eq!(
        response_framing(false, ok, &none, None, v11),
        (ResponseFraming::Chunked, None)
    );
    assert_eq!(
        response_framing(false, ok, &none, None, Version::HTTP_10),
        (ResponseFraming::Close, None)
    );
}

#[test]
fn chunk_lines_and_trailers() {
    for (len, line) in [
        (0, "0\r\n"),
        (1, "1\r\n"),
        (255, "ff\r\n"),
        (4096, "1000\r\n"),
        (usize::MAX, "ffffffffffffffff\r\n"),
    ] {
        assert_eq!(ChunkLine::new(len).as_bytes(), line.as_bytes());
    }
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from_static("0"));
    let mut dst = Vec::new();
    encode_trailers(&mut dst, &t);
    assert_eq!(dst, b"0\r\ngrpc-status: 0\r\n\r\n");
}

#[test]
fn encoded_fields_go_after_the_status_line_and_carry_their_date() {
    let mut stored = HeaderMap::new();
    stored.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css"));
    stored.insert(
        header::DATE,
        HeaderValue::from_static("Tue, 08 Dec 2026 01:00:00 GMT"),
    );
    stored.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
    stored.insert(header::AGE, HeaderValue::from_static("77"));
    let encoded = EncodedFields::new(&stored, &[header::CONTENT_LENGTH, header::AGE]);
    let mut own = HeaderMap::new();
    own.insert(header::AGE, HeaderValue::from_static("3"));
    let mut dst = Vec::new();
    encode_response(
        &mut dst,
        &ResponseHead {
            status: StatusCode::OK,
            headers: &own,
            encoded: Some(&encoded),
            framing: ResponseFraming::Length(4),
            length: Some(4),
            close: false,
            version: Version::HTTP_11,
        },
    );
    assert_eq!(
        String::from_utf8(dst).expect("ascii"),
        "HTTP/1.1 200 OK\r\ncontent-type: text/css\r\ndate: Tue, 08 Dec 2026 01:00:00 GMT\r\n\
         age: 3\r\ncontent-length: 4\r\n\r\n"
    );
}
