//! TLS termination and the credential store, end to end: certificates imported through the
//! API, served by SNI over real TLS connections (rustls and curl as clients), rotated under
//! load without a failed request, revoked, and refused when bad. Private keys never come back.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

/// A test CA and leaf certificates it signs.
struct Ca {
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let key = rcgen::KeyPair::generate().expect("ca key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Meridian test CA");
        let cert = params.self_signed(&key).expect("ca cert");
        let issuer_key = rcgen::KeyPair::from_pem(&key.serialize_pem()).expect("key copy");
        let issuer = rcgen::Issuer::new(params, issuer_key);
        Ca { key, cert, issuer }
    }

    /// `(cert_pem, key_pem)` of a new leaf for `names` (DNS names, or `spiffe://` URIs).
    fn leaf(&self, names: &[&str]) -> (String, String) {
        let _ = &self.key;
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let (uris, dns): (Vec<&str>, Vec<&str>) =
            names.iter().partition(|n| n.starts_with("spiffe://"));
        let mut params =
            rcgen::CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        for uri in uris {
            params
                .subject_alt_names
                .push(rcgen::SanType::URI(uri.try_into().expect("uri")));
        }
        let cert = params.signed_by(&key, &self.issuer).expect("leaf");
        (cert.pem(), key.serialize_pem())
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    fn client(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.der().clone()).expect("root");
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

async fn import(node: &Meridian, token: &str, name: &str, cert: &str, key: &str) -> (u16, String) {
    let resp = node
        .http
        .post(node.url("/api/v1/certificates"))
        .bearer_auth(token)
        .json(&serde_json::json!({"name": name, "cert_pem": cert, "key_pem": key}))
        .send()
        .await
        .expect("import");
    (
        resp.status().as_u16(),
        resp.text().await.unwrap_or_default(),
    )
}

async fn rotate(node: &Meridian, token: &str, name: &str, cert: &str, key: &str) -> u16 {
    node.http
        .put(node.url(&format!("/api/v1/certificates/{name}")))
        .bearer_auth(token)
        .header("if-match", "*")
        .json(&serde_json::json!({"cert_pem": cert, "key_pem": key}))
        .send()
        .await
        .expect("rotate")
        .status()
        .as_u16()
}

fn https_config(port: u16, backend: &Backend, tls: &str) -> String {
    format!(
        r#"api_version = "meridian/v1"
listeners = [{{ name = "secure", bind = "127.0.0.1:{port}", tls = {tls} }}]
routes = [{{ name = "all", listener = "secure", pool = "mesh" }}]
pools = [{{ name = "mesh", members = [{{ address = "{}" }}] }}]
"#,
        backend.addr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_listener_serves_by_sni_rotates_hitlessly_and_keeps_keys_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Meridian::start(&dir.path().join("n1")).await;
    let token = node.token().await;
    let backend = Backend::start("east", "127.0.0.2").await;
    let ca = Ca::new();
    let (a_cert, a_key) = ca.leaf(&["a.test"]);
    let (w_cert, w_key) = ca.leaf(&["*.w.test"]);
    assert_eq!(import(&node, &token, "a", &a_cert, &a_key).await.0, 201);
    assert_eq!(import(&node, &token, "wild", &w_cert, &w_key).await.0, 201);

    // A listener that names a certificate the store does not have is refused, by path.
    let port = free_port();
    let (status, body) = node
        .put_config(
            &token,
            https_config(port, &backend, r#"{ certificates = ["a", "nope"] }"#),
            None,
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["errors"][0]["path"], "listeners[0].tls.certificates[1]",
        "{body}"
    );

    let (status, body) = node
        .put_config(
            &token,
            https_config(
                port,
                &backend,
                r#"{ certificates = ["a", "wild"], unknown_sni = "refuse" }"#,
            ),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let client = ca.client();
    eventually(Duration::from_secs(5), || async {
        handshake(client.clone(), port, "a.test").await.is_ok()
    })
    .await
    .expect("listener up");

    // SNI picks the certificate; ALPN offers h2.
    let (fp, alpn) = handshake(client.clone(), port, "a.test").await.expect("a");
    assert_eq!(fp, fingerprint(&a_cert));
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    let (fp, _) = handshake(client.clone(), port, "x.w.test")
        .await
        .expect("wild");
    assert_eq!(fp, fingerprint(&w_cert));
    assert!(
        handshake(client.clone(), port, "other.test").await.is_err(),
        "unknown SNI refused"
    );

    // Real HTTPS requests reach the backend (HTTP/2 by ALPN is checked above and, with curl, in
    // the demo test).
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).expect("ca"))
        .resolve("a.test", ([127, 0, 0, 1], port).into())
        .build()
        .expect("client");
    let resp = https
        .get(format!("https://a.test:{port}/"))
        .send()
        .await
        .expect("https request");
    assert_eq!(resp.text().await.expect("body"), "east");

    // Rotation under load: 20 new certificates while requests keep flowing; none fails, and new
    // handshakes see the last one.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, ca_pem) = (stop.clone(), ca.pem());
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // A new client each time: every request is a new handshake.
                let c = reqwest::Client::builder()
                    .add_root_certificate(
                        reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca"),
                    )
                    .resolve("a.test", ([127, 0, 0, 1], port).into())
                    .build()
                    .expect("client");
                match c.get(format!("https://a.test:{port}/")).send().await {
                    Ok(r) if r.status() == 200 => ok += 1,
                    Ok(r) => failed.push(r.status().to_string()),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        })
    };
    let mut last = String::new();
    for _ in 0..20 {
        let (cert, key) = ca.leaf(&["a.test"]);
        assert_eq!(rotate(&node, &token, "a", &cert, &key).await, 200);
        last = cert;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = load.await.expect("load");
    assert!(
        failed.is_empty(),
        "{} failed of {}: {failed:?}",
        failed.len(),
        ok as usize + failed.len()
    );
    assert!(ok > 20, "only {ok} requests during the rotations");
    let (fp, _) = handshake(client.clone(), port, "a.test").await.expect("a");
    assert_eq!(
        fp,
        fingerprint(&last),
        "new handshakes use the rotated certificate"
    );

    // A certificate in use cannot be revoked or deleted; the listener is named.
    let resp = node
        .http
        .post(node.url("/api/v1/certificates/a/revoke"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"reason": "compromised"}))
        .send()
        .await
        .expect("revoke");
    assert_eq!(resp.status(), 409);
    assert!(resp.text().await.unwrap_or_default().contains("secure"));

    // Keys never come back: not from the API, the config, the metrics or the audit log.
    let key_body: String = a_key.lines().filter(|l| !l.starts_with("-----")).collect();
    for path in [
        "/api/v1/certificates",
        "/api/v1/certificates/a",
        "/api/v1/config",
        "/metrics",
        "/api/v1/audit?format=jsonl",
    ] {
        let text = node
            .http
            .get(node.url(path))
            .bearer_auth(&token)
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("text");
        assert!(!text.contains("PRIVATE KEY"), "{path} shows a key");
        assert!(!text.contains(&key_body[..40]), "{path} shows key material");
    }
    let certs: serde_json::Value = node
        .http
        .get(node.url("/api/v1/certificates/a"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(certs["used_by"][0], "secure", "{certs}");
    assert!(certs["expires_in_seconds"]
        .as_i64()
        .is_some_and(|s| s > 86_400));
    let metrics = node.metrics(&token).await;
    assert!(
        metrics.contains("meridian_lb_tls_connections_total{cipher=\"TLS13_")
            || metrics.contains("meridian_lb_tls_connections_total{cipher="),
        "{metrics}"
    );
    assert!(metrics.contains("meridian_tls_cert_expiry_seconds{certificate=\"a\"}"));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificates_and_bad_handshakes_are_refused_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Meridian::start(&dir.path().join("n1")).await;
    let token = node.token().await;
    let backend = Backend::start("east", "127.0.0.2").await;
    let ca = Ca::new();
    let (cert, key) = ca.leaf(&["a.test"]);
    let (_, other_key) = ca.leaf(&["a.test"]);

    let (status, body) = import(&node, &token, "a", "not a pem", &key).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("cert_pem"), "{body}");
    let (status, body) = import(&node, &token, "a", &cert, &other_key).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("key_pem"), "the key does not match: {body}");
    let list: serde_json::Value = node
        .http
        .get(node.url("/api/v1/certificates"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(
        list.as_array().map(|a| a.len()),
        Some(0),
        "nothing imported"
    );

    assert_eq!(import(&node, &token, "a", &cert, &key).await.0, 201);
    let port = free_port();
    let (status, body) = node
        .put_config(
            &token,
            https_config(
                port,
                &backend,
                r#"{ certificates = ["a"], handshake_timeout_ms = 500 }"#,
            ),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let client = ca.client();
    eventually(Duration::from_secs(5), || async {
        handshake(client.clone(), port, "a.test").await.is_ok()
    })
    .await
    .expect("listener up");

    // Garbage instead of a ClientHello: the connection ends, nothing panics.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .expect("closed in time");
    assert!(n.is_ok());
    // A client that stalls mid-handshake is cut at the handshake timeout.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(&[0x16, 0x03, 0x01]).await.expect("write");
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .expect("cut in time");
    assert!(started.elapsed() < Duration::from_secs(3));
    // And the node still serves.
    assert!(handshake(client, port, "a.test").await.is_ok());
    let metrics = node.metrics(&token).await;
    assert!(
        metrics.contains("kind=\"tls_handshake\",listener=\"secure\"} 1")
            || metrics.contains("kind=\"tls_handshake\",listener=\"secure\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kind=\"tls_handshake_timeout\",listener=\"secure\"} 1"),
        "{metrics}"
    );
    node.stop().await;
}

/// A member that speaks only TLS and requires a client certificate from `ca`: answers
/// "mtls ok" to a verified client.
async fn mtls_backend(ca: &Ca, server_cert: (String, String)) -> std::net::SocketAddr {
    use rustls::pki_types::PrivateKeyDer;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).expect("root");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .expect("verifier");
    let certs = vec![CertificateDer::from_pem_slice(server_cert.0.as_bytes()).expect("cert")];
    let key = PrivateKeyDer::from_pem_slice(server_cert.1.as_bytes()).expect("key");
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_client_cert_verifier(verifier)
    .with_single_cert(certs, key)
    .expect("server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"mtls ok")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_speak_mutual_tls_to_their_members() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Meridian::start(&dir.path().join("n1")).await;
    let token = node.token().await;
    let ca = Ca::new();
    let member = mtls_backend(&ca, ca.leaf(&["gateway.mesh.test"])).await;
    let (client_cert, client_key) = ca.leaf(&["meridian.mesh.test"]);
    assert_eq!(
        import(&node, &token, "mesh-client", &client_cert, &client_key)
            .await
            .0,
        201
    );
    let port = free_port();
    let config = |tls: &str| {
        format!(
            r#"api_version = "meridian/v1"
listeners = [{{ name = "web", bind = "127.0.0.1:{port}" }}]
routes = [{{ name = "all", listener = "web", pool = "mesh" }}]
[[pools]]
name = "mesh"
members = [{{ address = "{member}" }}]
retries = 0
tls = {tls}
"#
        )
    };
    let ca_pem = ca.pem().replace('\n', "\\n");
    let (status, body) = node
        .put_config(
            &token,
            config(&format!(
                r#"{{ ca_pem = "{ca_pem}", server_name = "gateway.mesh.test", client_certificate = "mesh-client" }}"#
            )),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let http = reqwest::Client::new();
    let ok = eventually(Duration::from_secs(5), || async {
        matches!(via_proxy(&http, port).await.as_deref(), Ok("mtls ok"))
    })
    .await;
    assert!(ok.is_some(), "{:?}", via_proxy(&http, port).await);
    // The client certificate cannot be revoked while the pool presents it.
    let resp = node
        .http
        .post(node.url("/api/v1/certificates/mesh-client/revoke"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"reason": "test"}))
        .send()
        .await
        .expect("revoke");
    assert_eq!(resp.status(), 409);
    assert!(resp.text().await.unwrap_or_default().contains("pool mesh"));

    // Without the client certificate the member refuses the handshake: 502, not plaintext.
    let (status, body) = node
        .put_config(
            &token,
            config(&format!(
                r#"{{ ca_pem = "{ca_pem}", server_name = "gateway.mesh.test" }}"#
            )),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let refused = eventually(Duration::from_secs(5), || async {
        via_proxy(&http, port)
            .await
            .is_err_and(|e| e.starts_with("status 502"))
    })
    .await;
    assert!(refused.is_some(), "{:?}", via_proxy(&http, port).await);

    // A member whose certificate does not chain to the pool's CA is not trusted either.
    let other = Ca::new();
    let other_pem = other.pem().replace('\n', "\\n");
    let (status, _) = node
        .put_config(
            &token,
            config(&format!(
                r#"{{ ca_pem = "{other_pem}", server_name = "gateway.mesh.test", client_certificate = "mesh-client" }}"#
            )),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let refused = eventually(Duration::from_secs(5), || async {
        via_proxy(&http, port)
            .await
            .is_err_and(|e| e.starts_with("status 502"))
    })
    .await;
    assert!(refused.is_some(), "{:?}", via_proxy(&http, port).await);
    node.stop().await;
}

/// A plain HTTP member that answers with the client-certificate headers it received.
async fn echo_cert_headers() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let h = |n: &str| {
                            req.headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-")
                                .to_string()
                        };
                        let body = format!(
                            "subject={};sans={}",
                            h("x-client-cert-subject"),
                            h("x-client-cert-sans")
                        );
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(body)),
                        ))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_verified_and_passed_upstream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Meridian::start(&dir.path().join("n1")).await;
    let token = node.token().await;
    let ca = Ca::new();
    let (cert, key) = ca.leaf(&["a.test"]);
    assert_eq!(import(&node, &token, "srv", &cert, &key).await.0, 201);
    let member = echo_cert_headers().await;
    let port = free_port();
    let ca_pem = ca.pem().replace('\n', "\\n");
    let config = format!(
        r#"api_version = "meridian/v1"
listeners = [{{ name = "secure", bind = "127.0.0.1:{port}", tls = {{ certificates = ["srv"], client_auth = {{ ca_pem = "{ca_pem}" }} }} }}]
routes = [{{ name = "all", listener = "secure", pool = "p" }}]
pools = [{{ name = "p", members = [{{ address = "{member}" }}] }}]
"#
    );
    let (status, body) = node.put_config(&token, config, None).await;
    assert_eq!(status, 200, "{body}");
    let client = |identity: Option<(String, String)>| {
        let mut b = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).expect("ca"))
            .resolve("a.test", ([127, 0, 0, 1], port).into());
        if let Some((c, k)) = identity {
            b = b.identity(reqwest::Identity::from_pem(format!("{c}{k}").as_bytes()).expect("id"));
        }
        b.build().expect("client")
    };
    let with_cert = client(Some(ca.leaf(&["client.test"])));
    let answer = eventually(Duration::from_secs(5), || async {
        with_cert
            .get(format!("https://a.test:{port}/"))
            .header("x-client-cert-subject", "CN=forged")
            .send()
            .await
            .is_ok()
    })
    .await;
    assert!(answer.is_some(), "listener up");
    let body = with_cert
        .get(format!("https://a.test:{port}/"))
        .header("x-client-cert-subject", "CN=forged")
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    assert!(body.contains("sans=DNS:client.test"), "{body}");
    assert!(
        !body.contains("forged") && !body.contains("subject=-"),
        "{body}"
    );

    // No certificate, or one from another CA: refused at the handshake.
    assert!(client(None)
        .get(format!("https://a.test:{port}/"))
        .send()
        .await
        .is_err());
    let stranger = Ca::new();
    assert!(client(Some(stranger.leaf(&["client.test"])))
        .get(format!("https://a.test:{port}/"))
        .send()
        .await
        .is_err());
    node.stop().await;
}

