//! Validation: turns a [`ConfigSpec`] into a [`Config`] or returns every error with its field
//! path. It never stops at the first error, so one round trip shows an operator all of them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::spec::*;
use crate::typed::*;

/// One problem found in a configuration, with the path of the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

/// Every problem found; never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{} configuration error(s): {}", .errors.len(), summary(.errors))]
pub struct ValidationErrors {
    pub errors: Vec<FieldError>,
}

fn summary(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.path, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ValidationErrors {
    pub fn single(path: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationErrors {
            errors: vec![FieldError {
                path: path.into(),
                message: message.into(),
            }],
        }
    }
}

/// Collects errors while walking the spec.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// The newest validation rules this release knows. Rules are versioned so that every node
/// applies a replicated entry by the rules in force in the cluster (`schema` of the replicated
/// document), whatever release it runs; a tightened rule only applies from the version that
/// introduced it.
///
/// - 1: the rules up to 2026-12.
/// - 2: a zone may not list the same record (name, type, value) twice (RFC 2181 §5: an RRset
///   holds no duplicates).
pub const SCHEMA_SUPPORTED: u32 = 2;

/// Validates the whole document by the newest rules (what the API checks a change against).
pub fn validate(spec: &ConfigSpec) -> Result<Config, ValidationErrors> {
    validate_at(spec, SCHEMA_SUPPORTED)
}

/// Validates the whole document by the rules of `schema` (what the state machine applies a
/// replicated change by).
pub fn validate_at(spec: &ConfigSpec, schema: u32) -> Result<Config, ValidationErrors> {
    let mut e = Errors::default();
    if spec.api_version != API_VERSION {
        e.push(
            "api_version",
            format!(
                "unsupported api_version {:?}, expected {API_VERSION:?}",
                spec.api_version
            ),
        );
    }

    let health_checks = health_checks(spec, &mut e);
    let listeners = listeners(spec, &mut e);
    let pools = pools(spec, &health_checks, &mut e);
    let routes = routes(spec, &mut e);
    let zones = zones(spec, schema, &mut e);
    shadowed_records(&zones, &mut e);
    cname_loops(&zones, &mut e);
    let regions = regions(spec, &mut e);
    let gslb_records = gslb(spec, &zones, &health_checks, &regions, &mut e);
    if let Some(rl) = spec.dns.as_ref().and_then(|d| d.rate_limit.as_ref()) {
        let p = "dns.rate_limit";
        range_u64(
            format!("{p}.responses_per_second"),
            rl.responses_per_second.into(),
            0,
            10_000_000,
            &mut e,
        );
        range_u64(format!("{p}.slip"), rl.slip.into(), 0, 10, &mut e);
        range_u64(
            format!("{p}.ipv4_prefix"),
            rl.ipv4_prefix.into(),
            8,
            32,
            &mut e,
        );
        range_u64(
            format!("{p}.ipv6_prefix"),
            rl.ipv6_prefix.into(),
            16,
            128,
            &mut e,
        );
    }
    if let Some(days) = spec.audit_retention_days {
        range_u64("audit_retention_days".into(), days.into(), 1, 3650, &mut e);
    }
    if let Some(days) = spec.certificate_expiry_alarm_days {
        range_u64(
            "certificate_expiry_alarm_days".into(),
            days.into(),
            1,
            365,
            &mut e,
        );
    }
    if let Some(hours) = spec.session_ticket_rotation_hours {
        // Tickets live twice the rotation; RFC 8446 caps a ticket's lifetime at 7 days.
        range_u64(
            "session_ticket_rotation_hours".into(),
            hours.into(),
            1,
            84,
            &mut e,
        );
    }

    if !e.0.is_empty() {
        return Err(ValidationErrors { errors: e.0 });
    }
    Ok(Config {
        spec: spec.clone(),
        listeners,
        routes,
        pools,
        health_checks,
        zones,
        gslb_records,
        regions,
    })
}

fn check_name(path: &str, name: &str, seen: &mut HashSet<String>, e: &mut Errors) {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        e.push(
            format!("{path}.name"),
            format!("invalid name {name:?}: use 1-63 letters, digits, '-', '_' or '.'"),
        );
    }
    if !seen.insert(name.to_string()) {
        e.push(format!("{path}.name"), format!("duplicate name {name:?}"));
    }
}

fn parse_socket_addr(path: &str, s: &str, e: &mut Errors) -> Option<SocketAddr> {
    match s.parse::<SocketAddr>() {
        Ok(a) if a.port() == 0 => {
            e.push(path, format!("port 0 is not allowed in {s:?}"));
            None
        }
        Ok(a) => Some(a),
        Err(_) => {
            e.push(
                path,
                format!("invalid address {s:?}: expected ip:port such as 192.0.2.10:8080 or [2001:db8::1]:443"),
            );
            None
        }
    }
}

fn range_u64(path: String, v: u64, lo: u64, hi: u64, e: &mut Errors) {
    if v < lo || v > hi {
        e.push(path, format!("{v} is out of range {lo}..={hi}"));
    }
}

fn health_checks(spec: &ConfigSpec, e: &mut Errors) -> BTreeMap<String, Arc<HealthCheck>> {
    let mut seen = HashSet::new();
    let mut out = BTreeMap::new();
    for (i, hc) in spec.health_checks.iter().enumerate() {
        let p = format!("health_checks[{i}]");
        check_name(&p, &hc.name, &mut seen, e);
        if !is_request_target(&hc.path) {
            e.push(
                format!("{p}.path"),
                "must start with '/' and hold only URI characters (percent-encode the rest)",
            );
        }
        if let Some(h) = &hc.host {
            if !is_hostname(h) {
                e.push(format!("{p}.host"), format!("invalid host {h:?}"));
            }
        }
        range_u64(
            format!("{p}.interval_ms"),
            hc.interval_ms,
            100,
            3_600_000,
            e,
        );
        range_u64(format!("{p}.timeout_ms"), hc.timeout_ms, 10, 3_600_000, e);
        if hc.timeout_ms > hc.interval_ms {
            e.push(format!("{p}.timeout_ms"), "must not exceed interval_ms");
        }
        range_u64(format!("{p}.rise"), hc.rise.into(), 1, 100, e);
        range_u64(format!("{p}.fall"), hc.fall.into(), 1, 100, e);
        range_u64(
            format!("{p}.expect_status"),
            hc.expect_status.into(),
            100,
            599,
            e,
        );
        if let Some(body) = &hc.expect_body {
            if body.is_empty() || body.len() > 1024 {
                e.push(format!("{p}.expect_body"), "1 to 1024 bytes of text");
            }
            if hc.protocol == CheckProtocol::Tcp {
                e.push(format!("{p}.expect_body"), "a tcp check reads no body");
            }
        }
        if let Some(ca) = &hc.ca_pem {
            if hc.protocol != CheckProtocol::Https {
                e.push(
                    format!("{p}.ca_pem"),
                    "only an https check verifies a certificate",
                );
            } else if !ca.contains("-----BEGIN CERTIFICATE-----") {
                e.push(format!("{p}.ca_pem"), "no PEM certificate in it");
            }
        }
        out.insert(
            hc.name.clone(),
            Arc::new(HealthCheck {
                name: hc.name.clone(),
                path: hc.path.clone(),
                host: hc.host.clone(),
                interval: Duration::from_millis(hc.interval_ms),
                timeout: Duration::from_millis(hc.timeout_ms),
                rise: hc.rise,
                fall: hc.fall,
                expect_status: hc.expect_status,
                protocol: hc.protocol,
                expect_body: hc.expect_body.clone(),
                ca_pem: hc.ca_pem.clone(),
            }),
        );
    }
    out
}

