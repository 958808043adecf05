//! Zone transfers and NOTIFY on real sockets: AXFR/IXFR only to a secondary's address signed
//! with its TSIG key, responses signed and chained (checked with hickory's own verifier), and
//! NOTIFY signed, retried until answered, and sent again for each new serial.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gslb_dns::{DnsMetrics, DnsServer, TsigKeyStore, TsigKeys};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm, TsigError};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigResponseContext, TSigner};
use model::records::TsigAlgorithm as ModelAlgorithm;
use model::{Config, HealthView, Revisioned};
use prometheus::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);
const KEY: &str = "xfr.example.com.";
const SECRET: [u8; 32] = [0x5a; 32];

struct NoHealth;

impl HealthView for NoHealth {
    fn is_healthy(&self, _: &str) -> Option<bool> {
        None
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// example.com with `txt` TXT records (enough make a transfer span several messages), a GSLB
/// name, and a secondary at `secondary` with NOTIFY as asked.
fn config(txt: usize, extra: Option<&str>, secondary: SocketAddr, notify: bool) -> Config {
    let mut records = vec![
        serde_json::json!({ "name": "ns1", "type": "A", "value": "192.0.2.53" }),
        serde_json::json!({ "name": "www", "type": "A", "value": "192.0.2.10" }),
    ];
    for i in 0..txt {
        records.push(serde_json::json!({
            "name": format!("t{i}"), "type": "TXT",
            "value": format!("record number {i} of a zone big enough to need several messages")
        }));
    }
    if let Some(value) = extra {
        records.push(serde_json::json!({ "name": "new", "type": "A", "value": value }));
    }
    let json = serde_json::json!({
        "api_version": model::API_VERSION,
        "zones": [{
            "name": "example.com",
            "soa": { "mname": "ns1.example.com.", "rname": "hostmaster.example.com." },
            "ns": ["ns1.example.com."],
            "records": records,
            "secondaries": [{
                "address": secondary.to_string(), "tsig_key": KEY, "notify": notify
            }]
        }, {
            "name": "other.test",
            "soa": { "mname": "ns1.other.test.", "rname": "hostmaster.other.test." },
            "ns": ["ns1.other.test."]
        }],
        "gslb_records": [{
            "name": "app.example.com",
            "sites": [
                { "name": "east", "address": "192.0.2.1" },
                { "name": "west", "address": "2001:db8::2" }
            ]
        }]
    });
    model::validate(&serde_json::from_value(json).expect("spec parses")).expect("valid")
}

struct Server {
    tcp: SocketAddr,
    udp: SocketAddr,
    config: watch::Sender<Arc<Revisioned<Config>>>,
    registry: Registry,
    _server: DnsServer,
}

async fn start(config: Config) -> Server {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind tcp");
    let (udp_addr, tcp_addr) = (
        udp.local_addr().expect("addr"),
        tcp.local_addr().expect("addr"),
    );
    let (tx, rx) = watch::channel(Arc::new(Revisioned {
        revision: 1,
        value: config,
    }));
    let keys = TsigKeyStore::default();
    keys.set(TsigKeys::new([(KEY, ModelAlgorithm::HmacSha256, &SECRET[..])]).expect("keys"));
    let registry = Registry::new();
    let metrics = DnsMetrics::new(&registry).expect("metrics");
    let server = DnsServer::spawn(vec![udp], tcp, rx, Arc::new(NoHealth), metrics, None, keys)
        .expect("server spawns");
    Server {
        tcp: tcp_addr,
        udp: udp_addr,
        config: tx,
        registry,
        _server: server,
    }
}

fn signer(name: &str, secret: &[u8]) -> TSigner {
    TSigner::new(
        secret.to_vec(),
        TsigAlgorithm::HmacSha256,
        Name::from_ascii(name).expect("name"),
        300,
    )
    .expect("signer")
}

/// A transfer request for example.com; IXFR carries the secondary's serial.
fn request(qtype: RecordType, serial: Option<u32>) -> Message {
    let mut m = Message::new(4242, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(
        Name::from_ascii("example.com.").expect("name"),
        qtype,
    ));
    if let Some(serial) = serial {
        let soa = SOA::new(
            Name::from_ascii("ns1.example.com.").expect("name"),
            Name::from_ascii("hostmaster.example.com.").expect("name"),
            serial,
            0,
            0,
            0,
            0,
        );
        m.add_authority(Record::from_rdata(
            Name::from_ascii("example.com.").expect("name"),
            0,
            RData::SOA(soa),
        ));
    }
    m
}

/// Sends `message` (signed by `signer` if given) over TCP and reads responses until the
/// transfer ends (the closing SOA), or one message when it is an error or a lone SOA.
/// Each response is checked with hickory's chained TSIG verifier when signed.
async fn transfer(server: &Server, mut message: Message, signer: Option<&TSigner>) -> Vec<Message> {
    let mut verifier = None;
    if let Some(signer) = signer {
        let (tsig, v) = signer.sign_message(&message, now()).expect("sign");
        message.set_signature(tsig);
        verifier = v;
    }
    let bytes = message.to_vec().expect("encode");
    let mut stream = TcpStream::connect(server.tcp).await.expect("connect");
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).await.expect("send");
    let mut out = Vec::new();
    let mut soas = 0;
    loop {
        let mut len = [0u8; 2];
        timeout(WAIT, stream.read_exact(&mut len))
            .await
            .expect("a response in time")
            .expect("read length");
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut buf).await.expect("read message");
        let m = match verifier.as_mut() {
            Some(v) => match v.verify(&buf) {
                Ok(response) => Message::from_vec(response.as_buffer()).expect("decode"),
                // An error answer may be unsigned (BADKEY, BADSIG): decode it to look at it.
                Err(_) => Message::from_vec(&buf).expect("decode"),
            },
            None => Message::from_vec(&buf).expect("decode"),
        };
        soas += m
            .answers
            .iter()
            .filter(|r| r.record_type() == RecordType::SOA)
            .count();
        let lone_soa = out.is_empty() && m.answers.len() == 1 && soas == 1;
        let done = m.metadata.response_code != ResponseCode::NoError
            || lone_soa
            || (soas >= 2 && m.answers.last().map(Record::record_type) == Some(RecordType::SOA));
        out.push(m);
        if done {
            return out;
        }
    }
}

