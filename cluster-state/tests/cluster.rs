//! End-to-end tests of `ClusterNode`: real sled on temporary directories, real RPC sockets on
//! 127.0.0.1:0.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cluster_state::{ChangeError, ClusterNode, Command, NodeConfig, Refusal};
use model::Change;
use tokio::net::TcpListener;

const SECRET: &str = "s3cret-for-tests";

async fn start(dir: &Path, node_id: u64) -> Arc<ClusterNode> {
    let (cfg, listener) = config(dir, node_id).await;
    ClusterNode::start(cfg, listener)
        .await
        .expect("node starts")
}

async fn config(dir: &Path, node_id: u64) -> (NodeConfig, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("has an address");
    let cfg = NodeConfig {
        node_id,
        data_dir: dir.to_path_buf(),
        rpc_advertise: addr.to_string(),
        cluster_secret: SECRET.to_string(),
        tls: None,
        witness: false,
        storage: cluster_state::StorageKind::default(),
    };
    (cfg, listener)
}

fn pool(name: &str, port: u16) -> model::Object {
    model::Object::Pools(model::PoolSpec {
        name: name.into(),
        members: vec![model::MemberSpec {
            address: format!("127.0.0.1:{port}"),
            weight: 1,
            state: model::AdminState::Enabled,
        }],
        health_check: None,
        timeout_ms: 1000,
        ..Default::default()
    })
}

fn upsert(expected_revision: Option<u64>, object: model::Object) -> Command {
    Command::from(Change::Upsert {
        expected_revision,
        object,
    })
}

