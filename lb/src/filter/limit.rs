//! Rate-shaping and access rules of a route: a request-rate limit (GCRA, through governor's
//! keyed limiter) per client address, client network, header, cookie or for the whole route,
//! a concurrency limit per key, client network allow and deny lists, and a method allow list.
//!
//! Keys are hashed (64-bit, seeded per limit) so a request allocates nothing to be counted.
//! The limiter's state outlives config revisions while the route's limit stays the same
//! ([`LimitRegistry`]), so applying an unrelated change never hands everyone a fresh burst.
//! Requests without the header or cookie a limit counts by are not limited (as nginx's
//! `limit_req` with an empty key). The key table is bounded: at `MAX_KEYS` keys idle ones are
//! dropped, and while that is not enough requests share one overflow budget.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use model::{Access, OverLimit, RateKey, RateLimitSpec, RatePer};

use crate::body::{self, Body};

/// Keys tracked per limit before idle ones are dropped.
const MAX_KEYS: usize = 100_000;
/// The key every new client shares while the table is full.
const OVERFLOW_KEY: u64 = 0;

/// What one limit keeps across revisions.
pub struct LimitState {
    limiter: DefaultKeyedRateLimiter<u64>,
    clock: DefaultClock,
    seed: KeyHasher,
    /// A limit across the cluster: its GCRA replaces governor's.
    global: Option<super::global::GlobalLimit>,
    /// In-flight requests per key, for `max_concurrent`.
    in_flight: Mutex<HashMap<u64, u32>>,
    checks: AtomicU64,
}

/// Hashes keys: seeded per process for local limits (nothing to predict), the same on every
/// node for global ones (their keys are compared between nodes).
enum KeyHasher {
    Random(std::hash::RandomState),
    Stable,
}

impl KeyHasher {
    fn hash_one<T: std::hash::Hash>(&self, v: T) -> u64 {
        match self {
            KeyHasher::Random(s) => s.hash_one(v),
            KeyHasher::Stable => {
                std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default().hash_one(v)
            }
        }
    }
}

/// Shared values by key, alive while some snapshot holds them: a revision that keeps the key
/// gets the same value; keys no snapshot holds any more are forgotten.
struct Shared<K, V>(Mutex<HashMap<K, Weak<V>>>);

impl<K: std::hash::Hash + Eq, V> Default for Shared<K, V> {
    fn default() -> Self {
        Shared(Mutex::new(HashMap::new()))
    }
}

impl<K: std::hash::Hash + Eq, V> Shared<K, V> {
    fn get_or(&self, key: K, make: impl FnOnce() -> V) -> Arc<V> {
        let mut m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        m.retain(|_, w| w.strong_count() > 0);
        if let Some(v) = m.get(&key).and_then(Weak::upgrade) {
            return v;
        }
        let v = Arc::new(make());
        m.insert(key, Arc::downgrade(&v));
        v
    }
}

/// Hands out the state of each route's limit (the same while the limit is unchanged), each
/// pool's in-flight counter and each listener's bandwidth buckets (the same while the rate is).
#[derive(Default)]
pub struct LimitRegistry {
    states: Shared<(String, RateLimitSpec), LimitState>,
    pools: Shared<String, AtomicU32>,
    listeners: Shared<(String, u64), crate::listener::shape::ListenerBuckets>,
}

/// Holds one of a pool's in-flight slots; released on drop.
pub struct PoolSlot(Arc<AtomicU32>);

impl Drop for PoolSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Takes a slot of `counter` if fewer than `max` are taken.
pub fn pool_slot(max: u32, counter: &Arc<AtomicU32>) -> Option<PoolSlot> {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| PoolSlot(counter.clone()))
}

impl LimitRegistry {
    pub fn listener_buckets(
        &self,
        listener: &str,
        bytes_per_second: u64,
    ) -> Arc<crate::listener::shape::ListenerBuckets> {
        self.listeners
            .get_or((listener.to_string(), bytes_per_second), || {
                crate::listener::shape::ListenerBuckets::new(bytes_per_second)
            })
    }

    pub fn pool_counter(&self, pool: &str) -> Arc<AtomicU32> {
        self.pools.get_or(pool.to_string(), || AtomicU32::new(0))
    }

    pub fn state(&self, route: &str, spec: &RateLimitSpec) -> Arc<LimitState> {
        self.states.get_or((route.to_string(), spec.clone()), || {
            LimitState::new(route, spec)
        })
    }

    /// The global limits some snapshot holds.
    pub fn globals(&self) -> Vec<Arc<LimitState>> {
        let m = self.states.0.lock().unwrap_or_else(PoisonError::into_inner);
        m.values()
            .filter_map(Weak::upgrade)
            .filter(|s| s.global.is_some())
            .collect()
    }

