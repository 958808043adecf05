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

/// The credentials in `dir`, when this node has them. A renewal cut short is finished first.
pub fn load(dir: &Path) -> anyhow::Result<Option<ClusterTls>> {
    finish_renewal(dir)?;
    let (Some(ca_pem), Some(cert_pem), Some(key_pem)) = (
        read(dir, CA_PEM)?,
        read(dir, NODE_PEM)?,
        read(dir, NODE_KEY)?,
    ) else {
        return Ok(None);
    };
    let key_pem = Zeroizing::new(key_pem);
    let not_after = credentials::cluster_pki::not_after(&cert_pem);
    let tls = ClusterTls::new(ca_pem, &cert_pem, &key_pem, not_after)
        .with_context(|| format!("the cluster credentials in {}", dir.display()))?;
    Ok(Some(tls))
}

fn save(dir: &Path, ca_pem: &str, cert_pem: &str, key_pem: &str) -> anyhow::Result<ClusterTls> {
    crate::node::create_private_dir(dir)?;
    write_private_file(&dir.join(CA_PEM), ca_pem.as_bytes())?;
    write_private_file(&dir.join(NODE_KEY), key_pem.as_bytes())?;
    // Last: its presence says the set is complete.
    write_private_file(&dir.join(NODE_PEM), cert_pem.as_bytes())?;
    load(dir)?.context("cluster credentials just written are not readable")
}

/// A renewal writes the new pair beside the old (`*.new`, synced), then renames the key and
/// then the certificate into place. Cut short between the renames, the certificate's rename is
/// left: this does it, so the key and certificate on disk always match.
fn finish_renewal(dir: &Path) -> anyhow::Result<()> {
    let pending = dir.join(format!("{NODE_PEM}.new"));
    if !pending.exists() {
        return Ok(());
    }
    let key = dir.join(format!("{NODE_KEY}.new"));
    if key.exists() {
        std::fs::rename(&key, dir.join(NODE_KEY)).context("finishing a certificate renewal")?;
    }
    std::fs::rename(&pending, dir.join(NODE_PEM)).context("finishing a certificate renewal")?;
    tracing::info!("finished a cluster certificate renewal cut short");
    Ok(())
}

/// Renew the node certificate when it has fewer days left than this (the node config's
/// `cluster_cert_renew_days`).
pub const RENEW_BEFORE_DAYS: u32 = 60;
/// How often the certificate's expiry is checked (the first check comes soon after start).
const RENEW_CHECK: Duration = Duration::from_secs(6 * 3600);
const RENEW_FIRST_CHECK: Duration = Duration::from_secs(5);

/// Keeps this node's cluster certificate valid without a restart: when it has fewer than
/// `before_days` left, makes a new key, signs a certificate for it with the cluster CA (in the
/// replicated document, its key sealed by the cluster key every member holds, so no other node
/// is asked), writes the pair, and puts it in use for the cluster port and every peer request
/// at once. A failure is logged and tried again at the next check; the alarm for an expiring
/// certificate stays until a renewal succeeds.
pub async fn keep_renewed(
    cluster: Weak<ClusterNode>,
    tls: ClusterTls,
    dir: std::path::PathBuf,
    node_id: u64,
    advertise: String,
    key: Arc<credentials::ClusterKey>,
    before_days: u32,
) {
    tokio::time::sleep(RENEW_FIRST_CHECK).await;
    loop {
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        let ca = cluster.current().cluster_ca.clone();
        drop(cluster);
        let now_s = i64::try_from(model::unix_ms() / 1000).unwrap_or(i64::MAX);
        let left_s = tls.not_after_unix().map_or(0, |t| t - now_s);
        let due = left_s < i64::from(before_days) * 86_400;
        match ca {
            Some(ca) if due => match renew(&tls, &dir, node_id, &advertise, &ca, &key) {
                Ok(not_after) => tracing::info!(
                    not_after_unix = not_after,
                    sha256 = tls.fingerprint().unwrap_or_default(),
                    "renewed this node's cluster certificate (it had {} days left)",
                    left_s / 86_400
                ),
                Err(e) => tracing::error!(
                    error = %format!("{e:#}"),
                    "cannot renew this node's cluster certificate; retrying in 6 h"
                ),
            },
            Some(_) => {}
            // Not replicated yet (a new cluster): look again shortly.
            None => {
                tokio::time::sleep(RENEW_FIRST_CHECK).await;
                continue;
            }
        }
        tokio::time::sleep(RENEW_CHECK).await;
    }
}

/// One renewal: the new pair is checked, made durable, then put in use. Answers its expiry.
fn renew(
    tls: &ClusterTls,
    dir: &Path,
    node_id: u64,
    advertise: &str,
    ca: &ClusterCaRecord,
    key: &credentials::ClusterKey,
) -> anyhow::Result<i64> {
    let req = credentials::cluster_pki::node_request(node_id)?;
    let cert = credentials::cluster_pki::sign_node(
        ca,
        key,
        &req.csr_pem,
        node_id,
        host_of(advertise),
        model::unix_ms(),
    )?;
    let not_after = credentials::cluster_pki::not_after(&cert);
    // Refused here (key mismatch, unreadable PEM) before anything is written.
    ClusterTls::new(tls.ca_pem.clone(), &cert, &req.key_pem, not_after)?;
    write_private_file(&dir.join(format!("{NODE_KEY}.new")), req.key_pem.as_bytes())?;
    write_private_file(&dir.join(format!("{NODE_PEM}.new")), cert.as_bytes())?;
    finish_renewal(dir)?;
    tls.renew(&cert, &req.key_pem, not_after)?;
    not_after.context("the renewed certificate has no expiry")
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

    #[test]
    fn a_renewal_replaces_the_pair_in_use_and_one_cut_short_is_finished_at_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = credentials::ClusterKey::derive("renewal test");
        let tls = bootstrap(dir.path(), 1, "127.0.0.1:9700", &key).expect("bootstrap");
        let ca = pending_ca(dir.path()).expect("read").expect("ca record");
        let first = tls.fingerprint().expect("fingerprint");

        renew(&tls, dir.path(), 1, "127.0.0.1:9700", &ca, &key).expect("renew");
        let second = tls.fingerprint().expect("fingerprint");
        assert_ne!(
            first, second,
            "the running credentials use the new certificate"
        );
        let loaded = load(dir.path()).expect("load").expect("credentials");
        assert_eq!(loaded.fingerprint().as_ref(), Some(&second));
        assert!(!dir.path().join("node.pem.new").exists());

        // Cut short after the key's rename: the new key is in place, the certificate not yet.
        let req = credentials::cluster_pki::node_request(1).expect("request");
        let cert = credentials::cluster_pki::sign_node(
            &ca,
            &key,
            &req.csr_pem,
            1,
            "127.0.0.1",
            model::unix_ms(),
        )
        .expect("sign");
        write_private_file(&dir.path().join(NODE_KEY), req.key_pem.as_bytes()).expect("key");
        write_private_file(&dir.path().join("node.pem.new"), cert.as_bytes()).expect("pem");
        let loaded = load(dir.path())
            .expect("load finishes the renewal")
            .expect("credentials");
        let third = ClusterTls::new(tls.ca_pem.clone(), &cert, &req.key_pem, None)
            .expect("pair")
            .fingerprint();
        assert_eq!(loaded.fingerprint(), third);

        // A certificate with a key that is not its own is refused, and nothing changes.
        let other = credentials::cluster_pki::node_request(1).expect("request");
        assert!(tls.renew(&cert, &other.key_pem, None).is_err());
        assert_eq!(tls.fingerprint(), Some(second));
    }
}
