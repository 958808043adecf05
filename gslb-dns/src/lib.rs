//! Meridian's authoritative GSLB DNS server, built on hickory-server.
//!
//! Each configuration revision is compiled into an immutable [`ZonesSnapshot`] and swapped in
//! atomically; every query loads the current snapshot once and answers from it. GSLB names are
//! the exception that keeps the snapshot honest: their site lists are compiled, but which sites
//! are handed out is decided per query against the live [`model::HealthView`], so a site that goes
//! down disappears from the very next answer.
//!
//! Answering rules, in brief (see [`ZonesSnapshot::lookup`]): the longest configured zone that
//! contains the name answers authoritatively; names outside every zone are REFUSED; missing names
//! are NXDOMAIN and existing names without the type (including empty non-terminals) NODATA, both
//! with the zone's SOA in authority; CNAMEs are chased through our zones; `ANY` returns every
//! rrset of the name over TCP and one rrset over UDP (RFC 8482), so the server is no
//! amplifier. Opcodes other than QUERY get NOTIMP, EDNS versions above 0 BADVERS.
//!
//! Every response our handler sends is counted in `meridian_dns_queries_total`. Requests hickory
//! cannot parse at all are answered FORMERR (or dropped, under 12 bytes) by hickory itself before
//! our handler runs, so they are not counted there.
//!
//! **Architecture Invariant:** this crate never imports `cluster-state` and never reads files:
//! configuration arrives on a `watch` channel and health through a trait object, so tests drive
//! the real server without Raft or probes.
//!
//! Zones with secondaries are transferred to them (AXFR, IXFR from an in-memory journal of
//! recent revisions) only when the request comes from a secondary's address signed with its
//! TSIG key, and each new serial is announced to them with a signed NOTIFY (see `xfr`,
//! `notify`, `tsig`). Any TSIG-signed request gets a signed answer.
//!
//! **API Boundary:** [`DnsServer`], [`DnsMetrics`], [`site_states`], [`ZonesSnapshot`],
//! [`TsigKeys`], [`TsigKeyStore`] and [`DnsError`]. Everything else is private.

mod error;
mod fast;
mod gslb;
mod handler;
mod master;
mod metrics;
mod notify;
mod rrl;
mod server;
mod snapshot;
mod tsig;
mod udp;
mod xfr;

pub use error::DnsError;
pub use gslb::{site_states, ClientSubnet, GeoFacts, GeoLocator, SiteState};
pub use master::import_zone;
pub use metrics::DnsMetrics;
pub use server::{CompileAlarm, DnsServer};
pub use snapshot::{Answer, ZonesSnapshot};
pub use tsig::{TsigKeyStore, TsigKeys};
