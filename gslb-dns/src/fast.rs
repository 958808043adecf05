//! The UDP fast path: answers precompiled per revision, patched per query.
//!
//! For every existing name and common query type, [`FastTable::compile`] asks the snapshot's
//! own `lookup` for the answer (the one source of truth) and encodes the whole response once,
//! with the name lowercased. A query then costs a parse of its header and question, one hash
//! lookup, a copy, and three patches: the ID, the RD bit, and the question, copied from the
//! query, so the answer keeps the query's case (the owner names of the answers point at the
//! question, and the lowercased name has the same wire length as any casing of it). An OPT
//! record is appended when the query had one. GSLB names are decided per query against live
//! health, like the slow path, and their address records appended to a precompiled header.
//!
//! Anything else (ECS, other opcodes or classes, names that do not exist, wildcards, unusual
//! types, answers that would need truncation, malformed packets) goes to the slow path:
//! hickory's parser and the [`crate::handler::Handler`], which is the reference behaviour.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{LowerName, Name, RecordType};
use model::HealthView;

use crate::gslb::{ClientSubnet, Family, GslbTarget, Topology};
use crate::ZonesSnapshot;

/// Query types answered from the table; others take the slow path.
const TYPES: [RecordType; 12] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::NS,
    RecordType::SOA,
    RecordType::MX,
    RecordType::TXT,
    RecordType::CNAME,
    RecordType::SRV,
    RecordType::CAA,
    RecordType::PTR,
    RecordType::HTTPS,
    RecordType::SVCB,
];

/// The largest response we send over UDP with EDNS (DNS Flag Day 2020), as the slow path.
const MAX_UDP_PAYLOAD: usize = 1232;
/// An OPT record: root owner, type 41, our payload size (1232), no extended rcode, version 0,
/// no flags, no options.
const OPT: [u8; 11] = [0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0];

/// A question's key: the lowercased wire name followed by the query type.
pub(crate) type Key = ([u8; 257], usize);

#[derive(Debug, Default)]
pub(crate) struct FastTable {
    entries: HashMap<Box<[u8]>, Entry>,
}

#[derive(Debug)]
enum Entry {
    /// The whole response; only the ID, RD and the question's case change per query.
    Static {
        bytes: Box<[u8]>,
        rcode: ResponseCode,
    },
    /// A GSLB name's addresses, decided per query: the header (with the lowercased question)
    /// to which the address records are appended.
    Gslb {
        target: GslbTarget,
        family: Family,
        header: Box<[u8]>,
    },
}

/// A health view that says nothing: what static answers are built with (they do not depend
/// on health; those that would are left to the per-query path).
struct NoHealth;

impl HealthView for NoHealth {
    fn is_healthy(&self, _key: &str) -> Option<bool> {
        None
    }
}

impl FastTable {
    pub(crate) fn compile(snapshot: &ZonesSnapshot) -> FastTable {
        let mut entries = HashMap::new();
        for (name, gslb) in snapshot.names() {
            // A GSLB name answered by CNAME is a CNAME decided per query, for every type: the
            // slow path.
            if gslb.is_some_and(GslbTarget::is_cname) {
                continue;
            }
            let owner = Name::from(name);
            for rtype in TYPES {
                let key = key_of(name, rtype);
                if let (Some(target), Some(family)) = (gslb, family_of(rtype)) {
                    // Only the question: the records are appended per query.
                    let mut msg = response(&owner, rtype);
                    msg.metadata.authoritative = true;
                    if let Ok(header) = msg.to_vec() {
                        entries.insert(
                            key,
                            Entry::Gslb {
                                target: target.clone(),
                                family,
                                header: header.into_boxed_slice(),
                            },
                        );
                    }
                    continue;
                }
                let dynamic = Cell::new(false);
                let answer = snapshot.answer_for_table(&owner, rtype, &NoHealth, &dynamic);
                if dynamic.get() {
                    continue; // A CNAME into a GSLB name: decided per query, on the slow path.
                }
                let mut msg = response(&owner, rtype);
                msg.metadata.authoritative = answer.authoritative;
                msg.metadata.response_code = answer.rcode;
                msg.add_answers(answer.answers);
                msg.add_authorities(answer.authorities);
                msg.add_additionals(answer.additionals);
                if let Ok(bytes) = msg.to_vec() {
                    entries.insert(
                        key,
                        Entry::Static {
                            bytes: bytes.into_boxed_slice(),
                            rcode: answer.rcode,
                        },
                    );
                }
            }
        }
        FastTable { entries }
    }

