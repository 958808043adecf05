//! Changes to the replicated state: whole named objects upserted or deleted, the whole document
//! replaced, users and tokens. One type for the API, the CLI and the Raft log.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
    /// Returns the config to the spec of an earlier revision, as a new revision.
    Rollback {
        expected_revision: Option<u64>,
        to_revision: u64,
    },
    /// Creates or replaces a user. `password_hash` is a PHC string (argon2); it is never logged.
    SetUser {
        name: String,
        password_hash: String,
        #[serde(default)]
        role: Role,
        #[serde(default)]
        disabled: bool,
    },
    /// Changes an existing user; `None` keeps a field as it is.
    UpdateUser {
        name: String,
        password_hash: Option<String>,
        role: Option<Role>,
        disabled: Option<bool>,
    },
    DeleteUser {
        name: String,
    },
    /// `id` is the hex sha256 of the token secret.
    AddToken {
        id: String,
        name: String,
        user: String,
        /// What the token may do; never more than its user may.
        #[serde(default)]
        role: Role,
        /// Unix milliseconds after which the token is refused; `None` never expires.
        #[serde(default)]
        expires_unix_ms: Option<u64>,
    },
    RevokeToken {
        id: String,
    },
    /// Adds or replaces a certificate and its sealed key in the credential store. Replacing is
    /// how a certificate is rotated: listeners that name it use the new one for new handshakes.
    PutCertificate {
        record: crate::records::CertificateRecord,
    },
    /// Makes a certificate unusable, with a reason; refused while a listener uses it.
    RevokeCertificate {
        name: String,
        reason: String,
    },
    /// Removes a certificate and its key; refused while a listener uses it.
    DeleteCertificate {
        name: String,
    },
    /// Adds or replaces a TSIG key (secret sealed).
    PutTsigKey {
        record: crate::records::TsigKeyRecord,
    },
    /// Removes a TSIG key no zone uses.
    DeleteTsigKey {
        name: String,
    },
    /// Adds a session-ticket key (generated and sealed by the leader); the oldest beyond
    /// [`crate::records::TICKET_KEYS_KEPT`] is dropped.
    RotateTicketKey {
        record: crate::records::TicketKeyRecord,
    },
    /// Seeds a cluster from a backup: the config, users and tokens, certificates and TSIG keys
    /// (still sealed) replace this cluster's, as a new revision.
    Restore {
        backup: Box<crate::records::Backup>,
    },
    /// Raises the validation rules in force (`model::SCHEMA_SUPPORTED`): the leader proposes it
    /// once every member runs a release that knows `version`. A node that does not know it
    /// stops rather than apply entries by rules it does not have.
    SetSchema {
        version: u32,
    },
    /// Records the cluster CA, once: refused when the cluster has one.
    SetClusterCa {
        record: crate::records::ClusterCaRecord,
    },
    /// Adds a join token; tokens expired more than a day before `record.created_unix_ms` go.
    AddJoinToken {
        record: crate::records::JoinTokenRecord,
    },
    /// Spends a join token for `node_id`: refused when it is unknown, used, or expired at
    /// `now_unix_ms` (the proposer's clock, so that every node decides alike).
    UseJoinToken {
        id: String,
        node_id: u64,
        now_unix_ms: u64,
    },
    /// Removes cached responses on every node.
    PurgeCache {
        selector: crate::records::PurgeSelector,
    },
    /// Records an event that changes nothing else (a console login, say) in the audit log.
    Audit {
        action: String,
        detail: String,
        success: bool,
    },
}

/// What a user or token may do.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything, changes nothing.
    Viewer,
    /// Changes the configuration, not users.
    Operator,
    /// Everything.
    #[default]
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Operator, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn can_change_config(self) -> bool {
        self >= Role::Operator
    }

    pub fn can_manage_users(self) -> bool {
        self == Role::Admin
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Through which interface a change was asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Interface {
    Console,
    Api,
    Cli,
    /// The node itself (bootstrap, say).
    #[default]
    System,
}

impl Interface {
    pub fn as_str(self) -> &'static str {
        match self {
            Interface::Console => "console",
            Interface::Api => "api",
            Interface::Cli => "cli",
            Interface::System => "system",
        }
    }
}

