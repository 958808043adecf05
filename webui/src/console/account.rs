//! Users and tokens (admins manage every user and token; others see their own tokens), and the
//! signed-in user's own password.

use std::collections::BTreeMap;
use std::time::Instant;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Form;
use model::Role;

use super::objects::{confirm, Confirm};
use super::{
    ago, change_failed, csrf, done, field, render, require, seg, time, with_status, Chrome,
};
use crate::auth::{ConsoleUser, Denied};
use crate::{ops, AppState, ChangeError, Refusal};

pub struct UserRow {
    pub name: String,
    pub href: String,
    pub role: Role,
    pub disabled: bool,
    pub is_self: bool,
}

pub struct TokenRow {
    pub short: String,
    pub name: String,
    pub user: String,
    pub role: Role,
    pub created: String,
    pub expires: String,
    pub expired: bool,
    pub last_used: String,
    pub revoke_href: String,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersTemplate {
    chrome: Chrome,
    users: Vec<UserRow>,
    tokens: Vec<TokenRow>,
    roles: Vec<&'static str>,
    /// Errors of the create-user form, by field, and what was typed.
    user_errors: BTreeMap<String, String>,
    new_user: String,
    new_role: String,
    token_errors: BTreeMap<String, String>,
    new_token_name: String,
    /// A token secret just created: shown once.
    secret: String,
}

impl UsersTemplate {
    fn err<'a>(map: &'a BTreeMap<String, String>, k: &str) -> &'a str {
        map.get(k).map(String::as_str).unwrap_or("")
    }
    pub fn user_err(&self, k: &str) -> &str {
        Self::err(&self.user_errors, k)
    }
    pub fn token_err(&self, k: &str) -> &str {
        Self::err(&self.token_errors, k)
    }
}

fn users_page(st: &AppState, user: &ConsoleUser) -> UsersTemplate {
    let auth = st.backend.auth();
    let now = model::unix_ms();
    let users = if user.role == Role::Admin {
        auth.users
            .iter()
            .map(|(n, u)| UserRow {
                name: n.clone(),
                href: format!("/console/users/{}", seg(n)),
                role: u.role,
                disabled: u.disabled,
                is_self: *n == user.session.user,
            })
            .collect()
    } else {
        Vec::new()
    };
    let tokens = crate::api::tokens_for(st, &user.session.user, user.role)
        .into_iter()
        .map(|t| TokenRow {
            short: t.id.get(..12).unwrap_or(&t.id).to_string(),
            revoke_href: format!("/console/tokens/{}/revoke", seg(&t.id)),
            name: t.name,
            user: t.user,
            role: t.role,
            created: time(t.created_unix_ms),
            expires: t
                .expires_unix_ms
                .map(time)
                .unwrap_or_else(|| "never".into()),
            expired: t.expires_unix_ms.is_some_and(|e| e <= now),
            last_used: t
                .last_used_unix_ms
                .map(ago)
                .unwrap_or_else(|| "not on this node".into()),
        })
        .collect();
    UsersTemplate {
        chrome: Chrome::new(st, user, "users"),
        users,
        tokens,
        roles: Role::ALL.iter().map(|r| r.as_str()).collect(),
        user_errors: BTreeMap::new(),
        new_user: String::new(),
        new_role: "operator".into(),
        token_errors: BTreeMap::new(),
        new_token_name: String::new(),
        secret: String::new(),
    }
}

pub async fn users(user: ConsoleUser, State(st): State<AppState>) -> Response {
    render(&users_page(&st, &user))
}

fn role_of(pairs: &[(String, String)]) -> Option<Role> {
    Role::parse(field(pairs, "role"))
}

/// Validation errors of a small form, by field.
fn by_field(e: &model::ValidationErrors) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for fe in &e.errors {
        map.entry(fe.path.clone())
            .and_modify(|m: &mut String| {
                m.push_str("; ");
                m.push_str(&fe.message)
            })
            .or_insert_with(|| fe.message.clone());
    }
    map
}

