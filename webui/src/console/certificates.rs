//! The Certificates page: the credential store with names, issuer, expiry and where each is
//! used; upload (import or rotate), generate a key and CSR, attach a signed certificate,
//! revoke and delete after confirmation.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Form;
use model::Role;

use super::objects::{confirm, Confirm};
use super::{change_failed, csrf, done, field, render, require, seg, time, with_status, Chrome};
use crate::auth::ConsoleUser;
use crate::{ops, AppState, ChangeError, Refusal};

pub struct CertRow {
    pub name: String,
    pub subject: String,
    pub issuer: String,
    pub sans: String,
    pub expires: String,
    /// `ok`, `warn` (inside the alarm horizon) or `bad` (expired, revoked).
    pub status: &'static str,
    pub status_text: String,
    pub used_by: String,
    /// OCSP stapling on this node: empty without a response file.
    pub ocsp: String,
    pub ocsp_ok: bool,
    pub csr_pem: String,
    pub delete_href: String,
    pub revoke_href: String,
}

#[derive(Template)]
#[template(path = "certificates.html")]
struct CertificatesTemplate {
    chrome: Chrome,
    rows: Vec<CertRow>,
    errors: BTreeMap<String, String>,
    /// What was typed in the forms, kept after an error.
    typed: BTreeMap<String, String>,
    horizon_days: u32,
    /// A CSR just generated, to copy.
    csr: String,
    tickets: TicketsView,
}

/// The cluster's session-ticket keys, by id and age (never the key).
pub struct TicketsView {
    pub rotation_hours: u32,
    /// `(id, created)`, newest first.
    pub keys: Vec<(String, String)>,
}

fn tickets(st: &AppState) -> TicketsView {
    TicketsView {
        rotation_hours: st
            .backend
            .config()
            .value
            .spec
            .session_ticket_rotation_hours
            .unwrap_or(model::records::DEFAULT_TICKET_ROTATION_HOURS),
        keys: st
            .backend
            .ticket_keys()
            .iter()
            .map(|k| (k.id.clone(), time(k.created_unix_ms)))
            .collect(),
    }
}

impl CertificatesTemplate {
    pub fn err(&self, k: &str) -> &str {
        self.errors.get(k).map(String::as_str).unwrap_or("")
    }

    pub fn typed(&self, k: &str) -> &str {
        self.typed.get(k).map(String::as_str).unwrap_or("")
    }
}

/// How many certificates are expired or inside the alarm horizon (the navigation's badge).
pub fn expiring(st: &AppState) -> usize {
    let horizon = i64::from(horizon_days(st)) * 86_400;
    let now = i64::try_from(model::unix_ms() / 1000).unwrap_or(i64::MAX);
    st.backend
        .certificates()
        .values()
        .filter(|r| r.revoked.is_none())
        .filter_map(|r| r.info.as_ref())
        .filter(|i| i.not_after_unix - now < horizon)
        .count()
}

/// The alarm horizon in days.
pub fn horizon_days(st: &AppState) -> u32 {
    st.backend
        .config()
        .value
        .spec
        .certificate_expiry_alarm_days
        .unwrap_or(model::records::DEFAULT_CERT_EXPIRY_ALARM_DAYS)
}

fn page(st: &AppState, user: &ConsoleUser) -> CertificatesTemplate {
    let horizon = horizon_days(st);
    let views = crate::api::CertificateViews::new(st);
    let rows = st
        .backend
        .certificates()
        .values()
        .map(|r| {
            let v = views.view(r);
            let left = v.expires_in_seconds.unwrap_or(0);
            let (status, status_text) = match (&v.revoked, &v.info) {
                (Some(rev), _) => ("bad", format!("revoked: {}", rev.reason)),
                (None, None) => ("warn", "waiting for its signed certificate".to_string()),
                (None, Some(_)) if left <= 0 => ("bad", "expired".to_string()),
                (None, Some(_)) if left < i64::from(horizon) * 86_400 => {
                    ("warn", format!("expires in {} days", left / 86_400))
                }
                (None, Some(_)) => ("ok", format!("valid, {} days left", left / 86_400)),
            };
            CertRow {
                subject: v
                    .info
                    .as_ref()
                    .map(|i| i.subject.clone())
                    .unwrap_or_default(),
                issuer: v
                    .info
                    .as_ref()
                    .map(|i| i.issuer.clone())
                    .unwrap_or_default(),
                sans: v
                    .info
                    .as_ref()
                    .map(|i| i.sans.join(", "))
                    .unwrap_or_default(),
                expires: v
                    .info
                    .as_ref()
                    .map(|i| time(u64::try_from(i.not_after_unix).unwrap_or(0) * 1000))
                    .unwrap_or_else(|| "—".into()),
                status,
                status_text,
                used_by: if v.used_by.is_empty() {
                    "—".into()
                } else {
                    v.used_by.join(", ")
                },
                ocsp: match &v.ocsp {
                    None => String::new(),
                    Some(o) if o.stapled => match o.next_update_unix {
                        Some(n) => format!(
                            "OCSP stapled, next update {}",
                            time(u64::try_from(n).unwrap_or(0) * 1000)
                        ),
                        None => "OCSP stapled".into(),
                    },
                    Some(o) => format!("OCSP not stapled: {}", o.detail),
                },
                ocsp_ok: v.ocsp.as_ref().is_some_and(|o| o.stapled),
                csr_pem: v.csr_pem.clone().unwrap_or_default(),
                delete_href: format!("/console/certificates/{}/delete", seg(&v.name)),
                revoke_href: format!("/console/certificates/{}/revoke", seg(&v.name)),
                name: v.name,
            }
        })
        .collect();
    CertificatesTemplate {
        chrome: Chrome::new(st, user, "certificates"),
        rows,
        errors: BTreeMap::new(),
        typed: BTreeMap::new(),
        horizon_days: horizon,
        csr: String::new(),
        tickets: tickets(st),
    }
}

