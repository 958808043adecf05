//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of the REST API.
//!
//! The operations come from the `#[utoipa::path]` declarations that [`crate::api::router`] builds
//! the routes from, so every route is documented. This module adds what all of them share (the
//! security schemes, the error answers) and spells the generic `/{kind}` routes out once per
//! object kind, with that kind's spec as the body.

use std::sync::OnceLock;

use axum::Json;
use model::ObjectKind;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::schema::{ArrayBuilder, Schema};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, Ref, RefOr};
use utoipa::{Modify, OpenApi, ToResponse, ToSchema};

use crate::auth::ApiUser;

pub use self::responses::*;

const DESCRIPTION: &str = "\
The REST API of a Meridian node: the replicated configuration (whole, or one object at a \
time), admin states of pool members and GSLB sites, history and rollback, the audit log, users, \
API tokens and node status.

**Authentication.** Every call needs `Authorization: Bearer mrd_...` (an API token) or HTTP \
Basic with a user's password. Basic is throttled per address after failed attempts (429), so \
scripts should use tokens.

**Roles.** `viewer` reads everything; `operator` also changes the configuration; `admin` also \
manages users. Each operation names the role it needs (also as `x-meridian-role`); a token acts \
with at most its user's role. Too low a role gets 403.

**Revisions and `If-Match`.** Every configuration change makes a new revision. Reads of the \
configuration return it in `ETag` (`\"17\"`) and `X-Meridian-Revision`. Writes of the \
configuration or of an object, and rollbacks, must send `If-Match`: the revision they are based \
on, so that a concurrent change gives 409 instead of being overwritten, or `*` to write whatever \
the current revision is. A write without `If-Match` is refused with 428.

**Errors.** Every answer is JSON, errors included: `{\"error\": \"...\"}`, and for invalid input \
(422) `errors`, every problem found with the path of the field it concerns. A node that is not \
the Raft leader answers a write with 503.";

/// The `If-Match` header of a configuration write.
pub const IF_MATCH: &str = "The revision the change is based on, as the `ETag` of a read gave \
it (`\"17\"`; `17` and `W/\"17\"` are accepted too), or `*` to write whatever the current \
revision is. Required: a write without it is refused with 428.";

#[derive(OpenApi)]
#[openapi(
    info(title = "Meridian API", version = env!("CARGO_PKG_VERSION"), description = DESCRIPTION),
    modifiers(&SecuritySchemes),
    security(("bearer" = []), ("basic" = [])),
    components(
        schemas(ErrorBody, crate::api::Revision),
        responses(
            Written,
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            Conflict,
            TooLarge,
            Invalid,
            PreconditionRequired,
            Throttled,
            Unavailable,
            Unconfirmed,
        ),
    ),
    tags(
        (name = "config", description = "The whole configuration document"),
        (name = "listeners", description = "Proxy listeners: where clients connect"),
        (name = "routes", description = "Host and path prefix on a listener, sent to a pool"),
        (name = "pools", description = "Upstream members balanced by weight"),
        (name = "health_checks", description = "Active HTTP health checks"),
        (name = "zones", description = "Authoritative DNS zones"),
        (name = "gslb_records", description = "GSLB names answered with their healthy sites"),
        (name = "history", description = "Config revisions and rollback"),
        (name = "cache", description = "The response cache: status and purges"),
        (name = "dns", description = "DNS answers explained"),
        (name = "audit", description = "The replicated audit log"),
        (name = "users", description = "Console and API users"),
        (name = "account", description = "The caller's own account"),
        (name = "tokens", description = "API tokens"),
        (name = "status", description = "This node's status"),
        (name = "cluster", description = "The Raft cluster: members, their state, removal"),
        (name = "meta", description = "This document"),
    ),
)]
struct ApiDoc;

/// The document, built once.
pub fn doc() -> &'static Document {
    static DOC: OnceLock<Document> = OnceLock::new();
    DOC.get_or_init(build)
}

