//! The read-only pages: overview, the lists of each object kind, cluster and alarms.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Form;
use model::{HealthState, HealthView, Role};

use super::{change_failed, csrf, done, render, require, seg, Chrome};
use crate::auth::ConsoleUser;
use crate::chart::{self, Line, Unit};
use crate::AppState;

/// p50 and p99 of `prefix` (`listener/web`, `pool/web`) in one chart.
fn latency_chart(st: &AppState, prefix: &str) -> String {
    let (p50, p99) = (format!("{prefix}/p50"), format!("{prefix}/p99"));
    let (p50s, p99s) = (st.history.series(&p50), st.history.series(&p99));
    chart::multi(
        "Latency p50 / p99",
        Unit::Seconds,
        &[
            Line {
                key: &p50,
                label: "p50",
                points: &p50s,
            },
            Line {
                key: &p99,
                label: "p99",
                points: &p99s,
            },
        ],
    )
}

/// The four charts of a listener: requests/s, errors/s, latency p50+p99, bandwidth in+out.
pub fn listener_charts(st: &AppState, name: &str) -> Vec<String> {
    let h = &st.history;
    let prefix = format!("listener/{name}");
    let (rps, errors, bin, bout) = (
        format!("{prefix}/rps"),
        format!("{prefix}/errors"),
        format!("{prefix}/in"),
        format!("{prefix}/out"),
    );
    let (ins, outs) = (h.series(&bin), h.series(&bout));
    vec![
        chart::svg(&rps, "Requests/s", Unit::PerSecond, &h.series(&rps)),
        chart::svg(&errors, "5xx/s", Unit::PerSecond, &h.series(&errors)),
        latency_chart(st, &prefix),
        chart::multi(
            "Bandwidth in / out",
            Unit::Bytes,
            &[
                Line {
                    key: &bin,
                    label: "in",
                    points: &ins,
                },
                Line {
                    key: &bout,
                    label: "out",
                    points: &outs,
                },
            ],
        ),
    ]
}

/// Requests/s, errors/s and latency of a pool or a member (`prefix` is `pool/web` or
/// `member/web/10.0.0.1:80`).
pub fn upstream_charts(st: &AppState, prefix: &str) -> Vec<String> {
    let h = &st.history;
    let (rps, errors) = (format!("{prefix}/rps"), format!("{prefix}/errors"));
    vec![
        chart::svg(&rps, "Requests/s", Unit::PerSecond, &h.series(&rps)),
        chart::svg(
            &errors,
            "Errors/s (5xx + connect failures)",
            Unit::PerSecond,
            &h.series(&errors),
        ),
        latency_chart(st, prefix),
    ]
}

/// DNS queries/s: all, and by response code.
pub fn dns_charts(st: &AppState) -> Vec<String> {
    let h = &st.history;
    let mut charts = vec![chart::svg(
        "dns/all/qps",
        "DNS queries/s",
        Unit::PerSecond,
        &h.series("dns/all/qps"),
    )];
    let codes: Vec<String> = h
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("dns/") && k.ends_with("/qps") && k != "dns/all/qps")
        .collect();
    let series: Vec<(String, Vec<crate::history::Point>)> = codes
        .iter()
        .map(|k| {
            let code = k
                .trim_start_matches("dns/")
                .trim_end_matches("/qps")
                .to_string();
            (code, h.series(k))
        })
        .collect();
    if !series.is_empty() {
        let lines: Vec<Line<'_>> = codes
            .iter()
            .zip(&series)
            .map(|(k, (code, points))| Line {
                key: k,
                label: code,
                points,
            })
            .collect();
        charts.push(chart::multi(
            "DNS answers/s by response code",
            Unit::PerSecond,
            &lines,
        ));
    }
    charts
}

