//! TLS termination: the credential store's keys as the data plane holds them, certificate
//! selection by SNI, and the rustls server configuration of each HTTPS listener.
//!
//! Certificates are looked up by name at handshake time in [`CertStore`], which the node swaps
//! whole when the credential store changes. A listener's configuration names certificates, not
//! keys, so rotating a certificate takes effect on the next handshake without touching the
//! listener, and connections already established keep theirs.

pub mod ktls;
pub mod ocsp;
pub mod passthrough;
pub mod sni;
pub mod tickets;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use model::{KtlsMode, ListenerTls, TlsVersion};
use rustls::server::{ServerConfig, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;

/// One certificate ready for handshakes: its key and the names it is valid for.
pub struct StoredCert {
    pub key: Arc<CertifiedKey>,
    /// DNS names from the certificate, lowercased; `*.example.com` for wildcards.
    pub names: Vec<String>,
    /// The OCSP response file's verdict: stapled (in `key`) or why not; `None` without a file.
    pub ocsp: Option<Result<ocsp::OcspStaple, String>>,
}

/// The certificates the data plane can serve, by credential-store name, and the cluster's
/// session-ticket keys.
#[derive(Default)]
pub struct CertStore {
    map: ArcSwap<HashMap<String, Arc<StoredCert>>>,
    tickets: Arc<tickets::ClusterTicketer>,
}

impl CertStore {
    /// Replaces every certificate at once: new handshakes see the new set.
    pub fn replace(&self, certs: HashMap<String, Arc<StoredCert>>) {
        self.map.store(Arc::new(certs));
    }

    pub fn get(&self, name: &str) -> Option<Arc<StoredCert>> {
        self.map.load().get(name).cloned()
    }

    /// Every certificate held now.
    pub fn all(&self) -> Arc<HashMap<String, Arc<StoredCert>>> {
        self.map.load_full()
    }

    pub fn len(&self) -> usize {
        self.map.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Seals and opens session tickets for every HTTPS listener of this node.
    pub fn tickets(&self) -> &Arc<tickets::ClusterTicketer> {
        &self.tickets
    }
}

/// Sessions kept for resumption by session id (TLS 1.2 clients without tickets), per listener.
const SESSION_CACHE: usize = 16 * 1024;

/// ring's suites, AES-128-GCM first: with it the handshake's key schedule runs on SHA-256,
/// which the CPU accelerates (SHA-NI), where AES-256-GCM's SHA-384 runs in software. A full
/// handshake profile spent 7 % in SHA-512 blocks before this order (perf/RESULTS.md).
fn provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::ring::cipher_suite as cs;
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites = vec![
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    p
}

/// What a listener needs to terminate TLS.
pub struct ListenerTlsConfig {
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub handshake_timeout: Duration,
    pub ktls: KtlsMode,
    /// The headers that carry a client certificate upstream, when the listener asks for them.
    pub client_cert_headers: Option<(http::HeaderName, http::HeaderName)>,
}

/// What a verified client certificate says, as header values.
pub struct PeerCert {
    pub subject: http::HeaderValue,
    pub sans: http::HeaderValue,
}

/// Reads the subject and the SANs of the client's certificate (already verified by rustls).
pub fn peer_cert(conn: &rustls::ServerConnection) -> Option<PeerCert> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let der = conn.peer_certificates()?.first()?;
    let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
    let sans: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(format!("DNS:{d}")),
                    GeneralName::URI(u) => Some(format!("URI:{u}")),
                    GeneralName::RFC822Name(m) => Some(format!("email:{m}")),
                    GeneralName::IPAddress(b) => match b.len() {
                        4 => <[u8; 4]>::try_from(*b)
                            .ok()
                            .map(|a| format!("IP:{}", std::net::Ipv4Addr::from(a))),
                        16 => <[u8; 16]>::try_from(*b)
                            .ok()
                            .map(|a| format!("IP:{}", std::net::Ipv6Addr::from(a))),
                        _ => None,
                    },
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    // Header values must be visible ASCII: anything else is dropped rather than passed on.
    let clean = |s: String| {
        let s: String = s
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .collect();
        http::HeaderValue::from_str(&s).ok()
    };
    Some(PeerCert {
        subject: clean(cert.subject().to_string())?,
        sans: clean(sans.join(", "))?,
    })
}

/// Builds the rustls configuration of one HTTPS listener.
pub fn server_config(
    tls: &ListenerTls,
    store: &Arc<CertStore>,
) -> Result<ListenerTlsConfig, rustls::Error> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = match tls.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let provider = Arc::new(provider());
    let builder =
        ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(versions)?;
    let builder = match &tls.client_auth {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            use rustls::pki_types::pem::PemObject;
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca.ca_pem.as_bytes()) {
                let cert = cert
                    .map_err(|_| rustls::Error::General("client_auth.ca_pem is not PEM".into()))?;
                roots.add(cert)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let verifier = match ca.mode {
                model::ClientAuthMode::Optional => verifier.allow_unauthenticated(),
                model::ClientAuthMode::Required => verifier,
            }
            .build()
            .map_err(|e| rustls::Error::General(format!("client_auth: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(sni::Resolver::new(tls, store.clone())));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
    config.ticketer = store.tickets.clone();
    config.send_tls13_tickets = 2;
    // Kernel TLS needs the traffic secrets after the handshake.
    config.enable_secret_extraction = tls.ktls != KtlsMode::Off;
    config.ignore_client_order = true;
    let client_cert_headers = match &tls.client_auth {
        Some(ca) => Some((
            http::HeaderName::from_bytes(ca.subject_header.as_bytes())
                .map_err(|e| rustls::Error::General(format!("subject_header: {e}")))?,
            http::HeaderName::from_bytes(ca.sans_header.as_bytes())
                .map_err(|e| rustls::Error::General(format!("sans_header: {e}")))?,
        )),
        None => None,
    };
    Ok(ListenerTlsConfig {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        handshake_timeout: tls.handshake_timeout,
        ktls: tls.ktls,
        client_cert_headers,
    })
}

/// `TLSv1.3` / `TLSv1.2` for labels.
pub fn version_label(v: Option<rustls::ProtocolVersion>) -> &'static str {
    match v {
        Some(rustls::ProtocolVersion::TLSv1_3) => "1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "1.2",
        _ => "other",
    }
}

/// `full` or `resumed` (from a session ticket or the session cache), for labels.
pub fn handshake_label(k: Option<rustls::HandshakeKind>) -> &'static str {
    match k {
        Some(rustls::HandshakeKind::Resumed) => "resumed",
        _ => "full",
    }
}

/// The cipher suite's IANA name, for labels (a fixed set).
pub fn suite_label(s: Option<rustls::SupportedCipherSuite>) -> &'static str {
    s.and_then(|s| s.suite().as_str()).unwrap_or("unknown")
}