fn build() -> Document {
    let mut doc = ApiDoc::openapi().nest("/api/v1", crate::api::router().into_openapi());
    expand_kinds(&mut doc);
    add_shared_responses(&mut doc);
    doc
}

/// This document
///
/// Role: viewer.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    extensions(("x-meridian-role" = json!("viewer"))),
    responses((status = 200, description = "The OpenAPI document of this API",
        body = Object, content_type = "application/json")),
)]
pub async fn document(_: ApiUser) -> Json<&'static Document> {
    Json(doc())
}

// === impl SecuritySchemes ===

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("mrd_<64 hex digits>")
                    .description(Some(
                        "An API token (`POST /api/v1/tokens`, or `meridian token create`)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "A user's name and password; throttled per address after failed attempts",
                    ))
                    .build(),
            ),
        );
    }
}

/// The spec schema of each object kind: the body of its per-object calls.
fn spec_schema(kind: ObjectKind) -> RefOr<Schema> {
    use model::*;
    let name = match kind {
        ObjectKind::Listeners => ListenerSpec::name(),
        ObjectKind::Routes => RouteSpec::name(),
        ObjectKind::Pools => PoolSpec::name(),
        ObjectKind::HealthChecks => HealthCheckSpec::name(),
        ObjectKind::Zones => ZoneSpec::name(),
        ObjectKind::GslbRecords => GslbRecordSpec::name(),
        ObjectKind::Regions => RegionSpec::name(),
    };
    RefOr::Ref(Ref::from_schema_name(name))
}

/// Replaces `/api/v1/{kind}` and `/api/v1/{kind}/{name}` with one path per kind
/// (`/api/v1/pools/{name}`, ...) whose bodies are that kind's spec, so clients see typed calls.
fn expand_kinds(doc: &mut Document) {
    let paths = &mut doc.paths.paths;
    let list = paths.remove("/api/v1/{kind}");
    let one = paths.remove("/api/v1/{kind}/{name}");
    for kind in ObjectKind::ALL {
        let spec = spec_schema(kind);
        let list_of = RefOr::T(Schema::Array(
            ArrayBuilder::new().items(spec.clone()).build(),
        ));
        if let Some(item) = &list {
            let item = for_kind(item, kind, &list_of);
            paths.insert(format!("/api/v1/{kind}"), item);
        }
        if let Some(item) = &one {
            let item = for_kind(item, kind, &spec);
            paths.insert(format!("/api/v1/{kind}/{{name}}"), item);
        }
    }
}

