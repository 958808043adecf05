//! Zone transfers out (AXFR, RFC 5936; IXFR, RFC 1995): what a zone with secondaries holds in
//! transfer form, the journal of its recent versions, and the records a transfer sends.
//!
//! The SOA serial is the config revision, so each revision is a version. The journal keeps the
//! last [`JOURNAL_KEEP`] versions of each zone in memory; versions with the same records share
//! them. An IXFR from a serial the journal holds gets one condensed difference (RFC 1995 §4
//! allows it); from any other serial (a node that restarted has no journal) the whole zone, in
//! AXFR form, which every secondary accepts.
//!
//! A GSLB name cannot be steered by a secondary: it is transferred as the addresses of every
//! site that may be answered (enabled or forced up), health aside.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{LowerName, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;

/// Versions of a zone kept for IXFR besides the current one.
pub(crate) const JOURNAL_KEEP: usize = 64;

/// The bytes a transfer message may hold: the 64 KiB TCP limit less room for the header, the
/// question, OPT and the TSIG.
const MESSAGE_BUDGET: usize = 60_000;

/// One zone in transfer form, with the versions before it.
#[derive(Debug)]
pub(crate) struct ZoneXfr {
    pub(crate) origin: LowerName,
    pub(crate) secondaries: Vec<Peer>,
    current: Version,
    /// Older versions, oldest first.
    journal: Vec<Version>,
}

/// A secondary of a zone, compiled.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Peer {
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) key: LowerName,
    pub(crate) notify: bool,
}

impl Peer {
    pub(crate) fn compile(s: &model::Secondary) -> Result<Peer, crate::DnsError> {
        Ok(Peer {
            addr: s.addr,
            key: LowerName::new(&crate::snapshot::parse_name(&s.tsig_key)?),
            notify: s.notify,
        })
    }
}

#[derive(Debug, Clone)]
struct Version {
    serial: u32,
    soa: Record,
    content: Arc<Content>,
}

/// A zone's records other than its SOA, sorted, each with its wire form (the identity a
/// difference is computed on: owner, type, class, TTL and data).
#[derive(Debug, PartialEq)]
struct Content {
    records: Vec<Record>,
    keys: Vec<Vec<u8>>,
}

impl Content {
    fn new(mut records: Vec<Record>) -> Content {
        records.sort_by(|a, b| {
            (LowerName::new(&a.name), u16::from(a.record_type()))
                .cmp(&(LowerName::new(&b.name), u16::from(b.record_type())))
        });
        let keys = records
            .iter()
            .map(|r| r.to_bytes().unwrap_or_default())
            .collect();
        Content { records, keys }
    }
}

impl ZoneXfr {
    /// A zone's current version: `soa` and every other record of it.
    pub(crate) fn new(
        origin: LowerName,
        soa: Record,
        records: Vec<Record>,
        secondaries: Vec<Peer>,
    ) -> ZoneXfr {
        ZoneXfr {
            origin,
            secondaries,
            current: Version {
                serial: serial_of(&soa),
                soa,
                content: Arc::new(Content::new(records)),
            },
            journal: Vec::new(),
        }
    }

    pub(crate) fn soa(&self) -> &Record {
        &self.current.soa
    }

    /// Takes over `previous`'s journal, with `previous` itself as its newest entry; records
    /// equal to the previous version's are shared rather than kept twice.
    pub(crate) fn continue_from(&mut self, previous: &ZoneXfr) {
        if previous.current.serial == self.current.serial {
            self.journal = previous.journal.clone();
            return;
        }
        if previous.current.content == self.current.content {
            self.current.content = previous.current.content.clone();
        }
        let mut journal = previous.journal.clone();
        journal.push(previous.current.clone());
        let excess = journal.len().saturating_sub(JOURNAL_KEEP);
        journal.drain(..excess);
        self.journal = journal;
    }

