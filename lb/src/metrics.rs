//! Prometheus metrics of the data plane. Labels are bounded: listener and pool names come from the
//! config, statuses from a fixed set of codes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::health::Target;

#[derive(Clone)]
pub struct LbMetrics {
    requests: IntCounterVec,
    member_healthy: IntGaugeVec,
    config_revision: IntGauge,
    listener_errors: IntCounterVec,
    /// Which (group, member) label pairs are currently exported, so removed ones are dropped.
    exported: Arc<Mutex<HashMap<(String, String), ()>>>,
}

impl LbMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "meridian_lb_requests_total",
                "HTTP requests answered by the proxy, by listener and status code",
            ),
            &["listener", "status"],
        )?;
        let member_healthy = IntGaugeVec::new(
            Opts::new(
                "meridian_lb_member_healthy",
                "1 when the health check of a pool member or GSLB site passes, 0 when it fails",
            ),
            &["group", "member"],
        )?;
        let config_revision = IntGauge::new(
            "meridian_lb_config_revision",
            "Config revision the data plane is serving",
        )?;
        let listener_errors = IntCounterVec::new(
            Opts::new(
                "meridian_lb_listener_errors_total",
                "Listener bind and accept errors",
            ),
            &["listener", "kind"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(member_healthy.clone()))?;
        registry.register(Box::new(config_revision.clone()))?;
        registry.register(Box::new(listener_errors.clone()))?;
        Ok(LbMetrics {
            requests,
            member_healthy,
            config_revision,
            listener_errors,
            exported: Arc::default(),
        })
    }

    /// Request counters of one listener, resolved once per status code so that the request
    /// path takes no lock.
    pub fn listener_counters(&self, listener: &str) -> StatusCounters {
        StatusCounters {
            listener: listener.to_string(),
            family: self.requests.clone(),
            by_status: (0..600).map(|_| OnceLock::new()).collect(),
        }
    }

    pub fn set_member_health(&self, group: &str, member: &str, healthy: bool) {
        if let Ok(mut e) = self.exported.lock() {
            e.insert((group.to_string(), member.to_string()), ());
        }
        self.member_healthy
            .with_label_values(&[group, member])
            .set(i64::from(healthy));
    }

    pub(crate) fn retain_members(&self, wanted: &HashMap<String, Target>) {
        let keep: std::collections::HashSet<(String, String)> = wanted
            .values()
            .map(|t| (t.group.clone(), t.member.clone()))
            .collect();
        if let Ok(mut e) = self.exported.lock() {
            e.retain(|k, _| {
                let stays = keep.contains(k);
                if !stays {
                    let _ = self.member_healthy.remove_label_values(&[&k.0, &k.1]);
                }
                stays
            });
        }
    }

    pub fn set_revision(&self, rev: u64) {
        self.config_revision
            .set(i64::try_from(rev).unwrap_or(i64::MAX));
    }

    pub fn listener_error(&self, listener: &str, kind: &'static str) {
        self.listener_errors
            .with_label_values(&[listener, kind])
            .inc();
    }
}

/// `meridian_lb_requests_total` of one listener, one lazily resolved counter per status code.
pub struct StatusCounters {
    listener: String,
    family: IntCounterVec,
    by_status: Box<[OnceLock<IntCounter>]>,
}

impl StatusCounters {
    pub fn inc(&self, status: http::StatusCode) {
        match self.by_status.get(usize::from(status.as_u16())) {
            Some(cell) => cell
                .get_or_init(|| {
                    self.family
                        .with_label_values(&[self.listener.as_str(), status.as_str()])
                })
                .inc(),
            None => self
                .family
                .with_label_values(&[self.listener.as_str(), status.as_str()])
                .inc(),
        }
    }
}