/// A TLS member with its own certificate for `names` that answers `body` (no client auth).
async fn tls_member(ca: &Ca, names: &[&str], body: &'static str) -> (std::net::SocketAddr, String) {
    use rustls::pki_types::PrivateKeyDer;
    let (cert_pem, key_pem) = ca.leaf(names);
    let certs = vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("cert")];
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key");
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |_req| async move {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(body.as_bytes())),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, fingerprint(&cert_pem))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_listeners_pass_tls_through_by_sni() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Meridian::start(&dir.path().join("n1")).await;
    let token = node.token().await;
    let ca = Ca::new();
    let (a, a_fp) = tls_member(&ca, &["a.test"], "member a").await;
    let (w, w_fp) = tls_member(&ca, &["*.w.test"], "member w").await;
    let port = free_port();
    let config = format!(
        r#"api_version = "meridian/v1"
[[listeners]]
name = "pass"
bind = "127.0.0.1:{port}"
protocol = "tcp"
pool = "a"
sni_routes = [{{ server_name = "*.w.test", pool = "w" }}, {{ server_name = "a.test", pool = "a" }}]
[[pools]]
name = "a"
members = [{{ address = "{a}" }}]
[[pools]]
name = "w"
members = [{{ address = "{w}" }}]
"#
    );
    let (status, body) = node.put_config(&token, config, None).await;
    assert_eq!(status, 200, "{body}");
    let client = ca.client();
    eventually(Duration::from_secs(5), || async {
        handshake(client.clone(), port, "a.test").await.is_ok()
    })
    .await
    .expect("listener up");
    // The member's own certificate comes through: Meridian did not terminate TLS.
    let (fp, _) = handshake(client.clone(), port, "a.test").await.expect("a");
    assert_eq!(fp, a_fp);
    let (fp, _) = handshake(client.clone(), port, "x.w.test")
        .await
        .expect("w");
    assert_eq!(fp, w_fp);
    // End to end over HTTPS through the passthrough.
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).expect("ca"))
        .resolve("b.w.test", ([127, 0, 0, 1], port).into())
        .build()
        .expect("client");
    let body = https
        .get(format!("https://b.w.test:{port}/"))
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    assert_eq!(body, "member w");
    // Not TLS at all: the connection is dropped, and the node keeps serving.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .expect("closed");
    assert!(buf.is_empty());
    assert!(handshake(client, port, "a.test").await.is_ok());
    node.stop().await;
}

