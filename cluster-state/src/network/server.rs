//! The cluster RPC server: an axum router for Raft messages and the cluster routes, behind
//! mutual TLS (a cluster-CA client certificate) and a bearer-secret check compared in constant
//! time. `/cluster/enroll` alone takes a connection without a certificate.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use openraft::error::{ClientWriteError, RaftError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::ChangeMembers;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{
    GossipMessage, JoinRequest, JoinResponse, ProposeAnswer, RemoveRequest, PATH_APPEND,
    PATH_ENROLL, PATH_GOSSIP, PATH_JOIN, PATH_PROPOSE, PATH_READ_INDEX, PATH_REMOVE, PATH_SNAPSHOT,
    PATH_STATUS, PATH_VOTE,
};
use crate::command::Command;
use crate::members::Local;
use crate::types::{Node, NodeId, Raft, TypeConfig};

/// Log entries and snapshot chunks are JSON, so allow far more than axum's 2 MiB default.
const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// Connections served at once; past it a new one is closed at once (peers reconnect). Three to
/// seven nodes hold a few each.
const MAX_CONNECTIONS: usize = 256;

/// A request head not in by then ends the connection; an idle kept-alive connection ends then
/// too (the peers' clients drop theirs sooner, see `network::http_client`).
pub(crate) const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A request whose body has not arrived and been handled by then is answered 408.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves `app` on `listener` until `stop` fires: each connection under [`HEADER_TIMEOUT`],
/// each request under [`REQUEST_TIMEOUT`], at most [`MAX_CONNECTIONS`] at once. When it stops,
/// every open connection is closed too: none may go on serving a stopped Raft node.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut refused_logged = None::<std::time::Instant>;
    // Dropped on return: aborts every connection task.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            Some(_) = connections.join_next() => continue,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "cluster rpc accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            if refused_logged.is_none_or(|t| t.elapsed() > std::time::Duration::from_secs(10)) {
                tracing::warn!(%peer, "cluster rpc: {MAX_CONNECTIONS} connections open; refusing more");
                refused_logged = Some(std::time::Instant::now());
            }
            continue;
        };
        let app = app
            .clone()
            .layer(axum::Extension(axum::extract::ConnectInfo(peer)));
        let tls = tls.clone();
        connections.spawn(async move {
            let _permit = permit;
            let Some(acceptor) = tls else {
                return serve_connection(tcp, app, PeerCert(false), peer).await;
            };
            match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    // rustls verified it against the cluster CA when one was presented.
                    let verified = stream.get_ref().1.peer_certificates().is_some();
                    serve_connection(stream, app, PeerCert(verified), peer).await;
                }
                Ok(Err(e)) => {
                    if REFUSED_LOG.due() {
                        tracing::warn!(%peer, error = %e, "cluster rpc: TLS handshake failed (further refusals for 10 s not logged)");
                    }
                }
                Err(_) => tracing::debug!(%peer, "cluster rpc: TLS handshake timed out"),
            }
        });
    }
}

/// Whether the connection presented a client certificate the cluster CA signed.
#[derive(Clone, Copy, Debug)]
struct PeerCert(bool);

async fn serve_connection<I>(io: I, app: Router, cert: PeerCert, peer: std::net::SocketAddr)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    let svc = TowerToHyperService::new(app.layer(axum::Extension(cert)));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), svc);
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "cluster rpc connection ended with an error");
    }
}

/// Answers 408 to a request not done within [`REQUEST_TIMEOUT`] (a body sent halfway, say).
async fn deadline(req: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(response) => response,
        Err(_) => (StatusCode::REQUEST_TIMEOUT, "request timed out\n").into_response(),
    }
}

#[derive(Clone)]
pub(crate) struct RpcState {
    raft: Raft,
    local: Arc<Local>,
    secret_digest: Arc<[u8; 32]>,
    gossip: super::GossipInbox,
    /// Cluster TLS is on: every route but enrollment needs a cluster certificate.
    tls: bool,
    pub enroller: Arc<std::sync::OnceLock<Arc<dyn super::Enroller>>>,
}

