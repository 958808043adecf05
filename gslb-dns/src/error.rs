//! The crate's one error type.

/// Why the DNS server could not start, or why a configuration revision could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("dns server must be spawned from inside a tokio runtime")]
    NoRuntime,
    #[error("invalid domain name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("name {name:?} is outside its zone {zone:?}")]
    OutOfZone { name: String, zone: String },
    #[error("gslb record {record:?} refers to unknown zone {zone:?}")]
    UnknownZone { record: String, zone: String },
    #[error("cannot start the UDP threads: {0}")]
    Udp(std::io::Error),
    #[error("zone {0:?} is configured twice")]
    DuplicateZone(String),
    #[error("TSIG: {0}")]
    Tsig(String),
    #[error("record {name:?} of type {rtype}: {reason}")]
    InvalidRecord {
        name: String,
        rtype: String,
        reason: String,
    },
}
