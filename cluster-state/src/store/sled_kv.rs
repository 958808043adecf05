//! The sled 0.34 implementation of [`KvBackend`]: one tree for the log, one for the rest.

use std::ops::Bound;
use std::path::Path;

use super::{FlushFuture, KvBackend, Pair, Space, StoreError};

pub struct SledKv {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    records: sled::Tree,
    snapshot: sled::Tree,
}

impl SledKv {
    pub fn open(dir: &Path) -> Result<SledKv, StoreError> {
        let db = sled::Config::new().path(dir).open().map_err(engine)?;
        let log = db.open_tree("raft_log").map_err(engine)?;
        let meta = db.open_tree("raft_meta").map_err(engine)?;
        let records = db.open_tree("sm_records").map_err(engine)?;
        let snapshot = db.open_tree("snapshot").map_err(engine)?;
        Ok(SledKv {
            db,
            log,
            meta,
            records,
            snapshot,
        })
    }

    fn tree(&self, space: Space) -> &sled::Tree {
        match space {
            Space::Log => &self.log,
            Space::Meta => &self.meta,
            Space::Records => &self.records,
            Space::Snapshot => &self.snapshot,
        }
    }
}

fn engine(e: sled::Error) -> StoreError {
    StoreError::Engine(e.to_string())
}

impl KvBackend for SledKv {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let v = self.tree(space).get(key).map_err(engine)?;
        Ok(v.map(|v| v.to_vec()))
    }

    fn put_many(&self, space: Space, pairs: Vec<Pair>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (k, v) in pairs {
            batch.insert(k, v);
        }
        self.tree(space).apply_batch(batch).map_err(engine)
    }

    fn remove(&self, space: Space, key: &[u8]) -> Result<(), StoreError> {
        self.tree(space).remove(key).map_err(engine)?;
        Ok(())
    }

    fn range(
        &self,
        space: Space,
        from: Bound<Vec<u8>>,
        to: Bound<Vec<u8>>,
    ) -> Result<Vec<Pair>, StoreError> {
        self.tree(space)
            .range::<Vec<u8>, _>((from, to))
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(engine))
            .collect()
    }

    fn remove_range(
        &self,
        space: Space,
        from: Bound<Vec<u8>>,
        to: Bound<Vec<u8>>,
    ) -> Result<(), StoreError> {
        let tree = self.tree(space);
        let mut batch = sled::Batch::default();
        for r in tree.range::<Vec<u8>, _>((from, to)) {
            let (k, _) = r.map_err(engine)?;
            batch.remove(k);
        }
        tree.apply_batch(batch).map_err(engine)
    }

    fn last(&self, space: Space) -> Result<Option<Pair>, StoreError> {
        let last = self.tree(space).last().map_err(engine)?;
        Ok(last.map(|(k, v)| (k.to_vec(), v.to_vec())))
    }

    fn flush(&self) -> FlushFuture<'_> {
        // One flush covers every tree: sled shares a single page cache and log per database.
        Box::pin(async move {
            self.db.flush_async().await.map_err(engine)?;
            Ok(())
        })
    }
}
