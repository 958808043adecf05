//! The disk tier: one file per stored response, `MRC1`, the length of a JSON metadata block
//! (key, status, headers, RFC 9111 policy, tags, times) as a little-endian u32, the block, then
//! the body. Files are written under a temporary name and renamed, so a crash leaves whole
//! files or none; unreadable files are deleted at start.
//!
//! A moka index (key -> file) weighed by file size bounds the tier; its eviction listener
//! deletes the file. Every file name is unique, so replacing an entry deletes the old file only.
//! Writes go through one writer thread with a bounded queue: when the disk falls behind, writes
//! are dropped (memory still serves) rather than slowing requests.

use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_cache_semantics::CachePolicy;
use model::records::PurgeSelector;
use moka::notification::RemovalCause;
use serde::{Deserialize, Serialize};

use super::store::{Entry, StoreKey};
use crate::metrics::CacheMetrics;

const MAGIC: &[u8; 4] = b"MRC1";
const SUFFIX: &str = "mrc";
/// Metadata blocks larger than this are not ours.
const MAX_META: usize = 1 << 20;
/// Writes queued for the writer thread before new ones are dropped.
const QUEUE: usize = 1024;

/// Whether the entry with this key and tags, stored at this time (Unix ms), was purged.
pub type Purged<'a> = dyn Fn(&StoreKey, &[Box<str>], u64) -> bool + 'a;

struct DiskEntry {
    file: PathBuf,
    size: u64,
    tags: Box<[Box<str>]>,
    stored_unix_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    key: String,
    variant: u8,
    #[serde(with = "http_serde::status_code")]
    status: StatusCode,
    #[serde(with = "http_serde::header_map")]
    headers: HeaderMap,
    policy: CachePolicy,
    vary: Vec<String>,
    tags: Vec<String>,
    stored_unix_ms: u64,
    fresh_until_unix_ms: u64,
    stale_while_revalidate_ms: u64,
    stale_if_error_ms: u64,
    public: bool,
}

pub struct Disk {
    dir: PathBuf,
    capacity: u64,
    index: moka::sync::Cache<StoreKey, Arc<DiskEntry>>,
    writer: SyncSender<(StoreKey, Arc<Entry>)>,
    metrics: CacheMetrics,
}

impl Disk {
    pub fn open(dir: PathBuf, capacity: u64, metrics: CacheMetrics) -> std::io::Result<Disk> {
        std::fs::create_dir_all(&dir)?;
        let evictions = metrics.evictions[1].clone();
        let index = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .weigher(|_k: &StoreKey, e: &Arc<DiskEntry>| u32::try_from(e.size).unwrap_or(u32::MAX))
            .eviction_listener(move |_k, e: Arc<DiskEntry>, cause| {
                if cause == RemovalCause::Size {
                    evictions.inc();
                }
                let _ = std::fs::remove_file(&e.file);
            })
            .build();
        let (writer, queue) = sync_channel::<(StoreKey, Arc<Entry>)>(QUEUE);
        let disk = Disk {
            dir: dir.clone(),
            capacity,
            index: index.clone(),
            writer,
            metrics: metrics.clone(),
        };
        std::thread::Builder::new()
            .name("cache-disk-write".into())
            .spawn(move || {
                let seq = AtomicU64::new(0);
                while let Ok((key, entry)) = queue.recv() {
                    match write_file(&dir, &key, &entry, &seq) {
                        Ok((file, size)) => index.insert(
                            key,
                            Arc::new(DiskEntry {
                                file,
                                size,
                                tags: entry.tags.clone(),
                                stored_unix_ms: entry.stored_unix_ms,
                            }),
                        ),
                        Err(e) => {
                            metrics.disk_errors.inc();
                            tracing::warn!(error = %e, "cache disk write failed");
                        }
                    }
                }
            })?;
        Ok(disk)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// `(entries, bytes)`.
    pub fn size(&self) -> (u64, u64) {
        self.index.run_pending_tasks();
        (self.index.entry_count(), self.index.weighted_size())
    }

    pub fn update_gauges(&self) {
        let (n, b) = (self.index.entry_count(), self.index.weighted_size());
        self.metrics.entries[1].set(i64::try_from(n).unwrap_or(i64::MAX));
        self.metrics.bytes[1].set(i64::try_from(b).unwrap_or(i64::MAX));
    }

    /// Queues `entry` for writing; dropped when the writer is behind.
    pub fn write(&self, key: StoreKey, entry: Arc<Entry>) {
        match self.writer.try_send((key, entry)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.metrics.disk_errors.inc();
            }
        }
    }

    /// Reads the entry for `key` from its file, off the runtime's threads.
    pub async fn read(&self, key: &StoreKey) -> Option<Entry> {
        let found = self.index.get(key)?;
        let file = found.file.clone();
        let result = tokio::task::spawn_blocking(move || read_file(&file)).await;
        match result {
            Ok(Ok((meta, body))) if meta.key == *key.key && meta.variant == key.variant => {
                Some(entry_of(meta, body))
            }
            Ok(Ok(_)) => None,
            Ok(Err(e)) => {
                self.metrics.disk_errors.inc();
                tracing::debug!(file = %found.file.display(), error = %e, "cache disk read failed");
                self.index.invalidate(key);
                None
            }
            Err(_) => None,
        }
    }

    pub fn count_if(&self, selector: &PurgeSelector) -> usize {
        self.index
            .iter()
            .filter(|(k, e)| k.matches(&e.tags, selector))
            .count()
    }

    pub fn remove_matching(&self, selector: &PurgeSelector) -> usize {
        self.remove_if(&|k, tags, _| k.matches(tags, selector))
    }

