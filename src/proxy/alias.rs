//! Dialogs with a UA behind NAT (what Kamailio's `set_contact_alias` and `handle_ruri_alias`
//! do). A UA behind NAT writes its private address in the Contact of the INVITE (or of its
//! 2xx), and the other side sends its in-dialog requests (ACK, BYE, re-INVITE) to that
//! Contact. When we Record-Route, those requests come through us; so we append to that Contact
//! URI where the UA really is, `;alias=IP~PORT~T` (its packet's source; T is 1 for UDP, 2 for
//! TCP, 3 for TLS), and an in-dialog request whose Request-URI carries an alias is sent there,
//! the alias taken out of its Request-URI. The URI is opaque to the other side (RFC 3261
//! section 12.1.1), which sends it back as it got it.

use std::net::{IpAddr, SocketAddr};

use crate::registrar::behind_nat;
use crate::sip::{Message, NameAddr, Source, Target, Transport, Uri};

use super::Core;

const ALIAS: &[u8] = b"alias";

impl Core {
    /// When `msg` (a request we Record-Route, or its answer) comes from behind NAT (by
    /// `--nat`), record an alias of `src` in its Contact URI.
    pub(super) fn alias_contact(&mut self, msg: &Message<'_>, src: Source) {
        let Some(Ok(crate::sip::Contact::Addr(contact))) = msg.contacts().next() else {
            return;
        };
        let via = if msg.is_request() {
            msg.top_via().ok()
        } else {
            None
        };
        if !behind_nat(self.cfg.registrar.nat, via.as_ref(), &contact.uri, src)
            || contact.uri.param(ALIAS).is_some()
        {
            return;
        }
        let Some((start, end)) = uri_offsets(msg.buf(), &contact) else {
            return;
        };
        let bracketed = msg.buf().get(end) == Some(&b'>');
        // A bare URI's parameters would be the header's: it gets brackets.
        if !bracketed {
            self.edits.insert(start, b"<");
        }
        self.edits.insert_with(end, |w| {
            w.bytes(b";alias=");
            match src.addr.ip() {
                IpAddr::V4(ip) => w.ip(IpAddr::V4(ip)),
                IpAddr::V6(ip) => w.bytes(b"[").ip(IpAddr::V6(ip)).bytes(b"]"),
            };
            w.bytes(b"~").num(u64::from(src.addr.port())).bytes(b"~");
            w.num(transport_code(src.transport));
            if !bracketed {
                w.bytes(b">");
            }
        });
        self.counters.nat.aliased += 1;
    }

    /// Where an in-dialog request whose Request-URI `uri` carries an alias goes; the alias is
    /// taken out of the Request-URI (`span_of_uri`, in `msg`).
    pub(super) fn follow_alias(&mut self, msg: &Message<'_>, uri: &Uri<'_>) -> Option<Target> {
        let value = uri.param(ALIAS)?;
        let target = parse_alias(value)?;
        let span = msg.request_uri_span()?;
        let (cut_start, cut_end) = param_offsets(uri, ALIAS)?;
        self.edits.replace_with(span, |w| {
            w.bytes(&uri.raw[..cut_start]).bytes(&uri.raw[cut_end..]);
        });
        Some(target)
    }
}

/// The offsets in `buf` of a Contact's URI (start, end).
fn uri_offsets(buf: &[u8], contact: &NameAddr<'_>) -> Option<(usize, usize)> {
    let start = (contact.uri.raw.as_ptr() as usize).checked_sub(buf.as_ptr() as usize)?;
    let end = start + contact.uri.raw.len();
    (end <= buf.len()).then_some((start, end))
}

/// The offsets in `uri.raw` of `;name[=value]`, from its `;` to its end.
fn param_offsets(uri: &Uri<'_>, name: &[u8]) -> Option<(usize, usize)> {
    let base = uri.raw.as_ptr() as usize;
    let mut at = (uri.params.as_ptr() as usize).checked_sub(base)?;
    for p in uri.params.split(|&b| b == b';') {
        let pname = p.split(|&b| b == b'=').next().unwrap_or_default();
        if pname.eq_ignore_ascii_case(name) {
            // From the `;` before it to its end.
            return Some((at - 1, at + p.len()));
        }
        at += p.len() + 1;
    }
    None
}

fn transport_code(t: Transport) -> u64 {
    match t {
        Transport::Udp => 1,
        Transport::Tcp => 2,
        Transport::Tls => 3,
    }
}

/// `IP~PORT~T` (IPv6 in brackets).
fn parse_alias(v: &[u8]) -> Option<Target> {
    let text = std::str::from_utf8(v).ok()?;
    let mut parts = text.split('~');
    let (ip, port, t) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let ip: IpAddr = ip
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    let transport = match t {
        "1" => Transport::Udp,
        "2" => Transport::Tcp,
        "3" => Transport::Tls,
        _ => return None,
    };
    Some(Target::new(
        transport,
        SocketAddr::new(ip, port.parse().ok()?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_parse_back() {
        let t = parse_alias(b"198.51.100.7~40312~1").unwrap();
        assert_eq!(t, Target::udp("198.51.100.7:40312".parse().unwrap()));
        let t = parse_alias(b"[2001:db8::7]~5060~2").unwrap();
        assert_eq!(
            t,
            Target::new(Transport::Tcp, "[2001:db8::7]:5060".parse().unwrap())
        );
        for bad in [
            &b"1.2.3.4~5"[..],
            b"1.2.3.4~5~9",
            b"x~5~1",
            b"1.2.3.4~70000~1",
            b"1~2~3~4",
        ] {
            assert_eq!(parse_alias(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_alias_parameter_is_found_wherever_it_is() {
        for (uri, cut) in [
            ("sip:a@10.0.0.2;alias=1.2.3.4~5~1", "sip:a@10.0.0.2"),
            (
                "sip:a@10.0.0.2;lr;alias=1.2.3.4~5~1;transport=udp",
                "sip:a@10.0.0.2;lr;transport=udp",
            ),
            ("sip:a@10.0.0.2;ALIAS=1.2.3.4~5~1?h=v", "sip:a@10.0.0.2?h=v"),
        ] {
            let u = Uri::parse(uri.as_bytes()).unwrap();
            let (s, e) = param_offsets(&u, ALIAS).unwrap();
            let rest = [&u.raw[..s], &u.raw[e..]].concat();
            assert_eq!(String::from_utf8_lossy(&rest), cut);
        }
    }
}
