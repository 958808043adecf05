//! Prometheus metrics of the data plane. Labels are bounded: listener, route, pool and member
//! names come from the config, statuses from a fixed set of codes and classes.
//!
//! The request path never resolves a label: handles are resolved when a revision is compiled
//! (`ListenerMetrics`, `RouteMetrics`, `PoolMetrics`, `MemberMetrics`) and carried in the
//! snapshot, so counting is one atomic add. Label sets of objects that leave the config are
//! removed on the next revision.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

use crate::health::Target;

/// Latency buckets in seconds, from 100 µs to 30 s.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0, 30.0,
];

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Clone)]
pub struct LbMetrics {
    requests: IntCounterVec,
    listener_conns_active: IntGaugeVec,
    listener_conns_total: IntCounterVec,
    listener_bytes: IntCounterVec,
    listener_latency: HistogramVec,
    client_errors: IntCounterVec,
    request_checks: IntCounterVec,
    route_requests: IntCounterVec,
    route_latency: HistogramVec,
    member_requests: IntCounterVec,
    member_latency: HistogramVec,
    member_active: IntGaugeVec,
    member_connect_failures: IntCounterVec,
    member_healthy: IntGaugeVec,
    pool_connections: IntCounterVec,
    pool_requests: IntCounterVec,
    pool_reuse: GaugeVec,
    config_revision: IntGauge,
    compile_errors: IntCounter,
    listener_errors: IntCounterVec,
    access_log_dropped: IntCounter,
    tls_connections: IntCounterVec,
    kernel_tls: IntGauge,
    rate_limited: IntCounterVec,
    access_denied: IntCounterVec,
    pub compression: CompressionMetrics,
    cache_requests: IntCounterVec,
    cache_coalesced: IntCounterVec,
    pub cache: CacheMetrics,
    exported: Arc<Mutex<Exported>>,
}

/// Label sets exported so far, so that those of removed objects can be dropped.
#[derive(Default)]
struct Exported {
    health: HashSet<(String, String)>,
    routes: HashSet<String>,
    members: HashSet<(String, String)>,
}

fn counter_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let v = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(v.clone()))?;
    Ok(v)
}

fn gauge_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntGaugeVec> {
    let v = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(v.clone()))?;
    Ok(v)
}

fn histogram_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<HistogramVec> {
    let v = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        labels,
    )?;
    r.register(Box::new(v.clone()))?;
    Ok(v)
}

