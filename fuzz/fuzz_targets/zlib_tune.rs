//! `zlib-tune` holds the workspace's only unsafe code (zlib-rs's C API): any input, written in
//! any pieces with sync flushes between them, at any level and in either format, must come back
//! byte-exact through flate2's independent decoder, and everything written before a flush must
//! be decodable from the bytes emitted so far.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use zlib_tune::{Encoder, Format};

fuzz_target!(|data: &[u8]| {
    // Byte 0: level (low nibble) and format (bit 4); byte 1: how the rest is cut into writes.
    let (Some(&mode), Some(&cut)) = (data.first(), data.get(1)) else {
        return;
    };
    let body = &data[2..];
    let format = if mode & 0x10 == 0 { Format::Gzip } else { Format::Zlib };
    let level = u32::from(mode & 0x0f);
    let mut e = Encoder::new(format, level).expect("a valid level initializes");
    let mut sent = Vec::new();
    let step = usize::from(cut % 61) + 1;
    for (i, piece) in body.chunks(step).enumerate() {
        e.write_all(piece).expect("write");
        if cut & 0x80 != 0 && i % 3 == 0 {
            e.flush().expect("flush");
            sent.extend_from_slice(&std::mem::take(e.get_mut()));
            let written = (i + 1) * step;
            let mut partial = Vec::new();
            let _ = decoder(format, &sent).read_to_end(&mut partial);
            assert_eq!(partial, body[..written.min(body.len())], "after a flush");
        }
    }
    sent.extend_from_slice(&e.finish().expect("finish"));
    let mut out = Vec::new();
    decoder(format, &sent)
        .read_to_end(&mut out)
        .expect("the stream decodes");
    assert_eq!(out, body);
});

fn decoder<'a>(format: Format, bytes: &'a [u8]) -> Box<dyn Read + 'a> {
    match format {
        Format::Gzip => Box::new(flate2::read::GzDecoder::new(bytes)),
        Format::Zlib => Box::new(flate2::read::ZlibDecoder::new(bytes)),
    }
}
