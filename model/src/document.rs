//! The replicated document and the one function that applies a change to it: pure and
//! deterministic, with no I/O, so every node computes the same outcome from the same log entry,
//! and the console's tests apply changes exactly as the cluster does.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::records::{
    AuditEntry, AuthState, CertificateRecord, ClusterCaRecord, JoinTokenRecord, PurgeRecord,
    RevisionRecord, TicketKeyRecord, TokenInfo, TsigKeyRecord, UserRecord,
};
use crate::{Change, Proposal, Refusal};

/// How many config revisions (each with its whole spec) the history keeps for diff and rollback.
pub const HISTORY_KEEP: usize = 100;
/// The audit log never holds more entries than this, whatever the retention period.
pub const AUDIT_MAX: usize = 5000;
/// Audit entries are kept this long unless the config says otherwise.
pub const DEFAULT_AUDIT_RETENTION_DAYS: u32 = 90;

// === impl Document ===

/// The whole replicated state the commands act on: the config spec, the auth tables, the config
/// revision (a counter of applied config changes), the history and the audit log.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub spec: crate::ConfigSpec,
    pub auth: AuthState,
    pub revision: u64,
    #[serde(default)]
    pub history: VecDeque<Arc<RevisionRecord>>,
    #[serde(default)]
    pub audit: VecDeque<Arc<AuditEntry>>,
    #[serde(default)]
    pub certificates: BTreeMap<String, Arc<CertificateRecord>>,
    /// Newest first, at most [`crate::records::TICKET_KEYS_KEPT`].
    #[serde(default)]
    pub ticket_keys: VecDeque<Arc<TicketKeyRecord>>,
    #[serde(default)]
    pub tsig_keys: BTreeMap<String, Arc<TsigKeyRecord>>,
    /// Oldest first, at most [`crate::records::PURGES_KEPT`].
    #[serde(default)]
    pub purges: VecDeque<PurgeRecord>,
    #[serde(default)]
    pub cluster_ca: Option<Arc<ClusterCaRecord>>,
    #[serde(default)]
    pub join_tokens: BTreeMap<String, JoinTokenRecord>,
    /// The validation rules in force (`crate::validate_at`); 0 in documents from before it
    /// was recorded, which is version 1.
    #[serde(default)]
    pub schema: u32,
}

