//! The last hour of the node's traffic, kept in memory for the console's charts: every
//! [`INTERVAL`] the sampler reads the Prometheus registry, turns counters into per-second rates
//! and histograms into latency percentiles over the interval, and appends one point per series.
//!
//! **Architecture Invariant:** this module knows the data planes only by their metric names and
//! labels (see `lb/src/metrics.rs` and `gslb-dns/src/metrics.rs`); it never imports them.
//!
//! Series keys are stable strings shared with `static/live.js`:
//!
//! - `listener/<name>/{rps,errors,p50,p99,in,out,conns}`
//! - `pool/<name>/{rps,errors,p50,p99}` (summed, and histograms merged, over the members)
//! - `member/<pool>/<member>/{rps,errors,p50,p99,active}`
//! - `dns/<rcode>/qps` and `dns/all/qps`
//!
//! Rates are per second, latencies in seconds, `errors` counts 5xx responses (plus failed
//! connects for pools and members). An interval in which a series saw no request gets no
//! latency point: a gap in the chart is more honest than a made-up 0 ms.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::proto::{self, MetricFamily};
use tokio::sync::watch;

use crate::AppState;

/// Time between two samples.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// Points kept per series: one hour at [`INTERVAL`].
pub const CAPACITY: usize = 720;
/// The span of time a series covers, in milliseconds; older points are dropped.
pub const WINDOW_MS: u64 = INTERVAL.as_millis() as u64 * CAPACITY as u64;

/// One point of a series: unix time in milliseconds and the value.
pub type Point = (u64, f64);

/// Totals of one pool member since the node started, from the last sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemberCounters {
    /// Requests (or TCP connections) in flight.
    pub active: u64,
    pub requests_total: u64,
    /// Responses by status class, `1xx` at index 0 to `5xx` at index 4.
    pub by_class: [u64; 5],
    /// Median upstream latency in seconds over the node's lifetime; `None` before any request.
    pub p50: Option<f64>,
    /// 99th percentile upstream latency in seconds over the node's lifetime.
    pub p99: Option<f64>,
    pub connect_failures: u64,
}

/// The recent history of every series. Shared by the sampler and the console handlers.
pub struct History {
    inner: Mutex<Inner>,
    /// The unix time in milliseconds of the last sample; 0 before the first.
    sampled: watch::Sender<u64>,
}

impl Default for History {
    fn default() -> Self {
        History {
            inner: Mutex::default(),
            sampled: watch::Sender::new(0),
        }
    }
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("series", &self.lock().series.len())
            .finish()
    }
}

impl History {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one sample of `families` (a `Registry::gather()`) taken at `now_unix_ms`, then
    /// wakes the subscribers.
    ///
    /// The first sample only records gauges and the raw values rates are computed against.
    pub fn sample(&self, families: &[MetricFamily], now_unix_ms: u64) {
        let mut inner = self.lock();
        let prev = inner.raw.take();
        let elapsed_s = prev
            .as_ref()
            .map(|p| now_unix_ms.saturating_sub(p.at_ms) as f64 / 1000.0)
            // A clock that stood still or went back gives no rates this time.
            .filter(|s| *s > 0.0);
        let mut s = Sampling::new(prev.as_ref().filter(|_| elapsed_s.is_some()), now_unix_ms);
        for family in families {
            s.family(family);
        }
        let (raw, points) = s.finish(elapsed_s);
        inner.raw = Some(raw);
        for (key, value) in points {
            inner
                .series
                .entry(key)
                .or_default()
                .push(now_unix_ms, value);
        }
        inner.age(now_unix_ms);
        drop(inner);
        self.sampled.send_replace(now_unix_ms);
    }

