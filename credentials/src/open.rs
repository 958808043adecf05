//! Using a stored record: the signing key and chain for a server, the same as a client
//! certificate, CA bundles as rustls trust roots, and time left.

use std::sync::Arc;

use model::records::CertificateRecord;
use model::ValidationErrors;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::{keys, pem, unseal, ClusterKey, Error, Errors};

/// The chain and signing key of a record, ready for a rustls `ResolvesServerCert`. Fails for a
/// revoked record, one still waiting for its signed certificate, a key that does not open with
/// `k`, or a key that does not match the leaf.
pub fn open(record: &CertificateRecord, k: &ClusterKey) -> Result<Arc<CertifiedKey>, Error> {
    opened(record, k).map(|(certified, _)| Arc::new(certified))
}

/// The chain and private key of a record, for a rustls client configuration
/// (`with_client_auth_cert`), as when Meridian presents a certificate to an upstream.
pub fn open_client(
    record: &CertificateRecord,
    k: &ClusterKey,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Error> {
    opened(record, k).map(|(certified, key)| (certified.cert, key))
}

/// The trust roots of a CA bundle, to verify clients or upstreams with. Path: `ca_pem`.
pub fn ca_roots(ca_pem: &str) -> Result<RootCertStore, ValidationErrors> {
    let certs = pem::certificates(ca_pem).map_err(|m| ValidationErrors::single("ca_pem", m))?;
    let mut roots = RootCertStore::empty();
    let mut e = Errors::default();
    for (i, der) in certs.into_iter().enumerate() {
        if let Err(err) = roots.add(der) {
            e.push(
                "ca_pem",
                format!("certificate #{} cannot be a trust anchor: {err}", i + 1),
            );
        }
    }
    e.check()?;
    Ok(roots)
}

/// Seconds until the leaf expires (negative once it has); `None` while there is no certificate.
pub fn expires_in(record: &CertificateRecord, now_unix: i64) -> Option<i64> {
    record
        .info
        .as_ref()
        .map(|info| info.not_after_unix.saturating_sub(now_unix))
}

/// The record's private key, unsealed and typed again.
pub(crate) fn stored_key(
    record: &CertificateRecord,
    k: &ClusterKey,
) -> Result<PrivateKeyDer<'static>, Error> {
    let plain = unseal(&record.key, k)?;
    keys::from_plain(&plain).ok_or_else(|| Error::Key {
        name: record.name.clone(),
        reason: "it is not a private key in a known format",
    })
}

fn opened(
    record: &CertificateRecord,
    k: &ClusterKey,
) -> Result<(CertifiedKey, PrivateKeyDer<'static>), Error> {
    if record.revoked.is_some() {
        return Err(Error::Revoked(record.name.clone()));
    }
    if record.chain_pem.trim().is_empty() {
        return Err(Error::Incomplete(record.name.clone()));
    }
    let chain =
        pem::certificates(&record.chain_pem).map_err(|_| Error::Chain(record.name.clone()))?;
    let key = stored_key(record, k)?;
    let key_error = |reason| Error::Key {
        name: record.name.clone(),
        reason,
    };
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|_| key_error("rustls cannot load it"))?;
    let certified = CertifiedKey::new(chain, signer);
    certified
        .keys_match()
        .map_err(|_| key_error("it does not match the certificate"))?;
    Ok((certified, key))
}
