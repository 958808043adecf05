//! The configuration vocabulary of Meridian: spec types (the one serialized form), validation
//! with field paths, and the typed model the data planes compile.
//!
//! **Architecture Invariant:** no tokio, no I/O. Everything here is a pure function of its input,
//! so the API, the CLI and the Raft state machine all validate the same way.

pub mod change;
pub mod document;
pub mod object;
pub mod parse;
pub mod records;
pub mod spec;
pub mod typed;
pub mod validate;

pub use change::{
    unix_ms, Change, ChangeError, Interface, LogThrottle, Origin, Proposal, Refusal, Role,
};
pub use document::{Document, Outcome, AUDIT_MAX, DEFAULT_AUDIT_RETENTION_DAYS, HISTORY_KEEP};
pub use object::{Object, ObjectKind};
pub use spec::*;
pub use typed::*;
pub use validate::{validate, validate_at, FieldError, ValidationErrors, SCHEMA_SUPPORTED};

#[cfg(test)]
mod proptests;
