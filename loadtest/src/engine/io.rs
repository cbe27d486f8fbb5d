//! UDP sockets of one worker: batched receive (`recvmmsg`), batched send (`sendmmsg`) and a
//! readiness wait (`epoll_pwait2`, nanosecond timeout) that doubles as the pacing sleep.
//!
//! A worker owns several sockets on distinct local ports so that a proxy hashing flows (source
//! address and port) over its shards sees many flows. Outgoing datagrams are appended to a
//! per-socket arena during an event-loop turn and flushed once per turn with one `sendmmsg` per
//! socket; the arenas and header arrays are reused, so the steady state allocates nothing.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

/// Datagrams taken per `recvmmsg` / given per `sendmmsg`.
pub const BATCH: usize = 64;
/// Largest datagram accepted (RFC 3261 section 18.1.1 keeps UDP messages under the path MTU;
/// anything up to this size is still read whole).
pub const MAX_DATAGRAM: usize = 8192;
/// Socket buffers asked for: bursts of a few thousand datagrams must not be dropped by the
/// kernel on our side, or we would measure our own drops.
const SOCKET_BUFFER: usize = 8 << 20;

pub fn to_raw(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in, sin) };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in6, sin6) };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

pub fn from_raw(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let sin = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let sin6 = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Datagrams waiting to be sent on one socket.
#[derive(Default)]
pub struct OutQueue {
    arena: Vec<u8>,
    /// (destination, start, end) into the arena.
    items: Vec<(SocketAddr, u32, u32)>,
    /// First item not yet sent (a full socket buffer leaves the rest for the next flush).
    sent: usize,
}

impl OutQueue {
    /// The arena to write the next datagram into; call [`commit`](Self::commit) afterwards.
    #[inline]
    pub fn arena(&mut self) -> (&mut Vec<u8>, usize) {
        let start = self.arena.len();
        (&mut self.arena, start)
    }

    #[inline]
    pub fn commit(&mut self, dest: SocketAddr, start: usize) {
        let end = self.arena.len();
        if end > start {
            self.items.push((dest, start as u32, end as u32));
        }
    }

    #[inline]
    pub fn push(&mut self, dest: SocketAddr, bytes: &[u8]) {
        let start = self.arena.len();
        self.arena.extend_from_slice(bytes);
        self.commit(dest, start);
    }

    pub fn pending(&self) -> usize {
        self.items.len() - self.sent
    }
}

pub struct Sock {
    /// Owns the descriptor `fd`.
    _sock: UdpSocket,
    pub fd: RawFd,
    pub local: SocketAddr,
    pub out: OutQueue,
}

/// Scratch arrays for one `recvmmsg` / `sendmmsg` call.
struct Batch {
    hdrs: Vec<libc::mmsghdr>,
    iov: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_storage>,
}

// SAFETY: the raw pointers in the headers are scratch, rewritten before every syscall to point
// at buffers owned by the same worker; nothing is shared between threads through them.
unsafe impl Send for Batch {}

impl Batch {
    fn new() -> Batch {
        // SAFETY: all-zero mmsghdr, iovec and sockaddr_storage are valid (null pointers, 0 lengths).
        unsafe {
            Batch {
                hdrs: vec![mem::zeroed(); BATCH],
                iov: vec![mem::zeroed(); BATCH],
                addrs: vec![mem::zeroed(); BATCH],
            }
        }
    }
}

/// Room for one `SCM_TIMESTAMPNS` control message, in u64s for alignment.
const CTRL_WORDS: usize = 8;

/// The received datagrams of one `recvmmsg`, with the kernel's receive timestamps.
pub struct RxBatch {
    bufs: Vec<u8>,
    lens: [usize; BATCH],
    from: [Option<SocketAddr>; BATCH],
    /// When the kernel queued each datagram (CLOCK_REALTIME ns; 0 if unknown).
    stamps: [u64; BATCH],
    ctrl: Vec<u64>,
    count: usize,
    batch: Batch,
}

impl RxBatch {
    pub fn new() -> RxBatch {
        RxBatch {
            bufs: vec![0; BATCH * MAX_DATAGRAM],
            lens: [0; BATCH],
            from: [None; BATCH],
            stamps: [0; BATCH],
            ctrl: vec![0; BATCH * CTRL_WORDS],
            count: 0,
            batch: Batch::new(),
        }
    }

    /// Datagram `i` (mutable: the SIP parser normalises in place), its source, and when the
    /// kernel received it (CLOCK_REALTIME ns, 0 if unknown).
    pub fn get(&mut self, i: usize) -> (&mut [u8], Option<SocketAddr>, u64) {
        let start = i * MAX_DATAGRAM;
        (
            &mut self.bufs[start..start + self.lens[i]],
            self.from[i],
            self.stamps[i],
        )
    }

    /// Receive up to [`BATCH`] datagrams from `fd` without blocking; returns how many.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let b = &mut self.batch;
        for i in 0..BATCH {
            b.iov[i] = libc::iovec {
                // SAFETY: in bounds: bufs holds BATCH * MAX_DATAGRAM bytes.
                iov_base: unsafe { self.bufs.as_mut_ptr().add(i * MAX_DATAGRAM) } as *mut _,
                iov_len: MAX_DATAGRAM,
            };
            let h = &mut b.hdrs[i].msg_hdr;
            h.msg_name = &mut b.addrs[i] as *mut _ as *mut _;
            h.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut b.iov[i];
            h.msg_iovlen = 1;
            // SAFETY: in bounds: ctrl holds BATCH * CTRL_WORDS words.
            h.msg_control = unsafe { self.ctrl.as_mut_ptr().add(i * CTRL_WORDS) } as *mut _;
            h.msg_controllen = CTRL_WORDS * 8;
            h.msg_flags = 0;
            b.hdrs[i].msg_len = 0;
        }
        // SAFETY: every header points into buffers that outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                b.hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.count = 0;
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        let n = n as usize;
        for i in 0..n {
            self.lens[i] = (b.hdrs[i].msg_len as usize).min(MAX_DATAGRAM);
            self.from[i] = from_raw(&b.addrs[i]);
            self.stamps[i] = rx_stamp(&b.hdrs[i].msg_hdr);
        }
        self.count = n;
        Ok(n)
    }
}

