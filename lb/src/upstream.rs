//! Upstream connections: one set per pool and worker, built from the pool's settings and kept
//! across revisions while the settings stay the same, so a config change never drops an idle
//! keepalive connection. New connections are counted, which gives the reuse ratio.
//!
//! **Architecture Invariant:** this state lives outside the routing snapshot, keyed by the
//! stable pool name and its settings; the snapshot holds an `Arc` to the client it compiled.

pub(crate) mod h1;
mod h2;
pub mod tls;

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use http_body_util::BodyExt;
use model::{UpstreamProtocol, UpstreamSettings};
use std::sync::Arc;

use crate::body::Body;
use crate::metrics::LbMetrics;

pub use h2::H2Error;

/// The connections of one pool, one set per data-plane worker so that a request never waits on
/// a connection driven by another core.
pub struct UpstreamClient {
    per_worker: Box<[Conns]>,
}

/// Idle connections per member for HTTP/1.1, one multiplexed connection per member for HTTP/2.
enum Conns {
    Http1(Arc<h1::H1Pool>),
    Http2(h2::H2Conns),
}

/// Why an upstream exchange failed.
#[derive(Debug)]
pub enum SendError {
    /// Nothing reached the member: another may be tried.
    Connect,
    Other(String),
}

impl UpstreamClient {
    /// Sends `req` to `member`. For HTTP/1.1 the request URI's authority is the member; for
    /// HTTP/2 it is the client's host and `member` is where the connection goes.
    pub async fn send(
        &self,
        member: std::net::SocketAddr,
        req: http::Request<Body>,
        upgrade: bool,
    ) -> Result<http::Response<Body>, SendError> {
        let slot = crate::workers::index() % self.per_worker.len().max(1);
        let Some(conns) = self.per_worker.get(slot) else {
            return Err(SendError::Other("no upstream connections".into()));
        };
        match conns {
            Conns::Http1(pool) => pool.send(member, req, upgrade).await,
            Conns::Http2(c) => match c.send(member, req).await {
                Ok(resp) => Ok(resp.map(|b| b.map_err(Into::into).boxed())),
                Err(H2Error::Connect(e)) => {
                    tracing::debug!(%member, error = %e, "upstream HTTP/2 connect failed");
                    Err(SendError::Connect)
                }
                Err(H2Error::Exchange(e)) => Err(SendError::Other(error_chain(&e))),
            },
        }
    }
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// Clients by pool name and settings.
#[derive(Default)]
pub struct UpstreamRegistry {
    clients: Mutex<HashMap<String, (Key, Arc<UpstreamClient>)>>,
}

/// What a pool's connections depend on: a change of any part starts a fresh set.
type Key = (UpstreamSettings, Option<Arc<model::PoolTlsSpec>>);

impl UpstreamRegistry {
    /// The client for `pool` with `settings`: the existing one when nothing changed.
    pub fn client(
        &self,
        pool: &str,
        settings: UpstreamSettings,
        tls: Option<(Arc<model::PoolTlsSpec>, Arc<tls::UpstreamTls>)>,
        metrics: &LbMetrics,
        workers: usize,
    ) -> Arc<UpstreamClient> {
        let key: Key = (settings, tls.as_ref().map(|(spec, _)| spec.clone()));
        let tls = tls.map(|(_, t)| t);
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((k, c)) = clients.get(pool) {
            if *k == key {
                return c.clone();
            }
        }
        let opened = metrics.pool(pool).connections;
        let per_worker = (0..workers.max(1))
            .map(|_| match settings.protocol {
                UpstreamProtocol::Http1 => Conns::Http1(Arc::new(h1::H1Pool::new(
                    settings.connect_timeout,
                    settings.idle_timeout,
                    settings.max_idle_per_member,
                    opened.clone(),
                    tls.clone(),
                ))),
                UpstreamProtocol::Http2 => Conns::Http2(h2::H2Conns::new(
                    settings.connect_timeout,
                    settings.idle_timeout,
                    opened.clone(),
                    tls.clone(),
                )),
            })
            .collect();
        let client = Arc::new(UpstreamClient { per_worker });
        clients.insert(pool.to_string(), (key, client.clone()));
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