impl LbMetrics {
    pub fn new(r: &Registry) -> Result<Self, prometheus::Error> {
        let pool_reuse = GaugeVec::new(
            Opts::new(
                "meridian_lb_upstream_reuse_ratio",
                "Share of upstream requests that went over an already open connection",
            ),
            &["pool"],
        )?;
        r.register(Box::new(pool_reuse.clone()))?;
        let config_revision = IntGauge::new(
            "meridian_lb_config_revision",
            "Config revision the data plane is serving",
        )?;
        r.register(Box::new(config_revision.clone()))?;
        let compile_errors = IntCounter::new(
            "meridian_lb_config_compile_errors_total",
            "Revisions the data plane could not compile (the previous one kept serving)",
        )?;
        r.register(Box::new(compile_errors.clone()))?;
        let access_log_dropped = IntCounter::new(
            "meridian_lb_access_log_dropped_total",
            "Access log lines dropped because the writer fell behind",
        )?;
        r.register(Box::new(access_log_dropped.clone()))?;
        Ok(LbMetrics {
            requests: counter_vec(r, "meridian_lb_requests_total", "HTTP requests answered by the proxy, by listener and status code", &["listener", "status"])?,
            listener_conns_active: gauge_vec(r, "meridian_lb_connections_active", "Client connections open now, by listener", &["listener"])?,
            listener_conns_total: counter_vec(r, "meridian_lb_connections_total", "Client connections accepted, by listener", &["listener"])?,
            listener_bytes: counter_vec(r, "meridian_lb_bytes_total", "Bytes received from (in) and sent to (out) clients, by listener", &["listener", "direction"])?,
            listener_latency: histogram_vec(r, "meridian_lb_request_duration_seconds", "Time from request head to response head, by listener", &["listener"])?,
            client_errors: counter_vec(r, "meridian_lb_client_errors_total", "Requests or connections refused or cut short because of the client: bad_request, aborted, bad_proxy_header, protocol, tls_handshake, tls_handshake_timeout", &["listener", "kind"])?,
            route_requests: counter_vec(r, "meridian_lb_route_requests_total", "Requests by route and status class", &["route", "class"])?,
            route_latency: histogram_vec(r, "meridian_lb_route_duration_seconds", "Time from request head to response head, by route", &["route"])?,
            member_requests: counter_vec(r, "meridian_lb_member_requests_total", "Upstream requests by pool member and status class", &["pool", "member", "class"])?,
            member_latency: histogram_vec(r, "meridian_lb_member_duration_seconds", "Upstream response-head latency by pool member", &["pool", "member"])?,
            member_active: gauge_vec(r, "meridian_lb_member_active_requests", "Requests (or TCP connections) in flight to a pool member", &["pool", "member"])?,
            member_connect_failures: counter_vec(r, "meridian_lb_member_connect_failures_total", "Failed upstream connects by pool member", &["pool", "member"])?,
            member_healthy: gauge_vec(r, "meridian_lb_member_healthy", "1 when the health check of a pool member or GSLB site passes, 0 when it fails", &["group", "member"])?,
            pool_connections: counter_vec(r, "meridian_lb_upstream_connections_total", "Upstream connections opened, by pool", &["pool"])?,
            pool_requests: counter_vec(r, "meridian_lb_upstream_requests_total", "Upstream requests sent, by pool", &["pool"])?,
            pool_reuse,
            config_revision,
            compile_errors,
            request_checks: counter_vec(r, "meridian_lb_request_checks_total", "Requests refused by a request check, by check: dot_segments (path traversal, also through %2e, %2f, %5c), nul_byte, host, framing (CL with TE, smuggling shapes), uri_too_long, body_encoding (a compressed body that does not decode), payload_too_large", &["listener", "check"])?,
            listener_errors: counter_vec(r, "meridian_lb_listener_errors_total", "Listener bind and accept errors", &["listener", "kind"])?,
            access_log_dropped,
            kernel_tls: {
                let g = IntGauge::new(
                    "meridian_lb_kernel_tls_available",
                    "1 when this node's kernel takes TLS record layers (kTLS), 0 when TLS stays in userspace",
                )?;
                r.register(Box::new(g.clone()))?;
                g
            },
            tls_connections: counter_vec(r, "meridian_lb_tls_connections_total", "TLS connections after their handshake, by listener, TLS version, cipher suite, record-layer mode (kernel or userspace) and handshake (full or resumed)", &["listener", "version", "cipher", "mode", "handshake"])?,
            rate_limited: counter_vec(r, "meridian_lb_rate_limit_total", "Requests through a route's rate limit, by outcome: admitted, delayed (admitted after waiting) or rejected (429)", &["route", "outcome"])?,
            access_denied: counter_vec(r, "meridian_lb_access_denied_total", "Requests refused by a route's access rules, by reason: deny_list, not_allowed (403) or method (405)", &["route", "reason"])?,
            compression: CompressionMetrics::new(r)?,
            cache_requests: counter_vec(r, "meridian_lb_cache_requests_total", "Requests on caching routes, by result: hit (fresh), miss, stale (served past freshness: stale-while-revalidate or stale-if-error), revalidated (a 304 from upstream refreshed it), bypass (credentials, Range, an unsafe method)", &["route", "result"])?,
            cache_coalesced: counter_vec(r, "meridian_lb_cache_coalesced_total", "Misses that waited for another request's upstream response for the same key instead of going upstream", &["route"])?,
            cache: CacheMetrics::new(r)?,
            exported: Arc::default(),
        })
    }

    fn exported(&self) -> std::sync::MutexGuard<'_, Exported> {
        // The guarded sets stay consistent whatever a panicking holder did: keep using them.
        self.exported.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn listener(&self, listener: &str) -> Arc<ListenerMetrics> {
        Arc::new(ListenerMetrics {
            name: listener.to_string(),
            requests: self.requests.clone(),
            checks: self.request_checks.clone(),
            by_status: (0..600).map(|_| OnceLock::new()).collect(),
            conns_active: self.listener_conns_active.with_label_values(&[listener]),
            conns_total: self.listener_conns_total.with_label_values(&[listener]),
            bytes_in: self.listener_bytes.with_label_values(&[listener, "in"]),
            bytes_out: self.listener_bytes.with_label_values(&[listener, "out"]),
            latency: self.listener_latency.with_label_values(&[listener]),
            bad_request: self
                .client_errors
                .with_label_values(&[listener, "bad_request"]),
            aborted: self.client_errors.with_label_values(&[listener, "aborted"]),
            bad_proxy_header: self
                .client_errors
                .with_label_values(&[listener, "bad_proxy_header"]),
            protocol: self
                .client_errors
                .with_label_values(&[listener, "protocol"]),
            tls_handshake_failed: self
                .client_errors
                .with_label_values(&[listener, "tls_handshake"]),
            tls_handshake_timeout: self
                .client_errors
                .with_label_values(&[listener, "tls_handshake_timeout"]),
        })
    }