    /// Removes the entries `purged(key, tags, stored_unix_ms)` picks; how many.
    pub fn remove_if(&self, purged: &Purged<'_>) -> usize {
        let victims: Vec<_> = self
            .index
            .iter()
            .filter(|(k, e)| purged(k, &e.tags, e.stored_unix_ms))
            .map(|(k, _)| k)
            .collect();
        for k in &victims {
            self.index.invalidate(k.as_ref());
        }
        self.index.run_pending_tasks();
        self.update_gauges();
        victims.len()
    }

    /// Rebuilds the index from the directory; files `purged` picks, unreadable ones and
    /// leftovers of interrupted writes are deleted.
    pub fn load(&self, purged: &Purged<'_>) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut loaded = 0u64;
        for item in dir.flatten() {
            let path = item.path();
            if path.extension().and_then(|e| e.to_str()) != Some(SUFFIX) {
                if path.extension().and_then(|e| e.to_str()) == Some("tmp") {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            }
            let meta = match read_meta(&path) {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(file = %path.display(), error = %e, "dropping unreadable cache file");
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
            };
            let size = item.metadata().map_or(0, |m| m.len());
            let key = StoreKey {
                key: meta.key.as_str().into(),
                variant: meta.variant,
            };
            let tags: Box<[Box<str>]> = meta.tags.iter().map(|t| t.as_str().into()).collect();
            if purged(&key, &tags, meta.stored_unix_ms) {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            // Two files for one key: keep the newer (the listener deletes the other).
            if let Some(old) = self.index.get(&key) {
                if old.stored_unix_ms > meta.stored_unix_ms {
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
            }
            self.index.insert(
                key,
                Arc::new(DiskEntry {
                    file: path,
                    size,
                    tags,
                    stored_unix_ms: meta.stored_unix_ms,
                }),
            );
            loaded += 1;
        }
        self.index.run_pending_tasks();
        self.update_gauges();
        tracing::debug!(dir = %self.dir.display(), entries = loaded, "cache disk tier loaded");
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn write_file(
    dir: &Path,
    key: &StoreKey,
    entry: &Entry,
    seq: &AtomicU64,
) -> std::io::Result<(PathBuf, u64)> {
    let meta = Meta {
        key: key.key.to_string(),
        variant: key.variant,
        status: entry.status,
        headers: entry.headers.clone(),
        policy: entry.policy.clone(),
        vary: entry.vary.iter().map(|h| h.to_string()).collect(),
        tags: entry.tags.iter().map(|t| t.to_string()).collect(),
        stored_unix_ms: entry.stored_unix_ms,
        fresh_until_unix_ms: unix_ms(entry.fresh_until),
        stale_while_revalidate_ms: millis(entry.stale_while_revalidate),
        stale_if_error_ms: millis(entry.stale_if_error),
        public: entry.public,
    };
    let json = serde_json::to_vec(&meta).map_err(std::io::Error::other)?;
    let len = u32::try_from(json.len())
        .ok()
        .filter(|&n| (n as usize) <= MAX_META)
        .ok_or_else(|| std::io::Error::other("metadata too large"))?;
    let mut hasher = std::hash::DefaultHasher::new();
    key.hash(&mut hasher);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = format!(
        "{:016x}-{now:x}-{}",
        hasher.finish(),
        seq.fetch_add(1, Ordering::Relaxed)
    );
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(format!("{name}.{SUFFIX}"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(MAGIC)?;
    f.write_all(&len.to_le_bytes())?;
    f.write_all(&json)?;
    f.write_all(&entry.body)?;
    drop(f);
    std::fs::rename(&tmp, &path)?;
    let size = (4 + 4 + json.len() + entry.body.len()) as u64;
    Ok((path, size))
}

fn read_header(f: &mut std::fs::File) -> std::io::Result<Meta> {
    let mut head = [0u8; 8];
    f.read_exact(&mut head)?;
    if &head[..4] != MAGIC {
        return Err(std::io::Error::other("not a cache file"));
    }
    let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
    if len > MAX_META {
        return Err(std::io::Error::other("metadata too large"));
    }
    let mut json = vec![0u8; len];
    f.read_exact(&mut json)?;
    serde_json::from_slice(&json).map_err(std::io::Error::other)
}

fn read_meta(path: &Path) -> std::io::Result<Meta> {
    read_header(&mut std::fs::File::open(path)?)
}

fn read_file(path: &Path) -> std::io::Result<(Meta, Bytes)> {
    let mut f = std::fs::File::open(path)?;
    let meta = read_header(&mut f)?;
    let mut body = Vec::new();
    f.read_to_end(&mut body)?;
    Ok((meta, Bytes::from(body)))
}

fn entry_of(meta: Meta, body: Bytes) -> Entry {
    Entry {
        status: meta.status,
        headers: meta.headers,
        body,
        policy: meta.policy,
        vary: meta
            .vary
            .iter()
            .filter_map(|h| http::HeaderName::from_bytes(h.as_bytes()).ok())
            .collect(),
        tags: meta.tags.iter().map(|t| t.as_str().into()).collect(),
        stored_unix_ms: meta.stored_unix_ms,
        fresh_until: UNIX_EPOCH + Duration::from_millis(meta.fresh_until_unix_ms),
        stale_while_revalidate: Duration::from_millis(meta.stale_while_revalidate_ms),
        stale_if_error: Duration::from_millis(meta.stale_if_error_ms),
        public: meta.public,
        hits: AtomicU64::new(0),
        encoded: std::sync::OnceLock::new(),
    }
}