fn last(st: &AppState, key: &str) -> String {
    st.history
        .latest(&[key])
        .first()
        .map(|(_, _, v)| Unit::PerSecond.format(*v))
        .unwrap_or_else(|| "—".into())
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewTemplate {
    chrome: Chrome,
    revision: u64,
    raft: crate::RaftView,
    leader: String,
    alarms: Vec<String>,
    listeners: Vec<ListenerRow>,
    pools_total: usize,
    members_up: usize,
    members_total: usize,
    kernel_tls: String,
    dns_charts: Vec<String>,
    listener_charts: Vec<(String, Vec<String>)>,
}

pub struct ListenerRow {
    pub name: String,
    pub href: String,
    pub bind: String,
    pub protocol: String,
    pub state: String,
    pub listening: bool,
    pub rps: String,
}

fn listener_rows(st: &AppState) -> Vec<ListenerRow> {
    st.backend
        .listeners()
        .into_iter()
        .map(|l| ListenerRow {
            href: format!("/console/listeners/{}", seg(&l.name)),
            rps: last(st, &format!("listener/{}/rps", l.name)),
            listening: l.state == "listening",
            name: l.name,
            bind: l.bind,
            protocol: l.protocol,
            state: l.state,
        })
        .collect()
}

pub async fn overview(user: ConsoleUser, State(st): State<AppState>) -> Response {
    let cfg = st.backend.config();
    let health = st.backend.health();
    let raft = st.backend.raft();
    let pools = crate::view::pools(&cfg.value, health.as_ref());
    let members_total = pools.iter().map(|p| p.members.len()).sum();
    let members_up = pools
        .iter()
        .flat_map(|p| &p.members)
        .filter(|m| m.healthy)
        .count();
    let listeners = listener_rows(&st);
    let listener_charts = listeners
        .iter()
        .map(|l| (l.name.clone(), listener_charts(&st, &l.name)))
        .collect();
    render(&OverviewTemplate {
        chrome: Chrome::new(&st, &user, "overview"),
        revision: cfg.revision,
        leader: raft
            .leader
            .map(|l| l.to_string())
            .unwrap_or_else(|| "none".into()),
        raft,
        alarms: st.backend.alarms(),
        listeners,
        pools_total: pools.len(),
        kernel_tls: st
            .backend
            .kernel_tls()
            .unwrap_or_else(|| "not available: TLS stays in userspace".into()),
        members_up,
        members_total,
        dns_charts: dns_charts(&st),
        listener_charts,
    })
}

pub struct RouteRow {
    pub name: String,
    pub href: String,
    pub listener: String,
    pub host: String,
    pub prefix: String,
    pub pool: String,
    pub pool_href: String,
    pub filters: String,
}

#[derive(Template)]
#[template(path = "listeners.html")]
struct ListenersTemplate {
    chrome: Chrome,
    listeners: Vec<ListenerRow>,
    routes: Vec<RouteRow>,
    limits: Vec<LimitRow>,
}

pub async fn listeners(user: ConsoleUser, State(st): State<AppState>) -> Response {
    let cfg = st.backend.config();
    let routes = cfg
        .value
        .spec
        .routes
        .iter()
        .map(|r| RouteRow {
            name: r.name.clone(),
            href: format!("/console/routes/{}", seg(&r.name)),
            listener: r.listener.clone(),
            host: r.host.clone().unwrap_or_else(|| "*".into()),
            prefix: r.path_prefix.clone(),
            pool: r.pool.clone(),
            pool_href: format!("/console/pools/{}", seg(&r.pool)),
            filters: route_filters(r),
        })
        .collect();
    render(&ListenersTemplate {
        chrome: Chrome::new(&st, &user, "listeners"),
        listeners: listener_rows(&st),
        routes,
        limits: limit_rows(&st, &cfg.value.spec.routes),
    })
}

/// The route's filters in a few words, in the order they run.
pub fn route_filters(r: &model::RouteSpec) -> String {
    let mut parts = Vec::new();
    if let Some(rd) = &r.redirect {
        let target = [
            rd.scheme.as_ref().map(|s| format!("{s}://")),
            rd.host.clone(),
            rd.port.map(|p| format!(":{p}")),
            rd.path.clone(),
        ]
        .into_iter()
        .flatten()
        .collect::<String>();
        parts.push(format!(
            "redirect {} → {}",
            rd.status,
            if target.is_empty() {
                "same URL".into()
            } else {
                target
            }
        ));
    }
    if let Some(h) = &r.request_headers {
        parts.push(format!("request headers: {}", header_edit(h)));
    }
    if let Some(to) = &r.rewrite_prefix {
        parts.push(format!("rewrite {} → {to}", r.path_prefix));
    }
    if let Some(h) = &r.response_headers {
        parts.push(format!("response headers: {}", header_edit(h)));
    }
    if let Some(a) = &r.access {
        let mut what = Vec::new();
        if !a.allow.is_empty() {
            what.push(format!("allow {}", a.allow.join(" ")));
        }
        if !a.deny.is_empty() {
            what.push(format!("deny {}", a.deny.join(" ")));
        }
        if !a.methods.is_empty() {
            what.push(format!("methods {}", a.methods.join(" ")));
        }
        parts.push(format!("access: {}", what.join(", ")));
    }
    if let Some(rl) = &r.rate_limit {
        parts.push(format!("rate limit: {}", limit_summary(rl)));
    }
    if let Some(c) = &r.compression {
        let codecs: Vec<&str> = c.codecs.iter().map(|c| c.token()).collect();
        parts.push(format!(
            "compress {} (level {})",
            codecs.join(", "),
            c.level
        ));
    }
    if parts.is_empty() {
        "—".into()
    } else {
        parts.join("; ")
    }
}

/// `10/second per client_ip, burst 10, then 429`.
pub fn limit_summary(rl: &model::RateLimitSpec) -> String {
    let per = match rl.per {
        model::RatePer::Second => "second",
        model::RatePer::Minute => "minute",
        model::RatePer::Hour => "hour",
    };
    let key = match &rl.key {
        model::RateKey::ClientIp => "client address".to_string(),
        model::RateKey::Subnet {
            ipv4_prefix,
            ipv6_prefix,
        } => format!("client network (/{ipv4_prefix}, /{ipv6_prefix})"),
        model::RateKey::Header { name } => format!("header {name}"),
        model::RateKey::Cookie { name } => format!("cookie {name}"),
        model::RateKey::Route => "route".to_string(),
    };
    let over = match rl.over_limit {
        model::OverLimit::Reject => "then 429".to_string(),
        model::OverLimit::Delay => format!("then delayed up to {} ms", rl.max_delay_ms),
    };
    let mut out = format!(
        "{}/{per} per {key}{}, burst {}, {over}",
        rl.requests,
        if rl.global { " across the cluster" } else { "" },
        rl.burst.unwrap_or(rl.requests)
    );
    if let Some(c) = rl.max_concurrent {
        out.push_str(&format!(", {c} in flight"));
    }
    out
}

/// One rate-limited route with its live rates and a chart of admitted and rejected requests.
pub struct LimitRow {
    pub route: String,
    pub href: String,
    pub limit: String,
    pub admitted: String,
    pub delayed: String,
    pub rejected: String,
    pub chart: String,
}

fn limit_rows(st: &AppState, routes: &[model::RouteSpec]) -> Vec<LimitRow> {
    routes
        .iter()
        .filter_map(|r| {
            let rl = r.rate_limit.as_ref()?;
            let key = |o: &str| format!("limit/{}/{o}", r.name);
            let (a, d, x) = (key("admitted"), key("delayed"), key("rejected"));
            let (sa, sx) = (st.history.series(&a), st.history.series(&x));
            Some(LimitRow {
                route: r.name.clone(),
                href: format!("/console/routes/{}", seg(&r.name)),
                limit: limit_summary(rl),
                admitted: last(st, &a),
                delayed: last(st, &d),
                rejected: last(st, &x),
                chart: chart::multi(
                    &format!("{}: admitted / rejected per second", r.name),
                    Unit::PerSecond,
                    &[
                        Line {
                            key: &a,
                            label: "admitted",
                            points: &sa,
                        },
                        Line {
                            key: &x,
                            label: "rejected",
                            points: &sx,
                        },
                    ],
                ),
            })
        })
        .collect()
}

fn header_edit(h: &model::HeaderEditSpec) -> String {
    let mut out: Vec<String> = h.remove.iter().map(|n| format!("-{n}")).collect();
    out.extend(h.set.iter().map(|(n, v)| format!("{n}={v}")));
    out.extend(h.add.iter().map(|(n, v)| format!("+{n}={v}")));
    out.join(", ")
}

pub struct PoolRow {
    pub name: String,
    pub href: String,
    pub health_check: String,
    pub members: usize,
    pub up: usize,
    pub out_of_service: usize,
    pub rps: String,
}

pub struct CheckRow {
    pub name: String,
    pub href: String,
    pub path: String,
    pub interval_ms: u64,
    pub rise: u32,
    pub fall: u32,
}

#[derive(Template)]
#[template(path = "pools.html")]
struct PoolsTemplate {
    chrome: Chrome,
    pools: Vec<PoolRow>,
    checks: Vec<CheckRow>,
}

/// The health of a target as the console says it.
pub fn health_of(has_check: bool, health: &dyn HealthView, key: &str) -> HealthState {
    if !has_check {
        return HealthState::Up;
    }
    health
        .status(key)
        .map(|s| s.state)
        .unwrap_or(HealthState::Unknown)
}

pub async fn pools(user: ConsoleUser, State(st): State<AppState>) -> Response {
    let cfg = st.backend.config();
    let health = st.backend.health();
    let pools = cfg
        .value
        .pools
        .iter()
        .map(|p| {
            let up = p
                .members
                .iter()
                .filter(|m| {
                    health_of(
                        p.health_check.is_some(),
                        health.as_ref(),
                        &model::member_health_key(&p.name, m.address),
                    ) == HealthState::Up
                })
                .count();
            PoolRow {
                name: p.name.clone(),
                href: format!("/console/pools/{}", seg(&p.name)),
                health_check: p
                    .health_check
                    .as_ref()
                    .map(|h| h.name.clone())
                    .unwrap_or_else(|| "—".into()),
                members: p.members.len(),
                up,
                out_of_service: p.members.iter().filter(|m| !m.state.is_enabled()).count(),
                rps: last(&st, &format!("pool/{}/rps", p.name)),
            }
        })
        .collect();
    let checks = cfg
        .value
        .spec
        .health_checks
        .iter()
        .map(|h| CheckRow {
            name: h.name.clone(),
            href: format!("/console/health_checks/{}", seg(&h.name)),
            path: h.path.clone(),
            interval_ms: h.interval_ms,
            rise: h.rise,
            fall: h.fall,
        })
        .collect();
    render(&PoolsTemplate {
        chrome: Chrome::new(&st, &user, "pools"),
        pools,
        checks,
    })
}

pub struct GslbRow {
    pub name: String,
    pub href: String,
    pub ttl: u32,
    /// What to answer when every site is down.
    pub policy: String,
    /// How healthy sites become an answer (failover, weighted, ...).
    pub steering: String,
    pub sites: usize,
    pub up: usize,
    pub out_of_service: usize,
}

/// One site on the GSLB page: health per node and its share of the record's answers.
pub struct GslbSiteRow {
    pub record: String,
    pub href: String,
    pub site: String,
    pub address: String,
    pub region: String,
    pub state: &'static str,
    pub health: &'static str,
    /// Pre-rendered: `node 1 up · node 2 down`.
    pub votes: String,
    pub answers: u64,
    pub share: String,
}

pub struct RegionRow {
    pub name: String,
    pub href: String,
    pub networks: String,
    pub location: String,
    pub spill_to: String,
}

#[derive(Template)]
#[template(path = "gslb.html")]
struct GslbTemplate {
    chrome: Chrome,
    records: Vec<GslbRow>,
    sites: Vec<GslbSiteRow>,
    regions: Vec<RegionRow>,
    explain: ExplainForm,
    dns_charts: Vec<String>,
}

/// The explain form and, once asked, its answer.
#[derive(Default, serde::Deserialize)]
pub struct ExplainForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub client: String,
    #[serde(default)]
    pub ecs: String,
    #[serde(skip)]
    pub result: Option<Result<crate::DnsExplanation, String>>,
}

