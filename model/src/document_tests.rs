use super::*;

fn pool(name: &str) -> crate::Object {
    crate::Object::Pools(crate::PoolSpec {
        name: name.into(),
        members: vec![crate::MemberSpec {
            address: "127.0.0.1:8080".into(),
            weight: 1,
            state: crate::AdminState::Enabled,
        }],
        health_check: None,
        timeout_ms: 1000,
        ..Default::default()
    })
}

fn route_to(pool: &str) -> crate::Object {
    crate::Object::Routes(crate::RouteSpec {
        name: "r".into(),
        listener: "missing".into(),
        host: None,
        path_prefix: "/".into(),
        pool: pool.into(),
        ..Default::default()
    })
}

fn upsert(expected_revision: Option<u64>, object: crate::Object) -> Proposal {
    Change::Upsert {
        expected_revision,
        object,
    }
    .into()
}

#[test]
fn each_config_change_is_the_next_revision() {
    let mut doc = Document::default();
    let out = doc.apply(7, &upsert(Some(0), pool("p"))).expect("applies");
    assert_eq!(out.revision, 1);
    assert!(out.config.is_some_and(|c| c.pools.len() == 1));
    assert_eq!(doc.revision, 1);
    assert!(doc.spec.get(crate::ObjectKind::Pools, "p").is_some());
}

#[test]
fn stale_revision_changes_nothing() {
    let mut doc = Document::default();
    doc.apply(3, &upsert(None, pool("p"))).expect("applies");
    let before = doc.clone();
    let err = doc
        .apply(4, &upsert(Some(7), pool("q")))
        .expect_err("stale");
    assert_eq!(
        err,
        Refusal::StaleRevision {
            expected: 7,
            current: 1
        }
    );
    // Only the audit log records the refusal.
    assert_eq!(
        (doc.spec.clone(), doc.revision),
        (before.spec, before.revision)
    );
    assert_eq!(doc.history, before.history);
    let last = doc.audit.back().expect("audited");
    assert!(!last.success && last.error.as_deref().is_some_and(|e| e.contains("stale")));
}

#[test]
fn invalid_upsert_changes_nothing() {
    let mut doc = Document::default();
    let err = doc
        .apply(2, &upsert(None, route_to("nope")))
        .expect_err("invalid");
    let Refusal::Invalid(errors) = err else {
        panic!("expected Invalid, got {err:?}");
    };
    assert!(errors.errors.iter().any(|e| e.path == "routes[0].pool"));
    assert_eq!(doc.spec, crate::ConfigSpec::default());
    assert_eq!(
        (doc.revision, doc.history.len(), doc.audit.len()),
        (0, 0, 1)
    );
}

#[test]
fn delete_missing_is_not_found_and_delete_existing_bumps_revision() {
    let mut doc = Document::default();
    let del = |name: &str| {
        Proposal::from(Change::Delete {
            expected_revision: None,
            kind: crate::ObjectKind::Pools,
            name: name.into(),
        })
    };
    assert_eq!(
        doc.apply(1, &del("p")).expect_err("missing"),
        Refusal::NotFound {
            kind: crate::ObjectKind::Pools,
            name: "p".into()
        }
    );
    doc.apply(2, &upsert(None, pool("p"))).expect("applies");
    let out = doc.apply(3, &del("p")).expect("deletes");
    // The refused delete did not use up a revision.
    assert_eq!((out.revision, doc.spec.pools.len()), (2, 0));
}

