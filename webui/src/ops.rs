//! The changes the console and the API both make, in one place: each reads the current state,
//! checks what it can check locally (so a 422 lists every error), and proposes one Raft change
//! on behalf of the caller.

use std::collections::BTreeMap;

use model::{AdminState, Change, Object, ObjectKind, Origin, Role};

use crate::{AppState, ChangeError};

/// Users' names: what the console and the API accept.
pub fn valid_user_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
}

pub const MIN_PASSWORD: usize = 12;

/// Validates a whole config as the state machine will (`model::document::validate_stored`:
/// the spec itself, by this release's newest rules, and the certificates and TSIG keys it names
/// against the stores), plus what only this node can promise. Every error is listed.
pub fn validate(st: &AppState, spec: &model::ConfigSpec) -> Result<model::Config, ChangeError> {
    let certs = st.backend.certificates();
    let tsig_keys = st.backend.tsig_keys();
    let stored = model::document::validate_stored(spec, model::SCHEMA_SUPPORTED, &certs, |k| {
        tsig_keys.contains_key(k)
    });
    // `ktls = "on"` is a promise this node must keep: refused where the kernel cannot.
    let mut local = Vec::new();
    if st.backend.kernel_tls().is_none() {
        for (i, l) in spec.listeners.iter().enumerate() {
            if l.tls
                .as_ref()
                .is_some_and(|t| t.ktls == model::KtlsMode::On)
            {
                local.push(model::FieldError {
                    path: format!("listeners[{i}].tls.ktls"),
                    message: format!(
                        "listener {:?} asks for kernel TLS, but this node's kernel has none \
                         (no CONFIG_TLS or tls module); use \"auto\" or \"off\"",
                        l.name
                    ),
                });
            }
        }
    }
    match stored {
        Ok(config) if local.is_empty() => Ok(config),
        Ok(_) => Err(ChangeError::invalid(model::ValidationErrors {
            errors: local,
        })),
        Err(mut e) => {
            e.errors.extend(local);
            Err(ChangeError::invalid(e))
        }
    }
}

/// Proposes a config change (replace, upsert, delete, rollback) once it has been applied here
/// with the state machine's own function and validated: a refusal (every validation error, a
/// stale precondition, an unknown object) comes back at once. A change that would leave the
/// config as it is makes no new revision: the answer is the current one.
pub async fn propose_config(
    st: &AppState,
    origin: Origin,
    change: Change,
) -> Result<u64, ChangeError> {
    let current = st.backend.config();
    let history = st.backend.history();
    let Some(spec) = model::document::next_spec(
        &current.value.spec,
        current.revision,
        history.iter(),
        &change,
    )?
    else {
        return Err(ChangeError::not_allowed(format!(
            "{} is not a change to the config",
            change.summary()
        )));
    };
    validate(st, &spec)?;
    if spec == current.value.spec {
        return Ok(current.revision);
    }
    st.backend.propose(change, origin).await
}

/// Saves `object` (create or replace), conditional on `expected` when given.
pub async fn save(
    st: &AppState,
    origin: Origin,
    expected: Option<u64>,
    object: Object,
) -> Result<u64, ChangeError> {
    let change = Change::Upsert {
        expected_revision: expected,
        object,
    };
    propose_config(st, origin, change).await
}

/// Replaces (or adds) zone `name` with a zone file, validated like any other change; the
/// file's problems are filed under `zone_file`.
pub async fn import_zone(
    st: &AppState,
    origin: Origin,
    expected: Option<u64>,
    name: &str,
    text: &str,
) -> Result<u64, ChangeError> {
    let zone = st.backend.import_zone(name, text).map_err(|problems| {
        ChangeError::invalid(model::ValidationErrors {
            errors: problems
                .into_iter()
                .map(|message| model::FieldError {
                    path: "zone_file".into(),
                    message,
                })
                .collect(),
        })
    })?;
    // An existing zone keeps the name as the operator wrote it, and its secondaries (a zone
    // file does not carry them); a new one drops the dot.
    let existing = st
        .backend
        .config()
        .value
        .spec
        .zones
        .iter()
        .find(|z| model::validate::fqdn(&z.name) == zone.name)
        .map(|z| (z.name.clone(), z.secondaries.clone()));
    let zone = match existing {
        Some((name, secondaries)) => model::ZoneSpec {
            name,
            secondaries,
            ..zone
        },
        None => model::ZoneSpec {
            name: zone.name.trim_end_matches('.').to_string(),
            ..zone
        },
    };
    save(st, origin, expected, Object::Zones(zone)).await
}

