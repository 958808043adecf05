//! GSLB names: which of a record's sites to hand out, decided per query from live health, the
//! client's subnet and the record's steering and policy.
//!
//! A decision has two stages. Steering (`steer`) narrows the healthy sites of the queried family
//! to the client's candidates: its region's (geo) or the nearest ones (nearest), with a spill
//! path when those are all down. The policy then picks among the candidates. Both stages report
//! how many leading bits of the client's address they used, which becomes the EDNS Client
//! Subnet scope of the answer (RFC 7871): 0 when the answer does not depend on the client.

use std::cell::RefCell;
use std::net::IpAddr;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use model::{
    AdminState, AllDownPolicy, Cidr, Config, GeoPoint, GslbPolicy, GslbRecord, HealthView, Site,
    Steer,
};

/// One site as the console shows it: `(site name, address or CNAME target, healthy)`.
pub type SiteState = (String, String, bool);

/// Prefix lengths a persistent answer is kept for: one client subnet keeps one site.
const PERSIST_PREFIX_V4: u8 = 24;
const PERSIST_PREFIX_V6: u8 = 56;

/// The steps of a decision in words, for `meridian dns explain`; `None` on the query path.
pub(crate) type Trace<'a> = Option<&'a RefCell<Vec<String>>>;

fn note(trace: Trace<'_>, line: impl FnOnce() -> String) {
    if let Some(t) = trace {
        t.borrow_mut().push(line());
    }
}

fn names(sites: &[&SiteTarget]) -> String {
    if sites.is_empty() {
        return "none".into();
    }
    sites
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sites within this distance of the nearest one count as equally near.
const SAME_SPOT_KM: f64 = 1.0;

/// The sites of each GSLB record and whether each is healthy right now, for the console.
///
/// Returns `(record name, [(site name, address, healthy)])` in configuration order.
pub fn site_states(config: &Config, health: &dyn HealthView) -> Vec<(String, Vec<SiteState>)> {
    config
        .gslb_records
        .iter()
        .map(|record| {
            let sites = record
                .sites
                .iter()
                .map(|site| {
                    let healthy = site_is_healthy(record, site, health);
                    (site.name.clone(), site.address.to_string(), healthy)
                })
                .collect();
            (record.name.clone(), sites)
        })
        .collect()
}

/// A site without a health check (or forced up) is always healthy; one that was never observed
/// counts as healthy too, so a fresh node answers before its first probe round completes.
fn site_is_healthy(record: &GslbRecord, site: &Site, health: &dyn HealthView) -> bool {
    site.health_check.is_none()
        || site.state == AdminState::ForceUp
        || health
            .is_healthy(&model::site_health_key(&record.name, &site.name))
            .unwrap_or(true)
}

/// Who is asking, as far as steering goes: the EDNS Client Subnet of the query, else the
/// resolver's own address (a full-length prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSubnet {
    pub addr: IpAddr,
    /// Leading bits of `addr` that are meaningful.
    pub prefix: u8,
}

impl ClientSubnet {
    /// The resolver's address as a full-length subnet.
    pub fn host(addr: IpAddr) -> ClientSubnet {
        let addr = canonical(addr);
        ClientSubnet {
            addr,
            prefix: width(addr),
        }
    }

    /// `(family width, address bits left-aligned in a u128, prefix)`, with bits past the
    /// prefix cleared.
    fn bits(&self) -> (u8, u128, u8) {
        let addr = canonical(self.addr);
        let w = width(addr);
        let prefix = self.prefix.min(w);
        let raw = match addr {
            IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
            IpAddr::V6(v6) => u128::from(v6),
        };
        (w, raw & mask(prefix), prefix)
    }
}

/// IPv4-mapped IPv6 addresses are IPv4 clients.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

fn width(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

/// A left-aligned mask of `prefix` bits.
fn mask(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

fn cidr_bits(cidr: &Cidr) -> (u8, u128, u8) {
    ClientSubnet {
        addr: cidr.addr,
        prefix: cidr.prefix,
    }
    .bits()
}

/// What a GeoIP database says of an address.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GeoFacts {
    /// ISO 3166-1 alpha-2, upper case.
    pub country: Option<String>,
    /// Continent code (`EU`, `NA`, ...).
    pub continent: Option<String>,
    pub location: Option<GeoPoint>,
    /// The prefix length of the database's network that holds the address: how far the facts
    /// hold (the ECS scope they allow).
    pub prefix: u8,
}

/// A GeoIP database (MaxMind's format, read by the binary: this crate reads no files).
pub trait GeoLocator: Send + Sync {
    fn locate(&self, addr: IpAddr) -> Option<GeoFacts>;
}

/// The regions of one revision, compiled for the per-query lookup of a client's region.
#[derive(Default)]
pub(crate) struct Topology {
    /// `(family width, network bits, prefix, region)`, longest prefix first.
    networks: Vec<(u8, u128, u8, usize)>,
    regions: Vec<TopologyRegion>,
    /// Region by country and by continent code, for clients the GeoIP database places.
    countries: std::collections::HashMap<String, usize>,
    continents: std::collections::HashMap<String, usize>,
    locator: Option<Arc<dyn GeoLocator>>,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topology")
            .field("networks", &self.networks.len())
            .field("regions", &self.regions)
            .field("geoip", &self.locator.is_some())
            .finish()
    }
}

#[derive(Debug)]
struct TopologyRegion {
    name: String,
    location: Option<GeoPoint>,
    spill_to: Vec<usize>,
}

/// Where a client was placed, and how many of its leading bits that took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Placement {
    pub(crate) region: Option<usize>,
    pub(crate) scope: u8,
    /// The client's own coordinates, when the GeoIP database has them.
    pub(crate) location: Option<GeoPoint>,
}

impl Topology {
    pub(crate) fn compile(config: &Config) -> Topology {
        let mut networks: Vec<(u8, u128, u8, usize)> = config
            .regions
            .iter()
            .enumerate()
            .flat_map(|(i, r)| r.networks.iter().map(move |n| (n, i)))
            .map(|(n, i)| {
                let (w, bits, prefix) = cidr_bits(n);
                (w, bits, prefix, i)
            })
            .collect();
        networks.sort_by_key(|n| std::cmp::Reverse(n.2));
        let mut countries = std::collections::HashMap::new();
        let mut continents = std::collections::HashMap::new();
        for (i, r) in config.regions.iter().enumerate() {
            countries.extend(r.countries.iter().map(|c| (c.clone(), i)));
            continents.extend(r.continents.iter().map(|c| (c.clone(), i)));
        }
        Topology {
            networks,
            countries,
            continents,
            locator: None,
            regions: config
                .regions
                .iter()
                .map(|r| TopologyRegion {
                    name: r.name.clone(),
                    location: r.location,
                    spill_to: r.spill_to.clone(),
                })
                .collect(),
        }
    }

