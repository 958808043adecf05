use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use model::records::Revocation;
use rcgen::{CertificateSigningRequestParams, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

use super::*;
use crate::testpki::*;
use crate::{open, open_client, unseal, Error, CLOCK_SKEW_SECS};

fn k() -> ClusterKey {
    ClusterKey::derive("the cluster secret")
}

fn ders(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("pem")
}

/// The errors as (path, message) pairs.
fn errors(r: Result<CertificateRecord, ValidationErrors>) -> Vec<(String, String)> {
    r.expect_err("should fail")
        .errors
        .into_iter()
        .map(|e| (e.path, e.message))
        .collect()
}

/// Exactly one error, on `path`, whose message contains `needle`.
fn only(r: Result<CertificateRecord, ValidationErrors>, path: &str, needle: &str) {
    let errs = errors(r);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].0, path, "{errs:#?}");
    assert!(errs[0].1.contains(needle), "{errs:#?}");
}

fn has(errs: &[(String, String)], path: &str, needle: &str) -> bool {
    errs.iter().any(|(p, m)| p == path && m.contains(needle))
}

fn import_pki(p: &Pki, ca: Option<&str>) -> Result<CertificateRecord, ValidationErrors> {
    import(
        "www",
        &p.chain(),
        &p.key.serialize_pem(),
        ca,
        NOW,
        NOW_MS,
        &k(),
    )
}

// === import ===

#[test]
fn import_chain_up_to_ca() {
    let p = pki();
    let r = import_pki(&p, Some(&p.root.pem)).expect("import");

    let stored = ders(&r.chain_pem);
    assert_eq!(
        stored,
        ders(&p.chain()),
        "leaf first, then the intermediate"
    );
    assert!(!r.chain_pem.contains("PRIVATE KEY"));
    assert_eq!(r.name, "www");
    assert_eq!((r.created_unix_ms, r.updated_unix_ms), (NOW_MS, NOW_MS));
    assert_eq!(r.csr_pem, None);
    assert_eq!(r.revoked, None);

    let info = r.info.clone().expect("info");
    assert_eq!(info.subject, "CN=www.example.com");
    assert_eq!(info.issuer, "CN=Test Intermediate");
    assert_eq!(info.sans, vec!["www.example.com", "192.0.2.7"]);
    assert_eq!(info.not_before_unix, NOW - DAY);
    assert_eq!(info.not_after_unix, NOW + 90 * DAY);
    assert_eq!(info.key_type, "ECDSA P-256");
    assert_eq!(
        info.fingerprint_sha256,
        hex::encode(ring::digest::digest(&ring::digest::SHA256, &stored[0]))
    );
    assert!(!info.serial.is_empty() && info.serial.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(crate::expires_in(&r, NOW), Some(90 * DAY));

    // The key is sealed, and opens to exactly what was imported.
    assert_eq!(
        *unseal(&r.key, &k()).expect("unseal"),
        p.key.serialized_der()
    );
    assert!(!B64
        .decode(&r.key.ciphertext)
        .expect("b64")
        .windows(16)
        .any(|w| p.key.serialized_der().windows(16).any(|v| v == w)));
}

#[test]
fn import_without_ca_or_with_blank_ca() {
    let p = pki();
    assert!(import_pki(&p, None).is_ok());
    assert!(import_pki(&p, Some("  \n")).is_ok());
}

#[test]
fn import_chain_that_includes_the_root_in_the_bundle() {
    let p = pki();
    let chain = format!("{}{}", p.chain(), p.root.pem);
    let r = import(
        "www",
        &chain,
        &p.key.serialize_pem(),
        Some(&p.root.pem),
        NOW,
        NOW_MS,
        &k(),
    )
    .expect("import");
    let stored = ders(&r.chain_pem);
    assert_eq!(stored.len(), 3);
    assert_eq!(stored[2], p.root.der);
}

#[test]
fn import_other_key_formats_and_types() {
    let root = ca("Test Root", None);
    // RSA 2048 given as PKCS#1, EC P-256 as SEC1; rcgen signs for their PKCS#8 twins.
    for (pkcs8, given, key_type) in [
        (
            include_str!("../testdata/rsa2048.pkcs8.pem"),
            include_str!("../testdata/rsa2048.pkcs1.pem"),
            "RSA 2048",
        ),
        (
            include_str!("../testdata/p256.pkcs8.pem"),
            include_str!("../testdata/p256.sec1.pem"),
            "ECDSA P-256",
        ),
    ] {
        let key = KeyPair::from_pem(pkcs8).expect("key");
        let cert = leaf("svc.example", &["svc.example"], &key, &root);
        let r = import("svc", &cert, given, Some(&root.pem), NOW, NOW_MS, &k()).expect(key_type);
        assert_eq!(r.info.as_ref().expect("info").key_type, key_type);
        // The unsealed DER is recognised in its own format again.
        let ck = open(&r, &k()).expect("open");
        assert_eq!(ck.cert.len(), 1);
    }
    let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed25519");
    let cert = leaf("ed.example", &["ed.example"], &ed, &root);
    let r = import("ed", &cert, &ed.serialize_pem(), None, NOW, NOW_MS, &k()).expect("ed25519");
    assert_eq!(r.info.expect("info").key_type, "Ed25519");
}

#[test]
fn import_lists_every_problem_with_its_path() {
    let errs = errors(import(
        "no spaces!",
        "not pem",
        "not a key either",
        Some("nor a CA"),
        NOW,
        NOW_MS,
        &k(),
    ));
    let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        ["name", "key_pem", "cert_pem", "ca_pem"],
        "{errs:#?}"
    );
}

