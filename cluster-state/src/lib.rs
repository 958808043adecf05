//! The replicated cluster state of Meridian: one configuration document plus users and tokens,
//! kept consistent across nodes by openraft and stored durably in sled.
//!
//! **API Boundary:** [`ClusterNode`] and the types re-exported here are all the binary and the
//! console use. **Architecture Invariant:** only this crate touches the Raft log and the store.
//!
//! Durability: a log append is acknowledged to Raft only after the store flushed it (in the
//! background, one flush for every append queued meanwhile); the state machine (document, auth,
//! revision, last applied id, membership) is written after every applied batch and made durable
//! by the next flush, so a restart resumes where it was, and after a kill -9 openraft applies
//! again, from the durable log, whatever the document had not yet made durable. The revision is
//! the log index of the last entry that changed the config document.

mod command;
mod error;
mod log_store;
mod members;
mod network;
mod node;
mod state_machine;
mod store;
mod tls;
mod types;

pub use command::{
    Applied, AuditEntry, AuthState, Command, RevisionRecord, TokenInfo, UserRecord, AUDIT_MAX,
    HISTORY_KEEP,
};
pub use error::StartError;
pub use members::{ClusterStatus, MemberStatus, PeerStatus, RaftStatus, QUORUM_LOST_MS};
pub use model::{ChangeError, Refusal};
pub use network::{
    enroll, BoxFuture, EnrollRefusal, EnrollRequest, EnrollResponse, Enroller, GossipMessage,
    JoinRequest, JoinResponse,
};
pub use node::{ClusterNode, NodeConfig};
pub use state_machine::LoadError;
pub use store::{StorageKind, StoreError};
pub use tls::{enroll_client, ClusterTls, EnrollTrust, TlsError};