pub async fn gslb(
    user: ConsoleUser,
    State(st): State<AppState>,
    axum::extract::Query(mut explain): axum::extract::Query<ExplainForm>,
) -> Response {
    let cfg = st.backend.config();
    let health = st.backend.health();
    if !explain.name.trim().is_empty() {
        let opt = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
        explain.result = Some(st.backend.dns_explain(&crate::DnsExplainQuery {
            name: explain.name.clone(),
            qtype: None,
            client: opt(&explain.client),
            ecs: opt(&explain.ecs),
        }));
    }
    let mut sites = Vec::new();
    for g in &cfg.value.spec.gslb_records {
        let fq = model::validate::fqdn(&g.name);
        let total: u64 = g
            .sites
            .iter()
            .map(|s| st.backend.site_answers(&fq, &s.name))
            .sum();
        for s in &g.sites {
            let key = model::site_health_key(&fq, &s.name);
            let answers = st.backend.site_answers(&fq, &s.name);
            sites.push(GslbSiteRow {
                record: g.name.clone(),
                href: format!("/console/gslb_records/{}", seg(&g.name)),
                site: s.name.clone(),
                address: s.address.clone(),
                region: s.region.clone().unwrap_or_else(|| "-".into()),
                state: s.state.as_str(),
                health: if s.health_check.is_some() {
                    health_of(true, health.as_ref(), &key).as_str()
                } else {
                    "not checked"
                },
                votes: if s.health_check.is_some() {
                    super::state::votes_cell(&st.backend.site_votes(&key))
                } else {
                    String::new()
                },
                answers,
                share: super::state::share(answers, total),
            });
        }
    }
    let regions = cfg
        .value
        .spec
        .regions
        .iter()
        .map(|r| RegionRow {
            name: r.name.clone(),
            href: format!("/console/regions/{}", seg(&r.name)),
            networks: r
                .networks
                .iter()
                .chain(&r.countries)
                .chain(&r.continents)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            location: r.location.clone().unwrap_or_default(),
            spill_to: r.spill_to.join(", "),
        })
        .collect();
    let records = cfg
        .value
        .spec
        .gslb_records
        .iter()
        .map(|g| GslbRow {
            name: g.name.clone(),
            href: format!("/console/gslb_records/{}", seg(&g.name)),
            ttl: g.ttl,
            policy: format!("{:?}", g.when_all_down).to_lowercase(),
            steering: {
                let policy = serde_json::to_value(g.policy)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                let steer = match g.steer {
                    model::Steer::None => String::new(),
                    model::Steer::Geo => "geo, then ".into(),
                    model::Steer::Nearest => "nearest, then ".into(),
                };
                match g.max_answers {
                    None => format!("{steer}{policy}"),
                    Some(n) => format!("{steer}{policy}, at most {n}"),
                }
            },
            sites: g.sites.len(),
            up: g
                .sites
                .iter()
                .filter(|s| {
                    health_of(
                        s.health_check.is_some(),
                        health.as_ref(),
                        &model::site_health_key(&model::validate::fqdn(&g.name), &s.name),
                    ) == HealthState::Up
                })
                .count(),
            out_of_service: g.sites.iter().filter(|s| !s.state.is_enabled()).count(),
        })
        .collect();
    render(&GslbTemplate {
        chrome: Chrome::new(&st, &user, "gslb"),
        records,
        sites,
        regions,
        explain,
        dns_charts: dns_charts(&st),
    })
}

