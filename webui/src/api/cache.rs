//! The response cache through the API: this node's tiers, routes and most-hit keys, and purges
//! (by key, prefix or tag) that every node applies.

use model::records::PurgeSelector;

use super::*;

/// This node's response cache
///
/// Role: viewer. Sizes of the memory and disk tiers, each caching route's lookups by result
/// and hit ratio, and the 20 most-hit stored responses.
#[utoipa::path(
    get,
    path = "/cache",
    tag = "cache",
    extensions(("x-meridian-role" = json!("viewer"))),
    responses((status = 200, description = "The cache on the node that answers", body = crate::CacheView)),
)]
pub(super) async fn cache_status(_: ApiUser, State(st): State<AppState>) -> Json<crate::CacheView> {
    Json(st.backend.cache())
}

/// A purge's answer.
#[derive(Serialize, ToSchema)]
pub struct PurgeDone {
    /// Stored responses (every encoding counts) the purge removed on the node that answered.
    pub purged_here: usize,
}

/// Purges cached responses on every node
///
/// Role: operator. The body names one of `key` (`host/path?query`, every encoding of it),
/// `prefix` (every key starting with it) or `tag` (every response whose tags header listed
/// it). The purge is replicated: every node applies it, and a node that was down applies it
/// to its disk tier when it starts. A key that matches nothing on the answering node is 404
/// (the purge was still sent to the other nodes).
#[utoipa::path(
    post,
    path = "/cache/purge",
    tag = "cache",
    extensions(("x-meridian-role" = json!("operator"))),
    request_body(content = PurgeSelector, content_type = "application/json"),
    responses(
        (status = 200, description = "Purged", body = PurgeDone),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, response = Invalid),
    ),
)]
pub(super) async fn purge(
    user: ApiUser,
    State(st): State<AppState>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    user.require(Role::Operator)?;
    let selector: PurgeSelector = json_body(&body(b)?)?;
    let by_key = matches!(selector, PurgeSelector::Key(_));
    let key = selector.value().to_string();
    let done = ops::purge_cache(&st, user.origin(), selector).await?;
    st.metrics.change("cache");
    if by_key && done.here == 0 {
        return Ok((
            StatusCode::NOT_FOUND,
            Json(json!({
                "error": format!("no stored response has the key {key:?} on this node (the purge went to every node all the same)"),
                "purged_here": 0,
            })),
        )
            .into_response());
    }
    Ok(Json(PurgeDone {
        purged_here: done.here,
    })
    .into_response())
}
