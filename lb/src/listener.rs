//! Listener lifecycle: open the sockets the config names, close the ones it no longer names,
//! retry binds that fail, and accept connections into the HTTP or TCP path.
//!
//! Listeners are keyed by address and protocol, not by name: renaming a listener keeps its
//! socket (no gap in accepting), and a removed listener stops accepting at once while its
//! connections drain for up to its `drain_timeout`.

pub mod io;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use model::{Config, ListenerProtocol};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::http::ctx::ConnCtx;
use crate::http::framing::{FramingFlags, FramingWatch};
use crate::http::headers::ClientHeaders;
use crate::Shared;
use io::ListenerIo;

/// What the console shows about one listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerState {
    Binding,
    Listening,
    Failed(String),
}

/// Bind states by address, written by the accept tasks.
pub type States = Arc<Mutex<HashMap<SocketAddr, ListenerState>>>;

/// Sockets bound by someone else (a test on port 0, later systemd) for listeners to adopt.
pub type Handed = Arc<Mutex<HashMap<SocketAddr, std::net::TcpListener>>>;

type Key = (SocketAddr, ListenerProtocol);

pub struct ListenerSet {
    shared: Arc<Shared>,
    running: HashMap<Key, Running>,
    pub states: States,
    pub handed: Handed,
}

struct Running {
    name: String,
    drain_timeout: Duration,
    /// Stops the accept loop (and closes the socket).
    stop: CancellationToken,
    /// Asks connections to finish their requests and close.
    drain: CancellationToken,
    /// Ends connections that outlive the drain timeout.
    kill: CancellationToken,
    tracker: TaskTracker,
}

