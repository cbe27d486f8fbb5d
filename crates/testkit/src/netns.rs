//! A real NAT for tests, in network namespaces the test creates and removes: a "LAN" namespace
//! with a private address, a "NAT" namespace that masquerades it with nftables, and a "WAN"
//! namespace on the other side (where sipshard and the callers live).
//!
//! ```text
//!   lan  10.200.N.2 --- 10.200.N.1  nat  198.18.N.1 --- 198.18.N.2  wan
//!                                (masquerade)
//! ```
//!
//! Every packet stays inside these namespaces (the private and benchmark ranges are used only
//! there). Sockets are opened inside a namespace by a thread that enters it (`setns` moves only
//! the calling thread), and keep belonging to it when handed back. Needs root, `ip` (iproute2)
//! and `nft` (nftables); a missing one fails the test saying so. Dropping the [`Nat`] deletes
//! the namespaces, and the links with them.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Three namespaces joined by two links, the middle one a NAT.
pub struct Nat {
    pub lan: String,
    pub nat: String,
    pub wan: String,
    /// The subnet number N of the addresses.
    pub net: u8,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Nat {
    /// Build the topology; UDP flows through the NAT are forgotten after `udp_timeout_secs`
    /// without a packet (conntrack's timeouts in the NAT namespace), like a home router's.
    pub fn new(udp_timeout_secs: u32) -> Nat {
        require("ip", "iproute2");
        require("nft", "nftables");
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let net = ((pid.wrapping_mul(7) + k * 13) % 200 + 20) as u8;
        let tag = format!("{}{}", pid % 100_000, k);
        let nat = Nat {
            lan: format!("ssl{tag}"),
            nat: format!("ssn{tag}"),
            wan: format!("ssw{tag}"),
            net,
        };
        nat.build(udp_timeout_secs);
        nat
    }

    /// The UA's address in the LAN.
    pub fn lan_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 200, self.net, 2)
    }

    /// The NAT's public address, which the LAN's packets leave with.
    pub fn public_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.net, 1)
    }

    /// The address of the WAN namespace.
    pub fn wan_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.net, 2)
    }

    fn build(&self, udp_timeout_secs: u32) {
        let n = self.net;
        for ns in [&self.lan, &self.nat, &self.wan] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        let (l, nl, w, nw) = ("lan0", "nlan0", "wan0", "nwan0");
        ip(&[
            "-n", &self.lan, "link", "add", l, "type", "veth", "peer", "name", nl, "netns",
            &self.nat,
        ]);
        ip(&[
            "-n", &self.wan, "link", "add", w, "type", "veth", "peer", "name", nw, "netns",
            &self.nat,
        ]);
        let lan_ip = format!("10.200.{n}.2/24");
        let nat_lan = format!("10.200.{n}.1/24");
        let nat_wan = format!("198.18.{n}.1/24");
        let wan_ip = format!("198.18.{n}.2/24");
        for (ns, dev, addr) in [
            (&self.lan, l, &lan_ip),
            (&self.nat, nl, &nat_lan),
            (&self.nat, nw, &nat_wan),
            (&self.wan, w, &wan_ip),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        ip(&[
            "-n",
            &self.lan,
            "route",
            "add",
            "default",
            "via",
            &format!("10.200.{n}.1"),
        ]);
        exec(&self.nat, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        for key in [
            "nf_conntrack_udp_timeout",
            "nf_conntrack_udp_timeout_stream",
        ] {
            let set = format!("net.netfilter.{key}={udp_timeout_secs}");
            exec(&self.nat, &["sysctl", "-qw", &set]);
        }
        let rules = format!(
            "table ip nat {{ chain post {{ type nat hook postrouting priority 100; \
             oifname \"{nw}\" masquerade; }}; }}"
        );
        exec(&self.nat, &["nft", &rules]);
    }

    /// A UDP socket bound to `addr` inside namespace `ns`.
    pub fn udp_socket(&self, ns: &str, addr: SocketAddr) -> UdpSocket {
        within(ns, || {
            UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr} in {ns}: {e}"))
        })
    }
}

/// Run `f` on a thread inside network namespace `ns` (what it opens stays there) and return
/// its result.
pub fn within<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: a valid namespace descriptor; only this thread changes namespace.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("a thread in the namespace")
    })
}

impl Drop for Nat {
    fn drop(&mut self) {
        for ns in [&self.lan, &self.nat, &self.wan] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// A command prefix that runs a program inside namespace `ns`.
pub fn in_netns(ns: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]);
    c
}

fn require(program: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`{program}` is missing: install it with apt-get install -y {package} (scripts/test.sh does, as root)"
    );
}

fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

fn exec(ns: &str, args: &[&str]) {
    run(in_netns(ns).args(args));
}

fn run(c: &mut Command) {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