    /// The points of one series, oldest first; empty for an unknown key.
    pub fn series(&self, key: &str) -> Vec<Point> {
        self.lock()
            .series
            .get(key)
            .map(|r| r.points.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The newest point of each of `keys` that has one, as `(key, unix_ms, value)`.
    pub fn latest<K: AsRef<str>>(&self, keys: &[K]) -> Vec<(String, u64, f64)> {
        let inner = self.lock();
        keys.iter()
            .filter_map(|k| {
                let k = k.as_ref();
                let &(t, v) = inner.series.get(k)?.points.back()?;
                Some((k.to_string(), t, v))
            })
            .collect()
    }

    /// The totals of one pool member as of the last sample; zeros for a member not seen.
    pub fn member_counters(&self, pool: &str, member: &str) -> MemberCounters {
        let inner = self.lock();
        let Some(raw) = &inner.raw else {
            return MemberCounters::default();
        };
        raw.members
            .get(&(pool.to_string(), member.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// The keys of every series that has points, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.lock().series.keys().cloned().collect();
        keys.sort_unstable();
        keys
    }

    /// Changes to the unix time in milliseconds of the newest sample after each sample.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.sampled.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update leaves the maps consistent, whatever a panicking holder did: keep them.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Samples the registry of `state` every [`INTERVAL`] into `state.history`, the first time at
/// once, until the task is aborted.
pub fn spawn_sampler(state: &AppState) -> tokio::task::JoinHandle<()> {
    let registry = state.registry.clone();
    let history = Arc::clone(&state.history);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let families = registry.gather();
            history.sample(&families, unix_ms(SystemTime::now()));
        }
    })
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

// === impl Inner ===

#[derive(Default)]
struct Inner {
    series: HashMap<String, Ring>,
    /// The raw values of the last sample, what the next one computes deltas against.
    raw: Option<Raw>,
}

impl Inner {
    /// Drops points older than the window, and series left with none: objects removed from the
    /// config stop getting points and vanish an hour later.
    fn age(&mut self, now_ms: u64) {
        let oldest = now_ms.saturating_sub(WINDOW_MS);
        self.series.retain(|_, ring| {
            while ring.points.front().is_some_and(|&(t, _)| t <= oldest) {
                ring.points.pop_front();
            }
            !ring.points.is_empty()
        });
    }
}

#[derive(Default)]
struct Ring {
    points: VecDeque<Point>,
}

impl Ring {
    fn push(&mut self, t: u64, v: f64) {
        if self.points.len() >= CAPACITY {
            self.points.pop_front();
        }
        self.points.push_back((t, v));
    }
}

/// Raw cumulative values of one sample, keyed by family and label values.
#[derive(Default)]
struct Raw {
    at_ms: u64,
    counters: HashMap<String, f64>,
    histograms: HashMap<String, Buckets>,
    members: HashMap<(String, String), MemberCounters>,
}

/// Cumulative bucket counts of a histogram, or their increase over an interval.
#[derive(Debug, Clone, Default, PartialEq)]
struct Buckets {
    /// Upper bounds, ascending, without `+Inf`.
    bounds: Vec<f64>,
    /// Cumulative count at each bound.
    cumulative: Vec<u64>,
    /// All observations, including those above the last bound.
    count: u64,
}

impl Buckets {
    fn from_proto(h: &proto::Histogram) -> Self {
        let finite = h.bucket.iter().filter(|b| b.upper_bound().is_finite());
        Buckets {
            bounds: finite.clone().map(|b| b.upper_bound()).collect(),
            cumulative: finite.map(|b| b.cumulative_count()).collect(),
            count: h.sample_count(),
        }
    }

    /// What was observed since `before`; `None` when the histogram was reset or re-bucketed.
    fn since(&self, before: &Buckets) -> Option<Buckets> {
        if before.bounds != self.bounds || before.count > self.count {
            return None;
        }
        let cumulative = self
            .cumulative
            .iter()
            .zip(&before.cumulative)
            .map(|(now, then)| now.checked_sub(*then))
            .collect::<Option<Vec<u64>>>()?;
        Some(Buckets {
            bounds: self.bounds.clone(),
            cumulative,
            count: self.count - before.count,
        })
    }

    /// Adds `other` in; histograms with other bounds are left out rather than mixed up.
    fn merge(&mut self, other: &Buckets) {
        if self.bounds.is_empty() && self.count == 0 {
            *self = other.clone();
        } else if self.bounds == other.bounds {
            for (a, b) in self.cumulative.iter_mut().zip(&other.cumulative) {
                *a += b;
            }
            self.count += other.count;
        }
    }

    /// The `q` quantile (0 < q ≤ 1), interpolated linearly inside its bucket the way
    /// Prometheus's `histogram_quantile` does: the first bucket starts at 0, and a rank above
    /// the last finite bound answers that bound. `None` without observations.
    fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || self.bounds.is_empty() {
            return None;
        }
        let rank = q * self.count as f64;
        let (mut lower, mut below) = (0.0, 0u64);
        for (&upper, &cum) in self.bounds.iter().zip(&self.cumulative) {
            if cum as f64 >= rank && cum > below {
                let within = (rank - below as f64) / (cum - below) as f64;
                return Some(lower + (upper - lower) * within);
            }
            lower = upper;
            below = cum;
        }
        Some(lower)
    }
}

// === impl Sampling ===

/// One pass over the gathered families: reads raw values, computes their increase since the
/// previous sample and adds it up per series key.
struct Sampling<'a> {
    prev: Option<&'a Raw>,
    next: Raw,
    /// Increase of each rate series over the interval.
    deltas: BTreeMap<String, f64>,
    /// Histogram increase over the interval, by key prefix (`listener/x`, `pool/p`, ...).
    latency: BTreeMap<String, Buckets>,
    gauges: Vec<(String, f64)>,
}

impl<'a> Sampling<'a> {
    fn new(prev: Option<&'a Raw>, now_ms: u64) -> Self {
        Sampling {
            prev,
            next: Raw {
                at_ms: now_ms,
                ..Raw::default()
            },
            deltas: BTreeMap::new(),
            latency: BTreeMap::new(),
            gauges: Vec::new(),
        }
    }

