//! What the router tests share: an in-memory `Backend` that applies changes the way the
//! replicated state machine does (revisions, If-Match, history, users and tokens) and records
//! every proposal in an audit log.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use model::records::{
    AuditEntry, AuthState, CertificateRecord, RevisionRecord, TokenInfo, UserRecord,
};
use model::{Config, HealthView, Origin, Revisioned};
use webui::{Backend, BoxFuture, Change, ChangeError, ListenerView, RaftView};

/// The password of every test user.
pub const PASSWORD: &str = "correct horse battery";

#[derive(Default)]
pub struct State {
    pub spec: model::ConfigSpec,
    pub revision: u64,
    pub config: Option<Arc<Revisioned<Config>>>,
    pub auth: Arc<AuthState>,
    pub history: Vec<Arc<RevisionRecord>>,
    pub audit: Vec<Arc<AuditEntry>>,
    pub proposed: Vec<(Change, Origin)>,
    /// The next proposal fails like this, without being applied.
    pub fail_next: Option<ChangeError>,
    pub certificates: BTreeMap<String, Arc<CertificateRecord>>,
    pub tsig_keys: BTreeMap<String, Arc<model::records::TsigKeyRecord>>,
    pub join_tokens: BTreeMap<String, model::records::JoinTokenRecord>,
}

pub struct Memory(pub Mutex<State>);

pub struct NoHealth;

impl HealthView for NoHealth {
    fn is_healthy(&self, _: &str) -> Option<bool> {
        None
    }
}

impl Memory {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().expect("lock")
    }

    pub fn apply(&self, change: &Change, origin: &Origin) -> Result<u64, ChangeError> {
        let mut s = self.lock();
        if let Some(e) = s.fail_next.take() {
            return Err(e);
        }
        let check = |expected: &Option<u64>, current: u64| match expected {
            Some(e) if *e != current => Err(ChangeError::Stale {
                expected: *e,
                current,
            }),
            _ => Ok(()),
        };
        let mut spec = s.spec.clone();
        match change {
            Change::ReplaceConfig {
                expected_revision,
                spec: new,
            } => {
                check(expected_revision, s.revision)?;
                spec = new.clone();
            }
            Change::Upsert {
                expected_revision,
                object,
            } => {
                check(expected_revision, s.revision)?;
                spec.upsert(object);
            }
            Change::Delete {
                expected_revision,
                kind,
                name,
            } => {
                check(expected_revision, s.revision)?;
                if !spec.delete(*kind, name) {
                    return Err(ChangeError::NotFound {
                        kind: *kind,
                        name: name.clone(),
                    });
                }
            }
            Change::Rollback {
                expected_revision,
                to_revision,
            } => {
                check(expected_revision, s.revision)?;
                let r = s
                    .history
                    .iter()
                    .find(|r| r.revision == *to_revision)
                    .ok_or_else(|| ChangeError::Refused("not kept".into()))?;
                spec = model::ConfigSpec::clone(&r.spec);
            }
            Change::AddToken {
                id,
                name,
                user,
                role,
                expires_unix_ms,
            } => {
                let mut auth = AuthState::clone(&s.auth);
                auth.tokens.insert(
                    id.clone(),
                    TokenInfo {
                        name: name.clone(),
                        user: user.clone(),
                        role: *role,
                        created_unix_ms: origin.at_unix_ms,
                        expires_unix_ms: *expires_unix_ms,
                    },
                );
                s.auth = Arc::new(auth);
                return Ok(s.revision);
            }
            Change::RevokeToken { id } => {
                let mut auth = AuthState::clone(&s.auth);
                auth.tokens.remove(id);
                s.auth = Arc::new(auth);
                return Ok(s.revision);
            }
            Change::Audit { .. }
            | Change::RotateTicketKey { .. }
            | Change::PurgeCache { .. }
            | Change::SetClusterCa { .. }
            | Change::Restore { .. }
            | Change::SetSchema { .. }
            | Change::UseJoinToken { .. } => return Ok(s.revision),
            Change::AddJoinToken { record } => {
                s.join_tokens.insert(record.id.clone(), record.clone());
                return Ok(s.revision);
            }
            Change::PutTsigKey { record } => {
                s.tsig_keys
                    .insert(record.name.clone(), Arc::new(record.clone()));
                return Ok(s.revision);
            }
            Change::DeleteTsigKey { name } => {
                let used = s.spec.zones.iter().any(|z| {
                    z.secondaries.iter().any(|sec| {
                        model::validate::tsig_key_name(&sec.tsig_key).as_deref() == Some(name)
                    })
                });
                if used {
                    return Err(ChangeError::Refused(format!("{name} is in use")));
                }
                s.tsig_keys.remove(name);
                return Ok(s.revision);
            }
            Change::PutCertificate { record } => {
                s.certificates
                    .insert(record.name.clone(), Arc::new(record.clone()));
                return Ok(s.revision);
            }
            Change::RevokeCertificate { name, reason } => {
                let used = s.spec.listeners.iter().any(|l| {
                    l.tls
                        .as_ref()
                        .is_some_and(|t| t.certificates.iter().any(|c| c == name))
                });
                if used {
                    return Err(ChangeError::Refused(format!("{name} is in use")));
                }
                let Some(old) = s.certificates.get(name) else {
                    return Err(ChangeError::Refused("no such certificate".into()));
                };
                let mut record = CertificateRecord::clone(old);
                record.revoked = Some(model::records::Revocation {
                    reason: reason.clone(),
                    at_unix_ms: origin.at_unix_ms,
                    by: origin.user.clone(),
                });
                s.certificates.insert(name.clone(), Arc::new(record));
                return Ok(s.revision);
            }
            Change::DeleteCertificate { name } => {
                let used = s.spec.listeners.iter().any(|l| {
                    l.tls
                        .as_ref()
                        .is_some_and(|t| t.certificates.iter().any(|c| c == name))
                });
                if used || s.certificates.remove(name).is_none() {
                    return Err(ChangeError::Refused(format!("{name} is in use or missing")));
                }
                return Ok(s.revision);
            }
            Change::SetUser {
                name,
                password_hash,
                role,
                disabled,
            } => {
                let mut auth = AuthState::clone(&s.auth);
                auth.users.insert(
                    name.clone(),
                    UserRecord {
                        password_hash: password_hash.clone(),
                        role: *role,
                        disabled: *disabled,
                    },
                );
                s.auth = Arc::new(auth);
                return Ok(s.revision);
            }
            Change::UpdateUser { .. } | Change::DeleteUser { .. } => return Ok(s.revision),
        }
        let config = model::validate(&spec).map_err(ChangeError::Invalid)?;
        s.revision += 1;
        let rev = s.revision;
        s.spec = spec.clone();
        s.config = Some(Arc::new(Revisioned {
            revision: rev,
            value: config,
        }));
        s.history.push(Arc::new(RevisionRecord {
            revision: rev,
            origin: origin.clone(),
            summary: change.summary(),
            spec: Arc::new(spec),
        }));
        Ok(rev)
    }
}

