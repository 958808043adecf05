//! The routing snapshot compiled from one config revision: per-listener route tables and pools
//! with a precomputed weighted round-robin schedule. Immutable once built, except for the
//! round-robin cursor and the health entries it shares with the health checker.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use model::{Config, HostMatch};

use crate::health::{HealthEntry, HealthTable};

/// Everything the request path needs for one revision.
#[derive(Debug, Default)]
pub struct RoutingSnapshot {
    pub revision: u64,
    listeners: HashMap<String, Vec<CompiledRoute>>,
    pools: HashMap<String, Arc<PoolSnapshot>>,
}

#[derive(Debug)]
pub struct CompiledRoute {
    pub name: String,
    host: HostMatch,
    path_prefix: String,
    pub pool: Arc<PoolSnapshot>,
}

#[derive(Debug)]
pub struct PoolSnapshot {
    pub name: String,
    pub members: Vec<MemberSnapshot>,
    /// Member indexes in smooth weighted round-robin order.
    schedule: Vec<usize>,
    cursor: AtomicUsize,
    pub timeout: Duration,
}

#[derive(Debug)]
pub struct MemberSnapshot {
    pub addr: SocketAddr,
    /// `addr` as a URI authority, built once per revision rather than per request.
    pub authority: http::uri::Authority,
    pub weight: u32,
    /// `None` when the pool has no health check: always eligible.
    health: Option<Arc<HealthEntry>>,
}

impl MemberSnapshot {
    pub fn is_healthy(&self) -> bool {
        self.health.as_ref().is_none_or(|h| h.is_healthy())
    }
}

impl RoutingSnapshot {
    /// Compiles a validated config. Health entries come from (and stay in) `health`.
    pub fn compile(revision: u64, config: &Config, health: &HealthTable) -> RoutingSnapshot {
        let pools: HashMap<String, Arc<PoolSnapshot>> = config
            .pools
            .iter()
            .map(|p| {
                let members: Vec<MemberSnapshot> = p
                    .members
                    .iter()
                    .filter_map(|m| {
                        // A socket address always forms a valid authority; skip it otherwise.
                        let authority = m.address.to_string().parse().ok()?;
                        Some(MemberSnapshot {
                            addr: m.address,
                            authority,
                            weight: m.weight,
                            health: p.health_check.as_ref().map(|_| {
                                health.entry(&model::member_health_key(&p.name, m.address))
                            }),
                        })
                    })
                    .collect();
                let weights: Vec<u32> = members.iter().map(|m| m.weight).collect();
                let snap = PoolSnapshot {
                    name: p.name.clone(),
                    schedule: smooth_wrr_schedule(&weights),
                    members,
                    cursor: AtomicUsize::new(0),
                    timeout: p.timeout,
                };
                (p.name.clone(), Arc::new(snap))
            })
            .collect();
        let mut listeners: HashMap<String, Vec<CompiledRoute>> = config
            .listeners
            .iter()
            .map(|l| (l.name.clone(), Vec::new()))
            .collect();
        for r in &config.routes {
            let (Some(table), Some(pool)) = (listeners.get_mut(&r.listener), pools.get(&r.pool))
            else {
                // Validation guarantees both exist; a route that somehow dangles is skipped.
                continue;
            };
            table.push(CompiledRoute {
                name: r.name.clone(),
                host: r.host.clone(),
                path_prefix: r.path_prefix.clone(),
                pool: pool.clone(),
            });
        }
        for table in listeners.values_mut() {
            // Most specific host first, then longest path prefix: the first match wins.
            table.sort_by(|a, b| {
                b.host
                    .specificity()
                    .cmp(&a.host.specificity())
                    .then(b.path_prefix.len().cmp(&a.path_prefix.len()))
            });
        }
        RoutingSnapshot {
            revision,
            listeners,
            pools,
        }
    }

    /// The route for a request on `listener`. `host` is lowercased without its port; an empty
    /// host (an HTTP/1.0 request without one) matches only routes for any host.
    pub fn route(&self, listener: &str, host: &str, path: &str) -> Option<&CompiledRoute> {
        self.listeners.get(listener)?.iter().find(|r| {
            (if host.is_empty() {
                r.host == HostMatch::Any
            } else {
                r.host.matches(host)
            }) && prefix_matches(&r.path_prefix, path)
        })
    }

    pub fn pool(&self, name: &str) -> Option<&Arc<PoolSnapshot>> {
        self.pools.get(name)
    }
}

impl PoolSnapshot {
    /// The next healthy member in weighted round-robin order, other than `avoid`.
    pub fn pick(&self, avoid: Option<SocketAddr>) -> Option<&MemberSnapshot> {
        let n = self.schedule.len();
        if n == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .filter_map(|i| self.members.get(self.schedule[(start + i) % n]))
            .find(|m| m.is_healthy() && Some(m.addr) != avoid)
    }

    pub fn healthy_count(&self) -> usize {
        self.members.iter().filter(|m| m.is_healthy()).count()
    }
}

