//! A small LAN of network namespaces for tests that need several appliances each with its own
//! addresses (the same listener bind on every node, as in production): a bridge in the host
//! namespace with an address for the test itself, and one namespace per appliance attached to
//! it by a veth pair. Bridged, not routed: the host's forwarding settings are left alone.
//! Everything is removed on drop. Needs root (CI runs as root).

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The bridge and the namespaces on it.
pub struct Lan {
    tag: String,
    /// The first three octets of the LAN's /24.
    net: [u8; 3],
    namespaces: Vec<String>,
}

/// One appliance's namespace and its address on the LAN.
#[derive(Clone)]
pub struct Host {
    pub ns: String,
    pub ip: Ipv4Addr,
}

impl Lan {
    pub fn new() -> Lan {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // Names fit the kernel's 15 characters; the /24 differs per process and per LAN.
        let tag = format!("m{:x}{n}", pid % 0xfffff);
        let net = [10, 213, u8::try_from((pid * 7 + n) % 250).unwrap_or(0) + 1];
        let bridge = format!("{tag}br");
        ip(&["link", "add", &bridge, "type", "bridge"]);
        let lan = Lan {
            tag,
            net,
            namespaces: Vec::new(),
        };
        ip(&[
            "addr",
            "add",
            &format!("{}/24", lan.addr(1)),
            "dev",
            &bridge,
        ]);
        ip(&["link", "set", &bridge, "up"]);
        lan
    }

    fn addr(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.net[0], self.net[1], self.net[2], host)
    }

    /// The test's own address on the LAN.
    pub fn gateway(&self) -> Ipv4Addr {
        self.addr(1)
    }

    /// Another address of the test's own on the LAN (`host` from 200 up, clear of the
    /// namespaces'), for a server the appliances reach at an address of its own.
    pub fn extra_address(&self, host: u8) -> Ipv4Addr {
        let addr = self.addr(host);
        ip(&[
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            &format!("{}br", self.tag),
        ]);
        addr
    }

    /// Cuts `host`'s path to `to`, as a broken uplink would: connections fail at once.
    pub fn cut(&self, host: &Host, to: Ipv4Addr) {
        ip(&[
            "netns",
            "exec",
            &host.ns,
            "ip",
            "route",
            "add",
            "prohibit",
            &format!("{to}/32"),
        ]);
    }

    /// Restores what [`Lan::cut`] took.
    pub fn heal(&self, host: &Host, to: Ipv4Addr) {
        ip(&[
            "netns",
            "exec",
            &host.ns,
            "ip",
            "route",
            "del",
            "prohibit",
            &format!("{to}/32"),
        ]);
    }

    /// Cuts `a` and `b` off from each other, both ways.
    pub fn partition(&self, a: &Host, b: &Host) {
        self.cut(a, b.ip);
        self.cut(b, a.ip);
    }

    pub fn unpartition(&self, a: &Host, b: &Host) {
        self.heal(a, b.ip);
        self.heal(b, a.ip);
    }

    /// A new namespace on the LAN, with loopback up and the next address.
    pub fn host(&mut self) -> Host {
        let i = self.namespaces.len();
        let ns = format!("{}n{i}", self.tag);
        let (outer, inner) = (format!("{}v{i}", self.tag), format!("{}p{i}", self.tag));
        let ip_addr = self.addr(u8::try_from(i + 2).expect("a few hosts"));
        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        ip(&[
            "link", "add", &outer, "type", "veth", "peer", "name", &inner,
        ]);
        ip(&["link", "set", &inner, "netns", &ns]);
        ip(&["link", "set", &outer, "master", &format!("{}br", self.tag)]);
        ip(&["link", "set", &outer, "up"]);
        let exec = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &ns, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        exec(&["link", "set", "lo", "up"]);
        exec(&["addr", "add", &format!("{ip_addr}/24"), "dev", &inner]);
        exec(&["link", "set", &inner, "up"]);
        Host { ns, ip: ip_addr }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of each veth, and with it the other end.
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &format!("{}br", self.tag)])
            .output();
    }
}
