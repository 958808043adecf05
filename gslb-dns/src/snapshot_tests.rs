use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::rdata::SOA;
use model::{AllDownPolicy, Record as ModelRecord, SoaSpec};

use super::*;
use crate::gslb::tests::{record as gslb_record, FakeHealth};

fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("test name")
}

fn rec(name: &str, data: RecordData) -> ModelRecord {
    ModelRecord {
        name: name.into(),
        ttl: 300,
        data,
    }
}

pub(crate) fn zone(origin: &str, records: Vec<ModelRecord>) -> Zone {
    Zone {
        origin: origin.into(),
        soa: SoaSpec {
            mname: format!("ns1.{origin}"),
            rname: format!("hostmaster.{origin}"),
            refresh: 3600,
            retry: 600,
            expire: 604_800,
            minimum: 60,
            ttl: 300,
        },
        mname: format!("ns1.{origin}"),
        rname: format!("hostmaster.{origin}"),
        ns: vec![format!("ns1.{origin}")],
        records,
        secondaries: Vec::new(),
    }
}

pub(crate) fn config() -> Config {
    let mut config = Config::empty();
    config.zones.push(zone(
        "example.com.",
        vec![
            rec(
                "ns1.example.com.",
                RecordData::A(Ipv4Addr::new(192, 0, 2, 53)),
            ),
            rec(
                "www.example.com.",
                RecordData::A(Ipv4Addr::new(192, 0, 2, 10)),
            ),
            rec("www.example.com.", RecordData::AAAA(Ipv6Addr::LOCALHOST)),
            rec(
                "alias.example.com.",
                RecordData::CNAME("www.example.com.".into()),
            ),
            rec(
                "out.example.com.",
                RecordData::CNAME("www.elsewhere.net.".into()),
            ),
            rec(
                "loop1.example.com.",
                RecordData::CNAME("loop2.example.com.".into()),
            ),
            rec(
                "loop2.example.com.",
                RecordData::CNAME("loop1.example.com.".into()),
            ),
            rec(
                "dangling.example.com.",
                RecordData::CNAME("nope.example.com.".into()),
            ),
            rec("a.b.c.example.com.", RecordData::TXT("x".repeat(300))),
            rec(
                "example.com.",
                RecordData::MX {
                    preference: 10,
                    exchange: "ns1.example.com.".into(),
                },
            ),
        ],
    ));
    config.zones.push(zone("sub.example.com.", vec![]));
    config.gslb_records.push(gslb_record(
        AllDownPolicy::Empty,
        &[("east", "192.0.2.1", true), ("west", "192.0.2.2", true)],
    ));
    config
}

fn snapshot() -> ZonesSnapshot {
    ZonesSnapshot::compile(&config(), 42).expect("compiles")
}

#[test]
fn positive_answers_keep_query_case() {
    let snap = snapshot();
    let health = FakeHealth::default();
    let answer = snap.lookup(&name("WwW.Example.COM."), RecordType::A, &health);
    assert_eq!(answer.rcode, ResponseCode::NoError);
    assert!(answer.authoritative);
    assert_eq!(answer.answers.len(), 1);
    assert!(answer.answers[0].name.eq_case(&name("WwW.Example.COM.")));
    assert_eq!(
        answer.answers[0].data,
        RData::A(A(Ipv4Addr::new(192, 0, 2, 10)))
    );
    assert!(answer.authorities.is_empty());
}

#[test]
fn soa_serial_is_revision_and_mx_gets_glue() {
    let snap = snapshot();
    let health = FakeHealth::default();
    let soa = snap.lookup(&name("example.com."), RecordType::SOA, &health);
    let RData::SOA(SOA { serial, .. }) = soa.answers[0].data else {
        panic!("not an SOA: {soa:?}");
    };
    assert_eq!(serial, 42);
    let mx = snap.lookup(&name("example.com."), RecordType::MX, &health);
    assert_eq!(mx.answers.len(), 1);
    assert_eq!(mx.additionals.len(), 1, "glue for ns1");
    let ns = snap.lookup(&name("example.com."), RecordType::NS, &health);
    assert_eq!((ns.answers.len(), ns.additionals.len()), (1, 1));
    let wrapped = ZonesSnapshot::compile(&config(), u64::from(u32::MAX) + 3).expect("compiles");
    let soa = wrapped.lookup(&name("example.com."), RecordType::SOA, &health);
    assert!(matches!(
        soa.answers[0].data,
        RData::SOA(SOA { serial: 2, .. })
    ));
}