/// A generic object path item made specific to `kind`: no `kind` parameter, the kind as tag,
/// operation ids that name it, and `body` as the JSON of the request and of a 200 that has one.
fn for_kind(generic: &PathItem, kind: ObjectKind, body: &RefOr<Schema>) -> PathItem {
    let mut item = generic.clone();
    for op in operations(&mut item) {
        op.tags = Some(vec![kind.as_str().to_string()]);
        op.operation_id = op.operation_id.take().map(|id| format!("{id}_{kind}"));
        if let Some(params) = &mut op.parameters {
            params.retain(|p| !matches!(p, RefOr::T(p) if p.name == "kind"));
        }
        if let Some(RefOr::T(request)) = &mut op.request_body {
            if let Some(RefOr::T(json)) = request.content.get_mut("application/json") {
                json.schema = Some(body.clone());
            }
        }
        if let Some(RefOr::T(ok)) = op.responses.responses.get_mut("200") {
            if let Some(RefOr::T(json)) = ok.content.get_mut("application/json") {
                json.schema = Some(body.clone());
            }
        }
    }
    item
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.patch,
        &mut item.delete,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// Answers every operation can give, because every route authenticates the caller first.
fn add_shared_responses(doc: &mut Document) {
    for item in doc.paths.paths.values_mut() {
        for op in operations(item) {
            for (status, name) in [
                ("401", Unauthorized::response().0),
                ("429", Throttled::response().0),
                ("503", Unavailable::response().0),
                ("504", Unconfirmed::response().0),
            ] {
                op.responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
            }
        }
    }
}

/// The answers shared by the operations, as components. None of these types is built: they
/// describe what [`crate::error::ApiError`] and the write handlers answer.
#[allow(dead_code)]
mod responses {
    use model::FieldError;
    use utoipa::{ToResponse, ToSchema};

    use crate::api::Revision;

    /// An error answer.
    #[derive(ToSchema)]
    pub struct ErrorBody {
        /// What went wrong, for a person to read.
        error: String,
        /// 422 only: every problem found, each with the path of the field it concerns.
        errors: Option<Vec<FieldError>>,
        /// 409 for a stale `If-Match` only: the current revision, to read again from.
        current_revision: Option<u64>,
        /// 503 from a node that is not the leader: the leader's address, when known.
        leader: Option<String>,
        /// 503: why the cluster cannot commit now.
        detail: Option<String>,
        /// 504: the write, if it was applied, is at a log index above this one; the audit log
        /// lists entries by index (`GET /audit?after_index=N`).
        after_index: Option<u64>,
    }

    /// The change is committed; the body, `ETag` and `X-Meridian-Revision` carry the config
    /// revision it made.
    #[derive(ToResponse)]
    #[response(headers(
        ("ETag" = String, description = "The new config revision, quoted: `\"18\"`"),
        ("X-Meridian-Revision" = u64, description = "The new config revision"),
    ))]
    pub struct Written(Revision);

    /// Malformed: an `If-Match` that is neither a revision nor `*`, a body that cannot be read,
    /// or a bad query parameter.
    #[derive(ToResponse)]
    pub struct BadRequest(ErrorBody);

    /// No credentials, or they do not hold: an unknown, expired or revoked token, a wrong
    /// password, or a disabled user.
    #[derive(ToResponse)]
    #[response(headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"meridian\"`")))]
    pub struct Unauthorized(ErrorBody);

    /// The caller's role is too low for this call; `error` names the role it needs.
    #[derive(ToResponse)]
    pub struct Forbidden(ErrorBody);

    /// There is no such object.
    #[derive(ToResponse)]
    pub struct NotFound(ErrorBody);

    /// Stale: the configuration is no longer at the revision in `If-Match` (`current_revision`
    /// says where it is: read again and retry), or a concurrent change won the race. Or refused
    /// by the current state: a revision no longer kept, the last enabled admin, a user, member or
    /// site that does not exist.
    #[derive(ToResponse)]
    pub struct Conflict(ErrorBody);

    /// The body is larger than 1 MiB.
    #[derive(ToResponse)]
    pub struct TooLarge(ErrorBody);

    /// The body does not parse (unknown or missing fields, wrong types), or the configuration it
    /// would make is invalid: `errors` lists every problem with its field path.
    #[derive(ToResponse)]
    pub struct Invalid(ErrorBody);

    /// A write without `If-Match`: send the revision read (the `ETag` of a GET), or `*` to
    /// overwrite whatever is there.
    #[derive(ToResponse)]
    pub struct PreconditionRequired(ErrorBody);

    /// Too many failed password attempts from this address (HTTP Basic, or a wrong current
    /// password): retry after `Retry-After` seconds, or use a token.
    #[derive(ToResponse)]
    #[response(headers(("Retry-After" = u64, description = "Seconds to wait")))]
    pub struct Throttled(ErrorBody);

    /// Not now: this node is not the Raft leader (`leader` names it when known) or the cluster
    /// has no quorum, so a change cannot be committed; or, with HTTP Basic, too many password
    /// checks are queued (`Retry-After: 1`). Retry, on the leader or with a token.
    #[derive(ToResponse)]
    pub struct Unavailable(ErrorBody);

    /// A change was sent but not confirmed in time: it may still be applied, at a log index
    /// above `after_index` (see the audit log). Read the config's revision before retrying, or
    /// retry with If-Match, which is always safe.
    #[derive(ToResponse)]
    pub struct Unconfirmed(ErrorBody);
}
