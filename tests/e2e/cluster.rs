//! Three `meridian serve` processes forming one Raft cluster: writes on any node, replication,
//! leader loss and catch-up.

use std::time::Duration;

use crate::harness::*;

fn pool_config(members: &[&str]) -> String {
    let members: Vec<String> = members
        .iter()
        .map(|m| format!("{{ address = \"{m}\" }}"))
        .collect();
    format!(
        r#"api_version = "meridian/v1"
pools = [{{ name = "p", members = [{}] }}]

[[zones]]
name = "c.test"
soa = {{ mname = "ns1", rname = "hostmaster" }}

[[gslb_records]]
name = "app.c.test"
sites = [{{ name = "only", address = "192.0.2.7" }}]
"#,
        members.join(", ")
    )
}

/// Nodes 1 (which bootstraps the cluster), 2 and 3 (which join it), with their data under
/// `dir`, and an admin token of node 1.
async fn three_nodes(dir: &std::path::Path) -> (Meridian, Meridian, Meridian, String) {
    let n1 = Meridian::start_with(&dir.join("n1"), 1, "127.0.0.1:0", "").await;
    let token = n1.token().await;
    let join = n1.secret_join();
    let n2 = Meridian::start_with(&dir.join("n2"), 2, "127.0.0.1:0", &join).await;
    let n3 = Meridian::start_with(&dir.join("n3"), 3, "127.0.0.1:0", &join).await;
    (n1, n2, n3, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_replicate_fail_over_and_catch_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (n1, n2, n3, token) = three_nodes(dir.path()).await;
    // Joining nodes never create a second admin.
    assert!(!dir
        .path()
        .join("n2")
        .join("initial-admin-password")
        .exists());

    let st = n1.status(&token).await;
    assert_eq!(
        st["raft"]["members"].as_array().map(|m| m.len()),
        Some(3),
        "{st}"
    );

    // A write on a follower is forwarded to the leader; the token made on n1 works everywhere.
    let (status, body) = n3
        .put_config(&token, pool_config(&["127.0.0.1:9001"]), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let rev = body["revision"].as_u64().expect("revision");
    assert_eq!(
        n3.get_config(&token).await.1,
        rev,
        "read-your-write on the follower"
    );
    for node in [&n1, &n2] {
        eventually(Duration::from_secs(5), || async {
            node.get_config(&token).await.1 == rev
        })
        .await
        .expect("the write reaches every node");
    }
    for node in [&n1, &n2, &n3] {
        assert_eq!(
            node.dns_a("app.c.test").await,
            vec!["192.0.2.7".parse::<std::net::IpAddr>().expect("ip")]
        );
    }
    // A stale write on a follower gets 409 from the leader, through the follower.
    let (status, _) = n2
        .put_config(&token, pool_config(&["127.0.0.1:9009"]), Some(rev - 1))
        .await;
    assert_eq!(status, 409);

    // Lose the leader (n1 bootstrapped, so it leads): the other two elect a new one and keep
    // taking writes.
    let n1_cluster = n1.cluster.clone();
    n1.kill9().await;
    let rev2 = std::sync::atomic::AtomicU64::new(0);
    let took = eventually(Duration::from_secs(20), || async {
        let (status, body) = n2
            .put_config(
                &token,
                pool_config(&["127.0.0.1:9001", "127.0.0.1:9002"]),
                None,
            )
            .await;
        if status == 200 {
            rev2.store(
                body["revision"].as_u64().unwrap_or(0),
                std::sync::atomic::Ordering::SeqCst,
            );
        }
        status == 200
    })
    .await;
    assert!(took.is_some(), "no write accepted after the leader died");
    let rev2 = rev2.into_inner();
    assert!(rev2 > rev);

    // The old leader comes back on its address and catches up.
    let n1 = Meridian::start_with(&dir.path().join("n1"), 1, &n1_cluster, "").await;
    eventually(Duration::from_secs(10), || async {
        n1.get_config(&token).await.1 == rev2
    })
    .await
    .expect("the restarted node catches up");
    let (spec, _) = n1.get_config(&token).await;
    assert_eq!(
        spec["pools"][0]["members"].as_array().map(|m| m.len()),
        Some(2)
    );
    for node in [n1, n2, n3] {
        node.stop().await;
    }
}

/// The cluster port holds no half-sent request for long and no more connections than its
/// limit, and keeps serving the cluster meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_port_sheds_stalled_and_excess_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Meridian::start(&dir.path().join("n1")).await;
    let token = node.token().await;
    let mut stalled = Vec::new();
    for _ in 0..300 {
        let mut tcp = tokio::net::TcpStream::connect(&node.cluster)
            .await
            .expect("connect");
        // A TLS handshake that never ends: a record header announcing 512 bytes, then nothing.
        tcp.write_all(b"\x16\x03\x01\x02\x00").await.expect("write");
        stalled.push(tcp);
    }
    // Past the limit (256), connections are closed at once.
    let mut closed_at_once = 0;
    for tcp in stalled.iter_mut().rev().take(60) {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut byte)).await
        {
            closed_at_once += 1;
        }
    }
    assert!(
        closed_at_once >= 40,
        "{closed_at_once} of the last 60 closed at once"
    );
    // The node still takes writes meanwhile (its own path to the state machine).
    let (status, body) = node
        .put_config(&token, "api_version = \"meridian/v1\"\n", None)
        .await;
    assert_eq!(status, 200, "{body}");
    // The stalled handshakes are dropped after the handshake timeout (10 s).
    let started = std::time::Instant::now();
    let mut open = 0;
    for tcp in stalled.iter_mut().take(200) {
        let mut byte = [0u8; 1];
        match tokio::time::timeout(Duration::from_secs(15), tcp.read(&mut byte)).await {
            Ok(Ok(0) | Err(_)) => {}
            _ => open += 1,
        }
    }
    assert_eq!(open, 0, "every stalled connection closed");
    assert!(started.elapsed() < Duration::from_secs(15));
}

