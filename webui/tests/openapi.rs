//! `GET /api/v1/openapi.json` checked against the router that serves it: the document lists
//! exactly the API's routes, and every operation it lists answers, for each role, with a status
//! it documents and a body that conforms to the documented schema.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use model::records::{AuthState, TokenInfo, UserRecord};
use model::{Origin, Role};
use serde_json::{json, Value};
use tower::ServiceExt;
use webui::{AppState, Backend, Change};

mod common;
use common::*;

/// Every route `api::routes()` declares, relative to `/api/v1`. A route added there must be
/// added here, and the test then checks that it is documented.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/config"),
    ("PUT", "/config"),
    ("GET", "/status"),
    ("GET", "/cluster"),
    ("DELETE", "/cluster/nodes/{node_id}"),
    ("GET", "/cluster/join-tokens"),
    ("POST", "/cluster/join-tokens"),
    ("GET", "/backup"),
    ("GET", "/cache"),
    ("POST", "/cache/purge"),
    ("GET", "/history"),
    ("GET", "/history/{revision}"),
    ("POST", "/history/{revision}/rollback"),
    ("GET", "/audit"),
    ("GET", "/users"),
    ("POST", "/users"),
    ("PATCH", "/users/{name}"),
    ("DELETE", "/users/{name}"),
    ("PUT", "/account/password"),
    ("GET", "/tokens"),
    ("POST", "/tokens"),
    ("DELETE", "/tokens/{id}"),
    ("PUT", "/pools/{pool}/members/{address}/state"),
    ("PUT", "/gslb_records/{record}/sites/{site}/state"),
    ("GET", "/dns/explain"),
    ("PUT", "/zones/{name}/file"),
    ("GET", "/dns/tsig-keys"),
    ("POST", "/dns/tsig-keys"),
    ("DELETE", "/dns/tsig-keys/{name}"),
    ("GET", "/openapi.json"),
    ("GET", "/certificates"),
    ("POST", "/certificates"),
    ("GET", "/certificates/{name}"),
    ("PUT", "/certificates/{name}"),
    ("DELETE", "/certificates/{name}"),
    ("POST", "/certificates/{name}/revoke"),
    ("POST", "/certificates/{name}/csr"),
    ("GET", "/{kind}"),
    ("GET", "/{kind}/{name}"),
    ("PUT", "/{kind}/{name}"),
    ("DELETE", "/{kind}/{name}"),
];

/// The values of `{kind}`: the document lists the generic routes once per kind.
const KINDS: &[&str] = &[
    "listeners",
    "routes",
    "pools",
    "health_checks",
    "zones",
    "gslb_records",
    "regions",
];

/// Objects that nothing else refers to, so each can be deleted, plus the pool and GSLB record
/// whose member and site the state calls change.
const SPEC: &str = r#"
api_version = "meridian/v1"
[[listeners]]
name = "web"
bind = "127.0.0.1:8080"
[[listeners]]
name = "edge"
bind = "127.0.0.1:8081"
[[routes]]
name = "all"
listener = "web"
pool = "p"
[[pools]]
name = "p"
members = [{ address = "127.0.0.1:1" }]
[[pools]]
name = "spare"
members = [{ address = "127.0.0.1:2" }]
[[health_checks]]
name = "hc"
[[zones]]
name = "example.com"
ns = ["ns1.example.com."]
soa = { mname = "ns1.example.com.", rname = "hostmaster.example.com." }
[[zones]]
name = "example.org"
ns = ["ns1.example.org."]
soa = { mname = "ns1.example.org.", rname = "hostmaster.example.org." }
[[gslb_records]]
name = "www.example.com."
sites = [{ name = "s1", address = "192.0.2.10" }]
[[regions]]
name = "r1"
networks = ["198.51.100.0/24"]
"#;

struct Fixture {
    state: AppState,
    /// A token for the user named after each role, with that role.
    tokens: BTreeMap<Role, String>,
    /// The id of a second token of the viewer's.
    spare_token_id: String,
}

