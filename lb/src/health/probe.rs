//! One health probe within the check timeout: `tcp` connects; `http` also sends `GET path` and
//! compares the status and, when asked, looks for text in the body; `https` does the same over
//! TLS (rustls), verifying the certificate against the check's CA bundle when it has one.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use model::{CheckProtocol, HealthCheck, ProbeTarget};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// How much of a response body `expect_body` is looked for in.
const BODY_LIMIT: usize = 64 * 1024;

/// Why a probe failed; shown in logs.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("cannot resolve the site's name: {0}")]
    Resolve(std::io::Error),
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("the check's TLS settings are unusable: {0}")]
    TlsConfig(String),
    #[error("http error: {0}")]
    Http(#[from] hyper::Error),
    #[error("could not build request: {0}")]
    Request(#[from] http::Error),
    #[error("unexpected status {got}, expected {want}")]
    Status { got: u16, want: u16 },
    #[error("the body does not contain {0:?}")]
    Body(String),
    #[error("reading the body failed: {0}")]
    BodyRead(String),
}

/// Probes `target` (a host name is resolved afresh each time, with the system's resolver).
pub async fn probe(target: &ProbeTarget, check: &HealthCheck) -> Result<(), ProbeError> {
    match tokio::time::timeout(check.timeout, probe_inner(target, check)).await {
        Ok(r) => r,
        Err(_) => Err(ProbeError::Timeout(check.timeout)),
    }
}

async fn probe_inner(target: &ProbeTarget, check: &HealthCheck) -> Result<(), ProbeError> {
    let (addr, host) = match target {
        ProbeTarget::Addr(addr) => (*addr, None),
        ProbeTarget::Host(host, port) => {
            let name = host.trim_end_matches('.');
            let addr = tokio::net::lookup_host((name, *port))
                .await
                .map_err(ProbeError::Resolve)?
                .next()
                .ok_or_else(|| {
                    ProbeError::Resolve(std::io::Error::other(format!("{name} has no address")))
                })?;
            (addr, Some(name.to_string()))
        }
    };
    let stream = TcpStream::connect(addr)
        .await
        .map_err(ProbeError::Connect)?;
    let _ = stream.set_nodelay(true);
    // The Host header and TLS name: the check's host, else the name probed, else the address.
    let host = check.host.clone().or(host);
    match check.protocol {
        CheckProtocol::Tcp => Ok(()),
        CheckProtocol::Http => http(stream, addr, host, check).await,
        CheckProtocol::Https => {
            let connector = tls_connector(check)?;
            let name = host
                .as_ref()
                .and_then(|h| ServerName::try_from(h.clone()).ok())
                .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
            let tls = connector
                .connect(name, stream)
                .await
                .map_err(ProbeError::Tls)?;
            http(tls, addr, host, check).await
        }
    }
}

async fn http<S>(
    io: S,
    addr: SocketAddr,
    host: Option<String>,
    check: &HealthCheck,
) -> Result<(), ProbeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let conn = tokio::spawn(conn);
    let host = host.unwrap_or_else(|| addr.to_string());
    let req = http::Request::get(check.path.as_str())
        .header(http::header::HOST, host)
        .header(http::header::USER_AGENT, "meridian-health/1")
        .header(http::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())?;
    let result = async {
        let response = sender.send_request(req).await?;
        let status = response.status().as_u16();
        if status != check.expect_status {
            return Err(ProbeError::Status {
                got: status,
                want: check.expect_status,
            });
        }
        if let Some(want) = &check.expect_body {
            let body = Limited::new(response.into_body(), BODY_LIMIT)
                .collect()
                .await
                .map_err(|e| ProbeError::BodyRead(e.to_string()))?
                .to_bytes();
            if !contains(&body, want.as_bytes()) {
                return Err(ProbeError::Body(want.clone()));
            }
        }
        Ok(())
    }
    .await;
    conn.abort();
    result
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// The TLS client of an `https` check: its CA bundle, or no certificate verification.
fn tls_connector(check: &HealthCheck) -> Result<tokio_rustls::TlsConnector, ProbeError> {
    let provider = rustls::crypto::ring::default_provider();
    let algorithms = provider.signature_verification_algorithms;
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| ProbeError::TlsConfig(e.to_string()))?;
    let builder = match &check.ca_pem {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|_| ProbeError::TlsConfig("ca_pem is not PEM".into()))?;
                roots
                    .add(cert)
                    .map_err(|e| ProbeError::TlsConfig(format!("ca_pem: {e}")))?;
            }
            builder.with_root_certificates(roots)
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(algorithms))),
    };
    let mut config = builder.with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Takes any certificate (the handshake's signatures are still checked): for `https` checks
/// without a CA bundle.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rustls::pki_types::PrivateKeyDer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    fn check(protocol: CheckProtocol) -> HealthCheck {
        HealthCheck {
            name: "hc".into(),
            path: "/healthz".into(),
            host: None,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            rise: 1,
            fall: 1,
            expect_status: 200,
            protocol,
            expect_body: None,
            ca_pem: None,
        }
    }

    /// Answers each connection's request with `status` and `body`, over TLS when given a
    /// server config.
    async fn server(
        status: u16,
        body: &'static str,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let tls = tls.clone();
                tokio::spawn(async move {
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    match tls {
                        Some(config) => {
                            let acceptor = tokio_rustls::TlsAcceptor::from(config);
                            if let Ok(mut s) = acceptor.accept(tcp).await {
                                let mut buf = [0u8; 1024];
                                let _ = s.read(&mut buf).await;
                                let _ = s.write_all(response.as_bytes()).await;
                                let _ = s.shutdown().await;
                            }
                        }
                        None => {
                            let mut tcp = tcp;
                            let mut buf = [0u8; 1024];
                            let _ = tcp.read(&mut buf).await;
                            let _ = tcp.write_all(response.as_bytes()).await;
                        }
                    }
                });
            }
        });
        addr
    }

    /// A self-signed certificate for `gw.test` as a server config, and its PEM.
    fn tls_server() -> (Arc<rustls::ServerConfig>, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["gw.test".to_string()]).expect("params");
        let cert = params.self_signed(&key).expect("cert");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::try_from(key.serialize_der()).expect("key der"),
        )
        .expect("server config");
        (Arc::new(config), cert.pem())
    }

    #[tokio::test]
    async fn a_host_name_is_resolved_at_each_probe() {
        // Dual-stack, so whichever address `localhost` resolves to first answers.
        let listener = TcpListener::bind("[::]:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = tcp.read(&mut buf).await;
                let _ = tcp
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            }
        });
        let mut c = check(CheckProtocol::Http);
        c.expect_body = Some("ok".into());
        probe(&ProbeTarget::Host("localhost.".into(), port), &c)
            .await
            .expect("localhost resolves and answers");
    }

    #[tokio::test]
    async fn tcp_checks_connect_only() {
        let addr = server(500, "", None).await;
        probe(&ProbeTarget::Addr(addr), &check(CheckProtocol::Tcp))
            .await
            .expect("up");
        let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let gone = closed.local_addr().expect("addr");
        drop(closed);
        let err = probe(&ProbeTarget::Addr(gone), &check(CheckProtocol::Tcp)).await;
        assert!(matches!(err, Err(ProbeError::Connect(_))), "{err:?}");
    }

    #[tokio::test]
    async fn http_checks_compare_the_status_and_look_for_the_body_text() {
        let ok = server(200, "status: SERVING", None).await;
        let mut c = check(CheckProtocol::Http);
        probe(&ProbeTarget::Addr(ok), &c).await.expect("200");
        c.expect_body = Some("SERVING".into());
        probe(&ProbeTarget::Addr(ok), &c)
            .await
            .expect("the text is there");
        c.expect_body = Some("NOT_SERVING".into());
        let err = probe(&ProbeTarget::Addr(ok), &c).await;
        assert!(matches!(err, Err(ProbeError::Body(_))), "{err:?}");
        let failing = server(503, "", None).await;
        let err = probe(&ProbeTarget::Addr(failing), &check(CheckProtocol::Http)).await;
        assert!(
            matches!(
                err,
                Err(ProbeError::Status {
                    got: 503,
                    want: 200
                })
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn https_checks_speak_tls_and_verify_only_against_their_ca() {
        let (config, pem) = tls_server();
        let addr = server(200, "ok", Some(config)).await;
        let mut c = check(CheckProtocol::Https);
        c.expect_body = Some("ok".into());
        probe(&ProbeTarget::Addr(addr), &c)
            .await
            .expect("no CA: not verified");
        c.ca_pem = Some(pem);
        c.host = Some("gw.test".into());
        probe(&ProbeTarget::Addr(addr), &c)
            .await
            .expect("verified against its CA");
        // Another CA: the handshake fails.
        let (_, other) = tls_server();
        c.ca_pem = Some(other);
        let err = probe(&ProbeTarget::Addr(addr), &c).await;
        assert!(matches!(err, Err(ProbeError::Tls(_))), "{err:?}");
        // Plain HTTP to a TLS port is no success either.
        let err = probe(&ProbeTarget::Addr(addr), &check(CheckProtocol::Http)).await;
        assert!(err.is_err());
    }
}
