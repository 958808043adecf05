//! HTTPS for the console and API: the operator's certificate, or a self-signed one generated at
//! the first start and kept in the data dir.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::node_config::NodeConfig;

/// The folder in the data dir that holds a generated certificate and key.
pub const GENERATED_DIR: &str = "admin-tls";

pub struct AdminTls {
    pub config: Arc<rustls::ServerConfig>,
    pub cert_path: PathBuf,
    /// SHA-256 of the leaf certificate, colon-separated, for operators to compare.
    pub fingerprint: String,
}

/// The TLS setup the node config asks for, or `None` for plain HTTP (loopback only).
pub fn load(cfg: &NodeConfig) -> anyhow::Result<Option<AdminTls>> {
    if !cfg.admin_tls_enabled() {
        return Ok(None);
    }
    let (cert_path, key_path) = match (&cfg.admin_tls_cert, &cfg.admin_tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => {
            let dir = cfg.data_dir.join(GENERATED_DIR);
            let paths = (dir.join("cert.pem"), dir.join("key.pem"));
            if !paths.0.exists() || !paths.1.exists() {
                generate(cfg, &dir, &paths.0, &paths.1)?;
            }
            paths
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .with_context(|| format!("cannot read certificate {}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot parse certificate {}", cert_path.display()))?;
    let Some(leaf) = certs.first() else {
        anyhow::bail!("{} holds no certificate", cert_path.display());
    };
    let fingerprint = Sha256::digest(leaf.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("cannot read private key {}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and the private key do not form a usable pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(AdminTls {
        config: Arc::new(config),
        cert_path,
        fingerprint,
    }))
}

/// A self-signed certificate for the node name, `localhost` and the bind address.
fn generate(cfg: &NodeConfig, dir: &Path, cert: &Path, key: &Path) -> anyhow::Result<()> {
    crate::node::create_private_dir(dir)?;
    let mut names = vec![cfg.name.clone(), "localhost".to_string()];
    if !cfg.admin_bind.ip().is_unspecified() {
        names.push(cfg.admin_bind.ip().to_string());
    }
    let mut params = rcgen::CertificateParams::new(names).context("certificate names")?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("Meridian console {}", cfg.name),
    );
    let key_pair = rcgen::KeyPair::generate().context("generating a key")?;
    let certificate = params
        .self_signed(&key_pair)
        .context("self-signing the certificate")?;
    crate::node::write_private_file(key, key_pair.serialize_pem().as_bytes())?;
    crate::node::write_private_file(cert, certificate.pem().as_bytes())?;
    tracing::info!(cert = %cert.display(), "generated a self-signed console certificate");
    Ok(())
}
