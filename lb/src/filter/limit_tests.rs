use super::*;

fn spec(requests: u32, burst: u32, key: RateKey) -> RateLimitSpec {
    RateLimitSpec {
        requests,
        per: RatePer::Second,
        burst: Some(burst),
        key,
        over_limit: OverLimit::Reject,
        max_delay_ms: 0,
        max_concurrent: None,
        global: false,
    }
}

fn counters() -> [prometheus::IntCounter; 3] {
    crate::metrics::LbMetrics::new(&prometheus::Registry::new())
        .expect("metrics")
        .rate_limit("r")
}

fn limit(s: &RateLimitSpec) -> RateLimit {
    RateLimit::compile(s, Arc::new(LimitState::new("r", s)), counters())
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

#[tokio::test]
async fn a_burst_then_429_with_retry_after_per_client() {
    let l = limit(&spec(10, 3, RateKey::ClientIp));
    let h = HeaderMap::new();
    for _ in 0..3 {
        assert!(l.admit(ip("192.0.2.1"), &h).await.is_ok());
    }
    let Err(Refusal::Rate(wait)) = l.admit(ip("192.0.2.1"), &h).await else {
        panic!("over the burst");
    };
    assert!(wait <= Duration::from_millis(100), "{wait:?}");
    let resp = refused(&Refusal::Rate(wait));
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
    // Another client has its own budget; the IPv4-mapped form is the same client.
    assert!(l.admit(ip("192.0.2.2"), &h).await.is_ok());
    assert!(l.admit(ip("::ffff:192.0.2.1"), &h).await.is_err());
    assert_eq!(l.metrics[0].get(), 4);
    assert_eq!(l.metrics[2].get(), 2);
}

#[test]
fn keys_by_subnet_header_cookie_and_route() {
    let subnet = limit(&spec(
        1,
        1,
        RateKey::Subnet {
            ipv4_prefix: 24,
            ipv6_prefix: 64,
        },
    ));
    let h = HeaderMap::new();
    assert_eq!(
        subnet.key(ip("198.51.100.7"), &h),
        subnet.key(ip("198.51.100.200"), &h)
    );
    assert_ne!(
        subnet.key(ip("198.51.100.7"), &h),
        subnet.key(ip("198.51.101.7"), &h)
    );
    assert_eq!(
        subnet.key(ip("2001:db8::1"), &h),
        subnet.key(ip("2001:db8::ffff:1"), &h)
    );
    let header = limit(&spec(
        1,
        1,
        RateKey::Header {
            name: "x-api-key".into(),
        },
    ));
    let mut with = HeaderMap::new();
    with.insert("x-api-key", HeaderValue::from_static("k1"));
    assert!(header.key(ip("192.0.2.1"), &with).is_some());
    assert_eq!(
        header.key(ip("192.0.2.1"), &with),
        header.key(ip("203.0.113.9"), &with),
        "the key, not the address"
    );
    assert_eq!(header.key(ip("192.0.2.1"), &h), None, "no key: not limited");
    let cookie = limit(&spec(
        1,
        1,
        RateKey::Cookie {
            name: "session".into(),
        },
    ));
    let mut c = HeaderMap::new();
    c.insert(
        header::COOKIE,
        HeaderValue::from_static("a=1; session=abc ;b=2"),
    );
    let mut c2 = HeaderMap::new();
    c2.insert(header::COOKIE, HeaderValue::from_static("session=abc"));
    assert!(cookie.key(ip("192.0.2.1"), &c).is_some());
    assert_eq!(
        cookie.key(ip("192.0.2.1"), &c),
        cookie.key(ip("192.0.2.9"), &c2)
    );
    let mut other = HeaderMap::new();
    other.insert(
        header::COOKIE,
        HeaderValue::from_static("sessionx=abc; =; ;"),
    );
    assert_eq!(cookie.key(ip("192.0.2.1"), &other), None);
    let route = limit(&spec(1, 1, RateKey::Route));
    assert_eq!(
        route.key(ip("192.0.2.1"), &h),
        route.key(ip("2001:db8::1"), &h)
    );
}

#[tokio::test]
async fn delay_mode_holds_requests_up_to_the_limit() {
    let mut s = spec(20, 1, RateKey::Route);
    s.over_limit = OverLimit::Delay;
    s.max_delay_ms = 200;
    let l = limit(&s);
    let h = HeaderMap::new();
    let start = std::time::Instant::now();
    for _ in 0..3 {
        assert!(l.admit(ip("192.0.2.1"), &h).await.is_ok());
    }
    // 20/s: the 2nd and 3rd waited about 50 ms each.
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(80), "{took:?}");
    assert_eq!(l.metrics[1].get(), 2, "delayed");
    // A request that would wait longer than 200 ms is refused.
    let mut s = spec(1, 1, RateKey::Route);
    s.over_limit = OverLimit::Delay;
    s.max_delay_ms = 200;
    let l = limit(&s);
    assert!(l.admit(ip("192.0.2.1"), &h).await.is_ok());
    assert!(matches!(
        l.admit(ip("192.0.2.1"), &h).await,
        Err(Refusal::Rate(_))
    ));
}