pub async fn create_user(
    user: ConsoleUser,
    State(st): State<AppState>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = csrf(&user, &pairs).and_then(|_| require(&user, Role::Admin)) {
        return r.into_response();
    }
    let name = field(&pairs, "name").trim().to_string();
    let password = field(&pairs, "password");
    let Some(role) = role_of(&pairs) else {
        let mut page = users_page(&st, &user);
        page.user_errors
            .insert("role".into(), "choose a role".into());
        page.new_user = name;
        return with_status(render(&page), StatusCode::UNPROCESSABLE_ENTITY);
    };
    match ops::create_user(&st, user.origin(), &name, password, role).await {
        Ok(()) => done(
            &st,
            &user,
            format!("Created user {name} with the {role} role."),
            "/console/users",
        ),
        Err(ChangeError::Rejected(Refusal::Invalid(e))) => {
            let mut page = users_page(&st, &user);
            page.user_errors = by_field(&e);
            page.new_user = name;
            page.new_role = role.as_str().into();
            with_status(render(&page), StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(e) => change_failed(&st, &user, "users", e),
    }
}

/// One form per user row: role, enabled, and an optional new password.
pub async fn update_user(
    user: ConsoleUser,
    State(st): State<AppState>,
    Path(name): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = csrf(&user, &pairs).and_then(|_| require(&user, Role::Admin)) {
        return r.into_response();
    }
    let role = role_of(&pairs);
    let disabled = Some(field(&pairs, "disabled") == "1");
    let password = Some(field(&pairs, "password")).filter(|p| !p.is_empty());
    match ops::update_user(&st, user.origin(), &name, password, role, disabled).await {
        Ok(()) => done(
            &st,
            &user,
            format!(
                "Updated user {name}{}.",
                if password.is_some() {
                    " and set a new password (their sessions ended)"
                } else {
                    ""
                }
            ),
            "/console/users",
        ),
        Err(e) => change_failed(&st, &user, "users", e),
    }
}

pub async fn confirm_delete_user(
    user: ConsoleUser,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = require(&user, Role::Admin) {
        return r.into_response();
    }
    confirm(
        &st,
        &user,
        "users",
        Confirm {
            title: format!("Delete user {name}?"),
            question: format!(
                "{name} can no longer sign in, and every API token of {name} stops working."
            ),
            action: format!("/console/users/{}/delete", seg(&name)),
            button: "Delete user",
            back: "/console/users".into(),
            hidden: Vec::new(),
        },
    )
}

pub async fn delete_user(
    user: ConsoleUser,
    State(st): State<AppState>,
    Path(name): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = csrf(&user, &pairs).and_then(|_| require(&user, Role::Admin)) {
        return r.into_response();
    }
    match ops::delete_user(&st, user.origin(), &name).await {
        Ok(()) => done(
            &st,
            &user,
            format!("Deleted user {name}."),
            "/console/users",
        ),
        Err(e) => change_failed(&st, &user, "users", e),
    }
}

pub async fn create_token(
    user: ConsoleUser,
    State(st): State<AppState>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = csrf(&user, &pairs) {
        return r.into_response();
    }
    let name = field(&pairs, "name").trim().to_string();
    let role = role_of(&pairs).unwrap_or(user.role);
    let days = field(&pairs, "expires_days").trim();
    let mut page = users_page(&st, &user);
    page.new_token_name = name.clone();
    let expires_days = if days.is_empty() {
        None
    } else {
        match days.parse::<u32>() {
            Ok(d) => Some(d),
            Err(_) => {
                page.token_errors.insert(
                    "expires_days".into(),
                    format!("{days:?} is not a number of days"),
                );
                return with_status(render(&page), StatusCode::UNPROCESSABLE_ENTITY);
            }
        }
    };
    if role > user.role {
        page.token_errors.insert(
            "role".into(),
            format!(
                "a token cannot have more than your own role ({})",
                user.role
            ),
        );
        return with_status(render(&page), StatusCode::UNPROCESSABLE_ENTITY);
    }
    match ops::create_token(
        &st,
        user.origin(),
        &user.session.user,
        &name,
        role,
        expires_days,
    )
    .await
    {
        Ok((_, secret)) => {
            // Shown once, on this page only; never stored or put in a URL.
            st.metrics.change("console");
            let mut page = users_page(&st, &user);
            page.secret = secret;
            with_status(render(&page), StatusCode::CREATED)
        }
        Err(ChangeError::Rejected(Refusal::Invalid(e))) => {
            page.token_errors = by_field(&e);
            with_status(render(&page), StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(e) => change_failed(&st, &user, "users", e),
    }
}

fn token_owner(st: &AppState, id: &str) -> Option<String> {
    st.backend.auth().tokens.get(id).map(|t| t.user.clone())
}

pub async fn confirm_revoke(
    user: ConsoleUser,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    let Some(owner) = token_owner(&st, &id) else {
        return super::not_found(&st, &user, "users", "No such token.");
    };
    if owner != user.session.user {
        if let Err(r) = require(&user, Role::Admin) {
            return r.into_response();
        }
    }
    confirm(
        &st,
        &user,
        "users",
        Confirm {
            title: "Revoke this token?".into(),
            question: format!("Every program using this token of {owner} loses access at once."),
            action: format!("/console/tokens/{}/revoke", seg(&id)),
            button: "Revoke",
            back: "/console/users".into(),
            hidden: Vec::new(),
        },
    )
}

pub async fn revoke(
    user: ConsoleUser,
    State(st): State<AppState>,
    Path(id): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = csrf(&user, &pairs) {
        return r.into_response();
    }
    let Some(owner) = token_owner(&st, &id) else {
        return super::not_found(&st, &user, "users", "No such token.");
    };
    if owner != user.session.user {
        if let Err(r) = require(&user, Role::Admin) {
            return r.into_response();
        }
    }
    match ops::revoke_token(&st, user.origin(), &id).await {
        Ok(()) => done(&st, &user, "Revoked the token.".into(), "/console/users"),
        Err(e) => change_failed(&st, &user, "users", e),
    }
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountTemplate {
    chrome: Chrome,
    errors: BTreeMap<String, String>,
}

impl AccountTemplate {
    pub fn err(&self, k: &str) -> &str {
        self.errors.get(k).map(String::as_str).unwrap_or("")
    }
}

pub async fn account(user: ConsoleUser, State(st): State<AppState>) -> Response {
    render(&AccountTemplate {
        chrome: Chrome::new(&st, &user, "users"),
        errors: BTreeMap::new(),
    })
}

pub async fn change_password(
    user: ConsoleUser,
    State(st): State<AppState>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = csrf(&user, &pairs) {
        return r.into_response();
    }
    let refused = |errors: BTreeMap<String, String>, status| {
        with_status(
            render(&AccountTemplate {
                chrome: Chrome::new(&st, &user, "users"),
                errors,
            }),
            status,
        )
    };
    let (current, new, again) = (
        field(&pairs, "current"),
        field(&pairs, "new"),
        field(&pairs, "again"),
    );
    if new != again {
        let mut e = BTreeMap::new();
        e.insert(
            "again".to_string(),
            "the two new passwords differ".to_string(),
        );
        return refused(e, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let phc = st
        .backend
        .auth()
        .users
        .get(&user.session.user)
        .map(|u| u.password_hash.clone());
    match st
        .passwords
        .check(user.client, phc, current.to_string(), Instant::now())
        .await
    {
        Ok(()) => {}
        Err(Denied::Wrong) => {
            let mut e = BTreeMap::new();
            e.insert(
                "current".to_string(),
                "this is not your current password".to_string(),
            );
            return refused(e, StatusCode::UNPROCESSABLE_ENTITY);
        }
        Err(Denied::Throttled(w)) => {
            let mut e = BTreeMap::new();
            e.insert(
                "current".to_string(),
                format!(
                    "too many wrong passwords; try again in {} s",
                    w.as_secs().max(1)
                ),
            );
            let mut r = refused(e, StatusCode::TOO_MANY_REQUESTS);
            if let Ok(v) = axum::http::HeaderValue::from_str(&w.as_secs().max(1).to_string()) {
                r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
            }
            return r.into_response();
        }
        Err(Denied::Busy) => {
            return super::message(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "Busy",
                "Too many password checks right now; try again in a moment.",
            )
        }
    }
    match ops::update_user(
        &st,
        user.origin(),
        &user.session.user,
        Some(new),
        None,
        None,
    )
    .await
    {
        // Every session of the user ended, this one too: sign in again with the new password.
        Ok(()) => {
            axum::response::IntoResponse::into_response(axum::response::Redirect::to("/login"))
        }
        Err(ChangeError::Rejected(Refusal::Invalid(e))) => {
            let mut errors = by_field(&e);
            if let Some(m) = errors.remove("password") {
                errors.insert("new".into(), m);
            }
            refused(errors, StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(e) => change_failed(&st, &user, "users", e),
    }
}