/// What one successful command changed.
#[derive(Debug)]
pub struct Outcome {
    /// The config revision after the command.
    pub revision: u64,
    /// The newly validated config when the spec changed.
    pub config: Option<crate::Config>,
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
    pub fn apply(&mut self, index: u64, cmd: &Proposal) -> Result<Outcome, Refusal> {
        let result = self.apply_change(cmd);
        let (success, error, revision) = match &result {
            Ok(o) => (
                !matches!(cmd.change, crate::Change::Audit { success: false, .. }),
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

    fn apply_change(&mut self, cmd: &Proposal) -> Result<Outcome, Refusal> {
        use crate::Change;
        match &cmd.change {
            Change::ReplaceConfig { .. }
            | Change::Upsert { .. }
            | Change::Delete { .. }
            | Change::Rollback { .. } => {
                match next_spec(&self.spec, self.revision, &self.history, &cmd.change)? {
                    Some(spec) => self.commit_spec(spec),
                    None => Ok(self.unchanged()),
                }
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
                let demotes = *role != crate::Role::Admin || *disabled;
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
                    return Err(Refusal::NotAllowed(format!("no user named {name:?}")));
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
                let demotes = next.role != crate::Role::Admin || next.disabled;
                if demotes && !self.auth.other_admin(name) {
                    return Err(last_admin(name));
                }
                self.auth.users.insert(name.clone(), next);
                Ok(self.auth_outcome())
            }
            Change::DeleteUser { name } => {
                if !self.auth.users.contains_key(name) {
                    return Err(Refusal::NotAllowed(format!("no user named {name:?}")));
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
                    return Err(Refusal::NotAllowed("no such token".into()));
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
                record.revoked = Some(crate::records::Revocation {
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
                            crate::validate::tsig_key_name(&s.tsig_key).as_deref()
                                == Some(name.as_str())
                        })
                    })
                    .map(|z| z.name.as_str())
                    .collect();
                if !users.is_empty() {
                    return Err(Refusal::NotAllowed(format!(
                        "TSIG key {name:?} is used by the secondaries of zone {}; change them first",
                        users.join(", zone ")
                    )));
                }
                if self.tsig_keys.remove(name).is_none() {
                    return Err(Refusal::NotAllowed(format!("no TSIG key named {name:?}")));
                }
                Ok(self.tsig_keys_outcome())
            }
            Change::RotateTicketKey { record } => {
                if self.ticket_keys.iter().any(|k| k.id == record.id) {
                    return Err(Refusal::NotAllowed(format!(
                        "session-ticket key {} exists already",
                        record.id
                    )));
                }
                self.ticket_keys.push_front(Arc::new(record.clone()));
                self.ticket_keys.truncate(crate::records::TICKET_KEYS_KEPT);
                Ok(Outcome {
                    ticket_keys_changed: true,
                    ..self.unchanged()
                })
            }
            Change::SetSchema { version } => {
                // The state machine stops before this on a node that does not know `version`.
                if *version <= self.schema() {
                    return Err(Refusal::NotAllowed(format!(
                        "the validation schema is already {}",
                        self.schema()
                    )));
                }
                // The config in force must pass the new rules, or no node could load it.
                if let Err(e) = crate::validate_at(&self.spec, *version) {
                    return Err(Refusal::NotAllowed(format!(
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
                if backup.format != crate::records::BACKUP_FORMAT {
                    return Err(Refusal::NotAllowed(format!(
                        "unknown backup format {:?} (this release reads {})",
                        backup.format,
                        crate::records::BACKUP_FORMAT
                    )));
                }
                if !backup
                    .auth
                    .users
                    .values()
                    .any(|u| u.role == crate::Role::Admin && !u.disabled)
                {
                    return Err(Refusal::NotAllowed(
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
                    return Err(Refusal::NotAllowed(format!(
                        "the cluster already has a CA (sha256 {})",
                        ca.fingerprint
                    )));
                }
                self.cluster_ca = Some(Arc::new(record.clone()));
                Ok(self.cluster_outcome())
            }
            Change::AddJoinToken { record } => {
                if self.join_tokens.contains_key(&record.id) {
                    return Err(Refusal::NotAllowed(format!(
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
                    return Err(Refusal::NotAllowed(format!("no join token {id}")));
                };
                if let Some(by) = t.used_by_node {
                    return Err(Refusal::NotAllowed(format!(
                        "join token {id} was already used (by node {by})"
                    )));
                }
                if *now_unix_ms >= t.expires_unix_ms {
                    return Err(Refusal::NotAllowed(format!("join token {id} has expired")));
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
                while self.purges.len() > crate::records::PURGES_KEPT {
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
    pub fn config(&self) -> Result<crate::Config, crate::ValidationErrors> {
        crate::validate_at(&self.spec, self.schema())
    }

    /// The validation rules in force.
    pub fn schema(&self) -> u32 {
        self.schema.max(1)
    }

    /// Makes `spec` the config as the next revision: refused changes, user and token changes do
    /// not use up revision numbers.
    fn commit_spec(&mut self, spec: crate::ConfigSpec) -> Result<Outcome, Refusal> {
        // By the rules in force, not this release's newest: every node decides alike.
        let config = validate_stored(&spec, self.schema(), &self.certificates, |k| {
            self.tsig_keys.contains_key(k)
        })
        .map_err(Refusal::Invalid);
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
    fn unused_certificate(&self, name: &str) -> Result<(), Refusal> {
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
            Err(Refusal::NotAllowed(format!(
                "certificate {name:?} is used by {}; change them first",
                users.join(", ")
            )))
        }
    }
}

/// The config spec a config change (replace, upsert, delete, rollback) makes of `current`,
/// in force at `revision`, once the change's precondition holds; `history` holds the earlier
/// revisions a rollback can return to. `None` for a change that is not to the config. The
/// result is not validated yet: the state machine and the console alike do that next.
pub fn next_spec<'a>(
    current: &crate::ConfigSpec,
    revision: u64,
    history: impl IntoIterator<Item = &'a Arc<RevisionRecord>>,
    change: &Change,
) -> Result<Option<crate::ConfigSpec>, Refusal> {
    let check = |expected: &Option<u64>| match *expected {
        Some(expected) if expected != revision => Err(Refusal::StaleRevision {
            expected,
            current: revision,
        }),
        _ => Ok(()),
    };
    let spec = match change {
        Change::ReplaceConfig {
            expected_revision,
            spec,
        } => {
            check(expected_revision)?;
            spec.clone()
        }
        Change::Upsert {
            expected_revision,
            object,
        } => {
            check(expected_revision)?;
            let mut spec = current.clone();
            spec.upsert(object);
            spec
        }
        Change::Delete {
            expected_revision,
            kind,
            name,
        } => {
            check(expected_revision)?;
            let mut spec = current.clone();
            if !spec.delete(*kind, name) {
                return Err(Refusal::NotFound {
                    kind: *kind,
                    name: name.clone(),
                });
            }
            spec
        }
        Change::Rollback {
            expected_revision,
            to_revision,
        } => {
            check(expected_revision)?;
            let Some(record) = history.into_iter().find(|r| r.revision == *to_revision) else {
                return Err(Refusal::NotAllowed(format!(
                    "revision {to_revision} is not in the history (it keeps the last \
                     {HISTORY_KEEP} revisions)"
                )));
            };
            crate::ConfigSpec::clone(&record.spec)
        }
        _ => return Ok(None),
    };
    Ok(Some(spec))
}

/// Validates `spec` by the rules of `schema` and against the stores it names: every
/// certificate a listener or pool uses must be present and usable, every TSIG key known.
/// Every error is listed.
pub fn validate_stored(
    spec: &crate::ConfigSpec,
    schema: u32,
    certificates: &BTreeMap<String, Arc<CertificateRecord>>,
    tsig_key_known: impl Fn(&str) -> bool,
) -> Result<crate::Config, crate::ValidationErrors> {
    let mut missing = crate::validate::certificate_errors(spec, |c| {
        crate::records::certificate_usable(certificates, c)
    });
    missing.extend(crate::validate::tsig_key_errors(spec, tsig_key_known));
    match crate::validate_at(spec, schema) {
        Ok(config) if missing.is_empty() => Ok(config),
        Ok(_) => Err(crate::ValidationErrors { errors: missing }),
        Err(mut e) => {
            e.errors.extend(missing);
            Err(e)
        }
    }
}

fn no_certificate(name: &str) -> Refusal {
    Refusal::NotAllowed(format!("no certificate named {name:?}"))
}

fn last_admin(name: &str) -> Refusal {
    Refusal::NotAllowed(format!(
        "{name} is the last enabled admin; make another user an admin first"
    ))
}

#[cfg(test)]
#[path = "document_tests.rs"]
mod tests;
