//! Listener lifecycle: open the sockets the config names, close the ones it no longer names,
//! retry binds that fail, and accept connections into the HTTP or TCP path.
//!
//! Listeners are keyed by address and protocol, not by name: renaming a listener keeps its
//! socket (no gap in accepting), and a removed listener stops accepting at once while its
//! connections drain for up to its `drain_timeout`.

pub mod io;
pub mod shape;

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
use crate::http::headers::{ClientCertHeaders, ClientHeaders};
use crate::signal::{signal, Signal, Trigger};
use crate::workers::{Balance, Workers};
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
    workers: Arc<Workers>,
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
    drain: Trigger,
    /// Ends connections that outlive the drain timeout.
    kill: Trigger,
    tracker: TaskTracker,
}

impl Running {
    /// Stops accepting and drains; resolves when every connection ended or was cut off.
    fn close(self) -> impl std::future::Future<Output = ()> {
        let timeout = self.drain_timeout;
        self.stop.cancel();
        self.drain.fire();
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
                kill.fire();
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
    pub fn new(shared: Arc<Shared>, workers: Arc<Workers>) -> Self {
        ListenerSet {
            shared,
            workers,
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
            let (drain, drain_signal) = signal();
            let (kill, kill_signal) = signal();
            let running = Running {
                name: name.to_string(),
                drain_timeout,
                stop: CancellationToken::new(),
                drain,
                kill,
                tracker: TaskTracker::new(),
            };
            lock(&self.states).insert(key.0, ListenerState::Binding);
            tokio::spawn(accept_loop(
                Arc::from(name),
                key.0,
                self.shared.clone(),
                self.workers.clone(),
                self.states.clone(),
                self.handed.clone(),
                running.stop.clone(),
                drain_signal,
                kill_signal,
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

fn bind(addr: SocketAddr, handed: &Handed) -> std::io::Result<std::net::TcpListener> {
    if let Some(l) = lock(handed).remove(&addr) {
        l.set_nonblocking(true)?;
        return Ok(l);
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
    Ok(sock.into())
}

#[allow(clippy::too_many_arguments)]
async fn accept_loop(
    name: Arc<str>,
    addr: SocketAddr,
    shared: Arc<Shared>,
    workers: Arc<Workers>,
    states: States,
    handed: Handed,
    stop: CancellationToken,
    drain: Signal,
    kill: Signal,
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
    // Every worker accepts on its own copy of the socket (one accept queue, shared).
    let mut copies = Vec::with_capacity(workers.slots());
    for _ in 1..workers.slots() {
        match listener.try_clone() {
            Ok(c) => copies.push(c),
            Err(e) => {
                tracing::warn!(listener = %name, error = %e, "cannot share the socket with every worker")
            }
        }
    }
    copies.push(listener);
    let copies = Mutex::new(copies);
    tracing::info!(listener = %name, %addr, "listening");
    set_state(ListenerState::Listening);
    workers.spawn_each(|| {
        let socket = lock(&copies).pop();
        let (name, balance, shared, stop, drain, kill, tracker) = (
            name.clone(),
            workers.balance().clone(),
            shared.clone(),
            stop.clone(),
            drain.clone(),
            kill.clone(),
            tracker.clone(),
        );
        async move {
            let Some(socket) = socket else {
                return;
            };
            match TcpListener::from_std(socket) {
                Ok(l) => {
                    accept_on(l, name, addr, balance, shared, stop, drain, kill, tracker).await
                }
                Err(e) => {
                    tracing::error!(listener = %name, error = %e, "cannot register the listener")
                }
            }
        }
    });
}

#[allow(clippy::too_many_arguments)]
async fn accept_on(
    listener: TcpListener,
    name: Arc<str>,
    addr: SocketAddr,
    balance: Balance,
    shared: Arc<Shared>,
    stop: CancellationToken,
    drain: Signal,
    kill: Signal,
    tracker: TaskTracker,
) {
    let slot = crate::workers::index();
    loop {
        tokio::select! {
            () = stop.cancelled() => {
                tracing::debug!(listener = %name, %addr, "accept loop stopped");
                return;
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Ahead of another worker: that one serves it (see Balance).
                    if let Some((to, handle)) = balance.place(slot) {
                        match stream.into_std() {
                            Ok(std) => {
                                let open = balance.open(to);
                                let (shared, drain) = (shared.clone(), drain.clone());
                                let conn = async move {
                                    if let Ok(stream) = TcpStream::from_std(std) {
                                        serve_accepted(stream, peer, addr, shared, drain).await;
                                    }
                                    drop(open);
                                };
                                tracker.spawn_on(crate::signal::until(conn, kill.clone()), handle);
                            }
                            Err(e) => tracing::debug!(%peer, error = %e, "cannot move a connection"),
                        }
                        continue;
                    }
                    let open = balance.open(slot);
                    let conn = serve_accepted(stream, peer, addr, shared.clone(), drain.clone());
                    tracker.spawn(crate::signal::until(
                        async move {
                            conn.await;
                            drop(open);
                        },
                        kill.clone(),
                    ));
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
    drain: Signal,
) {
    let _ = stream.set_nodelay(true);
    let (metrics, limits, trusted, protocol, tcp_pool, tls, passthrough, shaping) = {
        let snapshot = shared.snapshot.load();
        let Some(l) = snapshot.listener(bind) else {
            // Accepted in the instant the listener left the config.
            return;
        };
        (
            l.metrics.clone(),
            l.limits,
            l.proxy_protocol_from
                .iter()
                .any(|net| net.contains(peer.ip())),
            l.protocol,
            l.pool.clone(),
            l.tls.clone(),
            (!l.sni_routes.is_empty()).then(|| l.sni_routes.clone()),
            l.shaping.clone(),
        )
    };
    metrics.conns_total.inc();
    metrics.conns_active.inc();
    let _active = ActiveGuard(metrics.conns_active.clone());
    let mut stream = stream;
    let mut client = peer;
    let mut prefix = Bytes::new();
    if trusted {
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
    match protocol {
        ListenerProtocol::Http => {
            // An idle client costs only this small future until its first byte arrives (or the
            // header timeout passes); the HTTP state is allocated then, boxed, so the task of an
            // idle connection stays small.
            if prefix.is_empty() {
                match tokio::time::timeout(limits.header_timeout, stream.readable()).await {
                    Ok(Ok(())) => {}
                    _ => return,
                }
            }
            let mut client_cert = None;
            let (io, scheme) = match tls {
                None => (ListenerIo::plain(stream, prefix, metrics), "http"),
                Some(tls) => {
                    let Some((io, cert)) =
                        Box::pin(handshake(&tls, stream, prefix, peer, &shared, metrics)).await
                    else {
                        return;
                    };
                    client_cert = tls.client_cert_headers.clone().map(|(subject, sans)| {
                        Box::new(ClientCertHeaders {
                            subject_name: subject,
                            sans_name: sans,
                            values: cert.map(|c| (c.subject, c.sans)),
                        })
                    });
                    (io, "https")
                }
            };
            let io = io.with_shaping(shaping.as_ref());
            let conn = Arc::new(ConnCtx {
                shared,
                bind,
                peer: client,
                scheme,
                client_headers: ClientHeaders {
                    client_cert,
                    ..ClientHeaders::new(client.ip(), scheme)
                },
            });
            Box::pin(crate::http::serve_connection(io, conn, limits, drain)).await;
        }
        ListenerProtocol::Tcp => {
            let (pool, prefix) = match passthrough {
                // Server-first protocols (SMTP, MySQL) mean the upstream is joined at once.
                None => (tcp_pool, prefix),
                // TLS passthrough: the ClientHello's SNI picks the pool; its bytes are replayed.
                Some(routes) => {
                    match crate::tls::passthrough::read_client_hello(
                        &mut stream,
                        prefix,
                        limits.header_timeout,
                    )
                    .await
                    {
                        Ok((read, sni)) => {
                            let chosen = crate::tls::passthrough::pick(&routes, sni.as_deref())
                                .cloned()
                                .or(tcp_pool);
                            (chosen, read)
                        }
                        Err(e) => {
                            metrics.protocol.inc();
                            tracing::debug!(%peer, error = ?e, "no TLS ClientHello to route by");
                            return;
                        }
                    }
                }
            };
            let Some(pool) = pool else {
                return;
            };
            let io = ListenerIo::plain(stream, prefix, metrics).with_shaping(shaping.as_ref());
            Box::pin(crate::l4::serve(io, client, bind, pool, limits)).await;
        }
    }
}

/// Runs the TLS handshake within the listener's handshake timeout, then moves the record layer
/// into the kernel when the listener allows it and the kernel supports the negotiated suite.
/// A failed or stalled handshake ends the connection (rustls has sent its alert) and is counted.
async fn handshake(
    tls: &crate::tls::ListenerTlsConfig,
    stream: TcpStream,
    prefix: Bytes,
    peer: SocketAddr,
    shared: &Shared,
    metrics: Arc<crate::metrics::ListenerMetrics>,
) -> Option<(ListenerIo, Option<crate::tls::PeerCert>)> {
    let rewound = io::Rewound::new(prefix, stream);
    let kernel = crate::tls::ktls::probed().filter(|k| k.available());
    let Some(kernel) = kernel.filter(|_| tls.ktls != model::KtlsMode::Off) else {
        let stream = finish(tls, tls.acceptor.accept(rewound), peer, &metrics).await?;
        count(shared, &metrics, stream.get_ref().1, "userspace");
        let cert = client_cert(tls, stream.get_ref().1);
        return Some((ListenerIo::tls(stream, metrics), cert));
    };
    // The handshake runs over a CorkStream so that it stops reading at a record boundary.
    let corked = ktls::CorkStream::new(rewound);
    let stream = finish(tls, tls.acceptor.accept(corked), peer, &metrics).await?;
    let conn = stream.get_ref().1;
    let cert = client_cert(tls, conn);
    let suite = conn.negotiated_cipher_suite();
    if !suite.is_some_and(|s| kernel.supports(s)) {
        count(shared, &metrics, conn, "userspace");
        return Some((ListenerIo::tls_cork(stream, metrics), cert));
    }
    let (version, cipher, kind) = (
        crate::tls::version_label(conn.protocol_version()),
        crate::tls::suite_label(suite),
        crate::tls::handshake_label(conn.handshake_kind()),
    );
    match ktls::config_ktls_server(stream).await {
        Ok(k) => {
            shared
                .metrics
                .tls_connection(&metrics, version, cipher, "kernel", kind);
            Some((ListenerIo::ktls(k, metrics), cert))
        }
        Err(e) => {
            // The rustls state is consumed by the attempt: this connection ends.
            shared.metrics.ktls_failed(&metrics);
            tracing::warn!(%peer, error = %e, "the kernel refused kernel TLS for a connection");
            None
        }
    }
}

/// The client's certificate, when the listener passes it upstream.
fn client_cert(
    tls: &crate::tls::ListenerTlsConfig,
    conn: &rustls::ServerConnection,
) -> Option<crate::tls::PeerCert> {
    tls.client_cert_headers
        .as_ref()
        .and_then(|_| crate::tls::peer_cert(conn))
}

/// Waits for a handshake within the listener's timeout; counts failures.
async fn finish<S>(
    tls: &crate::tls::ListenerTlsConfig,
    accept: tokio_rustls::Accept<S>,
    peer: SocketAddr,
    metrics: &crate::metrics::ListenerMetrics,
) -> Option<tokio_rustls::server::TlsStream<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match tokio::time::timeout(tls.handshake_timeout, accept).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            metrics.tls_handshake_failed.inc();
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            metrics.tls_handshake_timeout.inc();
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

fn count(
    shared: &Shared,
    metrics: &crate::metrics::ListenerMetrics,
    conn: &rustls::ServerConnection,
    mode: &str,
) {
    shared.metrics.tls_connection(
        metrics,
        crate::tls::version_label(conn.protocol_version()),
        crate::tls::suite_label(conn.negotiated_cipher_suite()),
        mode,
        crate::tls::handshake_label(conn.handshake_kind()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_idle_connection_task_is_small() {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let _client = TcpStream::connect(addr).await.expect("connect");
        let (stream, peer) = l.accept().await.expect("accept");
        let shared = Arc::new(Shared::for_tests());
        let (_trigger, signal) = signal();
        let fut = serve_accepted(stream, peer, addr, shared, signal.clone());
        let size = std::mem::size_of_val(&fut);
        eprintln!("serve_accepted future: {size} bytes");
        let wrapped = crate::signal::until(fut, signal);
        eprintln!(
            "with the kill signal: {} bytes",
            std::mem::size_of_val(&wrapped)
        );
        // An idle connection must not hold protocol state: a few hundred bytes, not kilobytes.
        assert!(size < 1024, "{size} bytes");
    }
}
