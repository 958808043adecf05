//! The configuration through the API: the whole document, one object at a time, admin states
//! of members and sites, and the node's status.

use super::*;

/// The whole configuration
///
/// Role: viewer. The `ETag` is the revision; send it back in `If-Match` to make a write
/// conditional on nothing having changed since. Linearizable: the node answers once it has
/// applied everything committed before the request (503 without a quorum).
#[utoipa::path(
    get,
    path = "/config",
    tag = "config",
    extensions(("x-meridian-role" = json!("viewer"))),
    responses(
        (status = 200, description = "The configuration document", body = ConfigSpec,
            headers(
                ("ETag" = String, description = "The config revision, quoted: `\"17\"`"),
                ("X-Meridian-Revision" = u64, description = "The config revision"),
            )),
        (status = 503, response = crate::openapi::Unavailable),
    ),
)]
pub(super) async fn get_config(
    _: ApiUser,
    State(st): State<AppState>,
) -> Result<Response, ApiError> {
    st.backend.read_barrier().await?;
    let cfg = st.backend.config();
    Ok(with_revision(
        Json(&cfg.value.spec).into_response(),
        cfg.revision,
    ))
}

/// Replaces the whole configuration
///
/// Role: operator. The body is JSON or TOML, by `Content-Type` (sniffed when it names neither).
/// It is validated whole: a 422 lists every problem with its field path.
#[utoipa::path(
    put,
    path = "/config",
    tag = "config",
    extensions(("x-meridian-role" = json!("operator"))),
    params(("If-Match" = String, Header, description = IF_MATCH)),
    request_body(
        description = "The configuration document",
        content((ConfigSpec = "application/json"), (String = "application/toml")),
    ),
    responses(
        (status = 200, response = Written),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 422, response = Invalid),
        (status = 428, response = PreconditionRequired),
    ),
)]
pub(super) async fn put_config(
    user: ApiUser,
    State(st): State<AppState>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    user.require(Role::Operator)?;
    let expected = if_match(&headers)?.expected();
    let b = body(b)?;
    let spec = model::parse::spec_from(&b, format(&headers))?;
    // Validated here for a fast, complete 422; the state machine validates again on apply.
    let change = Change::ReplaceConfig {
        expected_revision: expected,
        spec,
    };
    let revision = ops::propose_config(&st, user.origin(), change).await?;
    st.metrics.change("config");
    Ok(revision_answer(revision))
}

// The four object handlers below serve every kind. Their declarations are generic (`kind` is a
// path parameter and the bodies are any JSON); `openapi` documents them once per kind, with the
// kind's own spec as the body.

/// Lists the objects of this kind, in config order
///
/// Role: viewer.
#[utoipa::path(
    get,
    path = "/{kind}",
    tag = "objects",
    extensions(("x-meridian-role" = json!("viewer"))),
    params(("kind" = String, Path, description = "The object kind")),
    responses(
        (status = 200, description = "Every object of this kind",
            body = Vec<serde_json::Value>,
            headers(
                ("ETag" = String, description = "The config revision, quoted: `\"17\"`"),
                ("X-Meridian-Revision" = u64, description = "The config revision"),
            )),
        (status = 503, response = crate::openapi::Unavailable),
    ),
)]
pub(super) async fn list_objects(
    _: ApiUser,
    State(st): State<AppState>,
    Path(k): Path<String>,
) -> Result<Response, ApiError> {
    let k = kind(&k)?;
    st.backend.read_barrier().await?;
    let cfg = st.backend.config();
    Ok(with_revision(
        Json(cfg.value.spec.list_json(k)).into_response(),
        cfg.revision,
    ))
}

/// One object
///
/// Role: viewer.
#[utoipa::path(
    get,
    path = "/{kind}/{name}",
    tag = "objects",
    extensions(("x-meridian-role" = json!("viewer"))),
    params(
        ("kind" = String, Path, description = "The object kind"),
        ("name" = String, Path, description = "The object's name"),
    ),
    responses(
        (status = 200, description = "The object's spec", body = serde_json::Value,
            headers(
                ("ETag" = String, description = "The config revision, quoted: `\"17\"`"),
                ("X-Meridian-Revision" = u64, description = "The config revision"),
            )),
        (status = 404, response = NotFound),
        (status = 503, response = crate::openapi::Unavailable),
    ),
)]
pub(super) async fn get_object(
    _: ApiUser,
    State(st): State<AppState>,
    Path((k, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let k = kind(&k)?;
    st.backend.read_barrier().await?;
    let cfg = st.backend.config();
    let obj = cfg.value.spec.get(k, &name).ok_or(ApiError::NotFound)?;
    Ok(with_revision(
        Json(obj.spec_json()).into_response(),
        cfg.revision,
    ))
}

/// Creates or replaces one object
///
/// Role: operator. The body is the object's spec in JSON or TOML; its `name` must be the one in
/// the path. The whole configuration it produces is validated: a 422 lists every problem.
#[utoipa::path(
    put,
    path = "/{kind}/{name}",
    tag = "objects",
    extensions(("x-meridian-role" = json!("operator"))),
    params(
        ("kind" = String, Path, description = "The object kind"),
        ("name" = String, Path, description = "The object's name"),
        ("If-Match" = String, Header, description = IF_MATCH),
    ),
    request_body(
        description = "The object's spec",
        content((serde_json::Value = "application/json"), (String = "application/toml")),
    ),
    responses(
        (status = 200, response = Written),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 422, response = Invalid),
        (status = 428, response = PreconditionRequired),
    ),
)]
pub(super) async fn put_object(
    user: ApiUser,
    State(st): State<AppState>,
    Path((k, name)): Path<(String, String)>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let k = kind(&k)?;
    user.require(Role::Operator)?;
    let expected = if_match(&headers)?.expected();
    let b = body(b)?;
    let object = Object::parse(k, &b)?;
    if object.name() != name {
        return Err(ApiError::Invalid(model::ValidationErrors::single(
            "name",
            format!(
                "name {:?} in the body does not match {name:?} in the path",
                object.name()
            ),
        )));
    }
    let revision = ops::save(&st, user.origin(), expected, object).await?;
    st.metrics.change(k.as_str());
    Ok(revision_answer(revision))
}

