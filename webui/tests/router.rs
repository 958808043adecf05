//! The management router driven with `oneshot`, no socket, over an in-memory backend that
//! applies changes the way the replicated state machine does (revisions, If-Match, history,
//! audit, users and tokens): how the console and the API answer, per route and per role.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use model::records::{AuthState, TokenInfo, UserRecord};
use model::{Origin, Role};
use tower::ServiceExt;
use webui::{AppState, Backend, Change, ChangeError};

mod common;
use common::*;

const SPEC: &str = r#"
api_version = "meridian/v1"
[[listeners]]
name = "web"
bind = "127.0.0.1:8080"
[[routes]]
name = "all"
listener = "web"
pool = "p"
[[pools]]
name = "p"
members = [{ address = "127.0.0.1:1" }]
"#;

struct Fixture {
    state: AppState,
    backend: Arc<Memory>,
}

/// A signed-in console user.
struct Session {
    cookie: String,
    csrf: String,
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
        let mut users = BTreeMap::new();
        for role in Role::ALL {
            users.insert(
                role.as_str().to_string(),
                UserRecord {
                    password_hash: hash(),
                    role,
                    disabled: false,
                },
            );
        }
        backend.lock().doc.auth = AuthState {
            users,
            tokens: BTreeMap::new(),
        };
        let state = AppState::new(backend.clone(), prometheus::Registry::new()).expect("state");
        Fixture { state, backend }
    }

    fn login(&self, user: &str) -> Session {
        let cookie = self.state.sessions.create(user, Instant::now());
        let csrf = self
            .state
            .sessions
            .get(&cookie, Instant::now())
            .expect("session")
            .csrf;
        Session { cookie, csrf }
    }

    fn token(&self, user: &str, role: Role, expires_unix_ms: Option<u64>) -> String {
        let secret = webui::auth::new_token();
        let mut auth = AuthState::clone(&self.backend.auth());
        auth.tokens.insert(
            webui::auth::token_id(&secret),
            TokenInfo {
                name: "t".into(),
                user: user.into(),
                role,
                created_unix_ms: 1,
                expires_unix_ms,
            },
        );
        self.backend.lock().doc.auth = auth;
        secret
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
        let mut req = req;
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 9], 5555))));
        let resp = webui::app(self.state.clone())
            .oneshot(req)
            .await
            .expect("response");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    async fn get(&self, s: &Session, path: &str) -> (StatusCode, String) {
        let req = Request::get(path)
            .header(header::COOKIE, format!("meridian_session={}", s.cookie))
            .body(Body::empty())
            .expect("request");
        let (status, _, body) = self.send(req).await;
        (status, body)
    }

    /// Posts a console form with the session's CSRF token.
    async fn post(&self, s: &Session, path: &str, fields: &[(&str, &str)]) -> (StatusCode, String) {
        let mut pairs = vec![("csrf", s.csrf.as_str())];
        pairs.extend_from_slice(fields);
        let body = form(&pairs);
        let req = Request::post(path)
            .header(header::COOKIE, format!("meridian_session={}", s.cookie))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .expect("request");
        let (status, headers, body) = self.send(req).await;
        let location = headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (status, if location.is_empty() { body } else { location })
    }

    async fn api(
        &self,
        method: Method,
        path: &str,
        token: &str,
        if_match: Option<&str>,
        body: &str,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        if let Some(m) = if_match {
            req = req.header(header::IF_MATCH, m);
        }
        self.send(req.body(Body::from(body.to_string())).expect("request"))
            .await
    }

    fn revision(&self) -> u64 {
        self.backend.lock().doc.revision
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The pool form as the console renders it, with one member added.
fn pool_form<'a>(revision: &'a str, new_member: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("revision", revision),
        ("name", "p"),
        ("members[0].address", "127.0.0.1:1"),
        ("members[0].weight", "1"),
        ("members[0].state", "enabled"),
        ("members[1].address", new_member),
        ("members[1].weight", ""),
        ("members[1].state", "enabled"),
    ]
}

