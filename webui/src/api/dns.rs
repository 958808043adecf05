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

/// A TSIG key as the API shows it: never its secret.
#[derive(Serialize, ToSchema)]
pub struct TsigKeyView {
    /// Lowercase FQDN, as secondaries name it.
    pub name: String,
    pub algorithm: model::records::TsigAlgorithm,
    /// The zones whose secondaries use it.
    pub used_by: Vec<String>,
    pub created_unix_ms: u64,
}

/// The TSIG keys zone transfers are signed with
///
/// Role: viewer. Secrets are never shown.
#[utoipa::path(
    get,
    path = "/dns/tsig-keys",
    tag = "dns",
    extensions(("x-meridian-role" = json!("viewer"))),
    responses((status = 200, description = "Every TSIG key, by name", body = Vec<TsigKeyView>)),
)]
pub(super) async fn list_tsig_keys(
    _: ApiUser,
    State(st): State<AppState>,
) -> Json<Vec<TsigKeyView>> {
    let users = ops::tsig_key_users(&st.backend.config().value.spec);
    let keys = st.backend.tsig_keys();
    Json(
        keys.values()
            .map(|k| TsigKeyView {
                name: k.name.clone(),
                algorithm: k.algorithm,
                used_by: users.get(&k.name).cloned().unwrap_or_default(),
                created_unix_ms: k.created_unix_ms,
            })
            .collect(),
    )
}

/// A TSIG key to store.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTsigKey {
    /// The key's name, e.g. `xfr.example.com` (secondaries must use the same).
    pub name: String,
    /// `hmac-sha256` (default), `hmac-sha384` or `hmac-sha512`.
    #[serde(default)]
    pub algorithm: Option<String>,
    /// The shared secret in base64, at least 128 bits (`meridian dns tsig add --generate`,
    /// BIND's `tsig-keygen` or Knot's `keymgr -t` make one). Sealed at once; never shown again.
    pub secret: String,
}

#[derive(Serialize, ToSchema)]
pub struct TsigKeyWritten {
    pub name: String,
}

/// Stores a TSIG key
///
/// Role: operator. 422 names each problem (`name`, `algorithm`, `secret`); 409 when the name is
/// taken.
#[utoipa::path(
    post,
    path = "/dns/tsig-keys",
    tag = "dns",
    extensions(("x-meridian-role" = json!("operator"))),
    request_body(content = NewTsigKey, content_type = "application/json"),
    responses(
        (status = 201, description = "Stored", body = TsigKeyWritten),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 422, response = Invalid),
    ),
)]
pub(super) async fn create_tsig_key(
    user: ApiUser,
    State(st): State<AppState>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    user.require(Role::Operator)?;
    let req: NewTsigKey = json_body(&body(b)?)?;
    let algorithm = req.algorithm.as_deref().unwrap_or("hmac-sha256");
    let name = ops::add_tsig_key(&st, user.origin(), &req.name, algorithm, &req.secret).await?;
    st.metrics.change("tsig_keys");
    Ok((StatusCode::CREATED, Json(TsigKeyWritten { name })).into_response())
}

/// Deletes a TSIG key
///
/// Role: operator. 409 while a zone's secondary uses it, naming the zone.
#[utoipa::path(
    delete,
    path = "/dns/tsig-keys/{name}",
    tag = "dns",
    extensions(("x-meridian-role" = json!("operator"))),
    params(("name" = String, Path, description = "The key's name")),
    responses(
        (status = 200, description = "Deleted", body = TsigKeyWritten),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
    ),
)]
pub(super) async fn delete_tsig_key(
    user: ApiUser,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<TsigKeyWritten>, ApiError> {
    user.require(Role::Operator)?;
    ops::delete_tsig_key(&st, user.origin(), &name).await?;
    st.metrics.change("tsig_keys");
    Ok(Json(TsigKeyWritten { name }))
}
