//! A passive watcher of an HTTP/1.1 connection's bytes that finds what hyper's parser accepts but
//! RFC 9112 lets a server refuse: a request with both `Content-Length` and `Transfer-Encoding`.
//! hyper drops the `Content-Length` and carries on; a strict proxy answers 400 and closes,
//! because such a request is the shape of request smuggling.
//!
//! It follows message framing (heads, fixed-length and chunked bodies) to know where each head
//! starts, and records the index of the first offending request; the pipeline refuses that
//! request. It never changes a byte, and on anything it does not understand (HTTP/2, an upgrade,
//! malformed framing, which hyper refuses anyway) it stops watching.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What the watcher tells the pipeline, shared per connection.
#[derive(Debug)]
pub struct FramingFlags {
    /// Index (from 0) of the first request whose head was refused, or `u64::MAX`.
    bad_from: AtomicU64,
    /// Requests the pipeline has started on this connection.
    served: AtomicU64,
}

impl Default for FramingFlags {
    fn default() -> Self {
        FramingFlags {
            bad_from: AtomicU64::new(u64::MAX),
            served: AtomicU64::new(0),
        }
    }
}

impl FramingFlags {
    /// Called once per request by the pipeline: whether this request's head was refused.
    pub fn next_request_is_bad(&self) -> bool {
        let index = self.served.fetch_add(1, Ordering::Relaxed);
        index >= self.bad_from.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
enum State {
    Head,
    Fixed(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkDataEnd(u8),
    Trailers,
    Off,
}

/// Headers one head may have (hyper's default limit).
const MAX_HEADERS: usize = 100;

/// Longest chunk-size line or trailer line worth following.
const MAX_LINE: usize = 4096;

pub struct FramingWatch {
    state: State,
    buf: Vec<u8>,
    max_head: usize,
    heads: u64,
    flags: Arc<FramingFlags>,
}

impl FramingWatch {
    pub fn new(max_head: usize, flags: Arc<FramingFlags>) -> FramingWatch {
        FramingWatch {
            state: State::Head,
            buf: Vec::new(),
            max_head,
            heads: 0,
            flags,
        }
    }

    /// Feeds bytes just read from the client.
    pub fn observe(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.state {
                State::Off => return,
                State::Head => {
                    if self.buf.is_empty() && self.heads == 0 && data.starts_with(b"PRI * HTTP/2") {
                        self.state = State::Off;
                        return;
                    }
                    if self.buf.is_empty() {
                        // The usual case: the whole head arrived in one read. Parse it in place.
                        let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
                        let mut req = httparse::Request::new(&mut []);
                        match req.parse_with_uninit_headers(data, &mut headers) {
                            Ok(httparse::Status::Complete(n)) => {
                                self.state = self.head_done(&req);
                                data = &data[n..];
                                continue;
                            }
                            Ok(httparse::Status::Partial) => {}
                            Err(_) => {
                                self.state = State::Off;
                                return;
                            }
                        }
                    }
                    let searched = self.buf.len().saturating_sub(3);
                    self.buf.extend_from_slice(data);
                    let Some(end) =
                        find(&self.buf[searched..], b"\r\n\r\n").map(|i| searched + i + 4)
                    else {
                        if self.buf.len() > self.max_head {
                            self.state = State::Off;
                        }
                        return;
                    };
                    // What follows the head in this read goes on to the body state.
                    let consumed_from_data = end - (self.buf.len() - data.len());
                    let buf = std::mem::take(&mut self.buf);
                    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
                    let mut req = httparse::Request::new(&mut []);
                    self.state = match req.parse_with_uninit_headers(&buf[..end], &mut headers) {
                        Ok(httparse::Status::Complete(_)) => self.head_done(&req),
                        _ => State::Off,
                    };
                    self.buf = buf;
                    self.buf.clear();
                    data = &data[consumed_from_data..];
                }
                State::Fixed(n) => {
                    let take = n.min(data.len() as u64);
                    data = &data[take as usize..];
                    self.state = if n == take {
                        State::Head
                    } else {
                        State::Fixed(n - take)
                    };
                }
                State::ChunkSize | State::Trailers => {
                    let Some(nl) = data.iter().position(|&b| b == b'\n') else {
                        self.buf.extend_from_slice(data);
                        if self.buf.len() > MAX_LINE {
                            self.state = State::Off;
                        }
                        return;
                    };
                    self.buf.extend_from_slice(&data[..=nl]);
                    data = &data[nl + 1..];
                    let line = std::mem::take(&mut self.buf);
                    self.state = match self.state {
                        State::ChunkSize => match chunk_size(&line) {
                            Some(0) => State::Trailers,
                            Some(n) => State::ChunkData(n),
                            None => State::Off,
                        },
                        // An empty line ends the trailers and the message.
                        _ if line == b"\r\n" || line == b"\n" => State::Head,
                        _ => State::Trailers,
                    };
                }
                State::ChunkData(n) => {
                    let take = n.min(data.len() as u64);
                    data = &data[take as usize..];
                    self.state = if n == take {
                        State::ChunkDataEnd(0)
                    } else {
                        State::ChunkData(n - take)
                    };
                }
                State::ChunkDataEnd(seen) => {
                    let expected = [b'\r', b'\n'];
                    if data[0] != expected[usize::from(seen)] {
                        self.state = State::Off;
                        return;
                    }
                    data = &data[1..];
                    self.state = if seen == 1 {
                        State::ChunkSize
                    } else {
                        State::ChunkDataEnd(1)
                    };
                }
            }
        }
    }

    fn head_done(&mut self, req: &httparse::Request<'_, '_>) -> State {
        let index = self.heads;
        self.heads += 1;
        let mut content_length: Option<u64> = None;
        let mut transfer_encoding = false;
        let mut upgrade = req.method == Some("CONNECT");
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                content_length = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok());
                if content_length.is_none() {
                    return State::Off;
                }
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                transfer_encoding = true;
            } else if h.name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            }
        }
        if transfer_encoding && content_length.is_some() {
            self.flags.bad_from.fetch_min(index, Ordering::Relaxed);
            // The connection ends after the answer; nothing after this head matters.
            return State::Off;
        }
        if upgrade {
            return State::Off;
        }
        match (transfer_encoding, content_length) {
            (true, _) => State::ChunkSize,
            (false, Some(0)) | (false, None) => State::Head,
            (false, Some(n)) => State::Fixed(n),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits: &[u8] = line
        .split(|&b| b == b';' || b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(&[]);
    let digits = std::str::from_utf8(digits)
        .ok()?
        .trim_end_matches([' ', '\t']);
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(chunks: &[&[u8]]) -> Arc<FramingFlags> {
        let flags = Arc::new(FramingFlags::default());
        let mut w = FramingWatch::new(32 * 1024, flags.clone());
        for c in chunks {
            w.observe(c);
        }
        flags
    }

    fn bad_index(flags: &FramingFlags) -> Option<u64> {
        let i = flags.bad_from.load(Ordering::Relaxed);
        (i != u64::MAX).then_some(i)
    }

    #[test]
    fn content_length_with_transfer_encoding_is_flagged() {
        let f = watch(&[b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"]);
        assert_eq!(bad_index(&f), Some(0));
        assert!(f.next_request_is_bad());
    }

    #[test]
    fn follows_bodies_to_flag_the_right_pipelined_request() {
        // A fixed body that contains a head-like text, then a chunked one, then the bad one,
        // split at awkward places.
        let fake_head = "GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: x\r\n\r\n";
        let stream = format!(
            "POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{fake_head}\
             POST /2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
             5;ext=1\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n\
             GET /3 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n",
            fake_head.len()
        );
        let stream = stream.as_bytes();
        for split in [1usize, 7, 13, 50, 97] {
            let parts: Vec<&[u8]> = stream.chunks(split).collect();
            let f = watch(&parts);
            assert_eq!(bad_index(&f), Some(2), "split every {split} bytes");
            assert!(!f.next_request_is_bad());
            assert!(!f.next_request_is_bad());
            assert!(f.next_request_is_bad());
        }
    }

    #[test]
    fn clean_traffic_and_http2_are_never_flagged() {
        let f = watch(&[b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n"]);
        assert_eq!(bad_index(&f), None);
        let f = watch(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"\x00\x00\x00\x04"]);
        assert_eq!(bad_index(&f), None);
    }
}