#[test]
fn auth_commands_keep_the_revision() {
    let mut doc = Document::default();
    doc.apply(2, &upsert(None, pool("p"))).expect("applies");
    let set = Proposal::from(Change::SetUser {
        name: "admin".into(),
        password_hash: "$argon2id$secret".into(),
        role: crate::Role::Admin,
        disabled: false,
    });
    let out = doc.apply(3, &set).expect("applies");
    assert_eq!((out.revision, out.auth_changed), (1, true));
    assert!(out.config.is_none());
    let add = Proposal::from(Change::AddToken {
        id: "ab".into(),
        name: "ci".into(),
        user: "admin".into(),
        role: crate::Role::Admin,
        expires_unix_ms: None,
    });
    doc.apply(4, &add).expect("applies");
    assert_eq!(doc.auth.tokens.len(), 1);
    doc.apply(5, &Proposal::from(Change::RevokeToken { id: "ab".into() }))
        .expect("applies");
    assert!(doc.auth.tokens.is_empty());
    assert_eq!(doc.revision, 1);
    assert_eq!(
        doc.history.len(),
        1,
        "token and user changes are not revisions"
    );
    assert_eq!(doc.audit.len(), 4, "but they are audited");
}

#[test]
fn replace_config_validates_the_whole_spec() {
    let mut doc = Document::default();
    let mut spec = crate::ConfigSpec::default();
    spec.upsert(&route_to("nope"));
    let cmd = Proposal::from(Change::ReplaceConfig {
        expected_revision: Some(0),
        spec,
    });
    assert!(matches!(doc.apply(1, &cmd), Err(Refusal::Invalid(_))));
    let cmd = Proposal::from(Change::ReplaceConfig {
        expected_revision: Some(0),
        spec: crate::ConfigSpec::default(),
    });
    assert_eq!(doc.apply(2, &cmd).expect("applies").revision, 1);
}

#[test]
fn debug_never_shows_password_hashes() {
    let set = Proposal::from(Change::SetUser {
        name: "admin".into(),
        password_hash: "$argon2id$v=19$secret".into(),
        role: crate::Role::Admin,
        disabled: false,
    });
    assert!(!format!("{set:?}").contains("argon2"));
    let mut auth = AuthState::default();
    auth.users.insert(
        "admin".into(),
        UserRecord {
            password_hash: "$argon2id$v=19$secret".into(),
            role: crate::Role::Admin,
            disabled: false,
        },
    );
    assert!(!format!("{auth:?}").contains("argon2"));
}

#[test]
fn apply_error_round_trips_through_json() {
    let err = Refusal::Invalid(crate::ValidationErrors::single("pools[0].name", "bad"));
    let json = serde_json::to_string(&err).expect("serializes");
    let back: Refusal = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(back, err);
}

fn user(name: &str, role: crate::Role) -> Proposal {
    Proposal::from(Change::SetUser {
        name: name.into(),
        password_hash: "$argon2id$x".into(),
        role,
        disabled: false,
    })
}

#[test]
fn history_keeps_who_did_what_and_rollback_is_a_new_revision() {
    let mut doc = Document::default();
    let mut cmd = upsert(None, pool("p"));
    cmd.origin = crate::Origin::new("alice", crate::Interface::Console, Some("192.0.2.7".into()));
    doc.apply(5, &cmd).expect("applies");
    doc.apply(6, &upsert(None, pool("q"))).expect("applies");
    assert_eq!(doc.history.len(), 2);
    let first = &doc.history[0];
    assert_eq!((first.revision, first.origin.user.as_str()), (1, "alice"));
    assert_eq!(first.summary, "save pools/p");
    assert_eq!(first.spec.pools.len(), 1);

    let back = Proposal::from(Change::Rollback {
        expected_revision: Some(2),
        to_revision: 1,
    });
    let out = doc.apply(7, &back).expect("rolls back");
    assert_eq!(out.revision, 3);
    assert_eq!(doc.spec.pools.len(), 1);
    assert_eq!(doc.history[2].summary, "roll back to revision 1");

    let gone = Proposal::from(Change::Rollback {
        expected_revision: None,
        to_revision: 99,
    });
    assert!(matches!(doc.apply(8, &gone), Err(Refusal::NotAllowed(_))));
    assert_eq!(doc.revision, 3);
}

#[test]
fn history_is_bounded() {
    let mut doc = Document::default();
    for i in 0..(HISTORY_KEEP as u64 + 5) {
        doc.apply(i + 1, &upsert(None, pool("p"))).expect("applies");
    }
    assert_eq!(doc.history.len(), HISTORY_KEEP);
    assert_eq!(doc.history[0].revision, 6);
}