/// A node that presents the wrong cluster secret is told so and gives up at once, instead of
/// retrying for a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_with_the_wrong_secret_fails_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = Meridian::start_with(&dir.path().join("n1"), 1, "127.0.0.1:0", "").await;
    let secret = dir.path().join("wrong.secret");
    std::fs::write(
        &secret,
        "not the cluster's secret, long enough to be accepted\n",
    )
    .expect("write secret");
    let data = dir.path().join("n2");
    let config = dir.path().join("n2.toml");
    std::fs::write(
        &config,
        format!(
            "node_id = 2\nname = \"test-2\"\ndata_dir = \"{}\"\nadmin_bind = \"127.0.0.1:0\"\n\
             cluster_bind = \"127.0.0.1:0\"\ndns_bind = \"127.0.0.1:0\"\njoin = \"{}\"\n\
             cluster_secret_file = \"{}\"\n",
            data.display(),
            seed.cluster,
            secret.display()
        ),
    )
    .expect("write config");
    let started = std::time::Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .output(),
    )
    .await
    .expect("the node gives up well within the minute of retries")
    .expect("run meridian");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("wrong cluster secret"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

/// A leader whose followers are gone notices within seconds: the quorum gauge drops, and a
/// write is refused at once (503, nothing appended) rather than hanging until it times out; a
/// write caught in between is answered 504 (outcome unknown), never 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_lost_its_quorum_says_so_and_refuses_writes_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (n1, n2, n3, token) = three_nodes(dir.path()).await;
    let (status, body) = n1
        .put_config(&token, pool_config(&["127.0.0.1:9001"]), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let committed = body["revision"].as_u64().expect("revision");
    assert!(n1
        .metrics(&token)
        .await
        .contains("\nmeridian_raft_has_quorum 1"));

    n2.kill9().await;
    n3.kill9().await;
    // A write in the first seconds, before the loss is noticed, is appended but cannot commit:
    // its outcome is unknown (504), not "nothing changed" (503).
    let (status, body) = n1
        .put_config(&token, pool_config(&["127.0.0.1:9003"]), None)
        .await;
    assert_eq!(status, 504, "{body}");
    assert!(body.to_string().contains("may still be applied"), "{body}");
    // It names the log position after which the write would be: past the committed one.
    let after = body["after_index"].as_u64().expect("after_index");
    assert!(after >= committed, "{body}");
    let lost = eventually(Duration::from_secs(10), || async {
        n1.metrics(&token)
            .await
            .contains("\nmeridian_raft_has_quorum 0")
    })
    .await;
    let lost = lost.expect("the leader notices the lost quorum");
    assert!(lost < Duration::from_secs(8), "{lost:?}");
    let started = std::time::Instant::now();
    let (status, body) = n1
        .put_config(&token, pool_config(&["127.0.0.1:9002"]), None)
        .await;
    assert_eq!(status, 503, "{body}");
    let alarms = n1.status(&token).await["alarms"].to_string();
    assert!(alarms.contains("no majority"), "{alarms}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "refused at once, not after the write timeout: {:?}",
        started.elapsed()
    );
}

/// A member restarted while its peers are down serves its last applied state at once, instead
/// of waiting for a leader first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_restarted_alone_serves_its_last_state_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (n1, n2, n3, token) = three_nodes(dir.path()).await;
    let (status, body) = n1
        .put_config(&token, pool_config(&["127.0.0.1:9001"]), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let cluster1 = n1.cluster.clone();
    n2.stop().await;
    n3.stop().await;
    n1.stop().await;

    // The bootstrap node alone, on its old cluster port so that its peers could find it.
    let started = std::time::Instant::now();
    let n1 = Meridian::start_with(&dir.path().join("n1"), 1, &cluster1, "").await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "ready after {took:?}");
    let out = tokio::process::Command::new("dig")
        .args([
            &format!("@{}", n1.dns.ip()),
            "-p",
            &n1.dns.port().to_string(),
            "app.c.test",
            "A",
            "+short",
        ])
        .output()
        .await
        .expect("dig");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "192.0.2.7");
    n1.stop().await;
}

