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

/// A TLS certificate with its private key, as the replicated credential store keeps it. The key
/// is sealed (AEAD) with a cluster key derived from the cluster secret, which is never in the
/// Raft log, so neither the log, the snapshots nor the state store hold a usable key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateRecord {
    pub name: String,
    /// PEM certificates, leaf first then intermediates; empty while a generated key waits for
    /// its signed certificate.
    pub chain_pem: String,
    pub key: SealedKey,
    /// The CSR of a key generated on the appliance, until its certificate is attached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr_pem: Option<String>,
    /// What the leaf says, parsed once at import; `None` while waiting for a signed certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<CertificateInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Revocation>,
    pub created_unix_ms: u64,
    pub updated_unix_ms: u64,
}

// Hand-written so that even the sealed key never reaches a log line.
impl fmt::Debug for CertificateRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateRecord")
            .field("name", &self.name)
            .field("info", &self.info)
            .field("key", &"<sealed>")
            .field("revoked", &self.revoked)
            .finish()
    }
}

/// A session-ticket key the cluster generated. Every node seals tickets with the newest and
/// opens them with any kept, so a client resumes on any appliance. The key is sealed with the
/// cluster key like a private key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketKeyRecord {
    /// 16 hex digits, random; the first bytes of every ticket it seals.
    pub id: String,
    pub created_unix_ms: u64,
    pub key: SealedKey,
}

// Hand-written: the sealed key stays out of log lines.
impl fmt::Debug for TicketKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketKeyRecord")
            .field("id", &self.id)
            .field("created_unix_ms", &self.created_unix_ms)
            .field("key", &"<sealed>")
            .finish()
    }
}

/// A TSIG key (RFC 8945) shared with secondary DNS servers, its secret sealed with the cluster
/// key like a private key. The secret leaves the store only to the DNS server and, once, to the
/// operator who had it generated.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TsigKeyRecord {
    /// Lowercase FQDN with a trailing dot, as the TSIG RR carries it.
    pub name: String,
    pub algorithm: TsigAlgorithm,
    pub secret: SealedKey,
    pub created_unix_ms: u64,
}

// Hand-written: the sealed secret stays out of log lines.
impl fmt::Debug for TsigKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigKeyRecord")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("secret", &"<sealed>")
            .finish()
    }
}

/// The TSIG MAC algorithms Meridian signs and verifies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
pub enum TsigAlgorithm {
    #[default]
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    #[serde(rename = "hmac-sha384")]
    HmacSha384,
    #[serde(rename = "hmac-sha512")]
    HmacSha512,
}

impl TsigAlgorithm {
    pub const ALL: [TsigAlgorithm; 3] = [
        TsigAlgorithm::HmacSha256,
        TsigAlgorithm::HmacSha384,
        TsigAlgorithm::HmacSha512,
    ];

    /// The name BIND, Knot and dig use (`hmac-sha256`).
    pub fn as_str(self) -> &'static str {
        match self {
            TsigAlgorithm::HmacSha256 => "hmac-sha256",
            TsigAlgorithm::HmacSha384 => "hmac-sha384",
            TsigAlgorithm::HmacSha512 => "hmac-sha512",
        }
    }

    pub fn parse(s: &str) -> Option<TsigAlgorithm> {
        let s = s.trim_end_matches('.').to_ascii_lowercase();
        TsigAlgorithm::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// The secret length a generated key gets: the MAC's output length (RFC 8945 §6).
    pub fn secret_len(self) -> usize {
        match self {
            TsigAlgorithm::HmacSha256 => 32,
            TsigAlgorithm::HmacSha384 => 48,
            TsigAlgorithm::HmacSha512 => 64,
        }
    }
}

impl fmt::Display for TsigAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many session-ticket keys the cluster keeps: the one that seals and the two before it.
pub const TICKET_KEYS_KEPT: usize = 3;
/// A new session-ticket key every this many hours unless the config says otherwise
/// (`session_ticket_rotation_hours`).
pub const DEFAULT_TICKET_ROTATION_HOURS: u32 = 6;

/// The cluster's own CA: it signs each node's certificate for mutual TLS between nodes. Made
/// by the first node; its key is sealed with the cluster key and never leaves the nodes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterCaRecord {
    pub cert_pem: String,
    pub key: SealedKey,
    /// SHA-256 of the CA certificate (DER), hex: what a join token pins.
    pub fingerprint: String,
    pub created_unix_ms: u64,
}

