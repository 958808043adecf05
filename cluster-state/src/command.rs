//! What the Raft log carries and what the state machine publishes. Applying an entry is
//! `model::Document::apply`, the one pure function the console's tests use as well.

use std::collections::BTreeMap;
use std::sync::Arc;

/// The Raft log entry payload (openraft `AppData`): a change and who asked for it.
pub type Command = model::Proposal;

pub use model::records::{
    AuditEntry, AuthState, CertificateRecord, ClusterCaRecord, JoinTokenRecord, PurgeRecord,
    RevisionRecord, TicketKeyRecord, TokenInfo, TsigKeyRecord, UserRecord,
};
pub use model::{Document, AUDIT_MAX, HISTORY_KEEP};

/// What the state machine publishes after each applied entry that changed something.
#[derive(Clone, Debug)]
pub struct Applied {
    pub config: Arc<model::Revisioned<model::Config>>,
    pub auth: Arc<AuthState>,
    /// Oldest first.
    pub history: Arc<Vec<Arc<RevisionRecord>>>,
    /// Oldest first.
    pub audit: Arc<Vec<Arc<AuditEntry>>>,
    /// The credential store, by name. Keys are sealed.
    pub certificates: Arc<BTreeMap<String, Arc<CertificateRecord>>>,
    /// Session-ticket keys, newest first. Sealed.
    pub ticket_keys: Arc<Vec<Arc<TicketKeyRecord>>>,
    /// TSIG keys for zone transfers, by name. Sealed.
    pub tsig_keys: Arc<BTreeMap<String, Arc<TsigKeyRecord>>>,
    /// Cache purges, oldest first.
    pub purges: Arc<Vec<PurgeRecord>>,
    /// The cluster CA (key sealed), once the first node made it.
    pub cluster_ca: Option<Arc<ClusterCaRecord>>,
    /// Join tokens by id: issued, used, expired.
    pub join_tokens: Arc<BTreeMap<String, JoinTokenRecord>>,
    /// The validation rules in force in the cluster.
    pub schema: u32,
}
