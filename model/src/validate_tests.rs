use super::*;
use crate::parse::{from_json, from_toml};

fn good() -> ConfigSpec {
    from_toml(
        r#"
api_version = "meridian/v1"

[[listeners]]
name = "web"
bind = "127.0.0.1:8080"

[[routes]]
name = "all"
listener = "web"
host = "*.example.com"
pool = "app"

[[pools]]
name = "app"
health_check = "http"
members = [{ address = "127.0.0.2:9000" }, { address = "127.0.0.3:9000", weight = 3 }]

[[health_checks]]
name = "http"
path = "/healthz"
interval_ms = 500
timeout_ms = 200

[[zones]]
name = "example.com"
ns = ["ns1"]
soa = { mname = "ns1", rname = "hostmaster" }
records = [
  { name = "@", type = "MX", value = "10 mail" },
  { name = "www", type = "CNAME", value = "app" },
  { name = "ns1", type = "A", value = "192.0.2.53" },
  { name = "txt", type = "TXT", value = "hello world" },
  { name = "v6", type = "AAAA", value = "2001:db8::1" },
]

[[gslb_records]]
name = "app.example.com"
sites = [
  { name = "east", address = "192.0.2.10", port = 9000, health_check = "http" },
  { name = "west", address = "192.0.2.20" },
]
"#,
    )
    .expect("test config parses")
}

fn paths(r: Result<Config, ValidationErrors>) -> Vec<String> {
    match r {
        Ok(_) => panic!("expected validation errors"),
        Err(e) => e.errors.into_iter().map(|e| e.path).collect(),
    }
}

