//! The cluster key, and the AEAD (ChaCha20-Poly1305) that seals private keys at rest.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use model::records::{SealedKey, TicketKeyRecord, TsigAlgorithm, TsigKeyRecord};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::{Zeroize, Zeroizing};

use crate::Error;

/// HKDF salt and info: a fixed label, so the same secret used elsewhere yields another key.
const SALT: &[u8] = b"meridian credential store v1";
const INFO: &[u8] = b"meridian credential store v1: private key sealing";
/// Bound into every tag, so a ciphertext made for another purpose with this key never opens.
const AAD: &[u8] = b"meridian sealed private key v1";

/// The 32-byte key that seals private keys, derived from the cluster secret. Zeroed on drop;
/// its `Debug` shows nothing of it.
pub struct ClusterKey([u8; 32]);

/// Encrypts a private key (DER) with a fresh random 96-bit nonce.
pub fn seal(key_der: &[u8], k: &ClusterKey) -> Result<SealedKey, Error> {
    seal_for(key_der, k, AAD)
}

/// Decrypts a sealed key: the DER it was sealed from (PKCS#8, or PKCS#1 / SEC1 as imported).
/// A wrong cluster key or any altered byte fails with [`Error::Unseal`].
pub fn unseal(s: &SealedKey, k: &ClusterKey) -> Result<Zeroizing<Vec<u8>>, Error> {
    unseal_for(s, k, AAD)
}

/// Bound into the tag of session-ticket keys: a sealed ticket key never opens as a private
/// key, nor the reverse.
const TICKET_AAD: &[u8] = b"meridian session ticket key v1";

/// A new session-ticket key for the cluster: a random id (16 hex digits) and a random 256-bit
/// secret, sealed with the cluster key.
pub fn new_ticket_key(k: &ClusterKey, now_unix_ms: u64) -> Result<TicketKeyRecord, Error> {
    let rng = SystemRandom::new();
    let mut id = [0u8; 8];
    rng.fill(&mut id).map_err(|_| Error::Random)?;
    let mut secret = Zeroizing::new([0u8; 32]);
    rng.fill(&mut *secret).map_err(|_| Error::Random)?;
    Ok(TicketKeyRecord {
        id: hex::encode(id),
        created_unix_ms: now_unix_ms,
        key: seal_for(&*secret, k, TICKET_AAD)?,
    })
}

/// Opens a session-ticket key: its 8-byte id and its 32-byte secret.
pub fn open_ticket_key(
    r: &TicketKeyRecord,
    k: &ClusterKey,
) -> Result<([u8; 8], Zeroizing<[u8; 32]>), Error> {
    let id: [u8; 8] = hex::decode(&r.id)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(Error::Malformed("the ticket key id is not 16 hex digits"))?;
    let plain = unseal_for(&r.key, k, TICKET_AAD)?;
    let mut secret = Zeroizing::new([0u8; 32]);
    if plain.len() != secret.len() {
        return Err(Error::Malformed("the ticket key is not 256 bits"));
    }
    secret.copy_from_slice(&plain);
    Ok((id, secret))
}

/// Bound into the tag of TSIG secrets: a sealed TSIG secret opens as nothing else.
const TSIG_AAD: &[u8] = b"meridian tsig secret v1";

/// Shortest TSIG secret taken: 128 bits (RFC 8945 §6 asks for no less than half the MAC size,
/// and nothing weaker than this).
pub const TSIG_MIN_SECRET: usize = 16;

