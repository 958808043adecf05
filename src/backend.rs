//! The node's implementation of `webui::Backend`: reads go to the local replicated state and
//! the data plane, writes become Raft commands.

use std::sync::Arc;

use cluster_state::ClusterNode;
use std::collections::BTreeMap;

use model::records::{AuditEntry, AuthState, CertificateRecord, RevisionRecord};
use model::{Config, HealthView, Revisioned};
use webui::{BoxFuture, Change, ChangeError, ListenerView, RaftView};

pub struct NodeBackend {
    pub cluster: Arc<ClusterNode>,
    pub dataplane: Arc<lb::DataPlane>,
    pub dns_alarm: gslb_dns::CompileAlarm,
    /// GSLB site health as the cluster agrees on it (and every other target's, this node's).
    pub site_health: Arc<crate::site_health::SiteHealth>,
    /// The DNS answers served now, for `dns explain`.
    pub dns_answers: Arc<arc_swap::ArcSwap<gslb_dns::ZonesSnapshot>>,
    pub dns_metrics: gslb_dns::DnsMetrics,
    pub cluster_key: Arc<credentials::ClusterKey>,
    /// A witness serves no traffic: no data-plane alarms.
    pub witness: bool,
}

impl webui::Backend for NodeBackend {
    fn config(&self) -> Arc<Revisioned<Config>> {
        self.cluster.current().config
    }

    fn auth(&self) -> Arc<AuthState> {
        self.cluster.current().auth
    }

    fn history(&self) -> Arc<Vec<Arc<RevisionRecord>>> {
        self.cluster.current().history
    }

    fn audit(&self) -> Arc<Vec<Arc<AuditEntry>>> {
        self.cluster.current().audit
    }

    fn ocsp(&self) -> BTreeMap<String, webui::OcspView> {
        self.dataplane
            .certs()
            .all()
            .iter()
            .filter_map(|(name, c)| {
                let v = match c.ocsp.as_ref()? {
                    Ok(s) => webui::OcspView {
                        stapled: true,
                        detail: String::new(),
                        next_update_unix: s.next_update,
                    },
                    Err(e) => webui::OcspView {
                        stapled: false,
                        detail: e.clone(),
                        next_update_unix: None,
                    },
                };
                Some((name.clone(), v))
            })
            .collect()
    }

    fn ticket_keys(&self) -> Arc<Vec<Arc<model::records::TicketKeyRecord>>> {
        self.cluster.current().ticket_keys
    }

    fn tsig_keys(&self) -> Arc<BTreeMap<String, Arc<model::records::TsigKeyRecord>>> {
        self.cluster.current().tsig_keys
    }

    fn cache(&self) -> webui::CacheView {
        let store = self.dataplane.cache();
        let s = store.stats();
        let mut routes: Vec<webui::CacheRouteView> = self
            .dataplane
            .cache_routes()
            .into_iter()
            .map(
                |(route, [hits, misses, stale, revalidated, bypass], coalesced)| {
                    let served = hits + stale + revalidated;
                    let all = served + misses + bypass;
                    webui::CacheRouteView {
                        route,
                        hits,
                        misses,
                        stale,
                        revalidated,
                        bypass,
                        coalesced,
                        hit_ratio: if all == 0 {
                            0.0
                        } else {
                            served as f64 / all as f64
                        },
                    }
                },
            )
            .collect();
        routes.sort_by(|a, b| a.route.cmp(&b.route));
        routes.dedup_by(|a, b| a.route == b.route);
        webui::CacheView {
            memory_entries: s.memory_entries,
            memory_bytes: s.memory_bytes,
            memory_capacity_bytes: s.memory_capacity_bytes,
            disk_entries: s.disk_entries,
            disk_bytes: s.disk_bytes,
            disk_capacity_bytes: s.disk_capacity_bytes,
            disk_dir: s.disk_dir,
            routes,
            top_keys: store
                .top_keys(20)
                .into_iter()
                .map(|k| webui::CacheKeyView {
                    key: k.key,
                    encoding: k.encoding.to_string(),
                    hits: k.hits,
                    bytes: k.bytes as u64,
                    age_seconds: k.age_seconds,
                    ttl_seconds: k.ttl_seconds,
                })
                .collect(),
        }
    }

    fn cache_matches(&self, selector: &model::records::PurgeSelector) -> usize {
        self.dataplane.cache().count_matching(selector)
    }

    fn certificates(&self) -> Arc<BTreeMap<String, Arc<CertificateRecord>>> {
        self.cluster.current().certificates
    }

    fn kernel_tls(&self) -> Option<String> {
        self.dataplane.kernel_tls()
    }

    fn cluster_key(&self) -> Arc<credentials::ClusterKey> {
        self.cluster_key.clone()
    }

