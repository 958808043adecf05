//! Making records: import a certificate with its key, generate a key on the appliance with its
//! CSR and later attach the signed certificate, or make a self-signed one.

use std::net::IpAddr;

use model::records::{CertificateInfo, CertificateRecord};
use model::ValidationErrors;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::DnsName;

use crate::keys::{self, Loaded};
use crate::{chain, open, pem, seal, ClusterKey, Errors};

/// How long a [`self_signed`] certificate is valid.
pub const SELF_SIGNED_DAYS: i64 = 365;

const NAME: &str = "name";
const CERT: &str = "cert_pem";
const KEY: &str = "key_pem";
const CA: &str = "ca_pem";

/// Imports a certificate chain (`cert_pem`, leaf first) with its private key, checking that:
/// - `name` is 1-64 of `[A-Za-z0-9._-]`;
/// - the PEM holds certificates, and exactly one private key (PKCS#8, SEC1 or PKCS#1);
/// - the key is ECDSA P-256/P-384, Ed25519 or RSA of 2048 bits or more, and rustls loads it;
/// - the key matches the leaf;
/// - each certificate is issued by the next (names and signature), and when `ca_pem` is given
///   (and not blank) the last one is, or is issued by, a CA in it;
/// - every certificate is valid at `now_unix` (`not_before` may be [`crate::CLOCK_SKEW_SECS`]
///   ahead).
///
/// Every problem is listed, with the path `name`, `cert_pem`, `key_pem` or `ca_pem`.
pub fn import(
    name: &str,
    cert_pem: &str,
    key_pem: &str,
    ca_pem: Option<&str>,
    now_unix: i64,
    now_ms: u64,
    k: &ClusterKey,
) -> Result<CertificateRecord, ValidationErrors> {
    let mut e = Errors::default();
    check_name(name, &mut e);
    let key = pem::private_key(key_pem).map_err(|m| e.push(KEY, m)).ok();
    let loaded = key
        .as_ref()
        .and_then(|der| keys::load(der).map_err(|m| e.push(KEY, m)).ok());
    let checked = certificates(
        cert_pem,
        ca_pem,
        loaded.as_ref().map(|l| (l, KEY)),
        now_unix,
        &mut e,
    );
    let (Some(key), Some((chain_pem, info))) = (key, checked) else {
        return Err(e.finish());
    };
    e.check()?;
    let sealed = seal(key.secret_der(), k)
        .map_err(|err| ValidationErrors::single(KEY, format!("cannot store the key: {err}")))?;
    Ok(CertificateRecord {
        name: name.to_string(),
        chain_pem,
        key: sealed,
        csr_pem: None,
        info: Some(info),
        revoked: None,
        created_unix_ms: now_ms,
        updated_unix_ms: now_ms,
    })
}

/// Generates an ECDSA P-256 key on the appliance and its CSR for `common_name` and `sans` (DNS
/// names, `*.` wildcards, IP addresses). The record has the CSR in `csr_pem`, no chain and no
/// info until [`attach`]; the private key only ever leaves sealed. Paths: `name`,
/// `common_name`, `sans[i]`.
pub fn generate(
    name: &str,
    common_name: &str,
    sans: &[String],
    now_ms: u64,
    k: &ClusterKey,
) -> Result<CertificateRecord, ValidationErrors> {
    let mut e = Errors::default();
    check_name(name, &mut e);
    check_common_name(common_name, &mut e);
    check_sans(sans, &mut e);
    e.check()?;
    let key = new_key()?;
    let params = params(common_name, sans)?;
    let csr = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|err| ValidationErrors::single("key", format!("cannot make the CSR: {err}")))?;
    Ok(CertificateRecord {
        name: name.to_string(),
        chain_pem: String::new(),
        key: seal_generated(&key, k)?,
        csr_pem: Some(csr),
        info: None,
        revoked: None,
        created_unix_ms: now_ms,
        updated_unix_ms: now_ms,
    })
}

/// Attaches the signed certificate (chain, leaf first) to a record's own key: the checks of
/// [`import`] with the stored key, which a mismatch blames on `cert_pem`. Clears `csr_pem`. Also
/// serves to renew a certificate for the same key. Paths: `name` (revoked), `key` (the stored
/// key does not open with this cluster key), `cert_pem`, `ca_pem`.
pub fn attach(
    record: &CertificateRecord,
    cert_pem: &str,
    ca_pem: Option<&str>,
    now_unix: i64,
    now_ms: u64,
    k: &ClusterKey,
) -> Result<CertificateRecord, ValidationErrors> {
    let mut e = Errors::default();
    if record.revoked.is_some() {
        e.push(NAME, format!("certificate {:?} is revoked", record.name));
    }
    let loaded = open::stored_key(record, k)
        .map_err(|err| err.to_string())
        .and_then(|der| keys::load(&der))
        .map_err(|m| e.push("key", m))
        .ok();
    let checked = certificates(
        cert_pem,
        ca_pem,
        loaded.as_ref().map(|l| (l, CERT)),
        now_unix,
        &mut e,
    );
    let (Some(_), Some((chain_pem, info))) = (loaded, checked) else {
        return Err(e.finish());
    };
    e.check()?;
    Ok(CertificateRecord {
        chain_pem,
        info: Some(info),
        csr_pem: None,
        updated_unix_ms: now_ms,
        ..record.clone()
    })
}

