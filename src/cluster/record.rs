//! How a binding change is kept in Redis, and what a node makes of another node's change. No
//! I/O, no clock: the peer passes the time in.
//!
//! **Key**: one string key per binding, `PREFIX:b:LEN:AOR:ID`, where `ID` names the binding the
//! way the location table does: an Outbound flow by its instance and reg-id, else the contact
//! in a canonical form (scheme, user, lower-cased host, port and the parameters RFC 3261
//! section 19.1.4 compares whenever present), so equivalent contacts, and the removal of one,
//! land on the same key. (Two contacts differing only in other parameters, or in escaping,
//! get two keys; the table still merges them into one binding.)
//!
//! **Value**: `STAMP:CALLID_HI:CALLID_LO:CSEQ:NODE|`, the version in fixed-width lower-case hex
//! (16, 8, 8 and 8 digits: [`HEADER_LEN`] bytes with the colons) so that the store's script
//! compares two versions, then the node ids, by comparing the text before `|` (last writer
//! wins, node id last) without parsing numbers; then, binary: the route through the origin
//! node (u16 length, bytes; empty when other nodes reach the contact directly), the AOR (u16
//! length, bytes) and the binding as the location table encodes it.
//!
//! **Route**: a binding that only its own node can reach (the REGISTER came over a connection,
//! or from behind NAT: the pinhole is open towards that node's address only) is published with
//! the route `<sip:FLOWTOKEN@NODE;lr>`: another node sends such requests to the origin node,
//! which recognises its own flow token (RFC 5626 section 5.2, [`crate::proxy::flow`]) and
//! sends them down the flow.

use std::net::SocketAddr;

use crate::location::{Binding, BindingRecord, Extra, Version};
use crate::sip::addr::first_of_list;
use crate::sip::{Scheme, Target, Transport, Uri};

/// A change as read back from Redis.
#[derive(Debug, PartialEq, Eq)]
pub struct Stored<'a> {
    /// The node whose change it is.
    pub node: &'a [u8],
    /// The route through that node (`<sip:...;lr>`), or empty.
    pub route: &'a [u8],
    pub record: BindingRecord,
}

/// The Redis key of the binding `b` of `aor`, under `prefix`.
pub fn key(prefix: &str, aor: &[u8], b: &Binding<'_>) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + aor.len() + b.contact.len() + 16);
    k.extend_from_slice(prefix.as_bytes());
    k.extend_from_slice(b":b:");
    k.extend_from_slice(itoa::Buffer::new().format(aor.len()).as_bytes());
    k.push(b':');
    k.extend_from_slice(aor);
    k.push(b':');
    binding_id(b, &mut k);
    k
}

/// The pattern matching every binding key under `prefix` (for SCAN).
pub fn key_pattern(prefix: &str) -> String {
    format!("{}:b:*", escape_glob(prefix))
}

/// The change stream of node `node`: each node appends its own changes to its own stream, so
/// a node never reads its own changes back.
pub fn stream_key(prefix: &str, node: &str) -> String {
    format!("{prefix}:stream:{node}")
}

/// The set of the cluster's nodes (whose streams there are to follow).
pub fn nodes_key(prefix: &str) -> String {
    format!("{prefix}:nodes")
}

