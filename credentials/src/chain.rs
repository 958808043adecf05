//! Checks a certificate chain (order, signatures, validity, completeness up to a CA, the key that
//! goes with it) and reads what the leaf says into a `CertificateInfo`.

use std::net::IpAddr;

use model::records::CertificateInfo;
use ring::digest::{digest, SHA256};
use rustls_pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::keys::{same_public_key, spki_kind, Loaded};
use crate::Errors;

/// How far ahead of our clock a certificate's `not_before` may be: the issuer's clock and ours
/// are not the same clock.
pub const CLOCK_SKEW_SECS: i64 = 300;

const CERT: &str = "cert_pem";
const CA: &str = "ca_pem";

/// Checks `chain` (leaf first) and returns what its leaf says, or pushes every problem onto `e`.
/// `key` is the private key with the path to blame when it does not match the leaf; `cas`, when
/// given, is the bundle the chain must reach.
pub(crate) fn check(
    chain: &[CertificateDer<'_>],
    cas: Option<&[CertificateDer<'_>]>,
    key: Option<(&Loaded, &str)>,
    now_unix: i64,
    e: &mut Errors,
) -> Option<CertificateInfo> {
    let parsed = parse_all(chain, CERT, e)?;
    let (leaf, _) = parsed.split_first()?;

    for (i, pair) in parsed.windows(2).enumerate() {
        if let Err(why) = issued_by(&pair[0], &pair[1]) {
            e.push(
                CERT,
                format!(
                    "certificate #{} ({}) {why} certificate #{} ({}); put the leaf first, then \
                     each issuer in turn",
                    i + 1,
                    pair[0].subject(),
                    i + 2,
                    pair[1].subject()
                ),
            );
        }
    }

    for (i, cert) in parsed.iter().enumerate() {
        let which = match i {
            0 => "the certificate".to_string(),
            _ => format!("certificate #{} ({})", i + 1, cert.subject()),
        };
        let validity = cert.validity();
        if validity.not_after.timestamp() <= now_unix {
            e.push(CERT, format!("{which} expired at {}", validity.not_after));
        }
        if validity.not_before.timestamp() > now_unix.saturating_add(CLOCK_SKEW_SECS) {
            e.push(
                CERT,
                format!("{which} is not valid until {}", validity.not_before),
            );
        }
    }

    if let Some(cas) = cas {
        if let Some(cas) = parse_all(cas, CA, e) {
            reaches_ca(&parsed, &cas, e);
        }
    }

    if let Some((key, path)) = key {
        let matches = SubjectPublicKeyInfo::from_der(&key.spki)
            .map(|(_, spki)| same_public_key(&spki, leaf.public_key()))
            .unwrap_or(false);
        if !matches {
            e.push(
                path,
                format!(
                    "the private key does not match the certificate ({})",
                    leaf.subject()
                ),
            );
        }
    }

    Some(info(leaf, chain.first()?))
}

/// What a single certificate says, for a certificate made here (self-signed).
pub(crate) fn describe(der: &CertificateDer<'_>) -> Option<CertificateInfo> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(info(&cert, der))
}

fn parse_all<'a>(
    ders: &'a [CertificateDer<'_>],
    path: &str,
    e: &mut Errors,
) -> Option<Vec<X509Certificate<'a>>> {
    let mut out = Vec::with_capacity(ders.len());
    let mut ok = !ders.is_empty();
    for (i, der) in ders.iter().enumerate() {
        match X509Certificate::from_der(der) {
            Ok((_, cert)) => out.push(cert),
            Err(err) => {
                ok = false;
                e.push(
                    path,
                    format!(
                        "certificate #{} is not a valid X.509 certificate: {err}",
                        i + 1
                    ),
                );
            }
        }
    }
    ok.then_some(out)
}

/// `Ok` when `issuer`'s subject is `cert`'s issuer and its key verifies `cert`'s signature; else
/// the words that go between the two certificates in a message.
fn issued_by(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> Result<(), &'static str> {
    if cert.issuer().as_raw() != issuer.subject().as_raw() {
        return Err("is not issued by");
    }
    cert.verify_signature(Some(issuer.public_key()))
        .map_err(|_| "has a signature that does not verify with the key of")
}

/// The last certificate of the chain must be one of the CAs, or be issued by one.
fn reaches_ca(chain: &[X509Certificate<'_>], cas: &[X509Certificate<'_>], e: &mut Errors) {
    let Some(last) = chain.last() else { return };
    let reached = cas
        .iter()
        .any(|ca| ca.as_raw() == last.as_raw() || issued_by(last, ca).is_ok());
    if !reached {
        e.push(
            CERT,
            format!(
                "the chain does not reach a CA in ca_pem: its last certificate ({}) is issued by \
                 {}, which is not in ca_pem; add the missing intermediate certificates after the \
                 leaf, or give the right CA",
                last.subject(),
                last.issuer()
            ),
        );
    }
}

fn info(leaf: &X509Certificate<'_>, der: &[u8]) -> CertificateInfo {
    let validity = leaf.validity();
    CertificateInfo {
        subject: leaf.subject().to_string(),
        issuer: leaf.issuer().to_string(),
        sans: sans(leaf),
        not_before_unix: validity.not_before.timestamp(),
        not_after_unix: validity.not_after.timestamp(),
        key_type: spki_kind(leaf.public_key()).to_string(),
        serial: serial_hex(leaf.raw_serial()),
        fingerprint_sha256: hex::encode(digest(&SHA256, der)),
    }
}

/// DNS names and IP addresses, in the certificate's order.
fn sans(leaf: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(ext)) = leaf.subject_alternative_name() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(dns.to_string()),
            GeneralName::IPAddress(ip) => ip_addr(ip).map(|ip| ip.to_string()),
            _ => None,
        })
        .collect()
}

fn ip_addr(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Lowercase hex without the sign byte DER adds to a serial whose high bit is set.
fn serial_hex(raw: &[u8]) -> String {
    match raw {
        [0, rest @ ..] if !rest.is_empty() => hex::encode(rest),
        _ => hex::encode(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_and_ip_formatting() {
        assert_eq!(serial_hex(&[0x00, 0x9a, 0x01]), "9a01");
        assert_eq!(serial_hex(&[0x00]), "00");
        assert_eq!(serial_hex(&[0x12, 0x34]), "1234");
        assert_eq!(
            ip_addr(&[192, 0, 2, 1]).map(|i| i.to_string()).as_deref(),
            Some("192.0.2.1")
        );
        let mut v6 = [0u8; 16];
        v6[0] = 0x20;
        v6[1] = 0x01;
        v6[2] = 0x0d;
        v6[3] = 0xb8;
        v6[15] = 1;
        assert_eq!(
            ip_addr(&v6).map(|i| i.to_string()).as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(ip_addr(&[1, 2, 3]), None);
    }
}
