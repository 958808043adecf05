//! The REST API and console against the real binary: bad input, revisions, authentication.

use reqwest::Method;

use crate::harness::*;

const VALID: &str =
    r#"{"api_version":"meridian/v1","pools":[{"name":"p","members":[{"address":"127.0.0.1:9"}]}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configs_get_422_with_every_error_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Meridian::start(&dir.path().join("n1")).await;
    let token = node.token().await;
    let (status, _) = node.put_config(&token, VALID, None).await;
    assert_eq!(status, 200);
    let (before, rev) = node.get_config(&token).await;

    // Several problems in one document: all are listed with their paths.
    let many = r#"
api_version = "meridian/v1"
listeners = [{ name = "web", bind = "127.0.0.1:99999" }, { name = "web", bind = "nonsense" }]
routes = [{ name = "r", listener = "web", pool = "missing" }]
pools = [{ name = "p", members = [{ address = "10.0.0.1" }] }]
"#;
    let (status, body) = node.put_config(&token, many, None).await;
    assert_eq!(status, 422, "{body}");
    let paths: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    for want in [
        "listeners[0].bind",
        "listeners[1].name",
        "listeners[1].bind",
        "routes[0].pool",
        "pools[0].members[0].address",
    ] {
        assert!(paths.contains(&want), "{want} missing from {paths:?}");
    }

    let cases: [(&str, &str); 4] = [
        (
            "malformed JSON",
            r#"{"api_version": "meridian/v1", "pools": [}"#,
        ),
        (
            "malformed TOML",
            "api_version = \"meridian/v1\"\n[[pools]\n",
        ),
        (
            "unknown field",
            r#"{"api_version":"meridian/v1","pools":[{"name":"p","members":[],"colour":"red"}]}"#,
        ),
        (
            "duplicate names",
            r#"{"api_version":"meridian/v1","pools":[{"name":"p"},{"name":"p"}]}"#,
        ),
    ];
    for (what, body) in cases {
        let (status, answer) = node.put_config(&token, body, None).await;
        assert_eq!(status, 422, "{what}: {answer}");
        assert!(
            !answer["errors"].as_array().expect("errors").is_empty(),
            "{what}"
        );
    }
    let (status, answer) = node
        .put_config(
            &token,
            r#"{"api_version":"meridian/v1","pools":[{"name":"p","colour":"red"}]}"#,
            None,
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(answer["errors"][0]["path"], "pools[0].colour");

    // A per-object write with a dangling reference is refused too.
    let resp = node
        .http
        .put(node.url("/api/v1/routes/r"))
        .bearer_auth(&token)
        .header("if-match", "*")
        .body(r#"{"name":"r","listener":"nowhere","pool":"p"}"#)
        .send()
        .await
        .expect("put route");
    assert_eq!(resp.status(), 422);

    // Oversized bodies get 413.
    let huge = format!(
        r#"{{"api_version":"meridian/v1","pad":"{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    // Its own client: the server closes that connection without reading the body.
    let resp = reqwest::Client::new()
        .put(node.url("/api/v1/config"))
        .bearer_auth(&token)
        .header("if-match", "*")
        .body(huge)
        .send()
        .await
        .expect("oversized put answered");
    assert_eq!(resp.status(), 413);

    let (after, rev_after) = node.get_config(&token).await;
    assert_eq!(
        (after, rev_after),
        (before, rev),
        "a rejected request changed the config"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_match_gets_409_and_objects_have_their_own_endpoints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Meridian::start(&dir.path().join("n1")).await;
    let token = node.token().await;
    let (status, body) = node.put_config(&token, VALID, Some(0)).await;
    assert_eq!(status, 200, "{body}");
    let rev = body["revision"].as_u64().expect("rev");
    let (status, body) = node.put_config(&token, VALID, Some(0)).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["current_revision"], rev);
    assert_eq!(node.get_config(&token).await.1, rev);

    // Per-object upsert, read, stale delete, delete.
    let resp = node
        .http
        .put(node.url("/api/v1/pools/q"))
        .bearer_auth(&token)
        .header("if-match", format!("\"{rev}\""))
        .body("name = \"q\"\nmembers = [{ address = \"127.0.0.1:10\", weight = 5 }]\n")
        .send()
        .await
        .expect("put pool");
    assert_eq!(resp.status(), 200);
    let resp = node
        .http
        .get(node.url("/api/v1/pools/q"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("get pool");
    let etag = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let pool: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(pool["members"][0]["weight"], 5);
    let resp = node
        .http
        .delete(node.url("/api/v1/pools/q"))
        .bearer_auth(&token)
        .header("if-match", format!("\"{rev}\""))
        .send()
        .await
        .expect("stale delete");
    assert_eq!(resp.status(), 409);
    let resp = node
        .http
        .delete(node.url("/api/v1/pools/q"))
        .bearer_auth(&token)
        .header("if-match", etag.expect("etag"))
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), 200);
    let resp = node
        .http
        .get(node.url("/api/v1/pools/q"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("get deleted");
    assert_eq!(resp.status(), 404);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_but_login_needs_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Meridian::start(&dir.path().join("n1")).await;
    let routes = [
        (Method::GET, "/"),
        (Method::GET, "/api/v1/tokens/x"),
        (Method::PATCH, "/api/v1/config"),
        (Method::DELETE, "/"),
        (Method::GET, "/metrics"),
        (Method::GET, "/api/v1/config"),
        (Method::PUT, "/api/v1/config"),
        (Method::GET, "/api/v1/status"),
        (Method::GET, "/api/v1/pools"),
        (Method::GET, "/api/v1/pools/p"),
        (Method::PUT, "/api/v1/pools/p"),
        (Method::DELETE, "/api/v1/pools/p"),
        (Method::GET, "/api/v1/tokens"),
        (Method::POST, "/api/v1/tokens"),
        (Method::DELETE, "/api/v1/tokens/x"),
        (Method::GET, "/api/v1/nonexistent"),
        (Method::GET, "/api/v1/history"),
        (Method::POST, "/api/v1/history/1/rollback"),
        (Method::GET, "/api/v1/audit"),
        (Method::GET, "/api/v1/users"),
        (Method::GET, "/api/v1/openapi.json"),
        (Method::PUT, "/api/v1/pools/p/members/127.0.0.1:1/state"),
        (Method::POST, "/logout"),
        (Method::GET, "/console/pools"),
        (Method::GET, "/console/pools/p"),
        (Method::POST, "/console/pools/p"),
        (Method::POST, "/console/pools/p/members/state"),
        (Method::GET, "/console/history"),
        (Method::GET, "/console/audit.jsonl"),
        (Method::GET, "/console/users"),
        (Method::GET, "/console/live?keys=a"),
        (Method::GET, "/console/no/such/page"),
    ];
    let bad_auth = [
        None,
        Some("Bearer mrd_0000000000000000000000000000000000000000000000000000000000000000"),
        Some("Bearer "),
        Some("Basic YWRtaW46d3Jvbmc="), // admin:wrong
        Some("Basic !!!notbase64"),
        Some("Negotiate abc"),
    ];
    for (method, path) in &routes {
        for auth in bad_auth {
            let mut req = node
                .http
                .request(method.clone(), node.url(path))
                .header("cookie", "meridian_session=forged");
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let status = req.send().await.expect("request").status();
            // Wrong passwords get throttled after a few: 429 is a refusal too.
            let throttled = auth == Some("Basic YWRtaW46d3Jvbmc=") && status == 429;
            assert!(
                status == 401 || throttled,
                "{method} {path} with {auth:?}: {status}"
            );
        }
    }
    let login = node
        .http
        .get(node.url("/login"))
        .send()
        .await
        .expect("login page");
    assert_eq!(login.status(), 200);
    node.stop().await;
}

fn session_cookie_set(resp: &reqwest::Response) -> bool {
    resp.headers().get_all("set-cookie").iter().any(|v| {
        v.to_str().unwrap_or("").starts_with("meridian_session=")
            && !v.to_str().unwrap_or("").contains("Max-Age=0")
    })
}

/// The value of `name="csrf"` in a console page.
fn csrf_of(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("csrf token in the page")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_login_sessions_forms_and_admin_states() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Meridian::start(&dir.path().join("n1")).await;
    let token = node.token().await;
    let east = Backend::start("east", "127.0.0.2").await;
    let west = Backend::start("west", "127.0.0.3").await;
    let port = free_port();
    let (status, _) = node
        .put_config(&token, config(port, &[&east, &west], 300, 2), None)
        .await;
    assert_eq!(status, 200);

    // A wrong password creates no session.
    let resp = node.login("admin", "wrong").await;
    assert_eq!(resp.status(), 401);
    assert!(!session_cookie_set(&resp));
    let resp = node.login("nobody", "x").await;
    assert_eq!(resp.status(), 401);
    assert!(!session_cookie_set(&resp));

    // The right one does.
    let resp = node.login("admin", &node.initial_password()).await;
    assert_eq!(resp.status(), 303);
    let set_cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("session cookie")
        .to_string();
    assert!(set_cookie.starts_with("meridian_session="));
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
    let cookie = set_cookie.split(';').next().expect("cookie").to_string();
    let get = |path: &'static str| {
        let (http, url, cookie) = (node.http.clone(), node.url(path), cookie.clone());
        async move {
            let r = http
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .expect("page");
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            (status, headers, r.text().await.expect("html"))
        }
    };

    let (status, headers, html) = get("/").await;
    assert_eq!(status, 200);
    assert_eq!(
        headers.get("x-frame-options").map(|v| v.as_bytes()),
        Some(&b"DENY"[..])
    );
    assert!(headers
        .get("content-security-policy")
        .is_some_and(|v| v.to_str().unwrap_or("").contains("default-src 'none'")));
    assert!(
        html.contains("HTTP/1.1 + HTTP/2 (h2c)"),
        "listener protocol shown"
    );
    let (_, _, html) = get("/console/listeners").await;
    assert!(html.contains(">Filters</th>"), "route filters column shown");
    let (_, _, html) = get("/console/gslb").await;
    assert!(html.contains("app.gslb.test"), "GSLB record listed");
    let (status, _, html) = get("/console/pools/mesh").await;
    assert_eq!(status, 200);
    assert!(html.contains(&east.addr.to_string()), "member listed");
    let csrf = csrf_of(&html);
    let revision = html
        .split("name=\"revision\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("revision in the form")
        .to_string();

    // The pool form goes through Raft: the revision moves and the config shows the change.
    let (east_a, west_a) = (east.addr.to_string(), west.addr.to_string());
    let form = |extra_address: &'static str, rev: String| {
        vec![
            ("csrf".to_string(), csrf.clone()),
            ("revision".to_string(), rev),
            ("name".to_string(), "mesh".to_string()),
            ("health_check".to_string(), "hc".to_string()),
            ("members[0].address".to_string(), east_a.clone()),
            ("members[0].state".to_string(), "enabled".to_string()),
            ("members[1].address".to_string(), west_a.clone()),
            ("members[1].state".to_string(), "enabled".to_string()),
            ("members[2].address".to_string(), extra_address.to_string()),
            ("members[2].weight".to_string(), "2".to_string()),
            ("members[2].state".to_string(), "disabled".to_string()),
        ]
    };
    let post = |path: &'static str, fields: Vec<(String, String)>| {
        let (http, url, cookie) = (node.http.clone(), node.url(path), cookie.clone());
        async move {
            let r = http
                .post(url)
                .header("cookie", cookie)
                .form(&fields)
                .send()
                .await
                .expect("form answered");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };
    let (_, rev) = node.get_config(&token).await;
    let (status, body) = post(
        "/console/pools/mesh",
        form("127.0.0.9:8080", revision.clone()),
    )
    .await;
    assert_eq!(status, 303, "{body}");
    let (spec, rev2) = node.get_config(&token).await;
    assert_eq!(rev2, rev + 1);
    assert_eq!(spec["pools"][0]["members"][2]["address"], "127.0.0.9:8080");
    assert_eq!(spec["pools"][0]["members"][2]["state"], "disabled");

    // The same form again is stale now: 409, nothing overwritten.
    let (status, body) = post("/console/pools/mesh", form("127.0.0.10:8080", revision)).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("value=\"127.0.0.10:8080\""),
        "what was typed is kept"
    );
    assert_eq!(node.get_config(&token).await.1, rev2);

    // Invalid input is refused beside its field, and nothing changes.
    let (status, body) = post(
        "/console/pools/mesh",
        form("not-an-address", rev2.to_string()),
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        body.contains("invalid address") && body.contains("field-error"),
        "{body}"
    );
    assert_eq!(node.get_config(&token).await.1, rev2);

    // Without the CSRF token, nothing happens.
    let mut forged = form("127.0.0.11:8080", rev2.to_string());
    forged[0].1 = "forged".into();
    let (status, _) = post("/console/pools/mesh", forged).await;
    assert_eq!(status, 403);
    assert_eq!(node.get_config(&token).await.1, rev2);

    // Draining a member from the console takes it out of rotation at once: every request goes
    // to the other member.
    let client = reqwest::Client::new();
    let (status, body) = post(
        "/console/pools/mesh/members/state",
        vec![
            ("csrf".into(), csrf.clone()),
            ("address".into(), east_a.clone()),
            ("state".into(), "draining".into()),
        ],
    )
    .await;
    assert_eq!(status, 303, "{body}");
    let rev3 = node.get_config(&token).await.1;
    eventually(std::time::Duration::from_secs(5), || async {
        node.status(&token).await["revision"] == rev3
    })
    .await;
    for _ in 0..10 {
        assert_eq!(via_proxy(&client, port).await.as_deref(), Ok("west"));
    }
    let (_, _, html) = get("/console/pools/mesh").await;
    assert!(
        html.contains("<span class=\"draining\">draining</span>"),
        "{html}"
    );
    let st = node.status(&token).await;
    assert_eq!(st["pools"][0]["members"][0]["state"], "draining", "{st}");

    // The history shows who did it through which interface, and rolls back.
    let (_, _, html) = get("/console/history").await;
    assert!(
        html.contains("save pools/mesh") && html.contains("console"),
        "{html}"
    );
    let (status, body) = post(
        "/console/history/1/rollback",
        vec![
            ("csrf".into(), csrf.clone()),
            ("revision".into(), rev3.to_string()),
        ],
    )
    .await;
    assert_eq!(status, 303, "{body}");
    let (spec, rev4) = node.get_config(&token).await;
    assert_eq!(rev4, rev3 + 1);
    assert_eq!(
        spec["pools"][0]["members"].as_array().map(|m| m.len()),
        Some(2)
    );
    assert!(
        spec["pools"][0]["members"][0].get("state").is_none(),
        "{spec}"
    );

    // The audit log has the login with the client's address and the changes.
    let (_, _, audit) = get("/console/audit.jsonl").await;
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"login\"") && l.contains("127.0.0.1")),
        "{audit}"
    );
    assert!(
        audit.lines().any(|l| l.contains("roll back to revision 1")),
        "{audit}"
    );

    // Logging out ends the session.
    let (status, _) = post("/logout", vec![("csrf".into(), csrf.clone())]).await;
    assert_eq!(status, 303);
    assert_eq!(get("/").await.0, 401);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_cover_requests_health_dns_and_raft() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Meridian::start(&dir.path().join("n1")).await;
    let token = node.token().await;
    let backend = Backend::start("east", "127.0.0.2").await;
    let port = free_port();
    let (status, _) = node
        .put_config(&token, config(port, &[&backend], 500, 2), None)
        .await;
    assert_eq!(status, 200);
    let client = reqwest::Client::new();
    eventually(std::time::Duration::from_secs(5), || async {
        via_proxy(&client, port).await.is_ok()
    })
    .await
    .expect("proxy up");
    let _ = node.dns_a("app.gslb.test").await;
    let _ = node.dns_a("missing.gslb.test").await;
    let text = node.metrics(&token).await;
    for needle in [
        "meridian_lb_requests_total{listener=\"web\",status=\"200\"}",
        "meridian_lb_member_healthy{group=\"mesh\"",
        "meridian_dns_queries_total{rcode=\"NOERROR\",transport=\"udp\"}",
        "meridian_dns_queries_total{rcode=\"NXDOMAIN\",transport=\"udp\"}",
        "meridian_raft_term 1",
        "meridian_raft_commit_index",
        "meridian_config_revision",
    ] {
        assert!(
            text.contains(needle),
            "{needle} missing from metrics:\n{text}"
        );
    }
    let value = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    let (_, revision) = node.get_config(&token).await;
    assert!(value("meridian_raft_commit_index") >= revision.max(1));
    assert!(value("meridian_raft_commit_index") >= value("meridian_raft_last_applied_index"));
    assert_eq!(value("meridian_config_revision"), revision);
    assert!(!text.contains(&token), "a secret leaked into metrics");
    assert!(!text.contains("argon2"), "a hash leaked into metrics");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_guessing_is_throttled_but_tokens_keep_working() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Meridian::start(&dir.path().join("n1")).await;
    let token = node.token().await;
    for _ in 0..5 {
        let resp = node
            .http
            .get(node.url("/api/v1/config"))
            .basic_auth("admin", Some("guess"))
            .send()
            .await
            .expect("guess");
        assert_eq!(resp.status(), 401);
        assert!(resp.headers().get("retry-after").is_none());
    }
    // Now even the right password is refused for a while, and the answer says why: 429 with
    // Retry-After, as the console says.
    let resp = node
        .http
        .get(node.url("/api/v1/config"))
        .basic_auth("admin", Some(node.initial_password()))
        .send()
        .await
        .expect("right password");
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get("retry-after").is_some());
    let login = node.login("admin", &node.initial_password()).await;
    assert_eq!(login.status(), 429);
    assert!(login.headers().get("retry-after").is_some());
    assert!(!session_cookie_set(&login));
    // Tokens are not passwords: they keep working.
    assert_eq!(node.get_config(&token).await.1, 0);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_cannot_bind_raises_an_alarm_until_it_can() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Meridian::start(&dir.path().join("n1")).await;
    let token = node.token().await;
    let backend = Backend::start("east", "127.0.0.2").await;
    // Someone else holds the port.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = squatter.local_addr().expect("addr").port();
    let (status, _) = node
        .put_config(&token, config(port, &[&backend], 500, 2), None)
        .await;
    assert_eq!(
        status, 200,
        "the config is valid; binding is the node's problem"
    );
    let alarm = eventually(std::time::Duration::from_secs(5), || async {
        node.status(&token).await["alarms"]
            .as_array()
            .is_some_and(|a| {
                a.iter()
                    .any(|a| a.as_str().unwrap_or("").contains("bind failed"))
            })
    })
    .await;
    assert!(alarm.is_some(), "no alarm for the failed bind");
    // The listener retries; once the port is free it binds and the alarm clears.
    drop(squatter);
    let client = reqwest::Client::new();
    eventually(std::time::Duration::from_secs(10), || async {
        via_proxy(&client, port).await.is_ok()
    })
    .await
    .expect("listener bound once the port was free");
    let st = node.status(&token).await;
    assert_eq!(st["alarms"].as_array().map(|a| a.len()), Some(0), "{st}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_and_api_over_https_with_a_generated_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("n1");
    let node = Meridian::start_with(&data, 1, "127.0.0.1:0", "admin_tls = true").await;
    assert!(
        node.admin.starts_with("https://127.0.0.1:"),
        "{}",
        node.admin
    );
    let cert_path = data.join("admin-tls").join("cert.pem");
    let cert = std::fs::read(&cert_path).expect("cert");
    let key_mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(data.join("admin-tls").join("key.pem"))
            .expect("key")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(key_mode, 0o600);

    // The API works over HTTPS for a client that trusts the node's certificate ...
    let token = node.token().await;
    assert_eq!(node.get_config(&token).await.1, 0);
    // ... and a client that does not trust it refuses to talk.
    assert!(reqwest::get(node.url("/login")).await.is_err());
    // Plain HTTP on the same port gets no page.
    let plain = reqwest::get(format!(
        "{}/login",
        node.admin.replace("https://", "http://")
    ))
    .await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));

    // Session cookies are Secure over HTTPS.
    let resp = node.login("admin", &node.initial_password()).await;
    assert_eq!(resp.status(), 303);
    let cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(cookie.contains("; Secure"), "{cookie}");

    // The CLI talks HTTPS when told which certificate to trust.
    let out = tokio::process::Command::new(BIN)
        .args(["config", "get", "--format", "json", "--ca-cert"])
        .arg(&cert_path)
        .env("MERIDIAN_API", &node.admin)
        .env("MERIDIAN_TOKEN", &token)
        .output()
        .await
        .expect("cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A restart keeps the same certificate.
    node.stop().await;
    let node = Meridian::start_with(&data, 1, "127.0.0.1:0", "admin_tls = true").await;
    assert_eq!(std::fs::read(&cert_path).expect("cert"), cert);
    assert_eq!(node.get_config(&token).await.1, 0);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_console_on_a_public_address_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "node_id = 1\ndata_dir = \"{}\"\nadmin_bind = \"0.0.0.0:0\"\nadmin_tls = false\n\
             cluster_bind = \"127.0.0.1:0\"\ndns_bind = \"127.0.0.1:0\"\nbogus = 1\n",
            dir.path().join("data").display()
        ),
    )
    .expect("write");
    let out = tokio::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .await
        .expect("serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bogus"), "unknown key named: {err}");
    let text = std::fs::read_to_string(&config)
        .expect("read")
        .replace("bogus = 1\n", "");
    std::fs::write(&config, text).expect("write");
    let out = tokio::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .await
        .expect("serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("admin_tls") && err.contains("loopback"),
        "{err}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "nothing created for a refused config"
    );
}
