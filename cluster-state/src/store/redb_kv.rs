//! The redb implementation of [`KvBackend`]: one table per space in one file. Writes commit
//! without an fsync (`Durability::None`); `flush` commits an empty transaction with
//! `Durability::Immediate`, which makes every earlier commit durable, so the log store's
//! "append, then flush" costs one fsync, as with sled.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, TableError};

use super::{FlushFuture, KvBackend, Pair, Space, StoreError};

const LOG: TableDefinition<&[u8], &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&[u8], &[u8]> = TableDefinition::new("raft_meta");
const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sm_records");
const SNAPSHOT: TableDefinition<&[u8], &[u8]> = TableDefinition::new("snapshot");

/// The file inside the store directory.
pub const FILE: &str = "meridian.redb";

pub struct RedbKv {
    db: Arc<Database>,
}

fn engine(e: impl std::fmt::Display) -> StoreError {
    StoreError::Engine(e.to_string())
}

fn table(space: Space) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    match space {
        Space::Log => LOG,
        Space::Meta => META,
        Space::Records => RECORDS,
        Space::Snapshot => SNAPSHOT,
    }
}

fn as_slices(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl RedbKv {
    pub fn open(dir: &Path) -> Result<RedbKv, StoreError> {
        let db = Database::create(dir.join(FILE)).map_err(engine)?;
        // Every table exists from the start, so reads never meet a missing one.
        let tx = db.begin_write().map_err(engine)?;
        for space in [Space::Log, Space::Meta, Space::Records, Space::Snapshot] {
            tx.open_table(table(space)).map_err(engine)?;
        }
        tx.commit().map_err(engine)?;
        Ok(RedbKv { db: Arc::new(db) })
    }

    /// A write transaction that commits without an fsync (see [`KvBackend::flush`]).
    fn write(&self) -> Result<redb::WriteTransaction, StoreError> {
        let mut tx = self.db.begin_write().map_err(engine)?;
        tx.set_durability(Durability::None).map_err(engine)?;
        Ok(tx)
    }
}

impl KvBackend for RedbKv {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(engine)?;
        let t = match tx.open_table(table(space)) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(engine(e)),
        };
        let v = t.get(key).map_err(engine)?;
        Ok(v.map(|v| v.value().to_vec()))
    }

    fn put_many(&self, space: Space, pairs: Vec<Pair>) -> Result<(), StoreError> {
        let tx = self.write()?;
        {
            let mut t = tx.open_table(table(space)).map_err(engine)?;
            for (k, v) in &pairs {
                t.insert(k.as_slice(), v.as_slice()).map_err(engine)?;
            }
        }
        tx.commit().map_err(engine)
    }

    fn remove(&self, space: Space, key: &[u8]) -> Result<(), StoreError> {
        let tx = self.write()?;
        {
            let mut t = tx.open_table(table(space)).map_err(engine)?;
            t.remove(key).map_err(engine)?;
        }
        tx.commit().map_err(engine)
    }

    fn range(
        &self,
        space: Space,
        from: Bound<Vec<u8>>,
        to: Bound<Vec<u8>>,
    ) -> Result<Vec<Pair>, StoreError> {
        let tx = self.db.begin_read().map_err(engine)?;
        let t = tx.open_table(table(space)).map_err(engine)?;
        let iter = t
            .range((as_slices(&from), as_slices(&to)))
            .map_err(engine)?;
        iter.map(|r| {
            r.map(|(k, v)| (k.value().to_vec(), v.value().to_vec()))
                .map_err(engine)
        })
        .collect()
    }

    fn remove_range(
        &self,
        space: Space,
        from: Bound<Vec<u8>>,
        to: Bound<Vec<u8>>,
    ) -> Result<(), StoreError> {
        let tx = self.write()?;
        {
            let mut t = tx.open_table(table(space)).map_err(engine)?;
            t.retain_in((as_slices(&from), as_slices(&to)), |_, _| false)
                .map_err(engine)?;
        }
        tx.commit().map_err(engine)
    }

    fn last(&self, space: Space) -> Result<Option<Pair>, StoreError> {
        let tx = self.db.begin_read().map_err(engine)?;
        let t = tx.open_table(table(space)).map_err(engine)?;
        let last = t.last().map_err(engine)?;
        Ok(last.map(|(k, v)| (k.value().to_vec(), v.value().to_vec())))
    }

    fn flush(&self) -> FlushFuture<'_> {
        let db = self.db.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut tx = db.begin_write().map_err(engine)?;
                tx.set_durability(Durability::Immediate).map_err(engine)?;
                tx.commit().map_err(engine)
            })
            .await
            .map_err(engine)?
        })
    }
}
