//! Durable storage for the Raft log, vote and state machine, behind a small key-value trait so
//! the engine (sled today) can be replaced without touching the Raft glue.
//!
//! **Architecture Invariant:** nothing outside this module names sled.

mod redb_kv;
mod sled_kv;

/// Which engine holds a node's log and state: chosen in the node config, fixed for the life of
/// its data directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// sled 0.34 (the default).
    #[default]
    Sled,
    /// redb.
    Redb,
}

use std::future::Future;
use std::ops::Bound;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Errors from the storage engine or from decoding what it returned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage engine: {0}")]
    Engine(String),
    #[error("corrupt record {key:?}: {source}")]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },
    #[error("encoding record {key:?}: {source}")]
    Encode {
        key: String,
        source: serde_json::Error,
    },
}

/// The key spaces: the log (keys are big-endian indexes), the state machine's history and
/// audit records, the last snapshot, and the small rest (vote, committed index, the document).
/// Each is its own sled tree: a small record rewritten after every batch must not share a
/// page with a large one, or each rewrite copies the large one too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    Log,
    Meta,
    Records,
    Snapshot,
}

pub type Pair = (Vec<u8>, Vec<u8>);
pub type FlushFuture<'a> = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>>;

/// What the Raft glue needs from a storage engine. Writes become durable only after `flush`.
pub trait KvBackend: Send + Sync + 'static {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Inserts all pairs atomically.
    fn put_many(&self, space: Space, pairs: Vec<Pair>) -> Result<(), StoreError>;
    fn remove(&self, space: Space, key: &[u8]) -> Result<(), StoreError>;
    /// Pairs with `from <= key < to` in key order.
    fn range(
        &self,
        space: Space,
        from: Bound<Vec<u8>>,
        to: Bound<Vec<u8>>,
    ) -> Result<Vec<Pair>, StoreError>;
    /// Removes every key with `from <= key < to`.
    fn remove_range(
        &self,
        space: Space,
        from: Bound<Vec<u8>>,
        to: Bound<Vec<u8>>,
    ) -> Result<(), StoreError>;
    fn last(&self, space: Space) -> Result<Option<Pair>, StoreError>;
    /// Makes every earlier write durable (on disk).
    fn flush(&self) -> FlushFuture<'_>;
}

/// A typed handle over a [`KvBackend`]; cheap to clone.
#[derive(Clone)]
pub struct Store {
    kv: Arc<dyn KvBackend>,
}

impl Store {
    /// Opens (or creates) the sled database in `dir`.
    /// Opens (or creates) the store of `kind` in `dir`; a directory holding the other engine's
    /// files is refused rather than silently started empty.
    pub fn open(kind: StorageKind, dir: &Path) -> Result<Store, StoreError> {
        let has_redb = dir.join(redb_kv::FILE).exists();
        let has_sled = dir.join("conf").exists() || dir.join("db").exists();
        match kind {
            StorageKind::Sled if has_redb => Err(StoreError::Engine(format!(
                "{} holds a redb store but the node config asks for sled (storage = \"sled\")",
                dir.display()
            ))),
            StorageKind::Redb if has_sled => Err(StoreError::Engine(format!(
                "{} holds a sled store but the node config asks for redb (storage = \"redb\")",
                dir.display()
            ))),
            StorageKind::Sled => Store::open_sled(dir),
            StorageKind::Redb => Ok(Store::new(Arc::new(redb_kv::RedbKv::open(dir)?))),
        }
    }

    pub fn open_sled(dir: &Path) -> Result<Store, StoreError> {
        Ok(Store::new(Arc::new(sled_kv::SledKv::open(dir)?)))
    }

    pub fn new(kv: Arc<dyn KvBackend>) -> Store {
        Store { kv }
    }

