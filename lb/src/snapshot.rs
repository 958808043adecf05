//! The routing snapshot compiled from one config revision: listeners by address, their route
//! tables with compiled filters, and pools with their balancing schedule, upstream client and
//! metric handles. Immutable once built, except for the round-robin cursor and the health entries
//! it shares with the health checker.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use model::{Cidr, Config, HostMatch, ListenerProtocol, ProxyProtocolVersion};

use crate::balance::{Candidates, Schedule};
use crate::error::CompileError;
use crate::filter::RouteFilters;
use crate::health::{HealthEntry, HealthTable};
use crate::metrics::{LbMetrics, ListenerMetrics, MemberMetrics, PoolMetrics, RouteMetrics};
use crate::upstream::{UpstreamClient, UpstreamRegistry};

/// Everything the request path needs for one revision.
#[derive(Default)]
pub struct RoutingSnapshot {
    pub revision: u64,
    /// Few per node: a linear scan by address beats hashing.
    listeners: Vec<ListenerSnapshot>,
    pools: HashMap<String, Arc<PoolSnapshot>>,
}

pub struct ListenerSnapshot {
    pub name: Arc<str>,
    pub bind: SocketAddr,
    pub protocol: ListenerProtocol,
    pub limits: ListenerLimits,
    /// Sources that must open with a PROXY protocol header.
    pub proxy_protocol_from: Vec<Cidr>,
    /// Most specific host first, then longest path prefix: the first match wins.
    routes: Vec<CompiledRoute>,
    /// The pool of a `tcp` listener.
    pub pool: Option<Arc<PoolSnapshot>>,
    pub metrics: Arc<ListenerMetrics>,
    /// HTTPS listeners: how to terminate TLS.
    pub tls: Option<Arc<crate::tls::ListenerTlsConfig>>,
    /// TCP passthrough: pools by SNI (`*.suffix` for wildcards).
    pub sni_routes: Vec<(String, Arc<PoolSnapshot>)>,
    /// Bandwidth shaping of its connections.
    pub shaping: Option<crate::listener::shape::Shaping>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    pub max_request_head_bytes: usize,
    pub max_request_line_bytes: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub drain_timeout: Duration,
}

pub struct CompiledRoute {
    pub name: Arc<str>,
    host: HostMatch,
    pub path_prefix: String,
    pub pool: Arc<PoolSnapshot>,
    pub filters: RouteFilters,
    /// Response compression (and request decompression), when the route asks for it.
    pub compression: Option<crate::filter::compress::Compression>,
    pub rate_limit: Option<crate::filter::limit::RateLimit>,
    pub access: Option<crate::filter::limit::AccessRules>,
    pub cache: Option<crate::cache::RouteCache>,
    pub metrics: RouteMetrics,
}

pub struct PoolSnapshot {
    pub name: Arc<str>,
    pub members: Vec<MemberSnapshot>,
    schedule: Schedule,
    /// Response-head timeout of one upstream exchange.
    pub timeout: Duration,
    pub retries: u32,
    pub connect_timeout: Duration,
    pub http2: bool,
    pub proxy_protocol: ProxyProtocolVersion,
    pub client: Arc<UpstreamClient>,
    pub metrics: PoolMetrics,
    /// Requests in flight to the pool, against `max_concurrent_requests`.
    pub in_flight: Option<(u32, Arc<std::sync::atomic::AtomicU32>)>,
}

pub struct MemberSnapshot {
    pub addr: SocketAddr,
    /// `addr` as a URI authority, built once per revision rather than per request.
    pub authority: http::uri::Authority,
    pub weight: u32,
    /// Disabled and draining members take no new requests.
    pub admin: model::AdminState,
    /// `None` when the pool has no health check: always eligible.
    health: Option<Arc<HealthEntry>>,
    pub metrics: MemberMetrics,
}

impl MemberSnapshot {
    pub fn is_healthy(&self) -> bool {
        self.health.as_ref().is_none_or(|h| h.is_healthy())
    }

    /// Whether a new request may go to this member: enabled by the operator and healthy.
    pub fn is_eligible(&self) -> bool {
        self.admin.is_enabled() && self.is_healthy()
    }
}

