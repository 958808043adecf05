//! TLS passthrough on TCP listeners: read the ClientHello without terminating TLS, pick a pool
//! by its SNI, and replay the bytes read to the member untouched. The ClientHello is parsed by
//! rustls' `Acceptor` (the parser rustls uses for its own handshakes) over a copy of the bytes.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// A ClientHello larger than this is refused (real ones are a few hundred bytes; with many
/// extensions and a post-quantum key share a few kilobytes).
pub const MAX_CLIENT_HELLO: usize = 16 * 1024;

/// What the bytes read so far say.
#[derive(Debug, PartialEq, Eq)]
pub enum Peek {
    /// A complete ClientHello, with the SNI it carries (lowercase), if any.
    Hello(Option<String>),
    /// More bytes are needed.
    Incomplete,
    /// Not a TLS ClientHello.
    Invalid,
}

/// Parses the start of a TLS connection. Never panics, whatever the bytes.
pub fn peek(buf: &[u8]) -> Peek {
    // A TLS connection opens with a handshake record (content type 22): anything else is not
    // worth waiting for.
    match buf.first() {
        None => return Peek::Incomplete,
        Some(0x16) => {}
        Some(_) => return Peek::Invalid,
    }
    let mut acceptor = rustls::server::Acceptor::default();
    let mut rest = buf;
    while !rest.is_empty() {
        match acceptor.read_tls(&mut rest) {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => return Peek::Invalid,
        }
    }
    match acceptor.accept() {
        Ok(Some(accepted)) => Peek::Hello(
            accepted
                .client_hello()
                .server_name()
                .map(|s| s.to_ascii_lowercase()),
        ),
        Ok(None) => Peek::Incomplete,
        Err(_) => Peek::Invalid,
    }
}

/// Why a passthrough connection was not routed.
#[derive(Debug, PartialEq, Eq)]
pub enum PeekError {
    Timeout,
    Closed,
    Invalid,
    TooLarge,
}

/// Reads until the ClientHello is complete (or `timeout` passes); returns every byte read,
/// to be replayed to the member, and the SNI.
pub async fn read_client_hello(
    stream: &mut TcpStream,
    prefix: Bytes,
    timeout: Duration,
) -> Result<(Bytes, Option<String>), PeekError> {
    let mut buf = BytesMut::from(&prefix[..]);
    let reading = async {
        loop {
            match peek(&buf) {
                Peek::Hello(sni) => return Ok(sni),
                Peek::Invalid => return Err(PeekError::Invalid),
                Peek::Incomplete if buf.len() >= MAX_CLIENT_HELLO => {
                    return Err(PeekError::TooLarge)
                }
                Peek::Incomplete => {}
            }
            buf.reserve(4096);
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return Err(PeekError::Closed),
                Ok(_) => {}
            }
        }
    };
    let sni = tokio::time::timeout(timeout, reading)
        .await
        .map_err(|_| PeekError::Timeout)??;
    Ok((buf.freeze(), sni))
}

/// The route for `sni`: an exact name first, then a one-label wildcard.
pub fn pick<'a, T>(routes: &'a [(String, T)], sni: Option<&str>) -> Option<&'a T> {
    let sni = sni?;
    if let Some((_, t)) = routes.iter().find(|(n, _)| n == sni) {
        return Some(t);
    }
    let parent = sni.split_once('.').map(|(_, rest)| rest)?;
    let wildcard = format!("*.{parent}");
    routes.iter().find(|(n, _)| *n == wildcard).map(|(_, t)| t)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A real ClientHello from rustls' client for `name`.
    fn client_hello(name: &str) -> Vec<u8> {
        let roots = rustls::RootCertStore::empty();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let server = rustls::pki_types::ServerName::try_from(name.to_string()).expect("name");
        let mut conn = rustls::ClientConnection::new(Arc::new(config), server).expect("conn");
        let mut out = Vec::new();
        conn.write_tls(&mut out).expect("hello");
        out
    }

    #[test]
    fn the_sni_of_a_real_client_hello_byte_by_byte() {
        let hello = client_hello("App.Example.com");
        for cut in [0, 1, 5, 6, hello.len() - 1] {
            // (0 bytes: nothing to judge yet.)
            assert_eq!(peek(&hello[..cut]), Peek::Incomplete, "cut at {cut}");
        }
        assert_eq!(peek(&hello), Peek::Hello(Some("app.example.com".into())));
        // Bytes after the ClientHello do not change the verdict (the fuzz target's property).
        let mut more = hello.clone();
        more.extend_from_slice(b"\x17\x03\x03\x00\x01\x00");
        assert_eq!(peek(&more), Peek::Hello(Some("app.example.com".into())));
    }

    #[test]
    fn garbage_is_invalid_not_a_panic() {
        assert_eq!(peek(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Peek::Invalid);
        // An application-data record where the ClientHello should be.
        let mut hello = client_hello("a.test");
        hello[0] = 0x17;
        assert_eq!(peek(&hello), Peek::Invalid);
        // A handshake message that is not a ClientHello.
        let mut hello = client_hello("a.test");
        hello[5] = 0x02;
        assert_eq!(peek(&hello), Peek::Invalid);
    }

    #[test]
    fn exact_names_before_wildcards() {
        let routes = vec![
            ("*.example.com".to_string(), "wild"),
            ("app.example.com".to_string(), "app"),
        ];
        assert_eq!(pick(&routes, Some("app.example.com")), Some(&"app"));
        assert_eq!(pick(&routes, Some("x.example.com")), Some(&"wild"));
        assert_eq!(pick(&routes, Some("a.b.example.com")), None);
        assert_eq!(pick(&routes, None), None);
    }
}