#[test]
fn good_config_compiles_to_typed_model() {
    let c = validate(&good()).expect("valid");
    assert_eq!(c.listeners[0].bind, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(c.routes[0].host, HostMatch::Suffix(".example.com".into()));
    assert_eq!(c.pools[0].members[1].weight, 3);
    assert_eq!(
        c.pools[0].health_check.as_ref().map(|h| h.interval),
        Some(Duration::from_millis(500))
    );
    let z = &c.zones[0];
    assert_eq!(z.origin, "example.com.");
    assert_eq!(z.ns, vec!["ns1.example.com.".to_string()]);
    assert!(z.records.contains(&Record {
        name: "example.com.".into(),
        ttl: 300,
        data: RecordData::MX {
            preference: 10,
            exchange: "mail.example.com.".into()
        }
    }));
    let g = &c.gslb_records[0];
    assert_eq!(g.name, "app.example.com.");
    assert_eq!(g.zone, "example.com.");
    assert_eq!(
        g.sites[0].probe,
        ProbeTarget::Addr("192.0.2.10:9000".parse().unwrap())
    );
    assert_eq!(g.sites[1].probe.port(), 80);
}

#[test]
fn every_error_is_reported_with_its_path() {
    let mut s = good();
    s.api_version = "v0".into();
    s.listeners[0].bind = "not-an-address".into();
    s.routes[0].pool = "missing".into();
    s.routes[0].listener = "nope".into();
    s.pools[0].members[0].address = "127.0.0.1:99999".into();
    let dup = s.pools[0].members[1].clone();
    s.pools[0].members.push(dup);
    s.health_checks[0].fall = 0;
    s.zones[0].records[2].value = "300.1.1.1".into();
    s.gslb_records[0].sites[1].address = "nowhere".into();
    let mut p = paths(validate(&s));
    p.sort();
    assert_eq!(
        p,
        vec![
            "api_version",
            "gslb_records[0].sites[1].address",
            "health_checks[0].fall",
            "listeners[0].bind",
            "pools[0].members[0].address",
            "pools[0].members[2].address",
            "routes[0].listener",
            "routes[0].pool",
            "zones[0].records[2].value",
        ]
    );
}

#[test]
fn duplicates_and_dangling_references_are_errors() {
    let mut s = good();
    s.pools.push(s.pools[0].clone());
    s.listeners.push(s.listeners[0].clone());
    s.pools[0].health_check = Some("ghost".into());
    let p = paths(validate(&s));
    assert!(p.contains(&"pools[1].name".to_string()), "{p:?}");
    assert!(p.contains(&"listeners[1].name".to_string()), "{p:?}");
    assert!(p.contains(&"listeners[1].bind".to_string()), "{p:?}");
    assert!(p.contains(&"pools[0].health_check".to_string()), "{p:?}");
}

#[test]
fn gslb_name_must_live_in_a_zone_and_not_clash() {
    let mut s = good();
    s.gslb_records[0].name = "app.elsewhere.org".into();
    assert_eq!(paths(validate(&s)), vec!["gslb_records[0].name"]);
    let mut s = good();
    s.gslb_records[0].name = "ns1.example.com".into();
    assert_eq!(paths(validate(&s)), vec!["gslb_records[0].name"]);
}

#[test]
fn cname_conflicts_are_rejected() {
    let mut s = good();
    s.zones[0].records.push(RecordSpec {
        name: "www".into(),
        rtype: RecordType::A,
        ttl: 60,
        value: "192.0.2.1".into(),
    });
    assert_eq!(paths(validate(&s)), vec!["zones[0].records[5].name"]);
}

#[test]
fn malformed_and_unknown_fields_name_the_path() {
    let e = from_json::<ConfigSpec>(
        br#"{"api_version":"meridian/v1","pools":[{"name":"a","bogus":1}]}"#,
    )
    .expect_err("unknown field");
    assert_eq!(e.errors[0].path, "pools[0].bogus");
    assert!(
        e.errors[0].message.contains("bogus"),
        "{}",
        e.errors[0].message
    );
    // Every unknown field is listed, not only the first.
    let e = from_json::<ConfigSpec>(
        br#"{"api_version":"meridian/v1","colour":1,"pools":[{"name":"a","bogus":1,"members":[{"address":"127.0.0.1:1","x":2}]}]}"#,
    )
    .expect_err("unknown fields");
    let mut paths: Vec<&str> = e.errors.iter().map(|e| e.path.as_str()).collect();
    paths.sort();
    assert_eq!(
        paths,
        vec!["colour", "pools[0].bogus", "pools[0].members[0].x"]
    );
    let e = from_toml::<ConfigSpec>(
        "api_version = \"meridian/v1\"\nextra = 1\n[[pools]]\nname = \"a\"\nweight = 3\n",
    )
    .expect_err("unknown toml fields");
    assert_eq!(e.errors.len(), 2, "{e:?}");
    let e = from_json::<ConfigSpec>(b"{not json").expect_err("malformed");
    assert!(e.errors[0].message.starts_with("malformed JSON"));
    let e = from_toml::<ConfigSpec>("api_version = 3").expect_err("wrong type");
    assert_eq!(e.errors[0].path, "api_version");
    let e = from_toml::<ConfigSpec>("[[listeners]\n").expect_err("malformed toml");
    assert!(
        e.errors[0].message.contains("line 1"),
        "{}",
        e.errors[0].message
    );
}

#[test]
fn spec_round_trips_through_json_and_toml() {
    let s = good();
    let json = serde_json::to_vec(&s).unwrap();
    assert_eq!(from_json::<ConfigSpec>(&json).unwrap(), s);
    let text = toml::to_string(&s).unwrap();
    assert_eq!(from_toml::<ConfigSpec>(&text).unwrap(), s);
}

#[test]
fn validation_never_panics_on_odd_strings() {
    let odd = [
        "",
        ".",
        "..",
        "*.",
        "@",
        "[::1]",
        "\u{0}",
        "a..b",
        "-",
        &"x".repeat(300),
    ];
    for v in odd {
        let mut s = good();
        s.listeners[0].bind = v.into();
        s.routes[0].host = Some(v.into());
        s.zones[0].name = v.into();
        s.zones[0].records[0].value = v.into();
        s.zones[0].records[0].name = v.into();
        s.gslb_records[0].name = v.into();
        assert!(validate(&s).is_err(), "{v:?} accepted");
    }
}

#[test]
fn host_match_specificity_orders_exact_over_wildcard() {
    assert!(
        HostMatch::Exact("a.b".into()).specificity() > HostMatch::Suffix(".b".into()).specificity()
    );
    assert!(HostMatch::Suffix(".b".into()).matches("a.b"));
    assert!(!HostMatch::Suffix(".b".into()).matches("b"));
    assert!(HostMatch::Any.matches("anything"));
}

#[test]
fn paths_must_be_valid_uri_targets() {
    let mut s = good();
    s.health_checks[0].path = "/héalth".into();
    s.routes[0].path_prefix = "/a b".into();
    let mut p = paths(validate(&s));
    p.sort();
    assert_eq!(p, vec!["health_checks[0].path", "routes[0].path_prefix"]);
    let mut s = good();
    s.health_checks[0].path = "/healthz?full=1".into();
    s.routes[0].path_prefix = "/api/v1%20x".into();
    assert!(validate(&s).is_ok());
}

#[test]
fn records_shadowed_by_a_child_zone_are_rejected() {
    let mut s = good();
    let mut child = s.zones[0].clone();
    child.name = "sub.example.com".into();
    child.records.clear();
    s.zones.push(child);
    s.zones[0].records.push(RecordSpec {
        name: "host.sub".into(),
        rtype: RecordType::A,
        ttl: 60,
        value: "192.0.2.1".into(),
    });
    assert_eq!(paths(validate(&s)), vec!["zones[0].records[5].name"]);
}

#[test]
fn cname_loops_are_rejected() {
    let mut s = good();
    // www -> app already; make app point back at www (app is a GSLB name, so move it aside).
    s.gslb_records[0].name = "other.example.com".into();
    s.zones[0].records.push(RecordSpec {
        name: "app".into(),
        rtype: RecordType::CNAME,
        ttl: 60,
        value: "www".into(),
    });
    let mut p = paths(validate(&s));
    p.sort();
    assert_eq!(
        p,
        vec!["zones[0].records[1].value", "zones[0].records[5].value"]
    );
    // A chain that ends somewhere is fine.
    let mut s = good();
    s.zones[0].records.push(RecordSpec {
        name: "alias".into(),
        rtype: RecordType::CNAME,
        ttl: 60,
        value: "www".into(),
    });
    assert!(validate(&s).is_ok());
}

#[test]
fn data_plane_settings_are_checked_with_their_paths() {
    let spec = from_toml(
        r#"
api_version = "meridian/v1"

[[listeners]]
name = "web"
bind = "127.0.0.1:8080"
pool = "app"
max_request_head_bytes = 100
max_request_line_bytes = 100000
proxy_protocol_from = ["10.0.0.0/8", "10.0.0.0/33", "nope"]

[[listeners]]
name = "db"
bind = "127.0.0.1:5432"
protocol = "tcp"

[[listeners]]
name = "db2"
bind = "127.0.0.1:5433"
protocol = "tcp"
pool = "missing"

[[routes]]
name = "r"
listener = "db"
pool = "pp"
rewrite_prefix = "no-slash"
redirect = { scheme = "ftp", status = 200, port = 0 }
request_headers = { set = { "x ok" = "v" }, remove = ["content-length"] }
response_headers = { add = { "x-a" = "line\nbreak" } }

[[pools]]
name = "app"
connect_timeout_ms = 1
retries = 99

[[pools]]
name = "pp"
proxy_protocol = "v2"
"#,
    )
    .expect("parses");
    let mut got = paths(validate(&spec));
    got.sort();
    let mut want = vec![
        "listeners[0].pool",
        "listeners[0].max_request_head_bytes",
        "listeners[0].max_request_line_bytes",
        "listeners[0].proxy_protocol_from[1]",
        "listeners[0].proxy_protocol_from[2]",
        "listeners[1].pool",
        "listeners[2].pool",
        "routes[0].listener",
        "routes[0].pool",
        "routes[0].rewrite_prefix",
        "routes[0].redirect.scheme",
        "routes[0].redirect.status",
        "routes[0].redirect.port",
        "routes[0].request_headers.set.x ok",
        "routes[0].request_headers.remove[0]",
        "routes[0].response_headers.add.x-a",
        "pools[0].connect_timeout_ms",
        "pools[0].retries",
    ];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn data_plane_settings_reach_the_typed_model() {
    let spec = from_toml(
        r#"
api_version = "meridian/v1"
[[listeners]]
name = "db"
bind = "127.0.0.1:5432"
protocol = "tcp"
pool = "db"
proxy_protocol_from = ["127.0.0.1", "2001:db8::/32"]
[[pools]]
name = "db"
protocol = "http2"
proxy_protocol = "v1"
members = [{ address = "127.0.0.1:5433" }]
"#,
    )
    .expect("parses");
    let cfg = validate(&spec).expect("valid");
    let l = &cfg.listeners[0];
    assert_eq!(l.pool.as_deref(), Some("db"));
    assert!(l.proxy_protocol_from[0].contains("127.0.0.1".parse().expect("ip")));
    assert!(!l.proxy_protocol_from[0].contains("127.0.0.2".parse().expect("ip")));
    assert!(l.proxy_protocol_from[1].contains("2001:db8:1::5".parse().expect("ip")));
    assert!(l.proxy_protocol_from[0].contains("::ffff:127.0.0.1".parse().expect("ip")));
    assert_eq!(cfg.pools[0].upstream.protocol, UpstreamProtocol::Http2);
    assert_eq!(
        cfg.pools[0].upstream.proxy_protocol,
        ProxyProtocolVersion::V1
    );
    assert_eq!(l.max_request_head_bytes, 32 * 1024);
}

#[test]
fn tls_settings_are_checked_and_certificates_left_to_the_store() {
    let spec = from_toml(
        r#"
api_version = "meridian/v1"
[[listeners]]
name = "web"
bind = "127.0.0.1:8443"
tls = { certificates = ["a", "b"], default_certificate = "b", min_version = "1.3", ktls = "off" }
[[listeners]]
name = "bad"
bind = "127.0.0.1:8444"
tls = { certificates = [], default_certificate = "x", handshake_timeout_ms = 1 }
[[listeners]]
name = "tcp"
bind = "127.0.0.1:8445"
protocol = "tcp"
pool = "p"
tls = { certificates = ["a", "a"] }
[[pools]]
name = "p"
members = [{ address = "127.0.0.1:1" }]
"#,
    )
    .expect("parses");
    let e = validate(&spec).expect_err("invalid");
    let paths: Vec<&str> = e.errors.iter().map(|f| f.path.as_str()).collect();
    for want in [
        "listeners[1].tls.certificates",
        "listeners[1].tls.default_certificate",
        "listeners[1].tls.handshake_timeout_ms",
        "listeners[2].tls",
        "listeners[2].tls.certificates[1]",
    ] {
        assert!(paths.contains(&want), "{want} missing from {paths:?}");
    }
    assert!(
        !paths.iter().any(|p| p.starts_with("listeners[0]")),
        "{paths:?}"
    );

    let mut good = spec.clone();
    good.listeners.truncate(1);
    let cfg = validate(&good).expect("valid");
    let tls = cfg.listeners[0].tls.as_ref().expect("tls");
    assert_eq!(tls.default_certificate, "b");
    assert_eq!(tls.min_version, TlsVersion::Tls13);
    assert_eq!(tls.ktls, KtlsMode::Off);
    // Whether the certificates exist is the credential store's question.
    let missing = crate::validate::certificate_errors(&good, |c| {
        if c == "a" {
            Ok(())
        } else {
            Err(format!("no certificate {c}"))
        }
    });
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].path, "listeners[0].tls.certificates[1]");
}

