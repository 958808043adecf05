//! `meridian demo`: a complete single-node appliance on loopback, with two in-process backends
//! standing in for the ingress gateways of two mesh clusters.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use anyhow::Context;
use bytes::Bytes;

use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::cli::DemoArgs;
use crate::node::{self, Node, INITIAL_PASSWORD_FILE};
use crate::node_config::NodeConfig;

pub const DEMO_ZONE: &str = "demo.meridian.test";
/// The TSIG key of the demo zone's transfers, and the file (in the data folder) dig reads it from.
const DEMO_XFR_KEY: &str = "xfr.demo.meridian.test";
const DEMO_XFR_KEY_FILE: &str = "demo-xfr.key";
/// The name of the certificate the demo generates for its HTTPS listener.
pub const DEMO_CERT: &str = "demo";
pub const EAST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
pub const WEST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    node::init_logging();
    spawn_backend("east", SocketAddr::new(IpAddr::V4(EAST), args.backend_port)).await?;
    spawn_backend("west", SocketAddr::new(IpAddr::V4(WEST), args.backend_port)).await?;

    let cfg = NodeConfig {
        node_id: 1,
        name: "demo".into(),
        data_dir: args.data_dir.clone(),
        admin_bind: args.admin,
        admin_tls: None,
        admin_tls_cert: None,
        admin_tls_key: None,
        cluster_bind: args.cluster,
        cluster_advertise: None,
        cluster_plaintext_ok: false,
        cluster_cert_renew_days: None,
        dns_bind: args.dns,
        cluster_secret_file: None,
        join: None,
        join_token: None,
        witness: false,
        storage: cluster_state::StorageKind::default(),
        access_log: None,
        access_log_fields: None,
        ocsp_dir: None,
        cache_memory_bytes: None,
        cache_disk_bytes: None,
        cache_dir: None,
        geoip_database: None,
    };
    let node = Node::start(&cfg).await?;
    if node.cluster.current().config.revision == 0 {
        // A certificate for the demo names, generated on this node at first start; the key is
        // sealed in the credential store like any other.
        let cert = credentials::self_signed(
            DEMO_CERT,
            &[
                "localhost".to_string(),
                format!("app.{DEMO_ZONE}"),
                "127.0.0.1".to_string(),
            ],
            model::unix_ms(),
            &node.cluster_key,
        )
        .map_err(|e| anyhow::anyhow!("cannot make the demo certificate: {e}"))?;
        node.cluster
            .propose(model::Change::PutCertificate { record: cert })
            .await
            .context("cannot store the demo certificate")?;
        // The TSIG key the demo zone's secondary (this host, as `dig -k`) transfers it with:
        // generated here, sealed in the store, and written once for dig in BIND's format.
        let (key, secret) = credentials::tsig_key(
            DEMO_XFR_KEY,
            model::records::TsigAlgorithm::HmacSha256,
            None,
            &node.cluster_key,
            model::unix_ms(),
        )
        .map_err(|e| anyhow::anyhow!("cannot make the demo TSIG key: {e}"))?;
        node::write_private_file(
            &node.data_dir.join(DEMO_XFR_KEY_FILE),
            format!(
                "key \"{DEMO_XFR_KEY}\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{}\";\n}};\n",
                secret.as_str()
            )
            .as_bytes(),
        )?;
        node.cluster
            .propose(model::Change::PutTsigKey { record: key })
            .await
            .context("cannot store the demo TSIG key")?;
        node.cluster
            .propose(model::Change::ReplaceConfig {
                expected_revision: Some(0),
                spec: demo_spec(&args),
            })
            .await
            .context("cannot apply the demo config")?;
    }
    node.wait_serving().await;
    print_banner(&node, &args);
    node.print_ready();
    node::wait_for_shutdown_signal().await;
    node.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

