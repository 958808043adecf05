//! The errors `ClusterNode` returns to its callers.

use crate::command::ApplyError;
use crate::state_machine::LoadError;
use crate::store::StoreError;

/// Why a proposal (or a join) did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// Committed but refused by the state machine, deterministically on every node.
    #[error("rejected: {0}")]
    Rejected(ApplyError),
    /// This node is not the leader; the leader's RPC address when known.
    #[error("not the leader (leader: {})", leader.as_deref().unwrap_or("unknown"))]
    NotLeader { leader: Option<String> },
    /// Not appended anywhere: no leader, no quorum, shutting down, the leader unreachable.
    /// Safe to retry.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    /// Sent, but not confirmed in time: it may have been committed, or may still be. A retry
    /// should read the revision first or carry a precondition (If-Match).
    #[error("outcome unknown: {0}")]
    Unknown(String),
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("creating data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("opening raft store: {0}")]
    Store(#[from] StoreError),
    #[error("loading state machine: {0}")]
    Load(#[from] LoadError),
    #[error("raft: {0}")]
    Raft(String),
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("no leader elected within {0:?}")]
    NoLeader(std::time::Duration),
}
