//! What one node knows of its cluster (its own Raft state, and on the leader each peer's
//! replication and last contact), the whole cluster's status gathered from every member, and
//! safe removal of a member.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};

use crate::network::{Contacts, ProposeAnswer};
use crate::types::{NodeId, Raft};
use model::Refusal;

/// A leader that has heard from no majority for this long has lost its quorum: it says so
/// (alarm, `meridian_raft_has_quorum`) and refuses writes at once instead of holding them until
/// they time out. Past it the others have elected anew (a follower stands after 1.25–1.5 s).
pub const QUORUM_LOST_MS: u64 = model::records::PEER_SILENT_MS;

/// A point-in-time view of this node's Raft state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RaftStatus {
    pub node_id: u64,
    /// "Leader", "Follower", "Candidate", "Learner", "Shutdown" or "OutOfService".
    pub state: String,
    pub current_term: u64,
    /// The last committed log index this node knows of.
    pub commit_index: u64,
    pub last_applied: u64,
    /// The last index in this node's log (committed or not).
    #[serde(default)]
    pub last_log_index: u64,
    pub leader: Option<u64>,
    /// Every member (voters and learners) with its cluster address.
    pub members: Vec<(u64, String)>,
    /// The members that vote.
    #[serde(default)]
    pub voters: Vec<u64>,
    /// On the leader: how long since a majority last acknowledged it, in ms.
    pub quorum_ack_ms: Option<u64>,
    /// On the leader: each other member's replication state.
    #[serde(default)]
    pub peers: Vec<PeerStatus>,
    /// When this node's cluster certificate expires (Unix seconds); `None` without cluster
    /// TLS.
    #[serde(default)]
    pub cert_not_after_unix: Option<i64>,
    /// A witness: votes, serves no traffic.
    #[serde(default)]
    pub witness: bool,
    /// The newest validation schema this node's release applies.
    #[serde(default)]
    pub schema_supported: u32,
    /// Raft hit a fatal error here: the node is out of service until restarted.
    #[serde(default)]
    pub out_of_service: bool,
}

/// The leader's view of one follower or learner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub node_id: u64,
    /// The last log index known to be in the peer's log.
    pub matched: Option<u64>,
    /// Entries the peer lacks of the leader's log.
    pub lag: u64,
    /// Milliseconds since the peer last answered a Raft RPC of this node.
    pub last_contact_ms: Option<u64>,
}

impl RaftStatus {
    /// This node leads but no majority has acknowledged it for [`QUORUM_LOST_MS`].
    pub fn lost_quorum(&self) -> bool {
        self.state == "Leader" && self.quorum_ack_ms.is_some_and(|ms| ms > QUORUM_LOST_MS)
    }

    pub fn is_voter(&self, id: u64) -> bool {
        self.voters.contains(&id)
    }
}

/// One member as the whole-cluster status shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberStatus {
    pub node_id: u64,
    /// The address other nodes reach its cluster port on.
    pub address: String,
    /// "leader", "voter" or "learner", from the membership this node knows.
    pub role: String,
    /// Its own report, when it answered.
    pub status: Option<RaftStatus>,
    /// Why it did not answer.
    pub error: Option<String>,
    /// Entries it lacks of the leader's log (from the leader's replication state).
    pub lag: Option<u64>,
    /// Milliseconds since it last answered the leader.
    pub last_contact_ms: Option<u64>,
}

/// Every member's state, as gathered by the node asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The node that gathered it.
    pub asked: u64,
    pub leader: Option<u64>,
    pub members: Vec<MemberStatus>,
}

/// Set once Raft hit a fatal error (or stopped): the node is out of service until restarted.
/// Read as a flag on every request; awaited through a watch by whoever must act on it.
#[derive(Debug)]
pub(crate) struct OutOfService {
    flag: AtomicBool,
    tx: tokio::sync::watch::Sender<bool>,
}

impl OutOfService {
    pub fn new() -> OutOfService {
        OutOfService {
            flag: AtomicBool::new(false),
            tx: tokio::sync::watch::channel(false).0,
        }
    }

    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Sets it; answers whether it already was.
    pub fn set(&self) -> bool {
        let was = self.flag.swap(true, Ordering::SeqCst);
        self.tx.send_replace(true);
        was
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<bool> {
        self.tx.subscribe()
    }
}

/// The parts of a running node its status and membership changes need; shared by
/// [`crate::ClusterNode`] and the RPC server.
pub(crate) struct Local {
    pub node_id: NodeId,
    pub raft: Raft,
    pub contacts: Arc<Contacts>,
    pub committed: Arc<AtomicU64>,
    pub out_of_service: Arc<OutOfService>,
    /// This node's cluster credentials (their expiry changes when renewed).
    pub tls: Option<crate::tls::ClusterTls>,
    /// When a leader last sent this node AppendEntries (heartbeats included).
    pub leader_heard: std::sync::Mutex<Option<std::time::Instant>>,
    pub witness: bool,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A follower that has not heard its leader for this long does not forward writes to it: it
/// refuses them at once (the leader heartbeats every 200 ms).
pub const LEADER_SILENT_MS: u64 = 1_000;

impl Local {
    pub fn heard_leader(&self) {
        *self
            .leader_heard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(std::time::Instant::now());
    }

