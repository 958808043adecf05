//! The data plane: listeners, the HTTP pipeline and TCP proxying, routing, pools and balancing,
//! upstream connections, active health checks, metrics and the access log.
//!
//! **Architecture Invariant:** `lb` never imports `cluster-state`. It receives validated configs
//! on a watch channel, so its tests drive it without Raft.

pub mod accesslog;
mod balance;
mod body;
pub mod cache;
mod error;
pub mod filter;
pub mod health;
mod http;
mod l4;
mod listener;
mod metrics;
pub mod proxy_protocol;
mod signal;
pub mod snapshot;
pub mod tls;
mod upstream;
mod workers;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::{ArcSwap, ArcSwapOption};
use model::{Config, Revisioned};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

pub use accesslog::AccessLog;
pub use error::{CompileError, ProxyError, Side};
pub use health::{HealthTable, Target};
/// HTTP/1.1 toward clients on the wire: public for its fuzz target.
pub use http::h1::wire as h1_server_wire;
pub use listener::ListenerState;
pub use metrics::LbMetrics;
pub use snapshot::RoutingSnapshot;
/// HTTP/1.1 toward members on the wire: public for its fuzz target.
pub use upstream::h1::wire as h1_wire;

use crate::http::headers::RequestIds;
use listener::{Handed, ListenerSet, States};
use upstream::UpstreamRegistry;

/// State shared by every connection of every listener.
pub struct Shared {
    pub snapshot: ArcSwap<RoutingSnapshot>,
    pub metrics: LbMetrics,
    pub access_log: Option<AccessLog>,
    pub request_ids: RequestIds,
    /// The response cache of every caching route.
    pub cache: Arc<cache::CacheStore>,
    seed: RandomState,
}

impl Shared {
    /// One random draw for a filter; fast and unpredictable enough for sampling, not for keys.
    pub fn random(&self) -> u64 {
        thread_local! {
            static STATE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
        }
        STATE.with(|s| {
            let mut x = s.get();
            if x == 0 {
                x = self.seed.hash_one(std::thread::current().id()) | 1;
            }
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            s.set(x);
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        })
    }
}

#[cfg(test)]
impl Shared {
    pub(crate) fn for_tests() -> Shared {
        let seed = RandomState::new();
        Shared {
            snapshot: ArcSwap::from_pointee(RoutingSnapshot::default()),
            metrics: LbMetrics::new(&prometheus::Registry::new()).unwrap_or_else(|e| panic!("{e}")),
            access_log: None,
            request_ids: RequestIds::new(1),
            cache: cache::CacheStore::open(
                &cache::StoreOptions::default(),
                metrics::CacheMetrics::unregistered(),
            ),
            seed,
        }
    }
}

/// Options of the data plane that come from the node, not the replicated config.
#[derive(Default)]
pub struct Options {
    pub access_log: Option<AccessLog>,
    /// Worker threads, each a single-threaded runtime that accepts on every listener. 0 runs
    /// everything on the caller's runtime.
    pub workers: usize,
    /// Sizes of the response cache's tiers.
    pub cache: cache::StoreOptions,
}

/// A revision the data plane could not compile; the previous one keeps serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileAlarm {
    pub revision: u64,
    pub serving: u64,
    pub error: String,
}