/// Deletes one object
///
/// Role: operator. Refused with 422 while other objects refer to it.
#[utoipa::path(
    delete,
    path = "/{kind}/{name}",
    tag = "objects",
    extensions(("x-meridian-role" = json!("operator"))),
    params(
        ("kind" = String, Path, description = "The object kind"),
        ("name" = String, Path, description = "The object's name"),
        ("If-Match" = String, Header, description = IF_MATCH),
    ),
    responses(
        (status = 200, response = Written),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Invalid),
        (status = 428, response = PreconditionRequired),
    ),
)]
pub(super) async fn delete_object(
    user: ApiUser,
    State(st): State<AppState>,
    Path((k, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let k = kind(&k)?;
    user.require(Role::Operator)?;
    let expected = if_match(&headers)?.expected();
    let revision = ops::delete(&st, user.origin(), expected, k, &name).await?;
    st.metrics.change(k.as_str());
    Ok(revision_answer(revision))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StateBody {
    /// `enabled`, `disabled` or `draining`.
    pub state: AdminState,
}

/// Sets a pool member's admin state
///
/// Role: operator. No `If-Match`: the change is made on the revision the node reads, and a
/// concurrent edit of the pool gives 409 rather than being overwritten.
#[utoipa::path(
    put,
    path = "/pools/{pool}/members/{address}/state",
    tag = "pools",
    extensions(("x-meridian-role" = json!("operator"))),
    params(
        ("pool" = String, Path, description = "The pool's name"),
        ("address" = String, Path, description = "The member's `ip:port`"),
    ),
    request_body = StateBody,
    responses(
        (status = 200, response = Written),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 422, response = Invalid),
    ),
)]
pub(super) async fn member_state(
    user: ApiUser,
    State(st): State<AppState>,
    Path((pool, address)): Path<(String, String)>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    user.require(Role::Operator)?;
    let req: StateBody = json_body(&body(b)?)?;
    let revision = ops::member_state(&st, user.origin(), &pool, &address, req.state).await?;
    st.metrics.change("pools");
    Ok(revision_answer(revision))
}

/// Sets a GSLB site's admin state
///
/// Role: operator. No `If-Match`: the change is made on the revision the node reads, and a
/// concurrent edit of the record gives 409 rather than being overwritten.
#[utoipa::path(
    put,
    path = "/gslb_records/{record}/sites/{site}/state",
    tag = "gslb_records",
    extensions(("x-meridian-role" = json!("operator"))),
    params(
        ("record" = String, Path, description = "The record's name, with or without its trailing dot"),
        ("site" = String, Path, description = "The site's name"),
    ),
    request_body = StateBody,
    responses(
        (status = 200, response = Written),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 422, response = Invalid),
    ),
)]
pub(super) async fn site_state(
    user: ApiUser,
    State(st): State<AppState>,
    Path((record, site)): Path<(String, String)>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    user.require(Role::Operator)?;
    let req: StateBody = json_body(&body(b)?)?;
    let revision = ops::site_state(&st, user.origin(), &record, &site, req.state).await?;
    st.metrics.change("gslb_records");
    Ok(revision_answer(revision))
}

/// The node's view: revision, Raft, listeners, alarms and health.
#[derive(Serialize, ToSchema)]
pub struct Status {
    /// Conditions an operator must act on; empty when all is well.
    pub alarms: Vec<String>,
    /// Each GSLB record with its sites' health and admin state.
    pub gslb_records: Vec<view::GslbView>,
    /// The proxy listeners as the data plane sees them.
    pub listeners: Vec<crate::ListenerView>,
    /// Each pool with its members' health and admin state.
    pub pools: Vec<view::PoolView>,
    /// This node's Raft state: node id, role, term, indexes, leader and members.
    pub raft: crate::RaftView,
    /// The config revision this node has applied.
    pub revision: u64,
}

/// The node's status
///
/// Role: viewer.
#[utoipa::path(
    get,
    path = "/status",
    tag = "status",
    extensions(("x-meridian-role" = json!("viewer"))),
    responses((status = 200, description = "This node's status", body = Status)),
)]
pub(super) async fn status(_: ApiUser, State(st): State<AppState>) -> Json<Status> {
    let cfg = st.backend.config();
    let health = st.backend.health();
    Json(Status {
        revision: cfg.revision,
        raft: st.backend.raft(),
        listeners: st.backend.listeners(),
        alarms: st.backend.alarms(),
        pools: view::pools(&cfg.value, health.as_ref()),
        gslb_records: view::gslb(&cfg.value, health.as_ref()),
    })
}
