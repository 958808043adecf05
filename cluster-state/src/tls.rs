//! Mutual TLS between nodes: each node's certificate is signed by the cluster CA, serves the
//! cluster port and authenticates the node's own requests. TLS 1.3 only, ring as the provider.
//!
//! Also the client a pristine node enrolls with: it checks the server against the CA a join
//! token pins, or (joining with the shared secret, loopback and private networks only) does not
//! check it at all.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

/// This node's cluster credentials: the CA, and its own certificate and key as every
/// connection presents them. Clones share the certificate: [`ClusterTls::renew`] replaces it
/// for the cluster port and every peer request at once (new handshakes use the new one; open
/// connections keep theirs).
#[derive(Clone)]
pub struct ClusterTls {
    pub ca_pem: String,
    identity: Arc<Identity>,
}

/// The node certificate (followed by the CA, so that a joining node can find the CA its token
/// pins) and key, as both the cluster port and the node's own requests present them.
struct Identity {
    current: RwLock<Arc<CertifiedKey>>,
    /// When the node certificate expires (Unix seconds); `i64::MIN` when unknown.
    not_after_unix: AtomicI64,
}

// Hand-written so the key never reaches a log line.
impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTls")
            .field("not_after_unix", &self.not_after_unix())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").finish_non_exhaustive()
    }
}

impl Identity {
    fn get(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl ResolvesServerCert for Identity {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

impl ResolvesClientCert for Identity {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cluster TLS: {0}")]
    Pem(String),
    #[error("cluster TLS: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cluster TLS: {0}")]
    Verifier(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem(format!("{what}: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::Pem(format!("{what}: no certificate")));
    }
    Ok(certs)
}

impl ClusterTls {
    /// Credentials from PEM: the cluster CA, this node's certificate and its key, which must
    /// match. `not_after_unix` is the certificate's expiry, for status and alarms.
    pub fn new(
        ca_pem: String,
        cert_pem: &str,
        key_pem: &str,
        not_after_unix: Option<i64>,
    ) -> Result<ClusterTls, TlsError> {
        let key = certified(&ca_pem, cert_pem, key_pem)?;
        Ok(ClusterTls {
            ca_pem,
            identity: Arc::new(Identity {
                current: RwLock::new(key),
                not_after_unix: AtomicI64::new(not_after_unix.unwrap_or(i64::MIN)),
            }),
        })
    }

    /// Replaces this node's certificate and key (a renewal), for every clone at once. The
    /// new pair is checked first; on error nothing changes.
    pub fn renew(
        &self,
        cert_pem: &str,
        key_pem: &str,
        not_after_unix: Option<i64>,
    ) -> Result<(), TlsError> {
        let key = certified(&self.ca_pem, cert_pem, key_pem)?;
        *self
            .identity
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = key;
        self.identity
            .not_after_unix
            .store(not_after_unix.unwrap_or(i64::MIN), Ordering::Relaxed);
        Ok(())
    }

    /// When the node certificate in use expires (Unix seconds).
    pub fn not_after_unix(&self) -> Option<i64> {
        let t = self.identity.not_after_unix.load(Ordering::Relaxed);
        (t != i64::MIN).then_some(t)
    }

    /// SHA-256 of the node certificate in use, hex.
    pub fn fingerprint(&self) -> Option<String> {
        let key = self.identity.get();
        key.cert.first().map(|c| fingerprint(c))
    }

    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        for c in certs(&self.ca_pem, "cluster CA")? {
            roots.add(c)?;
        }
        Ok(roots)
    }

    /// The cluster port: a client certificate from the cluster CA is asked for and verified
    /// when given; a connection without one reaches only the enrollment route.
    pub(crate) fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()?), provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Verifier(e.to_string()))?;
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(self.identity.clone());
        Ok(Arc::new(config))
    }

    /// Requests to other nodes: their certificate must chain to the cluster CA and name the
    /// address dialed; ours goes along.
    pub(crate) fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        Ok(rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots()?)
            .with_client_cert_resolver(self.identity.clone()))
    }
}

/// The node certificate followed by the CA, with its key; refused when they do not match.
fn certified(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, TlsError> {
    let mut chain = certs(cert_pem, "node certificate")?;
    chain.extend(certs(ca_pem, "cluster CA")?);
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| TlsError::Pem(format!("node key: {e}")))?;
    Ok(Arc::new(CertifiedKey::from_der(chain, key, &provider())?))
}

/// SHA-256 of a certificate's DER, hex.
fn fingerprint(der: &[u8]) -> String {
    let d: [u8; 32] = Sha256::digest(der).into();
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// How a pristine node checks the member it enrolls with.
#[derive(Debug, Clone)]
pub enum EnrollTrust {
    /// The server's chain must hold a CA with this SHA-256 (from the join token), and the
    /// server's certificate must chain to it and name the address dialed.
    PinnedCa(String),
    /// Not checked: joining with the shared secret, on loopback or a private network only.
    Unverified,
}

/// The client a pristine node enrolls with.
pub fn enroll_client(trust: EnrollTrust) -> Result<reqwest::Client, TlsError> {
    let provider = provider();
    let verifier = Arc::new(EnrollVerifier {
        pin: match trust {
            EnrollTrust::PinnedCa(pin) => Some(pin.to_ascii_lowercase()),
            EnrollTrust::Unverified => None,
        },
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    reqwest::Client::builder()
        .no_proxy()
        .use_preconfigured_tls(config)
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))
}

/// [`EnrollTrust`] as rustls applies it; the handshake's signatures are checked either way.
#[derive(Debug)]
struct EnrollVerifier {
    /// `None`: any certificate.
    pin: Option<String>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for EnrollVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(pin) = &self.pin else {
            return Ok(ServerCertVerified::assertion());
        };
        let Some(ca) = intermediates.iter().find(|c| fingerprint(c) == *pin) else {
            return Err(rustls::Error::General(
                "the member's cluster CA is not the one the join token names".into(),
            ));
        };
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        webpki.verify_server_cert(end_entity, &[], server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