/// Who asked for a change, from where and when; carried in the Raft log with the change, so the
/// history and the audit log are the same on every node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Origin {
    pub user: String,
    pub interface: Interface,
    /// The client's address as the node saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// Unix milliseconds on the proposing node.
    pub at_unix_ms: u64,
}

impl Origin {
    /// The node acting on its own, now.
    pub fn system() -> Origin {
        Origin {
            user: "system".into(),
            interface: Interface::System,
            client: None,
            at_unix_ms: unix_ms(),
        }
    }

    pub fn new(user: &str, interface: Interface, client: Option<String>) -> Origin {
        Origin {
            user: user.to_string(),
            interface,
            client,
            at_unix_ms: unix_ms(),
        }
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Lets a log line that any client can trigger (a refused transfer, a wrong cluster secret)
/// through at most once every 10 s, so the journal cannot be flooded; metrics count them all.
pub struct LogThrottle(std::sync::atomic::AtomicU64);

impl LogThrottle {
    pub const fn new() -> LogThrottle {
        LogThrottle(std::sync::atomic::AtomicU64::new(0))
    }

    /// True at most once per 10 s.
    pub fn due(&self) -> bool {
        use std::sync::atomic::Ordering;
        let now = unix_ms() / 1000;
        let last = self.0.load(Ordering::Relaxed);
        (last == 0 || now >= last + 10)
            && self
                .0
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

impl Default for LogThrottle {
    fn default() -> LogThrottle {
        LogThrottle::new()
    }
}

/// Why a committed change was refused. Decided from the entry and the state alone, so every
/// node refuses alike. Forwarded writes carry it between nodes of possibly different releases,
/// so the serialized names never change.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Serialize, Deserialize)]
pub enum Refusal {
    #[error("stale revision: expected {expected}, current {current}")]
    StaleRevision { expected: u64, current: u64 },
    #[error("invalid configuration: {0}")]
    Invalid(crate::ValidationErrors),
    #[error("{kind} {name:?} not found")]
    NotFound {
        kind: crate::ObjectKind,
        name: String,
    },
    /// A change the current state does not allow (deleting the last admin, rolling back to a
    /// revision the history no longer keeps, a certificate in use, ...).
    #[serde(rename = "Refused")]
    #[error("{0}")]
    NotAllowed(String),
}

/// Why a change did not take effect, as the console, the API and the CLI get it from the
/// cluster: refused by the rules, or not (or not knowingly) committed.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// Committed but refused by the state machine, or refused before proposing by the same
    /// rules.
    #[error(transparent)]
    Rejected(#[from] Refusal),
    /// This node is not the leader; the leader's cluster address when known.
    #[error("not the leader (leader: {})", leader.as_deref().unwrap_or("unknown"))]
    NotLeader { leader: Option<String> },
    /// Not appended anywhere: no leader, no quorum, shutting down, the leader unreachable.
    /// Safe to retry.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    /// Sent, but not confirmed in time: it may have been committed, or may still be. If it is,
    /// its log entry comes after `after_index` (the audit log lists entries by index); a retry
    /// should read the revision first or carry a precondition (If-Match).
    #[error("outcome unknown: {detail}")]
    Unknown {
        detail: String,
        after_index: Option<u64>,
    },
}

impl ChangeError {
    /// The refusal of an invalid config.
    pub fn invalid(errors: crate::ValidationErrors) -> ChangeError {
        ChangeError::Rejected(Refusal::Invalid(errors))
    }

    /// A refusal by the current state, with the reason.
    pub fn not_allowed(why: impl Into<String>) -> ChangeError {
        ChangeError::Rejected(Refusal::NotAllowed(why.into()))
    }

    /// An outcome nobody can know yet, without a log position.
    pub fn unknown(detail: impl Into<String>) -> ChangeError {
        ChangeError::Unknown {
            detail: detail.into(),
            after_index: None,
        }
    }
}

/// One Raft log entry: a change and where it came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Proposal {
    pub change: Change,
    #[serde(default)]
    pub origin: Origin,
}

impl From<Change> for Proposal {
    fn from(change: Change) -> Proposal {
        Proposal {
            change,
            origin: Origin::system(),
        }
    }
}

impl Change {
    /// What the change does, in a few words for the history and the audit log. Never includes
    /// a secret.
    pub fn summary(&self) -> String {
        match self {
            Change::ReplaceConfig { .. } => "replace the whole configuration".into(),
            Change::Upsert { object, .. } => {
                format!("save {}/{}", object.kind(), object.name())
            }
            Change::Delete { kind, name, .. } => format!("delete {kind}/{name}"),
            Change::Rollback { to_revision, .. } => format!("roll back to revision {to_revision}"),
            Change::SetUser {
                name,
                role,
                disabled,
                ..
            } => format!(
                "set user {name} (role {role}{})",
                if *disabled { ", disabled" } else { "" }
            ),
            Change::UpdateUser {
                name,
                password_hash,
                role,
                disabled,
            } => {
                let mut what = Vec::new();
                if password_hash.is_some() {
                    what.push("password".to_string());
                }
                if let Some(r) = role {
                    what.push(format!("role {r}"));
                }
                if let Some(d) = disabled {
                    what.push(if *d { "disabled" } else { "enabled" }.to_string());
                }
                format!("update user {name}: {}", what.join(", "))
            }
            Change::DeleteUser { name } => format!("delete user {name}"),
            Change::AddToken {
                name, user, role, ..
            } => format!("create token {name:?} for {user} (role {role})"),
            Change::RevokeToken { id } => {
                format!("revoke token {}", id.get(..12).unwrap_or(id))
            }
            Change::PutCertificate { record } => match (&record.info, &record.csr_pem) {
                (Some(info), _) => format!(
                    "put certificate {} ({}, expires {})",
                    record.name, info.subject, info.not_after_unix
                ),
                (None, _) => format!("generate key and CSR {}", record.name),
            },
            Change::RevokeCertificate { name, reason } => {
                format!("revoke certificate {name}: {reason}")
            }
            Change::DeleteCertificate { name } => format!("delete certificate {name}"),
            Change::PutTsigKey { record } => {
                format!("put TSIG key {} ({})", record.name, record.algorithm)
            }
            Change::DeleteTsigKey { name } => format!("delete TSIG key {name}"),
            Change::RotateTicketKey { record } => {
                format!("rotate the session-ticket key (new key {})", record.id)
            }
            Change::PurgeCache { selector } => {
                format!("purge cache {} {:?}", selector.kind(), selector.value())
            }
            Change::SetClusterCa { record } => {
                format!("create the cluster CA (sha256 {})", record.fingerprint)
            }
            Change::SetSchema { version } => format!("raise the validation schema to {version}"),
            Change::Restore { backup } => format!(
                "restore the backup of revision {} taken at {} ms",
                backup.revision, backup.created_unix_ms
            ),
            Change::AddJoinToken { record } => format!("issue join token {}", record.id),
            Change::UseJoinToken { id, node_id, .. } => {
                format!("node {node_id} joins with token {id}")
            }
            Change::Audit { action, detail, .. } => {
                if detail.is_empty() {
                    action.clone()
                } else {
                    format!("{action}: {detail}")
                }
            }
        }
    }

    /// Whether the change is to the configuration (and so needs the operator role).
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            Change::ReplaceConfig { .. }
                | Change::Restore { .. }
                | Change::Upsert { .. }
                | Change::Delete { .. }
                | Change::Rollback { .. }
        )
    }
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
            Change::Rollback {
                expected_revision,
                to_revision,
            } => f
                .debug_struct("Rollback")
                .field("expected_revision", expected_revision)
                .field("to_revision", to_revision)
                .finish(),
            Change::SetUser {
                name,
                role,
                disabled,
                ..
            } => f
                .debug_struct("SetUser")
                .field("name", name)
                .field("password_hash", &"<redacted>")
                .field("role", role)
                .field("disabled", disabled)
                .finish(),
            Change::UpdateUser {
                name,
                password_hash,
                role,
                disabled,
            } => f
                .debug_struct("UpdateUser")
                .field("name", name)
                .field(
                    "password_hash",
                    &password_hash.as_ref().map(|_| "<redacted>"),
                )
                .field("role", role)
                .field("disabled", disabled)
                .finish(),
            Change::DeleteUser { name } => {
                f.debug_struct("DeleteUser").field("name", name).finish()
            }
            Change::AddToken {
                id,
                name,
                user,
                role,
                expires_unix_ms,
            } => f
                .debug_struct("AddToken")
                .field("id", id)
                .field("name", name)
                .field("user", user)
                .field("role", role)
                .field("expires_unix_ms", expires_unix_ms)
                .finish(),
            Change::RevokeToken { id } => f.debug_struct("RevokeToken").field("id", id).finish(),
            Change::PutCertificate { record } => f
                .debug_struct("PutCertificate")
                .field("record", record)
                .finish(),
            Change::RevokeCertificate { name, reason } => f
                .debug_struct("RevokeCertificate")
                .field("name", name)
                .field("reason", reason)
                .finish(),
            Change::DeleteCertificate { name } => f
                .debug_struct("DeleteCertificate")
                .field("name", name)
                .finish(),
            Change::PutTsigKey { record } => f
                .debug_struct("PutTsigKey")
                .field("record", record)
                .finish(),
            Change::DeleteTsigKey { name } => {
                f.debug_struct("DeleteTsigKey").field("name", name).finish()
            }
            Change::RotateTicketKey { record } => f
                .debug_struct("RotateTicketKey")
                .field("record", record)
                .finish(),
            Change::PurgeCache { selector } => f
                .debug_struct("PurgeCache")
                .field("selector", selector)
                .finish(),
            Change::SetSchema { version } => f
                .debug_struct("SetSchema")
                .field("version", version)
                .finish(),
            Change::Restore { backup } => f
                .debug_struct("Restore")
                .field("revision", &backup.revision)
                .field("created_unix_ms", &backup.created_unix_ms)
                .finish(),
            Change::SetClusterCa { record } => f
                .debug_struct("SetClusterCa")
                .field("record", record)
                .finish(),
            Change::AddJoinToken { record } => f
                .debug_struct("AddJoinToken")
                .field("id", &record.id)
                .finish(),
            Change::UseJoinToken {
                id,
                node_id,
                now_unix_ms,
            } => f
                .debug_struct("UseJoinToken")
                .field("id", id)
                .field("node_id", node_id)
                .field("now_unix_ms", now_unix_ms)
                .finish(),
            Change::Audit {
                action,
                detail,
                success,
            } => f
                .debug_struct("Audit")
                .field("action", action)
                .field("detail", detail)
                .field("success", success)
                .finish(),
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
            role: Role::Admin,
            disabled: false,
        };
        let text = format!("{c:?}");
        assert!(text.contains("admin") && !text.contains("argon2"), "{text}");
        let c = Change::UpdateUser {
            name: "ops".into(),
            password_hash: Some("$argon2id$v=19$secret".into()),
            role: None,
            disabled: None,
        };
        let text = format!("{c:?} {}", c.summary());
        assert!(text.contains("ops") && !text.contains("argon2"), "{text}");
    }

    #[test]
    fn roles_are_ordered_by_power() {
        assert!(Role::Admin.can_manage_users() && Role::Admin.can_change_config());
        assert!(!Role::Operator.can_manage_users() && Role::Operator.can_change_config());
        assert!(!Role::Viewer.can_change_config());
        assert_eq!(Role::parse("operator"), Some(Role::Operator));
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn a_throttled_log_line_goes_through_once_per_window() {
        let t = LogThrottle::new();
        assert!(t.due());
        assert!(!t.due(), "the second within 10 s is held back");
    }

    #[test]
    fn a_bare_change_is_a_system_proposal() {
        let p: Proposal = Change::RevokeToken { id: "ab".into() }.into();
        assert_eq!(p.origin.interface, Interface::System);
        // Entries written before origins existed still read.
        let old = r#"{"change":{"RevokeToken":{"id":"ab"}}}"#;
        let p: Proposal = serde_json::from_str(old).expect("parse");
        assert_eq!(p.origin.user, "");
    }
}
