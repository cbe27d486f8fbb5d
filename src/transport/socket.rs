//! Socket setup: one SO_REUSEPORT UDP socket per shard and listen address, optional random
//! steering with a classic BPF program, and the machine facts the core needs (interface
//! addresses, host name). Everything here runs once at start-up.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

/// How datagrams are spread over the shards' SO_REUSEPORT sockets (`--steering`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Steering {
    /// The kernel's 4-tuple hash: one peer always lands on the same shard.
    Flow,
    /// A classic BPF program returns a random socket index: even spread even with few peers.
    Random,
}

/// Bind `count` sockets to `addr` in one SO_REUSEPORT group (the kernel hands each datagram
/// to one of them). With `Steering::Random`, a cBPF program picks the socket at random.
/// Every socket reports its receive-queue drops (SO_RXQ_OVFL); with `timestamps`, it also
/// stamps each datagram with its arrival time (SO_TIMESTAMPNS), for overload shedding.
pub fn bind_group(
    addr: SocketAddr,
    count: usize,
    rcvbuf: Option<usize>,
    sndbuf: Option<usize>,
    steering: Steering,
    timestamps: bool,
) -> io::Result<Vec<Socket>> {
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        let s = group_member(addr, Type::DGRAM, Protocol::UDP)?;
        s.set_nonblocking(true)?;
        if let Some(n) = rcvbuf {
            s.set_recv_buffer_size(n)?;
        }
        if let Some(n) = sndbuf {
            s.set_send_buffer_size(n)?;
        }
        enable(&s, libc::SO_RXQ_OVFL)?;
        if timestamps {
            enable(&s, libc::SO_TIMESTAMPNS)?;
        }
        s.bind(&addr.into())?;
        sockets.push(s);
    }
    // Port 0 means "pick one": every later socket must join the first one's port.
    if addr.port() == 0 && count > 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a listen port of 0 cannot be shared by several shards",
        ));
    }
    if steering == Steering::Random && count > 1 {
        attach_random_steering(&sockets[0], count)?;
    }
    Ok(sockets)
}

/// Turn on a boolean SOL_SOCKET option that socket2 does not wrap.
fn enable(sock: &Socket, option: libc::c_int) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: the option value is a live c_int of the size given.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            &on as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// SO_ATTACH_REUSEPORT_CBPF with `A = random() % count; return A`: the returned value is the
/// index of the socket in the reuseport group (binding order). Spreads datagrams evenly even
/// when all of them come from one peer, which a 4-tuple hash would send to a single shard.
fn attach_random_steering(sock: &Socket, count: usize) -> io::Result<()> {
    // Ancillary data offsets (linux/filter.h): SKF_AD_OFF = -0x1000, SKF_AD_RANDOM = 56.
    const SKF_AD_OFF: i32 = -0x1000;
    const SKF_AD_RANDOM: i32 = 56;
    const BPF_LD: u16 = 0x00;
    const BPF_W: u16 = 0x00;
    const BPF_ABS: u16 = 0x20;
    const BPF_ALU: u16 = 0x04;
    const BPF_MOD: u16 = 0x90;
    const BPF_K: u16 = 0x00;
    const BPF_RET: u16 = 0x06;
    const BPF_A: u16 = 0x10;
    let mut program = [
        libc::sock_filter {
            code: BPF_LD | BPF_W | BPF_ABS,
            jt: 0,
            jf: 0,
            k: (SKF_AD_OFF + SKF_AD_RANDOM) as u32,
        },
        libc::sock_filter {
            code: BPF_ALU | BPF_MOD | BPF_K,
            jt: 0,
            jf: 0,
            k: count as u32,
        },
        libc::sock_filter {
            code: BPF_RET | BPF_A,
            jt: 0,
            jf: 0,
            k: 0,
        },
    ];
    let prog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: `prog` points at `program`, which outlives the call; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            &prog as *const libc::sock_fprog as *const libc::c_void,
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `count` TCP listening sockets on `addr`, one per shard, in one SO_REUSEPORT group: the
/// kernel spreads new connections over them.
pub fn bind_tcp_group(addr: SocketAddr, count: usize) -> io::Result<Vec<Socket>> {
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        let s = group_member(addr, Type::STREAM, Protocol::TCP)?;
        s.bind(&addr.into())?;
        s.listen(1024)?;
        sockets.push(s);
    }
    Ok(sockets)
}

/// Whether some other socket already serves `addr` (UDP when `datagram`, else TCP): bind a
/// socket that does not ask to share, and let it go at once. The group's own sockets ask to
/// share (SO_REUSEPORT), so without this check a second sipshard started on the same address
/// by mistake would silently join the group and take part of the traffic. A TCP probe allows
/// SO_REUSEADDR, so that the last run's connections in TIME_WAIT do not count: only a bound or
/// listening socket does. (Two instances started in the same instant can both pass; what this
/// catches is the one started by mistake next to a running one.)
pub fn probe_unshared(addr: SocketAddr, datagram: bool) -> io::Result<()> {
    let (kind, protocol) = if datagram {
        (Type::DGRAM, Protocol::UDP)
    } else {
        (Type::STREAM, Protocol::TCP)
    };
    let s = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    if !datagram {
        s.set_reuse_address(true)?;
    }
    s.bind(&addr.into())
}

/// A socket that may join the SO_REUSEPORT group of `addr` (not bound yet).
fn group_member(addr: SocketAddr, kind: Type, protocol: Protocol) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
    if addr.is_ipv6() {
        // Keep the IPv6 socket to IPv6 so that a separate IPv4 listener can share the port.
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    Ok(s)
}

/// Every address configured on this machine's interfaces (for wildcard listeners).
pub fn interface_addresses() -> Vec<IpAddr> {
    let mut out = vec![
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we walk read-only and free exactly once.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut cur = head;
        while !cur.is_null() {
            let addr = (*cur).ifa_addr;
            if !addr.is_null() {
                match (*addr).sa_family as i32 {
                    libc::AF_INET => {
                        let sin = &*(addr as *const libc::sockaddr_in);
                        out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                            sin.sin_addr.s_addr,
                        ))));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(addr as *const libc::sockaddr_in6);
                        out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(head);
    }
    out.sort();
    out.dedup();
    // Prefer a global address first when choosing what to advertise.
    out.sort_by_key(|ip| ip.is_loopback());
    out
}

/// This machine's host name, if it has one.
pub fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    (!name.is_empty()).then_some(name)
}
