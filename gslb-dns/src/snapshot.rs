//! The compiled answer snapshot: one revision's zones as hickory records, and the lookup that
//! answers a single question from them. No I/O, no locks: a pure function of the snapshot, the
//! question and the health view, so it is tested without sockets.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use model::{Config, HealthView, RecordData, Zone};

use crate::gslb::{ClientSubnet, Family, GslbTarget, Topology};
use crate::DnsError;

/// Longest CNAME chain followed inside our zones before answering with what we have.
const MAX_CNAME_CHAIN: usize = 8;

/// All configured zones of one revision, compiled for answering.
#[derive(Debug, Default)]
pub struct ZonesSnapshot {
    revision: u64,
    /// Sorted by descending label count, so the first zone containing a name is the longest match.
    zones: Vec<ZoneSnapshot>,
    topology: Topology,
    rrl: Option<crate::rrl::RrlSettings>,
    /// Whole responses precompiled for the UDP fast path.
    fast: crate::fast::FastTable,
    /// The zones that have secondaries, in transfer form.
    transfers: crate::xfr::Transfers,
}

/// The answer to one question, ready to be put into a response message.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub rcode: ResponseCode,
    /// Set when the name is inside one of our zones.
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
    /// Leading bits of the client's subnet the answer depends on: the EDNS Client Subnet scope
    /// (RFC 7871), 0 when the answer is the same for every client.
    pub ecs_scope: u8,
}

impl ZonesSnapshot {
    /// Compiles the zones and GSLB records of `config`; the SOA serial is `revision` modulo 2^32.
    pub fn compile(config: &Config, revision: u64) -> Result<ZonesSnapshot, DnsError> {
        // The SOA serial is a 32-bit sequence number (RFC 1982), so wrapping is intended.
        let serial = revision as u32;
        let mut zones = Vec::with_capacity(config.zones.len());
        for zone in &config.zones {
            let compiled = ZoneSnapshot::compile(zone, serial)?;
            if zones
                .iter()
                .any(|z: &ZoneSnapshot| z.origin == compiled.origin)
            {
                return Err(DnsError::DuplicateZone(zone.origin.clone()));
            }
            zones.push(compiled);
        }
        for record in &config.gslb_records {
            let origin = LowerName::from(parse_name(&record.zone)?);
            let Some(zone) = zones.iter_mut().find(|z| z.origin == origin) else {
                return Err(DnsError::UnknownZone {
                    record: record.name.clone(),
                    zone: record.zone.clone(),
                });
            };
            let name = zone.node_name(&record.name)?;
            zone.node_mut(name).gslb = Some(GslbTarget::compile(record));
        }
        let mut transfers = crate::xfr::Transfers::default();
        for zone in config.zones.iter().filter(|z| !z.secondaries.is_empty()) {
            let origin = LowerName::from(parse_name(&zone.origin)?);
            let Some(compiled) = zones.iter().find(|z| z.origin == origin) else {
                continue;
            };
            let peers = zone
                .secondaries
                .iter()
                .map(crate::xfr::Peer::compile)
                .collect::<Result<Vec<_>, _>>()?;
            let (soa, records) = compiled.transfer_content();
            transfers.zones.insert(
                origin.clone(),
                crate::xfr::ZoneXfr::new(origin, soa, records, peers),
            );
        }
        zones.sort_by_key(|z| std::cmp::Reverse(z.origin.num_labels()));
        let mut snapshot = ZonesSnapshot {
            revision,
            zones,
            topology: Topology::compile(config),
            rrl: crate::rrl::RrlSettings::of(config),
            fast: crate::fast::FastTable::default(),
            transfers,
        };
        snapshot.fast = crate::fast::FastTable::compile(&snapshot);
        Ok(snapshot)
    }

    /// Carries the zone-transfer journal of the revision this one replaces.
    pub(crate) fn continue_from(&mut self, previous: &ZonesSnapshot) {
        self.transfers.continue_from(&previous.transfers);
    }

    /// The zone `origin` in transfer form, when it has secondaries.
    pub(crate) fn transfer(&self, origin: &LowerName) -> Option<&crate::xfr::ZoneXfr> {
        self.transfers.zones.get(origin)
    }

