//! The PROXY protocol (HAProxy's spec, versions 1 and 2): reading the header a trusted load
//! balancer puts in front of a downstream connection, and writing one in front of an upstream one.
//!
//! The parser is our own rather than the `ppp` crate's (2.3, Apache-2.0). `ppp` checks lengths
//! before it indexes, but `read_header` depends on one answer being right, "incomplete or
//! invalid?", and `ppp` gets it wrong for some inputs: a v1 line with a stray CR
//! (`PROXY TCP4\r1.2.3.4 …`) or an `UNKNOWN` line with more than four extra fields stays
//! "incomplete" forever, so such a connection would hang until the timeout instead of being
//! dropped. It also accepts v2 family bytes the spec says to reject (`0x10`, `0x01`), rejects a
//! LOCAL header whose family the spec says to ignore, and reports a bad v2 family as a v1 error.
//! Guarding all that from outside would take about as much code as the two small formats, so we
//! own them here, with unit tests, proptests and a fuzz target (`fuzz/fuzz_targets/proxy_header.rs`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The longest header `parse` accepts. For any longer buffer it has already answered `Complete`
/// or an error, never `Incomplete`, so a reader never buffers more than this.
pub const MAX_HEADER_LEN: usize = 2048;

/// The spec's longest v1 line, CRLF included (`PROXY UNKNOWN` with two full IPv6 addresses).
pub const MAX_V1_LEN: usize = 107;

/// The 12 bytes every v2 header starts with.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Signature, version and command, family and transport, and the two-byte payload length.
const V2_FIXED_LEN: usize = 16;

const V1_PREFIX: &[u8] = b"PROXY ";

/// `PROXY UNKNOWN\r\n`, the shortest v1 line; a v2 header is at least 16 bytes. Reading this much
/// first can therefore never take application bytes.
const MIN_HEADER_LEN: usize = 15;

/// `PROXY TCP6 :: :: 0 0\r\n` and `PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n`.
const MIN_TCP6_LINE_LEN: usize = 22;
const MIN_TCP4_LINE_LEN: usize = 32;

/// What a PROXY header said about the connection it precedes.
///
/// The addresses are both set or both `None`. `None` means the header carries no client address
/// to use (v2 LOCAL, v1 `UNKNOWN`, v2 AF_UNSPEC, AF_UNIX or UDP), so the caller keeps the real
/// connection's endpoints, as the spec asks. Addresses are returned as sent: a `TCP6` line or an
/// AF_INET6 block holding `::ffff:a.b.c.d` gives an IPv6 address, so compare against IPv4 ranges
/// after `IpAddr::to_canonical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub source: Option<SocketAddr>,
    pub destination: Option<SocketAddr>,
}

/// A header read off a connection by [`read_header`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub source: Option<SocketAddr>,
    pub destination: Option<SocketAddr>,
    /// Bytes read past the header, which belong to the application protocol. `read_header` reads
    /// exact lengths, so this is always empty today; callers that put it back in front of the
    /// stream stay correct should reading ever become buffered.
    pub leftover: Bytes,
}

/// The answer of [`parse`] for the bytes seen so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Every byte so far fits a header that is not complete yet.
    Incomplete,
    /// A whole header, which is the first `consumed` bytes of the input.
    Complete { header: Header, consumed: usize },
}

