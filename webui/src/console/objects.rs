//! One page per object (`/console/pools/web`): what it is doing now, its charts, and its form.
//! Creating, saving and deleting objects of every kind, and the admin state of pool members
//! and GSLB sites.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Form;
use model::{AdminState, Object, ObjectKind, Role};

use super::{
    change_failed, csrf, done, field, not_found, render, require, seg, with_status, Chrome,
};
use crate::auth::ConsoleUser;
use crate::forms::{self, Values};
use crate::{ops, AppState, ChangeError, Refusal};

/// Singular, for titles.
fn noun(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Listeners => "Listener",
        ObjectKind::Routes => "Route",
        ObjectKind::Pools => "Pool",
        ObjectKind::HealthChecks => "Health check",
        ObjectKind::Zones => "Zone",
        ObjectKind::GslbRecords => "GSLB record",
        ObjectKind::Regions => "Region",
    }
}

/// Singular, inside a sentence.
fn lower(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Listeners => "listener",
        ObjectKind::Routes => "route",
        ObjectKind::Pools => "pool",
        ObjectKind::HealthChecks => "health check",
        ObjectKind::Zones => "zone",
        ObjectKind::GslbRecords => "GSLB record",
        ObjectKind::Regions => "region",
    }
}

/// The navigation section and list page a kind belongs to.
fn section(kind: ObjectKind) -> (&'static str, &'static str, &'static str) {
    match kind {
        ObjectKind::Listeners | ObjectKind::Routes => {
            ("listeners", "Listeners & routes", "/console/listeners")
        }
        ObjectKind::Pools | ObjectKind::HealthChecks => ("pools", "Pools", "/console/pools"),
        ObjectKind::Zones => ("zones", "DNS zones", "/console/zones"),
        ObjectKind::GslbRecords | ObjectKind::Regions => ("gslb", "GSLB", "/console/gslb"),
    }
}

fn kind_of(s: &str) -> Option<ObjectKind> {
    ObjectKind::parse(s)
}

#[derive(Template)]
#[template(path = "object.html")]
struct ObjectTemplate {
    chrome: Chrome,
    title: String,
    list_label: &'static str,
    list_href: &'static str,
    action: String,
    delete_href: String,
    is_new: bool,
    revision: u64,
    summary: String,
    charts: Vec<String>,
    form: String,
    general: Vec<String>,
}

/// Everything needed to draw an object page, for a first view or after a refused save.
struct PageInput<'a> {
    kind: ObjectKind,
    /// `None` for the create form.
    name: Option<&'a str>,
    values: Values,
    errors: BTreeMap<String, Vec<String>>,
    general: Vec<String>,
    revision: u64,
    status: StatusCode,
}

fn page(st: &AppState, user: &ConsoleUser, p: PageInput<'_>) -> Response {
    let (nav, list_label, list_href) = section(p.kind);
    let chrome = Chrome::new(st, user, nav);
    let (summary, charts) = match p.name {
        Some(name) => super::state::live(st, &chrome, p.kind, name),
        None => (String::new(), Vec::new()),
    };
    let kind = p.kind.as_str();
    let t = ObjectTemplate {
        title: match p.name {
            Some(n) => format!("{} {n}", noun(p.kind)),
            None => format!("New {}", lower(p.kind)),
        },
        list_label,
        list_href,
        action: match p.name {
            Some(n) => format!("/console/{kind}/{}", seg(n)),
            None => format!("/console/{kind}/new"),
        },
        delete_href: p
            .name
            .map(|n| format!("/console/{kind}/{}/delete", seg(n)))
            .unwrap_or_default(),
        is_new: p.name.is_none(),
        revision: p.revision,
        summary,
        charts,
        form: forms::render(p.kind, &p.values, &p.errors, p.name.is_some()),
        general: p.general,
        chrome,
    };
    with_status(render(&t), p.status)
}

