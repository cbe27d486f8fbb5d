//! The first step of a REGISTER: validate it and compute every change, changing nothing.

use std::net::SocketAddr;

use xxhash_rust::xxh3::xxh3_64;

use crate::identity::LocalIdentity;
use crate::location::{self, AorKey, Extra, LocationTable, Now};
use crate::sip::addr::{first_of_list, Contact};
use crate::sip::header::has_empty_element;
use crate::sip::parse::parse_delta_seconds;
use crate::sip::write::push_uint;
use crate::sip::{
    HeaderName, Message, NameAddr, ParseError, Scheme, Source, Target, Transport, Uri, Via,
};

use super::nat::behind_nat;
use super::{RegistrarConfig, MAX_CONTACTS_PER_REGISTER};

/// Everything a valid REGISTER changes, computed before anything is: see [`plan`].
pub struct Plan<'m> {
    aor: AorKey,
    origin: Origin,
    changes: Changes<'m>,
    /// The REGISTER's Path values, comma-separated (RFC 3327): stored with every binding.
    path: Vec<u8>,
    /// Echo the Path in the 200 (the UA listed `path` in Supported, RFC 3327 section 5.3).
    echo_path: bool,
    /// Some contact registered an Outbound flow (RFC 5626): the 200 says `Require: outbound`.
    outbound: bool,
}

impl<'m> Plan<'m> {
    /// The location-table key of the address of record in To.
    pub fn aor(&self) -> &[u8] {
        self.aor.as_bytes()
    }

    pub fn origin(&self) -> Origin {
        self.origin
    }

    pub fn changes(&self) -> &Changes<'m> {
        &self.changes
    }

    pub fn path(&self) -> &[u8] {
        &self.path
    }

    pub fn echo_path(&self) -> bool {
        self.echo_path && !self.path.is_empty()
    }

    pub fn outbound(&self) -> bool {
        self.outbound
    }
}

/// Where every change of one REGISTER comes from: the version it is stamped with (section 10.3
/// step 7 compares Call-ID and CSeq) and the time it was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    pub call_id_hash: u64,
    pub cseq: u32,
    pub now: Now,
}

/// What a REGISTER asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Changes<'m> {
    /// Its Contact list, in order (section 10.3 step 7); none for a query.
    Listed(Vec<Change<'m>>),
    /// `Contact: *` with `Expires: 0`: every live binding of the AOR removed. Their contacts are
    /// copied out of the table, which the commit is about to change.
    All {
        contacts: Vec<Vec<u8>>,
        /// Where the removals say the contacts were (they are tombstones, never used).
        dest: Target,
    },
}

/// One binding to add, refresh (both `expires > 0`) or remove (`expires == 0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change<'m> {
    /// The contact URI as written in the REGISTER.
    pub uri: &'m [u8],
    /// The lifetime granted, in seconds (the requested one, capped at the maximum).
    pub expires: u32,
    /// Preference in thousandths.
    pub q: u16,
    pub dest: Target,
    /// The contact is behind NAT: `dest` is the REGISTER's source.
    pub nat: bool,
    /// Its Path and Outbound flow, when it has them.
    pub extra: Extra<'m>,
}

/// Why a REGISTER is refused: the reply's status and reason, and a header line it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: &'static str,
    pub header: Option<RefusalHeader>,
}

/// The header line a refusal carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalHeader {
    /// With 423 (section 10.3 step 7).
    MinExpires(u32),
    /// With 503: when to try again.
    RetryAfter(u32),
}

impl Refusal {
    pub const fn new(status: u16, reason: &'static str) -> Refusal {
        Refusal {
            status,
            reason,
            header: None,
        }
    }

    /// Append the refusal's header line (if any) to the reply's `extra` lines; returns its
    /// status and reason.
    pub fn write(&self, extra: &mut Vec<u8>) -> (u16, &'static str) {
        let (name, value): (&[u8], u32) = match self.header {
            None => return (self.status, self.reason),
            Some(RefusalHeader::MinExpires(s)) => (b"Min-Expires: ", s),
            Some(RefusalHeader::RetryAfter(s)) => (b"Retry-After: ", s),
        };
        extra.extend_from_slice(name);
        push_uint(extra, value);
        extra.extend_from_slice(b"\r\n");
        (self.status, self.reason)
    }
}

impl From<ParseError> for Refusal {
    fn from(e: ParseError) -> Refusal {
        Refusal::new(e.status(), e.reason())
    }
}

const MALFORMED_EXPIRES: Refusal = Refusal::new(400, "Bad Request - Malformed Contact Expires");

