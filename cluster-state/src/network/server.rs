//! The cluster RPC server: an axum router for Raft messages and `/cluster/join`, behind a
//! bearer-secret check compared in constant time.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use openraft::error::{ClientWriteError, RaftError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::ChangeMembers;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{
    GossipMessage, JoinRequest, JoinResponse, ProposeAnswer, PATH_APPEND, PATH_GOSSIP, PATH_JOIN,
    PATH_PROPOSE, PATH_SNAPSHOT, PATH_VOTE,
};
use crate::command::Command;
use crate::types::{Node, NodeId, Raft, TypeConfig};

/// Log entries and snapshot chunks are JSON, so allow far more than axum's 2 MiB default.
const BODY_LIMIT: usize = 64 * 1024 * 1024;

#[derive(Clone)]
pub(crate) struct RpcState {
    raft: Raft,
    secret_digest: Arc<[u8; 32]>,
    gossip: super::GossipInbox,
}

impl RpcState {
    pub fn new(raft: Raft, secret: &str, gossip: super::GossipInbox) -> RpcState {
        RpcState {
            raft,
            secret_digest: Arc::new(digest(secret.as_bytes())),
            gossip,
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
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_secret,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Hashing both sides first makes the comparison constant-time in the secret's length too.
async fn require_secret(State(state): State<RpcState>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let ok = match presented {
        Some(token) => bool::from(digest(token.as_bytes()).ct_eq(&*state.secret_digest)),
        None => false,
    };
    if !ok {
        return (StatusCode::UNAUTHORIZED, "unauthorized\n").into_response();
    }
    next.run(req).await
}

async fn append(
    State(state): State<RpcState>,
    Json(req): Json<AppendEntriesRequest<TypeConfig>>,
) -> Response {
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
