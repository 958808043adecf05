//! The only unsafe code in the workspace: a zlib deflate stream driven through zlib-rs's C API
//! (`libz-rs-sys`), which is the only public way to call `deflateTune`. Everything outside this
//! module works on slices and `Vec`s.
//!
//! The contract kept here, call by call:
//! - the `z_stream` is boxed before `deflateInit2_` and never moves or is shared afterwards;
//! - `next_in`/`avail_in` describe a live `&[u8]` for the length of one `deflate` call
//!   (deflate only reads input), and `next_out`/`avail_out` the spare capacity of a live
//!   `&mut Vec<u8>`; both are reset to null before the borrow ends;
//! - the `Vec`'s length grows only by the bytes deflate reports written (`avail_out` fell by
//!   that much), which it has initialized;
//! - `deflateEnd` runs exactly once, in `Drop`, and only on a stream whose init succeeded.
#![allow(unsafe_code)]

use std::ffi::c_int;

use libz_rs_sys::{
    deflate, deflateEnd, deflateInit2_, deflateTune, z_stream, zlibVersion, Z_DEFLATED, Z_OK,
};

pub use libz_rs_sys::{Z_BUF_ERROR, Z_FINISH, Z_NO_FLUSH, Z_STREAM_END, Z_SYNC_FLUSH};

/// zlib's four search parameters (see zlib's `deflateTune`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tune {
    pub good_length: u16,
    pub max_lazy: u16,
    pub nice_length: u16,
    pub max_chain: u16,
}

pub struct Stream {
    strm: Box<z_stream>,
}

// SAFETY: the stream owns its state (allocated by zlib-rs through Rust's global allocator) and
// holds no pointer to anything outside itself between calls (`next_in`/`next_out` are null
// then), so moving it to another thread is sound.
unsafe impl Send for Stream {}
// SAFETY: `Stream` has no method taking `&self` and its field is private: a shared reference
// gives no access to the z_stream at all, so sharing one between threads cannot race.
unsafe impl Sync for Stream {}

impl Stream {
    /// `window_bits` as zlib takes it: 9–15 for a zlib wrapper, +16 for gzip.
    pub fn new(level: i32, window_bits: i32, tune: Option<Tune>) -> Result<Stream, c_int> {
        let mut strm = Box::new(z_stream::default());
        let size = c_int::try_from(std::mem::size_of::<z_stream>()).unwrap_or(c_int::MAX);
        // SAFETY: `strm` is a valid, exclusively borrowed, zeroed z_stream (null allocator
        // functions select zlib-rs's default Rust allocator); `zlibVersion()` is a static
        // NUL-terminated string and `size` is this z_stream's own size.
        let rc = unsafe {
            deflateInit2_(
                &mut *strm,
                level,
                Z_DEFLATED,
                window_bits,
                8,
                0,
                zlibVersion(),
                size,
            )
        };
        if rc != Z_OK {
            // Init failed: no state was left allocated, so no deflateEnd (and no Stream).
            return Err(rc);
        }
        let mut stream = Stream { strm };
        if let Some(t) = tune {
            // SAFETY: the stream was initialized above and is exclusively borrowed.
            let rc = unsafe {
                deflateTune(
                    &mut *stream.strm,
                    c_int::from(t.good_length),
                    c_int::from(t.max_lazy),
                    c_int::from(t.nice_length),
                    c_int::from(t.max_chain),
                )
            };
            if rc != Z_OK {
                return Err(rc); // `stream` drops: deflateEnd frees the state.
            }
        }
        Ok(stream)
    }

    /// One `deflate` call: compresses from `input` into `out`'s spare capacity (which the
    /// caller makes non-empty). Returns the input bytes consumed and zlib's return code.
    pub fn deflate(&mut self, input: &[u8], out: &mut Vec<u8>, flush: c_int) -> (usize, c_int) {
        let avail_in = u32::try_from(input.len()).unwrap_or(u32::MAX);
        let spare = out.spare_capacity_mut();
        let avail_out = u32::try_from(spare.len()).unwrap_or(u32::MAX);
        self.strm.next_in = input.as_ptr().cast_mut();
        self.strm.avail_in = avail_in;
        self.strm.next_out = spare.as_mut_ptr().cast();
        self.strm.avail_out = avail_out;
        // SAFETY: the stream was initialized in `new`; `next_in` points at `avail_in` readable
        // bytes of `input` and `next_out` at `avail_out` writable bytes of `out`'s spare
        // capacity, both borrowed for this call. deflate does not read `next_out`'s old
        // contents (`MaybeUninit` is what the API allows) and never writes through `next_in`.
        let rc = unsafe { deflate(&mut *self.strm, flush) };
        let consumed = (avail_in - self.strm.avail_in) as usize;
        let produced = (avail_out - self.strm.avail_out) as usize;
        self.strm.next_in = std::ptr::null_mut();
        self.strm.avail_in = 0;
        self.strm.next_out = std::ptr::null_mut();
        self.strm.avail_out = 0;
        let len = out.len() + produced;
        // SAFETY: deflate wrote (initialized) exactly `produced` bytes from the old end of
        // `out` on (avail_out fell by that much), within its spare capacity.
        unsafe { out.set_len(len) };
        (consumed, rc)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: the stream was initialized (a `Stream` exists only after a successful init)
        // and this is the only call to deflateEnd for it. Its return code only reports a
        // stream ended mid-way (Z_DATA_ERROR), which is not an error when dropping one.
        let _ = unsafe { deflateEnd(&mut *self.strm) };
    }
}