/// Validate a REGISTER addressed to one of our domains and compute what it changes in `table`
/// (section 10.3 steps 3-7), changing nothing. The checks run in the order their refusals take
/// precedence: To, Call-ID and CSeq, Expires, each Contact in turn, then the order of CSeqs and
/// the binding limits against the table.
///
/// ```
/// use std::net::SocketAddr;
/// use sipshard::identity::LocalIdentity;
/// use sipshard::location::{LocationTable, Now};
/// use sipshard::registrar::{plan, Changes, RefusalHeader, RegistrarConfig};
/// use sipshard::sip::{Message, Source, Transport};
///
/// let cfg = RegistrarConfig::default();
/// let listen: SocketAddr = "192.0.2.10:5060".parse().unwrap();
/// let local = LocalIdentity::new(&[(Transport::Udp, listen)], &[], None, &["example.com".into()], None);
/// let table = LocationTable::new();
/// let src = Source::udp("192.0.2.60:5062".parse().unwrap());
/// let now = Now { unix_ms: 1_700_000_000_000 };
/// let register = |expires: u32| format!(
///     "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.60:5062;branch=z9hG4bK1\r\n\
///      From: <sip:bob@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: c1\r\n\
///      CSeq: 1 REGISTER\r\nContact: <sip:bob@192.0.2.60:5062>;expires={expires}\r\n\
///      Content-Length: 0\r\n\r\n").into_bytes();
///
/// let mut buf = register(600);
/// let msg = Message::parse(&mut buf).unwrap();
/// let p = plan(&cfg, &local, &table, &msg, src, now).unwrap();
/// assert_eq!(p.aor(), b"bob@example.com");
/// let Changes::Listed(changes) = p.changes() else { panic!("a Contact list") };
/// assert_eq!((changes[0].uri, changes[0].expires), (&b"sip:bob@192.0.2.60:5062"[..], 600));
///
/// // Too brief a lifetime is refused with the minimum to ask for.
/// let mut buf = register(10);
/// let msg = Message::parse(&mut buf).unwrap();
/// let refusal = plan(&cfg, &local, &table, &msg, src, now).err().unwrap();
/// assert_eq!(refusal.status, 423);
/// assert_eq!(refusal.header, Some(RefusalHeader::MinExpires(cfg.min_expires)));
/// ```
pub fn plan<'m>(
    cfg: &RegistrarConfig,
    local: &LocalIdentity,
    table: &LocationTable,
    msg: &Message<'m>,
    src: Source,
    now: Now,
) -> Result<Plan<'m>, Refusal> {
    let mut aor = AorKey::new();
    aor_of(local, msg, &mut aor)?;
    let (Ok(call_id), Ok(cseq)) = (msg.call_id(), msg.cseq()) else {
        return Err(Refusal::new(400, "Bad Request - Malformed Call-ID or CSeq"));
    };
    let origin = Origin {
        call_id_hash: xxh3_64(call_id),
        cseq: cseq.number,
        now,
    };
    // Two Expires headers: which lifetime did the UA mean?
    if msg.count_of(HeaderName::Expires) > 1 {
        return Err(Refusal::new(400, "Bad Request - Repeated Expires"));
    }
    let header_expires = msg.expires()?;
    let via = msg.top_via().ok();
    let path = path_of(msg);
    let first_hop = FirstHop::of(msg, &path);
    let (listed, wildcard) = contacts(cfg, msg, via.as_ref(), src, header_expires, first_hop)?;
    let outbound = listed.iter().any(|c| c.extra.is_flow());
    let changes = if wildcard {
        // `Contact: *` must stand alone, with Expires: 0 (section 10.2.2).
        if !listed.is_empty() || msg.count_of(HeaderName::Contact) != 1 || header_expires != Some(0)
        {
            return Err(Refusal::new(400, "Bad Request - Invalid Wildcard Contact"));
        }
        remove_all(table, aor.as_bytes(), origin, src)?
    } else {
        for ch in &listed {
            check_order(table, aor.as_bytes(), ch.uri, origin)?;
        }
        check_limits(cfg, table, aor.as_bytes(), &listed, now.secs())?;
        Changes::Listed(listed)
    };
    Ok(Plan {
        aor,
        origin,
        changes,
        echo_path: msg
            .option_tags(HeaderName::Supported)
            .any(|t| t.eq_ignore_ascii_case(b"path")),
        path,
        outbound,
    })
}

/// The REGISTER's Path header values, comma-separated, topmost (the first hop) first.
fn path_of(msg: &Message<'_>) -> Vec<u8> {
    let mut path = Vec::new();
    for f in msg.fields_by_name(b"Path") {
        if !path.is_empty() {
            path.extend_from_slice(b", ");
        }
        path.extend_from_slice(msg.bytes(f.value));
    }
    path
}