    fn propose(
        &self,
        change: Change,
        origin: model::Origin,
    ) -> BoxFuture<'_, Result<u64, ChangeError>> {
        Box::pin(async move {
            self.cluster
                .propose(model::Proposal { change, origin })
                .await
        })
    }

    fn raft(&self) -> RaftView {
        let s = self.cluster.status();
        let lost_quorum = s.lost_quorum();
        RaftView {
            node_id: s.node_id,
            state: s.state,
            term: s.current_term,
            commit_index: s.commit_index,
            last_applied: s.last_applied,
            leader: s.leader,
            lost_quorum,
            quorum_ack_ms: s.quorum_ack_ms,
            members: s.members,
            voters: s.voters,
            peers: s
                .peers
                .into_iter()
                .map(|p| webui::PeerView {
                    node_id: p.node_id,
                    lag: p.lag,
                    last_contact_ms: p.last_contact_ms,
                })
                .collect(),
        }
    }

    fn read_barrier(&self) -> BoxFuture<'_, Result<(), ChangeError>> {
        Box::pin(async move { self.cluster.read_barrier().await })
    }

    fn cluster_ca_fingerprint(&self) -> Option<String> {
        self.cluster
            .current()
            .cluster_ca
            .map(|ca| ca.fingerprint.clone())
    }

    fn join_tokens(&self) -> Arc<BTreeMap<String, model::records::JoinTokenRecord>> {
        self.cluster.current().join_tokens
    }

    fn cluster(&self) -> BoxFuture<'_, webui::ClusterView> {
        Box::pin(async move {
            let c = self.cluster.cluster_status().await;
            webui::ClusterView {
                schema: self.cluster.current().schema,
                asked: c.asked,
                leader: c.leader,
                members: c
                    .members
                    .into_iter()
                    .map(|m| webui::ClusterMemberView {
                        node_id: m.node_id,
                        address: m.address,
                        role: m.role,
                        reachable: m.status.is_some(),
                        error: m.error,
                        state: m.status.as_ref().map(|s| s.state.clone()),
                        term: m.status.as_ref().map(|s| s.current_term),
                        commit_index: m.status.as_ref().map(|s| s.commit_index),
                        last_applied: m.status.as_ref().map(|s| s.last_applied),
                        lag: m.lag,
                        last_contact_ms: m.last_contact_ms,
                        cert_not_after_unix: m.status.as_ref().and_then(|s| s.cert_not_after_unix),
                        schema_supported: m.status.as_ref().map(|s| s.schema_supported),
                    })
                    .collect(),
            }
        })
    }

    fn remove_member(&self, node_id: u64) -> BoxFuture<'_, Result<(), ChangeError>> {
        Box::pin(async move { self.cluster.remove_member(node_id).await })
    }

    fn dns_explain(&self, query: &webui::DnsExplainQuery) -> Result<webui::DnsExplanation, String> {
        crate::explain::explain(self, query)
    }

    fn import_zone(&self, origin: &str, text: &str) -> Result<model::ZoneSpec, Vec<String>> {
        gslb_dns::import_zone(origin, text)
    }

    fn site_votes(&self, key: &str) -> Vec<webui::SiteVote> {
        self.site_health
            .votes(key)
            .into_iter()
            .map(|v| webui::SiteVote {
                node: v.node,
                up: v.up,
            })
            .collect()
    }

    fn site_answers(&self, record: &str, site: &str) -> u64 {
        self.dns_metrics.answers_of(record, site)
    }

    fn health(&self) -> Arc<dyn HealthView> {
        self.site_health.clone()
    }

    fn alarms(&self) -> Vec<String> {
        let mut alarms = Vec::new();
        let raft = self.cluster.status();
        if raft.out_of_service {
            alarms.push(
                "Raft: this node hit a fatal error and is out of service; restart it".to_string(),
            );
        } else if raft.leader.is_none() {
            alarms.push("Raft: no leader is known; changes cannot be committed".to_string());
        } else if raft.lost_quorum() {
            alarms.push(format!(
                "Raft: this node leads but no majority has answered it for {} s; writes here \
                 are refused (is it cut off from the other nodes?)",
                raft.quorum_ack_ms.unwrap_or(0) / 1000
            ));
        }
        alarms.extend(peer_alarms(&raft));
        if let Some(not_after) = raft.cert_not_after_unix {
            let left = not_after - i64::try_from(model::unix_ms() / 1000).unwrap_or(i64::MAX);
            if left < 30 * 86_400 {
                alarms.push(format!(
                    "Cluster TLS: this node's certificate {} (node.pem in <data_dir>/cluster-tls); \
                     enroll the node again before it does",
                    if left <= 0 {
                        "has expired".to_string()
                    } else {
                        format!("expires in {} days", left / 86_400)
                    }
                ));
            }
        }
        let revision = self.cluster.current().config.revision;
        let serving = self.dataplane.revision();
        if serving != revision && !self.witness {
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
        let config = config_now(&self.cluster);
        if !self.witness {
            alarms.extend(down_alarms(&config, self.site_health.as_ref()));
        }
        alarms.extend(certificate_alarms(
            &config,
            &self.cluster.current().certificates,
        ));
        for (name, v) in self.ocsp() {
            if !v.stapled {
                alarms.push(format!(
                    "Certificate {name}: its OCSP response is not stapled: {}",
                    v.detail
                ));
            }
        }
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
                    Some(model::Listener { tls: Some(t), .. }) => format!(
                        "HTTPS (HTTP/1.1 + HTTP/2 by ALPN), TLS {}+, kernel TLS {}",
                        match t.min_version {
                            model::TlsVersion::Tls12 => "1.2",
                            model::TlsVersion::Tls13 => "1.3",
                        },
                        match t.ktls {
                            model::KtlsMode::Auto => "auto",
                            model::KtlsMode::On => "on",
                            model::KtlsMode::Off => "off",
                        }
                    ),
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

/// On the leader: members that stopped answering or fell far behind.
fn peer_alarms(raft: &cluster_state::RaftStatus) -> Vec<String> {
    raft.peers
        .iter()
        .filter_map(|p| {
            let role = if raft.is_voter(p.node_id) {
                "voter"
            } else {
                "learner"
            };
            match p.last_contact_ms {
                None => Some(format!(
                    "Raft: node {} ({role}) has not answered this leader since it took office",
                    p.node_id
                )),
                Some(ms) if ms > cluster_state::QUORUM_LOST_MS => Some(format!(
                    "Raft: node {} ({role}) has not answered for {} s",
                    p.node_id,
                    ms / 1000
                )),
                Some(_) if p.lag > model::records::PEER_LAG_ALARM_ENTRIES => Some(format!(
                    "Raft: node {} ({role}) is {} log entries behind the leader",
                    p.node_id, p.lag
                )),
                Some(_) => None,
            }
        })
        .collect()
}

fn config_now(cluster: &ClusterNode) -> Arc<Revisioned<Config>> {
    cluster.current().config
}

/// An alarm for every pool member and GSLB site that is down (and not disabled by an operator):
/// F5 and HAProxy operators expect a member outage to be loud.
fn down_alarms(config: &Revisioned<Config>, health: &dyn HealthView) -> Vec<String> {
    let down = |key: &str| {
        health
            .status(key)
            .filter(|s| s.state == model::HealthState::Down)
    };
    let mut out = Vec::new();
    for p in config
        .value
        .pools
        .iter()
        .filter(|p| p.health_check.is_some())
    {
        for m in p
            .members
            .iter()
            .filter(|m| m.state != model::AdminState::Disabled)
        {
            if down(&model::member_health_key(&p.name, m.address)).is_some() {
                out.push(format!(
                    "Pool {}: member {} is down (its health check fails)",
                    p.name, m.address
                ));
            }
        }
    }
    for g in &config.value.gslb_records {
        for s in g.sites.iter().filter(|s| s.health_check.is_some()) {
            if s.state == model::AdminState::Disabled {
                continue;
            }
            if down(&model::site_health_key(&g.name, &s.name)).is_some() {
                out.push(format!(
                    "GSLB {}: site {} ({}) is down (its health check fails)",
                    g.name, s.name, s.address
                ));
            }
        }
    }
    out
}

/// An alarm for each certificate that is expired or expires within the configured horizon
/// (default 30 days), naming the listeners that serve it.
fn certificate_alarms(
    config: &Revisioned<Config>,
    certs: &BTreeMap<String, Arc<CertificateRecord>>,
) -> Vec<String> {
    let horizon = i64::from(
        config
            .value
            .spec
            .certificate_expiry_alarm_days
            .unwrap_or(model::records::DEFAULT_CERT_EXPIRY_ALARM_DAYS),
    ) * 86_400;
    let now = i64::try_from(model::unix_ms() / 1000).unwrap_or(i64::MAX);
    let mut out = Vec::new();
    for r in certs.values().filter(|r| r.revoked.is_none()) {
        let Some(info) = &r.info else { continue };
        let left = info.not_after_unix - now;
        if left >= horizon {
            continue;
        }
        let users: Vec<&str> = config
            .value
            .listeners
            .iter()
            .filter(|l| {
                l.tls
                    .as_ref()
                    .is_some_and(|t| t.certificates.contains(&r.name))
            })
            .map(|l| l.name.as_str())
            .collect();
        let used = if users.is_empty() {
            String::new()
        } else {
            format!(" (served by {})", users.join(", "))
        };
        out.push(if left <= 0 {
            format!("Certificate {} has expired{used}", r.name)
        } else {
            format!(
                "Certificate {} expires in {} days{used}",
                r.name,
                left / 86_400
            )
        });
    }
    out
}