pub async fn delete(
    st: &AppState,
    origin: Origin,
    expected: Option<u64>,
    kind: ObjectKind,
    name: &str,
) -> Result<u64, ChangeError> {
    let change = Change::Delete {
        expected_revision: expected,
        kind,
        name: name.to_string(),
    };
    propose_config(st, origin, change).await
}

/// Sets the admin state of one pool member. Conditional on the revision it read, so a
/// concurrent edit of the pool is never overwritten.
pub async fn member_state(
    st: &AppState,
    origin: Origin,
    pool: &str,
    address: &str,
    state: AdminState,
) -> Result<u64, ChangeError> {
    let base = st.backend.config();
    let Some(Object::Pools(mut p)) = base.value.spec.get(ObjectKind::Pools, pool) else {
        return Err(ChangeError::Rejected(model::Refusal::NotFound {
            kind: ObjectKind::Pools,
            name: pool.to_string(),
        }));
    };
    let Some(m) = p.members.iter_mut().find(|m| m.address == address) else {
        return Err(ChangeError::not_allowed(format!(
            "{address} is not a member of pool {pool}"
        )));
    };
    m.state = state;
    save(st, origin, Some(base.revision), Object::Pools(p)).await
}

/// Sets the admin state of one GSLB site; `record` with or without its trailing dot.
pub async fn site_state(
    st: &AppState,
    origin: Origin,
    record: &str,
    site: &str,
    state: AdminState,
) -> Result<u64, ChangeError> {
    let base = st.backend.config();
    let want = model::validate::fqdn(record);
    let Some(mut g) = base
        .value
        .spec
        .gslb_records
        .iter()
        .find(|g| model::validate::fqdn(&g.name) == want)
        .cloned()
    else {
        return Err(ChangeError::Rejected(model::Refusal::NotFound {
            kind: ObjectKind::GslbRecords,
            name: record.to_string(),
        }));
    };
    let Some(s) = g.sites.iter_mut().find(|s| s.name == site) else {
        return Err(ChangeError::not_allowed(format!(
            "{site} is not a site of {record}"
        )));
    };
    s.state = state;
    save(st, origin, Some(base.revision), Object::GslbRecords(g)).await
}

pub async fn rollback(
    st: &AppState,
    origin: Origin,
    expected: Option<u64>,
    to_revision: u64,
) -> Result<u64, ChangeError> {
    let change = Change::Rollback {
        expected_revision: expected,
        to_revision,
    };
    propose_config(st, origin, change).await
}

/// Hashes a password off the async threads (argon2 takes tens of milliseconds).
pub async fn hash(password: String) -> Result<String, ChangeError> {
    tokio::task::spawn_blocking(move || crate::auth::hash_password(&password))
        .await
        .map_err(|e| ChangeError::Unavailable(e.to_string()))?
        .map_err(|e| ChangeError::Unavailable(e.to_string()))
}

fn password_errors(field: &str, password: &str, errors: &mut model::ValidationErrors) {
    if password.chars().count() < MIN_PASSWORD {
        errors.errors.push(model::FieldError {
            path: field.to_string(),
            message: format!("at least {MIN_PASSWORD} characters"),
        });
    }
}

pub async fn create_user(
    st: &AppState,
    origin: Origin,
    name: &str,
    password: &str,
    role: Role,
) -> Result<(), ChangeError> {
    let mut errors = model::ValidationErrors { errors: Vec::new() };
    if !valid_user_name(name) {
        errors.errors.push(model::FieldError {
            path: "name".into(),
            message: "1-64 letters, digits, - _ . @".into(),
        });
    } else if st.backend.auth().users.contains_key(name) {
        errors.errors.push(model::FieldError {
            path: "name".into(),
            message: format!("a user named {name:?} exists"),
        });
    }
    password_errors("password", password, &mut errors);
    if !errors.errors.is_empty() {
        return Err(ChangeError::invalid(errors));
    }
    let password_hash = hash(password.to_string()).await?;
    st.backend
        .propose(
            Change::SetUser {
                name: name.to_string(),
                password_hash,
                role,
                disabled: false,
            },
            origin,
        )
        .await
        .map(|_| ())
}