/// Whether the hop the REGISTER came through can keep an Outbound flow (RFC 5626 section 6):
/// we are that hop (no Path), or its Path URI says `ob`; and whether the UA insists.
#[derive(Clone, Copy)]
struct FirstHop {
    supports_outbound: bool,
    outbound_required: bool,
    /// No Path: the UA is connected to us.
    direct: bool,
}

impl FirstHop {
    fn of(msg: &Message<'_>, path: &[u8]) -> FirstHop {
        let supports_outbound =
            path.is_empty() || first_of_list(path).is_some_and(|a| a.uri.param(b"ob").is_some());
        let outbound_required = msg
            .option_tags(HeaderName::Require)
            .any(|t| t.eq_ignore_ascii_case(b"outbound"));
        FirstHop {
            supports_outbound,
            outbound_required,
            direct: path.is_empty(),
        }
    }
}

/// The key of the address of record in To, which must be a user of one of our domains.
/// (Built in place: a key is 256 bytes, too many to move about.)
fn aor_of(local: &LocalIdentity, msg: &Message<'_>, key: &mut AorKey) -> Result<(), Refusal> {
    let Ok(to) = msg.to() else {
        return Err(Refusal::new(400, "Bad Request - Malformed To"));
    };
    let aor_uri = to.uri;
    if !matches!(aor_uri.scheme, Scheme::Sip | Scheme::Sips) {
        return Err(Refusal::new(404, "Not Found - Unsupported AOR"));
    }
    let Some(user) = aor_uri.user else {
        return Err(Refusal::new(404, "Not Found - AOR Without User"));
    };
    if !aor_uri
        .host
        .is_some_and(|h| local.is_our_domain(&h, aor_uri.port))
    {
        return Err(Refusal::new(404, "Not Found - Domain Not Served"));
    }
    if !key.build(user, local.aor_domain(aor_uri.host)) {
        return Err(Refusal::new(404, "Not Found - AOR Too Long"));
    }
    Ok(())
}

/// The Contact list as changes, each validated (section 10.3 steps 5-6), and whether it holds
/// a `*`.
fn contacts<'m>(
    cfg: &RegistrarConfig,
    msg: &Message<'m>,
    via: Option<&Via<'_>>,
    src: Source,
    header_expires: Option<u32>,
    first_hop: FirstHop,
) -> Result<(Vec<Change<'m>>, bool), Refusal> {
    let mut changes: Vec<Change<'m>> = Vec::new();
    let mut wildcard = false;
    // An empty Contact line or list element is a binding that was meant and lost: refusing
    // it beats answering as if the REGISTER were a query, or registering the rest.
    if msg
        .fields_named(HeaderName::Contact)
        .any(|f| has_empty_element(msg.bytes(f.value)))
    {
        return Err(Refusal::new(400, "Bad Request - Malformed Contact"));
    }
    for c in msg.contacts() {
        match c? {
            Contact::Wildcard => wildcard = true,
            Contact::Addr(a) => {
                if changes.len() == MAX_CONTACTS_PER_REGISTER {
                    return Err(Refusal::new(400, "Bad Request - Too Many Contacts"));
                }
                let mut change = change_of(cfg, &a, header_expires, via, src)?;
                if !first_hop.direct {
                    // Registered through an edge proxy (a Path): reaching the contact is the
                    // edge's business, requests go to it (see `target`), never pinged.
                    change.nat = false;
                }
                outbound_flow(&a, first_hop, src, &mut change)?;
                changes.push(change);
            }
        }
    }
    Ok((changes, wildcard))
}

/// One contact's change: its lifetime (its own `expires`, else the Expires header, else the
/// default; at least the minimum unless 0, at most the maximum), `q` and destination: where
/// the REGISTER came from when the contact is behind NAT, else where the contact says.
fn change_of<'m>(
    cfg: &RegistrarConfig,
    a: &NameAddr<'m>,
    header_expires: Option<u32>,
    via: Option<&Via<'_>>,
    src: Source,
) -> Result<Change<'m>, Refusal> {
    let requested = match a.param(b"expires") {
        None => header_expires.unwrap_or(cfg.default_expires),
        Some(Some(v)) => parse_delta_seconds(v).ok_or(MALFORMED_EXPIRES)?,
        Some(None) => return Err(MALFORMED_EXPIRES),
    };
    if requested != 0 && requested < cfg.min_expires {
        return Err(Refusal {
            status: 423,
            reason: "Interval Too Brief",
            header: Some(RefusalHeader::MinExpires(cfg.min_expires)),
        });
    }
    let Ok(q) = a.q() else {
        return Err(Refusal::new(400, "Bad Request - Malformed q"));
    };
    let nat = behind_nat(cfg.nat, via, &a.uri, src);
    Ok(Change {
        uri: a.uri.raw,
        expires: requested.min(cfg.max_expires),
        q,
        dest: if nat {
            src.back_to(src.addr)
        } else {
            destination_of(&a.uri, src)
        },
        nat,
        extra: Extra::default(),
    })
}

