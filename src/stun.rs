//! STUN Binding on the SIP port (RFC 5389), the keep-alive of RFC 5626 section 4.4.2: a UA
//! behind NAT sends a Binding request to the port it registered with, which keeps its pinhole
//! open, and learns from the answer's XOR-MAPPED-ADDRESS the address the NAT gives it.
//!
//! Only what that usage needs: a Binding request is answered with a success response carrying
//! XOR-MAPPED-ADDRESS (and FINGERPRINT when the request had one). Other attributes are not
//! interpreted (the keep-alive usage carries no credentials); every attribute is walked to check
//! the message's framing, and a FINGERPRINT must be right. A STUN message is told apart from SIP
//! by its first bytes (RFC 7983 section 7): its first two bits are zero, where SIP starts with a
//! letter, and its magic cookie follows. No I/O; nothing here allocates but the answer.

use std::net::{IpAddr, SocketAddr};

/// The constant every RFC 5389 message carries in bytes 4..8.
pub const MAGIC_COOKIE: u32 = 0x2112_a442;
/// Header: type, length, magic cookie, transaction id.
pub const HEADER: usize = 20;

const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const XOR_MAPPED_ADDRESS: u16 = 0x0020;
const FINGERPRINT: u16 = 0x8028;
/// FINGERPRINT is the CRC-32 of the message before it, XORed with this ("STUN").
const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// A transaction id, echoed in the answer.
pub type TransactionId = [u8; 12];

/// What a datagram that looks like STUN is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stun {
    /// A Binding request, to be answered.
    BindingRequest {
        transaction: TransactionId,
        /// It carried a (correct) FINGERPRINT, so the answer carries one too.
        fingerprint: bool,
    },
    /// Well-formed but not a Binding request (an indication, a response, another method):
    /// nothing to answer.
    Other,
    /// Its framing or FINGERPRINT is wrong: why.
    Malformed(&'static str),
}

/// Whether `d` is a STUN message rather than SIP: at least a header, the first two bits
/// zero, the magic cookie in place.
pub fn looks_like_stun(d: &[u8]) -> bool {
    d.len() >= HEADER && d[0] & 0xc0 == 0 && d[4..8] == MAGIC_COOKIE.to_be_bytes()
}

/// Classify a datagram for which [`looks_like_stun`] holds.
///
/// ```
/// use sipshard::stun::{classify, Stun};
///
/// let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
/// request.extend_from_slice(&[7; 12]);
/// assert_eq!(classify(&request), Stun::BindingRequest { transaction: [7; 12], fingerprint: false });
/// request[3] = 4; // a length the datagram does not have
/// assert!(matches!(classify(&request), Stun::Malformed(_)));
/// ```
pub fn classify(d: &[u8]) -> Stun {
    if !looks_like_stun(d) {
        return Stun::Malformed("not a STUN header");
    }
    let length = usize::from(u16::from_be_bytes([d[2], d[3]]));
    if length % 4 != 0 || HEADER + length != d.len() {
        return Stun::Malformed("length is not the datagram's");
    }
    let fingerprint = match attributes_end(d) {
        Ok(f) => f,
        Err(why) => return Stun::Malformed(why),
    };
    if u16::from_be_bytes([d[0], d[1]]) != BINDING_REQUEST {
        return Stun::Other;
    }
    let mut transaction = [0; 12];
    transaction.copy_from_slice(&d[8..HEADER]);
    Stun::BindingRequest {
        transaction,
        fingerprint,
    }
}

