//! The CLI and `meridian demo`, run as an operator would.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_gets_applies_and_validates_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Meridian::start(&dir.path().join("n1")).await;
    let api = node.admin.clone();

    let out = Command::new(BIN)
        .args(["token", "create", "--name", "cli-test"])
        .env("MERIDIAN_API", &api)
        .env("MERIDIAN_PASSWORD", node.initial_password())
        .output()
        .await
        .expect("token create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(token.starts_with("mrd_"));

    let backend = Backend::start("east", "127.0.0.2").await;
    let file = dir.path().join("cluster.toml");
    std::fs::write(&file, config(free_port(), &[&backend], 500, 2)).expect("write");
    // A blind overwrite must be asked for: --if-match or --force.
    let out = Command::new(BIN)
        .args(["config", "apply", "-f"])
        .arg(&file)
        .env("MERIDIAN_API", &api)
        .env("MERIDIAN_TOKEN", &token)
        .output()
        .await
        .expect("apply");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--if-match"));
    let out = Command::new(BIN)
        .args(["config", "apply", "--if-match", "0", "-f"])
        .arg(&file)
        .env("MERIDIAN_API", &api)
        .env("MERIDIAN_TOKEN", &token)
        .output()
        .await
        .expect("apply");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("applied: revision 1"));

    // Admin states from the CLI; the history says the change came through the CLI.
    let out = Command::new(BIN)
        .args(["member", "--pool", "mesh", "--address"])
        .arg(backend.addr.to_string())
        .arg("draining")
        .env("MERIDIAN_API", &api)
        .env("MERIDIAN_TOKEN", &token)
        .output()
        .await
        .expect("member");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (spec, _) = node.get_config(&token).await;
    assert_eq!(spec["pools"][0]["members"][0]["state"], "draining");
    let out = Command::new(BIN)
        .args([
            "site",
            "--record",
            "app.gslb.test",
            "--site",
            "east",
            "disabled",
        ])
        .env("MERIDIAN_API", &api)
        .env("MERIDIAN_TOKEN", &token)
        .output()
        .await
        .expect("site");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let history: serde_json::Value = node
        .http
        .get(node.url("/api/v1/history"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("history")
        .json()
        .await
        .expect("json");
    assert_eq!(history[0]["interface"], "cli", "{history}");
    assert_eq!(
        history[0]["summary"], "save gslb_records/app.gslb.test",
        "{history}"
    );

    // A viewer token reads but cannot change anything.
    let out = Command::new(BIN)
        .args([
            "token",
            "create",
            "--name",
            "ro",
            "--role",
            "viewer",
            "--expires-days",
            "1",
        ])
        .env("MERIDIAN_API", &api)
        .env("MERIDIAN_PASSWORD", node.initial_password())
        .output()
        .await
        .expect("token create");
    assert!(out.status.success());
    let viewer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out = Command::new(BIN)
        .args(["member", "--pool", "mesh", "--address"])
        .arg(backend.addr.to_string())
        .arg("enabled")
        .env("MERIDIAN_API", &api)
        .env("MERIDIAN_TOKEN", &viewer)
        .output()
        .await
        .expect("member");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"));

    let out = Command::new(BIN)
        .args(["config", "get", "--format", "toml"])
        .env("MERIDIAN_API", &api)
        .env("MERIDIAN_TOKEN", &token)
        .output()
        .await
        .expect("get");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&backend.addr.to_string()), "{text}");
    // What `get` prints applies again unchanged.
    std::fs::write(&file, text.as_bytes()).expect("write");
    let out = Command::new(BIN)
        .args(["config", "validate", "-f"])
        .arg(&file)
        .output()
        .await
        .expect("validate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A broken file is refused with every error listed, locally and by the API.
    std::fs::write(
        &file,
        "api_version = \"meridian/v1\"\npools = [{ name = \"p\", members = [{ address = \"x\" }] }]\nroutes = [{ name = \"r\", listener = \"l\", pool = \"p\" }]\n",
    )
    .expect("write");
    let out = Command::new(BIN)
        .args(["config", "validate", "-f"])
        .arg(&file)
        .output()
        .await
        .expect("validate");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pools[0].members[0].address") && err.contains("routes[0].listener"),
        "{err}"
    );
    let out = Command::new(BIN)
        .args(["config", "apply", "--force", "-f"])
        .arg(&file)
        .env("MERIDIAN_API", &api)
        .env("MERIDIAN_TOKEN", &token)
        .output()
        .await
        .expect("apply");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("422") && err.contains("routes[0].listener"),
        "{err}"
    );

    // Without a token the CLI says how to get one.
    let out = Command::new(BIN)
        .args(["config", "get"])
        .env("MERIDIAN_API", &api)
        .env_remove("MERIDIAN_TOKEN")
        .output()
        .await
        .expect("get");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("meridian token create"));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_explains_every_subcommand() {
    let out = Command::new(BIN)
        .arg("--help")
        .output()
        .await
        .expect("help");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for sub in [
        "demo", "serve", "config", "token", "status", "member", "site", "dns", "cluster",
    ] {
        assert!(text.contains(sub), "{sub} missing from --help:\n{text}");
    }
    for sub in [
        vec!["config", "--help"],
        vec!["config", "apply", "--help"],
        vec!["serve", "--help"],
    ] {
        let out = Command::new(BIN).args(&sub).output().await.expect("help");
        assert!(out.status.success(), "{sub:?}");
    }
}

