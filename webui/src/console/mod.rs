//! The web console: server-rendered pages (askama) with a persistent navigation, one page per
//! object with its own URL, forms for every object kind, history with diff and rollback, the
//! audit log, users and tokens. Works without script; `/static/live.js` only makes charts live.
//!
//! Every page needs a signed-in [`ConsoleUser`]; every change needs the role it names
//! ([`require`]), the session's CSRF token, and a same-origin `Origin` when the browser sends
//! one ([`same_origin`]). Changes are proposed through the cluster like API calls, conditional
//! on the revision the form was read at. Result messages travel in the session ([`flash`]),
//! never in the URL, so they cannot be forged by a link.

mod account;
mod cache;
mod certificates;
mod history;
mod login;
mod objects;
mod pages;
mod state;

use askama::Template;
use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use model::Role;

use crate::auth::ConsoleUser;
use crate::{AppState, ChangeError, Refusal};

pub use history::audit_jsonl;
pub use login::LoginRequired;

const CSS: &str = include_str!("../../static/console.css");

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::overview))
        .route("/login", get(login::page).post(login::login))
        .route("/logout", post(login::logout))
        .route("/static/console.css", get(css))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/console/listeners", get(pages::listeners))
        .route("/console/pools", get(pages::pools))
        .route("/console/gslb", get(pages::gslb))
        .route("/console/zones", get(pages::zones))
        .route("/console/zones/import", post(pages::import_zone))
        .route("/console/zones/tsig", post(pages::tsig_key))
        .route("/console/cluster", get(pages::cluster))
        .route(
            "/console/cluster/join-tokens",
            post(pages::issue_join_token),
        )
        .route(
            "/console/cluster/{id}/remove",
            get(pages::confirm_remove).post(pages::remove),
        )
        .route(
            "/console/certificates",
            get(certificates::list).post(certificates::upload),
        )
        .route(
            "/console/certificates/generate",
            post(certificates::generate),
        )
        .route(
            "/console/certificates/{name}/revoke",
            get(certificates::confirm_revoke).post(certificates::revoke),
        )
        .route(
            "/console/certificates/{name}/delete",
            get(certificates::confirm_delete).post(certificates::delete),
        )
        .route("/console/cache", get(cache::show))
        .route("/console/cache/purge", post(cache::purge))
        .route("/console/alarms", get(pages::alarms))
        .route("/console/history", get(history::list))
        .route("/console/history/{revision}", get(history::show))
        .route(
            "/console/history/{revision}/rollback",
            get(history::confirm_rollback).post(history::rollback),
        )
        .route("/console/audit", get(history::audit))
        .route("/console/audit.jsonl", get(history::audit_export))
        .route(
            "/console/users",
            get(account::users).post(account::create_user),
        )
        .route("/console/users/{name}", post(account::update_user))
        .route(
            "/console/users/{name}/delete",
            get(account::confirm_delete_user).post(account::delete_user),
        )
        .route("/console/tokens", post(account::create_token))
        .route(
            "/console/tokens/{id}/revoke",
            get(account::confirm_revoke).post(account::revoke),
        )
        .route(
            "/console/account",
            get(account::account).post(account::change_password),
        )
        .route(
            "/console/pools/{pool}/members/state",
            post(objects::member_state),
        )
        .route(
            "/console/gslb_records/{record}/sites/state",
            post(objects::site_state),
        )
        .route(
            "/console/{kind}/new",
            get(objects::new_form).post(objects::create),
        )
        .route(
            "/console/{kind}/{name}",
            get(objects::show).post(objects::save),
        )
        .route(
            "/console/{kind}/{name}/delete",
            get(objects::confirm_delete).post(objects::delete),
        )
        .fallback(not_found_page)
        .method_not_allowed_fallback(|_: ConsoleUser| async {
            (StatusCode::METHOD_NOT_ALLOWED, Html("method not allowed"))
        })
        .layer(axum::middleware::from_fn(same_origin))
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

/// Refuses a state-changing request that a browser says came from another site: `Origin` must
/// name this host, and `Sec-Fetch-Site` (when sent) must be `same-origin` or `none`. Requests
/// without either header (curl, the tests' HTTP clients) still need the CSRF token.
async fn same_origin(req: Request, next: Next) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let headers = req.headers();
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        // `Origin: null` says nothing (privacy settings send it); Sec-Fetch-Site still does.
        if let Some(origin) = headers
            .get(header::ORIGIN)
            .filter(|o| o.as_bytes() != b"null")
        {
            let origin = origin.to_str().unwrap_or("");
            let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or("");
            if origin_host.is_empty() || !origin_host.eq_ignore_ascii_case(host) {
                return forbidden("This form was sent from another site.");
            }
        }
        if let Some(site) = headers.get("sec-fetch-site") {
            if !matches!(site.as_bytes(), b"same-origin" | b"none") {
                return forbidden("This form was sent from another site.");
            }
        }
    }
    next.run(req).await
}