fn listeners(spec: &ConfigSpec, e: &mut Errors) -> Vec<Listener> {
    let mut seen = HashSet::new();
    let mut binds: HashMap<SocketAddr, String> = HashMap::new();
    let pool_names: HashSet<&str> = spec.pools.iter().map(|p| p.name.as_str()).collect();
    let mut out = Vec::new();
    for (i, l) in spec.listeners.iter().enumerate() {
        let p = format!("listeners[{i}]");
        check_name(&p, &l.name, &mut seen, e);
        match (l.protocol, &l.pool) {
            (ListenerProtocol::Tcp, None) if l.sni_routes.is_empty() => e.push(
                format!("{p}.pool"),
                "a tcp listener needs the pool it proxies to",
            ),
            (ListenerProtocol::Tcp, Some(pool)) if !pool_names.contains(pool.as_str()) => {
                e.push(format!("{p}.pool"), format!("no pool named {pool:?}"))
            }
            (ListenerProtocol::Tcp, Some(pool))
                if spec
                    .pools
                    .iter()
                    .any(|x| &x.name == pool && x.tls.is_some()) =>
            {
                e.push(
                    format!("{p}.pool"),
                    format!(
                        "pool {pool:?} speaks TLS to its members; a tcp listener passes bytes \
                         through unchanged, so it needs a pool without tls"
                    ),
                )
            }
            (ListenerProtocol::Http, Some(_)) => e.push(
                format!("{p}.pool"),
                "only tcp listeners take a pool; http listeners send requests through routes",
            ),
            _ => {}
        }
        range_u64(
            format!("{p}.max_request_head_bytes"),
            l.max_request_head_bytes.into(),
            8 * 1024,
            1024 * 1024,
            e,
        );
        range_u64(
            format!("{p}.max_request_line_bytes"),
            l.max_request_line_bytes.into(),
            256,
            l.max_request_head_bytes.into(),
            e,
        );
        range_u64(
            format!("{p}.header_timeout_ms"),
            l.header_timeout_ms,
            100,
            600_000,
            e,
        );
        range_u64(
            format!("{p}.idle_timeout_ms"),
            l.idle_timeout_ms,
            100,
            86_400_000,
            e,
        );
        range_u64(
            format!("{p}.drain_timeout_ms"),
            l.drain_timeout_ms,
            0,
            3_600_000,
            e,
        );
        let mut proxy_protocol_from = Vec::new();
        for (j, c) in l.proxy_protocol_from.iter().enumerate() {
            match Cidr::parse(c) {
                Some(net) => proxy_protocol_from.push(net),
                None => e.push(
                    format!("{p}.proxy_protocol_from[{j}]"),
                    format!("invalid network {c:?}: expected a CIDR such as 10.0.0.0/8"),
                ),
            }
        }
        let tls = l.tls.as_ref().and_then(|t| listener_tls(&p, l, t, e));
        let mut sni_routes = Vec::new();
        for (j, r) in l.sni_routes.iter().enumerate() {
            let rp = format!("{p}.sni_routes[{j}]");
            if l.protocol != ListenerProtocol::Tcp {
                e.push(
                    rp.clone(),
                    "SNI routes pass TLS through on tcp listeners; http listeners route by host",
                );
            }
            let name = r.server_name.to_ascii_lowercase();
            let bare = name.strip_prefix("*.").unwrap_or(&name);
            if bare.is_empty()
                || bare.contains('*')
                || !bare
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
            {
                e.push(
                    format!("{rp}.server_name"),
                    format!("{:?} is not a server name or *.suffix", r.server_name),
                );
            }
            match spec.pools.iter().find(|x| x.name == r.pool) {
                None => e.push(format!("{rp}.pool"), format!("no pool named {:?}", r.pool)),
                Some(x) if x.tls.is_some() => e.push(
                    format!("{rp}.pool"),
                    format!(
                        "pool {:?} speaks TLS itself; passthrough needs a plain pool",
                        r.pool
                    ),
                ),
                Some(_) => {}
            }
            sni_routes.push((name, r.pool.clone()));
        }
        if let Some(bind) = parse_socket_addr(&format!("{p}.bind"), &l.bind, e) {
            if let Some(other) = binds.insert(bind, l.name.clone()) {
                e.push(
                    format!("{p}.bind"),
                    format!("{bind} is already bound by listener {other:?}"),
                );
            }
            if let Some(b) = &l.bandwidth {
                for (field, v) in [
                    (
                        "per_connection_bytes_per_second",
                        b.per_connection_bytes_per_second,
                    ),
                    ("listener_bytes_per_second", b.listener_bytes_per_second),
                ] {
                    if let Some(v) = v {
                        // 1 KB/s to 100 GB/s.
                        range_u64(format!("{p}.bandwidth.{field}"), v, 1024, 100 << 30, e);
                    }
                }
            }
            out.push(Listener {
                name: l.name.clone(),
                bind,
                protocol: l.protocol,
                pool: l.pool.clone(),
                max_request_head_bytes: l.max_request_head_bytes as usize,
                max_request_line_bytes: l.max_request_line_bytes as usize,
                header_timeout: Duration::from_millis(l.header_timeout_ms),
                idle_timeout: Duration::from_millis(l.idle_timeout_ms),
                drain_timeout: Duration::from_millis(l.drain_timeout_ms),
                proxy_protocol_from,
                tls,
                sni_routes,
                bandwidth: l.bandwidth,
            });
        }
    }
    out
}

/// The TLS settings of listener `p`. Whether the certificates exist is the credential store's
/// to say: see [`certificate_errors`].
fn listener_tls(
    p: &str,
    l: &ListenerSpec,
    t: &ListenerTlsSpec,
    e: &mut Errors,
) -> Option<Arc<ListenerTls>> {
    let tp = format!("{p}.tls");
    let before = e.0.len();
    if l.protocol == ListenerProtocol::Tcp {
        e.push(
            tp.clone(),
            "TLS is terminated on http listeners; tcp listeners pass bytes through",
        );
    }
    if t.certificates.is_empty() {
        e.push(
            format!("{tp}.certificates"),
            "name at least one certificate from the credential store",
        );
    }
    let mut seen = HashSet::new();
    for (j, c) in t.certificates.iter().enumerate() {
        if !seen.insert(c.as_str()) {
            e.push(
                format!("{tp}.certificates[{j}]"),
                format!("{c:?} is listed twice"),
            );
        }
    }
    let default_certificate = match &t.default_certificate {
        Some(d) if !t.certificates.contains(d) => {
            e.push(
                format!("{tp}.default_certificate"),
                format!("{d:?} is not one of this listener's certificates"),
            );
            None
        }
        Some(d) => Some(d.clone()),
        None => t.certificates.first().cloned(),
    };
    range_u64(
        format!("{tp}.handshake_timeout_ms"),
        t.handshake_timeout_ms,
        100,
        120_000,
        e,
    );
    if let Some(ca) = &t.client_auth {
        if !ca.ca_pem.contains("-----BEGIN CERTIFICATE-----") {
            e.push(
                format!("{tp}.client_auth.ca_pem"),
                "PEM with at least one CERTIFICATE block: the CA client certificates chain to",
            );
        }
        for (field, name) in [
            ("subject_header", &ca.subject_header),
            ("sans_header", &ca.sans_header),
        ] {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                e.push(
                    format!("{tp}.client_auth.{field}"),
                    format!("{name:?} is not a header name"),
                );
            }
        }
    }
    if e.0.len() != before {
        return None;
    }
    Some(Arc::new(ListenerTls {
        certificates: t.certificates.clone(),
        default_certificate: default_certificate?,
        unknown_sni: t.unknown_sni,
        min_version: t.min_version,
        ktls: t.ktls,
        handshake_timeout: Duration::from_millis(t.handshake_timeout_ms),
        client_auth: t.client_auth.clone(),
    }))
}

