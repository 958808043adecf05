//! Member selection. A pool's schedule is built once per revision; each request asks it for an
//! iterator of candidates, and a retry is simply the iterator's next item: the next healthy
//! member not tried yet (the pingora-load-balancing shape).

use std::sync::atomic::{AtomicUsize, Ordering};

/// The smooth weighted round-robin order of a pool, with its cursor.
#[derive(Debug)]
pub struct Schedule {
    /// Member indexes in smooth weighted round-robin order.
    order: Vec<usize>,
    cursor: AtomicUsize,
}

/// Retries are few; a small inline list of tried members avoids a per-request allocation.
const MAX_TRIED: usize = 16;

impl Schedule {
    pub fn new(weights: &[u32]) -> Schedule {
        Schedule {
            order: smooth_wrr_schedule(weights),
            cursor: AtomicUsize::new(0),
        }
    }

    /// Candidates for one request, starting at the next position of the shared cursor.
    /// `eligible(i)` says whether member `i` may take traffic now (health, admin state).
    pub fn candidates<F: Fn(usize) -> bool>(&self, eligible: F) -> Candidates<'_, F> {
        let start = if self.order.is_empty() {
            0
        } else {
            self.cursor.fetch_add(1, Ordering::Relaxed)
        };
        Candidates {
            schedule: self,
            start,
            step: 0,
            tried: [usize::MAX; MAX_TRIED],
            tried_len: 0,
            eligible,
        }
    }
}

/// The members one request may go to, in order; each is yielded at most once.
pub struct Candidates<'a, F> {
    schedule: &'a Schedule,
    start: usize,
    step: usize,
    tried: [usize; MAX_TRIED],
    tried_len: usize,
    eligible: F,
}

impl<F: Fn(usize) -> bool> Iterator for Candidates<'_, F> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let order = &self.schedule.order;
        if self.tried_len == MAX_TRIED {
            return None;
        }
        while self.step < order.len() {
            let i = order[(self.start.wrapping_add(self.step)) % order.len()];
            self.step += 1;
            if self.tried[..self.tried_len].contains(&i) || !(self.eligible)(i) {
                continue;
            }
            self.tried[self.tried_len] = i;
            self.tried_len += 1;
            return Some(i);
        }
        None
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

    #[test]
    fn schedule_is_smooth_and_bounded() {
        assert_eq!(smooth_wrr_schedule(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(smooth_wrr_schedule(&[2, 2]), vec![0, 1]);
        assert!(smooth_wrr_schedule(&[1000; 100]).len() <= 4096);
        let big = smooth_wrr_schedule(&[1000, 1, 999, 7]);
        assert!(big.len() <= 4096 + 4 && big.contains(&1) && big.contains(&3));
        assert!(smooth_wrr_schedule(&[]).is_empty());
    }

    #[test]
    fn candidates_follow_weights_then_yield_each_other_member_once() {
        let s = Schedule::new(&[3, 1]);
        let mut firsts = [0; 2];
        for _ in 0..400 {
            let first = s.candidates(|_| true).next().expect("a member");
            firsts[first] += 1;
        }
        assert_eq!(firsts, [300, 100]);
        // A retry walks on to the other member and then stops: nobody is tried twice.
        let all: Vec<usize> = s.candidates(|_| true).collect();
        assert_eq!(all.len(), 2);
        assert!(all.contains(&0) && all.contains(&1));
    }

    #[test]
    fn ineligible_members_are_skipped_and_an_empty_pool_yields_nothing() {
        let s = Schedule::new(&[1, 1, 1]);
        for _ in 0..10 {
            let got: Vec<usize> = s.candidates(|i| i != 1).collect();
            assert_eq!(got.len(), 2);
            assert!(!got.contains(&1));
        }
        assert_eq!(s.candidates(|_| false).next(), None);
        assert_eq!(Schedule::new(&[]).candidates(|_| true).next(), None);
    }
}
