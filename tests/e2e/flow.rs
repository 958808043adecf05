//! The operator's main flows against the real binary: apply a config and see the proxy and DNS
//! follow, lose a backend and see both stop using it, restart and keep everything.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use crate::harness::*;

fn ip(b: &Backend) -> IpAddr {
    b.addr.ip()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applied_config_reaches_proxy_and_dns_within_a_second() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Meridian::start(&dir.path().join("n1")).await;
    let token = node.token().await;
    let east = Backend::start("east", "127.0.0.2").await;
    let west = Backend::start("west", "127.0.0.3").await;
    let port = free_port();
    let client = reqwest::Client::new();

    let (status, body) = node
        .put_config(&token, config(port, &[&east], 200, 2), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let first = body["revision"].as_u64().expect("revision");
    eventually(Duration::from_secs(5), || async {
        via_proxy(&client, port).await.as_deref() == Ok("east")
    })
    .await
    .expect("proxy serves through east");

    // Add west to the pool and the GSLB record: both planes follow within one second.
    let (status, body) = node
        .put_config(&token, config(port, &[&east, &west], 200, 2), Some(first))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["revision"].as_u64().expect("revision") > first);
    let seen = std::sync::Mutex::new(HashSet::new());
    let proxy_took = eventually(Duration::from_secs(1), || async {
        if let Ok(name) = via_proxy(&client, port).await {
            seen.lock().expect("lock").insert(name);
        }
        seen.lock().expect("lock").contains("west")
    })
    .await;
    assert!(proxy_took.is_some(), "proxy never reached west within 1 s");
    let dns_took = eventually(Duration::from_secs(1), || async {
        node.dns_a("app.gslb.test").await == vec![ip(&east), ip(&west)]
    })
    .await;
    assert!(
        dns_took.is_some(),
        "DNS did not answer with both sites within 1 s"
    );

    // The proxy adds X-Forwarded-For.
    let resp = client
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .expect("proxy");
    assert_eq!(
        resp.headers()
            .get("x-seen-xff")
            .and_then(|v| v.to_str().ok()),
        Some("127.0.0.1")
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backend_leaves_proxy_and_dns_within_interval_times_fall() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Meridian::start(&dir.path().join("n1")).await;
    let token = node.token().await;
    let east = Backend::start("east", "127.0.0.2").await;
    let west = Backend::start("west", "127.0.0.3").await;
    let port = free_port();
    let client = reqwest::Client::new();
    let (interval_ms, fall) = (300, 2);
    let (status, body) = node
        .put_config(
            &token,
            config(port, &[&east, &west], interval_ms, fall),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (east_ip, west_ip) = (ip(&east), ip(&west));
    eventually(Duration::from_secs(5), || async {
        node.dns_a("app.gslb.test").await == vec![east_ip, west_ip]
            && via_proxy(&client, port).await.is_ok()
    })
    .await
    .expect("both sites up");

    let west_hits = west.hits.clone();
    west.kill().await;
    let deadline = Duration::from_millis(interval_ms * u64::from(fall) + 1000);
    let took = eventually(deadline, || async {
        let st = node.status(&token).await;
        let member_down = st["pools"][0]["members"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["healthy"] == false));
        member_down && node.dns_a("app.gslb.test").await == vec![east_ip]
    })
    .await;
    assert!(
        took.is_some(),
        "west was still in the pool or in DNS after {deadline:?}"
    );
    // Every request now lands on east; none is lost.
    let before = west_hits.load(std::sync::atomic::Ordering::Relaxed);
    for _ in 0..20 {
        assert_eq!(via_proxy(&client, port).await.as_deref(), Ok("east"));
    }
    assert_eq!(west_hits.load(std::sync::atomic::Ordering::Relaxed), before);

    // With every member gone the proxy says so clearly.
    east.kill().await;
    let r = eventually(Duration::from_secs(3), || async {
        via_proxy(&client, port).await == Err("status 503 Service Unavailable".into())
    })
    .await;
    assert!(r.is_some(), "no 503 once every member is down");
    let body = client
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .expect("503 answer")
        .text()
        .await
        .expect("body");
    assert!(body.contains("no healthy member"), "{body}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_and_kill9_keep_config_revision_and_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("n1");
    let node = Meridian::start(&data).await;
    let token = node.token().await;
    let east = Backend::start("east", "127.0.0.2").await;
    let port = free_port();
    let (status, _) = node
        .put_config(&token, config(port, &[&east], 500, 2), None)
        .await;
    assert_eq!(status, 200);
    let (spec, rev) = node.get_config(&token).await;
    node.stop().await;

    let node = Meridian::start(&data).await;
    let (spec2, rev2) = node.get_config(&token).await;
    assert_eq!(
        (spec2, rev2),
        (spec.clone(), rev),
        "graceful restart changed state"
    );
    assert!(
        std::fs::read_to_string(data.join("initial-admin-password")).is_ok(),
        "the password file is the operator's to delete"
    );

    // A change acknowledged just before kill -9 survives.
    let west = Backend::start("west", "127.0.0.3").await;
    let (status, body) = node
        .put_config(&token, config(port, &[&east, &west], 500, 2), Some(rev))
        .await;
    assert_eq!(status, 200, "{body}");
    let acked = body["revision"].as_u64().expect("revision");
    node.kill9().await;

    let node = Meridian::start(&data).await;
    let (spec3, rev3) = node.get_config(&token).await;
    assert_eq!(rev3, acked);
    assert_ne!(spec3, spec);
    assert_eq!(
        spec3["pools"][0]["members"].as_array().map(|m| m.len()),
        Some(2)
    );
    // The proxy is back on the same listener after the restart.
    let client = reqwest::Client::new();
    eventually(Duration::from_secs(5), || async {
        via_proxy(&client, port).await.is_ok()
    })
    .await
    .expect("proxy serves after restart");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_sees_gslb_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Meridian::start(&dir.path().join("n1")).await;
    let token = node.token().await;
    let east = Backend::start("east", "127.0.0.2").await;
    let (status, _) = node
        .put_config(&token, config(free_port(), &[&east], 500, 2), None)
        .await;
    assert_eq!(status, 200);
    let out = tokio::process::Command::new("dig")
        .args([
            &format!("@{}", node.dns.ip()),
            "-p",
            &node.dns.port().to_string(),
            "app.gslb.test",
            "A",
            "+norecurse",
        ])
        .output()
        .await
        .expect("dig is installed (.ci/run installs dnsutils)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("status: NOERROR"), "{text}");
    assert!(text.contains("flags: qr aa"), "{text}");
    assert!(
        text.contains("app.gslb.test.\t\t5\tIN\tA\t127.0.0.2"),
        "{text}"
    );
    let out = tokio::process::Command::new("dig")
        .args([
            &format!("@{}", node.dns.ip()),
            "-p",
            &node.dns.port().to_string(),
            "nope.gslb.test",
            "A",
            "+tcp",
        ])
        .output()
        .await
        .expect("dig");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("status: NXDOMAIN"), "{text}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_requests_in_flight_and_the_access_log_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("n1");
    let log = dir.path().join("access.log");
    let node = Meridian::start_with(
        &data,
        1,
        "127.0.0.1:0",
        &format!(
            "access_log = \"{}\"\naccess_log_fields = [\"method\", \"path\", \"status\", \"route\", \"member\", \"request_id\"]",
            log.display()
        ),
    )
    .await;
    let token = node.token().await;
    let east = Backend::start("east", "127.0.0.2").await;
    let port = free_port();
    let (status, body) = node
        .put_config(&token, config(port, &[&east], 500, 2), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let client = reqwest::Client::new();
    eventually(Duration::from_secs(5), || async {
        via_proxy(&client, port).await.is_ok()
    })
    .await
    .expect("proxy serves");

    // A request that takes 1.5 s is in flight when SIGTERM arrives: it still gets its answer.
    let hits_before = east.hits.load(std::sync::atomic::Ordering::Relaxed);
    let slow = tokio::spawn({
        let client = client.clone();
        async move {
            let r = client
                .get(format!("http://127.0.0.1:{port}/slow"))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((r.status().as_u16(), r.text().await.unwrap_or_default()))
        }
    });
    eventually(Duration::from_secs(5), || async {
        east.hits.load(std::sync::atomic::Ordering::Relaxed) > hits_before
    })
    .await
    .expect("the slow request reached the backend");
    node.stop().await;
    let (status, body) = slow.await.expect("task").expect("answer");
    assert_eq!((status, body.as_str()), (200, "east"));
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "stopped"
    );

    let text = std::fs::read_to_string(&log).expect("access log");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let slow_line = lines
        .iter()
        .find(|l| l["path"] == "/slow")
        .unwrap_or_else(|| panic!("no /slow line in {text}"));
    assert_eq!(slow_line["status"], 200);
    assert_eq!(slow_line["method"], "GET");
    assert_eq!(slow_line["member"], east.addr.to_string());
    assert_eq!(slow_line["request_id"].as_str().map(str::len), Some(32));
    assert!(slow_line.get("host").is_none(), "only the chosen fields");
}

/// A route that decompresses request bodies: a gzip body reaches the member plain, a bomb is
/// cut at the cap with 413 and garbage under a gzip label is 400, neither reaching the member;
/// both are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_requests_are_decoded_and_bombs_stop_at_the_cap() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Meridian::start(&dir.path().join("n1")).await;
    let token = node.token().await;
    let backend = Backend::start("east", "127.0.0.2").await;
    let port = free_port();
    let config = format!(
        r#"api_version = "meridian/v1"
listeners = [{{ name = "web", bind = "127.0.0.1:{port}" }}]
pools = [{{ name = "p", members = [{{ address = "{}" }}] }}]
[[routes]]
name = "upload"
listener = "web"
pool = "p"
compression = {{ codecs = ["gzip"], decompress_requests_max_bytes = 65536 }}
"#,
        backend.addr
    );
    let (status, body) = node.put_config(&token, config, None).await;
    assert_eq!(status, 200, "{body}");
    let gzip = |data: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).expect("write");
        e.finish().expect("finish")
    };
    let client = reqwest::Client::new();
    let post = |body: Vec<u8>| {
        client
            .post(format!("http://127.0.0.1:{port}/upload"))
            .header("content-encoding", "gzip")
            .body(body)
            .send()
    };
    eventually(Duration::from_secs(5), || async {
        post(gzip(b"hello")).await.is_ok_and(|r| r.status() == 200)
    })
    .await
    .expect("route up");
    let before = backend.hits.load(std::sync::atomic::Ordering::Relaxed);
    let r = post(gzip(&[b'a'; 60_000])).await.expect("answer");
    assert_eq!(r.status(), 200);
    assert_eq!(
        backend.hits.load(std::sync::atomic::Ordering::Relaxed),
        before + 1
    );
    // 8 MB of zeros is about 8 KB compressed: it decodes past the 64 KB cap and is refused.
    let bomb = gzip(&vec![0u8; 8 << 20]);
    let r = post(bomb).await.expect("answer");
    assert_eq!(r.status(), 413);
    let r = post(b"definitely not gzip".to_vec()).await.expect("answer");
    assert_eq!(r.status(), 400);
    assert_eq!(
        backend.hits.load(std::sync::atomic::Ordering::Relaxed),
        before + 1,
        "refused bodies never reach the member"
    );
    let metrics = node.metrics(&token).await;
    assert!(
        metrics
            .contains("meridian_lb_request_decompression_rejected_total{reason=\"too_large\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("meridian_lb_request_decompression_rejected_total{reason=\"malformed\"} 1"),
        "{metrics}"
    );
}

/// A rate-limited route with access rules, end to end: denied networks and methods get 403 and
/// 405, a burst past the limit gets 429 with Retry-After, the metrics count each outcome, and
/// the console lists the limit with its live rates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_access_rules_answer_and_show_on_the_console() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Meridian::start(&dir.path().join("n1")).await;
    let token = node.token().await;
    let backend = Backend::start("east", "127.0.0.2").await;
    let port = free_port();
    let config = format!(
        r#"api_version = "meridian/v1"
listeners = [{{ name = "web", bind = "127.0.0.1:{port}" }}]
pools = [{{ name = "p", members = [{{ address = "{}" }}] }}]
[[routes]]
name = "api"
listener = "web"
pool = "p"
rate_limit = {{ requests = 5, per = "minute", burst = 5 }}
access = {{ methods = ["GET"] }}
[[routes]]
name = "private"
listener = "web"
path_prefix = "/private"
pool = "p"
access = {{ allow = ["10.0.0.0/8"] }}
"#,
        backend.addr
    );
    let (status, body) = node.put_config(&token, config, None).await;
    assert_eq!(status, 200, "{body}");
    let client = reqwest::Client::new();
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    eventually(Duration::from_secs(5), || async {
        client
            .get(url("/private/x"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 403)
    })
    .await
    .expect("a client outside the allowed networks gets 403");
    let r = client.post(url("/")).send().await.expect("post");
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET");
    let mut codes = Vec::new();
    for _ in 0..8 {
        let r = client.get(url("/")).send().await.expect("get");
        if r.status() == 429 {
            let wait: u64 = r.headers()["retry-after"]
                .to_str()
                .expect("ascii")
                .parse()
                .expect("seconds");
            // 5 a minute: the next slot is about 12 s away.
            assert!((1..=13).contains(&wait), "{wait}");
        }
        codes.push(r.status().as_u16());
    }
    assert_eq!(codes, [200, 200, 200, 200, 200, 429, 429, 429]);
    // Request checks, each counted on its own (before any limit is spent).
    for (path, check) in [
        ("/private/..%2fapi", "dot_segments"),
        ("/x/%2e.%5cy", "dot_segments"),
        ("/img.png%00.php", "nul_byte"),
    ] {
        let r = client.get(url(path)).send().await.expect("get");
        assert_eq!(r.status(), 400, "{path} ({check})");
    }
    let metrics = node.metrics(&token).await;
    for line in [
        "meridian_lb_rate_limit_total{outcome=\"admitted\",route=\"api\"} 5",
        "meridian_lb_rate_limit_total{outcome=\"rejected\",route=\"api\"} 3",
        "meridian_lb_access_denied_total{reason=\"method\",route=\"api\"} 1",
        "meridian_lb_request_checks_total{check=\"dot_segments\",listener=\"web\"} 2",
        "meridian_lb_request_checks_total{check=\"nul_byte\",listener=\"web\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    let (status, html) = node
        .console_get(&node.initial_password(), "/console/listeners")
        .await;
    assert_eq!(status, 200);
    assert!(html.contains("data-limit=\"api\""), "{html}");
    assert!(
        html.contains("5/minute per client address, burst 5, then 429"),
        "{html}"
    );
    assert!(
        html.contains("rate limit: 5/minute"),
        "route filters column: {html}"
    );
}

/// A pool with a limit of requests in flight: while one slow request holds the only slot, the
/// next gets 503 with Retry-After and never reaches the member; once it is done, requests pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_at_its_limit_of_requests_in_flight_answers_503() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Meridian::start(&dir.path().join("n1")).await;
    let token = node.token().await;
    let backend = Backend::start("east", "127.0.0.2").await;
    let port = free_port();
    let config = format!(
        r#"api_version = "meridian/v1"
listeners = [{{ name = "web", bind = "127.0.0.1:{port}" }}]
routes = [{{ name = "all", listener = "web", pool = "p" }}]
pools = [{{ name = "p", members = [{{ address = "{}" }}], max_concurrent_requests = 1 }}]
"#,
        backend.addr
    );
    let (status, body) = node.put_config(&token, config, None).await;
    assert_eq!(status, 200, "{body}");
    let client = reqwest::Client::new();
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    eventually(Duration::from_secs(5), || async {
        client
            .get(url("/"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await
    .expect("up");
    let before = backend.hits.load(std::sync::atomic::Ordering::Relaxed);
    let slow = tokio::spawn({
        let (client, u) = (client.clone(), url("/slow"));
        async move { client.get(u).send().await.map(|r| r.status().as_u16()) }
    });
    // The slow request reaches the member and holds the slot (the member takes 1.5 s).
    eventually(Duration::from_secs(2), || async {
        backend.hits.load(std::sync::atomic::Ordering::Relaxed) > before
    })
    .await
    .expect("the slow request reached the member");
    let r = client.get(url("/")).send().await.expect("answer");
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(r
        .text()
        .await
        .unwrap_or_default()
        .contains("limit of requests in flight"));
    assert_eq!(slow.await.expect("join").expect("slow"), 200);
    let r = client.get(url("/")).send().await.expect("answer");
    assert_eq!(r.status(), 200, "the slot is free again");
}

/// Bandwidth shaping: a 300 KB upload through a listener shaped to 100 KB/s per connection
/// takes about 3 s (at least 2.5 s: the first 20 ms burst is free), and arrives whole; the same
/// upload to an unshaped listener does not wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shaped_listener_moves_bytes_at_its_rate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Meridian::start(&dir.path().join("n1")).await;
    let token = node.token().await;
    let backend = Backend::start("east", "127.0.0.2").await;
    let (shaped, open) = (free_port(), free_port());
    let config = format!(
        r#"api_version = "meridian/v1"
listeners = [
  {{ name = "shaped", bind = "127.0.0.1:{shaped}", bandwidth = {{ per_connection_bytes_per_second = 102400 }} }},
  {{ name = "open", bind = "127.0.0.1:{open}" }},
]
routes = [
  {{ name = "s", listener = "shaped", pool = "p" }},
  {{ name = "o", listener = "open", pool = "p" }},
]
pools = [{{ name = "p", members = [{{ address = "{}" }}] }}]
"#,
        backend.addr
    );
    let (status, body) = node.put_config(&token, config, None).await;
    assert_eq!(status, 200, "{body}");
    let client = reqwest::Client::new();
    for port in [shaped, open] {
        eventually(Duration::from_secs(5), || async {
            client
                .get(format!("http://127.0.0.1:{port}/"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await
        .expect("up");
    }
    let upload = |port: u16| {
        let client = client.clone();
        async move {
            let start = std::time::Instant::now();
            let r = client
                .post(format!("http://127.0.0.1:{port}/upload"))
                .body(vec![b'x'; 300 * 1024])
                .send()
                .await
                .expect("answer");
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            assert_eq!(text, "east 307200", "the whole upload arrived");
            (status, start.elapsed())
        }
    };
    let (status, took) = upload(shaped).await;
    assert_eq!(status, 200);
    assert!(
        took >= Duration::from_millis(2500),
        "shaped upload took {took:?}"
    );
    let (status, took) = upload(open).await;
    assert_eq!(status, 200);
    assert!(
        took < Duration::from_millis(2500),
        "unshaped upload took {took:?}"
    );
    let (status, body) = node
        .put_config(
            &token,
            format!(
                r#"api_version = "meridian/v1"
listeners = [{{ name = "x", bind = "127.0.0.1:{shaped}", bandwidth = {{ listener_bytes_per_second = 10 }} }}]
"#
            ),
            None,
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        body["errors"][0]["path"], "listeners[0].bandwidth.listener_bytes_per_second",
        "{body}"
    );
}

/// A global limit of 20 requests per second for the whole route, on three appliances (each in
/// its own namespace), with ten times that arriving unevenly (6:3:1): the cluster admits about
/// the rate, not three times it, and the node with most load gets most of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_rate_limit_holds_across_three_appliances() {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lan = crate::netns::Lan::new();
    let hosts = [lan.host(), lan.host(), lan.host()];
    let (nodes, _) = Meridian::cluster_in(&hosts, dir.path()).await;
    let n1 = &nodes[0];
    let token = n1.token().await;
    let backend = Backend::start("east", &lan.gateway().to_string()).await;
    let port = free_port();
    let config = format!(
        r#"api_version = "meridian/v1"
listeners = [{{ name = "web", bind = "0.0.0.0:{port}" }}]
pools = [{{ name = "p", members = [{{ address = "{}" }}] }}]
[[routes]]
name = "api"
listener = "web"
pool = "p"
rate_limit = {{ requests = 20, burst = 5, key = {{ by = "route" }}, global = true }}
"#,
        backend.addr
    );
    let (status, body) = n1.put_config(&token, config, None).await;
    assert_eq!(status, 200, "{body}");
    let client = reqwest::Client::new();
    for h in &hosts {
        let url = format!("http://{}:{port}/", h.ip);
        eventually(Duration::from_secs(10), || async {
            client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200 || r.status() == 429)
        })
        .await
        .expect("route up on every node");
    }
    // 6, 3 and 1 loops of one request per 10 ms: about 1,000 requests per second.
    let admitted: Arc<[AtomicU32; 3]> = Arc::new(Default::default());
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut loops = tokio::task::JoinSet::new();
    for (i, n) in [6, 3, 1].into_iter().enumerate() {
        for _ in 0..n {
            let (client, admitted, counting, stop) = (
                client.clone(),
                admitted.clone(),
                counting.clone(),
                stop.clone(),
            );
            let url = format!("http://{}:{port}/", hosts[i].ip);
            loops.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(r) = client.get(&url).send().await {
                        if r.status() == 200 && counting.load(Ordering::Relaxed) {
                            admitted[i].fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            });
        }
    }
    // A second for the shares to settle, then four seconds counted.
    tokio::time::sleep(Duration::from_secs(1)).await;
    counting.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(4)).await;
    counting.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    while loops.join_next().await.is_some() {}
    let got: Vec<u32> = admitted.iter().map(|a| a.load(Ordering::Relaxed)).collect();
    let total: u32 = got.iter().sum();
    // 80 is the rate over four seconds; each node alone would admit 80 (240 together).
    assert!(
        (64..=100).contains(&total),
        "admitted {total} in 4 s at 20/s across the cluster ({got:?})"
    );
    assert!(
        got[0] > got[2],
        "the busiest node gets the largest share: {got:?}"
    );
}

/// Three appliances probe two GSLB sites. One appliance's uplink to east is cut, so it alone
/// sees east down: the cluster's majority keeps east in every node's answers, that node's
/// included. Then east really dies: every node drops it within interval × fall + one quorum
/// round (1 s × 2 + the gossip), measured from the moment it died.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gslb_health_is_the_clusters_majority_and_a_dead_site_is_gone_everywhere_in_3_s() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lan = crate::netns::Lan::new();
    let hosts = [lan.host(), lan.host(), lan.host()];
    let (nodes, _) = Meridian::cluster_in(&hosts, dir.path()).await;
    let n1 = &nodes[0];
    let token = n1.token().await;
    let (east_ip, west_ip) = (lan.extra_address(200), lan.extra_address(201));
    let east = Backend::start("east", &east_ip.to_string()).await;
    let west = Backend::start("west", &west_ip.to_string()).await;
    let config = format!(
        r#"api_version = "meridian/v1"
health_checks = [{{ name = "hc", path = "/healthz", interval_ms = 1000, timeout_ms = 500, rise = 1, fall = 2 }}]

[[zones]]
name = "gslb.test"
ns = ["ns1"]
soa = {{ mname = "ns1", rname = "hostmaster" }}
records = [{{ name = "ns1", type = "A", value = "127.0.0.1" }}]

[[gslb_records]]
name = "app.gslb.test"
ttl = 5
sites = [
  {{ name = "east", address = "{east_ip}", port = {}, health_check = "hc" }},
  {{ name = "west", address = "{west_ip}", port = {}, health_check = "hc" }},
]
"#,
        east.addr.port(),
        west.addr.port()
    );
    let (status, body) = n1.put_config(&token, config, None).await;
    assert_eq!(status, 200, "{body}");
    let both = vec![IpAddr::V4(east_ip), IpAddr::V4(west_ip)];
    for node in &nodes {
        eventually(Duration::from_secs(10), || async {
            node.dns_a("app.gslb.test").await == both
        })
        .await
        .expect("both sites answered on every node");
    }

    // Node 3 loses its path to east; once its own probes say so, the others still outvote it.
    lan.cut(&hosts[2], east_ip);
    let explain = || async {
        n1.http
            .get(n1.url("/api/v1/dns/explain?name=app.gslb.test&client=192.0.2.1"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("explain")
            .json::<serde_json::Value>()
            .await
            .expect("json")
    };
    let node3_sees_east_down = eventually(Duration::from_secs(10), || async {
        let e = explain().await;
        e["sites"][0]["votes"].as_array().is_some_and(|votes| {
            votes
                .iter()
                .any(|v| v["node"] == 3 && v["up"] == serde_json::Value::Bool(false))
        })
    })
    .await;
    assert!(node3_sees_east_down.is_some(), "{}", explain().await);
    let e = explain().await;
    assert_eq!(
        e["sites"][0]["health"], "up",
        "two of three see east up: {e}"
    );
    // For three more probe rounds, every node (node 3 too) keeps answering east.
    let until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < until {
        for (i, node) in nodes.iter().enumerate() {
            assert_eq!(
                node.dns_a("app.gslb.test").await,
                both,
                "node {} failed east over on one node's view",
                i + 1
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // East dies.
    east.kill().await;
    let died = std::time::Instant::now();
    let west_only = vec![IpAddr::V4(west_ip)];
    for node in &nodes {
        eventually(Duration::from_secs(10), || async {
            node.dns_a("app.gslb.test").await == west_only
        })
        .await
        .expect("east gone from every node");
    }
    let took = died.elapsed();
    println!("a dead site left every node's answers in {took:?}");
    assert!(
        took <= Duration::from_secs(3),
        "failover took {took:?}, more than interval × fall + one quorum round"
    );
}

/// kill -9 in the middle of concurrent writes, then a restart: every write that was answered
/// 200 is there, on either storage engine.
async fn kill9_during_writes_loses_no_acknowledged_write(storage: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("n1");
    let extra = format!("storage = \"{storage}\"");
    let node = Meridian::start_with(&data, 1, "127.0.0.1:0", &extra).await;
    let token = node.token().await;
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (http, url, token, acked, stop) = (
            node.http.clone(),
            node.url("/api/v1/pools"),
            token.clone(),
            acked.clone(),
            stop.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                i += 1;
                let name = format!("w{w}-{i}");
                let body = serde_json::json!({
                    "name": name,
                    "members": [{"address": format!("127.0.0.1:{}", 20000 + i)}],
                });
                let sent = http
                    .put(format!("{url}/{name}"))
                    .bearer_auth(&token)
                    .header("if-match", "*")
                    .json(&body)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 200 => acked.lock().expect("acked").push(name),
                    // The node is gone: the write may or may not have landed.
                    _ => break,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    node.kill9().await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in writers {
        w.await.expect("writer");
    }
    let acked = acked.lock().expect("acked").clone();
    assert!(acked.len() > 20, "{} writes acknowledged", acked.len());

    let node = Meridian::start_with(&data, 1, "127.0.0.1:0", &extra).await;
    let (spec, _) = node.get_config(&token).await;
    let names: std::collections::HashSet<&str> = spec["pools"]
        .as_array()
        .map(|p| p.iter().filter_map(|p| p["name"].as_str()).collect())
        .unwrap_or_default();
    let lost: Vec<&String> = acked
        .iter()
        .filter(|n| !names.contains(n.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged but lost on {storage}: {lost:?}"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_writes_on_sled_loses_nothing_acknowledged() {
    kill9_during_writes_loses_no_acknowledged_write("sled").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_writes_on_redb_loses_nothing_acknowledged() {
    kill9_during_writes_loses_no_acknowledged_write("redb").await;
}
