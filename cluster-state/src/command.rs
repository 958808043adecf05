//! The replicated document and the commands that change it: a pure, deterministic core with no
//! I/O, so every node computes the same outcome from the same log entry.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The Raft log entry payload (openraft `AppData`): a change and who asked for it.
pub type Command = model::Proposal;

pub use model::records::{
    AuditEntry, AuthState, CertificateRecord, ClusterCaRecord, JoinTokenRecord, PurgeRecord,
    RevisionRecord, TicketKeyRecord, TokenInfo, TsigKeyRecord, UserRecord,
};

/// How many config revisions (each with its whole spec) the history keeps for diff and rollback.
pub const HISTORY_KEEP: usize = 100;
/// The audit log never holds more entries than this, whatever the retention period.
pub const AUDIT_MAX: usize = 5000;
/// Audit entries are kept this long unless the config says otherwise.
pub const DEFAULT_AUDIT_RETENTION_DAYS: u32 = 90;

/// What the state machine publishes after each applied entry that changed something.
#[derive(Clone, Debug)]
pub struct Applied {
    pub config: Arc<model::Revisioned<model::Config>>,
    pub auth: Arc<AuthState>,
    /// Oldest first.
    pub history: Arc<Vec<Arc<RevisionRecord>>>,
    /// Oldest first.
    pub audit: Arc<Vec<Arc<AuditEntry>>>,
    /// The credential store, by name. Keys are sealed.
    pub certificates: Arc<BTreeMap<String, Arc<CertificateRecord>>>,
    /// Session-ticket keys, newest first. Sealed.
    pub ticket_keys: Arc<Vec<Arc<TicketKeyRecord>>>,
    /// TSIG keys for zone transfers, by name. Sealed.
    pub tsig_keys: Arc<BTreeMap<String, Arc<TsigKeyRecord>>>,
    /// Cache purges, oldest first.
    pub purges: Arc<Vec<PurgeRecord>>,
    /// The cluster CA (key sealed), once the first node made it.
    pub cluster_ca: Option<Arc<ClusterCaRecord>>,
    /// Join tokens by id: issued, used, expired.
    pub join_tokens: Arc<BTreeMap<String, JoinTokenRecord>>,
    /// The validation rules in force in the cluster.
    pub schema: u32,
}

/// Why the state machine refused a committed command. Deterministic: every node refuses alike.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Serialize, Deserialize)]
pub enum ApplyError {
    #[error("stale revision: expected {expected}, current {current}")]
    StaleRevision { expected: u64, current: u64 },
    #[error("invalid configuration: {0}")]
    Invalid(model::ValidationErrors),
    #[error("{kind} {name:?} not found")]
    NotFound {
        kind: model::ObjectKind,
        name: String,
    },
    /// A change the current state does not allow (deleting the last admin, rolling back to a
    /// revision the history no longer keeps, ...).
    #[error("{0}")]
    Refused(String),
}

// === impl Document ===

/// The whole replicated state the commands act on: the config spec, the auth tables, the config
/// revision (a counter of applied config changes), the history and the audit log.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Document {
    pub spec: model::ConfigSpec,
    pub auth: AuthState,
    pub revision: u64,
    #[serde(default)]
    pub history: VecDeque<Arc<RevisionRecord>>,
    #[serde(default)]
    pub audit: VecDeque<Arc<AuditEntry>>,
    #[serde(default)]
    pub certificates: BTreeMap<String, Arc<CertificateRecord>>,
    /// Newest first, at most [`model::records::TICKET_KEYS_KEPT`].
    #[serde(default)]
    pub ticket_keys: VecDeque<Arc<TicketKeyRecord>>,
    #[serde(default)]
    pub tsig_keys: BTreeMap<String, Arc<TsigKeyRecord>>,
    /// Oldest first, at most [`model::records::PURGES_KEPT`].
    #[serde(default)]
    pub purges: VecDeque<PurgeRecord>,
    #[serde(default)]
    pub cluster_ca: Option<Arc<ClusterCaRecord>>,
    #[serde(default)]
    pub join_tokens: BTreeMap<String, JoinTokenRecord>,
    /// The validation rules in force (`model::validate_at`); 0 in documents from before it
    /// was recorded, which is version 1.
    #[serde(default)]
    pub schema: u32,
}