impl RpcState {
    pub fn new(local: Arc<Local>, secret: &str, gossip: super::GossipInbox, tls: bool) -> RpcState {
        RpcState {
            raft: local.raft.clone(),
            local,
            secret_digest: Arc::new(digest(secret.as_bytes())),
            gossip,
            tls,
            enroller: Arc::default(),
        }
    }
}

/// The whole cluster RPC surface; every route requires the bearer secret.
pub(crate) fn router(state: RpcState) -> Router {
    Router::new()
        .route(PATH_APPEND, post(append))
        .route(PATH_VOTE, post(vote))
        .route(PATH_SNAPSHOT, post(snapshot))
        .route(PATH_JOIN, post(join))
        .route(PATH_PROPOSE, post(propose))
        .route(PATH_GOSSIP, post(gossip))
        .route(PATH_STATUS, get(status))
        .route(PATH_REMOVE, post(remove))
        .route(PATH_ENROLL, post(enroll))
        .route(PATH_READ_INDEX, post(read_index))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_secret,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(deadline))
        .with_state(state)
}

static REFUSED_LOG: model::LogThrottle = model::LogThrottle::new();

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Hashing both sides first makes the comparison constant-time in the secret's length too.
fn secret_presented(state: &RpcState, req: &Request) -> (bool, bool) {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let ok = match presented {
        Some(token) => bool::from(digest(token.as_bytes()).ct_eq(&*state.secret_digest)),
        None => false,
    };
    (presented.is_some(), ok)
}

/// Every route but enrollment: a cluster certificate (with cluster TLS) and the secret.
async fn require_secret(State(state): State<RpcState>, mut req: Request, next: Next) -> Response {
    let cert = req.extensions().get::<PeerCert>().is_some_and(|c| c.0);
    if req.uri().path() == PATH_ENROLL {
        let (presented, with_secret) = secret_presented(&state, &req);
        if presented && !with_secret {
            if REFUSED_LOG.due() {
                tracing::warn!(peer = %peer_of(&req), "enrollment refused: wrong cluster secret (further refusals for 10 s not logged)");
            }
            let refusal = super::EnrollRefusal {
                status: 401,
                error: "wrong cluster secret".into(),
            };
            return (StatusCode::UNAUTHORIZED, Json(refusal)).into_response();
        }
        req.extensions_mut().insert(WithSecret(with_secret));
        return next.run(req).await;
    }
    if state.tls && !cert {
        if REFUSED_LOG.due() {
            tracing::warn!(
                peer = %peer_of(&req),
                path = %req.uri().path(),
                "cluster rpc refused: no cluster certificate (further refusals for 10 s not logged)"
            );
        }
        return (
            StatusCode::UNAUTHORIZED,
            "a client certificate from the cluster CA is required\n",
        )
            .into_response();
    }
    let (presented, ok) = secret_presented(&state, &req);
    if !ok {
        // Anyone can knock: logged at most every 10 s.
        if REFUSED_LOG.due() {
            tracing::warn!(
                peer = %peer_of(&req),
                path = %req.uri().path(),
                presented,
                "cluster rpc refused: wrong or missing cluster secret (further refusals for 10 s not logged)"
            );
        }
        return (StatusCode::UNAUTHORIZED, "unauthorized\n").into_response();
    }
    next.run(req).await
}

fn peer_of(req: &Request) -> String {
    req.extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Whether an enrollment carried the cluster secret as its bearer token.
#[derive(Clone, Copy, Debug)]
struct WithSecret(bool);

/// A pristine node asks for its certificate with a join token or the shared secret.
async fn enroll(
    State(state): State<RpcState>,
    axum::Extension(WithSecret(with_secret)): axum::Extension<WithSecret>,
    Json(req): Json<super::EnrollRequest>,
) -> Response {
    let Some(enroller) = state.enroller.get() else {
        let refusal = super::EnrollRefusal {
            status: 503,
            error: "this member cannot enroll nodes yet".into(),
        };
        return (StatusCode::SERVICE_UNAVAILABLE, Json(refusal)).into_response();
    };
    match enroller.enroll(req, with_secret).await {
        Ok(answer) => Json(answer).into_response(),
        Err(refusal) => (
            StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::FORBIDDEN),
            Json(refusal),
        )
            .into_response(),
    }
}

