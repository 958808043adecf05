use openraft::{CommittedLeaderId, Entry as RaftEntry, Membership};

use super::*;
use crate::command::Command;
use crate::types::Node;
use model::Change;

fn log_id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn entry(index: u64, payload: EntryPayload<TypeConfig>) -> Entry {
    RaftEntry {
        log_id: log_id(index),
        payload,
    }
}

fn pool(name: &str) -> Command {
    Command::from(Change::Upsert {
        expected_revision: None,
        object: model::Object::Pools(model::PoolSpec {
            name: name.into(),
            members: vec![],
            health_check: None,
            timeout_ms: 1000,
            ..Default::default()
        }),
    })
}

/// Opens the store in `dir`. A store just dropped may still hold sled's file lock for a
/// moment (its flusher thread ends on its own), so a reopen waits for it, up to 5 s.
fn open(dir: &std::path::Path) -> (StateMachine, watch::Receiver<Applied>) {
    let mut tries = 0;
    let store = loop {
        match Store::open_sled(dir) {
            Ok(store) => break store,
            Err(e) if tries < 50 && format!("{e:?}").contains("could not acquire lock") => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => panic!("opens: {e:?}"),
        }
    };
    StateMachine::open(store).expect("loads")
}

/// Membership at 1, a pool at 2, a user at 3, a refused delete at 4.
async fn populate(sm: &mut StateMachine) -> Vec<Response> {
    let members = Membership::new(
        vec![[1u64].into()],
        std::collections::BTreeMap::from([(
            1u64,
            Node {
                addr: "n1:1".into(),
            },
        )]),
    );
    let entries = vec![
        entry(1, EntryPayload::Membership(members)),
        entry(2, EntryPayload::Normal(pool("web"))),
        entry(
            3,
            EntryPayload::Normal(Command::from(Change::SetUser {
                name: "admin".into(),
                password_hash: "$argon2id$x".into(),
                role: model::Role::Admin,
                disabled: false,
            })),
        ),
        entry(
            4,
            EntryPayload::Normal(Command::from(Change::Delete {
                expected_revision: None,
                kind: model::ObjectKind::Pools,
                name: "ghost".into(),
            })),
        ),
    ];
    sm.apply(entries).await.expect("applies")
}

#[tokio::test]
async fn apply_publishes_and_persists() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut sm, rx) = open(dir.path());
        let responses = populate(&mut sm).await;
        let results: Vec<_> = responses.into_iter().map(|r| r.result).collect();
        assert_eq!(results[..3], [Ok(0), Ok(1), Ok(1)]);
        assert!(matches!(results[3], Err(model::Refusal::NotFound { .. })));
        let published = rx.borrow().clone();
        assert_eq!(published.config.revision, 1);
        assert_eq!(published.auth.users.len(), 1);
        assert_eq!(published.history.len(), 1);
        // Applied, applied, refused: all three commands are audited.
        assert_eq!(published.audit.len(), 3);
        assert!(!published.audit[2].success);
    }
    // Reopening the same directory restores everything, including the applied log id.
    let (mut sm, rx) = open(dir.path());
    let (applied, membership) = sm.applied_state().await.expect("reads");
    assert_eq!(applied, Some(log_id(4)));
    assert_eq!(membership.log_id(), &Some(log_id(1)));
    assert_eq!(rx.borrow().config.revision, 1);
    assert_eq!(rx.borrow().audit.len(), 3);
    assert_eq!(rx.borrow().config.value.pools.len(), 1);
    assert_eq!(rx.borrow().auth.users.len(), 1);
}

#[tokio::test]
async fn snapshot_round_trips_into_a_fresh_node() {
    let src_dir = tempfile::tempdir().expect("tempdir");
    let dst_dir = tempfile::tempdir().expect("tempdir");
    let (mut src, src_rx) = open(src_dir.path());
    populate(&mut src).await;
    let snapshot = src
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("builds");
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(4)));
    let current = src.get_current_snapshot().await.expect("reads");
    assert_eq!(current.map(|s| s.meta), Some(snapshot.meta.clone()));

    {
        let (mut dst, dst_rx) = open(dst_dir.path());
        dst.install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .expect("installs");
        assert_eq!(dst_rx.borrow().config.value, src_rx.borrow().config.value);
        assert_eq!(dst_rx.borrow().config.revision, 1);
        assert_eq!(dst_rx.borrow().history, src_rx.borrow().history);
        assert_eq!(dst_rx.borrow().audit, src_rx.borrow().audit);
        assert_eq!(dst_rx.borrow().auth, src_rx.borrow().auth);
        let (applied, _) = dst.applied_state().await.expect("reads");
        assert_eq!(applied, Some(log_id(4)));
    }
    // The installed snapshot and state survive a reopen.
    let (mut dst, dst_rx) = open(dst_dir.path());
    assert_eq!(dst_rx.borrow().config.revision, 1);
    let kept = dst.get_current_snapshot().await.expect("reads");
    assert_eq!(
        kept.map(|s| s.meta.snapshot_id),
        Some(snapshot.meta.snapshot_id)
    );
}