/// What every page shows around its content: who is signed in, the navigation, alarms, and the
/// one-time message of the last action.
pub struct Chrome {
    pub user: String,
    pub role: Role,
    pub csrf: String,
    pub nav: &'static str,
    pub alarms: usize,
    pub flash: String,
    pub node_id: u64,
    /// Certificates expired, revoked but still listed, or inside the alarm horizon.
    pub expiring: usize,
}

/// The navigation: (section id, label, URL).
pub const NAV: [(&str, &str, &str); 12] = [
    ("overview", "Overview", "/"),
    ("listeners", "Listeners & routes", "/console/listeners"),
    ("pools", "Pools", "/console/pools"),
    ("cache", "Cache", "/console/cache"),
    ("gslb", "GSLB", "/console/gslb"),
    ("zones", "DNS zones", "/console/zones"),
    ("certificates", "Certificates", "/console/certificates"),
    ("cluster", "Cluster", "/console/cluster"),
    ("history", "History", "/console/history"),
    ("audit", "Audit", "/console/audit"),
    ("users", "Users & tokens", "/console/users"),
    ("alarms", "Alarms", "/console/alarms"),
];

pub struct NavItem {
    pub label: &'static str,
    pub url: &'static str,
    pub current: bool,
    pub badge: usize,
}

impl Chrome {
    pub fn new(st: &AppState, user: &ConsoleUser, nav: &'static str) -> Chrome {
        Chrome {
            user: user.session.user.clone(),
            role: user.role,
            csrf: user.session.csrf.clone(),
            nav,
            alarms: st.backend.alarms().len(),
            flash: st.sessions.take_flash(&user.cookie).unwrap_or_default(),
            node_id: st.backend.raft().node_id,
            expiring: certificates::expiring(st),
        }
    }

    pub fn nav_items(&self) -> Vec<NavItem> {
        NAV.iter()
            .map(|(id, label, url)| NavItem {
                label,
                url,
                current: *id == self.nav,
                badge: match *id {
                    "alarms" => self.alarms,
                    "certificates" => self.expiring,
                    _ => 0,
                },
            })
            .collect()
    }

    pub fn can_edit(&self) -> bool {
        self.role.can_change_config()
    }

    pub fn is_admin(&self) -> bool {
        self.role.can_manage_users()
    }
}

pub fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, Html("internal error")).into_response()
        }
    }
}

pub(crate) fn with_status(mut resp: Response, status: StatusCode) -> Response {
    *resp.status_mut() = status;
    resp
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessageTemplate {
    title: String,
    message: String,
    chrome: Chrome,
}

#[derive(Template)]
#[template(path = "plain_message.html")]
struct PlainMessageTemplate {
    title: String,
    message: String,
}

/// A page with a title and a message (403, 404, 409, ...), with the navigation when the user is
/// known.
pub fn message(status: StatusCode, chrome: Option<Chrome>, title: &str, message: &str) -> Response {
    let (title, message) = (title.to_string(), message.to_string());
    let page = match chrome {
        Some(chrome) => render(&MessageTemplate {
            title,
            message,
            chrome,
        }),
        None => render(&PlainMessageTemplate { title, message }),
    };
    with_status(page, status)
}

pub fn forbidden(why: &str) -> Response {
    message(StatusCode::FORBIDDEN, None, "Not allowed", why)
}

/// A request refused before it did anything (a missing role, an expired form): the page to
/// answer with, boxed because a response is large.
pub struct Refused(Box<Response>);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        *self.0
    }
}

/// Refuses the request unless the user has at least `role`.
pub fn require(user: &ConsoleUser, role: Role) -> Result<(), Refused> {
    if user.role >= role {
        Ok(())
    } else {
        Err(Refused(Box::new(forbidden(&format!(
            "This needs the {role} role; you are signed in as {} with the {} role.",
            user.session.user, user.role
        )))))
    }
}

/// Checks the form's CSRF token against the session's, in constant time.
pub fn csrf(user: &ConsoleUser, pairs: &[(String, String)]) -> Result<(), Refused> {
    use subtle::ConstantTimeEq;
    let given = pairs
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(user.session.csrf.as_bytes())) {
        Ok(())
    } else {
        Err(Refused(Box::new(message(
            StatusCode::FORBIDDEN,
            None,
            "The form expired",
            "Reload the page and try again. Nothing was changed.",
        ))))
    }
}