#[test]
fn the_last_admin_cannot_be_removed_demoted_or_disabled() {
    let mut doc = Document::default();
    doc.apply(1, &user("root", crate::Role::Admin))
        .expect("applies");
    let del = Proposal::from(Change::DeleteUser {
        name: "root".into(),
    });
    assert!(matches!(doc.apply(2, &del), Err(Refusal::NotAllowed(_))));
    let demote = Proposal::from(Change::UpdateUser {
        name: "root".into(),
        password_hash: None,
        role: Some(crate::Role::Viewer),
        disabled: None,
    });
    assert!(matches!(doc.apply(3, &demote), Err(Refusal::NotAllowed(_))));
    doc.apply(4, &user("second", crate::Role::Admin))
        .expect("applies");
    doc.apply(5, &demote).expect("another admin exists now");
    assert_eq!(doc.auth.users["root"].role, crate::Role::Viewer);
    let add = Proposal::from(Change::AddToken {
        id: "t".into(),
        name: "ci".into(),
        user: "root".into(),
        role: crate::Role::Viewer,
        expires_unix_ms: None,
    });
    doc.apply(6, &add).expect("applies");
    doc.apply(7, &del).expect("deletes");
    assert!(doc.auth.tokens.is_empty(), "a deleted user's tokens go too");
}

#[test]
fn audit_entries_age_out_by_the_time_in_the_log() {
    let mut doc = Document::default();
    let day = 86_400_000;
    let at = |ms: u64, i: u64, doc: &mut Document| {
        let mut c = Proposal::from(Change::Audit {
            action: "login".into(),
            detail: "admin".into(),
            success: true,
        });
        c.origin.at_unix_ms = ms;
        doc.apply(i, &c).expect("applies");
    };
    at(day, 1, &mut doc);
    at(50 * day, 2, &mut doc);
    assert_eq!(doc.audit.len(), 2);
    at(100 * day, 3, &mut doc);
    // 90 days by default: the first entry is older than that now.
    assert_eq!(
        doc.audit.iter().map(|e| e.index).collect::<Vec<_>>(),
        vec![2, 3]
    );
}

#[test]
fn users_stored_before_roles_existed_are_admins() {
    let old = r#"{"users":{"admin":"$argon2id$x"},"tokens":{"ab":{"name":"ci","user":"admin"}}}"#;
    let auth: AuthState = serde_json::from_str(old).expect("reads");
    assert_eq!(auth.users["admin"].role, crate::Role::Admin);
    assert_eq!(auth.tokens["ab"].role, crate::Role::Admin);
    let back: AuthState =
        serde_json::from_str(&serde_json::to_string(&auth).expect("json")).expect("reads");
    assert_eq!(back, auth);
}

fn ticket_key(id: &str, at: u64) -> Proposal {
    Change::RotateTicketKey {
        record: crate::records::TicketKeyRecord {
            id: id.into(),
            created_unix_ms: at,
            key: crate::records::SealedKey {
                nonce: "n".into(),
                ciphertext: "c".into(),
            },
        },
    }
    .into()
}

#[test]
fn ticket_keys_are_kept_newest_first_and_bounded() {
    let mut doc = Document::default();
    for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
        let out = doc
            .apply(i as u64 + 1, &ticket_key(id, i as u64))
            .expect("applies");
        assert!(out.ticket_keys_changed);
        assert!(out.config.is_none(), "not a config revision");
    }
    let ids: Vec<&str> = doc.ticket_keys.iter().map(|k| k.id.as_str()).collect();
    assert_eq!(ids, ["d", "c", "b"], "three kept, the oldest dropped");
    assert_eq!(doc.revision, 0);
    // A repeated id (a retried proposal) is refused and changes nothing.
    let before = doc.ticket_keys.clone();
    let err = doc.apply(9, &ticket_key("c", 9)).expect_err("duplicate");
    assert!(matches!(err, Refusal::NotAllowed(_)), "{err}");
    assert_eq!(doc.ticket_keys, before);
    // Audited without the key.
    let last = doc.audit.back().expect("audited");
    assert!(
        last.action.contains("session-ticket key"),
        "{}",
        last.action
    );
    assert!(!last.action.contains("ciphertext"));
}

