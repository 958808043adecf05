//! Zone transfers to a real secondary: Knot DNS (`knotd`, Debian's package) pulls a zone from
//! the `meridian` binary over AXFR/IXFR signed with a TSIG key made by the CLI, and follows
//! each change through Meridian's signed NOTIFY (its own refresh timer is an hour away).

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::harness::*;

/// A zone with one secondary (Knot at `knot_port`) and `www` at `www`.
fn zone_config(knot_port: u16, www: &str, extra: &str) -> String {
    format!(
        r#"
api_version = "meridian/v1"

[[zones]]
name = "example.org"
ns = ["ns1"]
soa = {{ mname = "ns1", rname = "hostmaster" }}
records = [
  {{ name = "ns1", type = "A", value = "192.0.2.53" }},
  {{ name = "www", type = "A", value = "{www}" }},
  {{ name = "@", type = "TXT", value = "{extra}" }},
]
secondaries = [
  {{ address = "127.0.0.1:{knot_port}", tsig_key = "xfr.example.org" }},
]
"#
    )
}

/// `knotd` as the secondary of example.org, with Meridian at `primary` as its primary.
struct Knot {
    child: Child,
    port: u16,
}

impl Knot {
    async fn start(
        dir: &std::path::Path,
        port: u16,
        primary: std::net::SocketAddr,
        secret: &str,
    ) -> Knot {
        let run = dir.join("knot");
        std::fs::create_dir_all(&run).expect("knot dir");
        let conf = run.join("knot.conf");
        std::fs::write(
            &conf,
            format!(
                r#"server:
    listen: 127.0.0.1@{port}
    rundir: "{run}"
database:
    storage: "{run}"
log:
  - target: stderr
    any: info
key:
  - id: xfr.example.org
    algorithm: hmac-sha256
    secret: {secret}
remote:
  - id: meridian
    address: {ip}@{primary_port}
    key: xfr.example.org
acl:
  - id: notify-from-meridian
    address: {ip}
    key: xfr.example.org
    action: notify
template:
  - id: default
    storage: "{run}"
zone:
  - domain: example.org
    master: meridian
    acl: notify-from-meridian
"#,
                run = run.display(),
                ip = primary.ip(),
                primary_port = primary.port(),
            ),
        )
        .expect("write knot.conf");
        let log = std::fs::File::create(run.join("knotd.log")).expect("log file");
        let child = Command::new("knotd")
            .args(["-c", &conf.display().to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("knotd runs (apt-get install knot)");
        Knot { child, port }
    }

    async fn dig(&self, name: &str, rtype: &str) -> String {
        let out = Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &self.port.to_string(),
                name,
                rtype,
                "+short",
            ])
            .output()
            .await
            .expect("dig");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_knot_secondary_transfers_the_zone_and_follows_notify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Meridian::start(&dir.path().join("n1")).await;
    let token = node.token().await;

    // The key: made by the CLI, shown once in the clause secondaries take.
    let out = Command::new(BIN)
        .args(["dns", "tsig", "add", "xfr.example.org", "--generate"])
        .env("MERIDIAN_API", &node.admin)
        .env("MERIDIAN_TOKEN", &token)
        .output()
        .await
        .expect("meridian dns tsig add");
    let clause = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = clause
        .lines()
        .find_map(|l| l.trim().strip_prefix("secret \""))
        .and_then(|s| s.strip_suffix("\";"))
        .expect("the clause carries the secret")
        .to_string();
    // Listing shows the key, never its secret.
    let list = Command::new(BIN)
        .args(["dns", "tsig", "list"])
        .env("MERIDIAN_API", &node.admin)
        .env("MERIDIAN_TOKEN", &token)
        .output()
        .await
        .expect("meridian dns tsig list");
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        listed.contains("xfr.example.org.") && listed.contains("hmac-sha256"),
        "{listed}"
    );
    assert!(!listed.contains(&secret));
    let api_list = node
        .http
        .get(node.url("/api/v1/dns/tsig-keys"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("list keys")
        .text()
        .await
        .expect("body");
    assert!(!api_list.contains(&secret), "{api_list}");

    let knot_port = free_port();
    let (status, body) = node
        .put_config(&token, zone_config(knot_port, "192.0.2.10", "first"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let knot = Knot::start(dir.path(), knot_port, node.dns, &secret).await;

    // Knot has no copy of the zone: it bootstraps with a transfer.
    let took = eventually(Duration::from_secs(20), || async {
        knot.dig("www.example.org", "A").await == "192.0.2.10"
    })
    .await;
    let log = || std::fs::read_to_string(dir.path().join("knot/knotd.log")).unwrap_or_default();
    assert!(
        took.is_some(),
        "knot never served the zone; its log:\n{}",
        log()
    );

    // A change reaches Knot through NOTIFY and an incremental transfer.
    let (status, body) = node
        .put_config(&token, zone_config(knot_port, "192.0.2.11", "second"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, revision) = node.get_config(&token).await;
    let took = eventually(Duration::from_secs(10), || async {
        knot.dig("www.example.org", "A").await == "192.0.2.11"
    })
    .await;
    assert!(
        took.is_some(),
        "the change never reached knot; its log:\n{}",
        log()
    );
    let soa = knot.dig("example.org", "SOA").await;
    assert_eq!(
        soa.split_whitespace().nth(2),
        Some(revision.to_string().as_str()),
        "knot's serial is the config revision: {soa}"
    );
    assert_eq!(knot.dig("example.org", "TXT").await, "\"second\"");

    let metrics = node.metrics(&token).await;
    assert!(
        metrics.contains(r#"meridian_dns_notify_total{result="acked"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"meridian_dns_transfers_total{outcome="incremental",type="ixfr"}"#),
        "knot asks for IXFR once it has the zone: {metrics}\n{}",
        log()
    );

    // The key cannot go while the zone uses it.
    let out = Command::new(BIN)
        .args(["dns", "tsig", "delete", "xfr.example.org"])
        .env("MERIDIAN_API", &node.admin)
        .env("MERIDIAN_TOKEN", &token)
        .output()
        .await
        .expect("meridian dns tsig delete");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("example.org"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
