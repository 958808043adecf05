//! End-to-end tests of the DNS server on real sockets bound to `127.0.0.1:0`, driven by a DNS
//! client built from hickory-proto messages. Configuration goes through `model::validate`, the
//! same path the binary uses.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gslb_dns::{site_states, DnsMetrics, DnsServer};
use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, RecordType};
use model::{Config, ConfigSpec, HealthView, Revisioned};
use prometheus::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(2);

// === harness ===

#[derive(Default)]
struct FakeHealth(Mutex<HashMap<String, bool>>);

impl FakeHealth {
    fn set(&self, record: &str, site: &str, healthy: bool) {
        let key = model::site_health_key(record, site);
        self.0.lock().expect("health lock").insert(key, healthy);
    }
}

impl HealthView for FakeHealth {
    fn is_healthy(&self, key: &str) -> Option<bool> {
        self.0.lock().ok().and_then(|m| m.get(key).copied())
    }
}

struct Harness {
    udp: SocketAddr,
    tcp: SocketAddr,
    config: watch::Sender<Arc<Revisioned<Config>>>,
    health: Arc<FakeHealth>,
    registry: Registry,
    server: DnsServer,
}

fn spec(all_down: &str, www: &str) -> ConfigSpec {
    let json = serde_json::json!({
        "api_version": model::API_VERSION,
        "health_checks": [{ "name": "http" }],
        "zones": [{
            "name": "example.com",
            "soa": { "mname": "ns1.example.com.", "rname": "hostmaster.example.com." },
            "ns": ["ns1.example.com."],
            "records": [
                { "name": "ns1", "type": "A", "value": "192.0.2.53" },
                { "name": "www", "type": "A", "value": www },
                { "name": "www", "type": "AAAA", "value": "2001:db8::10" },
                { "name": "alias", "type": "CNAME", "value": "www.example.com." },
                { "name": "@", "type": "MX", "value": "10 ns1.example.com." },
                { "name": "@", "type": "TXT", "value": "v=spf1 -all" },
                { "name": "deep.ent", "type": "TXT", "value": "leaf" }
            ]
        }],
        "gslb_records": [{
            "name": "app.example.com",
            "ttl": 15,
            "when_all_down": all_down,
            "sites": [
                { "name": "east", "address": "192.0.2.1", "health_check": "http" },
                { "name": "west", "address": "192.0.2.2", "health_check": "http" }
            ]
        }]
    });
    serde_json::from_value(json).expect("spec parses")
}

fn config(all_down: &str, www: &str) -> Config {
    model::validate(&spec(all_down, www)).expect("spec validates")
}

impl Harness {
    async fn start(config: Config, revision: u64) -> Harness {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind tcp");
        let (udp_addr, tcp_addr) = (
            udp.local_addr().expect("udp addr"),
            tcp.local_addr().expect("tcp addr"),
        );
        let (tx, rx) = watch::channel(Arc::new(Revisioned {
            revision,
            value: config,
        }));
        let health = Arc::new(FakeHealth::default());
        let registry = Registry::new();
        let metrics = DnsMetrics::new(&registry).expect("metrics");
        let server = DnsServer::spawn(
            vec![udp],
            tcp,
            rx,
            health.clone(),
            metrics,
            None,
            Default::default(),
        )
        .expect("server spawns");
        Harness {
            udp: udp_addr,
            tcp: tcp_addr,
            config: tx,
            health,
            registry,
            server,
        }
    }

    async fn udp(&self, name: &str, rtype: RecordType) -> Message {
        let response = self
            .udp_raw(&query(name, rtype).to_vec().expect("encode"))
            .await;
        Message::from_vec(&response.expect("udp response")).expect("decode")
    }

    async fn tcp(&self, name: &str, rtype: RecordType) -> Message {
        let bytes = query(name, rtype).to_vec().expect("encode");
        let mut stream = TcpStream::connect(self.tcp).await.expect("connect");
        let response = timeout(WAIT, tcp_exchange(&mut stream, &bytes))
            .await
            .expect("tcp response in time")
            .expect("tcp exchange");
        Message::from_vec(&response).expect("decode")
    }

