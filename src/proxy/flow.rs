//! Flow tokens (RFC 5626 section 5.2): when sipshard, as an edge proxy, forwards a REGISTER to
//! another registrar, the Path URI it adds carries in its user part the flow the REGISTER came
//! on (transport, source address and port, connection), so that a request the registrar later
//! sends to that contact (with this Path as its Route) goes back down the same flow: through
//! the UA's NAT pinhole, on its connection.
//!
//! A token is `ft` and the hex of: a kind byte (transport code in bits 0-1, IPv6 in bit 6, a
//! connection id present in bit 7), the address, the port (big-endian), the connection id (8
//! bytes), then the first 12 bytes of an HMAC-SHA256 over all of that under the node's flow
//! key, so that nobody can make the edge send to an address of their choosing. No I/O.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ring::hmac;
use subtle::ConstantTimeEq;

use crate::auth::hex;
use crate::sip::{ConnId, Source, Target, Transport};

/// What starts the user part of a Path URI that carries a flow token.
pub const TOKEN_PREFIX: &[u8] = b"ft";
const MAC_LEN: usize = 12;
const V6: u8 = 0x40;
const CONN: u8 = 0x80;

/// The key flow tokens are signed with (`--auth-secret`, else random per start: then tokens
/// issued before a restart are refused and their UAs must register again).
#[derive(Clone)]
pub struct FlowKey([u8; 32]);

impl std::fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlowKey(..)")
    }
}

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not hex, too short or long, or a kind byte that makes no sense.
    Malformed,
    /// The MAC does not match: forged or tampered with (or from before a restart).
    Forged,
}

impl FlowKey {
    pub fn new(key: [u8; 32]) -> FlowKey {
        FlowKey(key)
    }

    /// A key derived from configured secret bytes (so that the secret itself signs nothing).
    pub fn from_secret(secret: &[u8]) -> FlowKey {
        let derive = hmac::Key::new(hmac::HMAC_SHA256, b"sipshard flow token key");
        let mut key = [0u8; 32];
        key.copy_from_slice(hmac::sign(&derive, secret).as_ref());
        FlowKey(key)
    }

    /// The token for the flow a message came on (`ft` and hex), appended to `out`.
    pub fn token(&self, src: Source, out: &mut Vec<u8>) {
        let payload = payload_of(src);
        out.extend_from_slice(TOKEN_PREFIX);
        hex::encode_into(&payload, out);
        hex::encode_into(&self.mac(&payload)[..MAC_LEN], out);
    }

    /// The flow a token names, when it is ours and intact.
    pub fn flow(&self, token: &[u8]) -> Result<Target, Refused> {
        let hex = token.strip_prefix(TOKEN_PREFIX).ok_or(Refused::Malformed)?;
        // At most an IPv6 flow with a connection and its MAC: nothing longer is decoded.
        if hex.len() > 2 * (27 + MAC_LEN) {
            return Err(Refused::Malformed);
        }
        let bytes = hex::decode_vec(hex, true).ok_or(Refused::Malformed)?;
        let split = bytes.len().checked_sub(MAC_LEN).ok_or(Refused::Malformed)?;
        let (payload, mac) = bytes.split_at(split);
        let target = target_of(payload).ok_or(Refused::Malformed)?;
        if !bool::from(self.mac(payload)[..MAC_LEN].ct_eq(mac)) {
            return Err(Refused::Forged);
        }
        Ok(target)
    }

    fn mac(&self, payload: &[u8]) -> [u8; 32] {
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &self.0), payload);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

fn payload_of(src: Source) -> Vec<u8> {
    let mut p = Vec::with_capacity(27);
    let mut kind = src.transport.code();
    if src.addr.is_ipv6() {
        kind |= V6;
    }
    if src.conn.is_some() {
        kind |= CONN;
    }
    p.push(kind);
    match src.addr.ip() {
        IpAddr::V4(a) => p.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => p.extend_from_slice(&a.octets()),
    }
    p.extend_from_slice(&src.addr.port().to_be_bytes());
    if let Some(c) = src.conn {
        p.extend_from_slice(&c.0.to_be_bytes());
    }
    p
}

fn target_of(p: &[u8]) -> Option<Target> {
    let (&kind, rest) = p.split_first()?;
    let transport = Transport::from_code(kind & 0x03)?;
    let ip_len = if kind & V6 != 0 { 16 } else { 4 };
    let conn_len = if kind & CONN != 0 { 8 } else { 0 };
    if kind & !(0x03 | V6 | CONN) != 0 || rest.len() != ip_len + 2 + conn_len {
        return None;
    }
    let ip = match ip_len {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&rest[..4]).ok()?)),
        _ => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&rest[..16]).ok()?)),
    };
    let port = u16::from_be_bytes([rest[ip_len], rest[ip_len + 1]]);
    let conn = (conn_len > 0)
        .then(|| {
            Some(ConnId(u64::from_be_bytes(
                rest[ip_len + 2..].try_into().ok()?,
            )))
        })
        .flatten();
    Some(Target {
        transport,
        addr: SocketAddr::new(ip, port),
        conn,
        fallback_udp: false,
        flow: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> FlowKey {
        FlowKey::from_secret(b"test secret")
    }

    fn token(src: Source) -> Vec<u8> {
        let mut t = Vec::new();
        key().token(src, &mut t);
        t
    }

    #[test]
    fn tokens_round_trip_for_every_kind_of_flow() {
        let v4 = Source::udp("198.51.100.7:40312".parse().unwrap());
        let v6 = Source::udp("[2001:db8::7]:5060".parse().unwrap());
        let tcp = Source {
            transport: Transport::Tcp,
            conn: Some(ConnId::new(1, 99)),
            ..v4
        };
        let tls = Source {
            transport: Transport::Tls,
            conn: Some(ConnId::new(0, 7)),
            ..v6
        };
        for src in [v4, v6, tcp, tls] {
            let t = token(src);
            assert!(t.starts_with(TOKEN_PREFIX));
            assert!(
                t.iter().all(u8::is_ascii_alphanumeric),
                "a user part as it is"
            );
            let got = key().flow(&t).unwrap();
            assert_eq!(
                (got.transport, got.addr, got.conn),
                (src.transport, src.addr, src.conn)
            );
        }
    }

    #[test]
    fn a_tampered_or_foreign_token_is_refused() {
        let t = token(Source::udp("198.51.100.7:40312".parse().unwrap()));
        // Another port, same MAC.
        let mut forged = t.clone();
        let at = 2 + 2 * 5; // the port's first hex digit
        forged[at] = if forged[at] == b'0' { b'1' } else { b'0' };
        assert_eq!(key().flow(&forged), Err(Refused::Forged));
        assert_eq!(
            FlowKey::from_secret(b"other").flow(&t),
            Err(Refused::Forged)
        );
        for bad in [&b"ft"[..], b"ftzz", b"xx00", b"ft0", &t[..t.len() - 2]] {
            assert!(key().flow(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
