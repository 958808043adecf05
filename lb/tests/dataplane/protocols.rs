//! HTTP/2 both ways, trailers end to end, WebSocket upgrades, TCP listeners and the PROXY
//! protocol.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::*;

async fn h2c(
    addr: std::net::SocketAddr,
    path: &str,
) -> (http::response::Parts, Bytes, Option<http::HeaderMap>) {
    let s = TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let req = http::Request::get(format!("http://app.test{path}"))
        .header("te", "trailers")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = send.send_request(req).await.expect("response");
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.expect("body");
    let trailers = collected.trailers().cloned();
    (parts, collected.to_bytes(), trailers)
}

#[tokio::test]
async fn http2_downstream_to_http1_and_http2_upstreams_with_trailers() {
    let up1 = Upstream::start("h1-up").await;
    let up2 = Upstream::start("h2-up").await;
    let (sock, web) = bound();
    let plane = Plane::start(
        &format!(
            r#"
api_version = "meridian/v1"
listeners = [{{ name = "web", bind = "{web}" }}]
routes = [
  {{ name = "grpc", listener = "web", path_prefix = "/trailers", pool = "h2" }},
  {{ name = "rest", listener = "web", pool = "h1" }},
]
pools = [
  {{ name = "h1", members = [{{ address = "{}" }}] }},
  {{ name = "h2", protocol = "http2", members = [{{ address = "{}" }}] }},
]
"#,
            up1.addr, up2.addr
        ),
        vec![sock],
    )
    .await;
    // h2c prior knowledge on the same port as HTTP/1.1.
    let (parts, body, _) = h2c(web, "/hello").await;
    assert_eq!(parts.status, 200);
    assert_eq!(parts.version, http::Version::HTTP_2);
    assert_eq!(&body[..], b"h1-up");
    let seen = up1.last();
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(
        seen.headers["host"], "app.test",
        "Host comes from :authority"
    );

    // HTTP/2 end to end: trailers (gRPC's status) survive and `te: trailers` is kept.
    let (parts, body, trailers) = h2c(web, "/trailers").await;
    assert_eq!(parts.status, 200);
    assert_eq!(&body[..], b"payload");
    assert_eq!(trailers.expect("trailers")["grpc-status"], "0");
    let seen = up2.last();
    assert_eq!(seen.version, http::Version::HTTP_2);
    assert_eq!(seen.headers["te"], "trailers");
    assert_eq!(
        seen.uri, "http://app.test/trailers",
        ":authority is the client's host"
    );

    // Upstream HTTP/2 multiplexes: 20 concurrent requests share one connection per worker.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        tasks.push(tokio::spawn(h2c(web, "/trailers")));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task").0.status, 200);
    }
    let opened = plane.metric("meridian_lb_upstream_connections_total", &[("pool", "h2")]);
    assert!(
        (1.0..=2.0).contains(&opened),
        "{opened} connections for 22 requests on 2 workers"
    );
    plane.plane.shutdown().await;
}

#[tokio::test]
async fn websocket_upgrades_pass_through_both_ways() {
    let up = Upstream::start("ws").await;
    let (plane, web) = one_pool_plane("", &[up.addr]).await;
    let mut s = TcpStream::connect(web).await.expect("connect");
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .await
        .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.expect("read head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    let seen = up.last();
    assert_eq!(seen.headers["upgrade"], "websocket");
    for msg in [&b"frame one"[..], b"frame two"] {
        s.write_all(msg).await.expect("write");
        let mut back = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
            .await
            .expect("echo in time")
            .expect("echo");
        assert_eq!(back, msg);
    }
    plane.plane.shutdown().await;
}

/// A TCP upstream that reads a PROXY v2 header, then echoes in upper case until EOF, then sends
/// "bye" and closes: proof of half-close in both directions.
async fn tcp_upstream() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::Receiver<Option<std::net::SocketAddr>>,
) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let header = lb::proxy_protocol::read_header(&mut s, Duration::from_secs(2))
                    .await
                    .expect("PROXY header");
                let _ = tx.send(header.source).await;
                let mut data = header.leftover.to_vec();
                let mut buf = [0u8; 1024];
                loop {
                    let n = s.read(&mut buf).await.expect("read");
                    if n == 0 {
                        break;
                    }
                    data.extend_from_slice(&buf[..n]);
                }
                data.make_ascii_uppercase();
                data.extend_from_slice(b" bye");
                s.write_all(&data).await.expect("write");
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn tcp_listeners_proxy_bytes_with_half_close_and_the_proxy_protocol_both_ways() {
    let (upstream, mut sources) = tcp_upstream().await;
    let (_reserved, dead) = refusing();
    let (sock, tcp) = bound();
    let plane = Plane::start(
        &format!(
            r#"
api_version = "meridian/v1"
[[listeners]]
name = "db"
bind = "{tcp}"
protocol = "tcp"
pool = "db"
proxy_protocol_from = ["127.0.0.0/8"]
[[pools]]
name = "db"
proxy_protocol = "v2"
members = [{{ address = "{dead}" }}, {{ address = "{upstream}" }}]
"#
        ),
        vec![sock],
    )
    .await;
    for _ in 0..3 {
        let mut s = TcpStream::connect(tcp).await.expect("connect");
        // This client is a trusted load balancer: it names the real client first.
        let real: std::net::SocketAddr = "198.51.100.7:40000".parse().expect("addr");
        s.write_all(&lb::proxy_protocol::encode_v1(real, tcp))
            .await
            .expect("header");
        s.write_all(b"hello").await.expect("write");
        s.shutdown().await.expect("half-close");
        let mut back = String::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut back))
            .await
            .expect("in time")
            .expect("read");
        assert_eq!(back, "HELLO bye");
        let source = sources.recv().await.expect("a source");
        assert_eq!(source, Some(real), "the upstream learns the real client");
    }
    assert!(
        plane.metric(
            "meridian_lb_member_connect_failures_total",
            &[("pool", "db")]
        ) >= 1.0
    );

    // A connection from a trusted source without a valid header is refused.
    let mut s = TcpStream::connect(tcp).await.expect("connect");
    s.write_all(b"GARBAGE\r\n\r\n").await.expect("write");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(rest.is_empty());
    assert_eq!(
        plane.metric(
            "meridian_lb_client_errors_total",
            &[("kind", "bad_proxy_header")]
        ),
        1.0
    );
    plane.plane.shutdown().await;
}
