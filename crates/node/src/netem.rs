//! Emulated LAN links for benchmarks and tests: each emulated device gets its own network
//! namespace, joined to a switch (a bridge in this namespace) by a veth pair whose two ends both
//! carry a qdisc, normally `netem delay 5ms rate 100mbit` (so a round trip costs twice the
//! delay), as ARCHITECTURE.md §7 asks. It needs root, iproute2 (`ip`, `tc`) and the kernel's netem qdisc; when one is missing,
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

/// Namespaces joined by a switch (a bridge in this namespace, which also reaches every host),
/// each by a veth pair shaped on both ends; removed on drop.
#[derive(Debug)]
pub struct EmulatedLan {
    /// The emulated devices, in order.
    pub hosts: Vec<Host>,
    bridge: Option<String>,
    veths: Vec<String>,
}

/// The shaping [`EmulatedLan::shaped`] asks for first: 5 ms each way, 100 mbit.
pub const LAN_NETEM: &str = "netem delay 5ms rate 100mbit";
/// What it falls back to where the kernel has no netem: 100 mbit, no added delay.
pub const LAN_TBF: &str = "tbf rate 100mbit burst 32kbit latency 50ms";

impl EmulatedLan {
    /// Builds `hosts` namespaces shaped with [`LAN_NETEM`], or with [`LAN_TBF`] on a kernel
    /// without netem (as on this project's CI machines); the second value says which, for the
    /// caller to report.
    pub fn shaped(hosts: usize) -> Result<(Self, &'static str), NetemError> {
        match Self::create(hosts, LAN_NETEM) {
            Ok(lan) => Ok((lan, LAN_NETEM)),
            Err(e) if e.to_string().contains("lacks that qdisc") => {
                Ok((Self::create(hosts, LAN_TBF)?, LAN_TBF))
            }
            Err(e) => Err(e),
        }
    }

    /// Builds `hosts` namespaces on one switch, each linked to it by a veth pair whose ends both
    /// carry `qdisc` (what follows `tc qdisc add dev X root`, e.g. `netem delay 5ms rate 100mbit`).
    /// Hosts reach each other and this namespace; host `i` is `10.N.i.2` in `10.N.0.0/16`.
    pub fn create(hosts: usize, qdisc: &str) -> Result<Self, NetemError> {
        let mut lan = Self { hosts: Vec::new(), bridge: None, veths: Vec::new() };
        // A private /16 per LAN (10.200-249.x), claimed by creating its bridge: a name that
        // exists already belongs to another LAN, whose network is then skipped.
        let tag = std::process::id() % 50;
        let mut net = None;
        for k in 0..50u32 {
            let candidate = 200 + ((tag + k) % 50) as u8;
            let bridge = format!("plkbr{candidate}");
            if run(&["ip", "link", "add", &bridge, "type", "bridge"]).is_ok() {
                lan.bridge = Some(bridge);
                net = Some(candidate);
                break;
            }
        }
        let (Some(net), Some(bridge)) = (net, lan.bridge.clone()) else {
            // Either every network is taken or bridges cannot be made: say which.
            run(&["ip", "link", "add", "plkbrtest", "type", "bridge"])?;
            let _ = run(&["ip", "link", "del", "plkbrtest"]);
            return Err(NetemError::Failed {
                command: "ip link add plkbr* type bridge".into(),
                stderr: "all 50 emulated networks are in use".into(),
                hint: "",
            });
        };
        run(&["ip", "addr", "add", &format!("10.{net}.255.254/16"), "dev", &bridge])?;
        run(&["ip", "link", "set", &bridge, "up"])?;
        for i in 0..hosts {
            let (netns, outer, inner) =
                (format!("plk{net}n{i}"), format!("plk{net}a{i}"), format!("plk{net}b{i}"));
            let there = Ipv4Addr::new(10, net, i as u8, 2);
            // A namespace left by a killed run of the same network goes first.
            let _ = Command::new("ip").args(["netns", "del", &netns]).output();
            run(&["ip", "netns", "add", &netns])?;
            lan.hosts.push(Host { netns: netns.clone(), addr: IpAddr::V4(there) });
            run(&["ip", "link", "add", &outer, "type", "veth", "peer", "name", &inner])?;
            lan.veths.push(outer.clone());
            run(&["ip", "link", "set", &inner, "netns", &netns])?;
            run(&["ip", "link", "set", &outer, "master", &bridge])?;
            run(&["ip", "link", "set", &outer, "up"])?;
            run(&["ip", "-n", &netns, "addr", "add", &format!("{there}/16"), "dev", &inner])?;
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

    /// Cuts host `i`'s link (its switch port goes down) or restores it.
    pub fn set_link(&self, i: usize, up: bool) -> Result<(), NetemError> {
        let outer = self.veths.get(i).ok_or_else(|| NetemError::Failed {
            command: format!("set_link({i})"),
            stderr: format!("the LAN has {} hosts", self.veths.len()),
            hint: "",
        })?;
        run(&["ip", "link", "set", outer, if up { "up" } else { "down" }])
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
        if let Some(bridge) = &self.bridge {
            let _ = Command::new("ip").args(["link", "del", bridge]).output();
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
