//! The Cache page: this node's tiers, each caching route's hit ratio, the most-hit keys, and a
//! purge form (by key, prefix or tag) whose purge every node applies.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Form;
use model::records::PurgeSelector;
use model::Role;

use super::{change_failed, csrf, done, field, render, require, with_status, Chrome};
use crate::auth::ConsoleUser;
use crate::{ops, AppState, ChangeError, Refusal};

#[derive(Template)]
#[template(path = "cache.html")]
struct CacheTemplate {
    chrome: Chrome,
    cache: crate::CacheView,
    /// The value typed in the purge form, kept after an error.
    typed: String,
    error: String,
}

impl CacheTemplate {
    pub fn mib(&self, bytes: &u64) -> String {
        format!("{:.1} MiB", *bytes as f64 / (1 << 20) as f64)
    }

    pub fn percent(&self, ratio: &f64) -> String {
        format!("{:.1} %", ratio * 100.0)
    }
}

fn page(st: &AppState, user: &ConsoleUser, typed: String, error: String) -> CacheTemplate {
    CacheTemplate {
        chrome: Chrome::new(st, user, "cache"),
        cache: st.backend.cache(),
        typed,
        error,
    }
}

pub async fn show(user: ConsoleUser, State(st): State<AppState>) -> Response {
    render(&page(&st, &user, String::new(), String::new()))
}

pub async fn purge(
    user: ConsoleUser,
    State(st): State<AppState>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = csrf(&user, &pairs).and_then(|_| require(&user, Role::Operator)) {
        return r.into_response();
    }
    let value = field(&pairs, "value").trim().to_string();
    let selector = match field(&pairs, "by") {
        "prefix" => PurgeSelector::Prefix(value.clone()),
        "tag" => PurgeSelector::Tag(value.clone()),
        _ => PurgeSelector::Key(value.clone()),
    };
    let by_key = matches!(selector, PurgeSelector::Key(_));
    let what = format!("{} {value:?}", selector.kind());
    match ops::purge_cache(&st, user.origin(), selector).await {
        Ok(p) if by_key && p.here == 0 => with_status(
            render(&page(
                &st,
                &user,
                value,
                "No stored response has this key on this node (the purge went to every node all the same).".into(),
            )),
            StatusCode::NOT_FOUND,
        ),
        Ok(p) => done(
            &st,
            &user,
            format!(
                "Purged {what}: {} stored responses removed on this node; every node applies it.",
                p.here
            ),
            "/console/cache",
        ),
        Err(ChangeError::Rejected(Refusal::Invalid(v))) => {
            let msg = v
                .errors
                .iter()
                .map(|e| e.message.clone())
                .collect::<Vec<_>>()
                .join("; ");
            with_status(
                render(&page(&st, &user, value, msg)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        }
        Err(e) => change_failed(&st, &user, "cache", e),
    }
}
