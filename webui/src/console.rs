//! The web console: login, the dashboard, and the forms that add or remove a pool member or a
//! GSLB site. Every form change is proposed through the cluster like an API call, and carries the
//! session's CSRF token.

use std::time::Instant;

use askama::Template;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use model::{Config, MemberSpec, Object, ObjectKind, Revisioned, SiteSpec};
use serde::Deserialize;

use crate::auth::{ConsoleUser, Denied, SESSION_COOKIE};
use crate::{view, AppState, Change, ChangeError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/console/pools/{pool}/members", post(add_member))
        .route("/console/pools/{pool}/members/remove", post(remove_member))
        .route("/console/gslb/{record}/sites", post(add_site))
        .route("/console/gslb/{record}/sites/remove", post(remove_site))
        .fallback(|_: ConsoleUser| async { (StatusCode::NOT_FOUND, "not found\n") })
        .method_not_allowed_fallback(|_: ConsoleUser| async {
            (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        })
}

/// The route's filters in a few words, in the order they run.
fn route_filters(r: &model::RouteSpec) -> String {
    let mut parts = Vec::new();
    if let Some(rd) = &r.redirect {
        let target = [
            rd.scheme.as_ref().map(|s| format!("{s}://")),
            rd.host.clone(),
            rd.port.map(|p| format!(":{p}")),
            rd.path.clone(),
        ]
        .into_iter()
        .flatten()
        .collect::<String>();
        parts.push(format!(
            "redirect {} → {}",
            rd.status,
            if target.is_empty() {
                "same URL".into()
            } else {
                target
            }
        ));
    }
    if let Some(h) = &r.request_headers {
        parts.push(format!("request headers: {}", header_edit(h)));
    }
    if let Some(to) = &r.rewrite_prefix {
        parts.push(format!("rewrite {} → {to}", r.path_prefix));
    }
    if let Some(h) = &r.response_headers {
        parts.push(format!("response headers: {}", header_edit(h)));
    }
    if parts.is_empty() {
        "—".into()
    } else {
        parts.join("; ")
    }
}

fn header_edit(h: &model::HeaderEditSpec) -> String {
    let mut out: Vec<String> = h.remove.iter().map(|n| format!("-{n}")).collect();
    out.extend(h.set.iter().map(|(n, v)| format!("{n}={v}")));
    out.extend(h.add.iter().map(|(n, v)| format!("+{n}={v}")));
    out.join(", ")
}

/// Rejection for console routes without a live session: 401 with a way to the login page.
#[derive(Debug)]
pub struct LoginRequired;

impl IntoResponse for LoginRequired {
    fn into_response(self) -> Response {
        let page = LoginTemplate {
            error: "Sign in to continue.".into(),
        };
        let body = page.render().unwrap_or_else(|_| "sign in at /login".into());
        (StatusCode::UNAUTHORIZED, Html(body)).into_response()
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginTemplate {
    error: String,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardTemplate {
    user: String,
    csrf: String,
    revision: u64,
    raft: crate::RaftView,
    leader: String,
    listeners: Vec<crate::ListenerView>,
    routes: Vec<(String, String, String, String, String, String)>,
    pools: Vec<view::PoolView>,
    zones: Vec<view::ZoneView>,
    gslb: Vec<view::GslbView>,
    health_checks: Vec<String>,
    message: String,
    alarms: Vec<String>,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorTemplate {
    title: String,
    errors: Vec<(String, String)>,
}

fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
        }
    }
}

async fn login_page() -> Response {
    render(&LoginTemplate {
        error: String::new(),
    })
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
}

async fn login(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Form(f): Form<LoginForm>,
) -> Response {
    let phc = st.backend.auth().users.get(&f.username).cloned();
    let result = st
        .passwords
        .check(peer.ip(), phc, f.password, Instant::now())
        .await;
    if let Err(denied) = result {
        st.metrics.login(false);
        let (status, error) = match denied {
            Denied::Wrong => (
                StatusCode::UNAUTHORIZED,
                "Wrong user name or password.".to_string(),
            ),
            Denied::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The console is busy checking passwords. Try again in a moment.".to_string(),
            ),
            Denied::Throttled(wait) => (
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Too many failed attempts from your address. Try again in {} seconds.",
                    wait.as_secs().max(1)
                ),
            ),
        };
        let mut resp = render(&LoginTemplate { error });
        *resp.status_mut() = status;
        return resp;
    }
    st.metrics.login(true);
    let cookie = st.sessions.create(&f.username, Instant::now());
    let mut resp = Redirect::to("/").into_response();
    let secure = if st.secure_cookies { "; Secure" } else { "" };
    let value = format!("{SESSION_COOKIE}={cookie}; HttpOnly; SameSite=Strict; Path=/{secure}");
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    user: ConsoleUser,
    State(st): State<AppState>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !csrf_ok(&f.csrf, &user.session.csrf) {
        return csrf_failed();
    }
    st.sessions.remove(&user.cookie);
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("meridian_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    resp
}

#[derive(Deserialize)]
struct DashboardQuery {
    #[serde(default)]
    msg: String,
}

async fn dashboard(
    user: ConsoleUser,
    State(st): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<DashboardQuery>,
) -> Response {
    let cfg = st.backend.config();
    let health = st.backend.health();
    let raft = st.backend.raft();
    let leader = raft
        .leader
        .map(|l| l.to_string())
        .unwrap_or_else(|| "none".into());
    let routes = cfg
        .value
        .spec
        .routes
        .iter()
        .map(|r| {
            (
                r.name.clone(),
                r.listener.clone(),
                r.host.clone().unwrap_or_else(|| "*".into()),
                r.path_prefix.clone(),
                r.pool.clone(),
                route_filters(r),
            )
        })
        .collect();
    render(&DashboardTemplate {
        user: user.session.user.clone(),
        csrf: user.session.csrf.clone(),
        revision: cfg.revision,
        raft,
        leader,
        listeners: st.backend.listeners(),
        routes,
        pools: view::pools(&cfg.value, health.as_ref()),
        zones: view::zones(&cfg.value, cfg.revision),
        gslb: view::gslb(&cfg.value, health.as_ref()),
        health_checks: cfg.value.health_checks.keys().cloned().collect(),
        message: q.msg,
        alarms: st.backend.alarms(),
    })
}

fn csrf_failed() -> Response {
    let mut resp = render(&ErrorTemplate {
        title: "The form expired".into(),
        errors: vec![("csrf".into(), "reload the dashboard and try again".into())],
    });
    *resp.status_mut() = StatusCode::FORBIDDEN;
    resp
}

/// Proposes an edit of one object made by a form, then returns to the dashboard. The edit is
/// conditional on the revision the form's object was read from, so concurrent edits (another
/// console, the API) are never silently overwritten.
async fn propose_edit(
    st: &AppState,
    base: &Revisioned<Config>,
    object: Object,
    what: &str,
) -> Response {
    let mut spec = base.value.spec.clone();
    spec.upsert(&object);
    let result = match model::validate(&spec) {
        Err(e) => Err(ChangeError::Invalid(e)),
        Ok(_) => {
            st.backend
                .propose(Change::Upsert {
                    expected_revision: Some(base.revision),
                    object,
                })
                .await
        }
    };
    let e = match result {
        Ok(rev) => {
            st.metrics.change("console");
            let msg = format!("{what} (revision {rev})");
            let q: String = url_escape(&msg);
            return Redirect::to(&format!("/?msg={q}")).into_response();
        }
        Err(e) => e,
    };
    let (status, errors) = match e {
        ChangeError::Invalid(v) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            v.errors.into_iter().map(|e| (e.path, e.message)).collect(),
        ),
        ChangeError::Stale { current, .. } => (
            StatusCode::CONFLICT,
            vec![(
                String::new(),
                format!(
                    "the configuration changed while you were editing (it is now at revision \
                     {current}); reload the dashboard and try again"
                ),
            )],
        ),
        ChangeError::NotFound { kind, name } => (
            StatusCode::NOT_FOUND,
            vec![(String::new(), format!("{kind}/{name} does not exist"))],
        ),
        ChangeError::NotLeader { .. } | ChangeError::Unavailable(_) => {
            tracing::warn!(error = %e, "console change not committed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                vec![(
                    String::new(),
                    "the cluster cannot commit changes right now; try again shortly".to_string(),
                )],
            )
        }
    };
    let mut resp = render(&ErrorTemplate {
        title: format!("Could not apply: {what}"),
        errors,
    });
    *resp.status_mut() = status;
    resp
}