    /// Measures every global limit's demand and says it for the other nodes:
    /// `{"limits": [{"id": ..., "keys": [[key, requests per second], ...]}]}`, or `None`
    /// without global limits.
    pub fn global_report(&self) -> Option<serde_json::Value> {
        let now = std::time::Instant::now();
        let limits: Vec<serde_json::Value> = self
            .globals()
            .iter()
            .filter_map(|s| s.global.as_ref())
            .map(|g| serde_json::json!({ "id": g.id, "keys": g.tick(now) }))
            .collect();
        (!limits.is_empty()).then(|| serde_json::json!({ "limits": limits }))
    }

    /// Takes node `from`'s report; limits this node does not have (or has with another rate)
    /// are ignored, as is anything malformed.
    pub fn global_merge(&self, from: u64, report: &serde_json::Value) {
        #[derive(serde::Deserialize)]
        struct Report {
            limits: Vec<Entry>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            id: String,
            keys: Vec<(u64, f32)>,
        }
        let Ok(report) = serde_json::from_value::<Report>(report.clone()) else {
            return;
        };
        let now = std::time::Instant::now();
        let globals = self.globals();
        for e in report.limits {
            if let Some(g) = globals
                .iter()
                .filter_map(|s| s.global.as_ref())
                .find(|g| g.id == e.id)
            {
                g.merge(from, &e.keys, now);
            }
        }
    }
}

impl LimitState {
    fn new(route: &str, spec: &RateLimitSpec) -> LimitState {
        let n = NonZeroU32::new(spec.requests).unwrap_or(NonZeroU32::MIN);
        let quota = match spec.per {
            RatePer::Second => Quota::per_second(n),
            RatePer::Minute => Quota::per_minute(n),
            RatePer::Hour => Quota::per_hour(n),
        };
        let burst = spec.burst.and_then(NonZeroU32::new).unwrap_or(n);
        LimitState {
            limiter: RateLimiter::keyed(quota.allow_burst(burst)),
            clock: DefaultClock::default(),
            seed: if spec.global {
                KeyHasher::Stable
            } else {
                KeyHasher::Random(std::hash::RandomState::new())
            },
            global: spec
                .global
                .then(|| super::global::GlobalLimit::new(route, spec)),
            in_flight: Mutex::new(HashMap::new()),
            checks: AtomicU64::new(0),
        }
    }
}

/// A route's compiled limit.
pub struct RateLimit {
    state: Arc<LimitState>,
    key: RateKey,
    delay: Option<Duration>,
    max_concurrent: Option<u32>,
    /// `[admitted, delayed, rejected]`.
    metrics: [prometheus::IntCounter; 3],
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit").field("key", &self.key).finish()
    }
}

/// Why a request was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Over the rate: retry after this long.
    Rate(Duration),
    /// Too many requests of this key in flight.
    Concurrency,
}

/// Holds a slot of the key's concurrency while the request is in flight.
pub struct Slot {
    state: Arc<LimitState>,
    key: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self
            .state
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = m.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

impl RateLimit {
    pub fn compile(
        spec: &RateLimitSpec,
        state: Arc<LimitState>,
        metrics: [prometheus::IntCounter; 3],
    ) -> RateLimit {
        RateLimit {
            state,
            key: spec.key.clone(),
            delay: (spec.over_limit == OverLimit::Delay)
                .then(|| Duration::from_millis(spec.max_delay_ms)),
            max_concurrent: spec.max_concurrent,
            metrics,
        }
    }

    /// The request's key, hashed; `None` when it carries nothing to count by. An IPv4-mapped
    /// IPv6 client counts as the IPv4 client it is.
    pub fn key(&self, client: IpAddr, headers: &HeaderMap) -> Option<u64> {
        let seed = &self.state.seed;
        match &self.key {
            RateKey::ClientIp => Some(seed.hash_one(client.to_canonical())),
            RateKey::Subnet {
                ipv4_prefix,
                ipv6_prefix,
            } => Some(seed.hash_one(match client.to_canonical() {
                IpAddr::V4(v4) => {
                    let mask = u32::MAX
                        .checked_shl(32 - u32::from(*ipv4_prefix))
                        .unwrap_or(0);
                    (u128::from(u32::from(v4) & mask), *ipv4_prefix)
                }
                IpAddr::V6(v6) => {
                    let mask = u128::MAX
                        .checked_shl(128 - u32::from(*ipv6_prefix))
                        .unwrap_or(0);
                    (u128::from(v6) & mask, 128 + *ipv6_prefix)
                }
            })),
            RateKey::Header { name } => headers
                .get(name.as_str())
                .map(|v| seed.hash_one(v.as_bytes())),
            RateKey::Cookie { name } => cookie(headers, name).map(|v| seed.hash_one(v)),
            RateKey::Route => Some(seed.hash_one(1u8)),
        }
    }

