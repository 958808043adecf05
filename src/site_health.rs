//! GSLB site health the cluster agrees on.
//!
//! Every node probes every site (lb's health checker) and tells the others what it sees over
//! the authenticated cluster gossip: at once when a site changes state on this node, and every
//! second as a heartbeat that also says the node is alive. A site is up when a majority of the
//! live nodes that have probed it see it up, so one appliance with a broken uplink cannot fail
//! a healthy cluster over, and every node answers the same. A node not heard from for
//! [`PEER_TTL`] no longer votes. Sites no node has probed yet count as up (cold start).
//!
//! DNS answers read the agreed view with one lock-free load per site; it is recomputed only
//! when a vote changes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use cluster_state::ClusterNode;
use model::{HealthState, HealthStatus, HealthView};
use serde::{Deserialize, Serialize};

pub const TOPIC: &str = "site-health";
/// How often local changes are looked for; a transition is gossiped within this.
const POLL: Duration = Duration::from_millis(100);
/// The heartbeat: this node's whole view, also when nothing changed.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// A node not heard from for this long no longer votes.
const PEER_TTL: Duration = Duration::from_millis(3_500);

/// What a node tells the others.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Report {
    /// When the sender started (Unix ms) and its message count since: a restarted node's
    /// reports replace the old ones; older messages arriving late are dropped.
    boot: u64,
    seq: u64,
    /// Site health keys this node has probed, and whether it sees each up.
    sites: BTreeMap<String, bool>,
}

struct Peer {
    boot: u64,
    seq: u64,
    sites: BTreeMap<String, bool>,
    heard: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Agreed {
    up: bool,
    changed_ms: u64,
    /// The nodes disagree: the next vote may change the answer.
    split: bool,
}

/// One node's vote on a site, for the console and `meridian dns explain`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Vote {
    pub node: u64,
    /// `None`: the node has not probed the site yet.
    pub up: Option<bool>,
}

pub struct SiteHealth {
    node_id: u64,
    local: Arc<lb::HealthTable>,
    peers: Mutex<HashMap<u64, Peer>>,
    agreed: ArcSwap<HashMap<String, Agreed>>,
    /// This node and the peers heard from within [`PEER_TTL`], as of the last count.
    live: std::sync::atomic::AtomicUsize,
}

fn is_site(key: &str) -> bool {
    key.starts_with("gslb/")
}

impl SiteHealth {
    pub fn new(node_id: u64, local: Arc<lb::HealthTable>) -> Arc<SiteHealth> {
        Arc::new(SiteHealth {
            node_id,
            local,
            peers: Mutex::new(HashMap::new()),
            live: std::sync::atomic::AtomicUsize::new(1),
            agreed: ArcSwap::default(),
        })
    }

    /// The sites this node has probed, and what it sees.
    fn local_view(&self) -> BTreeMap<String, bool> {
        self.local
            .observed()
            .into_iter()
            .filter(|(k, _)| is_site(k))
            .collect()
    }

    /// Takes a report from `from`; returns whether it counted.
    fn merge(&self, from: u64, payload: &serde_json::Value) -> bool {
        if from == self.node_id {
            return false;
        }
        let Ok(report) = Report::deserialize(payload) else {
            tracing::debug!(peer = from, "malformed site health report dropped");
            return false;
        };
        {
            let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(p) = peers.get(&from) {
                if (report.boot, report.seq) <= (p.boot, p.seq) {
                    return false;
                }
            }
            peers.insert(
                from,
                Peer {
                    boot: report.boot,
                    seq: report.seq,
                    sites: report.sites,
                    heard: Instant::now(),
                },
            );
        }
        self.recompute();
        true
    }

    /// Drops peers not heard from within [`PEER_TTL`]; returns whether any went.
    fn expire(&self) -> bool {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        let before = peers.len();
        peers.retain(|_, p| p.heard.elapsed() < PEER_TTL);
        peers.len() != before
    }

    /// Every live node's vote on `key`, this node first.
    pub fn votes(&self, key: &str) -> Vec<Vote> {
        let mut out = vec![Vote {
            node: self.node_id,
            up: self.local.status(key).and_then(|s| match s.state {
                HealthState::Up => Some(true),
                HealthState::Down => Some(false),
                HealthState::Unknown => None,
            }),
        }];
        let peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        let mut ids: Vec<&u64> = peers.keys().collect();
        ids.sort();
        for id in ids {
            if let Some(p) = peers.get(id) {
                out.push(Vote {
                    node: *id,
                    up: p.sites.get(key).copied(),
                });
            }
        }
        out
    }

