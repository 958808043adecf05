//! Test harness: starts the real `meridian` binary on ephemeral loopback ports, real HTTP
//! backends, and a real DNS client built on hickory-proto.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, UdpSocket};
use tokio::process::{Child, Command};
use tokio::task::JoinSet;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use sha2::{Digest, Sha256};

pub const BIN: &str = env!("CARGO_BIN_EXE_meridian");

/// A running `meridian serve` process.
pub struct Meridian {
    child: Child,
    pub admin: String,
    pub dns: SocketAddr,
    /// Cluster RPC address, for other nodes to join.
    pub cluster: String,
    pub data_dir: PathBuf,
    pub http: reqwest::Client,
}

impl Meridian {
    /// The node config lines with which another node joins this one's cluster by its shared
    /// secret.
    pub fn secret_join(&self) -> String {
        format!(
            "join = \"{}\"\ncluster_secret_file = \"{}\"",
            self.cluster,
            self.data_dir.join("cluster.secret").display()
        )
    }

    /// Starts a single node on `data_dir` with every address on 127.0.0.1:0, and waits for its
    /// ready line.
    pub async fn start(data_dir: &Path) -> Meridian {
        Meridian::start_with(data_dir, 1, "127.0.0.1:0", "").await
    }

    /// Starts node `node_id` with its cluster RPC on `cluster_bind` and `extra` lines of node
    /// config (`join = ...`, say).
    pub async fn start_with(
        data_dir: &Path,
        node_id: u64,
        cluster_bind: &str,
        extra: &str,
    ) -> Meridian {
        Meridian::start_at(data_dir, node_id, "127.0.0.1", cluster_bind, extra, None).await
    }

    /// Starts node `node_id` inside network namespace `host` (see `netns`), every address on
    /// the host's LAN address; cluster RPC is plaintext there, as on a private network.
    pub async fn start_in(
        host: &crate::netns::Host,
        data_dir: &Path,
        node_id: u64,
        extra: &str,
    ) -> Meridian {
        let cluster = format!("{}:0", host.ip);
        Meridian::restart_in(host, data_dir, node_id, extra, &cluster).await
    }

    /// Starts a cluster with one node in each of `hosts` (node ids 1, 2, ...; data in
    /// `dir/n1`, `dir/n2`, ...): the first bootstraps, the others join it. Also answers the
    /// node config lines a node needs to start again (`restart_in`).
    pub async fn cluster_in(hosts: &[crate::netns::Host], dir: &Path) -> (Vec<Meridian>, String) {
        let mut nodes = Vec::new();
        let first = Meridian::start_in(&hosts[0], &dir.join("n1"), 1, "").await;
        let join = first.secret_join();
        nodes.push(first);
        for (i, h) in hosts.iter().enumerate().skip(1) {
            let id = i as u64 + 1;
            nodes.push(Meridian::start_in(h, &dir.join(format!("n{id}")), id, &join).await);
        }
        (nodes, join)
    }

    /// Starts node `node_id` again in `host` with its cluster RPC on `cluster` (the address the
    /// other members know it by).
    pub async fn restart_in(
        host: &crate::netns::Host,
        data_dir: &Path,
        node_id: u64,
        extra: &str,
        cluster: &str,
    ) -> Meridian {
        let ip = host.ip.to_string();
        let extra = format!("cluster_plaintext_ok = true\n{extra}");
        Meridian::start_at(data_dir, node_id, &ip, cluster, &extra, Some(&host.ns)).await
    }