#[tokio::test]
async fn every_page_renders_for_a_viewer_and_has_the_navigation() {
    let f = Fixture::new();
    let s = f.login("viewer");
    for path in [
        "/",
        "/console/listeners",
        "/console/pools",
        "/console/gslb",
        "/console/zones",
        "/console/cluster",
        "/console/history",
        "/console/history/1",
        "/console/audit",
        "/console/users",
        "/console/alarms",
        "/console/account",
        "/console/certificates",
        "/console/pools/p",
        "/console/routes/all",
        "/console/listeners/web",
    ] {
        let (status, html) = f.get(&s, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {html}");
        assert!(
            html.contains("aria-label=\"Main\""),
            "{path} has the navigation"
        );
        assert!(
            html.contains("aria-current=\"page\""),
            "{path} marks its section"
        );
    }
    // A viewer sees the pool's form read-only, with no save button.
    let (_, html) = f.get(&s, "/console/pools/p").await;
    assert!(html.contains("<fieldset disabled>") && !html.contains("id=\"save\""));
}

#[tokio::test]
async fn unknown_pages_get_the_styled_404_and_anonymous_users_the_login_form() {
    let f = Fixture::new();
    let s = f.login("admin");
    let (status, html) = f.get(&s, "/console/nowhere/at/all").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        html.contains("Not found") && html.contains("aria-label=\"Main\""),
        "{html}"
    );
    let (status, _) = f.get(&s, "/console/pools/ghost").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let anon = Session {
        cookie: "forged".into(),
        csrf: String::new(),
    };
    let (status, html) = f.get(&anon, "/console/pools").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(html.contains("name=\"password\""), "{html}");
}

