//! The node config file: local settings of one appliance, never replicated.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Unique, non-zero id of this node in the Raft cluster.
    pub node_id: u64,
    /// Human-readable name shown in the console.
    #[serde(default = "default_name")]
    pub name: String,
    pub data_dir: PathBuf,
    /// Console, REST API and /metrics. Plain HTTP, so only loopback addresses are accepted.
    pub admin_bind: SocketAddr,
    /// Raft RPC between nodes.
    pub cluster_bind: SocketAddr,
    /// Address other nodes use to reach `cluster_bind`; defaults to it.
    #[serde(default)]
    pub cluster_advertise: Option<String>,
    /// Authoritative DNS, UDP and TCP on the same port.
    pub dns_bind: SocketAddr,
    /// File holding the cluster secret; created (mode 0600) in the data dir when absent. Every
    /// node of a cluster needs the same secret: copy the first node's file to the others.
    #[serde(default)]
    pub cluster_secret_file: Option<PathBuf>,
    /// Cluster RPC address (`host:port`) of any member of an existing cluster. A pristine node
    /// with `join` asks to be added instead of bootstrapping a cluster of its own; once it is a
    /// member, the setting is ignored.
    #[serde(default)]
    pub join: Option<String>,
}

fn default_name() -> String {
    "meridian".to_string()
}

impl NodeConfig {
    pub fn load(path: &Path) -> anyhow::Result<NodeConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read node config {}: {e}", path.display()))?;
        let cfg: NodeConfig = model::parse::from_toml(&text)
            .map_err(|e| anyhow::anyhow!("node config {}: {e}", path.display()))?;
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> anyhow::Result<()> {
        let mut errors = Vec::new();
        if self.node_id == 0 {
            errors.push("node_id: must be 1 or more".to_string());
        }
        if !self.admin_bind.ip().is_loopback() {
            errors.push(format!(
                "admin_bind: {} is not a loopback address; the console serves plain HTTP, so it \
                 only listens on loopback (reach it through an SSH tunnel or a TLS proxy)",
                self.admin_bind
            ));
        }
        if !errors.is_empty() {
            anyhow::bail!("invalid node config:\n  {}", errors.join("\n  "));
        }
        Ok(())
    }
}
