//! Upstream connections: one pooled client per pool, built from the pool's settings and kept
//! across revisions while the settings stay the same, so a config change never drops an idle
//! keepalive connection. New connections are counted, which gives the reuse ratio.
//!
//! **Architecture Invariant:** this state lives outside the routing snapshot, keyed by the
//! stable pool name and its settings; the snapshot holds an `Arc` to the client it compiled.

mod connector;

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use model::{UpstreamProtocol, UpstreamSettings};
use std::sync::Arc;

use crate::body::Body;
use crate::metrics::LbMetrics;

pub use connector::CountingConnector;

/// The pooled client of one pool.
pub type UpstreamClient = Client<CountingConnector, Body>;

/// Clients by pool name and settings.
#[derive(Default)]
pub struct UpstreamRegistry {
    clients: Mutex<HashMap<String, (UpstreamSettings, Arc<UpstreamClient>)>>,
}

impl UpstreamRegistry {
    /// The client for `pool` with `settings`: the existing one when nothing changed.
    pub fn client(
        &self,
        pool: &str,
        settings: UpstreamSettings,
        metrics: &LbMetrics,
    ) -> Arc<UpstreamClient> {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((s, c)) = clients.get(pool) {
            if *s == settings {
                return c.clone();
            }
        }
        let client = Arc::new(build(
            settings,
            CountingConnector::new(settings, metrics.pool(pool).connections),
        ));
        clients.insert(pool.to_string(), (settings, client.clone()));
        client
    }

    /// Forgets the clients of pools that left the config; snapshots still holding one keep it
    /// until they are dropped, so requests in flight finish.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|name, _| keep(name));
    }
}

fn build(settings: UpstreamSettings, connector: CountingConnector) -> UpstreamClient {
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(settings.idle_timeout)
        .pool_max_idle_per_host(settings.max_idle_per_member)
        // The pipeline sets Host from the client's request; the member's address is no host.
        .set_host(false);
    if settings.protocol == UpstreamProtocol::Http2 {
        b.http2_only(true);
    }
    b.build(connector)
}
