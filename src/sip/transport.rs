//! Which transport a message came in on or leaves by, and the peer at the other end.
//!
//! The core never assumes UDP: the Via it inserts names the transport of the [`Target`], a reply
//! goes back the way the request came ([`Source`], RFC 3261 section 18.2.2), and a registered
//! contact keeps the transport it is reached by. On a stream transport the peer is also a
//! connection, named by a [`ConnId`] that the runtime hands out; the core only carries it.

use std::net::SocketAddr;

/// A SIP transport (the Via `transport` token, the URI `transport` parameter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Transport {
    Udp = 0,
    Tcp = 1,
    Tls = 2,
}

impl Transport {
    /// Every transport, in the order of their codes.
    pub const ALL: [Transport; 3] = [Transport::Udp, Transport::Tcp, Transport::Tls];

    /// The Via token (`SIP/2.0/UDP`).
    pub fn via_token(self) -> &'static [u8] {
        match self {
            Transport::Udp => b"UDP",
            Transport::Tcp => b"TCP",
            Transport::Tls => b"TLS",
        }
    }

    /// The lower-case name (`udp`, as in `--listen udp:` and the URI parameter).
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// The transport a Via token or a URI `transport` parameter names (case-insensitive).
    pub fn from_token(token: &[u8]) -> Option<Transport> {
        Transport::ALL
            .into_iter()
            .find(|t| t.via_token().eq_ignore_ascii_case(token))
    }

    /// A byte stream (messages framed by Content-Length, RFC 3261 section 18.3), not datagrams.
    pub fn is_stream(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The port a URI or Via without one implies (RFC 3261 sections 18.1.1 and 19.1.2).
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls => 5061,
            Transport::Udp | Transport::Tcp => 5060,
        }
    }

    /// The code stored in location records (see `location`).
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Transport> {
        Transport::ALL.get(code as usize).copied()
    }
}

/// One connection of this node: the shard that owns it (in the high 16 bits) and its serial
/// number there. Handed out by the runtime; to the core it is an opaque name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId(pub u64);

impl ConnId {
    pub fn new(shard: u16, serial: u64) -> ConnId {
        ConnId(u64::from(shard) << 48 | (serial & ((1 << 48) - 1)))
    }

    /// The shard whose executor owns the connection.
    pub fn shard(self) -> u16 {
        (self.0 >> 48) as u16
    }
}

/// Where a message came from: the transport, the peer's address, and on a stream the
/// connection it arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Source {
    pub transport: Transport,
    pub addr: SocketAddr,
    pub conn: Option<ConnId>,
    /// The connection's peer proved a trusted name with a verified TLS certificate
    /// (`--tls-trust`): its requests are not challenged for credentials.
    pub trusted: bool,
}

impl Source {
    /// A datagram from `addr`.
    pub fn udp(addr: SocketAddr) -> Source {
        Source {
            transport: Transport::Udp,
            addr,
            conn: None,
            trusted: false,
        }
    }

    /// Back to this source at `addr` (its own address, or the port its Via names): on a stream,
    /// over the same connection (RFC 3261 section 18.2.2).
    pub fn back_to(self, addr: SocketAddr) -> Target {
        Target {
            transport: self.transport,
            addr,
            conn: self.conn.filter(|_| addr == self.addr),
            fallback_udp: false,
            flow: false,
        }
    }
}

/// Where a message goes: the transport, the address, and on a stream the connection to use
/// when one is known (else the transport opens or finds one to `addr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub transport: Transport,
    pub addr: SocketAddr,
    pub conn: Option<ConnId>,
    /// Sent over TCP only because it is too large for UDP (RFC 3261 section 18.1.1): when the
    /// connection is refused, it goes over UDP after all.
    pub fallback_udp: bool,
    /// An Outbound flow (RFC 5626): only `conn` may carry it, never a new connection (the
    /// peer, behind NAT, accepts none); when it is gone the request fails with 430.
    pub flow: bool,
}

impl Target {
    /// A datagram to `addr`.
    pub fn udp(addr: SocketAddr) -> Target {
        Target {
            transport: Transport::Udp,
            addr,
            conn: None,
            fallback_udp: false,
            flow: false,
        }
    }

    /// `addr` over `transport`, no connection known.
    pub fn new(transport: Transport, addr: SocketAddr) -> Target {
        Target {
            transport,
            addr,
            conn: None,
            fallback_udp: false,
            flow: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_case_insensitively() {
        for t in Transport::ALL {
            assert_eq!(Transport::from_token(t.via_token()), Some(t));
            let lower = t.via_token().to_ascii_lowercase();
            assert_eq!(Transport::from_token(&lower), Some(t));
            assert_eq!(Transport::from_code(t.code()), Some(t));
        }
        assert_eq!(Transport::from_token(b"SCTP"), None);
        assert_eq!(Transport::from_code(9), None);
    }

    #[test]
    fn conn_id_names_its_shard() {
        let c = ConnId::new(3, 77);
        assert_eq!(c.shard(), 3);
        assert_eq!(c.0 & 0xffff, 77);
    }

    #[test]
    fn a_reply_keeps_the_connection_only_to_the_same_address() {
        let a: SocketAddr = "192.0.2.1:5070".parse().unwrap();
        let src = Source {
            transport: Transport::Tcp,
            addr: a,
            conn: Some(ConnId::new(0, 1)),
            trusted: false,
        };
        assert_eq!(src.back_to(a).conn, src.conn);
        let other: SocketAddr = "192.0.2.1:5060".parse().unwrap();
        assert_eq!(src.back_to(other).conn, None);
        assert_eq!(src.back_to(other).transport, Transport::Tcp);
    }
}
