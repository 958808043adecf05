//! Pinning a member's SPIFFE identity: the URI SAN (`spiffe://trust-domain/path`) that Istio
//! and Linkerd put in their gateways' certificates, which carry no DNS name. The chain is
//! verified against the pool's CA bundle as usual; the identity check replaces the DNS-name
//! check.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

/// Verifies the chain, then that the leaf carries one of the pinned SPIFFE IDs.
#[derive(Debug)]
pub struct SpiffeVerifier {
    roots: Arc<RootCertStore>,
    /// Exact IDs, or prefixes ending in `/*` (any workload under that path).
    ids: Vec<String>,
    algs: WebPkiSupportedAlgorithms,
}

impl SpiffeVerifier {
    pub fn new(
        roots: Arc<RootCertStore>,
        ids: Vec<String>,
        algs: WebPkiSupportedAlgorithms,
    ) -> Self {
        SpiffeVerifier { roots, ids, algs }
    }

    /// Whether `id` is one of the pinned identities.
    pub fn allows(&self, id: &str) -> bool {
        self.ids.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) if prefix.ends_with('/') => {
                id.starts_with(prefix) && id.len() > prefix.len()
            }
            _ => p == id,
        })
    }
}

/// The URI SANs of a certificate (DER); empty when it does not parse or has none.
pub fn uri_sans(der: &[u8]) -> Vec<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    cert.subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some(u.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

impl ServerCertVerifier for SpiffeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algs.all,
        )?;
        let presented = uri_sans(end_entity.as_ref());
        if presented.iter().any(|id| self.allows(id)) {
            return Ok(ServerCertVerified::assertion());
        }
        tracing::debug!(?presented, pinned = ?self.ids, "member's SPIFFE ID is not pinned");
        Err(Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier(ids: &[&str]) -> SpiffeVerifier {
        SpiffeVerifier::new(
            Arc::new(RootCertStore::empty()),
            ids.iter().map(|s| s.to_string()).collect(),
            rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }

    #[test]
    fn exact_ids_and_path_prefixes_match() {
        let v = verifier(&[
            "spiffe://cluster.local/ns/istio-system/sa/ingress",
            "spiffe://east.mesh/ns/gw/*",
        ]);
        assert!(v.allows("spiffe://cluster.local/ns/istio-system/sa/ingress"));
        assert!(!v.allows("spiffe://cluster.local/ns/istio-system/sa/ingress2"));
        assert!(!v.allows("spiffe://cluster.local/ns/istio-system/sa"));
        assert!(v.allows("spiffe://east.mesh/ns/gw/sa/edge"));
        assert!(
            !v.allows("spiffe://east.mesh/ns/gw/"),
            "the prefix alone is no workload"
        );
        assert!(!v.allows("spiffe://east.mesh/ns/gwx/sa/edge"));
        assert!(!v.allows("spiffe://west.mesh/ns/gw/sa/edge"));
    }

    #[test]
    fn uri_sans_are_read_from_the_leaf() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names = vec![
            rcgen::SanType::URI("spiffe://td/ns/a/sa/b".try_into().expect("uri")),
            rcgen::SanType::DnsName("gw.test".try_into().expect("dns")),
        ];
        let cert = params.self_signed(&key).expect("cert");
        assert_eq!(uri_sans(cert.der()), vec!["spiffe://td/ns/a/sa/b"]);
        assert!(uri_sans(b"not a certificate").is_empty());
    }
}