/// The `SCM_TIMESTAMPNS` of a received message, 0 when absent.
fn rx_stamp(h: &libc::msghdr) -> u64 {
    // SAFETY: the kernel filled msg_control/msg_controllen; the CMSG macros stay within them.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                return ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    0
}

impl Default for RxBatch {
    fn default() -> Self {
        RxBatch::new()
    }
}

/// The sockets of one worker and their readiness poller.
pub struct Io {
    pub socks: Vec<Sock>,
    epfd: RawFd,
    events: Vec<libc::epoll_event>,
    tx: Batch,
    pwait2: bool,
}

fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_nonblocking(true)?;
    // Root may exceed net.core.{r,w}mem_max with the FORCE variants; others get what they get.
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        let v = SOCKET_BUFFER as libc::c_int;
        // SAFETY: setsockopt with a valid fd and an int option value.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                force,
                &v as *const _ as *const _,
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            // SAFETY: as above.
            unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    plain,
                    &v as *const _ as *const _,
                    mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
        }
    }
    // Kernel receive timestamps: how long a datagram waited for us is the generator's own lag
    // on the receiving side, which would otherwise hide inside the measured latency.
    let on: libc::c_int = 1;
    // SAFETY: setsockopt with a valid fd and an int option value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            &on as *const _ as *const _,
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// The kernel's count of datagrams dropped at socket `fd` (0 if it cannot be read).
fn socket_drops(fd: RawFd) -> u32 {
    let mut info = [0u32; libc::SK_MEMINFO_DROPS as usize + 1];
    let mut len = mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info` and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr() as *mut _,
            &mut len,
        )
    };
    if rc == 0 && len as usize >= mem::size_of_val(&info) {
        info[libc::SK_MEMINFO_DROPS as usize]
    } else {
        0
    }
}

impl Io {
    /// Datagrams the kernel dropped at our sockets so far because their receive buffers were
    /// full (`SO_MEMINFO`'s drop count): the generator did not read in time. A generator that
    /// loses what it is sent must say so, or the target would be blamed for the retransmissions.
    pub fn socket_drops(&self) -> u64 {
        self.socks
            .iter()
            .map(|s| u64::from(socket_drops(s.fd)))
            .sum()
    }

    /// Bind one socket per entry of `ports` (0 = any free port) on `ip`.
    pub fn bind(ip: std::net::IpAddr, ports: &[u16]) -> io::Result<Io> {
        // SAFETY: plain syscall.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epfd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut socks = Vec::with_capacity(ports.len());
        for (i, &port) in ports.iter().enumerate() {
            let sock = bind(SocketAddr::new(ip, port))
                .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {ip}:{port}: {e}")))?;
            let fd = sock.as_raw_fd();
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: i as u64,
            };
            // SAFETY: valid epoll fd and socket fd.
            if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let local = sock.local_addr()?;
            socks.push(Sock {
                _sock: sock,
                fd,
                local,
                out: OutQueue::default(),
            });
        }
        Ok(Io {
            // SAFETY: all-zero epoll_event is valid.
            events: vec![unsafe { mem::zeroed() }; ports.len().max(1)],
            socks,
            epfd,
            tx: Batch::new(),
            pwait2: true,
        })
    }

    /// Wait until a socket is readable or `timeout_ns` passes; returns the ready socket indices
    /// through `ready` (cleared first).
    pub fn wait(&mut self, timeout_ns: u64, ready: &mut Vec<usize>) -> io::Result<()> {
        ready.clear();
        let n = if self.pwait2 {
            let ts = libc::timespec {
                tv_sec: (timeout_ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (timeout_ns % 1_000_000_000) as libc::c_long,
            };
            // SAFETY: valid epoll fd and event buffer.
            let n = unsafe {
                libc::epoll_pwait2(
                    self.epfd,
                    self.events.as_mut_ptr(),
                    self.events.len() as libc::c_int,
                    &ts,
                    std::ptr::null(),
                )
            };
            if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
                self.pwait2 = false;
                return self.wait(timeout_ns, ready);
            }
            n
        } else {
            // Millisecond resolution: round up so we never spin on a sub-millisecond wait.
            let ms = timeout_ns.div_ceil(1_000_000).min(i32::MAX as u64) as libc::c_int;
            // SAFETY: as above.
            unsafe {
                libc::epoll_wait(
                    self.epfd,
                    self.events.as_mut_ptr(),
                    self.events.len() as libc::c_int,
                    ms,
                )
            }
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        ready.extend(self.events[..n as usize].iter().map(|e| e.u64 as usize));
        Ok(())
    }

    /// Send what is queued on every socket. Returns (datagrams sent, datagrams dropped on error).
    pub fn flush(&mut self) -> (u64, u64) {
        let mut sent = 0;
        let mut dropped = 0;
        for s in &mut self.socks {
            let (a, b) = flush_one(s, &mut self.tx);
            sent += a;
            dropped += b;
        }
        (sent, dropped)
    }

    pub fn pending(&self) -> usize {
        self.socks.iter().map(|s| s.out.pending()).sum()
    }
}

fn flush_one(s: &mut Sock, b: &mut Batch) -> (u64, u64) {
    let q = &mut s.out;
    let mut sent = 0u64;
    let mut dropped = 0u64;
    while q.sent < q.items.len() {
        let n = (q.items.len() - q.sent).min(BATCH);
        for i in 0..n {
            let (dest, start, end) = q.items[q.sent + i];
            let (ss, len) = to_raw(dest);
            b.addrs[i] = ss;
            b.iov[i] = libc::iovec {
                // SAFETY: start..end lies within the arena.
                iov_base: unsafe { q.arena.as_mut_ptr().add(start as usize) } as *mut _,
                iov_len: (end - start) as usize,
            };
            let h = &mut b.hdrs[i].msg_hdr;
            h.msg_name = &mut b.addrs[i] as *mut _ as *mut _;
            h.msg_namelen = len;
            h.msg_iov = &mut b.iov[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
        }
        // SAFETY: headers point into the arena and batch arrays, alive for the call.
        let rc = unsafe { libc::sendmmsg(s.fd, b.hdrs.as_mut_ptr(), n as libc::c_uint, 0) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                // Socket buffer full: keep the rest for the next turn.
                io::ErrorKind::WouldBlock => return (sent, dropped),
                io::ErrorKind::Interrupted => continue,
                // ECONNREFUSED from an earlier ICMP, unreachable, ...: drop the first datagram
                // (the others may be fine) and go on; retransmission timers cover the loss.
                _ => {
                    q.sent += 1;
                    dropped += 1;
                    continue;
                }
            }
        }
        q.sent += rc as usize;
        sent += rc as u64;
    }
    q.items.clear();
    q.arena.clear();
    q.sent = 0;
    (sent, dropped)
}

impl Drop for Io {
    fn drop(&mut self) {
        // SAFETY: we own this fd.
        unsafe { libc::close(self.epfd) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_address_round_trip() {
        for a in ["127.0.0.1:5060", "[::1]:5070", "[2001:db8::1]:1"] {
            let a: SocketAddr = a.parse().unwrap();
            assert_eq!(from_raw(&to_raw(a).0), Some(a));
        }
    }

    #[test]
    fn batched_send_and_receive_on_loopback() {
        let ip = "127.0.0.1".parse().unwrap();
        let mut a = Io::bind(ip, &[0, 0]).unwrap();
        let dest = a.socks[1].local;
        for i in 0..100u8 {
            a.socks[0].out.push(dest, &[i; 10]);
        }
        assert_eq!(a.pending(), 100);
        assert_eq!(a.flush(), (100, 0));
        let mut ready = Vec::new();
        a.wait(1_000_000_000, &mut ready).unwrap();
        assert_eq!(ready, vec![1]);
        let mut rx = RxBatch::new();
        let mut got = 0;
        while got < 100 {
            let n = rx.recv(a.socks[1].fd).unwrap();
            assert!(n > 0);
            for i in 0..n {
                let (d, from, stamp) = rx.get(i);
                assert!(stamp > 0, "no receive timestamp");
                assert_eq!(d, &[(got + i) as u8; 10]);
                assert_eq!(from, Some(a.socks[0].local));
            }
            got += n;
        }
        assert_eq!(rx.recv(a.socks[1].fd).unwrap(), 0);
    }
}