impl Fixture {
    fn new() -> Fixture {
        let backend = Arc::new(Memory(Mutex::default()));
        let spec: model::ConfigSpec = model::parse::from_toml(SPEC).expect("spec");
        backend
            .apply(
                &Change::ReplaceConfig {
                    expected_revision: None,
                    spec,
                },
                &Origin::system(),
            )
            .expect("seed");
        let mut auth = AuthState::default();
        let mut tokens = BTreeMap::new();
        for role in Role::ALL {
            let user = UserRecord {
                password_hash: hash(),
                role,
                disabled: false,
            };
            auth.users.insert(role.as_str().to_string(), user);
            let secret = webui::auth::new_token();
            auth.tokens
                .insert(webui::auth::token_id(&secret), token_info(role));
            tokens.insert(role, secret);
        }
        let spare_token_id = webui::auth::token_id(&webui::auth::new_token());
        auth.tokens
            .insert(spare_token_id.clone(), token_info(Role::Viewer));
        {
            let mut s = backend.lock();
            s.doc.auth = auth;
            // A certificate no listener uses, so that it can be rotated, revoked and deleted.
            let seeded = credentials::self_signed(
                "seeded",
                &["seeded.test".to_string()],
                model::unix_ms(),
                &backend.cluster_key(),
            )
            .expect("certificate");
            s.doc.certificates.insert("seeded".into(), Arc::new(seeded));
            // A TSIG key no zone uses, so that it can be deleted.
            let (key, _) = credentials::tsig_key(
                "seeded.test",
                model::records::TsigAlgorithm::HmacSha256,
                None,
                &backend.cluster_key(),
                1,
            )
            .expect("tsig key");
            s.doc.tsig_keys.insert(key.name.clone(), Arc::new(key));
        }
        let state = AppState::new(backend, prometheus::Registry::new()).expect("state");
        Fixture {
            state,
            tokens,
            spare_token_id,
        }
    }

    async fn send(&self, req: Request<Body>) -> Answer {
        let mut req = req;
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 9], 5555))));
        let resp = webui::app(self.state.clone())
            .oneshot(req)
            .await
            .expect("response");
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        Answer {
            status,
            content_type,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        role: Option<Role>,
        if_match: bool,
        body: &str,
    ) -> Answer {
        let mut req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).expect("method"))
            .uri(path);
        if let Some(role) = role {
            req = req.header(
                header::AUTHORIZATION,
                format!("Bearer {}", self.tokens[&role]),
            );
        }
        if if_match {
            req = req.header(header::IF_MATCH, "*");
        }
        if !body.is_empty() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        self.send(req.body(Body::from(body.to_string())).expect("request"))
            .await
    }
}

fn token_info(role: Role) -> TokenInfo {
    TokenInfo {
        name: "t".into(),
        user: role.as_str().into(),
        role,
        created_unix_ms: 1,
        expires_unix_ms: None,
    }
}

struct Answer {
    status: StatusCode,
    content_type: String,
    body: String,
}

// === the document ===

/// The document as the API serves it.
async fn document() -> Value {
    let f = Fixture::new();
    let a = f
        .call("GET", "/api/v1/openapi.json", Some(Role::Viewer), false, "")
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    serde_json::from_str(&a.body).expect("the document is JSON")
}

/// One operation of the document.
struct Op<'a> {
    method: String,
    path: &'a str,
    op: &'a Value,
}

impl Op<'_> {
    fn has_header(&self, name: &str) -> bool {
        self.params("header").any(|p| p["name"] == name)
    }

    fn params(&self, location: &'static str) -> impl Iterator<Item = &Value> {
        self.op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(move |p| p["in"] == location)
    }

    fn role(&self) -> Role {
        let role = self.op["x-meridian-role"].as_str().unwrap_or_default();
        Role::parse(role)
            .unwrap_or_else(|| panic!("{} {}: x-meridian-role", self.method, self.path))
    }

    fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

fn operations(doc: &Value) -> Vec<Op<'_>> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if ["get", "put", "post", "patch", "delete"].contains(&method.as_str()) {
                ops.push(Op {
                    method: method.to_uppercase(),
                    path,
                    op,
                });
            }
        }
    }
    ops
}

/// Follows a local `$ref` (`#/components/schemas/X`).
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => {
            let pointer = r
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("non-local $ref {r}"));
            let target = doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("dangling $ref {r}"));
            resolve(doc, target)
        }
        None => v,
    }
}

