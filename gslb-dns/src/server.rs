//! Running the server: UDP on our own threads (the fast path, see [`crate::udp`]), TCP in
//! hickory's loop, both around the one [`Handler`], plus the task that compiles each
//! configuration revision and swaps it in.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_server::Server;
use model::{Config, HealthView, Revisioned};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::handler::Handler;
use crate::{DnsError, DnsMetrics, ZonesSnapshot};

/// How long a TCP client may stay idle between queries before its connection is closed.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Responses buffered per TCP connection before the writer applies back-pressure.
const TCP_RESPONSE_BUFFER: usize = 32;

/// A running authoritative DNS server.
pub struct DnsServer {
    server: Server<SharedHandler>,
    udp_threads: Vec<std::thread::JoinHandle<()>>,
    udp_stop: Arc<std::sync::atomic::AtomicBool>,
    /// Taken by `shutdown`.
    config_task: Option<JoinHandle<()>>,
    alarm: CompileAlarm,
    snapshot: Arc<ArcSwap<ZonesSnapshot>>,
}

/// The last failed compile, cleared by the next good one: the console shows it as an alarm.
#[derive(Clone, Debug, Default)]
pub struct CompileAlarm(Arc<std::sync::Mutex<Option<String>>>);

impl CompileAlarm {
    /// What failed, naming the revision that failed and the one still served.
    pub fn get(&self) -> Option<String> {
        match self.0.lock() {
            Ok(a) => a.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn set(&self, alarm: Option<String>) {
        match self.0.lock() {
            Ok(mut a) => *a = alarm,
            Err(p) => *p.into_inner() = alarm,
        }
    }
}

impl DnsServer {
    /// Serves DNS on the given already-bound sockets until shutdown; zone changes arriving on
    /// `config` take effect without restart.
    ///
    /// Must be called from inside a tokio runtime. If the current revision does not compile, the
    /// server starts with no zones (answering REFUSED) and waits for a revision that does.
    pub fn spawn(
        udp: Vec<std::net::UdpSocket>,
        tcp: TcpListener,
        mut config: watch::Receiver<Arc<Revisioned<Config>>>,
        health: Arc<dyn HealthView>,
        metrics: DnsMetrics,
        geoip: Option<Arc<dyn crate::GeoLocator>>,
        keys: crate::TsigKeyStore,
    ) -> Result<DnsServer, DnsError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| DnsError::NoRuntime)?;

        let first = config.borrow_and_update().clone();
        let snapshot = Arc::new(ArcSwap::from_pointee(ZonesSnapshot::default()));
        let alarm = CompileAlarm::default();
        let mut notifier =
            crate::notify::Notifier::new(keys.clone(), metrics.clone(), runtime.clone());
        apply(&first, &snapshot, &metrics, &alarm, &geoip, &mut notifier);

        let handle = snapshot.clone();
        let handler = Arc::new(Handler {
            snapshot: snapshot.clone(),
            health,
            metrics: metrics.clone(),
            rates: crate::rrl::RateTable::default(),
            keys,
        });
        let udp_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let udp_threads =
            crate::udp::spawn(udp, handler.clone(), runtime.clone(), udp_stop.clone())
                .map_err(DnsError::Udp)?;
        let mut server = Server::new(SharedHandler(handler));
        server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);

        let shutdown = server.shutdown_token().clone();
        let task_alarm = alarm.clone();
        let config_task = runtime.spawn(async move {
            loop {
                tokio::select! {
                    changed = config.changed() => {
                        if changed.is_err() {
                            // The publisher is gone; keep serving the last good snapshot.
                            info!("dns config channel closed; serving the last revision");
                            return;
                        }
                    }
                    _ = shutdown.cancelled() => return,
                }
                let next = config.borrow_and_update().clone();
                apply(
                    &next,
                    &snapshot,
                    &metrics,
                    &task_alarm,
                    &geoip,
                    &mut notifier,
                );
            }
        });
        Ok(DnsServer {
            server,
            udp_threads,
            udp_stop,
            config_task: Some(config_task),
            alarm,
            snapshot: handle,
        })
    }

    /// The answers being served now, for `meridian dns explain`.
    pub fn snapshot(&self) -> Arc<ArcSwap<ZonesSnapshot>> {
        self.snapshot.clone()
    }

    /// The compile alarm of this server, for the console.
    pub fn alarm(&self) -> CompileAlarm {
        self.alarm.clone()
    }

    /// Stops accepting queries, waits for the socket tasks to end and stops following config.
    pub async fn shutdown(mut self) {
        self.udp_stop
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Err(error) = self.server.shutdown_gracefully().await {
            warn!(%error, "dns server ended with an error");
        }
        let threads = std::mem::take(&mut self.udp_threads);
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        // The config task watches the same cancellation token, so this returns promptly.
        if let Some(task) = self.config_task.take() {
            if let Err(error) = task.await {
                warn!(%error, "dns config task failed");
            }
        }
    }
}

/// The handler hickory's TCP loop calls; the UDP threads share it.
struct SharedHandler(Arc<Handler>);

#[async_trait::async_trait]
impl hickory_server::server::RequestHandler for SharedHandler {
    async fn handle_request<
        R: hickory_server::server::ResponseHandler,
        T: hickory_server::net::runtime::Time,
    >(
        &self,
        request: &hickory_server::server::Request,
        response_handle: R,
    ) -> hickory_server::server::ResponseInfo {
        self.0
            .handle_request::<R, T>(request, response_handle)
            .await
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        // The UDP threads stop within their poll interval.
        self.udp_stop
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Compiles `config` and swaps it in; on error keeps the previous snapshot and says so.
fn apply(
    config: &Revisioned<Config>,
    store: &ArcSwap<ZonesSnapshot>,
    metrics: &DnsMetrics,
    alarm: &CompileAlarm,
    geoip: &Option<Arc<dyn crate::GeoLocator>>,
    notifier: &mut crate::notify::Notifier,
) {
    match ZonesSnapshot::compile(&config.value, config.revision) {
        Ok(mut snapshot) => {
            snapshot.set_geoip(geoip.clone());
            snapshot.count_answers(metrics);
            snapshot.continue_from(&store.load());
            notifier.update(&snapshot);
            store.store(Arc::new(snapshot));
            alarm.set(None);
            metrics.set_revision(config.revision);
            info!(revision = config.revision, "dns zones compiled");
        }
        Err(err) => {
            metrics.compile_failed();
            alarm.set(Some(format!(
                "DNS: revision {} failed to compile ({err}); still serving revision {}",
                config.revision,
                store.load().revision()
            )));
            error!(
                revision = config.revision,
                kept = store.load().revision(),
                error = %err,
                "dns zones failed to compile; keeping the previous revision"
            );
        }
    }
}
