//! What a member sends back is read by `lb::h1_wire`: any bytes must parse or be refused without
//! panicking. A head that parses is incomplete in every strict prefix (Meridian waits for
//! exactly it), its framing is decided for GET and HEAD, and a chunked body decodes to the same
//! data, trailers and outcome whether its bytes arrive at once or a few at a time.
#![no_main]

use bytes::BytesMut;
use http::{HeaderMap, Method};
use lb::h1_wire::{parse_response, response_framing, Chunked, Decoded, Framing};
use libfuzzer_sys::fuzz_target;

/// Decodes `wire` fed `step` bytes at a time: the data, the trailers, and whether it ended
/// well (`Some(true)`), failed (`Some(false)`) or ran out of bytes (`None`).
fn dechunk(wire: &[u8], step: usize) -> (Vec<u8>, Option<HeaderMap>, Option<bool>) {
    let mut state = Chunked::Size;
    let mut buf = BytesMut::new();
    let (mut data, mut trailers, mut fed) = (Vec::new(), None, 0);
    loop {
        match state.decode(&mut buf) {
            Err(_) => return (data, trailers, Some(false)),
            Ok(Decoded::Data(d)) => data.extend_from_slice(&d),
            Ok(Decoded::Trailers(t)) => trailers = Some(t),
            Ok(Decoded::End) => return (data, trailers, Some(true)),
            Ok(Decoded::Pending) => {
                if fed == wire.len() {
                    return (data, trailers, None);
                }
                let end = (fed + step).min(wire.len());
                buf.extend_from_slice(&wire[fed..end]);
                fed = end;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let Ok(Some(head)) = parse_response(&mut buf) else {
        return;
    };
    let consumed = data.len() - buf.len();
    assert!(consumed > 0);
    let mut prefix = BytesMut::from(&data[..consumed - 1]);
    assert!(
        matches!(parse_response(&mut prefix), Ok(None)),
        "a strict prefix of a head parsed"
    );
    let _ = response_framing(&Method::HEAD, &head);
    if let Ok((Framing::Chunked, _)) = response_framing(&Method::GET, &head) {
        let body = &buf[..];
        let whole = dechunk(body, body.len().max(1));
        let step = 1 + usize::from(data[0] % 7);
        let pieces = dechunk(body, step);
        // Data may stop short of a failure at a different point; the rest must agree.
        match (whole.2, pieces.2) {
            (Some(false), Some(false)) => {}
            (w, p) => {
                assert_eq!(w, p, "outcome at once and in pieces of {step}");
                assert_eq!(whole.0, pieces.0, "data at once and in pieces of {step}");
                assert_eq!(whole.1, pieces.1, "trailers at once and in pieces of {step}");
            }
        }
    }
});
