//! Authentication: argon2 password hashes, API bearer tokens (stored as SHA-256), console
//! sessions with a CSRF token each, and the extractors that guard every route but login.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::AppState;
use model::{Interface, Origin, Role};
use std::net::IpAddr;

mod gate;

pub use gate::{Denied, PasswordGate};

/// Name of the console session cookie.
pub const SESSION_COOKIE: &str = "meridian_session";
/// A console session ends this long after login, however active.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// A console session ends after this long without a request.
pub const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
/// Name of the cookie that carries the login form's CSRF token before there is a session.
pub const LOGIN_COOKIE: &str = "meridian_login";
/// Prefix that makes Meridian tokens easy to spot in secret scanners.
pub const TOKEN_PREFIX: &str = "mrd_";

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Hashes a password into an argon2id PHC string.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Checks a password against a PHC string; a malformed hash never matches.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// 32 random bytes from the OS, hex encoded.
pub fn random_hex() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// A random password of 20 characters from an unambiguous alphabet.
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut b = [0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter()
        .map(|x| ALPHABET[usize::from(*x) % ALPHABET.len()] as char)
        .collect()
}

/// A new API token secret.
pub fn new_token() -> String {
    format!("{TOKEN_PREFIX}{}", random_hex())
}

/// What is stored for a token: hex SHA-256 of the secret.
pub fn token_id(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A logged-in console user.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    pub csrf: String,
    expires: Instant,
    last_seen: Instant,
    /// The result of the last action, shown once on the next page.
    flash: Option<String>,
}

/// Console sessions of this node, keyed by the SHA-256 of the cookie value.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Starts a session; returns the cookie value.
    pub fn create(&self, user: &str, now: Instant) -> String {
        let cookie = random_hex();
        let session = Session {
            user: user.to_string(),
            csrf: random_hex(),
            expires: now + SESSION_TTL,
            last_seen: now,
            flash: None,
        };
        let mut map = self.lock();
        map.retain(|_, s| s.live(now));
        map.insert(token_id(&cookie), session);
        cookie
    }

    /// The live session of `cookie`, marked as used now.
    pub fn get(&self, cookie: &str, now: Instant) -> Option<Session> {
        let mut map = self.lock();
        let id = token_id(cookie);
        let s = map.get_mut(&id)?;
        if !s.live(now) {
            map.remove(&id);
            return None;
        }
        s.last_seen = now;
        Some(s.clone())
    }

    pub fn remove(&self, cookie: &str) {
        self.lock().remove(&token_id(cookie));
    }

    /// Leaves a message for the next page of this session.
    pub fn set_flash(&self, cookie: &str, text: String) {
        if let Some(s) = self.lock().get_mut(&token_id(cookie)) {
            s.flash = Some(text);
        }
    }

    /// The message left for this page, once.
    pub fn take_flash(&self, cookie: &str) -> Option<String> {
        self.lock()
            .get_mut(&token_id(cookie))
            .and_then(|s| s.flash.take())
    }

    /// Ends every session of `user` (disabled, deleted, or a new password).
    pub fn remove_user(&self, user: &str) {
        self.lock().retain(|_, s| s.user != user);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        match self.map.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        }
    }
}

impl Session {
    fn live(&self, now: Instant) -> bool {
        self.expires > now && now.saturating_duration_since(self.last_seen) < SESSION_IDLE
    }
}

/// The value of one cookie in the request, if present.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A caller of the REST API or /metrics: a bearer token, or HTTP Basic with a user's password.
#[derive(Debug, Clone)]
pub struct ApiUser {
    pub user: String,
    /// The user's role, capped by the token's.
    pub role: Role,
    /// `api`, or `cli` when the caller says it is the Meridian CLI.
    pub interface: Interface,
    pub client: IpAddr,
}

impl ApiUser {
    /// Refuses the call (403) unless the caller has at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::Forbidden(role))
        }
    }

    pub fn origin(&self) -> Origin {
        Origin::new(&self.user, self.interface, Some(self.client.to_string()))
    }
}

/// When a token was last used, on this node (not replicated: a write per API call would be too
/// many).
#[derive(Debug, Default)]
pub struct TokenUsage(Mutex<HashMap<String, u64>>);

impl TokenUsage {
    pub fn touch(&self, id: &str, now_ms: u64) {
        let mut map = match self.0.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        map.insert(id.to_string(), now_ms);
    }

    pub fn last_used(&self, id: &str) -> Option<u64> {
        let map = match self.0.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        map.get(id).copied()
    }
}