#[test]
fn pool_tls_is_checked() {
    let spec = from_toml(
        r#"
api_version = "meridian/v1"
[[listeners]]
name = "db"
bind = "127.0.0.1:5432"
protocol = "tcp"
pool = "mesh"
[[pools]]
name = "mesh"
members = [{ address = "127.0.0.1:1" }]
tls = { ca_pem = "not pem", server_name = "bad name!", client_certificate = "c" }
max_concurrent_requests = 0
"#,
    )
    .expect("parses");
    let e = validate(&spec).expect_err("invalid");
    let paths: Vec<&str> = e.errors.iter().map(|f| f.path.as_str()).collect();
    for want in [
        "pools[0].tls.ca_pem",
        "pools[0].tls.server_name",
        "pools[0].max_concurrent_requests",
        "listeners[0].pool",
    ] {
        assert!(paths.contains(&want), "{want} missing from {paths:?}");
    }
    let missing = crate::validate::certificate_errors(&spec, |_| Err("none".into()));
    assert_eq!(missing[0].path, "pools[0].tls.client_certificate");
}

#[test]
fn spiffe_ids_are_checked() {
    let spec = from_toml(
        r#"
api_version = "meridian/v1"
[[pools]]
name = "mesh"
members = [{ address = "127.0.0.1:1" }]
[pools.tls]
ca_pem = "-----BEGIN CERTIFICATE-----"
spiffe_ids = [
  "spiffe://cluster.local/ns/istio-system/sa/ingressgateway",
  "spiffe://east.mesh/ns/gw/*",
  "https://not.spiffe/x",
  "spiffe://Upper.Case/x",
  "spiffe://td/a*",
  "spiffe://td/a/*/b",
  "spiffe://td/../x",
  "spiffe://",
]
"#,
    )
    .expect("parses");
    let e = validate(&spec).expect_err("invalid");
    let paths: Vec<&str> = e.errors.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        (2..8)
            .map(|i| format!("pools[0].tls.spiffe_ids[{i}]"))
            .collect::<Vec<_>>(),
        "{e:?}"
    );
}