#[test]
fn import_name_rules() {
    let p = pki();
    for bad in ["", "a b", "ü", "x/y", &"n".repeat(65)] {
        only(
            import(
                bad,
                &p.chain(),
                &p.key.serialize_pem(),
                None,
                NOW,
                NOW_MS,
                &k(),
            ),
            "name",
            "invalid name",
        );
    }
    let ok = "A.b_c-9".to_string() + &"n".repeat(57);
    assert_eq!(ok.len(), 64);
    assert!(import(
        &ok,
        &p.chain(),
        &p.key.serialize_pem(),
        None,
        NOW,
        NOW_MS,
        &k()
    )
    .is_ok());
}

#[test]
fn import_refuses_two_keys() {
    let p = pki();
    let two = format!(
        "{}{}",
        p.key.serialize_pem(),
        KeyPair::generate().expect("k").serialize_pem()
    );
    only(
        import("www", &p.chain(), &two, None, NOW, NOW_MS, &k()),
        "key_pem",
        "2 private keys",
    );
}

#[test]
fn import_refuses_a_mismatched_key() {
    let p = pki();
    let other = KeyPair::generate().expect("key");
    only(
        import(
            "www",
            &p.chain(),
            &other.serialize_pem(),
            None,
            NOW,
            NOW_MS,
            &k(),
        ),
        "key_pem",
        "does not match the certificate (CN=www.example.com)",
    );
}

#[test]
fn import_refuses_rsa_1024() {
    // rcgen on ring cannot make RSA keys; this pair was made with openssl (see testdata).
    only(
        import(
            "weak",
            include_str!("../testdata/rsa1024.cert.pem"),
            include_str!("../testdata/rsa1024.key.pem"),
            None,
            NOW,
            NOW_MS,
            &k(),
        ),
        "key_pem",
        "RSA key of 1024 bits is too small",
    );
}

#[test]
fn import_refuses_an_unsupported_curve() {
    let p = pki();
    only(
        import(
            "p521",
            &p.chain(),
            include_str!("../testdata/p521.key.pem"),
            None,
            NOW,
            NOW_MS,
            &k(),
        ),
        "key_pem",
        "ECDSA P-521 keys are not supported",
    );
}