    pub(crate) fn set_locator(&mut self, locator: Option<Arc<dyn GeoLocator>>) {
        self.locator = locator;
    }

    pub(crate) fn region_name(&self, region: usize) -> Option<&str> {
        self.regions.get(region).map(|r| r.name.as_str())
    }

    /// The client's region: the longest network that holds the client's whole subnet. The scope
    /// is the shortest prefix of the client's address that decides it, so no other network of
    /// the table (a more specific one carved out of the match, or one nearby) lies inside the
    /// subnet the answer is declared valid for.
    pub(crate) fn place(&self, client: &ClientSubnet) -> Placement {
        let (w, bits, prefix) = client.bits();
        let same_family = || self.networks.iter().filter(move |n| n.0 == w);
        let matched = same_family().find(|n| n.2 <= prefix && bits & mask(n.2) == n.1);
        let base = matched.map_or(0, |n| n.2);
        let mut scope = base;
        for n in same_family() {
            // Less specific networks are either the match's parents or disjoint from it.
            if n.2 <= base {
                continue;
            }
            if (bits ^ n.1) & mask(base) != 0 {
                continue; // Outside the matched network.
            }
            let common = u8::try_from((bits ^ n.1).leading_zeros()).unwrap_or(128);
            // A network inside the client's own subnet could hold the client (its unknown bits
            // decide): only its full prefix tells. Otherwise the first differing bit does.
            let needed = if common >= prefix {
                n.2
            } else {
                (common + 1).min(n.2)
            };
            scope = scope.max(needed);
        }
        let mut placed = Placement {
            region: matched.map(|n| n.3),
            scope: scope.min(w),
            location: None,
        };
        // No network of the table holds the client: ask the GeoIP database, if there is one.
        if placed.region.is_none() {
            if let Some(facts) = self.locator.as_ref().and_then(|l| l.locate(client.addr)) {
                placed.region = facts
                    .country
                    .as_ref()
                    .and_then(|c| self.countries.get(c))
                    .or_else(|| {
                        facts
                            .continent
                            .as_ref()
                            .and_then(|c| self.continents.get(c))
                    })
                    .copied();
                placed.location = facts.location;
                placed.scope = placed.scope.max(facts.prefix.min(w));
            }
        }
        placed
    }
}

/// The compiled form of a [`GslbRecord`]: health keys are built once per revision, not per query.
#[derive(Debug, Clone)]
pub(crate) struct GslbTarget {
    pub(crate) ttl: u32,
    when_all_down: AllDownPolicy,
    fallback: Vec<IpAddr>,
    policy: GslbPolicy,
    steer: Steer,
    max_answers: usize,
    sites: Vec<SiteTarget>,
    /// Whether any site has a capacity (the only case that looks at load).
    capacity: bool,
    /// Whether the sites are CNAMEs (validation keeps a record to one kind).
    cname: bool,
    /// Answers given, for round robin's rotation and the weighted policy's turn.
    turn: Arc<AtomicUsize>,
}

#[derive(Debug, Clone)]
struct SiteTarget {
    name: String,
    /// The TTL answers get while this site's state may be changing: its probe interval.
    pending_ttl: u32,
    /// `None` when the site has no health check or is forced up, and so is always healthy.
    health_key: Option<String>,
    answer: SiteAnswer,
    priority: u32,
    weight: u32,
    region: Option<usize>,
    location: Option<GeoPoint>,
    /// The site's stable identity in persistent hashing: the same on every node.
    seed: u64,
    /// Answers per second across the cluster; `None`: no limit.
    capacity: Option<u32>,
    /// This node's answers in the current second, shared by every clone of the target.
    load: Arc<Load>,
    /// `meridian_gslb_answers_total` of this site, once the server attached its metrics.
    /// Shared with every clone of the target (the fast path keeps one), so attaching the
    /// counter once reaches them all.
    answered: Arc<std::sync::OnceLock<prometheus::IntCounter>>,
}

impl SiteTarget {
    fn healthy(&self, health: &dyn HealthView) -> bool {
        match &self.health_key {
            None => true,
            Some(key) => health.is_healthy(key).unwrap_or(true),
        }
    }

    /// Whether the site answers a query of `family`: an address of it, or a CNAME (any).
    fn of(&self, family: Family) -> bool {
        match (&self.answer, family) {
            (SiteAnswer::Ip(ip), Family::V4) => ip.is_ipv4(),
            (SiteAnswer::Ip(ip), Family::V6) => ip.is_ipv6(),
            (SiteAnswer::Cname(_), _) => true,
        }
    }
}

/// What a site is answered as.
#[derive(Debug, Clone, PartialEq)]
enum SiteAnswer {
    Ip(IpAddr),
    Cname(hickory_proto::rr::Name),
}

/// Which address family a query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    V4,
    V6,
}

/// What a GSLB record answers one query with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Decision {
    pub(crate) addresses: Vec<IpAddr>,
    /// For a record whose sites are CNAMEs: the picked site's target (no addresses then).
    pub(crate) cname: Option<hickory_proto::rr::Name>,
    /// Leading bits of the client's address the decision used (the ECS scope).
    pub(crate) scope: u8,
    /// The record's TTL, capped while a site's state may be changing.
    pub(crate) ttl: u32,
    /// Every site is down and the record says SERVFAIL.
    pub(crate) servfail: bool,
}

impl GslbTarget {
    /// Whether the sites are CNAMEs (validation keeps a record to one kind).
    pub(crate) fn is_cname(&self) -> bool {
        self.cname
    }

    /// What a secondary can answer for this name, which it cannot steer: one A or AAAA per
    /// site that may be answered, health aside, in site order.
    pub(crate) fn static_records(
        &self,
        owner: &hickory_proto::rr::Name,
    ) -> Vec<hickory_proto::rr::Record> {
        use hickory_proto::rr::rdata::CNAME;
        use hickory_proto::rr::rdata::{A, AAAA};
        use hickory_proto::rr::{RData, Record};
        // CNAME sites: the best-priority one (a name holds one CNAME).
        if let Some(site) = self
            .sites
            .iter()
            .filter(|s| matches!(s.answer, SiteAnswer::Cname(_)))
            .min_by_key(|s| s.priority)
        {
            if let SiteAnswer::Cname(target) = &site.answer {
                let rdata = RData::CNAME(CNAME(target.clone()));
                return vec![Record::from_rdata(owner.clone(), self.ttl, rdata)];
            }
        }
        let mut seen = std::collections::HashSet::new();
        self.sites
            .iter()
            .filter_map(|s| match s.answer {
                SiteAnswer::Ip(ip) => Some(ip),
                SiteAnswer::Cname(_) => None,
            })
            .filter(|ip| seen.insert(*ip))
            .map(|ip| {
                let rdata = match ip {
                    IpAddr::V4(v4) => RData::A(A(v4)),
                    IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
                };
                Record::from_rdata(owner.clone(), self.ttl, rdata)
            })
            .collect()
    }