/// Walk the attributes (type, length, value padded to 4 bytes) to the end of the message;
/// returns whether a FINGERPRINT ends it (checked). It may only come last.
fn attributes_end(d: &[u8]) -> Result<bool, &'static str> {
    let mut at = HEADER;
    while at < d.len() {
        let Some(head) = d.get(at..at + 4) else {
            return Err("attribute header cut short");
        };
        let kind = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let next = at + 4 + len.next_multiple_of(4);
        if next > d.len() {
            return Err("attribute overruns the message");
        }
        if kind == FINGERPRINT {
            if len != 4 || next != d.len() {
                return Err("FINGERPRINT is not the last 4-byte attribute");
            }
            let stated = u32::from_be_bytes([d[at + 4], d[at + 5], d[at + 6], d[at + 7]]);
            if stated != fingerprint_of(&d[..at]) {
                return Err("FINGERPRINT does not match");
            }
            return Ok(true);
        }
        at = next;
    }
    Ok(false)
}

fn fingerprint_of(before: &[u8]) -> u32 {
    crc32fast::hash(before) ^ FINGERPRINT_XOR
}

/// Write into `out` (cleared first) the success response to a Binding request: the address
/// the request came from in XOR-MAPPED-ADDRESS, then FINGERPRINT when asked for.
pub fn binding_success(
    transaction: &TransactionId,
    mapped: SocketAddr,
    fingerprint: bool,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(&BINDING_SUCCESS.to_be_bytes());
    out.extend_from_slice(&[0, 0]); // length, written last
    out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    out.extend_from_slice(transaction);
    push_xor_mapped_address(out, transaction, mapped);
    if fingerprint {
        // The length covers the FINGERPRINT attribute before its CRC is computed.
        let with_fingerprint = out.len() - HEADER + 8;
        set_length(out, with_fingerprint);
        let crc = fingerprint_of(out);
        out.extend_from_slice(&FINGERPRINT.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let length = out.len() - HEADER;
    set_length(out, length);
}

fn set_length(out: &mut [u8], length: usize) {
    out[2..4].copy_from_slice(&(length as u16).to_be_bytes());
}

/// XOR-MAPPED-ADDRESS (RFC 5389 section 15.2): the port XORed with the cookie's high half, an
/// IPv4 address with the cookie, an IPv6 one with the cookie and the transaction id.
fn push_xor_mapped_address(out: &mut Vec<u8>, transaction: &TransactionId, mapped: SocketAddr) {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = mapped.port() ^ (MAGIC_COOKIE >> 16) as u16;
    let (family, len) = match mapped.ip().to_canonical() {
        IpAddr::V4(_) => (1u8, 8u16),
        IpAddr::V6(_) => (2u8, 20u16),
    };
    out.extend_from_slice(&XOR_MAPPED_ADDRESS.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[0, family]);
    out.extend_from_slice(&port.to_be_bytes());
    match mapped.ip().to_canonical() {
        IpAddr::V4(a) => out.extend(a.octets().iter().zip(cookie).map(|(a, k)| a ^ k)),
        IpAddr::V6(a) => {
            let key = cookie.iter().chain(transaction.iter());
            out.extend(a.octets().iter().zip(key).map(|(a, k)| a ^ k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5769 section 2.1: a Binding request with SOFTWARE, PRIORITY, ICE-CONTROLLED,
    /// USERNAME, MESSAGE-INTEGRITY and FINGERPRINT.
    const SAMPLE_REQUEST: &[u8] = b"\x00\x01\x00\x58\x21\x12\xa4\x42\
        \xb7\xe7\xa7\x01\xbc\x34\xd6\x86\xfa\x87\xdf\xae\
        \x80\x22\x00\x10STUN test client\
        \x00\x24\x00\x04\x6e\x00\x01\xff\
        \x80\x29\x00\x08\x93\x2f\xf9\xb1\x51\x26\x3b\x36\
        \x00\x06\x00\x09\x65\x76\x74\x6a\x3a\x68\x36\x76\x59\x20\x20\x20\
        \x00\x08\x00\x14\x9a\xea\xa7\x0c\xbf\xd8\xcb\x56\x78\x1e\xf2\xb5\xb2\xd3\xf2\x49\xc1\xb5\x71\xa2\
        \x80\x28\x00\x04\xe5\x7a\x3b\xcf";

    const TRANSACTION: TransactionId = *b"\xb7\xe7\xa7\x01\xbc\x34\xd6\x86\xfa\x87\xdf\xae";

    /// RFC 5769 sections 2.2 and 2.3: the XOR-MAPPED-ADDRESS attributes of the sample
    /// responses, for 192.0.2.1:32853 and [2001:db8:1234:5678:11:2233:4455:6677]:32853.
    const MAPPED_V4: &[u8] = b"\x00\x20\x00\x08\x00\x01\xa1\x47\xe1\x12\xa6\x43";
    const MAPPED_V6: &[u8] = b"\x00\x20\x00\x14\x00\x02\xa1\x47\
        \x01\x13\xa9\xfa\xa5\xd3\xf1\x79\xbc\x25\xf4\xb5\xbe\xd2\xb9\xd9";

    #[test]
    fn the_rfc_5769_request_is_a_binding_request_with_a_good_fingerprint() {
        assert!(looks_like_stun(SAMPLE_REQUEST));
        assert_eq!(
            classify(SAMPLE_REQUEST),
            Stun::BindingRequest {
                transaction: TRANSACTION,
                fingerprint: true
            }
        );
    }

    #[test]
    fn a_tampered_fingerprint_or_framing_is_malformed() {
        let mut d = SAMPLE_REQUEST.to_vec();
        d[30] ^= 1; // a byte of SOFTWARE
        assert_eq!(classify(&d), Stun::Malformed("FINGERPRINT does not match"));
        let mut d = SAMPLE_REQUEST.to_vec();
        d.extend_from_slice(&[0; 4]);
        assert_eq!(
            classify(&d),
            Stun::Malformed("length is not the datagram's")
        );
        let mut d = SAMPLE_REQUEST.to_vec();
        d[22..24].copy_from_slice(&[0x00, 0x60]); // SOFTWARE claims more than there is
        assert_eq!(
            classify(&d),
            Stun::Malformed("attribute overruns the message")
        );
    }

    #[test]
    fn xor_mapped_address_matches_the_rfc_5769_responses() {
        for (addr, attr) in [
            ("192.0.2.1:32853", MAPPED_V4),
            ("[2001:db8:1234:5678:11:2233:4455:6677]:32853", MAPPED_V6),
        ] {
            let mut out = Vec::new();
            binding_success(&TRANSACTION, addr.parse().unwrap(), false, &mut out);
            assert_eq!(&out[..4], [0x01, 0x01, 0x00, attr.len() as u8]);
            assert_eq!(&out[4..HEADER], &SAMPLE_REQUEST[4..HEADER]);
            assert_eq!(&out[HEADER..], attr, "{addr}");
        }
    }

    #[test]
    fn an_answer_with_fingerprint_checks_out_and_classifies_as_other() {
        let mut out = Vec::new();
        let mapped = "[::ffff:198.51.100.7]:40312".parse().unwrap();
        binding_success(&TRANSACTION, mapped, true, &mut out);
        assert_eq!(&out[HEADER..HEADER + MAPPED_V4.len() - 6], &MAPPED_V4[..6]);
        assert_eq!(out.len(), HEADER + 12 + 8);
        assert_eq!(
            classify(&out),
            Stun::Other,
            "a success response, fingerprint good"
        );
    }

    #[test]
    fn sip_never_looks_like_stun() {
        assert!(!looks_like_stun(b"OPTIONS sip:a@b SIP/2.0\r\n\r\n"));
        assert!(!looks_like_stun(b"\r\n\r\n"));
        assert!(!looks_like_stun(&[0; 19]));
    }

    #[test]
    fn classify_never_panics() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..200 {
            let mut d: Vec<u8> = (0..len)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng as u8
                })
                .collect();
            if d.len() >= HEADER {
                d[0] &= 0x3f;
                d[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
                d[2..4].copy_from_slice(&((len.max(20) - 20) as u16).to_be_bytes());
            }
            let _ = classify(&d);
        }
    }
}
