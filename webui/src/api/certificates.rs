//! The credential store through the API: certificates with their keys imported, generated on
//! the appliance (a CSR to sign), rotated, revoked and deleted. Private keys go in, sealed, and
//! never come out: no answer carries one.

use model::records::{CertificateInfo, CertificateRecord, Revocation};

use super::*;

/// A certificate as the API shows it: never its key.
#[derive(Serialize, ToSchema)]
pub struct CertificateView {
    pub name: String,
    /// What the certificate says; null for a generated key waiting for its certificate.
    pub info: Option<CertificateInfo>,
    /// The CSR of a key generated here, until its signed certificate is attached.
    pub csr_pem: Option<String>,
    pub revoked: Option<Revocation>,
    /// The listeners that serve it.
    pub used_by: Vec<String>,
    /// Seconds until it expires (negative once expired).
    pub expires_in_seconds: Option<i64>,
    pub created_unix_ms: u64,
    pub updated_unix_ms: u64,
    /// OCSP stapling on the node that answers; null without a response file.
    pub ocsp: Option<crate::OcspView>,
}

/// What every certificate's view needs, gathered once per answer: where each is used, this
/// node's OCSP stapling, the time.
pub struct Views {
    users: std::collections::BTreeMap<String, Vec<String>>,
    ocsp: std::collections::BTreeMap<String, crate::OcspView>,
    now: i64,
}

impl Views {
    pub fn new(st: &AppState) -> Views {
        Views {
            users: ops::certificate_users(&st.backend.config().value.spec),
            ocsp: st.backend.ocsp(),
            now: i64::try_from(model::unix_ms() / 1000).unwrap_or(i64::MAX),
        }
    }

    pub fn view(&self, r: &CertificateRecord) -> CertificateView {
        CertificateView {
            name: r.name.clone(),
            info: r.info.clone(),
            csr_pem: r.csr_pem.clone(),
            revoked: r.revoked.clone(),
            used_by: self.users.get(&r.name).cloned().unwrap_or_default(),
            expires_in_seconds: r.info.as_ref().map(|i| i.not_after_unix - self.now),
            created_unix_ms: r.created_unix_ms,
            updated_unix_ms: r.updated_unix_ms,
            ocsp: self.ocsp.get(&r.name).cloned(),
        }
    }
}

/// The certificates in the credential store
///
/// Role: viewer. Private keys are never shown.
#[utoipa::path(
    get,
    path = "/certificates",
    tag = "certificates",
    extensions(("x-meridian-role" = json!("viewer"))),
    responses((status = 200, description = "Every certificate, by name", body = Vec<CertificateView>)),
)]
pub(super) async fn list_certificates(
    _: ApiUser,
    State(st): State<AppState>,
) -> Json<Vec<CertificateView>> {
    let certs = st.backend.certificates();
    let views = Views::new(&st);
    Json(certs.values().map(|r| views.view(r)).collect())
}

/// One certificate
///
/// Role: viewer.
#[utoipa::path(
    get,
    path = "/certificates/{name}",
    tag = "certificates",
    extensions(("x-meridian-role" = json!("viewer"))),
    params(("name" = String, Path, description = "The certificate's name")),
    responses(
        (status = 200, description = "The certificate", body = CertificateView),
        (status = 404, response = NotFound),
    ),
)]
pub(super) async fn get_certificate(
    _: ApiUser,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<CertificateView>, ApiError> {
    let certs = st.backend.certificates();
    let r = certs.get(&name).ok_or(ApiError::NotFound)?;
    Ok(Json(Views::new(&st).view(r)))
}

/// A certificate and its private key to import.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCertificate {
    pub name: String,
    /// PEM: the certificate, then its intermediates.
    pub cert_pem: String,
    /// PEM: the private key (PKCS#8, SEC1 or PKCS#1). Sealed at once; never shown again.
    pub key_pem: String,
    /// PEM: the CA(s) the chain must lead to.
    #[serde(default)]
    pub ca_pem: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CertificateWritten {
    pub name: String,
}

/// Imports a certificate with its key
///
/// Role: operator. 422 names each problem: a PEM that does not parse, a key that does not match
/// the certificate, an unordered or incomplete chain, an expired certificate, a weak key. 409
/// when the name is taken (replace it with PUT).
#[utoipa::path(
    post,
    path = "/certificates",
    tag = "certificates",
    extensions(("x-meridian-role" = json!("operator"))),
    request_body(content = NewCertificate, content_type = "application/json"),
    responses(
        (status = 201, description = "Imported", body = CertificateWritten),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 422, response = Invalid),
    ),
)]
pub(super) async fn import_certificate(
    user: ApiUser,
    State(st): State<AppState>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    user.require(Role::Operator)?;
    let req: NewCertificate = json_body(&body(b)?)?;
    if st.backend.certificates().contains_key(&req.name) {
        return Err(ApiError::Change(crate::ChangeError::not_allowed(format!(
            "a certificate named {:?} exists; PUT /api/v1/certificates/{} replaces it",
            req.name, req.name
        ))));
    }
    ops::put_certificate(
        &st,
        user.origin(),
        &req.name,
        &req.cert_pem,
        Some(&req.key_pem),
        req.ca_pem.as_deref(),
    )
    .await?;
    st.metrics.change("certificates");
    Ok((
        StatusCode::CREATED,
        Json(CertificateWritten { name: req.name }),
    )
        .into_response())
}

