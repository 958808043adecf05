//! Bandwidth shaping of a listener's connections: token buckets per connection and per
//! listener, each direction on its own. A bucket holds at most 20 ms of its rate (never less
//! than 4 KB), so a shaped flow moves in small, regular steps instead of bursts; a read or a
//! write that finds no tokens waits on a timer for the next ones.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// The smallest step a bucket allows, so that a low rate still moves whole packets.
const MIN_BURST: f64 = 4096.0;
/// A bucket holds this much time's worth of its rate.
const BURST_TIME: f64 = 0.020;

/// One token bucket of bytes.
#[derive(Debug)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub fn new(bytes_per_second: u64) -> Bucket {
        let rate = bytes_per_second as f64;
        let burst = (rate * BURST_TIME).max(MIN_BURST);
        Bucket {
            rate,
            burst,
            tokens: burst,
            at: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
    }

    /// Whole bytes available now.
    fn available(&mut self, now: Instant) -> usize {
        self.refill(now);
        self.tokens.max(0.0) as usize
    }

    fn take(&mut self, n: usize) {
        self.tokens -= n as f64;
    }

    /// How long until `n` bytes (at most a burst) are available.
    fn wait_for(&self, n: usize) -> Duration {
        let need = (n as f64).min(self.burst) - self.tokens;
        Duration::from_secs_f64((need / self.rate).max(0.001))
    }
}

/// The listener-wide buckets, `[in, out]`, shared by its connections.
#[derive(Debug)]
pub struct ListenerBuckets(Mutex<[Option<Bucket>; 2]>);

impl ListenerBuckets {
    pub fn new(bytes_per_second: u64) -> ListenerBuckets {
        ListenerBuckets(Mutex::new([
            Some(Bucket::new(bytes_per_second)),
            Some(Bucket::new(bytes_per_second)),
        ]))
    }
}

/// What a listener's connections are shaped by.
#[derive(Debug, Clone)]
pub struct Shaping {
    pub per_connection: Option<u64>,
    pub listener: Option<Arc<ListenerBuckets>>,
}

/// Direction of a transfer: what the client sends (`In`) or receives (`Out`).
#[derive(Debug, Clone, Copy)]
pub enum Dir {
    In = 0,
    Out = 1,
}

/// One connection's shaper.
pub struct Shaper {
    conn: [Option<Bucket>; 2],
    listener: Option<Arc<ListenerBuckets>>,
    timers: [Option<std::pin::Pin<Box<tokio::time::Sleep>>>; 2],
}

impl Shaper {
    pub fn new(s: &Shaping) -> Shaper {
        Shaper {
            conn: [
                s.per_connection.map(Bucket::new),
                s.per_connection.map(Bucket::new),
            ],
            listener: s.listener.clone(),
            timers: [None, None],
        }
    }

    /// Gives back `n` granted bytes that did not move (a short read or write).
    pub fn refund(&mut self, d: Dir, n: usize) {
        let i = d as usize;
        if n == 0 {
            return;
        }
        if let Some(b) = &mut self.conn[i] {
            b.tokens = (b.tokens + n as f64).min(b.burst);
        }
        if let Some(l) = &self.listener {
            let mut g = l.0.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(b) = g[i].as_mut() {
                b.tokens = (b.tokens + n as f64).min(b.burst);
            }
        }
    }

    /// How many of `want` bytes may move now in direction `d`; `Pending` (with a timer armed
    /// to wake `cx`) when none may.
    pub fn grant(
        &mut self,
        d: Dir,
        want: usize,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<usize> {
        use std::future::Future;
        let i = d as usize;
        if want == 0 {
            return std::task::Poll::Ready(0);
        }
        let now = Instant::now();
        let mut allowed = want;
        let mut wait = Duration::ZERO;
        if let Some(b) = &mut self.conn[i] {
            let a = b.available(now);
            if a == 0 {
                wait = wait.max(b.wait_for(want));
            }
            allowed = allowed.min(a);
        }
        let mut shared = self
            .listener
            .as_ref()
            .map(|l| l.0.lock().unwrap_or_else(PoisonError::into_inner));
        if let Some(b) = shared.as_mut().and_then(|g| g[i].as_mut()) {
            let a = b.available(now);
            if a == 0 {
                wait = wait.max(b.wait_for(want));
            }
            allowed = allowed.min(a);
        }
        if allowed > 0 {
            if let Some(b) = &mut self.conn[i] {
                b.take(allowed);
            }
            if let Some(b) = shared.as_mut().and_then(|g| g[i].as_mut()) {
                b.take(allowed);
            }
            self.timers[i] = None;
            return std::task::Poll::Ready(allowed);
        }
        drop(shared);
        let deadline = now + wait;
        let timer =
            self.timers[i].get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        timer.as_mut().reset(deadline);
        if timer.as_mut().poll(cx).is_ready() {
            // The deadline is already behind us: try again at once.
            cx.waker().wake_by_ref();
        }
        std::task::Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_bucket_allows_its_rate_in_small_steps() {
        let mut b = Bucket::new(100_000);
        // At most 20 ms of the rate at once (2,000 bytes, raised to the 4 KB floor).
        assert_eq!(b.available(Instant::now()), 4096);
        b.take(4096);
        assert_eq!(b.available(Instant::now()), 0);
        assert!(b.wait_for(1000) >= Duration::from_millis(9));
        tokio::time::advance(Duration::from_millis(10)).await;
        assert_eq!(b.available(Instant::now()), 1000);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.available(Instant::now()), 4096, "never more than a burst");
    }

    #[tokio::test(start_paused = true)]
    async fn a_shaped_transfer_takes_as_long_as_its_rate_says() {
        let mut s = Shaper::new(&Shaping {
            per_connection: Some(1_000_000),
            listener: Some(Arc::new(ListenerBuckets::new(500_000))),
        });
        let start = Instant::now();
        let mut moved = 0usize;
        while moved < 1_000_000 {
            let n = std::future::poll_fn(|cx| s.grant(Dir::Out, 64 * 1024, cx)).await;
            moved += n;
        }
        // 1 MB at the listener's 500 KB/s: about 2 s, less the first bucket.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(1900), "{took:?}");
        assert!(took <= Duration::from_millis(2100), "{took:?}");
    }
}
