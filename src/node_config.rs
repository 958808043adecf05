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
    /// Console, REST API and /metrics. Served over HTTPS unless it is a loopback address.
    pub admin_bind: SocketAddr,
    /// HTTPS for the console: on by default for non-loopback addresses, off for loopback.
    /// `false` is refused for a non-loopback address.
    #[serde(default)]
    pub admin_tls: Option<bool>,
    /// PEM certificate chain and private key for the console. Without them, a self-signed
    /// certificate is generated at the first start and kept in `<data_dir>/admin-tls/`.
    #[serde(default)]
    pub admin_tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub admin_tls_key: Option<PathBuf>,
    /// Raft RPC between nodes.
    pub cluster_bind: SocketAddr,
    /// Address other nodes use to reach `cluster_bind`; defaults to it. Required when
    /// `cluster_bind` is a wildcard address.
    #[serde(default)]
    pub cluster_advertise: Option<String>,
    /// Cluster RPC is mutual TLS with certificates of the cluster's own CA. Two cases are not:
    /// a node whose data predates cluster TLS keeps plaintext RPC, and a node joining with the
    /// shared secret (instead of a join token) does not verify the member it asks. Off
    /// loopback both need a private network, and the operator says so with this setting.
    #[serde(default)]
    pub cluster_plaintext_ok: bool,
    /// Renew this node's cluster certificate (valid 825 days) when it has fewer days left than
    /// this, in place, without a restart. Default 60; 1 to 825.
    #[serde(default)]
    pub cluster_cert_renew_days: Option<u32>,
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
    /// A join token from `meridian cluster token`, for `join`: proves this node may join and
    /// names the cluster CA the member must present. Single use; afterwards ignored.
    #[serde(default)]
    pub join_token: Option<JoinTokenText>,
    /// A witness votes in the cluster but serves no traffic: no proxy listener, no DNS (its
    /// DNS socket is on loopback and answers nothing), no health probes. Two appliances and a
    /// small witness tolerate the loss of one.
    #[serde(default)]
    pub witness: bool,
    /// The engine of the Raft log and state under `<data_dir>/raft`: `sled` (default) or
    /// `redb`. Fixed for the life of the data directory (the other engine's files are refused).
    #[serde(default)]
    pub storage: cluster_state::StorageKind,
    /// Access log of the proxy: a file to append JSON lines to, or `-` for standard output.
    /// Off when absent.
    #[serde(default)]
    pub access_log: Option<PathBuf>,
    /// Fields of each access log line, in order; every field when absent.
    #[serde(default)]
    pub access_log_fields: Option<Vec<lb::accesslog::Field>>,
    /// OCSP responses to staple: `<certificate name>.der` (DER, as `openssl ocsp -respout`
    /// writes it) for each certificate of the credential store, re-read when it changes.
    /// Default `<data_dir>/ocsp`.
    #[serde(default)]
    pub ocsp_dir: Option<PathBuf>,
    /// Bytes of responses the cache keeps in memory (default 256 MiB).
    #[serde(default)]
    pub cache_memory_bytes: Option<u64>,
    /// Bytes of responses the cache keeps on disk, across restarts (default 1 GiB; 0 turns
    /// the disk tier off).
    #[serde(default)]
    pub cache_disk_bytes: Option<u64>,
    /// The disk tier's directory. Default `<data_dir>/cache`.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// A MaxMind DB file (GeoLite2 or GeoIP2 City/Country) that places clients no network of
    /// the GSLB regions holds, by country, continent and coordinates. Read at start.
    #[serde(default)]
    pub geoip_database: Option<PathBuf>,
}

/// A join token as the node config holds it; never printed.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct JoinTokenText(pub String);

impl std::fmt::Debug for JoinTokenText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

fn default_name() -> String {
    "meridian".to_string()
}

