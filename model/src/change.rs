//! Changes to the replicated state: whole named objects upserted or deleted, the whole document
//! replaced, users and tokens. One type for the API, the CLI and the Raft log.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A change to the replicated state, as the console, the API and the CLI ask for it and as the
/// Raft log carries it.
#[derive(Clone, Serialize, Deserialize)]
pub enum Change {
    ReplaceConfig {
        expected_revision: Option<u64>,
        spec: crate::ConfigSpec,
    },
    Upsert {
        expected_revision: Option<u64>,
        object: crate::Object,
    },
    Delete {
        expected_revision: Option<u64>,
        kind: crate::ObjectKind,
        name: String,
    },
    /// `password_hash` is a PHC string (argon2); it is never logged.
    SetUser {
        name: String,
        password_hash: String,
    },
    /// `id` is the hex sha256 of the token secret.
    AddToken {
        id: String,
        name: String,
        user: String,
    },
    RevokeToken {
        id: String,
    },
}

// === impl Change ===

// Hand-written so that password hashes never reach a log line through `{:?}`.
impl fmt::Debug for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::ReplaceConfig {
                expected_revision,
                spec,
            } => f
                .debug_struct("ReplaceConfig")
                .field("expected_revision", expected_revision)
                .field("spec", spec)
                .finish(),
            Change::Upsert {
                expected_revision,
                object,
            } => f
                .debug_struct("Upsert")
                .field("expected_revision", expected_revision)
                .field("object", object)
                .finish(),
            Change::Delete {
                expected_revision,
                kind,
                name,
            } => f
                .debug_struct("Delete")
                .field("expected_revision", expected_revision)
                .field("kind", kind)
                .field("name", name)
                .finish(),
            Change::SetUser { name, .. } => f
                .debug_struct("SetUser")
                .field("name", name)
                .field("password_hash", &"<redacted>")
                .finish(),
            Change::AddToken { id, name, user } => f
                .debug_struct("AddToken")
                .field("id", id)
                .field("name", name)
                .field("user", user)
                .finish(),
            Change::RevokeToken { id } => f.debug_struct("RevokeToken").field("id", id).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_password_hashes() {
        let c = Change::SetUser {
            name: "admin".into(),
            password_hash: "$argon2id$v=19$secret".into(),
        };
        let text = format!("{c:?}");
        assert!(text.contains("admin") && !text.contains("argon2"), "{text}");
    }
}
