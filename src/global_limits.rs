//! Cluster-wide rate limits between appliances: every `lb::filter::global::TICK` this node
//! measures its global limits' demand and gossips it to the other members (over the
//! authenticated cluster RPC); their reports set this node's share of each key.

use std::sync::Arc;

use cluster_state::ClusterNode;

const TOPIC: &str = "rate-limits";

pub fn spawn(
    cluster: Arc<ClusterNode>,
    dataplane: Arc<lb::DataPlane>,
) -> (tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>) {
    let mut inbox = cluster.gossip_subscribe(TOPIC);
    let dp = dataplane.clone();
    let receive = tokio::spawn(async move {
        while let Some(msg) = inbox.recv().await {
            dp.global_limits_merge(msg.from, &msg.payload);
        }
    });
    let send = tokio::spawn(async move {
        let mut tick = tokio::time::interval(lb::filter::global::TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Some(report) = dataplane.global_limits_report() {
                cluster.gossip(TOPIC, report).await;
            }
        }
    });
    (send, receive)
}