    /// Counts the votes again and publishes the agreed view.
    fn recompute(&self) {
        let local = self.local_view();
        let mut tally: HashMap<String, (u32, u32)> = HashMap::new();
        let mut count = |sites: &BTreeMap<String, bool>| {
            for (key, up) in sites {
                let t = tally.entry(key.clone()).or_default();
                t.0 += u32::from(*up);
                t.1 += 1;
            }
        };
        count(&local);
        {
            let peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
            for p in peers.values() {
                count(&p.sites);
            }
            self.live
                .store(1 + peers.len(), std::sync::atomic::Ordering::Relaxed);
        }
        let before = self.agreed.load();
        let now = model::unix_ms();
        let mut next = HashMap::with_capacity(tally.len());
        for (key, (ups, voters)) in tally {
            let up = ups * 2 > voters;
            let changed_ms = match before.get(&key) {
                Some(a) if a.up == up => a.changed_ms,
                Some(_) => {
                    if up {
                        tracing::info!(site = %key, ups, voters, "GSLB site up by the cluster's vote");
                    } else {
                        tracing::warn!(site = %key, ups, voters, "GSLB site down by the cluster's vote");
                    }
                    now
                }
                None => now,
            };
            next.insert(
                key,
                Agreed {
                    up,
                    changed_ms,
                    split: ups != 0 && ups != voters,
                },
            );
        }
        self.agreed.store(Arc::new(next));
    }
}

impl HealthView for SiteHealth {
    fn is_healthy(&self, key: &str) -> Option<bool> {
        if !is_site(key) {
            return self.local.is_healthy(key);
        }
        match self.agreed.load().get(key) {
            Some(a) => Some(a.up),
            // Nobody has probed it yet: whatever the local table says (up, unobserved).
            None => self.local.is_healthy(key),
        }
    }

    fn pending(&self, key: &str) -> bool {
        self.local.pending(key) || self.agreed.load().get(key).is_some_and(|a| a.split)
    }

    fn live_nodes(&self) -> usize {
        self.live.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn status(&self, key: &str) -> Option<HealthStatus> {
        let local = self.local.status(key);
        if !is_site(key) {
            return local;
        }
        match self.agreed.load().get(key) {
            Some(a) => Some(HealthStatus {
                state: if a.up {
                    HealthState::Up
                } else {
                    HealthState::Down
                },
                failed_checks: local.map_or(0, |l| l.failed_checks),
                changed_unix_ms: a.changed_ms,
            }),
            None => local,
        }
    }
}

/// Gossips this node's view (on change and as a heartbeat) and takes the others'.
pub fn spawn(
    cluster: Arc<ClusterNode>,
    health: Arc<SiteHealth>,
) -> (tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>) {
    let mut inbox = cluster.gossip_subscribe(TOPIC);
    let h = health.clone();
    let receive = tokio::spawn(async move {
        while let Some(msg) = inbox.recv().await {
            h.merge(msg.from, &msg.payload);
        }
    });
    let send = tokio::spawn(async move {
        let boot = model::unix_ms();
        let mut seq = 0u64;
        let mut last: Option<BTreeMap<String, bool>> = None;
        let mut sent = Instant::now();
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let view = health.local_view();
            let changed = last.as_ref() != Some(&view);
            if changed || health.expire() {
                health.recompute();
            }
            if !changed && sent.elapsed() < HEARTBEAT {
                continue;
            }
            seq += 1;
            let report = Report {
                boot,
                seq,
                sites: view.clone(),
            };
            last = Some(view);
            sent = Instant::now();
            if let Ok(payload) = serde_json::to_value(&report) {
                // Sent from its own task: a dead peer's timeout must not delay the next poll.
                let cluster = cluster.clone();
                tokio::spawn(async move { cluster.gossip(TOPIC, payload).await });
            }
        }
    });
    (send, receive)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(seq: u64, sites: &[(&str, bool)]) -> serde_json::Value {
        serde_json::to_value(Report {
            boot: 1,
            seq,
            sites: sites.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        })
        .expect("json")
    }

    #[test]
    fn a_site_is_up_when_a_majority_of_the_nodes_that_probed_it_see_it_up() {
        let table = Arc::new(lb::HealthTable::default());
        let key = "gslb/app.example./east";
        let health = SiteHealth::new(1, table.clone());
        // Nobody has probed: not down (DNS answers an unknown site as up: cold start).
        assert_eq!(health.is_healthy(key), None);
        table.entry(key);
        assert_eq!(
            health.is_healthy(key),
            Some(true),
            "unprobed entries start up"
        );
        // This node's uplink is broken: it sees the site down, alone.
        let entry = table.entry(key);
        entry.observe(false, 1, 1);
        health.recompute();
        assert_eq!(
            health.is_healthy(key),
            Some(false),
            "alone, its view is the cluster's"
        );
        assert!(health.merge(2, &report(1, &[(key, true)])));
        assert!(health.merge(3, &report(1, &[(key, true)])));
        assert_eq!(health.is_healthy(key), Some(true), "two of three see it up");
        assert_eq!(
            health.votes(key),
            vec![
                Vote {
                    node: 1,
                    up: Some(false)
                },
                Vote {
                    node: 2,
                    up: Some(true)
                },
                Vote {
                    node: 3,
                    up: Some(true)
                },
            ]
        );
        // One of them loses it too: two of three see it down.
        assert!(health.merge(3, &report(2, &[(key, false)])));
        assert_eq!(health.is_healthy(key), Some(false));
        // A late, older message changes nothing.
        assert!(!health.merge(3, &report(1, &[(key, true)])));
        assert_eq!(health.is_healthy(key), Some(false));
        // Garbage and our own echo are ignored.
        assert!(!health.merge(2, &serde_json::json!({"sites": 7})));
        assert!(!health.merge(1, &report(9, &[(key, true)])));
        // Pool members are never voted on.
        assert_eq!(health.is_healthy("pool/p/127.0.0.1:1"), None);
    }
}
