//! What a client sends is read by `lb::h1_server_wire`: any bytes must parse or be refused
//! without panicking. A head that parses is incomplete in every strict prefix (the server waits
//! for exactly it), its body framing is consistent with its fields, and a response head can be
//! written for it whatever its fields were.
#![no_main]

use bytes::BytesMut;
use http::{Method, StatusCode};
use lb::h1_server_wire::{
    encode_response, parse_request, response_framing, BodyFraming, ResponseHead,
};
use libfuzzer_sys::fuzz_target;

const MAX_HEAD: usize = 16 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut spans = Vec::new();
    let mut buf = BytesMut::from(data);
    let Ok(Some(head)) = parse_request(&mut buf, MAX_HEAD, &mut spans) else {
        return;
    };
    let consumed = data.len() - buf.len();
    assert!(consumed > 0 && consumed <= MAX_HEAD);
    let mut prefix = BytesMut::from(&data[..consumed - 1]);
    assert!(
        matches!(parse_request(&mut prefix, MAX_HEAD, &mut spans), Ok(None)),
        "a strict prefix of a head parsed"
    );
    let headers = head.request.headers();
    if head.framing_refused {
        assert_eq!(head.body, BodyFraming::Empty);
        assert!(!head.keep_alive);
    }
    if let BodyFraming::Length(n) = head.body {
        assert!(n > 0);
        assert!(!headers.contains_key(http::header::TRANSFER_ENCODING));
    }
    let mut out = Vec::new();
    let is_head = head.request.method() == Method::HEAD;
    let (framing, length) = response_framing(
        is_head,
        StatusCode::OK,
        headers,
        None,
        head.request.version(),
    );
    // The request's fields written back as a response's: whatever a client sent, the head
    // Meridian writes has one status line and ends with an empty line.
    encode_response(
        &mut out,
        &ResponseHead { status: StatusCode::OK, headers, encoded: None, framing, length, close: !head.keep_alive, version: head.request.version() },
    );
    assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(out.ends_with(b"\r\n\r\n"));
});