/// A TSIG key record: `secret` as given (base64, as `tsig-keygen` and `keymgr` print it), or a
/// new random one as long as the MAC. Returns the record and the secret in base64 so that the
/// operator can give it to the secondaries; the store never shows it again.
pub fn tsig_key(
    name: &str,
    algorithm: TsigAlgorithm,
    secret: Option<&str>,
    k: &ClusterKey,
    now_unix_ms: u64,
) -> Result<(TsigKeyRecord, Zeroizing<String>), model::ValidationErrors> {
    let mut e = crate::Errors::default();
    let key_name = model::validate::tsig_key_name(name);
    if key_name.is_none() {
        e.push("name", format!("{name:?} is not a valid TSIG key name"));
    }
    let bytes = match secret {
        Some(s) => match B64.decode(s.trim()) {
            Ok(b) if b.len() >= TSIG_MIN_SECRET => Some(Zeroizing::new(b)),
            Ok(_) => {
                e.push(
                    "secret",
                    format!("the secret is shorter than {} bits", TSIG_MIN_SECRET * 8),
                );
                None
            }
            Err(_) => {
                e.push("secret", "the secret is not base64");
                None
            }
        },
        None => {
            let mut b = Zeroizing::new(vec![0u8; algorithm.secret_len()]);
            if SystemRandom::new().fill(&mut b).is_err() {
                e.push("secret", "the system random number generator failed");
                None
            } else {
                Some(b)
            }
        }
    };
    e.check()?;
    let (Some(name), Some(bytes)) = (key_name, bytes) else {
        return Err(model::ValidationErrors::single("name", "invalid TSIG key"));
    };
    let sealed = seal_for(&bytes, k, TSIG_AAD)
        .map_err(|err| model::ValidationErrors::single("secret", err.to_string()))?;
    let record = TsigKeyRecord {
        name,
        algorithm,
        secret: sealed,
        created_unix_ms: now_unix_ms,
    };
    Ok((record, Zeroizing::new(B64.encode(&*bytes))))
}

/// A new random secret for `algorithm` (as long as its MAC), in base64: for the CLI to hand to
/// both sides, so that the API never has to show one.
pub fn new_tsig_secret(algorithm: TsigAlgorithm) -> Result<Zeroizing<String>, Error> {
    let mut b = Zeroizing::new(vec![0u8; algorithm.secret_len()]);
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| Error::Random)?;
    Ok(Zeroizing::new(B64.encode(&*b)))
}

/// Opens a TSIG key's secret.
pub fn open_tsig_key(r: &TsigKeyRecord, k: &ClusterKey) -> Result<Zeroizing<Vec<u8>>, Error> {
    unseal_for(&r.secret, k, TSIG_AAD)
}

const CA_AAD: &[u8] = b"meridian cluster ca key v1";

/// Seals the cluster CA's private key (its own label: it opens as nothing else).
pub fn seal_ca_key(key_der: &[u8], k: &ClusterKey) -> Result<SealedKey, Error> {
    seal_for(key_der, k, CA_AAD)
}

pub fn unseal_ca_key(s: &SealedKey, k: &ClusterKey) -> Result<Zeroizing<Vec<u8>>, Error> {
    unseal_for(s, k, CA_AAD)
}

fn seal_for(key_der: &[u8], k: &ClusterKey, aad: &'static [u8]) -> Result<SealedKey, Error> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| Error::Random)?;
    // Room for the tag up front, so no reallocation leaves a plaintext copy behind.
    let mut in_out = Zeroizing::new(Vec::with_capacity(key_der.len() + aead::MAX_TAG_LEN));
    in_out.extend_from_slice(key_der);
    k.aead()?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut *in_out,
        )
        .map_err(|_| Error::Seal)?;
    Ok(SealedKey {
        nonce: B64.encode(nonce),
        ciphertext: B64.encode(&*in_out),
    })
}

fn unseal_for(
    s: &SealedKey,
    k: &ClusterKey,
    aad: &'static [u8],
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let nonce: [u8; NONCE_LEN] = B64
        .decode(&s.nonce)
        .map_err(|_| Error::Malformed("the nonce is not base64"))?
        .try_into()
        .map_err(|_| Error::Malformed("the nonce is not 96 bits"))?;
    let mut buf = Zeroizing::new(
        B64.decode(&s.ciphertext)
            .map_err(|_| Error::Malformed("the ciphertext is not base64"))?,
    );
    let len = k
        .aead()?
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut buf,
        )
        .map_err(|_| Error::Unseal)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

// === impl ClusterKey ===

impl ClusterKey {
    /// HKDF-SHA256 (RFC 5869) of the cluster secret with a fixed salt and info label.
    pub fn derive(cluster_secret: &str) -> ClusterKey {
        ClusterKey(hkdf_sha256_32(SALT, cluster_secret.as_bytes(), INFO))
    }