#[test]
fn client_auth_settings_are_checked() {
    let spec = from_toml(
        r#"
api_version = "meridian/v1"
[[listeners]]
name = "web"
bind = "127.0.0.1:8443"
tls = { certificates = ["a"], client_auth = { ca_pem = "x", subject_header = "bad header" } }
"#,
    )
    .expect("parses");
    let e = validate(&spec).expect_err("invalid");
    let paths: Vec<&str> = e.errors.iter().map(|f| f.path.as_str()).collect();
    assert!(
        paths.contains(&"listeners[0].tls.client_auth.ca_pem"),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"listeners[0].tls.client_auth.subject_header"),
        "{paths:?}"
    );
    assert!(
        !paths.contains(&"listeners[0].tls.client_auth.sans_header"),
        "{paths:?}"
    );
}

#[test]
fn compression_settings_are_checked() {
    let spec = from_toml(
        r#"
api_version = "meridian/v1"
[[listeners]]
name = "web"
bind = "127.0.0.1:8080"
[[pools]]
name = "p"
members = [{ address = "127.0.0.1:1" }]
[[routes]]
name = "ok"
listener = "web"
pool = "p"
compression = {}
[[routes]]
name = "bad"
listener = "web"
path_prefix = "/x"
pool = "p"
[routes.compression]
codecs = ["gzip", "br", "gzip"]
level = 12
content_types = ["text/*", "nonsense", "application/json", "a/b/c"]
decompress_requests_max_bytes = 10
"#,
    )
    .expect("parses");
    let e = validate(&spec).expect_err("invalid");
    let paths: Vec<&str> = e.errors.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "routes[1].compression.codecs[2]",
            "routes[1].compression.level",
            "routes[1].compression.content_types[1]",
            "routes[1].compression.content_types[3]",
            "routes[1].compression.decompress_requests_max_bytes",
        ],
        "{e:?}"
    );
    let mut good = spec.clone();
    good.routes.truncate(1);
    let config = validate(&good).expect("valid");
    let c = config.routes[0].compression.as_ref().expect("compression");
    assert_eq!(c.codecs, crate::Codec::ALL);
    assert!(c.content_types.contains(&"text/".to_string()));
    assert_eq!(c.min_size_bytes, 1024);
    let unknown = from_toml::<ConfigSpec>(
        r#"
api_version = "meridian/v1"
[[routes]]
name = "r"
listener = "web"
pool = "p"
compression = { codecs = ["lzma"] }
"#,
    );
    assert!(unknown.is_err(), "an unknown codec does not parse");
}

