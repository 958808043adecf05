//! The TLS credential store's pure logic: the cluster key and the sealing of private keys,
//! importing and checking certificate chains, keys generated on the appliance (CSR, then
//! [`attach`]), and opening a record for rustls.
//!
//! A [`model::records::CertificateRecord`] holds the chain as PEM and the private key sealed
//! (ChaCha20-Poly1305) with a [`ClusterKey`] derived from the cluster secret. The cluster secret
//! is never in the Raft log, so neither the log, its snapshots nor the state store hold a usable
//! key; every node derives the same cluster key and opens the same records.
//!
//! Input problems come back as [`model::ValidationErrors`], every one of them, with the path of
//! the field at fault (`name`, `cert_pem`, `key_pem`, `ca_pem`, `common_name`, `sans[i]`, `key`).
//! Failures to open a stored record are an [`Error`].
//!
//! **Architecture Invariant:** no tokio and no I/O; time and the cluster key are passed in. The
//! only randomness is the operating system's, drawn for nonces and generated keys.
//!
//! **Architecture Invariant:** private key material never appears in an error message, a `Debug`
//! output or `chain_pem`. Plaintext keys are held in buffers zeroed on drop (`Zeroizing`,
//! rustls-pki-types' key types); the one exception is rcgen's `KeyPair` while a key is generated.

#![forbid(unsafe_code)]

mod chain;
pub mod cluster_pki;
mod keys;
mod open;
mod pem;
mod record;
mod seal;

#[cfg(test)]
mod testpki;

pub use chain::CLOCK_SKEW_SECS;
pub use open::{ca_roots, expires_in, open, open_client};
pub use record::{attach, generate, import, self_signed, SELF_SIGNED_DAYS};
pub use seal::{
    new_ticket_key, new_tsig_secret, open_ticket_key, open_tsig_key, seal, seal_ca_key, tsig_key,
    unseal, unseal_ca_key, ClusterKey, TSIG_MIN_SECRET,
};

/// Why a stored record could not be sealed or opened. Messages name the record, never its key.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the system random number generator failed")]
    Random,
    #[error("the key could not be sealed")]
    Seal,
    #[error("the sealed key is malformed: {0}")]
    Malformed(&'static str),
    #[error("the sealed key does not open: wrong cluster key, or the record was altered")]
    Unseal,
    #[error("certificate {0:?} is revoked")]
    Revoked(String),
    #[error("certificate {0:?} has no signed certificate attached yet")]
    Incomplete(String),
    #[error("the stored chain of certificate {0:?} does not parse")]
    Chain(String),
    #[error("the stored key of certificate {name:?} cannot be used: {reason}")]
    Key { name: String, reason: &'static str },
}

/// Collects every problem with its field path, like `model::validate` does.
#[derive(Default)]
pub(crate) struct Errors(Vec<model::FieldError>);

impl Errors {
    pub(crate) fn push(&mut self, path: &str, message: impl Into<String>) {
        self.0.push(model::FieldError {
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// `Err` with everything collected, if anything was.
    pub(crate) fn check(self) -> Result<(), model::ValidationErrors> {
        match self.0.is_empty() {
            true => Ok(()),
            false => Err(self.finish()),
        }
    }

    /// The errors, never empty: a caller that found a step impossible but collected nothing
    /// still gets an answer that says so.
    pub(crate) fn finish(mut self) -> model::ValidationErrors {
        if self.0.is_empty() {
            self.push("cert_pem", "the certificate could not be checked");
        }
        model::ValidationErrors { errors: self.0 }
    }
}