#[tokio::test]
async fn corrupt_state_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sled(dir.path()).expect("opens");
    store
        .put_raw_many(vec![(STATE, b"{not json".to_vec())])
        .expect("writes");
    assert!(matches!(
        StateMachine::open(store),
        Err(LoadError::Store(StoreError::Corrupt { .. }))
    ));
}

/// The history and the audit log are stored a record per key: a reopen sees exactly what was
/// applied, records out of retention are deleted from disk, and a store written by an earlier
/// release (everything inline) loads and is split on its next write.
#[tokio::test]
async fn history_and_audit_are_stored_per_record_and_pruned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let total = crate::command::HISTORY_KEEP as u64 + 20;
    let (history, audit) = {
        let (mut sm, _rx) = open(dir.path());
        populate(&mut sm).await;
        for i in 0..total {
            sm.apply(vec![entry(
                5 + i,
                EntryPayload::Normal(pool(&format!("p{i}"))),
            )])
            .await
            .expect("applies");
        }
        assert_eq!(sm.state.doc.history.len(), crate::command::HISTORY_KEEP);
        let on_disk: Vec<Arc<model::records::RevisionRecord>> =
            sm.store.prefix_json(HISTORY_PREFIX).expect("history keys");
        assert_eq!(
            on_disk.len(),
            crate::command::HISTORY_KEEP,
            "pruned records are deleted"
        );
        (sm.state.doc.history.clone(), sm.state.doc.audit.clone())
    };
    let (sm, rx) = open(dir.path());
    assert_eq!(sm.state.doc.history, history);
    assert_eq!(sm.state.doc.audit, audit);
    assert_eq!(rx.borrow().history.len(), crate::command::HISTORY_KEEP);
    // What `state_machine` holds is small: no spec of the history in it.
    let core = sm.store.get_raw(STATE).expect("get").expect("core");
    let core: serde_json::Value = serde_json::from_slice(&core).expect("json");
    assert_eq!(core["doc"]["history"].as_array().map(Vec::len), Some(0));
    assert_eq!(core["split"], true);
    drop((sm, rx));

    // An earlier release's store: the whole document inline.
    let legacy_dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut sm, _rx) = open(legacy_dir.path());
        populate(&mut sm).await;
        let mut inline = sm.state.clone();
        inline.split = false;
        sm.store.put_json(STATE, &inline).expect("legacy write");
        for prefix in [HISTORY_PREFIX, AUDIT_PREFIX] {
            sm.store.remove_prefix_below(prefix, None).expect("no keys");
        }
        sm.store.flush().await.expect("flush");
    }
    let (mut sm, _rx) = open(legacy_dir.path());
    assert_eq!(sm.state.doc.history.len(), 1, "the inline history loads");
    sm.apply(vec![entry(5, EntryPayload::Normal(pool("after")))])
        .await
        .expect("applies");
    let history = sm.state.doc.history.clone();
    drop((sm, _rx));
    let (sm, _rx) = open(legacy_dir.path());
    assert_eq!(sm.state.doc.history, history, "split on the next write");
    assert_eq!(sm.state.doc.history.len(), 2);
}

/// A node whose release does not know the schema an entry raises to stops instead of applying
/// it (and everything after) by rules it lacks.
#[tokio::test]
async fn an_unknown_schema_stops_the_node_instead_of_diverging() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut sm, _rx) = open(dir.path());
    populate(&mut sm).await;
    let before = sm.state.doc.clone();
    let future = Command::from(Change::SetSchema {
        version: model::SCHEMA_SUPPORTED + 1,
    });
    let result = sm
        .apply(vec![
            entry(5, EntryPayload::Normal(future)),
            entry(6, EntryPayload::Normal(pool("after"))),
        ])
        .await;
    let e = result.expect_err("a fatal storage error");
    assert!(e.to_string().contains("upgrade this node"), "{e}");
    assert_eq!(sm.state.doc.spec, before.spec, "nothing applied");
    assert_eq!(sm.state.doc.schema(), before.schema());
}
