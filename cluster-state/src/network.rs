//! Raft RPC between nodes: HTTP with JSON bodies over mutual TLS (cluster-CA certificates on
//! both ends; plaintext only for clusters made before cluster TLS), every request also carrying
//! the cluster secret as a bearer token. This file is the client side (`RaftNetworkFactory`) and
//! a pristine node's enrollment; `network/server.rs` serves.

mod server;

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{RaftNetwork, RaftNetworkFactory};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::types::{Node, NodeId, TypeConfig};

pub(crate) use server::{router, serve, RpcState};

pub(crate) const PATH_APPEND: &str = "/raft/append";
pub(crate) const PATH_VOTE: &str = "/raft/vote";
pub(crate) const PATH_SNAPSHOT: &str = "/raft/snapshot";
pub(crate) const PATH_JOIN: &str = "/cluster/join";
pub(crate) const PATH_PROPOSE: &str = "/cluster/propose";
pub(crate) const PATH_GOSSIP: &str = "/cluster/gossip";
pub(crate) const PATH_STATUS: &str = "/cluster/status";
pub(crate) const PATH_REMOVE: &str = "/cluster/remove";
/// On the leader: the read index (the commit index once a quorum confirmed its leadership), for
/// a follower's linearizable read.
pub(crate) const PATH_READ_INDEX: &str = "/cluster/read-index";

/// Answer of `/cluster/read-index`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ReadIndexAnswer {
    Index(u64),
    NotLeader { leader: Option<String> },
    Unavailable(String),
}

/// The one route a node without a cluster certificate may call: it proves a join token (or
/// the shared secret) and gets its certificate.
pub(crate) const PATH_ENROLL: &str = "/cluster/enroll";

/// Body of `/cluster/enroll`: who the new node is, where it serves, its CSR, and the token's
/// id and secret (`mjt1.<id>.<secret>.<ca sha256>`) unless it proves the shared secret as a
/// bearer token instead.
#[derive(Clone, Serialize, Deserialize)]
pub struct EnrollRequest {
    pub node_id: u64,
    pub rpc_addr: String,
    pub csr_pem: String,
    #[serde(default)]
    pub token: Option<String>,
}

// Hand-written so the token never reaches a log line.
impl std::fmt::Debug for EnrollRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollRequest")
            .field("node_id", &self.node_id)
            .field("rpc_addr", &self.rpc_addr)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// What an enrolled node gets: its certificate, the CA, and the cluster secret (which derives
/// the key that seals credentials).
#[derive(Clone, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub cert_pem: String,
    pub ca_pem: String,
    pub cluster_secret: String,
}

impl std::fmt::Debug for EnrollResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollResponse")
            .field("cluster_secret", &"<redacted>")
            .finish()
    }
}

/// Why an enrollment was refused: the HTTP status and the reason the new node is told.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrollRefusal {
    pub status: u16,
    pub error: String,
}

pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Checks a join token (or the shared secret) and signs the new node's CSR; the binary
/// provides it (it holds the cluster key that opens the CA).
pub trait Enroller: Send + Sync + 'static {
    /// `with_secret`: the request carried the cluster secret as its bearer token.
    fn enroll(
        &self,
        req: EnrollRequest,
        with_secret: bool,
    ) -> BoxFuture<'_, Result<EnrollResponse, EnrollRefusal>>;
}

/// Asks the member at `seed` for a certificate. A refusal is final (`Rejected`); a member that
/// cannot be reached or answers garbage may be asked again (`Unavailable`).
pub async fn enroll(
    seed: &str,
    trust: crate::tls::EnrollTrust,
    req: &EnrollRequest,
    secret: Option<&str>,
) -> Result<EnrollResponse, crate::ChangeError> {
    use crate::ChangeError;
    let client =
        crate::tls::enroll_client(trust).map_err(|e| ChangeError::Unavailable(e.to_string()))?;
    let mut call = client
        .post(format!("https://{seed}{PATH_ENROLL}"))
        .json(req);
    if let Some(secret) = secret {
        call = call.bearer_auth(secret);
    }
    let resp = call.send().await.map_err(|e| {
        // A certificate the token does not vouch for is as final as a refusal.
        let text = format!("{e:?}");
        if text.contains("not the one the join token names") {
            ChangeError::Rejected(model::Refusal::NotAllowed(format!(
                "{seed} does not present the cluster CA the join token names"
            )))
        } else {
            ChangeError::Unavailable(format!("enrolling at {seed}: {e}"))
        }
    })?;
    let status = resp.status();
    if status.is_success() {
        return resp
            .json::<EnrollResponse>()
            .await
            .map_err(|e| ChangeError::Unavailable(format!("enrollment answer: {e}")));
    }
    let refusal = resp.json::<EnrollRefusal>().await.ok();
    let why = refusal.map_or_else(|| format!("http {status}"), |r| r.error);
    if status.is_client_error() {
        Err(ChangeError::Rejected(model::Refusal::NotAllowed(format!(
            "{seed} refused the enrollment: {why}"
        ))))
    } else {
        Err(ChangeError::Unavailable(format!(
            "{seed} could not enroll this node now: {why}"
        )))
    }
}

/// Body of `/cluster/remove`, sent to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RemoveRequest {
    pub node_id: u64,
}

/// A light message between members outside the Raft log (load reports of global rate limits,
/// say): best effort, never replicated or persisted.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct GossipMessage {
    pub from: NodeId,
    pub topic: String,
    pub payload: serde_json::Value,
}