/// A self-signed ECDSA P-256 server certificate for `sans` (the first is the common name),
/// valid from now for [`SELF_SIGNED_DAYS`]: for demos and tests. Paths: `name`, `sans`,
/// `sans[i]`.
pub fn self_signed(
    name: &str,
    sans: &[String],
    now_ms: u64,
    k: &ClusterKey,
) -> Result<CertificateRecord, ValidationErrors> {
    let mut e = Errors::default();
    check_name(name, &mut e);
    if sans.is_empty() {
        e.push("sans", "give at least one DNS name or IP address");
    }
    check_sans(sans, &mut e);
    e.check()?;
    let now = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
    let validity = time::OffsetDateTime::from_unix_timestamp(now)
        .ok()
        .and_then(|from| {
            Some((
                from,
                from.checked_add(time::Duration::days(SELF_SIGNED_DAYS))?,
            ))
        });
    let Some((not_before, not_after)) = validity else {
        return Err(ValidationErrors::single("now", "the time is out of range"));
    };
    let key = new_key()?;
    let mut params = params(sans.first().map_or(name, String::as_str), sans)?;
    params.not_before = not_before;
    params.not_after = not_after;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params
        .self_signed(&key)
        .map_err(|err| ValidationErrors::single("key", format!("cannot sign: {err}")))?;
    let info = chain::describe(cert.der())
        .ok_or_else(|| ValidationErrors::single("key", "the new certificate does not parse"))?;
    Ok(CertificateRecord {
        name: name.to_string(),
        chain_pem: pem::encode_certificates([cert.der()]),
        key: seal_generated(&key, k)?,
        csr_pem: None,
        info: Some(info),
        revoked: None,
        created_unix_ms: now_ms,
        updated_unix_ms: now_ms,
    })
}

/// Parses `cert_pem` (and `ca_pem`, unless blank) and checks the chain; returns the chain as PEM
/// and what its leaf says.
fn certificates(
    cert_pem: &str,
    ca_pem: Option<&str>,
    key: Option<(&Loaded, &str)>,
    now_unix: i64,
    e: &mut Errors,
) -> Option<(String, CertificateInfo)> {
    let chain = pem::certificates(cert_pem)
        .map_err(|m| e.push(CERT, m))
        .ok();
    let cas = ca_pem
        .filter(|p| !p.trim().is_empty())
        .and_then(|p| pem::certificates(p).map_err(|m| e.push(CA, m)).ok());
    let chain = chain?;
    let info = chain::check(&chain, cas.as_deref(), key, now_unix, e)?;
    Some((pem::encode_certificates(&chain), info))
}

fn new_key() -> Result<KeyPair, ValidationErrors> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|err| ValidationErrors::single("key", format!("cannot generate a key: {err}")))
}

fn seal_generated(
    key: &KeyPair,
    k: &ClusterKey,
) -> Result<model::records::SealedKey, ValidationErrors> {
    seal(key.serialized_der(), k)
        .map_err(|err| ValidationErrors::single("key", format!("cannot store the key: {err}")))
}

/// Certificate or CSR parameters: the common name as the whole subject, and the SANs.
fn params(common_name: &str, sans: &[String]) -> Result<CertificateParams, ValidationErrors> {
    let mut params = CertificateParams::new(sans.to_vec())
        .map_err(|err| ValidationErrors::single("sans", err.to_string()))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    Ok(params)
}

fn check_name(name: &str, e: &mut Errors) {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        e.push(
            NAME,
            format!("invalid name {name:?}: use 1-64 letters, digits, '.', '_' or '-'"),
        );
    }
}

fn check_common_name(cn: &str, e: &mut Errors) {
    let len = cn.chars().count();
    if !(1..=64).contains(&len) || cn.chars().any(char::is_control) {
        e.push(
            "common_name",
            "the common name must be 1-64 characters, without control characters",
        );
    }
}

fn check_sans(sans: &[String], e: &mut Errors) {
    for (i, san) in sans.iter().enumerate() {
        let dns = san.strip_prefix("*.").unwrap_or(san);
        if san.parse::<IpAddr>().is_err() && DnsName::try_from(dns).is_err() {
            e.push(
                &format!("sans[{i}]"),
                format!("{san:?} is neither a DNS name (optionally *.-prefixed) nor an IP address"),
            );
        }
    }
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