/// Where `value` does not conform to `schema`: the subset of JSON Schema that utoipa emits.
/// Objects with documented properties may not carry undocumented ones, so the document cannot
/// drift from what the handlers serialize.
fn conform(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if let Some(alternatives) = schema["oneOf"].as_array() {
        let fits = alternatives.iter().any(|s| {
            let mut e = Vec::new();
            conform(doc, s, value, at, &mut e);
            e.is_empty()
        });
        if !fits {
            errors.push(format!("{at}: {value} fits none of {schema}"));
        }
        return;
    }
    for s in schema["allOf"].as_array().into_iter().flatten() {
        conform(doc, s, value, at, errors);
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let type_of = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let typed = types.is_empty()
        || types.contains(&type_of)
        || (type_of == "integer" && types.contains(&"number"));
    if !typed {
        errors.push(format!("{at}: {value} is not {types:?}"));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            errors.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if !schema["items"].is_null() {
                    conform(doc, &schema["items"], item, &format!("{at}[{i}]"), errors);
                }
            }
        }
        Value::Object(fields) => {
            let properties = schema["properties"].as_object();
            for required in schema["required"].as_array().into_iter().flatten() {
                let name = required.as_str().unwrap_or_default();
                if !fields.contains_key(name) {
                    errors.push(format!("{at}: required {name} is missing"));
                }
            }
            for (name, field) in fields {
                let at = format!("{at}.{name}");
                match (
                    properties.and_then(|p| p.get(name)),
                    &schema["additionalProperties"],
                ) {
                    (Some(s), _) => conform(doc, s, field, &at, errors),
                    (None, Value::Bool(false)) => errors.push(format!("{at}: not allowed")),
                    (None, Value::Object(s)) => {
                        conform(doc, &Value::Object(s.clone()), field, &at, errors)
                    }
                    (None, _) if properties.is_some() => {
                        errors.push(format!("{at}: not documented"))
                    }
                    (None, _) => {}
                }
            }
        }
        _ => {}
    }
}

/// Checks one answer against the operation's documented responses: its status is listed, its
/// content type is one the response declares, and a JSON body conforms to the schema.
fn check_answer(doc: &Value, op: &Op<'_>, a: &Answer, errors: &mut Vec<String>) {
    let what = format!("{} -> {}", op.name(), a.status.as_u16());
    let Some(response) = op.op["responses"].get(a.status.as_str()) else {
        errors.push(format!("{what}: status not documented: {}", a.body));
        return;
    };
    let response = resolve(doc, response);
    let Some(content) = response["content"].as_object() else {
        if !a.body.is_empty() {
            errors.push(format!("{what}: documented without a body, got {}", a.body));
        }
        return;
    };
    let media = a.content_type.split(';').next().unwrap_or("").trim();
    let Some(declared) = content.get(media) else {
        errors.push(format!("{what}: content type {media:?} not documented"));
        return;
    };
    if media == "application/json" {
        match serde_json::from_str::<Value>(&a.body) {
            Ok(value) => conform(doc, &declared["schema"], &value, &what, errors),
            Err(e) => errors.push(format!("{what}: not JSON ({e}): {}", a.body)),
        }
    }
}

// === requests ===

/// A documented path with its parameters filled in with objects the fixture has; `{id}` is
/// `token_id`.
fn fill(path: &str, token_id: &str) -> String {
    let kind = path
        .trim_start_matches("/api/v1/")
        .split('/')
        .next()
        .unwrap_or("");
    let name = match kind {
        "listeners" => "edge",
        "routes" => "all",
        "pools" => "spare",
        "health_checks" => "hc",
        "zones" => "example.org",
        "gslb_records" => "www.example.com.",
        "regions" => "r1",
        "users" => "viewer",
        // A new name for a generated key, the seeded certificate otherwise.
        "certificates" if path.ends_with("/csr") => "fresh",
        "certificates" => "seeded",
        "dns" if path.contains("/tsig-keys/") => "seeded.test.",
        _ => "",
    };
    let mut out = path.to_string();
    for (param, value) in [
        ("{name}", name),
        ("{revision}", "1"),
        ("{id}", token_id),
        ("{pool}", "p"),
        ("{address}", "127.0.0.1:1"),
        ("{record}", "www.example.com."),
        ("{site}", "s1"),
        ("{node_id}", "2"),
    ] {
        if path.contains(param) {
            out = out.replace(param, value);
        }
    }
    assert!(
        !out.contains('{') && !out.contains("//"),
        "a parameter of {path} has no test value"
    );
    // Required query parameters.
    if path == "/api/v1/dns/explain" {
        out.push_str("?name=www.example.com&ecs=198.51.100.0/24");
    }
    out
}

