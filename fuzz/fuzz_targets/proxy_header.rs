//! The PROXY protocol header is the first thing a trusted load balancer sends on a connection:
//! any bytes must parse or be refused without panicking. A complete header must lie within the
//! input and be a whole header: every strict prefix of it is incomplete, neither complete nor
//! refused, so `read_header` waits for exactly it. No input at the size cap is still incomplete.
//! Addresses that parse must survive being written again as v1 and as v2 and parsed back, as
//! Meridian does when it forwards them upstream.
#![no_main]

use lb::proxy_protocol::{self, Parsed, MAX_HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (header, consumed) = match proxy_protocol::parse(data) {
        Ok(Parsed::Complete { header, consumed }) => (header, consumed),
        Ok(Parsed::Incomplete) => {
            assert!(
                data.len() < MAX_HEADER_LEN,
                "{} bytes still incomplete",
                data.len()
            );
            return;
        }
        Err(_) => return,
    };
    assert!(
        consumed <= data.len(),
        "consumed {consumed} of {}",
        data.len()
    );
    assert!(consumed > 0, "an empty header");

    let header_bytes = &data[..consumed];
    match proxy_protocol::parse(header_bytes) {
        Ok(Parsed::Complete {
            header: again,
            consumed: again_consumed,
        }) => {
            assert_eq!(again, header, "the header alone parsed differently");
            assert_eq!(again_consumed, consumed);
        }
        other => panic!("the header alone gave {other:?}"),
    }
    for cut in 0..consumed {
        let prefix = proxy_protocol::parse(&header_bytes[..cut]);
        assert!(
            matches!(prefix, Ok(Parsed::Incomplete)),
            "a {cut}-byte prefix of a {consumed}-byte header gave {prefix:?}"
        );
    }

    let (Some(source), Some(destination)) = (header.source, header.destination) else {
        return;
    };
    for encoded in [
        proxy_protocol::encode_v1(source, destination),
        proxy_protocol::encode_v2(source, destination),
    ] {
        match proxy_protocol::parse(&encoded) {
            Ok(Parsed::Complete {
                header: again,
                consumed,
            }) => {
                assert_eq!(
                    consumed,
                    encoded.len(),
                    "re-encoded header not consumed whole"
                );
                assert_eq!(
                    (again.source, again.destination),
                    (Some(source), Some(destination)),
                    "addresses changed when re-encoded as {}",
                    encoded.escape_ascii()
                );
            }
            other => panic!(
                "re-encoded header {} gave {other:?}",
                encoded.escape_ascii()
            ),
        }
    }
});
