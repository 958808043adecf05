//! GSLB names: which of a record's sites to hand out, decided per query from live health.

use std::net::IpAddr;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use model::{AllDownPolicy, Config, GslbPolicy, GslbRecord, HealthView, Site};

/// One site as the console shows it: `(site name, address, healthy)`.
pub type SiteState = (String, IpAddr, bool);

/// The sites of each GSLB record and whether each is healthy right now, for the console.
///
/// Returns `(record name, [(site name, address, healthy)])` in configuration order.
pub fn site_states(config: &Config, health: &dyn HealthView) -> Vec<(String, Vec<SiteState>)> {
    config
        .gslb_records
        .iter()
        .map(|record| {
            let sites = record
                .sites
                .iter()
                .map(|site| {
                    let healthy = site_is_healthy(record, site, health);
                    (site.name.clone(), site.address, healthy)
                })
                .collect();
            (record.name.clone(), sites)
        })
        .collect()
}

/// A site without a health check is always healthy; one that was never observed counts as
/// healthy too, so a fresh node answers before its first probe round completes.
fn site_is_healthy(record: &GslbRecord, site: &Site, health: &dyn HealthView) -> bool {
    site.health_check.is_none()
        || health
            .is_healthy(&model::site_health_key(&record.name, &site.name))
            .unwrap_or(true)
}

/// The compiled form of a [`GslbRecord`]: health keys are built once per revision, not per query.
#[derive(Debug, Clone)]
pub(crate) struct GslbTarget {
    pub(crate) ttl: u32,
    when_all_down: AllDownPolicy,
    policy: GslbPolicy,
    max_answers: usize,
    sites: Vec<SiteTarget>,
    /// Answers given, for round robin's rotation and the weighted policy's turn.
    turn: Arc<AtomicUsize>,
}

#[derive(Debug, Clone)]
struct SiteTarget {
    /// `None` when the site has no health check and is therefore always healthy.
    health_key: Option<String>,
    address: IpAddr,
    priority: u32,
    weight: u32,
}

impl SiteTarget {
    fn healthy(&self, health: &dyn HealthView) -> bool {
        match &self.health_key {
            None => true,
            Some(key) => health.is_healthy(key).unwrap_or(true),
        }
    }
}

/// Which address family a query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    V4,
    V6,
}

impl GslbTarget {
    pub(crate) fn compile(record: &GslbRecord) -> GslbTarget {
        GslbTarget {
            ttl: record.ttl,
            when_all_down: record.when_all_down,
            policy: record.policy,
            max_answers: record.max_answers.map_or(usize::MAX, |n| n as usize),
            turn: Arc::default(),
            // Disabled and draining sites are never handed out, not even when all are down.
            sites: record
                .sites
                .iter()
                .filter(|site| site.state.is_enabled())
                .map(|site| SiteTarget {
                    health_key: site
                        .health_check
                        .as_ref()
                        .map(|_| model::site_health_key(&record.name, &site.name)),
                    address: site.address,
                    priority: site.priority,
                    weight: site.weight.max(1),
                })
                .collect(),
        }
    }