    /// Milliseconds since a leader last sent AppendEntries here; `None` if none ever did.
    pub fn leader_silent_ms(&self) -> Option<u64> {
        self.leader_heard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map(|t| millis(t.elapsed()))
    }

    pub fn status(&self) -> RaftStatus {
        let m = self.raft.metrics().borrow().clone();
        let out_of_service = self.out_of_service.is_set();
        let state = if out_of_service {
            "OutOfService".to_string()
        } else {
            format!("{:?}", m.state)
        };
        let applied = m.last_applied.map(|id| id.index).unwrap_or(0);
        let last_log_index = m.last_log_index.unwrap_or(0);
        let leader = m.state == openraft::ServerState::Leader;
        let peers = match (&m.replication, leader) {
            (Some(replication), true) => replication
                .iter()
                .filter(|(id, _)| **id != self.node_id)
                .map(|(id, matched)| {
                    let matched = matched.map(|l| l.index);
                    PeerStatus {
                        node_id: *id,
                        matched,
                        lag: last_log_index.saturating_sub(matched.unwrap_or(0)),
                        last_contact_ms: self.contacts.since(*id).map(millis),
                    }
                })
                .collect(),
            _ => Vec::new(),
        };
        RaftStatus {
            node_id: self.node_id,
            state,
            current_term: m.current_term,
            // Applied entries are committed, whatever the store last heard.
            commit_index: self.committed.load(Ordering::Relaxed).max(applied),
            last_applied: applied,
            last_log_index,
            leader: m.current_leader,
            members: m
                .membership_config
                .nodes()
                .map(|(id, n)| (*id, n.addr.clone()))
                .collect(),
            voters: m.membership_config.membership().voter_ids().collect(),
            quorum_ack_ms: self.quorum_ack_ms(&m),
            peers,
            cert_not_after_unix: self.tls.as_ref().and_then(|t| t.not_after_unix()),
            witness: self.witness,
            schema_supported: model::SCHEMA_SUPPORTED,
            out_of_service,
        }
    }

    /// On a leader that has lost its quorum: its term and how long no majority has answered
    /// (ms). The per-request check: it builds no status.
    pub fn quorum_lost(&self) -> Option<(u64, u64)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        self.quorum_ack_ms(&m)
            .filter(|ms| *ms > QUORUM_LOST_MS)
            .map(|ms| (m.current_term, ms))
    }

    /// On the leader: how long since a majority of the voters (itself included) last answered,
    /// from the times its Raft RPCs were answered; `None` on other nodes.
    fn quorum_ack_ms(&self, m: &openraft::RaftMetrics<NodeId, crate::types::Node>) -> Option<u64> {
        if m.state != openraft::ServerState::Leader {
            return None;
        }
        let mut ages: Vec<u64> = m
            .membership_config
            .membership()
            .voter_ids()
            .map(|id| self.age(id))
            .collect();
        ages.sort_unstable();
        // The majority-th freshest answer: a majority has answered within that long.
        let majority = ages.len() / 2 + 1;
        ages.get(majority.saturating_sub(1)).copied()
    }

    /// Milliseconds since `id` last answered this node (0 for itself, MAX if never).
    fn age(&self, id: NodeId) -> u64 {
        if id == self.node_id {
            0
        } else {
            self.contacts.since(id).map_or(u64::MAX, millis)
        }
    }