fn demo_spec(args: &DemoArgs) -> model::ConfigSpec {
    let port = args.backend_port;
    let toml = format!(
        r#"
api_version = "meridian/v1"

[[listeners]]
name = "web"
bind = "{proxy}"

# HTTPS with the certificate generated at first start; kernel TLS where the kernel has it.
[[listeners]]
name = "https"
bind = "{https}"
tls = {{ certificates = ["{DEMO_CERT}"] }}

[[listeners]]
name = "tcp"
bind = "{tcp}"
protocol = "tcp"
pool = "mesh"

[[routes]]
name = "default"
listener = "web"
path_prefix = "/"
pool = "mesh"

[[routes]]
name = "secure"
listener = "https"
path_prefix = "/"
pool = "mesh"

# /api/... reaches the clusters as /... with a header added each way.
[[routes]]
name = "api"
listener = "web"
path_prefix = "/api"
pool = "mesh"
rewrite_prefix = "/"
request_headers = {{ set = {{ "x-meridian-route" = "api" }} }}
response_headers = {{ set = {{ "x-served-by" = "meridian" }} }}
# 10 requests per second per client address, 10 at once; over that, 429 with Retry-After.
# global: the rate holds across every appliance of the cluster once more nodes join.
rate_limit = {{ requests = 10, burst = 10, key = {{ by = "client_ip" }}, global = true }}

# Static assets: compressed for clients that accept it (zstd, br, gzip or deflate), and
# cached (each encoding its own entry) for as long as the backends say (max-age=60), then
# served stale for 30 s more while one request refreshes it.
[[routes]]
name = "assets"
listener = "web"
path_prefix = "/assets"
pool = "mesh"
compression = {{ level = 5 }}
cache = {{ stale_while_revalidate_seconds = 30 }}

# The old site moved: a permanent redirect, answered by Meridian itself.
[[routes]]
name = "old-site"
listener = "web"
path_prefix = "/old"
pool = "mesh"
redirect = {{ path = "/", status = 301 }}

[[pools]]
name = "mesh"
health_check = "gateway"
members = [{{ address = "{EAST}:{port}" }}, {{ address = "{WEST}:{port}" }}]

[[health_checks]]
name = "gateway"
path = "/healthz"
expect_body = "ok"
interval_ms = 1000
timeout_ms = 500
rise = 2
fall = 2

[[zones]]
name = "{DEMO_ZONE}"
ns = ["ns1"]
soa = {{ mname = "ns1", rname = "hostmaster" }}
records = [
  {{ name = "ns1", type = "A", value = "127.0.0.1" }},
  {{ name = "www", type = "CNAME", value = "app" }},
  {{ name = "@", type = "TXT", value = "meridian demo zone" }},
  {{ name = "lb-east", type = "A", value = "{EAST}" }},
  {{ name = "lb-west", type = "A", value = "{WEST}" }},
]
# Zone transfers (AXFR/IXFR) to this host, signed with the demo's TSIG key; no NOTIFY, as no
# secondary server listens here.
secondaries = [
  {{ address = "127.0.0.1", tsig_key = "{DEMO_XFR_KEY}", notify = false }},
]

[[gslb_records]]
name = "app.{DEMO_ZONE}"
ttl = 10
sites = [
  {{ name = "east", address = "{EAST}", port = {port}, health_check = "gateway" }},
  {{ name = "west", address = "{WEST}", port = {port}, health_check = "gateway" }},
]

# Failover: east while it is healthy, west only when east is down.
[[gslb_records]]
name = "failover.{DEMO_ZONE}"
ttl = 10
policy = "failover"
sites = [
  {{ name = "east", address = "{EAST}", port = {port}, health_check = "gateway", priority = 1 }},
  {{ name = "west", address = "{WEST}", port = {port}, health_check = "gateway", priority = 2 }},
]

# CNAME sites: the answer names the picked site's host (a cloud load balancer's, say); here
# both are names of this zone, so the answer also carries their address. No health check:
# probes resolve a site's name with the system's resolver, which does not know the demo zone.
[[gslb_records]]
name = "cdn.{DEMO_ZONE}"
ttl = 10
policy = "failover"
sites = [
  {{ name = "east", cname = "lb-east.{DEMO_ZONE}", priority = 1 }},
  {{ name = "west", cname = "lb-west.{DEMO_ZONE}", priority = 2 }},
]

# Capacity: east takes at most 5 answers a second; past that the load goes to west.
[[gslb_records]]
name = "capped.{DEMO_ZONE}"
ttl = 10
policy = "failover"
sites = [
  {{ name = "east", address = "{EAST}", port = {port}, health_check = "gateway", priority = 1, capacity = 5 }},
  {{ name = "west", address = "{WEST}", port = {port}, health_check = "gateway", priority = 2 }},
]

# Geo: clients (or the EDNS Client Subnet their resolver sends) in the east network get east,
# in the west network get west, anyone else gets both. A region whose sites are all down
# spills to the other.
[[regions]]
name = "east"
networks = ["198.51.100.0/24"]
location = "40.71,-74.01"
spill_to = ["west"]

[[regions]]
name = "west"
networks = ["203.0.113.0/24"]
location = "37.77,-122.42"
spill_to = ["east"]

[[gslb_records]]
name = "geo.{DEMO_ZONE}"
ttl = 10
steer = "geo"
sites = [
  {{ name = "east", address = "{EAST}", port = {port}, health_check = "gateway", region = "east" }},
  {{ name = "west", address = "{WEST}", port = {port}, health_check = "gateway", region = "west" }},
]
"#,
        proxy = args.proxy,
        tcp = args.tcp,
        https = args.https,
    );
    // The template is ours; a failure here is a bug in this file, caught by the demo test.
    model::parse::from_toml(&toml).unwrap_or_default()
}