    pub(crate) fn compile(record: &GslbRecord) -> GslbTarget {
        GslbTarget {
            ttl: record.ttl,
            when_all_down: record.when_all_down,
            fallback: record.fallback.clone(),
            policy: record.policy,
            steer: record.steer,
            max_answers: record.max_answers.map_or(usize::MAX, |n| n as usize),
            turn: Arc::default(),
            capacity: record.sites.iter().any(|s| s.capacity.is_some()),
            cname: record
                .sites
                .iter()
                .any(|s| matches!(s.address, model::SiteAddress::Cname(_))),
            // Disabled and draining sites are never handed out, not even when all are down.
            sites: record
                .sites
                .iter()
                .filter(|site| matches!(site.state, AdminState::Enabled | AdminState::ForceUp))
                .map(|site| SiteTarget {
                    name: site.name.clone(),
                    pending_ttl: site.health_check.as_ref().map_or(u32::MAX, |hc| {
                        u32::try_from(hc.interval.as_secs().max(1)).unwrap_or(u32::MAX)
                    }),
                    health_key: site
                        .health_check
                        .as_ref()
                        .filter(|_| site.state != AdminState::ForceUp)
                        .map(|_| model::site_health_key(&record.name, &site.name)),
                    answer: match &site.address {
                        model::SiteAddress::Ip(ip) => SiteAnswer::Ip(*ip),
                        model::SiteAddress::Cname(name) => {
                            let mut parsed = hickory_proto::rr::Name::from_ascii(name)
                                .unwrap_or_else(|_| hickory_proto::rr::Name::root());
                            parsed.set_fqdn(true);
                            SiteAnswer::Cname(parsed)
                        }
                    },
                    priority: site.priority,
                    weight: site.weight.max(1),
                    region: site.region,
                    location: site.location,
                    seed: fnv1a(site.name.as_bytes()),
                    capacity: site.capacity,
                    load: Arc::default(),
                    answered: Arc::default(),
                })
                .collect(),
        }
    }

    /// The addresses of `family` to answer `client` with now.
    ///
    /// "All down" is judged across both families: if any site is healthy, health checking works
    /// and only healthy sites are handed out (possibly none of this family), as steering and
    /// the policy pick them. Only when every site is down does the record's [`AllDownPolicy`]
    /// apply (to every site, whatever the policy), and that answer does not depend on the client.
    pub(crate) fn decide(
        &self,
        family: Family,
        health: &dyn HealthView,
        client: Option<&ClientSubnet>,
        topology: &Topology,
        trace: Trace<'_>,
    ) -> Decision {
        let ttl = self.ttl(health, trace);
        let any_healthy = self.sites.iter().any(|s| s.healthy(health));
        if !any_healthy {
            let all = self.when_all_down == AllDownPolicy::All;
            note(trace, || match self.when_all_down {
                AllDownPolicy::All => {
                    "every site is down: when_all_down = all answers every enabled site".into()
                }
                AllDownPolicy::Empty => {
                    "every site is down: when_all_down = empty answers none".into()
                }
                AllDownPolicy::Fallback => {
                    "every site is down: when_all_down = fallback answers the fallback addresses"
                        .into()
                }
                AllDownPolicy::Servfail => "every site is down: when_all_down = servfail".into(),
            });
            let sites = self.sites.iter().filter(|s| all && s.of(family));
            let (mut addresses, cname) = self.bounded(sites, trace);
            if self.when_all_down == AllDownPolicy::Fallback {
                addresses = self
                    .fallback
                    .iter()
                    .copied()
                    .filter(|ip| match family {
                        Family::V4 => ip.is_ipv4(),
                        Family::V6 => ip.is_ipv6(),
                    })
                    .take(self.max_answers)
                    .collect();
            }
            return Decision {
                addresses,
                cname,
                scope: 0,
                ttl,
                servfail: self.when_all_down == AllDownPolicy::Servfail,
            };
        }
        let healthy: Vec<&SiteTarget> = self
            .sites
            .iter()
            .filter(|s| s.of(family) && s.healthy(health))
            .collect();
        note(trace, || {
            format!("healthy sites of the family: {}", names(&healthy))
        });
        if healthy.is_empty() {
            return Decision {
                ttl,
                ..Decision::default()
            };
        }
        let (mut picked, mut scope) = if self.capacity {
            let (picked, scope) = self.steer(healthy.clone(), client, topology, trace);
            (
                self.with_room(picked, &healthy, health.live_nodes(), trace),
                scope,
            )
        } else {
            self.steer(healthy, client, topology, trace)
        };
        match self.policy {
            GslbPolicy::All => {}
            GslbPolicy::Failover => {
                let best = picked.iter().map(|s| s.priority).min().unwrap_or(1);
                picked.retain(|s| s.priority == best);
            }
            GslbPolicy::RoundRobin => {
                let n = self.turn.fetch_add(1, Ordering::Relaxed) % picked.len().max(1);
                picked.rotate_left(n);
            }
            GslbPolicy::Weighted => {
                // Turn t lands on the site whose cumulative weight covers t mod the total:
                // over any run of `total` answers each site gets exactly its weight.
                let total: usize = picked.iter().map(|s| s.weight as usize).sum();
                let mut t = self.turn.fetch_add(1, Ordering::Relaxed) % total.max(1);
                let one = picked
                    .iter()
                    .copied()
                    .find(|s| {
                        let w = s.weight as usize;
                        if t < w {
                            true
                        } else {
                            t -= w;
                            false
                        }
                    })
                    .or_else(|| picked.first().copied());
                picked = one.into_iter().collect();
            }
            GslbPolicy::Persistent => {
                let (key, used) = persistence_key(client);
                scope = scope.max(used);
                let best = picked
                    .iter()
                    .copied()
                    .max_by(|a, b| rendezvous(key, a).total_cmp(&rendezvous(key, b)));
                picked = best.into_iter().collect();
            }
        }
        note(trace, || {
            let policy = match self.policy {
                GslbPolicy::All => "all",
                GslbPolicy::Failover => "failover (best priority up)",
                GslbPolicy::Weighted => "weighted (this turn)",
                GslbPolicy::RoundRobin => "round_robin (this turn's order)",
                GslbPolicy::Persistent => "persistent (the client subnet's site)",
            };
            format!("policy {policy}: {}", names(&picked))
        });
        let (addresses, cname) = self.bounded(picked.into_iter(), trace);
        Decision {
            addresses,
            cname,
            scope,
            ttl,
            servfail: false,
        }
    }

