//! The handler driven directly, without sockets: requests decoded from bytes, responses captured
//! by a fake `ResponseHandler` and decoded again.

use std::net::{IpAddr, SocketAddr};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use model::AllDownPolicy;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::gslb::tests::{record, FakeHealth};
use crate::snapshot::tests::config;
use crate::udp::Capture;

/// A handler on `config`, response-rate limiting off unless the config sets it.
fn handler(config: &model::Config, health: Arc<FakeHealth>) -> Handler {
    let mut config = config.clone();
    if config.spec.dns.is_none() {
        config.spec.dns = Some(model::DnsSpec {
            rate_limit: Some(model::DnsRateLimitSpec {
                responses_per_second: 0,
                ..Default::default()
            }),
        });
    }
    let snapshot = ZonesSnapshot::compile(&config, 1).expect("compiles");
    Handler {
        snapshot: Arc::new(ArcSwap::from_pointee(snapshot)),
        health,
        metrics: DnsMetrics::new(&prometheus::Registry::new()).expect("metrics"),
        rates: crate::rrl::RateTable::default(),
        keys: crate::TsigKeyStore::default(),
    }
}

/// `None` when hickory's server would not even have called the handler (unparseable request).
async fn ask(handler: &Handler, bytes: &[u8]) -> Option<(ResponseInfo, Message)> {
    let src: SocketAddr = ([127, 0, 0, 1], 5353).into();
    let request = Request::from_bytes(bytes.to_vec(), src, Protocol::Udp).ok()?;
    let capture = Capture::new(512);
    let info = handler
        .handle_request::<_, TokioTime>(&request, capture.clone())
        .await;
    let bytes = capture.take().expect("a response was sent");
    let message = Message::from_vec(&bytes).expect("our responses always decode");
    assert_eq!(message.metadata.id, request.metadata.id);
    Some((info, message))
}

fn query_bytes(name: &str, rtype: RecordType) -> Vec<u8> {
    let mut message = Message::query();
    message.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
    message.to_vec().expect("encodes")
}

#[tokio::test]
async fn random_and_mutated_requests_never_panic() {
    let handler = handler(&config(), Arc::default());
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let seeds = [
        query_bytes("www.example.com.", RecordType::A),
        query_bytes("app.example.com.", RecordType::ANY),
        query_bytes("alias.example.com.", RecordType::MX),
    ];
    let mut answered = 0;
    for i in 0..4_000 {
        let bytes: Vec<u8> = if i % 2 == 0 {
            let len = rng.gen_range(0..200);
            (0..len).map(|_| rng.gen()).collect()
        } else {
            let mut bytes = seeds[i % seeds.len()].clone();
            for _ in 0..rng.gen_range(1..6) {
                let at = rng.gen_range(0..bytes.len());
                bytes[at] = rng.gen();
            }
            if rng.gen_bool(0.2) {
                bytes.truncate(rng.gen_range(0..=bytes.len()));
            }
            bytes
        };
        if ask(&handler, &bytes).await.is_some() {
            answered += 1;
        }
    }
    assert!(
        answered > 100,
        "mutations should mostly still parse: {answered}"
    );
}

#[tokio::test]
async fn response_messages_and_multi_question_requests_get_formerr() {
    let handler = handler(&config(), Arc::default());
    let mut message = Message::query();
    message.metadata.message_type = MessageType::Response;
    message.add_query(Query::query(
        Name::from_ascii("example.com.").expect("name"),
        RecordType::A,
    ));
    let (info, _) = ask(&handler, &message.to_vec().expect("encodes"))
        .await
        .expect("parses");
    assert_eq!(info.response_code, ResponseCode::FormErr);

    let mut message = Message::query();
    for _ in 0..2 {
        let name = Name::from_ascii("example.com.").expect("name");
        message.add_query(Query::query(name, RecordType::A));
    }
    let (info, _) = ask(&handler, &message.to_vec().expect("encodes"))
        .await
        .expect("parses");
    assert_eq!(info.response_code, ResponseCode::FormErr);

    let mut chaos = Query::query(
        Name::from_ascii("version.bind.").expect("name"),
        RecordType::TXT,
    );
    chaos.set_query_class(hickory_proto::rr::DNSClass::CH);
    let mut message = Message::query();
    message.add_query(chaos);
    let (info, _) = ask(&handler, &message.to_vec().expect("encodes"))
        .await
        .expect("parses");
    assert_eq!(info.response_code, ResponseCode::Refused);
}

