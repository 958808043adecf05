//! The response cache against the real binary: hits and misses with `Age`, variants per
//! encoding, revalidation with a 304, stale-while-revalidate and stale-if-error, coalescing of
//! concurrent misses, poisoning attempts, purges that reach every node, and the disk tier across
//! restarts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderValue;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::harness::*;

/// An origin whose answers' caching headers depend on the path, counting requests per path
/// (and conditional ones apart).
struct Origin {
    addr: SocketAddr,
    counts: Arc<Mutex<HashMap<String, usize>>>,
    /// Answers 500 everywhere while set.
    failing: Arc<AtomicBool>,
    _tasks: JoinSet<()>,
}

impl Origin {
    async fn start(ip: &str) -> Origin {
        let listener = TcpListener::bind((ip.parse::<std::net::IpAddr>().expect("ip"), 0))
            .await
            .expect("bind origin");
        let addr = listener.local_addr().expect("addr");
        let counts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let failing = Arc::new(AtomicBool::new(false));
        let mut tasks = JoinSet::new();
        let (c, f) = (counts.clone(), failing.clone());
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (c, f) = (c.clone(), f.clone());
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let (c, f) = (c.clone(), f.clone());
                            async move { Ok::<_, std::convert::Infallible>(answer(&req, &c, &f).await) }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Origin {
            addr,
            counts,
            failing,
            _tasks: tasks,
        }
    }