    pub fn set_kernel_tls(&self, available: bool) {
        self.kernel_tls.set(i64::from(available));
    }

    /// Counts a connection the kernel refused to take into kernel TLS.
    pub fn ktls_failed(&self, listener: &ListenerMetrics) {
        self.listener_error(&listener.name, "ktls_refused");
    }

    /// Counts a TLS connection whose handshake finished. The labels come from fixed sets.
    pub fn tls_connection(
        &self,
        listener: &ListenerMetrics,
        version: &str,
        cipher: &str,
        mode: &str,
        handshake: &str,
    ) {
        self.tls_connections
            .with_label_values(&[listener.name.as_str(), version, cipher, mode, handshake])
            .inc();
    }

    pub fn route(&self, route: &str) -> RouteMetrics {
        self.exported().routes.insert(route.to_string());
        RouteMetrics {
            by_class: CLASSES.map(|c| self.route_requests.with_label_values(&[route, c])),
            latency: self.route_latency.with_label_values(&[route]),
        }
    }

    /// `[admitted, delayed, rejected]` of a route's rate limit.
    pub fn rate_limit(&self, route: &str) -> [IntCounter; 3] {
        self.exported().routes.insert(route.to_string());
        ["admitted", "delayed", "rejected"]
            .map(|o| self.rate_limited.with_label_values(&[route, o]))
    }

    /// The cache counters of a route.
    pub fn cache_route(&self, route: &str) -> RouteCacheMetrics {
        self.exported().routes.insert(route.to_string());
        RouteCacheMetrics {
            results: CACHE_RESULTS.map(|o| self.cache_requests.with_label_values(&[route, o])),
            coalesced: self.cache_coalesced.with_label_values(&[route]),
        }
    }

    /// `[deny_list, not_allowed, method]` of a route's access rules.
    pub fn access(&self, route: &str) -> [IntCounter; 3] {
        self.exported().routes.insert(route.to_string());
        ["deny_list", "not_allowed", "method"]
            .map(|o| self.access_denied.with_label_values(&[route, o]))
    }

    pub fn pool(&self, pool: &str) -> PoolMetrics {
        PoolMetrics {
            connections: self.pool_connections.with_label_values(&[pool]),
            requests: self.pool_requests.with_label_values(&[pool]),
            reuse: self.pool_reuse.with_label_values(&[pool]),
        }
    }

    pub fn member(&self, pool: &str, member: &str) -> MemberMetrics {
        self.exported()
            .members
            .insert((pool.to_string(), member.to_string()));
        MemberMetrics {
            by_class: CLASSES.map(|c| self.member_requests.with_label_values(&[pool, member, c])),
            latency: self.member_latency.with_label_values(&[pool, member]),
            active: self.member_active.with_label_values(&[pool, member]),
            connect_failures: self
                .member_connect_failures
                .with_label_values(&[pool, member]),
        }
    }

    /// Drops the label sets of routes and members that left the config.
    pub fn retain_objects(&self, routes: &HashSet<String>, members: &HashSet<(String, String)>) {
        let mut e = self.exported();
        e.routes.retain(|r| {
            let keep = routes.contains(r);
            if !keep {
                for c in CLASSES {
                    let _ = self.route_requests.remove_label_values(&[r, c]);
                }
                let _ = self.route_latency.remove_label_values(&[r]);
                for o in ["admitted", "delayed", "rejected"] {
                    let _ = self.rate_limited.remove_label_values(&[r, o]);
                }
                for o in ["deny_list", "not_allowed", "method"] {
                    let _ = self.access_denied.remove_label_values(&[r, o]);
                }
                for o in CACHE_RESULTS {
                    let _ = self.cache_requests.remove_label_values(&[r, o]);
                }
                let _ = self.cache_coalesced.remove_label_values(&[r]);
            }
            keep
        });
        e.members.retain(|(p, m)| {
            let keep = members.contains(&(p.clone(), m.clone()));
            if !keep {
                for c in CLASSES {
                    let _ = self.member_requests.remove_label_values(&[p, m, c]);
                }
                let _ = self.member_latency.remove_label_values(&[p, m]);
                let _ = self.member_active.remove_label_values(&[p, m]);
                let _ = self.member_connect_failures.remove_label_values(&[p, m]);
            }
            keep
        });
    }

