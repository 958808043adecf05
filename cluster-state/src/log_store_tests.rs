//! Runs openraft's own storage conformance suite against the sled-backed log and state machine.

use openraft::testing::{StoreBuilder, Suite};

use super::LogStore;
use crate::state_machine::StateMachine;
use crate::store::Store;
use crate::types::{StorageError, TypeConfig};

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for SledBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| openraft::StorageIOError::write(&e))?;
        let store =
            Store::open_sled(dir.path()).map_err(|e| openraft::StorageIOError::write(&e))?;
        let (sm, _rx) =
            StateMachine::open(store.clone()).map_err(|e| openraft::StorageIOError::write(&e))?;
        Ok((dir, LogStore::new(store), sm))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(SledBuilder) {
        panic!("storage suite failed: {e}");
    }
}

struct RedbBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for RedbBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| openraft::StorageIOError::write(&e))?;
        let store = Store::open(crate::store::StorageKind::Redb, dir.path())
            .map_err(|e| openraft::StorageIOError::write(&e))?;
        let (sm, _rx) =
            StateMachine::open(store.clone()).map_err(|e| openraft::StorageIOError::write(&e))?;
        Ok((dir, LogStore::new(store), sm))
    }
}

#[test]
fn openraft_storage_suite_on_redb() {
    if let Err(e) = Suite::test_all(RedbBuilder) {
        panic!("storage suite failed on redb: {e}");
    }
}
