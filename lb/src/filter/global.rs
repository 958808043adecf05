//! Cluster-wide rate limits: a limit marked `global` holds across every appliance, each
//! enforcing a share of it.
//!
//! Every node runs GCRA per key like a local limit, but at `rate × share` with a burst of
//! `burst × share` (at least one request). Every [`TICK`] a node measures each key's demand
//! (requests that arrived, admitted or not, smoothed) and gossips the busiest keys' demand to
//! the other members; a key's share on a node is its local demand over the cluster's demand for
//! it. A key only one node sees gets the whole rate there; a key several nodes see is split by
//! where its requests arrive, and the split follows the load as it shifts. A key that is new on
//! this node while others report it starts with an equal part until its demand is measured.
//!
//! The error: between reports each node enforces the shares of the last one, so the cluster
//! admits the configured rate plus what demand shifted within about two ticks; a node that stops
//! reporting drops out after [`STALE`].

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use model::{RateLimitSpec, RatePer};

/// How often demand is measured and reported.
pub const TICK: Duration = Duration::from_millis(200);
/// Reports older than this no longer count.
const STALE: Duration = Duration::from_secs(1);
/// Keys reported per limit per tick, busiest first.
const REPORTED_KEYS: usize = 1000;
/// Keys kept per limit; idle ones go first.
const MAX_KEYS: usize = 100_000;

struct KeyState {
    /// GCRA's theoretical arrival time, in ns since `epoch`.
    tat: f64,
    /// Requests since the last tick.
    seen: u32,
    /// Local demand, requests per second, smoothed.
    rate: f64,
    share: f64,
    /// `(node, demand, when reported)`.
    remotes: Vec<(u64, f64, Instant)>,
}

impl KeyState {
    fn new() -> KeyState {
        KeyState {
            tat: 0.0,
            seen: 0,
            rate: 0.0,
            share: 1.0,
            remotes: Vec::new(),
        }
    }

    fn fresh_remotes(&self, now: Instant) -> impl Iterator<Item = f64> + '_ {
        self.remotes
            .iter()
            .filter(move |(_, _, at)| now.duration_since(*at) < STALE)
            .map(|(_, r, _)| *r)
    }
}

/// The per-node state of one global limit.
pub struct GlobalLimit {
    /// Names the limit between nodes: the route and its rate, so nodes agree on what they
    /// share (during a config change, reports for the old limit are ignored).
    pub id: String,
    /// Nanoseconds between requests at the whole rate.
    interval: f64,
    burst: f64,
    epoch: Instant,
    keys: Mutex<HashMap<u64, KeyState>>,
    last_tick: Mutex<Instant>,
}

/// What GCRA decided for one request.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Admitted after waiting this long (zero: at once); the slot is reserved.
    Admit(Duration),
    /// Refused; the key has room again after this long.
    Refuse(Duration),
}

impl GlobalLimit {
    pub fn new(route: &str, spec: &RateLimitSpec) -> GlobalLimit {
        let per = match spec.per {
            RatePer::Second => 1e9,
            RatePer::Minute => 60e9,
            RatePer::Hour => 3600e9,
        };
        let requests = f64::from(spec.requests.max(1));
        let burst = f64::from(spec.burst.unwrap_or(spec.requests).max(1));
        let now = Instant::now();
        GlobalLimit {
            id: format!(
                "{route}:{}/{:?}:{}:{:?}",
                spec.requests, spec.per, burst, spec.key
            ),
            interval: per / requests,
            burst,
            // Far enough back that `now - epoch` never underflows an early TAT.
            epoch: now.checked_sub(Duration::from_secs(1)).unwrap_or(now),
            keys: Mutex::new(HashMap::new()),
            last_tick: Mutex::new(now),
        }
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, HashMap<u64, KeyState>> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// GCRA at this node's share of the key's rate; a request waits up to `max_wait` for its
    /// slot (zero: refused when over).
    pub fn check(&self, key: u64, now: Instant, max_wait: Duration) -> Decision {
        let t = now.duration_since(self.epoch).as_nanos() as f64;
        let mut keys = self.keys();
        if keys.len() >= MAX_KEYS && !keys.contains_key(&key) {
            keys.retain(|_, k| k.tat > t || k.rate > 0.01);
        }
        let k = keys.entry(key).or_insert_with(KeyState::new);
        k.seen = k.seen.saturating_add(1);
        if k.rate == 0.0 {
            // New here: an equal part with the nodes that report it, until measured.
            let others = k.fresh_remotes(now).count();
            k.share = 1.0 / (1 + others) as f64;
        }
        let interval = self.interval / k.share.max(1e-3);
        let tolerance = interval * ((self.burst * k.share).max(1.0) - 1.0);
        let start = k.tat.max(t);
        let wait = start - t - tolerance;
        if wait <= 0.0 {
            k.tat = start + interval;
            return Decision::Admit(Duration::ZERO);
        }
        let wait = Duration::from_nanos(wait as u64);
        if wait <= max_wait {
            k.tat = start + interval;
            Decision::Admit(wait)
        } else {
            Decision::Refuse(wait)
        }
    }

    /// Measures demand since the last tick, updates each key's share from the reports, drops
    /// idle keys, and answers the busiest keys' demand for the other nodes.
    pub fn tick(&self, now: Instant) -> Vec<(u64, f32)> {
        let dt = {
            let mut last = self
                .last_tick
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let dt = now.duration_since(*last).as_secs_f64();
            *last = now;
            dt.max(1e-3)
        };
        let t = now.duration_since(self.epoch).as_nanos() as f64;
        let mut keys = self.keys();
        let mut report = Vec::new();
        keys.retain(|key, k| {
            let measured = f64::from(k.seen) / dt;
            k.seen = 0;
            k.rate = if k.rate == 0.0 {
                measured
            } else {
                0.5 * k.rate + 0.5 * measured
            };
            if k.rate < 0.01 {
                k.rate = 0.0;
            }
            k.remotes
                .retain(|(_, _, at)| now.duration_since(*at) < STALE);
            let remote: f64 = k.fresh_remotes(now).sum();
            k.share = if k.rate > 0.0 {
                k.rate / (k.rate + remote)
            } else {
                1.0 / (1 + k.remotes.len()) as f64
            };
            if k.rate > 0.0 {
                report.push((*key, k.rate as f32));
            }
            k.rate > 0.0 || !k.remotes.is_empty() || k.tat > t
        });
        report.sort_by(|a, b| b.1.total_cmp(&a.1));
        report.truncate(REPORTED_KEYS);
        report
    }

    /// Takes another node's report.
    pub fn merge(&self, from: u64, report: &[(u64, f32)], now: Instant) {
        let mut keys = self.keys();
        for &(key, rate) in report {
            if !rate.is_finite() || rate < 0.0 {
                continue;
            }
            if keys.len() >= MAX_KEYS && !keys.contains_key(&key) {
                continue;
            }
            let k = keys.entry(key).or_insert_with(KeyState::new);
            match k.remotes.iter_mut().find(|(n, _, _)| *n == from) {
                Some(r) => *r = (from, f64::from(rate), now),
                None => k.remotes.push((from, f64::from(rate), now)),
            }
        }
    }

    /// This node's share of `key` (1 when it is the only one that sees it).
    #[cfg(test)]
    pub fn share(&self, key: u64) -> f64 {
        self.keys().get(&key).map_or(1.0, |k| k.share)
    }
}

#[cfg(test)]
#[path = "global_tests.rs"]
mod tests;
