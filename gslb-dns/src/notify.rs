//! NOTIFY (RFC 1996) to the secondaries of each zone when its serial changes, signed with the
//! secondary's TSIG key.
//!
//! One task per (zone, secondary) holds the newest serial to announce: a newer revision
//! replaces one still being retried, so a burst of changes costs one NOTIFY per secondary and
//! never queues. A NOTIFY counts as delivered when the secondary answers it with a response
//! signed by the same key; otherwise it is sent again after 1, 2, 4 and 8 s and then given up
//! (the secondary still catches up at its SOA refresh), with a warning and
//! `meridian_dns_notify_total{result="failed"}`.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{LowerName, Name, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::tsig::TsigKeyStore;
use crate::{DnsMetrics, ZonesSnapshot};

/// Sends before giving up; the wait for an answer doubles from the first.
const TRIES: u32 = 5;
const FIRST_WAIT: Duration = Duration::from_secs(1);

/// What a secondary is to be told: the zone, its SOA (with the new serial) and the key.
#[derive(Clone, PartialEq)]
struct Job {
    zone: Name,
    soa: Record,
    key: LowerName,
}

/// The NOTIFY tasks, one per (zone, secondary that wants NOTIFY).
pub(crate) struct Notifier {
    keys: TsigKeyStore,
    metrics: DnsMetrics,
    runtime: tokio::runtime::Handle,
    targets: HashMap<(LowerName, SocketAddr), watch::Sender<Job>>,
}

impl Notifier {
    pub(crate) fn new(
        keys: TsigKeyStore,
        metrics: DnsMetrics,
        runtime: tokio::runtime::Handle,
    ) -> Notifier {
        Notifier {
            keys,
            metrics,
            runtime,
            targets: HashMap::new(),
        }
    }

    /// Announces `snapshot`'s serials: to every secondary whose zone's serial or key changed,
    /// and to new secondaries. Tasks of secondaries no longer configured end.
    pub(crate) fn update(&mut self, snapshot: &ZonesSnapshot) {
        let mut live = HashSet::new();
        for zone in snapshot.transfers() {
            for peer in zone.secondaries.iter().filter(|p| p.notify) {
                let target = (zone.origin.clone(), peer.addr);
                let job = Job {
                    zone: Name::from(&zone.origin),
                    soa: zone.soa().clone(),
                    key: peer.key.clone(),
                };
                live.insert(target.clone());
                match self.targets.get(&target) {
                    Some(tx) => {
                        tx.send_if_modified(|current| {
                            let changed = *current != job;
                            if changed {
                                *current = job;
                            }
                            changed
                        });
                    }
                    None => {
                        let (tx, rx) = watch::channel(job);
                        self.runtime.spawn(run(
                            rx,
                            peer.addr,
                            self.keys.clone(),
                            self.metrics.clone(),
                        ));
                        self.targets.insert(target, tx);
                    }
                }
            }
        }
        // Dropping a sender ends its task.
        self.targets.retain(|target, _| live.contains(target));
    }
}

/// Announces each job `rx` holds to `addr`, newest first, until the sender is dropped.
async fn run(
    mut rx: watch::Receiver<Job>,
    addr: SocketAddr,
    keys: TsigKeyStore,
    metrics: DnsMetrics,
) {
    'jobs: loop {
        let job = rx.borrow_and_update().clone();
        let mut wait = FIRST_WAIT;
        let mut outcome = Err(String::new());
        for _ in 0..TRIES {
            let started = tokio::time::Instant::now();
            outcome = tokio::select! {
                sent = send(&job, addr, &keys, wait) => sent,
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // A newer serial: announce that one instead.
                    continue 'jobs;
                }
            };
            if outcome.is_ok() {
                break;
            }
            // A failure that came before the wait was over (no key, no route) waits it out.
            tokio::select! {
                _ = tokio::time::sleep_until(started + wait) => {}
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    continue 'jobs;
                }
            }
            wait *= 2;
        }
        match outcome {
            Ok(()) => {
                metrics.notify("acked");
                debug!(zone = %job.zone, secondary = %addr, "notify acknowledged");
            }
            Err(error) => {
                metrics.notify("failed");
                warn!(
                    zone = %job.zone,
                    secondary = %addr,
                    %error,
                    "NOTIFY not acknowledged after {TRIES} tries; the secondary catches up at its SOA refresh"
                );
            }
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// One NOTIFY to `addr`, and its signed answer within `wait`.
async fn send(
    job: &Job,
    addr: SocketAddr,
    keys: &TsigKeyStore,
    wait: Duration,
) -> Result<(), String> {
    let keys = keys.load();
    let signer = keys
        .get(&job.key)
        .ok_or_else(|| format!("no TSIG key named {} on this node", job.key))?
        .clone();
    let id = random_id();
    let mut message = Message::new(id, MessageType::Query, OpCode::Notify);
    message.metadata.authoritative = true;
    let mut query = Query::query(job.zone.clone(), RecordType::SOA);
    query.set_query_class(hickory_proto::rr::DNSClass::IN);
    message.add_query(query);
    message.add_answer(job.soa.clone());
    let (tsig, verifier) = signer
        .sign_message(&message, crate::tsig::now())
        .map_err(|e| format!("cannot sign: {e}"))?;
    let mut verifier = verifier.ok_or("the signer gave no verifier")?;
    message.set_signature(tsig);
    let bytes = message
        .to_vec()
        .map_err(|e| format!("cannot encode: {e}"))?;

    let local: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| format!("cannot bind: {e}"))?;
    socket
        .connect(addr)
        .await
        .map_err(|e| format!("cannot reach: {e}"))?;
    socket
        .send(&bytes)
        .await
        .map_err(|e| format!("cannot send: {e}"))?;
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
            Err(_) => return Err(format!("no answer within {wait:?}")),
            Ok(Err(e)) => return Err(format!("receive failed: {e}")),
            Ok(Ok(n)) => n,
        };
        let answer = &buf[..n];
        // Anything but our ID is someone else's packet: keep waiting.
        if answer.len() < 2 || u16::from_be_bytes([answer[0], answer[1]]) != id {
            continue;
        }
        let response = verifier
            .verify(answer)
            .map_err(|e| format!("the answer's TSIG does not verify: {e}"))?;
        return match response.metadata.response_code {
            ResponseCode::NoError => Ok(()),
            rcode => Err(format!("answered {rcode}")),
        };
    }
}

/// A message ID no off-path sender can guess ahead (from the process's random hash keys).
fn random_id() -> u16 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish() as u16
}
