//! The data plane: HTTP listeners, routing, pools, weighted round robin, active health checks and
//! the reverse proxy itself.
//!
//! **Architecture Invariant:** `lb` never imports `cluster-state`. It receives validated configs
//! on a watch channel, so its tests drive it without Raft.

mod error;
pub mod health;
mod listeners;
mod metrics;
mod proxy;
pub mod snapshot;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use model::{Config, Revisioned};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use error::{ProxyError, Side};
pub use health::{HealthTable, Target};
pub use listeners::ListenerState;
pub use metrics::LbMetrics;
pub use snapshot::RoutingSnapshot;

/// The running data plane. Dropping it (or calling `shutdown`) stops listeners and probes.
pub struct DataPlane {
    shared: Arc<proxy::Shared>,
    health: Arc<HealthTable>,
    listeners: Arc<Mutex<listeners::ListenerSet>>,
    task: JoinHandle<()>,
}

impl DataPlane {
    /// Starts following `config`: every revision is compiled into a new routing snapshot, and
    /// listeners and health checks are reconciled with it.
    pub fn spawn(
        mut config: watch::Receiver<Arc<Revisioned<Config>>>,
        metrics: LbMetrics,
    ) -> DataPlane {
        let shared = Arc::new(proxy::Shared::new(metrics.clone()));
        let health = Arc::new(HealthTable::default());
        let listeners = Arc::new(Mutex::new(listeners::ListenerSet::new(shared.clone())));
        let mut checker = health::HealthChecker::new(health.clone(), metrics.clone());
        let task = {
            let shared = shared.clone();
            let health = health.clone();
            let listeners = listeners.clone();
            tokio::spawn(async move {
                loop {
                    let current = config.borrow_and_update().clone();
                    let snap = RoutingSnapshot::compile(current.revision, &current.value, &health);
                    shared.snapshot.store(Arc::new(snap));
                    checker.reconcile(&current.value);
                    if let Ok(mut l) = listeners.lock() {
                        l.reconcile(&current.value);
                    }
                    metrics.set_revision(current.revision);
                    tracing::info!(revision = current.revision, "data plane applied revision");
                    if config.changed().await.is_err() {
                        break;
                    }
                }
                checker.stop();
            })
        };
        DataPlane {
            shared,
            health,
            listeners,
            task,
        }
    }

    /// Health observations, for DNS and the console.
    pub fn health(&self) -> Arc<HealthTable> {
        self.health.clone()
    }

    /// The revision whose routing snapshot serves requests now.
    pub fn revision(&self) -> u64 {
        self.shared.snapshot.load().revision
    }

    pub fn listener_states(&self) -> Vec<(String, SocketAddr, ListenerState)> {
        match self.listeners.lock() {
            Ok(l) => l.states(),
            Err(p) => p.into_inner().states(),
        }
    }

    pub fn shutdown(&self) {
        self.task.abort();
        if let Ok(mut l) = self.listeners.lock() {
            l.reconcile(&Config::empty());
        }
    }
}
