//! Failures map to clear answers, and retries take the next member.

use crate::harness::*;

#[tokio::test]
async fn failures_map_to_502_503_504_and_404_with_clear_bodies() {
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hole_addr = hole.local_addr().expect("addr");
    let (_reserved, closed) = refusing();
    let (sock, web) = bound();
    let plane = Plane::start(
        &format!(
            r#"
api_version = "meridian/v1"
listeners = [{{ name = "web", bind = "{web}" }}]
routes = [
  {{ name = "slow", listener = "web", path_prefix = "/slow", pool = "slow" }},
  {{ name = "dead", listener = "web", path_prefix = "/dead", pool = "dead" }},
  {{ name = "empty", listener = "web", path_prefix = "/empty", pool = "empty" }},
]
pools = [
  {{ name = "slow", timeout_ms = 300, members = [{{ address = "{hole_addr}" }}] }},
  {{ name = "dead", members = [{{ address = "{closed}" }}] }},
  {{ name = "empty" }},
]
"#
        ),
        vec![sock],
    )
    .await;
    let base = format!("http://{web}");
    let (s, body) = get(&format!("{base}/slow")).await;
    assert_eq!(s, 504);
    assert!(body.contains("did not answer in time"), "{body}");
    let (s, body) = get(&format!("{base}/dead")).await;
    assert_eq!(s, 502);
    assert!(body.contains("could not connect"), "{body}");
    assert!(
        !body.contains(&closed.port().to_string()),
        "upstream address leaked: {body}"
    );
    let (s, body) = get(&format!("{base}/empty")).await;
    assert_eq!(s, 503);
    assert!(body.contains("no healthy member"), "{body}");
    let (s, body) = get(&format!("{base}/other")).await;
    assert_eq!(s, 404);
    assert!(body.contains("no route"), "{body}");
    assert_eq!(
        plane.metric(
            "meridian_lb_member_connect_failures_total",
            &[("pool", "dead")]
        ),
        1.0
    );
    drop(hole);
    plane.plane.shutdown().await;
}

#[tokio::test]
async fn a_refused_connect_is_retried_on_the_next_member_for_bodiless_requests() {
    let live = Upstream::start("live").await;
    let (_reserved, dead) = refusing();
    // No health check: only the retry keeps clients from seeing the dead member.
    let (plane, web) = one_pool_plane("", &[dead, live.addr]).await;
    let base = format!("http://{web}");
    for _ in 0..10 {
        assert_eq!(get(&format!("{base}/x")).await, (200, "live".to_string()));
    }
    // A request with a body is not replayed: when it lands on the dead member it fails.
    let client = reqwest::Client::new();
    let mut statuses = std::collections::HashSet::new();
    for _ in 0..4 {
        let r = client
            .post(format!("{base}/x"))
            .body("payload")
            .send()
            .await
            .expect("answer");
        statuses.insert(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 502].into_iter().collect());
    plane.plane.shutdown().await;
}