pub struct ZoneRow {
    pub name: String,
    pub href: String,
    pub serial: u64,
    pub records: usize,
    pub ns: String,
}

#[derive(Template)]
#[template(path = "zones.html")]
struct ZonesTemplate {
    chrome: Chrome,
    zones: Vec<ZoneRow>,
    /// What the import form expects the config to still be at.
    revision: u64,
    /// Response-rate limiting in words.
    rate_limit: String,
    tsig_keys: Vec<TsigKeyRow>,
}

pub struct TsigKeyRow {
    pub name: String,
    pub algorithm: &'static str,
    /// The zones whose secondaries use it.
    pub used_by: String,
    pub in_use: bool,
}

/// The TSIG key forms: add (with the secret the operator made) or delete.
pub async fn tsig_key(
    user: ConsoleUser,
    State(st): State<AppState>,
    axum::extract::Form(pairs): axum::extract::Form<Vec<(String, String)>>,
) -> Response {
    use axum::response::IntoResponse;
    if let Err(r) =
        super::csrf(&user, &pairs).and_then(|_| super::require(&user, model::Role::Operator))
    {
        return r.into_response();
    }
    let name = super::field(&pairs, "name").trim().to_string();
    let result = if super::field(&pairs, "action") == "delete" {
        crate::ops::delete_tsig_key(&st, user.origin(), &name)
            .await
            .map(|_| format!("TSIG key {name} deleted."))
    } else {
        let algorithm = super::field(&pairs, "algorithm");
        let secret = super::field(&pairs, "secret");
        crate::ops::add_tsig_key(&st, user.origin(), &name, algorithm, secret)
            .await
            .map(|stored| format!("TSIG key {stored} stored."))
    };
    match result {
        Ok(message) => {
            st.metrics.change("tsig_keys");
            super::done(&st, &user, message, "/console/zones")
        }
        Err(e) => super::change_failed(&st, &user, "zones", e),
    }
}