/// A valid body for the operation: the object read back for a PUT of something readable, a
/// sample otherwise.
async fn sample_body(f: &Fixture, doc: &Value, op: &Op<'_>, path: &str) -> String {
    if op.op["requestBody"].is_null() {
        return String::new();
    }
    let leaf = |names: &[&str]| {
        let key = rcgen::KeyPair::generate().expect("key");
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        let cert = params.self_signed(&key).expect("cert");
        (cert.pem(), key.serialize_pem())
    };
    if op.path == "/api/v1/certificates/{name}" && op.method == "PUT" {
        let (cert, key) = leaf(&["seeded.test"]);
        return json!({"cert_pem": cert, "key_pem": key}).to_string();
    }
    if op.method == "PUT" && !doc["paths"][op.path]["get"].is_null() {
        let a = f.call("GET", path, Some(Role::Admin), false, "").await;
        assert_eq!(a.status, StatusCode::OK, "GET {path}: {}", a.body);
        return a.body;
    }
    let body = match (op.method.as_str(), op.path) {
        ("PUT", p) if p.ends_with("/state") => json!({"state": "draining"}),
        ("POST", "/api/v1/users") => {
            json!({"name": "newcomer", "password": PASSWORD, "role": "viewer"})
        }
        ("PATCH", "/api/v1/users/{name}") => json!({"role": "operator", "disabled": false}),
        ("PUT", "/api/v1/account/password") => {
            json!({"current": PASSWORD, "new": "another long passphrase"})
        }
        ("POST", "/api/v1/tokens") => json!({"name": "ci", "role": "viewer", "expires_days": 30}),
        ("POST", "/api/v1/certificates") => {
            let (cert, key) = leaf(&["imported.test"]);
            json!({"name": "imported", "cert_pem": cert, "key_pem": key})
        }
        ("POST", "/api/v1/certificates/{name}/revoke") => json!({"reason": "superseded"}),
        ("POST", "/api/v1/cache/purge") => json!({"prefix": "site.test/assets/"}),
        ("POST", "/api/v1/cluster/join-tokens") => json!({"ttl_seconds": 600}),
        ("POST", "/api/v1/dns/tsig-keys") => {
            json!({"name": "xfr.example.org", "secret": "c2VjcmV0IHNlY3JldCBzZWNyZXQgc2VjcmV0IDMyYg=="})
        }
        ("POST", "/api/v1/certificates/{name}/csr") => {
            json!({"common_name": "fresh.test", "sans": ["fresh.test"]})
        }
        // A zone file is text, not JSON.
        ("PUT", "/api/v1/zones/{name}/file") => {
            return "$TTL 300\n@ IN SOA ns1 hostmaster 1 3600 600 604800 60\n@ IN NS ns1\nns1 IN A 192.0.2.53\n".into();
        }
        _ => panic!("{}: add a sample request body", op.name()),
    };
    body.to_string()
}

// === tests ===

#[tokio::test]
async fn the_document_is_openapi_3_and_needs_authentication() {
    let f = Fixture::new();
    let a = f.call("GET", "/api/v1/openapi.json", None, false, "").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = f
        .call("GET", "/api/v1/openapi.json", Some(Role::Viewer), false, "")
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.content_type, "application/json");
    let doc: Value = serde_json::from_str(&a.body).expect("JSON");
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3."), "openapi {version}");
    assert_eq!(doc["info"]["title"], "Meridian API");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let description = doc["info"]["description"].as_str().unwrap_or_default();
    for needle in ["If-Match", "428", "viewer", "operator", "admin"] {
        assert!(
            description.contains(needle),
            "the description mentions {needle}"
        );
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert!(schemes["bearer"]["bearerFormat"]
        .as_str()
        .is_some_and(|f| f.starts_with("mrd_")));
    assert_eq!(schemes["basic"]["scheme"], "basic");
    assert_eq!(doc["security"], json!([{"bearer": []}, {"basic": []}]));

    // Every reference resolves, and every operation is unique and says which role it needs.
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"").skip(1) {
        let r = r.split('"').next().unwrap_or_default();
        assert!(resolve(&doc, &json!({ "$ref": r })).is_object(), "{r}");
    }
    let mut ids = BTreeSet::new();
    for op in operations(&doc) {
        let id = op.op["operationId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            !id.is_empty() && ids.insert(id),
            "{}: duplicate or missing operationId",
            op.name()
        );
        op.role();
        assert!(!op.op["summary"].is_null(), "{}: summary", op.name());
    }
    // The per-kind bodies are the kinds' own specs.
    let pool = &doc["paths"]["/api/v1/pools/{name}"]["put"]["requestBody"]["content"];
    assert_eq!(
        pool["application/json"]["schema"]["$ref"],
        "#/components/schemas/PoolSpec"
    );
    assert!(pool["application/toml"].is_object());
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_of_the_api() {
    let doc = document().await;
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .iter()
        .map(|op| (op.method.clone(), op.path.to_string()))
        .collect();
    let mut routes = BTreeSet::new();
    for (method, path) in ROUTES {
        if path.starts_with("/{kind}") {
            for kind in KINDS {
                let path = path.replacen("{kind}", kind, 1);
                routes.insert((method.to_string(), format!("/api/v1{path}")));
            }
        } else {
            routes.insert((method.to_string(), format!("/api/v1{path}")));
        }
    }
    let undocumented: Vec<_> = routes.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routes).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from the document: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "documented but not in ROUTES: {unrouted:?}"
    );
}