    fn aead(&self) -> Result<LessSafeKey, Error> {
        let key = UnboundKey::new(&CHACHA20_POLY1305, &self.0).map_err(|_| Error::Seal)?;
        Ok(LessSafeKey::new(key))
    }
}

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterKey(<redacted>)")
    }
}

impl Drop for ClusterKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// HKDF-SHA256 with a 32-byte output: PRK = HMAC(salt, ikm), OKM = T(1) = HMAC(PRK, info || 1).
/// Written on `ring::hmac` rather than `ring::hkdf` because this is infallible, where
/// `hkdf::Prk::expand` returns a `Result` that can only fail for outputs over 8160 bytes; the
/// tests check it against RFC 5869 and against `ring::hkdf`.
fn hkdf_sha256_32(salt: &[u8], ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let prk = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, salt), ikm);
    let mut t1 = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, prk.as_ref()));
    t1.update(info);
    t1.update(&[1]);
    let mut out = [0u8; 32];
    for (o, b) in out.iter_mut().zip(t1.sign().as_ref()) {
        *o = *b;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: &str) -> ClusterKey {
        ClusterKey::derive(secret)
    }

    #[test]
    fn hkdf_matches_rfc5869_test_case_1() {
        let ikm = [0x0b; 22];
        let salt: Vec<u8> = (0x00..=0x0c).collect();
        let info: Vec<u8> = (0xf0..=0xf9).collect();
        // The first 32 of the 42 bytes of OKM in RFC 5869, A.1.
        assert_eq!(
            hex::encode(hkdf_sha256_32(&salt, &ikm, &info)),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
        );
    }

    #[test]
    fn derive_agrees_with_ring_hkdf() {
        use ring::hkdf;
        let mut expected = [0u8; 32];
        hkdf::Salt::new(hkdf::HKDF_SHA256, SALT)
            .extract(b"s3cret")
            .expand(&[INFO], hkdf::HKDF_SHA256)
            .expect("expand")
            .fill(&mut expected)
            .expect("fill");
        assert_eq!(key("s3cret").0, expected);
        assert_ne!(key("s3cret").0, key("s3cret2").0);
    }

    #[test]
    fn seal_unseal_round_trip_with_fresh_nonces() {
        let k = key("cluster secret");
        let plain = b"not really a key, but bytes all the same".to_vec();
        let a = seal(&plain, &k).expect("seal");
        let b = seal(&plain, &k).expect("seal");
        assert_ne!(a.nonce, b.nonce, "each seal draws a new nonce");
        assert_ne!(a.ciphertext, b.ciphertext);
        assert_eq!(B64.decode(&a.nonce).expect("b64").len(), 12);
        assert_eq!(
            B64.decode(&a.ciphertext).expect("b64").len(),
            plain.len() + 16,
            "ciphertext is the plaintext plus a 128-bit tag"
        );
        assert_eq!(*unseal(&a, &k).expect("unseal"), plain);
        assert_eq!(*unseal(&b, &k).expect("unseal"), plain);
    }

    #[test]
    fn any_flipped_byte_is_detected() {
        let k = key("cluster secret");
        let sealed = seal(b"0123456789abcdef", &k).expect("seal");
        let ct = B64.decode(&sealed.ciphertext).expect("b64");
        for i in 0..ct.len() {
            let mut bad = ct.clone();
            bad[i] ^= 0x01;
            let tampered = SealedKey {
                nonce: sealed.nonce.clone(),
                ciphertext: B64.encode(&bad),
            };
            assert!(
                matches!(unseal(&tampered, &k), Err(Error::Unseal)),
                "byte {i}"
            );
        }
        let mut nonce = B64.decode(&sealed.nonce).expect("b64");
        nonce[0] ^= 0x80;
        let tampered = SealedKey {
            nonce: B64.encode(&nonce),
            ciphertext: sealed.ciphertext.clone(),
        };
        assert!(matches!(unseal(&tampered, &k), Err(Error::Unseal)));
    }

    #[test]
    fn wrong_cluster_key_fails() {
        let sealed = seal(b"secret key bytes", &key("one")).expect("seal");
        let err = unseal(&sealed, &key("two")).expect_err("wrong key");
        assert!(matches!(err, Error::Unseal));
        assert!(err.to_string().contains("wrong cluster key"));
    }

    #[test]
    fn malformed_sealed_keys_are_refused() {
        let k = key("x");
        let good = seal(b"abc", &k).expect("seal");
        let bad_nonce = SealedKey {
            nonce: B64.encode([0u8; 8]),
            ciphertext: good.ciphertext.clone(),
        };
        assert!(matches!(unseal(&bad_nonce, &k), Err(Error::Malformed(_))));
        let not_b64 = SealedKey {
            nonce: good.nonce.clone(),
            ciphertext: "***".into(),
        };
        assert!(matches!(unseal(&not_b64, &k), Err(Error::Malformed(_))));
        let truncated = SealedKey {
            nonce: good.nonce,
            ciphertext: B64.encode([1u8; 4]),
        };
        assert!(matches!(unseal(&truncated, &k), Err(Error::Unseal)));
    }

    #[test]
    fn tsig_keys_generate_import_and_open_only_as_tsig_secrets() {
        let k = key("secret");
        let (rec, shown) =
            tsig_key("Xfr.Example.COM", TsigAlgorithm::HmacSha512, None, &k, 7).expect("key");
        assert_eq!(rec.name, "xfr.example.com.");
        let opened = open_tsig_key(&rec, &k).expect("opens");
        assert_eq!(opened.len(), 64);
        assert_eq!(B64.encode(&*opened), *shown);
        assert!(!format!("{rec:?}").contains(&rec.secret.ciphertext));
        // A sealed TSIG secret is not a private key, and another cluster cannot open it.
        assert!(matches!(unseal(&rec.secret, &k), Err(Error::Unseal)));
        assert!(matches!(
            open_tsig_key(&rec, &key("other")),
            Err(Error::Unseal)
        ));

        let given = B64.encode([7u8; 32]);
        let (rec, shown) =
            tsig_key("k", TsigAlgorithm::HmacSha256, Some(&given), &k, 7).expect("key");
        assert_eq!(*shown, given);
        assert_eq!(&*open_tsig_key(&rec, &k).expect("opens"), &[7u8; 32]);

        let errors = tsig_key("bad name!", TsigAlgorithm::HmacSha256, Some("short"), &k, 7)
            .expect_err("refused");
        let paths: Vec<&str> = errors.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["name", "secret"]);
        let errors = tsig_key(
            "k",
            TsigAlgorithm::HmacSha256,
            Some(&B64.encode([1u8; 8])),
            &k,
            7,
        )
        .expect_err("too short");
        assert!(errors.errors[0].message.contains("shorter than 128 bits"));
    }

    #[test]
    fn ticket_keys_round_trip_and_never_open_as_private_keys() {
        let k = key("cluster secret");
        let a = new_ticket_key(&k, 42).expect("new key");
        let b = new_ticket_key(&k, 43).expect("new key");
        assert_eq!(a.id.len(), 16);
        assert_ne!(a.id, b.id);
        assert_eq!(a.created_unix_ms, 42);
        let (id, secret) = open_ticket_key(&a, &k).expect("opens");
        assert_eq!(hex::encode(id), a.id);
        let (_, other) = open_ticket_key(&b, &k).expect("opens");
        assert_ne!(*secret, *other);
        // Another purpose's label: a ticket key is not a private key, nor the reverse.
        assert!(matches!(unseal(&a.key, &k), Err(Error::Unseal)));
        let pk = TicketKeyRecord {
            key: seal(&[7u8; 32], &k).expect("seal"),
            ..a.clone()
        };
        assert!(matches!(open_ticket_key(&pk, &k), Err(Error::Unseal)));
        assert!(matches!(
            open_ticket_key(&a, &key("other")),
            Err(Error::Unseal)
        ));
        let bad_id = TicketKeyRecord {
            id: "xyz".into(),
            ..a
        };
        assert!(matches!(
            open_ticket_key(&bad_id, &k),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let k = key("cluster secret");
        let shown = format!("{k:?} {k:#?}");
        assert_eq!(format!("{k:?}"), "ClusterKey(<redacted>)");
        assert!(!shown.contains(&hex::encode(k.0)));
        // Not even as the decimal byte list a derived Debug would print.
        assert!(!shown.chars().any(|c| c.is_ascii_digit()), "{shown}");
    }
}