/// `meridian cluster status` from any node shows every member with the leader's view of it; a
/// dead member shows as unreachable with an alarm; removal refuses what would lose the quorum
/// and otherwise shrinks the cluster, the leader included, down to a last voter it keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_status_shows_every_member_and_removal_keeps_a_quorum() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (n1, n2, n3, token) = three_nodes(dir.path()).await;

    let cluster = |node: &Meridian| {
        let req = node
            .http
            .get(node.url("/api/v1/cluster"))
            .bearer_auth(&token);
        async move {
            let resp = req.send().await.expect("cluster status");
            assert_eq!(resp.status(), 200);
            resp.json::<serde_json::Value>().await.expect("json")
        }
    };
    let remove = |node: &Meridian, id: u64| {
        let req = node
            .http
            .delete(node.url(&format!("/api/v1/cluster/nodes/{id}")))
            .bearer_auth(&token);
        async move {
            let resp = req.send().await.expect("remove");
            let status = resp.status().as_u16();
            (
                status,
                resp.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    };
    let member = |v: &serde_json::Value, id: u64| {
        v["members"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["node_id"] == id))
            .cloned()
            .unwrap_or_default()
    };

    // Every member runs this release, so the leader raises the validation schema to the
    // newest it knows (within its 5 s check).
    let newest = serde_json::json!(model::SCHEMA_SUPPORTED);
    eventually(Duration::from_secs(15), || async {
        cluster(&n2).await["schema"] == newest
    })
    .await
    .expect("the schema in force is raised");

    // Asked of a follower: all three answer, each with its own term and indexes; the leader's
    // view gives the followers' lag and last contact.
    let v = cluster(&n2).await;
    assert_eq!(v["asked"], 2, "{v}");
    assert_eq!(v["leader"], 1, "{v}");
    assert_eq!(v["members"].as_array().map(Vec::len), Some(3), "{v}");
    for id in 1..=3 {
        let m = member(&v, id);
        assert_eq!(m["reachable"], true, "{v}");
        assert!(m["term"].as_u64().is_some_and(|t| t >= 1), "{v}");
        assert!(m["commit_index"].as_u64().is_some_and(|c| c >= 1), "{v}");
    }
    assert_eq!(member(&v, 1)["role"], "leader");
    assert_eq!(member(&v, 1)["state"], "Leader");
    assert_eq!(member(&v, 3)["role"], "voter");
    assert_eq!(member(&v, 3)["schema_supported"], newest);
    assert!(member(&v, 3)["last_contact_ms"].as_u64().is_some(), "{v}");

    // The CLI prints the same as a table.
    let out = tokio::process::Command::new(BIN)
        .args(["cluster", "status"])
        .env("MERIDIAN_API", &n3.admin)
        .env("MERIDIAN_TOKEN", &token)
        .output()
        .await
        .expect("cluster status");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("1 ") && l.contains("leader") && l.contains("Leader")),
        "{table}"
    );

    // A dead member: unreachable, with an alarm and a metric on the leader.
    n3.kill9().await;
    eventually(Duration::from_secs(15), || async {
        n1.status(&token).await["alarms"]
            .as_array()
            .is_some_and(|a| {
                a.iter().any(|a| {
                    a.as_str()
                        .is_some_and(|a| a.contains("node 3") && a.contains("not answered"))
                })
            })
    })
    .await
    .expect("an alarm for the silent member");
    let v = cluster(&n1).await;
    assert_eq!(member(&v, 3)["reachable"], false, "{v}");
    assert!(member(&v, 3)["error"].as_str().is_some(), "{v}");
    let metrics = n1.metrics(&token).await;
    assert!(
        metrics.contains("\nmeridian_raft_peer_last_contact_seconds{peer=\"3\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("\nmeridian_raft_peer_lag_entries{peer=\"2\"} 0"));

    // Removing node 2 would leave 1 and the dead 3: refused with the reason; nothing changes.
    let (status, body) = remove(&n2, 2).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("quorum")),
        "{body}"
    );
    let (status, _) = remove(&n1, 9).await;
    assert_eq!(status, 404);
    // A viewer cannot; an admin can remove the dead node, from a follower.
    let (status, body) = remove(&n2, 3).await;
    assert_eq!(status, 200, "{body}");
    for node in [&n1, &n2] {
        eventually(Duration::from_secs(5), || async {
            cluster(node).await["members"].as_array().map(Vec::len) == Some(2)
        })
        .await
        .expect("both see two members");
    }
    // Writes still commit with two voters.
    let (status, body) = n2
        .put_config(&token, pool_config(&["127.0.0.1:9003"]), None)
        .await;
    assert_eq!(status, 200, "{body}");

    // The leader itself can be removed: the other takes over and keeps serving writes.
    let (status, body) = remove(&n2, 1).await;
    assert_eq!(status, 200, "{body}");
    eventually(Duration::from_secs(10), || async {
        let v = cluster(&n2).await;
        v["leader"] == 2 && v["members"].as_array().map(Vec::len) == Some(1)
    })
    .await
    .expect("node 2 leads alone");
    let (status, body) = n2
        .put_config(&token, pool_config(&["127.0.0.1:9004"]), None)
        .await;
    assert_eq!(status, 200, "{body}");
    // The last voter stays.
    let (status, body) = remove(&n2, 2).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("only voter")),
        "{body}"
    );
    for node in [n1, n2] {
        node.stop().await;
    }
}

