//! The validated, typed model. Every value here has been checked by [`crate::validate`], so the
//! planes that compile it never re-parse strings or meet a dangling reference.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::spec::{AllDownPolicy, ConfigSpec, ListenerProtocol, SoaSpec};

/// A configuration that passed validation, plus the spec it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub spec: ConfigSpec,
    pub listeners: Vec<Listener>,
    pub routes: Vec<Route>,
    pub pools: Vec<Pool>,
    pub health_checks: BTreeMap<String, Arc<HealthCheck>>,
    pub zones: Vec<Zone>,
    pub gslb_records: Vec<GslbRecord>,
}

impl Config {
    /// The empty configuration a pristine cluster starts from.
    pub fn empty() -> Config {
        Config {
            spec: ConfigSpec::default(),
            listeners: Vec::new(),
            routes: Vec::new(),
            pools: Vec::new(),
            health_checks: BTreeMap::new(),
            zones: Vec::new(),
            gslb_records: Vec::new(),
        }
    }
}

/// A value tagged with the revision (Raft log index) that produced it.
#[derive(Debug, Clone, PartialEq)]
pub struct Revisioned<T> {
    pub revision: u64,
    pub value: T,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub bind: SocketAddr,
    pub protocol: ListenerProtocol,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    Any,
    /// Lowercased exact host.
    Exact(String),
    /// `*.example.com` stored as `.example.com`: matches any host ending with it.
    Suffix(String),
}

impl HostMatch {
    /// `host` must already be lowercased and stripped of its port.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Any => true,
            HostMatch::Exact(h) => h == host,
            HostMatch::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
        }
    }

    /// Higher is more specific; used to order routes.
    pub fn specificity(&self) -> usize {
        match self {
            HostMatch::Any => 0,
            HostMatch::Suffix(s) => 1 + s.len(),
            HostMatch::Exact(h) => 1_000 + h.len(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub name: String,
    pub listener: String,
    pub host: HostMatch,
    pub path_prefix: String,
    pub pool: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub name: String,
    pub members: Vec<Member>,
    pub health_check: Option<Arc<HealthCheck>>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub address: SocketAddr,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub name: String,
    pub path: String,
    pub host: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    pub expect_status: u16,
}

/// A zone with names normalized to lowercase FQDNs with a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub origin: String,
    pub soa: SoaSpec,
    pub mname: String,
    pub rname: String,
    pub ns: Vec<String>,
    pub records: Vec<Record>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub ttl: u32,
    pub data: RecordData,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordData {
    A(Ipv4Addr),
    AAAA(Ipv6Addr),
    CNAME(String),
    TXT(String),
    MX { preference: u16, exchange: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct GslbRecord {
    /// Lowercase FQDN with a trailing dot.
    pub name: String,
    /// Origin of the zone the name lives in.
    pub zone: String,
    pub ttl: u32,
    pub sites: Vec<Site>,
    pub when_all_down: AllDownPolicy,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    pub name: String,
    pub address: IpAddr,
    /// Where the health check connects.
    pub probe: SocketAddr,
    pub health_check: Option<Arc<HealthCheck>>,
}

/// Key under which a pool member's health is kept, stable across revisions.
pub fn member_health_key(pool: &str, addr: SocketAddr) -> String {
    format!("pool/{pool}/{addr}")
}

/// Key under which a GSLB site's health is kept, stable across revisions.
pub fn site_health_key(record: &str, site: &str) -> String {
    format!("gslb/{record}/{site}")
}

/// Read-only view of health observations, so that DNS can ask about targets that another plane
/// probes without depending on it.
pub trait HealthView: Send + Sync {
    /// `None` when the key has never been observed.
    fn is_healthy(&self, key: &str) -> Option<bool>;
}
