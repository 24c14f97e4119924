//! Test hosts: Linux network namespaces on one switch, so that each service of a cluster runs
//! on its own address and a link can be cut the way a partition cuts it, its packets dropped
//! while both processes live on (no reset, no close: connections hang).
//!
//! The switch is a bridge in a namespace of its own; each host is a namespace with one end of
//! a veth pair (`eth0`, 198.X.Y.k/24, in the range set aside for network tests, RFC 2544),
//! the other end a port of the bridge. The test process
//! itself reaches the hosts through one more pair whose end stays in its own namespace. A
//! partition takes the host's bridge port down: frames to and from it vanish. Everything is
//! removed on drop (deleting a namespace deletes its ends of the pairs). Needs root (CAP_NET_ADMIN)
//! and `ip` (iproute2); [`Net::unavailable`] says why not where they are missing.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output().context("cannot run `ip` (iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// One host: a namespace and its address.
#[derive(Debug, Clone)]
pub struct Host {
    /// The namespace's name.
    pub netns: String,
    /// Its address on the switch.
    pub addr: Ipv4Addr,
    /// Its port on the bridge, in the switch namespace.
    port: String,
}

/// Hosts on one switch.
pub struct Net {
    switch: String,
    root_link: String,
    hosts: Vec<Host>,
}

impl Net {
    /// Why hosts cannot be made here (not root, no `ip`, namespaces refused), or `None`.
    pub fn unavailable() -> Option<String> {
        let probe = format!("mgprobe{}", std::process::id());
        match ip(&["netns", "add", &probe]) {
            Ok(()) => {
                let _ = ip(&["netns", "del", &probe]);
                None
            }
            Err(e) => Some(format!("network namespaces cannot be made here (root and iproute2 are needed): {e:#}")),
        }
    }

    /// A switch with `n` hosts, `198.X.Y.1` to `198.X.Y.n`; the test process is `198.X.Y.254`.
    pub fn new(n: usize) -> anyhow::Result<Self> {
        let k = std::process::id() * 8 + NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = format!("mg{k:x}");
        let (x, y) = (18 + (k >> 8) % 2, k % 256);
        let switch = format!("{tag}sw");
        let mut net = Self { switch: switch.clone(), root_link: format!("{tag}r"), hosts: Vec::new() };
        ip(&["netns", "add", &switch])?;
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &switch, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let host = Host { netns: format!("{tag}h{i}"), addr: Ipv4Addr::new(198, x as u8, y as u8, i as u8 + 1), port: format!("p{i}") };
            ip(&["netns", "add", &host.netns])?;
            net.hosts.push(host.clone());
            ip(&["-n", &host.netns, "link", "add", "eth0", "type", "veth", "peer", "name", &host.port, "netns", &switch])?;
            ip(&["-n", &host.netns, "addr", "add", &format!("{}/24", host.addr), "dev", "eth0"])?;
            ip(&["-n", &host.netns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &host.netns, "link", "set", "lo", "up"])?;
            ip(&["-n", &switch, "link", "set", &host.port, "master", "br0", "up"])?;
        }
        ip(&["link", "add", &net.root_link, "type", "veth", "peer", "name", "proot", "netns", &switch])?;
        ip(&["addr", "add", &format!("198.{x}.{y}.254/24"), "dev", &net.root_link])?;
        ip(&["link", "set", &net.root_link, "up"])?;
        ip(&["-n", &switch, "link", "set", "proot", "master", "br0", "up"])?;
        Ok(net)
    }

    /// The hosts, in order.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Cuts `host` off: its frames vanish at the switch, both ways.
    pub fn partition(&self, host: &Host) -> anyhow::Result<()> {
        ip(&["-n", &self.switch, "link", "set", &host.port, "down"])
    }

    /// Joins `host` again.
    pub fn heal(&self, host: &Host) -> anyhow::Result<()> {
        ip(&["-n", &self.switch, "link", "set", &host.port, "up"])
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.root_link]);
        for host in &self.hosts {
            let _ = ip(&["netns", "del", &host.netns]);
        }
        let _ = ip(&["netns", "del", &self.switch]);
    }
}