    /// Every zone with secondaries.
    pub(crate) fn transfers(&self) -> impl Iterator<Item = &crate::xfr::ZoneXfr> {
        self.transfers.zones.values()
    }

    /// Whether `name` is the apex of one of our zones.
    pub(crate) fn is_apex(&self, name: &LowerName) -> bool {
        self.zones.iter().any(|z| z.origin == *name)
    }

    /// Lets geo and nearest steering place clients no network of the regions holds through a
    /// GeoIP database.
    pub fn set_geoip(&mut self, locator: Option<Arc<dyn crate::GeoLocator>>) {
        self.topology.set_locator(locator);
    }

    /// Counts each GSLB site's answers in `metrics` (`meridian_gslb_answers_total`).
    /// The fast path's copies of the targets share the counters.
    pub fn count_answers(&self, metrics: &crate::DnsMetrics) {
        for (name, gslb) in self.names() {
            if let Some(gslb) = gslb {
                gslb.count_answers(&name.to_string(), metrics);
            }
        }
    }

    /// Every name of every zone, with its GSLB target if it has one.
    pub(crate) fn names(&self) -> impl Iterator<Item = (&LowerName, Option<&GslbTarget>)> {
        self.zones.iter().flat_map(|z| {
            z.nodes
                .iter()
                .map(|(name, node)| (name, node.gslb.as_ref()))
        })
    }

    /// The answer `lookup` gives, and in `dynamic` whether a GSLB decision went into it.
    pub(crate) fn answer_for_table(
        &self,
        qname: &Name,
        qtype: RecordType,
        health: &dyn HealthView,
        dynamic: &std::cell::Cell<bool>,
    ) -> Answer {
        let ctx = Ctx {
            health,
            client: None,
            topology: &self.topology,
            trace: None,
            dynamic: Some(dynamic),
        };
        self.answer(qname, qtype, &ctx)
    }

    /// The UDP fast path's response to `packet` from `src`, if it has one (the UDP threads
    /// build it in a reused buffer; this allocates, for tests and fuzzing).
    pub fn fast_response(
        &self,
        packet: &[u8],
        src: IpAddr,
        health: &dyn HealthView,
    ) -> Option<Vec<u8>> {
        let q = crate::fast::parse(packet)?;
        let mut out = Vec::new();
        match self
            .fast_entry(&q)?
            .answer(packet, &q, src, health, &mut out)
        {
            crate::fast::Fast::Answer(_) => Some(out),
            crate::fast::Fast::Slow => None,
        }
    }

    #[cfg(test)]
    pub(crate) fn fast_entries(&self) -> usize {
        self.fast.len()
    }

