//! The node's response store: a memory tier and an optional disk tier, each bounded in bytes,
//! the table of requests in flight that coalesces misses, and purges.
//!
//! The memory tier is a moka cache weighed in bytes (TinyLFU admission, LRU eviction); the disk
//! tier keeps one file per response and a moka index of them weighed by file size, whose
//! eviction deletes the file. A lookup tries memory, then disk (and promotes what it reads).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_cache_semantics::CachePolicy;
use model::records::{PurgeRecord, PurgeSelector};
use moka::notification::RemovalCause;
use tokio::sync::watch;

use super::disk::Disk;
use crate::http::h1::wire::EncodedFields;
use crate::metrics::CacheMetrics;

/// A stored response is found by its key and the content coding of its body.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoreKey {
    /// `host/path?query`, then `\n`-separated values of the key's headers.
    pub key: Arc<str>,
    /// 0 for identity, 1 + `Codec::index` for a compressed body.
    pub variant: u8,
}

impl StoreKey {
    /// The part of the key an operator names: host, path and query.
    pub fn url(&self) -> &str {
        self.key.split('\n').next().unwrap_or(&self.key)
    }

    /// Whether a purge by `selector` removes this key, stored with `tags`.
    pub fn matches(&self, tags: &[Box<str>], selector: &PurgeSelector) -> bool {
        match selector {
            PurgeSelector::Key(k) => self.url() == k,
            PurgeSelector::Prefix(p) => self.key.starts_with(p.as_str()),
            PurgeSelector::Tag(t) => tags.iter().any(|x| **x == **t),
        }
    }
}

/// One stored response.
pub struct Entry {
    pub status: StatusCode,
    /// As served, without `Age` and `X-Cache`.
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Freshness, validation and `Vary` decisions (RFC 9111).
    pub policy: CachePolicy,
    /// The request headers it varies on (as the policy sees it).
    pub vary: Box<[http::HeaderName]>,
    pub tags: Box<[Box<str>]>,
    pub stored_unix_ms: u64,
    /// When the response stops being fresh.
    pub fresh_until: SystemTime,
    /// How long past `fresh_until` it may be served while a refresh runs, or when upstream
    /// fails.
    pub stale_while_revalidate: Duration,
    pub stale_if_error: Duration,
    /// `Cache-Control: public`: may answer requests that carry credentials.
    pub public: bool,
    pub hits: AtomicU64,
    /// `headers` in HTTP/1.1 field syntax, made at the first hit over HTTP/1.1.
    pub encoded: OnceLock<EncodedFields>,
}

impl Entry {
    /// The stored fields as the HTTP/1.1 server writes them (framing fields left to it).
    pub fn encoded(&self) -> &EncodedFields {
        self.encoded.get_or_init(|| {
            EncodedFields::new(
                &self.headers,
                &[
                    http::header::AGE,
                    super::X_CACHE,
                    http::header::CONTENT_LENGTH,
                    http::header::TRANSFER_ENCODING,
                    http::header::CONNECTION,
                ],
            )
        })
    }

    /// Bytes it holds, as the tiers weigh it.
    pub fn weight(&self) -> u32 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 32)
            .sum();
        u32::try_from(self.body.len() + headers + 512).unwrap_or(u32::MAX)
    }

    /// How long it has been stale at `now` (zero while fresh).
    pub fn staleness(&self, now: SystemTime) -> Duration {
        now.duration_since(self.fresh_until).unwrap_or_default()
    }

    /// A copy with new metadata (after a 304) and the same body.
    pub fn refreshed(&self, headers: HeaderMap, policy: CachePolicy, now: SystemTime) -> Entry {
        Entry {
            status: self.status,
            fresh_until: now + policy.time_to_live(now),
            headers,
            body: self.body.clone(),
            policy,
            vary: self.vary.clone(),
            tags: self.tags.clone(),
            stored_unix_ms: model::unix_ms(),
            stale_while_revalidate: self.stale_while_revalidate,
            stale_if_error: self.stale_if_error,
            public: self.public,
            hits: AtomicU64::new(self.hits.load(Ordering::Relaxed)),
            encoded: OnceLock::new(),
        }
    }
}

/// Sizes of the store, from the node config.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub memory_bytes: u64,
    /// The directory and its size bound; no disk tier when `None`.
    pub disk: Option<(PathBuf, u64)>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            memory_bytes: 256 << 20,
            disk: None,
        }
    }
}

/// What a miss gets from the table of requests in flight.
pub enum Flight {
    /// Go upstream; waiters are woken when the guard is dropped (after storing, or not).
    Lead(FlightGuard),
    /// Another request for the key is upstream: wait for it, then look again.
    Wait(watch::Receiver<()>),
}

/// Held by the one request that went upstream for a key.
pub struct FlightGuard {
    store: Arc<CacheStore>,
    key: StoreKey,
    _done: watch::Sender<()>,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.store.flights().remove(&self.key);
        // `_done` drops after this: waiters see the channel close and look again.
    }
}