/// The zone-file import form: paste a zone in master format.
pub async fn import_zone(
    user: ConsoleUser,
    State(st): State<AppState>,
    axum::extract::Form(pairs): axum::extract::Form<Vec<(String, String)>>,
) -> Response {
    use axum::response::IntoResponse;
    if let Err(r) =
        super::csrf(&user, &pairs).and_then(|_| super::require(&user, model::Role::Operator))
    {
        return r.into_response();
    }
    let name = super::field(&pairs, "name").trim().to_string();
    let text = super::field(&pairs, "zone_file");
    let expected = super::field(&pairs, "revision").parse::<u64>().ok();
    match crate::ops::import_zone(&st, user.origin(), expected, &name, text).await {
        Ok(rev) => super::done(
            &st,
            &user,
            format!("Zone {name} imported (revision {rev})."),
            &format!("/console/zones/{}", seg(name.trim_end_matches('.'))),
        ),
        Err(e) => super::change_failed(&st, &user, "zones", e),
    }
}

pub async fn zones(user: ConsoleUser, State(st): State<AppState>) -> Response {
    let cfg = st.backend.config();
    let zones = cfg
        .value
        .spec
        .zones
        .iter()
        .map(|z| ZoneRow {
            name: z.name.clone(),
            href: format!("/console/zones/{}", seg(&z.name)),
            serial: cfg.revision,
            records: z.records.len(),
            ns: z.ns.join(", "),
        })
        .collect();
    let users = crate::ops::tsig_key_users(&cfg.value.spec);
    let tsig_keys = st
        .backend
        .tsig_keys()
        .values()
        .map(|k| {
            let used = users.get(&k.name).cloned().unwrap_or_default();
            TsigKeyRow {
                name: k.name.clone(),
                algorithm: k.algorithm.as_str(),
                in_use: !used.is_empty(),
                used_by: used.join(", "),
            }
        })
        .collect();
    render(&ZonesTemplate {
        chrome: Chrome::new(&st, &user, "zones"),
        zones,
        tsig_keys,
        revision: cfg.revision,
        rate_limit: {
            let rl = cfg
                .value
                .spec
                .dns
                .as_ref()
                .and_then(|d| d.rate_limit.clone())
                .unwrap_or_default();
            if rl.responses_per_second == 0 {
                "off".to_string()
            } else {
                format!(
                    "{} UDP responses per second per client /{} (IPv6 /{}); over it, every {} is sent truncated and the rest dropped",
                    rl.responses_per_second,
                    rl.ipv4_prefix,
                    rl.ipv6_prefix,
                    match rl.slip {
                        0 => "none".to_string(),
                        1 => "one".to_string(),
                        n => format!("{n}th"),
                    }
                )
            }
        },
    })
}