    /// The fast path's entry for `q`, if it has one.
    pub(crate) fn fast_entry(&self, q: &crate::fast::Parsed) -> Option<crate::fast::Found<'_>> {
        self.fast.entry(q, &self.topology)
    }

    /// The response-rate limit of this revision, if on.
    pub(crate) fn rrl(&self) -> Option<&crate::rrl::RrlSettings> {
        self.rrl.as_ref()
    }

    /// The configuration revision this snapshot was compiled from.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Answers `qtype` for `qname`. The answer's first owner name keeps the question's case.
    ///
    /// `ANY` returns every rrset at the name (this is a small authoritative server whose rrsets
    /// are few and small, so RFC 8482's amplification concern is covered by UDP truncation).
    pub fn lookup(&self, qname: &Name, qtype: RecordType, health: &dyn HealthView) -> Answer {
        self.lookup_for(qname, qtype, health, None)
    }

    /// Answers `qtype` for `qname` to `client` (its EDNS Client Subnet, else the resolver's
    /// address), which steers GSLB names. Without a client, no GSLB decision depends on one.
    pub fn lookup_for(
        &self,
        qname: &Name,
        qtype: RecordType,
        health: &dyn HealthView,
        client: Option<&ClientSubnet>,
    ) -> Answer {
        let ctx = Ctx {
            health,
            client,
            topology: &self.topology,
            trace: None,
            dynamic: None,
        };
        self.answer(qname, qtype, &ctx)
    }

    /// The answer [`ZonesSnapshot::lookup_for`] gives, with the GSLB decision's steps in words.
    pub fn explain(
        &self,
        qname: &Name,
        qtype: RecordType,
        health: &dyn HealthView,
        client: Option<&ClientSubnet>,
    ) -> (Answer, Vec<String>) {
        let steps = std::cell::RefCell::new(Vec::new());
        let ctx = Ctx {
            health,
            client,
            topology: &self.topology,
            trace: Some(&steps),
            dynamic: None,
        };
        let answer = self.answer(qname, qtype, &ctx);
        (answer, steps.into_inner())
    }

    fn answer(&self, qname: &Name, qtype: RecordType, ctx: &Ctx<'_>) -> Answer {
        let mut lower = LowerName::new(qname);
        let Some(mut zone) = self.zone_for(&lower) else {
            return Answer::refused();
        };
        let mut owner = qname.clone();
        let mut answers = Vec::new();
        // The ECS scope of GSLB CNAMEs met along the chain.
        let mut chain_scope = 0;
        for _ in 0..=MAX_CNAME_CHAIN {
            // A name at or below a delegation is the child zone's: refer the resolver there.
            if let Some(cut) = zone.cut_for(&lower) {
                let at_cut = cut == lower;
                if !(at_cut && qtype == RecordType::DS) {
                    return self.referral(answers, zone, &cut, ctx);
                }
            }
            let Some(node) = zone.nodes.get(&lower).or_else(|| zone.wildcard_for(&lower)) else {
                return Answer::negative(ResponseCode::NXDomain, answers, zone);
            };
            let chase = qtype != RecordType::CNAME && qtype != RecordType::ANY;
            // A GSLB name whose sites are CNAMEs: the picked site's target, like a CNAME.
            if let Some(gslb) = node.gslb.as_ref().filter(|g| g.is_cname()) {
                if let Some(d) = ctx.dynamic {
                    d.set(true);
                }
                let decision =
                    gslb.decide(Family::V4, ctx.health, ctx.client, ctx.topology, ctx.trace);
                if decision.servfail {
                    return Answer::servfail();
                }
                if let Some(target) = decision.cname {
                    chain_scope = chain_scope.max(decision.scope);
                    let rdata = RData::CNAME(CNAME(target.clone()));
                    answers.push(Record::from_rdata(owner.clone(), decision.ttl, rdata));
                    if !chase {
                        let mut answer = Answer::positive(answers, Vec::new());
                        answer.ecs_scope = chain_scope;
                        return answer;
                    }
                    lower = LowerName::new(&target);
                    owner = target;
                    match self.zone_for(&lower) {
                        Some(next) => zone = next,
                        None => break,
                    }
                    continue;
                }
                // No site to name (all down, answering empty or the fallback addresses):
                // the records below say so.
            }
            if let (true, Some(cname)) = (chase, node.rrset(RecordType::CNAME).first()) {
                answers.push(with_owner(cname, &owner));
                let RData::CNAME(CNAME(target)) = &cname.data else {
                    break;
                };
                lower = LowerName::new(target);
                owner = target.clone();
                match self.zone_for(&lower) {
                    Some(next) => zone = next,
                    None => break,
                }
                continue;
            }
            let Some((found, scope)) = node.records(qtype, &owner, ctx) else {
                return Answer::servfail();
            };
            let scope = scope.max(chain_scope);
            if found.is_empty() {
                let mut answer = Answer::negative(ResponseCode::NoError, answers, zone);
                answer.ecs_scope = scope;
                return answer;
            }
            let additionals = self.additionals(&found, ctx);
            answers.extend(found);
            let mut answer = Answer::positive(answers, additionals);
            answer.ecs_scope = scope;
            return answer;
        }
        // The chain left our zones or was too long: answer with the chain so far and let the
        // resolver carry on from its last target.
        let mut answer = Answer::positive(answers, Vec::new());
        answer.ecs_scope = chain_scope;
        answer
    }

    /// A referral to the child zone cut at `cut`: its NS records in authority (not
    /// authoritative), and the glue addresses we hold for them.
    fn referral(
        &self,
        answers: Vec<Record>,
        zone: &ZoneSnapshot,
        cut: &LowerName,
        ctx: &Ctx<'_>,
    ) -> Answer {
        let authorities: Vec<Record> = zone
            .nodes
            .get(cut)
            .map(|n| n.rrset(RecordType::NS).to_vec())
            .unwrap_or_default();
        let additionals = self.additionals(&authorities, ctx);
        Answer {
            rcode: ResponseCode::NoError,
            authoritative: false,
            answers,
            authorities,
            additionals,
            ecs_scope: 0,
        }
    }

    fn zone_for(&self, name: &LowerName) -> Option<&ZoneSnapshot> {
        self.zones.iter().find(|z| z.origin.zone_of(name))
    }

    /// Addresses of NS and MX targets that live in our zones, so resolvers need no second query.
    fn additionals(&self, answers: &[Record], ctx: &Ctx<'_>) -> Vec<Record> {
        let mut out = Vec::new();
        for record in answers {
            let target = match &record.data {
                RData::NS(NS(name)) => name,
                RData::MX(mx) => &mx.exchange,
                RData::SRV(srv) => &srv.target,
                _ => continue,
            };
            let lower = LowerName::new(target);
            let Some(node) = self.zone_for(&lower).and_then(|z| z.nodes.get(&lower)) else {
                continue;
            };
            for rtype in [RecordType::A, RecordType::AAAA] {
                for rec in node
                    .records(rtype, target, ctx)
                    .map(|f| f.0)
                    .unwrap_or_default()
                {
                    if !out.contains(&rec) {
                        out.push(rec);
                    }
                }
            }
        }
        out
    }
}

