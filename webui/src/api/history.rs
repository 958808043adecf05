//! History (every kept revision, its diff, rollback) and the audit log through the API.

use super::*;

/// One history entry as the API lists it.
#[derive(Serialize, ToSchema)]
pub struct RevisionSummary {
    pub revision: u64,
    pub user: String,
    #[schema(value_type = model::Interface)]
    pub interface: &'static str,
    pub client: Option<String>,
    pub at_unix_ms: u64,
    pub summary: String,
}

fn summary(r: &model::records::RevisionRecord) -> RevisionSummary {
    RevisionSummary {
        revision: r.revision,
        user: r.origin.user.clone(),
        interface: r.origin.interface.as_str(),
        client: r.origin.client.clone(),
        at_unix_ms: r.origin.at_unix_ms,
        summary: r.summary.clone(),
    }
}

/// The config revisions kept, newest first
///
/// Role: viewer.
#[utoipa::path(
    get,
    path = "/history",
    tag = "history",
    extensions(("x-meridian-role" = json!("viewer"))),
    responses((status = 200, description = "The revisions kept, newest first",
        body = Vec<RevisionSummary>)),
)]
pub(super) async fn list_history(
    _: ApiUser,
    State(st): State<AppState>,
) -> Json<Vec<RevisionSummary>> {
    let h = st.backend.history();
    Json(h.iter().rev().map(|r| summary(r)).collect())
}

/// One revision: who made it, the document, and what changed.
#[derive(Serialize, ToSchema)]
pub struct RevisionDetail {
    /// What changed from the revision before, object by object, each with `kind`, `name`,
    /// `what` (`added`, `removed` or `changed`) and `lines` (`sign` and `text` of a line diff of
    /// the pretty-printed spec). Null when the revision before is no longer kept.
    pub diff: Option<Vec<diff::ObjectDiff>>,
    pub revision: RevisionSummary,
    #[schema(value_type = ConfigSpec)]
    pub spec: std::sync::Arc<ConfigSpec>,
}

/// One config revision
///
/// Role: viewer.
#[utoipa::path(
    get,
    path = "/history/{revision}",
    tag = "history",
    extensions(("x-meridian-role" = json!("viewer"))),
    params(("revision" = u64, Path, description = "A config revision")),
    responses(
        (status = 200, description = "The revision", body = RevisionDetail),
        (status = 404, response = NotFound),
    ),
)]
pub(super) async fn get_revision(
    _: ApiUser,
    State(st): State<AppState>,
    Path(revision): Path<String>,
) -> Result<Json<RevisionDetail>, ApiError> {
    // Parsed here, not by the extractor, so that a bad number gets a JSON answer too.
    let revision: u64 = revision.parse().map_err(|_| ApiError::NotFound)?;
    let h = st.backend.history();
    let i = h
        .iter()
        .position(|r| r.revision == revision)
        .ok_or(ApiError::NotFound)?;
    let record = &h[i];
    let empty = model::ConfigSpec::default();
    let before = match i.checked_sub(1).and_then(|p| h.get(p)) {
        Some(prev) => Some(prev.spec.as_ref()),
        // Revision 1 follows the empty config; older ones may have aged out.
        None if revision == 1 => Some(&empty),
        None => None,
    };
    Ok(Json(RevisionDetail {
        revision: summary(record),
        spec: record.spec.clone(),
        diff: before.map(|b| diff::diff(b, &record.spec)),
    }))
}

/// Rolls the configuration back to an earlier revision
///
/// Role: operator. Makes a new revision with the document of `revision`; 409 when that revision
/// is no longer kept.
#[utoipa::path(
    post,
    path = "/history/{revision}/rollback",
    tag = "history",
    extensions(("x-meridian-role" = json!("operator"))),
    params(
        ("revision" = u64, Path, description = "The revision whose document to restore"),
        ("If-Match" = String, Header, description = IF_MATCH),
    ),
    responses(
        (status = 200, response = Written),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 422, response = Invalid),
        (status = 428, response = PreconditionRequired),
    ),
)]
pub(super) async fn rollback(
    user: ApiUser,
    State(st): State<AppState>,
    Path(revision): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    user.require(Role::Operator)?;
    let revision: u64 = revision.parse().map_err(|_| ApiError::NotFound)?;
    let expected = if_match(&headers)?.expected();
    let new = ops::rollback(&st, user.origin(), expected, revision).await?;
    st.metrics.change("rollback");
    Ok(revision_answer(new))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    /// `json` (the default) or `jsonl`.
    #[serde(default)]
    #[param(example = "jsonl")]
    format: String,
    /// Only entries at a log index above this one: where a write answered 504 (outcome
    /// unknown) would be, if it was applied.
    #[serde(default)]
    #[param(example = 120)]
    after_index: Option<u64>,
}

/// The audit log
///
/// Role: viewer. Every command the cluster committed, applied or refused, and events such as
/// logins: newest first, or with `?format=jsonl` exported oldest first as JSON lines;
/// `?after_index=N` keeps the entries after log index N.
#[utoipa::path(
    get,
    path = "/audit",
    tag = "audit",
    extensions(("x-meridian-role" = json!("viewer"))),
    params(AuditQuery),
    responses(
        (status = 200, description = "The audit log",
            content(
                (Vec<model::records::AuditEntry> = "application/json"),
                (String = "application/jsonl"),
            )),
        (status = 400, response = BadRequest),
    ),
)]
pub(super) async fn audit(
    _: ApiUser,
    State(st): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    let mut log = st.backend.audit();
    if let Some(after) = q.after_index {
        let newer: Vec<_> = log.iter().filter(|e| e.index > after).cloned().collect();
        log = std::sync::Arc::new(newer);
    }
    match q.format.as_str() {
        "" | "json" => Ok(Json(log.iter().rev().collect::<Vec<_>>()).into_response()),
        "jsonl" => Ok(crate::console::audit_jsonl(&log)),
        other => Err(ApiError::BadRequest(format!(
            "format must be json or jsonl, got {other:?}"
        ))),
    }
}
