//! A tiny append-only writer for building SIP messages into reusable buffers.
//!
//! Every message the generator sends is written with this into a `Vec<u8>` that lives as long as
//! the worker (the socket's send arena or a call slot's retransmission buffer). `clear()` keeps the
//! capacity, so once the buffers have grown to the largest message the hot path allocates nothing,
//! which `format!` per message would not give us.

/// Appends bytes and numbers to a borrowed buffer.
pub struct W<'a> {
    pub buf: &'a mut Vec<u8>,
}

impl<'a> W<'a> {
    #[inline]
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        W { buf }
    }

    #[inline]
    pub fn b(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    #[inline]
    pub fn s(&mut self, text: &str) -> &mut Self {
        self.b(text.as_bytes())
    }

    /// Decimal, no padding (itoa: no `fmt` machinery on the packet path).
    #[inline]
    pub fn dec(&mut self, n: u64) -> &mut Self {
        let mut b = itoa::Buffer::new();
        self.b(b.format(n).as_bytes())
    }

    /// Lower-case hexadecimal, no padding: the encoding of slot numbers in tags and branches.
    #[inline]
    pub fn hex(&mut self, n: u64) -> &mut Self {
        let mut tmp = [0u8; 16];
        let mut i = tmp.len();
        let mut n = n;
        loop {
            i -= 1;
            tmp[i] = HEX[(n & 15) as usize];
            n >>= 4;
            if n == 0 {
                break;
            }
        }
        self.b(&tmp[i..])
    }

    /// `host:port` with brackets around IPv6 hosts (RFC 3261 section 19.1.1 `hostport`).
    pub fn addr(&mut self, a: std::net::SocketAddr) -> &mut Self {
        match a {
            std::net::SocketAddr::V4(v4) => {
                let o = v4.ip().octets();
                self.dec(o[0] as u64).b(b".").dec(o[1] as u64).b(b".");
                self.dec(o[2] as u64).b(b".").dec(o[3] as u64);
            }
            std::net::SocketAddr::V6(v6) => {
                // Rare path (IPv6 targets): formatting through `write!` is acceptable here.
                use std::io::Write;
                let _ = write!(self.buf, "[{}]", v6.ip());
            }
        }
        self.b(b":").dec(a.port() as u64)
    }

    /// The host part only (for SDP `c=` lines and URIs without a port).
    pub fn ip(&mut self, a: std::net::IpAddr) -> &mut Self {
        match a {
            std::net::IpAddr::V4(v4) => {
                let o = v4.octets();
                self.dec(o[0] as u64).b(b".").dec(o[1] as u64).b(b".");
                self.dec(o[2] as u64).b(b".").dec(o[3] as u64)
            }
            std::net::IpAddr::V6(v6) => {
                use std::io::Write;
                let _ = write!(self.buf, "{v6}");
                self
            }
        }
    }

    #[inline]
    pub fn crlf(&mut self) -> &mut Self {
        self.b(b"\r\n")
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Parse lower- or upper-case hex digits into a number; `None` on anything else or overflow.
#[inline]
pub fn parse_hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    let mut n = 0u64;
    for &c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        n = (n << 4) | d as u64;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_addresses() {
        let mut v = Vec::new();
        let mut w = W::new(&mut v);
        w.dec(0)
            .b(b" ")
            .dec(1234567890)
            .b(b" ")
            .hex(0)
            .b(b" ")
            .hex(0xbeef);
        w.b(b" ").addr("127.0.0.1:5060".parse().unwrap());
        w.b(b" ").addr("[::1]:5070".parse().unwrap());
        assert_eq!(v, b"0 1234567890 0 beef 127.0.0.1:5060 [::1]:5070");
        assert_eq!(parse_hex(b"beef"), Some(0xbeef));
        assert_eq!(parse_hex(b"BEEF"), Some(0xbeef));
        assert_eq!(parse_hex(b""), None);
        assert_eq!(parse_hex(b"x1"), None);
    }
}