/// Where gossip messages arriving at this node go: one bounded channel per topic.
#[derive(Clone, Default)]
pub(crate) struct GossipInbox(
    Arc<
        std::sync::Mutex<
            std::collections::HashMap<String, tokio::sync::mpsc::Sender<GossipMessage>>,
        >,
    >,
);

impl GossipInbox {
    pub fn subscribe(&self, topic: &str) -> tokio::sync::mpsc::Receiver<GossipMessage> {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(topic.to_string(), tx);
        rx
    }

    pub fn deliver(&self, msg: GossipMessage) {
        let tx = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&msg.topic)
            .cloned();
        if let Some(tx) = tx {
            let _ = tx.try_send(msg);
        }
    }
}

/// Body of `/cluster/join`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub node_id: u64,
    pub rpc_addr: String,
}

/// Answer of `/cluster/join` (also carried, with a non-2xx status, for refusals).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum JoinResponse {
    Joined,
    NotLeader { leader: Option<String> },
    Failed { error: String },
}

/// Answer of `/cluster/propose`: what the leader made of a write forwarded by a follower.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ProposeAnswer {
    /// Committed and applied on the leader: the config revision and the entry's log index.
    Applied {
        revision: u64,
        log_index: u64,
    },
    Rejected(model::Refusal),
    NotLeader {
        leader: Option<String>,
    },
    Unavailable(String),
}

/// Why an RPC got no usable answer.
#[derive(Debug, thiserror::Error)]
enum RpcFailure {
    #[error("peer answered http status {0}")]
    Status(reqwest::StatusCode),
}

/// Builds the HTTP client all cluster RPC uses: with the node's certificate over TLS when the
/// cluster has TLS.
pub(crate) fn http_client(
    tls: Option<&crate::tls::ClusterTls>,
) -> Result<reqwest::Client, crate::StartError> {
    // Proxies from the environment must never see cluster traffic or the secret.
    let mut builder = reqwest::Client::builder();
    if let Some(tls) = tls {
        builder = builder.use_preconfigured_tls(tls.client_config()?);
    }
    Ok(builder
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        // Sooner than the server ends idle connections, so a request never lands on one it
        // is closing.
        .pool_idle_timeout(server::HEADER_TIMEOUT / 2)
        .build()?)
}

/// When each peer last answered a Raft RPC: how a leader tells it still has a majority
/// (openraft's own `millis_since_quorum_ack` is only as fresh as its last metrics report).
/// It also says once when a peer stops answering and once when it is back (openraft itself
/// would log every failed heartbeat).
#[derive(Default, Debug)]
pub struct Contacts(std::sync::Mutex<ContactBook>);

#[derive(Default, Debug)]
struct ContactBook {
    last: std::collections::HashMap<NodeId, std::time::Instant>,
    silent: std::collections::HashSet<NodeId>,
}

impl Contacts {
    fn book(&self) -> std::sync::MutexGuard<'_, ContactBook> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn heard(&self, peer: NodeId, addr: &str) {
        let mut book = self.book();
        book.last.insert(peer, std::time::Instant::now());
        if book.silent.remove(&peer) {
            tracing::info!(peer, %addr, "cluster peer answers again");
        }
    }

    fn failed(&self, peer: NodeId, addr: &str, error: &dyn std::fmt::Display) {
        if self.book().silent.insert(peer) {
            tracing::warn!(peer, %addr, %error, "cluster peer does not answer");
        }
    }

    /// How long ago `peer` last answered; `None` if it never has.
    pub fn since(&self, peer: NodeId) -> Option<Duration> {
        self.book().last.get(&peer).map(|t| t.elapsed())
    }
}

/// Creates one [`PeerClient`] per replication target.
#[derive(Clone)]
pub struct NetworkFactory {
    client: reqwest::Client,
    scheme: &'static str,
    secret: Arc<str>,
    contacts: Arc<Contacts>,
}

impl NetworkFactory {
    pub fn new(
        client: reqwest::Client,
        scheme: &'static str,
        secret: Arc<str>,
        contacts: Arc<Contacts>,
    ) -> NetworkFactory {
        NetworkFactory {
            client,
            scheme,
            secret,
            contacts,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        PeerClient {
            target,
            url: format!("{}://{}", self.scheme, node.addr),
            addr: node.addr.clone(),
            client: self.client.clone(),
            secret: self.secret.clone(),
            contacts: self.contacts.clone(),
        }
    }
}

// === impl PeerClient ===

pub struct PeerClient {
    target: NodeId,
    /// `scheme://host:port`
    url: String,
    addr: String,
    client: reqwest::Client,
    secret: Arc<str>,
    contacts: Arc<Contacts>,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, Node, RaftError<NodeId, E>>>;

impl PeerClient {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let url = format!("{}{}", self.url, path);
        let resp = self
            .client
            .post(url)
            .bearer_auth(&*self.secret)
            .json(req)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| {
                self.contacts.failed(self.target, &self.addr, &e);
                if e.is_connect() {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                }
            })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(RPCError::Network(NetworkError::new(&RpcFailure::Status(
                status,
            ))));
        }
        let res: Result<Resp, RaftError<NodeId, E>> = resp
            .json()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        // It answered (even a refusal is an answer from a live, authenticated peer).
        self.contacts.heard(self.target, &self.addr);
        res.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        self.call(PATH_APPEND, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(PATH_SNAPSHOT, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        self.call(PATH_VOTE, &rpc, option.hard_ttl()).await
    }
}
