//! The errors `ClusterNode` returns to its callers.

use crate::state_machine::LoadError;
use crate::store::StoreError;

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