/// Every documented operation, called by each role with valid input: the role it names gets a
/// success and a lower one 403, each a documented answer with a conforming body. A route that
/// did not exist would get the router's 404 or 405, which no operation documents for this input.
#[tokio::test]
async fn every_documented_operation_answers_as_documented_for_each_role() {
    let doc = document().await;
    let mut errors = Vec::new();
    for op in operations(&doc) {
        for role in [Role::Viewer, Role::Operator, Role::Admin] {
            let f = Fixture::new();
            // `{id}` is the caller's own token, which any role may revoke.
            let path = fill(op.path, &webui::auth::token_id(&f.tokens[&role]));
            let body = sample_body(&f, &doc, &op, &path).await;
            let if_match = op.has_header("If-Match");
            let a = f.call(&op.method, &path, Some(role), if_match, &body).await;
            let allowed = role >= op.role();
            if allowed != a.status.is_success() || (!allowed && a.status != StatusCode::FORBIDDEN) {
                errors.push(format!("{} as {role}: {} {}", op.name(), a.status, a.body));
            }
            check_answer(&doc, &op, &a, &mut errors);
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[tokio::test]
async fn missing_credentials_and_missing_if_match_are_documented_answers() {
    let doc = document().await;
    let mut errors = Vec::new();
    let mut writes = 0;
    for op in operations(&doc) {
        let f = Fixture::new();
        let path = fill(op.path, &f.spare_token_id);
        let body = sample_body(&f, &doc, &op, &path).await;
        let a = f.call(&op.method, &path, None, true, &body).await;
        if a.status != StatusCode::UNAUTHORIZED {
            errors.push(format!("{} without credentials: {}", op.name(), a.status));
        }
        check_answer(&doc, &op, &a, &mut errors);
        if op.has_header("If-Match") {
            writes += 1;
            let a = f
                .call(&op.method, &path, Some(Role::Admin), false, &body)
                .await;
            if a.status != StatusCode::PRECONDITION_REQUIRED {
                errors.push(format!("{} without If-Match: {}", op.name(), a.status));
            }
            check_answer(&doc, &op, &a, &mut errors);
        }
    }
    // PUT /config, rollback, PUT and DELETE of each kind, a certificate's, and a zone file.
    assert_eq!(writes, 2 + 2 * KINDS.len() + 3);
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[tokio::test]
async fn the_audit_export_and_error_bodies_conform_too() {
    let doc = document().await;
    let ops = operations(&doc);
    let op = |method: &str, path: &str| {
        ops.iter()
            .find(|o| o.method == method && o.path == path)
            .unwrap_or_else(|| panic!("{method} {path} documented"))
    };
    let f = Fixture::new();
    let mut errors = Vec::new();

    let a = f
        .call(
            "GET",
            "/api/v1/audit?format=jsonl",
            Some(Role::Viewer),
            false,
            "",
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    check_answer(&doc, op("GET", "/api/v1/audit"), &a, &mut errors);
    let a = f
        .call(
            "GET",
            "/api/v1/audit?format=xml",
            Some(Role::Viewer),
            false,
            "",
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    check_answer(&doc, op("GET", "/api/v1/audit"), &a, &mut errors);

    // 422 with every error, 409 with the current revision, 404 for a missing object.
    let a = f
        .call(
            "PUT",
            "/api/v1/pools/spare",
            Some(Role::Operator),
            true,
            r#"{"name": "spare", "members": [{"address": "nowhere"}], "retries": "x"}"#,
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    check_answer(&doc, op("PUT", "/api/v1/pools/{name}"), &a, &mut errors);
    let req = Request::delete("/api/v1/pools/spare")
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", f.tokens[&Role::Operator]),
        )
        .header(header::IF_MATCH, "\"99\"")
        .body(Body::empty())
        .expect("request");
    let a = f.send(req).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);
    assert!(a.body.contains("current_revision"), "{}", a.body);
    check_answer(&doc, op("DELETE", "/api/v1/pools/{name}"), &a, &mut errors);
    let a = f
        .call("GET", "/api/v1/pools/ghost", Some(Role::Viewer), false, "")
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    check_answer(&doc, op("GET", "/api/v1/pools/{name}"), &a, &mut errors);

    // Someone else's token takes an admin to revoke.
    let path = format!("/api/v1/tokens/{}", f.spare_token_id);
    let a = f
        .call("DELETE", &path, Some(Role::Operator), false, "")
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    check_answer(&doc, op("DELETE", "/api/v1/tokens/{id}"), &a, &mut errors);
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}
