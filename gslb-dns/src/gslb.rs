//! GSLB names: which of a record's sites to hand out, decided per query from live health.

use std::net::IpAddr;

use model::{AllDownPolicy, Config, GslbRecord, HealthView, Site};

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
    policy: AllDownPolicy,
    sites: Vec<SiteTarget>,
}

#[derive(Debug, Clone)]
struct SiteTarget {
    /// `None` when the site has no health check and is therefore always healthy.
    health_key: Option<String>,
    address: IpAddr,
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
            policy: record.when_all_down,
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
                })
                .collect(),
        }
    }

    /// The addresses of `family` to answer with now.
    ///
    /// "All down" is judged across both families: if any site is healthy, health checking works
    /// and only healthy sites are handed out (possibly none of this family). Only when every site
    /// is down does the record's [`AllDownPolicy`] apply.
    pub(crate) fn addresses(&self, family: Family, health: &dyn HealthView) -> Vec<IpAddr> {
        let any_healthy = self.sites.iter().any(|s| s.healthy(health));
        let mut out = Vec::new();
        for site in &self.sites {
            let healthy = any_healthy && site.healthy(health);
            let wanted = match self.policy {
                _ if any_healthy => healthy,
                AllDownPolicy::All => true,
                AllDownPolicy::Empty => false,
            };
            let right_family = match family {
                Family::V4 => site.address.is_ipv4(),
                Family::V6 => site.address.is_ipv6(),
            };
            if wanted && right_family && !out.contains(&site.address) {
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
                })
                .collect(),
            when_all_down: policy,
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
}
