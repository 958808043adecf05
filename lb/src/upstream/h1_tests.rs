//! The client against scripted members on loopback: each test's member reads what Meridian
//! sends and answers with exact bytes.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn pool() -> Arc<H1Pool> {
    Arc::new(H1Pool::new(
        Duration::from_secs(2),
        Duration::from_secs(30),
        8,
        IntCounter::new("opened", "connections opened").unwrap(),
        None,
    ))
}

fn request(method: http::Method, path: &str, body: Body) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", "member")
        .body(body)
        .unwrap()
}

fn get(path: &str) -> Request<Body> {
    request(http::Method::GET, path, crate::body::empty())
}

/// A request body of unknown length, fed by the test through the returned sender.
fn streamed() -> (http_body_util::channel::Sender<Bytes, BoxError>, Body) {
    let (tx, body) = http_body_util::channel::Channel::new(2);
    (tx, body.boxed())
}

/// Reads a request without a body from `s`, then writes `response`.
async fn answer(s: &mut TcpStream, response: &[u8]) {
    read_request(s, 0).await;
    s.write_all(response).await.unwrap();
}

/// Reads one request head (and `body` more bytes) from `s`, returning all of it.
async fn read_request(s: &mut TcpStream, body: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            if got.len() >= end + 4 + body {
                return got;
            }
        }
        let n = s.read(&mut buf).await.unwrap();
        if n == 0 {
            return got;
        }
        got.extend_from_slice(&buf[..n]);
    }
}

async fn collect(resp: Response<Body>) -> Result<(Vec<u8>, Option<HeaderMap>), BoxError> {
    let mut body = resp.into_body();
    let mut data = Vec::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        match frame.into_data() {
            Ok(d) => data.extend_from_slice(&d),
            Err(f) => trailers = f.into_trailers().ok(),
        }
    }
    Ok((data, trailers))
}

async fn member() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

#[tokio::test]
async fn a_connection_carries_request_after_request() {
    let (l, addr) = member().await;
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut heads = Vec::new();
        for body in ["first", "second!", "third"] {
            heads.push(read_request(&mut s, 0).await);
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            s.write_all(resp.as_bytes()).await.unwrap();
        }
        heads
    });
    let pool = pool();
    for want in ["first", "second!", "third"] {
        let resp = pool.send(addr, get("/x?y=1"), false).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(collect(resp).await.unwrap().0, want.as_bytes());
    }
    assert_eq!(pool.opened.get(), 1);
    let heads = server.await.unwrap();
    assert_eq!(heads[0], b"GET /x?y=1 HTTP/1.1\r\nhost: member\r\n\r\n");
}

#[tokio::test]
async fn chunked_and_close_delimited_answers_are_read_to_their_end() {
    let (l, addr) = member().await;
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        answer(
            &mut s,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .await;
        s.write_all(b"4\r\nwiki\r\n5\r\npedia\r\n0\r\nX-Sum: 9\r\n\r\n")
            .await
            .unwrap();
        answer(&mut s, b"HTTP/1.1 200 OK\r\n\r\nuntil the end").await;
        s.shutdown().await.unwrap();
    });
    let pool = pool();
    let resp = pool.send(addr, get("/"), false).await.unwrap();
    let (body, trailers) = collect(resp).await.unwrap();
    assert_eq!(body, b"wikipedia");
    assert_eq!(trailers.unwrap().get("x-sum").unwrap(), "9");
    let resp = pool.send(addr, get("/"), false).await.unwrap();
    assert_eq!(collect(resp).await.unwrap().0, b"until the end");
    // The close-delimited answer's connection is not kept.
    assert!(pool.idle().get(&addr).is_none_or(Vec::is_empty));
}

#[tokio::test]
async fn a_request_body_goes_out_framed_by_its_size() {
    let (l, addr) = member().await;
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let fixed = read_request(&mut s, 5).await;
        s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            .await
            .unwrap();
        let mut chunked = read_request(&mut s, 0).await;
        while !chunked.ends_with(b"0\r\n\r\n") {
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).await.unwrap();
            assert_ne!(n, 0);
            chunked.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await
            .unwrap();
        (fixed, chunked)
    });
    let pool = pool();
    let req = request(http::Method::POST, "/up", crate::body::full("hello"));
    let resp = pool.send(addr, req, false).await.unwrap();
    assert_eq!(resp.status(), 204);
    // A body of unknown length: two frames from a channel.
    let (mut tx, body) = streamed();
    let req = request(http::Method::POST, "/up", body);
    tx.send_data(Bytes::from_static(b"abc")).await.unwrap();
    tx.send_data(Bytes::from_static(b"defgh")).await.unwrap();
    drop(tx);
    let resp = pool.send(addr, req, false).await.unwrap();
    assert_eq!(collect(resp).await.unwrap().0, b"ok");
    assert_eq!(pool.opened.get(), 1);
    let (fixed, chunked) = server.await.unwrap();
    assert!(
        fixed.ends_with(b"content-length: 5\r\n\r\nhello"),
        "{fixed:?}"
    );
    let chunked = String::from_utf8(chunked).unwrap();
    assert!(
        chunked.ends_with("transfer-encoding: chunked\r\n\r\n3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n"),
        "{chunked}"
    );
}