    fn family(&mut self, family: &MetricFamily) {
        let name = family.name();
        for m in &family.metric {
            match name {
                "meridian_lb_requests_total" => {
                    let [listener, status] = labels(m, ["listener", "status"]);
                    let d = self.counter(name, &[listener, status], m.counter.value());
                    let error = if status.starts_with('5') { d } else { 0.0 };
                    self.add(format!("listener/{listener}/rps"), d);
                    self.add(format!("listener/{listener}/errors"), error);
                }
                "meridian_lb_bytes_total" => {
                    let [listener, direction] = labels(m, ["listener", "direction"]);
                    let d = self.counter(name, &[listener, direction], m.counter.value());
                    if matches!(direction, "in" | "out") {
                        self.add(format!("listener/{listener}/{direction}"), d);
                    }
                }
                "meridian_lb_request_duration_seconds" => {
                    let [listener] = labels(m, ["listener"]);
                    self.histogram(name, &[listener], &m.histogram, &[listener_key(listener)]);
                }
                "meridian_lb_connections_active" => {
                    let [listener] = labels(m, ["listener"]);
                    let prefix = listener_key(listener);
                    self.gauges
                        .push((format!("{prefix}/conns"), m.gauge.value()));
                    // A listener that answered nothing yet still charts 0 req/s.
                    self.add(format!("{prefix}/rps"), 0.0);
                    self.add(format!("{prefix}/errors"), 0.0);
                }
                "meridian_lb_member_requests_total" => {
                    let [pool, member, class] = labels(m, ["pool", "member", "class"]);
                    let value = m.counter.value();
                    let d = self.counter(name, &[pool, member, class], value);
                    let error = if class == "5xx" { d } else { 0.0 };
                    let counters = self.member(pool, member);
                    if let Some(i) = class_index(class) {
                        counters.by_class[i] = value as u64;
                    }
                    counters.requests_total += value as u64;
                    for prefix in [pool_key(pool), member_key(pool, member)] {
                        self.add(format!("{prefix}/rps"), d);
                        self.add(format!("{prefix}/errors"), error);
                    }
                }
                "meridian_lb_member_connect_failures_total" => {
                    let [pool, member] = labels(m, ["pool", "member"]);
                    let value = m.counter.value();
                    let d = self.counter(name, &[pool, member], value);
                    self.member(pool, member).connect_failures = value as u64;
                    self.add(format!("{}/errors", pool_key(pool)), d);
                    self.add(format!("{}/errors", member_key(pool, member)), d);
                }
                "meridian_lb_member_duration_seconds" => {
                    let [pool, member] = labels(m, ["pool", "member"]);
                    let lifetime = Buckets::from_proto(&m.histogram);
                    let counters = self.member(pool, member);
                    counters.p50 = lifetime.quantile(0.5);
                    counters.p99 = lifetime.quantile(0.99);
                    let keys = [pool_key(pool), member_key(pool, member)];
                    self.histogram(name, &[pool, member], &m.histogram, &keys);
                }
                "meridian_lb_member_active_requests" => {
                    let [pool, member] = labels(m, ["pool", "member"]);
                    let active = m.gauge.value();
                    self.member(pool, member).active = active.max(0.0) as u64;
                    let key = format!("{}/active", member_key(pool, member));
                    self.gauges.push((key, active));
                }
                "meridian_lb_rate_limit_total" => {
                    let [route, outcome] = labels(m, ["route", "outcome"]);
                    let d = self.counter(name, &[route, outcome], m.counter.value());
                    self.add(format!("limit/{route}/{outcome}"), d);
                }
                "meridian_lb_compression_bytes_total" => {
                    let [codec, direction] = labels(m, ["codec", "direction"]);
                    let d = self.counter(name, &[codec, direction], m.counter.value());
                    self.add(format!("compression/{codec}/{direction}"), d);
                }
                "meridian_dns_queries_total" => {
                    let [rcode, transport] = labels(m, ["rcode", "transport"]);
                    let d = self.counter(name, &[rcode, transport], m.counter.value());
                    self.add(format!("dns/{rcode}/qps"), d);
                    self.add("dns/all/qps".to_string(), d);
                }
                // Not a family the charts show: skip all its series.
                _ => break,
            }
        }
    }