#[test]
fn rate_limits_and_access_rules_are_checked() {
    let spec = from_toml(
        r#"
api_version = "meridian/v1"
[[listeners]]
name = "web"
bind = "127.0.0.1:8080"
[[pools]]
name = "p"
members = [{ address = "127.0.0.1:1" }]
[[routes]]
name = "ok"
listener = "web"
pool = "p"
rate_limit = { requests = 10, key = { by = "header", name = "x-api-key" }, over_limit = "delay", max_delay_ms = 500 }
access = { allow = ["10.0.0.0/8", "2001:db8::/32"], deny = ["10.0.0.66"], methods = ["get", "HEAD"] }
[[routes]]
name = "bad"
listener = "web"
path_prefix = "/x"
pool = "p"
rate_limit = { requests = 0, burst = 0, key = { by = "subnet", ipv4_prefix = 33 }, max_delay_ms = 5 }
access = { allow = ["10.0.0.0/33"], deny = ["nope"], methods = ["G E T"] }
[[routes]]
name = "bad2"
listener = "web"
path_prefix = "/y"
pool = "p"
rate_limit = { requests = 1, key = { by = "cookie", name = "a b" }, over_limit = "delay" }
"#,
    )
    .expect("parses");
    let e = validate(&spec).expect_err("invalid");
    let paths: Vec<&str> = e.errors.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "routes[1].rate_limit.requests",
            "routes[1].rate_limit.burst",
            "routes[1].rate_limit.key.ipv4_prefix",
            "routes[1].rate_limit.max_delay_ms",
            "routes[1].access.allow[0]",
            "routes[1].access.deny[0]",
            "routes[1].access.methods[0]",
            "routes[2].rate_limit.key.name",
            "routes[2].rate_limit.max_delay_ms",
        ],
        "{e:?}"
    );
    let mut good = spec.clone();
    good.routes.truncate(1);
    let config = validate(&good).expect("valid");
    let access = config.routes[0].access.as_ref().expect("access");
    assert_eq!(access.methods, ["GET", "HEAD"]);
    assert_eq!(access.allow.len(), 2);
}

#[test]
fn codecs_index_in_their_table_order_and_parse_from_tokens() {
    for (i, c) in crate::Codec::ALL.into_iter().enumerate() {
        assert_eq!(c.index(), i);
        assert_eq!(crate::Codec::from_token(&c.token().to_uppercase()), Some(c));
    }
    assert_eq!(crate::Codec::from_token("x-gzip"), Some(crate::Codec::Gzip));
    assert_eq!(crate::Codec::from_token("identity"), None);
}