/// Compares CSRF tokens in constant time.
fn csrf_ok(given: &str, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn not_found(what: String) -> Response {
    let mut resp = render(&ErrorTemplate {
        title: "Not found".into(),
        errors: vec![(String::new(), what)],
    });
    *resp.status_mut() = StatusCode::NOT_FOUND;
    resp
}

#[derive(Deserialize)]
struct MemberForm {
    csrf: String,
    address: String,
    #[serde(default = "one")]
    weight: u32,
}

fn one() -> u32 {
    1
}

async fn add_member(
    user: ConsoleUser,
    State(st): State<AppState>,
    Path(pool): Path<String>,
    Form(f): Form<MemberForm>,
) -> Response {
    if !csrf_ok(&f.csrf, &user.session.csrf) {
        return csrf_failed();
    }
    edit_pool(&st, &pool, |p| {
        let address = f.address.trim().to_string();
        p.members.push(MemberSpec {
            address: address.clone(),
            weight: f.weight,
        });
        Ok(format!("added {address} to pool {pool}"))
    })
    .await
}

#[derive(Deserialize)]
struct RemoveMemberForm {
    csrf: String,
    address: String,
}

async fn remove_member(
    user: ConsoleUser,
    State(st): State<AppState>,
    Path(pool): Path<String>,
    Form(f): Form<RemoveMemberForm>,
) -> Response {
    if !csrf_ok(&f.csrf, &user.session.csrf) {
        return csrf_failed();
    }
    edit_pool(&st, &pool, |p| {
        let before = p.members.len();
        p.members.retain(|m| m.address != f.address);
        if p.members.len() == before {
            return Err(format!("{} is not a member of pool {pool}", f.address));
        }
        Ok(format!("removed {} from pool {pool}", f.address))
    })
    .await
}

#[derive(Deserialize)]
struct SiteForm {
    csrf: String,
    name: String,
    address: String,
    #[serde(default = "eighty")]
    port: u16,
    #[serde(default)]
    health_check: String,
}

fn eighty() -> u16 {
    80
}

async fn add_site(
    user: ConsoleUser,
    State(st): State<AppState>,
    Path(record): Path<String>,
    Form(f): Form<SiteForm>,
) -> Response {
    if !csrf_ok(&f.csrf, &user.session.csrf) {
        return csrf_failed();
    }
    edit_gslb(&st, &record, |g| {
        let name = f.name.trim().to_string();
        g.sites.push(SiteSpec {
            name: name.clone(),
            address: f.address.trim().to_string(),
            port: f.port,
            health_check: Some(f.health_check.trim().to_string()).filter(|s| !s.is_empty()),
        });
        Ok(format!("added site {name} to {record}"))
    })
    .await
}

#[derive(Deserialize)]
struct RemoveSiteForm {
    csrf: String,
    name: String,
}

async fn remove_site(
    user: ConsoleUser,
    State(st): State<AppState>,
    Path(record): Path<String>,
    Form(f): Form<RemoveSiteForm>,
) -> Response {
    if !csrf_ok(&f.csrf, &user.session.csrf) {
        return csrf_failed();
    }
    edit_gslb(&st, &record, |g| {
        let before = g.sites.len();
        g.sites.retain(|s| s.name != f.name);
        if g.sites.len() == before {
            return Err(format!("{} is not a site of {record}", f.name));
        }
        Ok(format!("removed site {} from {record}", f.name))
    })
    .await
}

/// Applies a form's `edit` to the named pool as it is now, then proposes the result. The edit
/// returns what it did (for the dashboard message) or what it did not find (404).
async fn edit_pool(
    st: &AppState,
    pool: &str,
    edit: impl FnOnce(&mut model::PoolSpec) -> Result<String, String>,
) -> Response {
    let base = st.backend.config();
    let Some(Object::Pools(mut p)) = base.value.spec.get(ObjectKind::Pools, pool) else {
        return not_found(format!("pool {pool:?} does not exist"));
    };
    match edit(&mut p) {
        Ok(what) => propose_edit(st, &base, Object::Pools(p), &what).await,
        Err(missing) => not_found(missing),
    }
}

/// Like [`edit_pool`], for a GSLB record named with or without its trailing dot.
async fn edit_gslb(
    st: &AppState,
    record: &str,
    edit: impl FnOnce(&mut model::GslbRecordSpec) -> Result<String, String>,
) -> Response {
    let base = st.backend.config();
    let want = model::validate::fqdn(record);
    let Some(mut g) = base
        .value
        .spec
        .gslb_records
        .iter()
        .find(|g| model::validate::fqdn(&g.name) == want)
        .cloned()
    else {
        return not_found(format!("GSLB record {record:?} does not exist"));
    };
    match edit(&mut g) {
        Ok(what) => propose_edit(st, &base, Object::GslbRecords(g), &what).await,
        Err(missing) => not_found(missing),
    }
}