#[test]
fn import_refuses_expired_and_future_leaves() {
    let root = ca("Test Root", None);
    let key = KeyPair::generate().expect("key");
    let import_leaf = |nb: i64, na: i64| {
        let cert = leaf_valid("t.example", &["t.example"], &key, &root, nb, na);
        import(
            "t",
            &cert,
            &key.serialize_pem(),
            Some(&root.pem),
            NOW,
            NOW_MS,
            &k(),
        )
    };
    only(
        import_leaf(NOW - 90 * DAY, NOW - DAY),
        "cert_pem",
        "the certificate expired at",
    );
    only(import_leaf(NOW - 90 * DAY, NOW), "cert_pem", "expired");
    only(
        import_leaf(NOW + DAY, NOW + 90 * DAY),
        "cert_pem",
        "is not valid until",
    );
    // A certificate issued by a clock slightly ahead of ours is fine.
    assert!(import_leaf(NOW + CLOCK_SKEW_SECS, NOW + 90 * DAY).is_ok());
}

#[test]
fn import_refuses_an_expired_intermediate() {
    let root = ca("Test Root", None);
    let inter = ca_valid("Old Intermediate", Some(&root), NOW - 400 * DAY, NOW - DAY);
    let key = KeyPair::generate().expect("key");
    let cert = leaf("o.example", &["o.example"], &key, &inter);
    only(
        import(
            "o",
            &format!("{cert}{}", inter.pem),
            &key.serialize_pem(),
            Some(&root.pem),
            NOW,
            NOW_MS,
            &k(),
        ),
        "cert_pem",
        "certificate #2 (CN=Old Intermediate) expired",
    );
}

#[test]
fn import_refuses_a_chain_out_of_order() {
    let p = pki();
    let reversed = format!("{}{}", p.inter.pem, p.leaf);
    let errs = errors(import(
        "www",
        &reversed,
        &p.key.serialize_pem(),
        None,
        NOW,
        NOW_MS,
        &k(),
    ));
    assert!(
        has(&errs, "cert_pem", "certificate #1 (CN=Test Intermediate) is not issued by certificate #2 (CN=www.example.com); put the leaf first"),
        "{errs:#?}"
    );
    // The first certificate is taken as the leaf, so the key does not match it either.
    assert!(has(&errs, "key_pem", "does not match"), "{errs:#?}");
}

#[test]
fn import_refuses_an_impostor_intermediate() {
    // Same name as the real intermediate, another key: the names chain, the signature does not.
    let p = pki();
    let impostor = ca("Test Intermediate", Some(&p.root));
    only(
        import(
            "www",
            &format!("{}{}", p.leaf, impostor.pem),
            &p.key.serialize_pem(),
            None,
            NOW,
            NOW_MS,
            &k(),
        ),
        "cert_pem",
        "has a signature that does not verify with the key of certificate #2",
    );
}

#[test]
fn import_refuses_a_chain_that_does_not_reach_the_ca() {
    let p = pki();
    // The intermediate is missing.
    only(
        import("www", &p.leaf, &p.key.serialize_pem(), Some(&p.root.pem), NOW, NOW_MS, &k()),
        "cert_pem",
        "does not reach a CA in ca_pem: its last certificate (CN=www.example.com) is issued by CN=Test Intermediate",
    );
    // Another CA altogether, even one with the same name.
    let stranger = ca("Test Root", None);
    only(
        import_pki(&p, Some(&stranger.pem)),
        "cert_pem",
        "does not reach a CA in ca_pem",
    );
    // Either CA in a bundle will do.
    let bundle = format!("{}{}", stranger.pem, p.root.pem);
    assert!(import_pki(&p, Some(&bundle)).is_ok());
}

#[test]
fn debug_never_shows_key_material() {
    let p = pki();
    let r = import_pki(&p, None).expect("import");
    let shown = format!("{r:?} {r:#?}");
    assert!(shown.contains("<sealed>"));
    assert!(!shown.contains(&r.key.ciphertext));
    assert!(!shown.contains(&r.key.nonce));
    assert!(!shown.contains(&B64.encode(p.key.serialized_der())));
    assert!(!shown.contains("PRIVATE KEY"));
    let k = k();
    assert!(!format!("{k:?}").chars().any(|c| c.is_ascii_digit()));
}