/// The value of a form field.
pub fn field<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// Leaves `text` for the next page this session shows, then redirects there.
pub fn done(st: &AppState, user: &ConsoleUser, text: String, to: &str) -> Response {
    st.metrics.change("console");
    st.sessions.set_flash(&user.cookie, text);
    Redirect::to(to).into_response()
}

/// A failed change as a page: what went wrong, with nothing applied.
pub fn change_failed(
    st: &AppState,
    user: &ConsoleUser,
    nav: &'static str,
    e: ChangeError,
) -> Response {
    let chrome = Some(Chrome::new(st, user, nav));
    match e {
        ChangeError::Rejected(Refusal::Invalid(v)) => {
            let text = v
                .errors
                .iter()
                .map(|e| {
                    if e.path.is_empty() {
                        e.message.clone()
                    } else {
                        format!("{}: {}", e.path, e.message)
                    }
                })
                .collect::<Vec<_>>()
                .join("; ");
            message(
                StatusCode::UNPROCESSABLE_ENTITY,
                chrome,
                "Not applied",
                &text,
            )
        }
        ChangeError::Rejected(Refusal::StaleRevision { current, .. }) => message(
            StatusCode::CONFLICT,
            chrome,
            "The configuration changed meanwhile",
            &format!(
                "Someone else saved revision {current} after you opened this page. Reload it, \
                 check their change, and try again. Nothing was changed."
            ),
        ),
        ChangeError::Rejected(Refusal::NotFound { kind, name }) => message(
            StatusCode::NOT_FOUND,
            chrome,
            "Not found",
            &format!("{kind}/{name} does not exist."),
        ),
        ChangeError::Rejected(Refusal::NotAllowed(why)) => {
            message(StatusCode::CONFLICT, chrome, "Not applied", &why)
        }
        ChangeError::NotLeader { .. } | ChangeError::Unavailable(_) => {
            tracing::warn!(error = %e, "console change not committed");
            message(
                StatusCode::SERVICE_UNAVAILABLE,
                chrome,
                "The cluster cannot commit changes right now",
                "Try again shortly. Nothing was changed.",
            )
        }
        ChangeError::Unknown { after_index, .. } => {
            tracing::warn!(error = %e, "console change not confirmed");
            let place = after_index.map_or(String::new(), |i| {
                format!(" If it was, the audit log lists it after entry {i}.")
            });
            message(
                StatusCode::GATEWAY_TIMEOUT,
                chrome,
                "The change was sent but not confirmed in time",
                &format!(
                    "It may still be applied.{place} Check the history before saving again: a \
                     save from this page is conditional on the revision it was read at, so it \
                     cannot apply twice."
                ),
            )
        }
    }
}

/// The styled 404 page: a signed-in user sees it with the navigation.
async fn not_found_page(
    user: Result<ConsoleUser, LoginRequired>,
    axum::extract::State(st): axum::extract::State<AppState>,
) -> Response {
    match user {
        Ok(u) => not_found(&st, &u, "overview", "There is no page at this address."),
        Err(login) => login.into_response(),
    }
}

pub fn not_found(st: &AppState, user: &ConsoleUser, nav: &'static str, what: &str) -> Response {
    message(
        StatusCode::NOT_FOUND,
        Some(Chrome::new(st, user, nav)),
        "Not found",
        what,
    )
}

/// `unix_ms` as `2026-11-27 13:45:02 UTC`.
pub fn time(unix_ms: u64) -> String {
    if unix_ms == 0 {
        return "—".into();
    }
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let (y, mo, d) = civil_from_days(days as i64);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}:{s:02} UTC")
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// How long ago `unix_ms` was, roughly: `3 min ago`.
pub fn ago(unix_ms: u64) -> String {
    if unix_ms == 0 {
        return "—".into();
    }
    let secs = model::unix_ms().saturating_sub(unix_ms) / 1000;
    match secs {
        0..=59 => format!("{secs} s ago"),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86_399 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

/// Percent-encodes a path segment (object names may hold dots, colons, `*`).
pub fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_render_in_utc() {
        assert_eq!(time(0), "—");
        assert_eq!(time(1_795_786_772_733), "2026-11-27 13:39:32 UTC");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn segments_are_escaped() {
        assert_eq!(seg("app.example.com."), "app.example.com.");
        assert_eq!(seg("127.0.0.1:80"), "127.0.0.1%3A80");
        assert_eq!(seg("a/b?c"), "a%2Fb%3Fc");
    }
}
