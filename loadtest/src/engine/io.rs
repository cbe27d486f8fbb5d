//! UDP sockets of one worker: batched receive (`recvmmsg`), batched send (`sendmmsg`) and a
//! readiness wait (`epoll_pwait2`, nanosecond timeout) that doubles as the pacing sleep.
//!
//! A worker owns several sockets on distinct local ports so that a proxy hashing flows (source
//! address and port) over its shards sees many flows. Outgoing datagrams are appended to a
//! per-socket arena during an event-loop turn and flushed once per turn with one `sendmmsg` per
//! socket; the arenas and header arrays are reused, so the steady state allocates nothing.
//! The kernel-facing part of the batches is the workspace's shared `mmsg` crate (crates/mmsg).

use std::io::{self, ErrorKind};
use std::mem;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

use mmsg::{RecvHeaders, SendHeaders, Wait};
use sipshard::sip::Transport;
use socket2::{Domain, Protocol, Socket, Type};

use super::stream::{self, Stream};
use super::tls::{self as tls_io, Handshake};
use crate::tls::Tls;

/// Datagrams taken per `recvmmsg` / given per `sendmmsg`.
pub const BATCH: usize = 64;
/// Largest datagram accepted (RFC 3261 section 18.1.1 keeps UDP messages under the path MTU;
/// anything up to this size is still read whole).
pub const MAX_DATAGRAM: usize = 8192;
/// Socket buffers asked for: bursts of a few thousand datagrams must not be dropped by the
/// kernel on our side, or we would measure our own drops.
const SOCKET_BUFFER: usize = 8 << 20;

/// Datagrams waiting to be sent on one socket.
#[derive(Default)]
pub struct OutQueue {
    arena: Vec<u8>,
    /// (destination, start, end) into the arena.
    items: Vec<(SocketAddr, u32, u32)>,
    /// First item not yet sent (a full socket buffer leaves the rest for the next flush).
    sent: usize,
    /// On a connection: arena bytes already written (a message may go out in pieces).
    written: usize,
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
    /// Owns the descriptor `fd` (UDP; a connection's is owned by `stream`).
    _sock: Option<UdpSocket>,
    pub fd: RawFd,
    pub local: SocketAddr,
    pub out: OutQueue,
    /// `--transport tcp` or `tls`: the connection to the target this socket is (None: a UDP
    /// socket).
    pub stream: Option<Stream>,
    /// The connection broke: nothing more is read or written on it.
    pub closed: bool,
}

/// The received datagrams of one `recvmmsg`, with the kernel's receive timestamps.
pub struct RxBatch {
    /// BATCH slots of MAX_DATAGRAM bytes, back to back.
    bufs: Vec<u8>,
    /// With room for the timestamps (`bind` turns SO_TIMESTAMPNS on).
    headers: RecvHeaders,
}

impl RxBatch {
    pub fn new() -> RxBatch {
        RxBatch {
            bufs: vec![0; BATCH * MAX_DATAGRAM],
            headers: RecvHeaders::new(BATCH, true),
        }
    }

    /// Datagram `i` (mutable: the SIP parser normalises in place), its source, and when the
    /// kernel received it (CLOCK_REALTIME ns, 0 if unknown).
    pub fn get(&mut self, i: usize) -> (&mut [u8], Option<SocketAddr>, u64) {
        let m = self.headers.meta()[i];
        let start = i * MAX_DATAGRAM;
        (
            &mut self.bufs[start..start + m.len],
            m.src,
            m.stamp_ns.unwrap_or(0),
        )
    }

    /// Receive up to [`BATCH`] datagrams from `fd` without blocking; returns how many.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let slots = self.bufs.chunks_exact_mut(MAX_DATAGRAM);
        match self.headers.recv(fd, slots, Wait::No) {
            Ok(n) => Ok(n),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => Ok(0),
            Err(e) => Err(e),
        }
    }
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
    tx: SendHeaders,
    pwait2: bool,
    /// The TLS handshakes that opened the connections (empty but over TLS).
    pub handshakes: Vec<Handshake>,
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

fn udp_sock(local: SocketAddr) -> io::Result<Sock> {
    let ip = local.ip();
    let port = local.port();
    let sock = bind(local)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {ip}:{port}: {e}")))?;
    Ok(Sock {
        fd: sock.as_raw_fd(),
        local: sock.local_addr()?,
        _sock: Some(sock),
        out: OutQueue::default(),
        stream: None,
        closed: false,
    })
}

fn tcp_sock(local: SocketAddr, target: SocketAddr) -> io::Result<Sock> {
    let tcp = stream::connect(local, target).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot connect from {local} to {target}: {e}"),
        )
    })?;
    Ok(Sock {
        fd: tcp.as_raw_fd(),
        local: tcp.local_addr()?,
        _sock: None,
        out: OutQueue::default(),
        stream: Some(Stream::new(tcp, target)),
        closed: false,
    })
}

