//! Shared pieces of `udp-flood` and `udp-floor`: batches of datagram buffers for
//! recvmmsg/sendmmsg (the calls themselves are the workspace's `mmsg` crate, crates/mmsg), and
//! the /proc readings the benchmark reports (CPU time of the system under test, UDP drops per
//! port).

use std::collections::{HashMap, HashSet};
use std::io::{self, ErrorKind};
use std::mem::{size_of, zeroed};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub mod invite;
pub mod stream;
pub mod tls;
pub mod uring_bufs;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Make SIGTERM and SIGINT ask the tool to stop ([`stopped`]): the benchmarks stop their
/// forwarders with SIGTERM and read what they print on the way out.
pub fn stop_on_signals() {
    let handler = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, handler);
        libc::signal(libc::SIGINT, handler);
    }
}

/// Whether SIGTERM or SIGINT came since [`stop_on_signals`].
pub fn stopped() -> bool {
    STOP.load(Ordering::Relaxed)
}

pub use mmsg::Wait;
use mmsg::{RecvHeaders, SendHeaders};
use socket2::{Domain, Protocol, Socket, Type};

/// Memory of a set of processes, in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    /// Proportional set size: each shared page split between its sharers.
    pub pss: u64,
    pub rss: u64,
}

/// Sum of `Pss:` and `Rss:` of /proc/PID/smaps_rollup over `pids`.
pub fn memory_of(pids: &[u32]) -> Memory {
    let mut m = Memory::default();
    for pid in pids {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
            continue;
        };
        for line in text.lines() {
            let kib = |rest: &str| {
                rest.split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
                    * 1024
            };
            if let Some(rest) = line.strip_prefix("Pss:") {
                m.pss += kib(rest);
            } else if let Some(rest) = line.strip_prefix("Rss:") {
                m.rss += kib(rest);
            }
        }
    }
    m
}

/// Raise this process's open-file limit to at least `n` (as far as the hard limit allows, or
/// beyond it as root).
pub fn raise_open_files(n: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= n {
            return;
        }
        let want = libc::rlimit {
            rlim_cur: n,
            rlim_max: lim.rlim_max.max(n),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &want) != 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Largest datagram the tools handle.
pub const MAX_DATAGRAM: usize = 65_536;

/// A UDP socket bound to `addr`, with SO_RCVBUF set to `rcvbuf` bytes when given. With
/// `force` (the flooder's own sockets, never the system under test) SO_RCVBUFFORCE is tried
/// first, so that net.core.rmem_max does not cap it when running as root.
pub fn bind_udp(addr: SocketAddr, rcvbuf: Option<usize>, force: bool) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Some(bytes) = rcvbuf {
        if !(force && force_rcvbuf(&s, bytes)) {
            s.set_recv_buffer_size(bytes)?;
        }
    }
    s.bind(&addr.into())?;
    Ok(s.into())
}

fn force_rcvbuf(s: &Socket, bytes: usize) -> bool {
    let v = bytes.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: `v` is a plain int that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &v as *const libc::c_int as *const libc::c_void,
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

/// Receive buffers, and the kernel structures that point into them for one recvmmsg.
pub struct RecvBatch {
    pub bufs: Vec<Vec<u8>>,
    /// Without room for ancillary data: the tools ask for no timestamps.
    headers: RecvHeaders,
}

impl RecvBatch {
    pub fn new(batch: usize, buf_size: usize) -> RecvBatch {
        RecvBatch {
            bufs: (0..batch).map(|_| vec![0u8; buf_size]).collect(),
            headers: RecvHeaders::new(batch, false),
        }
    }

    pub fn capacity(&self) -> usize {
        self.bufs.len()
    }

    /// One recvmmsg into every slot: [`Wait::No`] polls, [`Wait::ForOne`] blocks for the first
    /// datagram, then takes what is queued. Returns how many arrived; `Ok(0)` when the socket
    /// would block or the receive timeout passed.
    pub fn recv(&mut self, fd: RawFd, wait: Wait) -> io::Result<usize> {
        let slots = self.bufs.iter_mut().map(|b| &mut b[..]);
        match self.headers.recv(fd, slots, wait) {
            Ok(n) => Ok(n),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Datagram `i` of the last receive.
    pub fn datagram(&self, i: usize) -> &[u8] {
        &self.bufs[i][..self.headers.meta()[i].len]
    }
}

/// Kernel structures for sendmmsg calls to one fixed destination.
pub struct SendBatch {
    to: SocketAddr,
    headers: SendHeaders,
}

impl SendBatch {
    pub fn new(batch: usize, to: SocketAddr) -> SendBatch {
        SendBatch {
            to,
            headers: SendHeaders::new(batch),
        }
    }

    /// Send `datagrams` (at most the batch size) with one non-blocking sendmmsg; returns how
    /// many the kernel took.
    pub fn send<'a>(
        &mut self,
        fd: RawFd,
        datagrams: impl Iterator<Item = &'a [u8]>,
    ) -> io::Result<usize> {
        let to = self.to;
        self.headers.send(fd, datagrams.map(|d| (d, to)))
    }

    /// Send datagrams `0..n`, skipping any the kernel refuses; returns (sent, failed).
    pub fn send_all<'a>(
        &mut self,
        fd: RawFd,
        n: usize,
        datagram: impl Fn(usize) -> &'a [u8],
    ) -> (u64, u64) {
        let to = self.to;
        self.headers.send_all(fd, n, |i| (datagram(i), to))
    }
}

/// Set SO_RCVTIMEO so a blocking receive returns now and then (to notice a stop request).
pub fn set_receive_timeout(sock: &UdpSocket, t: Duration) -> io::Result<()> {
    sock.set_read_timeout(Some(t))
}

/// Every process in the trees rooted at `roots` (the roots and all their descendants), read
/// from /proc. A Kamailio main process forks its workers, so its tree is what it consumes.
pub fn process_trees(roots: &[u32]) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(ppid) = stat_fields(pid).and_then(|f| f.get(1)?.parse::<u32>().ok()) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut seen = HashSet::new();
    let mut stack: Vec<u32> = roots.to_vec();
    while let Some(p) = stack.pop() {
        if seen.insert(p) {
            if let Some(c) = children.get(&p) {
                stack.extend(c);
            }
        }
    }
    let mut out: Vec<u32> = seen.into_iter().collect();
    out.sort_unstable();
    out
}

