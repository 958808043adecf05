//! Keeps the data plane's certificates in step with the credential store and the OCSP
//! responses on disk: every usable record is opened (its key unsealed) when the store changes,
//! `<ocsp_dir>/<name>.der` is stapled to it while good and current, and the whole set is
//! swapped in, so new handshakes use it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cluster_state::ClusterNode;
use model::records::CertificateRecord;
use rustls::sign::CertifiedKey;

/// How often the OCSP files are looked at (a stat each; read only when changed).
const OCSP_CHECK: Duration = Duration::from_secs(5);

type Records = Arc<BTreeMap<String, Arc<CertificateRecord>>>;

/// A certificate opened once per change of the store.
struct Opened {
    key: Arc<CertifiedKey>,
    names: Vec<String>,
}

/// What an OCSP file looked like when last read: modification time and length.
type Stamp = Option<(SystemTime, u64)>;

pub fn follow(
    cluster: &ClusterNode,
    key: Arc<credentials::ClusterKey>,
    store: Arc<lb::tls::CertStore>,
    ocsp_dir: PathBuf,
) -> tokio::task::JoinHandle<()> {
    let mut applied = cluster.subscribe();
    let mut records: Records = applied.borrow_and_update().certificates.clone();
    let mut opened = open_all(&records, &key);
    let mut stamps = stamps_of(&ocsp_dir, &opened);
    let mut recheck_at = publish(&store, &opened, &ocsp_dir, now());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(OCSP_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                changed = applied.changed() => if changed.is_err() { return },
                _ = tick.tick() => {}
            }
            let next = applied.borrow_and_update().certificates.clone();
            let mut dirty = false;
            if !Arc::ptr_eq(&next, &records) {
                opened = open_all(&next, &key);
                records = next;
                dirty = true;
            }
            let now_stamps = stamps_of(&ocsp_dir, &opened);
            if now_stamps != stamps {
                stamps = now_stamps;
                dirty = true;
            }
            if dirty || recheck_at.is_some_and(|t| now() >= t) {
                recheck_at = publish(&store, &opened, &ocsp_dir, now());
            }
        }
    })
}

fn now() -> i64 {
    i64::try_from(model::unix_ms() / 1000).unwrap_or(i64::MAX)
}

fn open_all(
    records: &BTreeMap<String, Arc<CertificateRecord>>,
    key: &credentials::ClusterKey,
) -> HashMap<String, Opened> {
    let mut out = HashMap::new();
    for (name, r) in records {
        if r.revoked.is_some() || r.info.is_none() {
            continue;
        }
        match credentials::open(r, key) {
            Ok(certified) => {
                let names = r
                    .info
                    .as_ref()
                    .map(|i| i.sans.iter().map(|n| n.to_ascii_lowercase()).collect())
                    .unwrap_or_default();
                out.insert(
                    name.clone(),
                    Opened {
                        key: certified,
                        names,
                    },
                );
            }
            Err(e) => tracing::error!(certificate = %name, error = %e, "cannot open certificate"),
        }
    }
    out
}

fn ocsp_file(dir: &Path, name: &str) -> PathBuf {
    // Certificate names are letters, digits, '.', '_' and '-': never a path of their own.
    dir.join(format!("{name}.der"))
}

fn stamps_of(dir: &Path, opened: &HashMap<String, Opened>) -> BTreeMap<String, Stamp> {
    opened
        .keys()
        .map(|name| {
            let stamp = std::fs::metadata(ocsp_file(dir, name))
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())));
            (name.clone(), stamp)
        })
        .collect()
}

/// Staples what can be stapled and swaps the set in. Returns when to look again even if no
/// file changes: the earliest `nextUpdate` of a stapled response.
fn publish(
    store: &lb::tls::CertStore,
    opened: &HashMap<String, Opened>,
    dir: &Path,
    now: i64,
) -> Option<i64> {
    let mut map = HashMap::new();
    let mut recheck: Option<i64> = None;
    for (name, o) in opened {
        let (key, ocsp) = match std::fs::read(ocsp_file(dir, name)) {
            Ok(bytes) => {
                let (key, verdict) = lb::tls::ocsp::staple(&o.key, bytes, now);
                match &verdict {
                    Ok(s) => {
                        if let Some(n) = s.next_update {
                            recheck = Some(recheck.map_or(n, |r| r.min(n)));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(certificate = %name, error = %e, "OCSP response not stapled")
                    }
                }
                (key, Some(verdict))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (o.key.clone(), None),
            Err(e) => (
                o.key.clone(),
                Some(Err(format!("cannot read the file: {e}"))),
            ),
        };
        map.insert(
            name.clone(),
            Arc::new(lb::tls::StoredCert {
                key,
                names: o.names.clone(),
                ocsp,
            }),
        );
    }
    store.replace(map);
    recheck
}
