//! `/cluster`: every member's state, and taking a member out.

use axum::extract::{Path, State};
use axum::Json;
use model::Role;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::ApiUser;
use crate::error::ApiError;
use crate::openapi::{Conflict, Forbidden, NotFound, Unavailable, Unconfirmed};
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
