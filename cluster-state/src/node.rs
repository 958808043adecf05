//! `ClusterNode`: opens the store, runs the Raft node and its RPC server, bootstraps a pristine
//! single-node cluster, and offers propose / subscribe / status / join / shutdown.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::SnapshotPolicy;
use serde::Serialize;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::command::{Applied, Command};
use crate::error::StartError;
use crate::log_store::LogStore;
use crate::members::{self, ClusterStatus, Local, RaftStatus};
use crate::network::{
    self, GossipMessage, JoinRequest, JoinResponse, NetworkFactory, ProposeAnswer, RemoveRequest,
    RpcState,
};
use crate::state_machine::StateMachine;
use crate::store::Store;
use crate::types::{Node, Raft};
use model::ChangeError;

/// How long `start` waits for a leader and `propose` waits for a commit.
const LEADER_TIMEOUT: Duration = Duration::from_secs(10);
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `shutdown` waits for Raft's tasks to release the store.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Local, never-replicated settings of one node.
#[derive(Clone)]
pub struct NodeConfig {
    pub node_id: u64,
    /// sled lives in `data_dir.join("raft")`.
    pub data_dir: PathBuf,
    /// `host:port` other nodes reach this node's RPC on.
    pub rpc_advertise: String,
    /// Every RPC must carry it as `Authorization: Bearer <secret>`.
    pub cluster_secret: String,
    /// This node's cluster certificate: RPC is mutual TLS. `None` only for a cluster made
    /// before cluster TLS, whose RPC stays plaintext.
    pub tls: Option<crate::tls::ClusterTls>,
    /// This node votes but serves no traffic (shown in the cluster's status).
    pub witness: bool,
    /// The storage engine under `data_dir/raft`.
    pub storage: crate::store::StorageKind,
}

// Hand-written so the cluster secret never reaches a log line.
impl std::fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeConfig")
            .field("node_id", &self.node_id)
            .field("data_dir", &self.data_dir)
            .field("rpc_advertise", &self.rpc_advertise)
            .field("cluster_secret", &"<redacted>")
            .field("tls", &self.tls)
            .finish()
    }
}

/// One running cluster member; cheap to share behind `Arc`.
pub struct ClusterNode {
    node_id: u64,
    rpc_advertise: String,
    secret: Arc<str>,
    /// `https` with cluster TLS, else `http`.
    scheme: &'static str,
    enroller: Arc<std::sync::OnceLock<Arc<dyn network::Enroller>>>,
    raft: Raft,
    /// The last leader this node knew (id, cluster address), for errors while none is known.
    last_leader: Arc<Mutex<Option<(u64, String)>>>,
    /// Status and membership changes, shared with the RPC server.
    local: Arc<Local>,
    applied: watch::Receiver<Applied>,
    bootstrapped_now: bool,
    http: reqwest::Client,
    /// Set when Raft reported a fatal error: the node is out of service until restarted.
    out_of_service: Arc<members::OutOfService>,
    gossip: network::GossipInbox,
    stopped: AtomicBool,
    tasks: Mutex<Tasks>,
}

struct Tasks {
    server: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
    monitor: Option<JoinHandle<()>>,
    store: Option<Store>,
}

enum Mode {
    Bootstrap,
    Join,
}

impl ClusterNode {
    /// Opens the store, builds the Raft node, serves cluster RPC on `rpc_listener`, and when the
    /// store is pristine initializes a single-node cluster with itself as the only voter.
    ///
    /// A node that is its cluster's only voter waits (up to 10 s) for itself to be elected,
    /// which takes one election timeout; a brand-new cluster without a leader then is an error.
    /// A restarted member of a larger cluster does not wait at all: its peers may be down, and
    /// an appliance must serve its last applied state at once while Raft elects a leader in
    /// the background.
    pub async fn start(
        cfg: NodeConfig,
        rpc_listener: tokio::net::TcpListener,
    ) -> Result<Arc<ClusterNode>, StartError> {
        let node = Self::launch(cfg, rpc_listener, Mode::Bootstrap).await?;
        if !node.bootstrapped_now && !node.sole_voter() {
            tracing::info!(
                "restarted member: serving the last applied state; Raft elects a leader meanwhile"
            );
            return Ok(node);
        }
        if let Err(e) = node.wait_for_leader().await {
            if node.bootstrapped_now {
                node.shutdown().await;
                return Err(e);
            }
            tracing::warn!(
                "no Raft leader within {LEADER_TIMEOUT:?}; serving the last applied configuration \
                 until one is elected"
            );
        }
        Ok(node)
    }