fn print_banner(node: &Node, args: &DemoArgs) {
    let data = node.data_dir.display();
    let password = match &node.initial_password {
        Some(p) => format!("{p}   (shown once; also in {data}/{INITIAL_PASSWORD_FILE})"),
        None => format!("set on the first run; see {data}/{INITIAL_PASSWORD_FILE} if you kept it"),
    };
    println!(
        r#"
Meridian demo is running: one node, data in {data}

  Console     {admin_url}/            user admin
  Password    {password}
  Proxy       curl -s http://{proxy}/                        (alternates east / west)
  HTTP/2      curl -s --http2-prior-knowledge http://{proxy}/
  Rewrite     curl -si http://{proxy}/api/hello              (upstream sees /hello)
  Redirect    curl -si http://{proxy}/old/page               (301 to /)
  Compressed  curl -s --compressed -D - -o /dev/null http://{proxy}/assets/site.css  (content-encoding)
  Cached      curl -s -D - -o /dev/null http://{proxy}/assets/site.css      (again: X-Cache: HIT, Age)
  Purge       MERIDIAN_TOKEN=<token> meridian cache purge --tag assets     (every node; /console/cache)
  Rate limit  for i in $(seq 30); do curl -s -o /dev/null -w '%{{http_code}} ' http://{proxy}/api/hello; done  (429s past 10/s)
  HTTPS       curl -sk https://{https}/                      (TLS terminated; certificate "{DEMO_CERT}")
  TCP (L4)    curl -s http://{tcp}/                        (bytes proxied, not parsed)
  GSLB DNS    dig @{dns_ip} -p {dns_port} app.{DEMO_ZONE} A +short
  Failover    dig @{dns_ip} -p {dns_port} failover.{DEMO_ZONE} A +short      (east; west when east is down)
  CNAME site  dig @{dns_ip} -p {dns_port} cdn.{DEMO_ZONE} +short      (lb-east's name and address; west's when east is drained)
  Capacity    for i in $(seq 8); do dig @{dns_ip} -p {dns_port} capped.{DEMO_ZONE} +short; done  (east 5/s, then west)
  Geo         dig @{dns_ip} -p {dns_port} geo.{DEMO_ZONE} A +subnet=198.51.100.7/24   (east; 203.0.113.0/24 gets west)
  Explain     MERIDIAN_TOKEN=<token> meridian dns explain geo.{DEMO_ZONE} --ecs 198.51.100.0/24
  Transfer    dig @{dns_ip} -p {dns_port} {DEMO_ZONE} AXFR -k {data}/{DEMO_XFR_KEY_FILE}   (TSIG-signed; unsigned is refused)
  API token   MERIDIAN_API={admin_url} MERIDIAN_PASSWORD=<password> meridian token create
  Config      MERIDIAN_API={admin_url} MERIDIAN_TOKEN=<token> meridian config get
  Drain       MERIDIAN_TOKEN=<token> meridian member --pool mesh --address {EAST}:{port} draining
  Cluster     MERIDIAN_TOKEN=<token> meridian cluster status   (members, lag, certificate expiry; /console/cluster)
  Join token  MERIDIAN_TOKEN=<token> meridian cluster token    (a second node: meridian serve --join {cluster} --token <it>)
  Pages       {admin_url}/console/pools/mesh (live counters, Drain/Disable), /console/history
              (diff, rollback), /console/audit, /console/users (viewer and operator roles)

Backends "east" ({EAST}:{port}) and "west" ({WEST}:{port}) stand in for two mesh clusters.
Stop with Ctrl-C; run again on the same folder to keep the config.
"#,
        admin_url = node.admin_url,
        proxy = args.proxy,
        tcp = args.tcp,
        https = args.https,
        dns_ip = node.dns.ip(),
        dns_port = node.dns.port(),
        port = args.backend_port,
        cluster = node.cluster_addr,
    );
}