/// RFC 5626 section 6: a contact with `+sip.instance` and `reg-id` registered through a hop
/// that keeps flows is an Outbound flow, one binding per instance and reg-id; registered with
/// us directly, it is reached on the flow its REGISTER came on. A hop that cannot keep flows
/// makes it a plain binding, unless the UA requires outbound (439).
fn outbound_flow<'m>(
    a: &NameAddr<'m>,
    first_hop: FirstHop,
    src: Source,
    change: &mut Change<'m>,
) -> Result<(), Refusal> {
    let (Some(Some(instance)), Some(reg_id)) = (a.param(b"+sip.instance"), a.param(b"reg-id"))
    else {
        return Ok(());
    };
    let reg_id = reg_id
        .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u32>().ok())
        .filter(|&r| (1..=0x7fff_ffff).contains(&r))
        .ok_or(Refusal::new(400, "Bad Request - Malformed reg-id"))?;
    if !first_hop.supports_outbound {
        if first_hop.outbound_required {
            return Err(Refusal::new(439, "First Hop Lacks Outbound Support"));
        }
        return Ok(());
    }
    change.extra.instance = instance;
    change.extra.reg_id = reg_id;
    if first_hop.direct {
        change.dest = src.back_to(src.addr);
    }
    Ok(())
}

/// `Contact: *`: the removal of every live binding of `aor`, none of them out of order.
fn remove_all(
    table: &LocationTable,
    aor: &[u8],
    origin: Origin,
    src: Source,
) -> Result<Changes<'static>, Refusal> {
    let contacts: Vec<Vec<u8>> = table
        .live_bindings(aor, origin.now.secs())
        .map(|b| b.contact.to_vec())
        .collect();
    for uri in &contacts {
        check_order(table, aor, uri, origin)?;
    }
    Ok(Changes::All {
        contacts,
        dest: src.back_to(src.addr),
    })
}

/// Section 10.3 step 7: same Call-ID with a lower CSeq is out of order.
fn check_order(
    table: &LocationTable,
    aor: &[u8],
    uri: &[u8],
    origin: Origin,
) -> Result<(), Refusal> {
    let stored = table
        .bindings(aor)
        .find(|b| location::same_contact(b.contact, uri));
    match stored {
        Some(b)
            if b.version.call_id_hash == origin.call_id_hash && origin.cseq < b.version.cseq =>
        {
            Err(Refusal::new(
                500,
                "Server Internal Error - CSeq Out of Order",
            ))
        }
        _ => Ok(()),
    }
}

/// How many live bindings the AOR and the table would hold afterwards, against the limits.
fn check_limits(
    cfg: &RegistrarConfig,
    table: &LocationTable,
    aor: &[u8],
    changes: &[Change<'_>],
    now_secs: u64,
) -> Result<(), Refusal> {
    let live_now = table.live_bindings(aor, now_secs).count();
    let (mut added, mut removed) = (0usize, 0usize);
    for ch in changes {
        let exists = table
            .live_bindings(aor, now_secs)
            .any(|b| location::same_contact(b.contact, ch.uri));
        match (exists, ch.expires) {
            (false, e) if e > 0 => added += 1,
            (true, 0) => removed += 1,
            _ => {}
        }
    }
    let after = (live_now + added).saturating_sub(removed);
    if added > 0 && after > cfg.max_bindings_per_aor {
        return Err(Refusal::new(403, "Forbidden - Too Many Contacts"));
    }
    if added > removed && table.binding_count() + added - removed > cfg.max_bindings {
        return Err(Refusal {
            status: 503,
            reason: "Service Unavailable - Location Table Full",
            header: Some(RefusalHeader::RetryAfter(60)),
        });
    }
    Ok(())
}

/// Where requests for a contact go: the contact's own address when it is a literal IP,
/// else the address the REGISTER came from (names are never resolved on the packet path);
/// over the transport the contact's `transport` parameter names, else the one the REGISTER
/// came by. A REGISTER that came over a connection leaves the binding its connection: calls
/// go down it while it is open (RFC 5923-style reuse, what reaches a UA behind NAT), to the
/// address when it is gone.
fn destination_of(uri: &Uri<'_>, src: Source) -> Target {
    let transport = uri
        .param(b"transport")
        .and_then(Transport::from_token)
        .unwrap_or(src.transport);
    let addr = match uri.host.and_then(|h| h.ip()) {
        Some(ip) => SocketAddr::new(ip, uri.port.unwrap_or(transport.default_port())),
        None => src.addr,
    };
    Target {
        transport,
        addr,
        conn: src.conn.filter(|_| transport == src.transport),
        fallback_udp: false,
        flow: false,
    }
}