// === open ===

#[test]
fn open_gives_the_chain_and_a_matching_key() {
    let p = pki();
    let r = import_pki(&p, Some(&p.root.pem)).expect("import");
    let ck = open(&r, &k()).expect("open");
    assert_eq!(ck.cert.len(), 2);
    assert_eq!(ck.cert, ders(&p.chain()));
    assert!(ck.keys_match().is_ok());
    assert_eq!(ck.key.algorithm(), rustls::SignatureAlgorithm::ECDSA);

    let (chain, key) = open_client(&r, &k()).expect("open_client");
    assert_eq!(chain.len(), 2);
    assert_eq!(key.secret_der(), p.key.serialized_der());
}

#[test]
fn open_refuses_revoked_pending_foreign_and_altered_records() {
    let p = pki();
    let r = import_pki(&p, None).expect("import");

    let mut revoked = r.clone();
    revoked.revoked = Some(Revocation {
        reason: "key compromise".into(),
        at_unix_ms: NOW_MS,
        by: "admin".into(),
    });
    assert!(matches!(open(&revoked, &k()), Err(Error::Revoked(n)) if n == "www"));

    let pending = generate("pending", "p.example", &[], NOW_MS, &k()).expect("generate");
    assert!(matches!(open(&pending, &k()), Err(Error::Incomplete(_))));
    assert!(matches!(
        open_client(&pending, &k()),
        Err(Error::Incomplete(_))
    ));

    let err = open(&r, &ClusterKey::derive("another cluster")).expect_err("foreign key");
    assert!(matches!(err, Error::Unseal));

    // Another record's chain with this record's key.
    let mut swapped = r.clone();
    swapped.chain_pem = import_pki(&pki(), None).expect("other").chain_pem;
    let err = open(&swapped, &k()).expect_err("swapped");
    assert_eq!(
        err.to_string(),
        "the stored key of certificate \"www\" cannot be used: it does not match the certificate"
    );

    let mut garbled = r;
    garbled.chain_pem = "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n".into();
    assert!(matches!(open(&garbled, &k()), Err(Error::Chain(_))));
}

#[test]
fn ca_roots_builds_a_store() {
    let p = pki();
    let roots = crate::ca_roots(&format!("{}{}", p.root.pem, p.inter.pem)).expect("roots");
    assert_eq!(roots.len(), 2);
    let err = crate::ca_roots("nothing here").expect_err("no certs");
    assert_eq!(err.errors[0].path, "ca_pem");
}

// === generate, attach ===

#[test]
fn generate_then_sign_the_csr_then_attach() {
    let p = pki();
    let sans = vec![
        "api.example.com".to_string(),
        "*.api.example.com".into(),
        "10.0.0.1".into(),
    ];
    let g = generate("api", "api.example.com", &sans, NOW_MS, &k()).expect("generate");
    assert_eq!(g.chain_pem, "");
    assert_eq!(g.info, None);
    assert_eq!(crate::expires_in(&g, NOW), None);

    // The CSR parses, is signed by its key, and asks for the right names.
    let csr_pem = g.csr_pem.clone().expect("csr");
    let csr_der =
        rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
            .expect("csr pem");
    let (_, csr) = X509CertificationRequest::from_der(csr_der.as_ref()).expect("csr der");
    csr.verify_signature().expect("csr signature");
    assert_eq!(
        csr.certification_request_info.subject.to_string(),
        "CN=api.example.com"
    );
    let sealed_key = unseal(&g.key, &k()).expect("unseal");
    let generated = KeyPair::try_from(sealed_key.as_slice()).expect("pkcs8");
    assert_eq!(
        csr.certification_request_info
            .subject_pki
            .subject_public_key
            .data
            .as_ref(),
        generated.public_key_raw()
    );

    // A CA signs it; attaching the chain completes the record with the same sealed key.
    let signed = CertificateSigningRequestParams::from_pem(&csr_pem)
        .expect("rcgen csr")
        .signed_by(&p.inter.issuer)
        .expect("sign");
    let chain = format!("{}{}", signed.pem(), p.inter.pem);
    let later = NOW_MS + 5_000;
    let a = attach(&g, &chain, Some(&p.root.pem), NOW, later, &k()).expect("attach");
    assert_eq!(a.csr_pem, None);
    assert!(a.key == g.key, "the key is kept, not sealed again");
    assert_eq!((a.created_unix_ms, a.updated_unix_ms), (NOW_MS, later));
    let info = a.info.clone().expect("info");
    assert_eq!(info.sans, sans);
    assert_eq!(info.key_type, "ECDSA P-256");
    assert_eq!(info.issuer, "CN=Test Intermediate");
    let ck = open(&a, &k()).expect("open");
    assert_eq!(ck.cert.len(), 2);
}

