//! Streaming gzip (RFC 1952) and zlib (RFC 1950) compression on zlib-rs, with each level's
//! match-search parameters chosen so that level N compresses at least as well as zlib at N
//! (what nginx's `gzip_comp_level` means; level 6 within 0.3 %) in less time.
//!
//! Why this crate exists: flate2 (and zlib-rs's own safe API) take a level only. zlib-rs's
//! levels 3–6 use zlib-ng's looser "medium" matcher (4–6 % larger output than zlib at the same
//! level) and its level 7 uses a 256-long hash chain (as small as zlib 5, but slower than
//! zlib 5 on mixed content). zlib's `deflateTune` sets the lazy matcher's four parameters
//! directly; with them, level 5 comes out 0–2 % smaller than zlib 5 and about 1.5× faster on
//! prose, HTML, CSS, JavaScript and JSON (perf/RESULTS.md, "gzip with tuned search
//! parameters"). `deflateTune` is reachable only through zlib-rs's C API, so the one module that
//! calls it (`raw`) is the one place in the workspace allowed `unsafe`.

mod raw;

use std::io;

use raw::{Stream, Tune, Z_BUF_ERROR, Z_FINISH, Z_NO_FLUSH, Z_STREAM_END, Z_SYNC_FLUSH};

/// The wrapper around the deflate data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// gzip (`Content-Encoding: gzip`).
    Gzip,
    /// zlib (`Content-Encoding: deflate`, which HTTP defines as the zlib format).
    Zlib,
}

/// The zlib-rs level and, where zlib-rs's own parameters are the wrong trade, the lazy matcher's
/// parameters for a level on zlib's scale (1–9; 0 stores).
///
/// Chosen by measuring every combination of good ∈ {4, 6, 8}, lazy ∈ {16, 32, 64},
/// nice ∈ {48, 64, 96, 128}, chain ∈ {16, 24, 32, 48} (and a coarser grid around it) on 100 KB
/// each of prose, HTML, CSS, JavaScript and JSON against zlib 1.2.13: the fastest setting whose
/// output is no larger than zlib's at that level on every one of them.
/// - 1–3: zlib-rs's fast matchers already beat zlib's size in less time.
/// - 4: lazy matcher with (4, 16, 128, 16): 4 % smaller than zlib 4, 1.3× faster.
/// - 5: lazy matcher with (4, 32, 96, 32): 0.1–2 % smaller than zlib 5, 1.5× faster.
/// - 6: zlib-rs 7 as it is (within 0.3 % of zlib 6, 1.3× faster; no tuning tried did better).
/// - 7–9: zlib-rs 8, 9, 9 (longer chains than zlib's: at least as small).
fn params(level: u32) -> (i32, Option<Tune>) {
    let tune = |good_length, max_lazy, nice_length, max_chain| {
        Some(Tune {
            good_length,
            max_lazy,
            nice_length,
            max_chain,
        })
    };
    match level {
        0 => (0, None),
        1 | 2 => (2, None),
        3 => (3, None),
        4 => (7, tune(4, 16, 128, 16)),
        5 => (7, tune(4, 32, 96, 32)),
        6 => (7, None),
        7 => (8, None),
        _ => (9, None),
    }
}

/// Output space made available per deflate call.
const OUT_CHUNK: usize = 16 * 1024;

/// A streaming compressor writing into a buffer the caller drains (`get_mut` + `mem::take`).
pub struct Encoder {
    stream: Stream,
    out: Vec<u8>,
}

impl Encoder {
    /// A compressor for `format` at `level` on zlib's scale (above 9 is taken as 9).
    pub fn new(format: Format, level: u32) -> io::Result<Encoder> {
        let (zlevel, tune) = params(level);
        let window_bits = match format {
            Format::Gzip => 15 + 16,
            Format::Zlib => 15,
        };
        let stream = Stream::new(zlevel, window_bits, tune)
            .map_err(|rc| io::Error::other(format!("deflate init failed (zlib code {rc})")))?;
        Ok(Encoder {
            stream,
            out: Vec::new(),
        })
    }

    /// Compresses all of `data` (the output may lag behind until `flush` or `finish`).
    pub fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            self.out.reserve(OUT_CHUNK);
            let (consumed, rc) = self.stream.deflate(data, &mut self.out, Z_NO_FLUSH);
            check(rc)?;
            data = &data[consumed..];
        }
        Ok(())
    }

    /// Emits everything written so far, ending on a byte boundary (a sync flush): a client can
    /// decode all of it before more arrives.
    pub fn flush(&mut self) -> io::Result<()> {
        self.drive(Z_SYNC_FLUSH)
    }

    /// The compressed bytes waiting to be taken.
    pub fn get_ref(&self) -> &Vec<u8> {
        &self.out
    }

    /// The compressed bytes waiting, to be taken with `std::mem::take`.
    pub fn get_mut(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// Ends the stream (trailer included) and returns the bytes not yet taken.
    pub fn finish(mut self) -> io::Result<Vec<u8>> {
        self.drive(Z_FINISH)?;
        Ok(std::mem::take(&mut self.out))
    }

    /// Calls deflate with no input until it has emitted everything `flush` asks for, which it
    /// has when a call leaves output space unused (or, for `Z_FINISH`, ends the stream).
    fn drive(&mut self, flush: i32) -> io::Result<()> {
        loop {
            self.out.reserve(OUT_CHUNK);
            let room = self.out.capacity() - self.out.len();
            let before = self.out.len();
            let (_, rc) = self.stream.deflate(&[], &mut self.out, flush);
            // Z_BUF_ERROR: nothing left to emit (a flush right after a flush).
            if rc == Z_STREAM_END || rc == Z_BUF_ERROR {
                return Ok(());
            }
            check(rc)?;
            if self.out.len() - before < room && flush != Z_FINISH {
                return Ok(());
            }
        }
    }
}

fn check(rc: i32) -> io::Result<()> {
    if rc >= 0 {
        Ok(())
    } else {
        Err(io::Error::other(format!("deflate failed (zlib code {rc})")))
    }
}

#[cfg(test)]
mod tests;
