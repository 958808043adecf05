//! REST API `/api/v1`: the whole config (GET, PUT with If-Match), one object at a time, admin
//! states, history and rollback, the audit log, users and tokens, and node status. Every route
//! requires [`ApiUser`] and the role it names; every answer, errors included, is JSON.
//!
//! Each handler carries its `#[utoipa::path]` declaration, and [`router`] registers the handlers
//! through those declarations: the route and its OpenAPI operation come from the same place, so a
//! route cannot exist undocumented (see [`crate::openapi`]).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use model::{AdminState, ConfigSpec, Object, ObjectKind, Role};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::ApiUser;
use crate::error::ApiError;
use crate::openapi::{
    self, BadRequest, Conflict, Forbidden, Invalid, NotFound, PreconditionRequired, TooLarge,
    Written, IF_MATCH,
};
use crate::{diff, ops, view, AppState, Change};

mod cache;
mod certificates;
mod cluster;
mod dns;
mod history;
mod objects;
mod users;

use cache::*;
pub use certificates::Views as CertificateViews;
use certificates::*;
pub use cluster::join_token_views;
use cluster::*;
use dns::*;
use history::*;
use objects::*;
pub use users::tokens_for;
use users::*;

/// Every API route with its OpenAPI operation, paths relative to `/api/v1`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_config, put_config))
        .routes(routes!(status))
        .routes(routes!(cluster_status))
        .routes(routes!(remove_member))
        .routes(routes!(list_join_tokens, create_join_token))
        .routes(routes!(backup))
        .routes(routes!(list_history))
        .routes(routes!(get_revision))
        .routes(routes!(rollback))
        .routes(routes!(audit))
        .routes(routes!(list_users, create_user))
        .routes(routes!(update_user, delete_user))
        .routes(routes!(change_own_password))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(member_state))
        .routes(routes!(site_state))
        .routes(routes!(list_certificates, import_certificate))
        .routes(routes!(
            get_certificate,
            put_certificate,
            delete_certificate
        ))
        .routes(routes!(revoke_certificate))
        .routes(routes!(generate_certificate))
        .routes(routes!(cache_status))
        .routes(routes!(purge))
        .routes(routes!(dns_explain))
        .routes(routes!(import_zone))
        .routes(routes!(list_tsig_keys, create_tsig_key))
        .routes(routes!(delete_tsig_key))
        .routes(routes!(openapi::document))
        // Documented once per kind by `openapi`, which spells these two out.
        .routes(routes!(list_objects))
        .routes(routes!(get_object, put_object, delete_object))
}

pub fn routes() -> Router<AppState> {
    Router::from(router())
        .fallback(|_: ApiUser| async { ApiError::NotFound })
        // Credentials first: a wrong method must not reveal which routes exist.
        .method_not_allowed_fallback(|_: ApiUser| async {
            (
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                Json(json!({"error": "method not allowed"})),
            )
        })
}

/// What `If-Match` asks for on a write.
#[derive(Debug, PartialEq, Eq)]
pub enum Precondition {
    /// `If-Match: *`: write whatever is there.
    Any,
    /// `If-Match: "17"`: only if the config is still at revision 17.
    Revision(u64),
}

impl Precondition {
    pub fn expected(&self) -> Option<u64> {
        match self {
            Precondition::Any => None,
            Precondition::Revision(r) => Some(*r),
        }
    }
}

/// Reads `If-Match`: `"17"`, `17` or `W/"17"` expect revision 17; `*` expects nothing. Absent,
/// the write is refused with 428, so that a blind overwrite is always deliberate.
pub fn if_match(headers: &HeaderMap) -> Result<Precondition, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Err(ApiError::PreconditionRequired);
    };
    let s = v
        .to_str()
        .map_err(|_| ApiError::BadRequest("If-Match is not ASCII".into()))?
        .trim();
    if s == "*" {
        return Ok(Precondition::Any);
    }
    let s = s.strip_prefix("W/").unwrap_or(s).trim_matches('"');
    s.parse::<u64>().map(Precondition::Revision).map_err(|_| {
        ApiError::BadRequest(format!(
            "If-Match must be a config revision such as \"17\", or *, got {s:?}"
        ))
    })
}

/// The request body, or a JSON 413 / 400.
fn body(b: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    b.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge
        } else {
            ApiError::BadRequest(format!("cannot read the request body: {e}"))
        }
    })
}

/// Which form the body says it is in: JSON or TOML by `Content-Type`, sniffed otherwise.
fn format(headers: &HeaderMap) -> model::parse::Format {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ct.contains("json") {
        model::parse::Format::Json
    } else if ct.contains("toml") {
        model::parse::Format::Toml
    } else {
        model::parse::Format::Sniff
    }
}

/// Parses a small JSON request body; a body that is not JSON, or has unknown or missing fields,
/// gets a JSON 422 naming the field.
fn json_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    model::parse::from_json(bytes).map_err(ApiError::Invalid)
}

fn with_revision(mut resp: Response, revision: u64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{revision}\"")) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&revision.to_string()) {
        resp.headers_mut().insert("x-meridian-revision", v);
    }
    resp
}

/// The config revision a change produced (also in `ETag` and `X-Meridian-Revision`).
#[derive(Serialize, ToSchema)]
pub struct Revision {
    pub revision: u64,
}

fn revision_answer(revision: u64) -> Response {
    with_revision(Json(Revision { revision }).into_response(), revision)
}

fn kind(s: &str) -> Result<ObjectKind, ApiError> {
    ObjectKind::parse(s).ok_or(ApiError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_forms() {
        let mut h = HeaderMap::new();
        assert!(matches!(if_match(&h), Err(ApiError::PreconditionRequired)));
        h.insert(header::IF_MATCH, HeaderValue::from_static("\"17\""));
        assert_eq!(if_match(&h).ok(), Some(Precondition::Revision(17)));
        h.insert(header::IF_MATCH, HeaderValue::from_static("W/\"3\""));
        assert_eq!(if_match(&h).ok(), Some(Precondition::Revision(3)));
        h.insert(header::IF_MATCH, HeaderValue::from_static("*"));
        assert_eq!(if_match(&h).ok(), Some(Precondition::Any));
        h.insert(header::IF_MATCH, HeaderValue::from_static("\"abc\""));
        assert!(if_match(&h).is_err());
    }
}