/// Changes a user's password, role or enabled state. A new password or a disabled account ends
/// the user's console sessions.
pub async fn update_user(
    st: &AppState,
    origin: Origin,
    name: &str,
    password: Option<&str>,
    role: Option<Role>,
    disabled: Option<bool>,
) -> Result<(), ChangeError> {
    if !st.backend.auth().users.contains_key(name) {
        return Err(ChangeError::not_allowed(format!("no user named {name:?}")));
    }
    let password_hash = match password {
        Some(p) => {
            let mut errors = model::ValidationErrors { errors: Vec::new() };
            password_errors("password", p, &mut errors);
            if !errors.errors.is_empty() {
                return Err(ChangeError::invalid(errors));
            }
            Some(hash(p.to_string()).await?)
        }
        None => None,
    };
    let ends_sessions = password_hash.is_some() || disabled == Some(true);
    st.backend
        .propose(
            Change::UpdateUser {
                name: name.to_string(),
                password_hash,
                role,
                disabled,
            },
            origin,
        )
        .await?;
    if ends_sessions {
        st.sessions.remove_user(name);
    }
    Ok(())
}

pub async fn delete_user(st: &AppState, origin: Origin, name: &str) -> Result<(), ChangeError> {
    st.backend
        .propose(
            Change::DeleteUser {
                name: name.to_string(),
            },
            origin,
        )
        .await?;
    st.sessions.remove_user(name);
    Ok(())
}

/// A new API token for `user`; returns `(id, secret)`. The secret is shown once and never
/// stored.
pub async fn create_token(
    st: &AppState,
    origin: Origin,
    user: &str,
    name: &str,
    role: Role,
    expires_days: Option<u32>,
) -> Result<(String, String), ChangeError> {
    let mut errors = model::ValidationErrors { errors: Vec::new() };
    if name.trim().is_empty() || name.len() > 64 {
        errors.errors.push(model::FieldError {
            path: "name".into(),
            message: "token name must be 1-64 characters".into(),
        });
    }
    if expires_days.is_some_and(|d| d == 0 || d > 3650) {
        errors.errors.push(model::FieldError {
            path: "expires_days".into(),
            message: "between 1 and 3650 days, or empty for no expiry".into(),
        });
    }
    if !errors.errors.is_empty() {
        return Err(ChangeError::invalid(errors));
    }
    let token = crate::auth::new_token();
    let id = crate::auth::token_id(&token);
    let expires_unix_ms =
        expires_days.map(|d| origin.at_unix_ms.saturating_add(u64::from(d) * 86_400_000));
    st.backend
        .propose(
            Change::AddToken {
                id: id.clone(),
                name: name.trim().to_string(),
                user: user.to_string(),
                role,
                expires_unix_ms,
            },
            origin,
        )
        .await?;
    Ok((id, token))
}

pub async fn revoke_token(st: &AppState, origin: Origin, id: &str) -> Result<(), ChangeError> {
    st.backend
        .propose(Change::RevokeToken { id: id.to_string() }, origin)
        .await
        .map(|_| ())
}

/// Records an event (a login, say) in the replicated audit log, in the background: a cluster
/// that cannot commit must not keep anyone from signing in, so a failure is only logged.
pub fn audit(st: &AppState, origin: Origin, action: &str, detail: String, success: bool) {
    let change = Change::Audit {
        action: action.to_string(),
        detail,
        success,
    };
    let backend = st.backend.clone();
    let action = action.to_string();
    tokio::spawn(async move {
        if let Err(e) = backend.propose(change, origin).await {
            tracing::warn!(error = %e, action, "audit event not recorded");
        }
    });
}

/// Where each certificate is used: certificate name -> listener names.
pub fn certificate_users(spec: &model::ConfigSpec) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in &spec.listeners {
        if let Some(t) = &l.tls {
            for c in &t.certificates {
                out.entry(c.clone()).or_default().push(l.name.clone());
            }
        }
    }
    for p in &spec.pools {
        if let Some(c) = p.tls.as_ref().and_then(|t| t.client_certificate.as_ref()) {
            out.entry(c.clone())
                .or_default()
                .push(format!("pool {} (client certificate)", p.name));
        }
    }
    out
}

