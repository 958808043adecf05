use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{StatusCode, Uri};
use model::records::{PurgeRecord, PurgeSelector};

use super::*;
use crate::metrics::{CacheMetrics, LbMetrics};

fn route_cache(spec: model::CacheSpec) -> RouteCache {
    let metrics = LbMetrics::new(&prometheus::Registry::new()).unwrap_or_else(|e| panic!("{e}"));
    RouteCache::compile(&spec, metrics.cache_route("r"))
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap_or_else(|e| panic!("{e}")),
            HeaderValue::from_str(v).unwrap_or_else(|e| panic!("{e}")),
        );
    }
    h
}

fn response(pairs: &[(&str, &str)]) -> http::response::Parts {
    let mut parts = http::Response::new(()).into_parts().0;
    parts.headers = headers(pairs);
    parts
}

fn entry_of(rc: &RouteCache, req: &HeaderMap, resp: &[(&str, &str)], body: &str) -> Entry {
    let mut parts = response(resp);
    rc.prepare(req, &mut parts, true, false, SystemTime::now())
        .unwrap_or_else(|| panic!("storable: {resp:?}"))
        .into_entry(Bytes::from(body.to_string()))
}

#[test]
fn the_key_takes_host_path_the_query_as_configured_and_key_headers() {
    let uri: Uri = "/a/b?z=1&a=2&utm=x"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let h = headers(&[("x-tenant", "acme")]);
    let all = route_cache(model::CacheSpec::default());
    assert_eq!(
        &*all.key("site.test", &uri, &h),
        "site.test/a/b?z=1&a=2&utm=x"
    );
    let none = route_cache(model::CacheSpec {
        key: model::CacheKeySpec {
            ignore_query: true,
            ..Default::default()
        },
        ..Default::default()
    });
    assert_eq!(&*none.key("site.test", &uri, &h), "site.test/a/b");
    let some = route_cache(model::CacheSpec {
        key: model::CacheKeySpec {
            query_params: Some(vec!["a".into(), "z".into()]),
            headers: vec!["x-tenant".into()],
            ..Default::default()
        },
        ..Default::default()
    });
    let k = some.key("site.test", &uri, &h);
    assert_eq!(&*k, "site.test/a/b?a=2&z=1\nx-tenant:acme");
    let sk = StoreKey { key: k, variant: 0 };
    assert_eq!(sk.url(), "site.test/a/b?a=2&z=1");
}

#[test]
fn what_is_never_stored() {
    let rc = route_cache(model::CacheSpec::default());
    let now = SystemTime::now();
    let req = HeaderMap::new();
    let refused = [
        vec![("cache-control", "max-age=60"), ("set-cookie", "a=b")],
        vec![("cache-control", "private, max-age=60")],
        vec![("cache-control", "no-store")],
        vec![("cache-control", "max-age=60"), ("vary", "*")],
        vec![
            ("cache-control", "public, max-age=60"),
            ("vary", "Authorization"),
        ],
        vec![
            ("cache-control", "public, max-age=60"),
            ("vary", "accept, Cookie"),
        ],
        // No freshness, no validator, no default TTL: nothing to serve later.
        vec![],
    ];
    for r in refused {
        let mut parts = response(&r);
        assert!(
            rc.prepare(&req, &mut parts, false, false, now).is_none(),
            "{r:?}"
        );
    }
    // Credentials: only an explicitly public answer (or s-maxage) is kept.
    let mut parts = response(&[("cache-control", "max-age=60")]);
    assert!(rc.prepare(&req, &mut parts, false, true, now).is_none());
    let mut parts = response(&[("cache-control", "public, max-age=60")]);
    assert!(rc.prepare(&req, &mut parts, false, true, now).is_some());
    // Larger than the route's bound, by its Content-Length.
    let mut parts = response(&[
        ("cache-control", "max-age=60"),
        ("content-length", "9999999999"),
    ]);
    assert!(rc.prepare(&req, &mut parts, false, false, now).is_none());
    // A 206 is not understood as a whole response.
    let mut parts = response(&[("cache-control", "max-age=60")]);
    parts.status = StatusCode::PARTIAL_CONTENT;
    assert!(rc.prepare(&req, &mut parts, false, false, now).is_none());
}

#[test]
fn a_default_ttl_fills_in_only_when_the_upstream_says_nothing() {
    let rc = route_cache(model::CacheSpec {
        default_ttl_seconds: 30,
        ..Default::default()
    });
    let req = HeaderMap::new();
    let e = entry_of(&rc, &req, &[], "x");
    let ttl = e.policy.time_to_live(SystemTime::now());
    assert!(
        ttl > Duration::from_secs(28) && ttl <= Duration::from_secs(30),
        "{ttl:?}"
    );
    // The served head is the upstream's, without the added directive.
    assert!(!e.headers.contains_key(header::CACHE_CONTROL));
    let e = entry_of(&rc, &req, &[("cache-control", "max-age=5")], "x");
    assert!(e.policy.time_to_live(SystemTime::now()) <= Duration::from_secs(5));
    let mut parts = response(&[("cache-control", "no-cache, no-store")]);
    assert!(rc
        .prepare(&req, &mut parts, false, false, SystemTime::now())
        .is_none());
}

