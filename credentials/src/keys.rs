//! Which kind of key we were given and whether Meridian accepts it, loading it into rustls, and
//! recognising the format of a key's DER after it is unsealed.

use std::fmt;

use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
use x509_parser::der_parser::ber::{BerObject, BerObjectContent};
use x509_parser::der_parser::der::parse_der;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

/// A key's algorithm and size, as the operator reads it (`ECDSA P-256`, `RSA 2048`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyKind {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa(usize),
    /// An elliptic curve we do not serve with, by name or OID.
    OtherCurve(String),
    /// Any other algorithm (DSA, Ed448, RSA-PSS-only keys, ...), by name or OID.
    Other(String),
}

/// A private key rustls can sign with, reduced to what the checks need: its public half.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// DER SubjectPublicKeyInfo of the key.
    pub spki: Vec<u8>,
}

/// Checks the key's type and size, then loads it with rustls' ring provider.
pub(crate) fn load(key: &PrivateKeyDer<'_>) -> Result<Loaded, String> {
    // Inspect first: rustls' error alone would not say that a key is too small.
    if let Some(kind) = private_key_kind(key) {
        kind.acceptable()?;
    }
    let signer = rustls::crypto::ring::sign::any_supported_type(key).map_err(|_| {
        "the private key cannot be loaded: it is malformed or of an unsupported type".to_string()
    })?;
    let spki = signer
        .public_key()
        .ok_or("the public key cannot be derived from the private key")?
        .as_ref()
        .to_vec();
    let (_, parsed) = SubjectPublicKeyInfo::from_der(&spki)
        .map_err(|_| "the public key of the private key does not parse")?;
    spki_kind(&parsed).acceptable()?;
    Ok(Loaded { spki })
}

/// True when both SubjectPublicKeyInfos carry the same algorithm and public key. Parameters are
/// not compared byte for byte, since an RSA key's NULL parameters may be present or absent.
pub(crate) fn same_public_key(a: &SubjectPublicKeyInfo<'_>, b: &SubjectPublicKeyInfo<'_>) -> bool {
    a.algorithm.algorithm == b.algorithm.algorithm
        && a.subject_public_key.data == b.subject_public_key.data
}

/// The kind of a certificate's (or a loaded key's) public key.
pub(crate) fn spki_kind(spki: &SubjectPublicKeyInfo<'_>) -> KeyKind {
    let alg = spki.algorithm.algorithm.to_id_string();
    match alg.as_str() {
        RSA_ENCRYPTION => match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => KeyKind::Rsa(bit_len(rsa.modulus)),
            _ => KeyKind::Other("malformed RSA".into()),
        },
        EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            curve_kind(curve.as_deref())
        }
        other => algorithm_kind(other),
    }
}

/// Rebuilds the typed key from unsealed DER: PKCS#8, PKCS#1 and SEC1 differ in the second
/// element of their outer SEQUENCE (an AlgorithmIdentifier, the modulus, the private octets).
pub(crate) fn from_plain(der: &[u8]) -> Option<PrivateKeyDer<'static>> {
    let (_, outer) = parse_der(der).ok()?;
    let second = outer.as_sequence().ok()?.get(1)?;
    let owned = der.to_vec();
    match second.content {
        BerObjectContent::Sequence(_) => Some(PrivatePkcs8KeyDer::from(owned).into()),
        BerObjectContent::Integer(_) => Some(PrivatePkcs1KeyDer::from(owned).into()),
        BerObjectContent::OctetString(_) => Some(PrivateSec1KeyDer::from(owned).into()),
        _ => None,
    }
}

// === impl KeyKind ===