    /// The record's TTL, or the shortest probe interval of a site whose state may be about to
    /// change, so resolvers do not hold an answer that is going stale.
    fn ttl(&self, health: &dyn HealthView, trace: Trace<'_>) -> u32 {
        let pending = self
            .sites
            .iter()
            .filter(|s| s.health_key.as_deref().is_some_and(|k| health.pending(k)))
            .map(|s| s.pending_ttl)
            .min();
        match pending {
            Some(cap) if cap < self.ttl => {
                note(trace, || {
                    format!("a site's state may be changing: TTL capped at {cap} s")
                });
                cap
            }
            _ => self.ttl,
        }
    }

    /// The first stage: the client's candidates among the healthy sites of the family.
    fn steer<'s>(
        &self,
        healthy: Vec<&'s SiteTarget>,
        client: Option<&ClientSubnet>,
        topology: &Topology,
        trace: Trace<'_>,
    ) -> (Vec<&'s SiteTarget>, u8) {
        let Some(client) = client else {
            if self.steer != Steer::None {
                note(trace, || "no client subnet: steering skipped".into());
            }
            return (healthy, 0);
        };
        match self.steer {
            Steer::None => (healthy, 0),
            Steer::Geo => {
                let placed = topology.place(client);
                let subnet = format!("{}/{}", client.addr, client.prefix);
                let Some(region) = placed.region else {
                    note(trace, || {
                        format!(
                            "steer geo: {subnet} is in no region (decided by /{}): every healthy site",
                            placed.scope
                        )
                    });
                    return (healthy, placed.scope);
                };
                let region_name = topology.region_name(region).unwrap_or("?");
                note(trace, || {
                    format!(
                        "steer geo: {subnet} is in region {region_name} (decided by /{})",
                        placed.scope
                    )
                });
                let own: Vec<&SiteTarget> = healthy
                    .iter()
                    .copied()
                    .filter(|s| s.region == Some(region))
                    .collect();
                if !own.is_empty() {
                    return (own, placed.scope);
                }
                note(trace, || {
                    format!("region {region_name} has no healthy site: spilling over")
                });
                let spill = topology
                    .regions
                    .get(region)
                    .map_or(&[][..], |r| r.spill_to.as_slice());
                let next: Vec<&SiteTarget> = healthy
                    .iter()
                    .copied()
                    .filter(|s| s.region.is_some_and(|r| spill.contains(&r)))
                    .collect();
                if next.is_empty() {
                    (healthy, placed.scope)
                } else {
                    (next, placed.scope)
                }
            }
            Steer::Nearest => {
                let placed = topology.place(client);
                let Some(from) = placed.location.or_else(|| {
                    placed
                        .region
                        .and_then(|r| topology.regions.get(r))
                        .and_then(|r| r.location)
                }) else {
                    note(trace, || {
                        format!(
                            "steer nearest: {}/{} has no located region: every healthy site",
                            client.addr, client.prefix
                        )
                    });
                    return (healthy, placed.scope);
                };
                let distance =
                    |s: &SiteTarget| s.location.map_or(f64::MAX, |l| from.distance_km(&l));
                let nearest = healthy.iter().map(|s| distance(s)).fold(f64::MAX, f64::min);
                let near: Vec<&SiteTarget> = healthy
                    .into_iter()
                    .filter(|s| distance(s) <= nearest + SAME_SPOT_KM)
                    .collect();
                note(trace, || {
                    format!(
                        "steer nearest: {}/{} is {nearest:.0} km from {}",
                        client.addr,
                        client.prefix,
                        names(&near)
                    )
                });
                (near, placed.scope)
            }
        }
    }

    /// Capacity: the candidates with room this second; when all are full, the other healthy
    /// sites with room; when those are full too, the candidates anyway (a full site is still
    /// better than no answer).
    fn with_room<'s>(
        &self,
        candidates: Vec<&'s SiteTarget>,
        healthy: &[&'s SiteTarget],
        nodes: usize,
        trace: Trace<'_>,
    ) -> Vec<&'s SiteTarget> {
        if candidates.iter().all(|s| s.capacity.is_none()) {
            return candidates;
        }
        let now = Load::now();
        let room = |s: &&SiteTarget| s.has_room(nodes, now);
        let open: Vec<&SiteTarget> = candidates.iter().copied().filter(room).collect();
        if open.len() == candidates.len() {
            return candidates;
        }
        let full: Vec<&SiteTarget> = candidates.iter().copied().filter(|s| !room(s)).collect();
        note(trace, || {
            format!(
                "at capacity this second (each node's share of it over {nodes} node(s)): {}",
                names(&full)
            )
        });
        if !open.is_empty() {
            return open;
        }
        let others: Vec<&SiteTarget> = healthy
            .iter()
            .copied()
            .filter(|s| room(s) && !candidates.iter().any(|c| std::ptr::eq(*c, *s)))
            .collect();
        if others.is_empty() {
            note(trace, || {
                "every healthy site is full: answering the candidates".into()
            });
            candidates
        } else {
            note(trace, || format!("the load goes to: {}", names(&others)));
            others
        }
    }

    /// The addresses of `sites`, at most `max_answers`, or the CNAME target of the first when
    /// the sites are CNAMEs; counted in the metrics unless this is an explanation (`trace`),
    /// not an answer.
    fn bounded<'s>(
        &self,
        sites: impl Iterator<Item = &'s SiteTarget>,
        trace: Trace<'_>,
    ) -> (Vec<IpAddr>, Option<hickory_proto::rr::Name>) {
        let mut out = Vec::new();
        for site in sites {
            if out.len() >= self.max_answers {
                break;
            }
            let ip = match &site.answer {
                SiteAnswer::Ip(ip) => *ip,
                SiteAnswer::Cname(target) => {
                    if out.is_empty() {
                        site.count(trace);
                        note(trace, || {
                            format!("answered as CNAME {target} (site {})", site.name)
                        });
                        return (out, Some(target.clone()));
                    }
                    continue;
                }
            };
            if !out.contains(&ip) {
                out.push(ip);
                site.count(trace);
            }
        }
        (out, None)
    }

    /// Counts each site's answers in `metrics` from now on.
    pub(crate) fn count_answers(&self, record: &str, metrics: &crate::DnsMetrics) {
        for site in &self.sites {
            let _ = site.answered.set(metrics.site_answers(record, &site.name));
        }
    }

    /// For the tests and the explain output: the sites in configuration order.
    #[cfg(test)]
    pub(crate) fn addresses(&self, family: Family, health: &dyn HealthView) -> Vec<IpAddr> {
        self.decide(family, health, None, &Topology::default(), None)
            .addresses
    }
}

/// A site's answers in the current second on this node: the second (since the epoch) in the
/// high 32 bits, the count in the low 32, so one atomic word holds both.
#[derive(Debug, Default)]
struct Load(AtomicU64);

