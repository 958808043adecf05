//! What the router tests share: an in-memory `Backend` that applies changes with the replicated
//! state machine's own function (`model::Document::apply`: revisions, If-Match, history, users,
//! tokens, the audit log) and records every proposal.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use model::records::{AuditEntry, AuthState, CertificateRecord, RevisionRecord};
use model::{Config, HealthView, Origin, Proposal, Revisioned};
use webui::{Backend, BoxFuture, Change, ChangeError, ListenerView, RaftView};

/// The password of every test user.
pub const PASSWORD: &str = "correct horse battery";

#[derive(Default)]
pub struct State {
    /// The replicated document, changed by the cluster's own apply function.
    pub doc: model::Document,
    /// Every proposal through the `Backend`, applied or refused (not the fixtures' seeding).
    pub proposed: Vec<(Change, Origin)>,
    /// The next proposal fails like this, without being applied.
    pub fail_next: Option<ChangeError>,
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

    /// Applies `change` as the state machine does (each proposal is the next log entry).
    pub fn apply(&self, change: &Change, origin: &Origin) -> Result<u64, ChangeError> {
        let mut s = self.lock();
        if let Some(e) = s.fail_next.take() {
            return Err(e);
        }
        let index = s.doc.audit.back().map_or(1, |e| e.index + 1);
        let proposal = Proposal {
            change: change.clone(),
            origin: origin.clone(),
        };
        let outcome = s.doc.apply(index, &proposal)?;
        Ok(outcome.revision)
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
        let s = self.lock();
        Arc::new(Revisioned {
            revision: s.doc.revision,
            value: s.doc.config().expect("the applied config is valid"),
        })
    }
    fn auth(&self) -> Arc<AuthState> {
        Arc::new(self.lock().doc.auth.clone())
    }
    fn history(&self) -> Arc<Vec<Arc<RevisionRecord>>> {
        Arc::new(self.lock().doc.history.iter().cloned().collect())
    }
    fn certificates(&self) -> Arc<BTreeMap<String, Arc<CertificateRecord>>> {
        Arc::new(self.lock().doc.certificates.clone())
    }
    fn tsig_keys(&self) -> Arc<BTreeMap<String, Arc<model::records::TsigKeyRecord>>> {
        Arc::new(self.lock().doc.tsig_keys.clone())
    }
    fn cluster_ca_fingerprint(&self) -> Option<String> {
        Some("ab".repeat(32))
    }
    fn join_tokens(&self) -> Arc<BTreeMap<String, model::records::JoinTokenRecord>> {
        Arc::new(self.lock().doc.join_tokens.clone())
    }
    fn cluster_key(&self) -> Arc<credentials::ClusterKey> {
        Arc::new(credentials::ClusterKey::derive("router tests"))
    }
    fn audit(&self) -> Arc<Vec<Arc<AuditEntry>>> {
        Arc::new(self.lock().doc.audit.iter().cloned().collect())
    }
    fn propose(&self, change: Change, origin: Origin) -> BoxFuture<'_, Result<u64, ChangeError>> {
        let result = self.apply(&change, &origin);
        self.lock().proposed.push((change, origin));
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
