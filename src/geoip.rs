//! The GeoIP database an operator provides (`geoip_database` in the node config): a MaxMind DB
//! file (GeoLite2 or GeoIP2 City or Country), read with the `maxminddb` crate and handed to the
//! DNS plane as a `gslb_dns::GeoLocator`. Regions name the countries and continents it places
//! clients in; networks of the regions table win over it.
//!
//! The file is read at start (a node with an unreadable one does not start) and again whenever
//! it changes ([`Reloading`]), so the weekly database updates take effect without a restart; a
//! new file that does not read keeps the old database in use and says so in the log.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use anyhow::Context;
use gslb_dns::{GeoFacts, GeoLocator};
use maxminddb::{geoip2, Reader};

pub struct MaxMind {
    reader: Reader<Vec<u8>>,
}

impl MaxMind {
    pub fn open(path: &Path) -> anyhow::Result<MaxMind> {
        let reader = Reader::open_readfile(path)
            .with_context(|| format!("cannot read the GeoIP database {}", path.display()))?;
        Ok(MaxMind { reader })
    }

    /// What the database says, for the startup log: its type and build time.
    pub fn describe(&self) -> String {
        format!(
            "{} (built {})",
            self.reader.metadata.database_type, self.reader.metadata.build_epoch
        )
    }
}

impl GeoLocator for MaxMind {
    fn locate(&self, addr: IpAddr) -> Option<GeoFacts> {
        let result = self.reader.lookup(addr).ok()?;
        let prefix = result.network().ok().map_or(0, |n| n.prefix());
        let city: geoip2::City = result.decode().ok()??;
        let location = match (city.location.latitude, city.location.longitude) {
            (Some(latitude), Some(longitude)) => Some(model::GeoPoint {
                latitude,
                longitude,
            }),
            _ => None,
        };
        Some(GeoFacts {
            country: city.country.iso_code.map(str::to_ascii_uppercase),
            continent: city.continent.code.map(str::to_ascii_uppercase),
            location,
            prefix,
        })
    }
}

/// How often the file is looked at for a change.
const RELOAD_CHECK: Duration = Duration::from_secs(5);

/// The database in use, swapped for a new one when the file changes.
pub struct Reloading {
    current: ArcSwap<MaxMind>,
}

impl GeoLocator for Reloading {
    fn locate(&self, addr: IpAddr) -> Option<GeoFacts> {
        self.current.load().locate(addr)
    }
}

impl Reloading {
    /// Opens `path` and starts watching it.
    pub fn start(path: PathBuf) -> anyhow::Result<Arc<Reloading>> {
        let db = MaxMind::open(&path)?;
        tracing::info!(path = %path.display(), database = %db.describe(), "GeoIP database loaded");
        let geo = Arc::new(Reloading {
            current: ArcSwap::from_pointee(db),
        });
        let watched = geo.clone();
        tokio::spawn(async move {
            let mut seen = modified(&path);
            let mut tick = tokio::time::interval(RELOAD_CHECK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let now = modified(&path);
                if now == seen {
                    continue;
                }
                seen = now;
                match MaxMind::open(&path) {
                    Ok(db) => {
                        tracing::info!(path = %path.display(), database = %db.describe(), "GeoIP database reloaded");
                        watched.current.store(Arc::new(db));
                    }
                    Err(e) => tracing::warn!(
                        path = %path.display(),
                        error = format!("{e:#}"),
                        "the changed GeoIP database does not read; the previous one stays in use"
                    ),
                }
            }
        });
        Ok(geo)
    }
}

fn modified(path: &Path) -> Option<(SystemTime, u64)> {
    std::fs::metadata(path)
        .ok()
        .and_then(|m| Some((m.modified().ok()?, m.len())))
}
