use std::time::{Duration, Instant};

use super::*;

fn spec(requests: u32, burst: u32) -> RateLimitSpec {
    RateLimitSpec {
        requests,
        per: RatePer::Second,
        burst: Some(burst),
        key: model::RateKey::Route,
        over_limit: model::OverLimit::Reject,
        max_delay_ms: 0,
        max_concurrent: None,
        global: true,
    }
}

#[test]
fn alone_it_is_a_plain_gcra_limit() {
    let g = GlobalLimit::new("r", &spec(10, 5));
    let t0 = Instant::now();
    let admitted = (0..20)
        .filter(|_| g.check(7, t0, Duration::ZERO) == Decision::Admit(Duration::ZERO))
        .count();
    assert_eq!(admitted, 5, "the burst at once");
    // 100 ms later, one more slot at 10/s.
    let t1 = t0 + Duration::from_millis(100);
    assert_eq!(
        g.check(7, t1, Duration::ZERO),
        Decision::Admit(Duration::ZERO)
    );
    assert!(matches!(
        g.check(7, t1, Duration::ZERO),
        Decision::Refuse(_)
    ));
    // A wait long enough is a delayed admission.
    assert!(matches!(
        g.check(7, t1, Duration::from_millis(150)),
        Decision::Admit(w) if w > Duration::ZERO
    ));
    g.tick(t1);
    assert_eq!(g.share(7), 1.0, "no other node sees the key");
}

/// Two nodes, a 100/s limit, ten times over it, the load split 3:1 and then shifting to 1:3:
/// the cluster admits the rate within 5 % in each phase, and each node's share follows its load.
#[test]
fn two_nodes_share_the_rate_by_their_load_and_follow_it_when_it_shifts() {
    let (a, b) = (
        GlobalLimit::new("r", &spec(100, 10)),
        GlobalLimit::new("r", &spec(100, 10)),
    );
    assert_eq!(a.id, b.id);
    let start = Instant::now();
    let mut now = start;
    let phase = |load_a: f64, load_b: f64, now: &mut Instant| -> (u32, u32) {
        let (mut owe_a, mut owe_b, mut got_a, mut got_b) = (0.0, 0.0, 0, 0);
        for ms in 0..10_000u32 {
            *now += Duration::from_millis(1);
            owe_a += load_a / 1000.0;
            owe_b += load_b / 1000.0;
            while owe_a >= 1.0 {
                owe_a -= 1.0;
                if let Decision::Admit(_) = a.check(1, *now, Duration::ZERO) {
                    got_a += 1;
                }
            }
            while owe_b >= 1.0 {
                owe_b -= 1.0;
                if let Decision::Admit(_) = b.check(1, *now, Duration::ZERO) {
                    got_b += 1;
                }
            }
            if ms % 200 == 199 {
                let (ra, rb) = (a.tick(*now), b.tick(*now));
                a.merge(2, &rb, *now);
                b.merge(1, &ra, *now);
            }
        }
        (got_a, got_b)
    };
    // Until the first reports both nodes give the whole rate (and burst): a transient of about
    // one tick, left out of the count.
    let (ga, gb) = phase(750.0, 250.0, &mut now);
    assert!(ga + gb < 1100, "start-up {ga} + {gb}");
    let (ga, gb) = phase(750.0, 250.0, &mut now);
    let total = ga + gb;
    assert!(
        (970..=1030).contains(&total),
        "admitted {total} of 1000 ({ga} + {gb})"
    );
    assert!((a.share(1) - 0.75).abs() < 0.05, "share {}", a.share(1));
    assert!(ga > 2 * gb, "{ga} vs {gb}");
    let (ga, gb) = phase(250.0, 750.0, &mut now);
    let total = ga + gb;
    assert!(
        (950..=1050).contains(&total),
        "admitted {total} of 1000 after the shift ({ga} + {gb})"
    );
    assert!((b.share(1) - 0.75).abs() < 0.05, "share {}", b.share(1));
}

#[test]
fn a_node_that_stops_reporting_drops_out() {
    let g = GlobalLimit::new("r", &spec(100, 10));
    let t0 = Instant::now();
    g.check(1, t0, Duration::ZERO);
    g.merge(2, &[(1, 1000.0)], t0);
    g.tick(t0 + Duration::from_millis(200));
    assert!(
        g.share(1) < 0.1,
        "the other node's demand dominates: {}",
        g.share(1)
    );
    g.check(1, t0 + Duration::from_millis(300), Duration::ZERO);
    g.tick(t0 + Duration::from_millis(1400));
    assert_eq!(g.share(1), 1.0, "its report went stale");
    // Garbage in a report is ignored.
    g.merge(3, &[(1, f32::NAN), (1, -5.0)], t0);
    assert!(g
        .keys()
        .get(&1)
        .is_some_and(|k| k.remotes.iter().all(|r| r.0 != 3)));
}