    /// Sends raw bytes over UDP; `None` when nothing comes back in a short while.
    async fn udp_raw(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind client");
        socket.send_to(bytes, self.udp).await.expect("send");
        let mut buf = vec![0; 65_535];
        let (n, _) = timeout(Duration::from_millis(300), socket.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        buf.truncate(n);
        Some(buf)
    }

    fn publish(&self, config: Config, revision: u64) {
        self.config.send_replace(Arc::new(Revisioned {
            revision,
            value: config,
        }));
    }

    fn counter(&self, rcode: &str, transport: &str) -> u64 {
        let families = self.registry.gather();
        families
            .iter()
            .filter(|f| f.name() == "meridian_dns_queries_total")
            .flat_map(|f| f.get_metric())
            .filter(|m| {
                let labels: HashMap<_, _> = m
                    .get_label()
                    .iter()
                    .map(|l| (l.name(), l.value()))
                    .collect();
                labels.get("rcode") == Some(&rcode) && labels.get("transport") == Some(&transport)
            })
            .map(|m| m.get_counter().value() as u64)
            .sum()
    }

    /// The value of an unlabelled counter or gauge.
    fn metric(&self, name: &str) -> i64 {
        let families = self.registry.gather();
        families
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric())
            .map(|m| (m.get_gauge().value() + m.get_counter().value()) as i64)
            .sum()
    }
}

fn query(name: &str, rtype: RecordType) -> Message {
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    // `from_ascii` keeps the case as given, so case-insensitivity is really exercised.
    message.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
    message
}

