//! Active HTTP health checking of pool members and GSLB sites, and the table of observations that
//! outlives every config swap (keyed by the stable ids of `model::member_health_key` and
//! `model::site_health_key`).

mod probe;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use model::{Config, HealthCheck, HealthState, HealthStatus, HealthView};
use tokio::task::JoinHandle;

use crate::metrics::LbMetrics;

pub use probe::probe;

/// One target's health, shared lock-free with the request path.
#[derive(Debug)]
pub struct HealthEntry {
    healthy: AtomicBool,
    observed: AtomicBool,
    /// Consecutive results in the current direction: successes while down, failures while up.
    streak: AtomicU32,
    failed: AtomicU64,
    /// Unix milliseconds of the last state change (or of creation).
    changed_ms: AtomicU64,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl HealthEntry {
    fn new() -> Self {
        // Like HAProxy, a new target starts up and must fail `fall` times to go down, so that a
        // config change takes traffic at once.
        HealthEntry {
            healthy: AtomicBool::new(true),
            observed: AtomicBool::new(false),
            streak: AtomicU32::new(0),
            failed: AtomicU64::new(0),
            changed_ms: AtomicU64::new(unix_ms()),
        }
    }

    pub fn status(&self) -> HealthStatus {
        HealthStatus {
            state: match (self.observed.load(Ordering::Relaxed), self.is_healthy()) {
                (false, _) => HealthState::Unknown,
                (true, true) => HealthState::Up,
                (true, false) => HealthState::Down,
            },
            failed_checks: self.failed.load(Ordering::Relaxed),
            changed_unix_ms: self.changed_ms.load(Ordering::Relaxed),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Records one probe result; returns the new state when it changed.
    pub fn observe(&self, ok: bool, rise: u32, fall: u32) -> Option<bool> {
        if !ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        if !self.observed.swap(true, Ordering::Relaxed) {
            // Unknown -> up or down is a state change the console shows.
            self.changed_ms.store(unix_ms(), Ordering::Relaxed);
        }
        let healthy = self.is_healthy();
        if ok == healthy {
            self.streak.store(0, Ordering::Relaxed);
            return None;
        }
        let streak = self.streak.fetch_add(1, Ordering::Relaxed) + 1;
        let needed = if healthy { fall } else { rise };
        if streak >= needed {
            self.healthy.store(ok, Ordering::Relaxed);
            self.changed_ms.store(unix_ms(), Ordering::Relaxed);
            self.streak.store(0, Ordering::Relaxed);
            Some(ok)
        } else {
            None
        }
    }
}

/// Every health observation, by stable key. Reads (DNS answers, the console) are lock-free:
/// the map is swapped whole on the rare insert or removal.
#[derive(Debug, Default)]
pub struct HealthTable {
    entries: ArcSwap<HashMap<String, Arc<HealthEntry>>>,
}

impl HealthTable {
    /// The entry for `key`, created (up, unobserved) on first use.
    pub fn entry(&self, key: &str) -> Arc<HealthEntry> {
        if let Some(e) = self.entries.load().get(key) {
            return e.clone();
        }
        let mut created = None;
        self.entries.rcu(|map| {
            let mut map = HashMap::clone(map);
            let entry = map
                .entry(key.to_string())
                .or_insert_with(|| Arc::new(HealthEntry::new()))
                .clone();
            created = Some(entry);
            map
        });
        // rcu always runs the closure at least once.
        created.unwrap_or_else(|| Arc::new(HealthEntry::new()))
    }

    /// Every target this node has probed at least once, with its state: what this node tells
    /// the cluster it sees.
    pub fn observed(&self) -> Vec<(String, bool)> {
        self.entries
            .load()
            .iter()
            .filter(|(_, e)| e.observed.load(Ordering::Relaxed))
            .map(|(k, e)| (k.clone(), e.is_healthy()))
            .collect()
    }

    /// Forgets targets that no longer exist in the config.
    fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.entries.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.retain(|k, _| keep(k));
            map
        });
    }
}

impl HealthView for HealthTable {
    fn is_healthy(&self, key: &str) -> Option<bool> {
        self.entries.load().get(key).map(|e| e.is_healthy())
    }

    /// A streak in progress: failures while up or passes while down.
    fn pending(&self, key: &str) -> bool {
        self.entries
            .load()
            .get(key)
            .is_some_and(|e| e.streak.load(Ordering::Relaxed) > 0)
    }

    fn status(&self, key: &str) -> Option<HealthStatus> {
        self.entries.load().get(key).map(|e| e.status())
    }
}

