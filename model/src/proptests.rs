//! Property tests: parsing and validation never panic, whatever the input, and every spec
//! survives a round trip through both serialized forms.

use proptest::prelude::*;

use crate::parse::{from_any, from_json, from_toml};
use crate::spec::*;
use crate::validate::validate;

/// Strings that are sometimes valid names, addresses or domains, and often not.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}",
        "(127\\.0\\.0\\.[0-9]{1,3}|::1|\\[::1\\]):[0-9]{1,6}",
        "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
        "([a-z]{1,5}\\.){0,3}[a-z]{1,5}\\.?",
        "\\*\\.[a-z]{1,5}\\.test",
        "@",
        ".{0,12}",
    ]
}

prop_compose! {
    fn member()(address in text(), weight in 0u32..2000) -> MemberSpec {
        MemberSpec { address, weight, state: AdminState::Enabled }
    }
}

prop_compose! {
    fn pool()(name in text(), members in prop::collection::vec(member(), 0..4),
              health_check in prop::option::of(text()), timeout_ms in 0u64..100_000) -> PoolSpec {
        PoolSpec { name, members, health_check, timeout_ms, ..Default::default() }
    }
}

prop_compose! {
    fn record()(name in text(), t in 0usize..5, ttl in any::<u32>(), value in text()) -> RecordSpec {
        let rtype = [RecordType::A, RecordType::AAAA, RecordType::CNAME, RecordType::TXT, RecordType::MX][t];
        RecordSpec { name, rtype, ttl, value }
    }
}

prop_compose! {
    fn zone()(name in text(), mname in text(), rname in text(), ns in prop::collection::vec(text(), 0..3),
              records in prop::collection::vec(record(), 0..6)) -> ZoneSpec {
        ZoneSpec {
            name,
            soa: SoaSpec { mname, rname, refresh: 1, retry: 1, expire: 1, minimum: 1, ttl: 1 },
            ns,
            records,
            secondaries: Vec::new(),
        }
    }
}

prop_compose! {
    fn site()(name in text(), address in text(), port in any::<u16>(), health_check in prop::option::of(text())) -> SiteSpec {
        SiteSpec { name, address, port, health_check, state: AdminState::Enabled, priority: 1, weight: 1, region: None, location: None, capacity: None, cname: None }
    }
}

prop_compose! {
    fn spec()(
        listeners in prop::collection::vec((text(), text()), 0..3),
        routes in prop::collection::vec((text(), text(), prop::option::of(text()), text(), text()), 0..3),
        pools in prop::collection::vec(pool(), 0..3),
        checks in prop::collection::vec((text(), text(), 0u64..10_000, 0u64..10_000, 0u32..200, 0u32..200, 0u16..1000), 0..3),
        zones in prop::collection::vec(zone(), 0..2),
        gslb in prop::collection::vec((text(), any::<u32>(), prop::collection::vec(site(), 0..3)), 0..2),
    ) -> ConfigSpec {
        ConfigSpec {
            api_version: API_VERSION.into(),
            listeners: listeners.into_iter().map(|(name, bind)| ListenerSpec { name, bind, protocol: ListenerProtocol::Http, ..Default::default() }).collect(),
            routes: routes.into_iter().map(|(name, listener, host, path_prefix, pool)| RouteSpec { name, listener, host, path_prefix, pool, ..Default::default() }).collect(),
            pools,
            health_checks: checks.into_iter().map(|(name, path, interval_ms, timeout_ms, rise, fall, expect_status)| HealthCheckSpec {
                name, path, host: None, interval_ms, timeout_ms, rise, fall, expect_status,
                protocol: CheckProtocol::Http, expect_body: None, ca_pem: None,
            }).collect(),
            zones,
            gslb_records: gslb.into_iter().map(|(name, ttl, sites)| GslbRecordSpec { name, ttl, sites, when_all_down: AllDownPolicy::Empty, policy: GslbPolicy::All, max_answers: None, steer: Steer::None, fallback: Vec::new() }).collect(),
            regions: Vec::new(),
            dns: None,
            audit_retention_days: None,
            certificate_expiry_alarm_days: None,
            session_ticket_rotation_hours: None,
        }
    }
}