/// Runs a pristine node that must fail to join `seed` with `token`; its stderr.
async fn join_refused(dir: &std::path::Path, node_id: u64, seed: &str, token: &str) -> String {
    let data = dir.join(format!("n{node_id}"));
    let config = dir.join(format!("n{node_id}.toml"));
    std::fs::write(
        &config,
        format!(
            "node_id = {node_id}\ndata_dir = \"{}\"\nadmin_bind = \"127.0.0.1:0\"\n\
             cluster_bind = \"127.0.0.1:0\"\ndns_bind = \"127.0.0.1:0\"\n",
            data.display()
        ),
    )
    .expect("write config");
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&config)
            .args(["--join", seed, "--token", token])
            .env("RUST_LOG", "warn")
            .output(),
    )
    .await
    .expect("a refused join ends at once")
    .expect("run meridian");
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// A node joins with a single-use join token and nothing else: it checks the member against the
/// CA the token names, gets its certificate and the cluster secret, and talks mutual TLS. A
/// reused, wrong, expired or forged token is refused with the reason and the cluster is
/// unchanged; the cluster port refuses a client without a cluster certificate, secret or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_with_single_use_tokens_over_mutual_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n1 = Meridian::start_with(&dir.path().join("n1"), 1, "127.0.0.1:0", "").await;
    let token = n1.token().await;
    let issue = |ttl: u64| {
        let api = n1.admin.clone();
        let token = token.clone();
        async move {
            let out = tokio::process::Command::new(BIN)
                .args(["cluster", "token", "--ttl-seconds", &ttl.to_string()])
                .env("MERIDIAN_API", &api)
                .env("MERIDIAN_TOKEN", &token)
                .output()
                .await
                .expect("cluster token");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        }
    };
    let join_token = issue(600).await;
    assert!(join_token.starts_with("mjt1."), "{join_token}");

    let extra = format!("join = \"{}\"\njoin_token = \"{join_token}\"", n1.cluster);
    let n2 = Meridian::start_with(&dir.path().join("n2"), 2, "127.0.0.1:0", &extra).await;
    let st = n2.status(&token).await;
    assert_eq!(
        st["raft"]["members"].as_array().map(Vec::len),
        Some(2),
        "{st}"
    );
    // It got the cluster secret (credentials open on it) and its own certificate.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("n2").join("cluster.secret")).expect("secret"),
        std::fs::read_to_string(dir.path().join("n1").join("cluster.secret")).expect("secret")
    );
    assert!(dir.path().join("n2/cluster-tls/node.pem").exists());
    let (status, body) = n2
        .put_config(&token, pool_config(&["127.0.0.1:9001"]), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let rev = body["revision"].as_u64().expect("revision");
    eventually(Duration::from_secs(5), || async {
        n1.get_config(&token).await.1 == rev
    })
    .await
    .expect("replicated over mutual TLS");

    // Reused, wrong, expired, forged: refused, each saying why.
    let stderr = join_refused(dir.path(), 3, &n1.cluster, &join_token).await;
    assert!(stderr.contains("already used"), "{stderr}");
    let parts: Vec<&str> = join_token.split('.').collect();
    let fresh = issue(600).await;
    let fresh_parts: Vec<&str> = fresh.split('.').collect();
    let wrong = format!(
        "mjt1.{}.{}.{}",
        fresh_parts[1],
        "0".repeat(32),
        fresh_parts[3]
    );
    let stderr = join_refused(dir.path(), 4, &n1.cluster, &wrong).await;
    assert!(stderr.contains("wrong secret"), "{stderr}");
    let forged = format!(
        "mjt1.{}.{}.{}",
        fresh_parts[1],
        fresh_parts[2],
        "0".repeat(64)
    );
    let stderr = join_refused(dir.path(), 5, &n1.cluster, &forged).await;
    assert!(
        stderr.contains("does not present the cluster CA"),
        "{stderr}"
    );
    let short = issue(1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stderr = join_refused(dir.path(), 6, &n1.cluster, &short).await;
    assert!(stderr.contains("expired"), "{stderr}");
    let st = n1.status(&token).await;
    assert_eq!(
        st["raft"]["members"].as_array().map(Vec::len),
        Some(2),
        "{st}"
    );

    // The tokens as listed: the first used by node 2, never a secret.
    let resp = n1
        .http
        .get(n1.url("/api/v1/cluster/join-tokens"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("tokens");
    let listed = resp.text().await.expect("text");
    let tokens: serde_json::Value = serde_json::from_str(&listed).expect("json");
    let first = tokens
        .as_array()
        .and_then(|a| a.iter().find(|t| t["id"] == parts[1]))
        .cloned()
        .unwrap_or_default();
    assert_eq!(first["state"], "used", "{listed}");
    assert_eq!(first["used_by_node"], 2, "{listed}");
    assert!(!listed.contains(parts[2]) && !listed.contains(fresh_parts[2]));

    // The cluster port: TLS only, and Raft RPC needs a cluster certificate even with the
    // secret.
    let secret =
        std::fs::read_to_string(dir.path().join("n1").join("cluster.secret")).expect("secret");
    let anonymous = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client");
    let resp = anonymous
        .post(format!("https://{}/raft/vote", n1.cluster))
        .bearer_auth(secret.trim())
        .body("{}")
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status(), 401);
    let plain = reqwest::Client::new()
        .get(format!("http://{}/cluster/status", n1.cluster))
        .bearer_auth(secret.trim())
        .send()
        .await;
    assert!(
        plain.is_err() || plain.is_ok_and(|r| !r.status().is_success()),
        "plaintext is not served"
    );
    for node in [n1, n2] {
        node.stop().await;
    }
}

/// `meridian backup` writes the config, users, tokens and credentials (keys still sealed);
/// `meridian restore` seeds a new cluster from it, which serves the same config and takes the
/// old tokens; without the old cluster's secret the restore is refused before anything starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_seeds_a_new_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n1 = Meridian::start(&dir.path().join("n1")).await;
    let token = n1.token().await;
    let (status, body) = n1
        .put_config(&token, pool_config(&["127.0.0.1:9001"]), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let secret = "c2VjcmV0IHNlY3JldCBzZWNyZXQgc2VjcmV0IDMyYg==";
    let resp = n1
        .http
        .post(n1.url("/api/v1/dns/tsig-keys"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "xfr.c.test", "secret": secret}))
        .send()
        .await
        .expect("tsig key");
    assert_eq!(resp.status(), 201);

    let file = dir.path().join("cluster.backup");
    let out = tokio::process::Command::new(BIN)
        .args(["backup", "--out"])
        .arg(&file)
        .env("MERIDIAN_API", &n1.admin)
        .env("MERIDIAN_TOKEN", &token)
        .output()
        .await
        .expect("backup");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&file).expect("backup written");
    assert!(text.contains("meridian-backup/1") && text.contains("xfr.c.test"));
    assert!(!text.contains(secret), "secrets stay sealed");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777,
        0o600
    );
    let old_secret = dir.path().join("n1").join("cluster.secret");
    n1.stop().await;

    let restore = |name: &str, extra: String| {
        let data = dir.path().join(name);
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "node_id = 1\ndata_dir = \"{}\"\nadmin_bind = \"127.0.0.1:0\"\n\
                 cluster_bind = \"127.0.0.1:0\"\ndns_bind = \"127.0.0.1:0\"\n{extra}\n",
                data.display()
            ),
        )
        .expect("config");
        let file = file.clone();
        async move {
            tokio::process::Command::new(BIN)
                .args(["restore", "--config"])
                .arg(&config)
                .arg("--from")
                .arg(&file)
                .env("RUST_LOG", "warn")
                .output()
                .await
                .expect("restore")
        }
    };
    // Another cluster's secret: refused, nothing made.
    let out = restore("wrong", String::new()).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("do not open"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.path().join("wrong").join("raft").exists());

    let with_secret = format!("cluster_secret_file = \"{}\"", old_secret.display());
    let out = restore("n2", with_secret.clone()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n2 = Meridian::start_with(&dir.path().join("n2"), 1, "127.0.0.1:0", &with_secret).await;
    // The old token works: users and tokens came along.
    let (spec, _) = n2.get_config(&token).await;
    assert_eq!(spec["pools"][0]["members"][0]["address"], "127.0.0.1:9001");
    assert_eq!(
        n2.dns_a("app.c.test").await,
        vec!["192.0.2.7".parse::<std::net::IpAddr>().expect("ip")]
    );
    let keys = n2
        .http
        .get(n2.url("/api/v1/dns/tsig-keys"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("keys")
        .text()
        .await
        .expect("text");
    assert!(keys.contains("xfr.c.test"), "{keys}");
    assert!(!dir
        .path()
        .join("n2")
        .join("initial-admin-password")
        .exists());
    n2.stop().await;
}

/// Two appliances and a witness: the witness votes but serves no traffic, shows as a witness,
/// and with it the surviving appliance keeps taking writes when the other dies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_votes_but_serves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n1 = Meridian::start_with(&dir.path().join("n1"), 1, "127.0.0.1:0", "").await;
    let token = n1.token().await;
    let join = n1.secret_join();
    let n2 = Meridian::start_with(&dir.path().join("n2"), 2, "127.0.0.1:0", &join).await;
    let w = Meridian::start_with(
        &dir.path().join("w"),
        3,
        "127.0.0.1:0",
        &format!("{join}\nwitness = true"),
    )
    .await;
    let (status, body) = n1
        .put_config(&token, pool_config(&["127.0.0.1:9001"]), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let app = vec!["192.0.2.7".parse::<std::net::IpAddr>().expect("ip")];
    eventually(Duration::from_secs(5), || async {
        n2.dns_a("app.c.test").await == app
    })
    .await
    .expect("an appliance answers");
    // The witness has the config but answers no query, and says what it is.
    assert_eq!(w.get_config(&token).await.0["pools"][0]["name"], "p");
    assert!(w.dns_a("app.c.test").await.is_empty());
    let v: serde_json::Value = w
        .http
        .get(w.url("/api/v1/cluster"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("cluster")
        .json()
        .await
        .expect("json");
    let role = v["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["node_id"] == 3))
        .map(|m| m["role"].clone());
    assert_eq!(role, Some(serde_json::json!("witness")), "{v}");
    assert!(
        w.status(&token).await["alarms"]
            .as_array()
            .is_some_and(|a| a.iter().all(|a| !a.to_string().contains("Proxy"))),
        "no data-plane alarm on a witness"
    );

    // One appliance dies: the other and the witness are a majority.
    n1.kill9().await;
    eventually(Duration::from_secs(20), || async {
        n2.put_config(&token, pool_config(&["127.0.0.1:9002"]), None)
            .await
            .0
            == 200
    })
    .await
    .expect("writes go on with the witness's vote");
    for node in [n2, w] {
        node.stop().await;
    }
}

/// The SHA-256 of the certificate a node's cluster port presents to a new connection,
/// verified against the cluster CA in `data_dir`.
async fn presented_fingerprint(node: &Meridian) -> String {
    let ca = std::fs::read_to_string(node.data_dir.join("cluster-tls/ca.pem")).expect("ca.pem");
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert.expect("ca pem")).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let (host, port) = node.cluster.rsplit_once(':').expect("host:port");
    let port = port.parse().expect("port");
    handshake(std::sync::Arc::new(config), port, host)
        .await
        .expect("handshake")
        .0
}

/// A node certificate due for renewal is renewed in place: a new key and certificate are
/// written, the running node presents them on its cluster port without a restart, the other
/// member accepts them (forwarded writes, status over mutual TLS), the cluster status shows the
/// new expiry, and a restart loads the renewed pair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_certificate_due_for_renewal_is_renewed_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n1 = Meridian::start_with(&dir.path().join("n1"), 1, "127.0.0.1:0", "").await;
    let token = n1.token().await;
    let join = n1.secret_join();
    let n2 = Meridian::start_with(&dir.path().join("n2"), 2, "127.0.0.1:0", &join).await;
    let pem_path = dir.path().join("n2/cluster-tls/node.pem");
    let enrolled = std::fs::read_to_string(&pem_path).expect("node.pem");
    assert_eq!(presented_fingerprint(&n2).await, fingerprint(&enrolled));
    // Node 2's certificate expiry as node 1 gathers it over mutual TLS (None: unreachable).
    let expiry_of_2 = || {
        let req = n1.http.get(n1.url("/api/v1/cluster")).bearer_auth(&token);
        async move {
            let v: serde_json::Value = req
                .send()
                .await
                .expect("cluster status")
                .json()
                .await
                .expect("json");
            v["members"]
                .as_array()
                .and_then(|m| m.iter().find(|m| m["node_id"] == 2))
                .filter(|m| m["reachable"] == true)
                .and_then(|m| m["cert_not_after_unix"].as_i64())
        }
    };
    let enrolled_expiry = expiry_of_2().await.expect("node 2 reachable");

    // Started again with a renewal window longer than the certificate's life: the process
    // loads the enrolled certificate, then renews it while it runs.
    let n2_cluster = n2.cluster.clone();
    n2.stop().await;
    let extra = format!("{join}\ncluster_cert_renew_days = 825");
    let n2 = Meridian::start_with(&dir.path().join("n2"), 2, &n2_cluster, &extra).await;
    let renewed = eventually(Duration::from_secs(30), || async {
        std::fs::read_to_string(&pem_path).is_ok_and(|p| p != enrolled)
    })
    .await;
    assert!(renewed.is_some(), "node.pem was not renewed");
    let renewed = std::fs::read_to_string(&pem_path).expect("node.pem");
    let key = std::fs::read_to_string(dir.path().join("n2/cluster-tls/node.key")).expect("key");
    assert!(!dir.path().join("n2/cluster-tls/node.pem.new").exists());
    assert!(!key.is_empty());
    let fp = fingerprint(&renewed);
    assert_ne!(fp, fingerprint(&enrolled));
    let presented = eventually(Duration::from_secs(5), || async {
        presented_fingerprint(&n2).await == fp
    })
    .await;
    assert!(
        presented.is_some(),
        "the cluster port still presents the old certificate"
    );

    // The other member accepts it: a write through node 2 is forwarded over mutual TLS, and
    // node 1 reaches node 2 for the status, which shows the renewed certificate's expiry.
    let (status, body) = n2
        .put_config(&token, pool_config(&["127.0.0.1:9001"]), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let later = eventually(Duration::from_secs(10), || async {
        expiry_of_2().await.is_some_and(|t| t > enrolled_expiry)
    })
    .await;
    assert!(
        later.is_some(),
        "node 1 reaches node 2 and sees its renewed certificate's later expiry"
    );

    // A restart loads the renewed pair (renewal is not due again for a fresh certificate).
    n2.stop().await;
    let n2 = Meridian::start_with(&dir.path().join("n2"), 2, &n2_cluster, &join).await;
    assert_eq!(presented_fingerprint(&n2).await, fp);
    n2.stop().await;
    n1.stop().await;
}
