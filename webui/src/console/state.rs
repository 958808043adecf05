//! What an object is doing now, above its form: a pool's members with their live counters,
//! health and admin-state buttons, a GSLB record's sites, a listener's state; and its charts.

use model::{AdminState, HealthState, ObjectKind};

use super::pages::{health_of, listener_charts, upstream_charts};
use super::{ago, seg, Chrome};
use crate::forms::esc;
use crate::AppState;

/// Buttons that set an admin state, one small form each.
fn state_buttons(
    chrome: &Chrome,
    action: &str,
    key: &str,
    value: &str,
    current: AdminState,
) -> String {
    if !chrome.can_edit() {
        return String::new();
    }
    [
        (AdminState::Enabled, "Enable"),
        (AdminState::Draining, "Drain"),
        (AdminState::Disabled, "Disable"),
        (AdminState::ForceUp, "Force up"),
    ]
    .iter()
    // Forcing up is for GSLB sites: a pool member takes traffic only while healthy.
    .filter(|(s, _)| *s != current && (key == "site" || *s != AdminState::ForceUp))
    .map(|(s, label)| {
        format!(
            "<form class=\"inline\" method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"{key}\" value=\"{}\"><input type=\"hidden\" name=\"state\" value=\"{}\"><button class=\"small ghost\" type=\"submit\" aria-label=\"{label} {}\">{label}</button></form> ",
            esc(action),
            esc(&chrome.csrf),
            esc(value),
            s.as_str(),
            esc(value),
        )
    })
    .collect()
}

fn health_cell(state: HealthState, since_ms: u64, failed: u64) -> String {
    let since = if since_ms > 0 {
        format!(" <small class=\"muted\">{}</small>", esc(&ago(since_ms)))
    } else {
        String::new()
    };
    format!(
        "<span class=\"{0}\">{0}</span>{since}<br><small class=\"muted\">{failed} failed checks</small>",
        state.as_str()
    )
}

