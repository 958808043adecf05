//! The node's implementation of `webui::Backend`: reads go to the local replicated state and
//! the data plane, writes become Raft commands.

use std::sync::Arc;

use cluster_state::{ApplyError, ClusterNode, ProposeError};
use model::{Config, HealthView, Revisioned};
use webui::{AuthView, BoxFuture, Change, ChangeError, ListenerView, RaftView};

pub struct NodeBackend {
    pub cluster: Arc<ClusterNode>,
    pub dataplane: Arc<lb::DataPlane>,
    pub dns_alarm: gslb_dns::CompileAlarm,
}

fn change_error(e: ProposeError) -> ChangeError {
    match e {
        ProposeError::Rejected(ApplyError::StaleRevision { expected, current }) => {
            ChangeError::Stale { expected, current }
        }
        ProposeError::Rejected(ApplyError::Invalid(v)) => ChangeError::Invalid(v),
        ProposeError::Rejected(ApplyError::NotFound { kind, name }) => {
            ChangeError::NotFound { kind, name }
        }
        ProposeError::NotLeader { leader } => ChangeError::NotLeader { leader },
        ProposeError::Unavailable(why) => ChangeError::Unavailable(why),
    }
}

impl webui::Backend for NodeBackend {
    fn config(&self) -> Arc<Revisioned<Config>> {
        self.cluster.current().config
    }

    fn auth(&self) -> AuthView {
        let auth = self.cluster.current().auth;
        AuthView {
            users: auth.users.clone(),
            tokens: auth
                .tokens
                .iter()
                .map(|(id, t)| (id.clone(), (t.name.clone(), t.user.clone())))
                .collect(),
        }
    }

    fn propose(&self, change: Change) -> BoxFuture<'_, Result<u64, ChangeError>> {
        Box::pin(async move { self.cluster.propose(change).await.map_err(change_error) })
    }

    fn raft(&self) -> RaftView {
        let s = self.cluster.status();
        RaftView {
            node_id: s.node_id,
            state: s.state,
            term: s.current_term,
            commit_index: s.commit_index,
            last_applied: s.last_applied,
            leader: s.leader,
            members: s.members,
        }
    }

    fn health(&self) -> Arc<dyn HealthView> {
        self.dataplane.health()
    }

    fn alarms(&self) -> Vec<String> {
        let mut alarms = Vec::new();
        let raft = self.cluster.status();
        if raft.state == "OutOfService" {
            alarms.push(
                "Raft: this node hit a fatal error and is out of service; restart it".to_string(),
            );
        } else if raft.leader.is_none() {
            alarms.push("Raft: no leader is known; changes cannot be committed".to_string());
        }
        let revision = self.cluster.current().config.revision;
        let serving = self.dataplane.revision();
        if serving != revision {
            alarms.push(format!(
                "Proxy: serving revision {serving}, the cluster is at revision {revision}"
            ));
        }
        if let Some(a) = self.dataplane.compile_alarm() {
            alarms.push(format!(
                "Proxy: revision {} cannot be compiled ({}); still serving revision {}",
                a.revision, a.error, a.serving
            ));
        }
        for (name, bind, state) in self.dataplane.listener_states() {
            if let lb::ListenerState::Failed(e) = state {
                alarms.push(format!("Listener {name} ({bind}): bind failed: {e}"));
            }
        }
        alarms.extend(self.dns_alarm.get());
        alarms
    }

    fn listeners(&self) -> Vec<ListenerView> {
        let config = self.cluster.current().config;
        self.dataplane
            .listener_states()
            .into_iter()
            .map(|(name, bind, state)| ListenerView {
                protocol: match config.value.listeners.iter().find(|l| l.name == name) {
                    Some(model::Listener {
                        protocol: model::ListenerProtocol::Tcp,
                        pool: Some(pool),
                        ..
                    }) => format!("TCP → pool {pool}"),
                    _ => "HTTP/1.1 + HTTP/2 (h2c)".to_string(),
                },
                name,
                bind: bind.to_string(),
                state: match state {
                    lb::ListenerState::Listening => "listening".to_string(),
                    lb::ListenerState::Binding => "binding".to_string(),
                    lb::ListenerState::Failed(e) => format!("bind failed: {e}"),
                },
            })
            .collect()
    }
}