    /// Records a counter's value; returns its increase since the previous sample, 0 for a
    /// counter that went down (a series removed and created again starts over).
    fn counter(&mut self, family: &str, labels: &[&str], value: f64) -> f64 {
        let id = raw_id(family, labels);
        let before = self
            .prev
            .map(|p| p.counters.get(&id).copied().unwrap_or(0.0));
        self.next.counters.insert(id, value);
        match before {
            Some(before) if value >= before => value - before,
            _ => 0.0,
        }
    }

    /// Records a histogram and adds its increase to the latency of every key prefix.
    fn histogram(&mut self, family: &str, labels: &[&str], h: &proto::Histogram, keys: &[String]) {
        let id = raw_id(family, labels);
        let now = Buckets::from_proto(h);
        let increase = self.prev.and_then(|p| match p.histograms.get(&id) {
            Some(before) => now.since(before),
            // New since the previous sample: all it holds arrived in this interval.
            None => Some(now.clone()),
        });
        if let Some(increase) = increase {
            for key in keys {
                self.latency
                    .entry(key.clone())
                    .or_default()
                    .merge(&increase);
            }
        }
        self.next.histograms.insert(id, now);
    }

    fn add(&mut self, key: String, delta: f64) {
        *self.deltas.entry(key).or_default() += delta;
    }

    fn member(&mut self, pool: &str, member: &str) -> &mut MemberCounters {
        self.next
            .members
            .entry((pool.to_string(), member.to_string()))
            .or_default()
    }

    /// The raw values to keep and the points of this sample.
    fn finish(mut self, elapsed_s: Option<f64>) -> (Raw, Vec<(String, f64)>) {
        let mut points = std::mem::take(&mut self.gauges);
        if let Some(elapsed_s) = elapsed_s.filter(|_| self.prev.is_some()) {
            // The node always answers DNS: its chart shows 0 rather than "no data".
            self.deltas.entry("dns/all/qps".to_string()).or_default();
            for (key, delta) in self.deltas {
                points.push((key, delta / elapsed_s));
            }
            for (prefix, buckets) in &self.latency {
                if let (Some(p50), Some(p99)) = (buckets.quantile(0.5), buckets.quantile(0.99)) {
                    points.push((format!("{prefix}/p50"), p50));
                    points.push((format!("{prefix}/p99"), p99));
                }
            }
        }
        (self.next, points)
    }
}

fn listener_key(listener: &str) -> String {
    format!("listener/{listener}")
}

fn pool_key(pool: &str) -> String {
    format!("pool/{pool}")
}

fn member_key(pool: &str, member: &str) -> String {
    format!("member/{pool}/{member}")
}

fn raw_id(family: &str, labels: &[&str]) -> String {
    let mut id = family.to_string();
    for l in labels {
        id.push('\u{1f}');
        id.push_str(l);
    }
    id
}

/// The values of the labels `names` of `m`, `""` for a missing one.
fn labels<'m, const N: usize>(m: &'m proto::Metric, names: [&str; N]) -> [&'m str; N] {
    names.map(|n| {
        m.label
            .iter()
            .find(|l| l.name() == n)
            .map_or("", |l| l.value())
    })
}

fn class_index(class: &str) -> Option<usize> {
    ["1xx", "2xx", "3xx", "4xx", "5xx"]
        .iter()
        .position(|c| *c == class)
}

#[cfg(test)]
#[path = "history_tests.rs"]
mod tests;
