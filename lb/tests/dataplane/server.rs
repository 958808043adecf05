//! Meridian's own HTTP/1.1 server, byte by byte: pipelining, HTTP/1.0, `100 Continue`, chunked
//! answers, the head timeout and clients that leave mid-request.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

/// Reads one response (head and a Content-Length body) off `s`.
async fn response(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return text;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("an answer within 5 s")
            .expect("read");
        assert!(n > 0, "closed before a whole response: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let up = Upstream::start("up").await;
    let (plane, web) = one_pool_plane("", &[up.addr]).await;
    let (answer, closed) = raw(
        web,
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\none\
          POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n\
          GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(closed, "Connection: close on the last request closes");
    assert_eq!(answer.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{answer}");
    let (one, two, name) = (
        answer.find("\r\n\r\none").expect("first"),
        answer.find("\r\n\r\ntwo").expect("second"),
        answer.rfind("\r\n\r\nup").expect("third"),
    );
    assert!(one < two && two < name, "{answer}");
    assert!(
        answer[two..].contains("\r\nconnection: close\r\n"),
        "{answer}"
    );
    assert_eq!(up.count(), 3);
    plane.plane.shutdown().await;
}

#[tokio::test]
async fn http_1_0_clients_get_close_or_keep_alive_as_they_ask() {
    let up = Upstream::start("up").await;
    let (plane, web) = one_pool_plane("", &[up.addr]).await;
    let (answer, closed) = raw(web, b"GET /x HTTP/1.0\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("\r\ndate: "), "{answer}");
    assert!(answer.ends_with("\r\n\r\nup"), "{answer}");
    assert!(closed);

    let mut s = TcpStream::connect(web).await.expect("connect");
    for _ in 0..2 {
        s.write_all(b"GET /x HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n")
            .await
            .expect("write");
        let answer = response(&mut s).await;
        assert!(
            answer.contains("\r\nconnection: keep-alive\r\n"),
            "{answer}"
        );
        assert!(answer.ends_with("up"), "{answer}");
    }
    assert_eq!(up.count(), 3);
    plane.plane.shutdown().await;
}

#[tokio::test]
async fn expect_100_continue_is_answered_when_the_body_is_wanted() {
    let up = Upstream::start("up").await;
    let (plane, web) = one_pool_plane("", &[up.addr]).await;
    let mut s = TcpStream::connect(web).await.expect("connect");
    s.write_all(
        b"PUT /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    )
    .await
    .expect("write");
    let mut interim = [0u8; 25];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut interim))
        .await
        .expect("100 Continue before the body")
        .expect("read");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"hello").await.expect("write");
    let answer = response(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nhello"), "{answer}");
    // Refused before the body is read: no 100, and the body never sent is not waited for.
    let (answer, closed) = raw(
        web,
        b"PUT /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    assert!(closed);
    plane.plane.shutdown().await;
}

#[tokio::test]
async fn an_answer_of_unknown_length_goes_out_chunked() {
    let up = Upstream::start("up").await;
    let (plane, web) = one_pool_plane("", &[up.addr]).await;
    let (answer, _) = raw(
        web,
        b"GET /trailers HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.contains("\r\ntransfer-encoding: chunked\r\n"),
        "{answer}"
    );
    assert!(!answer.contains("content-length"), "{answer}");
    assert!(
        answer.ends_with("\r\n\r\n7\r\npayload\r\n0\r\n\r\n"),
        "{answer}"
    );
    plane.plane.shutdown().await;
}

#[tokio::test]
async fn the_head_timeout_closes_slow_and_idle_connections() {
    let up = Upstream::start("up").await;
    let (plane, web) = one_pool_plane(", header_timeout_ms = 300", &[up.addr]).await;
    // Half a head, then nothing.
    let mut s = TcpStream::connect(web).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHo").await.expect("write");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(0))),
        "closed without an answer: {read:?} {rest:?}"
    );
    // A keep-alive connection idle after its answer.
    let mut s = TcpStream::connect(web).await.expect("connect");
    s.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    let answer = response(&mut s).await;
    assert!(answer.ends_with("up"), "{answer}");
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0))), "{read:?}");
    assert!(started.elapsed() >= Duration::from_millis(250));
    // Traffic keeps a connection open past the timeout.
    let mut s = TcpStream::connect(web).await.expect("connect");
    for _ in 0..4 {
        s.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .expect("write");
        assert!(response(&mut s).await.ends_with("up"));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    plane.plane.shutdown().await;
}

#[tokio::test]
async fn a_client_leaving_before_its_answer_aborts_the_request() {
    let up = Upstream::start("up").await;
    let (plane, web) = one_pool_plane("", &[up.addr]).await;
    let mut s = TcpStream::connect(web).await.expect("connect");
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    up.wait_for(|seen| seen.uri.ends_with("/slow")).await;
    drop(s);
    assert_eq!(plane.aborted().await, 1.0);
    plane.plane.shutdown().await;
}

#[tokio::test]
async fn bytes_sent_right_behind_an_upgrade_request_reach_the_tunnel() {
    let up = Upstream::start("ws").await;
    let (plane, web) = one_pool_plane("", &[up.addr]).await;
    let mut s = TcpStream::connect(web).await.expect("connect");
    // The first frame goes in the same write as the request, before any 101: the server reads
    // it while the pipeline waits on the member, and hands it on with the socket.
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nearly",
    )
    .await
    .expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !(got.windows(4).any(|w| w == b"\r\n\r\n") && got.ends_with(b"early")) {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("101 and the echo in time")
            .expect("read");
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 101"), "{text}");
    s.write_all(b"later").await.expect("write");
    let mut back = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
        .await
        .expect("echo in time")
        .expect("echo");
    assert_eq!(&back, b"later");
    plane.plane.shutdown().await;
}