    /// The entry that answers `q`, found once: the caller may still refuse to answer (the
    /// response-rate limit) before building the response.
    pub(crate) fn entry<'a>(&'a self, q: &Parsed, topology: &'a Topology) -> Option<Found<'a>> {
        let entry = self.entries.get(&q.key.0[..q.key.1])?;
        Some(Found { entry, topology })
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

fn response(name: &Name, rtype: RecordType) -> Message {
    let mut msg = Message::new(0, MessageType::Response, OpCode::Query);
    let mut lower = name.to_lowercase();
    lower.set_fqdn(true);
    msg.add_query(Query::query(lower, rtype));
    msg
}

fn family_of(rtype: RecordType) -> Option<Family> {
    match rtype {
        RecordType::A => Some(Family::V4),
        RecordType::AAAA => Some(Family::V6),
        _ => None,
    }
}

fn key_of(name: &LowerName, rtype: RecordType) -> Box<[u8]> {
    let mut out = Vec::with_capacity(64);
    for label in Name::from(name).iter() {
        out.push(u8::try_from(label.len()).unwrap_or(0));
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out.extend_from_slice(&u16::from(rtype).to_be_bytes());
    out.into_boxed_slice()
}

/// What the fast path made of a packet.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Fast {
    /// `out` holds the response.
    Answer(ResponseCode),
    /// Not for the fast path.
    Slow,
}

/// A query as the fast path reads it.
pub(crate) struct Parsed {
    /// The lowercased name and the type: the table's key.
    pub(crate) key: Key,
    /// The question: name (as sent), type and class; bytes 12.. of the packet.
    question_end: usize,
    /// The client's EDNS payload size, when it sent an OPT record.
    edns: Option<u16>,
    rd: bool,
}

/// Reads the header, the one question and an optional OPT record without ECS; `None` for
/// anything else. `key` gets the lowercased name and the type.
pub(crate) fn parse(packet: &[u8]) -> Option<Parsed> {
    let mut key: Key = ([0; 257], 0);
    let header = packet.get(..12)?;
    let flags = u16::from_be_bytes([header[2], header[3]]);
    // QR = 0, opcode QUERY, TC = 0.
    if flags & 0xfa00 != 0 {
        return None;
    }
    let counts = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
    if counts(4) != 1 || counts(6) != 0 || counts(8) != 0 || counts(10) > 1 {
        return None;
    }
    let mut at = 12;
    let mut len = 0;
    loop {
        let l = usize::from(*packet.get(at)?);
        if l > 63 {
            return None; // Compression or extended labels in a question: the slow path.
        }
        if len + l + 1 > 255 {
            return None;
        }
        let label = packet.get(at..at + 1 + l)?;
        key.0[len] = label[0];
        for (dst, src) in key.0[len + 1..len + 1 + l].iter_mut().zip(&label[1..]) {
            *dst = src.to_ascii_lowercase();
        }
        len += 1 + l;
        at += 1 + l;
        if l == 0 {
            break;
        }
    }
    let tail = packet.get(at..at + 4)?;
    // Class IN only.
    if tail[2..4] != [0, 1] {
        return None;
    }
    key.0[len..len + 2].copy_from_slice(&tail[..2]);
    key.1 = len + 2;
    let question_end = at + 4;
    let mut edns = None;
    if counts(10) == 1 {
        // OPT: root owner, type 41, payload, extended rcode, version 0, flags, options.
        let opt = packet.get(question_end..question_end + 11)?;
        if opt[0] != 0 || opt[1..3] != [0, 41] || opt[6] != 0 {
            return None;
        }
        let rdlen = usize::from(u16::from_be_bytes([opt[9], opt[10]]));
        let mut options = packet.get(question_end + 11..question_end + 11 + rdlen)?;
        if question_end + 11 + rdlen != packet.len() {
            return None;
        }
        while !options.is_empty() {
            let code = u16::from_be_bytes([*options.first()?, *options.get(1)?]);
            let olen = usize::from(u16::from_be_bytes([*options.get(2)?, *options.get(3)?]));
            // EDNS Client Subnet steers and must be echoed: the slow path. Others (cookies,
            // padding, ...) need no answer from a server that does not implement them.
            if code == 8 {
                return None;
            }
            options = options.get(4 + olen..)?;
        }
        edns = Some(u16::from_be_bytes([opt[3], opt[4]]));
    } else if question_end != packet.len() {
        return None;
    }
    Some(Parsed {
        key,
        question_end,
        edns,
        rd: flags & 0x0100 != 0,
    })
}

/// A table entry that answers a query, with the topology GSLB decisions need.
pub(crate) struct Found<'a> {
    entry: &'a Entry,
    topology: &'a Topology,
}

impl Found<'_> {
    /// Builds the response to `packet` (parsed as `q`) in `out`.
    pub(crate) fn answer(
        &self,
        packet: &[u8],
        q: &Parsed,
        src: IpAddr,
        health: &dyn HealthView,
        out: &mut Vec<u8>,
    ) -> Fast {
        let topology = self.topology;
        out.clear();
        let rcode = match self.entry {
            Entry::Static { bytes, rcode } => {
                out.extend_from_slice(bytes);
                *rcode
            }
            Entry::Gslb {
                target,
                family,
                header,
            } => {
                let client = ClientSubnet::host(src);
                let decision = target.decide(*family, health, Some(&client), topology, None);
                if decision.servfail || decision.addresses.is_empty() {
                    return Fast::Slow; // SERVFAIL and NODATA (with the SOA): the slow path.
                }
                out.extend_from_slice(header);
                let n = u16::try_from(decision.addresses.len()).unwrap_or(0);
                out[6..8].copy_from_slice(&n.to_be_bytes());
                for ip in decision.addresses {
                    // Owner: a pointer to the question's name at offset 12.
                    out.extend_from_slice(&[0xc0, 0x0c]);
                    match ip {
                        IpAddr::V4(v4) => {
                            out.extend_from_slice(&[0, 1, 0, 1]);
                            out.extend_from_slice(&decision.ttl.to_be_bytes());
                            out.extend_from_slice(&[0, 4]);
                            out.extend_from_slice(&v4.octets());
                        }
                        IpAddr::V6(v6) => {
                            out.extend_from_slice(&[0, 28, 0, 1]);
                            out.extend_from_slice(&decision.ttl.to_be_bytes());
                            out.extend_from_slice(&[0, 16]);
                            out.extend_from_slice(&v6.octets());
                        }
                    }
                }
                ResponseCode::NoError
            }
        };
        let limit = q
            .edns
            .map_or(512, |p| usize::from(p).clamp(512, MAX_UDP_PAYLOAD));
        let opt_len = if q.edns.is_some() { OPT.len() } else { 0 };
        if out.len() + opt_len > limit || out.len() < q.question_end {
            return Fast::Slow; // Needs truncation: hickory's encoder does it right.
        }
        // ID, then RD as the query had it; the question exactly as the query spelled it.
        out[..2].copy_from_slice(&packet[..2]);
        if q.rd {
            out[2] |= 0x01;
        }
        out[12..q.question_end].copy_from_slice(&packet[12..q.question_end]);
        if q.edns.is_some() {
            let ar = u16::from_be_bytes([out[10], out[11]]).saturating_add(1);
            out[10..12].copy_from_slice(&ar.to_be_bytes());
            out.extend_from_slice(&OPT);
        }
        Fast::Answer(rcode)
    }
}

