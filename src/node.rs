//! Node start-up: opens the cluster state, then starts each plane on the replicated config and
//! the console on top. The order matters: planes subscribe before the console can propose.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use cluster_state::ClusterNode;
use model::{Config, Revisioned};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::backend::NodeBackend;
use crate::node_config::NodeConfig;

/// File in the data dir holding the first admin password until the operator deletes it.
pub const INITIAL_PASSWORD_FILE: &str = "initial-admin-password";

/// A running node.
pub struct Node {
    /// A witness: votes, serves no traffic.
    pub witness: bool,
    /// The empty config a witness's planes follow (kept open while the node runs).
    _witness_config: Option<watch::Sender<Arc<Revisioned<Config>>>>,
    /// `http://` or `https://` and the console's address.
    pub admin_url: String,
    pub dns: SocketAddr,
    pub cluster_addr: SocketAddr,
    /// Set when this start created the admin user.
    pub initial_password: Option<String>,
    pub data_dir: PathBuf,
    pub cluster: Arc<ClusterNode>,
    /// Seals the credential store's private keys.
    pub cluster_key: Arc<credentials::ClusterKey>,
    dataplane: Arc<lb::DataPlane>,
    dns_server: gslb_dns::DnsServer,
    admin_task: tokio::task::JoinHandle<()>,
    /// Feeds the console's traffic charts.
    sampler_task: tokio::task::JoinHandle<()>,
    /// Keeps the data plane's certificates in step with the credential store.
    certs_task: tokio::task::JoinHandle<()>,
    /// Follows (and, on the leader, rotates) the cluster's session-ticket keys.
    tickets_task: tokio::task::JoinHandle<()>,
    purges_task: tokio::task::JoinHandle<()>,
    /// Opens the credential store's TSIG keys for the DNS server.
    tsig_task: tokio::task::JoinHandle<()>,
    /// Cluster-wide rate limits' and site health's gossip.
    limits_tasks: [tokio::task::JoinHandle<()>; 4],
    /// On the leader: raises the validation schema once every member supports more.
    schema_task: tokio::task::JoinHandle<()>,
    /// Renews the node's cluster certificate before it expires (nodes with cluster TLS).
    renew_task: Option<tokio::task::JoinHandle<()>>,
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`). hickory-server logs every query at
/// `info`, which at DNS rates would flood the journal, so it is held to `warn` unless `RUST_LOG`
/// names it.
pub fn init_logging() {
    let mut directives = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string());
    // Library internals stay at warn (hyper at error: it warns once per idle client that times
    // out; openraft at error) unless RUST_LOG names the library.
    for (lib, level) in [
        ("hickory", "hickory_server=warn"),
        // openraft logs every failed heartbeat to a down peer (several lines a second); the
        // cluster layer says once when a peer stops answering and when it is back.
        (
            "openraft",
            "openraft=error,openraft::replication=off,openraft::engine::handler::replication_handler=off",
        ),
        ("sled", "sled=warn"),
        ("hyper", "hyper=error,hyper_util=error"),
    ] {
        if !directives.contains(lib) {
            directives.push(',');
            directives.push_str(level);
        }
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,hickory_server=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub async fn serve(
    path: &Path,
    join: Option<String>,
    token: Option<String>,
) -> anyhow::Result<ExitCode> {
    init_logging();
    let mut cfg = NodeConfig::load(path)?;
    if join.is_some() {
        cfg.join = join;
    }
    if let Some(token) = token {
        cfg.join_token = Some(crate::node_config::JoinTokenText(token));
    }
    let node = Node::start(&cfg).await?;
    if node.initial_password.is_some() {
        eprintln!(
            "meridian: created user admin; its one-time password is in {} (read it, then delete the file)",
            node.data_dir.join(INITIAL_PASSWORD_FILE).display()
        );
    }
    node.wait_serving().await;
    node.print_ready();
    let healthy = tokio::select! {
        _ = wait_for_shutdown_signal() => true,
        _ = node.out_of_service() => false,
    };
    node.shutdown().await;
    if healthy {
        Ok(ExitCode::SUCCESS)
    } else {
        // A node whose Raft hit a fatal error must not linger on a frozen config: exit so the
        // supervisor (systemd: Restart=on-failure) restarts it.
        tracing::error!("raft is out of service; exiting");
        Ok(ExitCode::from(70))
    }
}

pub async fn wait_for_shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("shutting down");
}

impl Node {
    pub async fn start(cfg: &NodeConfig) -> anyhow::Result<Node> {
        tracing::info!(node = %cfg.name, id = cfg.node_id, data_dir = %cfg.data_dir.display(), "starting");
        create_private_dir(&cfg.data_dir)?;

        let rpc = TcpListener::bind(cfg.cluster_bind)
            .await
            .with_context(|| format!("cannot bind cluster RPC on {}", cfg.cluster_bind))?;
        let cluster_addr = rpc.local_addr()?;
        let advertise = cfg
            .cluster_advertise
            .clone()
            .unwrap_or_else(|| cluster_addr.to_string());
        let tls_dir = cfg.data_dir.join("cluster-tls");
        let (secret, tls) = cluster_credentials(cfg, &tls_dir, &advertise).await?;
        let cluster_tls = tls.clone();
        let cluster_cfg = cluster_state::NodeConfig {
            node_id: cfg.node_id,
            data_dir: cfg.data_dir.clone(),
            rpc_advertise: advertise.clone(),
            cluster_secret: secret.clone(),
            tls,
            witness: cfg.witness,
            storage: cfg.storage,
        };
        // Seals private keys in the credential store; derived, never written anywhere.
        let cluster_key = Arc::new(credentials::ClusterKey::derive(&secret));
        let cluster = match &cfg.join {
            None => ClusterNode::start(cluster_cfg, rpc)
                .await
                .context("cannot start the cluster state")?,
            Some(seed) => join_cluster(cluster_cfg, rpc, seed).await?,
        };
        let mut renew_task = None;
        if let Some(tls) = cluster_tls {
            renew_task = Some(tokio::spawn(crate::cluster_tls::keep_renewed(
                Arc::downgrade(&cluster),
                tls,
                tls_dir.clone(),
                cfg.node_id,
                advertise,
                cluster_key.clone(),
                cfg.cluster_cert_renew_days
                    .unwrap_or(crate::cluster_tls::RENEW_BEFORE_DAYS),
            )));
            cluster.set_enroller(Arc::new(crate::cluster_tls::NodeEnroller {
                cluster: Arc::downgrade(&cluster),
                key: cluster_key.clone(),
                secret: zeroize::Zeroizing::new(secret.clone()),
            }));
            if let Err(e) = crate::cluster_tls::publish_ca(&cluster, &tls_dir).await {
                tracing::warn!(error = %format!("{e:#}"), "the cluster CA is not replicated yet; nodes cannot enroll until it is");
            }
        }

        let initial_password = ensure_admin(&cluster, &cfg.data_dir).await?;

        let registry = prometheus::Registry::new();
        // A witness's planes follow an empty config: it binds no listener, probes nothing and
        // answers no zone, whatever the cluster config says.
        let (witness_tx, config_rx) = if cfg.witness {
            tracing::info!("witness: votes in the cluster, serves no traffic");
            let (tx, rx) = witness_config()?;
            (Some(tx), rx)
        } else {
            (None, follow_config(&cluster))
        };
        let lb_metrics = lb::LbMetrics::new(&registry)?;
        let access_log = open_access_log(cfg, &lb_metrics)?;
        let dataplane = Arc::new(lb::DataPlane::spawn_with(
            config_rx.clone(),
            lb_metrics,
            lb::Options {
                access_log,
                workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
                cache: cfg.cache(),
            },
        ));

        let ocsp_dir = cfg.ocsp_dir();
        if let Err(e) = std::fs::create_dir_all(&ocsp_dir) {
            tracing::warn!(dir = %ocsp_dir.display(), error = %e, "cannot create the OCSP response directory");
        }
        let certs_task =
            crate::certs::follow(&cluster, cluster_key.clone(), dataplane.certs(), ocsp_dir);
        let tickets_task =
            crate::tickets::spawn(cluster.clone(), cluster_key.clone(), dataplane.certs());
        let purges_task = follow_purges(&cluster, dataplane.cache());
        let (tsig_keys, tsig_task) = follow_tsig_keys(&cluster, cluster_key.clone());
        let site_health =
            crate::site_health::SiteHealth::new(cluster.node_id(), dataplane.health());
        // A witness takes no share of global limits and casts no site-health vote: it serves
        // and probes nothing.
        let (limits_send, limits_receive, health_send, health_receive) = if cfg.witness {
            let idle = || tokio::spawn(async {});
            (idle(), idle(), idle(), idle())
        } else {
            let (ls, lr) = crate::global_limits::spawn(cluster.clone(), dataplane.clone());
            let (hs, hr) = crate::site_health::spawn(cluster.clone(), site_health.clone());
            (ls, lr, hs, hr)
        };

        let dns_bind = if cfg.witness {
            SocketAddr::from(([127, 0, 0, 1], 0))
        } else {
            cfg.dns_bind
        };
        let (udp, tcp) = bind_dns(dns_bind).await?;
        let dns_metrics = gslb_dns::DnsMetrics::new(&registry)?;
        let dns = udp[0].local_addr()?;
        let geoip: Option<Arc<dyn gslb_dns::GeoLocator>> = match &cfg.geoip_database {
            Some(path) => Some(crate::geoip::Reloading::start(path.clone())?),
            None => None,
        };
        let dns_server = gslb_dns::DnsServer::spawn(
            udp,
            tcp,
            config_rx,
            site_health.clone(),
            dns_metrics.clone(),
            geoip,
            tsig_keys,
        )?;

        let tls = crate::admin_tls::load(cfg)?;
        let admin_listener = TcpListener::bind(cfg.admin_bind)
            .await
            .with_context(|| format!("cannot bind the console on {}", cfg.admin_bind))?;
        let admin = admin_listener.local_addr()?;
        let mut state = webui::AppState::new(
            Arc::new(NodeBackend {
                cluster: cluster.clone(),
                dataplane: dataplane.clone(),
                dns_alarm: dns_server.alarm(),
                site_health: site_health.clone(),
                dns_answers: dns_server.snapshot(),
                dns_metrics,
                cluster_key: cluster_key.clone(),
                witness: cfg.witness,
            }),
            registry,
        )?;
        let admin_url = match &tls {
            Some(t) => {
                tracing::info!(
                    cert = %t.cert_path.display(),
                    sha256 = %t.fingerprint,
                    "console serves HTTPS"
                );
                format!("https://{admin}")
            }
            None => format!("http://{admin}"),
        };
        state.secure_cookies = tls.is_some();
        let sampler_task = webui::spawn_sampler(&state);
        let admin_task = tokio::spawn(async move {
            let result = match tls {
                Some(t) => webui::serve_tls(admin_listener, state, t.config).await,
                None => webui::serve(admin_listener, state).await,
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "console stopped");
            }
        });

        let schema_task = tokio::spawn(raise_schema(cluster.clone()));
        Ok(Node {
            witness: cfg.witness,
            _witness_config: witness_tx,
            admin_url,
            dns,
            cluster_addr,
            initial_password,
            data_dir: cfg.data_dir.clone(),
            cluster,
            cluster_key,
            dataplane,
            dns_server,
            admin_task,
            sampler_task,
            certs_task,
            tickets_task,
            purges_task,
            tsig_task,
            limits_tasks: [limits_send, limits_receive, health_send, health_receive],
            schema_task,
            renew_task,
        })
    }

    /// Waits until the data plane serves the applied revision with its listeners bound, so the
    /// ready line means what it says. A listener that cannot bind is an alarm, not a wait.
    pub async fn wait_serving(&self) {
        if self.witness {
            return;
        }
        let revision = self.cluster.current().config.revision;
        if !self
            .dataplane
            .wait_serving(revision, Duration::from_secs(10))
            .await
        {
            tracing::warn!(
                revision,
                "the data plane is still applying the current revision"
            );
        }
    }

    /// One machine-readable line that says the node is up and where.
    pub fn print_ready(&self) {
        println!(
            "meridian ready: admin={} dns={} cluster={} revision={}",
            self.admin_url,
            self.dns,
            self.cluster_addr,
            self.cluster.current().config.revision
        );
    }

    /// Resolves when the cluster state hit a fatal error.
    pub async fn out_of_service(&self) {
        self.cluster.wait_out_of_service().await;
    }

    pub async fn shutdown(self) {
        self.admin_task.abort();
        self.sampler_task.abort();
        self.certs_task.abort();
        self.tickets_task.abort();
        self.purges_task.abort();
        self.tsig_task.abort();
        self.schema_task.abort();
        if let Some(t) = &self.renew_task {
            t.abort();
        }
        for t in &self.limits_tasks {
            t.abort();
        }
        // Stop taking new work first: the console and DNS stop, then the proxy drains the
        // requests in flight (each listener's drain_timeout) before the cluster state closes.
        self.dns_server.shutdown().await;
        self.dataplane.shutdown().await;
        self.cluster.shutdown().await;
    }
}

/// The access log the node config asks for: a file opened for appending, or standard output.
fn open_access_log(
    cfg: &NodeConfig,
    metrics: &lb::LbMetrics,
) -> anyhow::Result<Option<lb::AccessLog>> {
    let Some(path) = &cfg.access_log else {
        return Ok(None);
    };
    let out: Box<dyn std::io::Write + Send> = if path.as_os_str() == "-" {
        Box::new(std::io::stdout())
    } else {
        Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open the access log {}", path.display()))?,
        )
    };
    let fields = cfg
        .access_log_fields
        .clone()
        .unwrap_or_else(|| lb::accesslog::Field::ALL.to_vec());
    Ok(Some(lb::AccessLog::spawn(fields, out, metrics.clone())))
}

/// Republishes each applied revision as the config the planes follow. Auth-only changes do not
/// wake the planes.
type ConfigChannel = (
    watch::Sender<Arc<Revisioned<Config>>>,
    watch::Receiver<Arc<Revisioned<Config>>>,
);

/// On the leader, every 5 s: when every member answers and runs a release that applies a newer
/// validation schema than the one in force, proposes the newest they all know. A rolling
/// upgrade thus switches rules only once no node is left that would apply them differently.
static SCHEMA_LOG: model::LogThrottle = model::LogThrottle::new();

async fn raise_schema(cluster: Arc<ClusterNode>) {
    loop {
        let status = cluster.status();
        let in_force = cluster.current().schema;
        if status.leader == Some(status.node_id) && in_force < model::SCHEMA_SUPPORTED {
            let members = cluster.cluster_status().await.members;
            let supported: Option<Vec<u32>> = members
                .iter()
                .map(|m| m.status.as_ref().map(|s| s.schema_supported))
                .collect();
            if let Some(target) = supported.and_then(|s| s.into_iter().min()) {
                if target > in_force {
                    match cluster
                        .propose(model::Change::SetSchema { version: target })
                        .await
                    {
                        Ok(_) => tracing::info!(
                            from = in_force,
                            to = target,
                            "raised the cluster's validation schema (every member supports it)"
                        ),
                        Err(e) => {
                            if SCHEMA_LOG.due() {
                                tracing::warn!(error = %e, to = target, "the validation schema is not raised (further notices for 10 s not logged)");
                            }
                        }
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// The config a witness's planes follow: empty, for as long as the sender is kept.
fn witness_config() -> anyhow::Result<ConfigChannel> {
    let spec = model::parse::from_toml("api_version = \"meridian/v1\"\n")?;
    let value = model::validate(&spec).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(watch::channel(Arc::new(Revisioned { revision: 0, value })))
}

fn follow_config(cluster: &ClusterNode) -> watch::Receiver<Arc<Revisioned<Config>>> {
    let mut applied = cluster.subscribe();
    let (tx, rx) = watch::channel(applied.borrow_and_update().config.clone());
    tokio::spawn(async move {
        while applied.changed().await.is_ok() {
            let next = applied.borrow_and_update().config.clone();
            tx.send_if_modified(|cur| {
                if cur.revision == next.revision {
                    return false;
                }
                *cur = next;
                true
            });
        }
    });
    rx
}

/// Starts a node that belongs, or is to belong, to the cluster that `seed` is a member of.
async fn join_cluster(
    cfg: cluster_state::NodeConfig,
    rpc: TcpListener,
    seed: &str,
) -> anyhow::Result<Arc<ClusterNode>> {
    let cluster = ClusterNode::start_for_join(cfg, rpc)
        .await
        .context("cannot start the cluster state")?;
    if !cluster.is_initialized().await? {
        // The seed may still be starting: keep asking for a minute.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match cluster.join(seed).await {
                Ok(()) => break,
                // A refusal (the wrong cluster secret) is final: no point asking again.
                Err(e)
                    if Instant::now() < deadline
                        && !matches!(e, cluster_state::ChangeError::Rejected(_)) =>
                {
                    tracing::warn!(%seed, error = %e, "join failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    cluster.shutdown().await;
                    return Err(e).with_context(|| format!("cannot join the cluster at {seed}"));
                }
            }
        }
        tracing::info!(%seed, "joined the cluster");
        // Just joined: the leader is there, and the state follows it.
        if let Err(e) = cluster
            .wait_for_leader_timeout(Duration::from_secs(30))
            .await
        {
            tracing::warn!(error = %e, "no Raft leader yet after joining");
        }
    } else {
        // Already a member: serve the last applied state at once; the peers may be down.
        tracing::info!(
            "restarted member: serving the last applied state; Raft elects a leader meanwhile"
        );
    }
    Ok(cluster)
}

/// Creates the admin user with a random password when the cluster has no user yet. Only the
/// leader does, so that joining nodes never create a second admin.
async fn ensure_admin(cluster: &ClusterNode, data_dir: &Path) -> anyhow::Result<Option<String>> {
    let status = cluster.status();
    if !cluster.current().auth.users.is_empty() || status.leader != Some(status.node_id) {
        return Ok(None);
    }
    let password = webui::auth::random_password();
    let hash = {
        let p = password.clone();
        tokio::task::spawn_blocking(move || webui::auth::hash_password(&p)).await??
    };
    // The file is written (and synced) before the user exists, so a crash in between can never
    // leave an admin whose password nobody knows.
    let file = data_dir.join(INITIAL_PASSWORD_FILE);
    write_private_file(&file, format!("{password}\n").as_bytes())?;
    let created = cluster
        .propose(model::Change::SetUser {
            name: "admin".into(),
            password_hash: hash,
            role: model::Role::Admin,
            disabled: false,
        })
        .await;
    if let Err(e) = created {
        let _ = std::fs::remove_file(&file);
        return Err(e).context("cannot create the admin user");
    }
    Ok(Some(password))
}

/// `meridian restore`: seeds a new cluster from a backup on its first node, then stops.
pub async fn restore(config: &Path, from: &Path) -> anyhow::Result<ExitCode> {
    init_logging();
    let bytes = std::fs::read(from).with_context(|| format!("cannot read {}", from.display()))?;
    let backup: model::records::Backup = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a Meridian backup", from.display()))?;
    if backup.format != model::records::BACKUP_FORMAT {
        anyhow::bail!(
            "{} is a backup of format {:?}; this release reads {}",
            from.display(),
            backup.format,
            model::records::BACKUP_FORMAT
        );
    }
    let cfg = NodeConfig::load(config)?;
    if cfg.join.is_some() {
        anyhow::bail!("restore seeds a new cluster on its first node: remove `join`");
    }
    if cfg.data_dir.join("raft").exists() {
        anyhow::bail!(
            "restore seeds a new cluster: {} already holds one; give an empty data_dir",
            cfg.data_dir.display()
        );
    }
    // The sealed keys open only with the old cluster's secret: check before anything starts.
    create_private_dir(&cfg.data_dir)?;
    let key = credentials::ClusterKey::derive(&cluster_secret(&cfg)?);
    let sealed_ok = backup
        .certificates
        .values()
        .all(|c| credentials::unseal(&c.key, &key).is_ok())
        && backup
            .tsig_keys
            .values()
            .all(|t| credentials::open_tsig_key(t, &key).is_ok());
    if !sealed_ok {
        anyhow::bail!(
            "the backup's keys do not open with this node's cluster secret: set \
             cluster_secret_file to the old cluster's cluster.secret"
        );
    }
    let node = Node::start(&cfg).await?;
    let revision = node
        .cluster
        .propose(model::Change::Restore {
            backup: Box::new(backup.clone()),
        })
        .await
        .context("cannot restore the backup")?;
    // The backup's users replace the admin made at this first start.
    let _ = std::fs::remove_file(cfg.data_dir.join(INITIAL_PASSWORD_FILE));
    node.shutdown().await;
    println!(
        "restored the backup of revision {} ({} users, {} certificates, {} TSIG keys) as revision \
         {revision}; start the node with `meridian serve --config {}`",
        backup.revision,
        backup.auth.users.len(),
        backup.certificates.len(),
        backup.tsig_keys.len(),
        config.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The cluster secret and this node's cluster certificate: loaded; or made with a new cluster
/// CA on a pristine node that bootstraps; or enrolled for at `join` with a join token or the
/// shared secret. `None` for a node whose data predates cluster TLS (plaintext RPC).
async fn cluster_credentials(
    cfg: &NodeConfig,
    dir: &Path,
    advertise: &str,
) -> anyhow::Result<(String, Option<cluster_state::ClusterTls>)> {
    if let Some(tls) = crate::cluster_tls::load(dir)? {
        return Ok((cluster_secret(cfg)?, Some(tls)));
    }
    let pristine = !cfg.data_dir.join("raft").exists();
    if !pristine {
        if !cfg.cluster_bind.ip().is_loopback() && !cfg.cluster_plaintext_ok {
            anyhow::bail!(
                "this node's data predates cluster TLS, so its cluster RPC on {} would cross \
                 the network unencrypted; keep it on a private network and set \
                 cluster_plaintext_ok = true, or rebuild the cluster",
                cfg.cluster_bind
            );
        }
        tracing::warn!(
            "this node's data predates cluster TLS: cluster RPC stays plaintext (authenticated \
             by the shared secret); rebuild the cluster to get mutual TLS"
        );
        return Ok((cluster_secret(cfg)?, None));
    }
    let Some(seed) = &cfg.join else {
        let secret = cluster_secret(cfg)?;
        let key = credentials::ClusterKey::derive(&secret);
        let tls = crate::cluster_tls::bootstrap(dir, cfg.node_id, advertise, &key)?;
        return Ok((secret, Some(tls)));
    };
    if let Some(token) = &cfg.join_token {
        let (tls, secret) =
            crate::cluster_tls::enroll(dir, cfg.node_id, advertise, seed, Some(&token.0), None)
                .await?;
        write_private_file(&cfg.data_dir.join("cluster.secret"), secret.as_bytes())?;
        return Ok((secret.to_string(), Some(tls)));
    }
    if cfg.cluster_secret_file.is_none() {
        anyhow::bail!(
            "join: give join_token (from `meridian cluster token` on a member) or, on a \
             private network, cluster_secret_file"
        );
    }
    let seed_host = crate::cluster_tls::host_of(seed);
    let seed_on_loopback = seed_host == "localhost"
        || seed_host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !seed_on_loopback && !cfg.cluster_plaintext_ok {
        anyhow::bail!(
            "join: with the shared secret this node cannot verify the member at {seed}; use a \
             join token (`meridian cluster token`), or on a private network set \
             cluster_plaintext_ok = true"
        );
    }
    let secret = cluster_secret(cfg)?;
    let (tls, _) =
        crate::cluster_tls::enroll(dir, cfg.node_id, advertise, seed, None, Some(&secret)).await?;
    Ok((secret, Some(tls)))
}

fn cluster_secret(cfg: &NodeConfig) -> anyhow::Result<String> {
    let path = cfg
        .cluster_secret_file
        .clone()
        .unwrap_or_else(|| cfg.data_dir.join("cluster.secret"));
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        Ok(_) => anyhow::bail!("cluster secret file {} is empty", path.display()),
        // A configured file must exist: a fresh secret would only lock this node out.
        Err(e) if cfg.cluster_secret_file.is_some() => Err(anyhow::anyhow!(
            "cannot read cluster_secret_file {}: {e}",
            path.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = webui::auth::random_hex();
            write_private_file(&path, secret.as_bytes())?;
            Ok(secret)
        }
        Err(e) => Err(anyhow::anyhow!(
            "cannot read cluster secret {}: {e}",
            path.display()
        )),
    }
}

/// Creates `dir` with mode 0700. An existing folder keeps its permissions (it may be the
/// operator's own), but a warning says when others can read it.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(dir) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(dir = %dir.display(), "folder with secrets is readable by other users");
        }
        return Ok(());
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data dir {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict permissions of {}", dir.display()))?;
    Ok(())
}

pub fn write_private_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(contents)?;
    f.sync_all()?;
    Ok(())
}

/// One UDP socket per CPU, sharing the port (`SO_REUSEPORT`, so the kernel spreads clients
/// over the DNS threads), and TCP on the same port; with port 0, retries until all get one.
async fn bind_dns(addr: SocketAddr) -> anyhow::Result<(Vec<std::net::UdpSocket>, TcpListener)> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let udp_socket = |at: SocketAddr| -> std::io::Result<std::net::UdpSocket> {
        let domain = socket2::Domain::for_address(at);
        let socket =
            socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
        socket.set_reuse_port(true)?;
        socket.bind(&at.into())?;
        Ok(socket.into())
    };
    let mut last_err = None;
    for _ in 0..20 {
        let first = udp_socket(addr).with_context(|| format!("cannot bind DNS (UDP) on {addr}"))?;
        let port = first.local_addr()?.port();
        let at = SocketAddr::new(addr.ip(), port);
        let mut udp = vec![first];
        for _ in 1..threads {
            udp.push(udp_socket(at).with_context(|| format!("cannot bind DNS (UDP) on {at}"))?);
        }
        match TcpListener::bind(at).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 => last_err = Some(e),
            Err(e) => return Err(e).with_context(|| format!("cannot bind DNS (TCP) on {addr}")),
        }
    }
    Err(anyhow::anyhow!(
        "cannot bind DNS on one port for UDP and TCP: {last_err:?}"
    ))
}

/// The TSIG keys of the credential store, opened with the cluster key, for the DNS server; kept
/// in step as keys are added and deleted. A key that does not open is left out and logged (by
/// name only): transfers and NOTIFY with it fail until it is stored again.
fn follow_tsig_keys(
    cluster: &Arc<ClusterNode>,
    key: Arc<credentials::ClusterKey>,
) -> (gslb_dns::TsigKeyStore, tokio::task::JoinHandle<()>) {
    fn open(
        records: &std::collections::BTreeMap<String, Arc<model::records::TsigKeyRecord>>,
        key: &credentials::ClusterKey,
    ) -> gslb_dns::TsigKeys {
        let mut opened = Vec::new();
        for record in records.values() {
            match credentials::open_tsig_key(record, key) {
                Ok(secret) => opened.push((record.name.as_str(), record.algorithm, secret)),
                Err(error) => {
                    tracing::error!(key = %record.name, %error, "TSIG key does not open")
                }
            }
        }
        let keys = opened.iter().map(|(n, a, s)| (*n, *a, s.as_slice()));
        gslb_dns::TsigKeys::new(keys).unwrap_or_else(|error| {
            tracing::error!(%error, "TSIG keys unusable; zone transfers are refused");
            gslb_dns::TsigKeys::default()
        })
    }
    let store = gslb_dns::TsigKeyStore::default();
    let mut applied = cluster.subscribe();
    let mut current = applied.borrow_and_update().tsig_keys.clone();
    store.set(open(&current, &key));
    let follower = store.clone();
    let task = tokio::spawn(async move {
        while applied.changed().await.is_ok() {
            let next = applied.borrow_and_update().tsig_keys.clone();
            if !Arc::ptr_eq(&next, &current) {
                follower.set(open(&next, &key));
                current = next;
            }
        }
    });
    (store, task)
}

/// Applies the cluster's cache purges to this node's store as they replicate (and, at start,
/// the ones made while it was down to its disk tier).
fn follow_purges(
    cluster: &Arc<ClusterNode>,
    store: Arc<lb::cache::CacheStore>,
) -> tokio::task::JoinHandle<()> {
    let mut applied = cluster.subscribe();
    tokio::spawn(async move {
        loop {
            let purges = applied.borrow_and_update().purges.clone();
            store.apply_purges(&purges);
            if applied.changed().await.is_err() {
                return;
            }
        }
    })
}
