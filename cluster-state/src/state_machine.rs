//! openraft's state machine (`RaftStateMachine`) and snapshots: applies commands to the
//! [`Document`], persists it with the last applied log id after every batch, and publishes
//! [`Applied`] on a watch channel.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::command::{Applied, Document};
use crate::store::{Store, StoreError};
use crate::types::{
    Entry, LogId, Response, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};

const STATE: &str = "state_machine";
const SNAPSHOT_META: &str = "snapshot_meta";
const SNAPSHOT_DATA: &str = "snapshot_data";

/// What is persisted after each applied batch and shipped in snapshots.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Persisted {
    pub last_applied: Option<LogId>,
    pub last_membership: StoredMembership,
    pub doc: Document,
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
    current: Applied,
    tx: watch::Sender<Applied>,
}

impl StateMachine {
    /// Loads the persisted state (or the pristine one) and opens the watch channel with it.
    pub fn open(store: Store) -> Result<(StateMachine, watch::Receiver<Applied>), LoadError> {
        let state: Persisted = store.get_json(STATE)?.unwrap_or_default();
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
        };
        let (tx, rx) = watch::channel(current.clone());
        let sm = StateMachine {
            store,
            state,
            current,
            tx,
        };
        Ok((sm, rx))
    }

    async fn persist(&self) -> Result<(), StoreError> {
        self.store.put_json(STATE, &self.state)?;
        self.store.flush().await
    }

    fn publish(&self) {
        self.tx.send_replace(self.current.clone());
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
        self.persist().await.map_err(|e| sm_write_err(&e))?;
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
        self.store
            .put_raw_many(vec![(SNAPSHOT_META, meta_bytes), (SNAPSHOT_DATA, data)])
            .map_err(|e| sm_write_err(&e))?;
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
        };
        self.state = state;
        self.persist().await.map_err(|e| sm_write_err(&e))?;
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        load_snapshot(&self.store).map_err(|e| StorageIOError::read_snapshot(None, &e).into())
    }
}

fn load_snapshot(store: &Store) -> Result<Option<Snapshot>, StoreError> {
    let Some(meta) = store.get_json::<SnapshotMeta>(SNAPSHOT_META)? else {
        return Ok(None);
    };
    let Some(data) = store.get_raw(SNAPSHOT_DATA)? else {
        return Ok(None);
    };
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
        self.store
            .put_raw_many(vec![
                (SNAPSHOT_META, meta_bytes),
                (SNAPSHOT_DATA, data.clone()),
            ])
            .map_err(|e| err(&e))?;
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
