//! End-to-end tests of the real `meridian` binary on ephemeral loopback ports: one test binary,
//! one harness (hickory-dns style).

#[path = "e2e/harness.rs"]
mod harness;
#[path = "e2e/linearizable.rs"]
mod linearizable;
#[path = "e2e/netns.rs"]
mod netns;

#[path = "e2e/api.rs"]
mod api;
#[path = "e2e/browser.rs"]
mod browser;
#[path = "e2e/cache.rs"]
mod cache;
#[path = "e2e/cli.rs"]
mod cli;
#[path = "e2e/cluster.rs"]
mod cluster;
#[path = "e2e/faults.rs"]
mod faults;
#[path = "e2e/flow.rs"]
mod flow;
#[path = "e2e/geoip.rs"]
mod geoip;
#[path = "e2e/tls.rs"]
mod tls;
#[path = "e2e/xfr.rs"]
mod xfr;