    /// Like [`ClusterNode::start`] but never initializes a cluster and does not wait for a
    /// leader: for a pristine node that will [`ClusterNode::join`] an existing cluster.
    pub async fn start_for_join(
        cfg: NodeConfig,
        rpc_listener: tokio::net::TcpListener,
    ) -> Result<Arc<ClusterNode>, StartError> {
        Self::launch(cfg, rpc_listener, Mode::Join).await
    }

    /// Resolves once Raft hit a fatal error and the node went out of service.
    pub async fn wait_out_of_service(&self) {
        let mut rx = self.out_of_service.subscribe();
        let _ = rx.wait_for(|out| *out).await;
    }

    /// Who answers `/cluster/enroll` on this node (set once, after start).
    pub fn set_enroller(&self, enroller: Arc<dyn network::Enroller>) {
        let _ = self.enroller.set(enroller);
    }

    /// Whether cluster RPC is mutual TLS.
    pub fn tls(&self) -> bool {
        self.scheme == "https"
    }

    /// True when this start initialized a brand-new cluster.
    pub fn bootstrapped_now(&self) -> bool {
        self.bootstrapped_now
    }

    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    pub fn subscribe(&self) -> watch::Receiver<Applied> {
        self.applied.clone()
    }

    pub fn current(&self) -> Applied {
        self.applied.borrow().clone()
    }

    /// Writes `cmd` through Raft and returns the config revision after it was applied. On a
    /// follower the write is forwarded to the leader, and this returns once the entry is also
    /// applied here, so a caller reads its own write on the node it asked.
    /// A timeout leaves the outcome unknown: the entry may still commit later.
    pub async fn propose(&self, cmd: impl Into<Command>) -> Result<u64, ChangeError> {
        let cmd = cmd.into();
        match self.propose_local(cmd.clone()).await {
            Err(ChangeError::NotLeader {
                leader: Some(leader),
            }) => {
                // A leader silent for a second is cut off from this node, or gone: the write
                // would only hang until it times out.
                match self.local.leader_silent_ms() {
                    Some(ms) if ms > members::LEADER_SILENT_MS => {
                        Err(ChangeError::Unavailable(format!(
                            "the leader at {leader} has not been heard from for {ms} ms (this \
                             node may be cut off from it); nothing was appended (safe to retry)"
                        )))
                    }
                    _ => self.forward(network::PATH_PROPOSE, &cmd, leader).await,
                }
            }
            Err(ChangeError::NotLeader { leader: None }) => {
                Err(ChangeError::Unavailable(self.no_leader()))
            }
            other => other,
        }
    }