/// What one probe loop checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub key: String,
    pub addr: model::ProbeTarget,
    pub check: HealthCheck,
    /// Metric labels (pool or GSLB record, member or site).
    pub group: String,
    pub member: String,
}

/// The probe targets a config asks for: pool members and GSLB sites that name a health check.
pub fn targets(config: &Config) -> Vec<Target> {
    let mut out = Vec::new();
    for pool in &config.pools {
        if let Some(hc) = &pool.health_check {
            // A disabled member is out of service: probing it would only raise alarms.
            for m in pool
                .members
                .iter()
                .filter(|m| m.state != model::AdminState::Disabled)
            {
                out.push(Target {
                    key: model::member_health_key(&pool.name, m.address),
                    addr: model::ProbeTarget::Addr(m.address),
                    check: (**hc).clone(),
                    group: pool.name.clone(),
                    member: m.address.to_string(),
                });
            }
        }
    }
    for rec in &config.gslb_records {
        for site in rec
            .sites
            .iter()
            .filter(|s| s.state != model::AdminState::Disabled)
        {
            if let Some(hc) = &site.health_check {
                out.push(Target {
                    key: model::site_health_key(&rec.name, &site.name),
                    addr: site.probe.clone(),
                    check: (**hc).clone(),
                    group: rec.name.clone(),
                    member: site.name.clone(),
                });
            }
        }
    }
    out
}

/// Runs one probe loop per target and reconciles them with each new config.
pub struct HealthChecker {
    table: Arc<HealthTable>,
    metrics: LbMetrics,
    running: HashMap<String, (Target, JoinHandle<()>)>,
}

impl HealthChecker {
    pub fn new(table: Arc<HealthTable>, metrics: LbMetrics) -> Self {
        HealthChecker {
            table,
            metrics,
            running: HashMap::new(),
        }
    }

    /// Starts loops for new or changed targets and stops those that went away. Observations of
    /// a target whose key survives are kept.
    pub fn reconcile(&mut self, config: &Config) {
        let wanted: HashMap<String, Target> = targets(config)
            .into_iter()
            .map(|t| (t.key.clone(), t))
            .collect();
        self.running.retain(|key, (target, handle)| {
            let keep = wanted.get(key) == Some(target);
            if !keep {
                handle.abort();
            }
            keep
        });
        for (key, target) in wanted.iter() {
            if self.running.contains_key(key) {
                continue;
            }
            let entry = self.table.entry(key);
            // Loops start spread over the interval (like HAProxy's spread-checks), so a config
            // with many targets does not probe them all in the same instant, and the nodes of
            // a cluster probe a site at different moments.
            let draw = std::hash::BuildHasher::hash_one(
                &std::collections::hash_map::RandomState::new(),
                key,
            );
            let start = target
                .check
                .interval
                .mul_f64((draw >> 11) as f64 / (1u64 << 53) as f64);
            let handle = tokio::spawn(run_probe_loop(
                target.clone(),
                entry,
                self.metrics.clone(),
                start,
                |addr, check| async move { probe(&addr, &check).await },
            ));
            self.running.insert(key.clone(), (target.clone(), handle));
        }
        // Members of pools without a check are never in the table; forget stale keys.
        self.table.retain(|k| wanted.contains_key(k));
        self.metrics.retain_health(&wanted);
    }

