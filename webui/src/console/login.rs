//! Signing in and out. The login form carries its own CSRF token (a random value in a
//! short-lived cookie and in the form, compared on submit), so that another site cannot sign a
//! browser into an account of its choosing. Every attempt, good or bad, goes to the audit log
//! with the client's address.

use std::time::Instant;

use askama::Template;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use model::{Interface, Origin};

use super::{csrf, render, with_status};
use crate::auth::{cookie, random_hex, ConsoleUser, Denied, LOGIN_COOKIE, SESSION_COOKIE};
use crate::{ops, AppState};

/// Rejection for console routes without a live session: 401 with the login form.
#[derive(Debug, Clone)]
pub struct LoginRequired {
    /// The console is on HTTPS: cookies get `Secure`.
    pub secure: bool,
    /// The login form token the browser already holds: kept, so that a page loaded alongside
    /// the form (an icon, say) cannot invalidate the form.
    pub token: Option<String>,
}

impl IntoResponse for LoginRequired {
    fn into_response(self) -> Response {
        form_page(
            StatusCode::UNAUTHORIZED,
            "Sign in to continue.".into(),
            "admin".into(),
            None,
            self.secure,
            self.token,
        )
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginTemplate {
    error: String,
    username: String,
    csrf: String,
}

/// The login form with a fresh CSRF token in the form and in a cookie.
fn form_page(
    status: StatusCode,
    error: String,
    username: String,
    retry_after: Option<u64>,
    secure: bool,
    existing: Option<String>,
) -> Response {
    // A token the browser holds is reused; a new one is set otherwise.
    let (token, fresh) =
        match existing.filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit())) {
            Some(t) => (t, false),
            None => (random_hex(), true),
        };
    let mut resp = with_status(
        render(&LoginTemplate {
            error,
            username,
            csrf: token.clone(),
        }),
        status,
    );
    let secure = if secure { "; Secure" } else { "" };
    let value = format!(
        "{LOGIN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/login; Max-Age=3600{secure}"
    );
    if let (true, Ok(v)) = (fresh, HeaderValue::from_str(&value)) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    if let Some(secs) = retry_after.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
        resp.headers_mut().insert(header::RETRY_AFTER, secs);
    }
    resp
}

pub async fn page(State(st): State<AppState>, headers: HeaderMap) -> Response {
    form_page(
        StatusCode::OK,
        String::new(),
        "admin".into(),
        None,
        st.secure_cookies,
        cookie(&headers, LOGIN_COOKIE).map(str::to_string),
    )
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    username: String,
    password: String,
}

pub async fn login(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    use subtle::ConstantTimeEq;
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !bool::from(f.csrf.as_bytes().ct_eq(expected.as_bytes())) {
        return form_page(
            StatusCode::FORBIDDEN,
            "The sign-in form expired. Please try again.".into(),
            f.username,
            None,
            st.secure_cookies,
            None,
        );
    }
    let origin = Origin::new(&f.username, Interface::Console, Some(peer.ip().to_string()));
    let auth = st.backend.auth();
    let account = auth.users.get(&f.username).filter(|u| !u.disabled);
    let phc = account.map(|u| u.password_hash.clone());
    let result = st
        .passwords
        .check(peer.ip(), phc, f.password, Instant::now())
        .await;
    if let Err(denied) = result {
        st.metrics.login(false);
        let (status, error, retry) = match denied {
            Denied::Wrong => (
                StatusCode::UNAUTHORIZED,
                "Wrong user name or password.".to_string(),
                None,
            ),
            Denied::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The console is busy checking passwords. Try again in a moment.".to_string(),
                Some(1),
            ),
            Denied::Throttled(wait) => (
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Too many failed attempts from your address. Try again in {} seconds.",
                    wait.as_secs().max(1)
                ),
                Some(wait.as_secs().max(1)),
            ),
        };
        // A throttled address is not audited again for every refused attempt.
        if retry.is_none() {
            ops::audit(
                &st,
                origin,
                "login",
                "wrong user name or password".into(),
                false,
            );
        }
        return form_page(
            status,
            error,
            f.username,
            retry,
            st.secure_cookies,
            Some(expected.to_string()),
        );
    }
    st.metrics.login(true);
    ops::audit(&st, origin, "login", String::new(), true);
    let session = st.sessions.create(&f.username, Instant::now());
    let mut resp = Redirect::to("/").into_response();
    let secure = if st.secure_cookies { "; Secure" } else { "" };
    let value = format!("{SESSION_COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/{secure}");
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "meridian_login=; HttpOnly; SameSite=Strict; Path=/login; Max-Age=0",
        ),
    );
    resp
}

pub async fn logout(
    user: ConsoleUser,
    State(st): State<AppState>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = csrf(&user, &pairs) {
        return r.into_response();
    }
    st.sessions.remove(&user.cookie);
    ops::audit(&st, user.origin(), "logout", String::new(), true);
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("meridian_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    resp
}
