//! A one-time broadcast (drain, cut-off) that every connection task of a listener waits on.
//!
//! A connection task polls its signal on every wake-up, so polling must be cheap: one atomic
//! load. A waiter registers its waker once (and again only if the task's waker changes), unlike
//! tokio's `Notify`, `watch` and `CancellationToken`, whose pending futures take a mutex shared by
//! all waiters on every poll.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

#[derive(Default)]
struct Inner {
    fired: AtomicBool,
    next: AtomicU64,
    waiters: Mutex<HashMap<u64, Waker>>,
}

impl Inner {
    fn waiters(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waker>> {
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Fires its [`Signal`]s once. Dropping it does not fire them.
pub struct Trigger(Arc<Inner>);

#[derive(Clone)]
pub struct Signal(Arc<Inner>);

pub fn signal() -> (Trigger, Signal) {
    let inner = Arc::new(Inner::default());
    (Trigger(inner.clone()), Signal(inner))
}

impl Trigger {
    pub fn fire(&self) {
        self.0.fired.store(true, Ordering::SeqCst);
        let wakers: Vec<Waker> = self.0.waiters().drain().map(|(_, w)| w).collect();
        for w in wakers {
            w.wake();
        }
    }
}

impl Signal {
    /// Whether the trigger fired already (one atomic load).
    pub fn is_fired(&self) -> bool {
        self.0.fired.load(Ordering::SeqCst)
    }

    /// Resolves once the trigger fired.
    pub fn fired(self) -> Fired {
        Fired {
            inner: self.0,
            key: None,
        }
    }
}

pub struct Fired {
    inner: Arc<Inner>,
    /// The registered waker's key and a copy to compare against.
    key: Option<(u64, Waker)>,
}

impl Future for Fired {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.inner.fired.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        let registered = matches!(&self.key, Some((_, w)) if w.will_wake(cx.waker()));
        if !registered {
            let key = match &self.key {
                Some((k, _)) => *k,
                None => self.inner.next.fetch_add(1, Ordering::Relaxed),
            };
            self.inner.waiters().insert(key, cx.waker().clone());
            self.key = Some((key, cx.waker().clone()));
            // Fired between the first check and the registration: don't miss it.
            if self.inner.fired.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }
}

/// Runs `fut` until it finishes or `signal` fires, whichever comes first; a smaller future than
/// `select!` builds, which matters for the task of every idle connection.
pub fn until<F: Future<Output = ()>>(fut: F, signal: Signal) -> Until<F> {
    Until {
        fut,
        fired: signal.fired(),
    }
}

pin_project_lite::pin_project! {
    pub struct Until<F> {
        #[pin]
        fut: F,
        fired: Fired,
    }
}

impl<F: Future<Output = ()>> Future for Until<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if this.fut.poll(cx).is_ready() {
            return Poll::Ready(());
        }
        Pin::new(this.fired).poll(cx)
    }
}

impl Drop for Fired {
    fn drop(&mut self) {
        if let Some((key, _)) = self.key.take() {
            self.inner.waiters().remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn every_waiter_wakes_once_fired_and_late_waiters_resolve_at_once() {
        let (trigger, signal) = signal();
        let waiters: Vec<_> = (0..3)
            .map(|_| tokio::spawn(signal.clone().fired()))
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(waiters.iter().all(|w| !w.is_finished()));
        trigger.fire();
        for w in waiters {
            tokio::time::timeout(Duration::from_secs(1), w)
                .await
                .expect("woken")
                .expect("task");
        }
        tokio::time::timeout(Duration::from_millis(100), signal.fired())
            .await
            .expect("already fired");
    }

    #[tokio::test]
    async fn dropped_waiters_unregister() {
        let (_trigger, signal) = signal();
        let inner = signal.0.clone();
        let w = tokio::spawn(signal.fired());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(inner.waiters().len(), 1);
        w.abort();
        let _ = w.await;
        assert_eq!(inner.waiters().len(), 0);
    }
}