    /// Admits the request, waits for it to fit (delay mode, up to the limit's delay), or
    /// refuses it. The slot, when there is a concurrency limit, is held until dropped.
    pub async fn admit(
        &self,
        client: IpAddr,
        headers: &HeaderMap,
    ) -> Result<Option<Slot>, Refusal> {
        let Some(mut key) = self.key(client, headers) else {
            self.metrics[0].inc();
            return Ok(None);
        };
        let st = &self.state;
        let waited = match &st.global {
            Some(g) => self.wait_global(g, key).await?,
            None => {
                key = self.bounded_key(key);
                self.wait_local(key).await?
            }
        };
        let slot = match self.max_concurrent {
            None => None,
            Some(max) => {
                let mut m = st.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
                let n = m.entry(key).or_insert(0);
                if *n >= max {
                    drop(m);
                    self.metrics[2].inc();
                    return Err(Refusal::Concurrency);
                }
                *n += 1;
                Some(Slot {
                    state: st.clone(),
                    key,
                })
            }
        };
        self.metrics[if waited.is_zero() { 0 } else { 1 }].inc();
        Ok(slot)
    }
}

impl RateLimit {
    /// `key`, or the overflow key while the local limiter's table is full (idle keys are
    /// dropped at most every 1024th check): requests then share one budget rather than grow it.
    fn bounded_key(&self, key: u64) -> u64 {
        let st = &self.state;
        if st.limiter.len() < MAX_KEYS {
            return key;
        }
        if st
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(1024)
        {
            st.limiter.retain_recent();
            st.limiter.shrink_to_fit();
        }
        if st.limiter.len() >= MAX_KEYS {
            OVERFLOW_KEY
        } else {
            key
        }
    }

    /// governor's GCRA on this node: how long the request waited for its slot, or the refusal.
    async fn wait_local(&self, key: u64) -> Result<Duration, Refusal> {
        let st = &self.state;
        let mut waited = Duration::ZERO;
        loop {
            match st.limiter.check_key(&key) {
                Ok(()) => return Ok(waited),
                Err(not_until) => {
                    let wait = not_until.wait_time_from(st.clock.now());
                    match self.delay {
                        Some(max) if waited + wait <= max => {
                            tokio::time::sleep(wait).await;
                            waited += wait;
                        }
                        _ => {
                            self.metrics[2].inc();
                            return Err(Refusal::Rate(wait));
                        }
                    }
                }
            }
        }
    }

    /// This node's share of a global limit: the slot is reserved, then waited for.
    async fn wait_global(
        &self,
        g: &super::global::GlobalLimit,
        key: u64,
    ) -> Result<Duration, Refusal> {
        let max = self.delay.unwrap_or(Duration::ZERO);
        match g.check(key, std::time::Instant::now(), max) {
            super::global::Decision::Admit(wait) => {
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                Ok(wait)
            }
            super::global::Decision::Refuse(wait) => {
                self.metrics[2].inc();
                Err(Refusal::Rate(wait))
            }
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|b| *b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
        })
}

/// The answer to a refused request.
pub fn refused(r: &Refusal) -> Response<Body> {
    let (text, retry) = match r {
        Refusal::Rate(wait) => (
            "429 too many requests: over this route's rate limit\n",
            // Whole seconds, rounded up, at least one.
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
        ),
        Refusal::Concurrency => (
            "429 too many requests: too many requests in flight for this client\n",
            1,
        ),
    };
    let mut resp = Response::new(body::full(text));
    *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let h = resp.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from(retry.max(1)));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A route's access rules, compiled.
#[derive(Debug)]
pub struct AccessRules {
    rules: Access,
    allow_header: Option<HeaderValue>,
    /// `[deny_list, not_allowed, method]`.
    metrics: [prometheus::IntCounter; 3],
}

impl AccessRules {
    pub fn compile(rules: &Access, metrics: [prometheus::IntCounter; 3]) -> AccessRules {
        AccessRules {
            allow_header: (!rules.methods.is_empty())
                .then(|| HeaderValue::from_str(&rules.methods.join(", ")).ok())
                .flatten(),
            rules: rules.clone(),
            metrics,
        }
    }

    /// `None` when the request may go on; otherwise the answer.
    pub fn check(&self, client: IpAddr, method: &Method) -> Option<Response<Body>> {
        let (status, text, counter) = if self.rules.deny.iter().any(|n| n.contains(client)) {
            (StatusCode::FORBIDDEN, "403 forbidden\n", 0)
        } else if !self.rules.allow.is_empty()
            && !self.rules.allow.iter().any(|n| n.contains(client))
        {
            (StatusCode::FORBIDDEN, "403 forbidden\n", 1)
        } else if !self.rules.methods.is_empty()
            && !self.rules.methods.iter().any(|m| m == method.as_str())
        {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                "405 method not allowed on this route\n",
                2,
            )
        } else {
            return None;
        };
        self.metrics[counter].inc();
        let mut resp = Response::new(body::full(text));
        *resp.status_mut() = status;
        if status == StatusCode::METHOD_NOT_ALLOWED {
            if let Some(allow) = &self.allow_header {
                resp.headers_mut().insert(header::ALLOW, allow.clone());
            }
        }
        Some(resp)
    }
}

#[cfg(test)]
#[path = "limit_tests.rs"]
mod tests;
