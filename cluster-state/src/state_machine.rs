//! openraft's state machine (`RaftStateMachine`) and snapshots: applies commands to the
//! [`Document`], writes it with the last applied log id after every batch (made durable by the
//! log's next flush), and publishes [`Applied`] on a watch channel.
//!
//! The history (whole specs of the last revisions) and the audit log are most of the document
//! and grow with use, so they are not rewritten after every batch: each revision record and
//! audit entry is its own key, written once, deleted when it falls out of retention; the rest
//! of the document is one key. Snapshots carry the whole document.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::command::{Applied, Document};
use crate::store::{Space, Store, StoreError};
use crate::types::{
    Entry, LogId, Response, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};

const STATE: &str = "state_machine";
const SNAPSHOT_META: &str = "snapshot_meta";
const SNAPSHOT_DATA: &str = "snapshot_data";
/// `sm_history/<revision, 20 digits>`: one `RevisionRecord` each.
const HISTORY_PREFIX: &str = "sm_history/";
/// `sm_audit/<index, 20 digits>`: one `AuditEntry` each.
const AUDIT_PREFIX: &str = "sm_audit/";

fn history_key(revision: u64) -> String {
    format!("{HISTORY_PREFIX}{revision:020}")
}

fn audit_key(index: u64) -> String {
    format!("{AUDIT_PREFIX}{index:020}")
}

/// What is persisted after each applied batch and shipped in snapshots.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Persisted {
    pub last_applied: Option<LogId>,
    pub last_membership: StoredMembership,
    pub doc: Document,
    /// Set in what is stored under `state_machine` once the history and the audit log live
    /// under their own keys (earlier releases stored them inline).
    #[serde(default)]
    pub split: bool,
    /// The newest audit entry of the document when it was stored (records are written just
    /// before it; one newer is from a batch the crash cut short).
    #[serde(default)]
    pub audit_to: u64,
}

/// What of the history and the audit log is already on disk under their own keys.
#[derive(Debug, Default, Clone, Copy)]
struct Saved {
    /// The newest revision record and audit entry written.
    history_to: u64,
    audit_to: u64,
    /// The oldest still kept: records below it are deleted.
    history_from: u64,
    audit_from: u64,
}

/// Errors loading the state machine at start-up.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored configuration no longer validates: {0}")]
    Invalid(model::ValidationErrors),
}

pub struct StateMachine {
    store: Store,
    state: Persisted,
    saved: Saved,
    current: Applied,
    tx: watch::Sender<Applied>,
}

impl StateMachine {
    /// Loads the persisted state (or the pristine one) and opens the watch channel with it.
    pub fn open(store: Store) -> Result<(StateMachine, watch::Receiver<Applied>), LoadError> {
        let mut state: Persisted = store.get_json(STATE)?.unwrap_or_default();
        let mut saved = Saved::default();
        if state.split {
            state.doc.history = store
                .prefix_json::<Arc<model::records::RevisionRecord>>(HISTORY_PREFIX)?
                .into_iter()
                // Newer than the document only if a crash split a batch: not applied.
                .filter(|r| r.revision <= state.doc.revision)
                .collect();
            let audit_to = state.audit_to;
            state.doc.audit = store
                .prefix_json::<Arc<model::records::AuditEntry>>(AUDIT_PREFIX)?
                .into_iter()
                .filter(|a| a.index <= audit_to)
                .collect();
            saved = Saved::of(&state.doc);
        }
        let config = state.doc.config().map_err(LoadError::Invalid)?;
        let current = Applied {
            config: Arc::new(model::Revisioned {
                revision: state.doc.revision,
                value: config,
            }),
            auth: Arc::new(state.doc.auth.clone()),
            history: Arc::new(state.doc.history.iter().cloned().collect()),
            audit: Arc::new(state.doc.audit.iter().cloned().collect()),
            certificates: Arc::new(state.doc.certificates.clone()),
            ticket_keys: Arc::new(state.doc.ticket_keys.iter().cloned().collect()),
            tsig_keys: Arc::new(state.doc.tsig_keys.clone()),
            purges: Arc::new(state.doc.purges.iter().cloned().collect()),
            cluster_ca: state.doc.cluster_ca.clone(),
            join_tokens: Arc::new(state.doc.join_tokens.clone()),
            schema: state.doc.schema(),
        };
        let (tx, rx) = watch::channel(current.clone());
        let sm = StateMachine {
            store,
            state,
            saved,
            current,
            tx,
        };
        Ok((sm, rx))
    }