impl KeyKind {
    /// ECDSA P-256 and P-384, Ed25519, and RSA of 2048 to 8192 bits (ring's range).
    pub(crate) fn acceptable(&self) -> Result<(), String> {
        match self {
            KeyKind::EcdsaP256 | KeyKind::EcdsaP384 | KeyKind::Ed25519 => Ok(()),
            KeyKind::Rsa(bits) if *bits < 2048 => Err(format!(
                "an RSA key of {bits} bits is too small: at least 2048 bits are required"
            )),
            KeyKind::Rsa(bits) if *bits > 8192 => Err(format!(
                "an RSA key of {bits} bits is too large: at most 8192 bits are supported"
            )),
            KeyKind::Rsa(_) => Ok(()),
            other => Err(format!(
                "{other} keys are not supported: use ECDSA P-256 or P-384, Ed25519, or RSA of \
                 at least 2048 bits"
            )),
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyKind::EcdsaP256 => f.write_str("ECDSA P-256"),
            KeyKind::EcdsaP384 => f.write_str("ECDSA P-384"),
            KeyKind::Ed25519 => f.write_str("Ed25519"),
            KeyKind::Rsa(bits) => write!(f, "RSA {bits}"),
            KeyKind::OtherCurve(curve) => write!(f, "ECDSA {curve}"),
            KeyKind::Other(alg) => f.write_str(alg),
        }
    }
}

const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";

/// The kind of a private key, read from its DER; `None` when it does not parse (rustls will then
/// refuse it with its own error).
fn private_key_kind(key: &PrivateKeyDer<'_>) -> Option<KeyKind> {
    let (_, outer) = parse_der(key.secret_der()).ok()?;
    let items = outer.as_sequence().ok()?;
    match key {
        // RSAPrivateKey ::= SEQUENCE { version, modulus, ... }
        PrivateKeyDer::Pkcs1(_) => Some(KeyKind::Rsa(bit_len(items.get(1)?.as_slice().ok()?))),
        // ECPrivateKey ::= SEQUENCE { version, privateKey, [0] parameters OPTIONAL, ... }
        PrivateKeyDer::Sec1(_) => {
            let curve = items.iter().skip(2).find_map(explicit_oid);
            Some(curve_kind(curve.as_deref()))
        }
        // PrivateKeyInfo ::= SEQUENCE { version, AlgorithmIdentifier, privateKey OCTET STRING }
        PrivateKeyDer::Pkcs8(_) => {
            let alg = items.get(1)?.as_sequence().ok()?;
            let oid = alg.first()?.as_oid().ok()?.to_id_string();
            match oid.as_str() {
                RSA_ENCRYPTION => {
                    let (_, inner) = parse_der(items.get(2)?.as_slice().ok()?).ok()?;
                    let modulus = inner.as_sequence().ok()?.get(1)?.as_slice().ok()?;
                    Some(KeyKind::Rsa(bit_len(modulus)))
                }
                EC_PUBLIC_KEY => {
                    let curve = alg.get(1).and_then(|p| p.as_oid().ok());
                    Some(curve_kind(curve.map(|o| o.to_id_string()).as_deref()))
                }
                other => Some(algorithm_kind(other)),
            }
        }
        _ => None,
    }
}

/// The OID inside an explicitly tagged `[0]` (SEC1's curve parameters).
fn explicit_oid(obj: &BerObject<'_>) -> Option<String> {
    if let Ok((_, _, inner)) = obj.as_tagged() {
        return inner.as_oid().ok().map(|o| o.to_id_string());
    }
    let (_, inner) = parse_der(obj.as_slice().ok()?).ok()?;
    inner.as_oid().ok().map(|o| o.to_id_string())
}

fn curve_kind(curve_oid: Option<&str>) -> KeyKind {
    match curve_oid {
        Some("1.2.840.10045.3.1.7") => KeyKind::EcdsaP256,
        Some("1.3.132.0.34") => KeyKind::EcdsaP384,
        Some("1.3.132.0.35") => KeyKind::OtherCurve("P-521".into()),
        Some("1.3.132.0.10") => KeyKind::OtherCurve("secp256k1".into()),
        Some(oid) => KeyKind::OtherCurve(format!("curve {oid}")),
        None => KeyKind::OtherCurve("of an unnamed curve".into()),
    }
}

fn algorithm_kind(oid: &str) -> KeyKind {
    match oid {
        "1.3.101.112" => KeyKind::Ed25519,
        "1.3.101.113" => KeyKind::Other("Ed448".into()),
        "1.2.840.113549.1.1.10" => KeyKind::Other("RSA-PSS".into()),
        "1.2.840.10040.4.1" => KeyKind::Other("DSA".into()),
        other => KeyKind::Other(format!("algorithm {other}")),
    }
}