#[test]
fn attach_blames_the_certificate_for_a_mismatch() {
    let p = pki();
    let g = generate("api", "api.example.com", &[], NOW_MS, &k()).expect("generate");
    only(
        attach(&g, &p.chain(), Some(&p.root.pem), NOW, NOW_MS, &k()),
        "cert_pem",
        "the private key does not match the certificate",
    );
}

#[test]
fn attach_refuses_revoked_records_and_foreign_keys() {
    let p = pki();
    let r = import_pki(&p, None).expect("import");
    let mut revoked = r.clone();
    revoked.revoked = Some(Revocation {
        reason: "superseded".into(),
        at_unix_ms: NOW_MS,
        by: "admin".into(),
    });
    only(
        attach(&revoked, &p.chain(), None, NOW, NOW_MS, &k()),
        "name",
        "is revoked",
    );
    let errs = errors(attach(
        &r,
        &p.chain(),
        None,
        NOW,
        NOW_MS,
        &ClusterKey::derive("other"),
    ));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].0, "key");
    // The same key renews with a fresh certificate.
    let renewed = leaf_valid(
        "www.example.com",
        &["www.example.com"],
        &p.key,
        &p.inter,
        NOW,
        NOW + 180 * DAY,
    );
    let r2 = attach(
        &r,
        &format!("{renewed}{}", p.inter.pem),
        None,
        NOW,
        NOW_MS,
        &k(),
    )
    .expect("renew");
    assert_eq!(crate::expires_in(&r2, NOW), Some(180 * DAY));
}

#[test]
fn generate_checks_its_input() {
    let errs = errors(generate(
        "bad name",
        "",
        &[
            "ok.example".into(),
            "not a name".into(),
            "*.fine.example".into(),
            "::1".into(),
            "a..b".into(),
        ],
        NOW_MS,
        &k(),
    ));
    let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        ["name", "common_name", "sans[1]", "sans[4]"],
        "{errs:#?}"
    );
}

// === self_signed ===

#[test]
fn self_signed_is_valid_for_a_year_and_opens() {
    let sans = vec!["demo.example".to_string(), "127.0.0.1".into()];
    let r = self_signed("demo", &sans, NOW_MS + 999, &k()).expect("self-signed");
    let info = r.info.clone().expect("info");
    assert_eq!(info.subject, "CN=demo.example");
    assert_eq!(info.issuer, info.subject);
    assert_eq!(info.sans, sans);
    assert_eq!(info.key_type, "ECDSA P-256");
    assert_eq!(info.not_before_unix, NOW);
    assert_eq!(
        info.not_after_unix - info.not_before_unix,
        SELF_SIGNED_DAYS * DAY
    );
    assert_eq!(r.csr_pem, None);
    assert_eq!(open(&r, &k()).expect("open").cert.len(), 1);
    // It passes the import checks with its own key.
    let key = open_client(&r, &k()).expect("open_client").1;
    let key_pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        B64.encode(key.secret_der())
    );
    assert!(import(
        "again",
        &r.chain_pem,
        &key_pem,
        Some(&r.chain_pem),
        NOW,
        NOW_MS,
        &k()
    )
    .is_ok());

    only(
        self_signed("demo", &[], NOW_MS, &k()),
        "sans",
        "at least one",
    );
}