pub async fn list(user: ConsoleUser, State(st): State<AppState>) -> Response {
    render(&page(&st, &user))
}

/// A refused form: the page again with each error beside its field and the typed text kept
/// (never the private key: it is not echoed back into a page).
fn refused(
    st: &AppState,
    user: &ConsoleUser,
    e: ChangeError,
    pairs: &[(String, String)],
    form: &str,
) -> Response {
    let ChangeError::Rejected(Refusal::Invalid(v)) = e else {
        return change_failed(st, user, "certificates", e);
    };
    let mut p = page(st, user);
    for fe in v.errors {
        let key = format!(
            "{form}.{}",
            if fe.path.is_empty() { "name" } else { &fe.path }
        );
        p.errors
            .entry(key)
            .and_modify(|m| {
                m.push_str("; ");
                m.push_str(&fe.message)
            })
            .or_insert(fe.message);
    }
    for (k, v) in pairs {
        if k != "key_pem" && k != "csrf" {
            p.typed.insert(format!("{form}.{k}"), v.clone());
        }
    }
    with_status(render(&p), StatusCode::UNPROCESSABLE_ENTITY)
}

/// Upload: import a certificate with its key, replace (rotate) one of the same name, or attach
/// the signed certificate of a key generated here (no key sent).
pub async fn upload(
    user: ConsoleUser,
    State(st): State<AppState>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = csrf(&user, &pairs).and_then(|_| require(&user, Role::Operator)) {
        return r.into_response();
    }
    let name = field(&pairs, "name").trim().to_string();
    let key = Some(field(&pairs, "key_pem")).filter(|k| !k.trim().is_empty());
    let ca = Some(field(&pairs, "ca_pem")).filter(|k| !k.trim().is_empty());
    let existed = st.backend.certificates().contains_key(&name);
    match ops::put_certificate(
        &st,
        user.origin(),
        &name,
        field(&pairs, "cert_pem"),
        key,
        ca,
    )
    .await
    {
        Ok(()) => done(
            &st,
            &user,
            format!(
                "{} certificate {name}.",
                if existed { "Replaced" } else { "Imported" }
            ),
            "/console/certificates",
        ),
        Err(e) => refused(&st, &user, e, &pairs, "upload"),
    }
}

pub async fn generate(
    user: ConsoleUser,
    State(st): State<AppState>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = csrf(&user, &pairs).and_then(|_| require(&user, Role::Operator)) {
        return r.into_response();
    }
    let name = field(&pairs, "name").trim().to_string();
    let sans: Vec<String> = field(&pairs, "sans")
        .split([',', '\n', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    match ops::generate_certificate(
        &st,
        user.origin(),
        &name,
        field(&pairs, "common_name"),
        &sans,
    )
    .await
    {
        Ok(csr) => {
            st.metrics.change("console");
            let mut p = page(&st, &user);
            p.csr = csr;
            with_status(render(&p), StatusCode::CREATED)
        }
        Err(e) => refused(&st, &user, e, &pairs, "generate"),
    }
}

pub async fn confirm_revoke(
    user: ConsoleUser,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = require(&user, Role::Operator) {
        return r.into_response();
    }
    confirm(
        &st,
        &user,
        "certificates",
        Confirm {
            title: format!("Revoke certificate {name}?"),
            question: format!(
                "{name} becomes unusable on every node; no listener may use it afterwards. Say why:"
            ),
            action: format!("/console/certificates/{}/revoke", seg(&name)),
            button: "Revoke",
            back: "/console/certificates".into(),
            hidden: Vec::new(),
        },
    )
}

pub async fn revoke(
    user: ConsoleUser,
    State(st): State<AppState>,
    Path(name): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = csrf(&user, &pairs).and_then(|_| require(&user, Role::Operator)) {
        return r.into_response();
    }
    let reason = match field(&pairs, "reason").trim() {
        "" => "revoked from the console",
        r => r,
    };
    match ops::revoke_certificate(&st, user.origin(), &name, reason).await {
        Ok(()) => done(
            &st,
            &user,
            format!("Revoked certificate {name}."),
            "/console/certificates",
        ),
        Err(e) => change_failed(&st, &user, "certificates", e),
    }
}

pub async fn confirm_delete(
    user: ConsoleUser,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = require(&user, Role::Operator) {
        return r.into_response();
    }
    confirm(
        &st,
        &user,
        "certificates",
        Confirm {
            title: format!("Delete certificate {name}?"),
            question: format!("{name} and its private key are removed from every node."),
            action: format!("/console/certificates/{}/delete", seg(&name)),
            button: "Delete",
            back: "/console/certificates".into(),
            hidden: Vec::new(),
        },
    )
}

pub async fn delete(
    user: ConsoleUser,
    State(st): State<AppState>,
    Path(name): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = csrf(&user, &pairs).and_then(|_| require(&user, Role::Operator)) {
        return r.into_response();
    }
    match ops::delete_certificate(&st, user.origin(), &name).await {
        Ok(()) => done(
            &st,
            &user,
            format!("Deleted certificate {name}."),
            "/console/certificates",
        ),
        Err(e) => change_failed(&st, &user, "certificates", e),
    }
}