/// Starts `meridian demo` on free ports and returns the child and its banner.
async fn start_demo(dir: &std::path::Path, ports: &[u16; 7]) -> (tokio::process::Child, String) {
    let mut child = Command::new(BIN)
        .arg("demo")
        .arg("--data-dir")
        .arg(dir)
        .args(["--admin", &format!("127.0.0.1:{}", ports[0])])
        .args(["--dns", &format!("127.0.0.1:{}", ports[1])])
        .args(["--proxy", &format!("127.0.0.1:{}", ports[2])])
        .args(["--cluster", &format!("127.0.0.1:{}", ports[3])])
        .args(["--backend-port", &ports[4].to_string()])
        .args(["--tcp", &format!("127.0.0.1:{}", ports[5])])
        .args(["--https", &format!("127.0.0.1:{}", ports[6])])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("demo");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut banner = String::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            banner.push_str(&line);
            banner.push('\n');
            if line.starts_with("meridian ready: ") {
                break;
            }
        }
    })
    .await
    .expect("demo ready in time");
    (child, banner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_works_and_keeps_its_config_across_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("demo");
    let ports = [
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    ];
    let (mut child, banner) = start_demo(&data, &ports).await;
    assert!(banner.contains("curl -s http://"), "{banner}");
    assert!(banner.contains("dig @127.0.0.1 -p"), "{banner}");
    assert!(banner.contains("shown once"), "{banner}");
    let revision = banner
        .lines()
        .find_map(|l| l.strip_prefix("meridian ready: "))
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|kv| kv.strip_prefix("revision="))
        })
        .map(str::to_string)
        .expect("revision");

    let client = reqwest::Client::new();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..6 {
        let body = client
            .get(format!("http://127.0.0.1:{}/", ports[2]))
            .send()
            .await
            .expect("proxy")
            .text()
            .await
            .expect("body");
        seen.insert(body.split(':').next().unwrap_or("").to_string());
    }
    assert!(
        seen.contains("hello from east") && seen.contains("hello from west"),
        "{seen:?}"
    );
    // Every line the banner offers works as printed (curl is the real client).
    let curl = |args: Vec<String>| async move {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "5"])
            .args(&args)
            .output()
            .await
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let proxy = format!("http://127.0.0.1:{}", ports[2]);
    let h2 = curl(vec![
        "-w".into(),
        "%{http_version}".into(),
        "--http2-prior-knowledge".into(),
        format!("{proxy}/"),
    ])
    .await;
    assert!(h2.starts_with("hello from") && h2.ends_with('2'), "{h2}");
    let api = curl(vec!["-i".into(), format!("{proxy}/api/hello")]).await;
    assert!(
        api.contains("GET /hello") && api.contains("route api"),
        "{api}"
    );
    assert!(
        api.to_ascii_lowercase().contains("x-served-by: meridian"),
        "{api}"
    );
    // Compressed assets: the encoding curl accepts, with Vary, and the text arrives whole.
    assert!(banner.contains("--compressed"), "{banner}");
    let head = curl(vec![
        "--compressed".into(),
        "-D".into(),
        "-".into(),
        "-o".into(),
        "/dev/null".into(),
        format!("{proxy}/assets/site.css"),
    ])
    .await
    .to_ascii_lowercase();
    assert!(
        ["zstd", "br", "gzip"]
            .iter()
            .any(|c| head.contains(&format!("content-encoding: {c}"))),
        "{head}"
    );
    assert!(head.contains("vary: accept-encoding"), "{head}");
    let css = curl(vec![
        "--compressed".into(),
        format!("{proxy}/assets/site.css"),
    ])
    .await;
    assert!(css.contains(".card-59 {"), "decoded whole: {css}");
    let plain = curl(vec![
        "-D".into(),
        "-".into(),
        format!("{proxy}/assets/site.css"),
    ])
    .await;
    assert!(
        !plain.to_ascii_lowercase().contains("content-encoding"),
        "no Accept-Encoding, no compression: {plain}"
    );
    // Cached: the plain variant was stored above, so it is a hit now, with an Age.
    assert!(banner.contains("X-Cache: HIT"), "{banner}");
    let again = curl(vec![
        "-D".into(),
        "-".into(),
        "-o".into(),
        "/dev/null".into(),
        format!("{proxy}/assets/site.css"),
    ])
    .await
    .to_ascii_lowercase();
    assert!(again.contains("x-cache: hit"), "{again}");
    assert!(again.contains("\nage: "), "{again}");
    // /api/ is limited to 10 requests per second per client: a quick loop gets 429s with
    // Retry-After, and the metrics count both outcomes.
    assert!(banner.contains("Rate limit"), "{banner}");
    let mut codes = Vec::new();
    let mut retry_after = None;
    for _ in 0..30 {
        let r = client
            .get(format!("{proxy}/api/hello"))
            .send()
            .await
            .expect("api");
        if r.status() == 429 {
            retry_after = r.headers().get("retry-after").cloned();
        }
        codes.push(r.status().as_u16());
    }
    let ok = codes.iter().filter(|c| **c == 200).count();
    let limited = codes.iter().filter(|c| **c == 429).count();
    // The burst is 10; one went to /api/hello above.
    assert!((9..=15).contains(&ok), "{codes:?}");
    assert_eq!(ok + limited, 30, "{codes:?}");
    assert_eq!(retry_after.as_ref().map(|v| v.as_bytes()), Some(&b"1"[..]));
    let old = curl(vec!["-i".into(), format!("{proxy}/old/page")]).await;
    assert!(old.starts_with("HTTP/1.1 301"), "{old}");
    assert!(
        old.to_ascii_lowercase()
            .contains(&format!("location: http://127.0.0.1:{}/\r", ports[2])),
        "{old}"
    );
    let tcp = curl(vec![format!("http://127.0.0.1:{}/", ports[5])]).await;
    assert!(tcp.starts_with("hello from"), "{tcp}");
    // HTTPS with the generated certificate; ALPN picks HTTP/2.
    assert!(banner.contains("curl -sk https://"), "{banner}");
    let https = curl(vec![
        "-k".into(),
        "-w".into(),
        "%{http_version} %{ssl_verify_result}".into(),
        format!("https://127.0.0.1:{}/", ports[6]),
    ])
    .await;
    assert!(
        https.starts_with("hello from") && https.contains("\n2 "),
        "{https}"
    );
    assert!(https.contains("x-forwarded-for"), "{https}");

    // `dig` of an A record on the demo's DNS port (`+short` unless other options are given).
    let dig_with = |name: &'static str, opts: Vec<String>| {
        let port = ports[1].to_string();
        async move {
            let out = Command::new("dig")
                .args(["@127.0.0.1", "-p", &port, name, "A"])
                .args(if opts.is_empty() {
                    vec!["+short".to_string()]
                } else {
                    opts
                })
                .output()
                .await
                .expect("dig");
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    let dig = |name: &'static str| dig_with(name, Vec::new());
    let text = dig("app.demo.meridian.test").await;
    assert!(
        text.contains("127.0.0.2") && text.contains("127.0.0.3"),
        "{text}"
    );
    // A GSLB record of CNAME sites answers the picked site's name, chased in the zone.
    assert!(banner.contains("cdn."), "{banner}");
    let cdn = dig("cdn.demo.meridian.test").await;
    assert_eq!(
        cdn.split_whitespace().collect::<Vec<_>>(),
        ["lb-east.demo.meridian.test.", "127.0.0.2"],
        "{cdn}"
    );

    // Capacity: east takes 5 answers a second, then west gets the load. Twelve quick queries
    // fall in at most two seconds, one of which holds six or more: west shows up.
    assert!(banner.contains("capped."), "{banner}");
    let mut capped = Vec::new();
    for _ in 0..12 {
        capped.push(dig("capped.demo.meridian.test").await.trim().to_string());
    }
    let east = capped.iter().filter(|a| *a == "127.0.0.2").count();
    let west = capped.iter().filter(|a| *a == "127.0.0.3").count();
    assert!(east >= 5 && west >= 1 && east + west == 12, "{capped:?}");

    // The zone transfers to dig signed with the demo's TSIG key (dig checks every message's
    // signature and says so when one fails), and not to dig without it.
    assert!(banner.contains("AXFR -k "), "{banner}");
    let key = data.join("demo-xfr.key");
    let axfr = dig_with(
        "demo.meridian.test",
        vec![
            "-t".into(),
            "AXFR".into(),
            "-k".into(),
            key.display().to_string(),
        ],
    )
    .await;
    assert!(axfr.contains("meridian demo zone"), "{axfr}");
    assert!(
        axfr.contains("app.demo.meridian.test.") && axfr.contains("127.0.0.3"),
        "{axfr}"
    );
    assert_eq!(axfr.matches("\tSOA\t").count(), 2, "{axfr}");
    assert!(axfr.contains("TSIG") && !axfr.contains("failed"), "{axfr}");
    let unsigned = dig_with("demo.meridian.test", vec!["-t".into(), "AXFR".into()]).await;
    assert!(unsigned.contains("Transfer failed"), "{unsigned}");

    // The failover name answers east only while east is healthy.
    assert!(banner.contains("failover."), "{banner}");
    let text = dig("failover.demo.meridian.test").await;
    assert_eq!(text.trim(), "127.0.0.2", "{text}");
    // The geo name steers by the client subnet the resolver sends, and says for how much of
    // it the answer holds (dig shows the echoed option as address/source/scope).
    assert!(banner.contains("+subnet=198.51.100.7/24"), "{banner}");
    for (subnet, want, echoed) in [
        ("198.51.100.7/24", "127.0.0.2", "198.51.100.0/24/24"),
        ("203.0.113.7/24", "127.0.0.3", "203.0.113.0/24/24"),
    ] {
        let short = dig_with(
            "geo.demo.meridian.test",
            vec![format!("+subnet={subnet}"), "+short".into()],
        )
        .await;
        assert_eq!(short.trim(), want, "{subnet}: {short}");
        let full = dig_with("geo.demo.meridian.test", vec![format!("+subnet={subnet}")]).await;
        assert!(full.contains(&format!("CLIENT-SUBNET: {echoed}")), "{full}");
    }
    let other = dig_with(
        "geo.demo.meridian.test",
        vec!["+subnet=192.0.2.0/24".into(), "+short".into()],
    )
    .await;
    assert!(
        other.contains("127.0.0.2") && other.contains("127.0.0.3"),
        "{other}"
    );
    // `meridian dns explain` tells why.
    let api = format!("http://127.0.0.1:{}", ports[0]);
    let password = std::fs::read_to_string(data.join("initial-admin-password")).expect("password");
    let out = Command::new(BIN)
        .args(["token", "create", "--name", "demo-test"])
        .env("MERIDIAN_API", &api)
        .env("MERIDIAN_PASSWORD", password.trim())
        .output()
        .await
        .expect("token create");
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // Until the first probe round, the site's health is unknown (and answered as up).
    let mut text = String::new();
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let out = Command::new(BIN)
            .args([
                "dns",
                "explain",
                "geo.demo.meridian.test",
                "--ecs",
                "198.51.100.0/24",
            ])
            .env("MERIDIAN_API", &api)
            .env("MERIDIAN_TOKEN", &token)
            .output()
            .await
            .expect("dns explain");
        text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if text.contains("node 1 up") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(text.contains("is in region east"), "{text}");
    assert!(text.contains("ECS scope /24"), "{text}");
    assert!(
        text.contains("127.0.0.2") && !text.contains("A 127.0.0.3"),
        "{text}"
    );
    assert!(text.contains("node 1 up"), "{text}");
    let out = Command::new(BIN)
        .args([
            "dns",
            "explain",
            "geo.demo.meridian.test",
            "--ecs",
            "nonsense",
        ])
        .env("MERIDIAN_API", &api)
        .env("MERIDIAN_TOKEN", &token)
        .output()
        .await
        .expect("dns explain");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ecs"),
        "{out:?}"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().expect("pid").to_string()])
        .status()
        .await;
    let _ = tokio::time::timeout(Duration::from_secs(15), child.wait()).await;

    // The second run keeps the config and does not make a new password.
    let (_child, banner) = start_demo(&data, &ports).await;
    assert!(!banner.contains("shown once"), "{banner}");
    assert!(banner.contains(&format!("revision={revision}")), "{banner}");
}