pub struct MemberRow {
    pub id: u64,
    pub address: String,
    pub role: String,
    /// `ok`, `warn` or `bad`: answering and current, behind or silent, unreachable.
    pub health: &'static str,
    pub state: String,
    pub term: String,
    pub commit: String,
    pub applied: String,
    pub lag: String,
    pub contact: String,
    pub cert_expires: String,
    pub remove_href: String,
}

pub struct JoinTokenRow {
    pub id: String,
    pub state: String,
    pub created_by: String,
    pub expires: String,
    pub used_by: String,
}

#[derive(Template)]
#[template(path = "cluster.html")]
struct ClusterTemplate {
    chrome: Chrome,
    raft: crate::RaftView,
    leader: String,
    revision: u64,
    members: Vec<MemberRow>,
    quorum: String,
    join_tokens: Vec<JoinTokenRow>,
    schema: u32,
    schema_supported: u32,
    /// A join token just issued: shown this once.
    new_token: String,
    tls: bool,
}

fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "–".to_string(), |v| v.to_string())
}

pub fn member_rows(view: &crate::ClusterView) -> Vec<MemberRow> {
    view.members
        .iter()
        .map(|m| {
            let silent = m
                .last_contact_ms
                .is_some_and(|ms| ms > model::records::PEER_SILENT_MS);
            let behind = m
                .lag
                .is_some_and(|l| l > model::records::PEER_LAG_ALARM_ENTRIES);
            MemberRow {
                id: m.node_id,
                address: m.address.clone(),
                role: m.role.clone(),
                health: if !m.reachable {
                    "bad"
                } else if silent || behind {
                    "warn"
                } else {
                    "ok"
                },
                state: match (&m.state, &m.error) {
                    (Some(s), _) => s.clone(),
                    (None, Some(e)) => e.clone(),
                    (None, None) => "–".into(),
                },
                term: or_dash(m.term),
                commit: or_dash(m.commit_index),
                applied: or_dash(m.last_applied),
                lag: or_dash(m.lag),
                contact: m.last_contact_ms.map_or_else(
                    || "–".to_string(),
                    |ms| format!("{:.1} s ago", ms as f64 / 1000.0),
                ),
                cert_expires: m
                    .cert_not_after_unix
                    .and_then(|t| u64::try_from(t).ok())
                    .map_or_else(|| "–".to_string(), |t| super::time(t * 1000)),
                remove_href: format!("/console/cluster/{}/remove", m.node_id),
            }
        })
        .collect()
}