/// The running data plane. `shutdown` drains it; dropping it stops the reconcile task.
pub struct DataPlane {
    shared: Arc<Shared>,
    certs: Arc<tls::CertStore>,
    health: Arc<HealthTable>,
    states: States,
    handed: Handed,
    names: Arc<ArcSwap<Vec<(String, SocketAddr)>>>,
    alarm: Arc<ArcSwapOption<CompileAlarm>>,
    /// Rate-limit state kept across revisions; global limits report and merge through it.
    limits: Arc<filter::limit::LimitRegistry>,
    /// The last revision whose listeners and health checks are reconciled too.
    applied: Arc<std::sync::atomic::AtomicU64>,
    stop: Arc<Notify>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl DataPlane {
    /// Starts following `config`: every revision is compiled into a new routing snapshot, and
    /// listeners and health checks are reconciled with it.
    pub fn spawn(
        config: watch::Receiver<Arc<Revisioned<Config>>>,
        metrics: LbMetrics,
    ) -> DataPlane {
        DataPlane::spawn_with(config, metrics, Options::default())
    }

    pub fn spawn_with(
        mut config: watch::Receiver<Arc<Revisioned<Config>>>,
        metrics: LbMetrics,
        options: Options,
    ) -> DataPlane {
        let seed = RandomState::new();
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(RoutingSnapshot::default()),
            metrics: metrics.clone(),
            access_log: options.access_log,
            request_ids: RequestIds::new(seed.hash_one("request-ids")),
            cache: cache::CacheStore::open(&options.cache, metrics.cache.clone()),
            seed,
        });
        let health = Arc::new(HealthTable::default());
        let certs: Arc<tls::CertStore> = Arc::default();
        let workers = match workers::Workers::start(options.workers) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "cannot start data-plane workers; serving from the main runtime");
                workers::Workers::none()
            }
        };
        let slots = workers.slots();
        let workers = Arc::new(workers);
        let mut listeners = ListenerSet::new(shared.clone(), workers.clone());
        let states = listeners.states.clone();
        let handed = listeners.handed.clone();
        let names: Arc<ArcSwap<Vec<(String, SocketAddr)>>> = Arc::default();
        let alarm: Arc<ArcSwapOption<CompileAlarm>> = Arc::default();
        let stop = Arc::new(Notify::new());
        let applied: Arc<std::sync::atomic::AtomicU64> = Arc::default();
        let upstreams = UpstreamRegistry::default();
        let limits: Arc<filter::limit::LimitRegistry> = Arc::default();
        let mut checker = health::HealthChecker::new(health.clone(), metrics.clone());
        let task = {
            let certs = certs.clone();
            let limits = limits.clone();
            let (shared, health, names, alarm, stop, applied) = (
                shared.clone(),
                health.clone(),
                names.clone(),
                alarm.clone(),
                stop.clone(),
                applied.clone(),
            );
            tokio::spawn(async move {
                // Before the first listener opens: connections decide on kernel TLS by it.
                let kernel = tls::ktls::probe().await;
                metrics.set_kernel_tls(kernel.available());
                loop {
                    let current = config.borrow_and_update().clone();
                    let env = snapshot::CompileEnv {
                        health: &health,
                        metrics: &metrics,
                        upstreams: &upstreams,
                        workers: slots,
                        certs: &certs,
                        limits: &limits,
                    };
                    match RoutingSnapshot::compile(current.revision, &current.value, &env) {
                        Ok(snap) => {
                            shared.snapshot.store(Arc::new(snap));
                            alarm.store(None);
                            checker.reconcile(&current.value);
                            listeners.reconcile(&current.value);
                            names.store(Arc::new(listeners.names()));
                            applied.store(current.revision, std::sync::atomic::Ordering::Release);
                            metrics.set_revision(current.revision);
                            tracing::info!(
                                revision = current.revision,
                                "data plane applied revision"
                            );
                        }
                        Err(e) => {
                            let serving = shared.snapshot.load().revision;
                            tracing::error!(revision = current.revision, serving, error = %e, "cannot compile revision; keeping the previous one");
                            metrics.compile_error();
                            alarm.store(Some(Arc::new(CompileAlarm {
                                revision: current.revision,
                                serving,
                                error: e.to_string(),
                            })));
                        }
                    }
                    tokio::select! {
                        changed = config.changed() => if changed.is_err() { break },
                        () = stop.notified() => break,
                    }
                }
                checker.stop();
                listeners.shutdown().await;
                drop(listeners);
                if let Some(mut w) = Arc::into_inner(workers) {
                    w.stop().await;
                }
            })
        };
        DataPlane {
            shared,
            certs,
            health,
            states,
            handed,
            names,
            alarm,
            limits,
            applied,
            stop,
            task: Mutex::new(Some(task)),
        }
    }

    /// The certificates HTTPS listeners serve; the node replaces them when the credential
    /// store changes, and new handshakes use them at once.
    pub fn certs(&self) -> Arc<tls::CertStore> {
        self.certs.clone()
    }

    /// The response cache: purges, statistics and top keys for the API and console.
    pub fn cache(&self) -> Arc<cache::CacheStore> {
        self.shared.cache.clone()
    }

    /// Measures the global rate limits' demand for the other nodes; `None` without any.
    pub fn global_limits_report(&self) -> Option<serde_json::Value> {
        self.limits.global_report()
    }

    /// Takes another node's demand report of the global rate limits.
    pub fn global_limits_merge(&self, from: u64, report: &serde_json::Value) {
        self.limits.global_merge(from, report);
    }

    /// Each caching route's lookups: `(route, [hit, miss, stale, revalidated, bypass],
    /// coalesced)`.
    pub fn cache_routes(&self) -> Vec<(String, [u64; 5], u64)> {
        self.shared.snapshot.load().cache_routes()
    }

    /// What the kernel offers for TLS: `Some(description)` when it takes some suite, `None`
    /// without kernel TLS (or before the probe ran).
    pub fn kernel_tls(&self) -> Option<String> {
        tls::ktls::probed()
            .filter(|k| k.available())
            .map(|k| k.describe())
    }

    /// Health observations, for DNS and the console.
    pub fn health(&self) -> Arc<HealthTable> {
        self.health.clone()
    }

    /// The revision whose routing snapshot serves requests now.
    pub fn revision(&self) -> u64 {
        self.shared.snapshot.load().revision
    }

    /// Waits (up to `limit`) until revision `revision` or a later one serves requests and every
    /// listener has finished its first bind attempt. Returns whether that happened in time.
    pub async fn wait_serving(&self, revision: u64, limit: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let applied = self.applied.load(std::sync::atomic::Ordering::Acquire) >= revision
                || self.compile_alarm().is_some();
            let bound = self
                .listener_states()
                .iter()
                .all(|(_, _, s)| *s != ListenerState::Binding);
            if applied && bound {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// The last revision that failed to compile, while no later one succeeded.
    pub fn compile_alarm(&self) -> Option<CompileAlarm> {
        self.alarm.load_full().map(|a| (*a).clone())
    }

    /// Gives the data plane a socket already bound to `addr`; the listener the config names on
    /// that address adopts it instead of binding. Tests bind port 0 this way without races.
    pub fn hand_over(&self, listener: std::net::TcpListener) -> std::io::Result<SocketAddr> {
        let addr = listener.local_addr()?;
        self.handed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(addr, listener);
        Ok(addr)
    }

    pub fn listener_states(&self) -> Vec<(String, SocketAddr, ListenerState)> {
        let states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        let mut v: Vec<_> = self
            .names
            .load()
            .iter()
            .map(|(name, addr)| {
                let state = states.get(addr).cloned().unwrap_or(ListenerState::Binding);
                (name.clone(), *addr, state)
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Stops accepting on every listener, lets requests in flight finish (each listener's drain
    /// timeout), and stops health checks.
    pub async fn shutdown(&self) {
        self.stop.notify_one();
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = task {
            let _ = t.await;
        }
        if let Some(log) = &self.shared.access_log {
            log.flush().await;
        }
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        if let Some(t) = self
            .task
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            t.abort();
        }
    }
}
