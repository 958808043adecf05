//! The validated, typed model. Every value here has been checked by [`crate::validate`], so the
//! planes that compile it never re-parse strings or meet a dangling reference.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::spec::{
    AllDownPolicy, ConfigSpec, ListenerProtocol, ProxyProtocolVersion, SoaSpec, UpstreamProtocol,
};

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
    pub regions: Vec<Region>,
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
            regions: Vec::new(),
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
    /// The pool of a `tcp` listener.
    pub pool: Option<String>,
    pub max_request_head_bytes: usize,
    pub max_request_line_bytes: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub drain_timeout: Duration,
    pub proxy_protocol_from: Vec<Cidr>,
    pub tls: Option<Arc<ListenerTls>>,
    /// TCP passthrough: (server name, lowercase; `*.suffix` for a wildcard, pool).
    pub sni_routes: Vec<(String, String)>,
    pub bandwidth: Option<crate::BandwidthSpec>,
}

/// A validated [`crate::ListenerTlsSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    pub certificates: Vec<String>,
    /// One of `certificates`.
    pub default_certificate: String,
    pub unknown_sni: crate::UnknownSni,
    pub min_version: crate::TlsVersion,
    pub ktls: crate::KtlsMode,
    pub handshake_timeout: Duration,
    pub client_auth: Option<crate::ClientAuthSpec>,
}

/// An IP network: an address and a prefix length that fits its family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// Parses `192.0.2.0/24`, `2001:db8::/32`, or a bare address (a host network).
    pub fn parse(s: &str) -> Option<Cidr> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { addr: ip, prefix })
    }

    /// The network address: `addr` with the host bits cleared.
    pub fn network(&self) -> Cidr {
        let addr = match self.addr {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        };
        Cidr {
            addr,
            prefix: self.prefix,
        }
    }

    /// Whether `ip` lies in this network. An IPv4-mapped IPv6 address matches IPv4 networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
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
    pub redirect: Option<Redirect>,
    pub request_headers: Option<HeaderEdit>,
    pub response_headers: Option<HeaderEdit>,
    pub rewrite_prefix: Option<String>,
    pub compression: Option<Compression>,
    /// Validated: a rate of at least one request, a burst of at least one, a header or cookie
    /// name that is a token, prefixes that fit, a delay only with `over_limit = "delay"`.
    pub rate_limit: Option<crate::RateLimitSpec>,
    pub access: Option<Access>,
    /// Validated: bounds in range, tags header and key headers lowercase tokens, query
    /// parameters non-empty.
    pub cache: Option<crate::CacheSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub allow: Vec<Cidr>,
    pub deny: Vec<Cidr>,
    /// Uppercase method names.
    pub methods: Vec<String>,
}

/// Validated compression: codecs distinct and non-empty, level 1-9, media types lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compression {
    pub codecs: Vec<crate::Codec>,
    pub level: u32,
    /// Exact types, and whole types as `text/` (from `text/*`).
    pub content_types: Vec<String>,
    pub min_size_bytes: u64,
    pub decompress_requests_max_bytes: Option<u64>,
}

/// Validated header edits: names are lowercase tokens, values visible ASCII.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderEdit {
    pub remove: Vec<String>,
    pub set: Vec<(String, String)>,
    pub add: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// `http` or `https`.
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: Option<String>,
    pub status: u16,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub name: String,
    pub members: Vec<Member>,
    pub health_check: Option<Arc<HealthCheck>>,
    pub timeout: Duration,
    pub upstream: UpstreamSettings,
    pub retries: u32,
    /// TLS to the members, as configured (the data plane builds its client from it).
    pub tls: Option<Arc<crate::PoolTlsSpec>>,
    pub max_concurrent_requests: Option<u32>,
}

/// How a pool's upstream connections are made and kept. Two pools with equal settings could
/// share connections; a change of settings starts a fresh connection pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UpstreamSettings {
    pub protocol: UpstreamProtocol,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_idle_per_member: usize,
    pub proxy_protocol: ProxyProtocolVersion,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub address: SocketAddr,
    pub weight: u32,
    pub state: crate::AdminState,
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
    pub protocol: crate::CheckProtocol,
    pub expect_body: Option<String>,
    pub ca_pem: Option<String>,
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
    pub secondaries: Vec<Secondary>,
}

/// A secondary server allowed to transfer a zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secondary {
    /// Where NOTIFY goes; transfers are served to requests from its IP only.
    pub addr: SocketAddr,
    /// Lowercase FQDN of the TSIG key, with a trailing dot.
    pub tsig_key: String,
    pub notify: bool,
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
    MX {
        preference: u16,
        exchange: String,
    },
    NS(String),
    SRV {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    /// Kept in presentation form; the DNS plane encodes it.
    CAA {
        flags: u8,
        tag: String,
        value: String,
    },
    PTR(String),
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
    pub policy: crate::GslbPolicy,
    pub max_answers: Option<u32>,
    pub steer: crate::Steer,
    pub fallback: Vec<IpAddr>,
}