/// What a lookup needs besides the snapshot and the question.
struct Ctx<'a> {
    health: &'a dyn HealthView,
    client: Option<&'a ClientSubnet>,
    topology: &'a Topology,
    trace: crate::gslb::Trace<'a>,
    /// Set when a GSLB decision went into the answer (the fast table leaves those out).
    dynamic: Option<&'a std::cell::Cell<bool>>,
}

// === impl Answer ===

impl Answer {
    fn refused() -> Answer {
        Answer {
            rcode: ResponseCode::Refused,
            authoritative: false,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
            ecs_scope: 0,
        }
    }

    fn servfail() -> Answer {
        Answer {
            rcode: ResponseCode::ServFail,
            ..Answer::refused()
        }
    }

    fn positive(answers: Vec<Record>, additionals: Vec<Record>) -> Answer {
        Answer {
            rcode: ResponseCode::NoError,
            authoritative: true,
            answers,
            authorities: Vec::new(),
            additionals,
            ecs_scope: 0,
        }
    }

    /// NXDOMAIN or NODATA: the zone's SOA goes in authority for negative caching (RFC 2308).
    fn negative(rcode: ResponseCode, answers: Vec<Record>, zone: &ZoneSnapshot) -> Answer {
        Answer {
            rcode,
            authoritative: true,
            answers,
            authorities: vec![zone.negative_soa.clone()],
            additionals: Vec::new(),
            ecs_scope: 0,
        }
    }
}

// === impl ZoneSnapshot ===

#[derive(Debug)]
struct ZoneSnapshot {
    origin: LowerName,
    /// The SOA with the negative-caching TTL, min(SOA TTL, minimum) as RFC 2308 asks.
    negative_soa: Record,
    /// Every name that exists: names with records, GSLB names, the apex, and the empty
    /// non-terminals between them and the apex (present with no rrsets, so they answer NODATA).
    nodes: HashMap<LowerName, Node>,
    /// Names below the apex with NS records: delegations to child zones.
    cuts: Vec<LowerName>,
    has_wildcards: bool,
}