#[test]
fn cache_settings_are_checked() {
    let spec = from_toml(
        r#"
api_version = "meridian/v1"
[[listeners]]
name = "web"
bind = "127.0.0.1:8080"
[[pools]]
name = "p"
members = [{ address = "127.0.0.1:1" }]
[[routes]]
name = "ok"
listener = "web"
pool = "p"
cache = { key = { headers = ["X-Tenant"] }, tags_header = "Cache-Tag" }
[[routes]]
name = "bad"
listener = "web"
path_prefix = "/x"
pool = "p"
[routes.cache]
default_ttl_seconds = 99999999999
max_object_bytes = 10
stale_while_revalidate_seconds = 9999999
stale_if_error_seconds = 9999999
tags_header = "bad header"
key = { ignore_query = true, query_params = ["a", "b=c"], headers = ["cookie", "x y"] }
"#,
    )
    .expect("parses");
    let e = validate(&spec).expect_err("invalid");
    let paths: Vec<&str> = e.errors.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "routes[1].cache.default_ttl_seconds",
            "routes[1].cache.max_object_bytes",
            "routes[1].cache.stale_while_revalidate_seconds",
            "routes[1].cache.stale_if_error_seconds",
            "routes[1].cache.tags_header",
            "routes[1].cache.key.headers[0]",
            "routes[1].cache.key.headers[1]",
            "routes[1].cache.key.query_params",
            "routes[1].cache.key.query_params[1]",
        ],
        "{e:?}"
    );
    let mut good = spec.clone();
    good.routes.truncate(1);
    let config = validate(&good).expect("valid");
    let c = config.routes[0].cache.as_ref().expect("cache");
    assert_eq!(c.key.headers, ["x-tenant"]);
    assert_eq!(c.tags_header, "cache-tag");
    assert_eq!(c.max_object_bytes, 8 << 20);
}

#[test]
fn gslb_policies_and_their_site_settings_are_checked() {
    let spec = from_toml(
        r#"
api_version = "meridian/v1"
[[zones]]
name = "example.com"
ns = ["ns1"]
soa = { mname = "ns1", rname = "hostmaster" }
records = [{ name = "ns1", type = "A", value = "192.0.2.53" }]
[[gslb_records]]
name = "app.example.com"
policy = "failover"
max_answers = 40
sites = [
  { name = "a", address = "192.0.2.1", priority = 0 },
  { name = "b", address = "192.0.2.2", priority = 2, weight = 5000 },
]
"#,
    )
    .expect("parses");
    let e = validate(&spec).expect_err("invalid");
    let paths: Vec<&str> = e.errors.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "gslb_records[0].sites[0].priority",
            "gslb_records[0].sites[1].weight",
            "gslb_records[0].max_answers",
        ],
        "{e:?}"
    );
    let mut good = spec.clone();
    good.gslb_records[0].max_answers = Some(2);
    good.gslb_records[0].sites[0].priority = 1;
    good.gslb_records[0].sites[1].weight = 3;
    let config = validate(&good).expect("valid");
    let g = &config.gslb_records[0];
    assert_eq!(g.policy, crate::GslbPolicy::Failover);
    assert_eq!((g.sites[1].priority, g.sites[1].weight), (2, 3));
    let unknown = from_toml::<ConfigSpec>(
        r#"
api_version = "meridian/v1"
[[gslb_records]]
name = "app.example.com"
policy = "nearest"
"#,
    );
    assert!(unknown.is_err(), "an unknown policy does not parse");
}

#[test]
fn regions_and_steering_are_checked_with_field_paths() {
    let spec = from_toml(
        r#"
api_version = "meridian/v1"
[[zones]]
name = "example.com"
ns = ["ns1"]
soa = { mname = "ns1", rname = "hostmaster" }
records = [{ name = "ns1", type = "A", value = "192.0.2.53" }]
[[regions]]
name = "east"
networks = ["198.51.100.7/24", "nonsense"]
location = "91,0"
spill_to = ["east", "mars"]
[[regions]]
name = "west"
networks = ["198.51.100.0/24"]
[[gslb_records]]
name = "near.example.com"
steer = "nearest"
sites = [{ name = "a", address = "192.0.2.1", region = "west" }]
[[gslb_records]]
name = "geo.example.com"
steer = "geo"
sites = [{ name = "a", address = "192.0.2.1", location = "x" }]
[[pools]]
name = "p"
members = [{ address = "127.0.0.1:1", state = "force_up" }]
"#,
    )
    .expect("parses");
    let e = validate(&spec).expect_err("invalid");
    let paths: Vec<&str> = e.errors.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "pools[0].members[0].state",
            "regions[0].networks[1]",
            "regions[0].location",
            "regions[0].spill_to[0]",
            "regions[0].spill_to[1]",
            "regions[1].networks[0]",
            "gslb_records[0].sites[0].location",
            "gslb_records[1].sites[0].location",
            "gslb_records[1].steer",
        ],
        "{e:?}"
    );
    assert!(
        e.errors[5].message.contains("already in region \"east\""),
        "{e:?}"
    );

    let good = from_toml::<ConfigSpec>(
        r#"
api_version = "meridian/v1"
[[zones]]
name = "example.com"
ns = ["ns1"]
soa = { mname = "ns1", rname = "hostmaster" }
records = [{ name = "ns1", type = "A", value = "192.0.2.53" }]
[[regions]]
name = "east"
networks = ["198.51.100.7/24"]
location = "40.7, -74.0"
spill_to = ["west"]
[[regions]]
name = "west"
networks = ["203.0.113.0/24"]
[[gslb_records]]
name = "geo.example.com"
steer = "geo"
policy = "persistent"
sites = [
  { name = "a", address = "192.0.2.1", region = "east", state = "force_up" },
  { name = "b", address = "192.0.2.2", region = "west", location = "37.8,-122.4" },
]
"#,
    )
    .expect("parses");
    let config = validate(&good).expect("valid");
    let east = &config.regions[0];
    assert_eq!(
        east.networks[0].addr.to_string(),
        "198.51.100.0",
        "host bits cleared"
    );
    assert_eq!(east.spill_to, vec![1]);
    let g = &config.gslb_records[0];
    assert_eq!(
        (g.steer, g.policy),
        (crate::Steer::Geo, crate::GslbPolicy::Persistent)
    );
    assert_eq!(g.sites[0].region, Some(0));
    assert_eq!(
        g.sites[0].location, east.location,
        "a site inherits its region's location"
    );
    assert_eq!(g.sites[1].location.map(|l| l.latitude), Some(37.8));
}