/// One handshake to `addr` with `sni`: whether it resumed a session.
async fn resumed(
    config: Arc<rustls::ClientConfig>,
    addr: std::net::SocketAddr,
    sni: &str,
) -> Result<bool, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    // TLS 1.3 tickets arrive after the handshake: read until the server has sent them.
    tls.write_all(b"GET /t HTTP/1.1\r\nhost: t.test\r\nconnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    let _ = tls.read_to_end(&mut body).await;
    if !body.starts_with(b"HTTP/1.1 200") {
        return Err(format!(
            "unexpected answer {:?}",
            String::from_utf8_lossy(&body)
        ));
    }
    Ok(tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed))
}

fn client_with(
    ca: &Ca,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(config)
}

/// Two appliances, each in its own network namespace with the same listener bind, as in
/// production: a session ticket one of them issued resumes on the other, for TLS 1.3 and 1.2,
/// because the cluster's leader generates the ticket keys and Raft replicates them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_tickets_from_one_appliance_resume_on_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lan = crate::netns::Lan::new();
    let (ha, hb) = (lan.host(), lan.host());
    let (mut nodes, _) = Meridian::cluster_in(&[ha.clone(), hb.clone()], dir.path()).await;
    let n2 = nodes.pop().expect("node 2");
    let n1 = nodes.pop().expect("node 1");
    let token = n1.token().await;

    let backend = Backend::start("east", &lan.gateway().to_string()).await;
    let ca = Ca::new();
    let (cert, key) = ca.leaf(&["t.test"]);
    assert_eq!(import(&n1, &token, "t", &cert, &key).await.0, 201);
    let port = free_port();
    let config = format!(
        r#"api_version = "meridian/v1"
listeners = [{{ name = "secure", bind = "0.0.0.0:{port}", tls = {{ certificates = ["t"] }} }}]
routes = [{{ name = "all", listener = "secure", pool = "mesh" }}]
pools = [{{ name = "mesh", members = [{{ address = "{}" }}] }}]
"#,
        backend.addr
    );
    let (status, body) = n1.put_config(&token, config, None).await;
    assert_eq!(status, 200, "{body}");
    let (a, b) = (
        std::net::SocketAddr::from((ha.ip, port)),
        std::net::SocketAddr::from((hb.ip, port)),
    );

    for (label, versions) in [
        ("TLS 1.3", &[&rustls::version::TLS13][..]),
        ("TLS 1.2", &[&rustls::version::TLS12][..]),
    ] {
        // Until the leader's first key reached both nodes, each seals with its own: keep
        // trying with a fresh client each time.
        let took = eventually(Duration::from_secs(30), || async {
            let client = client_with(&ca, versions);
            matches!(resumed(client.clone(), a, "t.test").await, Ok(false))
                && matches!(resumed(client, b, "t.test").await, Ok(true))
        })
        .await;
        assert!(
            took.is_some(),
            "{label}: a ticket from node 1 never resumed on node 2"
        );
        // And the other way round, with the same keys.
        let client = client_with(&ca, versions);
        assert_eq!(
            resumed(client.clone(), b, "t.test").await,
            Ok(false),
            "{label}"
        );
        assert_eq!(resumed(client, a, "t.test").await, Ok(true), "{label}");
    }

    // Node 2 counts what it resumed.
    let metrics = n2.metrics(&token).await;
    let resumed_13 = metrics.lines().any(|l| {
        l.starts_with("meridian_lb_tls_connections_total{")
            && l.contains("handshake=\"resumed\"")
            && l.contains("version=\"1.3\"")
            && !l.ends_with(" 0")
    });
    assert!(resumed_13, "{metrics}");

    // Both consoles show the same cluster key sealing new tickets (by id, never the key).
    let key_of = |html: &str| {
        html.split("id=\"ticket-keys\"")
            .nth(1)
            .and_then(|t| t.split("<code>").nth(1))
            .and_then(|t| t.split("</code>").next())
            .map(str::to_string)
    };
    let password = n1.initial_password();
    let (status, page1) = n1.console_get(&password, "/console/certificates").await;
    assert_eq!(status, 200);
    let (_, page2) = n2.console_get(&password, "/console/certificates").await;
    let id = key_of(&page1).expect("a key listed on node 1");
    assert_eq!(id.len(), 16, "{id}");
    assert_eq!(key_of(&page2).as_deref(), Some(id.as_str()));
    assert!(page1.contains("seals new tickets"));

    // The rotation is in the audit log, by the system.
    let audit: serde_json::Value = n1
        .http
        .get(n1.url("/api/v1/audit"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("json");
    assert!(
        audit.to_string().contains("rotate the session-ticket key"),
        "{audit}"
    );
    n2.stop().await;
    n1.stop().await;
}

/// A mesh gateway's certificate carries its SPIFFE ID and no DNS name, as Istio's does: a pool
/// that pins the ID (exactly or by path prefix) reaches it; any other ID, or a DNS-name check,
/// is refused at the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_pin_the_members_spiffe_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Meridian::start(&dir.path().join("n1")).await;
    let token = node.token().await;
    let ca = Ca::new();
    let id = "spiffe://east.mesh/ns/istio-system/sa/ingressgateway";
    let (member, _) = tls_member(&ca, &[id], "mesh gateway").await;
    let port = free_port();
    let ca_pem = ca.pem();
    let config = |tls: &str| {
        format!(
            r#"api_version = "meridian/v1"
listeners = [{{ name = "web", bind = "127.0.0.1:{port}" }}]
routes = [{{ name = "all", listener = "web", pool = "mesh" }}]
[[pools]]
name = "mesh"
members = [{{ address = "{member}" }}]
[pools.tls]
ca_pem = """{ca_pem}"""
{tls}
"#
        )
    };
    let client = reqwest::Client::new();
    let mut revision = None;
    for (tls, want) in [
        (format!("spiffe_ids = [\"{id}\"]"), Ok("mesh gateway")),
        (
            "spiffe_ids = [\"spiffe://east.mesh/ns/istio-system/*\"]".to_string(),
            Ok("mesh gateway"),
        ),
        (
            "spiffe_ids = [\"spiffe://east.mesh/ns/istio-system/sa/other\"]".to_string(),
            Err("status 502 Bad Gateway"),
        ),
        (
            "spiffe_ids = [\"spiffe://west.mesh/ns/istio-system/*\"]".to_string(),
            Err("status 502 Bad Gateway"),
        ),
        // Without a pin the DNS name is checked, and the gateway's certificate has none.
        (
            "server_name = \"gw.east.mesh\"".to_string(),
            Err("status 502 Bad Gateway"),
        ),
    ] {
        let (status, body) = node.put_config(&token, config(&tls), revision).await;
        assert_eq!(status, 200, "{tls}: {body}");
        revision = body["revision"].as_u64();
        let want = want.map(str::to_string).map_err(str::to_string);
        let got = eventually(Duration::from_secs(5), || async {
            via_proxy(&client, port).await == want
        })
        .await;
        assert!(
            got.is_some(),
            "{tls}: wanted {want:?}, got {:?}",
            via_proxy(&client, port).await
        );
    }
    let (status, body) = node
        .put_config(
            &token,
            config("spiffe_ids = [\"https://east.mesh/x\"]"),
            revision,
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["errors"][0]["path"], "pools[0].tls.spiffe_ids[0]",
        "{body}"
    );
}