fn zone_with_secondary(key: &str) -> crate::Object {
    crate::Object::Zones(crate::ZoneSpec {
        name: "example.test".into(),
        soa: crate::SoaSpec {
            mname: "ns1.example.test".into(),
            rname: "hostmaster.example.test".into(),
            refresh: 3600,
            retry: 600,
            expire: 86400,
            minimum: 60,
            ttl: 300,
        },
        ns: vec!["ns1.example.test".into()],
        records: Vec::new(),
        secondaries: vec![crate::SecondarySpec {
            address: "192.0.2.53".into(),
            tsig_key: key.into(),
            notify: true,
        }],
    })
}

fn tsig_key(name: &str) -> Proposal {
    Change::PutTsigKey {
        record: crate::records::TsigKeyRecord {
            name: name.into(),
            algorithm: crate::records::TsigAlgorithm::HmacSha256,
            secret: crate::records::SealedKey {
                nonce: "n".into(),
                ciphertext: "c".into(),
            },
            created_unix_ms: 1,
        },
    }
    .into()
}

#[test]
fn secondaries_need_a_stored_tsig_key_which_then_cannot_be_deleted() {
    let mut doc = Document::default();
    let err = doc
        .apply(1, &upsert(None, zone_with_secondary("Xfr.Example.Test")))
        .expect_err("no such key yet");
    let Refusal::Invalid(errors) = err else {
        panic!("expected a validation error, got {err:?}");
    };
    assert_eq!(errors.errors[0].path, "zones[0].secondaries[0].tsig_key");
    assert_eq!(doc.revision, 0);

    let out = doc
        .apply(2, &tsig_key("xfr.example.test."))
        .expect("key stored");
    assert!(out.tsig_keys_changed && out.config.is_none());
    assert_eq!(out.revision, 0, "a key is not a config revision");
    doc.apply(3, &upsert(None, zone_with_secondary("Xfr.Example.Test")))
        .expect("the key exists now");

    let delete: Proposal = Change::DeleteTsigKey {
        name: "xfr.example.test.".into(),
    }
    .into();
    let err = doc.apply(4, &delete).expect_err("in use");
    assert!(err.to_string().contains("example.test"), "{err}");
    assert!(doc.tsig_keys.contains_key("xfr.example.test."));

    doc.apply(
        5,
        &Change::Delete {
            expected_revision: None,
            kind: crate::ObjectKind::Zones,
            name: "example.test".into(),
        }
        .into(),
    )
    .expect("zone deleted");
    let out = doc.apply(6, &delete).expect("unused now");
    assert!(out.tsig_keys_changed);
    assert!(doc.tsig_keys.is_empty());
    assert!(doc.apply(7, &delete).is_err(), "gone already");
}

