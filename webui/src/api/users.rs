//! Users, the caller's own password, and API tokens through the API.

use super::*;

#[derive(Serialize, ToSchema)]
pub struct UserSummary {
    pub name: String,
    pub role: Role,
    pub disabled: bool,
}

/// The users
///
/// Role: admin.
#[utoipa::path(
    get,
    path = "/users",
    tag = "users",
    extensions(("x-meridian-role" = json!("admin"))),
    responses(
        (status = 200, description = "Every user, by name", body = Vec<UserSummary>),
        (status = 403, response = Forbidden),
    ),
)]
pub(super) async fn list_users(
    user: ApiUser,
    State(st): State<AppState>,
) -> Result<Json<Vec<UserSummary>>, ApiError> {
    user.require(Role::Admin)?;
    let auth = st.backend.auth();
    Ok(Json(
        auth.users
            .iter()
            .map(|(name, u)| UserSummary {
                name: name.clone(),
                role: u.role,
                disabled: u.disabled,
            })
            .collect(),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// 1-64 letters, digits, `-`, `_`, `.` or `@`.
    pub name: String,
    /// At least 12 characters.
    pub password: String,
    pub role: Role,
}

/// A user just created.
#[derive(Serialize, ToSchema)]
pub struct CreatedUser {
    pub name: String,
    pub role: Role,
}

/// Creates a user
///
/// Role: admin.
#[utoipa::path(
    post,
    path = "/users",
    tag = "users",
    extensions(("x-meridian-role" = json!("admin"))),
    request_body = NewUser,
    responses(
        (status = 201, description = "The user was created", body = CreatedUser),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 422, response = Invalid),
    ),
)]
pub(super) async fn create_user(
    user: ApiUser,
    State(st): State<AppState>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    user.require(Role::Admin)?;
    let req: NewUser = json_body(&body(b)?)?;
    ops::create_user(&st, user.origin(), &req.name, &req.password, req.role).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedUser {
            name: req.name,
            role: req.role,
        }),
    )
        .into_response())
}

/// What to change about a user; fields left out stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// A new password, at least 12 characters; ends the user's console sessions.
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub role: Option<Role>,
    /// Disabling ends the user's console sessions and stops their tokens.
    #[serde(default)]
    pub disabled: Option<bool>,
}

/// Changes a user's password, role or enabled state
///
/// Role: admin. 409 for a user that does not exist, or a change that would leave no enabled
/// admin.
#[utoipa::path(
    patch,
    path = "/users/{name}",
    tag = "users",
    extensions(("x-meridian-role" = json!("admin"))),
    params(("name" = String, Path, description = "The user's name")),
    request_body = UserPatch,
    responses(
        (status = 204, description = "The user was changed"),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 422, response = Invalid),
    ),
)]
pub(super) async fn update_user(
    user: ApiUser,
    State(st): State<AppState>,
    Path(name): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    user.require(Role::Admin)?;
    let req: UserPatch = json_body(&body(b)?)?;
    ops::update_user(
        &st,
        user.origin(),
        &name,
        req.password.as_deref(),
        req.role,
        req.disabled,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a user
///
/// Role: admin. 409 for the last enabled admin.
#[utoipa::path(
    delete,
    path = "/users/{name}",
    tag = "users",
    extensions(("x-meridian-role" = json!("admin"))),
    params(("name" = String, Path, description = "The user's name")),
    responses(
        (status = 204, description = "The user was deleted"),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
    ),
)]
pub(super) async fn delete_user(
    user: ApiUser,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    user.require(Role::Admin)?;
    ops::delete_user(&st, user.origin(), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current: String,
    /// At least 12 characters.
    pub new: String,
}

/// Changes the caller's own password
///
/// Role: viewer. A wrong `current` password is a 422 on `current`, and counts as a failed
/// attempt for throttling.
#[utoipa::path(
    put,
    path = "/account/password",
    tag = "account",
    extensions(("x-meridian-role" = json!("viewer"))),
    request_body = PasswordChange,
    responses(
        (status = 204, description = "The password was changed"),
        (status = 400, response = BadRequest),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 422, response = Invalid),
    ),
)]
pub(super) async fn change_own_password(
    user: ApiUser,
    State(st): State<AppState>,
    b: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let req: PasswordChange = json_body(&body(b)?)?;
    let phc = st
        .backend
        .auth()
        .users
        .get(&user.user)
        .map(|u| u.password_hash.clone());
    st.passwords
        .check(user.client, phc, req.current, std::time::Instant::now())
        .await
        .map_err(|d| match d {
            crate::auth::Denied::Wrong => ApiError::Invalid(model::ValidationErrors::single(
                "current",
                "the current password is wrong",
            )),
            crate::auth::Denied::Throttled(w) => ApiError::Throttled(w),
            crate::auth::Denied::Busy => ApiError::Busy,
        })?;
    ops::update_user(&st, user.origin(), &user.user, Some(&req.new), None, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// 1-64 characters.
    pub name: String,
    /// At most the caller's own role; the caller's role when absent.
    #[serde(default)]
    pub role: Option<Role>,
    /// Days until the token stops working (1-3650); never when absent.
    #[serde(default)]
    pub expires_days: Option<u32>,
}

/// A token just created, with its secret: shown this once, never stored.
#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    /// What `DELETE /api/v1/tokens/{id}` takes.
    pub id: String,
    pub name: String,
    pub role: Role,
    /// The secret to send as `Authorization: Bearer mrd_...`.
    pub token: String,
}

