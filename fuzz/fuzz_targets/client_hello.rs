//! The start of a TLS passthrough connection is whatever a client sends: any bytes must be
//! judged (a ClientHello with its SNI, incomplete, or invalid) without panicking, and a
//! verdict on a complete ClientHello must not change when more bytes follow it.
#![no_main]

use lb::tls::passthrough::{peek, Peek};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let verdict = peek(data);
    if let Peek::Hello(Some(name)) = &verdict {
        assert_eq!(name, &name.to_ascii_lowercase(), "SNI is lowercase");
        let mut more = data.to_vec();
        more.extend_from_slice(b"\x17\x03\x03\x00\x01\x00");
        assert_eq!(peek(&more), verdict, "trailing bytes changed the verdict");
    }
});