/// Listeners that name a certificate the credential store does not have, or has revoked, or
/// that is still waiting for its signed certificate. `usable(name)` answers `Ok` or why not.
pub fn certificate_errors(
    spec: &ConfigSpec,
    usable: impl Fn(&str) -> Result<(), String>,
) -> Vec<FieldError> {
    let mut out = Vec::new();
    for (i, p) in spec.pools.iter().enumerate() {
        let Some(c) = p.tls.as_ref().and_then(|t| t.client_certificate.as_ref()) else {
            continue;
        };
        if let Err(why) = usable(c) {
            out.push(FieldError {
                path: format!("pools[{i}].tls.client_certificate"),
                message: why,
            });
        }
    }
    for (i, l) in spec.listeners.iter().enumerate() {
        let Some(t) = &l.tls else { continue };
        for (j, c) in t.certificates.iter().enumerate() {
            if let Err(why) = usable(c) {
                out.push(FieldError {
                    path: format!("listeners[{i}].tls.certificates[{j}]"),
                    message: why,
                });
            }
        }
    }
    out
}

fn pools(spec: &ConfigSpec, hcs: &BTreeMap<String, Arc<HealthCheck>>, e: &mut Errors) -> Vec<Pool> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, pool) in spec.pools.iter().enumerate() {
        let p = format!("pools[{i}]");
        check_name(&p, &pool.name, &mut seen, e);
        let mut members = Vec::new();
        let mut addrs = HashSet::new();
        for (j, m) in pool.members.iter().enumerate() {
            let mp = format!("{p}.members[{j}]");
            if let Some(a) = parse_socket_addr(&format!("{mp}.address"), &m.address, e) {
                if !addrs.insert(a) {
                    e.push(format!("{mp}.address"), format!("duplicate member {a}"));
                }
                members.push(Member {
                    address: a,
                    weight: m.weight,
                    state: m.state,
                });
            }
            if m.state == AdminState::ForceUp {
                e.push(
                    format!("{mp}.state"),
                    "force_up applies to GSLB sites; a pool member takes traffic only while healthy",
                );
            }
            range_u64(format!("{mp}.weight"), m.weight.into(), 1, 1000, e);
        }
        let health_check = pool.health_check.as_ref().and_then(|name| {
            let hc = hcs.get(name).cloned();
            if hc.is_none() {
                e.push(
                    format!("{p}.health_check"),
                    format!("no health check named {name:?}"),
                );
            }
            hc
        });
        range_u64(format!("{p}.timeout_ms"), pool.timeout_ms, 10, 3_600_000, e);
        range_u64(
            format!("{p}.connect_timeout_ms"),
            pool.connect_timeout_ms,
            10,
            600_000,
            e,
        );
        range_u64(
            format!("{p}.idle_timeout_ms"),
            pool.idle_timeout_ms,
            100,
            86_400_000,
            e,
        );
        range_u64(
            format!("{p}.max_idle_per_member"),
            pool.max_idle_per_member.into(),
            0,
            100_000,
            e,
        );
        range_u64(format!("{p}.retries"), pool.retries.into(), 0, 10, e);
        if let Some(n) = pool.max_concurrent_requests {
            range_u64(
                format!("{p}.max_concurrent_requests"),
                n.into(),
                1,
                10_000_000,
                e,
            );
        }
        if let Some(t) = &pool.tls {
            if !t.ca_pem.contains("-----BEGIN CERTIFICATE-----") {
                e.push(
                    format!("{p}.tls.ca_pem"),
                    "PEM with at least one CERTIFICATE block: the CA the members' certificates chain to",
                );
            }
            if let Some(name) = &t.server_name {
                if name.is_empty()
                    || name.len() > 253
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
                {
                    e.push(
                        format!("{p}.tls.server_name"),
                        format!("{name:?} is not a DNS name"),
                    );
                }
            }
            for (i, id) in t.spiffe_ids.iter().enumerate() {
                if let Err(why) = spiffe_id_pattern(id) {
                    e.push(format!("{p}.tls.spiffe_ids[{i}]"), why);
                }
            }
        }
        out.push(Pool {
            name: pool.name.clone(),
            members,
            health_check,
            timeout: Duration::from_millis(pool.timeout_ms),
            upstream: UpstreamSettings {
                protocol: pool.protocol,
                connect_timeout: Duration::from_millis(pool.connect_timeout_ms),
                idle_timeout: Duration::from_millis(pool.idle_timeout_ms),
                max_idle_per_member: pool.max_idle_per_member as usize,
                proxy_protocol: pool.proxy_protocol,
            },
            retries: pool.retries,
            tls: pool.tls.as_ref().map(|t| Arc::new(PoolTlsSpec::clone(t))),
            max_concurrent_requests: pool.max_concurrent_requests,
        });
    }
    out
}

fn routes(spec: &ConfigSpec, e: &mut Errors) -> Vec<Route> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let listeners: HashMap<&str, ListenerProtocol> = spec
        .listeners
        .iter()
        .map(|l| (l.name.as_str(), l.protocol))
        .collect();
    let pools: HashMap<&str, &PoolSpec> = spec.pools.iter().map(|p| (p.name.as_str(), p)).collect();
    for (i, r) in spec.routes.iter().enumerate() {
        let p = format!("routes[{i}]");
        check_name(&p, &r.name, &mut seen, e);
        match listeners.get(r.listener.as_str()) {
            None => e.push(
                format!("{p}.listener"),
                format!("no listener named {:?}", r.listener),
            ),
            Some(ListenerProtocol::Tcp) => e.push(
                format!("{p}.listener"),
                format!(
                    "listener {:?} is a tcp listener; it proxies to its own pool and takes no routes",
                    r.listener
                ),
            ),
            Some(ListenerProtocol::Http) => {}
        }
        match pools.get(r.pool.as_str()) {
            None => e.push(format!("{p}.pool"), format!("no pool named {:?}", r.pool)),
            Some(pool) if pool.proxy_protocol != ProxyProtocolVersion::Off => e.push(
                format!("{p}.pool"),
                format!(
                    "pool {:?} sends the PROXY protocol, which is sent on tcp listeners only; \
                     HTTP requests carry the client in Forwarded and X-Forwarded-For",
                    r.pool
                ),
            ),
            Some(_) => {}
        }
        if !is_request_target(&r.path_prefix) || r.path_prefix.contains('?') {
            e.push(
                format!("{p}.path_prefix"),
                "must start with '/' and hold only URI path characters (percent-encode the rest)",
            );
        }
        let host = match r.host.as_deref() {
            None | Some("*") => HostMatch::Any,
            Some(h) => {
                let h = h.to_ascii_lowercase();
                if let Some(rest) = h.strip_prefix("*.") {
                    if !is_hostname(rest) {
                        e.push(format!("{p}.host"), format!("invalid host pattern {h:?}"));
                    }
                    HostMatch::Suffix(format!(".{rest}"))
                } else {
                    if !is_hostname(&h) {
                        e.push(format!("{p}.host"), format!("invalid host {h:?}"));
                    }
                    HostMatch::Exact(h)
                }
            }
        };
        let redirect = r
            .redirect
            .as_ref()
            .map(|rd| redirect(&format!("{p}.redirect"), rd, e));
        let request_headers = r
            .request_headers
            .as_ref()
            .map(|h| header_edit(&format!("{p}.request_headers"), h, e));
        let response_headers = r
            .response_headers
            .as_ref()
            .map(|h| header_edit(&format!("{p}.response_headers"), h, e));
        if let Some(prefix) = &r.rewrite_prefix {
            if !is_request_target(prefix) || prefix.contains('?') {
                e.push(
                    format!("{p}.rewrite_prefix"),
                    "must start with '/' and hold only URI path characters (percent-encode the rest)",
                );
            }
        }
        let compression = r
            .compression
            .as_ref()
            .map(|c| compression(&format!("{p}.compression"), c, e));
        if let Some(rl) = &r.rate_limit {
            rate_limit(&format!("{p}.rate_limit"), rl, e);
        }
        let access = r
            .access
            .as_ref()
            .map(|a| access(&format!("{p}.access"), a, e));
        let cache = r.cache.as_ref().map(|c| cache(&format!("{p}.cache"), c, e));
        out.push(Route {
            name: r.name.clone(),
            listener: r.listener.clone(),
            host,
            path_prefix: r.path_prefix.clone(),
            pool: r.pool.clone(),
            redirect,
            request_headers,
            response_headers,
            rewrite_prefix: r.rewrite_prefix.clone(),
            compression,
            rate_limit: r.rate_limit.as_deref().cloned(),
            access,
            cache,
        });
    }
    out
}