    async fn start_at(
        data_dir: &Path,
        node_id: u64,
        ip: &str,
        cluster_bind: &str,
        extra: &str,
        netns: Option<&str>,
    ) -> Meridian {
        let config = data_dir.with_extension("toml");
        std::fs::write(
            &config,
            format!(
                "node_id = {node_id}\nname = \"test-{node_id}\"\ndata_dir = \"{}\"\n\
                 admin_bind = \"{ip}:0\"\ncluster_bind = \"{cluster_bind}\"\n\
                 dns_bind = \"{ip}:0\"\n{extra}\n",
                data_dir.display()
            ),
        )
        .expect("write node config");
        let mut command = match netns {
            // `ip netns exec` execs the binary: the child is meridian itself.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, BIN]);
                c
            }
            None => Command::new(BIN),
        };
        let mut child = command
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn meridian");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.strip_prefix("meridian ready: ") {
                    return Some(rest.to_string());
                }
            }
            None
        })
        .await
        .expect("meridian became ready within 30 s")
        .expect("meridian printed its ready line");
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let field = |k: &str| {
            ready
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("{k} in ready line {ready:?}"))
                .to_string()
        };
        let admin = field("admin");
        let mut http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        if admin.starts_with("https://") {
            // Trust the certificate the node generated, and nothing else extra.
            let pem = std::fs::read(data_dir.join("admin-tls").join("cert.pem"))
                .expect("generated console certificate");
            http = http.add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"));
        }
        Meridian {
            child,
            cluster: field("cluster"),
            admin,
            dns: field("dns").parse().expect("dns addr"),
            data_dir: data_dir.to_path_buf(),
            http: http.build().expect("client"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.admin)
    }

    pub fn initial_password(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("initial-admin-password"))
            .expect("initial password file")
            .trim()
            .to_string()
    }

    /// Creates an API token with the admin password.
    pub async fn token(&self) -> String {
        let resp = self
            .http
            .post(self.url("/api/v1/tokens"))
            .basic_auth("admin", Some(self.initial_password()))
            .json(&serde_json::json!({"name": "test"}))
            .send()
            .await
            .expect("token request");
        assert_eq!(resp.status(), 201, "token creation");
        let v: serde_json::Value = resp.json().await.expect("json");
        v["token"].as_str().expect("token").to_string()
    }

    /// POST /login with the form's CSRF token, as a browser does after loading the form.
    pub async fn login(&self, user: &str, password: &str) -> reqwest::Response {
        let page = self
            .http
            .get(self.url("/login"))
            .send()
            .await
            .expect("login form");
        let cookie = page
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("meridian_login="))
            .and_then(|v| v.split(';').next())
            .expect("login cookie")
            .to_string();
        let html = page.text().await.expect("login html");
        let csrf = html
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("csrf field")
            .to_string();
        self.http
            .post(self.url("/login"))
            .header("cookie", cookie)
            .form(&[
                ("csrf", csrf.as_str()),
                ("username", user),
                ("password", password),
            ])
            .send()
            .await
            .expect("login answered")
    }

    /// The node's Prometheus text, read with a bearer token.
    pub async fn metrics(&self, token: &str) -> String {
        self.http
            .get(self.url("/metrics"))
            .bearer_auth(token)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// A console page as the admin (with `password`) sees it after logging in: status and
    /// HTML.
    pub async fn console_get(&self, password: &str, path: &str) -> (u16, String) {
        let login = self.login("admin", password).await;
        let cookie = login
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("meridian_session="))
            .and_then(|v| v.split(';').next())
            .expect("session cookie")
            .to_string();
        let r = self
            .http
            .get(self.url(path))
            .header("cookie", cookie)
            .send()
            .await
            .expect("console page");
        (r.status().as_u16(), r.text().await.expect("html"))
    }

    /// PUT /api/v1/config; returns status and JSON body.
    pub async fn put_config(
        &self,
        token: &str,
        body: impl Into<reqwest::Body>,
        if_match: Option<u64>,
    ) -> (u16, serde_json::Value) {
        let mut req = self
            .http
            .put(self.url("/api/v1/config"))
            .bearer_auth(token)
            .body(body);
        // Without a revision the write is deliberately unconditional.
        req = match if_match {
            Some(r) => req.header("if-match", format!("\"{r}\"")),
            None => req.header("if-match", "*"),
        };
        let resp = req.send().await.expect("put config");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or_default())
    }

    /// GET /api/v1/config; returns the spec and the revision. Reads are linearizable, so a
    /// node that knows no leader yet (just restarted, an election under way) answers 503:
    /// retried for up to 10 s, as a client would.
    pub async fn get_config(&self, token: &str) -> (serde_json::Value, u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let resp = loop {
            let resp = self
                .http
                .get(self.url("/api/v1/config"))
                .bearer_auth(token)
                .send()
                .await
                .expect("get config");
            if resp.status() != 503 || std::time::Instant::now() > deadline {
                break resp;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(resp.status(), 200);
        let rev = resp
            .headers()
            .get("x-meridian-revision")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("revision header");
        (resp.json().await.expect("json"), rev)
    }

    pub async fn status(&self, token: &str) -> serde_json::Value {
        self.http
            .get(self.url("/api/v1/status"))
            .bearer_auth(token)
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("json")
    }

    /// Queries A records of `name` over UDP; the sorted addresses.
    pub async fn dns_a(&self, name: &str) -> Vec<IpAddr> {
        let mut msg = Message::query();
        msg.add_query(Query::query(
            Name::from_ascii(name).expect("name"),
            RecordType::A,
        ));
        // A node in a namespace is reached over the LAN, not from a loopback address.
        let from = if self.dns.ip().is_loopback() {
            "127.0.0.1:0"
        } else {
            "0.0.0.0:0"
        };
        let sock = UdpSocket::bind(from).await.expect("udp");
        sock.send_to(&msg.to_vec().expect("encode"), self.dns)
            .await
            .expect("send");
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf))
            .await
            .expect("dns answer in time")
            .expect("recv");
        let answer = Message::from_vec(&buf[..n]).expect("decode");
        let mut out: Vec<IpAddr> = answer
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            })
            .collect();
        out.sort();
        out
    }

    /// SIGTERM, then wait for exit.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await;
        let _ = self.child.kill().await;
    }

    /// kill -9: no chance to flush anything.
    pub async fn kill9(mut self) {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }
}

/// An HTTP backend that says its name and counts requests; `/healthz` answers 200.
pub struct Backend {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    tasks: JoinSet<()>,
}