    /// The secondary at `ip` whose key is `key`, if the zone has one.
    pub(crate) fn allows(&self, ip: std::net::IpAddr, key: &LowerName) -> bool {
        let ip = canonical(ip);
        self.secondaries
            .iter()
            .any(|s| canonical(s.addr.ip()) == ip && s.key == *key)
    }

    /// The records of an AXFR: the SOA, every record, the SOA again.
    pub(crate) fn axfr(&self) -> Vec<&Record> {
        let mut out = Vec::with_capacity(self.current.content.records.len() + 2);
        out.push(&self.current.soa);
        out.extend(self.current.content.records.iter());
        out.push(&self.current.soa);
        out
    }

    /// The records of an IXFR answering a secondary at `serial`: the SOA alone when it is up
    /// to date, one difference when the journal has its version, the whole zone otherwise.
    /// The second value says which (`"current"`, `"incremental"`, `"full"`).
    pub(crate) fn ixfr(&self, serial: u32) -> (Vec<&Record>, &'static str) {
        if serial == self.current.serial || serial_newer(serial, self.current.serial) {
            return (vec![&self.current.soa], "current");
        }
        let Some(old) = self.journal.iter().find(|v| v.serial == serial) else {
            return (self.axfr(), "full");
        };
        let (new, before) = (&self.current.content, &old.content);
        let mut out = vec![&self.current.soa, &old.soa];
        if !Arc::ptr_eq(new, before) {
            let kept: HashSet<&[u8]> = new.keys.iter().map(Vec::as_slice).collect();
            let had: HashSet<&[u8]> = before.keys.iter().map(Vec::as_slice).collect();
            out.extend(
                before
                    .records
                    .iter()
                    .zip(&before.keys)
                    .filter(|(_, k)| !kept.contains(k.as_slice()))
                    .map(|(r, _)| r),
            );
            out.push(&self.current.soa);
            out.extend(
                new.records
                    .iter()
                    .zip(&new.keys)
                    .filter(|(_, k)| !had.contains(k.as_slice()))
                    .map(|(r, _)| r),
            );
        } else {
            out.push(&self.current.soa);
        }
        out.push(&self.current.soa);
        (out, "incremental")
    }
}

/// Splits the records of a transfer into messages that fit [`MESSAGE_BUDGET`]; never an empty
/// message, and a record larger than the budget goes alone.
pub(crate) fn messages<'a>(records: &[&'a Record]) -> Vec<Vec<&'a Record>> {
    let mut out = Vec::new();
    let mut message = Vec::new();
    let mut size = 0;
    for record in records {
        // The uncompressed size: an upper bound of what the encoder writes.
        let len = record.to_bytes().map_or(512, |b| b.len());
        if !message.is_empty() && size + len > MESSAGE_BUDGET {
            out.push(std::mem::take(&mut message));
            size = 0;
        }
        size += len;
        message.push(*record);
    }
    if !message.is_empty() {
        out.push(message);
    }
    out
}

/// The serial of an IXFR request: the SOA its authority section carries.
pub(crate) fn requested_serial(authorities: &[Record]) -> Option<u32> {
    authorities
        .iter()
        .find(|r| r.record_type() == RecordType::SOA)
        .map(serial_of)
}

fn serial_of(soa: &Record) -> u32 {
    match &soa.data {
        RData::SOA(SOA { serial, .. }) => *serial,
        _ => 0,
    }
}

/// RFC 1982: `a` is newer than `b`.
fn serial_newer(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < (1 << 31)
}

/// IPv4-mapped IPv6 addresses compare as the IPv4 address they carry.
fn canonical(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    }
}

/// The transferable zones of one revision, by origin.
#[derive(Debug, Default)]
pub(crate) struct Transfers {
    pub(crate) zones: HashMap<LowerName, ZoneXfr>,
}

impl Transfers {
    pub(crate) fn continue_from(&mut self, previous: &Transfers) {
        for (origin, zone) in &mut self.zones {
            if let Some(before) = previous.zones.get(origin) {
                zone.continue_from(before);
            }
        }
    }
}