fn cache(p: &str, c: &CacheSpec, e: &mut Errors) -> CacheSpec {
    const YEAR: u64 = 365 * 24 * 3600;
    const WEEK: u64 = 7 * 24 * 3600;
    range_u64(
        format!("{p}.default_ttl_seconds"),
        c.default_ttl_seconds,
        0,
        YEAR,
        e,
    );
    range_u64(
        format!("{p}.max_object_bytes"),
        c.max_object_bytes,
        1024,
        1 << 30,
        e,
    );
    range_u64(
        format!("{p}.stale_while_revalidate_seconds"),
        c.stale_while_revalidate_seconds,
        0,
        WEEK,
        e,
    );
    range_u64(
        format!("{p}.stale_if_error_seconds"),
        c.stale_if_error_seconds,
        0,
        WEEK,
        e,
    );
    let tags_header = c.tags_header.trim().to_ascii_lowercase();
    if !is_token(&tags_header) {
        e.push(
            format!("{p}.tags_header"),
            format!("{:?} is not a header name", c.tags_header),
        );
    }
    let mut headers = Vec::new();
    for (i, h) in c.key.headers.iter().enumerate() {
        let h = h.trim().to_ascii_lowercase();
        if !is_token(&h) {
            e.push(
                format!("{p}.key.headers[{i}]"),
                format!("{h:?} is not a header name"),
            );
        } else if matches!(h.as_str(), "cookie" | "authorization") {
            e.push(
                format!("{p}.key.headers[{i}]"),
                "requests with credentials bypass the cache; they cannot be part of its key",
            );
        }
        headers.push(h);
    }
    if let Some(params) = &c.key.query_params {
        if c.key.ignore_query {
            e.push(
                format!("{p}.key.query_params"),
                "the query is ignored (ignore_query = true); name parameters or ignore it, not both",
            );
        }
        for (i, q) in params.iter().enumerate() {
            if q.is_empty()
                || q.bytes()
                    .any(|b| matches!(b, b'&' | b'=' | b'#') || !b.is_ascii_graphic())
            {
                e.push(
                    format!("{p}.key.query_params[{i}]"),
                    format!("{q:?} is not a query parameter name"),
                );
            }
        }
    }
    CacheSpec {
        tags_header,
        key: CacheKeySpec {
            headers,
            ..c.key.clone()
        },
        ..c.clone()
    }
}

fn rate_limit(p: &str, rl: &RateLimitSpec, e: &mut Errors) {
    range_u64(
        format!("{p}.requests"),
        rl.requests.into(),
        1,
        10_000_000,
        e,
    );
    if let Some(b) = rl.burst {
        range_u64(format!("{p}.burst"), b.into(), 1, 10_000_000, e);
    }
    match &rl.key {
        RateKey::Subnet {
            ipv4_prefix,
            ipv6_prefix,
        } => {
            range_u64(
                format!("{p}.key.ipv4_prefix"),
                (*ipv4_prefix).into(),
                1,
                32,
                e,
            );
            range_u64(
                format!("{p}.key.ipv6_prefix"),
                (*ipv6_prefix).into(),
                1,
                128,
                e,
            );
        }
        RateKey::Header { name } | RateKey::Cookie { name } => {
            let token = !name.is_empty()
                && name.len() <= 256
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token {
                e.push(
                    format!("{p}.key.name"),
                    format!("{name:?} is not a valid name"),
                );
            }
        }
        RateKey::ClientIp | RateKey::Route => {}
    }
    match rl.over_limit {
        OverLimit::Delay if rl.max_delay_ms == 0 || rl.max_delay_ms > 60_000 => e.push(
            format!("{p}.max_delay_ms"),
            "with over_limit = \"delay\", how long a request may wait: 1 to 60000 ms",
        ),
        OverLimit::Reject if rl.max_delay_ms != 0 => e.push(
            format!("{p}.max_delay_ms"),
            "only with over_limit = \"delay\"",
        ),
        _ => {}
    }
    if let Some(c) = rl.max_concurrent {
        range_u64(format!("{p}.max_concurrent"), c.into(), 1, 1_000_000, e);
    }
}

fn access(p: &str, a: &AccessSpec, e: &mut Errors) -> Access {
    let mut cidrs = |field: &str, list: &[String]| {
        let mut out = Vec::new();
        for (i, c) in list.iter().enumerate() {
            match Cidr::parse(c.trim()) {
                Some(n) => out.push(n),
                None => e.push(
                    format!("{p}.{field}[{i}]"),
                    format!("{c:?} is not an address or a network (192.0.2.0/24, 2001:db8::/32)"),
                ),
            }
        }
        out
    };
    let allow = cidrs("allow", &a.allow);
    let deny = cidrs("deny", &a.deny);
    let mut methods = Vec::new();
    for (i, m) in a.methods.iter().enumerate() {
        let m = m.trim().to_ascii_uppercase();
        if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase() || b == b'-') {
            e.push(
                format!("{p}.methods[{i}]"),
                format!("{m:?} is not a method"),
            );
        } else {
            methods.push(m);
        }
    }
    Access {
        allow,
        deny,
        methods,
    }
}

