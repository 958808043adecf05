//! What the replicated state holds besides the config: users and tokens, the revision history
//! and the audit log. Plain data, shared by the state machine and the console.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Users (name -> account) and API tokens (id -> info).
#[derive(Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AuthState {
    pub users: BTreeMap<String, UserRecord>,
    pub tokens: BTreeMap<String, TokenInfo>,
}

/// One console and API user.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "UserRepr")]
pub struct UserRecord {
    /// argon2 PHC string; never logged.
    pub password_hash: String,
    pub role: crate::Role,
    pub disabled: bool,
}

/// Stores written before roles existed kept only the password hash: those users are admins.
#[derive(Deserialize)]
#[serde(untagged)]
enum UserRepr {
    Full {
        password_hash: String,
        #[serde(default)]
        role: crate::Role,
        #[serde(default)]
        disabled: bool,
    },
    HashOnly(String),
}

impl From<UserRepr> for UserRecord {
    fn from(r: UserRepr) -> UserRecord {
        match r {
            UserRepr::Full {
                password_hash,
                role,
                disabled,
            } => UserRecord {
                password_hash,
                role,
                disabled,
            },
            UserRepr::HashOnly(password_hash) => UserRecord {
                password_hash,
                role: crate::Role::Admin,
                disabled: false,
            },
        }
    }
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("password_hash", &"<redacted>")
            .field("role", &self.role)
            .field("disabled", &self.disabled)
            .finish()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TokenInfo {
    pub name: String,
    pub user: String,
    #[serde(default)]
    pub role: crate::Role,
    #[serde(default)]
    pub created_unix_ms: u64,
    #[serde(default)]
    pub expires_unix_ms: Option<u64>,
}

/// One config revision as the history keeps it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RevisionRecord {
    pub revision: u64,
    pub origin: crate::Origin,
    pub summary: String,
    pub spec: Arc<crate::ConfigSpec>,
}

/// One line of the audit log: every command the cluster committed, whether it was applied or
/// refused, and events such as logins.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct AuditEntry {
    /// The Raft log index that carried it: unique and ordered across the cluster.
    pub index: u64,
    pub origin: crate::Origin,
    pub action: String,
    pub success: bool,
    /// Why a refused command was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The config revision a config change produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
}

// === impl AuthState ===

impl fmt::Debug for AuthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthState")
            .field("users", &self.users)
            .field("tokens", &self.tokens)
            .finish()
    }
}

impl AuthState {
    /// Whether some enabled admin other than `except` exists.
    pub fn other_admin(&self, except: &str) -> bool {
        self.users
            .iter()
            .any(|(n, u)| n != except && u.role == crate::Role::Admin && !u.disabled)
    }
}