impl Load {
    fn now() -> u32 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32)
    }

    /// Answers counted in second `now`.
    fn count(&self, now: u32) -> u32 {
        let v = self.0.load(Ordering::Relaxed);
        if (v >> 32) as u32 == now {
            v as u32
        } else {
            0
        }
    }

    fn add(&self, now: u32) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                let count = if (v >> 32) as u32 == now { v as u32 } else { 0 };
                Some((u64::from(now) << 32) | u64::from(count.saturating_add(1)))
            });
    }
}

impl SiteTarget {
    /// Counts one answer of the site (its metric and its load), unless this is an explanation.
    fn count(&self, trace: Trace<'_>) {
        if trace.is_some() {
            return;
        }
        if let Some(counter) = self.answered.get() {
            counter.inc();
        }
        if self.capacity.is_some() {
            self.load.add(Load::now());
        }
    }

    /// Whether this node may hand the site out once more this second: its share of the
    /// capacity is the capacity over the live nodes, rounded up.
    fn has_room(&self, nodes: usize, now: u32) -> bool {
        let Some(capacity) = self.capacity else {
            return true;
        };
        let nodes = u32::try_from(nodes.max(1)).unwrap_or(u32::MAX);
        self.load.count(now) < capacity.div_ceil(nodes)
    }
}

/// The hash key of a client for persistence (its /24 or /56) and the prefix that key holds.
fn persistence_key(client: Option<&ClientSubnet>) -> (u64, u8) {
    let Some(client) = client else {
        return (0, 0);
    };
    let (w, bits, prefix) = client.bits();
    let keep = if w == 32 {
        PERSIST_PREFIX_V4
    } else {
        PERSIST_PREFIX_V6
    };
    let bits = bits & mask(prefix.min(keep));
    let folded = (bits >> 64) as u64 ^ (bits as u64) ^ u64::from(w);
    (splitmix64(folded), keep)
}