impl Backend {
    pub async fn start(name: &'static str, ip: &str) -> Backend {
        let listener = TcpListener::bind((ip.parse::<IpAddr>().expect("ip"), 0))
            .await
            .expect("bind backend");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let mut tasks = JoinSet::new();
        let h = hits.clone();
        tasks.spawn(async move {
            // Connections live in their own set, dropped (and so aborted) with this task.
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let h = h.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let h = h.clone();
                            async move {
                                if req.uri().path() != "/healthz" {
                                    h.fetch_add(1, Ordering::Relaxed);
                                }
                                if req.uri().path() == "/slow" {
                                    tokio::time::sleep(Duration::from_millis(1500)).await;
                                }
                                let xff = req
                                    .headers()
                                    .get("x-forwarded-for")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_string();
                                // `/upload` reads the whole body and says how long it was.
                                let text = if req.uri().path() == "/upload" {
                                    use http_body_util::BodyExt;
                                    let len = req
                                        .into_body()
                                        .collect()
                                        .await
                                        .map_or(0, |b| b.to_bytes().len());
                                    format!("{name} {len}")
                                } else {
                                    name.to_string()
                                };
                                let mut resp = hyper::Response::new(Full::new(Bytes::from(text)));
                                resp.headers_mut().insert(
                                    "x-seen-xff",
                                    xff.parse()
                                        .unwrap_or(hyper::header::HeaderValue::from_static("")),
                                );
                                Ok::<_, std::convert::Infallible>(resp)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Backend {
            name,
            addr,
            hits,
            tasks,
        }
    }

    /// Closes the listener and every open connection, as a crashed gateway would.
    pub async fn kill(mut self) {
        self.tasks.shutdown().await;
    }
}

/// A port that was free a moment ago on 127.0.0.1.
///
/// Picked below the kernel's ephemeral range (32768 and up), where no socket bound to port 0
/// (another test's node, a client connection) can take it before it is used; free for TCP and
/// UDP on 127.0.0.1 and on the wildcard address when picked.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let start = h.finish() as usize;
    for i in 0..10_000 {
        let n = start
            .wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed))
            .wrapping_add(i);
        let port = 20_000 + (n % 12_000) as u16;
        let free = std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok();
        if free {
            return port;
        }
    }
    panic!("no free port in 20000-31999")
}

/// Polls `f` every 20 ms until it returns true or `deadline` passes; returns the time it took.
pub async fn eventually<F, Fut>(deadline: Duration, mut f: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < deadline {
        if f().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// A config with one listener, one pool and one GSLB record over the given backends.
pub fn config(listen_port: u16, backends: &[&Backend], interval_ms: u64, fall: u32) -> String {
    let members: Vec<String> = backends
        .iter()
        .map(|b| format!("{{ address = \"{}\" }}", b.addr))
        .collect();
    let sites: Vec<String> = backends
        .iter()
        .map(|b| {
            format!(
                "{{ name = \"{}\", address = \"{}\", port = {}, health_check = \"hc\" }}",
                b.name,
                b.addr.ip(),
                b.addr.port()
            )
        })
        .collect();
    format!(
        r#"api_version = "meridian/v1"
listeners = [{{ name = "web", bind = "127.0.0.1:{listen_port}" }}]
routes = [{{ name = "all", listener = "web", pool = "mesh" }}]
health_checks = [{{ name = "hc", path = "/healthz", interval_ms = {interval_ms}, timeout_ms = {timeout}, rise = 1, fall = {fall} }}]

[[pools]]
name = "mesh"
health_check = "hc"
members = [{members}]

[[zones]]
name = "gslb.test"
ns = ["ns1"]
soa = {{ mname = "ns1", rname = "hostmaster" }}
records = [{{ name = "ns1", type = "A", value = "127.0.0.1" }}]

[[gslb_records]]
name = "app.gslb.test"
ttl = 5
sites = [{sites}]
"#,
        timeout = interval_ms.min(1000) / 2,
        members = members.join(", "),
        sites = sites.join(", "),
    )
}

/// GET through the proxy; the body (the backend's name) or the status on failure.
pub async fn via_proxy(client: &reqwest::Client, port: u16) -> Result<String, String> {
    match client
        .get(format!("http://127.0.0.1:{port}/hello"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
    {
        Ok(r) if r.status() == 200 => Ok(r.text().await.unwrap_or_default()),
        Ok(r) => Err(format!("status {}", r.status())),
        Err(e) => Err(e.to_string()),
    }
}

/// A TLS handshake to the listener with `sni`: the leaf's SHA-256 and the ALPN protocol, or
/// the error.
pub async fn handshake(
    config: Arc<rustls::ClientConfig>,
    port: u16,
    sni: &str,
) -> Result<(String, Option<Vec<u8>>), String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (_, conn) = tls.get_ref();
    let leaf: &CertificateDer<'_> = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no certificate")?;
    Ok((
        hex::encode(Sha256::digest(leaf.as_ref())),
        conn.alpn_protocol().map(<[u8]>::to_vec),
    ))
}

/// SHA-256 of the first certificate in `cert_pem`, hex (as [`handshake`] reports a leaf).
pub fn fingerprint(cert_pem: &str) -> String {
    let der = <CertificateDer as PemObject>::from_pem_slice(cert_pem.as_bytes()).expect("pem");
    hex::encode(Sha256::digest(der.as_ref()))
}
