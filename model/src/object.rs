//! Whole named objects, the unit that per-object API calls and Raft commands upsert or delete.

use serde::{Deserialize, Serialize};

use crate::spec::{
    ConfigSpec, GslbRecordSpec, HealthCheckSpec, ListenerSpec, PoolSpec, RegionSpec, RouteSpec,
    ZoneSpec,
};

/// The kinds of named object in a [`ConfigSpec`], in the plural form the API uses in its paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Listeners,
    Routes,
    Pools,
    HealthChecks,
    Zones,
    GslbRecords,
    Regions,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 7] = [
        ObjectKind::Listeners,
        ObjectKind::Routes,
        ObjectKind::Pools,
        ObjectKind::HealthChecks,
        ObjectKind::Zones,
        ObjectKind::GslbRecords,
        ObjectKind::Regions,
    ];

    /// The path segment and config field name (`health_checks`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Listeners => "listeners",
            ObjectKind::Routes => "routes",
            ObjectKind::Pools => "pools",
            ObjectKind::HealthChecks => "health_checks",
            ObjectKind::Zones => "zones",
            ObjectKind::GslbRecords => "gslb_records",
            ObjectKind::Regions => "regions",
        }
    }

    pub fn parse(s: &str) -> Option<ObjectKind> {
        ObjectKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl Object {
    /// Parses the spec of one object of `kind` from JSON or TOML.
    pub fn parse(kind: ObjectKind, bytes: &[u8]) -> Result<Object, crate::ValidationErrors> {
        use crate::parse::from_any;
        Ok(match kind {
            ObjectKind::Listeners => Object::Listeners(from_any(bytes)?),
            ObjectKind::Routes => Object::Routes(from_any(bytes)?),
            ObjectKind::Pools => Object::Pools(from_any(bytes)?),
            ObjectKind::HealthChecks => Object::HealthChecks(from_any(bytes)?),
            ObjectKind::Zones => Object::Zones(from_any(bytes)?),
            ObjectKind::GslbRecords => Object::GslbRecords(from_any(bytes)?),
            ObjectKind::Regions => Object::Regions(from_any(bytes)?),
        })
    }
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One named object of any kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "spec", rename_all = "snake_case")]
pub enum Object {
    Listeners(ListenerSpec),
    Routes(RouteSpec),
    Pools(PoolSpec),
    HealthChecks(HealthCheckSpec),
    Zones(ZoneSpec),
    GslbRecords(GslbRecordSpec),
    Regions(RegionSpec),
}

impl Object {
    pub fn kind(&self) -> ObjectKind {
        match self {
            Object::Listeners(_) => ObjectKind::Listeners,
            Object::Routes(_) => ObjectKind::Routes,
            Object::Pools(_) => ObjectKind::Pools,
            Object::HealthChecks(_) => ObjectKind::HealthChecks,
            Object::Zones(_) => ObjectKind::Zones,
            Object::GslbRecords(_) => ObjectKind::GslbRecords,
            Object::Regions(_) => ObjectKind::Regions,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Object::Listeners(o) => &o.name,
            Object::Routes(o) => &o.name,
            Object::Pools(o) => &o.name,
            Object::HealthChecks(o) => &o.name,
            Object::Zones(o) => &o.name,
            Object::GslbRecords(o) => &o.name,
            Object::Regions(o) => &o.name,
        }
    }

    /// Serializes the inner spec alone, the form the per-object endpoints return.
    pub fn spec_json(&self) -> serde_json::Value {
        let v = match self {
            Object::Listeners(o) => serde_json::to_value(o),
            Object::Routes(o) => serde_json::to_value(o),
            Object::Pools(o) => serde_json::to_value(o),
            Object::HealthChecks(o) => serde_json::to_value(o),
            Object::Zones(o) => serde_json::to_value(o),
            Object::GslbRecords(o) => serde_json::to_value(o),
            Object::Regions(o) => serde_json::to_value(o),
        };
        v.unwrap_or(serde_json::Value::Null)
    }
}

/// Replaces the object of the same kind and name, or appends it.
fn upsert_into<T: Clone>(list: &mut Vec<T>, item: &T, name_of: impl Fn(&T) -> &str) {
    let name = name_of(item).to_string();
    match list.iter_mut().find(|x| name_of(x) == name) {
        Some(slot) => *slot = item.clone(),
        None => list.push(item.clone()),
    }
}

/// Removes the named object; says whether anything was there.
fn delete_from<T>(list: &mut Vec<T>, name: &str, name_of: impl Fn(&T) -> &str) -> bool {
    let before = list.len();
    list.retain(|x| name_of(x) != name);
    before != list.len()
}

impl ConfigSpec {
    /// Inserts or replaces one named object. The result still needs validating.
    pub fn upsert(&mut self, obj: &Object) {
        match obj {
            Object::Listeners(o) => upsert_into(&mut self.listeners, o, |x| &x.name),
            Object::Routes(o) => upsert_into(&mut self.routes, o, |x| &x.name),
            Object::Pools(o) => upsert_into(&mut self.pools, o, |x| &x.name),
            Object::HealthChecks(o) => upsert_into(&mut self.health_checks, o, |x| &x.name),
            Object::Zones(o) => upsert_into(&mut self.zones, o, |x| &x.name),
            Object::GslbRecords(o) => upsert_into(&mut self.gslb_records, o, |x| &x.name),
            Object::Regions(o) => upsert_into(&mut self.regions, o, |x| &x.name),
        }
    }

