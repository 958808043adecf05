//! This node's cluster credentials and enrollment.
//!
//! `<data_dir>/cluster-tls/` holds `ca.pem` (the cluster CA), `node.pem` and `node.key` (this
//! node's certificate and key, 0600), and on the first node `ca-record.json`: the CA with its
//! key sealed by the cluster key, kept until the CA is in the replicated document.
//!
//! - A pristine node without `join` makes the cluster CA and its own certificate.
//! - A pristine node with `join` enrolls: it sends a CSR with a join token (whose CA
//!   fingerprint it checks the member against) or with the shared secret, and gets its
//!   certificate, the CA and the cluster secret.
//! - A node whose store predates cluster TLS keeps plaintext RPC.
//!
//! [`NodeEnroller`] answers other nodes' enrollments: it checks the token against the
//! replicated table (and spends it through Raft) or the secret, then signs the CSR.

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use anyhow::Context;
use cluster_state::{
    ClusterNode, ClusterTls, EnrollRefusal, EnrollRequest, EnrollResponse, EnrollTrust,
};
use model::records::{ClusterCaRecord, JoinTokenRecord};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::node::write_private_file;
use credentials::cluster_pki::{parse_token, secret_hash};

const CA_PEM: &str = "ca.pem";
const NODE_PEM: &str = "node.pem";
const NODE_KEY: &str = "node.key";
const CA_RECORD: &str = "ca-record.json";

fn read(dir: &Path, name: &str) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(dir.join(name)) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.join(name).display())),
    }
}

/// The credentials in `dir`, when this node has them.
pub fn load(dir: &Path) -> anyhow::Result<Option<ClusterTls>> {
    let (Some(ca_pem), Some(cert_pem), Some(key_pem)) = (
        read(dir, CA_PEM)?,
        read(dir, NODE_PEM)?,
        read(dir, NODE_KEY)?,
    ) else {
        return Ok(None);
    };
    Ok(Some(ClusterTls {
        not_after_unix: credentials::cluster_pki::not_after(&cert_pem),
        ca_pem,
        cert_pem,
        key_pem: Zeroizing::new(key_pem),
    }))
}

fn save(dir: &Path, ca_pem: &str, cert_pem: &str, key_pem: &str) -> anyhow::Result<ClusterTls> {
    crate::node::create_private_dir(dir)?;
    write_private_file(&dir.join(CA_PEM), ca_pem.as_bytes())?;
    write_private_file(&dir.join(NODE_KEY), key_pem.as_bytes())?;
    // Last: its presence says the set is complete.
    write_private_file(&dir.join(NODE_PEM), cert_pem.as_bytes())?;
    load(dir)?.context("cluster credentials just written are not readable")
}

/// The host part of `host:port` (brackets of an IPv6 address removed).
pub fn host_of(addr: &str) -> &str {
    addr.rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']')
}

/// The first node: makes the cluster CA (kept sealed in `ca-record.json` until it is
/// replicated) and its own certificate for `advertise`.
pub fn bootstrap(
    dir: &Path,
    node_id: u64,
    advertise: &str,
    key: &credentials::ClusterKey,
) -> anyhow::Result<ClusterTls> {
    let now = model::unix_ms();
    let ca = credentials::cluster_pki::new_ca(now, key)?;
    let req = credentials::cluster_pki::node_request(node_id)?;
    let cert = credentials::cluster_pki::sign_node(
        &ca,
        key,
        &req.csr_pem,
        node_id,
        host_of(advertise),
        now,
    )?;
    crate::node::create_private_dir(dir)?;
    write_private_file(&dir.join(CA_RECORD), &serde_json::to_vec(&ca)?)?;
    tracing::info!(ca_sha256 = %ca.fingerprint, "created the cluster CA");
    save(dir, &ca.cert_pem, &cert, &req.key_pem)
}

/// The CA this node made, while it is not yet in the replicated document.
pub fn pending_ca(dir: &Path) -> anyhow::Result<Option<ClusterCaRecord>> {
    match read(dir, CA_RECORD)? {
        Some(json) => Ok(Some(serde_json::from_str(&json).context("ca-record.json")?)),
        None => Ok(None),
    }
}

/// Puts the CA this node made into the replicated document, once (the leader does, after
/// bootstrapping; a later start retries if it was cut short).
pub async fn publish_ca(cluster: &ClusterNode, dir: &Path) -> anyhow::Result<()> {
    if cluster.current().cluster_ca.is_some() {
        return Ok(());
    }
    let Some(record) = pending_ca(dir)? else {
        return Ok(());
    };
    let status = cluster.status();
    if status.leader != Some(status.node_id) {
        return Ok(());
    }
    cluster
        .propose(model::Change::SetClusterCa { record })
        .await
        .context("cannot record the cluster CA")?;
    Ok(())
}