fn compression(p: &str, c: &CompressionSpec, e: &mut Errors) -> Compression {
    if c.codecs.is_empty() {
        e.push(
            format!("{p}.codecs"),
            "name at least one codec: zstd, br, gzip or deflate",
        );
    }
    for (i, codec) in c.codecs.iter().enumerate() {
        if c.codecs[..i].contains(codec) {
            e.push(
                format!("{p}.codecs[{i}]"),
                format!("{} is listed twice", codec.token()),
            );
        }
    }
    range_u64(format!("{p}.level"), c.level.into(), 1, 9, e);
    let mut types = Vec::new();
    for (i, t) in c.content_types.iter().enumerate() {
        let t = t.trim().to_ascii_lowercase();
        let token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
        };
        match t.split_once('/') {
            Some((ty, "*")) if token(ty) => types.push(format!("{ty}/")),
            Some((ty, sub)) if token(ty) && token(sub) => types.push(t.clone()),
            _ => e.push(
                format!("{p}.content_types[{i}]"),
                format!("{t:?} is not a media type: type/subtype, or type/* for all of a type"),
            ),
        }
    }
    range_u64(
        format!("{p}.min_size_bytes"),
        c.min_size_bytes,
        0,
        1 << 30,
        e,
    );
    if let Some(max) = c.decompress_requests_max_bytes {
        range_u64(
            format!("{p}.decompress_requests_max_bytes"),
            max,
            1024,
            1 << 30,
            e,
        );
    }
    Compression {
        codecs: c.codecs.clone(),
        level: c.level,
        content_types: types,
        min_size_bytes: c.min_size_bytes,
        decompress_requests_max_bytes: c.decompress_requests_max_bytes,
    }
}

fn redirect(p: &str, rd: &RedirectSpec, e: &mut Errors) -> Redirect {
    if !matches!(rd.status, 301 | 302 | 303 | 307 | 308) {
        e.push(
            format!("{p}.status"),
            format!(
                "{} is not a redirect status: use 301, 302, 303, 307 or 308",
                rd.status
            ),
        );
    }
    if let Some(s) = &rd.scheme {
        if s != "http" && s != "https" {
            e.push(
                format!("{p}.scheme"),
                format!("{s:?} must be http or https"),
            );
        }
    }
    if let Some(h) = &rd.host {
        if !is_hostname(&h.to_ascii_lowercase()) {
            e.push(format!("{p}.host"), format!("invalid host {h:?}"));
        }
    }
    if rd.port == Some(0) {
        e.push(format!("{p}.port"), "port 0 is not allowed");
    }
    if let Some(path) = &rd.path {
        if !is_request_target(path) || path.contains('?') {
            e.push(
                format!("{p}.path"),
                "must start with '/' and hold only URI path characters (percent-encode the rest)",
            );
        }
    }
    Redirect {
        scheme: rd.scheme.clone(),
        host: rd.host.as_ref().map(|h| h.to_ascii_lowercase()),
        port: rd.port,
        path: rd.path.clone(),
        status: rd.status,
    }
}

/// Headers a filter may not touch: they frame the message or belong to one hop, so editing them
/// would desynchronize the proxy and its peers.
const RESERVED_HEADERS: [&str; 10] = [
    "connection",
    "content-length",
    "transfer-encoding",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
];

fn header_edit(p: &str, h: &HeaderEditSpec, e: &mut Errors) -> HeaderEdit {
    let mut name_ok = |path: String, name: &str| -> String {
        let lower = name.to_ascii_lowercase();
        if !is_token(&lower) {
            e.push(path, format!("invalid header name {name:?}"));
        } else if RESERVED_HEADERS.contains(&lower.as_str()) {
            e.push(
                path,
                format!("{name:?} frames the message or belongs to one hop and cannot be edited"),
            );
        }
        lower
    };
    let remove = h
        .remove
        .iter()
        .enumerate()
        .map(|(i, n)| name_ok(format!("{p}.remove[{i}]"), n))
        .collect();
    let mut pairs = |what: &str, map: &std::collections::BTreeMap<String, String>| {
        map.iter()
            .map(|(n, v)| {
                let name = name_ok(format!("{p}.{what}.{n}"), n);
                (name, v.clone())
            })
            .collect::<Vec<_>>()
    };
    let set = pairs("set", &h.set);
    let add = pairs("add", &h.add);
    for (what, list) in [("set", &set), ("add", &add)] {
        for (n, v) in list {
            if !is_header_value(v) {
                e.push(
                    format!("{p}.{what}.{n}"),
                    "header values hold visible ASCII, spaces and tabs only",
                );
            }
        }
    }
    HeaderEdit { remove, set, add }
}

/// An RFC 9110 token (header field names).
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// A header value without control characters (so no CR/LF injection) or non-ASCII bytes.
pub fn is_header_value(s: &str) -> bool {
    s.len() <= 8192 && s.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

/// An origin-form request target (`/path?query`) of printable ASCII without characters that URIs
/// forbid, so that every request built from it parses.
pub fn is_request_target(s: &str) -> bool {
    s.starts_with('/')
        && s.len() <= 2048
        && s.bytes().all(|b| {
            b.is_ascii_graphic()
                && !matches!(
                    b,
                    b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}' | b'#'
                )
        })
}