/// A tiny HTTP server that says which cluster it is; `/healthz` answers 200.
async fn spawn_backend(name: &'static str, addr: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind demo backend {name} on {addr}"))?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: Request<hyper::body::Incoming>| async move {
                        Ok::<_, Infallible>(backend_answer(name, &req))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(())
}

/// A few KB of stylesheet, as a cluster would serve under `/assets/`.
fn asset(name: &str, path: &str) -> String {
    let mut css = format!("/* {path}, served by the {name} cluster */\n");
    for i in 0..60 {
        css.push_str(&format!(
            ".card-{i} {{ margin: 0 auto; padding: {}px; border: 1px solid #d0d7de; border-radius: 6px; }}\n",
            i % 12
        ));
    }
    css
}

fn backend_answer<B>(name: &str, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.uri().path().starts_with("/assets/") {
        let mut resp = Response::new(Full::new(Bytes::from(asset(name, req.uri().path()))));
        let h = resp.headers_mut();
        h.insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/css; charset=utf-8"),
        );
        h.insert(
            hyper::header::CACHE_CONTROL,
            hyper::header::HeaderValue::from_static("public, max-age=60"),
        );
        // Tags for purges by tag, and a validator for revalidation.
        h.insert(
            "surrogate-key",
            hyper::header::HeaderValue::from_static("assets css"),
        );
        if let Ok(v) = hyper::header::HeaderValue::from_str(&format!("\"{name}-v1\"")) {
            h.insert(hyper::header::ETAG, v);
        }
        if let Ok(v) = hyper::header::HeaderValue::from_str(name) {
            h.insert("x-demo-cluster", v);
        }
        return resp;
    }
    let body = if req.uri().path() == "/healthz" {
        "ok\n".to_string()
    } else {
        let xff = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        let route = req
            .headers()
            .get("x-meridian-route")
            .and_then(|v| v.to_str().ok())
            .map(|r| format!(", route {r}"))
            .unwrap_or_default();
        format!(
            "hello from {name}: {} {} (x-forwarded-for: {xff}{route})\n",
            req.method(),
            req.uri().path()
        )
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    if let Ok(v) = hyper::header::HeaderValue::from_str(name) {
        resp.headers_mut().insert("x-demo-cluster", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn demo_config_is_valid() {
        let cli = crate::cli::Cli::parse_from(["meridian", "demo"]);
        let crate::cli::Command::Demo(args) = cli.command else {
            panic!("demo args");
        };
        let spec = demo_spec(&args);
        let cfg = model::validate(&spec).expect("demo config validates");
        assert_eq!(cfg.pools[0].members.len(), 2);
        assert_eq!(cfg.listeners.len(), 3);
        let https = cfg
            .listeners
            .iter()
            .find(|l| l.tls.is_some())
            .expect("https");
        assert_eq!(
            https.tls.as_ref().map(|t| t.certificates.clone()),
            Some(vec![DEMO_CERT.to_string()])
        );
        assert!(cfg.routes.iter().any(|r| r.redirect.is_some()));
        assert_eq!(cfg.gslb_records[0].sites.len(), 2);
        assert_eq!(cfg.gslb_records[1].policy, model::GslbPolicy::Failover);
    }
}