    /// How many handles share the engine; lets shutdown wait until the engine is released.
    pub fn handles(&self) -> usize {
        Arc::strong_count(&self.kv)
    }

    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        match self.kv.get(Space::Meta, key.as_bytes())? {
            None => Ok(None),
            Some(bytes) => decode(key, &bytes).map(Some),
        }
    }

    pub fn put_json<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        let bytes = encode(key, value)?;
        self.kv
            .put_many(Space::Meta, vec![(key.as_bytes().to_vec(), bytes)])
    }

    pub fn get_raw(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.kv.get(Space::Meta, key.as_bytes())
    }

    /// Writes several meta records atomically.
    pub fn put_raw_many(&self, pairs: Vec<(&str, Vec<u8>)>) -> Result<(), StoreError> {
        let pairs = pairs
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect();
        self.kv.put_many(Space::Meta, pairs)
    }

    /// Writes several records of `space` atomically.
    pub fn put_in(&self, space: Space, pairs: Vec<(String, Vec<u8>)>) -> Result<(), StoreError> {
        let pairs = pairs
            .into_iter()
            .map(|(k, v)| (k.into_bytes(), v))
            .collect();
        self.kv.put_many(space, pairs)
    }

    pub fn get_in(&self, space: Space, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.kv.get(space, key.as_bytes())
    }

    /// Every record of [`Space::Records`] whose key starts with `prefix`, decoded, in key order.
    pub fn prefix_json<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>, StoreError> {
        let (from, to) = prefix_bounds(prefix);
        self.kv
            .range(Space::Records, from, to)?
            .iter()
            .map(|(k, v)| decode(&String::from_utf8_lossy(k), v))
            .collect()
    }

    /// Removes the records of [`Space::Records`] with `prefix <= key < below` (`below` None:
    /// the whole prefix).
    pub fn remove_prefix_below(&self, prefix: &str, below: Option<&str>) -> Result<(), StoreError> {
        let (from, to) = prefix_bounds(prefix);
        let to = match below {
            Some(b) => Bound::Excluded(b.as_bytes().to_vec()),
            None => to,
        };
        self.kv.remove_range(Space::Records, from, to)
    }

    pub fn remove(&self, key: &str) -> Result<(), StoreError> {
        self.kv.remove(Space::Meta, key.as_bytes())
    }

    /// Log records with `from <= index < to` (`to == None`: to the end), in index order.
    pub fn log_range<T: DeserializeOwned>(
        &self,
        from: Bound<u64>,
        to: Bound<u64>,
    ) -> Result<Vec<T>, StoreError> {
        let pairs = self.kv.range(Space::Log, map_bound(from), map_bound(to))?;
        pairs
            .iter()
            .map(|(k, v)| decode(&log_key_name(k), v))
            .collect()
    }

    pub fn log_last<T: DeserializeOwned>(&self) -> Result<Option<T>, StoreError> {
        match self.kv.last(Space::Log)? {
            None => Ok(None),
            Some((k, v)) => decode(&log_key_name(&k), &v).map(Some),
        }
    }

    /// Appends `(index, record)` pairs atomically.
    pub fn log_append<T: Serialize>(&self, records: &[(u64, T)]) -> Result<(), StoreError> {
        let mut pairs = Vec::with_capacity(records.len());
        for (index, record) in records {
            let bytes = encode(&format!("log/{index}"), record)?;
            pairs.push((index.to_be_bytes().to_vec(), bytes));
        }
        self.kv.put_many(Space::Log, pairs)
    }

    /// Removes log records with `from <= index < to`.
    pub fn log_remove(&self, from: Bound<u64>, to: Bound<u64>) -> Result<(), StoreError> {
        self.kv
            .remove_range(Space::Log, map_bound(from), map_bound(to))
    }

    pub async fn flush(&self) -> Result<(), StoreError> {
        self.kv.flush().await
    }
}

/// The keys starting with `prefix` (an ASCII prefix ending in '/'): from it to the same with
/// '/' bumped to '0'.
fn prefix_bounds(prefix: &str) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let from = prefix.as_bytes().to_vec();
    let mut to = from.clone();
    if let Some(last) = to.last_mut() {
        *last = last.saturating_add(1);
    }
    (Bound::Included(from), Bound::Excluded(to))
}

fn map_bound(b: Bound<u64>) -> Bound<Vec<u8>> {
    match b {
        Bound::Included(i) => Bound::Included(i.to_be_bytes().to_vec()),
        Bound::Excluded(i) => Bound::Excluded(i.to_be_bytes().to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn log_key_name(key: &[u8]) -> String {
    match <[u8; 8]>::try_from(key) {
        Ok(b) => format!("log/{}", u64::from_be_bytes(b)),
        Err(_) => format!("log/{key:?}"),
    }
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        key: key.to_string(),
        source,
    })
}

fn encode<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|source| StoreError::Encode {
        key: key.to_string(),
        source,
    })
}