#[tokio::test]
async fn a_form_save_is_conditional_on_the_revision_it_was_read_at() {
    let f = Fixture::new();
    let s = f.login("operator");
    let rev = f.revision().to_string();
    let (status, location) = f
        .post(&s, "/console/pools/p", &pool_form(&rev, "127.0.0.1:2"))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{location}");
    assert_eq!(location, "/console/pools/p");
    let (change, origin) = f.backend.lock().proposed.last().cloned().expect("proposed");
    match change {
        Change::Upsert {
            expected_revision: Some(r),
            object: model::Object::Pools(p),
        } => {
            assert_eq!(r.to_string(), rev);
            assert_eq!(p.members.len(), 2);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(origin.user, "operator");
    assert_eq!(origin.interface, model::Interface::Console);
    assert_eq!(origin.client.as_deref(), Some("192.0.2.9"));
    // The result message is shown once, from the session.
    let (_, html) = f.get(&s, "/console/pools/p").await;
    assert!(
        html.contains("id=\"flash\"") && html.contains("Saved pool p"),
        "{html}"
    );
    let (_, html) = f.get(&s, "/console/pools/p").await;
    assert!(!html.contains("id=\"flash\""));
}

#[tokio::test]
async fn a_stale_form_gets_409_with_what_was_typed_kept() {
    let f = Fixture::new();
    let s = f.login("admin");
    let (status, html) = f
        .post(&s, "/console/pools/p", &pool_form("0", "127.0.0.1:7777"))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(html.contains("Someone else saved revision 1"), "{html}");
    assert!(
        html.contains("value=\"127.0.0.1:7777\""),
        "typed value kept: {html}"
    );
}

#[tokio::test]
async fn validation_errors_sit_beside_their_field_with_the_input_kept() {
    let f = Fixture::new();
    let s = f.login("admin");
    let rev = f.revision().to_string();
    let mut fields = pool_form(&rev, "not-an-address");
    fields.push(("retries", "lots"));
    let (status, html) = f.post(&s, "/console/pools/p", &fields).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("value=\"not-an-address\""), "{html}");
    // The form's own check (a number) and validation's (an address) are both reported, each in
    // the cell or field of its input.
    let retries = html
        .split("id=\"f-retries\"")
        .nth(1)
        .expect("retries input");
    assert!(
        retries
            .split("</div>")
            .next()
            .unwrap_or("")
            .contains("whole number"),
        "{retries}"
    );
    f.backend.lock().proposed.clear();
    let fields = pool_form(&rev, "not-an-address");
    let (status, html) = f.post(&s, "/console/pools/p", &fields).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let cell = html
        .split("id=\"f-members-1--address\"")
        .nth(1)
        .expect("member input");
    assert!(
        cell.split("</td>")
            .next()
            .unwrap_or("")
            .contains("field-error"),
        "the address error is in the member's cell: {cell}"
    );
    assert!(
        !html.contains("pools[0]"),
        "no internal array paths: {html}"
    );
    assert!(f.backend.lock().proposed.is_empty(), "nothing proposed");
}

#[tokio::test]
async fn every_kind_can_be_created_from_its_form_and_deleted_after_confirmation() {
    let f = Fixture::new();
    let s = f.login("operator");
    let rev = f.revision().to_string();
    let (status, _) = f
        .post(
            &s,
            "/console/health_checks/new",
            &[("revision", &rev), ("name", "hc"), ("path", "/healthz")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let rev = f.revision().to_string();
    let (status, loc) = f
        .post(
            &s,
            "/console/zones/new",
            &[
                ("revision", &rev),
                ("name", "example.test"),
                ("soa.mname", "ns1.example.test"),
                ("soa.rname", "hostmaster.example.test"),
                ("ns", "ns1.example.test"),
                ("records[0].name", "ns1"),
                ("records[0].type", "A"),
                ("records[0].value", "192.0.2.1"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{loc}");
    let rev = f.revision().to_string();
    let (status, loc) = f
        .post(
            &s,
            "/console/gslb_records/new",
            &[
                ("revision", &rev),
                ("name", "app.example.test"),
                ("when_all_down", "all"),
                ("sites[0].name", "east"),
                ("sites[0].address", "192.0.2.10"),
                ("sites[0].health_check", "hc"),
                ("sites[0].state", "enabled"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{loc}");
    let cfg = f.backend.config();
    assert_eq!(cfg.value.gslb_records.len(), 1);
    assert_eq!(cfg.value.zones.len(), 1);
    // A second object with the same name is refused beside the name field.
    let rev = f.revision().to_string();
    let (status, html) = f
        .post(
            &s,
            "/console/health_checks/new",
            &[("revision", &rev), ("name", "hc"), ("path", "/")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("exists"), "{html}");

    // Deleting asks first, and the confirmation carries the revision.
    let (status, html) = f
        .get(&s, "/console/gslb_records/app.example.test/delete")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("Delete GSLB record app.example.test?"),
        "{html}"
    );
    let rev = f.revision().to_string();
    let (status, _) = f
        .post(
            &s,
            "/console/gslb_records/app.example.test/delete",
            &[("revision", &rev)],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(f.backend.config().value.gslb_records.is_empty());
}

#[tokio::test]
async fn member_admin_states_are_set_from_the_console() {
    let f = Fixture::new();
    let s = f.login("operator");
    let (status, _) = f
        .post(
            &s,
            "/console/pools/p/members/state",
            &[("address", "127.0.0.1:1"), ("state", "draining")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        f.backend.config().value.pools[0].members[0].state,
        model::AdminState::Draining
    );
    let (_, html) = f.get(&s, "/console/pools/p").await;
    assert!(
        html.contains("<span class=\"draining\">draining</span>"),
        "{html}"
    );
}

#[tokio::test]
async fn roles_are_enforced_on_every_changing_console_route() {
    let f = Fixture::new();
    let rev = f.revision().to_string();
    let operator_routes: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/console/pools/p", pool_form(&rev, "127.0.0.1:3")),
        ("/console/pools/new", vec![("name", "q")]),
        ("/console/pools/p/delete", vec![]),
        (
            "/console/pools/p/members/state",
            vec![("address", "127.0.0.1:1"), ("state", "disabled")],
        ),
        (
            "/console/gslb_records/x/sites/state",
            vec![("site", "a"), ("state", "disabled")],
        ),
        ("/console/history/1/rollback", vec![]),
        (
            "/console/certificates",
            vec![("name", "x"), ("cert_pem", "x")],
        ),
        (
            "/console/certificates/generate",
            vec![("name", "x"), ("common_name", "x.test")],
        ),
        ("/console/certificates/x/revoke", vec![("reason", "r")]),
        ("/console/certificates/x/delete", vec![]),
    ];
    let admin_routes: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "/console/users",
            vec![
                ("name", "new"),
                ("password", "longenough123"),
                ("role", "viewer"),
            ],
        ),
        ("/console/users/viewer", vec![("role", "admin")]),
        ("/console/users/viewer/delete", vec![]),
    ];
    for user in ["viewer", "operator"] {
        let s = f.login(user);
        let mut routes: Vec<&(&str, Vec<(&str, &str)>)> = admin_routes.iter().collect();
        if user == "viewer" {
            routes.extend(operator_routes.iter());
        }
        for (path, fields) in routes {
            let (status, body) = f.post(&s, path, fields).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{user} POST {path}: {body}");
        }
    }
    assert!(f.backend.lock().proposed.is_empty(), "nothing was proposed");
    // The confirmation pages are refused as well.
    let s = f.login("viewer");
    for path in [
        "/console/pools/p/delete",
        "/console/pools/new",
        "/console/history/1/rollback",
    ] {
        assert_eq!(f.get(&s, path).await.0, StatusCode::FORBIDDEN, "{path}");
    }
}

#[tokio::test]
async fn roles_are_enforced_on_every_changing_api_route() {
    let f = Fixture::new();
    let viewer = f.token("viewer", Role::Viewer, None);
    let operator = f.token("operator", Role::Operator, None);
    let capped = f.token("admin", Role::Viewer, None);
    let pool = r#"{"name":"p","members":[{"address":"127.0.0.1:1"}]}"#;
    let calls: Vec<(Method, &str, &str, Role)> = vec![
        (Method::PUT, "/api/v1/config", SPEC, Role::Operator),
        (Method::PUT, "/api/v1/pools/p", pool, Role::Operator),
        (Method::DELETE, "/api/v1/routes/all", "", Role::Operator),
        (
            Method::PUT,
            "/api/v1/pools/p/members/127.0.0.1:1/state",
            r#"{"state":"draining"}"#,
            Role::Operator,
        ),
        (
            Method::POST,
            "/api/v1/history/1/rollback",
            "",
            Role::Operator,
        ),
        (Method::GET, "/api/v1/users", "", Role::Admin),
        (
            Method::POST,
            "/api/v1/users",
            r#"{"name":"x","password":"longenough123","role":"viewer"}"#,
            Role::Admin,
        ),
        (
            Method::PATCH,
            "/api/v1/users/viewer",
            r#"{"role":"admin"}"#,
            Role::Admin,
        ),
        (Method::DELETE, "/api/v1/users/viewer", "", Role::Admin),
        (
            Method::POST,
            "/api/v1/dns/tsig-keys",
            r#"{"name":"k","secret":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}"#,
            Role::Operator,
        ),
        (
            Method::DELETE,
            "/api/v1/dns/tsig-keys/k",
            "",
            Role::Operator,
        ),
    ];
    for (method, path, body, needs) in &calls {
        let mut tokens = vec![(&viewer, Role::Viewer), (&capped, Role::Viewer)];
        if *needs == Role::Admin {
            tokens.push((&operator, Role::Operator));
        }
        for (t, role) in tokens {
            let (status, _, answer) = f.api(method.clone(), path, t, Some("*"), body).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{role} {method} {path}: {answer}"
            );
            let v: serde_json::Value = serde_json::from_str(&answer).expect("JSON error");
            assert!(v["error"].as_str().is_some_and(|e| e.contains("role")));
        }
    }
    assert!(f.backend.lock().proposed.is_empty());
    // Reads are open to every role.
    for path in [
        "/api/v1/config",
        "/api/v1/history",
        "/api/v1/audit",
        "/api/v1/pools",
    ] {
        let (status, _, _) = f.api(Method::GET, path, &viewer, None, "").await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn writes_need_if_match_and_every_api_error_is_json() {
    let f = Fixture::new();
    let t = f.token("admin", Role::Admin, None);
    let pool = r#"{"name":"p","members":[{"address":"127.0.0.1:9"}]}"#;
    let (status, _, body) = f.api(Method::PUT, "/api/v1/pools/p", &t, None, pool).await;
    assert_eq!(status, StatusCode::PRECONDITION_REQUIRED, "{body}");
    assert!(body.contains("If-Match"));
    let (status, _, _) = f
        .api(Method::DELETE, "/api/v1/routes/all", &t, None, "")
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_REQUIRED);
    let (status, _, _) = f.api(Method::PUT, "/api/v1/config", &t, None, SPEC).await;
    assert_eq!(status, StatusCode::PRECONDITION_REQUIRED);
    let (status, headers, _) = f
        .api(Method::PUT, "/api/v1/pools/p", &t, Some("*"), pool)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.contains_key(header::ETAG));

    // 413 is JSON too.
    let big = "x".repeat(webui::MAX_BODY_BYTES + 10);
    let (status, headers, body) = f
        .api(Method::PUT, "/api/v1/config", &t, Some("*"), &big)
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap_or("")
        .contains("json"));
    serde_json::from_str::<serde_json::Value>(&body).expect("JSON 413");

    // A JSON body is not called TOML, and every object's type errors are listed.
    let req = Request::put("/api/v1/config")
        .header(header::AUTHORIZATION, format!("Bearer {t}"))
        .header(header::IF_MATCH, "*")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            r#"{"api_version":"meridian/v1","pools":[{"name":1},{"name":"ok","retries":"x"}]}"#,
        ))
        .expect("request");
    let (status, _, body) = f.send(req).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let errors = v["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 2, "{body}");
    assert!(!body.contains("TOML"), "{body}");
    let req = Request::put("/api/v1/config")
        .header(header::AUTHORIZATION, format!("Bearer {t}"))
        .header(header::IF_MATCH, "*")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("this is not json"))
        .expect("request");
    let (status, _, body) = f.send(req).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body.contains("malformed JSON") && !body.contains("TOML"),
        "{body}"
    );
}

#[tokio::test]
async fn expired_tokens_and_tokens_of_disabled_users_are_refused() {
    let f = Fixture::new();
    let expired = f.token("admin", Role::Admin, Some(1));
    let (status, _, _) = f
        .api(Method::GET, "/api/v1/config", &expired, None, "")
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let t = f.token("viewer", Role::Viewer, None);
    let mut auth = AuthState::clone(&f.backend.auth());
    if let Some(u) = auth.users.get_mut("viewer") {
        u.disabled = true;
    }
    f.backend.lock().doc.auth = auth;
    let (status, _, _) = f.api(Method::GET, "/api/v1/config", &t, None, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The same goes for a console session of a disabled user.
    let s = f.login("viewer");
    assert_eq!(f.get(&s, "/").await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn forms_need_the_csrf_token_and_a_same_origin() {
    let f = Fixture::new();
    let s = f.login("admin");
    let req = Request::post("/console/pools/p/members/state")
        .header(header::COOKIE, format!("meridian_session={}", s.cookie))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("address=127.0.0.1%3A1&state=disabled"))
        .expect("request");
    assert_eq!(f.send(req).await.0, StatusCode::FORBIDDEN);
    let req = Request::post("/console/pools/p/members/state")
        .header(header::COOKIE, format!("meridian_session={}", s.cookie))
        .header(header::HOST, "meridian.example:9090")
        .header(header::ORIGIN, "https://evil.example")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!(
            "csrf={}&address=127.0.0.1%3A1&state=disabled",
            s.csrf
        )))
        .expect("request");
    assert_eq!(f.send(req).await.0, StatusCode::FORBIDDEN);
    // The login form has its own token, bound to a cookie.
    let req = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("username=admin&password=correct+horse+battery"))
        .expect("request");
    let (status, _, body) = f.send(req).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(f.backend.lock().proposed.is_empty());
}

#[tokio::test]
async fn result_messages_cannot_be_forged_through_the_url() {
    let f = Fixture::new();
    let s = f.login("admin");
    let (_, html) = f.get(&s, "/?msg=Your+account+is+compromised").await;
    assert!(!html.contains("compromised"));
    let (_, html) = f.get(&s, "/console/pools?flash=pwned").await;
    assert!(!html.contains("pwned"));
}

#[tokio::test]
async fn history_shows_who_changed_what_and_rolls_back_as_a_new_revision() {
    let f = Fixture::new();
    let s = f.login("operator");
    let rev = f.revision().to_string();
    f.post(&s, "/console/pools/p", &pool_form(&rev, "127.0.0.1:2"))
        .await;
    let (_, html) = f.get(&s, "/console/history").await;
    assert!(
        html.contains("save pools/p") && html.contains("operator"),
        "{html}"
    );
    let (_, html) = f.get(&s, "/console/history/2").await;
    assert!(html.contains("<span class=\"add\">"), "a diff: {html}");
    assert!(html.contains("127.0.0.1:2"), "{html}");
    let (status, html) = f.get(&s, "/console/history/1/rollback").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Roll back to revision 1?"));
    let (status, _) = f
        .post(&s, "/console/history/1/rollback", &[("revision", "2")])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(f.revision(), 3);
    assert_eq!(f.backend.config().value.pools[0].members.len(), 1);
    // Conditional on the revision the confirmation was read at.
    let (status, _) = f
        .post(&s, "/console/history/2/rollback", &[("revision", "2")])
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn the_audit_log_is_shown_and_exported_as_json_lines() {
    let f = Fixture::new();
    let s = f.login("admin");
    f.post(
        &s,
        "/console/pools/p/members/state",
        &[("address", "127.0.0.1:1"), ("state", "disabled")],
    )
    .await;
    let (_, html) = f.get(&s, "/console/audit").await;
    assert!(
        html.contains("save pools/p") && html.contains("192.0.2.9"),
        "{html}"
    );
    let req = Request::get("/console/audit.jsonl")
        .header(header::COOKIE, format!("meridian_session={}", s.cookie))
        .body(Body::empty())
        .expect("request");
    let (status, headers, body) = f.send(req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap_or("")
        .starts_with("application/jsonl"));
    let lines: Vec<serde_json::Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(
        lines.iter().any(|l| l["action"] == "save pools/p"),
        "{body}"
    );
}

#[tokio::test]
async fn cluster_trouble_is_503_without_internal_details() {
    let f = Fixture::new();
    f.backend.lock().fail_next = Some(ChangeError::Unavailable(
        "forwarding to the leader at 10.9.8.7:9700: connection refused".into(),
    ));
    let s = f.login("admin");
    // A console write: disabling a pool member.
    let disable_member = || {
        f.post(
            &s,
            "/console/pools/p/members/state",
            &[("address", "127.0.0.1:1"), ("state", "disabled")],
        )
    };
    let (status, body) = disable_member().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!body.contains("10.9.8.7"), "{body}");

    // A write whose outcome is unknown says so (504), on the API and the console alike.
    let t = f.token("admin", Role::Admin, None);
    f.backend.lock().fail_next = Some(ChangeError::Unknown {
        detail: "forwarding to the leader at 10.9.8.7:9700: timed out".into(),
        after_index: Some(41),
    });
    let pool = r#"{"name":"q","members":[{"address":"127.0.0.1:9"}]}"#;
    let (status, _, body) = f
        .api(Method::PUT, "/api/v1/pools/q", &t, Some("*"), pool)
        .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert!(
        body.contains("may still be applied") && !body.contains("10.9.8.7"),
        "{body}"
    );
    // It names the log position after which the write would be, and the audit log shows
    // exactly the entries after it.
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["after_index"], 41, "{body}");
    assert!(body.contains("/api/v1/audit?after_index=41"), "{body}");
    let audit_after = |after: Option<u64>| {
        let path = match after {
            Some(i) => format!("/api/v1/audit?after_index={i}"),
            None => "/api/v1/audit".to_string(),
        };
        let (f, t) = (&f, &t);
        async move {
            let (status, _, audit) = f.api(Method::GET, &path, t, None, "").await;
            assert_eq!(status, StatusCode::OK, "{audit}");
            serde_json::from_str::<Vec<serde_json::Value>>(&audit).expect("json")
        }
    };
    let all = audit_after(None).await;
    let newest = all[0]["index"].as_u64().expect("index");
    let after = audit_after(Some(newest - 1)).await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["index"].as_u64(), Some(newest));
    assert!(audit_after(Some(newest)).await.is_empty());
    f.backend.lock().fail_next = Some(ChangeError::unknown("timed out"));
    let (status, body) = disable_member().await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(body.contains("not confirmed"), "{body}");
    assert!(!body.contains("audit log lists it"), "{body}");
    f.backend.lock().fail_next = Some(ChangeError::Unknown {
        detail: "timed out".into(),
        after_index: Some(77),
    });
    let (status, body) = disable_member().await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(body.contains("after entry 77"), "{body}");
}

