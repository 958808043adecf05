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

/// Failures allowed from one address within [`WINDOW`] before it is throttled.
pub const MAX_FAILURES: u32 = 5;
/// How long failures are remembered, and how long a throttled address waits.
pub const WINDOW: Duration = Duration::from_secs(300);
/// Argon2 verifications running at once; more wait their turn.
const CONCURRENT_VERIFICATIONS: usize = 2;

#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    /// Wrong user or password.
    Wrong,
    /// Too many failures from this address: retry after this long.
    Throttled(Duration),
}

pub struct PasswordGate {
    permits: Semaphore,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    /// Verified against when the user does not exist, so both cases cost the same.
    decoy: String,
}

impl Default for PasswordGate {
    fn default() -> Self {
        PasswordGate {
            permits: Semaphore::new(CONCURRENT_VERIFICATIONS),
            failures: Mutex::default(),
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
        if let Some(wait) = self.throttled(client, now) {
            return Err(Denied::Throttled(wait));
        }
        let ok = match self.permits.acquire().await {
            Ok(_permit) => {
                let known = phc.is_some();
                let phc = phc.unwrap_or_else(|| self.decoy.clone());
                let matched = tokio::task::spawn_blocking(move || verify_password(&password, &phc))
                    .await
                    .unwrap_or(false);
                known && matched
            }
            Err(_) => false,
        };
        self.record(client, ok, now);
        if ok {
            Ok(())
        } else {
            Err(Denied::Wrong)
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (u32, Instant)>> {
        match self.failures.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        }
    }

    fn throttled(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        let map = self.lock();
        let (count, since) = map.get(&client)?;
        let elapsed = now.saturating_duration_since(*since);
        (*count >= MAX_FAILURES && elapsed < WINDOW).then(|| WINDOW - elapsed)
    }

    fn record(&self, client: IpAddr, ok: bool, now: Instant) {
        let mut map = self.lock();
        if ok {
            map.remove(&client);
            return;
        }
        map.retain(|_, (_, since)| now.saturating_duration_since(*since) < WINDOW);
        let entry = map.entry(client).or_insert((0, now));
        entry.0 += 1;
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