#[test]
fn tags_come_from_the_tags_header_which_clients_never_see() {
    let rc = route_cache(model::CacheSpec::default());
    let mut parts = response(&[
        ("cache-control", "max-age=60"),
        ("surrogate-key", "red  blue,green"),
    ]);
    let p = rc
        .prepare(
            &HeaderMap::new(),
            &mut parts,
            false,
            false,
            SystemTime::now(),
        )
        .unwrap_or_else(|| panic!("storable"));
    assert!(!parts.headers.contains_key("surrogate-key"));
    let e = p.into_entry(Bytes::new());
    let tags: Vec<&str> = e.tags.iter().map(|t| &**t).collect();
    assert_eq!(tags, ["red", "blue", "green"]);
    let key = StoreKey {
        key: "h/p".into(),
        variant: 0,
    };
    assert!(key.matches(&e.tags, &PurgeSelector::Tag("blue".into())));
    assert!(!key.matches(&e.tags, &PurgeSelector::Tag("blu".into())));
    assert!(key.matches(&e.tags, &PurgeSelector::Prefix("h/".into())));
    assert!(key.matches(&e.tags, &PurgeSelector::Key("h/p".into())));
    assert!(!key.matches(&e.tags, &PurgeSelector::Key("h/".into())));
}

#[test]
fn vary_keeps_clients_apart_but_accept_encoding_is_the_variant() {
    let rc = route_cache(model::CacheSpec::default());
    let now = SystemTime::now();
    let req = headers(&[("x-mode", "admin"), ("accept-encoding", "gzip, br")]);
    let e = entry_of(
        &rc,
        &req,
        &[
            ("cache-control", "max-age=60"),
            ("vary", "Accept-Encoding, X-Mode"),
        ],
        "x",
    );
    assert_eq!(&*e.vary, [http::HeaderName::from_static("x-mode")]);
    let same = headers(&[("x-mode", "admin"), ("accept-encoding", "br")]);
    assert!(matches!(freshness(&e, &same, now), Freshness::Fresh));
    let other = headers(&[("x-mode", "guest")]);
    assert!(matches!(
        freshness(&e, &other, now),
        Freshness::Stale { matches: false }
    ));
    // The client may ask for a fresher answer than the one stored.
    let no_cache = headers(&[("x-mode", "admin"), ("cache-control", "no-cache")]);
    assert!(matches!(
        freshness(&e, &no_cache, now),
        Freshness::Stale { matches: true }
    ));
}

#[test]
fn the_fast_path_agrees_with_the_policy() {
    let rc = route_cache(model::CacheSpec::default());
    let e = entry_of(
        &rc,
        &HeaderMap::new(),
        &[("cache-control", "max-age=2")],
        "x",
    );
    for dt in [0, 1, 3, 10] {
        let now = SystemTime::now() + Duration::from_secs(dt);
        let fast = matches!(freshness(&e, &HeaderMap::new(), now), Freshness::Fresh);
        let policy = matches!(
            e.policy
                .before_request(&PolicyRequest::for_entry(&HeaderMap::new(), &e), now),
            http_cache_semantics::BeforeRequest::Fresh(_)
        );
        assert_eq!(fast, policy, "after {dt} s");
    }
}

#[test]
fn stored_answers_carry_age_and_x_cache_and_validators_answer_304() {
    let rc = route_cache(model::CacheSpec::default());
    let e = entry_of(
        &rc,
        &HeaderMap::new(),
        &[
            ("cache-control", "max-age=60"),
            ("etag", "\"v1\""),
            ("age", "7"),
        ],
        "body",
    );
    let later = SystemTime::now() + Duration::from_secs(3);
    let r = serve(&e, CacheResult::Hit, later, false, &HeaderMap::new(), false);
    assert_eq!(r.status(), 200);
    let age: u64 = r.headers()[header::AGE]
        .to_str()
        .ok()
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    assert!((10..=11).contains(&age), "upstream age 7 + 3 s here: {age}");
    assert_eq!(r.headers()[X_CACHE], "HIT");
    let inm = headers(&[("if-none-match", "W/\"v0\", \"v1\"")]);
    let r = serve(&e, CacheResult::Hit, later, false, &inm, false);
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(r.headers()[header::ETAG], "\"v1\"");
    let head = serve(
        &e,
        CacheResult::Stale,
        later,
        true,
        &HeaderMap::new(),
        false,
    );
    assert_eq!(head.headers()[header::CONTENT_LENGTH], "4");
    assert_eq!(head.headers()[X_CACHE], "STALE");
    // Toward the HTTP/1.1 server: the stored fields ride encoded, once, without the stored Age;
    // the map carries only what this answer adds.
    let r = serve(&e, CacheResult::Hit, later, false, &HeaderMap::new(), true);
    assert_eq!(r.headers().len(), 2, "{:?}", r.headers());
    assert_eq!(r.headers()[X_CACHE], "HIT");
    let encoded = r
        .extensions()
        .get::<crate::http::h1::wire::EncodedFields>()
        .expect("encoded fields");
    let text = String::from_utf8_lossy(encoded.as_bytes());
    assert!(text.contains("etag: \"v1\"\r\n"), "{text}");
    assert!(!text.contains("age: 7"), "{text}");
}

