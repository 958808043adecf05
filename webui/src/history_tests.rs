use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use super::*;

const T0: u64 = 1_700_000_000_000;
const STEP: u64 = 5_000;

fn counter(r: &Registry, name: &str, labels: &[&str]) -> IntCounterVec {
    let v = IntCounterVec::new(Opts::new(name, "test"), labels).expect("counter");
    r.register(Box::new(v.clone())).expect("register");
    v
}

fn gauge(r: &Registry, name: &str, labels: &[&str]) -> IntGaugeVec {
    let v = IntGaugeVec::new(Opts::new(name, "test"), labels).expect("gauge");
    r.register(Box::new(v.clone())).expect("register");
    v
}

fn histogram(r: &Registry, name: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, "test").buckets(vec![0.1, 0.2, 0.4]);
    let v = HistogramVec::new(opts, labels).expect("histogram");
    r.register(Box::new(v.clone())).expect("register");
    v
}

fn values(h: &History, key: &str) -> Vec<f64> {
    h.series(key).into_iter().map(|(_, v)| v).collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn counters_become_per_second_rates_of_the_interval() {
    let r = Registry::new();
    let requests = counter(&r, "meridian_lb_requests_total", &["listener", "status"]);
    let bytes = counter(&r, "meridian_lb_bytes_total", &["listener", "direction"]);
    let h = History::new();

    requests.with_label_values(&["web", "200"]).inc_by(100);
    bytes.with_label_values(&["web", "out"]).inc_by(1_000);
    h.sample(&r.gather(), T0);
    // Nothing to compare the first sample with: no rate yet.
    assert!(h.series("listener/web/rps").is_empty());

    requests.with_label_values(&["web", "200"]).inc_by(40);
    requests.with_label_values(&["web", "503"]).inc_by(10);
    requests.with_label_values(&["web", "404"]).inc_by(5);
    bytes.with_label_values(&["web", "out"]).inc_by(50_000);
    h.sample(&r.gather(), T0 + STEP);

    assert_eq!(h.series("listener/web/rps"), vec![(T0 + STEP, 11.0)]);
    assert_eq!(values(&h, "listener/web/errors"), vec![2.0]);
    assert_eq!(values(&h, "listener/web/out"), vec![10_000.0]);
    assert!(h.series("listener/other/rps").is_empty());
    let latest = h.latest(&["listener/web/rps", "nope"]);
    assert_eq!(latest, vec![("listener/web/rps".into(), T0 + STEP, 11.0)]);
}

#[test]
fn a_counter_that_goes_down_was_reset_and_gives_zero_not_a_negative_rate() {
    let first = Registry::new();
    counter(
        &first,
        "meridian_lb_requests_total",
        &["listener", "status"],
    )
    .with_label_values(&["web", "200"])
    .inc_by(500);
    let h = History::new();
    h.sample(&first.gather(), T0);

    // The same series, created again (a listener removed and re-added).
    let second = Registry::new();
    let requests = counter(
        &second,
        "meridian_lb_requests_total",
        &["listener", "status"],
    );
    requests.with_label_values(&["web", "200"]).inc_by(20);
    h.sample(&second.gather(), T0 + STEP);
    assert_eq!(values(&h, "listener/web/rps"), vec![0.0]);

    requests.with_label_values(&["web", "200"]).inc_by(10);
    h.sample(&second.gather(), T0 + 2 * STEP);
    assert_eq!(values(&h, "listener/web/rps"), vec![0.0, 2.0]);
}

#[test]
fn latency_percentiles_interpolate_inside_the_bucket_of_the_interval() {
    let r = Registry::new();
    let latency = histogram(&r, "meridian_lb_request_duration_seconds", &["listener"]);
    let web = latency.with_label_values(&["web"]);
    // Before the interval: slow requests that must not count.
    for _ in 0..50 {
        web.observe(0.3);
    }
    let h = History::new();
    h.sample(&r.gather(), T0);

    for _ in 0..10 {
        web.observe(0.05);
    }
    for _ in 0..10 {
        web.observe(0.15);
    }
    h.sample(&r.gather(), T0 + STEP);
    // p50: rank 10 of 20 is the top of the first bucket [0, 0.1].
    let p50 = values(&h, "listener/web/p50");
    assert!(close(p50[0], 0.1), "{p50:?}");
    // p99: rank 19.8 is 98% of the way through the second bucket (0.1, 0.2].
    let p99 = values(&h, "listener/web/p99");
    assert!(close(p99[0], 0.198), "{p99:?}");

    // An interval without requests leaves a gap rather than a 0 s point.
    h.sample(&r.gather(), T0 + 2 * STEP);
    assert_eq!(h.series("listener/web/p50").len(), 1);
}

#[test]
fn a_rank_above_the_last_bucket_answers_the_last_bound() {
    let b = Buckets {
        bounds: vec![0.1, 0.2],
        cumulative: vec![0, 1],
        count: 100,
    };
    assert_eq!(b.quantile(0.99), Some(0.2));
    assert_eq!(Buckets::default().quantile(0.5), None);
}

#[test]
fn a_pool_sums_and_merges_its_members() {
    let r = Registry::new();
    let requests = counter(
        &r,
        "meridian_lb_member_requests_total",
        &["pool", "member", "class"],
    );
    let failures = counter(
        &r,
        "meridian_lb_member_connect_failures_total",
        &["pool", "member"],
    );
    let latency = histogram(
        &r,
        "meridian_lb_member_duration_seconds",
        &["pool", "member"],
    );
    let active = gauge(
        &r,
        "meridian_lb_member_active_requests",
        &["pool", "member"],
    );
    let h = History::new();
    h.sample(&r.gather(), T0);

    requests.with_label_values(&["p", "a", "2xx"]).inc_by(30);
    requests.with_label_values(&["p", "a", "5xx"]).inc_by(5);
    requests.with_label_values(&["p", "b", "2xx"]).inc_by(15);
    failures.with_label_values(&["p", "b"]).inc_by(10);
    for _ in 0..10 {
        latency.with_label_values(&["p", "a"]).observe(0.05);
    }
    for _ in 0..10 {
        latency.with_label_values(&["p", "b"]).observe(0.3);
    }
    active.with_label_values(&["p", "a"]).set(3);
    h.sample(&r.gather(), T0 + STEP);

    assert_eq!(values(&h, "pool/p/rps"), vec![10.0]);
    assert_eq!(values(&h, "pool/p/errors"), vec![3.0]);
    assert_eq!(values(&h, "member/p/a/rps"), vec![7.0]);
    assert_eq!(values(&h, "member/p/a/errors"), vec![1.0]);
    assert_eq!(values(&h, "member/p/b/errors"), vec![2.0]);
    assert_eq!(values(&h, "member/p/a/active"), vec![3.0]);
    // Merged: 10 fast and 10 slow, so the median is the top of the fast bucket while each
    // member alone says 0.1 and 0.3.
    assert!(close(values(&h, "pool/p/p50")[0], 0.1));
    assert!(close(values(&h, "pool/p/p99")[0], 0.396));
    assert!(close(values(&h, "member/p/b/p50")[0], 0.3));

    let a = h.member_counters("p", "a");
    assert_eq!(a.requests_total, 35);
    assert_eq!(a.by_class, [0, 30, 0, 0, 5]);
    assert_eq!(a.active, 3);
    assert!(a.p50.is_some_and(|p| close(p, 0.05)), "{a:?}");
    assert_eq!(h.member_counters("p", "b").connect_failures, 10);
    assert_eq!(h.member_counters("p", "c"), MemberCounters::default());
}

#[test]
fn dns_rates_by_rcode_add_up_over_transports() {
    let r = Registry::new();
    let queries = counter(&r, "meridian_dns_queries_total", &["rcode", "transport"]);
    let h = History::new();
    h.sample(&r.gather(), T0);
    queries.with_label_values(&["NOERROR", "udp"]).inc_by(40);
    queries.with_label_values(&["NOERROR", "tcp"]).inc_by(10);
    queries.with_label_values(&["NXDOMAIN", "udp"]).inc_by(5);
    h.sample(&r.gather(), T0 + STEP);
    assert_eq!(values(&h, "dns/NOERROR/qps"), vec![10.0]);
    assert_eq!(values(&h, "dns/NXDOMAIN/qps"), vec![1.0]);
    assert_eq!(values(&h, "dns/all/qps"), vec![11.0]);
}

#[test]
fn a_series_keeps_one_hour_and_a_vanished_one_ages_out() {
    let r = Registry::new();
    let conns = gauge(&r, "meridian_lb_connections_active", &["listener"]);
    conns.with_label_values(&["web"]).set(1);
    conns.with_label_values(&["old"]).set(2);
    let h = History::new();
    h.sample(&r.gather(), T0);
    conns.remove_label_values(&["old"]).expect("remove");
    for i in 1..(CAPACITY as u64 + 10) {
        h.sample(&r.gather(), T0 + i * STEP);
        if i == CAPACITY as u64 - 2 {
            // Still within the hour: the last point it got is kept.
            assert_eq!(h.series("listener/old/conns"), vec![(T0, 2.0)]);
        }
    }
    let web = h.series("listener/web/conns");
    assert_eq!(web.len(), CAPACITY);
    assert_eq!(
        web.last().map(|p| p.0),
        Some(T0 + (CAPACITY as u64 + 9) * STEP)
    );
    assert!(h.series("listener/old/conns").is_empty());
    assert!(!h.keys().iter().any(|k| k.starts_with("listener/old/")));
}

#[test]
fn a_ring_holds_at_most_its_capacity_even_at_a_faster_pace() {
    let r = Registry::new();
    gauge(&r, "meridian_lb_connections_active", &["listener"])
        .with_label_values(&["web"])
        .set(1);
    let h = History::new();
    for i in 0..(2 * CAPACITY as u64) {
        h.sample(&r.gather(), T0 + i * 1_000);
    }
    let web = h.series("listener/web/conns");
    assert_eq!(web.len(), CAPACITY);
    assert_eq!(web[0].0, T0 + CAPACITY as u64 * 1_000);
}

#[tokio::test]
async fn subscribers_wake_after_each_sample() {
    let h = History::new();
    let mut rx = h.subscribe();
    h.sample(&[], T0);
    rx.changed().await.expect("changed");
    assert_eq!(*rx.borrow_and_update(), T0);
}