/// What compiling needs besides the config: state that outlives the snapshot.
pub struct CompileEnv<'a> {
    pub health: &'a HealthTable,
    pub metrics: &'a LbMetrics,
    pub upstreams: &'a UpstreamRegistry,
    /// Data-plane worker slots (per-worker upstream connections).
    pub workers: usize,
    /// The certificates HTTPS listeners serve, by name.
    pub certs: &'a Arc<crate::tls::CertStore>,
    /// Rate-limit state, kept across revisions while a route's limit is unchanged.
    pub limits: &'a crate::filter::limit::LimitRegistry,
}

impl RoutingSnapshot {
    /// Each caching route's counters.
    pub fn cache_routes(&self) -> Vec<(String, [u64; 5], u64)> {
        self.listeners
            .iter()
            .flat_map(|l| l.routes.iter())
            .filter_map(|r| {
                let (results, coalesced) = r.cache.as_ref()?.counts();
                Some((r.name.to_string(), results, coalesced))
            })
            .collect()
    }

    /// Compiles a validated config. Health entries, metric handles and upstream clients come from
    /// (and stay in) `env`.
    pub fn compile(
        revision: u64,
        config: &Config,
        env: &CompileEnv<'_>,
    ) -> Result<RoutingSnapshot, CompileError> {
        let mut pools = HashMap::new();
        for p in &config.pools {
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
                        admin: m.state,
                        health: p.health_check.as_ref().map(|_| {
                            env.health
                                .entry(&model::member_health_key(&p.name, m.address))
                        }),
                        metrics: env.metrics.member(&p.name, &m.address.to_string()),
                    })
                })
                .collect();
            let weights: Vec<u32> = members.iter().map(|m| m.weight).collect();
            let snap = PoolSnapshot {
                name: Arc::from(p.name.as_str()),
                schedule: Schedule::new(&weights),
                members,
                timeout: p.timeout,
                retries: p.retries,
                connect_timeout: p.upstream.connect_timeout,
                http2: p.upstream.protocol == model::UpstreamProtocol::Http2,
                proxy_protocol: p.upstream.proxy_protocol,
                client: env.upstreams.client(
                    &p.name,
                    p.upstream,
                    match &p.tls {
                        Some(t) => Some((
                            t.clone(),
                            Arc::new(
                                crate::upstream::tls::UpstreamTls::new(
                                    t,
                                    p.upstream.protocol,
                                    env.certs,
                                )
                                .map_err(|error| {
                                    CompileError::Tls {
                                        listener: format!("pool {}", p.name),
                                        error,
                                    }
                                })?,
                            ),
                        )),
                        None => None,
                    },
                    env.metrics,
                    env.workers,
                ),
                metrics: env.metrics.pool(&p.name),
                in_flight: p
                    .max_concurrent_requests
                    .map(|max| (max, env.limits.pool_counter(&p.name))),
            };
            pools.insert(p.name.clone(), Arc::new(snap));
        }
        let mut listeners = Vec::with_capacity(config.listeners.len());
        for l in &config.listeners {
            let pool = match &l.pool {
                Some(name) => {
                    Some(
                        pools
                            .get(name)
                            .cloned()
                            .ok_or_else(|| CompileError::MissingPool {
                                listener: l.name.clone(),
                                pool: name.clone(),
                            })?,
                    )
                }
                None => None,
            };
            let mut sni_routes = Vec::with_capacity(l.sni_routes.len());
            for (name, pool) in &l.sni_routes {
                let p = pools
                    .get(pool)
                    .cloned()
                    .ok_or_else(|| CompileError::MissingPool {
                        listener: l.name.clone(),
                        pool: pool.clone(),
                    })?;
                sni_routes.push((name.clone(), p));
            }
            let mut routes = Vec::new();
            for r in config.routes.iter().filter(|r| r.listener == l.name) {
                // Validation guarantees the pool exists; a route that somehow dangles is skipped.
                let Some(pool) = pools.get(&r.pool) else {
                    continue;
                };
                routes.push(CompiledRoute {
                    name: Arc::from(r.name.as_str()),
                    host: r.host.clone(),
                    path_prefix: r.path_prefix.clone(),
                    pool: pool.clone(),
                    filters: RouteFilters::compile(r)?,
                    compression: r
                        .compression
                        .as_ref()
                        .map(crate::filter::compress::Compression::compile),
                    rate_limit: r.rate_limit.as_ref().map(|rl| {
                        crate::filter::limit::RateLimit::compile(
                            rl,
                            env.limits.state(&r.name, rl),
                            env.metrics.rate_limit(&r.name),
                        )
                    }),
                    access: r.access.as_ref().map(|a| {
                        crate::filter::limit::AccessRules::compile(a, env.metrics.access(&r.name))
                    }),
                    cache: r.cache.as_ref().map(|c| {
                        crate::cache::RouteCache::compile(c, env.metrics.cache_route(&r.name))
                    }),
                    metrics: env.metrics.route(&r.name),
                });
            }
            routes.sort_by(|a, b| {
                b.host
                    .specificity()
                    .cmp(&a.host.specificity())
                    .then(b.path_prefix.len().cmp(&a.path_prefix.len()))
            });
            let tls = match &l.tls {
                Some(t) => Some(Arc::new(crate::tls::server_config(t, env.certs).map_err(
                    |e| CompileError::Tls {
                        listener: l.name.clone(),
                        error: e.to_string(),
                    },
                )?)),
                None => None,
            };
            listeners.push(ListenerSnapshot {
                name: Arc::from(l.name.as_str()),
                bind: l.bind,
                protocol: l.protocol,
                limits: ListenerLimits {
                    max_request_head_bytes: l.max_request_head_bytes,
                    max_request_line_bytes: l.max_request_line_bytes,
                    header_timeout: l.header_timeout,
                    idle_timeout: l.idle_timeout,
                    drain_timeout: l.drain_timeout,
                },
                proxy_protocol_from: l.proxy_protocol_from.clone(),
                routes,
                pool,
                metrics: env.metrics.listener(&l.name),
                tls,
                sni_routes,
                shaping: l.bandwidth.map(|b| crate::listener::shape::Shaping {
                    per_connection: b.per_connection_bytes_per_second,
                    listener: b
                        .listener_bytes_per_second
                        .map(|bps| env.limits.listener_buckets(&l.name, bps)),
                }),
            });
        }
        let route_names: HashSet<String> = config.routes.iter().map(|r| r.name.clone()).collect();
        let members: HashSet<(String, String)> = config
            .pools
            .iter()
            .flat_map(|p| {
                p.members
                    .iter()
                    .map(|m| (p.name.clone(), m.address.to_string()))
            })
            .collect();
        env.metrics.retain_objects(&route_names, &members);
        env.upstreams.retain(|name| pools.contains_key(name));
        Ok(RoutingSnapshot {
            revision,
            listeners,
            pools,
        })
    }

    pub fn listener(&self, bind: SocketAddr) -> Option<&ListenerSnapshot> {
        self.listeners.iter().find(|l| l.bind == bind)
    }

    pub fn listeners(&self) -> impl Iterator<Item = &ListenerSnapshot> {
        self.listeners.iter()
    }

    pub fn pool(&self, name: &str) -> Option<&Arc<PoolSnapshot>> {
        self.pools.get(name)
    }
}