    /// The index of the last log entry this node applied.
    fn applied_index(&self) -> u64 {
        self.raft
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |id| id.index)
    }

    /// Why a write cannot go anywhere now, naming the last leader this node knew.
    fn no_leader(&self) -> String {
        let last = self
            .last_leader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        match last {
            Some((id, addr)) => format!(
                "no leader is known to this node (it cannot reach a majority; the last leader \
                 it knew is node {id} at {addr}); nothing was appended (safe to retry)"
            ),
            None => {
                "no leader is known to this node; nothing was appended (safe to retry)".to_string()
            }
        }
    }

    async fn propose_local(&self, cmd: Command) -> Result<u64, ChangeError> {
        self.check_in_service()?;
        if let Some((term, ms)) = self.local.quorum_lost() {
            // Refused before anything is appended: safe to retry, on another node.
            return Err(ChangeError::Unavailable(format!(
                "this node leads term {term} but no majority has answered it for {} s: the \
                 write was not appended (safe to retry); the other nodes may have a new leader",
                ms / 1000
            )));
        }
        let after_index = self.applied_index();
        let res = tokio::time::timeout(PROPOSE_TIMEOUT, self.raft.client_write(cmd))
            .await
            .map_err(|_| ChangeError::Unknown {
                detail: format!(
                    "appended but not committed within {} s; it may still be",
                    PROPOSE_TIMEOUT.as_secs()
                ),
                after_index: Some(after_index),
            })?;
        match res {
            Ok(resp) => resp.data.result.map_err(ChangeError::Rejected),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ChangeError::NotLeader {
                    leader: f.leader_node.map(|n| n.addr),
                })
            }
            Err(RaftError::APIError(e)) => Err(ChangeError::Unavailable(e.to_string())),
            Err(RaftError::Fatal(f)) => {
                self.take_out_of_service(&f);
                Err(ChangeError::Unavailable(f.to_string()))
            }
        }
    }

    /// A linearizable read: returns once this node has applied everything committed before
    /// the call, as confirmed by the leader with a quorum (the read index; asked of the
    /// leader over the cluster port on a follower). Without a quorum it fails rather than let
    /// a stale state be read.
    pub async fn read_barrier(&self) -> Result<(), ChangeError> {
        use network::ReadIndexAnswer;
        self.check_in_service()?;
        if self.local.quorum_lost().is_some() {
            return Err(ChangeError::Unavailable(
                "this node leads but no majority answers it: a read could be stale".into(),
            ));
        }
        let mut answer = members::read_index(&self.raft).await;
        if let ReadIndexAnswer::NotLeader {
            leader: Some(leader),
        } = &answer
        {
            let asked = self
                .http
                .post(format!(
                    "{}://{leader}{}",
                    self.scheme,
                    network::PATH_READ_INDEX
                ))
                .bearer_auth(&*self.secret)
                .timeout(members::READ_TIMEOUT)
                .send()
                .await;
            answer = match asked {
                Ok(resp) if resp.status().is_success() => resp
                    .json::<ReadIndexAnswer>()
                    .await
                    .unwrap_or_else(|e| ReadIndexAnswer::Unavailable(e.to_string())),
                Ok(resp) => ReadIndexAnswer::Unavailable(format!(
                    "the leader at {leader} answered http {}",
                    resp.status()
                )),
                Err(e) => {
                    ReadIndexAnswer::Unavailable(format!("asking the leader at {leader}: {e}"))
                }
            };
        }
        match answer {
            ReadIndexAnswer::Index(index) => self
                .raft
                .wait(Some(members::READ_TIMEOUT))
                .applied_index_at_least(Some(index), "read index applied here")
                .await
                .map(|_| ())
                .map_err(|e| ChangeError::Unavailable(format!("read index {index}: {e}"))),
            ReadIndexAnswer::NotLeader { leader } => Err(ChangeError::NotLeader { leader }),
            ReadIndexAnswer::Unavailable(why) => Err(ChangeError::Unavailable(why)),
        }
    }

    /// Gossip messages of `topic` from the other members (a later call replaces the earlier
    /// subscriber).
    pub fn gossip_subscribe(&self, topic: &str) -> tokio::sync::mpsc::Receiver<GossipMessage> {
        self.gossip.subscribe(topic)
    }

    /// Sends `payload` under `topic` to every other member, each with the cluster secret and a
    /// short timeout; best effort (a member that does not answer misses it).
    pub async fn gossip(&self, topic: &str, payload: serde_json::Value) {
        let msg = GossipMessage {
            from: self.node_id,
            topic: topic.to_string(),
            payload,
        };
        let peers: Vec<String> = self
            .status()
            .members
            .into_iter()
            .filter(|(id, _)| *id != self.node_id)
            .map(|(_, addr)| addr)
            .collect();
        let mut sends = tokio::task::JoinSet::new();
        for addr in peers {
            let req = self
                .http
                .post(format!("{}://{addr}{}", self.scheme, network::PATH_GOSSIP))
                .bearer_auth(&*self.secret)
                .timeout(Duration::from_millis(500))
                .json(&msg);
            sends.spawn(async move {
                if let Err(e) = req.send().await {
                    tracing::debug!(peer = %addr, error = %e, "gossip not delivered");
                }
            });
        }
        while sends.join_next().await.is_some() {}
    }

    pub fn status(&self) -> RaftStatus {
        self.local.status()
    }

    /// Every member's own report (asked over the cluster port, 1 s each, all at once) with
    /// the leader's view of its replication lag and last contact.
    pub async fn cluster_status(&self) -> ClusterStatus {
        let own = self.status();
        let mut asks = tokio::task::JoinSet::new();
        for (id, addr) in own.members.iter().filter(|(id, _)| *id != self.node_id) {
            let req = self
                .http
                .get(format!("{}://{addr}{}", self.scheme, network::PATH_STATUS))
                .bearer_auth(&*self.secret)
                .timeout(Duration::from_secs(1));
            let id = *id;
            asks.spawn(async move {
                let answer = match req.send().await {
                    Ok(resp) if resp.status().is_success() => resp
                        .json::<RaftStatus>()
                        .await
                        .map_err(|e| format!("unreadable answer: {e}")),
                    Ok(resp) => Err(format!("answered http {}", resp.status())),
                    Err(e) if e.is_timeout() => Err("no answer within 1 s".to_string()),
                    Err(e) if e.is_connect() => Err("unreachable".to_string()),
                    Err(e) => Err(e.to_string()),
                };
                (id, answer)
            });
        }
        let mut reports = BTreeMap::from([(self.node_id, Ok(own.clone()))]);
        while let Some(done) = asks.join_next().await {
            if let Ok((id, answer)) = done {
                reports.insert(id, answer);
            }
        }
        members::gather(self.node_id, &own, reports)
    }

    /// Takes node `id` out of the cluster (on the leader, or forwarded to it): demoted to
    /// learner, then removed. Refused with the reason when it would leave no quorum.
    pub async fn remove_member(&self, id: u64) -> Result<(), ChangeError> {
        self.check_in_service()?;
        let answer = self.local.remove_member(id).await;
        let outcome = match answer {
            ProposeAnswer::NotLeader {
                leader: Some(leader),
            } => {
                self.forward(network::PATH_REMOVE, &RemoveRequest { node_id: id }, leader)
                    .await
            }
            other => self.settle(other).await,
        };
        outcome.map(|_| ())
    }

    /// Builds a snapshot now (log compaction then purges older entries) and waits until it is
    /// built; returns the last log index it covers. Raft also does this every 1000 entries.
    pub async fn trigger_snapshot(&self) -> Result<u64, ChangeError> {
        self.check_in_service()?;
        let target = self.status().last_applied;
        if let Err(f) = self.raft.trigger().snapshot().await {
            self.take_out_of_service(&f);
            return Err(ChangeError::Unavailable(f.to_string()));
        }
        let m = self
            .raft
            .wait(Some(PROPOSE_TIMEOUT))
            .metrics(
                |m| m.snapshot.is_some_and(|s| s.index >= target),
                "snapshot built",
            )
            .await
            .map_err(|e| ChangeError::Unavailable(e.to_string()))?;
        Ok(m.snapshot.map(|s| s.index).unwrap_or(0))
    }

    /// The last log index covered by this node's latest snapshot (built or installed).
    pub fn snapshot_index(&self) -> Option<u64> {
        self.raft.metrics().borrow().snapshot.map(|s| s.index)
    }

    /// Asks the leader reachable at `leader_rpc` (`host:port`) to add this node as a voter.
    /// Follows one redirect when `leader_rpc` is a follower that knows the leader.
    pub async fn join(&self, leader_rpc: &str) -> Result<(), ChangeError> {
        self.check_in_service()?;
        let mut target = leader_rpc.to_string();
        for _ in 0..2 {
            match self.join_once(&target).await? {
                JoinResponse::Joined => return Ok(()),
                JoinResponse::NotLeader {
                    leader: Some(leader),
                } if leader != target => target = leader,
                JoinResponse::NotLeader { leader } => {
                    return Err(ChangeError::NotLeader { leader })
                }
                JoinResponse::Failed { error } => return Err(ChangeError::Unavailable(error)),
            }
        }
        Err(ChangeError::NotLeader {
            leader: Some(target),
        })
    }

    /// Stops Raft and the RPC server and waits until the store is released, so the same data
    /// directory can be opened again. Idempotent.
    pub async fn shutdown(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft task ended abnormally");
        }
        let (server, monitor, store) = match self.tasks.lock() {
            Ok(mut t) => (t.server.take(), t.monitor.take(), t.store.take()),
            Err(poisoned) => {
                let mut t = poisoned.into_inner();
                (t.server.take(), t.monitor.take(), t.store.take())
            }
        };
        if let Some((stop, handle)) = server {
            let _ = stop.send(());
            let _ = handle.await;
        }
        if let Some(monitor) = monitor {
            monitor.abort();
        }
        if let Some(store) = store {
            if let Err(e) = store.flush().await {
                tracing::error!(error = %e, "final flush failed");
            }
            let deadline = Instant::now() + RELEASE_TIMEOUT;
            while store.handles() > 1 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    // === private ===

    async fn launch(
        cfg: NodeConfig,
        rpc_listener: tokio::net::TcpListener,
        mode: Mode,
    ) -> Result<Arc<ClusterNode>, StartError> {
        let dir = cfg.data_dir.join("raft");
        std::fs::create_dir_all(&dir).map_err(|source| StartError::DataDir {
            path: dir.clone(),
            source,
        })?;
        let store = Store::open(cfg.storage, &dir)?;
        let (sm, applied) = StateMachine::open(store.clone())?;
        let secret: Arc<str> = Arc::from(cfg.cluster_secret.as_str());
        let http = network::http_client(cfg.tls.as_ref())?;
        let scheme = if cfg.tls.is_some() { "https" } else { "http" };
        let acceptor = match &cfg.tls {
            Some(tls) => Some(tokio_rustls::TlsAcceptor::from(tls.server_config()?)),
            None => None,
        };
        let contacts = Arc::new(network::Contacts::default());
        let out_of_service = Arc::new(members::OutOfService::new());
        let net = NetworkFactory::new(http.clone(), scheme, secret.clone(), contacts.clone());
        let raft_config = raft_config()?;
        let log_store = LogStore::new(store.clone());
        let committed = log_store.committed_index();
        let raft = Raft::new(cfg.node_id, raft_config, net, log_store, sm)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;

        let local = Arc::new(Local {
            node_id: cfg.node_id,
            raft: raft.clone(),
            contacts,
            committed,
            out_of_service: out_of_service.clone(),
            tls: cfg.tls.clone(),
            leader_heard: Mutex::new(None),
            witness: cfg.witness,
        });
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let gossip = network::GossipInbox::default();
        let rpc_state = RpcState::new(
            local.clone(),
            &cfg.cluster_secret,
            gossip.clone(),
            cfg.tls.is_some(),
        );
        let enroller = rpc_state.enroller.clone();
        let app = network::router(rpc_state);
        let server = tokio::spawn(network::serve(rpc_listener, app, acceptor, stop_rx));
        let last_leader = Arc::new(Mutex::new(None));
        let monitor = tokio::spawn(monitor_fatal(
            raft.clone(),
            out_of_service.clone(),
            last_leader.clone(),
        ));

        let mut node = ClusterNode {
            node_id: cfg.node_id,
            rpc_advertise: cfg.rpc_advertise.clone(),
            secret,
            scheme,
            enroller,
            raft,
            last_leader,
            local,
            applied,
            bootstrapped_now: false,
            http,
            out_of_service,
            gossip,
            stopped: AtomicBool::new(false),
            tasks: Mutex::new(Tasks {
                server: Some((stop_tx, server)),
                monitor: Some(monitor),
                store: Some(store),
            }),
        };
        if let Mode::Bootstrap = mode {
            match node.bootstrap_if_pristine(&cfg).await {
                Ok(b) => node.bootstrapped_now = b,
                Err(e) => {
                    node.shutdown().await;
                    return Err(e);
                }
            }
        }
        Ok(Arc::new(node))
    }

    /// Initializes a single-voter cluster only when the store has never been initialized: a
    /// restart must never initialize again.
    async fn bootstrap_if_pristine(&self, cfg: &NodeConfig) -> Result<bool, StartError> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        if initialized {
            return Ok(false);
        }
        let members = BTreeMap::from([(
            cfg.node_id,
            Node {
                addr: cfg.rpc_advertise.clone(),
            },
        )]);
        self.raft
            .initialize(members)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        tracing::info!(
            node_id = cfg.node_id,
            "initialized a new single-node cluster"
        );
        Ok(true)
    }

    /// Whether this node is the only voter of its cluster (as far as its log says).
    pub fn sole_voter(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        let mut voters = m.membership_config.membership().voter_ids();
        voters.next() == Some(self.node_id) && voters.next().is_none()
    }

    async fn wait_for_leader(&self) -> Result<(), StartError> {
        self.raft
            .wait(Some(LEADER_TIMEOUT))
            .metrics(|m| m.current_leader.is_some(), "a leader is known")
            .await
            .map(|_| ())
            .map_err(|_| StartError::NoLeader(LEADER_TIMEOUT))
    }

    /// Sends a request to the leader at `leader` on `path` (following one redirect), then
    /// waits until this node has applied what it committed.
    async fn forward<B: Serialize>(
        &self,
        path: &str,
        body: &B,
        mut leader: String,
    ) -> Result<u64, ChangeError> {
        // If the leader appends the write, it does so after everything applied here now.
        let after_index = Some(self.applied_index());
        for _ in 0..2 {
            // Not connected: nothing was sent. Anything later: the leader may have it.
            let unavailable = |e: reqwest::Error| {
                let detail = format!("forwarding to the leader at {leader}: {e}");
                if e.is_connect() {
                    ChangeError::Unavailable(detail)
                } else {
                    ChangeError::Unknown {
                        detail,
                        after_index,
                    }
                }
            };
            let call = async {
                let resp = self
                    .http
                    .post(format!("{}://{leader}{path}", self.scheme))
                    .bearer_auth(&*self.secret)
                    .json(body)
                    .timeout(PROPOSE_TIMEOUT)
                    .send()
                    .await
                    .map_err(unavailable)?;
                let status = resp.status();
                if !status.is_success() {
                    return Err(ChangeError::Unknown {
                        detail: format!("the leader at {leader} answered http {status}"),
                        after_index,
                    });
                }
                resp.json::<ProposeAnswer>().await.map_err(unavailable)
            };
            // A leader that stops heartbeating while the write is in flight is cut off or
            // gone: answer now (outcome unknown) rather than at the timeout.
            let answer = tokio::select! {
                answer = call => answer?,
                ms = self.leader_goes_silent() => {
                    return Err(ChangeError::Unknown {
                        detail: format!(
                            "the leader at {leader} went silent ({ms} ms without a heartbeat) \
                             while the write was in flight; it may still be applied"
                        ),
                        after_index,
                    })
                }
            };
            match answer {
                ProposeAnswer::NotLeader { leader: Some(next) } if next != leader => leader = next,
                answer => return self.settle(answer).await,
            }
        }
        Err(ChangeError::NotLeader {
            leader: Some(leader),
        })
    }

    /// Resolves (with the silence in ms) once no leader has sent AppendEntries here for
    /// [`members::LEADER_SILENT_MS`].
    async fn leader_goes_silent(&self) -> u64 {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Some(ms) = self.local.leader_silent_ms() {
                if ms > members::LEADER_SILENT_MS {
                    return ms;
                }
            }
        }
    }

    /// What the leader's answer means here: once committed, waits until this node applied it
    /// too, so a caller reads its own write on the node it asked.
    async fn settle(&self, answer: ProposeAnswer) -> Result<u64, ChangeError> {
        match answer {
            ProposeAnswer::Applied {
                revision,
                log_index,
            } => {
                self.raft
                    .wait(Some(PROPOSE_TIMEOUT))
                    .applied_index_at_least(Some(log_index), "forwarded write applied here")
                    .await
                    .map_err(|e| ChangeError::Unknown {
                        detail: format!(
                            "committed at log index {log_index}, but not yet applied on this \
                             node: {e}"
                        ),
                        after_index: Some(log_index.saturating_sub(1)),
                    })?;
                Ok(revision)
            }
            ProposeAnswer::Rejected(e) => Err(ChangeError::Rejected(e)),
            ProposeAnswer::NotLeader { leader } => Err(ChangeError::NotLeader { leader }),
            ProposeAnswer::Unavailable(e) => Err(ChangeError::Unavailable(e)),
        }
    }

    /// Whether this node's store holds a cluster (it bootstrapped or joined one before).
    pub async fn is_initialized(&self) -> Result<bool, ChangeError> {
        self.raft
            .is_initialized()
            .await
            .map_err(|e| ChangeError::Unavailable(e.to_string()))
    }

    /// Waits until some node is known to lead (after a join, say).
    pub async fn wait_for_leader_timeout(&self, timeout: Duration) -> Result<(), ChangeError> {
        self.raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a leader is known")
            .await
            .map(|_| ())
            .map_err(|e| ChangeError::Unavailable(e.to_string()))
    }

    async fn join_once(&self, target: &str) -> Result<JoinResponse, ChangeError> {
        let body = JoinRequest {
            node_id: self.node_id,
            rpc_addr: self.rpc_advertise.clone(),
        };
        let unavailable = |e: reqwest::Error| ChangeError::Unavailable(e.to_string());
        let resp = self
            .http
            .post(format!("{}://{target}{}", self.scheme, network::PATH_JOIN))
            .bearer_auth(&*self.secret)
            .json(&body)
            // Adding a learner waits for it to catch up, which can take a while.
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(unavailable)?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            // Definitive: asking again will not help.
            return Err(ChangeError::Rejected(model::Refusal::NotAllowed(format!(
                "join refused by {target}: wrong cluster secret"
            ))));
        }
        resp.json::<JoinResponse>()
            .await
            .map_err(|e| ChangeError::Unavailable(format!("join answer (http {status}): {e}")))
    }

    fn check_in_service(&self) -> Result<(), ChangeError> {
        if self.out_of_service.is_set() {
            return Err(ChangeError::Unavailable("node is out of service".into()));
        }
        if self.stopped.load(Ordering::Relaxed) {
            return Err(ChangeError::Unavailable("node is shutting down".into()));
        }
        Ok(())
    }

    fn take_out_of_service(&self, fatal: &openraft::error::Fatal<u64>) {
        if !self.out_of_service.set() {
            tracing::error!(error = %fatal, "raft fatal error: node taken out of service");
        }
    }
}