/// A DNS name made of 1-63 character labels of letters, digits, '-' and '_', at most 253 long.
pub fn is_hostname(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// Lowercase with a trailing dot.
pub fn fqdn(s: &str) -> String {
    let mut s = s.to_ascii_lowercase();
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

/// Resolves a record owner name: `@` is the apex, a trailing dot is absolute, anything else is
/// relative to the origin.
fn owner_name(name: &str, origin: &str) -> String {
    if name == "@" {
        origin.to_string()
    } else if name.ends_with('.') {
        name.to_ascii_lowercase()
    } else {
        format!("{}.{origin}", name.to_ascii_lowercase())
    }
}

/// Targets in record data follow the same rule as owner names.
fn target_name(path: String, s: &str, origin: &str, e: &mut Errors) -> String {
    let n = owner_name(s, origin);
    if !is_hostname(&n) {
        e.push(path, format!("invalid domain name {s:?}"));
    }
    n
}

fn in_zone(name: &str, origin: &str) -> bool {
    name == origin || name.ends_with(&format!(".{origin}"))
}

fn zones(spec: &ConfigSpec, schema: u32, e: &mut Errors) -> Vec<Zone> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, z) in spec.zones.iter().enumerate() {
        let p = format!("zones[{i}]");
        if !is_hostname(&z.name) {
            e.push(
                format!("{p}.name"),
                format!("invalid zone name {:?}", z.name),
            );
        }
        let origin = fqdn(&z.name);
        if !seen.insert(origin.clone()) {
            e.push(format!("{p}.name"), format!("duplicate zone {origin:?}"));
        }
        let mname = target_name(format!("{p}.soa.mname"), &z.soa.mname, &origin, e);
        let rname = target_name(format!("{p}.soa.rname"), &z.soa.rname, &origin, e);
        let ns: Vec<String> =
            z.ns.iter()
                .enumerate()
                .map(|(j, n)| target_name(format!("{p}.ns[{j}]"), n, &origin, e))
                .collect();
        let mut records = Vec::new();
        let mut cname_owners = HashSet::new();
        let mut other_owners = HashSet::new();
        let mut listed = std::collections::HashMap::new();
        for (j, r) in z.records.iter().enumerate() {
            let rp = format!("{p}.records[{j}]");
            let name = owner_name(&r.name, &origin);
            if schema >= 2 {
                let key = (
                    name.clone(),
                    format!("{:?}", r.rtype),
                    r.value.trim().to_ascii_lowercase(),
                );
                if let Some(first) = listed.insert(key, j) {
                    e.push(
                        rp.clone(),
                        format!("the same record as {p}.records[{first}]"),
                    );
                }
            }
            // A wildcard owner (`*.example.com`) answers names that do not exist below its parent.
            let checked = name.strip_prefix("*.").unwrap_or(&name);
            if !is_hostname(checked) || !in_zone(checked, &origin) {
                e.push(
                    format!("{rp}.name"),
                    format!("{:?} is not a valid name inside zone {origin}", r.name),
                );
            }
            let vp = format!("{rp}.value");
            let data = match r.rtype {
                RecordType::A => {
                    r.value.parse::<Ipv4Addr>().map(RecordData::A).map_err(|_| {
                        e.push(vp.clone(), format!("invalid IPv4 address {:?}", r.value))
                    })
                }
                RecordType::AAAA => r
                    .value
                    .parse::<Ipv6Addr>()
                    .map(RecordData::AAAA)
                    .map_err(|_| e.push(vp.clone(), format!("invalid IPv6 address {:?}", r.value))),
                RecordType::CNAME => Ok(RecordData::CNAME(target_name(
                    vp.clone(),
                    &r.value,
                    &origin,
                    e,
                ))),
                RecordType::TXT => {
                    if r.value.len() > 4000 {
                        e.push(vp.clone(), "TXT value longer than 4000 bytes");
                    }
                    Ok(RecordData::TXT(r.value.clone()))
                }
                RecordType::NS if name == origin => {
                    e.push(
                        format!("{rp}.type"),
                        "the apex's name servers are the zone's ns list",
                    );
                    Err(())
                }
                RecordType::NS if name.starts_with("*.") => {
                    e.push(format!("{rp}.name"), "a delegation cannot be a wildcard");
                    Err(())
                }
                RecordType::NS => Ok(RecordData::NS(target_name(
                    vp.clone(),
                    &r.value,
                    &origin,
                    e,
                ))),
                RecordType::PTR => Ok(RecordData::PTR(target_name(
                    vp.clone(),
                    &r.value,
                    &origin,
                    e,
                ))),
                RecordType::SRV => {
                    let parts: Vec<&str> = r.value.split_whitespace().collect();
                    match parts.as_slice() {
                        [p1, w, port, target] => match (p1.parse(), w.parse(), port.parse()) {
                            (Ok(priority), Ok(weight), Ok(port)) => Ok(RecordData::SRV {
                                priority,
                                weight,
                                port,
                                target: if *target == "." {
                                    ".".to_string()
                                } else {
                                    target_name(vp.clone(), target, &origin, e)
                                },
                            }),
                            _ => {
                                e.push(vp.clone(), format!("invalid SRV value {:?}: priority, weight and port are 0-65535", r.value));
                                Err(())
                            }
                        },
                        _ => {
                            e.push(
                                vp.clone(),
                                format!("invalid SRV value {:?}: expected \"<priority> <weight> <port> <target>\"", r.value),
                            );
                            Err(())
                        }
                    }
                }
                RecordType::CAA => caa(&vp, &r.value, e),
                RecordType::MX => {
                    let mut parts = r.value.split_whitespace();
                    match (
                        parts.next().map(str::parse::<u16>),
                        parts.next(),
                        parts.next(),
                    ) {
                        (Some(Ok(preference)), Some(host), None) => Ok(RecordData::MX {
                            preference,
                            exchange: target_name(vp.clone(), host, &origin, e),
                        }),
                        _ => {
                            e.push(
                                vp.clone(),
                                format!(
                                    "invalid MX value {:?}: expected \"<preference> <host>\"",
                                    r.value
                                ),
                            );
                            Err(())
                        }
                    }
                }
            };
            if r.rtype == RecordType::CNAME {
                if name == origin {
                    e.push(format!("{rp}.name"), "a CNAME cannot sit at the zone apex");
                }
                if !cname_owners.insert(name.clone()) || other_owners.contains(&name) {
                    e.push(
                        format!("{rp}.name"),
                        format!("{name} has a CNAME and other records"),
                    );
                }
            } else {
                other_owners.insert(name.clone());
                if cname_owners.contains(&name) {
                    e.push(
                        format!("{rp}.name"),
                        format!("{name} has a CNAME and other records"),
                    );
                }
            }
            if let Ok(data) = data {
                records.push(Record {
                    name,
                    ttl: r.ttl,
                    data,
                });
            }
        }
        delegations(&p, z, &origin, &records, e);
        let secondaries = secondaries(&p, z, e);
        out.push(Zone {
            origin,
            soa: z.soa.clone(),
            mname,
            rname,
            ns,
            records,
            secondaries,
        });
    }
    out
}

/// A zone's secondaries: an address (port 53 by default) named once, and a TSIG key name.
fn secondaries(p: &str, z: &ZoneSpec, e: &mut Errors) -> Vec<Secondary> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (j, s) in z.secondaries.iter().enumerate() {
        let sp = format!("{p}.secondaries[{j}]");
        let addr = secondary_addr(&s.address);
        match addr {
            None => e.push(
                format!("{sp}.address"),
                format!(
                    "invalid address {:?}: expected IP, IP:port or [IPv6]:port",
                    s.address
                ),
            ),
            Some(a) if a.port() == 0 => {
                e.push(format!("{sp}.address"), "port 0 cannot receive NOTIFY")
            }
            Some(a) if !seen.insert(a.ip()) => e.push(
                format!("{sp}.address"),
                format!("{} is listed twice", a.ip()),
            ),
            Some(_) => {}
        }
        let key = tsig_key_name(&s.tsig_key);
        if key.is_none() {
            e.push(
                format!("{sp}.tsig_key"),
                format!("{:?} is not a valid TSIG key name", s.tsig_key),
            );
        }
        if let (Some(addr), Some(tsig_key)) = (addr, key) {
            out.push(Secondary {
                addr,
                tsig_key,
                notify: s.notify,
            });
        }
    }
    out
}

fn secondary_addr(s: &str) -> Option<SocketAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 53));
    }
    s.parse().ok()
}

/// A TSIG key's name as the wire carries it: a lowercase FQDN with a trailing dot; `None` when
/// it is not a host name.
pub fn tsig_key_name(name: &str) -> Option<String> {
    let trimmed = name.trim_end_matches('.');
    if trimmed.is_empty() || trimmed.len() > 253 || !is_hostname(trimmed) {
        return None;
    }
    Some(fqdn(trimmed))
}

/// Every secondary whose TSIG key `exists` does not know, with its field path. Keys live in
/// the credential store, outside the config, so the state machine checks them at commit.
pub fn tsig_key_errors(spec: &ConfigSpec, exists: impl Fn(&str) -> bool) -> Vec<FieldError> {
    let mut out = Vec::new();
    for (i, z) in spec.zones.iter().enumerate() {
        for (j, s) in z.secondaries.iter().enumerate() {
            let Some(name) = tsig_key_name(&s.tsig_key) else {
                continue;
            };
            if !exists(&name) {
                out.push(FieldError {
                    path: format!("zones[{i}].secondaries[{j}].tsig_key"),
                    message: format!("no TSIG key named {name:?} in the credential store"),
                });
            }
        }
    }
    out
}

/// `<flags> <tag> <value>`: flags 0-255, a tag of 1-15 letters and digits, a value (quoted or
/// not).
fn caa(path: &str, text: &str, e: &mut Errors) -> Result<RecordData, ()> {
    let mut parts = text.trim().splitn(3, char::is_whitespace);
    let (flags, tag, rest) = (parts.next(), parts.next(), parts.next());
    let flags = flags.and_then(|f| f.parse::<u8>().ok());
    let tag_ok = tag.is_some_and(|t| {
        (1..=15).contains(&t.len()) && t.chars().all(|c| c.is_ascii_alphanumeric())
    });
    let value = rest.map(|v| {
        let v = v.trim();
        v.strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v)
            .to_string()
    });
    match (flags, tag_ok, tag, value) {
        (Some(flags), true, Some(tag), Some(value)) if !value.contains('"') => {
            Ok(RecordData::CAA {
                flags,
                tag: tag.to_ascii_lowercase(),
                value,
            })
        }
        _ => {
            e.push(
                path.to_string(),
                format!("invalid CAA value {text:?}: expected <flags> <tag> \"<value>\", e.g. 0 issue \"letsencrypt.org\""),
            );
            Err(())
        }
    }
}