fn now() -> (i64, u64) {
    let ms = model::unix_ms();
    (i64::try_from(ms / 1000).unwrap_or(i64::MAX), ms)
}

/// Imports a certificate with its key, or replaces (rotates) one of the same name: listeners
/// that name it serve the new one on their next handshakes.
pub async fn put_certificate(
    st: &AppState,
    origin: Origin,
    name: &str,
    cert_pem: &str,
    key_pem: Option<&str>,
    ca_pem: Option<&str>,
) -> Result<(), ChangeError> {
    let (now_unix, now_ms) = now();
    let key = st.backend.cluster_key();
    let existing = st.backend.certificates().get(name).cloned();
    let record = match (key_pem, existing) {
        (Some(k), _) => credentials::import(name, cert_pem, k, ca_pem, now_unix, now_ms, &key),
        // No key: the signed certificate for a key generated here.
        (None, Some(record)) => {
            credentials::attach(&record, cert_pem, ca_pem, now_unix, now_ms, &key)
        }
        (None, None) => Err(model::ValidationErrors::single(
            "key_pem",
            format!(
                "{name:?} has no key generated here: send the private key with the certificate"
            ),
        )),
    }
    .map_err(ChangeError::invalid)?;
    let mut record = record;
    if let Some(old) = st.backend.certificates().get(name) {
        record.created_unix_ms = old.created_unix_ms;
    }
    st.backend
        .propose(Change::PutCertificate { record }, origin)
        .await
        .map(|_| ())
}

/// Generates a key on this appliance and returns the CSR to get signed; the key never leaves.
pub async fn generate_certificate(
    st: &AppState,
    origin: Origin,
    name: &str,
    common_name: &str,
    sans: &[String],
) -> Result<String, ChangeError> {
    if st.backend.certificates().contains_key(name) {
        return Err(ChangeError::invalid(model::ValidationErrors::single(
            "name",
            format!("a certificate named {name:?} exists"),
        )));
    }
    let (_, now_ms) = now();
    let record = credentials::generate(name, common_name, sans, now_ms, &st.backend.cluster_key())
        .map_err(ChangeError::invalid)?;
    let csr = record.csr_pem.clone().unwrap_or_default();
    st.backend
        .propose(Change::PutCertificate { record }, origin)
        .await?;
    Ok(csr)
}

pub async fn revoke_certificate(
    st: &AppState,
    origin: Origin,
    name: &str,
    reason: &str,
) -> Result<(), ChangeError> {
    if reason.trim().is_empty() {
        return Err(ChangeError::invalid(model::ValidationErrors::single(
            "reason",
            "say why the certificate is revoked",
        )));
    }
    st.backend
        .propose(
            Change::RevokeCertificate {
                name: name.to_string(),
                reason: reason.trim().to_string(),
            },
            origin,
        )
        .await
        .map(|_| ())
}

pub async fn delete_certificate(
    st: &AppState,
    origin: Origin,
    name: &str,
) -> Result<(), ChangeError> {
    st.backend
        .propose(
            Change::DeleteCertificate {
                name: name.to_string(),
            },
            origin,
        )
        .await
        .map(|_| ())
}

/// The zones whose secondaries use each TSIG key, by key name (lowercase FQDN).
pub fn tsig_key_users(spec: &model::ConfigSpec) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for z in &spec.zones {
        for s in &z.secondaries {
            if let Some(key) = model::validate::tsig_key_name(&s.tsig_key) {
                let zones = out.entry(key).or_default();
                if !zones.contains(&z.name) {
                    zones.push(z.name.clone());
                }
            }
        }
    }
    out
}