async fn append(
    State(state): State<RpcState>,
    Json(req): Json<AppendEntriesRequest<TypeConfig>>,
) -> Response {
    state.local.heard_leader();
    Json(state.raft.append_entries(req).await).into_response()
}

async fn vote(State(state): State<RpcState>, Json(req): Json<VoteRequest<NodeId>>) -> Response {
    Json(state.raft.vote(req).await).into_response()
}

async fn snapshot(
    State(state): State<RpcState>,
    Json(req): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Response {
    Json(state.raft.install_snapshot(req).await).into_response()
}

/// On the leader: add the node as a learner (waiting until it caught up), then promote it.
async fn join(State(state): State<RpcState>, Json(req): Json<JoinRequest>) -> Response {
    // An id that already belongs to another address is a configuration mistake (two nodes with
    // one node_id); letting it "join" would silently do nothing.
    let existing = state
        .raft
        .metrics()
        .borrow()
        .membership_config
        .nodes()
        .find(|(id, _)| **id == req.node_id)
        .map(|(_, n)| n.addr.clone());
    if let Some(addr) = existing.filter(|a| *a != req.rpc_addr) {
        let body = JoinResponse::Failed {
            error: format!(
                "node id {} already belongs to the member at {addr}; give this node its own node_id",
                req.node_id
            ),
        };
        return (StatusCode::CONFLICT, Json(body)).into_response();
    }
    let node = Node {
        addr: req.rpc_addr.clone(),
    };
    let res = match state.raft.add_learner(req.node_id, node, true).await {
        Ok(_) => {
            let voters = BTreeSet::from([req.node_id]);
            state
                .raft
                .change_membership(ChangeMembers::AddVoterIds(voters), false)
                .await
        }
        Err(e) => Err(e),
    };
    match res {
        Ok(_) => {
            tracing::info!(node_id = req.node_id, rpc_addr = %req.rpc_addr, "node joined the cluster");
            (StatusCode::OK, Json(JoinResponse::Joined)).into_response()
        }
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            let leader = f.leader_node.map(|n| n.addr);
            (
                StatusCode::MISDIRECTED_REQUEST,
                Json(JoinResponse::NotLeader { leader }),
            )
                .into_response()
        }
        Err(e) => {
            tracing::warn!(node_id = req.node_id, error = %e, "join failed");
            let body = JoinResponse::Failed {
                error: e.to_string(),
            };
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

/// A write forwarded by a follower: run it through Raft here, as the leader.
async fn propose(State(state): State<RpcState>, Json(cmd): Json<Command>) -> Response {
    let answer = match state.raft.client_write(cmd).await {
        Ok(resp) => match resp.data.result {
            Ok(revision) => ProposeAnswer::Applied {
                revision,
                log_index: resp.log_id.index,
            },
            Err(e) => ProposeAnswer::Rejected(e),
        },
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            ProposeAnswer::NotLeader {
                leader: f.leader_node.map(|n| n.addr),
            }
        }
        Err(e) => ProposeAnswer::Unavailable(e.to_string()),
    };
    Json(answer).into_response()
}

/// A gossip message from another member, handed to whoever subscribed to its topic (and
/// dropped when nobody did, or the subscriber is behind).
async fn gossip(State(state): State<RpcState>, Json(msg): Json<GossipMessage>) -> Response {
    state.gossip.deliver(msg);
    StatusCode::NO_CONTENT.into_response()
}

/// This node's own Raft state, for another member gathering the cluster's status.
async fn status(State(state): State<RpcState>) -> Response {
    Json(state.local.status()).into_response()
}

/// A member removal forwarded by a follower: done here, as the leader.
async fn remove(State(state): State<RpcState>, Json(req): Json<RemoveRequest>) -> Response {
    Json(state.local.remove_member(req.node_id).await).into_response()
}

/// A follower's linearizable read: this node's read index, once a quorum confirmed it leads.
async fn read_index(State(state): State<RpcState>) -> Response {
    Json(crate::members::read_index(&state.raft).await).into_response()
}