/// The fields of /proc/PID/stat after the command name: index 0 is the state, 1 the parent,
/// 11 utime and 12 stime (clock ticks).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 2..];
    Some(after.split_whitespace().map(str::to_owned).collect())
}

/// CPU time consumed so far by a set of processes, two ways.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuSample {
    /// Sum of every thread's run time from /proc/PID/task/TID/schedstat (nanoseconds).
    pub sched_ns: u64,
    /// utime + stime from /proc/PID/stat (clock ticks, all threads), in nanoseconds.
    pub stat_ns: u64,
}

pub fn cpu_of(pids: &[u32]) -> CpuSample {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let mut out = CpuSample::default();
    for &pid in pids {
        if let Some(f) = stat_fields(pid) {
            let ticks: u64 = f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0);
            out.stat_ns += ticks * 1_000_000_000 / hz;
        }
        if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for t in dir.flatten() {
                let p = t.path().join("schedstat");
                if let Ok(s) = std::fs::read_to_string(p) {
                    out.sched_ns += s
                        .split_whitespace()
                        .next()
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
        }
    }
    out
}

/// CPU time of this process (user + system), nanoseconds.
pub fn own_cpu_ns() -> u64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Datagrams the kernel dropped on every UDP socket bound to local `port` (the `drops` column
/// of /proc/net/udp and /proc/net/udp6: a full receive buffer, mostly).
pub fn udp_drops(port: u16) -> u64 {
    let mut total = 0;
    for file in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(s) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in s.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let Some(local) = cols.get(1) else { continue };
            let Some(p) = local
                .rsplit(':')
                .next()
                .and_then(|h| u16::from_str_radix(h, 16).ok())
            else {
                continue;
            };
            if p == port {
                total += cols.last().and_then(|d| d.parse::<u64>().ok()).unwrap_or(0);
            }
        }
    }
    total
}

/// Write `n` as exactly `out.len()` decimal digits (leading zeros; higher digits are cut).
#[inline]
pub fn write_digits(out: &mut [u8], mut n: u64) {
    for b in out.iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_fixed_width() {
        let mut b = [0u8; 6];
        write_digits(&mut b, 42);
        assert_eq!(&b, b"000042");
        write_digits(&mut b, 1_234_567);
        assert_eq!(&b, b"234567");
    }

    #[test]
    fn batches_round_trip_on_loopback() {
        let rx = bind_udp("127.0.0.1:0".parse().unwrap(), Some(1 << 20), true).unwrap();
        let tx = bind_udp("127.0.0.1:0".parse().unwrap(), None, false).unwrap();
        let mut send = SendBatch::new(8, rx.local_addr().unwrap());
        let msgs: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 10 + i as usize]).collect();
        assert_eq!(
            send.send(tx.as_raw_fd(), msgs.iter().map(|m| &m[..]))
                .unwrap(),
            5
        );
        set_receive_timeout(&rx, Duration::from_millis(500)).unwrap();
        let mut recv = RecvBatch::new(8, 1500);
        let mut got = 0;
        while got < 5 {
            let n = recv.recv(rx.as_raw_fd(), Wait::ForOne).unwrap();
            assert!(n > 0);
            for i in 0..n {
                assert_eq!(recv.datagram(i), &msgs[got + i][..]);
            }
            got += n;
        }
        assert!(udp_drops(rx.local_addr().unwrap().port()) == 0);
        let me = std::process::id();
        assert!(process_trees(&[me]).contains(&me));
        assert!(cpu_of(&[me]).sched_ns > 0);
    }
}