    /// Deletes one named object; returns false when it did not exist.
    pub fn delete(&mut self, kind: ObjectKind, name: &str) -> bool {
        match kind {
            ObjectKind::Listeners => delete_from(&mut self.listeners, name, |x| &x.name),
            ObjectKind::Routes => delete_from(&mut self.routes, name, |x| &x.name),
            ObjectKind::Pools => delete_from(&mut self.pools, name, |x| &x.name),
            ObjectKind::HealthChecks => delete_from(&mut self.health_checks, name, |x| &x.name),
            ObjectKind::Zones => delete_from(&mut self.zones, name, |x| &x.name),
            ObjectKind::GslbRecords => delete_from(&mut self.gslb_records, name, |x| &x.name),
            ObjectKind::Regions => delete_from(&mut self.regions, name, |x| &x.name),
        }
    }

    /// Looks one named object up.
    pub fn get(&self, kind: ObjectKind, name: &str) -> Option<Object> {
        match kind {
            ObjectKind::Listeners => self
                .listeners
                .iter()
                .find(|x| x.name == name)
                .cloned()
                .map(Object::Listeners),
            ObjectKind::Routes => self
                .routes
                .iter()
                .find(|x| x.name == name)
                .cloned()
                .map(Object::Routes),
            ObjectKind::Pools => self
                .pools
                .iter()
                .find(|x| x.name == name)
                .cloned()
                .map(Object::Pools),
            ObjectKind::HealthChecks => self
                .health_checks
                .iter()
                .find(|x| x.name == name)
                .cloned()
                .map(Object::HealthChecks),
            ObjectKind::Zones => self
                .zones
                .iter()
                .find(|x| x.name == name)
                .cloned()
                .map(Object::Zones),
            ObjectKind::GslbRecords => self
                .gslb_records
                .iter()
                .find(|x| x.name == name)
                .cloned()
                .map(Object::GslbRecords),
            ObjectKind::Regions => self
                .regions
                .iter()
                .find(|x| x.name == name)
                .cloned()
                .map(Object::Regions),
        }
    }

    /// Every object of one kind, in config order.
    pub fn list(&self, kind: ObjectKind) -> Vec<Object> {
        match kind {
            ObjectKind::Listeners => self
                .listeners
                .iter()
                .cloned()
                .map(Object::Listeners)
                .collect(),
            ObjectKind::Routes => self.routes.iter().cloned().map(Object::Routes).collect(),
            ObjectKind::Pools => self.pools.iter().cloned().map(Object::Pools).collect(),
            ObjectKind::HealthChecks => self
                .health_checks
                .iter()
                .cloned()
                .map(Object::HealthChecks)
                .collect(),
            ObjectKind::Zones => self.zones.iter().cloned().map(Object::Zones).collect(),
            ObjectKind::GslbRecords => self
                .gslb_records
                .iter()
                .cloned()
                .map(Object::GslbRecords)
                .collect(),
            ObjectKind::Regions => self.regions.iter().cloned().map(Object::Regions).collect(),
        }
    }

    /// Where the named object sits in its list: validation paths name it `kind[position]`.
    pub fn position(&self, kind: ObjectKind, name: &str) -> Option<usize> {
        self.list(kind).iter().position(|o| o.name() == name)
    }

    /// Every object of one kind, as JSON specs.
    pub fn list_json(&self, kind: ObjectKind) -> serde_json::Value {
        let v = match kind {
            ObjectKind::Listeners => serde_json::to_value(&self.listeners),
            ObjectKind::Routes => serde_json::to_value(&self.routes),
            ObjectKind::Pools => serde_json::to_value(&self.pools),
            ObjectKind::HealthChecks => serde_json::to_value(&self.health_checks),
            ObjectKind::Zones => serde_json::to_value(&self.zones),
            ObjectKind::GslbRecords => serde_json::to_value(&self.gslb_records),
            ObjectKind::Regions => serde_json::to_value(&self.regions),
        };
        v.unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::MemberSpec;

    fn pool(name: &str, members: usize) -> PoolSpec {
        PoolSpec {
            name: name.into(),
            members: (0..members)
                .map(|i| MemberSpec {
                    address: format!("127.0.0.1:{}", 8000 + i),
                    weight: 1,
                    state: crate::AdminState::Enabled,
                })
                .collect(),
            health_check: None,
            timeout_ms: 1000,
            ..Default::default()
        }
    }

    #[test]
    fn upsert_replaces_by_name_and_delete_removes() {
        let mut c = ConfigSpec::default();
        c.upsert(&Object::Pools(pool("a", 1)));
        c.upsert(&Object::Pools(pool("b", 1)));
        c.upsert(&Object::Pools(pool("a", 3)));
        assert_eq!(c.pools.len(), 2);
        assert_eq!(c.pools[0].members.len(), 3);
        assert!(c.delete(ObjectKind::Pools, "a"));
        assert!(!c.delete(ObjectKind::Pools, "a"));
        assert_eq!(c.pools.len(), 1);
        assert_eq!(
            c.get(ObjectKind::Pools, "b").map(|o| o.kind()),
            Some(ObjectKind::Pools)
        );
    }

    #[test]
    fn kind_names_round_trip() {
        for k in ObjectKind::ALL {
            assert_eq!(ObjectKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(ObjectKind::parse("nope"), None);
    }
}
