//! The cluster driven through faults, with real processes in network namespaces: a follower
//! cut off, then the leader cut off, while clients on every node read and write the config
//! with If-Match. The majority keeps taking writes, the minority refuses them (503) at once,
//! every node converges after healing, and the whole history of reads and writes is checked
//! against a compare-and-set register (`linearizable.rs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::linearizable::{check, Kind, Op, Outcome, State};

fn config(address: &str) -> String {
    format!(
        r#"api_version = "meridian/v1"

[[zones]]
name = "c.test"
soa = {{ mname = "ns1", rname = "hostmaster" }}

[[gslb_records]]
name = "app.c.test"
ttl = 1
sites = [{{ name = "only", address = "{address}" }}]
"#
    )
}

/// The value of the register: the GSLB site's address.
fn value_of(spec: &serde_json::Value) -> String {
    spec["gslb_records"][0]["sites"][0]["address"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// PUTs the config with `value` on the node at `admin` (If-Match `expect`, or `*`) and records
/// the write in `history`; answers the status and body.
async fn recorded_put(
    http: &reqwest::Client,
    rec: &Recorder,
    client: usize,
    admin: &str,
    value: &str,
    expect: Option<u64>,
) -> (u16, serde_json::Value) {
    let invoked = rec.t0.elapsed();
    let sent = http
        .put(format!("{admin}/api/v1/config"))
        .bearer_auth(&rec.token)
        .header(
            "if-match",
            expect.map_or_else(|| "*".to_string(), |e| format!("\"{e}\"")),
        )
        .header("content-type", "application/toml")
        .body(config(value))
        .timeout(Duration::from_secs(12))
        .send()
        .await;
    let (status, body, outcome, returned) = match sent {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            let (outcome, returned) = match status {
                200 => (
                    Some(Outcome::Written(
                        body["revision"].as_u64().expect("revision"),
                    )),
                    Some(rec.t0.elapsed()),
                ),
                409 => (Some(Outcome::Stale), Some(rec.t0.elapsed())),
                // Nothing appended: no effect, nothing to record.
                503 => (None, None),
                504 => (Some(Outcome::Unknown), None),
                other => panic!("write answered {other}: {body}"),
            };
            (status, body, outcome, returned)
        }
        // No answer: it may have been applied.
        Err(e) => (
            0,
            serde_json::Value::String(e.to_string()),
            Some(Outcome::Unknown),
            None,
        ),
    };
    if let Some(outcome) = outcome {
        rec.history.lock().expect("history").push(Op {
            client,
            invoked,
            returned,
            kind: Kind::Write {
                expect,
                value: value.to_string(),
                outcome,
            },
        });
    }
    (status, body)
}

/// Where the operations go, and the clock they are timed by.
#[derive(Clone)]
struct Recorder {
    t0: Instant,
    token: String,
    history: Arc<Mutex<Vec<Op>>>,
}

/// Reads then writes (If-Match the revision read) on one node until `stop`, recording each
/// operation.
/// `http` trusts the node's console certificate.
async fn client(
    id: usize,
    http: reqwest::Client,
    admin: String,
    rec: Recorder,
    stop: Arc<AtomicBool>,
) {
    let mut i = 0u32;
    let mut last_rev = None;
    while !stop.load(Ordering::SeqCst) {
        let invoked = rec.t0.elapsed();
        let read = http
            .get(format!("{admin}/api/v1/config"))
            .bearer_auth(&rec.token)
            .timeout(Duration::from_secs(12))
            .send()
            .await;
        if let Ok(resp) = read {
            if resp.status() == 200 {
                let rev: u64 = resp
                    .headers()
                    .get("x-meridian-revision")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .expect("revision header");
                let spec: serde_json::Value = resp.json().await.expect("spec");
                rec.history.lock().expect("history").push(Op {
                    client: id,
                    invoked,
                    returned: Some(rec.t0.elapsed()),
                    kind: Kind::Read(State {
                        revision: rev,
                        value: value_of(&spec),
                    }),
                });
                last_rev = Some(rev);
            }
        }
        if let Some(expect) = last_rev {
            i += 1;
            let value = format!("10.{}.{}.{}", id + 1, i / 250, i % 250 + 1);
            recorded_put(&http, &rec, id, &admin, &value, Some(expect)).await;
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
}

fn written_between(history: &[Op], from: Duration, to: Duration, clients: &[usize]) -> usize {
    history
        .iter()
        .filter(|o| clients.contains(&o.client))
        .filter(|o| {
            matches!(
                o.kind,
                Kind::Write {
                    outcome: Outcome::Written(_),
                    ..
                }
            )
        })
        .filter(|o| o.invoked >= from && o.returned.is_some_and(|r| r <= to))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_keep_the_majority_writing_and_every_history_linearizable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lan = crate::netns::Lan::new();
    let hosts = [lan.host(), lan.host(), lan.host()];
    let (nodes, _) = Meridian::cluster_in(&hosts, dir.path()).await;
    let token = nodes[0].token().await;
    let (status, body) = nodes[0].put_config(&token, config("192.0.2.1"), None).await;
    assert_eq!(status, 200, "{body}");
    let init = State {
        revision: body["revision"].as_u64().expect("revision"),
        value: "192.0.2.1".into(),
    };
    for node in &nodes {
        eventually(Duration::from_secs(5), || async {
            node.get_config(&token).await.1 == init.revision
        })
        .await
        .expect("every node has the first revision");
    }

    let rec = Recorder {
        t0: Instant::now(),
        token: token.clone(),
        history: Arc::default(),
    };
    let history = rec.history.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            tokio::spawn(client(
                i,
                n.http.clone(),
                n.admin.clone(),
                rec.clone(),
                stop.clone(),
            ))
        })
        .collect();
    let t0 = rec.t0;
    // The test's own writes are in the history too (client 9, If-Match: *).
    let put = |node: usize, value: &'static str| {
        let admin = nodes[node].admin.clone();
        let rec = rec.clone();
        let http = nodes[node].http.clone();
        async move { recorded_put(&http, &rec, 9, &admin, value, None).await }
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 1. Node 3, a follower, is cut off: its writes are refused at once, naming the leader it
    // cannot reach; nodes 1 and 2 keep writing.
    lan.partition(&hosts[2], &hosts[0]);
    lan.partition(&hosts[2], &hosts[1]);
    let cut = t0.elapsed();
    let last = Arc::new(Mutex::new(serde_json::Value::Null));
    let refused = eventually(Duration::from_secs(20), || async {
        let (status, body) = put(2, "192.0.2.3").await;
        *last.lock().expect("last") = body.clone();
        status == 503
            && body["detail"]
                .as_str()
                .is_some_and(|e| e.contains(&nodes[0].cluster))
    })
    .await;
    assert!(
        refused.is_some(),
        "the cut-off follower refuses writes, naming the leader: {}",
        last.lock().expect("last")
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let healed = t0.elapsed();
    lan.unpartition(&hosts[2], &hosts[0]);
    lan.unpartition(&hosts[2], &hosts[1]);
    {
        let h = history.lock().expect("history");
        assert!(
            written_between(&h, cut, healed, &[0, 1]) > 0,
            "the majority kept writing"
        );
        assert_eq!(
            written_between(&h, cut + Duration::from_secs(1), healed, &[2]),
            0
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 2. The leader (whichever node it is now) is cut off: the other two elect a leader and
    // write; the old one notices its lost quorum and refuses.
    let mut leader = None;
    for _ in 0..50 {
        for (i, n) in nodes.iter().enumerate() {
            if n.status(&token).await["raft"]["state"] == "Leader" {
                leader = Some(i);
            }
        }
        if leader.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let old = leader.expect("a leader");
    let others: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    for &o in &others {
        lan.partition(&hosts[old], &hosts[o]);
    }
    let cut = Instant::now();
    let took = eventually(Duration::from_secs(25), || async {
        put(others[0], "192.0.2.4").await.0 == 200
    })
    .await
    .expect("the majority writes again after losing its leader");
    eprintln!("writes resumed {took:?} after the leader was cut off");
    assert!(took < Duration::from_secs(12), "{took:?}");
    eventually(Duration::from_secs(15), || async {
        put(old, "192.0.2.5").await.0 == 503
    })
    .await
    .expect("the old leader refuses writes once it lost its quorum");
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(cut.elapsed())).await;
    for &o in &others {
        lan.unpartition(&hosts[old], &hosts[o]);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.expect("client");
    }

    // Every node converges on one revision, and serves it in DNS.
    let (spec, final_rev) = nodes[others[0]].get_config(&token).await;
    let value: std::net::IpAddr = value_of(&spec).parse().expect("address");
    for node in &nodes {
        eventually(Duration::from_secs(10), || async {
            node.get_config(&token).await.1 >= final_rev
        })
        .await
        .expect("every node converges");
        eventually(Duration::from_secs(5), || async {
            node.dns_a("app.c.test").await == vec![value]
        })
        .await
        .expect("every node's DNS serves the last revision");
    }

    let history = history.lock().expect("history").clone();
    let writes = history
        .iter()
        .filter(|o| {
            matches!(
                o.kind,
                Kind::Write {
                    outcome: Outcome::Written(_),
                    ..
                }
            )
        })
        .count();
    assert!(writes > 20, "{writes} acknowledged writes");
    let mut all = history;
    all.sort_by_key(|o| o.invoked);
    if let Err(e) = check(init, &all) {
        panic!("{e}\n{} operations", all.len());
    }
}