/// `dig` against a node; the whole output.
async fn dig(node: &Meridian, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{}", node.dns.ip()))
        .args(["-p", &node.dns.port().to_string()])
        .args(args)
        .output()
        .await
        .expect("dig");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A zone file imported from the CLI serves every record type it holds; a bad one is refused
/// with every problem listed and nothing applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_file_imports_and_serves_wildcards_delegations_srv_and_caa() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Meridian::start(&dir.path().join("n1")).await;
    let token = node.token().await;
    let file = dir.path().join("example.org.zone");
    std::fs::write(
        &file,
        r#"$ORIGIN example.org.
$TTL 3600
@        IN SOA ns1 hostmaster ( 1 7200 900 1209600 300 )
         IN NS  ns1
         IN CAA 0 issue "letsencrypt.org"
ns1      IN A   192.0.2.53
host     IN A   192.0.2.81
*.apps   IN A   192.0.2.80
_sip._tcp IN SRV 10 5 5060 host
child    IN NS  ns.child
ns.child IN A   192.0.2.99
"#,
    )
    .expect("write");
    let import = |args: Vec<String>| {
        let api = node.admin.clone();
        let token = token.clone();
        async move {
            Command::new(BIN)
                .args(["dns", "import"])
                .args(args)
                .env("MERIDIAN_API", &api)
                .env("MERIDIAN_TOKEN", &token)
                .output()
                .await
                .expect("dns import")
        }
    };
    let out = import(vec![
        "example.org".into(),
        "-f".into(),
        file.display().to_string(),
        "--force".into(),
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported example.org"));

    let short = |args: &'static [&'static str]| {
        let node = &node;
        async move {
            let mut all = args.to_vec();
            all.push("+short");
            dig(node, &all).await.trim().to_string()
        }
    };
    assert_eq!(
        short(&["anything.apps.example.org", "A"]).await,
        "192.0.2.80"
    );
    assert_eq!(
        short(&["_sip._tcp.example.org", "SRV"]).await,
        "10 5 5060 host.example.org."
    );
    assert_eq!(
        short(&["example.org", "CAA"]).await,
        "0 issue \"letsencrypt.org\""
    );
    // A name under the delegation: a referral (no AA) with the child's NS and its glue.
    let referral = dig(&node, &["www.child.example.org", "A", "+norec"]).await;
    assert!(referral.contains("status: NOERROR"), "{referral}");
    assert!(!referral.contains(" aa"), "not authoritative: {referral}");
    assert!(
        referral.contains("AUTHORITY: 1") && referral.contains("ns.child.example.org."),
        "{referral}"
    );
    assert!(referral.contains("192.0.2.99"), "glue: {referral}");
    // A name that does not exist, with no wildcard above it.
    let nx = dig(&node, &["nope.example.org", "A"]).await;
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");

    // A bad file: every problem listed, exit status 1, nothing applied.
    let (_, before) = node.get_config(&token).await;
    std::fs::write(&file, "$INCLUDE /etc/passwd\n@ 60 IN SOA ns1 h 1 2 3 4 5\n").expect("write");
    let out = import(vec![
        "example.org".into(),
        "-f".into(),
        file.display().to_string(),
        "--force".into(),
    ])
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("422") && err.contains("zone_file: line 1: $INCLUDE"),
        "{err}"
    );
    assert_eq!(node.get_config(&token).await.1, before, "nothing applied");
    // Without --if-match or --force, the CLI refuses to overwrite blindly.
    let out = import(vec![
        "example.org".into(),
        "-f".into(),
        file.display().to_string(),
    ])
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
}