/// Bits in a DER INTEGER's magnitude (leading zero bytes ignored).
fn bit_len(int: &[u8]) -> usize {
    let int = match int.iter().position(|b| *b != 0) {
        Some(first) => &int[first..],
        None => return 0,
    };
    int.len() * 8 - int[0].leading_zeros() as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;

    fn key(pem: &str) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(pem.as_bytes()).expect("pem")
    }

    #[test]
    fn kinds_of_private_keys() {
        let cases = [
            (
                include_str!("../testdata/p256.pkcs8.pem"),
                KeyKind::EcdsaP256,
            ),
            (
                include_str!("../testdata/p256.sec1.pem"),
                KeyKind::EcdsaP256,
            ),
            (
                include_str!("../testdata/rsa2048.pkcs8.pem"),
                KeyKind::Rsa(2048),
            ),
            (
                include_str!("../testdata/rsa2048.pkcs1.pem"),
                KeyKind::Rsa(2048),
            ),
            (
                include_str!("../testdata/rsa1024.key.pem"),
                KeyKind::Rsa(1024),
            ),
            (
                include_str!("../testdata/p521.key.pem"),
                KeyKind::OtherCurve("P-521".into()),
            ),
        ];
        for (pem, want) in cases {
            assert_eq!(private_key_kind(&key(pem)), Some(want));
        }
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("p384");
        assert_eq!(
            private_key_kind(&key(&p384.serialize_pem())),
            Some(KeyKind::EcdsaP384)
        );
        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed25519");
        assert_eq!(
            private_key_kind(&key(&ed.serialize_pem())),
            Some(KeyKind::Ed25519)
        );
    }

    fn loaded_kind(key: &PrivateKeyDer<'_>) -> KeyKind {
        let loaded = load(key).expect("load");
        spki_kind(
            &SubjectPublicKeyInfo::from_der(&loaded.spki)
                .expect("spki")
                .1,
        )
    }

    #[test]
    fn load_accepts_supported_keys_and_names_them() {
        for (pem, want) in [
            (include_str!("../testdata/p256.sec1.pem"), "ECDSA P-256"),
            (include_str!("../testdata/rsa2048.pkcs1.pem"), "RSA 2048"),
            (include_str!("../testdata/rsa2048.pkcs8.pem"), "RSA 2048"),
        ] {
            assert_eq!(loaded_kind(&key(pem)).to_string(), want);
        }
        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed25519");
        assert_eq!(loaded_kind(&key(&ed.serialize_pem())), KeyKind::Ed25519);
    }

    #[test]
    fn load_refuses_weak_and_unsupported_keys() {
        let weak = load(&key(include_str!("../testdata/rsa1024.key.pem"))).expect_err("rsa 1024");
        assert!(weak.contains("1024 bits is too small"), "{weak}");
        let p521 = load(&key(include_str!("../testdata/p521.key.pem"))).expect_err("p521");
        assert!(
            p521.starts_with("ECDSA P-521 keys are not supported"),
            "{p521}"
        );
        let garbage = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(vec![0x30, 0x03, 1, 2, 3]));
        assert!(load(&garbage)
            .expect_err("garbage")
            .contains("cannot be loaded"));
    }

    #[test]
    fn from_plain_recovers_each_format() {
        for pem in [
            include_str!("../testdata/p256.pkcs8.pem"),
            include_str!("../testdata/p256.sec1.pem"),
            include_str!("../testdata/rsa2048.pkcs1.pem"),
        ] {
            let original = key(pem);
            let back = from_plain(original.secret_der()).expect("recognised");
            assert_eq!(
                std::mem::discriminant(&back),
                std::mem::discriminant(&original)
            );
            assert_eq!(back.secret_der(), original.secret_der());
        }
        assert!(from_plain(b"not der").is_none());
    }

    #[test]
    fn bit_len_ignores_leading_zeros() {
        assert_eq!(bit_len(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(bit_len(&[0x01, 0xff]), 9);
        assert_eq!(bit_len(&[0, 0]), 0);
    }
}