fn answers(messages: &[Message]) -> Vec<Record> {
    messages.iter().flat_map(|m| m.answers.clone()).collect()
}

fn serial(r: &Record) -> u32 {
    match &r.data {
        RData::SOA(soa) => soa.serial,
        other => panic!("expected a SOA, got {other:?}"),
    }
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[tokio::test]
async fn axfr_goes_only_to_the_secondary_signed_with_its_key() {
    let server = start(config(1500, None, local(53), false)).await;
    let good = signer(KEY, &SECRET);

    let unsigned = transfer(&server, request(RecordType::AXFR, None), None).await;
    assert_eq!(unsigned[0].metadata.response_code, ResponseCode::Refused);

    let wrong_secret = signer(KEY, &[1u8; 32]);
    let bad = transfer(
        &server,
        request(RecordType::AXFR, None),
        Some(&wrong_secret),
    )
    .await;
    assert_eq!(bad[0].metadata.response_code, ResponseCode::NotAuth);
    let tsig = bad[0].signature.as_ref().expect("a TSIG names the error");
    assert_eq!(tsig.data.error, Some(TsigError::BadSig));
    assert!(tsig.data.mac.is_empty(), "BADSIG answers are unsigned");

    let unknown = signer("nobody.example.com.", &SECRET);
    let bad = transfer(&server, request(RecordType::AXFR, None), Some(&unknown)).await;
    assert_eq!(bad[0].metadata.response_code, ResponseCode::NotAuth);
    assert_eq!(
        bad[0].signature.as_ref().expect("tsig").data.error,
        Some(TsigError::BadKey)
    );

    // A zone without secondaries is refused even with a good key; a name that is no zone of
    // ours is NOTAUTH.
    let mut other = request(RecordType::AXFR, None);
    other.queries[0] = Query::query(
        Name::from_ascii("other.test.").expect("n"),
        RecordType::AXFR,
    );
    let refused = transfer(&server, other, Some(&good)).await;
    assert_eq!(refused[0].metadata.response_code, ResponseCode::Refused);
    assert!(
        refused[0].signature.is_some(),
        "a signed request gets a signed answer"
    );

    let messages = transfer(&server, request(RecordType::AXFR, None), Some(&good)).await;
    assert!(
        messages.len() >= 2,
        "a zone this size spans several messages, got {}",
        messages.len()
    );
    assert!(messages.iter().all(|m| m.signature.is_some()));
    let records = answers(&messages);
    let first = records.first().expect("records");
    let last = records.last().expect("records");
    assert_eq!(serial(first), 1);
    assert_eq!(serial(last), 1);
    let txt = records
        .iter()
        .filter(|r| r.record_type() == RecordType::TXT)
        .count();
    assert_eq!(txt, 1500);
    // The GSLB name travels as its sites' addresses.
    let app = Name::from_ascii("app.example.com.").expect("name");
    let app_types: Vec<RecordType> = records
        .iter()
        .filter(|r| r.name == app)
        .map(Record::record_type)
        .collect();
    assert_eq!(app_types.len(), 2);
    assert!(app_types.contains(&RecordType::A) && app_types.contains(&RecordType::AAAA));
    // SOA + NS + ns1 A + www A + TXTs + app A/AAAA + SOA.
    assert_eq!(records.len(), 1500 + 7);

    // AXFR over UDP is refused.
    let mut m = request(RecordType::AXFR, None);
    let (tsig, _) = good.sign_message(&m, now()).expect("sign");
    m.set_signature(tsig);
    let reply = udp_exchange(server.udp, &m.to_vec().expect("encode")).await;
    assert_eq!(
        Message::from_vec(&reply)
            .expect("decode")
            .metadata
            .response_code,
        ResponseCode::Refused
    );
    let metrics = metrics_text(&server.registry);
    assert!(
        metrics.contains(r#"meridian_dns_transfers_total{outcome="full",type="axfr"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"meridian_dns_tsig_rejected_total{error="BADSIG"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn ixfr_sends_the_difference_from_a_journaled_serial() {
    let server = start(config(3, Some("192.0.2.77"), local(53), false)).await;
    let good = signer(KEY, &SECRET);
    // Revision 2 drops t2 and moves new.example.com; revision 3 changes nothing in the zone.
    let send = |revision: u64, config: Config| {
        server
            .config
            .send(Arc::new(Revisioned {
                revision,
                value: config,
            }))
            .expect("send config");
    };
    // Each revision is compiled by the server's task: wait for its serial before the next
    // (a watch channel keeps only the newest).
    let mut up_to_date = Vec::new();
    for revision in [2, 3] {
        send(revision, config(2, Some("192.0.2.78"), local(53), false));
        for _ in 0..100 {
            up_to_date = transfer(
                &server,
                request(RecordType::IXFR, Some(revision as u32)),
                Some(&good),
            )
            .await;
            let got = answers(&up_to_date);
            if got.len() == 1 && serial(&got[0]) == revision as u32 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(answers(&up_to_date).len(), 1, "up to date: the SOA alone");
    assert_eq!(serial(&answers(&up_to_date)[0]), 3);

    let diff = answers(&transfer(&server, request(RecordType::IXFR, Some(1)), Some(&good)).await);
    let serials: Vec<u32> = diff
        .iter()
        .filter(|r| r.record_type() == RecordType::SOA)
        .map(serial)
        .collect();
    assert_eq!(serials, vec![3, 1, 3, 3], "current, old, new, current");
    let t2 = Name::from_ascii("t2.example.com.").expect("name");
    let new = Name::from_ascii("new.example.com.").expect("name");
    // Deleted between the old SOA and the new one, added after the new one.
    let deleted: Vec<&Record> = diff[2..diff.len() - 1]
        .iter()
        .take_while(|r| r.record_type() != RecordType::SOA)
        .collect();
    let added: Vec<&Record> = diff[2 + deleted.len() + 1..diff.len() - 1].iter().collect();
    assert_eq!(deleted.len(), 2, "{deleted:?}");
    assert!(deleted.iter().any(|r| r.name == t2));
    assert!(deleted
        .iter()
        .any(|r| r.name == new && r.data == RData::A("192.0.2.77".parse().expect("ip"))));
    assert_eq!(added.len(), 1, "{added:?}");
    assert_eq!(added[0].data, RData::A("192.0.2.78".parse().expect("ip")));

    // Serial 2 has the same records as 3: an empty difference.
    let same = answers(&transfer(&server, request(RecordType::IXFR, Some(2)), Some(&good)).await);
    assert_eq!(
        same.iter().map(serial).collect::<Vec<_>>(),
        vec![3, 2, 3, 3]
    );

    // A serial the journal never held: the whole zone, AXFR style.
    let full = answers(&transfer(&server, request(RecordType::IXFR, Some(0)), Some(&good)).await);
    assert!(full.len() > 4);
    assert_eq!(serial(&full[0]), 3);
    assert_eq!(
        full.iter()
            .filter(|r| r.record_type() == RecordType::SOA)
            .count(),
        2
    );

    // Over UDP, an out-of-date secondary gets the SOA alone (and comes back over TCP).
    let mut m = request(RecordType::IXFR, Some(1));
    let (tsig, verifier) = good.sign_message(&m, now()).expect("sign");
    m.set_signature(tsig);
    let reply = udp_exchange(server.udp, &m.to_vec().expect("encode")).await;
    let reply = verifier
        .expect("verifier")
        .verify(&reply)
        .expect("signed answer");
    assert_eq!(reply.answers.len(), 1);
    assert_eq!(serial(&reply.answers[0]), 3);
}

#[tokio::test]
async fn notify_is_signed_retried_until_answered_and_sent_for_each_serial() {
    let secondary = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = secondary.local_addr().expect("addr");
    let server = start(config(1, None, addr, true)).await;
    let key = signer(KEY, &SECRET);

    // The first NOTIFY, for serial 1: left unanswered, so it comes again.
    let (first, from) = recv_notify(&secondary, &key).await;
    assert_eq!(first.1, 1);
    let (again, from_again) = recv_notify(&secondary, &key).await;
    assert_eq!(again.1, 1, "retried with the same serial");
    assert_eq!(from.ip(), from_again.ip());
    answer_notify(&secondary, &key, &again.0, from_again).await;
    // (A newer serial would supersede this one: let the answer land first.)
    wait_acked(&server, 1).await;

    server
        .config
        .send(Arc::new(Revisioned {
            revision: 2,
            value: config(1, Some("192.0.2.99"), addr, true),
        }))
        .expect("send config");
    let (next, from) = recv_notify(&secondary, &key).await;
    assert_eq!(next.1, 2, "the new serial is announced");
    answer_notify(&secondary, &key, &next.0, from).await;
    wait_acked(&server, 2).await;
}

async fn wait_acked(server: &Server, count: u32) {
    let want = format!(r#"meridian_dns_notify_total{{result="acked"}} {count}"#);
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = metrics_text(&server.registry);
        if metrics.contains(&want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("expected {want}:\n{metrics}");
}

/// Waits for a NOTIFY, checks its TSIG with `key`, and returns it (raw) with its serial.
async fn recv_notify(socket: &UdpSocket, key: &TSigner) -> ((Vec<u8>, u32), SocketAddr) {
    let mut buf = vec![0u8; 4096];
    let (n, from) = timeout(WAIT, socket.recv_from(&mut buf))
        .await
        .expect("a NOTIFY in time")
        .expect("recv");
    let raw = buf[..n].to_vec();
    key.verify_message_byte(&raw, None, true)
        .expect("the NOTIFY is signed with the secondary's key");
    let m = Message::from_vec(&raw).expect("decode");
    assert_eq!(m.metadata.op_code, OpCode::Notify);
    assert!(m.metadata.authoritative);
    assert_eq!(m.queries[0].query_type(), RecordType::SOA);
    assert_eq!(m.queries[0].query_class(), DNSClass::IN);
    let serial = serial(m.answers.first().expect("the SOA rides along"));
    ((raw, serial), from)
}

/// Answers a NOTIFY as a secondary does: NOERROR, signed.
async fn answer_notify(socket: &UdpSocket, key: &TSigner, raw: &[u8], to: SocketAddr) {
    let (mac, _, _) = key.verify_message_byte(raw, None, true).expect("verifies");
    let request = Message::from_vec(raw).expect("decode");
    let mut response = Message::new(request.metadata.id, MessageType::Response, OpCode::Notify);
    response.metadata.authoritative = true;
    response.add_query(request.queries[0].clone());
    let unsigned = response.to_vec().expect("encode");
    let tsig = TSigResponseContext::new(request.metadata.id, now(), key.clone(), mac, None)
        .sign(&unsigned)
        .expect("sign");
    response.set_signature(tsig);
    socket
        .send_to(&response.to_vec().expect("encode"), to)
        .await
        .expect("send");
}

async fn udp_exchange(server: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    socket.send_to(bytes, server).await.expect("send");
    let mut buf = vec![0u8; 4096];
    let n = timeout(WAIT, socket.recv(&mut buf))
        .await
        .expect("answer in time")
        .expect("recv");
    buf.truncate(n);
    buf
}

fn metrics_text(registry: &Registry) -> String {
    use prometheus::Encoder;
    let mut out = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .expect("encode metrics");
    String::from_utf8(out).expect("utf-8")
}