const HEARTBEAT_MS: u64 = 200;

fn raft_config() -> Result<Arc<openraft::Config>, StartError> {
    let config = openraft::Config {
        cluster_name: "meridian".into(),
        // A follower that heard its leader stands for election after the leader lease
        // (openraft: election_timeout_max) plus a random election timeout, 1.25–1.5 s; peers
        // grant votes once their own lease ran out. openraft also sends each AppendEntries
        // with the heartbeat interval as its timeout, so a slow disk needs it not too short.
        heartbeat_interval: HEARTBEAT_MS,
        election_timeout_min: 500,
        election_timeout_max: 750,
        install_snapshot_timeout: 5000,
        // A snapshot is the whole document (100 whole specs of history, up to 5,000 audit
        // entries): every 1,000 entries it cost 15–20 % of the write rate (perf/RESULTS.md).
        // 5,000 small log entries are a few MB.
        snapshot_policy: SnapshotPolicy::LogsSinceLast(5000),
        max_in_snapshot_log_to_keep: 100,
        snapshot_max_chunk_size: 1024 * 1024,
        max_payload_entries: 64,
        ..Default::default()
    };
    let config = config
        .validate()
        .map_err(|e| StartError::Raft(e.to_string()))?;
    Ok(Arc::new(config))
}

/// Watches Raft's metrics; a fatal error takes the node out of service (proposals then fail
/// with `Unavailable`) until the process is restarted.
async fn monitor_fatal(
    raft: Raft,
    out_of_service: Arc<members::OutOfService>,
    last_leader: Arc<Mutex<Option<(u64, String)>>>,
) {
    let mut metrics = raft.metrics();
    loop {
        let fatal = {
            let m = metrics.borrow_and_update();
            if let Some(id) = m.current_leader {
                if let Some((_, node)) = m.membership_config.nodes().find(|(n, _)| **n == id) {
                    *last_leader
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) =
                        Some((id, node.addr.clone()));
                }
            }
            match &m.running_state {
                // A normal stop (shutdown) is not a failure.
                Err(openraft::error::Fatal::Stopped) => {
                    out_of_service.set();
                    tracing::info!("raft stopped");
                    return;
                }
                Err(f) => Some(f.to_string()),
                Ok(()) => None,
            }
        };
        if let Some(f) = fatal {
            out_of_service.set();
            tracing::error!(error = %f, "raft fatal error: node taken out of service");
            return;
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}
