//! The GeoIP database an operator provides (`geoip_database` in the node config): a MaxMind DB
//! file (GeoLite2 or GeoIP2 City or Country), read once at start with the `maxminddb` crate and
//! handed to the DNS plane as a `gslb_dns::GeoLocator`. Regions name the countries and
//! continents it places clients in; networks of the regions table win over it.

use std::net::IpAddr;
use std::path::Path;

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
