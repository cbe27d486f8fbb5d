//! The registrar (RFC 3261 section 10.3, RFC 3665 section 2).
//!
//! REGISTER for one of our domains adds, refreshes or removes bindings of the address of record
//! in To; the 200 OK lists every current binding with its remaining lifetime. Each change is
//! merged into this shard's table and queued for the other shards.
//!
//! A stateless registrar sees retransmissions: a REGISTER repeated with the same Call-ID and
//! CSeq (its 200 was lost) is answered again without changing anything. A lower CSeq in the same
//! Call-ID is out of order (section 10.3 step 7) and fails with 500 and Retry-After.

use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

use xxhash_rust::xxh3::xxh3_64;

use crate::counters::Counters;
use crate::identity::LocalIdentity;
use crate::location::{
    self, AorKey, Binding, BindingRecord, LocationTable, MergeOutcome, Now, Version,
};
use crate::sip::addr::Contact;
use crate::sip::write::{push_q_value, push_uint};
use crate::sip::{Message, Scheme, Source, Target, Transport, Uri};

/// The most contacts one REGISTER may carry.
pub const MAX_CONTACTS_PER_REGISTER: usize = 32;

/// Registration lifetimes (seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegistrarConfig {
    pub default_expires: u32,
    pub min_expires: u32,
    pub max_expires: u32,
    /// Live bindings one AOR may have (`--max-bindings-per-aor`).
    pub max_bindings_per_aor: usize,
    /// Live bindings the whole table may hold (`--max-bindings`).
    pub max_bindings: usize,
}

/// The command line's defaults.
impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            default_expires: 3600,
            min_expires: 60,
            max_expires: 7200,
            max_bindings_per_aor: 10,
            max_bindings: 10_000_000,
        }
    }
}

/// Everything the registrar reads and changes, borrowed from the shard's core.
pub struct Context<'c> {
    pub cfg: &'c RegistrarConfig,
    pub local: &'c LocalIdentity,
    pub table: &'c mut LocationTable,
    pub counters: &'c mut Counters,
    pub outbox: &'c mut Vec<BindingRecord>,
    pub last_stamp_ms: &'c mut u64,
    /// Header lines for the reply (Contact list, Min-Expires, ...).
    pub extra: &'c mut Vec<u8>,
    pub date: &'c mut DateLine,
}

/// One requested change, validated before anything is applied.
struct Change<'a> {
    uri: &'a [u8],
    expires: u32,
    q: u16,
    dest: Target,
}

/// Handle a REGISTER addressed to one of our domains. Returns the status and reason of the
/// reply; header lines for it are written to `ctx.extra`.
pub fn handle(
    ctx: &mut Context<'_>,
    msg: &Message<'_>,
    src: Source,
    now: Now,
) -> (u16, &'static str) {
    let Ok(to) = msg.to() else {
        return (400, "Bad Request - Malformed To");
    };
    let aor_uri = to.uri;
    if !matches!(aor_uri.scheme, Scheme::Sip | Scheme::Sips) {
        return (404, "Not Found - Unsupported AOR");
    }
    let Some(user) = aor_uri.user else {
        return (404, "Not Found - AOR Without User");
    };
    if !aor_uri
        .host
        .is_some_and(|h| ctx.local.is_our_domain(&h, aor_uri.port))
    {
        return (404, "Not Found - Domain Not Served");
    }
    let mut key = AorKey::new();
    if !key.build(user, ctx.local.aor_domain(aor_uri.host)) {
        return (404, "Not Found - AOR Too Long");
    }
    let aor = key.as_bytes();
    let (Ok(call_id), Ok(cseq)) = (msg.call_id(), msg.cseq()) else {
        return (400, "Bad Request - Malformed Call-ID or CSeq");
    };
    let call_id_hash = xxh3_64(call_id);
    let header_expires = match msg.expires() {
        Ok(e) => e,
        Err(e) => return (e.status(), e.reason()),
    };
    let now_secs = now.secs();

    // Gather and validate every change before applying any (section 10.3 steps 5-7).
    let mut changes: Vec<Change<'_>> = Vec::new();
    let mut wildcard = false;
    for c in msg.contacts() {
        match c {
            Err(e) => return (e.status(), e.reason()),
            Ok(Contact::Wildcard) => wildcard = true,
            Ok(Contact::Addr(a)) => {
                if changes.len() == MAX_CONTACTS_PER_REGISTER {
                    return (400, "Bad Request - Too Many Contacts");
                }
                let requested = match a.param(b"expires") {
                    None => header_expires.unwrap_or(ctx.cfg.default_expires),
                    Some(Some(v)) => match crate::sip::parse::parse_delta_seconds(v) {
                        Some(e) => e,
                        None => return (400, "Bad Request - Malformed Contact Expires"),
                    },
                    Some(None) => return (400, "Bad Request - Malformed Contact Expires"),
                };
                if requested != 0 && requested < ctx.cfg.min_expires {
                    ctx.extra.extend_from_slice(b"Min-Expires: ");
                    push_uint(ctx.extra, ctx.cfg.min_expires);
                    ctx.extra.extend_from_slice(b"\r\n");
                    return (423, "Interval Too Brief");
                }
                let Ok(q) = a.q() else {
                    return (400, "Bad Request - Malformed q");
                };
                changes.push(Change {
                    uri: a.uri.raw,
                    expires: requested.min(ctx.cfg.max_expires),
                    q,
                    dest: destination_of(&a.uri, src),
                });
            }
        }
    }
    if wildcard {
        // `Contact: *` must stand alone, with Expires: 0 (section 10.2.2).
        if !changes.is_empty()
            || msg.count_of(crate::sip::HeaderName::Contact) != 1
            || header_expires != Some(0)
        {
            return (400, "Bad Request - Invalid Wildcard Contact");
        }
        let existing: Vec<Vec<u8>> = ctx
            .table
            .live_bindings(aor, now_secs)
            .map(|b| b.contact.to_vec())
            .collect();
        for uri in &existing {
            if let Some(r) = check_order(ctx.table, aor, uri, call_id_hash, cseq.number) {
                return r;
            }
        }
        for uri in &existing {
            let dest = src.back_to(src.addr);
            apply(ctx, aor, uri, 0, 1000, dest, call_id_hash, cseq.number, now);
        }
    } else {
        for ch in &changes {
            if let Some(r) = check_order(ctx.table, aor, ch.uri, call_id_hash, cseq.number) {
                return r;
            }
        }
        // Limits: how many live bindings the AOR and the table would hold afterwards.
        let live_now = ctx.table.live_bindings(aor, now_secs).count();
        let (mut added, mut removed) = (0usize, 0usize);
        for ch in &changes {
            let exists = ctx
                .table
                .live_bindings(aor, now_secs)
                .any(|b| location::same_contact(b.contact, ch.uri));
            match (exists, ch.expires) {
                (false, e) if e > 0 => added += 1,
                (true, 0) => removed += 1,
                _ => {}
            }
        }
        let after = (live_now + added).saturating_sub(removed);
        if added > 0 && after > ctx.cfg.max_bindings_per_aor {
            return (403, "Forbidden - Too Many Contacts");
        }
        if added > removed && ctx.table.binding_count() + added - removed > ctx.cfg.max_bindings {
            ctx.extra.extend_from_slice(b"Retry-After: 60\r\n");
            return (503, "Service Unavailable - Location Table Full");
        }
        for ch in &changes {
            if is_retransmission(ctx.table, aor, ch.uri, call_id_hash, cseq.number) {
                continue;
            }
            apply(
                ctx,
                aor,
                ch.uri,
                ch.expires,
                ch.q,
                ch.dest,
                call_id_hash,
                cseq.number,
                now,
            );
        }
    }

    // The 200 lists every current binding (section 10.3 step 8).
    for b in ctx.table.live_bindings(aor, now_secs) {
        ctx.extra.extend_from_slice(b"Contact: <");
        ctx.extra.extend_from_slice(b.contact);
        ctx.extra.extend_from_slice(b">;expires=");
        push_uint(ctx.extra, b.remaining(now_secs));
        if b.q != 1000 {
            ctx.extra.extend_from_slice(b";q=");
            push_q_value(ctx.extra, b.q);
        }
        ctx.extra.extend_from_slice(b"\r\n");
    }
    ctx.extra.extend_from_slice(ctx.date.line(now_secs));
    (200, "OK")
}

