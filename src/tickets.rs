//! The cluster's TLS session-ticket keys: the leader makes a new one on schedule and replicates
//! it (sealed) through Raft; every node opens the kept keys and hands them to its data plane,
//! so a client that got a ticket from one appliance resumes on any of them.

use std::sync::Arc;
use std::time::Duration;

use cluster_state::ClusterNode;
use model::records::{TicketKeyRecord, DEFAULT_TICKET_ROTATION_HOURS};

/// How often a node looks whether a rotation is due (and a leader proposes it).
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// RFC 8446 caps a ticket's advertised lifetime at seven days.
const MAX_LIFETIME_SECS: u64 = 7 * 24 * 3600;

/// Follows the replicated keys into `store`, and rotates them while this node leads.
pub fn spawn(
    cluster: Arc<ClusterNode>,
    key: Arc<credentials::ClusterKey>,
    store: Arc<lb::tls::CertStore>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut applied = cluster.subscribe();
        let mut loaded: Option<(Arc<Vec<Arc<TicketKeyRecord>>>, u32)> = None;
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                changed = applied.changed() => if changed.is_err() { return },
            }
            let (keys, hours) = {
                let a = applied.borrow_and_update();
                let hours = a
                    .config
                    .value
                    .spec
                    .session_ticket_rotation_hours
                    .unwrap_or(DEFAULT_TICKET_ROTATION_HOURS);
                (a.ticket_keys.clone(), hours)
            };
            let fresh = loaded
                .as_ref()
                .is_none_or(|(k, h)| !Arc::ptr_eq(k, &keys) || *h != hours);
            if fresh {
                load(&keys, hours, &key, &store);
                loaded = Some((keys.clone(), hours));
            }
            if is_leader(&cluster) && due(&keys, hours, model::unix_ms()) {
                rotate(&cluster, &key).await;
            }
        }
    })
}

fn is_leader(cluster: &ClusterNode) -> bool {
    let s = cluster.status();
    s.state == "Leader" && s.leader == Some(s.node_id)
}

/// Whether the newest key is older than the rotation period (or there is none).
fn due(keys: &[Arc<TicketKeyRecord>], hours: u32, now_ms: u64) -> bool {
    let period_ms = u64::from(hours) * 3_600_000;
    keys.first()
        .is_none_or(|k| now_ms.saturating_sub(k.created_unix_ms) >= period_ms)
}

/// Tickets are advertised for twice the rotation period: a key seals for one period and is
/// kept for two more, so a ticket made just before a rotation still opens that long.
fn lifetime_secs(hours: u32) -> u32 {
    let secs = (2 * u64::from(hours) * 3600).min(MAX_LIFETIME_SECS);
    u32::try_from(secs).unwrap_or(u32::MAX)
}

fn load(
    records: &[Arc<TicketKeyRecord>],
    hours: u32,
    key: &credentials::ClusterKey,
    store: &lb::tls::CertStore,
) {
    let mut keys = Vec::with_capacity(records.len());
    for r in records {
        match credentials::open_ticket_key(r, key) {
            Ok((id, secret)) => keys.push(lb::tls::tickets::TicketKey {
                id,
                secret: *secret,
            }),
            Err(e) => tracing::error!(key = %r.id, error = %e, "cannot open a session-ticket key"),
        }
    }
    store.tickets().replace(&keys, lifetime_secs(hours));
    if let Some(newest) = records.first() {
        tracing::debug!(key = %newest.id, kept = keys.len(), "session-ticket keys loaded");
    }
}

async fn rotate(cluster: &ClusterNode, key: &credentials::ClusterKey) {
    let record = match credentials::new_ticket_key(key, model::unix_ms()) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot make a session-ticket key");
            return;
        }
    };
    let id = record.id.clone();
    match cluster
        .propose(model::Change::RotateTicketKey { record })
        .await
    {
        Ok(_) => tracing::info!(key = %id, "rotated the cluster's session-ticket key"),
        Err(e) => {
            tracing::warn!(error = %e, "session-ticket key rotation not committed; will retry")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(created: u64) -> Arc<TicketKeyRecord> {
        let k = credentials::ClusterKey::derive("t");
        Arc::new(credentials::new_ticket_key(&k, created).expect("key"))
    }

    #[test]
    fn a_rotation_is_due_when_the_newest_key_is_a_period_old() {
        let hour = 3_600_000;
        assert!(due(&[], 6, 0), "no key yet");
        let keys = vec![rec(10 * hour), rec(4 * hour)];
        assert!(!due(&keys, 6, 15 * hour));
        assert!(due(&keys, 6, 16 * hour));
        assert!(!due(&keys, 6, 9 * hour), "a clock behind the proposer's");
    }

    #[test]
    fn tickets_live_two_periods_capped_at_a_week() {
        assert_eq!(lifetime_secs(6), 12 * 3600);
        assert_eq!(lifetime_secs(84), 7 * 24 * 3600);
        assert_eq!(lifetime_secs(200), 7 * 24 * 3600);
    }

    #[test]
    fn loaded_keys_seal_with_the_newest() {
        use rustls::server::ProducesTickets;
        let k = credentials::ClusterKey::derive("t");
        let store = lb::tls::CertStore::default();
        let records = vec![rec(2), rec(1)];
        load(&records, 6, &k, &store);
        let (newest, _) = credentials::open_ticket_key(&records[0], &k).expect("opens");
        assert_eq!(store.tickets().current_id(), newest);
        assert_eq!(store.tickets().lifetime(), 12 * 3600);
        // A record sealed with another cluster key is skipped; the rest still load.
        let other = credentials::ClusterKey::derive("other");
        let foreign = Arc::new(credentials::new_ticket_key(&other, 3).expect("key"));
        load(&[foreign, records[1].clone()], 6, &k, &store);
        let (second, _) = credentials::open_ticket_key(&records[1], &k).expect("opens");
        assert_eq!(store.tickets().current_id(), second);
    }
}