    /// Writes the document without its history and audit log, plus the revision records and
    /// audit entries not written yet, atomically; then deletes those out of retention.
    ///
    /// Not flushed here: the log store's next flush (the engines flush every earlier write,
    /// in order) or a snapshot's makes it durable. A crash before that recovers an older
    /// document, a prefix of the writes, and openraft applies the entries after its last
    /// applied id again from the log, where every committed entry is durable; the log is only
    /// purged up to a snapshot, which is flushed.
    fn persist(&mut self) -> Result<(), StoreError> {
        let history = std::mem::take(&mut self.state.doc.history);
        let audit = std::mem::take(&mut self.state.doc.audit);
        self.state.split = true;
        self.state.audit_to = audit.back().map_or(0, |a| a.index);
        let core = serde_json::to_vec(&self.state);
        self.state.doc.history = history;
        self.state.doc.audit = audit;
        let core = core.map_err(|source| StoreError::Encode {
            key: STATE.into(),
            source,
        })?;
        let mut records = Vec::new();
        for r in self
            .state
            .doc
            .history
            .iter()
            .filter(|r| r.revision > self.saved.history_to)
        {
            records.push(encode_record(history_key(r.revision), r.as_ref())?);
        }
        for a in self
            .state
            .doc
            .audit
            .iter()
            .filter(|a| a.index > self.saved.audit_to)
        {
            records.push(encode_record(audit_key(a.index), a.as_ref())?);
        }
        // Records first: sled recovers a prefix of its writes, so a document on disk always
        // has its records.
        self.store.put_in(Space::Records, records)?;
        self.store.put_raw_many(vec![(STATE, core)])?;
        let now = Saved::of(&self.state.doc);
        if now.history_from > self.saved.history_from {
            self.store
                .remove_prefix_below(HISTORY_PREFIX, Some(&history_key(now.history_from)))?;
        }
        if now.audit_from > self.saved.audit_from {
            self.store
                .remove_prefix_below(AUDIT_PREFIX, Some(&audit_key(now.audit_from)))?;
        }
        self.saved = now;
        Ok(())
    }

    fn publish(&self) {
        self.tx.send_replace(self.current.clone());
    }
}

/// The schema a `SetSchema` entry raises to, when this release does not know it.
fn unknown_schema(payload: &EntryPayload<TypeConfig>) -> Option<u32> {
    match payload {
        EntryPayload::Normal(cmd) => match &cmd.change {
            model::Change::SetSchema { version } if *version > model::SCHEMA_SUPPORTED => {
                Some(*version)
            }
            _ => None,
        },
        _ => None,
    }
}

