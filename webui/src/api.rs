//! REST API `/api/v1`: the whole config (GET, PUT with If-Match), one object at a time, tokens
//! and node status. Every route requires [`ApiUser`].

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use model::{Object, ObjectKind};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{new_token, token_id, ApiUser};
use crate::error::ApiError;
use crate::{view, AppState, Change};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/config", get(get_config).put(put_config))
        .route("/status", get(status))
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{id}", delete(revoke_token))
        .route("/{kind}", get(list_objects))
        .route(
            "/{kind}/{name}",
            get(get_object).put(put_object).delete(delete_object),
        )
        .fallback(|_: ApiUser| async { ApiError::NotFound })
        // Credentials first: a wrong method must not reveal which routes exist.
        .method_not_allowed_fallback(|_: ApiUser| async {
            (
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                Json(json!({"error": "method not allowed"})),
            )
        })
}

/// Reads `If-Match`: `"17"`, `17` or `W/"17"` expect revision 17; `*` or absent expect nothing.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let s = v
        .to_str()
        .map_err(|_| ApiError::BadRequest("If-Match is not ASCII".into()))?
        .trim();
    if s == "*" {
        return Ok(None);
    }
    let s = s.strip_prefix("W/").unwrap_or(s).trim_matches('"');
    s.parse::<u64>().map(Some).map_err(|_| {
        ApiError::BadRequest(format!(
            "If-Match must be a config revision such as \"17\", got {s:?}"
        ))
    })
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

fn kind(s: &str) -> Result<ObjectKind, ApiError> {
    ObjectKind::parse(s).ok_or(ApiError::NotFound)
}

async fn get_config(_: ApiUser, State(st): State<AppState>) -> Response {
    let cfg = st.backend.config();
    with_revision(Json(&cfg.value.spec).into_response(), cfg.revision)
}

async fn put_config(
    _: ApiUser,
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let expected = if_match(&headers)?;
    let spec: model::ConfigSpec = model::parse::from_any(&body)?;
    // Validate here for a fast, complete 422; the state machine validates again on apply.
    model::validate(&spec)?;
    let revision = st
        .backend
        .propose(Change::ReplaceConfig {
            expected_revision: expected,
            spec,
        })
        .await?;
    st.metrics.change("config");
    Ok(with_revision(
        Json(json!({ "revision": revision })).into_response(),
        revision,
    ))
}

async fn list_objects(
    _: ApiUser,
    State(st): State<AppState>,
    Path(k): Path<String>,
) -> Result<Response, ApiError> {
    let k = kind(&k)?;
    let cfg = st.backend.config();
    Ok(with_revision(
        Json(cfg.value.spec.list_json(k)).into_response(),
        cfg.revision,
    ))
}

async fn get_object(
    _: ApiUser,
    State(st): State<AppState>,
    Path((k, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let k = kind(&k)?;
    let cfg = st.backend.config();
    let obj = cfg.value.spec.get(k, &name).ok_or(ApiError::NotFound)?;
    Ok(with_revision(
        Json(obj.spec_json()).into_response(),
        cfg.revision,
    ))
}

async fn put_object(
    _: ApiUser,
    State(st): State<AppState>,
    Path((k, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let k = kind(&k)?;
    let expected = if_match(&headers)?;
    let object = Object::parse(k, &body)?;
    if object.name() != name {
        return Err(ApiError::Invalid(model::ValidationErrors::single(
            "name",
            format!(
                "name {:?} in the body does not match {name:?} in the path",
                object.name()
            ),
        )));
    }
    let mut spec = st.backend.config().value.spec.clone();
    spec.upsert(&object);
    model::validate(&spec)?;
    let revision = st
        .backend
        .propose(Change::Upsert {
            expected_revision: expected,
            object,
        })
        .await?;
    st.metrics.change(k.as_str());
    Ok(with_revision(
        Json(json!({ "revision": revision })).into_response(),
        revision,
    ))
}

async fn delete_object(
    _: ApiUser,
    State(st): State<AppState>,
    Path((k, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let k = kind(&k)?;
    let expected = if_match(&headers)?;
    let mut spec = st.backend.config().value.spec.clone();
    if !spec.delete(k, &name) {
        return Err(ApiError::NotFound);
    }
    model::validate(&spec)?;
    let revision = st
        .backend
        .propose(Change::Delete {
            expected_revision: expected,
            kind: k,
            name,
        })
        .await?;
    st.metrics.change(k.as_str());
    Ok(with_revision(
        Json(json!({ "revision": revision })).into_response(),
        revision,
    ))
}

async fn status(_: ApiUser, State(st): State<AppState>) -> Json<serde_json::Value> {
    let cfg = st.backend.config();
    let health = st.backend.health();
    Json(json!({
        "revision": cfg.revision,
        "raft": st.backend.raft(),
        "listeners": st.backend.listeners(),
        "alarms": st.backend.alarms(),
        "pools": view::pools(&cfg.value, health.as_ref()),
        "gslb_records": view::gslb(&cfg.value, health.as_ref()),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
}

async fn create_token(
    user: ApiUser,
    State(st): State<AppState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: NewToken = model::parse::from_json(&body)?;
    if req.name.is_empty() || req.name.len() > 64 {
        return Err(ApiError::Invalid(model::ValidationErrors::single(
            "name",
            "token name must be 1-64 characters",
        )));
    }
    let token = new_token();
    let id = token_id(&token);
    st.backend
        .propose(Change::AddToken {
            id: id.clone(),
            name: req.name.clone(),
            user: user.user,
        })
        .await?;
    // The secret is returned once and never stored or logged.
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": id, "name": req.name, "token": token})),
    )
        .into_response())
}

async fn list_tokens(_: ApiUser, State(st): State<AppState>) -> Json<serde_json::Value> {
    let auth = st.backend.auth();
    let list: Vec<_> = auth
        .tokens
        .iter()
        .map(|(id, (name, user))| json!({"id": id, "name": name, "user": user}))
        .collect();
    Json(json!(list))
}

async fn revoke_token(
    _: ApiUser,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !st.backend.auth().tokens.contains_key(&id) {
        return Err(ApiError::NotFound);
    }
    st.backend.propose(Change::RevokeToken { id }).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(if_match(&h).ok(), Some(None));
        h.insert(header::IF_MATCH, HeaderValue::from_static("\"17\""));
        assert_eq!(if_match(&h).ok(), Some(Some(17)));
        h.insert(header::IF_MATCH, HeaderValue::from_static("W/\"3\""));
        assert_eq!(if_match(&h).ok(), Some(Some(3)));
        h.insert(header::IF_MATCH, HeaderValue::from_static("*"));
        assert_eq!(if_match(&h).ok(), Some(None));
        h.insert(header::IF_MATCH, HeaderValue::from_static("\"abc\""));
        assert!(if_match(&h).is_err());
    }
}