impl FromRequestParts<AppState> for ApiUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthorized)?;
        let (scheme, value) = header.split_once(' ').ok_or(ApiError::Unauthorized)?;
        let auth = state.backend.auth();
        let client = client_ip(parts);
        let interface = match parts.headers.get("x-meridian-client") {
            Some(v) if v.as_bytes() == b"cli" => Interface::Cli,
            _ => Interface::Api,
        };
        if scheme.eq_ignore_ascii_case("bearer") {
            let id = token_id(value.trim());
            let token = auth.tokens.get(&id).ok_or(ApiError::Unauthorized)?;
            let now = model::unix_ms();
            if token.expires_unix_ms.is_some_and(|t| t <= now) {
                return Err(ApiError::Unauthorized);
            }
            let user = auth
                .users
                .get(&token.user)
                .filter(|u| !u.disabled)
                .ok_or(ApiError::Unauthorized)?;
            state.token_usage.touch(&id, now);
            return Ok(ApiUser {
                user: token.user.clone(),
                role: token.role.min(user.role),
                interface,
                client,
            });
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(value.trim())
                .map_err(|_| ApiError::Unauthorized)?;
            let text = String::from_utf8(decoded).map_err(|_| ApiError::Unauthorized)?;
            let (user, password) = text.split_once(':').ok_or(ApiError::Unauthorized)?;
            let record = auth.users.get(user).filter(|u| !u.disabled);
            let phc = record.map(|u| u.password_hash.clone());
            let role = record.map(|u| u.role).unwrap_or(Role::Viewer);
            return match state
                .passwords
                .check(client, phc, password.to_string(), Instant::now())
                .await
            {
                Ok(()) => Ok(ApiUser {
                    user: user.to_string(),
                    role,
                    interface,
                    client,
                }),
                Err(Denied::Wrong) => {
                    // Failed API passwords are audited like failed console logins; the gate
                    // bounds how many one address can cause.
                    crate::ops::audit(
                        state,
                        Origin::new(user, interface, Some(client.to_string())),
                        "login",
                        "wrong user name or password (HTTP Basic)".into(),
                        false,
                    );
                    Err(ApiError::Unauthorized)
                }
                Err(Denied::Throttled(wait)) => Err(ApiError::Throttled(wait)),
                Err(Denied::Busy) => Err(ApiError::Busy),
            };
        }
        Err(ApiError::Unauthorized)
    }
}

/// The client's address, as the listener saw it (unspecified when unknown, as in router tests).
pub fn client_ip(parts: &Parts) -> std::net::IpAddr {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// A console user with a live session cookie, an enabled account, and the role it has now.
#[derive(Debug, Clone)]
pub struct ConsoleUser {
    pub cookie: String,
    pub session: Session,
    pub role: Role,
    pub client: IpAddr,
}

impl ConsoleUser {
    pub fn origin(&self) -> Origin {
        Origin::new(
            &self.session.user,
            Interface::Console,
            Some(self.client.to_string()),
        )
    }
}

impl FromRequestParts<AppState> for ConsoleUser {
    type Rejection = crate::console::LoginRequired;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let login = crate::console::LoginRequired {
            secure: state.secure_cookies,
            token: cookie(&parts.headers, LOGIN_COOKIE).map(str::to_string),
        };
        let cookie = cookie(&parts.headers, SESSION_COOKIE).ok_or(login.clone())?;
        let session = state
            .sessions
            .get(cookie, Instant::now())
            .ok_or(login.clone())?;
        // The account is read on every request, so a disabled user or a new role takes effect
        // at once.
        let auth = state.backend.auth();
        let Some(account) = auth.users.get(&session.user).filter(|u| !u.disabled) else {
            state.sessions.remove(cookie);
            return Err(login);
        };
        Ok(ConsoleUser {
            cookie: cookie.to_string(),
            role: account.role,
            client: client_ip(parts),
            session,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hash_verifies_only_the_right_password() {
        let h = hash_password("correct horse").expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn sessions_expire_and_can_be_removed() {
        let s = Sessions::default();
        let now = Instant::now();
        let c = s.create("admin", now);
        assert_eq!(s.get(&c, now).map(|x| x.user), Some("admin".into()));
        // Kept alive by use every 20 minutes, the session still ends after its absolute TTL.
        let mut t = now;
        while t + Duration::from_secs(1200) < now + SESSION_TTL {
            t += Duration::from_secs(1200);
            assert!(s.get(&c, t).is_some());
        }
        assert!(s
            .get(&c, now + SESSION_TTL + Duration::from_secs(1))
            .is_none());
        // Idle for longer than SESSION_IDLE: gone.
        let idle = s.create("admin", now);
        assert!(s
            .get(&idle, now + SESSION_IDLE + Duration::from_secs(1))
            .is_none());
        assert!(
            s.get(&idle, now).is_none(),
            "an idle-expired session is removed"
        );
        assert!(s.get("forged", now).is_none());
        s.remove(&c);
        assert!(s.get(&c, now).is_none());
    }

    #[test]
    fn cookie_parsing_finds_the_named_cookie() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; meridian_session=abc; b=2".parse().expect("hv"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn tokens_are_prefixed_and_stored_hashed() {
        let t = new_token();
        assert!(t.starts_with(TOKEN_PREFIX));
        assert_eq!(token_id(&t).len(), 64);
        assert_ne!(token_id(&t), t);
        assert_eq!(random_password().len(), 20);
    }
}
