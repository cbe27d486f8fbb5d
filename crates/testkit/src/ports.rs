//! The one free-port picker of the tests.
//!
//! Servers in these tests (sipshard, SIPp agents, Kamailio, the load generator's answering
//! side, metrics endpoints) need a port the test knows before they start, so a port is picked,
//! checked free, and released for the server to bind. Three things keep two servers off one
//! port:
//!
//! - every port handed out is remembered for the life of the test process, so two tests of one
//!   binary (which run in parallel threads) never get the same one, even after the first
//!   server has exited;
//! - a port counts as free only if both UDP and TCP binds on 127.0.0.1 succeed (sipshard's
//!   metrics endpoint is TCP);
//! - picks come from below Linux's default ephemeral range (32768-60999), where the kernel
//!   puts the sockets of clients bound to port 0 (every [`crate::Ua`]): a client socket
//!   created between the pick and the server's bind cannot take the port.
//!
//! The search starts at a point drawn from the process id and the clock, so test binaries
//! running at the same time (other checkouts on one machine) rarely try the same ports.

use std::collections::HashSet;
use std::net::{TcpListener, UdpSocket};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where [`free_port`] and [`free_ports`] pick: below the ephemeral range.
const GENERAL: (u16, u16) = (20_000, 32_000);

/// Where [`free_low_port`] picks: four digits, clear of SIPp's media (6000+) and control
/// (8888+) ports as far as a handful of SIPp instances go; the bind test catches the rest.
const LOW: (u16, u16) = (7_100, 8_800);

/// Ports handed out by this test process.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A free port on 127.0.0.1 (UDP and TCP).
pub fn free_port() -> u16 {
    pick(GENERAL, 1)
}

/// The first of `n` consecutive free ports on 127.0.0.1 (a server with several sockets, such
/// as the load generator's `--ports`, or a proxy and its metrics endpoint side by side).
pub fn free_ports(n: u16) -> u16 {
    pick(GENERAL, n)
}

/// A free port below 10000. sipsak 0.9.8.1 keeps only the first four digits of a five-digit
/// port of its `-s` URI when it writes the Request-URI and To (observed:
/// `sipsak -s sip:127.0.0.1:25060` sends `OPTIONS sip:127.0.0.1:2506`), so whatever sipsak
/// talks to must listen on a port of at most four digits.
pub fn free_low_port() -> u16 {
    pick(LOW, 1)
}

/// Wait until something has bound `port` on 127.0.0.1, over UDP or TCP (our own bind attempt
/// fails): a SIPp uas is ready for calls once it has.
pub fn wait_bound(port: u16, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        // Over UDP or TCP (a SIPp agent with `-t t1` binds TCP only).
        if UdpSocket::bind(("127.0.0.1", port)).is_err()
            || TcpListener::bind(("127.0.0.1", port)).is_err()
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn is_free(port: u16) -> bool {
    UdpSocket::bind(("127.0.0.1", port)).is_ok() && TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// `n` consecutive ports in `lo..hi`, none handed out before and all free now; claimed.
fn pick((lo, hi): (u16, u16), n: u16) -> u16 {
    assert!(n >= 1 && n < hi - lo, "cannot pick {n} ports in {lo}..{hi}");
    let span = u32::from(hi - lo - n + 1);
    let seed = u64::from(std::process::id())
        ^ SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    let start = (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32 % span;
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed_out = guard.get_or_insert_with(HashSet::new);
    for i in 0..span {
        let base = lo + ((start + i) % span) as u16;
        let ports = base..base + n;
        if ports
            .clone()
            .all(|p| !handed_out.contains(&p) && is_free(p))
        {
            handed_out.extend(ports);
            return base;
        }
    }
    panic!("no {n} consecutive free ports in {lo}..{hi}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_never_handed_out_twice() {
        let mut seen = HashSet::new();
        for _ in 0..50 {
            assert!(seen.insert(free_port()));
        }
        let base = free_ports(4);
        for p in base..base + 4 {
            assert!((GENERAL.0..GENERAL.1).contains(&p));
            assert!(seen.insert(p), "{p} handed out twice");
        }
        let low = free_low_port();
        assert!((LOW.0..LOW.1).contains(&low));
        assert!(seen.insert(low));
    }
}
