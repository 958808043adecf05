//! Read models of the live state, shared by the dashboard and `/api/v1/status`: the config
//! joined with health observations.

use model::{Config, HealthView};
use serde::Serialize;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PoolView {
    pub name: String,
    pub health_check: String,
    pub members: Vec<MemberView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MemberView {
    pub address: String,
    pub weight: u32,
    /// Takes new requests: enabled and not down.
    pub healthy: bool,
    /// `up`, `down` or `unknown` (not probed yet); `up` without a health check.
    pub health: &'static str,
    /// `enabled`, `disabled` or `draining`.
    pub state: &'static str,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GslbView {
    pub name: String,
    pub ttl: u32,
    pub sites: Vec<SiteView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SiteView {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub health_check: String,
    pub healthy: bool,
    pub health: &'static str,
    pub state: &'static str,
}

/// A target without a health check is always eligible; one never observed counts as up.
fn healthy(has_check: bool, health: &dyn HealthView, key: &str) -> bool {
    !has_check || health.is_healthy(key).unwrap_or(true)
}

fn health_word(has_check: bool, health: &dyn HealthView, key: &str) -> &'static str {
    if !has_check {
        return "up";
    }
    health
        .status(key)
        .map(|s| s.state)
        .unwrap_or(model::HealthState::Unknown)
        .as_str()
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
                .map(|m| {
                    let key = model::member_health_key(&p.name, m.address);
                    MemberView {
                        address: m.address.to_string(),
                        weight: m.weight,
                        healthy: m.state.is_enabled()
                            && healthy(p.health_check.is_some(), health, &key),
                        health: health_word(p.health_check.is_some(), health, &key),
                        state: m.state.as_str(),
                    }
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
                    healthy: s.state.is_enabled()
                        && healthy(
                            s.health_check.is_some(),
                            health,
                            &model::site_health_key(&g.name, &s.name),
                        ),
                    health: health_word(
                        s.health_check.is_some(),
                        health,
                        &model::site_health_key(&g.name, &s.name),
                    ),
                    state: s.state.as_str(),
                })
                .collect(),
        })
        .collect()
}