/// The `Date:` line of 200 responses (RFC 3261 section 10.3 step 8 suggests one, so clients
/// without a clock can set theirs), formatted once per second rather than per REGISTER.
#[derive(Default)]
pub struct DateLine {
    secs: Option<u64>,
    line: Vec<u8>,
}

impl DateLine {
    /// `Date: <IMF-fixdate>\r\n` for `now_secs`.
    pub fn line(&mut self, now_secs: u64) -> &[u8] {
        if self.secs != Some(now_secs) {
            let date = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(now_secs));
            self.line.clear();
            self.line.extend_from_slice(b"Date: ");
            self.line.extend_from_slice(date.as_bytes());
            self.line.extend_from_slice(b"\r\n");
            self.secs = Some(now_secs);
        }
        &self.line
    }
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
    }
}

/// Section 10.3 step 7: same Call-ID with a lower CSeq is out of order.
fn check_order(
    table: &LocationTable,
    aor: &[u8],
    uri: &[u8],
    call_id_hash: u64,
    cseq: u32,
) -> Option<(u16, &'static str)> {
    let stored = table
        .bindings(aor)
        .find(|b| location::same_contact(b.contact, uri))?;
    if stored.version.call_id_hash == call_id_hash && cseq < stored.version.cseq {
        return Some((500, "Server Internal Error - CSeq Out of Order"));
    }
    None
}

/// The same Call-ID and CSeq as stored: a retransmission of a REGISTER already applied.
fn is_retransmission(
    table: &LocationTable,
    aor: &[u8],
    uri: &[u8],
    call_id_hash: u64,
    cseq: u32,
) -> bool {
    table
        .bindings(aor)
        .find(|b| location::same_contact(b.contact, uri))
        .is_some_and(|b| b.version.call_id_hash == call_id_hash && b.version.cseq == cseq)
}

#[allow(clippy::too_many_arguments)]
fn apply(
    ctx: &mut Context<'_>,
    aor: &[u8],
    uri: &[u8],
    expires: u32,
    q: u16,
    dest: Target,
    call_id_hash: u64,
    cseq: u32,
    now: Now,
) {
    let stamp = now.unix_ms.max(*ctx.last_stamp_ms + 1);
    *ctx.last_stamp_ms = stamp;
    let expires_at = if expires == 0 {
        0
    } else {
        (now.secs() + expires as u64).min(u32::MAX as u64) as u32
    };
    let binding = Binding {
        version: Version {
            stamp_ms: stamp,
            call_id_hash,
            cseq,
        },
        expires_at,
        q,
        dest,
        contact: uri,
    };
    match ctx.table.merge(aor, &binding) {
        MergeOutcome::Added => ctx.counters.registrations_added += 1,
        MergeOutcome::Refreshed => ctx.counters.registrations_refreshed += 1,
        MergeOutcome::Removed => ctx.counters.registrations_removed += 1,
        MergeOutcome::Stale | MergeOutcome::Invalid | MergeOutcome::Tombstone => {}
    }
    ctx.outbox.push(BindingRecord::new(aor, &binding));
    ctx.counters.replication_sent += 1;
}
