//! A test PKI made with rcgen at fixed times: CAs, intermediates and leaves.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData,
};
use rustls_pki_types::CertificateDer;

/// "Now" in the tests: 2027-01-15.
pub(crate) const NOW: i64 = 1_800_000_000;
pub(crate) const NOW_MS: u64 = 1_800_000_000_000;
pub(crate) const DAY: i64 = 86_400;

pub(crate) fn at(unix: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(unix).unwrap()
}

pub(crate) fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// A CA that signs: its certificate and an rcgen issuer.
pub(crate) struct Ca {
    pub issuer: Issuer<'static, KeyPair>,
    pub pem: String,
    pub der: CertificateDer<'static>,
}

/// A CA valid from 10 days ago for 10 years: a root when `parent` is `None`.
pub(crate) fn ca(cn: &str, parent: Option<&Ca>) -> Ca {
    ca_valid(cn, parent, NOW - 10 * DAY, NOW + 3650 * DAY)
}

pub(crate) fn ca_valid(cn: &str, parent: Option<&Ca>, not_before: i64, not_after: i64) -> Ca {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = at(not_before);
    p.not_after = at(not_after);
    let key = KeyPair::generate().unwrap();
    let cert = match parent {
        None => p.self_signed(&key).unwrap(),
        Some(parent) => p.signed_by(&key, &parent.issuer).unwrap(),
    };
    Ca {
        issuer: Issuer::new(p, key),
        pem: cert.pem(),
        der: cert.der().clone(),
    }
}

/// A server certificate for `key`, valid from 1 day ago for 90 days.
pub(crate) fn leaf(cn: &str, sans: &[&str], key: &impl PublicKeyData, issuer: &Ca) -> String {
    leaf_valid(cn, sans, key, issuer, NOW - DAY, NOW + 90 * DAY)
}

pub(crate) fn leaf_valid(
    cn: &str,
    sans: &[&str],
    key: &impl PublicKeyData,
    issuer: &Ca,
    not_before: i64,
    not_after: i64,
) -> String {
    let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    let mut p = CertificateParams::new(sans).unwrap();
    p.distinguished_name = dn(cn);
    p.not_before = at(not_before);
    p.not_after = at(not_after);
    p.signed_by(key, &issuer.issuer).unwrap().pem()
}

/// The usual fixture: a root, an intermediate it signed, a P-256 key and its leaf from the
/// intermediate for `www.example.com` and `192.0.2.7`.
pub(crate) struct Pki {
    pub root: Ca,
    pub inter: Ca,
    pub key: KeyPair,
    pub leaf: String,
}

pub(crate) fn pki() -> Pki {
    let root = ca("Test Root", None);
    let inter = ca("Test Intermediate", Some(&root));
    let key = KeyPair::generate().unwrap();
    let leaf = leaf(
        "www.example.com",
        &["www.example.com", "192.0.2.7"],
        &key,
        &inter,
    );
    Pki {
        root,
        inter,
        key,
        leaf,
    }
}

impl Pki {
    /// Leaf then intermediate.
    pub(crate) fn chain(&self) -> String {
        format!("{}{}", self.leaf, self.inter.pem)
    }
}
