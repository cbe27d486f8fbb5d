//! Peers that nobody here wrote: SIPp (Debian package sip-tester), Kamailio (with its TLS
//! module, package kamailio-tls-modules), sipsak and baresip (Debian package baresip-core), and
//! Redis with Redis Sentinel (packages redis-server and redis-sentinel), the store of a cluster.
//! Interoperating with them is what the interop, flow and authentication tests check, so a
//! missing peer fails the test that needs it with a message saying how to install it
//! (`scripts/test.sh` does): these tests never pass by skipping.

pub mod baresip;
pub mod kamailio;
pub mod redis;
pub mod sipp;
pub mod sipsak;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::proxy::Proxy;

/// What to do when a peer program is missing.
pub const INSTALL_HINT: &str = "run scripts/test.sh or apt-get install -y sip-tester kamailio \
     kamailio-tls-modules sipsak baresip-core redis-server redis-sentinel";

/// The full path of a peer program. A missing one fails the test with [`INSTALL_HINT`].
pub fn require(program: &str) -> PathBuf {
    find_program(program).unwrap_or_else(|| panic!("{program} not found: {INSTALL_HINT}"))
}

/// Look `program` up in PATH, then in the sbin directories (Kamailio lives in /usr/sbin, which
/// is not on every PATH).
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// One peer test at a time: each runs its peers at a fixed call rate and judges them by zero
/// failed calls, which is easier to trust on a small shared machine when the tests of one
/// binary do not also compete with each other for its two cores.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Socket buffer size asked of SIPp and sipshard (the kernel caps it at net.core.rmem_max and
/// wmem_max), so that a peer starved of CPU for a moment queues datagrams instead of losing
/// them. (A lost 200 can make SIPp's built-in uac take the retransmitted INVITE 200 for the
/// BYE's and end a call its uas then fails.)
pub const SOCKET_BUFFER: usize = 4 << 20;

/// sipshard as the peer tests run it: on `port`, its log in the test's directory `dir` beside
/// the peers' logs, with [`SOCKET_BUFFER`] socket buffers.
pub fn sipshard(dir: &Path, port: u16, args: &[&str]) -> Proxy {
    Proxy::builder()
        .port(port)
        .dir(dir)
        .socket_buffers(SOCKET_BUFFER)
        .args(args)
        .start()
}
