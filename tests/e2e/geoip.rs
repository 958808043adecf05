//! GSLB steering by a GeoIP database the operator provides (`geoip_database`): the real binary
//! reads a MaxMind DB file written here by a minimal writer of our own, DNS answers follow the
//! countries and continents the regions list, and a new file takes effect without a restart.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::harness::*;

/// Writes a MaxMind DB (format 2.0, IPv4, 24-bit records) that maps each `(network,
/// prefix)` to a City record `(country, continent, latitude, longitude)`. Our own
/// minimal writer, so the tests need no database from elsewhere.
/// One network of the test database: address, prefix, country, continent, latitude, longitude.
type Entry<'a> = ([u8; 4], u8, &'a str, &'a str, f64, f64);

fn write_mmdb(path: &Path, entries: &[Entry<'_>]) {
    // The data section: one map per entry.
    let mut data = Vec::new();
    let mut offsets = Vec::new();
    for (_, _, country, continent, lat, lon) in entries {
        offsets.push(data.len());
        map(&mut data, 3);
        string(&mut data, "country");
        map(&mut data, 1);
        string(&mut data, "iso_code");
        string(&mut data, country);
        string(&mut data, "continent");
        map(&mut data, 1);
        string(&mut data, "code");
        string(&mut data, continent);
        string(&mut data, "location");
        map(&mut data, 2);
        string(&mut data, "latitude");
        double(&mut data, *lat);
        string(&mut data, "longitude");
        double(&mut data, *lon);
    }
    // The search tree: one node per bit of each network's path; records point at nodes,
    // at "no data" (= node count), or at data (node count + 16 + offset).
    let mut nodes: Vec<[Option<Target>; 2]> = vec![[None, None]];
    for (i, (net, prefix, ..)) in entries.iter().enumerate() {
        let bits = u32::from_be_bytes(*net);
        let mut node = 0usize;
        for depth in 0..*prefix {
            let bit = ((bits >> (31 - u32::from(depth))) & 1) as usize;
            if depth + 1 == *prefix {
                nodes[node][bit] = Some(Target::Data(offsets[i]));
            } else {
                node = match nodes[node][bit] {
                    Some(Target::Node(n)) => n,
                    _ => {
                        nodes.push([None, None]);
                        let n = nodes.len() - 1;
                        nodes[node][bit] = Some(Target::Node(n));
                        n
                    }
                };
            }
        }
    }
    let count = nodes.len();
    let mut out = Vec::new();
    for node in &nodes {
        for side in node {
            let value = match side {
                Some(Target::Node(n)) => *n,
                Some(Target::Data(offset)) => count + 16 + offset,
                None => count,
            };
            let v = u32::try_from(value).expect("small");
            out.extend_from_slice(&v.to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xab\xcd\xefMaxMind.com");
    map(&mut out, 9);
    string(&mut out, "node_count");
    uint32(&mut out, u32::try_from(count).expect("small"));
    string(&mut out, "record_size");
    uint16(&mut out, 24);
    string(&mut out, "ip_version");
    uint16(&mut out, 4);
    string(&mut out, "database_type");
    string(&mut out, "Meridian-Test-City");
    string(&mut out, "languages");
    out.extend_from_slice(&[0x00, 0x04]); // An empty array (extended type 11).
    string(&mut out, "binary_format_major_version");
    uint16(&mut out, 2);
    string(&mut out, "binary_format_minor_version");
    uint16(&mut out, 0);
    string(&mut out, "build_epoch");
    out.extend_from_slice(&[0x08, 0x02]); // uint64 (extended type 9), 8 bytes.
    out.extend_from_slice(&1_700_000_000u64.to_be_bytes());
    string(&mut out, "description");
    map(&mut out, 0);
    std::fs::write(path, out).expect("write the test database");
}

#[derive(Clone, Copy)]
enum Target {
    Node(usize),
    Data(usize),
}

fn map(out: &mut Vec<u8>, entries: u8) {
    out.push((7 << 5) | entries);
}

fn string(out: &mut Vec<u8>, s: &str) {
    let len = u8::try_from(s.len()).expect("short");
    assert!(len < 29);
    out.push((2 << 5) | len);
    out.extend_from_slice(s.as_bytes());
}

fn double(out: &mut Vec<u8>, v: f64) {
    out.push((3 << 5) | 8);
    out.extend_from_slice(&v.to_be_bytes());
}

fn uint16(out: &mut Vec<u8>, v: u16) {
    out.push((5 << 5) | 2);
    out.extend_from_slice(&v.to_be_bytes());
}

fn uint32(out: &mut Vec<u8>, v: u32) {
    out.push((6 << 5) | 4);
    out.extend_from_slice(&v.to_be_bytes());
}

/// `dig` with an EDNS Client Subnet; the `+short` answer.
async fn dig_subnet(node: &Meridian, name: &str, subnet: &str) -> String {
    let out = Command::new("dig")
        .arg(format!("@{}", node.dns.ip()))
        .args(["-p", &node.dns.port().to_string(), name, "A"])
        .arg(format!("+subnet={subnet}"))
        .arg("+short")
        .output()
        .await
        .expect("dig");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_geoip_database_steers_clients_by_country_and_continent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("test.mmdb");
    write_mmdb(
        &db,
        &[
            ([81, 0, 0, 0], 8, "DE", "EU", 52.5, 13.4),
            ([82, 0, 0, 0], 8, "FR", "EU", 48.9, 2.4),
            ([36, 0, 0, 0], 8, "JP", "AS", 35.7, 139.7),
        ],
    );
    let node = Meridian::start_with(
        &dir.path().join("n1"),
        1,
        "127.0.0.1:0",
        &format!("geoip_database = \"{}\"", db.display()),
    )
    .await;
    let token = node.token().await;
    let (status, body) = node
        .put_config(
            &token,
            r#"api_version = "meridian/v1"
[[zones]]
name = "geo.test"
ns = ["ns1"]
soa = { mname = "ns1", rname = "hostmaster" }
records = [{ name = "ns1", type = "A", value = "127.0.0.1" }]

[[regions]]
name = "germany"
countries = ["DE"]

[[regions]]
name = "europe"
continents = ["EU"]

[[regions]]
name = "lab"
networks = ["81.1.0.0/16"]

[[gslb_records]]
name = "app.geo.test"
steer = "geo"
sites = [
  { name = "berlin", address = "192.0.2.1", region = "germany" },
  { name = "paris", address = "192.0.2.2", region = "europe" },
  { name = "lab", address = "192.0.2.3", region = "lab" },
]
"#
            .to_string(),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut answers = Vec::new();
    for subnet in ["81.2.3.0/24", "82.2.3.0/24", "81.1.2.0/24", "36.1.1.0/24"] {
        answers.push(dig_subnet(&node, "app.geo.test", subnet).await);
    }
    // Germany by country; France by continent; a network of the regions table wins over the
    // database; Japan is in no region: every site.
    assert_eq!(answers[0], "192.0.2.1", "{answers:?}");
    assert_eq!(answers[1], "192.0.2.2", "{answers:?}");
    assert_eq!(answers[2], "192.0.2.3", "{answers:?}");
    assert_eq!(answers[3].lines().count(), 3, "{answers:?}");

    // The weekly update: a new file (written aside, then renamed over the old one, as
    // geoipupdate does) in which 81/8 is French. The node picks it up without a restart.
    let fresh = dir.path().join("fresh.mmdb");
    write_mmdb(&fresh, &[([81, 0, 0, 0], 8, "FR", "EU", 48.9, 2.4)]);
    std::fs::rename(&fresh, &db).expect("rename");
    let moved = eventually(Duration::from_secs(20), || async {
        dig_subnet(&node, "app.geo.test", "81.2.3.0/24").await == "192.0.2.2"
    })
    .await;
    assert!(moved.is_some(), "the new database was not picked up");
    // A broken file keeps the last good database in use.
    std::fs::write(&db, b"not a database").expect("write");
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        dig_subnet(&node, "app.geo.test", "81.2.3.0/24").await,
        "192.0.2.2"
    );
}

#[tokio::test]
async fn a_missing_geoip_database_stops_the_node_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "node_id = 1\ndata_dir = \"{}\"\nadmin_bind = \"127.0.0.1:0\"\ncluster_bind = \"127.0.0.1:0\"\n\
             dns_bind = \"127.0.0.1:0\"\ngeoip_database = \"{}\"\n",
            dir.path().join("data").display(),
            dir.path().join("missing.mmdb").display()
        ),
    )
    .expect("write");
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .output(),
    )
    .await
    .expect("exits")
    .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read the GeoIP database"), "{err}");
}