#[tokio::test]
async fn an_answer_before_the_whole_upload_is_passed_on() {
    let (l, addr) = member().await;
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        answer(
            &mut s,
            b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig!",
        )
        .await;
        // The member does not read the rest of the body.
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let (mut tx, body) = streamed();
    let req = request(http::Method::POST, "/up", body);
    tx.send_data(Bytes::from_static(b"first")).await.unwrap();
    let resp = pool().send(addr, req, false).await.unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(collect(resp).await.unwrap().0, b"big!");
    drop(tx);
}

#[tokio::test]
async fn a_reused_connection_the_member_closed_is_not_a_failure() {
    let (l, addr) = member().await;
    tokio::spawn(async move {
        // First connection: one answer, then the next request is read and left unanswered.
        let (mut s, _) = l.accept().await.unwrap();
        answer(&mut s, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na").await;
        read_request(&mut s, 0).await;
        drop(s);
        // Second connection: answers.
        let (mut s, _) = l.accept().await.unwrap();
        answer(&mut s, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb").await;
        read_request(&mut s, 0).await;
    });
    let pool = pool();
    let resp = pool.send(addr, get("/"), false).await.unwrap();
    assert_eq!(collect(resp).await.unwrap().0, b"a");
    // GET is idempotent: sent again on a new connection.
    let resp = pool.send(addr, get("/"), false).await.unwrap();
    assert_eq!(collect(resp).await.unwrap().0, b"b");
    assert_eq!(pool.opened.get(), 2);
}

#[tokio::test]
async fn a_post_the_member_may_have_seen_is_not_sent_twice() {
    let (l, addr) = member().await;
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        answer(&mut s, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na").await;
        read_request(&mut s, 0).await;
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        drop(s);
        let _ = l.accept().await;
        counter.fetch_add(10, std::sync::atomic::Ordering::SeqCst);
    });
    let pool = pool();
    let resp = pool.send(addr, get("/"), false).await.unwrap();
    collect(resp).await.unwrap();
    let post = request(http::Method::POST, "/", crate::body::empty());
    let err = pool.send(addr, post, false).await.unwrap_err();
    assert!(matches!(err, SendError::Other(_)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_connection_closed_while_idle_is_dropped_at_checkout() {
    let (l, addr) = member().await;
    tokio::spawn(async move {
        for body in ["a", "b"] {
            let (mut s, _) = l.accept().await.unwrap();
            read_request(&mut s, 0).await;
            let resp = format!("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n{body}");
            s.write_all(resp.as_bytes()).await.unwrap();
            s.shutdown().await.unwrap();
            // Wait for the client to close its end.
            let mut buf = [0u8; 64];
            while s.read(&mut buf).await.unwrap_or(0) > 0 {}
        }
    });
    let pool = pool();
    let resp = pool.send(addr, get("/"), false).await.unwrap();
    assert_eq!(collect(resp).await.unwrap().0, b"a");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(pool.checkout(addr).is_none());
    let resp = pool.send(addr, get("/"), false).await.unwrap();
    assert_eq!(collect(resp).await.unwrap().0, b"b");
}

#[tokio::test]
async fn interim_answers_head_requests_and_bad_answers() {
    let (l, addr) = member().await;
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        answer(
            &mut s,
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
        )
        .await;
        read_request(&mut s, 0).await;
        // A HEAD answer names a length and has no body.
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n")
            .await
            .unwrap();
        answer(
            &mut s,
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
        )
        .await;
        let (mut s, _) = l.accept().await.unwrap();
        answer(
            &mut s,
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        )
        .await;
        drop(s);
        let (mut s, _) = l.accept().await.unwrap();
        answer(&mut s, b"NOT HTTP AT ALL\r\n\r\n").await;
    });
    let pool = pool();
    let resp = pool.send(addr, get("/"), false).await.unwrap();
    assert_eq!(collect(resp).await.unwrap().0, b"hi");
    let head = request(http::Method::HEAD, "/", crate::body::empty());
    let resp = pool.send(addr, head, false).await.unwrap();
    assert_eq!(resp.headers()["content-length"], "50");
    assert!(resp.body().is_end_stream());
    let err = pool.send(addr, get("/"), false).await.unwrap_err();
    assert!(
        matches!(&err, SendError::Other(m) if m.contains("Content-Length")),
        "{err:?}"
    );
    let resp = pool.send(addr, get("/"), false).await.unwrap();
    assert!(collect(resp).await.is_err());
    let err = pool.send(addr, get("/"), false).await.unwrap_err();
    assert!(
        matches!(&err, SendError::Other(m) if m.contains("invalid response head")),
        "{err:?}"
    );
    assert_eq!(pool.opened.get(), 3);
}