/// What one successful command changed.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The config revision after the command.
    pub revision: u64,
    /// The newly validated config when the spec changed.
    pub config: Option<model::Config>,
    pub auth_changed: bool,
    pub certificates_changed: bool,
    pub ticket_keys_changed: bool,
    pub tsig_keys_changed: bool,
    pub purges_changed: bool,
    /// The cluster CA or the join tokens.
    pub cluster_changed: bool,
}

impl Document {
    /// Applies `cmd`, carried by the log entry at `index`, and records it in the audit log
    /// whatever the outcome. On error nothing else changes.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> Result<Outcome, ApplyError> {
        let result = self.apply_change(cmd);
        let (success, error, revision) = match &result {
            Ok(o) => (
                !matches!(cmd.change, model::Change::Audit { success: false, .. }),
                None,
                o.config.as_ref().map(|_| o.revision),
            ),
            Err(e) => (false, Some(e.to_string()), None),
        };
        if let (Ok(o), Some(rev)) = (&result, revision) {
            debug_assert_eq!(o.revision, rev);
            self.history.push_back(Arc::new(RevisionRecord {
                revision: rev,
                origin: cmd.origin.clone(),
                summary: cmd.change.summary(),
                spec: Arc::new(self.spec.clone()),
            }));
            while self.history.len() > HISTORY_KEEP {
                self.history.pop_front();
            }
        }
        self.audit.push_back(Arc::new(AuditEntry {
            index,
            origin: cmd.origin.clone(),
            action: cmd.change.summary(),
            success,
            error,
            revision,
        }));
        self.prune_audit(cmd.origin.at_unix_ms);
        result
    }

    /// Drops audit entries older than the retention period (judged by the time carried in the
    /// entry being applied, so every node prunes alike) and beyond [`AUDIT_MAX`].
    fn prune_audit(&mut self, now_ms: u64) {
        let days = self
            .spec
            .audit_retention_days
            .unwrap_or(DEFAULT_AUDIT_RETENTION_DAYS);
        let horizon = now_ms.saturating_sub(u64::from(days) * 86_400_000);
        while self
            .audit
            .front()
            .is_some_and(|e| e.origin.at_unix_ms < horizon)
            || self.audit.len() > AUDIT_MAX
        {
            self.audit.pop_front();
        }
    }

    fn apply_change(&mut self, cmd: &Command) -> Result<Outcome, ApplyError> {
        use model::Change;
        match &cmd.change {
            Change::ReplaceConfig {
                expected_revision,
                spec,
            } => {
                self.check_revision(*expected_revision)?;
                self.commit_spec(spec.clone())
            }
            Change::Upsert {
                expected_revision,
                object,
            } => {
                self.check_revision(*expected_revision)?;
                let mut spec = self.spec.clone();
                spec.upsert(object);
                self.commit_spec(spec)
            }
            Change::Delete {
                expected_revision,
                kind,
                name,
            } => {
                self.check_revision(*expected_revision)?;
                let mut spec = self.spec.clone();
                if !spec.delete(*kind, name) {
                    return Err(ApplyError::NotFound {
                        kind: *kind,
                        name: name.clone(),
                    });
                }
                self.commit_spec(spec)
            }
            Change::Rollback {
                expected_revision,
                to_revision,
            } => {
                self.check_revision(*expected_revision)?;
                let Some(record) = self.history.iter().find(|r| r.revision == *to_revision) else {
                    return Err(ApplyError::Refused(format!(
                        "revision {to_revision} is not in the history (it keeps the last \
                         {HISTORY_KEEP} revisions)"
                    )));
                };
                let spec = model::ConfigSpec::clone(&record.spec);
                self.commit_spec(spec)
            }
            Change::SetUser {
                name,
                password_hash,
                role,
                disabled,
            } => {
                let record = UserRecord {
                    password_hash: password_hash.clone(),
                    role: *role,
                    disabled: *disabled,
                };
                let demotes = *role != model::Role::Admin || *disabled;
                if demotes && self.auth.users.contains_key(name) && !self.auth.other_admin(name) {
                    return Err(last_admin(name));
                }
                self.auth.users.insert(name.clone(), record);
                Ok(self.auth_outcome())
            }
            Change::UpdateUser {
                name,
                password_hash,
                role,
                disabled,
            } => {
                let Some(current) = self.auth.users.get(name) else {
                    return Err(ApplyError::Refused(format!("no user named {name:?}")));
                };
                let mut next = current.clone();
                if let Some(h) = password_hash {
                    next.password_hash = h.clone();
                }
                if let Some(r) = role {
                    next.role = *r;
                }
                if let Some(d) = disabled {
                    next.disabled = *d;
                }
                let demotes = next.role != model::Role::Admin || next.disabled;
                if demotes && !self.auth.other_admin(name) {
                    return Err(last_admin(name));
                }
                self.auth.users.insert(name.clone(), next);
                Ok(self.auth_outcome())
            }
            Change::DeleteUser { name } => {
                if !self.auth.users.contains_key(name) {
                    return Err(ApplyError::Refused(format!("no user named {name:?}")));
                }
                if !self.auth.other_admin(name) {
                    return Err(last_admin(name));
                }
                self.auth.users.remove(name);
                // A deleted user's tokens die with it.
                self.auth.tokens.retain(|_, t| &t.user != name);
                Ok(self.auth_outcome())
            }
            Change::AddToken {
                id,
                name,
                user,
                role,
                expires_unix_ms,
            } => {
                let info = TokenInfo {
                    name: name.clone(),
                    user: user.clone(),
                    role: *role,
                    created_unix_ms: cmd.origin.at_unix_ms,
                    expires_unix_ms: *expires_unix_ms,
                };
                self.auth.tokens.insert(id.clone(), info);
                Ok(self.auth_outcome())
            }
            Change::RevokeToken { id } => {
                if self.auth.tokens.remove(id).is_none() {
                    return Err(ApplyError::Refused("no such token".into()));
                }
                Ok(self.auth_outcome())
            }
            Change::PutCertificate { record } => {
                self.certificates
                    .insert(record.name.clone(), Arc::new(record.clone()));
                Ok(self.certificates_outcome())
            }
            Change::RevokeCertificate { name, reason } => {
                self.unused_certificate(name)?;
                let Some(current) = self.certificates.get(name) else {
                    return Err(no_certificate(name));
                };
                let mut record = CertificateRecord::clone(current);
                record.revoked = Some(model::records::Revocation {
                    reason: reason.clone(),
                    at_unix_ms: cmd.origin.at_unix_ms,
                    by: cmd.origin.user.clone(),
                });
                record.updated_unix_ms = cmd.origin.at_unix_ms;
                self.certificates.insert(name.clone(), Arc::new(record));
                Ok(self.certificates_outcome())
            }
            Change::DeleteCertificate { name } => {
                self.unused_certificate(name)?;
                if self.certificates.remove(name).is_none() {
                    return Err(no_certificate(name));
                }
                Ok(self.certificates_outcome())
            }
            Change::PutTsigKey { record } => {
                self.tsig_keys
                    .insert(record.name.clone(), Arc::new(record.clone()));
                Ok(self.tsig_keys_outcome())
            }
            Change::DeleteTsigKey { name } => {
                let users: Vec<&str> = self
                    .spec
                    .zones
                    .iter()
                    .filter(|z| {
                        z.secondaries.iter().any(|s| {
                            model::validate::tsig_key_name(&s.tsig_key).as_deref()
                                == Some(name.as_str())
                        })
                    })
                    .map(|z| z.name.as_str())
                    .collect();
                if !users.is_empty() {
                    return Err(ApplyError::Refused(format!(
                        "TSIG key {name:?} is used by the secondaries of zone {}; change them first",
                        users.join(", zone ")
                    )));
                }
                if self.tsig_keys.remove(name).is_none() {
                    return Err(ApplyError::Refused(format!("no TSIG key named {name:?}")));
                }
                Ok(self.tsig_keys_outcome())
            }
            Change::RotateTicketKey { record } => {
                if self.ticket_keys.iter().any(|k| k.id == record.id) {
                    return Err(ApplyError::Refused(format!(
                        "session-ticket key {} exists already",
                        record.id
                    )));
                }
                self.ticket_keys.push_front(Arc::new(record.clone()));
                self.ticket_keys.truncate(model::records::TICKET_KEYS_KEPT);
                Ok(Outcome {
                    ticket_keys_changed: true,
                    ..self.unchanged()
                })
            }
            Change::SetSchema { version } => {
                // The state machine stops before this on a node that does not know `version`.
                if *version <= self.schema() {
                    return Err(ApplyError::Refused(format!(
                        "the validation schema is already {}",
                        self.schema()
                    )));
                }
                // The config in force must pass the new rules, or no node could load it.
                if let Err(e) = model::validate_at(&self.spec, *version) {
                    return Err(ApplyError::Refused(format!(
                        "the config in force breaks the rules of schema {version} ({}); fix \
                         it, and the schema is raised",
                        e.errors
                            .iter()
                            .map(|f| format!("{}: {}", f.path, f.message))
                            .collect::<Vec<_>>()
                            .join("; ")
                    )));
                }
                self.schema = *version;
                Ok(self.cluster_outcome())
            }
            Change::Restore { backup } => {
                if backup.format != model::records::BACKUP_FORMAT {
                    return Err(ApplyError::Refused(format!(
                        "unknown backup format {:?} (this release reads {})",
                        backup.format,
                        model::records::BACKUP_FORMAT
                    )));
                }
                if !backup
                    .auth
                    .users
                    .values()
                    .any(|u| u.role == model::Role::Admin && !u.disabled)
                {
                    return Err(ApplyError::Refused(
                        "the backup has no enabled admin: nobody could manage the cluster".into(),
                    ));
                }
                let saved = (
                    std::mem::take(&mut self.certificates),
                    std::mem::take(&mut self.tsig_keys),
                );
                self.certificates = backup
                    .certificates
                    .iter()
                    .map(|(k, v)| (k.clone(), Arc::new(v.clone())))
                    .collect();
                self.tsig_keys = backup
                    .tsig_keys
                    .iter()
                    .map(|(k, v)| (k.clone(), Arc::new(v.clone())))
                    .collect();
                match self.commit_spec(backup.spec.clone()) {
                    Ok(mut outcome) => {
                        self.auth = backup.auth.clone();
                        outcome.auth_changed = true;
                        outcome.certificates_changed = true;
                        outcome.tsig_keys_changed = true;
                        Ok(outcome)
                    }
                    Err(e) => {
                        (self.certificates, self.tsig_keys) = saved;
                        Err(e)
                    }
                }
            }
            Change::SetClusterCa { record } => {
                if let Some(ca) = &self.cluster_ca {
                    return Err(ApplyError::Refused(format!(
                        "the cluster already has a CA (sha256 {})",
                        ca.fingerprint
                    )));
                }
                self.cluster_ca = Some(Arc::new(record.clone()));
                Ok(self.cluster_outcome())
            }
            Change::AddJoinToken { record } => {
                if self.join_tokens.contains_key(&record.id) {
                    return Err(ApplyError::Refused(format!(
                        "join token {} exists",
                        record.id
                    )));
                }
                let horizon = record.created_unix_ms.saturating_sub(86_400_000);
                self.join_tokens.retain(|_, t| t.expires_unix_ms > horizon);
                self.join_tokens.insert(record.id.clone(), record.clone());
                Ok(self.cluster_outcome())
            }
            Change::UseJoinToken {
                id,
                node_id,
                now_unix_ms,
            } => {
                let Some(t) = self.join_tokens.get_mut(id) else {
                    return Err(ApplyError::Refused(format!("no join token {id}")));
                };
                if let Some(by) = t.used_by_node {
                    return Err(ApplyError::Refused(format!(
                        "join token {id} was already used (by node {by})"
                    )));
                }
                if *now_unix_ms >= t.expires_unix_ms {
                    return Err(ApplyError::Refused(format!("join token {id} has expired")));
                }
                t.used_by_node = Some(*node_id);
                t.used_unix_ms = Some(*now_unix_ms);
                Ok(self.cluster_outcome())
            }
            Change::PurgeCache { selector } => {
                let seq = self.purges.back().map_or(1, |p| p.seq + 1);
                self.purges.push_back(PurgeRecord {
                    seq,
                    at_unix_ms: cmd.origin.at_unix_ms,
                    selector: selector.clone(),
                });
                while self.purges.len() > model::records::PURGES_KEPT {
                    self.purges.pop_front();
                }
                Ok(Outcome {
                    purges_changed: true,
                    ..self.unchanged()
                })
            }
            Change::Audit { .. } => Ok(self.unchanged()),
        }
    }

    /// Validates the stored spec again, e.g. after loading it from disk.
    pub fn config(&self) -> Result<model::Config, model::ValidationErrors> {
        model::validate_at(&self.spec, self.schema())
    }

    /// The validation rules in force.
    pub fn schema(&self) -> u32 {
        self.schema.max(1)
    }

    fn check_revision(&self, expected: Option<u64>) -> Result<(), ApplyError> {
        match expected {
            Some(expected) if expected != self.revision => Err(ApplyError::StaleRevision {
                expected,
                current: self.revision,
            }),
            _ => Ok(()),
        }
    }

    /// Makes `spec` the config as the next revision: refused changes, user and token changes do
    /// not use up revision numbers.
    fn commit_spec(&mut self, spec: model::ConfigSpec) -> Result<Outcome, ApplyError> {
        // By the rules in force, not this release's newest: every node decides alike.
        let mut config = model::validate_at(&spec, self.schema()).map_err(ApplyError::Invalid);
        let mut missing = model::validate::certificate_errors(&spec, |c| {
            model::records::certificate_usable(&self.certificates, c)
        });
        missing.extend(model::validate::tsig_key_errors(&spec, |k| {
            self.tsig_keys.contains_key(k)
        }));
        if !missing.is_empty() {
            let mut errors = match config {
                Ok(_) => model::ValidationErrors { errors: Vec::new() },
                Err(ApplyError::Invalid(e)) => e,
                Err(other) => return Err(other),
            };
            errors.errors.extend(missing);
            config = Err(ApplyError::Invalid(errors));
        }
        let config = config?;
        self.spec = spec;
        self.revision += 1;
        Ok(Outcome {
            config: Some(config),
            ..self.unchanged()
        })
    }

    /// At the current revision, nothing changed; each helper below sets its one flag.
    fn unchanged(&self) -> Outcome {
        Outcome {
            revision: self.revision,
            config: None,
            auth_changed: false,
            certificates_changed: false,
            ticket_keys_changed: false,
            tsig_keys_changed: false,
            purges_changed: false,
            cluster_changed: false,
        }
    }

    fn auth_outcome(&self) -> Outcome {
        Outcome {
            auth_changed: true,
            ..self.unchanged()
        }
    }

    fn cluster_outcome(&self) -> Outcome {
        Outcome {
            cluster_changed: true,
            ..self.unchanged()
        }
    }

    fn tsig_keys_outcome(&self) -> Outcome {
        Outcome {
            tsig_keys_changed: true,
            ..self.unchanged()
        }
    }

    fn certificates_outcome(&self) -> Outcome {
        Outcome {
            certificates_changed: true,
            ..self.unchanged()
        }
    }

    /// Refuses to revoke or delete a certificate a listener uses, naming the listener.
    fn unused_certificate(&self, name: &str) -> Result<(), ApplyError> {
        let mut users: Vec<String> = self
            .spec
            .listeners
            .iter()
            .filter(|l| {
                l.tls
                    .as_ref()
                    .is_some_and(|t| t.certificates.iter().any(|c| c == name))
            })
            .map(|l| format!("listener {}", l.name))
            .collect();
        users.extend(
            self.spec
                .pools
                .iter()
                .filter(|p| {
                    p.tls
                        .as_ref()
                        .is_some_and(|t| t.client_certificate.as_deref() == Some(name))
                })
                .map(|p| format!("pool {}", p.name)),
        );
        if users.is_empty() {
            Ok(())
        } else {
            Err(ApplyError::Refused(format!(
                "certificate {name:?} is used by {}; change them first",
                users.join(", ")
            )))
        }
    }
}

fn no_certificate(name: &str) -> ApplyError {
    ApplyError::Refused(format!("no certificate named {name:?}"))
}

fn last_admin(name: &str) -> ApplyError {
    ApplyError::Refused(format!(
        "{name} is the last enabled admin; make another user an admin first"
    ))
}

#[cfg(test)]
#[path = "command_tests.rs"]
mod tests;