/// Creates an API token for the caller
///
/// Role: viewer; the token's role is at most the caller's (403 otherwise).
#[utoipa::path(
    post,
    path = "/tokens",
    tag = "tokens",
    extensions(("x-meridian-role" = json!("viewer"))),
    request_body = NewToken,
    responses(
        (status = 201, description = "The token was created", body = CreatedToken),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 413, response = TooLarge),
        (status = 422, response = Invalid),
    ),
)]
pub(super) async fn create_token(
    user: ApiUser,
    State(st): State<AppState>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: NewToken = json_body(&body(b)?)?;
    let role = req.role.unwrap_or(user.role);
    if role > user.role {
        return Err(ApiError::Forbidden(role));
    }
    let (id, token) = ops::create_token(
        &st,
        user.origin(),
        &user.user,
        &req.name,
        role,
        req.expires_days,
    )
    .await?;
    // The secret is returned once and never stored or logged.
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            id,
            name: req.name.trim().to_string(),
            role,
            token,
        }),
    )
        .into_response())
}

#[derive(Serialize, ToSchema)]
pub struct TokenSummary {
    pub id: String,
    pub name: String,
    pub user: String,
    pub role: Role,
    pub created_unix_ms: u64,
    pub expires_unix_ms: Option<u64>,
    /// On this node.
    pub last_used_unix_ms: Option<u64>,
}

/// Admins see every token; others their own.
pub fn tokens_for(st: &AppState, user: &str, role: Role) -> Vec<TokenSummary> {
    let auth = st.backend.auth();
    auth.tokens
        .iter()
        .filter(|(_, t)| role == Role::Admin || t.user == user)
        .map(|(id, t)| TokenSummary {
            id: id.clone(),
            name: t.name.clone(),
            user: t.user.clone(),
            role: t.role,
            created_unix_ms: t.created_unix_ms,
            expires_unix_ms: t.expires_unix_ms,
            last_used_unix_ms: st.token_usage.last_used(id),
        })
        .collect()
}

/// The API tokens
///
/// Role: viewer. Admins see every token, others their own. Secrets are never shown again.
#[utoipa::path(
    get,
    path = "/tokens",
    tag = "tokens",
    extensions(("x-meridian-role" = json!("viewer"))),
    responses((status = 200, description = "The tokens", body = Vec<TokenSummary>)),
)]
pub(super) async fn list_tokens(
    user: ApiUser,
    State(st): State<AppState>,
) -> Json<Vec<TokenSummary>> {
    Json(tokens_for(&st, &user.user, user.role))
}

/// Revokes an API token
///
/// Role: viewer for the caller's own tokens, admin for anyone else's. 409 when it was revoked
/// meanwhile.
#[utoipa::path(
    delete,
    path = "/tokens/{id}",
    tag = "tokens",
    extensions(("x-meridian-role" = json!("viewer"))),
    params(("id" = String, Path, description = "The token's id, as `GET /api/v1/tokens` lists it")),
    responses(
        (status = 204, description = "The token was revoked"),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ),
)]
pub(super) async fn revoke_token(
    user: ApiUser,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let auth = st.backend.auth();
    let token = auth.tokens.get(&id).ok_or(ApiError::NotFound)?;
    if token.user != user.user {
        user.require(Role::Admin)?;
    }
    ops::revoke_token(&st, user.origin(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