impl NodeConfig {
    /// Where OCSP response files are looked for.
    pub fn ocsp_dir(&self) -> PathBuf {
        self.ocsp_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("ocsp"))
    }

    /// Sizes and place of the response cache's tiers.
    pub fn cache(&self) -> lb::cache::StoreOptions {
        let disk = self.cache_disk_bytes.unwrap_or(1 << 30);
        lb::cache::StoreOptions {
            memory_bytes: self.cache_memory_bytes.unwrap_or(256 << 20),
            disk: (disk > 0).then(|| {
                (
                    self.cache_dir
                        .clone()
                        .unwrap_or_else(|| self.data_dir.join("cache")),
                    disk,
                )
            }),
        }
    }

    /// Whether the console is served over HTTPS.
    pub fn admin_tls_enabled(&self) -> bool {
        self.admin_tls
            .unwrap_or_else(|| !self.admin_bind.ip().is_loopback() || self.admin_tls_cert.is_some())
    }

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
        if !self.admin_bind.ip().is_loopback() && self.admin_tls == Some(false) {
            errors.push(format!(
                "admin_tls: plain HTTP is only allowed on loopback, and admin_bind is {}",
                self.admin_bind
            ));
        }
        if self.cache_memory_bytes.is_some_and(|b| b < 1 << 20) {
            errors.push("cache_memory_bytes: at least 1048576 (1 MiB)".to_string());
        }
        if self.cache_disk_bytes.is_some_and(|b| b != 0 && b < 1 << 20) {
            errors
                .push("cache_disk_bytes: 0 (no disk tier) or at least 1048576 (1 MiB)".to_string());
        }
        if self.access_log_fields.as_ref().is_some_and(Vec::is_empty) {
            errors.push(
                "access_log_fields: name at least one field, or leave the setting out for all"
                    .to_string(),
            );
        }
        if self.admin_tls_cert.is_some() != self.admin_tls_key.is_some() {
            errors.push("admin_tls_cert, admin_tls_key: give both files or neither".to_string());
        }
        if self.admin_tls == Some(false) && self.admin_tls_cert.is_some() {
            errors.push("admin_tls: false, but a certificate is configured".to_string());
        }
        if self.cluster_bind.ip().is_unspecified() && self.cluster_advertise.is_none() {
            errors.push(format!(
                "cluster_advertise: required when cluster_bind is {} (a wildcard address); give \
                 the host:port other nodes dial",
                self.cluster_bind
            ));
        }
        if let Some(adv) = &self.cluster_advertise {
            let ok = adv.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty()
                    && port.parse::<u16>().is_ok_and(|p| p != 0)
                    && !matches!(host, "0.0.0.0" | "[::]")
            });
            if !ok {
                errors.push(format!(
                    "cluster_advertise: {adv:?} is not a host:port other nodes can dial"
                ));
            }
        }
        let lifetime = credentials::cluster_pki::NODE_DAYS;
        if self
            .cluster_cert_renew_days
            .is_some_and(|d| d == 0 || i64::from(d) > lifetime)
        {
            errors.push(format!(
                "cluster_cert_renew_days: 1 to {lifetime} (the days a node certificate is valid)"
            ));
        }
        if self.join_token.is_some() && self.join.is_none() {
            errors.push("join_token: give join (a member's cluster address) too".to_string());
        }
        if self.join_token.is_some() && self.cluster_secret_file.is_some() {
            errors.push(
                "join_token: a node joining with a token gets the cluster secret from the \
                 cluster; leave cluster_secret_file out"
                    .to_string(),
            );
        }
        if !errors.is_empty() {
            anyhow::bail!("invalid node config:\n  {}", errors.join("\n  "));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> anyhow::Result<NodeConfig> {
        let text = format!(
            "node_id = 1\ndata_dir = \"/tmp/x\"\nadmin_bind = \"127.0.0.1:9090\"\n\
             dns_bind = \"127.0.0.1:53\"\n{extra}\n"
        );
        let cfg: NodeConfig = model::parse::from_toml(&text)?;
        cfg.check()?;
        Ok(cfg)
    }

    fn err(extra: &str) -> String {
        match parse(extra) {
            Ok(_) => panic!("{extra:?} accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn cluster_rpc_off_loopback_needs_an_advertise_address() {
        assert!(parse("cluster_bind = \"127.0.0.1:9700\"").is_ok());
        let e = err("cluster_bind = \"0.0.0.0:9700\"\ncluster_plaintext_ok = true");
        assert!(e.contains("cluster_advertise"), "{e}");
        // Mutual TLS: a LAN address needs no consent.
        assert!(parse("cluster_bind = \"10.0.0.1:9700\"").is_ok());
        let e = err("cluster_bind = \"10.0.0.1:9700\"\njoin_token = \"x\"");
        assert!(e.contains("join_token: give join"), "{e}");
        assert!(parse(
            "cluster_bind = \"0.0.0.0:9700\"\ncluster_advertise = \"10.0.0.1:9700\"\ncluster_plaintext_ok = true"
        )
        .is_ok());
        let e = err("cluster_bind = \"127.0.0.1:9700\"\ncluster_advertise = \"0.0.0.0:9700\"");
        assert!(e.contains("cluster_advertise"), "{e}");
    }

    #[test]
    fn console_transport_rules() {
        let c = parse("cluster_bind = \"127.0.0.1:9700\"").expect("valid");
        assert!(!c.admin_tls_enabled());
        let text = "node_id = 1\ndata_dir = \"/tmp/x\"\nadmin_bind = \"0.0.0.0:9090\"\n\
                    dns_bind = \"127.0.0.1:53\"\ncluster_bind = \"127.0.0.1:9700\"\n";
        let c: NodeConfig = model::parse::from_toml(text).expect("parses");
        assert!(c.check().is_ok() && c.admin_tls_enabled());
        let e = err("cluster_bind = \"127.0.0.1:9700\"\nadmin_tls_cert = \"/x.pem\"");
        assert!(e.contains("admin_tls_key"), "{e}");
        let e = err("node_id = 0").to_lowercase();
        assert!(e.contains("node_id"), "{e}");
    }

    #[test]
    fn the_packaged_config_parses_with_and_without_its_access_log() {
        let text = include_str!("../packaging/meridian.toml");
        let c: NodeConfig = model::parse::from_toml(text).expect("packaged config parses");
        assert!(c.check().is_ok() && c.access_log.is_none());
        let with_log = text
            .replace("#access_log = ", "access_log = ")
            .replace("#access_log_fields = ", "access_log_fields = ");
        let c: NodeConfig = model::parse::from_toml(&with_log).expect("with the access log");
        assert!(c.check().is_ok());
        assert_eq!(c.access_log_fields.map(|f| f.len()), Some(7));
        let e = err("cluster_bind = \"127.0.0.1:9700\"\naccess_log_fields = []");
        assert!(e.contains("access_log_fields"), "{e}");
        let bad = model::parse::from_toml::<NodeConfig>(
            "node_id = 1\ndata_dir = \"/x\"\nadmin_bind = \"127.0.0.1:1\"\ndns_bind = \"127.0.0.1:2\"\n\
             cluster_bind = \"127.0.0.1:3\"\naccess_log_fields = [\"nope\"]",
        );
        assert!(bad.is_err());
    }
}