/// Why no usable PROXY header was read; whatever the variant, the connection should be closed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyProtocolError {
    #[error("no complete proxy protocol header within {0:?}")]
    Timeout(Duration),
    #[error("connection closed after {received} bytes, before the proxy protocol header ended")]
    Truncated { received: usize },
    #[error("reading the proxy protocol header failed: {0}")]
    Io(#[source] std::io::Error),
    #[error("connection does not start with a proxy protocol header")]
    NotProxyProtocol,
    #[error("proxy protocol v1 line has no crlf within {MAX_V1_LEN} bytes")]
    V1TooLong,
    #[error("malformed proxy protocol v1 line: {0}")]
    MalformedV1(&'static str),
    #[error("proxy protocol v2 header of {0} bytes is longer than the {MAX_HEADER_LEN} accepted")]
    V2TooLong(usize),
    #[error("malformed proxy protocol v2 header: {0}")]
    MalformedV2(&'static str),
    #[error("unsupported proxy protocol version {0}")]
    UnsupportedVersion(u8),
    #[error("unsupported proxy protocol v2 command {0:#x}")]
    UnsupportedCommand(u8),
    #[error("unsupported proxy protocol address family {0}")]
    UnsupportedFamily(String),
}

const NO_ADDRESSES: Header = Header {
    source: None,
    destination: None,
};

/// Reads one PROXY header (v1 or v2) from the start of `stream`, and nothing after it: the stream
/// is left at the first byte of the application protocol.
///
/// Call it only on connections from trusted sources; the spec forbids guessing whether a header
/// is there. The whole header must arrive within `limit_wait`.
pub async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    limit_wait: Duration,
) -> Result<Accepted, ProxyProtocolError> {
    match tokio::time::timeout(limit_wait, read_exact_header(stream)).await {
        Ok(result) => result,
        Err(_elapsed) => Err(ProxyProtocolError::Timeout(limit_wait)),
    }
}

async fn read_exact_header<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<Accepted, ProxyProtocolError> {
    let mut buf: Vec<u8> = Vec::with_capacity(MIN_HEADER_LEN);
    loop {
        if let Parsed::Complete { header, consumed } = parse(&buf)? {
            return Ok(Accepted {
                source: header.source,
                destination: header.destination,
                leftover: Bytes::copy_from_slice(buf.get(consumed..).unwrap_or_default()),
            });
        }
        // Never ask for more than the shortest header that could still follow, so the read
        // cannot take bytes of the application protocol; TCP has no way to give them back.
        let want = header_len_lower_bound(&buf).saturating_sub(buf.len());
        buf.reserve(want);
        let limit = u64::try_from(want).unwrap_or(u64::MAX);
        let n = (&mut *stream)
            .take(limit)
            .read_buf(&mut buf)
            .await
            .map_err(ProxyProtocolError::Io)?;
        if n == 0 {
            return Err(ProxyProtocolError::Truncated {
                received: buf.len(),
            });
        }
    }
}

/// Parses a PROXY header (v1 or v2) at the start of `buf`.
///
/// Answers `Incomplete` only while every byte so far fits some valid header, and rejects input as
/// soon as the offending byte is visible, so a bad peer is dropped without waiting for more. Never
/// panics, whatever the input.
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyProtocolError> {
    if agrees_with(buf, &V2_SIGNATURE) {
        parse_v2(buf)
    } else if agrees_with(buf, V1_PREFIX) {
        parse_v1(buf)
    } else {
        Err(ProxyProtocolError::NotProxyProtocol)
    }
}

/// Whether `buf` and `prefix` are equal over their common length: one starts with the other.
fn agrees_with(buf: &[u8], prefix: &[u8]) -> bool {
    let common = buf.len().min(prefix.len());
    buf.get(..common) == prefix.get(..common)
}

/// Writes a v1 line for a TCP connection from `src` to `dst`.
///
/// A line carries one family, so when only one address is IPv4 it is written as IPv4-mapped IPv6
/// (`TCP6 ::ffff:a.b.c.d`) rather than sending `UNKNOWN`: the spec asks senders not to use
/// `UNKNOWN` for connections that should be accepted, and the mapping loses nothing.
pub fn encode_v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let line = match same_family(src, dst) {
        Pair::V4(s, d) => format!(
            "PROXY TCP4 {} {} {} {}\r\n",
            s.ip(),
            d.ip(),
            s.port(),
            d.port()
        ),
        Pair::V6(s, d) => format!(
            "PROXY TCP6 {} {} {} {}\r\n",
            s.ip(),
            d.ip(),
            s.port(),
            d.port()
        ),
    };
    line.into_bytes()
}

/// Writes a v2 header (PROXY command, TCP over IPv4 or IPv6, no TLVs) for a connection from `src`
/// to `dst`.
///
/// Mixed families become IPv6 with the IPv4 address mapped, as in [`encode_v1`]: the spec keeps
/// LOCAL for connections the proxy makes on its own behalf and AF_UNSPEC for families it cannot
/// express, and a mapped address is neither.
pub fn encode_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(V2_FIXED_LEN + 36);
    out.extend_from_slice(&V2_SIGNATURE);
    // Version 2, command PROXY.
    out.push(0x21);
    let (src_port, dst_port) = match same_family(src, dst) {
        Pair::V4(s, d) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
            (s.port(), d.port())
        }
        Pair::V6(s, d) => {
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
            (s.port(), d.port())
        }
    };
    out.extend_from_slice(&src_port.to_be_bytes());
    out.extend_from_slice(&dst_port.to_be_bytes());
    out
}

/// Two endpoints of one family, as a header carries them.
enum Pair {
    V4(SocketAddrV4, SocketAddrV4),
    V6(SocketAddrV6, SocketAddrV6),
}

fn same_family(src: SocketAddr, dst: SocketAddr) -> Pair {
    fn mapped(addr: SocketAddrV4) -> SocketAddrV6 {
        SocketAddrV6::new(addr.ip().to_ipv6_mapped(), addr.port(), 0, 0)
    }
    match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => Pair::V4(s, d),
        (SocketAddr::V6(s), SocketAddr::V6(d)) => Pair::V6(s, d),
        (SocketAddr::V4(s), SocketAddr::V6(d)) => Pair::V6(mapped(s), d),
        (SocketAddr::V6(s), SocketAddr::V4(d)) => Pair::V6(s, mapped(d)),
    }
}

// ---- Version 2 (binary) ----

/// What a v2 family/transport byte asks the receiver to do with the address block.
enum V2Addresses {
    Tcp4,
    Tcp6,
    /// A valid combination we do not use (AF_UNSPEC, UDP, AF_UNIX): the spec says to fall back to
    /// the real endpoints. The block must still be at least this long.
    Ignored(usize),
}

impl V2Addresses {
    fn from_byte(fam: u8) -> Result<Self, ProxyProtocolError> {
        match fam {
            0x11 => Ok(Self::Tcp4),
            0x21 => Ok(Self::Tcp6),
            0x00 => Ok(Self::Ignored(0)),
            0x12 => Ok(Self::Ignored(12)),
            0x22 => Ok(Self::Ignored(36)),
            0x31 | 0x32 => Ok(Self::Ignored(216)),
            // The spec says every other value must be rejected as invalid.
            other => Err(ProxyProtocolError::UnsupportedFamily(format!(
                "{other:#04x}"
            ))),
        }
    }

