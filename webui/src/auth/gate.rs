//! The password gate: every password check goes through it. It bounds how many argon2
//! verifications run at once (each costs tens of milliseconds of CPU), throttles a client address
//! after repeated failures, and spends the same work on unknown users as on known ones so that
//! timing does not reveal which user names exist.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::{hash_password, verify_password};

/// Attempts allowed from one address within [`WINDOW`] without a success before it is
/// throttled.
pub const MAX_FAILURES: u32 = 5;
/// How long failures are remembered, and how long a throttled address waits.
pub const WINDOW: Duration = Duration::from_secs(300);
/// Argon2 verifications running at once; more wait their turn.
const CONCURRENT_VERIFICATIONS: usize = 2;

#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    /// Wrong user or password.
    Wrong,
    /// Too many attempts from this address: retry after this long.
    Throttled(Duration),
    /// Too many verifications queued; the caller should retry shortly.
    Busy,
}

/// How long a check waits for a verification slot before giving up with [`Denied::Busy`].
const QUEUE_WAIT: Duration = Duration::from_secs(5);

pub struct PasswordGate {
    permits: Semaphore,
    /// Attempts (not only failures) per address since the first of the window: counting before
    /// verifying means parallel guesses cannot slip past the limit.
    attempts: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    /// Verified against when the user does not exist, so both cases cost the same.
    decoy: String,
}

impl Default for PasswordGate {
    fn default() -> Self {
        PasswordGate {
            permits: Semaphore::new(CONCURRENT_VERIFICATIONS),
            attempts: Mutex::default(),
            decoy: hash_password("meridian-decoy").unwrap_or_default(),
        }
    }
}

impl PasswordGate {
    /// Checks `password` against the PHC string of the user (`None`: no such user).
    pub async fn check(
        &self,
        client: IpAddr,
        phc: Option<String>,
        password: String,
        now: Instant,
    ) -> Result<(), Denied> {
        self.reserve(client, now)?;
        let permit = match tokio::time::timeout(QUEUE_WAIT, self.permits.acquire()).await {
            Ok(Ok(permit)) => permit,
            _ => return Err(Denied::Busy),
        };
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.decoy.clone());
        let matched = tokio::task::spawn_blocking(move || verify_password(&password, &phc))
            .await
            .unwrap_or(false);
        drop(permit);
        if known && matched {
            self.lock().remove(&client);
            Ok(())
        } else {
            Err(Denied::Wrong)
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (u32, Instant)>> {
        match self.attempts.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        }
    }

    /// Counts one attempt for `client`, or refuses it when the address used up its window.
    fn reserve(&self, client: IpAddr, now: Instant) -> Result<(), Denied> {
        let mut map = self.lock();
        map.retain(|_, (_, since)| now.saturating_duration_since(*since) < WINDOW);
        let (count, since) = map.entry(client).or_insert((0, now));
        if *count >= MAX_FAILURES {
            let elapsed = now.saturating_duration_since(*since);
            return Err(Denied::Throttled(WINDOW.saturating_sub(elapsed)));
        }
        *count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn throttles_after_repeated_failures_and_forgets_after_the_window() {
        let gate = PasswordGate::default();
        let phc = hash_password("right").ok();
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let other: IpAddr = "192.0.2.2".parse().expect("ip");
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES {
            assert_eq!(
                gate.check(ip, phc.clone(), "wrong".into(), t0).await,
                Err(Denied::Wrong)
            );
        }
        // Even the right password is refused while throttled, without spending a verification.
        assert!(matches!(
            gate.check(ip, phc.clone(), "right".into(), t0).await,
            Err(Denied::Throttled(_))
        ));
        // Other clients are not affected.
        assert_eq!(
            gate.check(other, phc.clone(), "right".into(), t0).await,
            Ok(())
        );
        let later = t0 + WINDOW + Duration::from_secs(1);
        assert_eq!(
            gate.check(ip, phc.clone(), "right".into(), later).await,
            Ok(())
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_guesses_cannot_exceed_the_limit() {
        let gate = std::sync::Arc::new(PasswordGate::default());
        let phc = hash_password("right").ok();
        let ip: IpAddr = "192.0.2.9".parse().expect("ip");
        let now = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (gate, phc) = (gate.clone(), phc.clone());
            tasks.push(tokio::spawn(async move {
                gate.check(ip, phc, "wrong".into(), now).await
            }));
        }
        let mut verified = 0;
        for t in tasks {
            if t.await.expect("task") == Err(Denied::Wrong) {
                verified += 1;
            }
        }
        assert_eq!(
            verified, MAX_FAILURES,
            "only the allowed attempts were verified"
        );
    }

    #[tokio::test]
    async fn unknown_users_never_pass() {
        let gate = PasswordGate::default();
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        assert_eq!(
            gate.check(ip, None, "meridian-decoy".into(), Instant::now())
                .await,
            Err(Denied::Wrong)
        );
    }
}