#[test]
fn a_304_refreshes_the_entry_and_keeps_its_body() {
    let rc = route_cache(model::CacheSpec::default());
    let e = entry_of(
        &rc,
        &HeaderMap::new(),
        &[("cache-control", "max-age=1"), ("etag", "\"v1\"")],
        "body",
    );
    let later = SystemTime::now() + Duration::from_secs(5);
    assert!(matches!(
        freshness(&e, &HeaderMap::new(), later),
        Freshness::Stale { matches: true }
    ));
    let mut validators = HeaderMap::new();
    add_validators(&e, &mut validators);
    assert_eq!(validators[header::IF_NONE_MATCH], "\"v1\"");
    let mut nm = response(&[("cache-control", "max-age=100"), ("etag", "\"v1\"")]);
    nm.status = StatusCode::NOT_MODIFIED;
    let fresh = refresh(&e, &HeaderMap::new(), &nm, later).unwrap_or_else(|| panic!("matches"));
    assert_eq!(fresh.body, Bytes::from("body"));
    assert!(matches!(
        freshness(&fresh, &HeaderMap::new(), later),
        Freshness::Fresh
    ));
    assert_eq!(fresh.headers[header::CACHE_CONTROL], "max-age=100");
    // A 304 for another entity tag does not refresh it.
    let mut other = response(&[("etag", "\"v2\"")]);
    other.status = StatusCode::NOT_MODIFIED;
    assert!(refresh(&e, &HeaderMap::new(), &other, later).is_none());
}

#[tokio::test]
async fn the_disk_tier_keeps_entries_across_a_restart_and_drops_purged_ones() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let options = StoreOptions {
        memory_bytes: 1 << 20,
        disk: Some((dir.path().to_path_buf(), 1 << 20)),
    };
    let rc = route_cache(model::CacheSpec::default());
    let key = |k: &str| StoreKey {
        key: k.into(),
        variant: 2,
    };
    {
        let store = CacheStore::open(&options, CacheMetrics::unregistered());
        for k in ["h/a", "h/b"] {
            let e = entry_of(
                &rc,
                &HeaderMap::new(),
                &[("cache-control", "max-age=60"), ("surrogate-key", k)],
                k,
            );
            store.insert(key(k), Arc::new(e));
        }
        // The writer thread is behind a queue: wait until both files are there.
        for _ in 0..100 {
            if store.stats().disk_entries == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(store.stats().disk_entries, 2);
    }
    // A purge of h/b happened while the store was closed.
    let purges = Arc::new(vec![PurgeRecord {
        seq: 1,
        at_unix_ms: model::unix_ms() + 1,
        selector: PurgeSelector::Key("h/b".into()),
    }]);
    let store = CacheStore::open(&options, CacheMetrics::unregistered());
    store.apply_purges(&purges);
    let mut found = None;
    for _ in 0..100 {
        found = store.get(&key("h/a")).await;
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let a = found.unwrap_or_else(|| panic!("h/a survives"));
    assert_eq!(a.body, Bytes::from("h/a"));
    assert!(matches!(
        freshness(&a, &HeaderMap::new(), SystemTime::now()),
        Freshness::Fresh
    ));
    assert!(store.get(&key("h/b")).await.is_none(), "purged while down");
    // Purges applied live remove from both tiers; an already applied one is not repeated.
    let purges = Arc::new(vec![
        purges[0].clone(),
        PurgeRecord {
            seq: 2,
            at_unix_ms: model::unix_ms(),
            selector: PurgeSelector::Prefix("h/".into()),
        },
    ]);
    store.apply_purges(&purges);
    assert!(store.get(&key("h/a")).await.is_none());
    assert_eq!(store.count_matching(&PurgeSelector::Prefix("h/".into())), 0);
}

#[tokio::test]
async fn one_miss_leads_and_the_others_wait_for_it() {
    let store = CacheStore::open(&StoreOptions::default(), CacheMetrics::unregistered());
    let key = StoreKey {
        key: "h/x".into(),
        variant: 0,
    };
    let Flight::Lead(guard) = store.flight(&key) else {
        panic!("the first miss leads");
    };
    let Flight::Wait(mut rx) = store.flight(&key) else {
        panic!("the second waits");
    };
    let waiter = tokio::spawn(async move { rx.changed().await.is_err() });
    drop(guard);
    assert!(
        waiter.await.unwrap_or(false),
        "woken when the leader is done"
    );
    assert!(matches!(store.flight(&key), Flight::Lead(_)));
}
