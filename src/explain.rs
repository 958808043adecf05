//! `meridian dns explain`: the answer this node gives a query, the GSLB decision behind it step
//! by step, and each site's health as every live node sees it.

use std::str::FromStr;

use hickory_proto::rr::{Name, RecordType};
use model::{AdminState, Cidr};
use webui::{DnsExplainQuery, DnsExplanation, ExplainedSite};

use crate::backend::NodeBackend;

pub fn explain(node: &NodeBackend, query: &DnsExplainQuery) -> Result<DnsExplanation, String> {
    let mut name = Name::from_ascii(query.name.trim())
        .map_err(|e| format!("name {:?} is not a DNS name: {e}", query.name))?;
    name.set_fqdn(true);
    let qtype_text = query.qtype.as_deref().unwrap_or("A").to_ascii_uppercase();
    let qtype = RecordType::from_str(&qtype_text)
        .map_err(|_| format!("type {qtype_text:?} is not a DNS record type"))?;
    let client = match (&query.ecs, &query.client) {
        (Some(ecs), _) => {
            let cidr = Cidr::parse(ecs.trim())
                .ok_or_else(|| format!("ecs {ecs:?} is not a subnet such as 198.51.100.0/24"))?
                .network();
            // As a resolver would send it: a source prefix of 0 asks not to be steered.
            (cidr.prefix > 0).then_some(gslb_dns::ClientSubnet {
                addr: cidr.addr,
                prefix: cidr.prefix,
            })
        }
        (None, Some(ip)) => {
            Some(gslb_dns::ClientSubnet::host(ip.trim().parse().map_err(
                |_| format!("client {ip:?} is not an IP address"),
            )?))
        }
        (None, None) => None,
    };
    let snapshot = node.dns_answers.load();
    let (answer, mut steps) =
        snapshot.explain(&name, qtype, node.site_health.as_ref(), client.as_ref());
    if client.is_none() && query.ecs.is_none() {
        steps.insert(
            0,
            "no --client or --ecs given: asked as from nowhere".into(),
        );
    }

    let config = webui::Backend::config(node);
    let fqdn = name.to_lowercase().to_string();
    let mut sites = Vec::new();
    if let Some(record) = config.value.gslb_records.iter().find(|g| g.name == fqdn) {
        for site in &record.sites {
            let key = model::site_health_key(&record.name, &site.name);
            let votes = webui::Backend::site_votes(node, &key);
            let health = if site.health_check.is_none() {
                "unchecked".to_string()
            } else {
                match model::HealthView::status(node.site_health.as_ref(), &key).map(|s| s.state) {
                    Some(model::HealthState::Up) => "up".into(),
                    Some(model::HealthState::Down) => "down".into(),
                    _ => "unknown".into(),
                }
            };
            sites.push(ExplainedSite {
                name: site.name.clone(),
                address: site.address.to_string(),
                state: site.state.as_str().to_string(),
                region: site
                    .region
                    .and_then(|r| config.value.regions.get(r))
                    .map(|r| r.name.clone()),
                health,
                votes: if site.health_check.is_some() && site.state != AdminState::Disabled {
                    votes
                } else {
                    Vec::new()
                },
                answers: node.dns_metrics.answers_of(&record.name, &site.name),
            });
        }
    }
    Ok(DnsExplanation {
        name: fqdn,
        qtype: qtype.to_string(),
        client: client.map(|c| format!("{}/{}", c.addr, c.prefix)),
        rcode: answer.rcode.to_string(),
        answers: answer.answers.iter().map(ToString::to_string).collect(),
        ecs_scope: answer.ecs_scope,
        steps,
        sites,
    })
}

/// The explanation as the CLI prints it.
pub fn render(e: &DnsExplanation) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {} from {}",
        e.name,
        e.qtype,
        e.client.as_deref().unwrap_or("(no client)")
    );
    for step in &e.steps {
        let _ = writeln!(out, "  - {step}");
    }
    if !e.sites.is_empty() {
        let _ = writeln!(out, "sites:");
        for s in &e.sites {
            let votes: Vec<String> = s
                .votes
                .iter()
                .map(|v| {
                    let seen = match v.up {
                        Some(true) => "up",
                        Some(false) => "down",
                        None => "unknown",
                    };
                    format!("node {} {seen}", v.node)
                })
                .collect();
            let ups = s.votes.iter().filter(|v| v.up == Some(true)).count();
            let voters = s.votes.iter().filter(|v| v.up.is_some()).count();
            let quorum = if voters > 0 {
                format!(", quorum {ups} of {voters} up")
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "  {:<12} {:<16} {:<9} {:<10} region {:<8} answers {:<6} [{}]{quorum}",
                s.name,
                s.address,
                s.state,
                s.health,
                s.region.as_deref().unwrap_or("-"),
                s.answers,
                votes.join(", ")
            );
        }
    }
    let _ = writeln!(out, "answer: {} (ECS scope /{})", e.rcode, e.ecs_scope);
    for a in &e.answers {
        let _ = writeln!(out, "  {a}");
    }
    out
}