async fn wait_for_revision(
    rx: &mut tokio::sync::watch::Receiver<cluster_state::Applied>,
    revision: u64,
) {
    tokio::time::timeout(
        Duration::from_secs(10),
        rx.wait_for(|a| a.config.revision >= revision),
    )
    .await
    .expect("revision published in time")
    .expect("watch channel open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_then_upsert_publishes_revision_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start(dir.path(), 1).await;
    assert!(node.bootstrapped_now());
    let cur = node.current();
    assert_eq!(cur.config.revision, 0);
    assert_eq!(cur.config.value, model::Config::empty());

    let mut rx = node.subscribe();
    let rev = node
        .propose(upsert(Some(0), pool("web", 8080)))
        .await
        .expect("committed");
    assert!(rev > 0);
    wait_for_revision(&mut rx, rev).await;
    let applied = rx.borrow().clone();
    assert_eq!(applied.config.revision, rev);
    assert_eq!(applied.config.value.pools.len(), 1);

    // Raft metrics trail the write's response slightly.
    let mut status = node.status();
    for _ in 0..100 {
        if status.last_applied >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        status = node.status();
    }
    assert_eq!(status.state, "Leader");
    assert_eq!(status.leader, Some(1));
    assert_eq!(rev, 1, "the first config change is revision 1");
    assert!(
        status.last_applied >= 2,
        "the log also holds the membership entry"
    );
    assert_eq!(status.members.len(), 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_commands_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start(dir.path(), 1).await;
    let rev = node
        .propose(upsert(None, pool("web", 8080)))
        .await
        .expect("committed");
    let before = node.current();

    let stale = node.propose(upsert(Some(rev - 1), pool("api", 8081))).await;
    assert!(matches!(
        stale,
        Err(ChangeError::Rejected(Refusal::StaleRevision { expected, current }))
            if expected == rev - 1 && current == rev
    ));

    let route = model::Object::Routes(model::RouteSpec {
        name: "r".into(),
        listener: "nope".into(),
        host: None,
        path_prefix: "/".into(),
        pool: "missing".into(),
        ..Default::default()
    });
    let invalid = node.propose(upsert(Some(rev), route)).await;
    assert!(matches!(
        invalid,
        Err(ChangeError::Rejected(Refusal::Invalid(_)))
    ));

    let delete = Command::from(Change::Delete {
        expected_revision: None,
        kind: model::ObjectKind::Pools,
        name: "ghost".into(),
    });
    assert!(matches!(
        node.propose(delete).await,
        Err(ChangeError::Rejected(Refusal::NotFound { .. }))
    ));

    let after = node.current();
    assert_eq!(after.config.revision, rev);
    assert_eq!(after.config.value, before.config.value);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_state_and_does_not_initialize_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start(dir.path(), 1).await;
    assert!(node.bootstrapped_now());
    node.propose(upsert(None, pool("web", 8080)))
        .await
        .expect("committed");
    let rev = node
        .propose(upsert(None, pool("api", 8081)))
        .await
        .expect("committed");
    let set_user = Command::from(Change::SetUser {
        name: "admin".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        role: model::Role::Admin,
        disabled: false,
    });
    assert_eq!(node.propose(set_user).await.expect("committed"), rev);
    let token = Command::from(Change::AddToken {
        id: "ab12".into(),
        name: "ci".into(),
        user: "admin".into(),
        role: model::Role::Admin,
        expires_unix_ms: None,
    });
    node.propose(token).await.expect("committed");
    let before = node.current();
    node.shutdown().await;
    drop(node);

    let node = start(dir.path(), 1).await;
    assert!(!node.bootstrapped_now());
    let after = node.current();
    assert_eq!(after.config.revision, rev);
    assert_eq!(after.config.value, before.config.value);
    assert_eq!(after.auth, before.auth);
    assert_eq!(after.auth.users.len(), 1);

    // The restarted node still leads and takes writes after the old entries.
    let next = node
        .propose(upsert(Some(rev), pool("db", 5432)))
        .await
        .expect("committed");
    assert!(next > rev);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_without_the_secret_is_unauthorized() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, listener) = config(dir.path(), 1).await;
    let addr = cfg.rpc_advertise.clone();
    let node = ClusterNode::start(cfg, listener).await.expect("starts");
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    for path in [
        "/raft/vote",
        "/raft/append",
        "/raft/snapshot",
        "/cluster/join",
    ] {
        let url = format!("http://{addr}{path}");
        let wrong = client
            .post(&url)
            .bearer_auth("wrong")
            .json(&serde_json::json!({}))
            .send()
            .await
            .expect("answers");
        assert_eq!(wrong.status(), 401, "{path} with a wrong secret");
        let missing = client.post(&url).send().await.expect("answers");
        assert_eq!(missing.status(), 401, "{path} without a secret");
    }
    // The right secret gets past authentication (the empty body is then refused).
    let ok = client
        .post(format!("http://{addr}/raft/vote"))
        .bearer_auth(SECRET)
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("answers");
    assert_ne!(ok.status(), 401);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_node_replicates_proposals() {
    let dir1 = tempfile::tempdir().expect("tempdir");
    let dir2 = tempfile::tempdir().expect("tempdir");
    let (cfg1, l1) = config(dir1.path(), 1).await;
    let leader_addr = cfg1.rpc_advertise.clone();
    let n1 = ClusterNode::start(cfg1, l1).await.expect("starts");
    let rev1 = n1
        .propose(upsert(None, pool("web", 8080)))
        .await
        .expect("committed");

    let (cfg2, l2) = config(dir2.path(), 2).await;
    let n2 = ClusterNode::start_for_join(cfg2, l2).await.expect("starts");
    assert!(!n2.bootstrapped_now());
    n2.join(&leader_addr).await.expect("joins");

    let mut rx2 = n2.subscribe();
    wait_for_revision(&mut rx2, rev1).await;
    let rev2 = n1
        .propose(upsert(Some(rev1), pool("api", 8081)))
        .await
        .expect("committed");
    wait_for_revision(&mut rx2, rev2).await;
    assert_eq!(n2.current().config.value, n1.current().config.value);
    assert_eq!(n1.status().members.len(), 2);

    // A write on a follower is forwarded to the leader and is visible on the follower when
    // propose returns.
    let rev3 = n2
        .propose(upsert(Some(rev2), pool("db", 5432)))
        .await
        .expect("forwarded and committed");
    assert!(rev3 > rev2);
    assert_eq!(n2.current().config.revision, rev3);
    assert!(n2
        .current()
        .config
        .value
        .spec
        .get(model::ObjectKind::Pools, "db")
        .is_some());
    // Refusals travel back from the leader unchanged.
    match n2.propose(upsert(Some(rev1), pool("late", 1))).await {
        Err(ChangeError::Rejected(Refusal::StaleRevision { expected, current })) => {
            assert_eq!((expected, current), (rev1, rev3))
        }
        other => panic!("expected a stale revision, got {other:?}"),
    }
    // A second node claiming an id already in the cluster is refused, not silently ignored.
    let dir3 = tempfile::tempdir().expect("tempdir");
    let (cfg3, l3) = config(dir3.path(), 2).await;
    let n3 = ClusterNode::start_for_join(cfg3, l3).await.expect("starts");
    match n3.join(&leader_addr).await {
        Err(ChangeError::Unavailable(e)) => assert!(e.contains("already belongs"), "{e}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    n3.shutdown().await;
    n2.shutdown().await;
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joining_after_compaction_receives_a_snapshot() {
    let dir1 = tempfile::tempdir().expect("tempdir");
    let dir2 = tempfile::tempdir().expect("tempdir");
    let (cfg1, l1) = config(dir1.path(), 1).await;
    let leader_addr = cfg1.rpc_advertise.clone();
    let n1 = ClusterNode::start(cfg1, l1).await.expect("starts");
    let rev = n1
        .propose(upsert(None, pool("web", 8080)))
        .await
        .expect("committed");
    // More entries than the 100 kept after a snapshot, so the first ones get purged.
    for i in 0..110 {
        let cmd = Command::from(Change::SetUser {
            name: format!("user{i}"),
            password_hash: "$argon2id$x".into(),
            role: model::Role::Admin,
            disabled: false,
        });
        n1.propose(cmd).await.expect("committed");
    }
    let snap = n1.trigger_snapshot().await.expect("snapshot built");
    assert!(snap > 100);

    let (cfg2, l2) = config(dir2.path(), 2).await;
    let n2 = ClusterNode::start_for_join(cfg2, l2).await.expect("starts");
    n2.join(&leader_addr).await.expect("joins");
    let mut rx2 = n2.subscribe();
    wait_for_revision(&mut rx2, rev).await;
    tokio::time::timeout(
        Duration::from_secs(10),
        rx2.wait_for(|a| a.auth.users.len() == 110),
    )
    .await
    .expect("auth replicated in time")
    .expect("watch open");
    assert_eq!(n2.current().config.value, n1.current().config.value);
    assert!(
        n2.snapshot_index().is_some(),
        "the follower was brought up by a snapshot"
    );
    n2.shutdown().await;
    n1.shutdown().await;
}

/// A member that was down while the others took a snapshot past its last entry comes back on
/// its address and catches up. (openraft postpones purging entries a lagging member's
/// replication still has in flight, so it often catches up from the log; a node that joins
/// after the purge gets the snapshot, above.) Also: a stopped node's open connections stop
/// serving, so the restarted node on the same port answers, not the stopped one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_down_through_a_snapshot_catches_up() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "openraft=info,cluster_state=debug",
            ))
            .try_init();
    }
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let (cfg1, l1) = config(dirs[0].path(), 1).await;
    let leader_addr = cfg1.rpc_advertise.clone();
    let n1 = ClusterNode::start(cfg1, l1).await.expect("starts");
    let mut followers = Vec::new();
    for (i, dir) in dirs.iter().enumerate().skip(1) {
        let (cfg, l) = config(dir.path(), i as u64 + 1).await;
        let addr = cfg.rpc_advertise.clone();
        let node = ClusterNode::start_for_join(cfg, l).await.expect("starts");
        node.join(&leader_addr).await.expect("joins");
        followers.push((node, addr));
    }
    let (n3, addr3) = followers.pop().expect("node 3");
    let (n2, _) = followers.pop().expect("node 2");
    let rev = n1
        .propose(upsert(None, pool("web", 8080)))
        .await
        .expect("committed");
    let mut rx3 = n3.subscribe();
    wait_for_revision(&mut rx3, rev).await;
    n3.shutdown().await;
    drop((n3, rx3));

    // Well past the 100 entries kept after a snapshot.
    for i in 0..150 {
        let cmd = Command::from(Change::SetUser {
            name: format!("user{i}"),
            password_hash: "$argon2id$x".into(),
            role: model::Role::Admin,
            disabled: false,
        });
        n1.propose(cmd).await.expect("committed by nodes 1 and 2");
    }
    let snap = n1.trigger_snapshot().await.expect("snapshot built");
    assert!(snap > 150);

    let l3 = {
        let mut tries = 0;
        loop {
            match TcpListener::bind(&addr3).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("rebinding {addr3}: {e}"),
            }
        }
    };
    let cfg3 = NodeConfig {
        node_id: 3,
        data_dir: dirs[2].path().to_path_buf(),
        rpc_advertise: addr3,
        cluster_secret: SECRET.to_string(),
        tls: None,
        witness: false,
        storage: cluster_state::StorageKind::default(),
    };
    let n3 = ClusterNode::start(cfg3, l3).await.expect("restarts");
    assert!(!n3.bootstrapped_now());
    let mut rx3 = n3.subscribe();
    tokio::time::timeout(
        Duration::from_secs(15),
        rx3.wait_for(|a| a.auth.users.len() == 150),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "caught up in time: leader {:?}, node 3 {:?}",
            n1.status(),
            n3.status()
        )
    })
    .expect("watch open");
    assert_eq!(n3.current().config.value, n1.current().config.value);
    n3.shutdown().await;
    n2.shutdown().await;
    n1.shutdown().await;
}