    pub fn set_member_health(&self, group: &str, member: &str, healthy: bool) {
        self.exported()
            .health
            .insert((group.to_string(), member.to_string()));
        self.member_healthy
            .with_label_values(&[group, member])
            .set(i64::from(healthy));
    }

    pub(crate) fn retain_health(&self, wanted: &std::collections::HashMap<String, Target>) {
        let keep: HashSet<(String, String)> = wanted
            .values()
            .map(|t| (t.group.clone(), t.member.clone()))
            .collect();
        self.exported().health.retain(|k| {
            let stays = keep.contains(k);
            if !stays {
                let _ = self.member_healthy.remove_label_values(&[&k.0, &k.1]);
            }
            stays
        });
    }

    pub fn set_revision(&self, rev: u64) {
        self.config_revision
            .set(i64::try_from(rev).unwrap_or(i64::MAX));
    }

    pub fn compile_error(&self) {
        self.compile_errors.inc();
    }

    pub fn listener_error(&self, listener: &str, kind: &'static str) {
        self.listener_errors
            .with_label_values(&[listener, kind])
            .inc();
    }

    pub fn access_log_dropped(&self) {
        self.access_log_dropped.inc();
    }
}

fn class_index(status: http::StatusCode) -> usize {
    usize::from(status.as_u16() / 100).clamp(1, 5) - 1
}

/// The metrics of one listener, resolved once.
pub struct ListenerMetrics {
    name: String,
    requests: IntCounterVec,
    checks: IntCounterVec,
    /// `meridian_lb_requests_total` by status code, resolved on first use so the request path
    /// takes no lock.
    by_status: Box<[OnceLock<IntCounter>]>,
    pub conns_active: IntGauge,
    pub conns_total: IntCounter,
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounter,
    pub latency: Histogram,
    pub bad_request: IntCounter,
    pub aborted: IntCounter,
    pub bad_proxy_header: IntCounter,
    pub protocol: IntCounter,
    pub tls_handshake_failed: IntCounter,
    pub tls_handshake_timeout: IntCounter,
}

impl ListenerMetrics {
    /// Counts a request refused by check `check` (a fixed set of names; refusals are rare, so
    /// the label lookup is off the fast path).
    pub fn check_failed(&self, check: &'static str) {
        self.checks
            .with_label_values(&[self.name.as_str(), check])
            .inc();
    }

    pub fn count(&self, status: http::StatusCode, elapsed: Duration) {
        self.latency.observe(elapsed.as_secs_f64());
        match self.by_status.get(usize::from(status.as_u16())) {
            Some(cell) => cell
                .get_or_init(|| {
                    self.requests
                        .with_label_values(&[self.name.as_str(), status.as_str()])
                })
                .inc(),
            None => self
                .requests
                .with_label_values(&[self.name.as_str(), status.as_str()])
                .inc(),
        }
    }
}

/// Bytes through the compressors and the request decompressors, per codec.
#[derive(Clone)]
pub struct CompressionMetrics {
    /// `[in, out]` per codec, in `Codec::ALL` order.
    response: [[IntCounter; 2]; 4],
    request: [[IntCounter; 2]; 4],
    /// `[too_large, malformed]`.
    rejected: [IntCounter; 2],
}

impl CompressionMetrics {
    fn new(r: &Registry) -> prometheus::Result<CompressionMetrics> {
        let response = counter_vec(r, "meridian_lb_compression_bytes_total", "Response bytes through the compressors, by codec and direction (in: from upstream, out: to clients)", &["codec", "direction"])?;
        let request = counter_vec(r, "meridian_lb_request_decompression_bytes_total", "Request body bytes decompressed on their way upstream, by codec and direction (in: compressed, out: plain)", &["codec", "direction"])?;
        let rejected = counter_vec(
            r,
            "meridian_lb_request_decompression_rejected_total",
            "Compressed request bodies refused: too_large (over the cap, 413) or malformed (400)",
            &["reason"],
        )?;
        let pair = |v: &IntCounterVec, c: model::Codec| {
            [
                v.with_label_values(&[c.token(), "in"]),
                v.with_label_values(&[c.token(), "out"]),
            ]
        };
        Ok(CompressionMetrics {
            response: model::Codec::ALL.map(|c| pair(&response, c)),
            request: model::Codec::ALL.map(|c| pair(&request, c)),
            rejected: [
                rejected.with_label_values(&["too_large"]),
                rejected.with_label_values(&["malformed"]),
            ],
        })
    }

