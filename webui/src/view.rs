//! Read models of the live state, shared by the dashboard and `/api/v1/status`: the config
//! joined with health observations.

use model::{Config, HealthView, RecordData};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct PoolView {
    pub name: String,
    pub health_check: String,
    pub members: Vec<MemberView>,
}

#[derive(Debug, Serialize)]
pub struct MemberView {
    pub address: String,
    pub weight: u32,
    pub healthy: bool,
}

#[derive(Debug, Serialize)]
pub struct GslbView {
    pub name: String,
    pub ttl: u32,
    pub sites: Vec<SiteView>,
}

#[derive(Debug, Serialize)]
pub struct SiteView {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub health_check: String,
    pub healthy: bool,
}

#[derive(Debug, Serialize)]
pub struct ZoneView {
    pub name: String,
    pub serial: u64,
    pub records: Vec<RecordView>,
}

#[derive(Debug, Serialize)]
pub struct RecordView {
    pub name: String,
    pub rtype: &'static str,
    pub ttl: u32,
    pub value: String,
}

/// A target without a health check is always eligible; one never observed counts as up.
fn healthy(has_check: bool, health: &dyn HealthView, key: &str) -> bool {
    !has_check || health.is_healthy(key).unwrap_or(true)
}

pub fn pools(cfg: &Config, health: &dyn HealthView) -> Vec<PoolView> {
    cfg.pools
        .iter()
        .map(|p| PoolView {
            name: p.name.clone(),
            health_check: p
                .health_check
                .as_ref()
                .map(|h| h.name.clone())
                .unwrap_or_default(),
            members: p
                .members
                .iter()
                .map(|m| MemberView {
                    address: m.address.to_string(),
                    weight: m.weight,
                    healthy: healthy(
                        p.health_check.is_some(),
                        health,
                        &model::member_health_key(&p.name, m.address),
                    ),
                })
                .collect(),
        })
        .collect()
}

pub fn gslb(cfg: &Config, health: &dyn HealthView) -> Vec<GslbView> {
    cfg.gslb_records
        .iter()
        .map(|g| GslbView {
            name: g.name.clone(),
            ttl: g.ttl,
            sites: g
                .sites
                .iter()
                .map(|s| SiteView {
                    name: s.name.clone(),
                    address: s.address.to_string(),
                    port: s.probe.port(),
                    health_check: s
                        .health_check
                        .as_ref()
                        .map(|h| h.name.clone())
                        .unwrap_or_default(),
                    healthy: healthy(
                        s.health_check.is_some(),
                        health,
                        &model::site_health_key(&g.name, &s.name),
                    ),
                })
                .collect(),
        })
        .collect()
}

pub fn zones(cfg: &Config, revision: u64) -> Vec<ZoneView> {
    cfg.zones
        .iter()
        .map(|z| ZoneView {
            name: z.origin.clone(),
            serial: revision,
            records: z
                .records
                .iter()
                .map(|r| {
                    let (rtype, value) = match &r.data {
                        RecordData::A(a) => ("A", a.to_string()),
                        RecordData::AAAA(a) => ("AAAA", a.to_string()),
                        RecordData::CNAME(n) => ("CNAME", n.clone()),
                        RecordData::TXT(t) => ("TXT", t.clone()),
                        RecordData::MX {
                            preference,
                            exchange,
                        } => ("MX", format!("{preference} {exchange}")),
                    };
                    RecordView {
                        name: r.name.clone(),
                        rtype,
                        ttl: r.ttl,
                        value,
                    }
                })
                .collect(),
        })
        .collect()
}