fn sm_write_err(e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageIOError::write_state_machine(e).into()
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.state.last_applied, self.state.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        let mut changed = false;
        for entry in entries {
            if let Some(version) = unknown_schema(&entry.payload) {
                // Applying it (and what follows) by rules this release lacks would make this
                // node disagree with the others: stop instead, and say why.
                let why = format!(
                    "log entry {} raises the validation schema to {version}, and this release \
                     applies up to {}: upgrade this node",
                    entry.log_id.index,
                    model::SCHEMA_SUPPORTED
                );
                tracing::error!("{why}");
                return Err(sm_write_err(&std::io::Error::other(why)));
            }
            self.state.last_applied = Some(entry.log_id);
            let entry_is_command = matches!(entry.payload, EntryPayload::Normal(_));
            let result = match entry.payload {
                EntryPayload::Blank => Ok(self.state.doc.revision),
                EntryPayload::Membership(m) => {
                    self.state.last_membership = StoredMembership::new(Some(entry.log_id), m);
                    Ok(self.state.doc.revision)
                }
                EntryPayload::Normal(cmd) => match self.state.doc.apply(entry.log_id.index, &cmd) {
                    Ok(outcome) => {
                        if let Some(config) = outcome.config {
                            self.current.config = Arc::new(model::Revisioned {
                                revision: outcome.revision,
                                value: config,
                            });
                        }
                        if outcome.auth_changed {
                            self.current.auth = Arc::new(self.state.doc.auth.clone());
                        }
                        if outcome.certificates_changed {
                            self.current.certificates =
                                Arc::new(self.state.doc.certificates.clone());
                        }
                        if outcome.purges_changed {
                            self.current.purges =
                                Arc::new(self.state.doc.purges.iter().cloned().collect());
                        }
                        if outcome.tsig_keys_changed {
                            self.current.tsig_keys = Arc::new(self.state.doc.tsig_keys.clone());
                        }
                        if outcome.cluster_changed {
                            self.current.schema = self.state.doc.schema();
                            self.current.cluster_ca = self.state.doc.cluster_ca.clone();
                            self.current.join_tokens = Arc::new(self.state.doc.join_tokens.clone());
                        }
                        if outcome.ticket_keys_changed {
                            self.current.ticket_keys =
                                Arc::new(self.state.doc.ticket_keys.iter().cloned().collect());
                        }
                        Ok(outcome.revision)
                    }
                    Err(e) => {
                        tracing::info!(index = entry.log_id.index, error = %e, "command refused");
                        Err(e)
                    }
                },
            };
            if entry_is_command {
                changed = true;
            }
            responses.push(Response { result });
        }
        if changed {
            // Every command adds to the audit log; config changes add to the history.
            self.current.history = Arc::new(self.state.doc.history.iter().cloned().collect());
            self.current.audit = Arc::new(self.state.doc.audit.iter().cloned().collect());
        }
        self.persist().map_err(|e| sm_write_err(&e))?;
        if changed {
            self.publish();
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            store: self.store.clone(),
            state: self.state.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let read_err = |e: &dyn std::error::Error| -> StorageError {
            StorageIOError::read_snapshot(Some(meta.signature()), AnyError::error(e)).into()
        };
        let mut state: Persisted = serde_json::from_slice(&data).map_err(|e| read_err(&e))?;
        // The meta is authoritative for what the snapshot covers.
        state.last_applied = meta.last_log_id;
        state.last_membership = meta.last_membership.clone();
        let config = state.doc.config().map_err(|e| read_err(&e))?;

        let meta_bytes = serde_json::to_vec(meta).map_err(|e| sm_write_err(&e))?;
        save_snapshot(&self.store, meta_bytes, data).map_err(|e| sm_write_err(&e))?;
        self.current = Applied {
            config: Arc::new(model::Revisioned {
                revision: state.doc.revision,
                value: config,
            }),
            auth: Arc::new(state.doc.auth.clone()),
            history: Arc::new(state.doc.history.iter().cloned().collect()),
            audit: Arc::new(state.doc.audit.iter().cloned().collect()),
            certificates: Arc::new(state.doc.certificates.clone()),
            ticket_keys: Arc::new(state.doc.ticket_keys.iter().cloned().collect()),
            tsig_keys: Arc::new(state.doc.tsig_keys.clone()),
            purges: Arc::new(state.doc.purges.iter().cloned().collect()),
            cluster_ca: state.doc.cluster_ca.clone(),
            join_tokens: Arc::new(state.doc.join_tokens.clone()),
            schema: state.doc.schema(),
        };
        self.state = state;
        // The snapshot's history and audit log replace whatever this node kept.
        for prefix in [HISTORY_PREFIX, AUDIT_PREFIX] {
            self.store
                .remove_prefix_below(prefix, None)
                .map_err(|e| sm_write_err(&e))?;
        }
        self.saved = Saved::default();
        self.persist().map_err(|e| sm_write_err(&e))?;
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        load_snapshot(&self.store).map_err(|e| StorageIOError::read_snapshot(None, &e).into())
    }
}

