//! The cluster's own PKI for mutual TLS between nodes: a CA made by the first node, a key and
//! CSR made by each node for itself, and the CA signing a node's CSR for the address it serves
//! cluster RPC on. Node certificates carry `meridian-node-<id>` as their common name and are
//! valid for both ends of a connection (server and client authentication).

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use ring::digest::{digest, SHA256};
use zeroize::Zeroizing;

use crate::{seal_ca_key, unseal_ca_key, ClusterKey};
use model::records::ClusterCaRecord;

/// How long the cluster CA is valid.
pub const CA_DAYS: i64 = 3650;
/// How long a node certificate is valid.
pub const NODE_DAYS: i64 = 825;

/// Why a cluster certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot generate a key: {0}")]
    Key(String),
    #[error("cannot sign: {0}")]
    Sign(String),
    #[error("the certificate signing request is not valid: {0}")]
    Csr(String),
    #[error("the cluster CA does not open: {0}")]
    Ca(String),
    #[error("the time is out of range")]
    Time,
}

/// A node's key (PKCS#8 PEM, zeroed on drop) and the CSR to send for it.
pub struct NodeRequest {
    pub key_pem: Zeroizing<String>,
    pub csr_pem: String,
}

fn validity(
    now_ms: u64,
    days: i64,
) -> Result<(time::OffsetDateTime, time::OffsetDateTime), PkiError> {
    let now = i64::try_from(now_ms / 1000).map_err(|_| PkiError::Time)?;
    // An hour of slack for clocks slightly behind.
    let from = time::OffsetDateTime::from_unix_timestamp(now - 3600).map_err(|_| PkiError::Time)?;
    let to = from
        .checked_add(time::Duration::days(days))
        .ok_or(PkiError::Time)?;
    Ok((from, to))
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Meridian cluster");
    dn.push(DnType::CommonName, cn);
    dn
}

/// Join tokens: `mjt1.<id>.<secret>.<sha256 of the cluster CA>`.
pub const TOKEN_PREFIX: &str = "mjt1";

/// A join token's parts.
pub struct JoinToken {
    pub id: String,
    pub secret: Zeroizing<String>,
    pub ca_sha256: String,
}

/// Splits a join token; `None` when it is not one.
pub fn parse_token(token: &str) -> Option<JoinToken> {
    let mut parts = token.trim().split('.');
    let (Some(TOKEN_PREFIX), Some(id), Some(secret), Some(pin), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, 16) && hex(secret, 32) && hex(pin, 64)).then(|| JoinToken {
        id: id.to_ascii_lowercase(),
        secret: Zeroizing::new(secret.to_ascii_lowercase()),
        ca_sha256: pin.to_ascii_lowercase(),
    })
}

/// SHA-256 of a token secret, hex: what the replicated table keeps.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(digest(&SHA256, secret.as_bytes()))
}

/// A new token for a cluster whose CA has `ca_sha256`: its parts and its text.
pub fn new_join_token(ca_sha256: &str) -> Result<(JoinToken, Zeroizing<String>), PkiError> {
    use ring::rand::SecureRandom;
    let rng = ring::rand::SystemRandom::new();
    let mut id = [0u8; 8];
    let mut secret = Zeroizing::new([0u8; 16]);
    rng.fill(&mut id)
        .and_then(|()| rng.fill(secret.as_mut()))
        .map_err(|_| PkiError::Key("the system random number generator failed".into()))?;
    let t = JoinToken {
        id: hex::encode(id),
        secret: Zeroizing::new(hex::encode(secret.as_ref())),
        ca_sha256: ca_sha256.to_ascii_lowercase(),
    };
    let text = Zeroizing::new(format!(
        "{TOKEN_PREFIX}.{}.{}.{}",
        t.id,
        t.secret.as_str(),
        t.ca_sha256
    ));
    Ok((t, text))
}

/// The SHA-256 of a certificate's DER, hex: what a join token pins.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(digest(&SHA256, der))
}