#[test]
fn a_fallback_answer_needs_valid_addresses() {
    let text = |when: &str, fallback: &str| {
        format!(
            r#"
api_version = "meridian/v1"
[[zones]]
name = "example.com"
ns = ["ns1"]
soa = {{ mname = "ns1", rname = "hostmaster" }}
records = [{{ name = "ns1", type = "A", value = "192.0.2.53" }}]
[[gslb_records]]
name = "app.example.com"
when_all_down = "{when}"
fallback = [{fallback}]
sites = [{{ name = "a", address = "192.0.2.1" }}]
"#
        )
    };
    let spec: ConfigSpec = from_toml(&text("fallback", "")).expect("parses");
    let e = validate(&spec).expect_err("no fallback address");
    assert_eq!(e.errors[0].path, "gslb_records[0].fallback", "{e:?}");
    let spec: ConfigSpec = from_toml(&text("servfail", "\"x\"")).expect("parses");
    let e = validate(&spec).expect_err("bad address");
    assert_eq!(e.errors[0].path, "gslb_records[0].fallback[0]", "{e:?}");
    let spec: ConfigSpec = from_toml(&text("fallback", "\"198.51.100.9\"")).expect("parses");
    let config = validate(&spec).expect("valid");
    assert_eq!(
        config.gslb_records[0].fallback[0].to_string(),
        "198.51.100.9"
    );
}

#[test]
fn record_types_wildcards_and_delegations_are_checked() {
    let spec: ConfigSpec = from_toml(
        r#"
api_version = "meridian/v1"
[[zones]]
name = "example.com"
ns = ["ns1"]
soa = { mname = "ns1", rname = "hostmaster" }
records = [
  { name = "ns1", type = "A", value = "192.0.2.53" },
  { name = "*", type = "A", value = "192.0.2.80" },
  { name = "_sip._tcp", type = "SRV", value = "10 5 5060 ns1" },
  { name = "@", type = "CAA", value = "0 issue \"letsencrypt.org\"" },
  { name = "1.2", type = "PTR", value = "ns1" },
  { name = "child", type = "NS", value = "ns.child" },
  { name = "ns.child", type = "A", value = "192.0.2.99" },
  { name = "www.child", type = "A", value = "192.0.2.98" },
  { name = "child", type = "TXT", value = "no" },
  { name = "@", type = "NS", value = "ns2" },
  { name = "x", type = "SRV", value = "10 5 port ns1" },
  { name = "y", type = "CAA", value = "issue letsencrypt.org" },
  { name = "*", type = "NS", value = "ns1" },
]
"#,
    )
    .expect("parses");
    let e = validate(&spec).expect_err("invalid");
    let paths: Vec<&str> = e.errors.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "zones[0].records[9].type",
            "zones[0].records[10].value",
            "zones[0].records[11].value",
            "zones[0].records[12].name",
            "zones[0].records[7].name",
            "zones[0].records[8].type",
        ],
        "{e:?}"
    );
    let mut good = spec.clone();
    good.zones[0].records.truncate(7);
    let config = validate(&good).expect("valid");
    let records = &config.zones[0].records;
    assert_eq!(records[1].name, "*.example.com.");
    assert_eq!(
        records[2].data,
        RecordData::SRV {
            priority: 10,
            weight: 5,
            port: 5060,
            target: "ns1.example.com.".into()
        }
    );
    assert_eq!(
        records[3].data,
        RecordData::CAA {
            flags: 0,
            tag: "issue".into(),
            value: "letsencrypt.org".into()
        }
    );
    assert_eq!(
        records[5].data,
        RecordData::NS("ns.child.example.com.".into())
    );
}