#[test]
fn negative_answers() {
    let snap = snapshot();
    let health = FakeHealth::default();
    let nx = snap.lookup(&name("nope.example.com."), RecordType::A, &health);
    assert_eq!(nx.rcode, ResponseCode::NXDomain);
    assert_eq!(nx.authorities.len(), 1);
    assert_eq!(nx.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(
        nx.authorities[0].ttl, 60,
        "negative TTL is min(ttl, minimum)"
    );

    let nodata = snap.lookup(&name("www.example.com."), RecordType::MX, &health);
    assert_eq!(
        (nodata.rcode, nodata.answers.len()),
        (ResponseCode::NoError, 0)
    );
    assert_eq!(nodata.authorities.len(), 1);

    for ent in ["b.c.example.com.", "c.example.com."] {
        let answer = snap.lookup(&name(ent), RecordType::A, &health);
        assert_eq!(
            answer.rcode,
            ResponseCode::NoError,
            "{ent} is an empty non-terminal"
        );
        assert_eq!((answer.answers.len(), answer.authorities.len()), (0, 1));
    }

    let refused = snap.lookup(&name("example.org."), RecordType::A, &health);
    assert_eq!(refused.rcode, ResponseCode::Refused);
    assert!(!refused.authoritative);
}

#[test]
fn longest_zone_wins() {
    let snap = snapshot();
    let health = FakeHealth::default();
    let answer = snap.lookup(&name("x.sub.example.com."), RecordType::A, &health);
    assert_eq!(answer.rcode, ResponseCode::NXDomain);
    assert_eq!(answer.authorities[0].name, name("sub.example.com."));
}

#[test]
fn cname_chains() {
    let snap = snapshot();
    let health = FakeHealth::default();
    let chased = snap.lookup(&name("ALIAS.example.com."), RecordType::A, &health);
    assert_eq!(chased.rcode, ResponseCode::NoError);
    let types: Vec<_> = chased.answers.iter().map(Record::record_type).collect();
    assert_eq!(types, [RecordType::CNAME, RecordType::A]);
    assert!(chased.answers[0].name.eq_case(&name("ALIAS.example.com.")));

    let direct = snap.lookup(&name("alias.example.com."), RecordType::CNAME, &health);
    assert_eq!(direct.answers.len(), 1);

    let out = snap.lookup(&name("out.example.com."), RecordType::A, &health);
    assert_eq!((out.rcode, out.answers.len()), (ResponseCode::NoError, 1));

    let dangling = snap.lookup(&name("dangling.example.com."), RecordType::A, &health);
    assert_eq!(
        (dangling.rcode, dangling.answers.len()),
        (ResponseCode::NXDomain, 1)
    );

    let looped = snap.lookup(&name("loop1.example.com."), RecordType::A, &health);
    assert_eq!(looped.rcode, ResponseCode::NoError);
    assert_eq!(looped.answers.len(), MAX_CNAME_CHAIN + 1);
}

#[test]
fn long_txt_is_split() {
    let snap = snapshot();
    let health = FakeHealth::default();
    let answer = snap.lookup(&name("a.b.c.example.com."), RecordType::TXT, &health);
    let RData::TXT(txt) = &answer.answers[0].data else {
        panic!("not TXT: {answer:?}");
    };
    let lens: Vec<_> = txt.txt_data.iter().map(|s| s.len()).collect();
    assert_eq!(lens, [255, 45]);
}

#[test]
fn gslb_follows_live_health() {
    let snap = snapshot();
    let health = FakeHealth::default();
    let app = name("app.example.com.");
    assert_eq!(snap.lookup(&app, RecordType::A, &health).answers.len(), 2);
    health.set("app.example.com.", "east", false);
    let answer = snap.lookup(&app, RecordType::A, &health);
    assert_eq!(answer.answers.len(), 1);
    assert_eq!(answer.answers[0].ttl, 30);
    health.set("app.example.com.", "west", false);
    let answer = snap.lookup(&app, RecordType::A, &health);
    assert_eq!(
        (answer.rcode, answer.answers.len()),
        (ResponseCode::NoError, 0)
    );
    assert_eq!(answer.authorities.len(), 1, "NODATA carries the SOA");
    let any = snap.lookup(&app, RecordType::AAAA, &health);
    assert_eq!(any.answers.len(), 0);
}

#[test]
fn any_returns_every_rrset() {
    let snap = snapshot();
    let health = FakeHealth::default();
    let answer = snap.lookup(&name("www.example.com."), RecordType::ANY, &health);
    assert_eq!(answer.answers.len(), 2);
    let apex = snap.lookup(&name("example.com."), RecordType::ANY, &health);
    assert_eq!(apex.answers.len(), 3, "SOA, NS, MX");
}

#[test]
fn compile_errors() {
    let mut bad = config();
    bad.gslb_records[0].zone = "missing.test.".into();
    assert!(matches!(
        ZonesSnapshot::compile(&bad, 1),
        Err(DnsError::UnknownZone { .. })
    ));
    let mut bad = config();
    bad.zones[0]
        .records
        .push(rec("www.other.test.", RecordData::A(Ipv4Addr::LOCALHOST)));
    assert!(matches!(
        ZonesSnapshot::compile(&bad, 1),
        Err(DnsError::OutOfZone { .. })
    ));
    let mut bad = config();
    bad.zones.push(zone("example.com.", vec![]));
    assert!(matches!(
        ZonesSnapshot::compile(&bad, 1),
        Err(DnsError::DuplicateZone(_))
    ));
    let mut bad = config();
    bad.zones[0].records.push(rec(
        &format!("{}.example.com.", "a".repeat(64)),
        RecordData::A(Ipv4Addr::LOCALHOST),
    ));
    assert!(matches!(
        ZonesSnapshot::compile(&bad, 1),
        Err(DnsError::InvalidName { .. })
    ));
}

fn rich_zone() -> ZonesSnapshot {
    let mut config = Config::empty();
    config.zones.push(zone(
        "example.net.",
        vec![
            rec(
                "ns1.example.net.",
                RecordData::A(Ipv4Addr::new(192, 0, 2, 53)),
            ),
            rec(
                "*.example.net.",
                RecordData::A(Ipv4Addr::new(192, 0, 2, 80)),
            ),
            rec("*.example.net.", RecordData::TXT("wild".into())),
            rec(
                "host.example.net.",
                RecordData::A(Ipv4Addr::new(192, 0, 2, 81)),
            ),
            rec("deep.ent.example.net.", RecordData::TXT("x".into())),
            // A delegation with in-bailiwick glue.
            rec(
                "child.example.net.",
                RecordData::NS("ns.child.example.net.".into()),
            ),
            rec(
                "child.example.net.",
                RecordData::NS("ns.elsewhere.org.".into()),
            ),
            rec(
                "ns.child.example.net.",
                RecordData::A(Ipv4Addr::new(192, 0, 2, 99)),
            ),
            rec(
                "_sip._tcp.example.net.",
                RecordData::SRV {
                    priority: 10,
                    weight: 5,
                    port: 5060,
                    target: "host.example.net.".into(),
                },
            ),
            rec(
                "example.net.",
                RecordData::CAA {
                    flags: 0,
                    tag: "issue".into(),
                    value: "letsencrypt.org".into(),
                },
            ),
            rec(
                "1.2.0.192.example.net.",
                RecordData::PTR("host.example.net.".into()),
            ),
        ],
    ));
    ZonesSnapshot::compile(&config, 7).expect("compiles")
}

#[test]
fn wildcards_answer_names_that_do_not_exist() {
    let snap = rich_zone();
    let health = FakeHealth::default();
    let a = snap.lookup(&name("Anything.example.net."), RecordType::A, &health);
    assert_eq!(a.rcode, ResponseCode::NoError);
    assert_eq!(a.answers.len(), 1);
    assert!(
        a.answers[0].name.eq_case(&name("Anything.example.net.")),
        "owner is the query name"
    );
    assert_eq!(a.answers[0].data, RData::A(A(Ipv4Addr::new(192, 0, 2, 80))));
    // Deeper names too: the closest encloser is the apex.
    let deep = snap.lookup(&name("a.b.example.net."), RecordType::TXT, &health);
    assert_eq!(deep.answers.len(), 1);
    // The wildcard has no MX: NODATA, not NXDOMAIN.
    let nodata = snap.lookup(&name("x.example.net."), RecordType::MX, &health);
    assert_eq!(
        (nodata.rcode, nodata.answers.len()),
        (ResponseCode::NoError, 0)
    );
    // Existing names (and empty non-terminals) are not wildcard-matched.
    let host = snap.lookup(&name("host.example.net."), RecordType::A, &health);
    assert_eq!(
        host.answers[0].data,
        RData::A(A(Ipv4Addr::new(192, 0, 2, 81)))
    );
    let ent = snap.lookup(&name("ent.example.net."), RecordType::A, &health);
    assert!(ent.answers.is_empty(), "an empty non-terminal exists");
    // Below an existing name with no wildcard of its own: NXDOMAIN.
    let nx = snap.lookup(&name("x.host.example.net."), RecordType::A, &health);
    assert_eq!(nx.rcode, ResponseCode::NXDomain);
}

#[test]
fn names_at_or_below_a_delegation_get_a_referral_with_glue() {
    let snap = rich_zone();
    let health = FakeHealth::default();
    for q in ["child.example.net.", "www.child.example.net."] {
        let r = snap.lookup(&name(q), RecordType::A, &health);
        assert_eq!(r.rcode, ResponseCode::NoError, "{q}");
        assert!(!r.authoritative, "a referral is not authoritative: {q}");
        assert!(r.answers.is_empty());
        assert_eq!(r.authorities.len(), 2, "both NS records");
        assert_eq!(
            r.additionals,
            vec![Record::from_rdata(
                name("ns.child.example.net."),
                300,
                RData::A(A(Ipv4Addr::new(192, 0, 2, 99)))
            )],
            "glue for the in-bailiwick server only"
        );
    }
    // DS at the cut is the parent's to answer (NODATA here: no DNSSEC).
    let ds = snap.lookup(&name("child.example.net."), RecordType::DS, &health);
    assert!(ds.authoritative);
    assert_eq!(ds.authorities.len(), 1, "SOA");
}

#[test]
fn srv_caa_and_ptr_answer_with_their_data() {
    let snap = rich_zone();
    let health = FakeHealth::default();
    let srv = snap.lookup(&name("_sip._tcp.example.net."), RecordType::SRV, &health);
    assert_eq!(srv.answers.len(), 1);
    assert_eq!(srv.additionals.len(), 1, "the target's address");
    let caa = snap.lookup(&name("example.net."), RecordType::CAA, &health);
    assert_eq!(caa.answers.len(), 1);
    assert!(
        caa.answers[0].data.to_string().contains("letsencrypt.org"),
        "{caa:?}"
    );
    let ptr = snap.lookup(&name("1.2.0.192.example.net."), RecordType::PTR, &health);
    assert_eq!(
        ptr.answers[0].data,
        RData::PTR(PTR(name("host.example.net.")))
    );
}

#[test]
fn gslb_sites_given_as_cnames_answer_the_picked_sites_target_and_chase_it() {
    let mut config = config();
    config.zones[0].records.push(rec(
        "lb-east.example.com.",
        RecordData::A(Ipv4Addr::new(198, 51, 100, 1)),
    ));
    let mut record = gslb_record(
        AllDownPolicy::Empty,
        &[("east", "192.0.2.1", true), ("west", "192.0.2.2", true)],
    );
    record.name = "cdn.example.com.".into();
    record.policy = model::GslbPolicy::Failover;
    record.sites[0].address = model::SiteAddress::Cname("lb-east.example.com.".into());
    record.sites[1].address = model::SiteAddress::Cname("edge.cdn-provider.net.".into());
    record.sites[1].priority = 2;
    config.gslb_records.push(record);
    let snap = ZonesSnapshot::compile(&config, 7).expect("compiles");
    let health = FakeHealth::default();
    let cdn = name("cdn.example.com.");

    // East is up: its target, chased inside our zone.
    let answer = snap.lookup(&cdn, RecordType::A, &health);
    assert_eq!(answer.rcode, ResponseCode::NoError);
    assert_eq!(answer.answers.len(), 2, "{:?}", answer.answers);
    assert_eq!(
        answer.answers[0].data,
        RData::CNAME(CNAME(name("lb-east.example.com.")))
    );
    assert_eq!(answer.answers[0].ttl, 30);
    assert_eq!(
        answer.answers[1].data,
        RData::A(A(Ipv4Addr::new(198, 51, 100, 1)))
    );
    // Any type gets the CNAME (AAAA: chased to NODATA at the target, the CNAME kept).
    let aaaa = snap.lookup(&cdn, RecordType::AAAA, &health);
    assert_eq!(aaaa.answers.len(), 1);
    assert_eq!(
        aaaa.authorities.len(),
        1,
        "the target's NODATA carries the SOA"
    );
    let cname = snap.lookup(&cdn, RecordType::CNAME, &health);
    assert_eq!(cname.answers.len(), 1);

    // East down: west's target, outside our zones, for the resolver to follow.
    health.set("cdn.example.com.", "east", false);
    let answer = snap.lookup(&cdn, RecordType::A, &health);
    assert_eq!(answer.answers.len(), 1);
    assert_eq!(
        answer.answers[0].data,
        RData::CNAME(CNAME(name("edge.cdn-provider.net.")))
    );
    // Both down (when_all_down = empty): NODATA, no CNAME.
    health.set("cdn.example.com.", "west", false);
    let answer = snap.lookup(&cdn, RecordType::A, &health);
    assert_eq!(
        (answer.rcode, answer.answers.len()),
        (ResponseCode::NoError, 0)
    );

    // The UDP fast path leaves it to the slow path, which decides per query.
    let query = {
        let mut m = hickory_proto::op::Message::query();
        m.add_query(hickory_proto::op::Query::query(cdn.clone(), RecordType::A));
        m.to_vec().expect("encode")
    };
    assert!(snap
        .fast_response(&query, "192.0.2.99".parse().expect("ip"), &health)
        .is_none());
}
