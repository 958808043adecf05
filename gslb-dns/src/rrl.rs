//! Response-rate limiting over UDP, per client subnet: a flood of queries spoofed from a
//! victim's addresses gets at most the configured rate of responses, so the server is no
//! amplifier. Over the rate, every `slip`-th response goes out truncated (TC set, no records),
//! which sends a real client to TCP (it cannot be spoofed), and the rest are dropped.
//!
//! The counters are a fixed table of one-second windows indexed by a keyed hash of the
//! subnet: no allocation, no lock, bounded memory whatever the number of clients. Two subnets
//! that share a slot share its budget, which errs on the side of limiting.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use model::Config;

const SLOTS: usize = 1 << 16;

/// One revision's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RrlSettings {
    rate: u32,
    slip: u32,
    ipv4_prefix: u8,
    ipv6_prefix: u8,
}

impl RrlSettings {
    /// The config's limit (the default when it says nothing); `None` when turned off.
    pub(crate) fn of(config: &Config) -> Option<RrlSettings> {
        let spec = config
            .spec
            .dns
            .as_ref()
            .and_then(|d| d.rate_limit.clone())
            .unwrap_or_default();
        (spec.responses_per_second > 0).then_some(RrlSettings {
            rate: spec.responses_per_second,
            slip: spec.slip,
            ipv4_prefix: spec.ipv4_prefix,
            ipv6_prefix: spec.ipv6_prefix,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Answer,
    /// Send a truncated, empty response.
    Slip,
    Drop,
}

pub(crate) struct RateTable {
    /// `(second << 32) | count` per slot.
    slots: Box<[AtomicU64]>,
    hasher: std::collections::hash_map::RandomState,
    start: Instant,
}

impl Default for RateTable {
    fn default() -> Self {
        RateTable {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            start: Instant::now(),
        }
    }
}

impl RateTable {
    pub(crate) fn check(&self, settings: &RrlSettings, client: IpAddr) -> Verdict {
        let now = self.start.elapsed().as_secs() & 0xffff_ffff;
        self.check_at(settings, client, now)
    }

    fn check_at(&self, settings: &RrlSettings, client: IpAddr, second: u64) -> Verdict {
        let subnet: (u8, u128) = match client {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                let keep = u32::from(settings.ipv6_prefix);
                (
                    6,
                    u128::from(v6) & u128::MAX.checked_shl(128 - keep).unwrap_or(0),
                )
            }
            other => {
                let v4 = match other {
                    IpAddr::V4(v4) => v4,
                    IpAddr::V6(v6) => v6
                        .to_ipv4_mapped()
                        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
                };
                let keep = u32::from(settings.ipv4_prefix);
                let mask = u32::MAX.checked_shl(32 - keep).unwrap_or(0);
                (4, u128::from(u32::from(v4) & mask))
            }
        };
        let index = (self.hasher.hash_one(subnet) as usize) % SLOTS;
        let slot = &self.slots[index];
        let mut current = slot.load(Ordering::Relaxed);
        let count = loop {
            let (at, count) = (current >> 32, current & 0xffff_ffff);
            let count = if at == second {
                count.saturating_add(1).min(0xffff_ffff)
            } else {
                1
            };
            match slot.compare_exchange_weak(
                current,
                (second << 32) | count,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break count,
                Err(seen) => current = seen,
            }
        };
        let rate = u64::from(settings.rate);
        if count <= rate {
            return Verdict::Answer;
        }
        let over = count - rate;
        if settings.slip > 0 && over % u64::from(settings.slip) == 0 {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subnet_gets_its_rate_per_second_then_slips_and_drops() {
        let table = RateTable::default();
        let settings = RrlSettings {
            rate: 5,
            slip: 2,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
        };
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let verdicts: Vec<Verdict> = (0..9)
            .map(|i| table.check_at(&settings, ip(&format!("192.0.2.{i}")), 7))
            .collect();
        // One /24: five answers, then every second one over the rate slips.
        assert_eq!(
            verdicts,
            [
                Verdict::Answer,
                Verdict::Answer,
                Verdict::Answer,
                Verdict::Answer,
                Verdict::Answer,
                Verdict::Drop,
                Verdict::Slip,
                Verdict::Drop,
                Verdict::Slip,
            ]
        );
        // Another subnet has its own budget (unless it shares a slot, which is rare).
        assert_eq!(
            table.check_at(&settings, ip("198.51.100.1"), 7),
            Verdict::Answer
        );
        // The next second starts over.
        assert_eq!(
            table.check_at(&settings, ip("192.0.2.1"), 8),
            Verdict::Answer
        );
        // IPv6 clients are grouped by /56.
        for i in 0..5 {
            let a = ip(&format!("2001:db8:0:{i}::1"));
            assert_eq!(table.check_at(&settings, a, 9), Verdict::Answer);
        }
        assert_ne!(
            table.check_at(&settings, ip("2001:db8:0:ff::1"), 9),
            Verdict::Answer
        );
    }

    #[test]
    fn the_limit_is_on_by_default_and_zero_turns_it_off() {
        let mut config = Config::empty();
        assert_eq!(RrlSettings::of(&config).map(|s| s.rate), Some(1000));
        config.spec.dns = Some(model::DnsSpec {
            rate_limit: Some(model::DnsRateLimitSpec {
                responses_per_second: 0,
                ..Default::default()
            }),
        });
        assert_eq!(RrlSettings::of(&config), None);
    }
}