    fn count(&self, key: &str) -> usize {
        self.counts
            .lock()
            .expect("counts")
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

async fn answer(
    req: &hyper::Request<hyper::body::Incoming>,
    counts: &Mutex<HashMap<String, usize>>,
    failing: &AtomicBool,
) -> hyper::Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let conditional = req.headers().contains_key("if-none-match");
    let n = {
        let mut c = counts.lock().expect("counts");
        if conditional {
            *c.entry(format!("{path} conditional")).or_default() += 1;
        }
        let n = c.entry(path.clone()).or_default();
        *n += 1;
        *n
    };
    let mut resp = hyper::Response::new(Full::new(Bytes::new()));
    if failing.load(Ordering::Relaxed) {
        *resp.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
        return resp;
    }
    if path.starts_with("/slow/") {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (cc, etag) = match path.split('/').nth(1).unwrap_or("") {
        "short" => ("max-age=1", Some("\"s1\"")),
        "swr" => ("max-age=1, stale-while-revalidate=30", None),
        "sie" => ("max-age=1, stale-if-error=30", None),
        "private" => ("private, max-age=60", None),
        "public" => ("public, max-age=60", None),
        _ => ("max-age=60", Some("\"v1\"")),
    };
    // A matching validator gets 304, as an origin with entity tags does.
    if let (Some(etag), Some(inm)) = (
        etag,
        req.headers()
            .get("if-none-match")
            .and_then(|v| v.to_str().ok()),
    ) {
        if inm.trim_start_matches("W/") == etag {
            *resp.status_mut() = hyper::StatusCode::NOT_MODIFIED;
            resp.headers_mut()
                .insert("cache-control", HeaderValue::from_static(cc));
            resp.headers_mut()
                .insert("etag", HeaderValue::from_static(etag));
            return resp;
        }
    }
    let mode = req
        .headers()
        .get("x-mode")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let auth = req.headers().contains_key("authorization");
    let text = if path.starts_with("/text/") {
        ".card { margin: 0 auto; padding: 4px; }\n".repeat(100)
    } else {
        format!("{path} #{n} mode={mode} auth={auth}")
    };
    *resp.body_mut() = Full::new(Bytes::from(text));
    let h = resp.headers_mut();
    h.insert("cache-control", HeaderValue::from_static(cc));
    if let Some(e) = etag {
        h.insert("etag", HeaderValue::from_static(e));
    }
    if path.starts_with("/text/") {
        h.insert("content-type", HeaderValue::from_static("text/css"));
    }
    if path.starts_with("/vary") {
        h.insert("vary", HeaderValue::from_static("X-Mode"));
    }
    if path.starts_with("/cookie") {
        h.insert("set-cookie", HeaderValue::from_static("session=abc"));
    }
    if path.starts_with("/tagged/") {
        let tags = if path.contains("red") {
            "red all"
        } else {
            "blue all"
        };
        h.insert("surrogate-key", HeaderValue::from_static(tags));
    }
    resp
}

fn cache_config(port_bind: &str, origin: SocketAddr) -> String {
    format!(
        r#"api_version = "meridian/v1"
listeners = [{{ name = "web", bind = "{port_bind}" }}]
pools = [{{ name = "p", members = [{{ address = "{origin}" }}] }}]
[[routes]]
name = "cached"
listener = "web"
pool = "p"
compression = {{ codecs = ["br", "gzip"], min_size_bytes = 100 }}
cache = {{}}
"#
    )
}

struct Got {
    status: u16,
    x_cache: String,
    age: Option<u64>,
    encoding: String,
    body: String,
}

async fn get(client: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> Got {
    let mut req = client.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("answer");
    let h = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (x_cache, encoding) = (h("x-cache"), h("content-encoding"));
    let age = r
        .headers()
        .get("age")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let status = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    Got {
        status,
        x_cache,
        age,
        encoding,
        body,
    }
}

/// A client that neither decompresses nor pools beyond what the test asks.
fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_gzip()
        .no_brotli()
        .no_zstd()
        .no_deflate()
        .build()
        .expect("client")
}

/// One node caching one route (`cache_config`) in front of an `Origin`, up and answering.
struct Cached {
    _dir: tempfile::TempDir,
    node: Meridian,
    token: String,
    origin: Origin,
    port: u16,
}

impl Cached {
    async fn start() -> Cached {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = Meridian::start(&dir.path().join("n1")).await;
        let token = node.token().await;
        let origin = Origin::start("127.0.0.2").await;
        let port = free_port();
        let (status, body) = node
            .put_config(
                &token,
                cache_config(&format!("127.0.0.1:{port}"), origin.addr),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let client = reqwest::Client::new();
        eventually(Duration::from_secs(5), || async {
            client
                .get(format!("http://127.0.0.1:{port}/warmup"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await
        .expect("route up");
        Cached {
            _dir: dir,
            node,
            token,
            origin,
            port,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_variants_revalidation_and_stale_answers() {
    let Cached {
        _dir,
        node,
        token,
        origin,
        port,
    } = Cached::start().await;
    let client = plain_client();
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");

    // A miss, then hits with an Age; the origin saw one request.
    let first = get(&client, &url("/fresh/a"), &[]).await;
    assert_eq!((first.status, first.x_cache.as_str()), (200, "MISS"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = get(&client, &url("/fresh/a"), &[]).await;
    assert_eq!(second.x_cache, "HIT");
    assert_eq!(second.body, first.body);
    assert!(second.age.is_some_and(|a| a >= 1), "Age {:?}", second.age);
    assert_eq!(origin.count("/fresh/a"), 1);
    // HEAD is answered from the stored GET; the client's own validator gets 304.
    let head = client.head(url("/fresh/a")).send().await.expect("head");
    assert_eq!(head.headers()["x-cache"], "HIT");
    assert_eq!(
        head.headers()["content-length"],
        first.body.len().to_string().as_str()
    );
    let inm = get(&client, &url("/fresh/a"), &[("if-none-match", "\"v1\"")]).await;
    assert_eq!((inm.status, inm.x_cache.as_str()), (304, "HIT"));
    assert_eq!(origin.count("/fresh/a"), 1);

    // Each encoding is its own entry; differently worded Accept-Encoding share them.
    let br = get(
        &client,
        &url("/text/site.css"),
        &[("accept-encoding", "br")],
    )
    .await;
    assert_eq!((br.encoding.as_str(), br.x_cache.as_str()), ("br", "MISS"));
    let br2 = get(
        &client,
        &url("/text/site.css"),
        &[("accept-encoding", "gzip;q=0.5, br")],
    )
    .await;
    assert_eq!((br2.encoding.as_str(), br2.x_cache.as_str()), ("br", "HIT"));
    let gz = get(
        &client,
        &url("/text/site.css"),
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(
        (gz.encoding.as_str(), gz.x_cache.as_str()),
        ("gzip", "MISS")
    );
    let plain = get(&client, &url("/text/site.css"), &[]).await;
    assert_eq!(
        (plain.encoding.as_str(), plain.x_cache.as_str()),
        ("", "MISS")
    );
    let plain2 = get(&client, &url("/text/site.css"), &[]).await;
    assert_eq!(plain2.x_cache, "HIT");
    assert!(plain2.body.starts_with(".card"));
    assert_eq!(origin.count("/text/site.css"), 3, "one fetch per encoding");

    // Stale after max-age=1: revalidated with the stored entity tag, a 304 refreshes it.
    assert_eq!(get(&client, &url("/short/a"), &[]).await.x_cache, "MISS");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = get(&client, &url("/short/a"), &[]).await;
    assert_eq!((r.status, r.x_cache.as_str()), (200, "REVALIDATED"));
    assert!(r.body.starts_with("/short/a #1"), "{}", r.body);
    assert_eq!(origin.count("/short/a conditional"), 1);
    assert_eq!(get(&client, &url("/short/a"), &[]).await.x_cache, "HIT");

    // stale-while-revalidate: the stale answer at once, one refresh behind it.
    assert_eq!(get(&client, &url("/swr/a"), &[]).await.x_cache, "MISS");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = get(&client, &url("/swr/a"), &[]).await;
    assert_eq!(r.x_cache, "STALE");
    assert!(r.body.starts_with("/swr/a #1"), "{}", r.body);
    let refreshed = eventually(Duration::from_secs(5), || async {
        let r = get(&client, &url("/swr/a"), &[]).await;
        r.x_cache == "HIT" && r.body.starts_with("/swr/a #2")
    })
    .await;
    assert!(refreshed.is_some(), "the background refresh never landed");
    assert_eq!(origin.count("/swr/a"), 2);

    // stale-if-error: the origin fails, the stored answer is served stale.
    assert_eq!(get(&client, &url("/sie/a"), &[]).await.x_cache, "MISS");
    assert_eq!(get(&client, &url("/sie/b"), &[]).await.x_cache, "MISS");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    origin.failing.store(true, Ordering::Relaxed);
    let r = get(&client, &url("/sie/a"), &[]).await;
    assert_eq!((r.status, r.x_cache.as_str()), (200, "STALE"));
    assert!(r.body.starts_with("/sie/a #1"));
    // Without a stored answer, the error goes through.
    assert_eq!(get(&client, &url("/fresh/never"), &[]).await.status, 500);
    origin.failing.store(false, Ordering::Relaxed);
    // A HEAD that goes upstream for a stale entry never replaces its body.
    let head = client.head(url("/sie/b")).send().await.expect("head");
    assert_eq!(head.status(), 200);
    let body = get(&client, &url("/sie/b"), &[]).await.body;
    assert!(body.starts_with("/sie/b #"), "{body:?}");

    let metrics = node.metrics(&token).await;
    for result in ["hit", "miss", "stale", "revalidated"] {
        let line =
            format!("meridian_lb_cache_requests_total{{result=\"{result}\",route=\"cached\"}}");
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(&line) && !l.ends_with(" 0")),
            "{line} missing or zero"
        );
    }
    assert!(metrics.contains("meridian_lb_cache_entries{tier=\"memory\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poisoning_attempts_never_reach_another_client() {
    let Cached {
        _dir,
        node: _node,
        token: _token,
        origin,
        port,
    } = Cached::start().await;
    let client = plain_client();
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");

    // A response that sets a cookie is never stored.
    for _ in 0..2 {
        assert_eq!(get(&client, &url("/cookie"), &[]).await.x_cache, "MISS");
    }
    assert_eq!(origin.count("/cookie"), 2);

    // An answer to a request with credentials is not stored for others...
    let mine = get(
        &client,
        &url("/fresh/me"),
        &[("authorization", "Bearer secret")],
    )
    .await;
    assert!(mine.body.contains("auth=true"));
    let other = get(&client, &url("/fresh/me"), &[]).await;
    assert!(other.body.contains("auth=false"), "{}", other.body);
    assert_eq!(other.x_cache, "MISS");
    // ... and a stored answer goes to a request with a cookie only when public.
    let with_cookie = get(&client, &url("/fresh/me"), &[("cookie", "session=1")]).await;
    assert_eq!(with_cookie.x_cache, "MISS");
    assert!(with_cookie.body.contains("#3"), "{}", with_cookie.body);
    get(&client, &url("/public/p"), &[]).await;
    let public = get(&client, &url("/public/p"), &[("cookie", "session=1")]).await;
    assert_eq!(public.x_cache, "HIT");

    // private is never stored by a shared cache.
    get(&client, &url("/private/x"), &[]).await;
    assert_eq!(get(&client, &url("/private/x"), &[]).await.x_cache, "MISS");

    // A header the response varies on keeps clients apart.
    let a = get(&client, &url("/vary"), &[("x-mode", "admin")]).await;
    let b = get(&client, &url("/vary"), &[("x-mode", "guest")]).await;
    assert!(a.body.contains("mode=admin") && b.body.contains("mode=guest"));
    assert_eq!(b.x_cache, "MISS");
    let b2 = get(&client, &url("/vary"), &[("x-mode", "guest")]).await;
    assert_eq!(
        (b2.x_cache.as_str(), b2.body.contains("mode=guest")),
        ("HIT", true)
    );

    // Malformed cache and range headers are answered, not failed on.
    for (k, v) in [
        ("cache-control", "max-age=banana, ,,="),
        ("accept-encoding", ";;q=x, br;q="),
        ("range", "bytes=oops"),
    ] {
        let r = get(&client, &url("/fresh/odd"), &[(k, v)]).await;
        assert_eq!(r.status, 200, "{k}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_misses_make_one_upstream_request() {
    let Cached {
        _dir,
        node,
        token,
        origin,
        port,
    } = Cached::start().await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1000)
        .build()
        .expect("client");
    // The origin takes 300 ms: every request arrives while the first is upstream.
    let mut all = JoinSet::new();
    for _ in 0..1000 {
        let client = client.clone();
        all.spawn(async move {
            client
                .get(format!("http://127.0.0.1:{port}/slow/cold"))
                .send()
                .await
                .map(|r| r.status().as_u16())
        });
    }
    let mut ok = 0;
    while let Some(r) = all.join_next().await {
        if matches!(r, Ok(Ok(200))) {
            ok += 1;
        }
    }
    assert_eq!(ok, 1000);
    assert_eq!(
        origin.count("/slow/cold"),
        1,
        "one upstream request for 1000"
    );
    // Those that arrived while it was upstream waited for it; later ones were plain hits.
    let metrics = node.metrics(&token).await;
    let value = |prefix: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let coalesced = value("meridian_lb_cache_coalesced_total{route=\"cached\"}");
    let hits = value("meridian_lb_cache_requests_total{result=\"hit\",route=\"cached\"}");
    assert!(coalesced >= 1, "no request waited for the first");
    assert_eq!(
        hits, 999,
        "every request but the first answered from the cache"
    );
}

/// Stores the same keys on three appliances, purges through one: all drop them. A node that was
/// down during a purge (the other two keep the quorum) drops its disk entries when it starts;
/// what was not purged survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_reach_every_node_and_the_disk_tier_survives_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lan = crate::netns::Lan::new();
    let (ha, hb, hc) = (lan.host(), lan.host(), lan.host());
    let (mut nodes, join) =
        Meridian::cluster_in(&[ha.clone(), hb.clone(), hc.clone()], dir.path()).await;
    let n3 = nodes.pop().expect("node 3");
    let n1 = nodes.swap_remove(0);
    let token = n1.token().await;
    let origin = Origin::start(&lan.gateway().to_string()).await;
    let port = free_port();
    let (status, body) = n1
        .put_config(
            &token,
            cache_config(&format!("0.0.0.0:{port}"), origin.addr),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let client = plain_client();
    let on = |host: &crate::netns::Host, p: &str| format!("http://{}:{port}{p}", host.ip);
    for h in [&ha, &hb, &hc] {
        eventually(Duration::from_secs(10), || async {
            client
                .get(on(h, "/warmup"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await
        .expect("route up on both nodes");
    }
    // Keys carry the host the client named: the same on both nodes.
    let paths = [
        "/fresh/one",
        "/fresh/two",
        "/tagged/red",
        "/tagged/blue",
        "/keep/x",
    ];
    let fetch = |h: &crate::netns::Host, p: &str| {
        let client = client.clone();
        let url = on(h, p);
        async move { get(&client, &url, &[("host", "site.test")]).await.x_cache }
    };
    for h in [&ha, &hb, &hc] {
        for p in paths {
            fetch(h, p).await;
            assert_eq!(fetch(h, p).await, "HIT", "{p} on {}", h.ip);
        }
    }

    let purge = |body: serde_json::Value| {
        let (http, url, token) = (
            n1.http.clone(),
            n1.url("/api/v1/cache/purge"),
            token.clone(),
        );
        async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .expect("purge");
            let status = r.status().as_u16();
            (
                status,
                r.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    };
    // No credentials: 401. A key that is stored nowhere: 404.
    let anon = n1
        .http
        .post(n1.url("/api/v1/cache/purge"))
        .json(&serde_json::json!({"key": "site.test/fresh/one"}))
        .send()
        .await
        .expect("anon");
    assert_eq!(anon.status(), 401);
    assert_eq!(
        purge(serde_json::json!({"key": "site.test/none"})).await.0,
        404
    );

    let (status, body) = purge(serde_json::json!({"key": "site.test/fresh/one"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["purged_here"], 1);
    let (status, _) = purge(serde_json::json!({"tag": "red"})).await;
    assert_eq!(status, 200);
    for h in [&ha, &hb, &hc] {
        let gone = eventually(Duration::from_secs(5), || async {
            fetch(h, "/tagged/red").await == "MISS"
        })
        .await;
        assert!(gone.is_some(), "tag purge never reached {}", h.ip);
        assert_eq!(fetch(h, "/fresh/one").await, "MISS", "on {}", h.ip);
        assert_eq!(fetch(h, "/fresh/two").await, "HIT", "on {}", h.ip);
        assert_eq!(fetch(h, "/tagged/blue").await, "HIT", "on {}", h.ip);
    }

    // Node 3 goes down; a purge by prefix happens meanwhile; node 3 comes back.
    let cluster3 = n3.cluster.clone();
    n3.stop().await;
    let (status, body) = purge(serde_json::json!({"prefix": "site.test/fresh/"})).await;
    assert_eq!(status, 200, "{body}");
    let n3 = Meridian::restart_in(&hc, &dir.path().join("n3"), 3, &join, &cluster3).await;
    eventually(Duration::from_secs(10), || async {
        client
            .get(on(&hc, "/warmup"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await
    .expect("node 3 serves again");
    // From its disk tier: what was not purged is a hit; what was purged meanwhile is not, once
    // the node has caught up with the log.
    assert_eq!(fetch(&hc, "/keep/x").await, "HIT");
    assert_eq!(fetch(&hc, "/tagged/blue").await, "HIT");
    let caught_up = eventually(Duration::from_secs(10), || async {
        n3.status(&token).await["raft"]["last_applied"].as_u64()
            >= n1.status(&token).await["raft"]["last_applied"].as_u64()
    })
    .await;
    assert!(caught_up.is_some(), "node 3 never caught up");
    assert_eq!(fetch(&hc, "/fresh/two").await, "MISS");

    // The console shows the cache with its purge form.
    let (status, page) = n3
        .console_get(&n1.initial_password(), "/console/cache")
        .await;
    assert_eq!(status, 200);
    assert!(page.contains("id=\"cache-routes\"") && page.contains("id=\"purge\""));
    assert!(
        page.contains("site.test/keep/x"),
        "top keys list the stored key"
    );
}