/// A new certificate for an existing name: with a key to rotate, or without one to attach the
/// signed certificate of a key generated here.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateUpdate {
    pub cert_pem: String,
    #[serde(default)]
    pub key_pem: Option<String>,
    #[serde(default)]
    pub ca_pem: Option<String>,
}

/// Replaces (rotates) a certificate, or attaches the signed certificate of a generated key
///
/// Role: operator. Listeners that serve it use the new certificate for new handshakes;
/// connections already established keep theirs.
#[utoipa::path(
    put,
    path = "/certificates/{name}",
    tag = "certificates",
    extensions(("x-meridian-role" = json!("operator"))),
    params(
        ("name" = String, Path, description = "The certificate's name"),
        ("If-Match" = String, Header, description = IF_MATCH),
    ),
    request_body(content = CertificateUpdate, content_type = "application/json"),
    responses(
        (status = 200, description = "Replaced", body = CertificateWritten),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 422, response = Invalid),
        (status = 428, response = PreconditionRequired),
    ),
)]
pub(super) async fn put_certificate(
    user: ApiUser,
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Json<CertificateWritten>, ApiError> {
    user.require(Role::Operator)?;
    check_precondition(&st, &headers)?;
    let req: CertificateUpdate = json_body(&body(b)?)?;
    if !st.backend.certificates().contains_key(&name) {
        return Err(ApiError::NotFound);
    }
    ops::put_certificate(
        &st,
        user.origin(),
        &name,
        &req.cert_pem,
        req.key_pem.as_deref(),
        req.ca_pem.as_deref(),
    )
    .await?;
    st.metrics.change("certificates");
    Ok(Json(CertificateWritten { name }))
}

/// `If-Match` on a credential-store write: required like every PUT and DELETE, and checked
/// against the config revision (the listeners that use certificates live there).
fn check_precondition(st: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    if let Some(expected) = if_match(headers)?.expected() {
        let current = st.backend.config().revision;
        if expected != current {
            return Err(ApiError::Change(crate::ChangeError::Rejected(
                model::Refusal::StaleRevision { expected, current },
            )));
        }
    }
    Ok(())
}

/// Deletes a certificate and its key
///
/// Role: operator. 409 while a listener serves it.
#[utoipa::path(
    delete,
    path = "/certificates/{name}",
    tag = "certificates",
    extensions(("x-meridian-role" = json!("operator"))),
    params(
        ("name" = String, Path, description = "The certificate's name"),
        ("If-Match" = String, Header, description = IF_MATCH),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 428, response = PreconditionRequired),
    ),
)]
pub(super) async fn delete_certificate(
    user: ApiUser,
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    user.require(Role::Operator)?;
    check_precondition(&st, &headers)?;
    if !st.backend.certificates().contains_key(&name) {
        return Err(ApiError::NotFound);
    }
    ops::delete_certificate(&st, user.origin(), &name).await?;
    st.metrics.change("certificates");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Revoke {
    pub reason: String,
}

/// Revokes a certificate
///
/// Role: operator. The certificate becomes unusable; 409 while a listener serves it.
#[utoipa::path(
    post,
    path = "/certificates/{name}/revoke",
    tag = "certificates",
    extensions(("x-meridian-role" = json!("operator"))),
    params(("name" = String, Path, description = "The certificate's name")),
    request_body(content = Revoke, content_type = "application/json"),
    responses(
        (status = 200, description = "Revoked", body = CertificateWritten),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Invalid),
    ),
)]
pub(super) async fn revoke_certificate(
    user: ApiUser,
    State(st): State<AppState>,
    Path(name): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Json<CertificateWritten>, ApiError> {
    user.require(Role::Operator)?;
    let req: Revoke = json_body(&body(b)?)?;
    if !st.backend.certificates().contains_key(&name) {
        return Err(ApiError::NotFound);
    }
    ops::revoke_certificate(&st, user.origin(), &name, &req.reason).await?;
    st.metrics.change("certificates");
    Ok(Json(CertificateWritten { name }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// The subject's common name.
    pub common_name: String,
    /// DNS names the certificate will be for.
    #[serde(default)]
    pub sans: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Csr {
    pub name: String,
    pub csr_pem: String,
}

/// Generates a key on the appliance and returns its CSR
///
/// Role: operator. The private key never leaves the appliance: have the CSR signed, then PUT
/// the certificate (without a key) to this name.
#[utoipa::path(
    post,
    path = "/certificates/{name}/csr",
    tag = "certificates",
    extensions(("x-meridian-role" = json!("operator"))),
    params(("name" = String, Path, description = "The name of the new certificate")),
    request_body(content = NewKey, content_type = "application/json"),
    responses(
        (status = 201, description = "The CSR to sign", body = Csr),
        (status = 403, response = Forbidden),
        (status = 422, response = Invalid),
    ),
)]
pub(super) async fn generate_certificate(
    user: ApiUser,
    State(st): State<AppState>,
    Path(name): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    user.require(Role::Operator)?;
    let req: NewKey = json_body(&body(b)?)?;
    let csr_pem =
        ops::generate_certificate(&st, user.origin(), &name, &req.common_name, &req.sans).await?;
    st.metrics.change("certificates");
    Ok((StatusCode::CREATED, Json(Csr { name, csr_pem })).into_response())
}
