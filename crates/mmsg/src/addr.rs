//! `SocketAddr` to and from the kernel's `sockaddr_storage`, without going through a heap or a
//! zeroed 128-byte copy: only the bytes the kernel reads are written.

use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Write `addr` into `out` as a `sockaddr_in` or `sockaddr_in6`; returns its length, the
/// `msg_namelen` to pass with it. Bytes of `out` past that length are left as they were: the
/// kernel reads no further.
#[inline]
pub fn encode(addr: SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and aligned for it (it exists
            // to hold any sockaddr), and `out` is a unique reference, so the write is in bounds
            // and aliases nothing.
            unsafe { std::ptr::write(out as *mut _ as *mut libc::sockaddr_in, sin) };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
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
            // SAFETY: as above, for sockaddr_in6 (28 bytes, within the 128 of the storage).
            unsafe { std::ptr::write(out as *mut _ as *mut libc::sockaddr_in6, sin6) };
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// The address the kernel wrote into `ss` (`len` bytes of it); `None` for a family other than
/// IPv4 and IPv6, or a length too short for the family (an unnamed peer has length 0).
#[inline]
pub fn decode(ss: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match ss.ss_family as libc::c_int {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family and the length say the storage holds a sockaddr_in, and the
            // storage is aligned for it.
            let sin = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn storage() -> libc::sockaddr_storage {
        // SAFETY: all-zero is a valid sockaddr_storage (family AF_UNSPEC).
        unsafe { std::mem::zeroed() }
    }

    #[test]
    fn round_trip() {
        for a in [
            "127.0.0.1:5060",
            "[::1]:5070",
            "[2001:db8::1]:1",
            "255.255.255.255:65535",
        ] {
            let a: SocketAddr = a.parse().unwrap();
            let mut ss = storage();
            let len = encode(a, &mut ss);
            assert_eq!(decode(&ss, len), Some(a));
        }
        let scoped = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 9, 7, 3));
        let mut ss = storage();
        let len = encode(scoped, &mut ss);
        assert_eq!(decode(&ss, len), Some(scoped));
    }

    #[test]
    fn short_or_foreign_names_are_none() {
        let mut ss = storage();
        assert_eq!(decode(&ss, 0), None, "AF_UNSPEC");
        let len = encode("[::1]:5060".parse().unwrap(), &mut ss);
        assert_eq!(decode(&ss, len - 1), None, "cut sockaddr_in6");
        ss.ss_family = libc::AF_UNIX as libc::sa_family_t;
        assert_eq!(decode(&ss, len), None);
    }
}