    /// The addresses of `family` to answer with now.
    ///
    /// "All down" is judged across both families: if any site is healthy, health checking works
    /// and only healthy sites are handed out (possibly none of this family), as the record's
    /// policy picks them. Only when every site is down does the record's [`AllDownPolicy`]
    /// apply (to every site, whatever the policy).
    pub(crate) fn addresses(&self, family: Family, health: &dyn HealthView) -> Vec<IpAddr> {
        let any_healthy = self.sites.iter().any(|s| s.healthy(health));
        let mut picked: Vec<&SiteTarget> = self
            .sites
            .iter()
            .filter(|site| match family {
                Family::V4 => site.address.is_ipv4(),
                Family::V6 => site.address.is_ipv6(),
            })
            .filter(|site| match self.when_all_down {
                _ if any_healthy => site.healthy(health),
                AllDownPolicy::All => true,
                AllDownPolicy::Empty => false,
            })
            .collect();
        if any_healthy && !picked.is_empty() {
            match self.policy {
                GslbPolicy::All => {}
                GslbPolicy::Failover => {
                    let best = picked.iter().map(|s| s.priority).min().unwrap_or(1);
                    picked.retain(|s| s.priority == best);
                }
                GslbPolicy::RoundRobin => {
                    let n = self.turn.fetch_add(1, Ordering::Relaxed) % picked.len();
                    picked.rotate_left(n);
                }
                GslbPolicy::Weighted => {
                    // Turn t lands on the site whose cumulative weight covers t mod the total:
                    // over any run of `total` answers each site gets exactly its weight.
                    let total: usize = picked.iter().map(|s| s.weight as usize).sum();
                    let mut t = self.turn.fetch_add(1, Ordering::Relaxed) % total.max(1);
                    let one = picked
                        .iter()
                        .copied()
                        .find(|s| {
                            let w = s.weight as usize;
                            if t < w {
                                true
                            } else {
                                t -= w;
                                false
                            }
                        })
                        .or_else(|| picked.first().copied());
                    picked = one.into_iter().collect();
                }
            }
        }
        let mut out = Vec::new();
        for site in picked {
            if out.len() >= self.max_answers {
                break;
            }
            if !out.contains(&site.address) {
                out.push(site.address);
            }
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A settable health view for tests.
    #[derive(Default)]
    pub(crate) struct FakeHealth(pub(crate) Mutex<HashMap<String, bool>>);

    impl FakeHealth {
        pub(crate) fn set(&self, record: &str, site: &str, healthy: bool) {
            if let Ok(mut map) = self.0.lock() {
                map.insert(model::site_health_key(record, site), healthy);
            }
        }
    }

    impl HealthView for FakeHealth {
        fn is_healthy(&self, key: &str) -> Option<bool> {
            self.0.lock().ok().and_then(|map| map.get(key).copied())
        }
    }

    fn check() -> Arc<model::HealthCheck> {
        Arc::new(model::HealthCheck {
            name: "hc".into(),
            path: "/".into(),
            host: None,
            interval: std::time::Duration::from_secs(1),
            timeout: std::time::Duration::from_secs(1),
            rise: 1,
            fall: 1,
            expect_status: 200,
        })
    }

    pub(crate) fn record(policy: AllDownPolicy, sites: &[(&str, &str, bool)]) -> GslbRecord {
        GslbRecord {
            name: "app.example.com.".into(),
            zone: "example.com.".into(),
            ttl: 30,
            sites: sites
                .iter()
                .map(|(name, addr, checked)| Site {
                    name: (*name).into(),
                    address: addr.parse().expect("test address"),
                    probe: ([127, 0, 0, 1], 80).into(),
                    health_check: checked.then(check),
                    state: model::AdminState::Enabled,
                    priority: 1,
                    weight: 1,
                })
                .collect(),
            when_all_down: policy,
            policy: GslbPolicy::All,
            max_answers: None,
        }
    }

    fn v4(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn answers_only_healthy_sites_of_the_family() {
        let rec = record(
            AllDownPolicy::Empty,
            &[
                ("a", "192.0.2.1", true),
                ("b", "192.0.2.2", true),
                ("c", "2001:db8::1", true),
            ],
        );
        let target = GslbTarget::compile(&rec);
        let health = FakeHealth::default();
        assert_eq!(
            target.addresses(Family::V4, &health).len(),
            2,
            "unobserved is healthy"
        );
        health.set(&rec.name, "a", false);
        assert_eq!(target.addresses(Family::V4, &health), vec![v4("192.0.2.2")]);
        assert_eq!(
            target.addresses(Family::V6, &health),
            vec![v4("2001:db8::1")]
        );
        health.set(&rec.name, "b", false);
        assert!(
            target.addresses(Family::V4, &health).is_empty(),
            "v6 site still up"
        );
    }

    #[test]
    fn all_down_policies() {
        let health = FakeHealth::default();
        for (policy, expect) in [(AllDownPolicy::Empty, 0), (AllDownPolicy::All, 2)] {
            let rec = record(
                policy,
                &[("a", "192.0.2.1", true), ("b", "192.0.2.2", true)],
            );
            health.set(&rec.name, "a", false);
            health.set(&rec.name, "b", false);
            let target = GslbTarget::compile(&rec);
            assert_eq!(
                target.addresses(Family::V4, &health).len(),
                expect,
                "{policy:?}"
            );
        }
    }

    #[test]
    fn sites_out_of_service_are_never_answered_even_when_all_are_down() {
        let health = FakeHealth::default();
        let mut rec = record(
            AllDownPolicy::All,
            &[("a", "192.0.2.1", true), ("b", "192.0.2.2", true)],
        );
        rec.sites[0].state = model::AdminState::Draining;
        let target = GslbTarget::compile(&rec);
        assert_eq!(target.addresses(Family::V4, &health), vec![v4("192.0.2.2")]);
        health.set(&rec.name, "b", false);
        // Every enabled site is down: the policy answers with all of them, not the drained one.
        assert_eq!(target.addresses(Family::V4, &health), vec![v4("192.0.2.2")]);
        rec.sites[1].state = model::AdminState::Disabled;
        let target = GslbTarget::compile(&rec);
        assert!(target.addresses(Family::V4, &health).is_empty());
    }

    #[test]
    fn unchecked_site_is_always_healthy() {
        let rec = record(AllDownPolicy::Empty, &[("a", "192.0.2.1", false)]);
        let health = FakeHealth::default();
        health.set(&rec.name, "a", false);
        let target = GslbTarget::compile(&rec);
        assert_eq!(target.addresses(Family::V4, &health), vec![v4("192.0.2.1")]);
        let mut config = Config::empty();
        config.gslb_records.push(rec);
        let states = site_states(&config, &health);
        assert_eq!(states[0].1, vec![("a".to_string(), v4("192.0.2.1"), true)]);
    }

    fn four_sites() -> GslbRecord {
        let mut r = record(
            AllDownPolicy::Empty,
            &[
                ("a", "192.0.2.1", true),
                ("b", "192.0.2.2", true),
                ("c", "192.0.2.3", true),
                ("d", "192.0.2.4", true),
            ],
        );
        for (site, (priority, weight)) in r.sites.iter_mut().zip([(1, 3), (1, 1), (2, 0), (3, 1)]) {
            site.priority = priority;
            site.weight = weight;
        }
        r
    }

    #[test]
    fn failover_answers_the_best_priority_that_is_up() {
        let mut r = four_sites();
        r.policy = GslbPolicy::Failover;
        let target = GslbTarget::compile(&r);
        let health = FakeHealth::default();
        assert_eq!(
            target.addresses(Family::V4, &health),
            vec![v4("192.0.2.1"), v4("192.0.2.2")]
        );
        health.set(&r.name, "a", false);
        assert_eq!(target.addresses(Family::V4, &health), vec![v4("192.0.2.2")]);
        health.set(&r.name, "b", false);
        assert_eq!(target.addresses(Family::V4, &health), vec![v4("192.0.2.3")]);
        health.set(&r.name, "c", false);
        assert_eq!(target.addresses(Family::V4, &health), vec![v4("192.0.2.4")]);
        health.set(&r.name, "a", true);
        assert_eq!(target.addresses(Family::V4, &health), vec![v4("192.0.2.1")]);
    }

    #[test]
    fn weighted_gives_each_site_its_part_exactly() {
        let mut r = four_sites();
        r.policy = GslbPolicy::Weighted;
        let target = GslbTarget::compile(&r);
        let health = FakeHealth::default();
        health.set(&r.name, "d", false);
        let mut count: HashMap<IpAddr, usize> = HashMap::new();
        // Weights 3, 1 and 1 (a weight of 0 counts as 1): 5 answers per round.
        for _ in 0..500 {
            let a = target.addresses(Family::V4, &health);
            assert_eq!(a.len(), 1, "one site per answer");
            *count.entry(a[0]).or_default() += 1;
        }
        assert_eq!(count[&v4("192.0.2.1")], 300);
        assert_eq!(count[&v4("192.0.2.2")], 100);
        assert_eq!(count[&v4("192.0.2.3")], 100);
        assert!(
            !count.contains_key(&v4("192.0.2.4")),
            "a down site gets nothing"
        );
    }

    #[test]
    fn round_robin_rotates_and_max_answers_bounds_every_policy() {
        let mut r = four_sites();
        r.policy = GslbPolicy::RoundRobin;
        r.max_answers = Some(2);
        let target = GslbTarget::compile(&r);
        let health = FakeHealth::default();
        let firsts: Vec<IpAddr> = (0..4)
            .map(|_| {
                let a = target.addresses(Family::V4, &health);
                assert_eq!(a.len(), 2);
                a[0]
            })
            .collect();
        assert_eq!(
            firsts,
            vec![
                v4("192.0.2.1"),
                v4("192.0.2.2"),
                v4("192.0.2.3"),
                v4("192.0.2.4")
            ]
        );
        r.policy = GslbPolicy::All;
        let all = GslbTarget::compile(&r);
        assert_eq!(
            all.addresses(Family::V4, &health),
            vec![v4("192.0.2.1"), v4("192.0.2.2")]
        );
        // Every site down: the all-down policy answers, not the steering policy.
        for s in ["a", "b", "c", "d"] {
            health.set(&r.name, s, false);
        }
        r.when_all_down = AllDownPolicy::All;
        r.policy = GslbPolicy::Failover;
        r.max_answers = None;
        let down = GslbTarget::compile(&r);
        assert_eq!(down.addresses(Family::V4, &health).len(), 4);
    }
}