/// Over the response-rate limit: the header with TC set and the question, nothing else, so a
/// real client retries over TCP.
pub(crate) fn truncated(packet: &[u8], q: &Parsed, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&packet[..q.question_end]);
    // QR and TC, RD as asked; no other flags, rcode 0.
    out[2] = 0x80 | 0x02 | u8::from(q.rd);
    out[3] = 0;
    out[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::rr::RData;

    use super::*;
    use crate::gslb::tests::FakeHealth;

    fn ask(snap: &ZonesSnapshot, query: &Message) -> Option<Message> {
        let packet = query.to_vec().expect("encodes");
        let health = FakeHealth::default();
        let out = snap.fast_response(&packet, "192.0.2.1".parse().expect("ip"), &health)?;
        Some(Message::from_vec(&out).expect("our answers decode"))
    }

    fn query(name: &str, rtype: RecordType) -> Message {
        let mut m = Message::query();
        m.metadata.id = 4242;
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
        m
    }

    #[test]
    fn fast_answers_are_the_slow_answers_with_the_querys_id_and_case() {
        let snap = ZonesSnapshot::compile(&crate::snapshot::tests::config(), 9).expect("compiles");
        assert!(snap.fast_entries() > 20, "{}", snap.fast_entries());
        let health = FakeHealth::default();
        for (name, rtype) in [
            ("WWW.example.COM.", RecordType::A),
            ("www.example.com.", RecordType::AAAA),
            ("example.com.", RecordType::MX),
            ("example.com.", RecordType::SOA),
            ("www.example.com.", RecordType::TXT),
            ("App.Example.com.", RecordType::A),
            ("alias.example.com.", RecordType::A),
        ] {
            let q = query(name, rtype);
            let fast = ask(&snap, &q).unwrap_or_else(|| panic!("{name} {rtype} is fast"));
            let slow = snap.lookup(&Name::from_ascii(name).expect("name"), rtype, &health);
            assert_eq!(fast.metadata.id, 4242);
            assert!(fast.metadata.recursion_desired);
            assert_eq!(fast.metadata.response_code, slow.rcode, "{name} {rtype}");
            assert_eq!(fast.metadata.authoritative, slow.authoritative);
            assert_eq!(fast.answers, slow.answers, "{name} {rtype}");
            assert_eq!(fast.authorities, slow.authorities, "{name} {rtype}");
            assert_eq!(fast.additionals.len(), slow.additionals.len());
            assert!(fast.queries[0]
                .name()
                .eq_case(&Name::from_ascii(name).expect("name")));
            if let Some(first) = fast.answers.first() {
                assert!(
                    first.name.eq_case(&Name::from_ascii(name).expect("name")),
                    "{first:?}"
                );
            }
        }
        // EDNS: an OPT comes back.
        let mut q = query("www.example.com.", RecordType::A);
        q.edns = Some(hickory_proto::op::Edns::new());
        let fast = ask(&snap, &q).expect("fast");
        assert_eq!(fast.edns.map(|e| e.max_payload()), Some(1232));
        assert_eq!(
            fast.answers[0].data,
            RData::A(Ipv4Addr::new(192, 0, 2, 10).into())
        );
        // Names that do not exist, ECS and other classes take the slow path.
        assert!(ask(&snap, &query("nope.example.com.", RecordType::A)).is_none());
        let mut ecs = query("www.example.com.", RecordType::A);
        let mut edns = hickory_proto::op::Edns::new();
        edns.options_mut()
            .insert(hickory_proto::rr::rdata::opt::EdnsOption::Subnet(
                hickory_proto::rr::rdata::opt::ClientSubnet::new(
                    "198.51.100.0".parse().expect("ip"),
                    24,
                    0,
                ),
            ));
        ecs.edns = Some(edns);
        assert!(ask(&snap, &ecs).is_none());
    }

    #[test]
    fn parse_refuses_what_it_does_not_understand() {
        let good = query("www.example.com.", RecordType::A)
            .to_vec()
            .expect("encodes");
        assert!(parse(&good).is_some());
        for cut in 0..good.len() {
            assert!(parse(&good[..cut]).is_none(), "{cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(parse(&trailing).is_none());
        let mut response = good.clone();
        response[2] |= 0x80;
        assert!(parse(&response).is_none());
        let mut pointer = good.clone();
        pointer[12] = 0xc0;
        assert!(parse(&pointer).is_none());
    }
}