/// Property: a GSLB answer holds exactly the healthy sites of the asked family, unless every
/// site is down, where the policy decides (nothing, or every site of the family).
#[tokio::test]
async fn gslb_answers_only_healthy_targets() {
    let mut rng = StdRng::seed_from_u64(7);
    let addresses = [
        "192.0.2.1",
        "192.0.2.2",
        "192.0.2.3",
        "2001:db8::1",
        "2001:db8::2",
    ];
    for _ in 0..300 {
        let policy = if rng.gen() {
            AllDownPolicy::All
        } else {
            AllDownPolicy::Empty
        };
        let mut sites: Vec<(String, &str, bool)> = Vec::new();
        for (i, addr) in addresses.iter().enumerate() {
            if rng.gen_bool(0.7) {
                sites.push((format!("s{i}"), *addr, rng.gen_bool(0.8)));
            }
        }
        let site_refs: Vec<(&str, &str, bool)> =
            sites.iter().map(|(n, a, c)| (n.as_str(), *a, *c)).collect();
        let gslb = record(policy, &site_refs);
        let mut config = config();
        config.gslb_records = vec![gslb.clone()];
        let health = Arc::new(FakeHealth::default());
        let mut healthy = Vec::new();
        for (name, addr, checked) in &sites {
            let up = rng.gen_bool(0.5);
            if rng.gen_bool(0.9) {
                health.set(&gslb.name, name, up);
            }
            let up = !checked
                || health.is_healthy(&model::site_health_key(&gslb.name, name)) != Some(false);
            healthy.push((addr.parse::<IpAddr>().expect("ip"), up));
        }
        let handler = handler(&config, health);
        let all_down = healthy.iter().all(|(_, up)| !up);
        for (rtype, v4) in [(RecordType::A, true), (RecordType::AAAA, false)] {
            let (_, response) = ask(&handler, &query_bytes("app.example.com.", rtype))
                .await
                .expect("parses");
            let mut got: Vec<IpAddr> = response
                .answers
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })
                .collect();
            got.sort();
            let mut want: Vec<IpAddr> = healthy
                .iter()
                .filter(|(ip, up)| {
                    ip.is_ipv4() == v4 && (*up || (all_down && policy == AllDownPolicy::All))
                })
                .map(|(ip, _)| *ip)
                .collect();
            want.sort();
            assert_eq!(got, want, "{policy:?} {sites:?} {healthy:?}");
            assert_eq!(response.metadata.response_code, ResponseCode::NoError);
            assert!(response.metadata.authoritative);
            assert_eq!(response.authorities.len(), usize::from(got.is_empty()));
        }
    }
}

/// A query for `name` carrying an EDNS Client Subnet option of raw `ecs` bytes (family, source
/// prefix, scope prefix, address).
fn ecs_query(name: &str, ecs: &[u8]) -> Vec<u8> {
    let mut bytes = query_bytes(name, RecordType::A);
    // ARCOUNT = 1, then an OPT record: root name, type 41, class 1232, TTL 0, one option.
    bytes[11] = 1;
    bytes.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
    let rdlen = u16::try_from(4 + ecs.len()).expect("small");
    bytes.extend_from_slice(&rdlen.to_be_bytes());
    bytes.extend_from_slice(&[0, 8]);
    bytes.extend_from_slice(&u16::try_from(ecs.len()).expect("small").to_be_bytes());
    bytes.extend_from_slice(ecs);
    bytes
}

fn geo_config() -> model::Config {
    let mut config = config();
    let mut gslb = record(
        AllDownPolicy::Empty,
        &[("east", "192.0.2.1", false), ("west", "192.0.2.2", false)],
    );
    gslb.steer = model::Steer::Geo;
    gslb.sites[0].region = Some(0);
    gslb.sites[1].region = Some(1);
    config.gslb_records = vec![gslb];
    for (name, net) in [("east", "198.51.100.0/24"), ("west", "203.0.113.0/24")] {
        config.regions.push(model::Region {
            name: name.into(),
            countries: Vec::new(),
            continents: Vec::new(),
            networks: vec![model::Cidr::parse(net).expect("cidr")],
            location: None,
            spill_to: Vec::new(),
        });
    }
    config
}

fn echoed(response: &Message) -> Option<(IpAddr, u8, u8)> {
    match response.edns.as_ref()?.option(EdnsCode::Subnet)? {
        EdnsOption::Subnet(s) => Some((s.addr(), s.source_prefix(), s.scope_prefix())),
        _ => None,
    }
}