fn escape_glob(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn binding_id(b: &Binding<'_>, out: &mut Vec<u8>) {
    if b.extra.is_flow() {
        out.extend_from_slice(b"i:");
        out.extend_from_slice(b.extra.instance);
        out.push(b':');
        out.extend_from_slice(b.extra.reg_id.to_string().as_bytes());
        return;
    }
    out.extend_from_slice(b"c:");
    match Uri::parse(b.contact) {
        Ok(uri) if matches!(uri.scheme, Scheme::Sip | Scheme::Sips) => canonical(&uri, out),
        _ => out.extend_from_slice(b.contact),
    }
}

/// What RFC 3261 section 19.1.4 compares of a SIP URI, in one spelling.
fn canonical(uri: &Uri<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(if uri.scheme == Scheme::Sips {
        b"sips:"
    } else {
        b"sip:"
    });
    if let Some(user) = uri.user {
        out.extend_from_slice(user);
        if let Some(password) = uri.password {
            out.push(b':');
            out.extend_from_slice(password);
        }
        out.push(b'@');
    }
    out.extend(uri.host_raw.iter().map(u8::to_ascii_lowercase));
    if let Some(port) = uri.port {
        out.push(b':');
        out.extend_from_slice(port.to_string().as_bytes());
    }
    for name in [&b"transport"[..], b"user", b"ttl", b"method", b"maddr"] {
        if let Some(value) = uri.param(name) {
            out.push(b';');
            out.extend_from_slice(name);
            out.push(b'=');
            out.extend(value.iter().map(u8::to_ascii_lowercase));
        }
    }
}

/// Length of a value's version: `SSSSSSSSSSSSSSSS:HHHHHHHH:LLLLLLLL:CCCCCCCC:`.
pub const HEADER_LEN: usize = 44;

/// The value stored for `rec`, published by `node` with `route` (see the module comment).
pub fn encode(rec: &BindingRecord, version: &Version, node: &str, route: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(
        HEADER_LEN + 1 + node.len() + 4 + route.len() + rec.aor.len() + rec.binding.len(),
    );
    let hi = version.call_id_hash >> 32;
    let lo = version.call_id_hash & 0xffff_ffff;
    for (n, digits) in [
        (version.stamp_ms, 16),
        (hi, 8),
        (lo, 8),
        (u64::from(version.cseq), 8),
    ] {
        push_hex(&mut v, n, digits);
        v.push(b':');
    }
    v.extend_from_slice(node.as_bytes());
    v.push(b'|');
    push_with_len(&mut v, route);
    push_with_len(&mut v, &rec.aor);
    v.extend_from_slice(&rec.binding);
    v
}

/// `n` in `digits` lower-case hex digits, zero-padded (`n` fits: the fields are sized for it).
fn push_hex(out: &mut Vec<u8>, n: u64, digits: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend(
        (0..digits)
            .rev()
            .map(|i| HEX[(n >> (4 * i)) as usize & 0xf]),
    );
}

fn push_with_len(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Read a stored value back; `None` when it is not one (another program's key, a damaged value):
/// such a value is skipped, never applied.
pub fn decode(v: &[u8]) -> Option<Stored<'_>> {
    let bar = memchr::memchr(b'|', v)?;
    if bar <= HEADER_LEN || v[HEADER_LEN - 1] != b':' {
        return None;
    }
    let node = &v[HEADER_LEN..bar];
    let rest = &v[bar + 1..];
    let (route, rest) = take_with_len(rest)?;
    let (aor, binding) = take_with_len(rest)?;
    let record = BindingRecord {
        aor: aor.into(),
        binding: binding.into(),
    };
    record.decode()?;
    Some(Stored {
        node,
        route,
        record,
    })
}

fn take_with_len(v: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u16::from_le_bytes([*v.first()?, *v.get(1)?]) as usize;
    let bytes = v.get(2..2 + len)?;
    Some((bytes, &v[2 + len..]))
}

/// Whether other nodes can reach `b` only through this node: it came over a connection or from
/// behind NAT, and no Path already leads to it.
pub fn needs_origin(b: &Binding<'_>) -> bool {
    !b.is_tombstone() && b.extra.path.is_empty() && (b.dest.conn.is_some() || b.nat)
}

/// The route through this node (advertised as `node_addr`, reached over `transport`) to the flow
/// `b` was registered on, given its flow token.
pub fn route_via(token: &[u8], node_addr: &str, transport: Transport) -> Vec<u8> {
    let mut r = Vec::with_capacity(token.len() + node_addr.len() + 32);
    r.extend_from_slice(b"<sip:");
    r.extend_from_slice(token);
    r.push(b'@');
    r.extend_from_slice(node_addr.as_bytes());
    if transport != Transport::Udp {
        r.extend_from_slice(b";transport=");
        r.extend_from_slice(transport.name().as_bytes());
    }
    r.extend_from_slice(b";lr>");
    r
}

/// Another node's change as this node applies it: a binding reached through its origin node
/// gets the route as its Path and that node as its destination (not behind NAT here: this
/// node never pings it); a version stamped beyond `latest_ms` (now plus the clock bound) is
/// brought back to it. Returns the record and whether it was clamped; `None` when the stored
/// binding does not decode.
pub fn for_this_node(stored: &Stored<'_>, latest_ms: u64) -> Option<(BindingRecord, bool)> {
    let b = stored.record.decode()?;
    let clamped = b.version.stamp_ms > latest_ms;
    if stored.route.is_empty() && !clamped {
        return Some((stored.record.clone(), false));
    }
    let version = Version {
        stamp_ms: b.version.stamp_ms.min(latest_ms),
        ..b.version
    };
    if stored.route.is_empty() {
        return Some((
            BindingRecord::new(&stored.record.aor, &Binding { version, ..b }),
            true,
        ));
    }
    // A route naming a host instead of an address is resolved when a request is routed.
    let hop = route_hop(stored.route).unwrap_or(b.dest);
    let routed = Binding {
        version,
        dest: hop,
        nat: false,
        extra: Extra {
            path: stored.route,
            ..b.extra
        },
        ..b
    };
    Some((BindingRecord::new(&stored.record.aor, &routed), clamped))
}

/// The node a route names: its literal address, over the transport it asks for.
fn route_hop(route: &[u8]) -> Option<Target> {
    let uri = first_of_list(route)?.uri;
    let ip = uri.host?.ip()?;
    let transport = uri
        .param(b"transport")
        .and_then(Transport::from_token)
        .unwrap_or(Transport::Udp);
    let port = uri.port.unwrap_or(transport.default_port());
    Some(Target::new(transport, SocketAddr::new(ip, port)))
}

#[cfg(test)]
mod tests;