pub async fn show(
    user: ConsoleUser,
    State(st): State<AppState>,
    Path((kind, name)): Path<(String, String)>,
) -> Response {
    let Some(kind) = kind_of(&kind) else {
        return not_found(&st, &user, "overview", "There is no page at this address.");
    };
    let cfg = st.backend.config();
    let Some(obj) = cfg.value.spec.get(kind, &name) else {
        return not_found(
            &st,
            &user,
            section(kind).0,
            &format!("There is no {} named {name:?}.", lower(kind)),
        );
    };
    page(
        &st,
        &user,
        PageInput {
            kind,
            name: Some(&name),
            values: forms::values_of(kind, &obj.spec_json()),
            errors: BTreeMap::new(),
            general: Vec::new(),
            revision: cfg.revision,
            status: StatusCode::OK,
        },
    )
}

pub async fn new_form(
    user: ConsoleUser,
    State(st): State<AppState>,
    Path(kind): Path<String>,
) -> Response {
    let Some(kind) = kind_of(&kind) else {
        return not_found(&st, &user, "overview", "There is no page at this address.");
    };
    if let Err(r) = require(&user, Role::Operator) {
        return r.into_response();
    }
    // A new object starts from its defaults, as the API would fill them in.
    let mut values = forms::values_of(kind, &serde_json::json!({}));
    for t in forms::form(kind).tables {
        values.rows.insert(t.path, 0);
    }
    page(
        &st,
        &user,
        PageInput {
            kind,
            name: None,
            values,
            errors: BTreeMap::new(),
            general: Vec::new(),
            revision: st.backend.config().revision,
            status: StatusCode::OK,
        },
    )
}

pub async fn create(
    user: ConsoleUser,
    State(st): State<AppState>,
    Path(kind): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let Some(kind) = kind_of(&kind) else {
        return not_found(&st, &user, "overview", "There is no page at this address.");
    };
    submit(&st, &user, kind, None, &pairs).await
}

pub async fn save(
    user: ConsoleUser,
    State(st): State<AppState>,
    Path((kind, name)): Path<(String, String)>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let Some(kind) = kind_of(&kind) else {
        return not_found(&st, &user, "overview", "There is no page at this address.");
    };
    submit(&st, &user, kind, Some(&name), &pairs).await
}

