//! The serialized form of the cluster configuration: the one shape used by files, the API and the
//! Raft log. Everything here is plain data; `validate` turns it into the typed model.
//!
//! Unknown fields are refused by [`crate::parse`], which lists every one of them with its path,
//! rather than by `deny_unknown_fields`, which would stop at the first.

use serde::{Deserialize, Serialize};

/// The only `api_version` this build understands.
pub const API_VERSION: &str = "meridian/v1";

/// The whole replicated configuration document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSpec {
    pub api_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<PoolSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_checks: Vec<HealthCheckSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<ZoneSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gslb_records: Vec<GslbRecordSpec>,
}

impl Default for ConfigSpec {
    fn default() -> Self {
        ConfigSpec {
            api_version: API_VERSION.to_string(),
            listeners: Vec::new(),
            routes: Vec::new(),
            pools: Vec::new(),
            health_checks: Vec::new(),
            zones: Vec::new(),
            gslb_records: Vec::new(),
        }
    }
}

/// A proxy listener: where clients connect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerSpec {
    pub name: String,
    /// `ip:port` to bind.
    pub bind: String,
    #[serde(default)]
    pub protocol: ListenerProtocol,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerProtocol {
    #[default]
    Http,
}

/// Host plus path prefix on a listener, sending to a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSpec {
    pub name: String,
    pub listener: String,
    /// Exact host (`app.example.com`), a leading wildcard (`*.example.com`), or absent for any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default = "default_path_prefix")]
    pub path_prefix: String,
    pub pool: String,
}

fn default_path_prefix() -> String {
    "/".to_string()
}

/// A set of upstream members balanced round robin by weight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSpec {
    pub name: String,
    #[serde(default)]
    pub members: Vec<MemberSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<String>,
    /// Upper bound on one upstream exchange (connect plus response head), in milliseconds.
    #[serde(default = "default_upstream_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_upstream_timeout_ms() -> u64 {
    30_000
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSpec {
    /// `ip:port` of the member.
    pub address: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// An active HTTP health check, referenced by pools and GSLB sites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheckSpec {
    pub name: String,
    #[serde(default = "default_check_path")]
    pub path: String,
    /// Host header to send; the target address when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Consecutive successes that bring a target up.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Consecutive failures that take a target down.
    #[serde(default = "default_fall")]
    pub fall: u32,
    #[serde(default = "default_expect_status")]
    pub expect_status: u16,
}

fn default_check_path() -> String {
    "/".to_string()
}
fn default_interval_ms() -> u64 {
    2_000
}
fn default_timeout_ms() -> u64 {
    1_000
}
fn default_rise() -> u32 {
    2
}
fn default_fall() -> u32 {
    3
}
fn default_expect_status() -> u16 {
    200
}

/// An authoritative DNS zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneSpec {
    /// The zone apex, e.g. `example.com` (a trailing dot is optional).
    pub name: String,
    pub soa: SoaSpec,
    /// Name servers for the apex NS set.
    #[serde(default)]
    pub ns: Vec<String>,
    #[serde(default)]
    pub records: Vec<RecordSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoaSpec {
    pub mname: String,
    /// Responsible mailbox in DNS form (`hostmaster.example.com`).
    pub rname: String,
    #[serde(default = "default_refresh")]
    pub refresh: u32,
    #[serde(default = "default_retry")]
    pub retry: u32,
    #[serde(default = "default_expire")]
    pub expire: u32,
    /// Negative-caching TTL.
    #[serde(default = "default_minimum")]
    pub minimum: u32,
    #[serde(default = "default_ttl")]
    pub ttl: u32,
}

fn default_refresh() -> u32 {
    3_600
}
fn default_retry() -> u32 {
    600
}
fn default_expire() -> u32 {
    604_800
}
fn default_minimum() -> u32 {
    60
}
fn default_ttl() -> u32 {
    300
}

/// One resource record. `name` is relative to the zone (`@` is the apex) or absolute with a
/// trailing dot. `value` is in presentation form: `192.0.2.1`, `10 mail.example.com.`, ...
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: RecordType,
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordType {
    A,
    AAAA,
    CNAME,
    TXT,
    MX,
}

/// A GSLB name answered with the addresses of its healthy sites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GslbRecordSpec {
    /// Fully qualified name inside one of the configured zones.
    pub name: String,
    #[serde(default = "default_gslb_ttl")]
    pub ttl: u32,
    #[serde(default)]
    pub sites: Vec<SiteSpec>,
    /// What to answer when no site is healthy.
    #[serde(default)]
    pub when_all_down: AllDownPolicy,
}

fn default_gslb_ttl() -> u32 {
    30
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllDownPolicy {
    /// Answer with no addresses (NODATA), so resolvers fail fast.
    #[default]
    Empty,
    /// Answer with every site, on the theory that health checks may be what failed.
    All,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteSpec {
    pub name: String,
    /// The address handed out (IPv4 answers A queries, IPv6 answers AAAA).
    pub address: String,
    /// Port the health check probes on `address`.
    #[serde(default = "default_site_port")]
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<String>,
}

fn default_site_port() -> u16 {
    80
}