    /// On the leader: takes `id` out of the cluster, first as a voter (it becomes a learner),
    /// then as a member. Refused, with the reason, when `id` is not a member, is the only
    /// voter, or when the voters left would not have a majority answering now.
    pub async fn remove_member(&self, id: NodeId) -> ProposeAnswer {
        let status = self.status();
        if status.state != "Leader" {
            let leader = status
                .leader
                .and_then(|l| status.members.iter().find(|(m, _)| *m == l))
                .map(|(_, addr)| addr.clone());
            return ProposeAnswer::NotLeader { leader };
        }
        if !status.members.iter().any(|(m, _)| *m == id) {
            let known: Vec<String> = status.members.iter().map(|(m, _)| m.to_string()).collect();
            return refused(format!(
                "node {id} is not a member of this cluster (members: {})",
                known.join(", ")
            ));
        }
        if status.lost_quorum() {
            return ProposeAnswer::Unavailable(
                "this leader has heard from no majority for seconds; no membership change \
                 can commit (nothing was changed)"
                    .into(),
            );
        }
        if status.is_voter(id) {
            if status.voters.len() == 1 {
                return refused(format!(
                    "node {id} is the cluster's only voter: removing it would leave no one to \
                     commit anything"
                ));
            }
            // Joint consensus needs a majority of the voters now, and of those after.
            let answering_now = status
                .voters
                .iter()
                .filter(|v| self.age(**v) <= QUORUM_LOST_MS)
                .count();
            if answering_now < status.voters.len() / 2 + 1 {
                return refused(format!(
                    "only {answering_now} of the {} voters answer now: a membership change \
                     cannot commit without a majority (bring nodes back first)",
                    status.voters.len()
                ));
            }
            let remaining: Vec<NodeId> =
                status.voters.iter().copied().filter(|v| *v != id).collect();
            let answering = remaining
                .iter()
                .filter(|v| self.age(**v) <= QUORUM_LOST_MS)
                .count();
            let needed = remaining.len() / 2 + 1;
            if answering < needed {
                return refused(format!(
                    "removing node {id} would leave {} voters of which {answering} answer now, \
                     and {needed} are needed for a quorum: bring the others back first",
                    remaining.len()
                ));
            }
            let demote = ChangeMembers::RemoveVoters(BTreeSet::from([id]));
            if let Err(e) = self.raft.change_membership(demote, true).await {
                return membership_error(e);
            }
        }
        match self
            .raft
            .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
            .await
        {
            Ok(resp) => {
                tracing::info!(node_id = id, "node removed from the cluster");
                ProposeAnswer::Applied {
                    revision: 0,
                    log_index: resp.log_id.index,
                }
            }
            Err(e) => membership_error(e),
        }
    }
}

fn refused(why: String) -> ProposeAnswer {
    ProposeAnswer::Rejected(Refusal::NotAllowed(why))
}

fn membership_error(
    e: RaftError<NodeId, ClientWriteError<NodeId, crate::types::Node>>,
) -> ProposeAnswer {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ProposeAnswer::NotLeader {
            leader: f.leader_node.map(|n| n.addr),
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => refused(c.to_string()),
        other => ProposeAnswer::Unavailable(other.to_string()),
    }
}

/// Puts each member's own report (or why it gave none) beside the leader's view of it. The
/// leader's view comes from its own report, whichever member it is.
pub(crate) fn gather(
    asked: NodeId,
    own: &RaftStatus,
    reports: std::collections::BTreeMap<NodeId, Result<RaftStatus, String>>,
) -> ClusterStatus {
    // The leader of the highest term any member reports.
    let leader_report = reports
        .values()
        .filter_map(|r| r.as_ref().ok())
        .filter(|r| r.state == "Leader")
        .max_by_key(|r| r.current_term);
    let leader = leader_report.map(|r| r.node_id).or(own.leader);
    let members = own
        .members
        .iter()
        .map(|(id, address)| {
            let report = reports.get(id);
            let peer = leader_report.and_then(|l| l.peers.iter().find(|p| p.node_id == *id));
            let witness = report
                .and_then(|r| r.as_ref().ok())
                .is_some_and(|r| r.witness);
            let role = if Some(*id) == leader {
                "leader"
            } else if witness {
                "witness"
            } else if own.is_voter(*id) {
                "voter"
            } else {
                "learner"
            };
            MemberStatus {
                node_id: *id,
                address: address.clone(),
                role: role.to_string(),
                status: report.and_then(|r| r.as_ref().ok()).cloned(),
                error: match report {
                    Some(Err(e)) => Some(e.clone()),
                    Some(Ok(_)) => None,
                    None => Some("not asked".into()),
                },
                lag: if Some(*id) == leader {
                    Some(0)
                } else {
                    peer.map(|p| p.lag)
                },
                last_contact_ms: peer.and_then(|p| p.last_contact_ms),
            }
        })
        .collect();
    ClusterStatus {
        asked,
        leader,
        members,
    }
}

/// How long a read barrier may take (a heartbeat round, then applying up to the index).
pub(crate) const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// On the leader: the read index, after a heartbeat round confirmed a quorum still follows.
pub(crate) async fn read_index(raft: &Raft) -> crate::network::ReadIndexAnswer {
    use crate::network::ReadIndexAnswer;
    use openraft::error::CheckIsLeaderError;
    match tokio::time::timeout(READ_TIMEOUT, raft.get_read_log_id()).await {
        Err(_) => ReadIndexAnswer::Unavailable(format!(
            "no quorum confirmed the leader within {} s",
            READ_TIMEOUT.as_secs()
        )),
        Ok(Ok((read, _))) => ReadIndexAnswer::Index(read.map_or(0, |l| l.index)),
        Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
            ReadIndexAnswer::NotLeader {
                leader: f.leader_node.map(|n| n.addr),
            }
        }
        Ok(Err(e)) => ReadIndexAnswer::Unavailable(e.to_string()),
    }
}
