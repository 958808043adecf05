//! TSIG (RFC 8945): the keys secondaries sign with, checking a signed request, and signing the
//! responses to it, chained across the messages of a zone transfer.
//!
//! hickory computes and checks the MACs; this module decides what a request's signature means
//! for the answer (BADKEY, BADSIG, BADTIME, or a signed response) and chains the MACs of the
//! second and later messages of a transfer (RFC 8945 §5.3.1: prior MAC, message, timers).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use hickory_proto::rr::rdata::tsig::{make_tsig_record, TsigAlgorithm, TsigError, TSIG};
use hickory_proto::rr::{LowerName, Name, Record, TSigResponseContext, TSigner};
use hickory_server::server::Request;

use crate::DnsError;

/// How far a request's time may be from ours, in seconds, and the fudge our signatures carry
/// (RFC 8945 §10 recommends 300).
pub(crate) const FUDGE: u16 = 300;

/// The TSIG keys the server knows, by key name. Built by the binary from the credential store;
/// this crate never sees the sealed form.
#[derive(Default)]
pub struct TsigKeys {
    keys: HashMap<LowerName, TSigner>,
}

impl std::fmt::Debug for TsigKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: secrets never reach a log line.
        f.debug_list().entries(self.keys.keys()).finish()
    }
}

impl TsigKeys {
    /// Keys from `(name, algorithm, secret)`; the algorithm is `hmac-sha256`, `hmac-sha384` or
    /// `hmac-sha512`.
    pub fn new<'a>(
        keys: impl IntoIterator<Item = (&'a str, model::records::TsigAlgorithm, &'a [u8])>,
    ) -> Result<TsigKeys, DnsError> {
        let mut out = HashMap::new();
        for (name, algorithm, secret) in keys {
            let parsed = crate::snapshot::parse_name(name)?;
            let algorithm = match algorithm {
                model::records::TsigAlgorithm::HmacSha256 => TsigAlgorithm::HmacSha256,
                model::records::TsigAlgorithm::HmacSha384 => TsigAlgorithm::HmacSha384,
                model::records::TsigAlgorithm::HmacSha512 => TsigAlgorithm::HmacSha512,
            };
            let signer =
                TSigner::new(secret.to_vec(), algorithm, parsed.clone(), FUDGE).map_err(|e| {
                    DnsError::InvalidName {
                        name: name.to_string(),
                        reason: e.to_string(),
                    }
                })?;
            out.insert(LowerName::new(&parsed), signer);
        }
        Ok(TsigKeys { keys: out })
    }

    pub(crate) fn get(&self, name: &LowerName) -> Option<&TSigner> {
        self.keys.get(name)
    }
}

/// The keys in use, swapped whole when the credential store changes.
#[derive(Clone, Default, Debug)]
pub struct TsigKeyStore(Arc<ArcSwap<TsigKeys>>);

impl TsigKeyStore {
    pub fn set(&self, keys: TsigKeys) {
        self.0.store(Arc::new(keys));
    }

    pub(crate) fn load(&self) -> Arc<TsigKeys> {
        self.0.load_full()
    }
}

/// Seconds since the epoch, as TSIG counts time.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a request's TSIG record means for its answer.
pub(crate) enum Verified {
    Unsigned,
    /// Good: the answer is signed with this key.
    Signed(Signing),
    /// Answered NOTAUTH with this TSIG error (RFC 8945 §5.2).
    Rejected(Rejection),
}

pub(crate) enum Rejection {
    /// Unknown key or algorithm: an unsigned TSIG naming the key.
    Key { id: u16, time: u64, name: Name },
    /// The MAC does not verify: an unsigned TSIG.
    Sig { id: u16, time: u64, signer: TSigner },
    /// Signed too far from our clock: a signed TSIG with the error (and our time).
    Time(Signing),
}

/// A verified request's key and MAC: what signing the response needs.
#[derive(Clone)]
pub(crate) struct Signing {
    signer: TSigner,
    request_mac: Vec<u8>,
    /// The request's original ID.
    id: u16,
    time: u64,
    error: Option<TsigError>,
}