    fn min_len(&self) -> usize {
        match self {
            Self::Tcp4 => 12,
            Self::Tcp6 => 36,
            Self::Ignored(len) => *len,
        }
    }
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyProtocolError> {
    // Each fixed byte is judged as soon as it arrives.
    let Some(&ver_cmd) = buf.get(12) else {
        return Ok(Parsed::Incomplete);
    };
    let version = ver_cmd >> 4;
    if version != 2 {
        return Err(ProxyProtocolError::UnsupportedVersion(version));
    }
    let local = match ver_cmd & 0x0f {
        0x0 => true,
        0x1 => false,
        other => return Err(ProxyProtocolError::UnsupportedCommand(other)),
    };
    let Some(&fam) = buf.get(13) else {
        return Ok(Parsed::Incomplete);
    };
    // For LOCAL the spec says the family is ignored, whatever it is.
    let addresses = if local {
        None
    } else {
        Some(V2Addresses::from_byte(fam)?)
    };
    let (Some(&hi), Some(&lo)) = (buf.get(14), buf.get(15)) else {
        return Ok(Parsed::Incomplete);
    };
    let total = V2_FIXED_LEN + usize::from(u16::from_be_bytes([hi, lo]));
    if total > MAX_HEADER_LEN {
        return Err(ProxyProtocolError::V2TooLong(total));
    }
    if let Some(addresses) = &addresses {
        if total - V2_FIXED_LEN < addresses.min_len() {
            return Err(ProxyProtocolError::MalformedV2(
                "address block is shorter than its family needs",
            ));
        }
    }
    // The spec lets the receiver wait for the whole block before reading any address.
    let Some(block) = buf.get(V2_FIXED_LEN..total) else {
        return Ok(Parsed::Incomplete);
    };
    // Whatever follows the addresses is TLVs, which the spec lets a receiver skip unread.
    let header = match addresses {
        None | Some(V2Addresses::Ignored(_)) => NO_ADDRESSES,
        Some(V2Addresses::Tcp4) => v2_tcp4(block)?,
        Some(V2Addresses::Tcp6) => v2_tcp6(block)?,
    };
    Ok(Parsed::Complete {
        header,
        consumed: total,
    })
}

/// `N` bytes of `buf` from `at`, if there are that many.
fn array_at<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn port_at(buf: &[u8], at: usize) -> Option<u16> {
    array_at::<2>(buf, at).map(u16::from_be_bytes)
}

const SHORT_BLOCK: ProxyProtocolError =
    ProxyProtocolError::MalformedV2("address block is shorter than its family needs");

fn v2_tcp4(block: &[u8]) -> Result<Header, ProxyProtocolError> {
    let (Some(src), Some(dst), Some(src_port), Some(dst_port)) = (
        array_at::<4>(block, 0),
        array_at::<4>(block, 4),
        port_at(block, 8),
        port_at(block, 10),
    ) else {
        return Err(SHORT_BLOCK);
    };
    Ok(Header {
        source: Some(SocketAddr::new(Ipv4Addr::from(src).into(), src_port)),
        destination: Some(SocketAddr::new(Ipv4Addr::from(dst).into(), dst_port)),
    })
}

fn v2_tcp6(block: &[u8]) -> Result<Header, ProxyProtocolError> {
    let (Some(src), Some(dst), Some(src_port), Some(dst_port)) = (
        array_at::<16>(block, 0),
        array_at::<16>(block, 16),
        port_at(block, 32),
        port_at(block, 34),
    ) else {
        return Err(SHORT_BLOCK);
    };
    Ok(Header {
        source: Some(SocketAddr::new(Ipv6Addr::from(src).into(), src_port)),
        destination: Some(SocketAddr::new(Ipv6Addr::from(dst).into(), dst_port)),
    })
}

// ---- Version 1 (text) ----

fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyProtocolError> {
    let window = buf.get(..MAX_V1_LEN).unwrap_or(buf);
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        if buf.len() >= MAX_V1_LEN {
            return Err(ProxyProtocolError::V1TooLong);
        }
        check_partial_v1(buf)?;
        return Ok(Parsed::Incomplete);
    };
    // The spec forbids ending the line with a lone LF.
    let Some(body) = window.get(..lf).and_then(|line| line.strip_suffix(b"\r")) else {
        return Err(ProxyProtocolError::MalformedV1(
            "line ends in a line feed without a carriage return",
        ));
    };
    Ok(Parsed::Complete {
        header: parse_v1_line(body)?,
        consumed: lf + 1,
    })
}

/// Parses a v1 line without its CRLF.
fn parse_v1_line(body: &[u8]) -> Result<Header, ProxyProtocolError> {
    let mut fields = body.split(|&b| b == b' ');
    if fields.next() != Some(b"PROXY".as_slice()) {
        return Err(ProxyProtocolError::MalformedV1(
            "line does not start with PROXY",
        ));
    }
    match fields.next() {
        // The spec says to ignore whatever follows UNKNOWN up to the CRLF.
        Some(b"UNKNOWN") => Ok(NO_ADDRESSES),
        Some(b"TCP4") => v1_tcp(fields, false),
        Some(b"TCP6") => v1_tcp(fields, true),
        Some(b"") | None => Err(ProxyProtocolError::MalformedV1(
            "protocol field is missing or not after exactly one space",
        )),
        Some(other) => Err(unsupported_v1_protocol(other)),
    }
}

fn unsupported_v1_protocol(token: &[u8]) -> ProxyProtocolError {
    // The token comes off the network: quote it escaped and cut short, so a log line stays one
    // printable line.
    let shown = token.get(..16).unwrap_or(token);
    ProxyProtocolError::UnsupportedFamily(format!("\"{}\"", shown.escape_ascii()))
}