/// Runs `openssl` in `dir`; panics with its output when it fails.
fn openssl(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "openssl {}: {text}", args.join(" "));
    text
}

/// What `openssl s_client -status` hears about the stapled OCSP response.
async fn stapled(port: u16) -> String {
    let out = tokio::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "ocsp.test",
            "-status",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("s_client");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An OCSP response (made by `openssl ocsp` as a responder would) dropped into the node's
/// OCSP directory is stapled to the certificate's handshakes; one for another certificate is
/// not, and says why on the console, the API and the alarms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocsp_responses_are_stapled_from_the_ocsp_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Meridian::start(&dir.path().join("n1")).await;
    let token = node.token().await;
    let backend = Backend::start("east", "127.0.0.2").await;
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(&pki).expect("pki dir");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    args.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=OCSP CA",
        "-days",
        "30",
    ]);
    openssl(&pki, &args);
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend([
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=ocsp.test",
    ]);
    openssl(&pki, &args);
    std::fs::write(pki.join("ext"), "subjectAltName=DNS:ocsp.test\n").expect("ext");
    for (serial, out) in [("0x5e1a1", "leaf.pem"), ("0x5e1a2", "other.pem")] {
        openssl(
            &pki,
            &[
                "x509",
                "-req",
                "-in",
                "leaf.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                serial,
                "-days",
                "20",
                "-extfile",
                "ext",
                "-out",
                out,
            ],
        );
    }
    std::fs::write(
        pki.join("index.txt"),
        "V\t491231235959Z\t\t05E1A1\tunknown\t/CN=ocsp.test\nV\t491231235959Z\t\t05E1A2\tunknown\t/CN=ocsp.test\n",
    )
    .expect("index");
    std::fs::write(pki.join("index.txt.attr"), "unique_subject = no\n").expect("attr");
    for (cert, resp) in [("leaf.pem", "good.der"), ("other.pem", "other.der")] {
        openssl(
            &pki,
            &[
                "ocsp",
                "-issuer",
                "ca.pem",
                "-cert",
                cert,
                "-reqout",
                "req.der",
                "-no_nonce",
            ],
        );
        openssl(
            &pki,
            &[
                "ocsp",
                "-index",
                "index.txt",
                "-rsigner",
                "ca.pem",
                "-rkey",
                "ca.key",
                "-CA",
                "ca.pem",
                "-reqin",
                "req.der",
                "-respout",
                resp,
                "-ndays",
                "1",
            ],
        );
    }
    let read = |f: &str| std::fs::read_to_string(pki.join(f)).expect("pem");
    let (status, body) = import(&node, &token, "web", &read("leaf.pem"), &read("leaf.key")).await;
    assert_eq!(status, 201, "{body}");
    let port = free_port();
    let (status, body) = node
        .put_config(
            &token,
            https_config(port, &backend, r#"{ certificates = ["web"] }"#),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    eventually(Duration::from_secs(5), || async {
        stapled(port).await.contains("BEGIN") || stapled(port).await.contains("Server certificate")
    })
    .await
    .expect("listener up");
    assert!(
        stapled(port)
            .await
            .contains("OCSP response: no response sent"),
        "nothing stapled without a file"
    );

    // The response for this certificate: stapled within a few seconds, byte for byte.
    let ocsp_dir = node.data_dir.join("ocsp");
    std::fs::copy(pki.join("good.der"), ocsp_dir.join("web.der")).expect("copy");
    let took = eventually(Duration::from_secs(15), || async {
        stapled(port).await.contains("Cert Status: good")
    })
    .await;
    assert!(took.is_some(), "stapled: {}", stapled(port).await);
    let heard = stapled(port).await;
    assert!(
        heard.contains("OCSP Response Status: successful"),
        "{heard}"
    );
    assert!(heard.contains("Serial Number: 05E1A1"), "{heard}");
    let view: serde_json::Value = node
        .http
        .get(node.url("/api/v1/certificates/web"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(view["ocsp"]["stapled"], true, "{view}");
    assert!(
        view["ocsp"]["next_update_unix"].as_i64().is_some(),
        "{view}"
    );

    // A response for another certificate is not stapled, and the operator is told why.
    std::fs::copy(pki.join("other.der"), ocsp_dir.join("web.der")).expect("copy");
    let took = eventually(Duration::from_secs(15), || async {
        stapled(port)
            .await
            .contains("OCSP response: no response sent")
    })
    .await;
    assert!(
        took.is_some(),
        "foreign response dropped: {}",
        stapled(port).await
    );
    let (_, html) = node
        .console_get(&node.initial_password(), "/console/certificates")
        .await;
    assert!(
        html.contains("OCSP not stapled: no response for this certificate"),
        "{html}"
    );
    let status = node.status(&token).await;
    assert!(
        status
            .to_string()
            .contains("its OCSP response is not stapled"),
        "{status}"
    );
}
