//! Writing numbers and addresses into outgoing messages without `core::fmt`.
//!
//! Why: replies and rewrites are built on the packet path, and `write!` goes through the
//! formatting machinery (dynamic dispatch, padding logic) for every integer: on the challenged
//! REGISTER path it was a tenth of the core's instructions. These helpers append the same bytes
//! directly.

use std::net::IpAddr;

/// Where message text goes: a reply buffer, or the text of an in-place edit.
pub trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Append `n` in decimal.
pub fn push_uint(out: &mut impl Sink, n: impl itoa::Integer) {
    out.put(itoa::Buffer::new().format(n).as_bytes());
}

/// Append a q-value given in thousandths with three decimals (`0.500`, `1.000`; RFC 3261
/// section 20.10 allows up to three), as the registrar and the redirect server list bindings.
pub fn push_q_value(out: &mut impl Sink, thousandths: u16) {
    push_uint(out, thousandths / 1000);
    let frac = thousandths % 1000;
    out.put(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

/// Append `ip` as it appears in a Via parameter or a URI host: dotted IPv4, or an IPv6
/// reference in brackets (RFC 3261 section 25.1, RFC 5118 section 4.5).
pub fn push_ip(out: &mut impl Sink, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            for (i, octet) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    out.put(b".");
                }
                push_uint(out, octet);
            }
        }
        IpAddr::V6(a) => {
            // The standard text form (RFC 5952) is worth the fmt call; at most 47 bytes with
            // the brackets, so a stack buffer holds it.
            use std::io::Write as _;
            let mut text = [0u8; 48];
            let mut w = std::io::Cursor::new(&mut text[..]);
            let _ = write!(w, "[{a}]");
            let len = w.position() as usize;
            out.put(&text[..len]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_addresses_read_as_fmt_writes_them() {
        let mut out = Vec::new();
        push_uint(&mut out, 0u16);
        out.push(b' ');
        push_uint(&mut out, 65535u16);
        out.push(b' ');
        push_uint(&mut out, 4_294_967_295u32);
        assert_eq!(out, b"0 65535 4294967295");
        for ip in ["0.0.0.0", "192.0.2.1", "255.255.255.255", "10.20.0.3"] {
            let mut out = Vec::new();
            push_ip(&mut out, ip.parse().unwrap());
            assert_eq!(out, ip.as_bytes());
        }
        for (q, text) in [
            (0u16, "0.000"),
            (500, "0.500"),
            (1000, "1.000"),
            (75, "0.075"),
        ] {
            let mut out = Vec::new();
            push_q_value(&mut out, q);
            assert_eq!(out, text.as_bytes());
        }
        let mut out = Vec::new();
        push_ip(&mut out, "2001:db8::1".parse().unwrap());
        assert_eq!(out, b"[2001:db8::1]");
    }
}