#[tokio::test]
async fn the_overview_shows_alarms_and_pages_carry_a_strict_csp() {
    let f = Fixture::new();
    let s = f.login("viewer");
    let req = Request::get("/")
        .header(header::COOKIE, format!("meridian_session={}", s.cookie))
        .body(Body::empty())
        .expect("request");
    let (status, headers, html) = f.send(req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("revision 9 failed to compile"), "{html}");
    let csp = headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap_or("");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(!html.contains("style=\""), "no inline styles");
}

fn leaf(names: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("params");
    let cert = params.self_signed(&key).expect("cert");
    (cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn certificates_are_uploaded_generated_and_revoked_from_the_console() {
    let f = Fixture::new();
    let s = f.login("operator");
    let (cert, key) = leaf(&["www.example.test"]);
    let (_, wrong_key) = leaf(&["www.example.test"]);
    // A key that does not match: the error sits beside the key field; the key is not echoed.
    let (status, html) = f
        .post(
            &s,
            "/console/certificates",
            &[
                ("name", "www"),
                ("cert_pem", &cert),
                ("key_pem", &wrong_key),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("id=\"up-key-err\""), "{html}");
    assert!(!html.contains("PRIVATE KEY"), "the key is not echoed back");
    assert!(
        html.contains("BEGIN CERTIFICATE"),
        "the certificate typed is kept"
    );
    assert!(f.backend.lock().doc.certificates.is_empty());

    let (status, _) = f
        .post(
            &s,
            "/console/certificates",
            &[("name", "www"), ("cert_pem", &cert), ("key_pem", &key)],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, html) = f.get(&s, "/console/certificates").await;
    assert!(html.contains("Imported certificate www"), "{html}");
    assert!(
        html.contains("www.example.test") && html.contains("days left"),
        "{html}"
    );
    assert!(!html.contains("PRIVATE KEY"));

    // A key generated here: its CSR is shown to be signed; the key never is.
    let (status, html) = f
        .post(
            &s,
            "/console/certificates/generate",
            &[
                ("name", "api"),
                ("common_name", "api.example.test"),
                ("sans", "api.example.test"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(html.contains("BEGIN CERTIFICATE REQUEST"), "{html}");
    assert!(!html.contains("PRIVATE KEY"));

    // Revoking asks first, then takes a reason.
    let (status, html) = f.get(&s, "/console/certificates/www/revoke").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("name=\"reason\""), "{html}");
    let (status, _) = f
        .post(
            &s,
            "/console/certificates/www/revoke",
            &[("reason", "key compromise")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, html) = f.get(&s, "/console/certificates").await;
    assert!(html.contains("revoked: key compromise"), "{html}");
}

#[tokio::test]
async fn kernel_tls_on_is_refused_on_a_node_without_it_and_unknown_certificates_are_named() {
    let f = Fixture::new();
    let t = f.token("admin", Role::Admin, None);
    let spec = SPEC.replace(
        "bind = \"127.0.0.1:8080\"",
        "bind = \"127.0.0.1:8080\"\ntls = { certificates = [\"missing\"], ktls = \"on\" }",
    );
    let (status, _, body) = f
        .api(Method::PUT, "/api/v1/config", &t, Some("*"), &spec)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let paths: Vec<&str> = v["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert!(paths.contains(&"listeners[0].tls.ktls"), "{body}");
    assert!(
        paths.contains(&"listeners[0].tls.certificates[0]"),
        "{body}"
    );
    assert!(f.backend.lock().proposed.is_empty());
}

#[tokio::test]
async fn tsig_keys_are_stored_sealed_listed_without_secrets_and_kept_while_used() {
    let f = Fixture::new();
    let t = f.token("operator", Role::Operator, None);
    let secret = "c2VjcmV0IHNlY3JldCBzZWNyZXQgc2VjcmV0IDMyYg==";
    let (status, _, body) = f
        .api(
            Method::POST,
            "/api/v1/dns/tsig-keys",
            &t,
            None,
            &format!(
                r#"{{"name":"Xfr.Example.COM","algorithm":"hmac-sha512","secret":"{secret}"}}"#
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body.contains("xfr.example.com."), "{body}");
    let stored = f.backend.lock().doc.tsig_keys.clone();
    let record = stored.get("xfr.example.com.").expect("stored");
    assert_eq!(record.algorithm, model::records::TsigAlgorithm::HmacSha512);
    let key = credentials::ClusterKey::derive("router tests");
    let opened = credentials::open_tsig_key(record, &key).expect("opens");
    assert_eq!(opened.as_slice(), b"secret secret secret secret 32b");
    assert!(!format!("{:?}", f.backend.lock().proposed).contains(secret));

    // Every problem at once, nothing stored.
    let (status, _, body) = f
        .api(
            Method::POST,
            "/api/v1/dns/tsig-keys",
            &t,
            None,
            r#"{"name":"bad name","algorithm":"md5","secret":"c2hvcnQ="}"#,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    for path in ["\"name\"", "\"secret\"", "\"algorithm\""] {
        assert!(body.contains(path), "{path} in {body}");
    }
    // A taken name is a conflict.
    let (status, _, _) = f
        .api(
            Method::POST,
            "/api/v1/dns/tsig-keys",
            &t,
            None,
            &format!(r#"{{"name":"xfr.example.com","secret":"{secret}"}}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Listed (API and console) with the zones using it, never with the secret.
    let zone = r#"{"name":"example.com","soa":{"mname":"ns1","rname":"hostmaster"},"ns":["ns1"],
        "secondaries":[{"address":"192.0.2.53","tsig_key":"xfr.example.com"}]}"#;
    let (status, _, body) = f
        .api(
            Method::PUT,
            "/api/v1/zones/example.com",
            &t,
            Some("*"),
            zone,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = f
        .api(Method::GET, "/api/v1/dns/tsig-keys", &t, None, "")
        .await;
    assert_eq!(status, StatusCode::OK);
    let listed: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(listed[0]["name"], "xfr.example.com.");
    assert_eq!(listed[0]["algorithm"], "hmac-sha512");
    assert_eq!(listed[0]["used_by"][0], "example.com");
    assert!(!body.contains(secret) && !body.contains(&record.secret.ciphertext));
    let s = f.login("operator");
    let (status, page) = f.get(&s, "/console/zones").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("xfr.example.com.") && page.contains("example.com"),
        "{page}"
    );
    assert!(!page.contains(secret));

    // In use: refused, naming the zone; once unused, deleted from the console.
    let (status, _, body) = f
        .api(
            Method::DELETE,
            "/api/v1/dns/tsig-keys/xfr.example.com",
            &t,
            None,
            "",
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _, body) = f
        .api(
            Method::DELETE,
            "/api/v1/zones/example.com",
            &t,
            Some("*"),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, location) = f
        .post(
            &s,
            "/console/zones/tsig",
            &[("action", "delete"), ("name", "xfr.example.com.")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{location}");
    assert!(f.backend.lock().doc.tsig_keys.is_empty());

    // The console's add form stores one too.
    let (status, location) = f
        .post(
            &s,
            "/console/zones/tsig",
            &[
                ("action", "add"),
                ("name", "k2"),
                ("algorithm", "hmac-sha256"),
                ("secret", secret),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{location}");
    assert!(f.backend.lock().doc.tsig_keys.contains_key("k2."));
}

#[tokio::test]
async fn writing_the_config_in_force_again_makes_no_revision() {
    let f = Fixture::new();
    let t = f.token("operator", Role::Operator, None);
    let (status, _, body) = f
        .api(Method::PUT, "/api/v1/config", &t, Some("*"), SPEC)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let revision = f.revision();
    let proposed = f.backend.lock().proposed.len();
    // The same document again, unconditionally and conditionally: the same revision back.
    for if_match in ["*".to_string(), format!("\"{revision}\"")] {
        let (status, _, body) = f
            .api(Method::PUT, "/api/v1/config", &t, Some(&if_match), SPEC)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains(&format!("\"revision\":{revision}")), "{body}");
    }
    assert_eq!(f.revision(), revision);
    assert_eq!(
        f.backend.lock().proposed.len(),
        proposed,
        "nothing proposed"
    );
    // A stale precondition is still refused.
    let stale = format!("\"{}\"", revision + 5);
    let (status, _, _) = f
        .api(Method::PUT, "/api/v1/config", &t, Some(&stale), SPEC)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn join_tokens_are_issued_once_by_admins_and_listed_without_secrets() {
    let f = Fixture::new();
    let admin = f.token("admin", Role::Admin, None);
    let operator = f.token("operator", Role::Operator, None);
    let (status, _, body) = f
        .api(
            Method::POST,
            "/api/v1/cluster/join-tokens",
            &operator,
            None,
            "{}",
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, body) = f
        .api(
            Method::POST,
            "/api/v1/cluster/join-tokens",
            &admin,
            None,
            r#"{"ttl_seconds": 0}"#,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("ttl_seconds"), "{body}");

    let (status, _, body) = f
        .api(
            Method::POST,
            "/api/v1/cluster/join-tokens",
            &admin,
            None,
            r#"{"ttl_seconds": 600}"#,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let issued: serde_json::Value = serde_json::from_str(&body).expect("json");
    let token = issued["token"].as_str().expect("token");
    let parts = credentials::cluster_pki::parse_token(token).expect("a join token");
    assert_eq!(parts.ca_sha256, "ab".repeat(32), "it names the cluster CA");
    let stored = f.backend.lock().doc.join_tokens.clone();
    let record = stored.get(&parts.id).expect("stored");
    assert_eq!(
        record.secret_sha256,
        credentials::cluster_pki::secret_hash(&parts.secret)
    );
    let ttl = record.expires_unix_ms - record.created_unix_ms;
    assert_eq!(ttl, 600_000);
    assert!(!format!("{:?}", f.backend.lock().proposed).contains(parts.secret.as_str()));

    let (status, _, body) = f
        .api(Method::GET, "/api/v1/cluster/join-tokens", &admin, None, "")
        .await;
    assert_eq!(status, StatusCode::OK);
    let listed: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(listed[0]["id"], parts.id.as_str());
    assert_eq!(listed[0]["state"], "unused");
    assert_eq!(listed[0]["created_by"], "admin");
    assert!(!body.contains(parts.secret.as_str()) && !body.contains(&record.secret_sha256));

    // The console: an admin issues one and sees it once; the page lists them, and the members
    // with their certificate expiry column.
    let s = f.login("admin");
    let (status, page) = f
        .post(&s, "/console/cluster/join-tokens", &[("ttl_minutes", "15")])
        .await;
    assert_eq!(status, StatusCode::CREATED, "{page}");
    let shown = page
        .split("id=\"join-token\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the token shown");
    let shown = credentials::cluster_pki::parse_token(shown).expect("a join token");
    let (status, page) = f.get(&s, "/console/cluster").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains(&shown.id) && page.contains(&parts.id),
        "{page}"
    );
    assert!(!page.contains(shown.secret.as_str()));
    assert!(page.contains("Certificate expires"));
    let viewer = f.login("viewer");
    let (status, _) = f
        .post(
            &viewer,
            "/console/cluster/join-tokens",
            &[("ttl_minutes", "15")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
