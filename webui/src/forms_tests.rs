use super::*;

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn every_kind_round_trips_a_real_object_through_its_form() {
    let spec: model::ConfigSpec = model::parse::from_toml(
            r#"
api_version = "meridian/v1"
[[listeners]]
name = "web"
bind = "127.0.0.1:8080"
proxy_protocol_from = ["10.0.0.0/8"]
[[listeners]]
name = "secure"
bind = "127.0.0.1:8443"
tls = { certificates = ["a", "b"], default_certificate = "b", unknown_sni = "refuse", min_version = "1.3", ktls = "off", handshake_timeout_ms = 5000, client_auth = { mode = "optional", ca_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", subject_header = "x-subject", sans_header = "x-sans" } }
[[listeners]]
name = "pass"
bind = "127.0.0.1:9443"
protocol = "tcp"
pool = "plain"
sni_routes = [{ server_name = "*.mesh.test", pool = "plain" }]
[[routes]]
name = "api"
listener = "web"
path_prefix = "/api"
pool = "app"
rewrite_prefix = "/"
request_headers = { set = { "x-env" = "prod" }, remove = ["x-debug"] }
[[pools]]
name = "app"
health_check = "hc"
members = [{ address = "127.0.0.1:9000", weight = 3 }, { address = "127.0.0.1:9001", state = "draining" }]
tls = { ca_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", server_name = "gw.mesh.test", client_certificate = "mesh" }
[[pools]]
name = "plain"
members = [{ address = "127.0.0.1:9100" }]
[[health_checks]]
name = "hc"
path = "/healthz"
[[zones]]
name = "example.com"
soa = { mname = "ns1.example.com", rname = "hostmaster.example.com" }
ns = ["ns1.example.com"]
records = [{ name = "ns1", type = "A", value = "192.0.2.1" }]
[[gslb_records]]
name = "app.example.com"
sites = [{ name = "east", address = "192.0.2.10", health_check = "hc" }]
"#,
        )
        .expect("spec");
    model::validate(&spec).expect("valid");
    for kind in ObjectKind::ALL {
        for obj in spec.list(kind) {
            let json = obj.spec_json();
            let values = values_of(kind, &json);
            // Submit exactly what the form shows (plus an empty new row per table).
            let mut submitted: Vec<(String, String)> = values
                .inputs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for t in form(kind).tables {
                let n = values.rows[t.path];
                for c in t.columns {
                    submitted.push((format!("{}[{n}].{}", t.path, c.path), String::new()));
                }
            }
            let parsed = parse(kind, &submitted);
            assert!(parsed.errors.is_empty(), "{kind}: {:?}", parsed.errors);
            let back = model::Object::parse(kind, parsed.json.to_string().as_bytes())
                .unwrap_or_else(|e| panic!("{kind}: {e:?} from {}", parsed.json));
            assert_eq!(back, obj, "{kind} changed on the way through its form");
        }
    }
}

#[test]
fn bad_numbers_and_choices_are_reported_per_input_and_kept() {
    let p = parse(
        ObjectKind::Pools,
        &pairs(&[
            ("name", "app"),
            ("retries", "three"),
            ("protocol", "http9"),
            ("members[0].address", "127.0.0.1:1"),
            ("members[0].weight", "-1"),
            ("members[0].state", "enabled"),
        ]),
    );
    assert_eq!(p.errors.len(), 3, "{:?}", p.errors);
    assert!(p.errors["retries"][0].contains("whole number"));
    assert!(p.errors.contains_key("protocol"));
    assert!(p.errors.contains_key("members[0].weight"));
    assert_eq!(p.values.get("retries"), "three");
    assert_eq!(p.values.get("members[0].weight"), "-1");
}

#[test]
fn blank_and_removed_rows_are_dropped_and_the_rest_renumbered() {
    let p = parse(
        ObjectKind::Pools,
        &pairs(&[
            ("name", "app"),
            ("members[0].address", "127.0.0.1:1"),
            ("members[0].remove", "1"),
            ("members[1].address", " "),
            ("members[1].state", "enabled"),
            ("members[2].address", "127.0.0.1:3"),
            ("members[2].state", "draining"),
        ]),
    );
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    let members = p.json["members"].as_array().expect("members");
    assert_eq!(members.len(), 1);
    assert_eq!(members[0]["address"], "127.0.0.1:3");
    assert_eq!(p.values.get("members[0].state"), "draining");
    assert_eq!(p.values.rows["members"], 1);
}

#[test]
fn nested_fields_make_nested_objects_only_when_set() {
    let p = parse(
        ObjectKind::Routes,
        &pairs(&[
            ("name", "r"),
            ("listener", "web"),
            ("path_prefix", "/"),
            ("pool", "app"),
            ("redirect.status", "301"),
            ("response_headers.set", "x-a: 1\nx-b: two words"),
        ]),
    );
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert_eq!(p.json["redirect"]["status"], 301);
    assert_eq!(p.json["response_headers"]["set"]["x-b"], "two words");
    assert!(p.json.get("request_headers").is_none());
    let bad = parse(
        ObjectKind::Routes,
        &pairs(&[("request_headers.set", "no colon here")]),
    );
    assert!(bad.errors.contains_key("request_headers.set"));
}

#[test]
fn errors_render_beside_their_input_and_values_are_escaped() {
    let mut values = Values::default();
    values
        .inputs
        .insert("name".into(), "<script>x</script>".into());
    values.rows.insert("members", 0);
    let mut errors = BTreeMap::new();
    errors.insert("name".to_string(), vec!["bad <name>".to_string()]);
    let html = render(ObjectKind::Pools, &values, &errors, false);
    assert!(!html.contains("<script>"));
    assert!(html.contains("&lt;script&gt;"));
    let field = html
        .split("<div class=\"field")
        .find(|s| s.contains("name=\"name\""))
        .expect("name field");
    assert!(field.contains("has-error") && field.contains("bad &lt;name&gt;"));
    assert!(field.contains("aria-invalid=\"true\""));
    // Every input has a label: a <label for> or an aria-label.
    assert_eq!(
        html.matches("<input").count()
            + html.matches("<select").count()
            + html.matches("<textarea").count(),
        html.matches("<label for=").count() + html.matches("aria-label=").count()
    );
}

#[test]
fn validation_paths_become_input_names() {
    assert_eq!(
        relative_path("pools[3].members[1].address", "pools[3]"),
        "members[1].address"
    );
    assert_eq!(relative_path("pools[3]", "pools[3]"), "");
    assert_eq!(
        relative_path("pools[30].name", "pools[3]"),
        "pools[30].name"
    );
    assert_eq!(
        relative_path("routes[0].pool", "pools[3]"),
        "routes[0].pool"
    );
}