pub async fn cluster(user: ConsoleUser, State(st): State<AppState>) -> Response {
    render(&cluster_page(&st, &user, String::new()).await)
}

async fn cluster_page(st: &AppState, user: &ConsoleUser, new_token: String) -> ClusterTemplate {
    let raft = st.backend.raft();
    let view = st.backend.cluster().await;
    let voters = view.members.iter().filter(|m| m.role != "learner").count();
    let answering = view
        .members
        .iter()
        .filter(|m| m.role != "learner" && m.reachable)
        .count();
    let join_tokens = if user.role >= Role::Admin {
        crate::api::join_token_views(st)
            .into_iter()
            .map(|t| JoinTokenRow {
                id: t.id,
                state: t.state,
                created_by: t.created_by,
                expires: super::time(t.expires_unix_ms),
                used_by: t
                    .used_by_node
                    .map_or_else(|| "–".to_string(), |n| format!("node {n}")),
            })
            .collect()
    } else {
        Vec::new()
    };
    ClusterTemplate {
        chrome: Chrome::new(st, user, "cluster"),
        join_tokens,
        new_token,
        tls: st.backend.cluster_ca_fingerprint().is_some(),
        leader: raft
            .leader
            .map(|l| l.to_string())
            .unwrap_or_else(|| "none".into()),
        quorum: format!(
            "{answering} of {voters} voters answer; {} needed for a quorum; {} can fail",
            voters / 2 + 1,
            voters.saturating_sub(voters / 2 + 1)
        ),
        members: member_rows(&view),
        schema: view.schema,
        schema_supported: model::SCHEMA_SUPPORTED,
        raft,
        revision: st.backend.config().revision,
    }
}

