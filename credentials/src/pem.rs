//! PEM in and out: certificate and private key blocks (rustls-pki-types' parser), and the
//! re-encoding of certificates that `chain_pem` stores.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rustls_pki_types::pem::{self, PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Every CERTIFICATE block, in order. Blocks of other kinds (a key pasted along) are skipped and
/// never kept.
pub(crate) fn certificates(text: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut out = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(text.as_bytes()) {
        match section {
            Ok((SectionKind::Certificate, der)) => out.push(CertificateDer::from(der)),
            Ok(_) => {}
            Err(e) => return Err(format!("not valid PEM: {}", problem(&e))),
        }
    }
    if out.is_empty() {
        return Err("no CERTIFICATE block found".into());
    }
    Ok(out)
}

/// Exactly one PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY block. Messages never quote the
/// input.
pub(crate) fn private_key(text: &str) -> Result<PrivateKeyDer<'static>, String> {
    let mut keys = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(text.as_bytes()) {
        match section {
            Ok((kind, der)) => keys.extend(PrivateKeyDer::from_pem(kind, der)),
            Err(_) if encrypted(text) => return Err(ENCRYPTED.into()),
            Err(e) => return Err(format!("not valid PEM: {}", problem(&e))),
        }
    }
    match keys.len() {
        1 => Ok(keys.remove(0)),
        0 if encrypted(text) => Err(ENCRYPTED.into()),
        0 => Err("no PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY block found".into()),
        n => Err(format!("{n} private keys found; give exactly one")),
    }
}

/// Certificates as PEM, one block each, in the given order.
pub(crate) fn encode_certificates<'a>(
    chain: impl IntoIterator<Item = &'a CertificateDer<'a>>,
) -> String {
    let mut out = String::new();
    for der in chain {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = B64.encode(der.as_ref());
        for line in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

const ENCRYPTED: &str =
    "the private key is encrypted; decrypt it first (openssl pkey -in key.pem -out plain.pem)";

fn encrypted(text: &str) -> bool {
    text.contains("ENCRYPTED PRIVATE KEY") || text.contains("Proc-Type: 4,ENCRYPTED")
}

// Our own words: pki-types' messages may quote a line of the input, which could be key text.
fn problem(e: &pem::Error) -> &'static str {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a block has no END line",
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a block is not valid base64",
        pem::Error::SectionTooLarge => "a block is too large",
        _ => "it cannot be read",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_pem() -> (String, Vec<u8>) {
        let c = rcgen::generate_simple_self_signed(vec!["a.example".to_string()]).expect("rcgen");
        (c.cert.pem(), c.cert.der().to_vec())
    }

    #[test]
    fn certificates_round_trip_and_skip_keys() {
        let (pem1, der1) = cert_pem();
        let (pem2, der2) = cert_pem();
        let key = rcgen::KeyPair::generate().expect("key").serialize_pem();
        let parsed = certificates(&format!("{pem1}{key}\n{pem2}")).expect("parse");
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].as_ref(), der1.as_slice());
        assert_eq!(parsed[1].as_ref(), der2.as_slice());
        let again = encode_certificates(&parsed);
        assert!(!again.contains("PRIVATE KEY"));
        assert_eq!(certificates(&again).expect("reparse"), parsed);
        assert!(again.lines().all(|l| l.len() <= 64));
    }

    #[test]
    fn certificate_errors() {
        assert_eq!(
            certificates("hello").expect_err("no pem"),
            "no CERTIFICATE block found"
        );
        let key = rcgen::KeyPair::generate().expect("key").serialize_pem();
        assert_eq!(
            certificates(&key).expect_err("only a key"),
            "no CERTIFICATE block found"
        );
        let (pem, _) = cert_pem();
        let cut = &pem[..pem.len() - 30];
        assert!(certificates(cut).expect_err("cut").contains("no END line"));
    }

    #[test]
    fn exactly_one_private_key() {
        let k1 = rcgen::KeyPair::generate().expect("key");
        let k2 = rcgen::KeyPair::generate().expect("key");
        let (cert, _) = cert_pem();
        let one = private_key(&format!("{cert}{}", k1.serialize_pem())).expect("one key");
        assert_eq!(one.secret_der(), k1.serialized_der());
        let two = format!("{}{}", k1.serialize_pem(), k2.serialize_pem());
        assert_eq!(
            private_key(&two).expect_err("two"),
            "2 private keys found; give exactly one"
        );
        assert!(private_key(&cert)
            .expect_err("none")
            .starts_with("no PRIVATE KEY"));
        let enc =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(private_key(enc)
            .expect_err("encrypted")
            .contains("encrypted"));
    }

    #[test]
    fn key_errors_never_quote_the_input() {
        let pem = rcgen::KeyPair::generate().expect("key").serialize_pem();
        let body: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        // Corrupt the base64 and cut the END line: neither message may echo a body line.
        let broken = pem.replace(body[0], &format!("{}!!", body[0]));
        let cut = pem.replace("-----END PRIVATE KEY-----", "");
        for text in [broken, cut] {
            let msg = private_key(&text).expect_err("broken");
            for line in &body {
                assert!(!msg.contains(line), "{msg}");
            }
        }
    }
}