#[tokio::test]
async fn forwarding_headers_filters_and_metrics() {
    let up = Upstream::start("up").await;
    let (sock, web) = bound();
    let plane = Plane::start(
        &format!(
            r#"
api_version = "meridian/v1"
listeners = [{{ name = "web", bind = "{web}" }}]
[[routes]]
name = "old"
listener = "web"
path_prefix = "/old"
pool = "p"
redirect = {{ scheme = "https", host = "new.test", status = 301 }}
[[routes]]
name = "api"
listener = "web"
path_prefix = "/api"
pool = "p"
rewrite_prefix = "/v2"
request_headers = {{ set = {{ "x-env" = "prod" }}, remove = ["x-secret"] }}
response_headers = {{ add = {{ "x-served-by" = "meridian" }} }}
[[pools]]
name = "p"
members = [{{ address = "{}" }}]
"#,
            up.addr
        ),
        vec![sock],
    )
    .await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = client
        .get(format!("http://{web}/old/page?q=1"))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 301);
    assert_eq!(r.headers()["location"], "https://new.test/old/page?q=1");
    assert_eq!(up.count(), 0, "a redirect never reaches the upstream");

    let r = client
        .get(format!("http://{web}/api/users?id=7"))
        .header("host", "App.Test:8080")
        .header("x-secret", "s")
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-served-by"], "meridian");
    let id = r.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_string();
    assert_eq!(id.len(), 32);
    let seen = up.last();
    assert_eq!(seen.uri, "/v2/users?id=7");
    assert_eq!(seen.headers["x-env"], "prod");
    assert!(seen.headers.get("x-secret").is_none());
    assert_eq!(seen.headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(seen.headers["x-forwarded-host"], "App.Test:8080");
    assert_eq!(seen.headers["forwarded"], "for=127.0.0.1;proto=http");
    assert_eq!(seen.headers["x-request-id"], id.as_str());
    assert_eq!(seen.headers["host"], "App.Test:8080");

    assert_eq!(
        plane.metric(
            "meridian_lb_route_requests_total",
            &[("route", "api"), ("class", "2xx")]
        ),
        1.0
    );
    assert_eq!(
        plane.metric(
            "meridian_lb_route_requests_total",
            &[("route", "old"), ("class", "3xx")]
        ),
        1.0
    );
    assert_eq!(
        plane.metric(
            "meridian_lb_member_requests_total",
            &[("pool", "p"), ("class", "2xx")]
        ),
        1.0
    );
    assert!(
        plane.metric(
            "meridian_lb_bytes_total",
            &[("listener", "web"), ("direction", "in")]
        ) > 0.0
    );
    assert_eq!(
        plane.metric("meridian_lb_connections_total", &[("listener", "web")]),
        1.0
    );
    plane.plane.shutdown().await;
}

/// An upstream that answers one request per connection and closes the connection a moment
/// later, while it sits idle in the proxy's pool.
async fn closes_when_idle() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
                tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn upstream_connections_are_reused_and_dead_ones_replaced() {
    let up = Upstream::start("up").await;
    let flaky = closes_when_idle().await;
    let (sock, web) = bound();
    let plane = Plane::start(
        &format!(
            r#"
api_version = "meridian/v1"
listeners = [{{ name = "web", bind = "{web}" }}]
routes = [
  {{ name = "flaky", listener = "web", path_prefix = "/flaky", pool = "flaky" }},
  {{ name = "all", listener = "web", pool = "p" }},
]
pools = [
  {{ name = "p", members = [{{ address = "{}" }}] }},
  {{ name = "flaky", members = [{{ address = "{flaky}" }}] }},
]
"#,
            up.addr
        ),
        vec![sock],
    )
    .await;
    let client = reqwest::Client::new();
    for i in 0..40 {
        let r = if i % 4 == 3 {
            client.head(format!("http://{web}/x")).send().await
        } else {
            client.get(format!("http://{web}/x")).send().await
        };
        assert_eq!(r.expect("answer").status(), 200);
    }
    // One client connection lives on one worker: one upstream connection serves all 40.
    assert_eq!(
        plane.metric("meridian_lb_upstream_connections_total", &[("pool", "p")]),
        1.0
    );
    assert_eq!(
        plane.metric("meridian_lb_upstream_requests_total", &[("pool", "p")]),
        40.0
    );

    // A pooled connection the member closed while idle is noticed and replaced, never failed.
    for _ in 0..5 {
        let r = client
            .get(format!("http://{web}/flaky"))
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.expect("body"), "ok");
        tokio::time::sleep(std::time::Duration::from_millis(80)).await;
    }
    assert_eq!(
        plane.metric(
            "meridian_lb_upstream_connections_total",
            &[("pool", "flaky")]
        ),
        5.0
    );
    plane.plane.shutdown().await;
}
