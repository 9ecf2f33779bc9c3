//! Emulated LAN links for benchmarks and tests: each emulated device gets its own network
//! namespace, joined to this one by a veth pair whose two ends both carry a qdisc, normally
//! `netem delay 5ms rate 100mbit` (so a round trip costs twice the delay), as ARCHITECTURE.md §7
//! asks. It needs root, iproute2 (`ip`, `tc`) and the kernel's netem qdisc; when one is missing,
//! [`EmulatedLan::create`] says which. Everything it made is removed when it is dropped, also
//! when a test panics.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

/// Why an emulated LAN could not be built.
#[derive(Debug, thiserror::Error)]
pub enum NetemError {
    /// A command could not be started.
    #[error("`{command}` cannot run: {reason} (network emulation needs iproute2's `ip` and `tc`)")]
    Missing {
        /// The command line.
        command: String,
        /// Why it did not start.
        reason: String,
    },
    /// A command ran and failed.
    #[error("`{command}` failed: {stderr}{hint}")]
    Failed {
        /// The command line.
        command: String,
        /// What it printed on stderr.
        stderr: String,
        /// What to do about it, if known.
        hint: &'static str,
    },
}

/// One emulated device's end of the LAN.
#[derive(Debug, Clone)]
pub struct Host {
    /// Its network namespace (run processes in it with `ip netns exec`).
    pub netns: String,
    /// Its address, reachable from this namespace over the emulated link.
    pub addr: IpAddr,
}

/// Namespaces and veth pairs with netem on both ends; removed on drop.
#[derive(Debug)]
pub struct EmulatedLan {
    /// The emulated devices, in order.
    pub hosts: Vec<Host>,
    veths: Vec<String>,
}

impl EmulatedLan {
    /// Builds `hosts` namespaces, each linked to this one by a veth pair whose ends both carry
    /// `qdisc` (what follows `tc qdisc add dev X root`, e.g. `netem delay 5ms rate 100mbit`).
    pub fn create(hosts: usize, qdisc: &str) -> Result<Self, NetemError> {
        let tag = std::process::id() % 100_000;
        // A private /24 per process (10.200-249.x), one /30-like pair of addresses per host.
        let net = 200 + (tag % 50) as u8;
        let mut lan = Self { hosts: Vec::new(), veths: Vec::new() };
        for i in 0..hosts {
            let (netns, outer, inner) =
                (format!("plk{tag}n{i}"), format!("plk{tag}a{i}"), format!("plk{tag}b{i}"));
            let (here, there) = (Ipv4Addr::new(10, net, i as u8, 1), Ipv4Addr::new(10, net, i as u8, 2));
            run(&["ip", "netns", "add", &netns])?;
            lan.hosts.push(Host { netns: netns.clone(), addr: IpAddr::V4(there) });
            run(&["ip", "link", "add", &outer, "type", "veth", "peer", "name", &inner])?;
            lan.veths.push(outer.clone());
            run(&["ip", "link", "set", &inner, "netns", &netns])?;
            run(&["ip", "addr", "add", &format!("{here}/24"), "dev", &outer])?;
            run(&["ip", "link", "set", &outer, "up"])?;
            run(&["ip", "-n", &netns, "addr", "add", &format!("{there}/24"), "dev", &inner])?;
            run(&["ip", "-n", &netns, "link", "set", &inner, "up"])?;
            run(&["ip", "-n", &netns, "link", "set", "lo", "up"])?;
            let shape: Vec<&str> = qdisc.split_whitespace().collect();
            let mut outer_qdisc = vec!["tc", "qdisc", "add", "dev", &outer, "root"];
            outer_qdisc.extend(&shape);
            run(&outer_qdisc)?;
            let mut inner_qdisc = vec!["tc", "-n", &netns, "qdisc", "add", "dev", &inner, "root"];
            inner_qdisc.extend(&shape);
            run(&inner_qdisc)?;
        }
        Ok(lan)
    }
}

impl Drop for EmulatedLan {
    fn drop(&mut self) {
        // Deleting a namespace removes the veth end inside it and so the pair; the explicit
        // deletes cover a pair whose inner end never moved in.
        for veth in &self.veths {
            let _ = Command::new("ip").args(["link", "del", veth]).output();
        }
        for host in &self.hosts {
            let _ = Command::new("ip").args(["netns", "del", &host.netns]).output();
        }
    }
}

fn run(args: &[&str]) -> Result<(), NetemError> {
    let command = args.join(" ");
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| NetemError::Missing { command: command.clone(), reason: e.to_string() })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    let hint = if args.contains(&"qdisc") && stderr.contains("unknown") {
        " (this kernel lacks that qdisc; netem needs sch_netem, CONFIG_NET_SCH_NETEM)"
    } else if args.contains(&"netns") && args.contains(&"add") {
        " (network namespaces need root / CAP_SYS_ADMIN)"
    } else {
        ""
    };
    Err(NetemError::Failed { command, stderr, hint })
}