/// Each live node's view of a site: `node 1 up · node 2 down`.
pub fn votes_cell(votes: &[crate::SiteVote]) -> String {
    votes
        .iter()
        .map(|v| {
            let (class, word) = match v.up {
                Some(true) => ("up", "up"),
                Some(false) => ("down", "down"),
                None => ("muted", "unknown"),
            };
            format!("node {} <span class=\"{class}\">{word}</span>", v.node)
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// `n` as a percentage of `total`, or nothing when there is no total.
pub fn share(n: u64, total: u64) -> String {
    if total == 0 {
        return String::new();
    }
    format!("{:.0}%", n as f64 * 100.0 / total as f64)
}

/// What the object is doing now (above its form), and its charts.
pub fn live(st: &AppState, chrome: &Chrome, kind: ObjectKind, name: &str) -> (String, Vec<String>) {
    let cfg = st.backend.config();
    let health = st.backend.health();
    match kind {
        ObjectKind::Listeners => {
            let state = st
                .backend
                .listeners()
                .into_iter()
                .find(|l| l.name == name)
                .map(|l| format!("<p>{} on <code>{}</code>: <b>{}</b></p>", esc(&l.protocol), esc(&l.bind), esc(&l.state)))
                .unwrap_or_default();
            (state, listener_charts(st, name))
        }
        ObjectKind::Pools => {
            let Some(p) = cfg.value.pools.iter().find(|p| p.name == name) else {
                return (String::new(), Vec::new());
            };
            let spec_members = cfg
                .value
                .spec
                .pools
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.members.clone())
                .unwrap_or_default();
            let mut html = String::from(
                "<div class=\"table-wrap\"><table id=\"members\"><thead><tr><th scope=\"col\">Member</th><th scope=\"col\">Weight</th><th scope=\"col\">Admin state</th><th scope=\"col\">Health</th><th scope=\"col\">Active</th><th scope=\"col\">Requests</th><th scope=\"col\">2xx / 4xx / 5xx</th><th scope=\"col\">p50 / p99</th><th scope=\"col\">Connect failures</th><th scope=\"col\">Actions</th></tr></thead><tbody>",
            );
            let action = format!("/console/pools/{}/members/state", seg(name));
            let mut charts = upstream_charts(st, &format!("pool/{name}"));
            for (m, spec) in p.members.iter().zip(&spec_members) {
                let addr = m.address.to_string();
                let key = model::member_health_key(&p.name, m.address);
                let status = health.status(&key);
                let state = health_of(p.health_check.is_some(), health.as_ref(), &key);
                let c = st.history.member_counters(name, &addr);
                let ms = |v: Option<f64>| {
                    v.map(|s| crate::chart::Unit::Seconds.format(s))
                        .unwrap_or_else(|| "—".into())
                };
                html.push_str(&format!(
                    "<tr data-member=\"{a}\"><td><code>{a}</code></td><td>{w}</td><td><span class=\"{st}\">{st}</span></td><td>{h}</td><td>{act}</td><td>{req}</td><td>{c2} / {c4} / {c5}</td><td>{p50} / {p99}</td><td>{cf}</td><td>{btn}</td></tr>",
                    a = esc(&addr),
                    w = m.weight,
                    st = spec.state.as_str(),
                    h = if p.health_check.is_some() {
                        health_cell(
                            state,
                            status.map(|s| s.changed_unix_ms).unwrap_or(0),
                            status.map(|s| s.failed_checks).unwrap_or(0),
                        )
                    } else {
                        "<span class=\"muted\">not checked</span>".to_string()
                    },
                    act = c.active,
                    req = c.requests_total,
                    c2 = c.by_class[1],
                    c4 = c.by_class[3],
                    c5 = c.by_class[4],
                    p50 = esc(&ms(c.p50)),
                    p99 = esc(&ms(c.p99)),
                    cf = c.connect_failures,
                    btn = state_buttons(chrome, &action, "address", &addr, spec.state),
                ));
                let key = format!("member/{name}/{addr}/rps");
                charts.push(crate::chart::svg(
                    &key,
                    &format!("{addr} requests/s"),
                    crate::chart::Unit::PerSecond,
                    &st.history.series(&key),
                ));
            }
            html.push_str("</tbody></table></div>");
            if p.members.is_empty() {
                html = "<p class=\"muted\">No members yet: add one in the form below.</p>".into();
            }
            (html, charts)
        }
        ObjectKind::GslbRecords => {
            let Some(g) = cfg.value.spec.gslb_records.iter().find(|g| g.name == name) else {
                return (String::new(), Vec::new());
            };
            let fq = model::validate::fqdn(&g.name);
            let action = format!("/console/gslb_records/{}/sites/state", seg(name));
            let mut html = String::from(
                "<div class=\"table-wrap\"><table id=\"sites\"><thead><tr><th scope=\"col\">Site</th><th scope=\"col\">Address</th><th scope=\"col\">Region</th><th scope=\"col\">Admin state</th><th scope=\"col\">Health (cluster)</th><th scope=\"col\">Seen by each node</th><th scope=\"col\">Answers</th><th scope=\"col\">Actions</th></tr></thead><tbody>",
            );
            let total: u64 = g
                .sites
                .iter()
                .map(|s| st.backend.site_answers(&fq, &s.name))
                .sum();
            for s in &g.sites {
                let key = model::site_health_key(&fq, &s.name);
                let status = health.status(&key);
                let state = health_of(s.health_check.is_some(), health.as_ref(), &key);
                let answers = st.backend.site_answers(&fq, &s.name);
                html.push_str(&format!(
                    "<tr data-site=\"{n}\"><td>{n}</td><td><code>{a}</code></td><td>{r}</td><td><span class=\"{st}\">{st}</span></td><td>{h}</td><td>{v}</td><td>{answers} <small class=\"muted\">{share}</small></td><td>{btn}</td></tr>",
                    n = esc(&s.name),
                    a = esc(&s.address),
                    r = esc(s.region.as_deref().unwrap_or("-")),
                    v = if s.health_check.is_some() {
                        votes_cell(&st.backend.site_votes(&key))
                    } else {
                        String::new()
                    },
                    share = share(answers, total),
                    st = s.state.as_str(),
                    h = if s.health_check.is_some() {
                        health_cell(
                            state,
                            status.map(|s| s.changed_unix_ms).unwrap_or(0),
                            status.map(|s| s.failed_checks).unwrap_or(0),
                        )
                    } else {
                        "<span class=\"muted\">not checked</span>".to_string()
                    },
                    btn = state_buttons(chrome, &action, "site", &s.name, s.state),
                ));
            }
            html.push_str("</tbody></table></div>");
            (html, super::pages::dns_charts(st))
        }
        ObjectKind::Regions => {
            let sites: Vec<String> = cfg
                .value
                .spec
                .gslb_records
                .iter()
                .flat_map(|g| {
                    g.sites
                        .iter()
                        .filter(|s| s.region.as_deref() == Some(name))
                        .map(move |s| {
                            format!(
                                "<a href=\"/console/gslb_records/{}\">{}</a> {}",
                                seg(&g.name),
                                esc(&g.name),
                                esc(&s.name)
                            )
                        })
                })
                .collect();
            (
                format!(
                    "<p>Sites in this region: {}</p>",
                    if sites.is_empty() {
                        "none".to_string()
                    } else {
                        sites.join(", ")
                    }
                ),
                Vec::new(),
            )
        }
        ObjectKind::Zones => (
            format!(
                "<p>SOA serial <b>{}</b> (the config revision). Try it: <code>dig @&lt;dns address&gt; {} SOA</code></p>",
                cfg.revision,
                esc(name)
            ),
            Vec::new(),
        ),
        ObjectKind::Routes => {
            let filters = cfg
                .value
                .spec
                .routes
                .iter()
                .find(|r| r.name == name)
                .map(super::pages::route_filters)
                .unwrap_or_default();
            (format!("<p>Filters: {}</p>", esc(&filters)), Vec::new())
        }
        ObjectKind::HealthChecks => {
            let users: Vec<String> = cfg
                .value
                .spec
                .pools
                .iter()
                .filter(|p| p.health_check.as_deref() == Some(name))
                .map(|p| format!("<a href=\"/console/pools/{}\">{}</a>", seg(&p.name), esc(&p.name)))
                .collect();
            (
                format!(
                    "<p>Used by pools: {}</p>",
                    if users.is_empty() {
                        "none".to_string()
                    } else {
                        users.join(", ")
                    }
                ),
                Vec::new(),
            )
        }
    }
}