impl ListenerSnapshot {
    /// The route for a request. `host` is lowercased without its port; an empty host (an
    /// HTTP/1.0 request without one) matches only routes for any host.
    pub fn route(&self, host: &str, path: &str) -> Option<&CompiledRoute> {
        self.routes.iter().find(|r| {
            (if host.is_empty() {
                r.host == HostMatch::Any
            } else {
                r.host.matches(host)
            }) && prefix_matches(&r.path_prefix, path)
        })
    }
}

impl PoolSnapshot {
    /// The members one request may try, in weighted round-robin order: enabled, healthy ones,
    /// each once.
    pub fn candidates(&self) -> Candidates<'_, impl Fn(usize) -> bool + '_> {
        self.schedule
            .candidates(move |i| self.members.get(i).is_some_and(|m| m.is_eligible()))
    }

    pub fn eligible_count(&self) -> usize {
        self.members.iter().filter(|m| m.is_eligible()).count()
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

    struct Env {
        health: HealthTable,
        metrics: LbMetrics,
        upstreams: UpstreamRegistry,
        certs: Arc<crate::tls::CertStore>,
        limits: crate::filter::limit::LimitRegistry,
    }

    impl Env {
        fn new() -> Env {
            Env {
                health: HealthTable::default(),
                metrics: LbMetrics::new(&prometheus::Registry::new()).expect("metrics"),
                upstreams: UpstreamRegistry::default(),
                certs: Arc::default(),
                limits: Default::default(),
            }
        }
        fn compile(&self, rev: u64, toml: &str) -> RoutingSnapshot {
            let env = CompileEnv {
                health: &self.health,
                metrics: &self.metrics,
                upstreams: &self.upstreams,
                workers: 1,
                certs: &self.certs,
                limits: &self.limits,
            };
            RoutingSnapshot::compile(rev, &config(toml), &env).expect("compiles")
        }
    }

    fn web() -> SocketAddr {
        "127.0.0.1:8080".parse().expect("addr")
    }

    #[tokio::test]
    async fn routes_pick_most_specific_match() {
        let env = Env::new();
        let s = env.compile(7, CFG);
        let l = s.listener(web()).expect("listener");
        let r = |h: &str, p: &str| l.route(h, p).map(|r| r.name.to_string());
        assert_eq!(r("other", "/").as_deref(), Some("any"));
        assert_eq!(r("other", "/api/x").as_deref(), Some("api"));
        assert_eq!(r("x.example.com", "/api").as_deref(), Some("host"));
        assert_eq!(r("y.example.com", "/w/1").as_deref(), Some("wild"));
        assert_eq!(r("y.example.com", "/v").as_deref(), Some("any"));
        assert_eq!(r("other", "/apix").as_deref(), Some("any"));
        assert_eq!(r("", "/api/x").as_deref(), Some("api"));
        assert!(l.route("", "/w").is_some_and(|r| &*r.name != "wild"));
        assert!(s.listener("127.0.0.1:9".parse().expect("addr")).is_none());
    }

    #[tokio::test]
    async fn candidates_follow_weights_and_skip_unhealthy() {
        let env = Env::new();
        let s = env.compile(1, CFG);
        let a = s.pool("a").expect("pool a");
        let mut counts = HashMap::new();
        for _ in 0..400 {
            let m = a.candidates().next().expect("member");
            *counts.entry(a.members[m].addr.port()).or_insert(0) += 1;
        }
        assert_eq!(counts[&1], 300);
        assert_eq!(counts[&2], 100);

        let b = s.pool("b").expect("pool b");
        env.health.entry("pool/b/127.0.0.1:3").observe(false, 1, 1);
        for _ in 0..10 {
            let got: Vec<u16> = b.candidates().map(|i| b.members[i].addr.port()).collect();
            assert_eq!(got, [4]);
        }
        assert_eq!(b.eligible_count(), 1);
        env.health.entry("pool/b/127.0.0.1:4").observe(false, 1, 1);
        assert!(b.candidates().next().is_none());
    }

    #[tokio::test]
    async fn disabled_and_draining_members_take_no_new_requests() {
        let env = Env::new();
        let cfg = CFG.replace(
            r#"members = [{ address = "127.0.0.1:1", weight = 3 }, { address = "127.0.0.1:2" }]"#,
            r#"members = [{ address = "127.0.0.1:1", weight = 3, state = "draining" }, { address = "127.0.0.1:2" }]"#,
        );
        let s = env.compile(1, &cfg);
        let a = s.pool("a").expect("pool a");
        for _ in 0..20 {
            let got: Vec<u16> = a.candidates().map(|i| a.members[i].addr.port()).collect();
            assert_eq!(got, [2], "the draining member is never chosen");
        }
        let off = cfg.replace(
            r#"{ address = "127.0.0.1:2" }]"#,
            r#"{ address = "127.0.0.1:2", state = "disabled" }]"#,
        );
        let s = env.compile(2, &off);
        let a = s.pool("a").expect("pool a");
        assert!(a.candidates().next().is_none(), "nothing left to choose");
        assert_eq!(a.eligible_count(), 0);
    }

    #[tokio::test]
    async fn upstream_clients_survive_a_revision_unless_their_settings_change() {
        let env = Env::new();
        let one = env.compile(1, CFG);
        let two = env.compile(2, &CFG.replace("weight = 3", "weight = 5"));
        let a1 = one.pool("a").expect("a");
        let a2 = two.pool("a").expect("a");
        assert!(
            Arc::ptr_eq(&a1.client, &a2.client),
            "same settings keep the connection pool"
        );
        let three = env.compile(
            3,
            &CFG.replace("name = \"a\"", "name = \"a\"\nprotocol = \"http2\""),
        );
        let a3 = three.pool("a").expect("a");
        assert!(!Arc::ptr_eq(&a2.client, &a3.client));
        assert!(a3.http2);
    }

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(prefix_matches("/", "/anything"));
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/v1"));
        assert!(!prefix_matches("/api", "/apix"));
        assert!(prefix_matches("/api/", "/api/x"));
        assert!(!prefix_matches("/api/", "/api"));
    }
}