/// A row of the console's top-keys table.
#[derive(Debug, Clone)]
pub struct KeyStat {
    pub key: String,
    pub encoding: &'static str,
    pub hits: u64,
    pub bytes: usize,
    pub age_seconds: u64,
    pub ttl_seconds: u64,
}

/// Totals for the console and the API.
#[derive(Debug, Clone)]
pub struct StoreStats {
    pub memory_entries: u64,
    pub memory_bytes: u64,
    pub memory_capacity_bytes: u64,
    pub disk_entries: u64,
    pub disk_bytes: u64,
    pub disk_capacity_bytes: u64,
    pub disk_dir: Option<String>,
}

#[derive(Default)]
struct PurgeState {
    /// The highest sequence applied.
    last: u64,
    initialized: bool,
    records: Arc<Vec<PurgeRecord>>,
}

pub struct CacheStore {
    memory: moka::sync::Cache<StoreKey, Arc<Entry>>,
    memory_capacity: u64,
    disk: Option<Disk>,
    flights: Mutex<HashMap<StoreKey, watch::Receiver<()>>>,
    /// The highest purge sequence applied, and the purges known (for entries read from disk
    /// after them).
    purges: Mutex<PurgeState>,
    metrics: CacheMetrics,
}

impl CacheStore {
    /// Opens the store. The disk tier's index is rebuilt from its directory in the background
    /// once the first [`CacheStore::apply_purges`] says which purges happened meanwhile.
    pub fn open(options: &StoreOptions, metrics: CacheMetrics) -> Arc<CacheStore> {
        let evictions = metrics.evictions[0].clone();
        let memory = moka::sync::Cache::builder()
            .max_capacity(options.memory_bytes)
            .weigher(|_k: &StoreKey, e: &Arc<Entry>| e.weight())
            .eviction_listener(move |_k, _v, cause| {
                if matches!(cause, RemovalCause::Size | RemovalCause::Expired) {
                    evictions.inc();
                }
            })
            .build();
        let disk = options.disk.as_ref().and_then(|(dir, bytes)| {
            match Disk::open(dir.clone(), *bytes, metrics.clone()) {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cache disk tier unavailable; memory only");
                    None
                }
            }
        });
        Arc::new(CacheStore {
            memory,
            memory_capacity: options.memory_bytes,
            disk,
            flights: Mutex::default(),
            purges: Mutex::default(),
            metrics,
        })
    }

    fn flights(&self) -> std::sync::MutexGuard<'_, HashMap<StoreKey, watch::Receiver<()>>> {
        self.flights.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The stored response for `key`, from memory or else from disk.
    pub async fn get(&self, key: &StoreKey) -> Option<Arc<Entry>> {
        if let Some(e) = self.memory.get(key) {
            return Some(e);
        }
        let disk = self.disk.as_ref()?;
        let entry = Arc::new(disk.read(key).await?);
        self.memory.insert(key.clone(), entry.clone());
        Some(entry)
    }

    /// Stores `entry` in memory, and on disk when there is a disk tier.
    pub fn insert(&self, key: StoreKey, entry: Arc<Entry>) {
        self.metrics.stored.inc();
        self.metrics
            .stored_bytes
            .inc_by(u64::try_from(entry.body.len()).unwrap_or(u64::MAX));
        if let Some(d) = &self.disk {
            d.write(key.clone(), entry.clone());
        }
        self.memory.insert(key, entry);
        self.update_gauges();
    }

    /// Removes every variant of `url` (after an unsafe method changed it).
    pub fn invalidate(&self, url: &str) {
        self.remove_matching(&PurgeSelector::Key(url.to_string()));
    }

    /// Joins the request in flight for `key`, or becomes it.
    pub fn flight(self: &Arc<Self>, key: &StoreKey) -> Flight {
        let mut flights = self.flights();
        if let Some(rx) = flights.get(key) {
            return Flight::Wait(rx.clone());
        }
        let (tx, rx) = watch::channel(());
        flights.insert(key.clone(), rx);
        Flight::Lead(FlightGuard {
            store: self.clone(),
            key: key.clone(),
            _done: tx,
        })
    }

    /// Removes what `selector` matches from both tiers; the number of responses removed (every
    /// variant counts).
    pub fn remove_matching(&self, selector: &PurgeSelector) -> usize {
        let mut victims = Vec::new();
        for (k, e) in self.memory.iter() {
            if k.matches(&e.tags, selector) {
                victims.push(k);
            }
        }
        let mut removed = victims.len();
        for k in &victims {
            self.memory.invalidate(k.as_ref());
        }
        if let Some(d) = &self.disk {
            removed = removed.max(d.remove_matching(selector));
        }
        self.metrics
            .purged
            .inc_by(u64::try_from(removed).unwrap_or(u64::MAX));
        self.update_gauges();
        removed
    }

    /// How many stored responses `selector` matches (in the larger tier: disk holds what
    /// memory holds, and more).
    pub fn count_matching(&self, selector: &PurgeSelector) -> usize {
        let memory = self
            .memory
            .iter()
            .filter(|(k, e)| k.matches(&e.tags, selector))
            .count();
        let disk = self.disk.as_ref().map_or(0, |d| d.count_if(selector));
        memory.max(disk)
    }

    /// Applies the replicated purges this node has not applied yet, in order. The first call
    /// (at start) loads the disk tier instead, dropping entries stored before a purge that
    /// matches them: what was purged while this node was down.
    pub fn apply_purges(self: &Arc<Self>, records: &Arc<Vec<PurgeRecord>>) {
        let (first, todo): (bool, Vec<PurgeRecord>) = {
            let mut p = self.purges.lock().unwrap_or_else(PoisonError::into_inner);
            let first = !p.initialized;
            p.initialized = true;
            let last = p.last;
            p.records = records.clone();
            let todo: Vec<_> = records.iter().filter(|r| r.seq > last).cloned().collect();
            if let Some(r) = records.last() {
                p.last = p.last.max(r.seq);
            }
            (first, todo)
        };
        if first {
            self.load_disk();
            return;
        }
        for r in todo {
            let n = self.remove_matching(&r.selector);
            tracing::info!(
                by = r.selector.kind(),
                value = r.selector.value(),
                removed = n,
                "cache purge applied"
            );
        }
    }

    /// Rebuilds the disk tier's index from its directory in the background, dropping what
    /// the purges known by then (and any that arrive meanwhile) removed.
    fn load_disk(self: &Arc<Self>) {
        if self.disk.is_none() {
            return;
        }
        let s = self.clone();
        let started = std::thread::Builder::new()
            .name("cache-disk-load".into())
            .spawn(move || {
                if let Some(d) = &s.disk {
                    d.load(&|k, tags, stored| s.purged_since(k, tags, stored));
                }
                s.update_gauges();
            });
        if let Err(e) = started {
            tracing::warn!(error = %e, "cannot start the cache disk loader; the disk tier starts empty");
        }
    }

    fn known_purges(&self) -> Arc<Vec<PurgeRecord>> {
        self.purges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .records
            .clone()
    }

    /// Whether a response stored at `stored_unix_ms` under `key` was purged since (by a purge
    /// replicated while this node was down, say).
    fn purged_since(&self, key: &StoreKey, tags: &[Box<str>], stored_unix_ms: u64) -> bool {
        self.known_purges()
            .iter()
            .filter(|p| p.at_unix_ms >= stored_unix_ms)
            .any(|p| key.matches(tags, &p.selector))
    }

    fn update_gauges(&self) {
        self.metrics.bytes[0].set(i64::try_from(self.memory.weighted_size()).unwrap_or(i64::MAX));
        self.metrics.entries[0].set(i64::try_from(self.memory.entry_count()).unwrap_or(i64::MAX));
        if let Some(d) = &self.disk {
            d.update_gauges();
        }
    }

    pub fn stats(&self) -> StoreStats {
        self.memory.run_pending_tasks();
        let (disk_entries, disk_bytes, disk_capacity_bytes, disk_dir) = match &self.disk {
            Some(d) => {
                let (n, b) = d.size();
                (n, b, d.capacity(), Some(d.dir().display().to_string()))
            }
            None => (0, 0, 0, None),
        };
        StoreStats {
            memory_entries: self.memory.entry_count(),
            memory_bytes: self.memory.weighted_size(),
            memory_capacity_bytes: self.memory_capacity,
            disk_entries,
            disk_bytes,
            disk_capacity_bytes,
            disk_dir,
        }
    }

    /// The `n` memory-tier entries with the most hits.
    pub fn top_keys(&self, n: usize) -> Vec<KeyStat> {
        let now = SystemTime::now();
        let mut all: Vec<KeyStat> = self
            .memory
            .iter()
            .map(|(k, e)| KeyStat {
                key: k.url().to_string(),
                encoding: variant_name(k.variant),
                hits: e.hits.load(Ordering::Relaxed),
                bytes: e.body.len(),
                age_seconds: e.policy.age(now).as_secs(),
                ttl_seconds: e.policy.time_to_live(now).as_secs(),
            })
            .collect();
        all.sort_by(|a, b| b.hits.cmp(&a.hits).then_with(|| a.key.cmp(&b.key)));
        all.truncate(n);
        all
    }
}

/// The content coding a variant number stands for.
pub fn variant_name(variant: u8) -> &'static str {
    match variant.checked_sub(1) {
        None => "identity",
        Some(i) => model::Codec::ALL
            .get(usize::from(i))
            .map_or("identity", |c| c.token()),
    }
}