/// Stores a new TSIG key with the secret the operator gives (base64); refused when the name is
/// taken. Returns the key's name as stored (lowercase FQDN).
pub async fn add_tsig_key(
    st: &AppState,
    origin: Origin,
    name: &str,
    algorithm: &str,
    secret: &str,
) -> Result<String, ChangeError> {
    let parsed = model::records::TsigAlgorithm::parse(algorithm);
    let made = credentials::tsig_key(
        name,
        parsed.unwrap_or_default(),
        Some(secret),
        &st.backend.cluster_key(),
        model::unix_ms(),
    );
    // Every problem at once: the name and secret's, and the algorithm's.
    let mut errors = made
        .as_ref()
        .err()
        .map_or_else(Vec::new, |e| e.errors.clone());
    if parsed.is_none() {
        errors.push(model::FieldError {
            path: "algorithm".into(),
            message: format!(
                "unknown algorithm {algorithm:?}: hmac-sha256, hmac-sha384 or hmac-sha512"
            ),
        });
    }
    let record = match made {
        Ok((record, _)) if errors.is_empty() => record,
        _ => return Err(ChangeError::invalid(model::ValidationErrors { errors })),
    };
    if st.backend.tsig_keys().contains_key(&record.name) {
        return Err(ChangeError::not_allowed(format!(
            "a TSIG key named {:?} exists; delete it first to replace it",
            record.name
        )));
    }
    let stored = record.name.clone();
    st.backend
        .propose(Change::PutTsigKey { record }, origin)
        .await?;
    Ok(stored)
}

pub async fn delete_tsig_key(st: &AppState, origin: Origin, name: &str) -> Result<(), ChangeError> {
    let name = model::validate::tsig_key_name(name).unwrap_or_else(|| name.to_string());
    if !st.backend.tsig_keys().contains_key(&name) {
        return Err(ChangeError::not_allowed(format!(
            "no TSIG key named {name:?}"
        )));
    }
    st.backend
        .propose(Change::DeleteTsigKey { name }, origin)
        .await
        .map(|_| ())
}

/// What a purge did: how many stored responses it removed on this node (the other nodes apply
/// it as it replicates).
pub struct Purged {
    pub here: usize,
}

/// Purges cached responses on every node. A key that matches nothing on this node is refused
/// as not found only after the purge went out, since other nodes may hold it.
pub async fn purge_cache(
    st: &AppState,
    origin: Origin,
    selector: model::records::PurgeSelector,
) -> Result<Purged, ChangeError> {
    let value = selector.value();
    if value.is_empty() || value.len() > 2048 || value.chars().any(char::is_control) {
        return Err(ChangeError::invalid(model::ValidationErrors::single(
            selector.kind(),
            "give 1 to 2048 printable characters",
        )));
    }
    let here = st.backend.cache_matches(&selector);
    st.backend
        .propose(Change::PurgeCache { selector }, origin)
        .await?;
    Ok(Purged { here })
}

/// The longest a join token may live.
pub const JOIN_TOKEN_MAX_SECONDS: u64 = 7 * 86_400;

/// Issues a single-use join token valid `ttl_seconds`; answers its record and its text (shown
/// once: only the secret's hash is kept).
pub async fn issue_join_token(
    st: &AppState,
    origin: Origin,
    ttl_seconds: u64,
) -> Result<(model::records::JoinTokenRecord, zeroize::Zeroizing<String>), ChangeError> {
    if ttl_seconds == 0 || ttl_seconds > JOIN_TOKEN_MAX_SECONDS {
        return Err(ChangeError::invalid(model::ValidationErrors::single(
            "ttl_seconds",
            format!("from 1 to {JOIN_TOKEN_MAX_SECONDS} (a week)"),
        )));
    }
    let Some(pin) = st.backend.cluster_ca_fingerprint() else {
        return Err(ChangeError::not_allowed(
            "this cluster has no CA (it predates cluster TLS, or its first node has not \
             recorded it yet): nodes join it with the shared secret",
        ));
    };
    let (token, text) = credentials::cluster_pki::new_join_token(&pin)
        .map_err(|e| ChangeError::Unavailable(e.to_string()))?;
    let now = model::unix_ms();
    let record = model::records::JoinTokenRecord {
        id: token.id.clone(),
        secret_sha256: credentials::cluster_pki::secret_hash(&token.secret),
        created_unix_ms: now,
        expires_unix_ms: now.saturating_add(ttl_seconds.saturating_mul(1000)),
        created_by: origin.user.clone(),
        used_by_node: None,
        used_unix_ms: None,
    };
    st.backend
        .propose(
            Change::AddJoinToken {
                record: record.clone(),
            },
            origin,
        )
        .await?;
    Ok((record, text))
}