fn v1_tcp<'a>(
    mut fields: impl Iterator<Item = &'a [u8]>,
    v6: bool,
) -> Result<Header, ProxyProtocolError> {
    let (Some(src), Some(dst), Some(src_port), Some(dst_port), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(ProxyProtocolError::MalformedV1(
            "a tcp line needs two addresses and two ports, each after exactly one space",
        ));
    };
    let src = v1_ip(src, v6).ok_or(ProxyProtocolError::MalformedV1("bad source address"))?;
    let dst = v1_ip(dst, v6).ok_or(ProxyProtocolError::MalformedV1("bad destination address"))?;
    let src_port = v1_port(src_port).ok_or(ProxyProtocolError::MalformedV1("bad source port"))?;
    let dst_port =
        v1_port(dst_port).ok_or(ProxyProtocolError::MalformedV1("bad destination port"))?;
    Ok(Header {
        source: Some(SocketAddr::new(src, src_port)),
        destination: Some(SocketAddr::new(dst, dst_port)),
    })
}

/// An address of the family the line announced. The standard library's IPv4 parser already
/// refuses the heading zeroes the spec forbids.
fn v1_ip(field: &[u8], v6: bool) -> Option<IpAddr> {
    let text = std::str::from_utf8(field).ok()?;
    if v6 {
        text.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    } else {
        text.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    }
}