#[tokio::test]
async fn concurrency_per_key_is_held_by_the_slot() {
    let mut s = spec(1000, 1000, RateKey::ClientIp);
    s.max_concurrent = Some(2);
    let l = limit(&s);
    let h = HeaderMap::new();
    let a = l.admit(ip("192.0.2.1"), &h).await.expect("1st");
    let b = l.admit(ip("192.0.2.1"), &h).await.expect("2nd");
    assert!(a.is_some() && b.is_some());
    assert_eq!(
        l.admit(ip("192.0.2.1"), &h).await.err(),
        Some(Refusal::Concurrency)
    );
    assert!(l.admit(ip("192.0.2.2"), &h).await.is_ok(), "another client");
    drop(a);
    assert!(l.admit(ip("192.0.2.1"), &h).await.is_ok(), "a slot freed");
}

#[test]
fn the_registry_keeps_state_while_the_limit_is_unchanged() {
    let reg = LimitRegistry::default();
    let s = spec(5, 5, RateKey::ClientIp);
    let a = reg.state("r", &s);
    let b = reg.state("r", &s);
    assert!(Arc::ptr_eq(&a, &b));
    let c = reg.state("r", &spec(6, 5, RateKey::ClientIp));
    assert!(!Arc::ptr_eq(&a, &c), "a changed limit starts afresh");
    drop((a, b));
    let d = reg.state("r", &s);
    assert_eq!(
        Arc::strong_count(&d),
        1,
        "forgotten once no snapshot holds it"
    );
}

#[test]
fn access_rules_deny_allow_and_methods() {
    let metrics = crate::metrics::LbMetrics::new(&prometheus::Registry::new())
        .expect("metrics")
        .access("r");
    let rules = AccessRules::compile(
        &Access {
            allow: vec![model::Cidr::parse("192.0.2.0/24").expect("cidr")],
            deny: vec![model::Cidr::parse("192.0.2.66").expect("cidr")],
            methods: vec!["GET".into(), "HEAD".into()],
        },
        metrics,
    );
    assert!(rules.check(ip("192.0.2.1"), &Method::GET).is_none());
    let denied = rules.check(ip("192.0.2.66"), &Method::GET).expect("denied");
    assert_eq!(denied.status(), 403);
    let outside = rules
        .check(ip("203.0.113.1"), &Method::GET)
        .expect("not allowed");
    assert_eq!(outside.status(), 403);
    let post = rules.check(ip("192.0.2.1"), &Method::POST).expect("method");
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()[header::ALLOW], "GET, HEAD");
    assert_eq!(rules.metrics.each_ref().map(|c| c.get()), [1, 1, 1]);
}

#[test]
fn pool_slots_stop_at_the_limit_and_free_on_drop() {
    let reg = LimitRegistry::default();
    let c = reg.pool_counter("p");
    assert!(
        Arc::ptr_eq(&c, &reg.pool_counter("p")),
        "one counter per pool"
    );
    let a = pool_slot(2, &c).expect("1st");
    let b = pool_slot(2, &c).expect("2nd");
    assert!(pool_slot(2, &c).is_none());
    drop(a);
    let _c2 = pool_slot(2, &c).expect("freed");
    drop(b);
    assert_eq!(c.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_global_limit_reports_its_keys_and_takes_its_share_from_the_others() {
    let registry = LimitRegistry::default();
    let mut s = spec(10, 10, RateKey::ClientIp);
    s.global = true;
    let state = registry.state("api", &s);
    let l = RateLimit::compile(&s, state.clone(), counters());
    let h = HeaderMap::new();
    for _ in 0..4 {
        assert!(l.admit(ip("192.0.2.1"), &h).await.is_ok());
    }
    // Another node reports the same client, with three times the demand.
    let report = registry.global_report().expect("a global limit");
    let key = l.key(ip("192.0.2.1"), &h).expect("key");
    let limits = report["limits"].as_array().expect("limits");
    assert_eq!(limits.len(), 1);
    assert_eq!(limits[0]["keys"][0][0].as_u64(), Some(key), "{report}");
    let id = limits[0]["id"].clone();
    let other = serde_json::json!({"limits": [{"id": id, "keys": [[key, 1.0e6]]}]});
    registry.global_merge(2, &other);
    registry.global_report();
    let g = state.global.as_ref().expect("global");
    assert!(g.share(key) < 0.01, "share {}", g.share(key));
    // Its key hash is the same on every node (stable), unlike a local limit's.
    let again = LimitState::new("api", &s);
    assert_eq!(again.seed.hash_one(1u8), state.seed.hash_one(1u8));
    // A malformed report changes nothing.
    registry.global_merge(3, &serde_json::json!({"limits": "nope"}));
    registry.global_merge(
        3,
        &serde_json::json!({"limits": [{"id": "other", "keys": [[1, 2.0]]}]}),
    );
}
