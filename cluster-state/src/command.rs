//! The replicated document and the commands that change it: a pure, deterministic core with no
//! I/O, so every node computes the same outcome from the same log entry.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The Raft log entry payload (openraft `AppData`): the model's vocabulary of changes.
pub type Command = model::Change;

/// Users (name -> PHC password hash) and API tokens (id -> info).
#[derive(Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AuthState {
    pub users: BTreeMap<String, String>,
    pub tokens: BTreeMap<String, TokenInfo>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TokenInfo {
    pub name: String,
    pub user: String,
}

/// What the state machine publishes after each applied entry that changed something.
#[derive(Clone, Debug)]
pub struct Applied {
    pub config: Arc<model::Revisioned<model::Config>>,
    pub auth: Arc<AuthState>,
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
}

// === impl AuthState ===

impl fmt::Debug for AuthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthState")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("tokens", &self.tokens)
            .finish()
    }
}

// === impl Document ===

/// The whole replicated state the commands act on: the config spec, the auth tables and the
/// config revision (the log index of the last entry that changed the spec).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Document {
    pub spec: model::ConfigSpec,
    pub auth: AuthState,
    pub revision: u64,
}

/// What one successful command changed.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The config revision after the command.
    pub revision: u64,
    /// The newly validated config when the spec changed.
    pub config: Option<model::Config>,
    pub auth_changed: bool,
}

impl Document {
    /// Applies `cmd`, carried by the log entry at `index`. On error nothing changes.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> Result<Outcome, ApplyError> {
        match cmd {
            Command::ReplaceConfig {
                expected_revision,
                spec,
            } => {
                self.check_revision(*expected_revision)?;
                self.commit_spec(index, spec.clone())
            }
            Command::Upsert {
                expected_revision,
                object,
            } => {
                self.check_revision(*expected_revision)?;
                let mut spec = self.spec.clone();
                spec.upsert(object);
                self.commit_spec(index, spec)
            }
            Command::Delete {
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
                self.commit_spec(index, spec)
            }
            Command::SetUser {
                name,
                password_hash,
            } => {
                self.auth.users.insert(name.clone(), password_hash.clone());
                Ok(self.auth_outcome())
            }
            Command::AddToken { id, name, user } => {
                let info = TokenInfo {
                    name: name.clone(),
                    user: user.clone(),
                };
                self.auth.tokens.insert(id.clone(), info);
                Ok(self.auth_outcome())
            }
            Command::RevokeToken { id } => {
                self.auth.tokens.remove(id);
                Ok(self.auth_outcome())
            }
        }
    }

    /// Validates the stored spec again, e.g. after loading it from disk.
    pub fn config(&self) -> Result<model::Config, model::ValidationErrors> {
        model::validate(&self.spec)
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

    fn commit_spec(&mut self, index: u64, spec: model::ConfigSpec) -> Result<Outcome, ApplyError> {
        let config = model::validate(&spec).map_err(ApplyError::Invalid)?;
        self.spec = spec;
        self.revision = index;
        Ok(Outcome {
            revision: index,
            config: Some(config),
            auth_changed: false,
        })
    }

    fn auth_outcome(&self) -> Outcome {
        Outcome {
            revision: self.revision,
            config: None,
            auth_changed: true,
        }
    }
}

#[cfg(test)]
#[path = "command_tests.rs"]
mod tests;