/// A pristine node asks `seed` for its certificate: with `token` (the member must present the
/// CA it pins) or with the shared `secret`. Retries for a minute while the seed cannot be
/// reached; a refusal is final. Answers the credentials and the cluster secret.
pub async fn enroll(
    dir: &Path,
    node_id: u64,
    advertise: &str,
    seed: &str,
    token: Option<&str>,
    secret: Option<&str>,
) -> anyhow::Result<(ClusterTls, Zeroizing<String>)> {
    let trust = match token {
        Some(t) => EnrollTrust::PinnedCa(
            parse_token(t)
                .context("the join token is not one `meridian cluster token` makes")?
                .ca_sha256,
        ),
        None => EnrollTrust::Unverified,
    };
    let req = credentials::cluster_pki::node_request(node_id)?;
    let body = EnrollRequest {
        node_id,
        rpc_addr: advertise.to_string(),
        csr_pem: req.csr_pem.clone(),
        token: token.map(str::to_string),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let answer: EnrollResponse = loop {
        match cluster_state::enroll(seed, trust.clone(), &body, secret).await {
            Ok(a) => break a,
            Err(e @ cluster_state::ChangeError::Rejected(_)) => {
                return Err(e).with_context(|| format!("cannot join the cluster at {seed}"))
            }
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(%seed, error = %e, "enrollment failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot join the cluster at {seed}")),
        }
    };
    let tls = save(dir, &answer.ca_pem, &answer.cert_pem, &req.key_pem)?;
    tracing::info!(%seed, "enrolled: this node has its cluster certificate");
    Ok((tls, Zeroizing::new(answer.cluster_secret)))
}

/// Answers `/cluster/enroll` on this node.
pub struct NodeEnroller {
    pub cluster: Weak<ClusterNode>,
    pub key: Arc<credentials::ClusterKey>,
    pub secret: Zeroizing<String>,
}

static REFUSED_LOG: model::LogThrottle = model::LogThrottle::new();

fn refuse(status: u16, error: impl Into<String>) -> EnrollRefusal {
    let error = error.into();
    if REFUSED_LOG.due() {
        tracing::warn!(%error, "enrollment refused (further refusals for 10 s not logged)");
    }
    EnrollRefusal { status, error }
}

impl NodeEnroller {
    async fn check(
        &self,
        req: &EnrollRequest,
        with_secret: bool,
    ) -> Result<Arc<ClusterNode>, EnrollRefusal> {
        let Some(cluster) = self.cluster.upgrade() else {
            return Err(refuse(503, "this member is shutting down"));
        };
        if req.node_id == 0 {
            return Err(refuse(400, "node_id must be 1 or more"));
        }
        if req.csr_pem.len() > 16 * 1024 || req.rpc_addr.len() > 300 {
            return Err(refuse(400, "the request is too large"));
        }
        if let Some((_, addr)) = cluster
            .status()
            .members
            .into_iter()
            .find(|(id, addr)| *id == req.node_id && *addr != req.rpc_addr)
        {
            return Err(refuse(
                409,
                format!(
                    "node id {} already belongs to the member at {addr}; give this node its own node_id",
                    req.node_id
                ),
            ));
        }
        match &req.token {
            Some(token) => {
                let Some(t) = parse_token(token) else {
                    return Err(refuse(403, "not a join token"));
                };
                let known: Option<JoinTokenRecord> =
                    cluster.current().join_tokens.get(&t.id).cloned();
                let Some(record) = known else {
                    return Err(refuse(403, format!("unknown join token {}", t.id)));
                };
                let matches: bool = secret_hash(&t.secret)
                    .as_bytes()
                    .ct_eq(record.secret_sha256.as_bytes())
                    .into();
                if !matches {
                    return Err(refuse(403, format!("wrong secret for join token {}", t.id)));
                }
                // Spent through Raft: used, expired and unknown are decided there, alike on
                // every node, and a token is never spent twice.
                let spend = model::Change::UseJoinToken {
                    id: t.id.clone(),
                    node_id: req.node_id,
                    now_unix_ms: model::unix_ms(),
                };
                match cluster.propose(spend).await {
                    Ok(_) => {}
                    Err(cluster_state::ChangeError::Rejected(e)) => {
                        return Err(refuse(403, e.to_string()))
                    }
                    Err(e) => return Err(refuse(503, e.to_string())),
                }
                tracing::info!(node_id = req.node_id, token = %t.id, "join token spent");
            }
            None if with_secret => {}
            None => {
                return Err(refuse(
                    401,
                    "give a join token (`meridian cluster token`) or the cluster secret",
                ))
            }
        }
        Ok(cluster)
    }
}

impl cluster_state::Enroller for NodeEnroller {
    fn enroll(
        &self,
        req: EnrollRequest,
        with_secret: bool,
    ) -> cluster_state::BoxFuture<'_, Result<EnrollResponse, EnrollRefusal>> {
        Box::pin(async move {
            let cluster = self.check(&req, with_secret).await?;
            let Some(ca) = cluster.current().cluster_ca.clone() else {
                return Err(refuse(503, "the cluster has no CA yet; retry in a moment"));
            };
            let cert = credentials::cluster_pki::sign_node(
                &ca,
                &self.key,
                &req.csr_pem,
                req.node_id,
                host_of(&req.rpc_addr),
                model::unix_ms(),
            )
            .map_err(|e| refuse(400, e.to_string()))?;
            tracing::info!(node_id = req.node_id, rpc_addr = %req.rpc_addr, "enrolled a node");
            Ok(EnrollResponse {
                cert_pem: cert,
                ca_pem: ca.cert_pem.clone(),
                cluster_secret: self.secret.to_string(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_addresses() {
        assert_eq!(host_of("10.0.0.1:9700"), "10.0.0.1");
        assert_eq!(host_of("[::1]:9700"), "::1");
        assert_eq!(host_of("adc-1.lan:9700"), "adc-1.lan");
    }
}