/// NS records below the apex cut the zone: below such a name only the glue addresses of its
/// name servers may live (anything else would never be answered), and the cut itself has
/// nothing but its NS records.
fn delegations(p: &str, z: &ZoneSpec, origin: &str, records: &[Record], e: &mut Errors) {
    let cuts: HashSet<&str> = records
        .iter()
        .filter(|r| matches!(r.data, RecordData::NS(_)))
        .map(|r| r.name.as_str())
        .collect();
    if cuts.is_empty() {
        return;
    }
    let glue: HashSet<&str> = records
        .iter()
        .filter_map(|r| match &r.data {
            RecordData::NS(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    // `records` lost the entries that failed to parse: walk the spec for the paths.
    let parsed: HashSet<&str> = records.iter().map(|r| r.name.as_str()).collect();
    for (j, spec) in z.records.iter().enumerate() {
        let name = owner_name(&spec.name, origin);
        if !parsed.contains(name.as_str()) {
            continue;
        }
        let below = cuts.iter().find(|cut| name != **cut && in_zone(&name, cut));
        let at_cut = cuts.contains(name.as_str());
        let is_address = matches!(spec.rtype, RecordType::A | RecordType::AAAA);
        if let Some(cut) = below {
            if !(is_address && glue.contains(name.as_str())) {
                e.push(
                    format!("{p}.records[{j}].name"),
                    format!("{name} is below the delegation at {cut}; only glue addresses of its name servers may be there"),
                );
            }
        } else if at_cut
            && spec.rtype != RecordType::NS
            && !(is_address && glue.contains(name.as_str()))
        {
            e.push(
                format!("{p}.records[{j}].type"),
                format!("{name} is delegated: it has only NS records (and glue)"),
            );
        }
    }
}

/// A record of one zone whose name lies inside another, more specific configured zone would
/// never be answered: that zone owns the name.
fn shadowed_records(zones: &[Zone], e: &mut Errors) {
    for (i, z) in zones.iter().enumerate() {
        for (j, r) in z.records.iter().enumerate() {
            if let Some(owner) = zones
                .iter()
                .filter(|o| o.origin.len() > z.origin.len() && in_zone(&r.name, &o.origin))
                .max_by_key(|o| o.origin.len())
            {
                e.push(
                    format!("zones[{i}].records[{j}].name"),
                    format!(
                        "{} belongs to zone {}; put the record there",
                        r.name, owner.origin
                    ),
                );
            }
        }
    }
}

/// CNAME chains that come back to where they started would only ever answer with the loop.
fn cname_loops(zones: &[Zone], e: &mut Errors) {
    let targets: HashMap<&str, &str> = zones
        .iter()
        .flat_map(|z| z.records.iter())
        .filter_map(|r| match &r.data {
            RecordData::CNAME(t) => Some((r.name.as_str(), t.as_str())),
            _ => None,
        })
        .collect();
    for (i, z) in zones.iter().enumerate() {
        for (j, r) in z.records.iter().enumerate() {
            let RecordData::CNAME(first) = &r.data else {
                continue;
            };
            let mut seen = HashSet::from([r.name.as_str()]);
            let mut next = first.as_str();
            while let Some(&t) = targets.get(next) {
                if !seen.insert(next) {
                    break;
                }
                next = t;
            }
            if seen.contains(next) {
                e.push(
                    format!("zones[{i}].records[{j}].value"),
                    format!("the CNAME chain from {} loops back to {next}", r.name),
                );
            }
        }
    }
}

/// The GSLB topology. A network may appear in one region only, so a client's region is never
/// a matter of order.
fn regions(spec: &ConfigSpec, e: &mut Errors) -> Vec<Region> {
    let mut seen = HashSet::new();
    let mut owner: HashMap<Cidr, &str> = HashMap::new();
    let mut code_owner: HashMap<(String, String), String> = HashMap::new();
    let mut out = Vec::new();
    for (i, r) in spec.regions.iter().enumerate() {
        let p = format!("regions[{i}]");
        check_name(&p, &r.name, &mut seen, e);
        let mut networks = Vec::new();
        for (j, n) in r.networks.iter().enumerate() {
            let np = format!("{p}.networks[{j}]");
            let Some(cidr) = Cidr::parse(n.trim()).map(|c| c.network()) else {
                e.push(
                    np,
                    format!("invalid network {n:?}: use a CIDR such as 198.51.100.0/24"),
                );
                continue;
            };
            match owner.insert(cidr, &r.name) {
                Some(other) if other != r.name => {
                    e.push(np, format!("{n} is already in region {other:?}"))
                }
                Some(_) => e.push(np, format!("duplicate network {n}")),
                None => networks.push(cidr),
            }
        }
        let mut codes = |field: &str, list: &[String], ok: &dyn Fn(&str) -> bool| {
            let mut out = Vec::new();
            for (j, c) in list.iter().enumerate() {
                let code = c.trim().to_ascii_uppercase();
                if !ok(&code) {
                    e.push(
                        format!("{p}.{field}[{j}]"),
                        format!("{c:?} is not a {field} code"),
                    );
                } else if let Some(other) =
                    code_owner.insert((field.to_string(), code.clone()), r.name.clone())
                {
                    e.push(
                        format!("{p}.{field}[{j}]"),
                        format!("{code} is already in region {other:?}"),
                    );
                } else {
                    out.push(code);
                }
            }
            out
        };
        let countries = codes("countries", &r.countries, &|c: &str| {
            c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase())
        });
        let continents = codes("continents", &r.continents, &|c: &str| {
            ["AF", "AN", "AS", "EU", "NA", "OC", "SA"].contains(&c)
        });
        let location = location(&format!("{p}.location"), r.location.as_deref(), e);
        let mut spill_to = Vec::new();
        for (j, name) in r.spill_to.iter().enumerate() {
            match spec.regions.iter().position(|o| &o.name == name) {
                Some(k) if k == i => e.push(
                    format!("{p}.spill_to[{j}]"),
                    "a region cannot spill to itself",
                ),
                Some(k) => spill_to.push(k),
                None => e.push(
                    format!("{p}.spill_to[{j}]"),
                    format!("no region named {name:?}"),
                ),
            }
        }
        out.push(Region {
            name: r.name.clone(),
            networks,
            countries,
            continents,
            location,
            spill_to,
        });
    }
    out
}

fn location(path: &str, text: Option<&str>, e: &mut Errors) -> Option<GeoPoint> {
    let text = text?;
    let point = GeoPoint::parse(text);
    if point.is_none() {
        e.push(
            path.to_string(),
            format!("invalid location {text:?}: use \"latitude,longitude\" in degrees"),
        );
    }
    point
}

fn gslb(
    spec: &ConfigSpec,
    zones: &[Zone],
    hcs: &BTreeMap<String, Arc<HealthCheck>>,
    regions: &[Region],
    e: &mut Errors,
) -> Vec<GslbRecord> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, g) in spec.gslb_records.iter().enumerate() {
        let p = format!("gslb_records[{i}]");
        let name = fqdn(&g.name);
        if !is_hostname(&name) {
            e.push(format!("{p}.name"), format!("invalid name {:?}", g.name));
        }
        if !seen.insert(name.clone()) {
            e.push(
                format!("{p}.name"),
                format!("duplicate GSLB record {name:?}"),
            );
        }
        // The longest enclosing zone owns the name.
        let zone = zones
            .iter()
            .filter(|z| in_zone(&name, &z.origin))
            .max_by_key(|z| z.origin.len());
        let zone_origin = match zone {
            Some(z) => {
                if z.records.iter().any(|r| r.name == name) {
                    e.push(
                        format!("{p}.name"),
                        format!("{name} also has static records in zone {}", z.origin),
                    );
                }
                z.origin.clone()
            }
            None => {
                e.push(
                    format!("{p}.name"),
                    format!("{name} is not inside any configured zone"),
                );
                String::new()
            }
        };
        if g.sites.is_empty() {
            e.push(
                format!("{p}.sites"),
                "a GSLB record needs at least one site",
            );
        }
        range_u64(format!("{p}.ttl"), g.ttl.into(), 0, 86_400, e);
        let mut site_names = HashSet::new();
        let mut sites = Vec::new();
        let cnames = g.sites.iter().filter(|s| s.cname.is_some()).count();
        for (j, s) in g.sites.iter().enumerate() {
            let sp = format!("{p}.sites[{j}]");
            check_name(&sp, &s.name, &mut site_names, e);
            let address = match (&s.cname, s.address.is_empty()) {
                (Some(_), false) => {
                    e.push(
                        format!("{sp}.cname"),
                        "a site is an address or a cname, not both",
                    );
                    None
                }
                (Some(target), true) => {
                    if cnames != g.sites.len() {
                        e.push(
                            format!("{sp}.cname"),
                            "the sites of one record are all addresses or all CNAMEs",
                        );
                    }
                    let target = fqdn(target);
                    if !is_hostname(&target) {
                        e.push(
                            format!("{sp}.cname"),
                            format!("invalid host name {:?}", s.cname.as_deref().unwrap_or("")),
                        );
                        None
                    } else if target == name {
                        e.push(format!("{sp}.cname"), "a site cannot be the record itself");
                        None
                    } else {
                        Some(SiteAddress::Cname(target))
                    }
                }
                (None, _) => match s.address.parse::<IpAddr>() {
                    Ok(a) => Some(SiteAddress::Ip(a)),
                    Err(_) => {
                        e.push(
                            format!("{sp}.address"),
                            format!("invalid IP address {:?}", s.address),
                        );
                        None
                    }
                },
            };
            if s.port == 0 {
                e.push(format!("{sp}.port"), "port 0 is not allowed");
            }
            let health_check = s.health_check.as_ref().and_then(|n| {
                let hc = hcs.get(n).cloned();
                if hc.is_none() {
                    e.push(
                        format!("{sp}.health_check"),
                        format!("no health check named {n:?}"),
                    );
                }
                hc
            });
            range_u64(format!("{sp}.priority"), s.priority.into(), 1, 100, e);
            range_u64(format!("{sp}.weight"), s.weight.into(), 1, 1000, e);
            let region = s.region.as_ref().and_then(|name| {
                let k = regions.iter().position(|r| &r.name == name);
                if k.is_none() {
                    e.push(format!("{sp}.region"), format!("no region named {name:?}"));
                }
                k
            });
            let location = location(&format!("{sp}.location"), s.location.as_deref(), e)
                .or_else(|| region.and_then(|k| regions[k].location));
            if g.steer == Steer::Nearest && location.is_none() && s.location.is_none() {
                e.push(
                    format!("{sp}.location"),
                    "steer = nearest needs the location of every site (its own or its region's)",
                );
            }
            if s.capacity == Some(0) {
                e.push(
                    format!("{sp}.capacity"),
                    "capacity must be at least 1 answer per second (leave it out for no limit)",
                );
            }
            if let Some(address) = address {
                let probe = match &address {
                    SiteAddress::Ip(ip) => ProbeTarget::Addr(SocketAddr::new(*ip, s.port)),
                    SiteAddress::Cname(host) => ProbeTarget::Host(host.clone(), s.port),
                };
                sites.push(Site {
                    name: s.name.clone(),
                    address,
                    probe,
                    health_check,
                    state: s.state,
                    priority: s.priority,
                    weight: s.weight,
                    region,
                    location,
                    capacity: s.capacity,
                });
            }
        }
        if let Some(n) = g.max_answers {
            range_u64(format!("{p}.max_answers"), n.into(), 1, 16, e);
        }
        let mut fallback = Vec::new();
        for (j, a) in g.fallback.iter().enumerate() {
            match a.trim().parse::<IpAddr>() {
                Ok(ip) => fallback.push(ip),
                Err(_) => e.push(
                    format!("{p}.fallback[{j}]"),
                    format!("invalid IP address {a:?}"),
                ),
            }
        }
        if g.when_all_down == AllDownPolicy::Fallback && g.fallback.is_empty() {
            e.push(
                format!("{p}.fallback"),
                "when_all_down = fallback needs at least one fallback address",
            );
        }
        if g.steer == Steer::Geo && !g.sites.iter().any(|s| s.region.is_some()) {
            e.push(
                format!("{p}.steer"),
                "steer = geo needs sites with a region",
            );
        }
        out.push(GslbRecord {
            name,
            zone: zone_origin,
            ttl: g.ttl,
            sites,
            when_all_down: g.when_all_down,
            policy: g.policy,
            max_answers: g.max_answers,
            steer: g.steer,
            fallback,
        });
    }
    out
}

