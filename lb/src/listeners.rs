//! Listener lifecycle: open the sockets the config names, close the ones it no longer names, and
//! retry binds that fail (an address in use, say) until they succeed or the listener goes away.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use model::Config;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::proxy::{self, Shared};

/// What the console shows about one listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerState {
    Listening,
    Failed(String),
}

type States = Arc<Mutex<HashMap<String, (SocketAddr, ListenerState)>>>;

pub struct ListenerSet {
    shared: Arc<Shared>,
    running: HashMap<String, Running>,
    states: States,
}

struct Running {
    bind: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl ListenerSet {
    pub fn new(shared: Arc<Shared>) -> Self {
        ListenerSet {
            shared,
            running: HashMap::new(),
            states: Arc::default(),
        }
    }

    pub fn states(&self) -> Vec<(String, SocketAddr, ListenerState)> {
        let map = match self.states.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let mut v: Vec<_> = map
            .iter()
            .map(|(n, (a, s))| (n.clone(), *a, s.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Opens new listeners and closes removed or re-bound ones. Connections already accepted
    /// carry on until they finish.
    pub fn reconcile(&mut self, config: &Config) {
        let wanted: HashMap<&str, SocketAddr> = config
            .listeners
            .iter()
            .map(|l| (l.name.as_str(), l.bind))
            .collect();
        self.running
            .retain(|name, r| wanted.get(name.as_str()) == Some(&r.bind));
        if let Ok(mut states) = self.states.lock() {
            states.retain(|name, (bind, _)| wanted.get(name.as_str()) == Some(bind));
        }
        for (name, bind) in wanted {
            if self.running.contains_key(name) {
                continue;
            }
            let (tx, rx) = oneshot::channel();
            tokio::spawn(serve_listener(
                Arc::from(name),
                bind,
                self.shared.clone(),
                self.states.clone(),
                rx,
            ));
            self.running.insert(
                name.to_string(),
                Running {
                    bind,
                    stop: Some(tx),
                },
            );
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
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

async fn serve_listener(
    name: Arc<str>,
    addr: SocketAddr,
    shared: Arc<Shared>,
    states: States,
    mut stop: oneshot::Receiver<()>,
) {
    let set_state = |s: ListenerState| {
        if let Ok(mut m) = states.lock() {
            m.insert(name.to_string(), (addr, s));
        }
    };
    let mut backoff = Duration::from_millis(25);
    let listener = loop {
        match bind(addr) {
            Ok(l) => break l,
            Err(e) => {
                if backoff == Duration::from_millis(25) {
                    tracing::error!(listener = %name, %addr, error = %e, "cannot bind listener; retrying");
                } else {
                    tracing::debug!(listener = %name, %addr, error = %e, "bind retry failed");
                }
                shared.metrics.listener_error(&name, "bind");
                set_state(ListenerState::Failed(e.to_string()));
                // Quick retries first: a listener moving between names on the same address
                // frees it a moment later.
                tokio::select! {
                    _ = &mut stop => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    };
    tracing::info!(listener = %name, %addr, "listening");
    set_state(ListenerState::Listening);
    let ctx = Arc::new(proxy::ListenerCtx {
        name: name.clone(),
        counters: shared.metrics.listener_counters(&name),
    });
    loop {
        tokio::select! {
            _ = &mut stop => {
                tracing::info!(listener = %name, %addr, "listener closed");
                return;
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_connection(stream, peer, ctx.clone(), shared.clone()));
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

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    listener: Arc<proxy::ListenerCtx>,
    shared: Arc<Shared>,
) {
    let svc = service_fn(move |req| proxy::handle(shared.clone(), listener.clone(), peer, req));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), svc);
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "connection ended with error");
    }
}