impl Saved {
    /// What `doc`'s history and audit log span (0 when empty: nothing below to delete).
    fn of(doc: &Document) -> Saved {
        Saved {
            history_to: doc.history.back().map_or(0, |r| r.revision),
            audit_to: doc.audit.back().map_or(0, |a| a.index),
            history_from: doc.history.front().map_or(0, |r| r.revision),
            audit_from: doc.audit.front().map_or(0, |a| a.index),
        }
    }
}

/// A history or audit record as stored under `key`.
fn encode_record<T: Serialize>(key: String, record: &T) -> Result<(String, Vec<u8>), StoreError> {
    match serde_json::to_vec(record) {
        Ok(bytes) => Ok((key, bytes)),
        Err(source) => Err(StoreError::Encode { key, source }),
    }
}

/// The snapshot's meta and data, atomically, in their own space; an earlier release's copy in
/// the meta space goes.
fn save_snapshot(store: &Store, meta: Vec<u8>, data: Vec<u8>) -> Result<(), StoreError> {
    store.put_in(
        Space::Snapshot,
        vec![(SNAPSHOT_META.into(), meta), (SNAPSHOT_DATA.into(), data)],
    )?;
    store.remove(SNAPSHOT_DATA)?;
    store.remove(SNAPSHOT_META)
}

fn load_snapshot(store: &Store) -> Result<Option<Snapshot>, StoreError> {
    // Earlier releases kept it in the meta space.
    let (meta, data) = match store.get_in(Space::Snapshot, SNAPSHOT_META)? {
        Some(meta) => (Some(meta), store.get_in(Space::Snapshot, SNAPSHOT_DATA)?),
        None => (store.get_raw(SNAPSHOT_META)?, store.get_raw(SNAPSHOT_DATA)?),
    };
    let (Some(meta), Some(data)) = (meta, data) else {
        return Ok(None);
    };
    let meta: SnapshotMeta =
        serde_json::from_slice(&meta).map_err(|source| StoreError::Corrupt {
            key: SNAPSHOT_META.into(),
            source,
        })?;
    Ok(Some(Snapshot {
        meta,
        snapshot: Box::new(Cursor::new(data)),
    }))
}

// === impl SnapshotBuilder ===

/// Builds a snapshot from a copy of the state taken when openraft asked for the builder.
pub struct SnapshotBuilder {
    store: Store,
    state: Persisted,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let err = |e: &dyn std::error::Error| -> StorageError {
            StorageIOError::write_snapshot(None, AnyError::error(e)).into()
        };
        let data = serde_json::to_vec(&self.state).map_err(|e| err(&e))?;
        let snapshot_id = match self.state.last_applied {
            Some(id) => format!("{}-{}-{}", id.leader_id, id.index, unique_suffix()),
            None => format!("none-{}", unique_suffix()),
        };
        let meta = SnapshotMeta {
            last_log_id: self.state.last_applied,
            last_membership: self.state.last_membership.clone(),
            snapshot_id,
        };
        let meta_bytes = serde_json::to_vec(&meta).map_err(|e| err(&e))?;
        save_snapshot(&self.store, meta_bytes, data.clone()).map_err(|e| err(&e))?;
        self.store.flush().await.map_err(|e| err(&e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

/// Distinguishes snapshots built at the same log id (e.g. before and after a restart).
fn unique_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

#[cfg(test)]
#[path = "state_machine_tests.rs"]
mod tests;