impl Signing {
    /// The key the request was signed with (lowercase).
    pub(crate) fn key(&self) -> LowerName {
        LowerName::new(self.signer.signer_name())
    }

    /// The TSIG of the first (or only) message answering the request, over its encoding
    /// without the TSIG.
    pub(crate) fn first(&self, unsigned: &[u8]) -> Result<Box<Record<TSIG>>, DnsError> {
        let context = TSigResponseContext::new(
            self.id,
            self.time,
            self.signer.clone(),
            self.request_mac.clone(),
            self.error,
        );
        context
            .sign(unsigned)
            .map_err(|e| DnsError::Tsig(e.to_string()))
    }

    /// The TSIG of a later message of a transfer: its MAC covers the prior message's MAC, this
    /// message, and the timers only.
    pub(crate) fn next(
        &self,
        prior_mac: &[u8],
        unsigned: &[u8],
    ) -> Result<Box<Record<TSIG>>, DnsError> {
        let mut tbs = Vec::with_capacity(2 + prior_mac.len() + unsigned.len() + 8);
        let len = u16::try_from(prior_mac.len())
            .map_err(|_| DnsError::Tsig("the prior MAC is too long".into()))?;
        tbs.extend_from_slice(&len.to_be_bytes());
        tbs.extend_from_slice(prior_mac);
        tbs.extend_from_slice(unsigned);
        // Time signed is 48 bits.
        tbs.extend_from_slice(&self.time.to_be_bytes()[2..]);
        tbs.extend_from_slice(&self.signer.fudge().to_be_bytes());
        let mac = self
            .signer
            .sign(&tbs)
            .map_err(|e| DnsError::Tsig(e.to_string()))?;
        let tsig = TSIG::new(
            self.signer.algorithm().clone(),
            self.time,
            self.signer.fudge(),
            mac,
            self.id,
            None,
            Vec::new(),
        );
        Ok(Box::new(make_tsig_record(
            self.signer.signer_name().clone(),
            tsig,
        )))
    }
}

/// Checks the TSIG of `request` against `keys` at time `now`.
pub(crate) fn verify(request: &Request, keys: &TsigKeys, now: u64) -> Verified {
    let Some(signature) = request.signature.as_ref() else {
        return Verified::Unsigned;
    };
    let id = request.metadata.id;
    let Some(signer) = keys.get(&LowerName::new(&signature.name)) else {
        return Verified::Rejected(Rejection::Key {
            id,
            time: now,
            name: signature.name.clone(),
        });
    };
    if signature.data.algorithm != *signer.algorithm() {
        return Verified::Rejected(Rejection::Key {
            id,
            time: now,
            name: signature.name.clone(),
        });
    }
    match signer.verify_message_byte(request.as_slice(), None, true) {
        Err(_) => Verified::Rejected(Rejection::Sig {
            id,
            time: now,
            signer: signer.clone(),
        }),
        Ok((mac, _, window)) => {
            let signing = Signing {
                signer: signer.clone(),
                request_mac: mac,
                id: signature.data.oid,
                time: now,
                error: None,
            };
            if window.contains(&now) {
                Verified::Signed(signing)
            } else {
                Verified::Rejected(Rejection::Time(Signing {
                    error: Some(TsigError::BadTime),
                    ..signing
                }))
            }
        }
    }
}

impl Rejection {
    /// The TSIG record of the NOTAUTH answer; `Signing` for BADTIME, whose answer is signed.
    pub(crate) fn unsigned_tsig(&self) -> Option<Result<Box<Record<TSIG>>, DnsError>> {
        let context = match self {
            Rejection::Key { id, time, name } => {
                TSigResponseContext::unknown_key(*id, *time, name.clone())
            }
            Rejection::Sig { id, time, signer } => {
                TSigResponseContext::bad_signature(*id, *time, signer.clone())
            }
            Rejection::Time(_) => return None,
        };
        Some(context.sign(&[]).map_err(|e| DnsError::Tsig(e.to_string())))
    }

    pub(crate) fn label(&self) -> &'static str {
        match self {
            Rejection::Key { .. } => "BADKEY",
            Rejection::Sig { .. } => "BADSIG",
            Rejection::Time(_) => "BADTIME",
        }
    }
}