/// Path prefixes match whole segments: `/api` matches `/api` and `/api/v1` but not `/apix`. A
/// prefix that ends with `/` matches everything below it.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// nginx's smooth weighted round robin, unrolled into one cycle. Weights are reduced by their
/// greatest common divisor and scaled down when the cycle would be long.
pub fn smooth_wrr_schedule(weights: &[u32]) -> Vec<usize> {
    if weights.is_empty() {
        return Vec::new();
    }
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let mut w: Vec<u64> = weights.iter().map(|&x| u64::from(x / g)).collect();
    let total: u64 = w.iter().sum();
    const MAX_CYCLE: u64 = 4096;
    if total > MAX_CYCLE {
        let max = w.iter().copied().max().unwrap_or(1).max(1);
        let limit = (MAX_CYCLE / w.len() as u64).max(1);
        w = w
            .iter()
            .map(|&x| (x * limit).div_ceil(max).max(1))
            .collect();
    }
    let total: i64 = w.iter().map(|&x| x as i64).sum();
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..w.len() {
            current[i] += w[i] as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best);
    }
    out
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml: &str) -> Config {
        let spec: model::ConfigSpec = model::parse::from_toml(toml).expect("parses");
        model::validate(&spec).expect("valid")
    }

    const CFG: &str = r#"
api_version = "meridian/v1"
listeners = [{ name = "web", bind = "127.0.0.1:8080" }]
routes = [
  { name = "any", listener = "web", pool = "a" },
  { name = "api", listener = "web", path_prefix = "/api", pool = "b" },
  { name = "host", listener = "web", host = "x.example.com", pool = "b" },
  { name = "wild", listener = "web", host = "*.example.com", path_prefix = "/w", pool = "a" },
]
health_checks = [{ name = "hc" }]
[[pools]]
name = "a"
members = [{ address = "127.0.0.1:1", weight = 3 }, { address = "127.0.0.1:2" }]
[[pools]]
name = "b"
health_check = "hc"
members = [{ address = "127.0.0.1:3" }, { address = "127.0.0.1:4" }]
"#;

    #[test]
    fn routes_pick_most_specific_match() {
        let t = HealthTable::default();
        let s = RoutingSnapshot::compile(7, &config(CFG), &t);
        let r = |h: &str, p: &str| s.route("web", h, p).map(|r| r.name.as_str());
        assert_eq!(r("other", "/"), Some("any"));
        assert_eq!(r("other", "/api/x"), Some("api"));
        assert_eq!(r("x.example.com", "/api"), Some("host"));
        assert_eq!(r("y.example.com", "/w/1"), Some("wild"));
        assert_eq!(r("y.example.com", "/v"), Some("any"));
        assert!(s.route("nope", "x", "/").is_none());
    }

    #[test]
    fn weighted_round_robin_follows_weights_and_skips_unhealthy() {
        let t = HealthTable::default();
        let s = RoutingSnapshot::compile(1, &config(CFG), &t);
        let a = s.pool("a").expect("pool a");
        let mut counts = HashMap::new();
        for _ in 0..400 {
            let m = a.pick(None).expect("member");
            *counts.entry(m.addr.port()).or_insert(0) += 1;
        }
        assert_eq!(counts[&1], 300);
        assert_eq!(counts[&2], 100);

        let b = s.pool("b").expect("pool b");
        t.entry("pool/b/127.0.0.1:3").observe(false, 1, 1);
        for _ in 0..10 {
            assert_eq!(b.pick(None).map(|m| m.addr.port()), Some(4));
        }
        assert_eq!(b.healthy_count(), 1);
        let four: SocketAddr = "127.0.0.1:4".parse().expect("addr");
        assert!(b.pick(Some(four)).is_none());
        t.entry("pool/b/127.0.0.1:4").observe(false, 1, 1);
        assert!(b.pick(None).is_none());
    }

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(prefix_matches("/", "/anything"));
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/v1"));
        assert!(!prefix_matches("/api", "/apix"));
        assert!(prefix_matches("/api/", "/api/x"));
        assert!(!prefix_matches("/api/", "/api"));
        let t = HealthTable::default();
        let s = RoutingSnapshot::compile(1, &config(CFG), &t);
        assert_eq!(
            s.route("web", "other", "/apix").map(|r| r.name.as_str()),
            Some("any")
        );
        assert_eq!(
            s.route("web", "", "/api/x").map(|r| r.name.as_str()),
            Some("api")
        );
        assert!(s.route("web", "", "/w").is_some_and(|r| r.name != "wild"));
    }

    #[test]
    fn schedule_is_smooth_and_bounded() {
        assert_eq!(smooth_wrr_schedule(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(smooth_wrr_schedule(&[2, 2]), vec![0, 1]);
        assert!(smooth_wrr_schedule(&[1000; 100]).len() <= 4096);
        let big = smooth_wrr_schedule(&[1000, 1, 999, 7]);
        assert!(big.len() <= 4096 + 4 && big.contains(&1) && big.contains(&3));
        assert!(smooth_wrr_schedule(&[]).is_empty());
    }
}