/// Weighted rendezvous hashing (highest random weight): every node scores the same, a site's
/// share follows its weight, and removing a site moves only its own clients.
fn rendezvous(key: u64, site: &SiteTarget) -> f64 {
    let h = splitmix64(key ^ site.seed);
    // A uniform value in (0, 1): never 0, so the logarithm is finite.
    let u = ((h >> 11) as f64 + 1.0) / ((1u64 << 53) as f64 + 1.0);
    -f64::from(site.weight) / u.ln()
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A settable health view for tests.
    #[derive(Default)]
    pub(crate) struct FakeHealth(pub(crate) Mutex<HashMap<String, bool>>);

    impl FakeHealth {
        pub(crate) fn set(&self, record: &str, site: &str, healthy: bool) {
            if let Ok(mut map) = self.0.lock() {
                map.insert(model::site_health_key(record, site), healthy);
            }
        }
    }

    impl HealthView for FakeHealth {
        fn is_healthy(&self, key: &str) -> Option<bool> {
            self.0.lock().ok().and_then(|map| map.get(key).copied())
        }
    }

    fn check() -> Arc<model::HealthCheck> {
        Arc::new(model::HealthCheck {
            name: "hc".into(),
            path: "/".into(),
            host: None,
            interval: std::time::Duration::from_secs(1),
            timeout: std::time::Duration::from_secs(1),
            rise: 1,
            fall: 1,
            expect_status: 200,
            protocol: model::CheckProtocol::Http,
            expect_body: None,
            ca_pem: None,
        })
    }

    pub(crate) fn record(policy: AllDownPolicy, sites: &[(&str, &str, bool)]) -> GslbRecord {
        GslbRecord {
            name: "app.example.com.".into(),
            zone: "example.com.".into(),
            ttl: 30,
            sites: sites
                .iter()
                .map(|(name, addr, checked)| Site {
                    name: (*name).into(),
                    address: model::SiteAddress::Ip(addr.parse().expect("test address")),
                    probe: model::ProbeTarget::Addr(([127, 0, 0, 1], 80).into()),
                    health_check: checked.then(check),
                    state: model::AdminState::Enabled,
                    priority: 1,
                    weight: 1,
                    region: None,
                    location: None,
                    capacity: None,
                })
                .collect(),
            when_all_down: policy,
            policy: GslbPolicy::All,
            max_answers: None,
            steer: Steer::None,
            fallback: Vec::new(),
        }
    }

    fn v4(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn answers_only_healthy_sites_of_the_family() {
        let rec = record(
            AllDownPolicy::Empty,
            &[
                ("a", "192.0.2.1", true),
                ("b", "192.0.2.2", true),
                ("c", "2001:db8::1", true),
            ],
        );
        let target = GslbTarget::compile(&rec);
        let health = FakeHealth::default();
        assert_eq!(
            target.addresses(Family::V4, &health).len(),
            2,
            "unobserved is healthy"
        );
        health.set(&rec.name, "a", false);
        assert_eq!(target.addresses(Family::V4, &health), vec![v4("192.0.2.2")]);
        assert_eq!(
            target.addresses(Family::V6, &health),
            vec![v4("2001:db8::1")]
        );
        health.set(&rec.name, "b", false);
        assert!(
            target.addresses(Family::V4, &health).is_empty(),
            "v6 site still up"
        );
    }

    #[test]
    fn all_down_policies() {
        let health = FakeHealth::default();
        for (policy, expect) in [(AllDownPolicy::Empty, 0), (AllDownPolicy::All, 2)] {
            let rec = record(
                policy,
                &[("a", "192.0.2.1", true), ("b", "192.0.2.2", true)],
            );
            health.set(&rec.name, "a", false);
            health.set(&rec.name, "b", false);
            let target = GslbTarget::compile(&rec);
            assert_eq!(
                target.addresses(Family::V4, &health).len(),
                expect,
                "{policy:?}"
            );
        }
    }

    #[test]
    fn sites_out_of_service_are_never_answered_even_when_all_are_down() {
        let health = FakeHealth::default();
        let mut rec = record(
            AllDownPolicy::All,
            &[("a", "192.0.2.1", true), ("b", "192.0.2.2", true)],
        );
        rec.sites[0].state = model::AdminState::Draining;
        let target = GslbTarget::compile(&rec);
        assert_eq!(target.addresses(Family::V4, &health), vec![v4("192.0.2.2")]);
        health.set(&rec.name, "b", false);
        // Every enabled site is down: the policy answers with all of them, not the drained one.
        assert_eq!(target.addresses(Family::V4, &health), vec![v4("192.0.2.2")]);
        rec.sites[1].state = model::AdminState::Disabled;
        let target = GslbTarget::compile(&rec);
        assert!(target.addresses(Family::V4, &health).is_empty());
    }

    #[test]
    fn unchecked_site_is_always_healthy() {
        let rec = record(AllDownPolicy::Empty, &[("a", "192.0.2.1", false)]);
        let health = FakeHealth::default();
        health.set(&rec.name, "a", false);
        let target = GslbTarget::compile(&rec);
        assert_eq!(target.addresses(Family::V4, &health), vec![v4("192.0.2.1")]);
        let mut config = Config::empty();
        config.gslb_records.push(rec);
        let states = site_states(&config, &health);
        assert_eq!(
            states[0].1,
            vec![("a".to_string(), "192.0.2.1".to_string(), true)]
        );
    }

    fn four_sites() -> GslbRecord {
        let mut r = record(
            AllDownPolicy::Empty,
            &[
                ("a", "192.0.2.1", true),
                ("b", "192.0.2.2", true),
                ("c", "192.0.2.3", true),
                ("d", "192.0.2.4", true),
            ],
        );
        for (site, (priority, weight)) in r.sites.iter_mut().zip([(1, 3), (1, 1), (2, 0), (3, 1)]) {
            site.priority = priority;
            site.weight = weight;
        }
        r
    }

    #[test]
    fn failover_answers_the_best_priority_that_is_up() {
        let mut r = four_sites();
        r.policy = GslbPolicy::Failover;
        let target = GslbTarget::compile(&r);
        let health = FakeHealth::default();
        assert_eq!(
            target.addresses(Family::V4, &health),
            vec![v4("192.0.2.1"), v4("192.0.2.2")]
        );
        health.set(&r.name, "a", false);
        assert_eq!(target.addresses(Family::V4, &health), vec![v4("192.0.2.2")]);
        health.set(&r.name, "b", false);
        assert_eq!(target.addresses(Family::V4, &health), vec![v4("192.0.2.3")]);
        health.set(&r.name, "c", false);
        assert_eq!(target.addresses(Family::V4, &health), vec![v4("192.0.2.4")]);
        health.set(&r.name, "a", true);
        assert_eq!(target.addresses(Family::V4, &health), vec![v4("192.0.2.1")]);
    }

    #[test]
    fn weighted_gives_each_site_its_part_exactly() {
        let mut r = four_sites();
        r.policy = GslbPolicy::Weighted;
        let target = GslbTarget::compile(&r);
        let health = FakeHealth::default();
        health.set(&r.name, "d", false);
        let mut count: HashMap<IpAddr, usize> = HashMap::new();
        // Weights 3, 1 and 1 (a weight of 0 counts as 1): 5 answers per round.
        for _ in 0..500 {
            let a = target.addresses(Family::V4, &health);
            assert_eq!(a.len(), 1, "one site per answer");
            *count.entry(a[0]).or_default() += 1;
        }
        assert_eq!(count[&v4("192.0.2.1")], 300);
        assert_eq!(count[&v4("192.0.2.2")], 100);
        assert_eq!(count[&v4("192.0.2.3")], 100);
        assert!(
            !count.contains_key(&v4("192.0.2.4")),
            "a down site gets nothing"
        );
    }

    #[test]
    fn round_robin_rotates_and_max_answers_bounds_every_policy() {
        let mut r = four_sites();
        r.policy = GslbPolicy::RoundRobin;
        r.max_answers = Some(2);
        let target = GslbTarget::compile(&r);
        let health = FakeHealth::default();
        let firsts: Vec<IpAddr> = (0..4)
            .map(|_| {
                let a = target.addresses(Family::V4, &health);
                assert_eq!(a.len(), 2);
                a[0]
            })
            .collect();
        assert_eq!(
            firsts,
            vec![
                v4("192.0.2.1"),
                v4("192.0.2.2"),
                v4("192.0.2.3"),
                v4("192.0.2.4")
            ]
        );
        r.policy = GslbPolicy::All;
        let all = GslbTarget::compile(&r);
        assert_eq!(
            all.addresses(Family::V4, &health),
            vec![v4("192.0.2.1"), v4("192.0.2.2")]
        );
        // Every site down: the all-down policy answers, not the steering policy.
        for s in ["a", "b", "c", "d"] {
            health.set(&r.name, s, false);
        }
        r.when_all_down = AllDownPolicy::All;
        r.policy = GslbPolicy::Failover;
        r.max_answers = None;
        let down = GslbTarget::compile(&r);
        assert_eq!(down.addresses(Family::V4, &health).len(), 4);
    }

    /// A region for tests: name, networks, location, regions it spills to.
    type TestRegion<'a> = (&'a str, &'a [&'a str], Option<&'a str>, &'a [usize]);

    fn topology(regions: &[TestRegion<'_>]) -> (Config, Topology) {
        let mut config = Config::empty();
        for (name, nets, location, spill) in regions {
            config.regions.push(model::Region {
                name: (*name).into(),
                countries: Vec::new(),
                continents: Vec::new(),
                networks: nets
                    .iter()
                    .map(|n| Cidr::parse(n).expect("test cidr").network())
                    .collect(),
                location: location.map(|l| GeoPoint::parse(l).expect("test location")),
                spill_to: spill.to_vec(),
            });
        }
        let topology = Topology::compile(&config);
        (config, topology)
    }

    fn subnet(s: &str) -> ClientSubnet {
        let c = Cidr::parse(s).expect("test subnet");
        ClientSubnet {
            addr: c.addr,
            prefix: c.prefix,
        }
    }

    #[test]
    fn placement_scope_is_the_prefix_that_decides_it() {
        let (_, t) = topology(&[
            ("east", &["198.51.100.0/24", "10.0.0.0/8"], None, &[]),
            ("west", &["203.0.113.0/24", "10.1.2.0/24"], None, &[]),
            ("v6", &["2001:db8::/32"], None, &[]),
        ]);
        let place = |s: &str| t.place(&subnet(s));
        assert_eq!(
            place("198.51.100.7/32"),
            Placement {
                region: Some(0),
                scope: 24,
                location: None,
            }
        );
        // The resolver sent a /24: the same.
        assert_eq!(place("198.51.100.0/24").scope, 24);
        // A /16 holds networks of both kinds: in no region, and the answer needs 24 bits.
        assert_eq!(
            place("198.51.0.0/16"),
            Placement {
                region: None,
                scope: 24,
                location: None,
            }
        );
        // 10/8 is east except 10.1.2.0/24, carved out for west: 10.8.0.0/13 decides 10.9.9.9.
        assert_eq!(
            place("10.9.9.9/32"),
            Placement {
                region: Some(0),
                scope: 13,
                location: None,
            }
        );
        assert_eq!(place("10.1.2.3/32").region, Some(1));
        assert_eq!(
            place("10.1.3.0/24").scope,
            24,
            "a neighbour of the carve-out"
        );
        // In no network: the scope is the bits that tell it from the nearest one (10/8).
        assert_eq!(
            place("8.8.8.0/24"),
            Placement {
                region: None,
                scope: 7,
                location: None,
            }
        );
        assert_eq!(place("200.0.0.0/24").scope, 7, "203.0.113.0/24 is nearest");
        assert_eq!(place("2001:db8:1::/48").region, Some(2));
        assert_eq!(place("2001:db8:1::/48").scope, 32);
        // IPv4-mapped IPv6 is IPv4.
        assert_eq!(place("::ffff:203.0.113.9/128").region, Some(1));
    }

    fn geo_record(steer: Steer) -> GslbRecord {
        let mut r = record(
            AllDownPolicy::Empty,
            &[
                ("east", "192.0.2.1", true),
                ("east2", "192.0.2.2", true),
                ("west", "192.0.2.3", true),
                ("asia", "192.0.2.4", true),
            ],
        );
        r.steer = steer;
        for (site, (region, loc)) in r.sites.iter_mut().zip([
            (0, "40.7,-74.0"),
            (0, "40.7,-74.0"),
            (1, "37.8,-122.4"),
            (2, "35.7,139.7"),
        ]) {
            site.region = Some(region);
            site.location = GeoPoint::parse(loc);
        }
        r
    }

    #[test]
    fn geo_steers_to_the_region_then_spills_to_its_next_regions() {
        let (_, t) = topology(&[
            ("east", &["198.51.100.0/24"], Some("40.7,-74.0"), &[1]),
            ("west", &["203.0.113.0/24"], Some("37.8,-122.4"), &[]),
            ("asia", &["192.0.2.0/24"], Some("35.7,139.7"), &[]),
        ]);
        let r = geo_record(Steer::Geo);
        let g = GslbTarget::compile(&r);
        let health = FakeHealth::default();
        let ask = |s: &str| g.decide(Family::V4, &health, Some(&subnet(s)), &t, None);
        assert_eq!(
            ask("198.51.100.7/24"),
            Decision {
                addresses: vec![v4("192.0.2.1"), v4("192.0.2.2")],
                cname: None,
                scope: 24,
                ttl: 30,
                servfail: false,
            }
        );
        assert_eq!(ask("203.0.113.0/24").addresses, vec![v4("192.0.2.3")]);
        assert_eq!(ask("100.64.0.0/24").addresses.len(), 4, "no region: all");
        health.set(&r.name, "east", false);
        health.set(&r.name, "east2", false);
        // East's clients spill to west (their spill_to), not to every site.
        assert_eq!(ask("198.51.100.7/24").addresses, vec![v4("192.0.2.3")]);
        health.set(&r.name, "west", false);
        assert_eq!(ask("198.51.100.7/24").addresses, vec![v4("192.0.2.4")]);
        // Without a client, the answer does not depend on one.
        assert_eq!(g.decide(Family::V4, &health, None, &t, None).scope, 0);
    }

    #[test]
    fn nearest_answers_the_closest_healthy_spot() {
        let (_, t) = topology(&[
            ("east", &["198.51.100.0/24"], Some("42.4,-71.1"), &[]),
            ("west", &["203.0.113.0/24"], Some("47.6,-122.3"), &[]),
            ("asia", &["192.0.2.0/24"], None, &[]),
        ]);
        let r = geo_record(Steer::Nearest);
        let g = GslbTarget::compile(&r);
        let health = FakeHealth::default();
        let ask = |s: &str| g.decide(Family::V4, &health, Some(&subnet(s)), &t, None);
        // Boston is nearest New York, where two sites stand together.
        assert_eq!(
            ask("198.51.100.1/32").addresses,
            vec![v4("192.0.2.1"), v4("192.0.2.2")]
        );
        assert_eq!(ask("203.0.113.1/32").addresses, vec![v4("192.0.2.3")]);
        health.set(&r.name, "west", false);
        // Seattle's next nearest is New York, not Tokyo.
        assert_eq!(
            ask("203.0.113.1/32").addresses,
            vec![v4("192.0.2.1"), v4("192.0.2.2")]
        );
        // A region without a location: every healthy site.
        assert_eq!(ask("192.0.2.9/32").addresses.len(), 3);
    }

    #[test]
    fn persistent_keeps_a_subnet_on_its_site_and_moves_only_a_dead_sites_clients() {
        let mut r = four_sites();
        r.policy = GslbPolicy::Persistent;
        let g = GslbTarget::compile(&r);
        let t = Topology::default();
        let health = FakeHealth::default();
        let pick = |net: u32| {
            let client = ClientSubnet {
                addr: IpAddr::V4((0x0a00_0000 + (net << 8) + 7).into()),
                prefix: 32,
            };
            let d = g.decide(Family::V4, &health, Some(&client), &t, None);
            assert_eq!(d.scope, 24);
            assert_eq!(d.addresses.len(), 1);
            d.addresses[0]
        };
        let before: Vec<IpAddr> = (0..2000).map(pick).collect();
        // Stable: the same subnet gets the same site every time (and on every node: the hash
        // has no per-process seed).
        assert_eq!(before, (0..2000).map(pick).collect::<Vec<_>>());
        // Weights 3, 1, 1, 1 (c's 0 counts as 1): a gets about half.
        let a = before.iter().filter(|ip| **ip == v4("192.0.2.1")).count();
        assert!((850..1150).contains(&a), "a got {a} of 2000");
        health.set(&r.name, "b", false);
        let after: Vec<IpAddr> = (0..2000).map(pick).collect();
        for (old, new) in before.iter().zip(&after) {
            if *old != v4("192.0.2.2") {
                assert_eq!(old, new, "only b's clients move");
            } else {
                assert_ne!(*new, v4("192.0.2.2"));
            }
        }
    }

    #[test]
    fn force_up_answers_a_site_its_checks_call_down() {
        let mut rec = record(
            AllDownPolicy::Empty,
            &[("a", "192.0.2.1", true), ("b", "192.0.2.2", true)],
        );
        let health = FakeHealth::default();
        health.set(&rec.name, "a", false);
        health.set(&rec.name, "b", false);
        rec.sites[0].state = model::AdminState::ForceUp;
        let target = GslbTarget::compile(&rec);
        assert_eq!(target.addresses(Family::V4, &health), vec![v4("192.0.2.1")]);
        let mut config = Config::empty();
        config.gslb_records.push(rec);
        assert!(site_states(&config, &health)[0].1[0].2, "shown as answered");
    }

    #[test]
    fn all_down_can_answer_a_fallback_or_servfail() {
        let health = FakeHealth::default();
        let mut rec = record(
            AllDownPolicy::Fallback,
            &[("a", "192.0.2.1", true), ("b", "192.0.2.2", true)],
        );
        rec.fallback = vec![v4("198.51.100.99"), v4("2001:db8::99")];
        health.set(&rec.name, "a", false);
        health.set(&rec.name, "b", false);
        let g = GslbTarget::compile(&rec);
        let t = Topology::default();
        let d = g.decide(Family::V4, &health, None, &t, None);
        assert_eq!(
            (d.addresses, d.servfail),
            (vec![v4("198.51.100.99")], false)
        );
        let d = g.decide(Family::V6, &health, None, &t, None);
        assert_eq!(d.addresses, vec![v4("2001:db8::99")]);
        rec.when_all_down = AllDownPolicy::Servfail;
        let g = GslbTarget::compile(&rec);
        assert!(g.decide(Family::V4, &health, None, &t, None).servfail);
        health.set(&rec.name, "b", true);
        let d = g.decide(Family::V4, &health, None, &t, None);
        assert_eq!((d.addresses, d.servfail), (vec![v4("192.0.2.2")], false));
    }

    /// A health view whose one site is about to change.
    struct Pending(FakeHealth, String);

    impl HealthView for Pending {
        fn is_healthy(&self, key: &str) -> Option<bool> {
            self.0.is_healthy(key)
        }
        fn pending(&self, key: &str) -> bool {
            key == self.1
        }
    }

    #[test]
    fn the_ttl_is_capped_while_a_sites_state_may_change() {
        let rec = record(
            AllDownPolicy::Empty,
            &[("a", "192.0.2.1", true), ("b", "192.0.2.2", false)],
        );
        let g = GslbTarget::compile(&rec);
        let t = Topology::default();
        let calm = Pending(FakeHealth::default(), String::new());
        assert_eq!(g.decide(Family::V4, &calm, None, &t, None).ttl, 30);
        let key = model::site_health_key(&rec.name, "a");
        let changing = Pending(FakeHealth::default(), key);
        // Capped at the site's probe interval (1 s).
        assert_eq!(g.decide(Family::V4, &changing, None, &t, None).ttl, 1);
    }

    /// A GeoIP database in a table: 81.0.0.0/8 is Germany, 36.0.0.0/8 Japan (Asia, no
    /// country region), each with a location.
    struct FakeGeo;

    impl GeoLocator for FakeGeo {
        fn locate(&self, addr: IpAddr) -> Option<GeoFacts> {
            let IpAddr::V4(v4) = addr else { return None };
            match v4.octets()[0] {
                81 => Some(GeoFacts {
                    country: Some("DE".into()),
                    continent: Some("EU".into()),
                    location: GeoPoint::parse("52.5,13.4"),
                    prefix: 8,
                }),
                36 => Some(GeoFacts {
                    country: Some("JP".into()),
                    continent: Some("AS".into()),
                    location: GeoPoint::parse("35.7,139.7"),
                    prefix: 8,
                }),
                _ => None,
            }
        }
    }

    #[test]
    fn the_geoip_database_places_clients_no_network_holds() {
        let (mut config, _) = topology(&[
            ("east", &["198.51.100.0/24"], Some("40.7,-74.0"), &[]),
            ("west", &[], Some("37.8,-122.4"), &[]),
            ("asia", &[], Some("35.7,139.7"), &[]),
        ]);
        config.regions[1].countries = vec!["DE".into()];
        config.regions[2].continents = vec!["AS".into()];
        let mut t = Topology::compile(&config);
        t.set_locator(Some(Arc::new(FakeGeo)));
        let place = |s: &str| t.place(&subnet(s));
        // A network of the table wins over the database.
        assert_eq!(place("198.51.100.7/32").region, Some(0));
        // Germany is west's by country; the scope is the database's /8.
        let de = place("81.2.3.0/24");
        assert_eq!((de.region, de.scope), (Some(1), 8));
        assert!(de.location.is_some());
        // Japan is in no country list: its continent.
        assert_eq!(place("36.1.1.1/32").region, Some(2));
        assert_eq!(place("100.64.0.1/32").region, None);
        // Nearest steers by the client's own coordinates: Tokyo to the Tokyo site.
        let mut r = geo_record(Steer::Nearest);
        r.sites.truncate(4);
        let g = GslbTarget::compile(&r);
        let health = FakeHealth::default();
        let d = g.decide(Family::V4, &health, Some(&subnet("36.1.1.1/32")), &t, None);
        assert_eq!(d.addresses, vec![v4("192.0.2.4")]);
    }

    /// A health view with `n` live nodes and every site healthy.
    struct Nodes(usize);

    impl HealthView for Nodes {
        fn is_healthy(&self, _: &str) -> Option<bool> {
            Some(true)
        }
        fn live_nodes(&self) -> usize {
            self.0
        }
    }

    /// Runs `f` until one run fits inside one second of the load windows.
    fn within_one_second<T>(mut f: impl FnMut() -> T) -> T {
        loop {
            let before = Load::now();
            let out = f();
            if Load::now() == before {
                return out;
            }
        }
    }

    #[test]
    fn a_full_site_sheds_its_load_to_the_others_and_every_full_site_is_still_answered() {
        let answers = |nodes: usize, east_cap: u32, west_cap: Option<u32>, n: usize| {
            let mut r = record(
                AllDownPolicy::Empty,
                &[("east", "192.0.2.1", false), ("west", "192.0.2.2", false)],
            );
            r.policy = GslbPolicy::Failover;
            r.sites[0].capacity = Some(east_cap);
            r.sites[1].priority = 2;
            r.sites[1].capacity = west_cap;
            let health = Nodes(nodes);
            within_one_second(|| {
                // A fresh target each try: its load starts at zero.
                let target = GslbTarget::compile(&r);
                (0..n)
                    .map(|_| {
                        target
                            .decide(Family::V4, &health, None, &Topology::default(), None)
                            .addresses[0]
                            .to_string()
                    })
                    .collect::<Vec<_>>()
            })
        };
        // Failover prefers east; past its 3 answers a second, west takes the rest.
        let got = answers(1, 3, None, 5);
        assert_eq!(
            got,
            [
                "192.0.2.1",
                "192.0.2.1",
                "192.0.2.1",
                "192.0.2.2",
                "192.0.2.2"
            ]
        );
        // Two live nodes: each allows half of it (rounded up).
        let got = answers(2, 3, None, 4);
        assert_eq!(got, ["192.0.2.1", "192.0.2.1", "192.0.2.2", "192.0.2.2"]);
        // Both full: the candidates (east) are answered anyway, never nothing.
        let got = answers(1, 1, Some(1), 4);
        assert_eq!(got, ["192.0.2.1", "192.0.2.2", "192.0.2.1", "192.0.2.1"]);

        // The explanation says why.
        let mut r = record(AllDownPolicy::Empty, &[("east", "192.0.2.1", false)]);
        r.sites[0].capacity = Some(1);
        let target = GslbTarget::compile(&r);
        let trace = within_one_second(|| {
            let _ = target.decide(Family::V4, &Nodes(1), None, &Topology::default(), None);
            let trace = RefCell::new(Vec::new());
            let _ = target.decide(
                Family::V4,
                &Nodes(1),
                None,
                &Topology::default(),
                Some(&trace),
            );
            trace.into_inner().join("\n")
        });
        assert!(trace.contains("at capacity this second"), "{trace}");
    }
}