/// Issues a join token from the console (admin); the page shows it this once.
pub async fn issue_join_token(
    user: ConsoleUser,
    State(st): State<AppState>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = csrf(&user, &pairs).and_then(|_| require(&user, Role::Admin)) {
        return r.into_response();
    }
    let minutes = super::field(&pairs, "ttl_minutes").trim();
    let ttl = match minutes.parse::<u64>() {
        Ok(m) => m.saturating_mul(60),
        Err(_) => {
            return super::message(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                Some(Chrome::new(&st, &user, "cluster")),
                "Join token not issued",
                &format!("{minutes:?} is not a number of minutes"),
            )
        }
    };
    match crate::ops::issue_join_token(&st, user.origin(), ttl).await {
        Ok((_, text)) => {
            st.metrics.change("cluster");
            super::with_status(
                render(&cluster_page(&st, &user, text.to_string()).await),
                axum::http::StatusCode::CREATED,
            )
        }
        Err(e) => change_failed(&st, &user, "cluster", e),
    }
}

pub async fn confirm_remove(
    user: ConsoleUser,
    State(st): State<AppState>,
    Path(id): Path<u64>,
) -> Response {
    if let Err(r) = require(&user, Role::Admin) {
        return r.into_response();
    }
    super::objects::confirm(
        &st,
        &user,
        "cluster",
        super::objects::Confirm {
            title: format!("Remove node {id} from the cluster?"),
            question: format!(
                "Node {id} is demoted to a learner, then removed; the others stop replicating \
                 to it. Stop its process afterwards: it keeps its last configuration but no \
                 longer takes part. Refused if the voters left would not have a quorum."
            ),
            action: format!("/console/cluster/{id}/remove"),
            button: "Remove",
            back: "/console/cluster".into(),
            hidden: Vec::new(),
        },
    )
}

pub async fn remove(
    user: ConsoleUser,
    State(st): State<AppState>,
    Path(id): Path<u64>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = csrf(&user, &pairs).and_then(|_| require(&user, Role::Admin)) {
        return r.into_response();
    }
    match st.backend.remove_member(id).await {
        Ok(()) => {
            tracing::info!(user = %user.session.user, node_id = id, "cluster member removed");
            done(
                &st,
                &user,
                format!("Removed node {id} from the cluster; stop its process now."),
                "/console/cluster",
            )
        }
        Err(e) => change_failed(&st, &user, "cluster", e),
    }
}

#[derive(Template)]
#[template(path = "alarms.html")]
struct AlarmsTemplate {
    chrome: Chrome,
    alarms: Vec<String>,
}

pub async fn alarms(user: ConsoleUser, State(st): State<AppState>) -> Response {
    render(&AlarmsTemplate {
        chrome: Chrome::new(&st, &user, "alarms"),
        alarms: st.backend.alarms(),
    })
}