impl ZoneSnapshot {
    fn compile(zone: &Zone, serial: u32) -> Result<ZoneSnapshot, DnsError> {
        let origin_name = parse_name(&zone.origin)?;
        let soa_spec = &zone.soa;
        let soa = SOA::new(
            parse_name(&zone.mname)?,
            parse_name(&zone.rname)?,
            serial,
            clamp_i32(soa_spec.refresh),
            clamp_i32(soa_spec.retry),
            clamp_i32(soa_spec.expire),
            soa_spec.minimum,
        );
        let soa = Record::from_rdata(origin_name.clone(), soa_spec.ttl, RData::SOA(soa));
        let mut negative_soa = soa.clone();
        negative_soa.ttl = soa_spec.ttl.min(soa_spec.minimum);
        let origin = LowerName::new(&origin_name);

        let mut compiled = ZoneSnapshot {
            origin: origin.clone(),
            negative_soa,
            nodes: HashMap::new(),
            cuts: Vec::new(),
            has_wildcards: false,
        };
        compiled.node_mut(origin.clone()).push(soa);
        for ns in &zone.ns {
            let rdata = RData::NS(NS(parse_name(ns)?));
            let record = Record::from_rdata(origin_name.clone(), soa_spec.ttl, rdata);
            compiled.node_mut(origin.clone()).push(record);
        }
        for record in &zone.records {
            let name = compiled.node_name(&record.name)?;
            let rdata = match &record.data {
                RecordData::A(ip) => RData::A(A(*ip)),
                RecordData::AAAA(ip) => RData::AAAA(AAAA(*ip)),
                RecordData::CNAME(target) => RData::CNAME(CNAME(parse_name(target)?)),
                RecordData::TXT(text) => RData::TXT(txt(text)),
                RecordData::MX {
                    preference,
                    exchange,
                } => RData::MX(MX::new(*preference, parse_name(exchange)?)),
                RecordData::NS(target) => {
                    compiled.cuts.push(name.clone());
                    RData::NS(NS(parse_name(target)?))
                }
                RecordData::PTR(target) => RData::PTR(PTR(parse_name(target)?)),
                RecordData::SRV {
                    priority,
                    weight,
                    port,
                    target,
                } => RData::SRV(SRV::new(*priority, *weight, *port, parse_name(target)?)),
                RecordData::CAA { flags, tag, value } => {
                    let text = format!("{flags} {tag} \"{value}\"");
                    RData::try_from_str(RecordType::CAA, &text).map_err(|e| {
                        DnsError::InvalidRecord {
                            name: record.name.clone(),
                            rtype: "CAA".into(),
                            reason: e.to_string(),
                        }
                    })?
                }
            };
            compiled.has_wildcards |= name.is_wildcard();
            let owner = Name::from(&name);
            compiled
                .node_mut(name)
                .push(Record::from_rdata(owner, record.ttl, rdata));
        }
        Ok(compiled)
    }

    /// The zone's SOA and every other record it would transfer: static rrsets, and for GSLB
    /// names the address of each site that may be answered.
    fn transfer_content(&self) -> (Record, Vec<Record>) {
        let soa = self.negative_soa.clone();
        let soa = self
            .nodes
            .get(&self.origin)
            .and_then(|n| n.rrset(RecordType::SOA).first().cloned())
            .unwrap_or(soa);
        let mut records = Vec::new();
        for (name, node) in &self.nodes {
            for (rtype, set) in &node.rrsets {
                if *rtype != RecordType::SOA {
                    records.extend(set.iter().cloned());
                }
            }
            if let Some(gslb) = &node.gslb {
                records.extend(gslb.static_records(&Name::from(name)));
            }
        }
        (soa, records)
    }

    /// The delegation that holds `name` (at it or above it, below the apex), if any.
    fn cut_for(&self, name: &LowerName) -> Option<LowerName> {
        if self.cuts.is_empty() {
            return None;
        }
        self.cuts.iter().find(|cut| cut.zone_of(name)).cloned()
    }

    /// The wildcard that answers `name`, which does not exist: `*.` and the closest existing
    /// ancestor of `name` (RFC 4592).
    fn wildcard_for(&self, name: &LowerName) -> Option<&Node> {
        if !self.has_wildcards {
            return None;
        }
        let mut encloser = name.base_name();
        while !self.nodes.contains_key(&encloser) {
            if encloser.num_labels() <= self.origin.num_labels() {
                break;
            }
            encloser = encloser.base_name();
        }
        let wildcard = Name::from(&encloser).prepend_label("*").ok()?;
        self.nodes.get(&LowerName::from(wildcard))
    }

    /// Parses `name` and checks it lies inside this zone.
    fn node_name(&self, name: &str) -> Result<LowerName, DnsError> {
        let lower = LowerName::from(parse_name(name)?);
        if !self.origin.zone_of(&lower) {
            return Err(DnsError::OutOfZone {
                name: name.to_string(),
                zone: self.origin.to_string(),
            });
        }
        Ok(lower)
    }

