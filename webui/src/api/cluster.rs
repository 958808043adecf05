//! `/cluster`: every member's state, and taking a member out.

use axum::extract::{Path, State};
use axum::Json;
use model::Role;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::ApiUser;
use crate::error::ApiError;
use crate::openapi::{Conflict, Forbidden, Invalid, NotFound, Unavailable, Unconfirmed};
use crate::{AppState, ClusterView};

/// The cluster's members
///
/// Role: viewer. The node asked gathers each member's own report (role, term, commit and
/// applied index) over the cluster port, 1 s each, beside the leader's view of its replication
/// lag and last contact. A member that does not answer is listed with the reason.
#[utoipa::path(
    get,
    path = "/cluster",
    tag = "cluster",
    extensions(("x-meridian-role" = json!("viewer"))),
    responses((status = 200, description = "Every member's state", body = ClusterView)),
)]
pub(super) async fn cluster_status(_: ApiUser, State(st): State<AppState>) -> Json<ClusterView> {
    Json(st.backend.cluster().await)
}

/// A member's removal.
#[derive(Serialize, ToSchema)]
pub struct Removed {
    pub removed: u64,
}

/// Removes a member
///
/// Role: admin. The node is first demoted to a learner, then removed; stop its process
/// afterwards. Refused (409, with the reason) when it is the only voter, or when the voters
/// left would not have a majority answering now; 404 when it is not a member.
#[utoipa::path(
    delete,
    path = "/cluster/nodes/{node_id}",
    tag = "cluster",
    extensions(("x-meridian-role" = json!("admin"))),
    params(("node_id" = u64, Path, description = "The member's node id")),
    responses(
        (status = 200, description = "Removed", body = Removed),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
        (status = 504, response = Unconfirmed),
    ),
)]
pub(super) async fn remove_member(
    user: ApiUser,
    State(st): State<AppState>,
    Path(node_id): Path<u64>,
) -> Result<Json<Removed>, ApiError> {
    user.require(Role::Admin)?;
    if !st
        .backend
        .raft()
        .members
        .iter()
        .any(|(id, _)| *id == node_id)
    {
        return Err(ApiError::NotFound);
    }
    st.backend.remove_member(node_id).await?;
    tracing::info!(user = %user.user, node_id, "cluster member removed");
    st.metrics.change("cluster");
    Ok(Json(Removed { removed: node_id }))
}

/// What a join token is asked for with.
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewJoinToken {
    /// How long it is valid, in seconds: 1 to 604800 (a week); default 3600.
    pub ttl_seconds: Option<u64>,
}

/// A join token just issued: `token` is shown this once.
#[derive(Serialize, ToSchema)]
pub struct IssuedJoinToken {
    pub id: String,
    /// `mjt1.<id>.<secret>.<cluster CA sha256>`: give it to `meridian serve --join MEMBER
    /// --token TOKEN`.
    pub token: String,
    pub expires_unix_ms: u64,
}

/// A join token as listed (never its secret).
#[derive(Serialize, ToSchema)]
pub struct JoinTokenView {
    pub id: String,
    pub created_by: String,
    pub created_unix_ms: u64,
    pub expires_unix_ms: u64,
    /// `unused`, `used` or `expired`.
    pub state: String,
    pub used_by_node: Option<u64>,
    pub used_unix_ms: Option<u64>,
}

/// Issues a join token
///
/// Role: admin. Single use, valid `ttl_seconds` (default an hour, at most a week). A new node
/// proves it to join (`meridian serve --join MEMBER --token TOKEN`), and checks the member
/// against the cluster CA the token names. Only the secret's SHA-256 is kept.
#[utoipa::path(
    post,
    path = "/cluster/join-tokens",
    tag = "cluster",
    extensions(("x-meridian-role" = json!("admin"))),
    request_body = NewJoinToken,
    responses(
        (status = 201, description = "Issued", body = IssuedJoinToken),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 422, response = Invalid),
        (status = 503, response = Unavailable),
    ),
)]
pub(super) async fn create_join_token(
    user: ApiUser,
    State(st): State<AppState>,
    b: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    user.require(Role::Admin)?;
    let bytes = super::body(b)?;
    let req: NewJoinToken = if bytes.is_empty() {
        NewJoinToken { ttl_seconds: None }
    } else {
        super::json_body(&bytes)?
    };
    let (record, text) =
        crate::ops::issue_join_token(&st, user.origin(), req.ttl_seconds.unwrap_or(3600)).await?;
    st.metrics.change("cluster");
    Ok((
        axum::http::StatusCode::CREATED,
        Json(IssuedJoinToken {
            id: record.id,
            token: text.to_string(),
            expires_unix_ms: record.expires_unix_ms,
        }),
    )
        .into_response())
}

/// Lists join tokens
///
/// Role: admin. Every token issued in the last day or still valid, with who issued it and the
/// node that used it; never a secret.
#[utoipa::path(
    get,
    path = "/cluster/join-tokens",
    tag = "cluster",
    extensions(("x-meridian-role" = json!("admin"))),
    responses(
        (status = 200, description = "The tokens", body = Vec<JoinTokenView>),
        (status = 403, response = Forbidden),
    ),
)]
pub(super) async fn list_join_tokens(
    user: ApiUser,
    State(st): State<AppState>,
) -> Result<Json<Vec<JoinTokenView>>, ApiError> {
    user.require(Role::Admin)?;
    Ok(Json(join_token_views(&st)))
}

pub fn join_token_views(st: &AppState) -> Vec<JoinTokenView> {
    let now = model::unix_ms();
    st.backend
        .join_tokens()
        .values()
        .map(|t| JoinTokenView {
            id: t.id.clone(),
            created_by: t.created_by.clone(),
            created_unix_ms: t.created_unix_ms,
            expires_unix_ms: t.expires_unix_ms,
            state: if t.used_by_node.is_some() {
                "used"
            } else if now >= t.expires_unix_ms {
                "expired"
            } else {
                "unused"
            }
            .into(),
            used_by_node: t.used_by_node,
            used_unix_ms: t.used_unix_ms,
        })
        .collect()
}

/// A backup of the cluster
///
/// Role: admin. A consistent snapshot (read after everything committed before the request):
/// the config, users and tokens (hashes only), certificates and TSIG keys with their keys
/// still sealed by the cluster key. `meridian restore` seeds a new cluster from it; that
/// cluster needs this one's cluster secret to use the sealed keys.
#[utoipa::path(
    get,
    path = "/backup",
    tag = "cluster",
    extensions(("x-meridian-role" = json!("admin"))),
    responses(
        (status = 200, description = "The backup", body = serde_json::Value),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
)]
pub(super) async fn backup(
    user: ApiUser,
    State(st): State<AppState>,
) -> Result<Json<model::records::Backup>, ApiError> {
    user.require(Role::Admin)?;
    st.backend.read_barrier().await?;
    let config = st.backend.config();
    let backup = model::records::Backup {
        format: model::records::BACKUP_FORMAT.into(),
        created_unix_ms: model::unix_ms(),
        revision: config.revision,
        spec: config.value.spec.clone(),
        auth: (*st.backend.auth()).clone(),
        certificates: st
            .backend
            .certificates()
            .iter()
            .map(|(k, v)| (k.clone(), (**v).clone()))
            .collect(),
        tsig_keys: st
            .backend
            .tsig_keys()
            .iter()
            .map(|(k, v)| (k.clone(), (**v).clone()))
            .collect(),
    };
    tracing::info!(user = %user.user, revision = backup.revision, "backup taken");
    Ok(Json(backup))
}