#[test]
fn region_countries_and_continents_are_codes_in_one_region_each() {
    let spec: ConfigSpec = from_toml(
        r#"
api_version = "meridian/v1"
[[regions]]
name = "a"
countries = ["de", "USA"]
continents = ["EU", "XX"]
[[regions]]
name = "b"
countries = ["DE"]
continents = ["eu"]
"#,
    )
    .expect("parses");
    let e = validate(&spec).expect_err("invalid");
    let paths: Vec<&str> = e.errors.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "regions[0].countries[1]",
            "regions[0].continents[1]",
            "regions[1].countries[0]",
            "regions[1].continents[0]",
        ],
        "{e:?}"
    );
    let mut good = spec.clone();
    good.regions[0].countries.truncate(1);
    good.regions[0].continents.truncate(1);
    good.regions[1].countries = vec!["FR".into()];
    good.regions[1].continents = vec!["as".into()];
    let config = validate(&good).expect("valid");
    assert_eq!(
        config.regions[0].countries,
        vec!["DE".to_string()],
        "upper-cased"
    );
    assert_eq!(config.regions[1].continents, vec!["AS".to_string()]);
}

#[test]
fn secondaries_need_an_address_once_and_a_key_name() {
    let mut s = good();
    let secondary = |address: &str, key: &str| SecondarySpec {
        address: address.into(),
        tsig_key: key.into(),
        notify: true,
    };
    s.zones[0].secondaries = vec![
        secondary("192.0.2.53", "Xfr.Example.COM"),
        secondary("[2001:db8::53]:5353", "xfr"),
        secondary("192.0.2.53:54", "xfr"),
        secondary("ns2.example.com", "xfr"),
        secondary("192.0.2.9:0", "bad key!"),
    ];
    assert_eq!(
        paths(validate(&s)),
        vec![
            "zones[0].secondaries[2].address",
            "zones[0].secondaries[3].address",
            "zones[0].secondaries[4].address",
            "zones[0].secondaries[4].tsig_key",
        ]
    );
    s.zones[0].secondaries.truncate(2);
    let c = validate(&s).expect("valid");
    let got = &c.zones[0].secondaries;
    assert_eq!(got[0].addr, "192.0.2.53:53".parse().expect("addr"));
    assert_eq!(got[0].tsig_key, "xfr.example.com.");
    assert_eq!(got[1].addr, "[2001:db8::53]:5353".parse().expect("addr"));
    let missing = model_tsig_errors(&s);
    assert_eq!(
        missing,
        vec!["zones[0].secondaries[1].tsig_key".to_string()],
        "only xfr.example.com. exists"
    );
}

fn model_tsig_errors(s: &ConfigSpec) -> Vec<String> {
    crate::validate::tsig_key_errors(s, |k| k == "xfr.example.com.")
        .into_iter()
        .map(|e| e.path)
        .collect()
}

#[test]
fn sites_are_addresses_or_cnames_never_both_and_never_mixed() {
    let mut s = good();
    for site in &mut s.gslb_records[0].sites {
        site.address.clear();
    }
    s.gslb_records[0].sites[0].cname = Some("LB-East.Cloud.Example.NET".into());
    s.gslb_records[0].sites[1].cname = Some("lb-west.cloud.example.net.".into());
    let c = validate(&s).expect("all CNAMEs is valid");
    let east = &c.gslb_records[0].sites[0];
    assert_eq!(
        east.address,
        SiteAddress::Cname("lb-east.cloud.example.net.".into())
    );
    assert_eq!(
        east.probe,
        ProbeTarget::Host("lb-east.cloud.example.net.".into(), 9000)
    );

    let mut mixed = s.clone();
    mixed.gslb_records[0].sites[1].cname = None;
    mixed.gslb_records[0].sites[1].address = "192.0.2.20".into();
    assert_eq!(
        paths(validate(&mixed)),
        vec!["gslb_records[0].sites[0].cname"]
    );

    let mut both = s.clone();
    both.gslb_records[0].sites[0].address = "192.0.2.10".into();
    assert_eq!(
        paths(validate(&both)),
        vec!["gslb_records[0].sites[0].cname"]
    );

    let mut bad = s.clone();
    bad.gslb_records[0].sites[1].cname = Some("not a name".into());
    assert_eq!(
        paths(validate(&bad)),
        vec!["gslb_records[0].sites[1].cname"]
    );

    let mut neither = good();
    neither.gslb_records[0].sites[0].address.clear();
    assert_eq!(
        paths(validate(&neither)),
        vec!["gslb_records[0].sites[0].address"]
    );
}