async fn tcp_exchange(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let len = u16::try_from(bytes.len()).expect("fits");
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(bytes).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut buf = vec![0; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

fn a_addrs(message: &Message) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = message
        .answers
        .iter()
        .filter_map(|r| match r.data {
            RData::A(A(v4)) => Some(IpAddr::V4(v4)),
            RData::AAAA(ref v6) => Some(IpAddr::V6(v6.0)),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn soa_serial(message: &Message) -> Option<u32> {
    message
        .answers
        .iter()
        .chain(&message.authorities)
        .find_map(|r| match &r.data {
            RData::SOA(SOA { serial, .. }) => Some(*serial),
            _ => None,
        })
}

// === tests ===

#[tokio::test]
async fn static_records_over_udp_and_tcp() {
    let h = Harness::start(config("empty", "192.0.2.10"), 7).await;

    for response in [
        h.udp("www.example.com.", RecordType::A).await,
        h.tcp("www.example.com.", RecordType::A).await,
    ] {
        assert_eq!(response.metadata.response_code, ResponseCode::NoError);
        assert!(response.metadata.authoritative);
        assert!(!response.metadata.recursion_available);
        assert_eq!(a_addrs(&response), [ip("192.0.2.10")]);
    }

    let aaaa = h.udp("www.example.com.", RecordType::AAAA).await;
    assert_eq!(a_addrs(&aaaa), [ip("2001:db8::10")]);

    let mx = h.udp("example.com.", RecordType::MX).await;
    assert!(mx.metadata.authoritative);
    assert!(matches!(&mx.answers[0].data, RData::MX(m) if m.preference == 10));
    assert_eq!(mx.additionals.len(), 1, "glue for the exchange");

    let txt = h.udp("example.com.", RecordType::TXT).await;
    assert!(matches!(&txt.answers[0].data, RData::TXT(t) if t.to_string() == "v=spf1 -all"));

    let cname = h.udp("alias.example.com.", RecordType::A).await;
    let types: Vec<_> = cname.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(types, [RecordType::CNAME, RecordType::A]);

    let soa = h.tcp("example.com.", RecordType::SOA).await;
    assert!(soa.metadata.authoritative);
    assert_eq!(soa_serial(&soa), Some(7));

    let ns = h.udp("example.com.", RecordType::NS).await;
    assert!(matches!(&ns.answers[0].data, RData::NS(n) if n.0.to_ascii() == "ns1.example.com."));

    let any = h.tcp("example.com.", RecordType::ANY).await;
    assert_eq!(any.answers.len(), 4, "SOA, NS, MX, TXT");
    // Over UDP, ANY is minimal (RFC 8482): one rrset, no amplification.
    let any = h.udp("example.com.", RecordType::ANY).await;
    assert_eq!(any.answers.len(), 1);
    assert!(any.metadata.authoritative);
    h.server.shutdown().await;
}

#[tokio::test]
async fn negative_answers_and_refusals() {
    let h = Harness::start(config("empty", "192.0.2.10"), 3).await;

    let nx = h.udp("missing.example.com.", RecordType::A).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert!(nx.metadata.authoritative);
    assert!(nx.answers.is_empty());
    assert_eq!(soa_serial(&nx), Some(3));

    let nodata = h.udp("www.example.com.", RecordType::MX).await;
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    assert_eq!(nodata.authorities.len(), 1);

    let ent = h.tcp("ent.example.com.", RecordType::A).await;
    assert_eq!(ent.metadata.response_code, ResponseCode::NoError);
    assert_eq!(ent.authorities.len(), 1, "empty non-terminal is NODATA");

    let refused = h.udp("example.org.", RecordType::A).await;
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    assert!(!refused.metadata.authoritative);

    let mut notify = query("example.com.", RecordType::SOA);
    notify.metadata.op_code = OpCode::Notify;
    let response = h.udp_raw(&notify.to_vec().expect("encode")).await;
    let response = Message::from_vec(&response.expect("notify answered")).expect("decode");
    assert_eq!(response.metadata.response_code, ResponseCode::NotImp);

    assert_eq!(h.counter("NXDOMAIN", "udp"), 1);
    assert_eq!(h.counter("NOERROR", "tcp"), 1);
    assert_eq!(h.counter("REFUSED", "udp"), 1);
    assert_eq!(h.counter("NOTIMP", "udp"), 1);
    assert_eq!(h.counter("NOERROR", "udp"), 1);
    assert_eq!(h.metric("meridian_dns_config_revision"), 3);
    h.server.shutdown().await;
}

#[tokio::test]
async fn matching_ignores_case_and_keeps_the_query_case() {
    let h = Harness::start(config("empty", "192.0.2.10"), 1).await;
    let response = h.udp("WwW.ExAmPlE.CoM.", RecordType::A).await;
    assert_eq!(a_addrs(&response), [ip("192.0.2.10")]);
    assert_eq!(response.answers[0].name.to_ascii(), "WwW.ExAmPlE.CoM.");
    assert_eq!(response.queries[0].name().to_ascii(), "WwW.ExAmPlE.CoM.");
    h.server.shutdown().await;
}

#[tokio::test]
async fn gslb_answers_follow_health() {
    let h = Harness::start(config("empty", "192.0.2.10"), 1).await;
    let name = "app.example.com.";

    let both = h.udp(name, RecordType::A).await;
    assert_eq!(a_addrs(&both), [ip("192.0.2.1"), ip("192.0.2.2")]);
    assert!(both.answers.iter().all(|r| r.ttl == 15));

    h.health.set(name, "east", false);
    assert_eq!(
        a_addrs(&h.udp(name, RecordType::A).await),
        [ip("192.0.2.2")]
    );
    assert_eq!(
        a_addrs(&h.tcp(name, RecordType::A).await),
        [ip("192.0.2.2")]
    );

    let states = site_states(&config("empty", "192.0.2.10"), &*h.health);
    assert_eq!(states[0].0, name);
    assert_eq!(
        states[0].1,
        [
            ("east".to_string(), "192.0.2.1".to_string(), false),
            ("west".to_string(), "192.0.2.2".to_string(), true)
        ]
    );

    h.health.set(name, "west", false);
    let empty = h.udp(name, RecordType::A).await;
    assert_eq!(empty.metadata.response_code, ResponseCode::NoError);
    assert!(empty.answers.is_empty());
    assert_eq!(empty.authorities.len(), 1, "NODATA with SOA");

    // Switching the policy to `all` answers every site while all are down.
    h.publish(config("all", "192.0.2.10"), 2);
    let mut all = Vec::new();
    for _ in 0..100 {
        all = a_addrs(&h.udp(name, RecordType::A).await);
        if !all.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(all, [ip("192.0.2.1"), ip("192.0.2.2")]);

    h.health.set(name, "west", true);
    assert_eq!(
        a_addrs(&h.udp(name, RecordType::A).await),
        [ip("192.0.2.2")]
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn new_revisions_apply_without_restart() {
    let h = Harness::start(config("empty", "192.0.2.10"), 10).await;
    assert_eq!(
        soa_serial(&h.udp("example.com.", RecordType::SOA).await),
        Some(10)
    );

    h.publish(config("empty", "192.0.2.99"), 11);
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = a_addrs(&h.udp("www.example.com.", RecordType::A).await);
        if seen == [ip("192.0.2.99")] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen, [ip("192.0.2.99")]);
    assert_eq!(
        soa_serial(&h.tcp("example.com.", RecordType::SOA).await),
        Some(11)
    );
    assert_eq!(h.metric("meridian_dns_config_revision"), 11);

    // A revision that does not compile (a GSLB record whose zone is gone) keeps the old answers.
    let mut broken = config("empty", "192.0.2.50");
    broken.gslb_records[0].zone = "gone.test.".into();
    h.publish(broken, 12);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        soa_serial(&h.udp("example.com.", RecordType::SOA).await),
        Some(11)
    );
    assert_eq!(h.metric("meridian_dns_config_compile_errors_total"), 1);
    assert_eq!(h.metric("meridian_dns_config_revision"), 11);
    let alarm = h.server.alarm().get().expect("a compile alarm");
    assert!(
        alarm.contains("revision 12") && alarm.contains("revision 11"),
        "{alarm}"
    );

    // The next good revision is picked up again.
    h.publish(config("empty", "192.0.2.77"), 13);
    let mut serial = None;
    for _ in 0..100 {
        serial = soa_serial(&h.udp("example.com.", RecordType::SOA).await);
        if serial == Some(13) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(serial, Some(13));
    assert_eq!(
        h.server.alarm().get(),
        None,
        "a good revision clears the alarm"
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn edns_is_echoed_with_our_payload_size() {
    let h = Harness::start(config("empty", "192.0.2.10"), 1).await;
    let mut message = query("www.example.com.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    message.set_edns(edns);
    let response = h.udp_raw(&message.to_vec().expect("encode")).await;
    let response = Message::from_vec(&response.expect("answered")).expect("decode");
    let edns = response.edns.expect("OPT echoed");
    assert_eq!(edns.max_payload(), 1232);

    let plain = h.udp("www.example.com.", RecordType::A).await;
    assert!(plain.edns.is_none(), "no OPT when the query had none");

    let mut future = query("www.example.com.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_version(1);
    future.set_edns(edns);
    let response = h.udp_raw(&future.to_vec().expect("encode")).await;
    let response = Message::from_vec(&response.expect("answered")).expect("decode");
    // BADVERS shares extended code 16 with BADSIG, which is how hickory decodes it.
    assert_eq!(u16::from(response.metadata.response_code), 16);
    h.server.shutdown().await;
}

#[tokio::test]
async fn garbage_never_stops_the_server() {
    let h = Harness::start(config("empty", "192.0.2.10"), 1).await;
    let valid = query("www.example.com.", RecordType::A)
        .to_vec()
        .expect("encode");
    let mut inputs: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff],
        vec![0; 11],
        // A well-formed query header with no question: our handler answers FORMERR.
        vec![0; 12],
        vec![0xff; 12],
        vec![0xab; 600],
        // A header claiming one question followed by a compression pointer loop.
        vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1],
        // A header claiming many records that are not there.
        vec![0, 2, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    ];
    for cut in 1..valid.len() {
        inputs.push(valid[..cut].to_vec());
    }
    let mut flipped = valid.clone();
    for (i, byte) in flipped.iter_mut().enumerate().skip(12) {
        *byte ^= (i as u8).wrapping_mul(37);
    }
    inputs.push(flipped);

    for input in &inputs {
        // Whatever comes back (FORMERR, or nothing for a short header) must parse.
        if let Some(response) = h.udp_raw(input).await {
            Message::from_vec(&response).expect("responses to garbage are well formed");
        }
    }
    assert_eq!(
        a_addrs(&h.udp("www.example.com.", RecordType::A).await),
        [ip("192.0.2.10")]
    );
    assert!(h.counter("FORMERR", "udp") >= 1);

    for input in &inputs {
        let Ok(mut stream) = TcpStream::connect(h.tcp).await else {
            panic!("tcp listener gone");
        };
        let len = u16::try_from(input.len()).expect("fits");
        let _ = stream.write_all(&len.to_be_bytes()).await;
        let _ = stream.write_all(input).await;
        let _ = stream.shutdown().await;
    }
    // A frame longer than its bytes, then a hang-up mid-frame.
    let mut stream = TcpStream::connect(h.tcp).await.expect("connect");
    stream
        .write_all(&[0xff, 0xff, 1, 2, 3])
        .await
        .expect("write");
    drop(stream);

    assert_eq!(
        a_addrs(&h.tcp("www.example.com.", RecordType::A).await),
        [ip("192.0.2.10")]
    );
    assert_eq!(
        a_addrs(&h.udp("www.example.com.", RecordType::A).await),
        [ip("192.0.2.10")]
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn udp_truncates_and_tcp_does_not() {
    // 60 TXT records of ~200 bytes at one name overflow 512 bytes but not TCP.
    let mut spec = spec("empty", "192.0.2.10");
    for i in 0..60 {
        spec.zones[0].records.push(model::RecordSpec {
            name: "big".into(),
            rtype: model::RecordType::TXT,
            ttl: 60,
            value: format!("{i:03}{}", "x".repeat(200)),
        });
    }
    let config = model::validate(&spec).expect("validates");
    let h = Harness::start(config, 1).await;
    let udp = h.udp("big.example.com.", RecordType::TXT).await;
    assert!(
        udp.metadata.truncation,
        "UDP answer without EDNS is truncated"
    );
    let tcp = h.tcp("big.example.com.", RecordType::TXT).await;
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 60);
    h.server.shutdown().await;
}

#[tokio::test]
async fn shutdown_is_prompt_and_releases_the_sockets() {
    let h = Harness::start(config("empty", "192.0.2.10"), 1).await;
    // An idle TCP client must not hold shutdown up.
    let _idle = TcpStream::connect(h.tcp).await.expect("connect");
    assert_eq!(
        a_addrs(&h.udp("www.example.com.", RecordType::A).await),
        [ip("192.0.2.10")]
    );
    let (udp, tcp) = (h.udp, h.tcp);
    timeout(WAIT, h.server.shutdown())
        .await
        .expect("shutdown in time");
    UdpSocket::bind(udp).await.expect("udp port released");
    TcpListener::bind(tcp).await.expect("tcp port released");
}

#[tokio::test]
async fn spawn_outside_a_runtime_is_an_error() {
    let (udp, tcp) = {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind tcp");
        (udp, tcp.into_std().expect("std tcp"))
    };
    let result = std::thread::spawn(move || {
        // Converting back needs a reactor, so build the tokio sockets in a throwaway runtime
        // and spawn after it is gone.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let tcp = rt.block_on(async { TcpListener::from_std(tcp).expect("tcp") });
        let (_tx, rx) = watch::channel(Arc::new(Revisioned {
            revision: 1,
            value: Config::empty(),
        }));
        let metrics = DnsMetrics::new(&Registry::new()).expect("metrics");
        let health: Arc<dyn HealthView> = Arc::new(FakeHealth::default());
        DnsServer::spawn(
            vec![udp],
            tcp,
            rx,
            health,
            metrics,
            None,
            Default::default(),
        )
        .err()
    })
    .join()
    .expect("thread");
    assert!(matches!(result, Some(gslb_dns::DnsError::NoRuntime)));
}

/// Over real sockets: a UDP flood from one subnet gets its rate of answers, then truncated
/// responses and silence; TCP from the same client is never limited.
#[tokio::test]
async fn udp_responses_are_rate_limited_per_client_subnet_and_tcp_is_not() {
    let mut spec = spec("empty", "192.0.2.10");
    spec.dns = Some(model::DnsSpec {
        rate_limit: Some(model::DnsRateLimitSpec {
            responses_per_second: 10,
            slip: 2,
            ..Default::default()
        }),
    });
    let h = Harness::start(model::validate(&spec).expect("valid"), 1).await;
    let bytes = query("www.example.com.", RecordType::A)
        .to_vec()
        .expect("encode");
    let (mut answered, mut truncated, mut silent) = (0, 0, 0);
    for _ in 0..40 {
        match h.udp_raw(&bytes).await {
            Some(b) => {
                let m = Message::from_vec(&b).expect("decode");
                if m.metadata.truncation {
                    assert!(m.answers.is_empty());
                    truncated += 1;
                } else {
                    answered += 1;
                }
            }
            None => silent += 1,
        }
        if answered + truncated + silent >= 12 && silent > 0 {
            break;
        }
    }
    // A second may roll over during the loop: at most twice the rate answered.
    assert!((10..=20).contains(&answered), "answered {answered}");
    assert!(
        truncated >= 1 && silent >= 1,
        "{truncated} truncated, {silent} dropped"
    );
    assert_eq!(
        a_addrs(&h.tcp("www.example.com.", RecordType::A).await).len(),
        1
    );
    assert!(h.metric("meridian_dns_rate_limited_total") >= 2);
}

#[tokio::test]
async fn a_burst_of_queries_is_answered_once_each_and_an_oversized_datagram_is_dropped() {
    let h = Harness::start(config("empty", "192.0.2.10"), 1).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    // An oversized datagram (past the 4096-byte slot) in the middle of the burst.
    let mut huge = query("www.example.com.", RecordType::A)
        .to_vec()
        .expect("encode");
    huge.resize(6000, 0);
    for id in 0..200u16 {
        if id == 100 {
            socket.send_to(&huge, h.udp).await.expect("send");
        }
        let mut q = query(
            if id % 2 == 0 {
                "www.example.com."
            } else {
                "app.example.com."
            },
            RecordType::A,
        );
        q.metadata.id = id;
        socket
            .send_to(&q.to_vec().expect("encode"), h.udp)
            .await
            .expect("send");
    }
    let mut seen = std::collections::HashMap::new();
    let mut buf = vec![0u8; 4096];
    while seen.len() < 200 {
        let n = timeout(WAIT, socket.recv(&mut buf))
            .await
            .expect("every query answered in time")
            .expect("recv");
        let m = Message::from_vec(&buf[..n]).expect("decode");
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        let want = if m.metadata.id.is_multiple_of(2) {
            1
        } else {
            2
        };
        assert_eq!(m.answers.len(), want, "id {}", m.metadata.id);
        *seen.entry(m.metadata.id).or_insert(0) += 1;
    }
    assert!(seen.values().all(|&n| n == 1), "each answered once");
    // Nothing more: the oversized one got no answer.
    let extra = timeout(Duration::from_millis(300), socket.recv(&mut buf)).await;
    assert!(extra.is_err(), "no reply to the oversized datagram");
}