    pub fn stop(&mut self) {
        for (_, (_, h)) in self.running.drain() {
            h.abort();
        }
    }
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Probes `target` every interval with `prober` and feeds the results to its entry. The prober
/// is passed in so the rise/fall timing is tested on tokio's paused clock with scripted results.
async fn run_probe_loop<P, F>(
    target: Target,
    entry: Arc<HealthEntry>,
    metrics: LbMetrics,
    start: std::time::Duration,
    prober: P,
) where
    P: Fn(model::ProbeTarget, HealthCheck) -> F,
    F: std::future::Future<Output = Result<(), probe::ProbeError>>,
{
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + start, target.check.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    metrics.set_member_health(&target.group, &target.member, entry.is_healthy());
    loop {
        tick.tick().await;
        let result = prober(target.addr.clone(), target.check.clone()).await;
        let ok = result.is_ok();
        if let Some(now_up) = entry.observe(ok, target.check.rise, target.check.fall) {
            match &result {
                Ok(()) => {
                    tracing::info!(target = %target.key, "health check passed {} times: up", target.check.rise)
                }
                Err(e) => {
                    tracing::warn!(target = %target.key, error = %e, "health check failed {} times: down", target.check.fall)
                }
            }
            metrics.set_member_health(&target.group, &target.member, now_up);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_target_is_unknown_until_probed_and_counts_failures() {
        let e = HealthEntry::new();
        assert_eq!(e.status().state, HealthState::Unknown);
        assert!(e.is_healthy(), "it still takes traffic");
        e.observe(false, 2, 3);
        let s = e.status();
        assert_eq!((s.state, s.failed_checks), (HealthState::Up, 1));
        e.observe(false, 2, 3);
        e.observe(false, 2, 3);
        let s = e.status();
        assert_eq!((s.state, s.failed_checks), (HealthState::Down, 3));
        assert!(s.changed_unix_ms > 0);
    }

    #[test]
    fn disabled_members_and_sites_are_not_probed() {
        let spec: model::ConfigSpec = model::parse::from_toml(
            r#"api_version = "meridian/v1"
health_checks = [{ name = "hc" }]
[[pools]]
name = "p"
health_check = "hc"
members = [{ address = "127.0.0.1:1", state = "disabled" }, { address = "127.0.0.1:2", state = "draining" }]
"#,
        )
        .expect("spec");
        let config = model::validate(&spec).expect("valid");
        let keys: Vec<String> = targets(&config).into_iter().map(|t| t.key).collect();
        assert_eq!(keys, vec!["pool/p/127.0.0.1:2".to_string()]);
    }

    #[test]
    fn goes_down_after_fall_failures_and_up_after_rise_successes() {
        let e = HealthEntry::new();
        assert!(e.is_healthy());
        assert_eq!(e.observe(false, 2, 3), None);
        assert_eq!(e.observe(false, 2, 3), None);
        // A success in between resets the streak.
        assert_eq!(e.observe(true, 2, 3), None);
        assert_eq!(e.observe(false, 2, 3), None);
        assert_eq!(e.observe(false, 2, 3), None);
        assert_eq!(e.observe(false, 2, 3), Some(false));
        assert!(!e.is_healthy());
        assert_eq!(e.observe(true, 2, 3), None);
        assert_eq!(e.observe(true, 2, 3), Some(true));
        assert!(e.is_healthy());
    }

    #[tokio::test(start_paused = true)]
    async fn probe_loop_takes_a_target_down_after_fall_intervals_and_up_after_rise() {
        use std::sync::atomic::AtomicBool;
        use std::time::Duration;
        let check = HealthCheck {
            name: "hc".into(),
            path: "/".into(),
            host: None,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            expect_status: 200,
            protocol: model::CheckProtocol::Http,
            expect_body: None,
            ca_pem: None,
        };
        let target = Target {
            key: "pool/p/127.0.0.1:1".into(),
            addr: model::ProbeTarget::Addr("127.0.0.1:1".parse().expect("addr")),
            check,
            group: "p".into(),
            member: "127.0.0.1:1".into(),
        };
        let entry = Arc::new(HealthEntry::new());
        let up = Arc::new(AtomicBool::new(false));
        let metrics = LbMetrics::new(&prometheus::Registry::new()).expect("metrics");
        let answer = up.clone();
        let task = tokio::spawn(run_probe_loop(
            target,
            entry.clone(),
            metrics,
            Duration::ZERO,
            move |_, _| {
                let ok = answer.load(Ordering::Relaxed);
                async move {
                    if ok {
                        Ok(())
                    } else {
                        Err(probe::ProbeError::Status {
                            got: 500,
                            want: 200,
                        })
                    }
                }
            },
        ));
        // Probes run at t = 0, 2, 4: the third failure (t = 4 s) takes it down.
        tokio::time::sleep(Duration::from_millis(3_900)).await;
        assert!(entry.is_healthy(), "two failures are not enough");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!entry.is_healthy(), "down after fall = 3 failed probes");
        up.store(true, Ordering::Relaxed);
        // Successes at t = 6 and t = 8 bring it back.
        tokio::time::sleep(Duration::from_millis(2_000)).await;
        assert!(!entry.is_healthy(), "one success is not enough");
        tokio::time::sleep(Duration::from_millis(2_000)).await;
        assert!(entry.is_healthy(), "up after rise = 2 passed probes");
        task.abort();
    }

    #[test]
    fn table_keeps_entries_across_lookups_and_forgets_on_retain() {
        let t = HealthTable::default();
        let a = t.entry("pool/p/127.0.0.1:1");
        a.observe(false, 1, 1);
        assert_eq!(t.is_healthy("pool/p/127.0.0.1:1"), Some(false));
        assert!(Arc::ptr_eq(&a, &t.entry("pool/p/127.0.0.1:1")));
        assert_eq!(t.is_healthy("unknown"), None);
        t.retain(|_| false);
        assert_eq!(t.is_healthy("pool/p/127.0.0.1:1"), None);
    }
}