impl Backend for Memory {
    // The real zone-file parser (the DNS plane's); the answers themselves are the DNS plane's
    // to give, so explain here says only what it was asked.
    fn import_zone(&self, origin: &str, text: &str) -> Result<model::ZoneSpec, Vec<String>> {
        gslb_dns::import_zone(origin, text)
    }
    fn dns_explain(&self, query: &webui::DnsExplainQuery) -> Result<webui::DnsExplanation, String> {
        Ok(webui::DnsExplanation {
            name: query.name.clone(),
            qtype: query.qtype.clone().unwrap_or_else(|| "A".into()),
            client: query.ecs.clone(),
            rcode: "NOERROR".into(),
            ..Default::default()
        })
    }
    fn config(&self) -> Arc<Revisioned<Config>> {
        self.lock().config.clone().expect("seeded")
    }
    fn auth(&self) -> Arc<AuthState> {
        self.lock().auth.clone()
    }
    fn history(&self) -> Arc<Vec<Arc<RevisionRecord>>> {
        Arc::new(self.lock().history.clone())
    }
    fn certificates(&self) -> Arc<BTreeMap<String, Arc<CertificateRecord>>> {
        Arc::new(self.lock().certificates.clone())
    }
    fn tsig_keys(&self) -> Arc<BTreeMap<String, Arc<model::records::TsigKeyRecord>>> {
        Arc::new(self.lock().tsig_keys.clone())
    }
    fn cluster_ca_fingerprint(&self) -> Option<String> {
        Some("ab".repeat(32))
    }
    fn join_tokens(&self) -> Arc<BTreeMap<String, model::records::JoinTokenRecord>> {
        Arc::new(self.lock().join_tokens.clone())
    }
    fn cluster_key(&self) -> Arc<credentials::ClusterKey> {
        Arc::new(credentials::ClusterKey::derive("router tests"))
    }
    fn audit(&self) -> Arc<Vec<Arc<AuditEntry>>> {
        Arc::new(self.lock().audit.clone())
    }
    fn propose(&self, change: Change, origin: Origin) -> BoxFuture<'_, Result<u64, ChangeError>> {
        let result = self.apply(&change, &origin);
        {
            let mut s = self.lock();
            let index = s.audit.len() as u64 + 1;
            s.audit.push(Arc::new(AuditEntry {
                index,
                origin: origin.clone(),
                action: change.summary(),
                success: result.is_ok(),
                error: result.as_ref().err().map(|e| e.to_string()),
                revision: None,
            }));
            s.proposed.push((change, origin));
        }
        Box::pin(async move { result })
    }
    fn raft(&self) -> RaftView {
        RaftView {
            node_id: 1,
            state: "Leader".into(),
            leader: Some(1),
            members: vec![(1, "127.0.0.1:9700".into()), (2, "127.0.0.1:9701".into())],
            voters: vec![1, 2],
            ..RaftView::default()
        }
    }
    fn remove_member(&self, _node_id: u64) -> BoxFuture<'_, Result<(), ChangeError>> {
        Box::pin(async { Ok(()) })
    }
    fn health(&self) -> Arc<dyn HealthView> {
        Arc::new(NoHealth)
    }
    fn listeners(&self) -> Vec<ListenerView> {
        Vec::new()
    }
    fn alarms(&self) -> Vec<String> {
        vec!["DNS: revision 9 failed to compile".into()]
    }
}

/// One argon2 hash for every test user ("correct horse battery"), computed once: hashing is slow
/// in debug builds.
pub fn hash() -> String {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| webui::auth::hash_password(PASSWORD).expect("hash"))
        .clone()
}
