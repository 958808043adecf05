//! Strict HTTP/1.1: each malformed or smuggling-shaped request gets a 4xx from Meridian itself,
//! never reaches the upstream, and the connection closes when its framing can't be trusted.

use crate::harness::*;

async fn plane() -> (Plane, Upstream, std::net::SocketAddr) {
    let up = Upstream::start("up").await;
    let (plane, web) = one_pool_plane(
        ", max_request_head_bytes = 8192, max_request_line_bytes = 1024",
        &[up.addr],
    )
    .await;
    (plane, up, web)
}

#[tokio::test]
async fn malformed_requests_get_4xx_never_reach_the_upstream_and_close() {
    let (plane, up, web) = plane().await;
    let long_header = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "b".repeat(9000)
    );
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "p".repeat(2000));
    let cases: Vec<(&str, String, &str)> = vec![
        ("CL with TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(), "400"),
        ("TE with CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n".into(), "400"),
        ("malformed chunk size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n".into(), "400"),
        ("two Host headers", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".into(), "400"),
        ("invalid Host", "GET / HTTP/1.1\r\nHost: a b/c\r\n\r\n".into(), "400"),
        ("missing Host", "GET / HTTP/1.1\r\n\r\n".into(), "400"),
        ("head over the limit", long_header, "431"),
        ("request line over the limit", long_target, "414"),
        ("conflicting Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".into(), "400"),
        ("obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  continued\r\n\r\n".into(), "400"),
        ("invalid header bytes", "GET / HTTP/1.1\r\nHost: a\r\nX-A: \x01\x7f\r\n\r\n".into(), "400"),
        ("space before colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A : 1\r\n\r\n".into(), "400"),
    ];
    for (what, bytes, status) in cases {
        let (answer, closed) = raw(web, bytes.as_bytes()).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{what}: expected {status}, got {answer:?}"
        );
        assert!(closed, "{what}: the connection stayed open");
        assert_eq!(up.count(), 0, "{what}: the upstream saw the request");
    }
    // The well-formed request after all that still works.
    let (answer, _) = raw(
        web,
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(up.count(), 1);
    assert!(
        plane.metric(
            "meridian_lb_client_errors_total",
            &[("listener", "web"), ("kind", "bad_request")]
        ) >= 5.0
    );
    assert!(
        plane.metric(
            "meridian_lb_client_errors_total",
            &[("listener", "web"), ("kind", "protocol")]
        ) >= 4.0
    );
    assert_eq!(
        plane.metric("meridian_lb_requests_total", &[("status", "502")]),
        0.0
    );
    plane.plane.shutdown().await;
}

#[tokio::test]
async fn a_client_that_aborts_an_upload_is_a_client_abort_not_a_502() {
    use tokio::io::AsyncWriteExt;
    let (plane, up, web) = plane().await;
    let mut s = tokio::net::TcpStream::connect(web).await.expect("connect");
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\npartial")
        .await
        .expect("write");
    // Let the upload start upstream, then walk away.
    for _ in 0..100 {
        if up.count() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    drop(s);
    assert_eq!(plane.aborted().await, 1.0);
    assert_eq!(
        plane.metric("meridian_lb_requests_total", &[("status", "502")]),
        0.0
    );
    assert_eq!(
        plane.metric("meridian_lb_member_requests_total", &[("class", "5xx")]),
        0.0
    );
    plane.plane.shutdown().await;
}
