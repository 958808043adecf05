//! TLS to a pool's members (a mesh cluster's ingress gateway): verified against the pool's own
//! CA bundle and the server name or pinned SPIFFE IDs, with SNI, optionally presenting a client certificate from the credential store
//! (mutual TLS), and ALPN for the pool's protocol (h2 for gRPC pools). Sessions are resumed by
//! rustls' client session cache, and connections are kept and reused like plaintext ones.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use model::{PoolTlsSpec, UpstreamProtocol};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::tls::CertStore;

pub mod spiffe;

/// How one pool's connections speak TLS.
pub struct UpstreamTls {
    connector: tokio_rustls::TlsConnector,
    server_name: Option<ServerName<'static>>,
}

/// A client certificate looked up by name at each handshake, so a rotation in the credential
/// store takes effect on the next connection.
#[derive(Debug)]
struct ClientCert {
    name: String,
    store: Arc<CertStore>,
}

impl ResolvesClientCert for ClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.store.get(&self.name).map(|c| c.key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl UpstreamTls {
    /// Builds the client side of a pool's TLS. Fails on a CA bundle without a usable
    /// certificate or a server name rustls refuses.
    pub fn new(
        spec: &PoolTlsSpec,
        protocol: UpstreamProtocol,
        store: &Arc<CertStore>,
    ) -> Result<UpstreamTls, String> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(spec.ca_pem.as_bytes()) {
            let cert = cert.map_err(|_| "ca_pem is not PEM".to_string())?;
            roots
                .add(cert)
                .map_err(|e| format!("ca_pem: a certificate rustls cannot use: {e}"))?;
        }
        if roots.is_empty() {
            return Err("ca_pem has no certificate".into());
        }
        let provider = rustls::crypto::ring::default_provider();
        let algs = provider.signature_verification_algorithms;
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = if spec.spiffe_ids.is_empty() {
            builder.with_root_certificates(roots)
        } else {
            // The members' identity is their SPIFFE ID, not a DNS name.
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(spiffe::SpiffeVerifier::new(
                    Arc::new(roots),
                    spec.spiffe_ids.clone(),
                    algs,
                )))
        };
        let mut config = match &spec.client_certificate {
            Some(name) => builder.with_client_cert_resolver(Arc::new(ClientCert {
                name: name.clone(),
                store: store.clone(),
            })),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = match protocol {
            UpstreamProtocol::Http2 => vec![b"h2".to_vec()],
            UpstreamProtocol::Http1 => vec![b"http/1.1".to_vec()],
        };
        let server_name = spec
            .server_name
            .as_ref()
            .map(|n| ServerName::try_from(n.clone()).map_err(|e| format!("server_name: {e}")))
            .transpose()?;
        Ok(UpstreamTls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }

    /// The TLS handshake on a connected socket; the member's IP address is the server name
    /// when the pool names none.
    pub async fn connect(&self, member: SocketAddr, tcp: TcpStream) -> io::Result<UpstreamIo> {
        let name = self
            .server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(member.ip().into()));
        let tls = self.connector.connect(name, tcp).await?;
        Ok(UpstreamIo::Tls(Box::new(tls)))
    }
}

/// An upstream connection: plain TCP or TLS.
pub enum UpstreamIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamIo::Plain(s) => s.is_write_vectored(),
            UpstreamIo::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
