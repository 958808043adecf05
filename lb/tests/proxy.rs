//! The data plane driven through its watch channel, without Raft: real listeners, real
//! upstreams, a real HTTP client.

use std::sync::Arc;
use std::time::Duration;

use model::{Config, Revisioned};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

fn compile(toml: &str) -> Config {
    let spec: model::ConfigSpec = model::parse::from_toml(toml).expect("parses");
    model::validate(&spec).expect("valid")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

/// An upstream that accepts connections and never answers.
async fn black_hole() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            held.push(s);
        }
    });
    addr
}

/// Waits up to 2 s for the listener at `base` to answer anything.
async fn wait_until_serving(base: &str) {
    for _ in 0..100 {
        if reqwest::get(base).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("listener at {base} did not open");
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.expect("answer");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

#[tokio::test]
async fn failures_map_to_502_503_504_and_404_with_clear_bodies() {
    let hole = black_hole().await;
    let closed = free_port();
    let port = free_port();
    let cfg = compile(&format!(
        r#"
api_version = "meridian/v1"
listeners = [{{ name = "web", bind = "127.0.0.1:{port}" }}]
routes = [
  {{ name = "slow", listener = "web", path_prefix = "/slow", pool = "slow" }},
  {{ name = "dead", listener = "web", path_prefix = "/dead", pool = "dead" }},
  {{ name = "empty", listener = "web", path_prefix = "/empty", pool = "empty" }},
]
pools = [
  {{ name = "slow", timeout_ms = 300, members = [{{ address = "{hole}" }}] }},
  {{ name = "dead", members = [{{ address = "127.0.0.1:{closed}" }}] }},
  {{ name = "empty" }},
]
"#
    ));
    let (_tx, rx) = watch::channel(Arc::new(Revisioned {
        revision: 1,
        value: cfg,
    }));
    let plane = lb::DataPlane::spawn(
        rx,
        lb::LbMetrics::new(&prometheus::Registry::new()).expect("metrics"),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_until_serving(&base).await;
    assert_eq!(plane.revision(), 1);

    let (s, body) = get(&format!("{base}/slow")).await;
    assert_eq!(s, 504);
    assert!(body.contains("did not answer in time"), "{body}");
    let (s, body) = get(&format!("{base}/dead")).await;
    assert_eq!(s, 502);
    assert!(body.contains("could not connect"), "{body}");
    assert!(
        !body.contains(&closed.to_string()),
        "upstream address leaked: {body}"
    );
    let (s, body) = get(&format!("{base}/empty")).await;
    assert_eq!(s, 503);
    assert!(body.contains("no healthy member"), "{body}");
    let (s, body) = get(&format!("{base}/other")).await;
    assert_eq!(s, 404);
    assert!(body.contains("no route"), "{body}");
    plane.shutdown();
}

#[tokio::test]
async fn listeners_open_and_close_as_the_config_changes() {
    let port_a = free_port();
    let port_b = free_port();
    let cfg = |port: u16| {
        compile(&format!(
            r#"
api_version = "meridian/v1"
listeners = [{{ name = "web", bind = "127.0.0.1:{port}" }}]
pools = [{{ name = "empty" }}]
routes = [{{ name = "r", listener = "web", pool = "empty" }}]
"#
        ))
    };
    let (tx, rx) = watch::channel(Arc::new(Revisioned {
        revision: 1,
        value: cfg(port_a),
    }));
    let plane = lb::DataPlane::spawn(
        rx,
        lb::LbMetrics::new(&prometheus::Registry::new()).expect("metrics"),
    );
    let wait_for = |port: u16, open: bool| async move {
        for _ in 0..150 {
            let ok = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok();
            if ok == open {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    };
    assert!(wait_for(port_a, true).await, "first listener opens");
    tx.send(Arc::new(Revisioned {
        revision: 2,
        value: cfg(port_b),
    }))
    .expect("send");
    assert!(wait_for(port_b, true).await, "re-bound listener opens");
    assert!(wait_for(port_a, false).await, "old listener closes");
    let states = plane.listener_states();
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].1.port(), port_b);
    assert_eq!(states[0].2, lb::ListenerState::Listening);
    plane.shutdown();
}

/// An upstream that answers every request with 200 and its name.
async fn ok_backend(name: &'static str) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async move {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from(name)),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_refused_connect_is_retried_on_another_member_for_bodiless_requests() {
    let live = ok_backend("live").await;
    let dead = free_port();
    let port = free_port();
    // No health check: only the retry keeps clients from seeing the dead member.
    let cfg = compile(&format!(
        r#"
api_version = "meridian/v1"
listeners = [{{ name = "web", bind = "127.0.0.1:{port}" }}]
routes = [{{ name = "all", listener = "web", pool = "p" }}]
pools = [{{ name = "p", members = [{{ address = "127.0.0.1:{dead}" }}, {{ address = "{live}" }}] }}]
"#
    ));
    let (_tx, rx) = watch::channel(Arc::new(Revisioned {
        revision: 1,
        value: cfg,
    }));
    let plane = lb::DataPlane::spawn(
        rx,
        lb::LbMetrics::new(&prometheus::Registry::new()).expect("metrics"),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_until_serving(&base).await;
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
    // Dot-segments never reach an upstream (sent raw: HTTP clients normalize them away).
    for target in ["/a/%2e%2e/b", "/a/../b", "/./b"] {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        tokio::io::AsyncWriteExt::write_all(&mut s, req.as_bytes())
            .await
            .expect("write");
        let mut answer = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut s, &mut answer)
            .await
            .expect("read");
        assert!(answer.starts_with("HTTP/1.1 400"), "{target}: {answer}");
    }
    plane.shutdown();
}