/// A decimal port without heading zeroes. Digits are checked first because `u16::from_str` also
/// takes a leading `+`.
fn v1_port(field: &[u8]) -> Option<u16> {
    if field.is_empty() || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if field.len() > 1 && field.first() == Some(&b'0') {
        return None;
    }
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// Rejects a v1 line that has no LF yet as soon as it can no longer become valid, so that
/// garbage is refused at once instead of after 107 bytes or the timeout. It must never refuse a
/// prefix of a valid line.
fn check_partial_v1(buf: &[u8]) -> Result<(), ProxyProtocolError> {
    const PROTOCOLS: [&[u8]; 3] = [b"TCP4", b"TCP6", b"UNKNOWN"];
    // The caller matched `buf` against "PROXY " over their common length.
    let Some(rest) = buf.get(V1_PREFIX.len()..) else {
        return Ok(());
    };
    let Some(token_end) = rest.iter().position(|&b| b == b' ' || b == b'\r') else {
        return if PROTOCOLS.iter().any(|p| p.starts_with(rest)) {
            Ok(())
        } else {
            Err(unsupported_v1_protocol(rest))
        };
    };
    let (token, after) = rest.split_at(token_end);
    match token {
        b"UNKNOWN" => Ok(()),
        b"TCP4" | b"TCP6" => {
            // Addresses and ports use only hex digits, dots and colons, in four more fields; a
            // CR can only be the start of the final CRLF.
            let last = after.len().saturating_sub(1);
            let fits = after.iter().enumerate().all(|(i, &b)| {
                b.is_ascii_hexdigit()
                    || matches!(b, b'.' | b':' | b' ')
                    || (b == b'\r' && i == last)
            });
            if !fits {
                return Err(ProxyProtocolError::MalformedV1(
                    "unexpected character in a tcp line",
                ));
            }
            if after.iter().filter(|&&b| b == b' ').count() > 4 {
                return Err(ProxyProtocolError::MalformedV1(
                    "too many fields in a tcp line",
                ));
            }
            Ok(())
        }
        b"" => Err(ProxyProtocolError::MalformedV1(
            "protocol field is missing or not after exactly one space",
        )),
        other => Err(unsupported_v1_protocol(other)),
    }
}

/// The length of the shortest valid header that starts with `buf`, which `parse` found
/// incomplete; always more than `buf.len()`. Reading up to it never takes application bytes.
fn header_len_lower_bound(buf: &[u8]) -> usize {
    let bound = if buf.is_empty() {
        MIN_HEADER_LEN
    } else if agrees_with(buf, &V2_SIGNATURE) {
        match (buf.get(14), buf.get(15)) {
            (Some(&hi), Some(&lo)) => V2_FIXED_LEN + usize::from(u16::from_be_bytes([hi, lo])),
            _ => V2_FIXED_LEN,
        }
    } else {
        v1_len_lower_bound(buf)
    };
    bound.max(buf.len() + 1)
}

fn v1_len_lower_bound(buf: &[u8]) -> usize {
    // No LF has arrived yet, so the CRLF is still ahead, or just its LF after a final CR.
    let (body, crlf_left) = match buf.strip_suffix(b"\r") {
        Some(body) => (body, 1),
        None => (buf, 2),
    };
    let structural = if let Some(rest) = body.strip_prefix(b"PROXY TCP4 ") {
        body.len() + tcp_fields_left(rest, 7) + crlf_left
    } else if let Some(rest) = body.strip_prefix(b"PROXY TCP6 ") {
        body.len() + tcp_fields_left(rest, 2) + crlf_left
    } else if body.starts_with(b"PROXY TCP4") {
        MIN_TCP4_LINE_LEN
    } else if body.starts_with(b"PROXY T") {
        MIN_TCP6_LINE_LEN
    } else {
        MIN_HEADER_LEN
    };
    structural.max(buf.len() + crlf_left).min(MAX_V1_LEN)
}

/// The fewest bytes that can still complete the four fields of a TCP line (addresses at least
/// `addr_min` long, as in `0.0.0.0` or `::`, ports at least one digit), given what of them has
/// arrived in `rest`.
fn tcp_fields_left(rest: &[u8], addr_min: usize) -> usize {
    let mins = [addr_min, addr_min, 1, 1];
    let index = rest.iter().filter(|&&b| b == b' ').count();
    let current = rest.rsplit(|&b| b == b' ').next().map_or(0, <[u8]>::len);
    let Some(&current_min) = mins.get(index) else {
        // Too many fields: `parse` refuses this line, so any bound will do.
        return 0;
    };
    let later: usize = mins.iter().skip(index + 1).map(|min| min + 1).sum();
    current_min.saturating_sub(current) + later
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn complete(buf: &[u8]) -> (Header, usize) {
        match parse(buf) {
            Ok(Parsed::Complete { header, consumed }) => (header, consumed),
            other => panic!("{:?} parsed as {other:?}", buf.escape_ascii().to_string()),
        }
    }

    fn addresses(buf: &[u8]) -> (Option<SocketAddr>, Option<SocketAddr>) {
        let (header, _) = complete(buf);
        (header.source, header.destination)
    }

    fn v2(ver_cmd: u8, fam: u8, block: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(ver_cmd);
        out.push(fam);
        out.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
        out.extend_from_slice(block);
        out
    }

    /// The addresses a header carries for `src`/`dst`: mixed families come back as IPv6, and
    /// IPv6 flow info and scope ids are not carried.
    fn as_carried(src: SocketAddr, dst: SocketAddr) -> (SocketAddr, SocketAddr) {
        match same_family(src, dst) {
            Pair::V4(s, d) => (s.into(), d.into()),
            Pair::V6(s, d) => (
                SocketAddr::new((*s.ip()).into(), s.port()),
                SocketAddr::new((*d.ip()).into(), d.port()),
            ),
        }
    }

    fn valid_headers() -> Vec<Vec<u8>> {
        let v4 = (addr("192.168.0.1:56324"), addr("192.168.0.11:443"));
        let v6 = (addr("[2001:db8::1]:1"), addr("[ffff::ffff]:65535"));
        let mut with_tlv = encode_v2(v4.0, v4.1);
        with_tlv[15] += 7;
        with_tlv.extend_from_slice(&[0x04, 0, 4, 1, 2, 3, 4]);
        vec![
            encode_v1(v4.0, v4.1),
            encode_v1(v6.0, v6.1),
            b"PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n".to_vec(),
            b"PROXY TCP6 :: :: 0 0\r\n".to_vec(),
            b"PROXY UNKNOWN\r\n".to_vec(),
            b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n".to_vec(),
            b"PROXY UNKNOWN a b c d e f \x01\r\r\n".to_vec(),
            encode_v2(v4.0, v4.1),
            encode_v2(v6.0, v6.1),
            with_tlv,
            v2(0x20, 0x00, &[]),
            v2(0x20, 0x11, &[9; 12]),
            v2(0x21, 0x00, &[]),
            v2(0x21, 0x31, &[b'/'; 216]),
            v2(0x21, 0x12, &[7; 12]),
        ]
    }

    #[test]
    fn v1_encodes_the_spec_example() {
        assert_eq!(
            encode_v1(addr("192.168.0.1:56324"), addr("192.168.0.11:443")),
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
        );
        assert_eq!(
            encode_v1(addr("[2001:db8::1]:1"), addr("[::1]:2")),
            b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n"
        );
    }

    #[test]
    fn v2_encodes_tcp_over_ipv4() {
        let mut expected = V2_SIGNATURE.to_vec();
        expected.extend_from_slice(&[0x21, 0x11, 0, 12, 127, 0, 0, 1, 10, 0, 0, 2, 0, 80, 1, 187]);
        assert_eq!(
            encode_v2(addr("127.0.0.1:80"), addr("10.0.0.2:443")),
            expected
        );
    }

    #[test]
    fn round_trips_v1_and_v2_over_v4_and_v6() {
        let pairs = [
            (addr("192.168.0.1:56324"), addr("192.168.0.11:443")),
            (addr("255.255.255.255:65535"), addr("0.0.0.0:0")),
            (addr("[2001:db8::1]:40000"), addr("[2001:db8::2]:8443")),
            (
                addr("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
                addr("[::ffff:10.1.2.3]:1"),
            ),
        ];
        for (src, dst) in pairs {
            for encoded in [encode_v1(src, dst), encode_v2(src, dst)] {
                let (header, consumed) = complete(&encoded);
                assert_eq!(consumed, encoded.len());
                assert_eq!((header.source, header.destination), (Some(src), Some(dst)));
            }
        }
        let v1_max = encode_v1(
            pairs[3].0,
            addr("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
        );
        assert_eq!(v1_max.len(), 104, "the spec's longest TCP6 line");
    }

    #[test]
    fn mixed_families_are_sent_as_mapped_ipv6() {
        let (src, dst) = (addr("203.0.113.7:5000"), addr("[2001:db8::80]:443"));
        assert_eq!(
            encode_v1(src, dst),
            b"PROXY TCP6 ::ffff:203.0.113.7 2001:db8::80 5000 443\r\n"
        );
        let mapped = addr("[::ffff:203.0.113.7]:5000");
        for encoded in [encode_v1(src, dst), encode_v2(src, dst)] {
            assert_eq!(addresses(&encoded), (Some(mapped), Some(dst)));
        }
        for encoded in [encode_v1(dst, src), encode_v2(dst, src)] {
            assert_eq!(
                addresses(&encoded),
                (Some(dst), Some(addr("[::ffff:203.0.113.7]:5000")))
            );
        }
    }

    #[test]
    fn every_strict_prefix_is_incomplete() {
        for header in valid_headers() {
            let (_, consumed) = complete(&header);
            assert_eq!(
                consumed,
                header.len(),
                "{:?}",
                header.escape_ascii().to_string()
            );
            for cut in 0..header.len() {
                let prefix = &header[..cut];
                assert!(
                    matches!(parse(prefix), Ok(Parsed::Incomplete)),
                    "{:?} gave {:?}",
                    prefix.escape_ascii().to_string(),
                    parse(prefix)
                );
                let bound = header_len_lower_bound(prefix);
                assert!(
                    bound > cut && bound <= header.len(),
                    "bound {bound} at {cut}"
                );
            }
        }
    }

    #[test]
    fn bytes_after_the_header_are_not_consumed() {
        for header in valid_headers() {
            let mut input = header.clone();
            input.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
            assert_eq!(complete(&input).1, header.len());
        }
    }

    #[test]
    fn local_unknown_and_unused_families_give_no_addresses() {
        let none = (None, None);
        assert_eq!(addresses(b"PROXY UNKNOWN\r\n"), none);
        assert_eq!(addresses(b"PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n"), none);
        assert_eq!(addresses(&v2(0x20, 0x00, &[])), none);
        // LOCAL ignores the family, even one PROXY would refuse, but still skips its block.
        assert_eq!(complete(&v2(0x20, 0x45, &[1, 2, 3])).1, 19);
        assert_eq!(addresses(&v2(0x20, 0x11, &[9; 12])), none);
        assert_eq!(addresses(&v2(0x21, 0x00, &[])), none);
        assert_eq!(addresses(&v2(0x21, 0x31, &[0; 216])), none);
        assert_eq!(addresses(&v2(0x21, 0x32, &[0; 216])), none);
        assert_eq!(addresses(&v2(0x21, 0x12, &[0; 12])), none);
        assert_eq!(addresses(&v2(0x21, 0x22, &[0; 36])), none);
    }

    #[test]
    fn garbage_is_rejected() {
        use ProxyProtocolError as E;
        type Check = fn(&E) -> bool;
        let cases: Vec<(Vec<u8>, Check)> = vec![
            (b"GET / HTTP/1.1\r\n".to_vec(), |e| {
                matches!(e, E::NotProxyProtocol)
            }),
            (b"G".to_vec(), |e| matches!(e, E::NotProxyProtocol)),
            ([0x16, 0x03, 0x01, 0x02, 0x00].to_vec(), |e| {
                matches!(e, E::NotProxyProtocol)
            }),
            (b"\r\n\r\nX".to_vec(), |e| matches!(e, E::NotProxyProtocol)),
            (b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(), |e| {
                matches!(e, E::NotProxyProtocol)
            }),
            (b"PROXY\r\n".to_vec(), |e| matches!(e, E::NotProxyProtocol)),
            (b"PROXY \r\n".to_vec(), |e| matches!(e, E::MalformedV1(_))),
            (b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(), |e| {
                matches!(e, E::MalformedV1(_))
            }),
            (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(), |e| {
                matches!(e, E::UnsupportedFamily(_))
            }),
            (b"PROXY UDP4 ".to_vec(), |e| {
                matches!(e, E::UnsupportedFamily(_))
            }),
            (b"PROXY TCP44".to_vec(), |e| {
                matches!(e, E::UnsupportedFamily(_))
            }),
            (b"PROXY UNKNOWNX\r\n".to_vec(), |e| {
                matches!(e, E::UnsupportedFamily(_))
            }),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n".to_vec(), |e| {
                matches!(e, E::MalformedV1(_))
            }),
            (b"PROXY UNKNOWN\n".to_vec(), |e| {
                matches!(e, E::MalformedV1(_))
            }),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n".to_vec(), |e| {
                matches!(e, E::MalformedV1(_))
            }),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n".to_vec(), |e| {
                matches!(e, E::MalformedV1(_))
            }),
            (b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n".to_vec(), |e| {
                matches!(e, E::MalformedV1("bad source address"))
            }),
            (b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n".to_vec(), |e| {
                matches!(e, E::MalformedV1("bad destination address"))
            }),
            (b"PROXY TCP6 ::1 1.2.3.4 1 2\r\n".to_vec(), |e| {
                matches!(e, E::MalformedV1("bad destination address"))
            }),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n".to_vec(), |e| {
                matches!(e, E::MalformedV1("bad source port"))
            }),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n".to_vec(), |e| {
                matches!(e, E::MalformedV1("bad destination port"))
            }),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n".to_vec(), |e| {
                matches!(e, E::MalformedV1(_))
            }),
            // Refused before the LF arrives.
            (b"PROXY TCP4\r1".to_vec(), |e| {
                matches!(e, E::MalformedV1(_))
            }),
            (b"PROXY TCP4 1.2.3.4 x".to_vec(), |e| {
                matches!(e, E::MalformedV1(_))
            }),
            (b"PROXY TCP6 1 2 3 4 5 ".to_vec(), |e| {
                matches!(e, E::MalformedV1(_))
            }),
            (
                [b'P', b'R', b'O', b'X', b'Y', b' ', b'T', 0xff].to_vec(),
                |e| matches!(e, E::UnsupportedFamily(_)),
            ),
            (v2(0x11, 0x11, &[0; 12]), |e| {
                matches!(e, E::UnsupportedVersion(1))
            }),
            (v2(0x22, 0x11, &[0; 12]), |e| {
                matches!(e, E::UnsupportedCommand(2))
            }),
            (v2(0x21, 0x10, &[0; 12]), |e| {
                matches!(e, E::UnsupportedFamily(_))
            }),
            (v2(0x21, 0x01, &[]), |e| {
                matches!(e, E::UnsupportedFamily(_))
            }),
            (v2(0x21, 0x41, &[]), |e| {
                matches!(e, E::UnsupportedFamily(_))
            }),
            (v2(0x21, 0x13, &[0; 12]), |e| {
                matches!(e, E::UnsupportedFamily(_))
            }),
            (v2(0x21, 0x11, &[0; 8]), |e| matches!(e, E::MalformedV2(_))),
            (v2(0x21, 0x21, &[0; 12]), |e| matches!(e, E::MalformedV2(_))),
            (v2(0x21, 0x31, &[0; 100]), |e| {
                matches!(e, E::MalformedV2(_))
            }),
        ];
        for (input, expected) in cases {
            match parse(&input) {
                Err(err) => assert!(
                    expected(&err),
                    "{:?} gave {err:?}",
                    input.escape_ascii().to_string()
                ),
                Ok(parsed) => panic!(
                    "{:?} was accepted as {parsed:?}",
                    input.escape_ascii().to_string()
                ),
            }
        }
    }

    #[test]
    fn errors_are_judged_before_the_whole_header_arrives() {
        // A v2 header announcing more than we accept is refused from its fixed part.
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(matches!(
            parse(&huge),
            Err(ProxyProtocolError::V2TooLong(65551))
        ));
        // The largest announced length we accept is still waited for.
        let mut largest = V2_SIGNATURE.to_vec();
        let block_len = u16::try_from(MAX_HEADER_LEN - V2_FIXED_LEN).unwrap();
        largest.extend_from_slice(&[0x21, 0x11]);
        largest.extend_from_slice(&block_len.to_be_bytes());
        assert!(matches!(parse(&largest), Ok(Parsed::Incomplete)));
        largest.resize(MAX_HEADER_LEN, 0);
        assert_eq!(complete(&largest).1, MAX_HEADER_LEN);
        assert!(matches!(
            parse(&v2(0x31, 0x11, &[])[..13]),
            Err(ProxyProtocolError::UnsupportedVersion(3))
        ));
    }

    #[test]
    fn v1_without_crlf_in_107_bytes_is_too_long() {
        let mut line = b"PROXY UNKNOWN ".to_vec();
        line.resize(MAX_V1_LEN - 1, b'f');
        assert!(matches!(parse(&line), Ok(Parsed::Incomplete)));
        line.push(b'\r');
        assert!(matches!(parse(&line), Err(ProxyProtocolError::V1TooLong)));
        // The same line with its CRLF one byte earlier is the longest one allowed.
        line.truncate(MAX_V1_LEN - 2);
        line.extend_from_slice(b"\r\n");
        assert_eq!(complete(&line).1, MAX_V1_LEN);
    }

    #[test]
    fn error_messages_are_lowercase_without_a_period() {
        let errors = [
            ProxyProtocolError::Timeout(Duration::from_secs(3)),
            ProxyProtocolError::Truncated { received: 4 },
            ProxyProtocolError::NotProxyProtocol,
            ProxyProtocolError::V1TooLong,
            ProxyProtocolError::V2TooLong(4000),
            ProxyProtocolError::UnsupportedCommand(2),
            unsupported_v1_protocol(b"UDP4\x1b[31m and then a very long tail"),
        ];
        for err in errors {
            let text = err.to_string();
            assert!(text.starts_with(|c: char| c.is_ascii_lowercase()), "{text}");
            assert!(!text.ends_with('.'), "{text}");
            assert!(!text.contains('\x1b'), "{text}");
        }
        assert_eq!(
            ProxyProtocolError::V1TooLong.to_string(),
            "proxy protocol v1 line has no crlf within 107 bytes"
        );
    }

    /// Writes `header` then `app` into one end of a duplex pipe, in `chunk`-byte writes, and
    /// reads the header and then everything else off the other end.
    async fn over_duplex(header: &[u8], app: &[u8], chunk: usize) -> (Accepted, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(64);
        let mut input = header.to_vec();
        input.extend_from_slice(app);
        let writer = tokio::spawn(async move {
            for piece in input.chunks(chunk) {
                client.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let accepted = read_header(&mut server, Duration::from_secs(5))
            .await
            .unwrap();
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.unwrap();
        writer.await.unwrap();
        (accepted, rest)
    }

    #[tokio::test]
    async fn read_header_leaves_the_application_bytes_on_a_duplex() {
        let app = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
        let (src, dst) = (addr("198.51.100.9:61000"), addr("203.0.113.1:443"));
        for header in valid_headers() {
            for chunk in [1, 7, 4096] {
                let (accepted, rest) = over_duplex(&header, app, chunk).await;
                assert_eq!(
                    rest,
                    app,
                    "chunk {chunk}, {:?}",
                    header.escape_ascii().to_string()
                );
                assert!(accepted.leftover.is_empty());
                assert_eq!((accepted.source, accepted.destination), addresses(&header));
            }
        }
        let (accepted, rest) = over_duplex(&encode_v1(src, dst), app, 4096).await;
        assert_eq!(
            (accepted.source, accepted.destination),
            (Some(src), Some(dst))
        );
        assert_eq!(rest, app);
    }

    #[tokio::test]
    async fn read_header_over_loopback_tcp() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let local = listener.local_addr().unwrap();
        let (src, dst) = (addr("[2001:db8::7]:50000"), addr("[2001:db8::1]:443"));
        for header in [encode_v1(src, dst), encode_v2(src, dst)] {
            let sender = tokio::spawn(async move {
                let mut conn = tokio::net::TcpStream::connect(local).await.unwrap();
                conn.write_all(&header).await.unwrap();
                conn.write_all(b"\x16\x03\x01 hello after the header")
                    .await
                    .unwrap();
                conn.shutdown().await.unwrap();
            });
            let (mut conn, _) = listener.accept().await.unwrap();
            let accepted = read_header(&mut conn, Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(
                (accepted.source, accepted.destination),
                (Some(src), Some(dst))
            );
            let mut rest = Vec::new();
            conn.read_to_end(&mut rest).await.unwrap();
            assert_eq!(rest, b"\x16\x03\x01 hello after the header");
            sender.await.unwrap();
        }
    }

    #[tokio::test]
    async fn read_header_reports_garbage_and_truncation() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let err = read_header(&mut server, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProxyProtocolError::NotProxyProtocol),
            "{err:?}"
        );

        let (mut client, mut server) = tokio::io::duplex(64);
        client
            .write_all(&encode_v2(addr("1.2.3.4:5"), addr("6.7.8.9:10"))[..20])
            .await
            .unwrap();
        drop(client);
        let err = read_header(&mut server, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProxyProtocolError::Truncated { received: 20 }),
            "{err:?}"
        );

        let (client, mut server) = tokio::io::duplex(64);
        drop(client);
        let err = read_header(&mut server, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProxyProtocolError::Truncated { received: 0 }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn read_header_times_out_on_a_stalled_peer() {
        tokio::time::pause();
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"PROXY TCP4 192.168.0.1 ").await.unwrap();
        let started = tokio::time::Instant::now();
        let err = read_header(&mut server, Duration::from_secs(3))
            .await
            .unwrap_err();
        assert!(matches!(err, ProxyProtocolError::Timeout(d) if d == Duration::from_secs(3)));
        // The clock is paused, so this is virtual time: the test itself does not wait.
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(3) && waited < Duration::from_secs(4),
            "{waited:?}"
        );
        drop(client);
    }

    fn v1_unknown_line() -> impl Strategy<Value = Vec<u8>> {
        // Anything but CR and LF may follow UNKNOWN, as long as the line fits in 107 bytes.
        proptest::collection::vec(
            any::<u8>().prop_filter("no cr/lf", |b| *b != b'\r' && *b != b'\n'),
            0..92,
        )
        .prop_map(|tail| {
            let mut line = b"PROXY UNKNOWN".to_vec();
            if !tail.is_empty() {
                line.push(b' ');
                line.extend_from_slice(&tail);
            }
            line.extend_from_slice(b"\r\n");
            line
        })
    }

    fn any_valid_header() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            (any::<SocketAddr>(), any::<SocketAddr>()).prop_map(|(s, d)| encode_v1(s, d)),
            (any::<SocketAddr>(), any::<SocketAddr>()).prop_map(|(s, d)| encode_v2(s, d)),
            v1_unknown_line(),
            (
                prop_oneof![Just(0x20u8), Just(0x21u8)],
                prop_oneof![Just(0x00u8), Just(0x12), Just(0x22), Just(0x31), Just(0x32)],
                proptest::collection::vec(any::<u8>(), 216..300),
            )
                .prop_map(|(ver_cmd, fam, block)| v2(ver_cmd, fam, &block)),
        ]
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_arbitrary_bytes(buf in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&buf);
        }

        #[test]
        fn parse_never_panics_after_a_valid_start(
            start in prop_oneof![
                Just(V2_SIGNATURE.to_vec()),
                Just(b"PROXY ".to_vec()),
                Just(b"PROXY TCP4 ".to_vec()),
                Just(b"PROXY TCP6 ".to_vec()),
                Just(b"PROXY UNKNOWN".to_vec()),
            ],
            tail in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut buf = start;
            buf.extend_from_slice(&tail);
            if let Ok(Parsed::Complete { consumed, .. }) = parse(&buf) {
                prop_assert!(consumed <= buf.len());
            }
        }

        #[test]
        fn encode_then_parse_round_trips(src in any::<SocketAddr>(), dst in any::<SocketAddr>()) {
            let expected = as_carried(src, dst);
            for encoded in [encode_v1(src, dst), encode_v2(src, dst)] {
                let (header, consumed) = complete(&encoded);
                prop_assert_eq!(consumed, encoded.len());
                prop_assert!(encoded.len() <= MAX_V1_LEN || encoded.starts_with(&V2_SIGNATURE));
                prop_assert_eq!((header.source, header.destination), (Some(expected.0), Some(expected.1)));
            }
        }

        #[test]
        fn reads_never_go_past_a_valid_header(header in any_valid_header(), app in proptest::collection::vec(any::<u8>(), 0..40)) {
            let (_, consumed) = complete(&header);
            prop_assert_eq!(consumed, header.len());
            for cut in 0..header.len() {
                prop_assert!(matches!(parse(&header[..cut]), Ok(Parsed::Incomplete)));
                let bound = header_len_lower_bound(&header[..cut]);
                prop_assert!(bound > cut && bound <= header.len());
            }
            let mut input = header.clone();
            input.extend_from_slice(&app);
            prop_assert_eq!(complete(&input).1, header.len());
        }
    }
}