/// A SPIFFE ID (`spiffe://trust-domain/path`), or a path prefix ending in `/*`.
fn spiffe_id_pattern(id: &str) -> Result<(), String> {
    let Some(rest) = id.strip_prefix("spiffe://") else {
        return Err(format!(
            "{id:?} is not a SPIFFE ID: it must start with spiffe://"
        ));
    };
    let (domain, path) = rest.split_once('/').unwrap_or((rest, ""));
    if domain.is_empty()
        || !domain.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        })
    {
        return Err(format!(
            "{id:?}: the trust domain must be lowercase letters, digits, '.', '-' or '_'"
        ));
    }
    let path = path.strip_suffix('*').unwrap_or(path);
    if id.len() > 2048
        || path.contains('*')
        || path.split('/').any(|seg| seg == "." || seg == "..")
        || !path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/'))
    {
        return Err(format!(
            "{id:?}: the path may hold letters, digits, '.', '-', '_' and '/', with '*' only as a final '/*'"
        ));
    }
    if id.ends_with('*') && !id.ends_with("/*") {
        return Err(format!(
            "{id:?}: a wildcard is a whole final segment ('/*')"
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;

#[cfg(test)]
mod schema_tests {
    use super::*;

    /// A rule tightened in schema 2 does not apply to a document validated by schema 1.
    #[test]
    fn a_duplicate_record_is_refused_from_schema_2_only() {
        let spec = crate::parse::from_toml(
            r#"api_version = "meridian/v1"
[[zones]]
name = "example.org"
soa = { mname = "ns1", rname = "hostmaster" }
records = [
  { name = "www", type = "A", value = "192.0.2.1" },
  { name = "www.example.org.", type = "A", value = "192.0.2.1" },
]
"#,
        )
        .expect("parses");
        if let Err(e) = validate_at(&spec, 1) {
            panic!("{e:?}");
        }
        let errors = validate_at(&spec, 2).expect_err("refused").errors;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "zones[0].records[1]");
        assert!(errors[0].message.contains("zones[0].records[0]"));
        assert!(validate(&spec).is_err(), "the API checks the newest rules");
    }
}
