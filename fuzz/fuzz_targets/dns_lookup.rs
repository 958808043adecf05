//! DNS queries arrive from anyone on UDP and TCP port 53. For any bytes that hickory parses as a
//! message with a question, answering from a compiled snapshot must not panic, and the response
//! built from the answer must encode and decode again, under any mix of site health, for any
//! client subnet (every steering policy and the persistent hash see it). For any bytes at all,
//! the UDP fast path must not panic, and whatever it answers must decode, carry the query's ID
//! and agree with the reference lookup.
#![no_main]

use std::sync::OnceLock;

use std::net::IpAddr;

use gslb_dns::{ClientSubnet, ZonesSnapshot};
use hickory_proto::op::{Edns, Message, Metadata};
use libfuzzer_sys::fuzz_target;
use model::HealthView;

/// One zone with every static record type, CNAME chains that leave the zones and cross into a
/// nested zone (validation refuses loops), and GSLB names whose sites' health the input decides.
const CONFIG: &str = r#"
api_version = "meridian/v1"

[[health_checks]]
name = "http"

[[zones]]
name = "example.com"
ns = ["ns1.example.com.", "ns.elsewhere.net."]
soa = { mname = "ns1.example.com.", rname = "hostmaster.example.com." }
records = [
    { name = "ns1", type = "A", value = "192.0.2.53" },
    { name = "www", type = "A", value = "192.0.2.10" },
    { name = "www", type = "AAAA", value = "2001:db8::10" },
    { name = "alias", type = "CNAME", value = "www.example.com." },
    { name = "to-app", type = "CNAME", value = "app" },
    { name = "to-sub", type = "CNAME", value = "host.sub.example.com." },
    { name = "outside", type = "CNAME", value = "www.example.net." },
    { name = "@", type = "MX", value = "10 ns1.example.com." },
    { name = "@", type = "MX", value = "20 mail.elsewhere.net." },
    { name = "@", type = "TXT", value = "v=spf1 -all" },
    { name = "deep.ent", type = "TXT", value = "leaf" },
    { name = "*.wild", type = "A", value = "192.0.2.80" },
    { name = "_sip._tcp", type = "SRV", value = "10 5 5060 www" },
    { name = "@", type = "CAA", value = "0 issue \"letsencrypt.org\"" },
    { name = "10.2", type = "PTR", value = "www" },
    { name = "child", type = "NS", value = "ns.child" },
    { name = "ns.child", type = "A", value = "192.0.2.99" },
]

[[regions]]
name = "east"
networks = ["198.51.100.0/24", "10.0.0.0/8"]
location = "40.7,-74.0"
spill_to = ["west"]

[[regions]]
name = "west"
networks = ["203.0.113.0/24", "10.1.0.0/16", "2001:db8::/32"]
location = "37.8,-122.4"

[[zones]]
name = "sub.example.com"
soa = { mname = "ns1.example.com.", rname = "hostmaster.example.com.", minimum = 5 }
records = [
    { name = "host", type = "AAAA", value = "2001:db8::53" },
    { name = "back", type = "CNAME", value = "alias.example.com." },
]

[[gslb_records]]
name = "app.example.com"
ttl = 15
sites = [
    { name = "east", address = "192.0.2.1", health_check = "http" },
    { name = "west", address = "192.0.2.2", health_check = "http" },
]

[[gslb_records]]
name = "mixed.example.com"
when_all_down = "all"
sites = [
    { name = "v4", address = "192.0.2.3", health_check = "http" },
    { name = "v6", address = "2001:db8::3", health_check = "http" },
    { name = "static", address = "192.0.2.4" },
]

[[gslb_records]]
name = "geo.example.com"
steer = "geo"
policy = "failover"
sites = [
    { name = "east", address = "192.0.2.1", health_check = "http", region = "east" },
    { name = "west", address = "192.0.2.2", health_check = "http", region = "west", priority = 2 },
]

[[gslb_records]]
name = "near.example.com"
steer = "nearest"
policy = "persistent"
when_all_down = "fallback"
fallback = ["198.51.100.99"]
sites = [
    { name = "east", address = "192.0.2.1", health_check = "http", region = "east" },
    { name = "west", address = "192.0.2.2", health_check = "http", region = "west", weight = 3 },
]