/// A region of the GSLB topology, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    pub name: String,
    /// Networks with their host bits cleared.
    pub networks: Vec<Cidr>,
    /// Upper-case ISO country codes.
    pub countries: Vec<String>,
    /// Upper-case continent codes.
    pub continents: Vec<String>,
    pub location: Option<GeoPoint>,
    /// Indexes into `Config::regions`.
    pub spill_to: Vec<usize>,
}

/// A point on the globe, in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoPoint {
    pub latitude: f64,
    pub longitude: f64,
}

impl GeoPoint {
    /// Parses `"40.71,-74.01"`.
    pub fn parse(s: &str) -> Option<GeoPoint> {
        let (lat, lon) = s.split_once(',')?;
        let latitude: f64 = lat.trim().parse().ok()?;
        let longitude: f64 = lon.trim().parse().ok()?;
        ((-90.0..=90.0).contains(&latitude) && (-180.0..=180.0).contains(&longitude)).then_some(
            GeoPoint {
                latitude,
                longitude,
            },
        )
    }

    /// Great-circle distance in kilometres (haversine).
    pub fn distance_km(&self, other: &GeoPoint) -> f64 {
        const EARTH_RADIUS_KM: f64 = 6371.0;
        let (la1, la2) = (self.latitude.to_radians(), other.latitude.to_radians());
        let dla = la2 - la1;
        let dlo = (other.longitude - self.longitude).to_radians();
        let h = (dla / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlo / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    pub name: String,
    pub address: SiteAddress,
    /// Where the health check connects.
    pub probe: ProbeTarget,
    pub health_check: Option<Arc<HealthCheck>>,
    pub state: crate::AdminState,
    /// 1 or more; lower is preferred (failover).
    pub priority: u32,
    /// 1 or more (weighted).
    pub weight: u32,
    /// Index into `Config::regions`.
    pub region: Option<usize>,
    /// The site's location, or its region's.
    pub location: Option<GeoPoint>,
    /// Answers per second, cluster-wide.
    pub capacity: Option<u32>,
}

/// What a GSLB site is answered as.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SiteAddress {
    Ip(IpAddr),
    /// A host name (lowercase FQDN with a trailing dot): the answer is a CNAME to it.
    Cname(String),
}

impl SiteAddress {
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            SiteAddress::Ip(ip) => Some(*ip),
            SiteAddress::Cname(_) => None,
        }
    }
}

impl std::fmt::Display for SiteAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SiteAddress::Ip(ip) => write!(f, "{ip}"),
            SiteAddress::Cname(name) => write!(f, "CNAME {name}"),
        }
    }
}

/// Where a health check connects: an address, or a host name resolved at each probe.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProbeTarget {
    Addr(SocketAddr),
    Host(String, u16),
}

impl ProbeTarget {
    pub fn port(&self) -> u16 {
        match self {
            ProbeTarget::Addr(addr) => addr.port(),
            ProbeTarget::Host(_, port) => *port,
        }
    }
}

impl std::fmt::Display for ProbeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeTarget::Addr(addr) => write!(f, "{addr}"),
            ProbeTarget::Host(host, port) => write!(f, "{}:{port}", host.trim_end_matches('.')),
        }
    }
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
    /// Whether the target takes traffic: `None` when the key is unknown to the checker. A
    /// target not yet probed counts as healthy here, so a config change takes traffic at once.
    fn is_healthy(&self, key: &str) -> Option<bool>;

    /// Whether the target's state may be about to change (failing while up, passing while
    /// down, or the nodes of the cluster disagree): DNS caps the TTL of answers that depend
    /// on it, so resolvers come back soon.
    fn pending(&self, _key: &str) -> bool {
        false
    }

    /// The nodes answering DNS for the cluster now (this one included): a GSLB site's
    /// capacity is shared among them.
    fn live_nodes(&self) -> usize {
        1
    }

    /// What the console shows: up, down or not yet probed, with counters.
    fn status(&self, key: &str) -> Option<HealthStatus> {
        self.is_healthy(key).map(|up| HealthStatus {
            state: if up {
                HealthState::Up
            } else {
                HealthState::Down
            },
            failed_checks: 0,
            changed_unix_ms: 0,
        })
    }
}

/// The health of one probed target as an operator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthStatus {
    pub state: HealthState,
    /// Failed probes since the target was added.
    pub failed_checks: u64,
    /// When the state last changed (or the target was added), Unix milliseconds.
    pub changed_unix_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    /// Not probed yet.
    Unknown,
    Up,
    Down,
}

impl HealthState {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Unknown => "unknown",
            HealthState::Up => "up",
            HealthState::Down => "down",
        }
    }
}