/// Over TLS: the connection, its handshake done and confirmed (see `tls.rs`), before the run.
fn tls_sock(local: SocketAddr, target: SocketAddr, tls: &Tls) -> io::Result<(Sock, Handshake)> {
    let started = std::time::Instant::now();
    let fail = |what: &str, e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("{what} from {local} to {target} failed: {e}"),
        )
    };
    let mut tcp = stream::connect_blocking(local, target).map_err(|e| fail("connecting", e))?;
    let (conn, handshake) =
        tls_io::open(&mut tcp, tls, started, stream::CONNECT_TIMEOUT).map_err(|e| {
            let what = format!("the TLS handshake (verifying the name {})", tls.name);
            fail(&what, e)
        })?;
    tcp.set_nonblocking(true)?;
    let sock = Sock {
        fd: tcp.as_raw_fd(),
        local: tcp.local_addr()?,
        _sock: None,
        out: OutQueue::default(),
        stream: Some(Stream::with_tls(tcp, target, conn)),
        closed: false,
    };
    Ok((sock, handshake))
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

    /// Bind one UDP socket per entry of `ports` (0 = any free port) on `ip`.
    #[cfg(test)]
    pub fn bind(ip: std::net::IpAddr, ports: &[u16]) -> io::Result<Io> {
        Io::open(Transport::Udp, ip, ports, None, None)
    }

    /// One socket per entry of `ports` on `ip`: a UDP socket, or over TCP a connection from
    /// that port to `target` (over TLS with its handshake done, kept in `handshakes`).
    pub fn open(
        transport: Transport,
        ip: std::net::IpAddr,
        ports: &[u16],
        target: Option<SocketAddr>,
        tls: Option<&Tls>,
    ) -> io::Result<Io> {
        // SAFETY: plain syscall.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epfd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut socks = Vec::with_capacity(ports.len());
        let mut handshakes = Vec::new();
        for (i, &port) in ports.iter().enumerate() {
            let local = SocketAddr::new(ip, port);
            let sock = match (transport, target, tls) {
                (Transport::Udp, _, _) => udp_sock(local),
                (Transport::Tls, Some(target), Some(tls)) => {
                    tls_sock(local, target, tls).map(|(sock, handshake)| {
                        handshakes.push(handshake);
                        sock
                    })
                }
                (Transport::Tcp, Some(target), _) => tcp_sock(local, target),
                _ => Err(io::Error::other(
                    "a connection needs a target (and TLS settings)",
                )),
            }?;
            let mut ev = libc::epoll_event {
                events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
                u64: i as u64,
            };
            // SAFETY: valid epoll fd and socket fd.
            if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, sock.fd, &mut ev) } != 0 {
                return Err(io::Error::last_os_error());
            }
            socks.push(sock);
        }
        Ok(Io {
            // SAFETY: all-zero epoll_event is valid.
            events: vec![unsafe { mem::zeroed() }; ports.len().max(1)],
            socks,
            epfd,
            tx: SendHeaders::new(BATCH),
            pwait2: true,
            handshakes,
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

    /// Send what is queued on every socket. Returns (messages sent, messages dropped on error).
    pub fn flush(&mut self) -> (u64, u64) {
        let mut sent = 0;
        let mut dropped = 0;
        for s in &mut self.socks {
            let (a, b) = if s.stream.is_some() {
                flush_stream(s)
            } else {
                flush_one(s, &mut self.tx)
            };
            sent += a;
            dropped += b;
        }
        (sent, dropped)
    }

    /// Stop watching a connection that broke (a closed socket would be readable forever).
    pub fn close(&mut self, i: usize) {
        let s = &mut self.socks[i];
        if !s.closed {
            s.closed = true;
            // SAFETY: valid epoll fd; the socket is still open (its stream owns it).
            unsafe { libc::epoll_ctl(self.epfd, libc::EPOLL_CTL_DEL, s.fd, std::ptr::null_mut()) };
        }
    }

    /// Messages queued and not yet written, counting a TLS connection with encrypted bytes
    /// still to write as one (the loop must come back to write them).
    pub fn pending(&self) -> usize {
        self.socks
            .iter()
            .map(|s| {
                let backlog = s
                    .stream
                    .as_ref()
                    .is_some_and(|st| st.backlog() && !s.closed);
                s.out.pending() + usize::from(backlog)
            })
            .sum()
    }
}

fn flush_one(s: &mut Sock, tx: &mut SendHeaders) -> (u64, u64) {
    let q = &mut s.out;
    let mut sent = 0u64;
    let mut dropped = 0u64;
    while q.sent < q.items.len() {
        let arena = &q.arena;
        let datagrams = q.items[q.sent..]
            .iter()
            .map(|&(dest, start, end)| (&arena[start as usize..end as usize], dest));
        match tx.send(s.fd, datagrams) {
            Ok(n) => {
                q.sent += n;
                sent += n as u64;
            }
            // Socket buffer full: keep the rest for the next turn.
            Err(e) if e.kind() == ErrorKind::WouldBlock => return (sent, dropped),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // ECONNREFUSED from an earlier ICMP, unreachable, ...: drop the first datagram
            // (the others may be fine) and go on; retransmission timers cover the loss.
            Err(_) => {
                q.sent += 1;
                dropped += 1;
            }
        }
    }
    q.clear();
    (sent, dropped)
}

/// Write what is queued on a connection, in order; a message counts as sent once its last byte
/// is written. A broken connection drops everything queued on it.
fn flush_stream(s: &mut Sock) -> (u64, u64) {
    let q = &mut s.out;
    let Some(st) = s.stream.as_mut().filter(|_| !s.closed) else {
        let dropped = q.pending() as u64;
        q.clear();
        return (0, dropped);
    };
    match st.write_some(&q.arena[q.written..]) {
        Ok(n) => q.written += n,
        Err(_) => {
            s.closed = true;
            let dropped = q.pending() as u64;
            q.clear();
            return (0, dropped);
        }
    }
    let before = q.sent;
    while q.sent < q.items.len() && q.items[q.sent].2 as usize <= q.written {
        q.sent += 1;
    }
    let sent = (q.sent - before) as u64;
    if q.sent == q.items.len() {
        q.clear();
    }
    (sent, 0)
}

impl OutQueue {
    fn clear(&mut self) {
        self.items.clear();
        self.arena.clear();
        self.sent = 0;
        self.written = 0;
    }
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