fn a_records(response: &Message) -> Vec<IpAddr> {
    response
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn client_subnet_steers_and_is_echoed_with_the_scope_used() {
    let handler = handler(&geo_config(), Arc::new(FakeHealth::default()));
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    // 198.51.100.0/24 is east: the answer holds for the whole /24.
    let (_, r) = ask(
        &handler,
        &ecs_query("app.example.com.", &[0, 1, 24, 0, 198, 51, 100]),
    )
    .await
    .expect("parses");
    assert_eq!(a_records(&r), vec![ip("192.0.2.1")]);
    assert_eq!(echoed(&r), Some((ip("198.51.100.0"), 24, 24)));
    let (_, r) = ask(
        &handler,
        &ecs_query("app.example.com.", &[0, 1, 24, 0, 203, 0, 113]),
    )
    .await
    .expect("parses");
    assert_eq!(a_records(&r), vec![ip("192.0.2.2")]);
    // Elsewhere: both, and the scope says how much of the address that took.
    let (_, r) = ask(
        &handler,
        &ecs_query("app.example.com.", &[0, 1, 24, 0, 8, 8, 8]),
    )
    .await
    .expect("parses");
    assert_eq!(a_records(&r).len(), 2);
    assert_eq!(echoed(&r).map(|e| (e.1, e.2)), Some((24, 1)));
    // A static name does not depend on the client: scope 0.
    let (_, r) = ask(
        &handler,
        &ecs_query("www.example.com.", &[0, 1, 24, 0, 198, 51, 100]),
    )
    .await
    .expect("parses");
    assert_eq!(echoed(&r), Some((ip("198.51.100.0"), 24, 0)));
    // Source prefix 0: the client asks not to be steered.
    let (_, r) = ask(&handler, &ecs_query("app.example.com.", &[0, 1, 0, 0]))
        .await
        .expect("parses");
    assert_eq!(a_records(&r).len(), 2);
    assert_eq!(echoed(&r).map(|e| e.2), Some(0));
    // No ECS: the resolver's own address (127.0.0.1, in no region) steers, nothing is echoed.
    let (_, r) = ask(&handler, &query_bytes("app.example.com.", RecordType::A))
        .await
        .expect("parses");
    assert_eq!(a_records(&r).len(), 2);
    assert!(r.edns.is_none());
}

#[tokio::test]
async fn malformed_client_subnets_get_formerr_or_are_not_parsed() {
    let handler = handler(&geo_config(), Arc::new(FakeHealth::default()));
    // Address bits set past the source prefix.
    let (info, _) = ask(
        &handler,
        &ecs_query("app.example.com.", &[0, 1, 20, 0, 198, 51, 100]),
    )
    .await
    .expect("parses");
    assert_eq!(info.response_code, ResponseCode::FormErr);
    // A prefix longer than the family, an unknown family, a truncated option: never answered
    // as if valid (hickory's server answers FORMERR for requests it cannot parse).
    for ecs in [
        &[0, 1, 33, 0, 1, 2, 3, 4, 5][..],
        &[0, 3, 8, 0, 1],
        &[0, 1],
        &[0, 2, 129, 0],
    ] {
        if let Some((info, _)) = ask(&handler, &ecs_query("app.example.com.", ecs)).await {
            assert_eq!(info.response_code, ResponseCode::FormErr, "{ecs:?}");
        }
    }
}

#[tokio::test]
async fn over_the_rate_udp_responses_slip_truncated_or_are_dropped_and_updates_are_refused() {
    let mut config = config();
    config.spec.dns = Some(model::DnsSpec {
        rate_limit: Some(model::DnsRateLimitSpec {
            responses_per_second: 2,
            slip: 2,
            ..Default::default()
        }),
    });
    let handler = handler(&config, Arc::new(FakeHealth::default()));
    let query = query_bytes("www.example.com.", RecordType::A);
    let mut seen = Vec::new();
    for _ in 0..4 {
        let src: SocketAddr = ([192, 0, 2, 9], 5353).into();
        let request = Request::from_bytes(query.clone(), src, Protocol::Udp).expect("parses");
        let capture = Capture::new(512);
        handler
            .handle_request::<_, TokioTime>(&request, capture.clone())
            .await;
        let sent = capture.take();
        seen.push(sent.map(|b| {
            let m = Message::from_vec(&b).expect("decodes");
            (m.metadata.truncation, m.answers.len())
        }));
    }
    // Two answers, then one dropped, then one truncated and empty.
    assert_eq!(
        seen,
        vec![Some((false, 1)), Some((false, 1)), None, Some((true, 0))]
    );

    let mut update = Message::query();
    update.metadata.op_code = hickory_proto::op::OpCode::Update;
    update.add_query(Query::query(
        Name::from_ascii("example.com.").expect("name"),
        RecordType::SOA,
    ));
    let (info, _) = ask(&handler, &update.to_vec().expect("encodes"))
        .await
        .expect("parses");
    assert_eq!(info.response_code, ResponseCode::Refused);
}