impl Running {
    /// Stops accepting and drains; resolves when every connection ended or was cut off.
    fn close(self) -> impl std::future::Future<Output = ()> {
        let timeout = self.drain_timeout;
        self.stop.cancel();
        self.drain.cancel();
        self.tracker.close();
        let Running {
            name,
            kill,
            tracker,
            ..
        } = self;
        async move {
            if tokio::time::timeout(timeout, tracker.wait()).await.is_err() {
                tracing::warn!(listener = %name, open = tracker.len(), "drain timeout: closing the remaining connections");
                kill.cancel();
                tracker.wait().await;
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps stay consistent whatever a panicking holder did; never stop serving over it.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ListenerSet {
    pub fn new(shared: Arc<Shared>) -> Self {
        ListenerSet {
            shared,
            running: HashMap::new(),
            states: Arc::default(),
            handed: Arc::default(),
        }
    }

    /// Opens new listeners and closes removed or re-bound ones. Connections already accepted
    /// carry on: removed listeners drain in the background.
    pub fn reconcile(&mut self, config: &Config) {
        let wanted: HashMap<Key, (&str, Duration)> = config
            .listeners
            .iter()
            .map(|l| ((l.bind, l.protocol), (l.name.as_str(), l.drain_timeout)))
            .collect();
        let gone: Vec<Key> = self
            .running
            .keys()
            .filter(|k| !wanted.contains_key(k))
            .copied()
            .collect();
        for key in gone {
            if let Some(r) = self.running.remove(&key) {
                tracing::info!(listener = %r.name, addr = %key.0, "listener removed; draining");
                lock(&self.states).remove(&key.0);
                tokio::spawn(r.close());
            }
        }
        for (key, (name, drain_timeout)) in wanted {
            if let Some(r) = self.running.get_mut(&key) {
                r.name = name.to_string();
                r.drain_timeout = drain_timeout;
                continue;
            }
            let running = Running {
                name: name.to_string(),
                drain_timeout,
                stop: CancellationToken::new(),
                drain: CancellationToken::new(),
                kill: CancellationToken::new(),
                tracker: TaskTracker::new(),
            };
            lock(&self.states).insert(key.0, ListenerState::Binding);
            tokio::spawn(accept_loop(
                Arc::from(name),
                key.0,
                self.shared.clone(),
                self.states.clone(),
                self.handed.clone(),
                running.stop.clone(),
                running.drain.clone(),
                running.kill.clone(),
                running.tracker.clone(),
            ));
            self.running.insert(key, running);
        }
    }

    /// Stops every listener and drains all connections, each for up to its drain timeout.
    pub async fn shutdown(&mut self) {
        let closing: Vec<_> = self.running.drain().map(|(_, r)| r.close()).collect();
        lock(&self.states).clear();
        for c in closing {
            c.await;
        }
    }

    /// Names of the running listeners by address.
    pub fn names(&self) -> Vec<(String, SocketAddr)> {
        self.running
            .iter()
            .map(|((addr, _), r)| (r.name.clone(), *addr))
            .collect()
    }
}

fn bind(addr: SocketAddr, handed: &Handed) -> std::io::Result<TcpListener> {
    if let Some(l) = lock(handed).remove(&addr) {
        l.set_nonblocking(true)?;
        return TcpListener::from_std(l);
    }
    let domain = socket2::Domain::for_address(addr);
    let sock = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(4096)?;
    TcpListener::from_std(sock.into())
}

#[allow(clippy::too_many_arguments)]
async fn accept_loop(
    name: Arc<str>,
    addr: SocketAddr,
    shared: Arc<Shared>,
    states: States,
    handed: Handed,
    stop: CancellationToken,
    drain: CancellationToken,
    kill: CancellationToken,
    tracker: TaskTracker,
) {
    let set_state = |s: ListenerState| {
        if !stop.is_cancelled() {
            lock(&states).insert(addr, s);
        }
    };
    let mut backoff = Duration::from_millis(25);
    let listener = loop {
        match bind(addr, &handed) {
            Ok(l) => break l,
            Err(e) => {
                if backoff == Duration::from_millis(25) {
                    tracing::debug!(listener = %name, %addr, error = %e, "bind failed; retrying");
                } else if backoff == Duration::from_millis(400) {
                    tracing::error!(listener = %name, %addr, error = %e, "cannot bind listener; retrying");
                }
                shared.metrics.listener_error(&name, "bind");
                set_state(ListenerState::Failed(e.to_string()));
                // Quick retries first: a listener moving to another protocol on the same address
                // frees it a moment later.
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    };
    tracing::info!(listener = %name, %addr, "listening");
    set_state(ListenerState::Listening);
    loop {
        tokio::select! {
            () = stop.cancelled() => {
                tracing::info!(listener = %name, %addr, "listener closed");
                return;
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let conn = serve_accepted(stream, peer, addr, shared.clone(), drain.clone());
                    let kill = kill.clone();
                    tracker.spawn(async move {
                        tokio::select! {
                            () = conn => {}
                            () = kill.cancelled() => {}
                        }
                    });
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(listener = %name, error = %e, "accept failed");
                    shared.metrics.listener_error(&name, "accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Decrements the active-connection gauge however the connection ends.
struct ActiveGuard(prometheus::IntGauge);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn serve_accepted(
    stream: TcpStream,
    peer: SocketAddr,
    bind: SocketAddr,
    shared: Arc<Shared>,
    drain: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let snapshot = shared.snapshot.load_full();
    let Some(listener) = snapshot.listener(bind) else {
        // Accepted in the instant the listener left the config.
        return;
    };
    let metrics = listener.metrics.clone();
    metrics.conns_total.inc();
    metrics.conns_active.inc();
    let _active = ActiveGuard(metrics.conns_active.clone());
    let limits = listener.limits;
    let mut stream = stream;
    let mut client = peer;
    let mut prefix = Bytes::new();
    if listener
        .proxy_protocol_from
        .iter()
        .any(|net| net.contains(peer.ip()))
    {
        match crate::proxy_protocol::read_header(&mut stream, limits.header_timeout).await {
            Ok(accepted) => {
                if let Some(source) = accepted.source {
                    // A v4 client sent as v4-mapped v6 is the v4 client (CIDRs, X-Forwarded-For).
                    client = SocketAddr::new(source.ip().to_canonical(), source.port());
                }
                prefix = accepted.leftover;
            }
            Err(e) => {
                metrics.bad_proxy_header.inc();
                tracing::debug!(%peer, error = %e, "refused a connection with a bad PROXY header");
                return;
            }
        }
    }
    let protocol = listener.protocol;
    let tcp_pool = listener.pool.clone();
    let io = ListenerIo::plain(stream, prefix, metrics);
    match protocol {
        ListenerProtocol::Http => {
            drop(snapshot);
            let framing = Arc::new(FramingFlags::default());
            let io = io.with_framing_watch(FramingWatch::new(
                limits.max_request_head_bytes,
                framing.clone(),
            ));
            let conn = Arc::new(ConnCtx {
                shared,
                bind,
                peer: client,
                scheme: "http",
                client_headers: ClientHeaders::new(client.ip(), "http"),
                framing,
            });
            crate::http::serve_connection(io, conn, limits, drain).await;
        }
        ListenerProtocol::Tcp => {
            let Some(pool) = tcp_pool else {
                return;
            };
            drop(snapshot);
            crate::l4::serve(io, client, bind, pool, limits, drain).await;
        }
    }
}
