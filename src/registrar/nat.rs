//! Whether a REGISTER's contact sits behind NAT, from the evidence in the packet (the tests of
//! Kamailio's `nat_uac_test`): a UA writes the address it believes it has in its Via and
//! Contact, and behind NAT that is not the address its packets arrive from.

use std::net::IpAddr;

use crate::sip::{Source, Uri, Via};

/// `--nat auto|always|off`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NatMode {
    /// Decide per REGISTER from the packet ([`behind_nat`]).
    #[default]
    Auto,
    /// Every contact is reached where its REGISTER came from.
    Always,
    /// Every contact is reached at the address it names.
    Off,
}

/// Whether the contact `contact` of a REGISTER whose top Via is `via`, received from `src`,
/// is behind NAT under `mode`. In `auto`: when the Via's sent-by (address or port) is not the
/// packet's source (over UDP; over a stream its address), or when the contact's address is private (RFC 1918, RFC 6598, link-local,
/// unique-local) while the source's is not. A UA registering someone else's contact from its
/// own un-NATed address (Via equal to its source, a public contact) is not behind NAT.
///
/// ```
/// use sipshard::registrar::{behind_nat, NatMode};
/// use sipshard::sip::{Message, Source};
///
/// let mut buf = b"REGISTER sip:example.com SIP/2.0\r\n\
///     Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK1;rport\r\n\
///     Contact: <sip:bob@10.0.0.2:5060>\r\n\r\n".to_vec();
/// let msg = Message::parse(&mut buf).unwrap();
/// let via = msg.top_via().ok();
/// let contact = msg.contacts().next().unwrap().unwrap();
/// let sipshard::sip::addr::Contact::Addr(contact) = contact else { unreachable!() };
/// let through_nat = Source::udp("198.51.100.7:40312".parse().unwrap());
/// let direct = Source::udp("10.0.0.2:5060".parse().unwrap());
/// assert!(behind_nat(NatMode::Auto, via.as_ref(), &contact.uri, through_nat));
/// assert!(!behind_nat(NatMode::Auto, via.as_ref(), &contact.uri, direct));
/// assert!(!behind_nat(NatMode::Off, via.as_ref(), &contact.uri, through_nat));
/// ```
pub fn behind_nat(mode: NatMode, via: Option<&Via<'_>>, contact: &Uri<'_>, src: Source) -> bool {
    match mode {
        NatMode::Off => false,
        NatMode::Always => true,
        NatMode::Auto => {
            via.is_some_and(|v| !sent_from(v, src))
                || contact
                    .host
                    .and_then(|h| h.ip())
                    .is_some_and(|ip| is_private(ip) && !is_private(src.addr.ip()))
        }
    }
}

/// The Via's sent-by is the packet's source: the same address (a name never is) and, over UDP,
/// port (the transport's default when the Via names none). Over a stream the port is not
/// evidence: a client connects from an ephemeral port and writes the one it listens on.
fn sent_from(via: &Via<'_>, src: Source) -> bool {
    let same_ip = via
        .host
        .ip()
        .is_some_and(|ip| ip.to_canonical() == src.addr.ip().to_canonical());
    let same_port = src.transport.is_stream()
        || via.port.unwrap_or(src.transport.default_port()) == src.addr.port();
    same_ip && same_port
}

/// Addresses no packet from the internet carries: RFC 1918, the carrier-grade NAT range of
/// RFC 6598, link-local (RFC 3927, RFC 4291) and IPv6 unique-local (RFC 4193).
fn is_private(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(a) => {
            let [o0, o1, ..] = a.octets();
            a.is_private() || a.is_link_local() || (o0 == 100 && (o1 & 0xc0) == 64)
        }
        IpAddr::V6(a) => {
            let s0 = a.segments()[0];
            (s0 & 0xfe00) == 0xfc00 || (s0 & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::addr::Contact;
    use crate::sip::{Message, Transport};

    /// (NATed?) for a REGISTER with this Via sent-by and Contact host, from `src`.
    fn decide(mode: NatMode, sent_by: &str, contact: &str, src: Source) -> bool {
        let text = format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {sent_by};branch=z9hG4bK1\r\n\
             Contact: <sip:bob@{contact}>\r\n\r\n"
        );
        let mut buf = text.into_bytes();
        let msg = Message::parse(&mut buf).unwrap();
        let via = msg.top_via().ok();
        let Some(Ok(Contact::Addr(c))) = msg.contacts().next() else {
            panic!("a contact");
        };
        behind_nat(mode, via.as_ref(), &c.uri, src)
    }

    fn udp(a: &str) -> Source {
        Source::udp(a.parse().unwrap())
    }

    #[test]
    fn auto_sees_a_via_that_is_not_the_source() {
        let auto = NatMode::Auto;
        let public = "203.0.113.9:5060";
        assert!(!decide(
            auto,
            "203.0.113.9:5060",
            public,
            udp("203.0.113.9:5060")
        ));
        assert!(!decide(
            auto,
            "203.0.113.9",
            public,
            udp("203.0.113.9:5060")
        ));
        assert!(decide(
            auto,
            "203.0.113.9:5060",
            public,
            udp("203.0.113.9:40001")
        ));
        assert!(decide(
            auto,
            "192.168.1.20:5060",
            public,
            udp("203.0.113.9:5060")
        ));
        assert!(decide(
            auto,
            "phone.example.net",
            public,
            udp("203.0.113.9:5060")
        ));
        // IPv4 seen through an IPv6 socket is the same address.
        assert!(!decide(
            auto,
            "203.0.113.9:5060",
            public,
            udp("[::ffff:203.0.113.9]:5060")
        ));
    }

    #[test]
    fn auto_sees_a_private_contact_from_a_public_source() {
        let auto = NatMode::Auto;
        let via = "203.0.113.9:5060";
        let src = udp(via);
        for private in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.0.1",
            "100.64.0.1",
            "169.254.1.1",
        ] {
            assert!(decide(auto, via, private, src), "{private}");
        }
        for ipv6 in ["[fd00::1]", "[fe80::1]"] {
            assert!(decide(auto, via, ipv6, src), "{ipv6}");
        }
        for public in [
            "198.51.100.1",
            "100.128.0.1",
            "172.32.0.1",
            "[2001:db8::1]",
            "example.com",
        ] {
            assert!(!decide(auto, via, public, src), "{public}");
        }
        // Both ends in the same private network: no NAT between them.
        let lan = udp("10.0.0.2:5060");
        assert!(!decide(auto, "10.0.0.2:5060", "10.0.0.3", lan));
    }

    #[test]
    fn always_and_off_ignore_the_evidence() {
        let src = udp("203.0.113.9:5060");
        assert!(decide(
            NatMode::Always,
            "203.0.113.9:5060",
            "203.0.113.9",
            src
        ));
        assert!(!decide(NatMode::Off, "10.0.0.2:5060", "10.0.0.2", src));
    }

    #[test]
    fn over_streams_only_the_address_counts() {
        let tcp = Source {
            transport: Transport::Tcp,
            ..udp("203.0.113.9:43120")
        };
        assert!(!decide(
            NatMode::Auto,
            "203.0.113.9:5060",
            "203.0.113.9",
            tcp
        ));
        assert!(decide(
            NatMode::Auto,
            "192.168.1.2:5060",
            "192.168.1.2",
            tcp
        ));
    }
}
