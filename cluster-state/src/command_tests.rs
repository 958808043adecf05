use super::*;

fn pool(name: &str) -> model::Object {
    model::Object::Pools(model::PoolSpec {
        name: name.into(),
        members: vec![model::MemberSpec {
            address: "127.0.0.1:8080".into(),
            weight: 1,
        }],
        health_check: None,
        timeout_ms: 1000,
        ..Default::default()
    })
}

fn route_to(pool: &str) -> model::Object {
    model::Object::Routes(model::RouteSpec {
        name: "r".into(),
        listener: "missing".into(),
        host: None,
        path_prefix: "/".into(),
        pool: pool.into(),
        ..Default::default()
    })
}

fn upsert(expected_revision: Option<u64>, object: model::Object) -> Command {
    Command::Upsert {
        expected_revision,
        object,
    }
}

#[test]
fn upsert_sets_revision_to_log_index() {
    let mut doc = Document::default();
    let out = doc.apply(7, &upsert(Some(0), pool("p"))).expect("applies");
    assert_eq!(out.revision, 7);
    assert!(out.config.is_some_and(|c| c.pools.len() == 1));
    assert_eq!(doc.revision, 7);
    assert!(doc.spec.get(model::ObjectKind::Pools, "p").is_some());
}

#[test]
fn stale_revision_changes_nothing() {
    let mut doc = Document::default();
    doc.apply(3, &upsert(None, pool("p"))).expect("applies");
    let before = doc.clone();
    let err = doc
        .apply(4, &upsert(Some(1), pool("q")))
        .expect_err("stale");
    assert_eq!(
        err,
        ApplyError::StaleRevision {
            expected: 1,
            current: 3
        }
    );
    assert_eq!(doc, before);
}

#[test]
fn invalid_upsert_changes_nothing() {
    let mut doc = Document::default();
    let err = doc
        .apply(2, &upsert(None, route_to("nope")))
        .expect_err("invalid");
    let ApplyError::Invalid(errors) = err else {
        panic!("expected Invalid, got {err:?}");
    };
    assert!(errors.errors.iter().any(|e| e.path == "routes[0].pool"));
    assert_eq!(doc, Document::default());
}

#[test]
fn delete_missing_is_not_found_and_delete_existing_bumps_revision() {
    let mut doc = Document::default();
    let del = |name: &str| Command::Delete {
        expected_revision: None,
        kind: model::ObjectKind::Pools,
        name: name.into(),
    };
    assert_eq!(
        doc.apply(1, &del("p")).expect_err("missing"),
        ApplyError::NotFound {
            kind: model::ObjectKind::Pools,
            name: "p".into()
        }
    );
    doc.apply(2, &upsert(None, pool("p"))).expect("applies");
    let out = doc.apply(3, &del("p")).expect("deletes");
    assert_eq!((out.revision, doc.spec.pools.len()), (3, 0));
}

#[test]
fn auth_commands_keep_the_revision() {
    let mut doc = Document::default();
    doc.apply(2, &upsert(None, pool("p"))).expect("applies");
    let set = Command::SetUser {
        name: "admin".into(),
        password_hash: "$argon2id$secret".into(),
    };
    let out = doc.apply(3, &set).expect("applies");
    assert_eq!((out.revision, out.auth_changed), (2, true));
    assert!(out.config.is_none());
    let add = Command::AddToken {
        id: "ab".into(),
        name: "ci".into(),
        user: "admin".into(),
    };
    doc.apply(4, &add).expect("applies");
    assert_eq!(doc.auth.tokens.len(), 1);
    doc.apply(5, &Command::RevokeToken { id: "ab".into() })
        .expect("applies");
    assert!(doc.auth.tokens.is_empty());
    assert_eq!(doc.revision, 2);
}

#[test]
fn replace_config_validates_the_whole_spec() {
    let mut doc = Document::default();
    let mut spec = model::ConfigSpec::default();
    spec.upsert(&route_to("nope"));
    let cmd = Command::ReplaceConfig {
        expected_revision: Some(0),
        spec,
    };
    assert!(matches!(doc.apply(1, &cmd), Err(ApplyError::Invalid(_))));
    let cmd = Command::ReplaceConfig {
        expected_revision: Some(0),
        spec: model::ConfigSpec::default(),
    };
    assert_eq!(doc.apply(2, &cmd).expect("applies").revision, 2);
}

#[test]
fn debug_never_shows_password_hashes() {
    let set = Command::SetUser {
        name: "admin".into(),
        password_hash: "$argon2id$v=19$secret".into(),
    };
    assert!(!format!("{set:?}").contains("argon2"));
    let mut auth = AuthState::default();
    auth.users
        .insert("admin".into(), "$argon2id$v=19$secret".into());
    assert!(!format!("{auth:?}").contains("argon2"));
}

#[test]
fn apply_error_round_trips_through_json() {
    let err = ApplyError::Invalid(model::ValidationErrors::single("pools[0].name", "bad"));
    let json = serde_json::to_string(&err).expect("serializes");
    let back: ApplyError = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(back, err);
}