// Hand-written: the sealed key stays out of log lines.
impl fmt::Debug for ClusterCaRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterCaRecord")
            .field("fingerprint", &self.fingerprint)
            .field("key", &"<sealed>")
            .finish()
    }
}

/// A cluster member the leader has not heard from for this long is silent (alarm, console);
/// a leader that has heard from no majority for this long has lost its quorum.
pub const PEER_SILENT_MS: u64 = 3_000;

/// A cluster member this many log entries behind the leader is lagging (alarm, console).
pub const PEER_LAG_ALARM_ENTRIES: u64 = 1_000;

/// What `meridian backup` writes and `meridian restore` seeds a new cluster with: the config,
/// users and tokens (hashes only), and the credential store (keys sealed with the cluster key,
/// so the new cluster needs the old one's cluster secret to use them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Backup {
    /// `meridian-backup/1`.
    pub format: String,
    pub created_unix_ms: u64,
    /// The config revision it was taken at.
    pub revision: u64,
    pub spec: crate::ConfigSpec,
    pub auth: AuthState,
    pub certificates: BTreeMap<String, CertificateRecord>,
    pub tsig_keys: BTreeMap<String, TsigKeyRecord>,
}

pub const BACKUP_FORMAT: &str = "meridian-backup/1";

/// A single-use join token: only the SHA-256 of its secret is kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JoinTokenRecord {
    /// Public id (hex), the token's first part.
    pub id: String,
    /// SHA-256 of the secret part, hex.
    #[schema(ignore)]
    #[serde(default)]
    pub secret_sha256: String,
    pub created_unix_ms: u64,
    pub expires_unix_ms: u64,
    /// Who issued it.
    pub created_by: String,
    /// The node that joined with it, once used.
    pub used_by_node: Option<u64>,
    pub used_unix_ms: Option<u64>,
}

/// A private key encrypted with the cluster key (ChaCha20-Poly1305), base64.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedKey {
    pub nonce: String,
    pub ciphertext: String,
}

/// The parts of a certificate an operator reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CertificateInfo {
    pub subject: String,
    pub issuer: String,
    /// DNS names (and IP addresses) the certificate is valid for.
    pub sans: Vec<String>,
    pub not_before_unix: i64,
    pub not_after_unix: i64,
    /// `ECDSA P-256`, `RSA 2048`, `Ed25519`, ...
    pub key_type: String,
    pub serial: String,
    /// Hex SHA-256 of the leaf certificate (DER).
    pub fingerprint_sha256: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Revocation {
    pub reason: String,
    pub at_unix_ms: u64,
    pub by: String,
}

/// Certificates that expire within this many days raise an alarm, unless the config says
/// otherwise (`certificate_expiry_alarm_days`).
pub const DEFAULT_CERT_EXPIRY_ALARM_DAYS: u32 = 30;

/// Whether a listener or pool may use certificate `name` of the credential store: `Ok`, or
/// why not. The state machine and the API ask the same question with the same words.
pub fn certificate_usable(
    certs: &BTreeMap<String, Arc<CertificateRecord>>,
    name: &str,
) -> Result<(), String> {
    match certs.get(name) {
        None => Err(format!(
            "no certificate named {name:?} in the credential store"
        )),
        Some(c) if c.revoked.is_some() => Err(format!("certificate {name:?} is revoked")),
        Some(c) if c.info.is_none() => Err(format!(
            "certificate {name:?} is a generated key still waiting for its signed certificate"
        )),
        Some(_) => Ok(()),
    }
}

/// What a cache purge removes: one key (every variant of it), every key starting with a prefix,
/// or every response tagged with a tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PurgeSelector {
    Key(String),
    Prefix(String),
    Tag(String),
}

impl PurgeSelector {
    pub fn kind(&self) -> &'static str {
        match self {
            PurgeSelector::Key(_) => "key",
            PurgeSelector::Prefix(_) => "prefix",
            PurgeSelector::Tag(_) => "tag",
        }
    }

    pub fn value(&self) -> &str {
        match self {
            PurgeSelector::Key(v) | PurgeSelector::Prefix(v) | PurgeSelector::Tag(v) => v,
        }
    }
}

/// A purge as the cluster replicated it: every node applies each record once, in `seq` order,
/// and a node starting up drops disk entries stored before a purge that matches them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PurgeRecord {
    pub seq: u64,
    pub at_unix_ms: u64,
    pub selector: PurgeSelector,
}

/// How many purges the replicated state keeps (oldest dropped first).
pub const PURGES_KEPT: usize = 256;