/// Makes the cluster CA (ECDSA P-256, valid [`CA_DAYS`]) with its key sealed by `k`.
pub fn new_ca(now_ms: u64, k: &ClusterKey) -> Result<ClusterCaRecord, PkiError> {
    let key = KeyPair::generate().map_err(|e| PkiError::Key(e.to_string()))?;
    let mut p = CertificateParams::default();
    p.distinguished_name = dn("Meridian cluster CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (p.not_before, p.not_after) = validity(now_ms, CA_DAYS)?;
    let cert = p
        .self_signed(&key)
        .map_err(|e| PkiError::Sign(e.to_string()))?;
    let sealed = seal_ca_key(key.serialized_der(), k).map_err(|e| PkiError::Ca(e.to_string()))?;
    Ok(ClusterCaRecord {
        cert_pem: cert.pem(),
        key: sealed,
        fingerprint: fingerprint(cert.der()),
        created_unix_ms: now_ms,
    })
}

/// A new key for node `node_id` and its CSR.
pub fn node_request(node_id: u64) -> Result<NodeRequest, PkiError> {
    let key = KeyPair::generate().map_err(|e| PkiError::Key(e.to_string()))?;
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(&format!("meridian-node-{node_id}"));
    let csr = p
        .serialize_request(&key)
        .map_err(|e| PkiError::Sign(e.to_string()))?;
    Ok(NodeRequest {
        key_pem: Zeroizing::new(key.serialize_pem()),
        csr_pem: csr.pem().map_err(|e| PkiError::Sign(e.to_string()))?,
    })
}

/// The CA signs `csr_pem` for node `node_id` reachable at `host` (an IP address or a DNS
/// name): only the CSR's public key is taken, every other field is the CA's choice.
pub fn sign_node(
    ca: &ClusterCaRecord,
    k: &ClusterKey,
    csr_pem: &str,
    node_id: u64,
    host: &str,
    now_ms: u64,
) -> Result<String, PkiError> {
    let key_der = unseal_ca_key(&ca.key, k).map_err(|e| PkiError::Ca(e.to_string()))?;
    let key = KeyPair::try_from(key_der.as_slice()).map_err(|e| PkiError::Ca(e.to_string()))?;
    let issuer =
        Issuer::from_ca_cert_pem(&ca.cert_pem, key).map_err(|e| PkiError::Ca(e.to_string()))?;
    let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| PkiError::Csr(e.to_string()))?;
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(&format!("meridian-node-{node_id}"));
    let host = host.trim_start_matches('[').trim_end_matches(']');
    p.subject_alt_names = vec![match host.parse::<std::net::IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(
            host.try_into()
                .map_err(|_| PkiError::Csr(format!("{host:?} is not a DNS name or IP address")))?,
        ),
    }];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    (p.not_before, p.not_after) = validity(now_ms, NODE_DAYS)?;
    csr.params = p;
    let cert = csr
        .signed_by(&issuer)
        .map_err(|e| PkiError::Sign(e.to_string()))?;
    Ok(cert.pem())
}

/// When the first certificate of `pem` expires (Unix seconds).
pub fn not_after(pem: &str) -> Option<i64> {
    let der = crate::pem::certificates(pem).ok()?.into_iter().next()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_made_and_parsed_strictly() {
        let (t, text) = new_join_token(&"C".repeat(64)).expect("token");
        let back = parse_token(&text).expect("parses");
        assert_eq!(
            (back.id.as_str(), back.secret.as_str()),
            (t.id.as_str(), t.secret.as_str())
        );
        assert_eq!(back.ca_sha256, "c".repeat(64));
        assert_eq!(secret_hash(&back.secret), secret_hash(&t.secret));
        let ok = text.to_string();
        for bad in [
            "",
            "mjt1",
            &ok.replace("mjt1", "mjt2"),
            &format!("{ok}.extra"),
            &ok.replace(&t.secret[..], &t.secret[1..]),
            &ok.replace(&t.id[..], &"z".repeat(16)),
        ] {
            assert!(parse_token(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_node_certificate_chains_to_the_ca_and_names_its_address() {
        let k = ClusterKey::derive("pki test");
        let now = 1_800_000_000_000;
        let ca = new_ca(now, &k).expect("ca");
        let req = node_request(7).expect("request");
        let cert = sign_node(&ca, &k, &req.csr_pem, 7, "10.0.0.7", now).expect("signed");
        let der = crate::pem::certificates(&cert).expect("pem").remove(0);
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).expect("parses");
        assert!(parsed.subject().to_string().contains("meridian-node-7"));
        let san = parsed
            .subject_alternative_name()
            .expect("ext")
            .expect("san");
        assert!(
            format!("{:?}", san.value).contains("IPAddress([10, 0, 0, 7])"),
            "{:?}",
            san.value
        );
        let ca_der = crate::pem::certificates(&ca.cert_pem)
            .expect("pem")
            .remove(0);
        assert_eq!(ca.fingerprint, fingerprint(&ca_der));
        let (_, ca_parsed) = x509_parser::parse_x509_certificate(&ca_der).expect("ca parses");
        assert!(parsed
            .verify_signature(Some(ca_parsed.public_key()))
            .is_ok());
        assert!(not_after(&cert).is_some_and(|t| t > 1_800_000_000));
        // The CA key opens only with the cluster key it was sealed with.
        let other = ClusterKey::derive("another cluster");
        assert!(matches!(
            sign_node(&ca, &other, &req.csr_pem, 7, "10.0.0.7", now),
            Err(PkiError::Ca(_))
        ));
        assert!(matches!(
            sign_node(&ca, &k, "not a csr", 7, "10.0.0.7", now),
            Err(PkiError::Csr(_))
        ));
    }
}
