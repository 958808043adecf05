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

/// Imports a zone file
///
/// Role: operator. The body is a zone in RFC 1035 master format (`$ORIGIN`, `$TTL`, `@`,
/// relative names, parentheses and comments; `$INCLUDE` is refused). It replaces the zone
/// `name` (or adds it): its SOA, apex NS and records (A, AAAA, CNAME, MX, TXT, NS below the
/// apex, SRV, CAA, PTR). The result is validated like any other change: 422 lists every
/// problem, the file's under `zone_file`.
#[utoipa::path(
    put,
    path = "/zones/{name}/file",
    tag = "dns",
    extensions(("x-meridian-role" = json!("operator"))),
    params(
        ("name" = String, Path, description = "The zone, e.g. example.com"),
        ("If-Match" = String, Header, description = IF_MATCH),
    ),
    request_body(description = "The zone file", content((String = "text/dns"))),
    responses(
        (status = 200, response = Written),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 422, response = Invalid),
        (status = 428, response = PreconditionRequired),
    ),
)]
pub(super) async fn import_zone(
    user: ApiUser,
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    user.require(Role::Operator)?;
    let expected = if_match(&headers)?.expected();
    let b = body(b)?;
    let text = std::str::from_utf8(&b).map_err(|_| {
        ApiError::Invalid(model::ValidationErrors::single(
            "zone_file",
            "the zone file is not UTF-8 text",
        ))
    })?;
    let revision = ops::import_zone(&st, user.origin(), expected, &name, text).await?;
    st.metrics.change("zones");
    Ok(revision_answer(revision))
}