    /// The node for `name` (which must be inside the zone), creating it and any empty
    /// non-terminals above it.
    fn node_mut(&mut self, name: LowerName) -> &mut Node {
        let mut parent = name.base_name();
        while parent.num_labels() > self.origin.num_labels() {
            self.nodes.entry(parent.clone()).or_default();
            parent = parent.base_name();
        }
        self.nodes.entry(name).or_default()
    }
}

// === impl Node ===

#[derive(Debug, Default)]
struct Node {
    /// Static rrsets in configuration order; there are only a handful per name.
    rrsets: Vec<(RecordType, Vec<Record>)>,
    /// Set for GSLB names: their A and AAAA answers come from live health, not from `rrsets`.
    gslb: Option<GslbTarget>,
}

impl Node {
    fn push(&mut self, record: Record) {
        let rtype = record.record_type();
        match self.rrsets.iter_mut().find(|(t, _)| *t == rtype) {
            Some((_, set)) if !set.iter().any(|r| r.data == record.data) => set.push(record),
            Some(_) => {}
            None => self.rrsets.push((rtype, vec![record])),
        }
    }

    fn rrset(&self, rtype: RecordType) -> &[Record] {
        self.rrsets
            .iter()
            .find(|(t, _)| *t == rtype)
            .map_or(&[], |(_, set)| set.as_slice())
    }

    /// The records of `qtype` (every type for ANY) owned by `owner`, and the ECS scope of the
    /// GSLB decision among them (0 when none depends on the client). `None` when a GSLB record
    /// whose sites are all down says SERVFAIL.
    fn records(&self, qtype: RecordType, owner: &Name, ctx: &Ctx<'_>) -> Option<(Vec<Record>, u8)> {
        let mut out = Vec::new();
        let mut scope = 0;
        let mut servfail = false;
        for (rtype, set) in &self.rrsets {
            let replaced_by_gslb = self.gslb.is_some() && is_address(*rtype);
            let wanted = qtype == RecordType::ANY || qtype == *rtype;
            if wanted && !replaced_by_gslb {
                out.extend(set.iter().map(|r| with_owner(r, owner)));
            }
        }
        if let Some(gslb) = &self.gslb {
            for (rtype, family) in [(RecordType::A, Family::V4), (RecordType::AAAA, Family::V6)] {
                if qtype == RecordType::ANY || qtype == rtype {
                    if let Some(d) = ctx.dynamic {
                        d.set(true);
                    }
                    let decision =
                        gslb.decide(family, ctx.health, ctx.client, ctx.topology, ctx.trace);
                    scope = scope.max(decision.scope);
                    servfail |= decision.servfail;
                    let ttl = decision.ttl;
                    out.extend(decision.addresses.into_iter().map(|ip| {
                        let rdata = match ip {
                            IpAddr::V4(v4) => RData::A(A(v4)),
                            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
                        };
                        Record::from_rdata(owner.clone(), ttl, rdata)
                    }));
                }
            }
        }
        (!servfail).then_some((out, scope))
    }
}

fn is_address(rtype: RecordType) -> bool {
    rtype == RecordType::A || rtype == RecordType::AAAA
}

fn with_owner(record: &Record, owner: &Name) -> Record {
    let mut record = record.clone();
    record.name = owner.clone();
    record
}

pub(crate) fn parse_name(name: &str) -> Result<Name, DnsError> {
    let mut parsed = Name::from_ascii(name).map_err(|e| DnsError::InvalidName {
        name: name.to_string(),
        reason: e.to_string(),
    })?;
    // Model names are FQDNs; be lenient about a missing trailing dot all the same.
    parsed.set_fqdn(true);
    Ok(parsed)
}

/// TXT character-strings hold at most 255 bytes each; longer text is split (RFC 7208 style).
fn txt(text: &str) -> TXT {
    let chunks: Vec<&[u8]> = if text.is_empty() {
        vec![&[]]
    } else {
        text.as_bytes().chunks(255).collect()
    };
    TXT::from_bytes(chunks)
}

fn clamp_i32(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
pub(crate) mod tests;