prop_compose! {
    /// Configs that are valid by construction: distinct names, real addresses, references that
    /// resolve.
    fn valid_spec()(
        pools in prop::collection::btree_map("[a-z]{1,8}", prop::collection::btree_set(1u16..60000, 1..4), 1..4),
        weights in prop::collection::vec(1u32..1000, 4),
        port in 1024u16..60000,
        ttl in 0u32..86_400,
    ) -> ConfigSpec {
        let pools: Vec<PoolSpec> = pools.into_iter().map(|(name, ports)| PoolSpec {
            name,
            members: ports.into_iter().enumerate().map(|(i, p)| MemberSpec {
                address: format!("127.0.0.1:{p}"),
                weight: weights[i % weights.len()],
                state: AdminState::Enabled,
            }).collect(),
            health_check: Some("hc".into()),
            timeout_ms: 1000,
            ..Default::default()
        }).collect();
        let routes = pools.iter().map(|p| RouteSpec {
            name: format!("r-{}", p.name),
            listener: "web".into(),
            host: Some(format!("{}.example.com", p.name)),
            path_prefix: "/".into(),
            pool: p.name.clone(),
            ..Default::default()
        }).collect();
        ConfigSpec {
            api_version: API_VERSION.into(),
            listeners: vec![ListenerSpec { name: "web".into(), bind: format!("127.0.0.1:{port}"), protocol: ListenerProtocol::Http, ..Default::default() }],
            routes,
            pools,
            health_checks: vec![HealthCheckSpec {
                name: "hc".into(), path: "/healthz".into(), host: None, interval_ms: 1000,
                timeout_ms: 500, rise: 2, fall: 3, expect_status: 200,
                protocol: CheckProtocol::Http, expect_body: None, ca_pem: None,
            }],
            zones: vec![ZoneSpec {
                name: "example.com".into(),
                soa: SoaSpec { mname: "ns1".into(), rname: "hostmaster".into(), refresh: 1, retry: 1, expire: 1, minimum: 1, ttl },
                ns: vec!["ns1".into()],
                records: vec![RecordSpec { name: "ns1".into(), rtype: RecordType::A, ttl, value: "192.0.2.1".into() }],
                secondaries: Vec::new(),
            }],
            gslb_records: vec![GslbRecordSpec {
                name: "app.example.com".into(),
                ttl,
                sites: vec![SiteSpec { name: "a".into(), address: "192.0.2.10".into(), port: 80, health_check: Some("hc".into()), state: AdminState::Enabled, priority: 1, weight: 1, region: None, location: None, capacity: None, cname: None }],
                when_all_down: AllDownPolicy::All,
                policy: GslbPolicy::All,
                max_answers: None,
                steer: Steer::None,
                fallback: Vec::new(),
            }],
            regions: Vec::new(),
            dns: None,
            audit_retention_days: None,
            certificate_expiry_alarm_days: None,
            session_ticket_rotation_hours: None,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn configs_valid_by_construction_validate(s in valid_spec()) {
        let c = validate(&s);
        prop_assert!(c.is_ok(), "{:?}", c.err());
    }

    #[test]
    fn validation_never_panics_and_errors_have_paths(s in spec()) {
        match validate(&s) {
            Ok(c) => {
                prop_assert_eq!(c.pools.len(), s.pools.len());
                prop_assert_eq!(c.listeners.len(), s.listeners.len());
            }
            Err(e) => {
                prop_assert!(!e.errors.is_empty());
                for err in &e.errors {
                    prop_assert!(!err.message.is_empty());
                    let top = err.path.split(['.', '[']).next().unwrap_or("");
                    prop_assert!(
                        ["api_version", "listeners", "routes", "pools", "health_checks", "zones", "gslb_records"].contains(&top),
                        "error without a field path: {:?}", err
                    );
                }
            }
        }
    }

    #[test]
    fn specs_round_trip_through_json_and_toml(s in spec()) {
        let json = serde_json::to_vec(&s).expect("serialize json");
        prop_assert_eq!(from_json::<ConfigSpec>(&json).expect("parse json"), s.clone());
        let text = toml::to_string(&s).expect("serialize toml");
        prop_assert_eq!(from_toml::<ConfigSpec>(&text).expect("parse toml"), s);
    }

    #[test]
    fn parsing_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = from_any::<ConfigSpec>(&bytes);
        let _ = from_json::<ConfigSpec>(&bytes);
    }
}
