//! API errors: one enum mapped to a status code and a JSON body. Details go to the log; the
//! client gets a clean message.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use model::ValidationErrors;
use serde_json::json;

use crate::{ChangeError, Refusal};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("authentication required")]
    Unauthorized,
    #[error("{0}")]
    BadRequest(String),
    #[error("not found")]
    NotFound,
    #[error("needs the {0} role")]
    Forbidden(model::Role),
    /// A write without `If-Match`.
    #[error("If-Match required")]
    PreconditionRequired,
    #[error("request body too large")]
    TooLarge,
    #[error("invalid configuration")]
    Invalid(ValidationErrors),
    #[error(transparent)]
    Change(#[from] ChangeError),
    #[error("too many failed attempts")]
    Throttled(std::time::Duration),
    #[error("too many password checks queued")]
    Busy,
    #[error("internal error")]
    Internal(String),
}

impl From<ValidationErrors> for ApiError {
    fn from(e: ValidationErrors) -> Self {
        ApiError::Invalid(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                json!({"error": "authentication required: send Authorization: Bearer <token>"}),
            ),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, json!({ "error": m })),
            ApiError::NotFound => (StatusCode::NOT_FOUND, json!({"error": "not found"})),
            ApiError::Forbidden(role) => (
                StatusCode::FORBIDDEN,
                json!({"error": format!("this needs the {role} role")}),
            ),
            ApiError::PreconditionRequired => (
                StatusCode::PRECONDITION_REQUIRED,
                json!({"error": "send If-Match with the revision you read (the ETag of a GET), or If-Match: * to overwrite whatever is there"}),
            ),
            ApiError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"error": format!("request body larger than {} bytes", crate::MAX_BODY_BYTES)}),
            ),
            ApiError::Invalid(e) | ApiError::Change(ChangeError::Rejected(Refusal::Invalid(e))) => {
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({"error": "invalid configuration", "errors": e.errors}),
                )
            }
            ApiError::Change(ChangeError::Rejected(Refusal::StaleRevision {
                expected,
                current,
            })) => (
                StatusCode::CONFLICT,
                json!({
                    "error": format!("stale revision: If-Match was {expected}, the current revision is {current}"),
                    "current_revision": current,
                }),
            ),
            ApiError::Change(ChangeError::Rejected(Refusal::NotFound { kind, name })) => (
                StatusCode::NOT_FOUND,
                json!({"error": format!("{kind}/{name} does not exist")}),
            ),
            ApiError::Change(ChangeError::Rejected(Refusal::NotAllowed(why))) => {
                (StatusCode::CONFLICT, json!({ "error": why }))
            }
            ApiError::Change(ChangeError::NotLeader { leader }) => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "this node is not the Raft leader; retry on the leader", "leader": leader}),
            ),
            ApiError::Change(ChangeError::Unavailable(why)) => {
                tracing::warn!(error = %why, "cluster unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"error": "the cluster cannot commit changes right now; nothing was changed", "detail": why}),
                )
            }
            ApiError::Change(ChangeError::Unknown {
                detail,
                after_index,
            }) => {
                tracing::warn!(error = %detail, "change not confirmed");
                let check = match after_index {
                    Some(i) => format!(" If it was, it is in the audit log after log index {i} (GET /api/v1/audit?after_index={i})."),
                    None => String::new(),
                };
                (
                    StatusCode::GATEWAY_TIMEOUT,
                    json!({
                        "error": format!("the change was sent but not confirmed in time: it may still be applied.{check} Read the config's revision before retrying, or retry with If-Match, which is always safe"),
                        "after_index": after_index,
                    }),
                )
            }
            // The same answer the console gives: 429 with Retry-After.
            ApiError::Throttled(wait) => (
                StatusCode::TOO_MANY_REQUESTS,
                json!({"error": format!("too many failed password attempts from this address; retry in {} s", wait.as_secs().max(1))}),
            ),
            ApiError::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "too many password checks in progress; retry shortly, or use a token"}),
            ),
            ApiError::Internal(why) => {
                tracing::error!(error = %why, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": "internal error"}),
                )
            }
        };
        let retry_after = match &self {
            ApiError::Throttled(wait) => Some(wait.as_secs().max(1)),
            ApiError::Busy => Some(1),
            _ => None,
        };
        let mut resp = (status, Json(body)).into_response();
        if let Some(secs) = retry_after.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
            resp.headers_mut().insert(header::RETRY_AFTER, secs);
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"meridian\""),
            );
        }
        resp
    }
}