[[gslb_records]]
name = "spread.example.com"
policy = "weighted"
when_all_down = "servfail"
max_answers = 1
sites = [
    { name = "east", address = "192.0.2.1", health_check = "http", weight = 2 },
    { name = "west", address = "192.0.2.2", health_check = "http" },
]
"#;

fn snapshot() -> &'static ZonesSnapshot {
    static SNAPSHOT: OnceLock<ZonesSnapshot> = OnceLock::new();
    SNAPSHOT.get_or_init(|| {
        let spec: model::ConfigSpec = model::parse::from_toml(CONFIG).expect("fuzz config parses");
        let config = model::validate(&spec).expect("fuzz config validates");
        ZonesSnapshot::compile(&config, 7).expect("fuzz config compiles")
    })
}

/// Health from one input byte, two bits per site: 0 never observed, 1 healthy, 2-3 down.
struct ByteHealth(u8);

impl HealthView for ByteHealth {
    fn is_healthy(&self, key: &str) -> Option<bool> {
        let shift = match key.rsplit('/').next() {
            Some("east") | Some("v4") => 0,
            Some("west") | Some("v6") => 2,
            _ => 4,
        };
        match (self.0 >> shift) & 0b11 {
            0 => None,
            1 => Some(true),
            _ => Some(false),
        }
    }
}

/// A client subnet from the input's last bytes: address family, prefix and address.
fn client(data: &[u8]) -> Option<ClientSubnet> {
    let tail = data.len().checked_sub(18)?;
    let t = &data[tail..];
    let addr = if t[0] & 1 == 0 {
        IpAddr::from([t[2], t[3], t[4], t[5]])
    } else {
        let mut v6 = [0u8; 16];
        v6.copy_from_slice(&t[2..18]);
        IpAddr::from(v6)
    };
    Some(ClientSubnet {
        addr,
        prefix: t[1],
    })
}

fuzz_target!(|data: &[u8]| {
    // The fast path takes any bytes: whatever it answers must decode, keep the query's ID and
    // agree with the reference lookup.
    let health = ByteHealth(data.get(1).copied().unwrap_or(0));
    let src = IpAddr::from([198, 51, 100, data.get(3).copied().unwrap_or(7)]);
    if let Some(fast) = snapshot().fast_response(data, src, &health) {
        let decoded = Message::from_vec(&fast).expect("fast answers decode");
        let request = Message::from_vec(data).expect("the fast path answers only queries that parse");
        assert_eq!(decoded.metadata.id, request.metadata.id);
        let q = &request.queries[0];
        let reference = snapshot().lookup_for(
            q.name(),
            q.query_type(),
            &health,
            Some(&ClientSubnet::host(src)),
        );
        assert_eq!(decoded.metadata.response_code, reference.rcode);
        assert_eq!(decoded.answers.len(), reference.answers.len());
    }

    let Ok(request) = Message::from_vec(data) else {
        return;
    };
    let Some(query) = request.queries.first() else {
        return;
    };
    // The low byte of the message id: free for the fuzzer to vary without changing the parse.
    let answer = snapshot().lookup_for(
        query.name(),
        query.query_type(),
        &health,
        client(data).as_ref(),
    );
    assert!(answer.ecs_scope <= 128);

    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata = Metadata::response_from_request(&request.metadata);
    response.metadata.response_code = answer.rcode;
    response.metadata.authoritative = answer.authoritative;
    response.add_query(query.clone());
    response.add_answers(answer.answers.iter().cloned());
    response.add_authorities(answer.authorities.iter().cloned());
    response.add_additionals(answer.additionals.iter().cloned());
    if let Some(req_edns) = &request.edns {
        let mut edns = Edns::new();
        edns.set_max_payload(req_edns.max_payload().clamp(512, 1232));
        response.set_edns(edns);
    }

    let bytes = match response.to_vec() {
        Ok(bytes) => bytes,
        Err(err) => panic!("response does not encode: {err}\nquery: {query:?}\nanswer: {answer:?}"),
    };
    let decoded = match Message::from_vec(&bytes) {
        Ok(decoded) => decoded,
        Err(err) => {
            panic!("encoded response does not decode: {err}\nquery: {query:?}\nanswer: {answer:?}")
        }
    };
    assert_eq!(decoded.metadata.response_code, answer.rcode);
    assert_eq!(decoded.answers.len(), answer.answers.len());
    assert_eq!(decoded.authorities.len(), answer.authorities.len());
    assert_eq!(decoded.additionals.len(), answer.additionals.len());
});