/// A log written under the old rules applies identically after a rule is tightened: entries
/// are applied by the schema in force (recorded in the log by `SetSchema`), not by the newest
/// rules this release knows.
#[test]
fn entries_apply_by_the_schema_in_force() {
    let spec = crate::parse::from_toml(
        r#"api_version = "meridian/v1"
[[zones]]
name = "example.org"
soa = { mname = "ns1", rname = "hostmaster" }
records = [
  { name = "www", type = "A", value = "192.0.2.1" },
  { name = "www", type = "A", value = "192.0.2.1" },
]
"#,
    )
    .expect("parses");
    let replace = |spec: &crate::ConfigSpec| -> Proposal {
        Change::ReplaceConfig {
            expected_revision: None,
            spec: spec.clone(),
        }
        .into()
    };
    // A document from before the schema was recorded is at version 1: the duplicate, allowed
    // then, still applies.
    let mut doc = Document::default();
    assert_eq!(doc.schema(), 1);
    doc.apply(2, &replace(&spec)).expect("schema 1 applies it");
    assert_eq!(doc.revision, 1);
    // Replaying the same log on a fresh node gives the same document.
    let mut replay = Document::default();
    replay.apply(2, &replace(&spec)).expect("applies");
    assert_eq!(replay.spec, doc.spec);

    // The config in force breaks schema 2: not raised (every node refuses alike), so no node
    // is left with a config it cannot load.
    let raise: Proposal = Change::SetSchema { version: 2 }.into();
    match doc.apply(3, &raise) {
        Err(Refusal::NotAllowed(why)) => assert!(why.contains("zones[0].records[1]"), "{why}"),
        other => panic!("refused while the config breaks the rules: {other:?}"),
    }
    assert_eq!(doc.schema(), 1);
    let mut fixed = spec.clone();
    fixed.zones[0].records.pop();
    doc.apply(4, &replace(&fixed)).expect("fixed");
    doc.apply(5, &raise).expect("raised");
    assert_eq!(doc.schema(), 2);
    assert!(doc.config().is_ok());
    match doc.apply(6, &replace(&spec)) {
        Err(Refusal::Invalid(e)) => {
            assert_eq!(e.errors[0].path, "zones[0].records[1]", "{e:?}")
        }
        other => panic!("schema 2 refuses the duplicate: {other:?}"),
    }
    assert_eq!(doc.revision, 2, "nothing applied");
    assert!(matches!(doc.apply(7, &raise), Err(Refusal::NotAllowed(_))));
}

#[test]
fn next_spec_is_what_apply_commits_and_only_for_config_changes() {
    let mut doc = Document::default();
    doc.apply(1, &upsert(None, pool("p"))).expect("applies");
    let change = upsert(Some(1), pool("q")).change;
    let next = next_spec(&doc.spec, doc.revision, &doc.history, &change)
        .expect("precondition holds")
        .expect("a config change");
    doc.apply(2, &change.clone().into()).expect("applies");
    assert_eq!(next, doc.spec);
    // Rolling back finds the kept revision; one the history never had is refused.
    let back = Change::Rollback {
        expected_revision: None,
        to_revision: 1,
    };
    let spec = next_spec(&doc.spec, doc.revision, &doc.history, &back)
        .expect("kept")
        .expect("a config change");
    assert!(spec.get(crate::ObjectKind::Pools, "q").is_none());
    let gone = Change::Rollback {
        expected_revision: None,
        to_revision: 99,
    };
    assert!(matches!(
        next_spec(&doc.spec, doc.revision, &doc.history, &gone),
        Err(Refusal::NotAllowed(_))
    ));
    let user = Change::DeleteUser { name: "x".into() };
    assert_eq!(
        next_spec(&doc.spec, doc.revision, &doc.history, &user),
        Ok(None)
    );
}

#[test]
fn validate_stored_lists_spec_errors_beside_missing_certificates() {
    let spec: crate::ConfigSpec = crate::parse::from_toml(
        r#"
        api_version = "meridian/v1"

        [[listeners]]
        name = "web"
        bind = "127.0.0.1:8443"
        tls = { certificates = ["absent"] }

        [[routes]]
        name = "r"
        listener = "web"
        path_prefix = "/"
        pool = "nowhere"
        "#,
    )
    .expect("parses");
    let errors = validate_stored(&spec, crate::SCHEMA_SUPPORTED, &BTreeMap::new(), |_| false)
        .expect_err("invalid");
    let paths: Vec<&str> = errors.errors.iter().map(|e| e.path.as_str()).collect();
    assert!(
        paths.iter().any(|p| p.starts_with("routes[0]")),
        "{paths:?}"
    );
    assert!(
        paths.iter().any(|p| p.starts_with("listeners[0].tls")),
        "{paths:?}"
    );
}