/// Saves a submitted form: a new object when `name` is `None`. Any error re-renders the form
/// with what was typed and each error beside its input; nothing is applied.
async fn submit(
    st: &AppState,
    user: &ConsoleUser,
    kind: ObjectKind,
    name: Option<&str>,
    pairs: &[(String, String)],
) -> Response {
    if let Err(r) = csrf(user, pairs) {
        return r.into_response();
    }
    if let Err(r) = require(user, Role::Operator) {
        return r.into_response();
    }
    let revision: u64 = field(pairs, "revision").parse().unwrap_or(0);
    let parsed = forms::parse(kind, pairs);
    let mut errors = parsed.errors;
    let mut general = Vec::new();
    let typed_name = parsed
        .json
        .get("name")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let cfg = st.backend.config();
    match name {
        Some(n) if n != typed_name => {
            errors.entry("name".into()).or_default().push(
                "the name cannot change here; create a new object and delete this one".into(),
            );
        }
        None if cfg.value.spec.get(kind, &typed_name).is_some() => {
            errors
                .entry("name".into())
                .or_default()
                .push(format!("a {} named {typed_name:?} exists", lower(kind)));
        }
        _ => {}
    }
    if name.is_some() && cfg.value.spec.get(kind, &typed_name).is_none() {
        general.push(format!(
            "{} {typed_name:?} was deleted meanwhile; reload the list.",
            noun(kind)
        ));
    }
    let object = if errors.is_empty() && general.is_empty() {
        match Object::parse(kind, parsed.json.to_string().as_bytes()) {
            Ok(o) => Some(o),
            Err(e) => {
                for fe in e.errors {
                    file_error(
                        &mut errors,
                        &mut general,
                        &parsed.values,
                        kind,
                        &fe.path,
                        &fe.message,
                    );
                }
                None
            }
        }
    } else {
        None
    };
    let refused = |errors, general, status| {
        page(
            st,
            user,
            PageInput {
                kind,
                name,
                values: parsed.values.clone(),
                errors,
                general,
                revision,
                status,
            },
        )
    };
    let Some(object) = object else {
        return refused(errors, general, StatusCode::UNPROCESSABLE_ENTITY);
    };
    let what = format!(
        "{} {} {typed_name}",
        if name.is_some() { "Saved" } else { "Created" },
        lower(kind)
    );
    let candidate_pos = {
        let mut spec = cfg.value.spec.clone();
        spec.upsert(&object);
        spec.position(kind, &typed_name)
    };
    match ops::save(st, user.origin(), Some(revision), object).await {
        Ok(rev) => done(
            st,
            user,
            format!("{what} (revision {rev})."),
            &format!("/console/{}/{}", kind.as_str(), seg(&typed_name)),
        ),
        Err(ChangeError::Rejected(Refusal::Invalid(v))) => {
            let prefix = format!("{}[{}]", kind.as_str(), candidate_pos.unwrap_or(usize::MAX));
            for fe in v.errors {
                let rel = forms::relative_path(&fe.path, &prefix);
                file_error(
                    &mut errors,
                    &mut general,
                    &parsed.values,
                    kind,
                    &rel,
                    &fe.message,
                );
            }
            refused(errors, general, StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(ChangeError::Rejected(Refusal::StaleRevision { current, .. })) => {
            general.push(format!(
                "Someone else saved revision {current} after you opened this form, so nothing was \
                 changed. Open the page again to see their change; what you typed is below."
            ));
            refused(errors, general, StatusCode::CONFLICT)
        }
        Err(e) => change_failed(st, user, section(kind).0, e),
    }
}

/// Puts an error beside its input when the form has one, else in the list above the form.
fn file_error(
    errors: &mut BTreeMap<String, Vec<String>>,
    general: &mut Vec<String>,
    values: &Values,
    kind: ObjectKind,
    path: &str,
    message: &str,
) {
    let names = forms::input_names(kind, values);
    if names.iter().any(|n| n == path) {
        errors
            .entry(path.to_string())
            .or_default()
            .push(message.to_string());
        return;
    }
    // Errors about a whole nested value (`redirect`, `members[0]`) go to its first input.
    if !path.is_empty() {
        if let Some(n) = names.iter().find(|n| n.starts_with(&format!("{path}."))) {
            errors
                .entry(n.clone())
                .or_default()
                .push(message.to_string());
            return;
        }
    }
    general.push(if path.is_empty() {
        message.to_string()
    } else {
        format!("{path}: {message}")
    });
}

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmTemplate {
    chrome: Chrome,
    title: String,
    question: String,
    action: String,
    button: String,
    back: String,
    hidden: Vec<(String, String)>,
}

/// What a confirmation page asks, and where its button posts.
pub struct Confirm {
    pub title: String,
    pub question: String,
    pub action: String,
    pub button: &'static str,
    /// Where Cancel goes.
    pub back: String,
    /// Hidden fields posted with the confirmation (the revision it was read at, say).
    pub hidden: Vec<(String, String)>,
}

pub fn confirm(st: &AppState, user: &ConsoleUser, nav: &'static str, c: Confirm) -> Response {
    render(&ConfirmTemplate {
        chrome: Chrome::new(st, user, nav),
        title: c.title,
        question: c.question,
        action: c.action,
        button: c.button.to_string(),
        back: c.back,
        hidden: c.hidden,
    })
}

pub async fn confirm_delete(
    user: ConsoleUser,
    State(st): State<AppState>,
    Path((kind, name)): Path<(String, String)>,
) -> Response {
    let Some(kind) = kind_of(&kind) else {
        return not_found(&st, &user, "overview", "There is no page at this address.");
    };
    if let Err(r) = require(&user, Role::Operator) {
        return r.into_response();
    }
    let cfg = st.backend.config();
    if cfg.value.spec.get(kind, &name).is_none() {
        return not_found(&st, &user, section(kind).0, "It does not exist (any more).");
    }
    confirm(
        &st,
        &user,
        section(kind).0,
        Confirm {
            title: format!("Delete {} {name}?", lower(kind)),
            question: format!(
                "{} {name} will be removed from the configuration of every node. Anything that \
             refers to it must be changed first.",
                noun(kind)
            ),
            action: format!("/console/{}/{}/delete", kind.as_str(), seg(&name)),
            button: "Delete",
            back: format!("/console/{}/{}", kind.as_str(), seg(&name)),
            hidden: vec![("revision".into(), cfg.revision.to_string())],
        },
    )
}

pub async fn delete(
    user: ConsoleUser,
    State(st): State<AppState>,
    Path((kind, name)): Path<(String, String)>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let Some(kind) = kind_of(&kind) else {
        return not_found(&st, &user, "overview", "There is no page at this address.");
    };
    if let Err(r) = csrf(&user, &pairs).and_then(|_| require(&user, Role::Operator)) {
        return r.into_response();
    }
    let revision = field(&pairs, "revision").parse().ok();
    match ops::delete(&st, user.origin(), revision, kind, &name).await {
        Ok(rev) => done(
            &st,
            &user,
            format!("Deleted {} {name} (revision {rev}).", lower(kind)),
            section(kind).2,
        ),
        Err(e) => change_failed(&st, &user, section(kind).0, e),
    }
}

fn state_of(pairs: &[(String, String)]) -> Option<AdminState> {
    AdminState::parse(field(pairs, "state"))
}

/// Which admin state a form sets, on what.
enum Target<'a> {
    Member { pool: &'a str, address: &'a str },
    Site { record: &'a str, site: &'a str },
}

pub async fn member_state(
    user: ConsoleUser,
    State(st): State<AppState>,
    Path(pool): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let address = field(&pairs, "address");
    set_state(
        &st,
        &user,
        &pairs,
        Target::Member {
            pool: &pool,
            address,
        },
    )
    .await
}

pub async fn site_state(
    user: ConsoleUser,
    State(st): State<AppState>,
    Path(record): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let site = field(&pairs, "site");
    set_state(
        &st,
        &user,
        &pairs,
        Target::Site {
            record: &record,
            site,
        },
    )
    .await
}

async fn set_state(
    st: &AppState,
    user: &ConsoleUser,
    pairs: &[(String, String)],
    target: Target<'_>,
) -> Response {
    if let Err(r) = csrf(user, pairs).and_then(|_| require(user, Role::Operator)) {
        return r.into_response();
    }
    let nav = match target {
        Target::Member { .. } => "pools",
        Target::Site { .. } => "gslb",
    };
    let Some(state) = state_of(pairs) else {
        return change_failed(
            st,
            user,
            nav,
            ChangeError::not_allowed("state must be enabled, disabled, draining or force_up"),
        );
    };
    let (result, what, back) = match target {
        Target::Member { pool, address } => (
            ops::member_state(st, user.origin(), pool, address, state).await,
            format!("Member {address} of pool {pool}"),
            format!("/console/pools/{}", seg(pool)),
        ),
        Target::Site { record, site } => (
            ops::site_state(st, user.origin(), record, site, state).await,
            format!("Site {site} of {record}"),
            format!("/console/gslb_records/{}", seg(record)),
        ),
    };
    match result {
        Ok(rev) => done(
            st,
            user,
            format!("{what} is {} (revision {rev}).", state.as_str()),
            &back,
        ),
        Err(e) => change_failed(st, user, nav, e),
    }
}
