//! Certificate selection by SNI: an exact name first, then a wildcard one label deep, then the
//! listener's default certificate, or no certificate at all (the handshake fails with an
//! alert) when the listener refuses unknown names.

use std::sync::Arc;

use model::{ListenerTls, UnknownSni};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::CertStore;

#[derive(Debug)]
pub struct Resolver {
    /// The listener's certificates, by credential-store name, in its order.
    names: Vec<String>,
    default: String,
    refuse_unknown: bool,
    store: Arc<CertStore>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("certs", &self.len())
            .finish()
    }
}

impl Resolver {
    pub fn new(tls: &ListenerTls, store: Arc<CertStore>) -> Resolver {
        Resolver {
            names: tls.certificates.clone(),
            default: tls.default_certificate.clone(),
            refuse_unknown: tls.unknown_sni == UnknownSni::Refuse,
            store,
        }
    }

    /// The certificate for `sni` (already lowercase, as rustls gives it), if any.
    pub fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(sni) = sni {
            let certs: Vec<_> = self
                .names
                .iter()
                .filter_map(|n| self.store.get(n))
                .collect();
            if let Some(c) = certs.iter().find(|c| c.names.iter().any(|n| n == sni)) {
                return Some(c.key.clone());
            }
            let parent = sni.split_once('.').map(|(_, rest)| rest);
            if let Some(parent) = parent.filter(|p| p.contains('.')) {
                let wildcard = format!("*.{parent}");
                if let Some(c) = certs.iter().find(|c| c.names.contains(&wildcard)) {
                    return Some(c.key.clone());
                }
            }
            if self.refuse_unknown {
                return None;
            }
        }
        self.store.get(&self.default).map(|c| c.key.clone())
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;
    use crate::tls::StoredCert;

    fn cert(names: &[&str]) -> Arc<StoredCert> {
        let key = rcgen::KeyPair::generate().expect("key");
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        let c = params.self_signed(&key).expect("cert");
        let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let signing = rustls::crypto::ring::sign::any_supported_type(&der).expect("signing key");
        Arc::new(StoredCert {
            key: Arc::new(CertifiedKey::new(vec![c.der().clone()], signing)),
            names: names.iter().map(|s| s.to_string()).collect(),
            ocsp: None,
        })
    }

    fn tls(certs: &[&str], unknown: UnknownSni) -> ListenerTls {
        ListenerTls {
            certificates: certs.iter().map(|s| s.to_string()).collect(),
            default_certificate: certs[0].to_string(),
            unknown_sni: unknown,
            min_version: model::TlsVersion::Tls12,
            ktls: model::KtlsMode::Off,
            handshake_timeout: Duration::from_secs(1),
            client_auth: None,
        }
    }

    #[test]
    fn exact_before_wildcard_before_default() {
        let store = Arc::new(CertStore::default());
        let (a, wild, exact) = (
            cert(&["a.example.com"]),
            cert(&["*.example.com"]),
            cert(&["www.example.com"]),
        );
        store.replace(HashMap::from([
            ("a".to_string(), a.clone()),
            ("wild".to_string(), wild.clone()),
            ("exact".to_string(), exact.clone()),
        ]));
        let r = Resolver::new(&tls(&["a", "wild", "exact"], UnknownSni::Default), store);
        let is = |got: Option<Arc<CertifiedKey>>, want: &Arc<StoredCert>| {
            got.is_some_and(|g| Arc::ptr_eq(&g, &want.key))
        };
        assert!(is(r.pick(Some("www.example.com")), &exact));
        assert!(is(r.pick(Some("api.example.com")), &wild));
        // A wildcard covers one label only.
        assert!(is(r.pick(Some("x.api.example.com")), &a));
        assert!(is(r.pick(Some("other.test")), &a));
        assert!(is(r.pick(None), &a));
    }

    #[test]
    fn refusing_listeners_give_no_certificate_for_unknown_names() {
        let store = Arc::new(CertStore::default());
        store.replace(HashMap::from([("a".to_string(), cert(&["a.test"]))]));
        let r = Resolver::new(&tls(&["a"], UnknownSni::Refuse), store);
        assert!(r.pick(Some("a.test")).is_some());
        assert!(r.pick(Some("b.test")).is_none());
        // Without SNI (an IP address was dialled) the default still answers.
        assert!(r.pick(None).is_some());
    }

    #[test]
    fn a_rotated_certificate_is_picked_up_without_rebuilding() {
        let store = Arc::new(CertStore::default());
        let (one, two) = (cert(&["a.test"]), cert(&["a.test"]));
        store.replace(HashMap::from([("a".to_string(), one.clone())]));
        let r = Resolver::new(&tls(&["a"], UnknownSni::Default), store.clone());
        assert!(r
            .pick(Some("a.test"))
            .is_some_and(|k| Arc::ptr_eq(&k, &one.key)));
        store.replace(HashMap::from([("a".to_string(), two.clone())]));
        assert!(r
            .pick(Some("a.test"))
            .is_some_and(|k| Arc::ptr_eq(&k, &two.key)));
    }
}