    /// The `[in, out]` counters of one codec's compressor.
    pub fn codec(&self, c: model::Codec) -> [IntCounter; 2] {
        self.response[c.index()].clone()
    }

    pub fn request_decoded(&self, c: model::Codec, compressed: usize, plain: usize) {
        let [i, o] = &self.request[c.index()];
        i.inc_by(compressed as u64);
        o.inc_by(plain as u64);
    }

    pub fn request_rejected(&self, fault: crate::body::ClientBodyFault) {
        match fault {
            crate::body::ClientBodyFault::TooLarge => self.rejected[0].inc(),
            _ => self.rejected[1].inc(),
        }
    }
}

/// Results of a cache lookup, in `CacheResult` order.
pub const CACHE_RESULTS: [&str; 5] = ["hit", "miss", "stale", "revalidated", "bypass"];

/// What a caching route counts.
pub struct RouteCacheMetrics {
    pub results: [IntCounter; 5],
    pub coalesced: IntCounter,
}

/// The cache store's own counters and gauges, by tier where it has tiers.
#[derive(Clone)]
pub struct CacheMetrics {
    /// `[memory, disk]`.
    pub bytes: [IntGauge; 2],
    pub entries: [IntGauge; 2],
    pub evictions: [IntCounter; 2],
    pub stored: IntCounter,
    pub stored_bytes: IntCounter,
    pub purged: IntCounter,
    pub disk_errors: IntCounter,
}

impl CacheMetrics {
    fn new(r: &Registry) -> prometheus::Result<CacheMetrics> {
        let bytes = gauge_vec(
            r,
            "meridian_lb_cache_bytes",
            "Bytes held by the response cache, by tier (memory, disk)",
            &["tier"],
        )?;
        let entries = gauge_vec(
            r,
            "meridian_lb_cache_entries",
            "Responses held by the cache, by tier",
            &["tier"],
        )?;
        let evictions = counter_vec(
            r,
            "meridian_lb_cache_evictions_total",
            "Responses evicted to stay within a tier's size (or past their usefulness), by tier",
            &["tier"],
        )?;
        let counter = |name: &str, help: &str| -> prometheus::Result<IntCounter> {
            let c = IntCounter::new(name, help)?;
            r.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let tiers = ["memory", "disk"];
        Ok(CacheMetrics {
            bytes: tiers.map(|t| bytes.with_label_values(&[t])),
            entries: tiers.map(|t| entries.with_label_values(&[t])),
            evictions: tiers.map(|t| evictions.with_label_values(&[t])),
            stored: counter("meridian_lb_cache_stored_total", "Responses stored in the cache")?,
            stored_bytes: counter("meridian_lb_cache_stored_bytes_total", "Body bytes of the responses stored in the cache")?,
            purged: counter("meridian_lb_cache_purged_total", "Responses removed by purges (by key, prefix or tag)")?,
            disk_errors: counter("meridian_lb_cache_disk_errors_total", "Disk-tier reads and writes that failed (the entry is dropped; memory keeps serving)")?,
        })
    }

    /// A registry of its own, for tests and tools that have no node.
    pub fn unregistered() -> CacheMetrics {
        match CacheMetrics::new(&Registry::new()) {
            Ok(m) => m,
            // A fresh registry has no names to collide with.
            Err(e) => unreachable!("cache metrics on a fresh registry: {e}"),
        }
    }
}

pub struct RouteMetrics {
    by_class: [IntCounter; 5],
    latency: Histogram,
}

impl RouteMetrics {
    pub fn count(&self, status: http::StatusCode, elapsed: Duration) {
        self.by_class[class_index(status)].inc();
        self.latency.observe(elapsed.as_secs_f64());
    }
}

pub struct PoolMetrics {
    pub connections: IntCounter,
    requests: IntCounter,
    reuse: Gauge,
}

impl PoolMetrics {
    /// Counts one upstream request and refreshes the reuse ratio.
    pub fn request_sent(&self) {
        self.requests.inc();
        let requests = self.requests.get() as f64;
        let opened = self.connections.get() as f64;
        self.reuse.set((1.0 - opened / requests).max(0.0));
    }
}

pub struct MemberMetrics {
    by_class: [IntCounter; 5],
    latency: Histogram,
    pub active: IntGauge,
    pub connect_failures: IntCounter,
}

impl MemberMetrics {
    pub fn count(&self, status: http::StatusCode, elapsed: Duration) {
        self.by_class[class_index(status)].inc();
        self.latency.observe(elapsed.as_secs_f64());
    }
}
