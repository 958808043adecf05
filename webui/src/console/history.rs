//! History (every kept revision, its diff against the one before, rollback) and the audit log.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Form;
use model::records::AuditEntry;
use model::Role;

use super::objects::{confirm, Confirm};
use super::{change_failed, csrf, done, field, not_found, render, require, time, Chrome};
use crate::auth::ConsoleUser;
use crate::diff::{self, ObjectDiff};
use crate::{ops, AppState};

pub struct RevisionRow {
    pub revision: u64,
    pub href: String,
    pub when: String,
    pub user: String,
    pub interface: &'static str,
    pub client: String,
    pub summary: String,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "history.html")]
struct HistoryTemplate {
    chrome: Chrome,
    rows: Vec<RevisionRow>,
    keep: usize,
}

pub async fn list(user: ConsoleUser, State(st): State<AppState>) -> Response {
    let h = st.backend.history();
    let current = st.backend.config().revision;
    let rows = h
        .iter()
        .rev()
        .map(|r| RevisionRow {
            revision: r.revision,
            href: format!("/console/history/{}", r.revision),
            when: time(r.origin.at_unix_ms),
            user: r.origin.user.clone(),
            interface: r.origin.interface.as_str(),
            client: r.origin.client.clone().unwrap_or_default(),
            summary: r.summary.clone(),
            current: r.revision == current,
        })
        .collect();
    render(&HistoryTemplate {
        chrome: Chrome::new(&st, &user, "history"),
        rows,
        keep: 100,
    })
}

#[derive(Template)]
#[template(path = "revision.html")]
struct RevisionTemplate {
    chrome: Chrome,
    row: RevisionRow,
    diff: Option<Vec<ObjectDiff>>,
    current_revision: u64,
}

pub async fn show(
    user: ConsoleUser,
    State(st): State<AppState>,
    Path(revision): Path<String>,
) -> Response {
    let h = st.backend.history();
    let Some(i) = revision
        .parse::<u64>()
        .ok()
        .and_then(|rev| h.iter().position(|r| r.revision == rev))
    else {
        return not_found(
            &st,
            &user,
            "history",
            "The history does not keep that revision.",
        );
    };
    let r = &h[i];
    let current = st.backend.config().revision;
    let empty = model::ConfigSpec::default();
    let before = match i.checked_sub(1).and_then(|p| h.get(p)) {
        Some(prev) => Some(prev.spec.as_ref()),
        None if r.revision == 1 => Some(&empty),
        None => None,
    };
    render(&RevisionTemplate {
        chrome: Chrome::new(&st, &user, "history"),
        diff: before.map(|b| diff::diff(b, &r.spec)),
        row: RevisionRow {
            revision: r.revision,
            href: String::new(),
            when: time(r.origin.at_unix_ms),
            user: r.origin.user.clone(),
            interface: r.origin.interface.as_str(),
            client: r.origin.client.clone().unwrap_or_default(),
            summary: r.summary.clone(),
            current: r.revision == current,
        },
        current_revision: current,
    })
}

pub async fn confirm_rollback(
    user: ConsoleUser,
    State(st): State<AppState>,
    Path(revision): Path<u64>,
) -> Response {
    if let Err(r) = require(&user, Role::Operator) {
        return r.into_response();
    }
    let current = st.backend.config().revision;
    confirm(
        &st,
        &user,
        "history",
        Confirm {
            title: format!("Roll back to revision {revision}?"),
            question: format!(
            "The configuration of every node becomes what it was at revision {revision}. This is \
             a new revision after {current}; the history keeps everything in between."
        ),
            action: format!("/console/history/{revision}/rollback"),
            button: "Roll back",
            back: format!("/console/history/{revision}"),
            hidden: vec![("revision".into(), current.to_string())],
        },
    )
}

pub async fn rollback(
    user: ConsoleUser,
    State(st): State<AppState>,
    Path(revision): Path<u64>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = csrf(&user, &pairs).and_then(|_| require(&user, Role::Operator)) {
        return r.into_response();
    }
    let expected = field(&pairs, "revision").parse().ok();
    match ops::rollback(&st, user.origin(), expected, revision).await {
        Ok(new) => done(
            &st,
            &user,
            format!("Rolled back to revision {revision}: the configuration is now revision {new}."),
            "/console/history",
        ),
        Err(e) => change_failed(&st, &user, "history", e),
    }
}

pub struct AuditRow {
    pub index: u64,
    pub when: String,
    pub user: String,
    pub interface: &'static str,
    pub client: String,
    pub action: String,
    pub success: bool,
    pub error: String,
    pub revision: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditTemplate {
    chrome: Chrome,
    rows: Vec<AuditRow>,
    total: usize,
    filter: String,
    retention_days: u32,
}

#[derive(serde::Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    q: String,
}

/// The audit log, newest first, optionally filtered by a word (user, action, address).
pub async fn audit(
    user: ConsoleUser,
    State(st): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Response {
    let log = st.backend.audit();
    let needle = q.q.trim().to_lowercase();
    let rows: Vec<AuditRow> = log
        .iter()
        .rev()
        .filter(|e| {
            needle.is_empty()
                || e.origin.user.to_lowercase().contains(&needle)
                || e.action.to_lowercase().contains(&needle)
                || e.origin
                    .client
                    .as_deref()
                    .is_some_and(|c| c.contains(&needle))
        })
        .take(500)
        .map(|e| AuditRow {
            index: e.index,
            when: time(e.origin.at_unix_ms),
            user: e.origin.user.clone(),
            interface: e.origin.interface.as_str(),
            client: e.origin.client.clone().unwrap_or_default(),
            action: e.action.clone(),
            success: e.success,
            error: e.error.clone().unwrap_or_default(),
            revision: e.revision.map(|r| r.to_string()).unwrap_or_default(),
        })
        .collect();
    render(&AuditTemplate {
        chrome: Chrome::new(&st, &user, "audit"),
        total: log.len(),
        rows,
        filter: q.q,
        retention_days: st
            .backend
            .config()
            .value
            .spec
            .audit_retention_days
            .unwrap_or(90),
    })
}

/// The audit log as JSON lines, oldest first.
pub fn audit_jsonl(log: &Arc<Vec<Arc<AuditEntry>>>) -> Response {
    let mut out = String::new();
    for e in log.iter() {
        if let Ok(line) = serde_json::to_string(e.as_ref()) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    (
        [
            (header::CONTENT_TYPE, "application/jsonl; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"meridian-audit.jsonl\"",
            ),
        ],
        out,
    )
        .into_response()
}

pub async fn audit_export(_user: ConsoleUser, State(st): State<AppState>) -> Response {
    audit_jsonl(&st.backend.audit())
}
