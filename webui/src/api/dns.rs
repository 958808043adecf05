//! DNS through the API: how this node answers a query, and why.

use super::*;

/// Explains a DNS answer
///
/// Role: viewer. The answer this node gives `name` (type `type`, default A) for a resolver at
/// `client` or an EDNS Client Subnet `ecs`: the GSLB decision step by step (health, steering,
/// policy), each site's health as every live node sees it and as the cluster agrees, the answer
/// records and the ECS scope. 400 when the name, type or client is not valid.
#[utoipa::path(
    get,
    path = "/dns/explain",
    tag = "dns",
    params(crate::DnsExplainQuery),
    extensions(("x-meridian-role" = json!("viewer"))),
    responses(
        (status = 200, description = "The answer and its reasons", body = crate::DnsExplanation),
        (status = 400, response = BadRequest),
    ),
)]
pub(super) async fn dns_explain(
    _: ApiUser,
    State(st): State<AppState>,
    Query(query): Query<crate::DnsExplainQuery>,
) -> Result<Json<crate::DnsExplanation>, ApiError> {
    st.backend
        .dns_explain(&query)
        .map(Json)
        .map_err(ApiError::BadRequest)
}
