//! Server-side NAT pings (`--nat-ping-interval`): an OPTIONS (or a bare CRLF) to every UDP
//! contact registered from behind NAT, so that its pinhole stays open between registrations,
//! and, for OPTIONS, a binding whose pings go unanswered `--nat-ping-failures` times in a row
//! is removed (the phone is gone; calls would vanish into the NAT).
//!
//! Each shard pings the contacts that registered through it: with the kernel's flow steering
//! the answers come back to the same shard, since they come from the same address to the same
//! port. An answer that lands on another shard anyway (`--steering random`) is handed to the
//! owner, whose number the ping's branch carries.
//!
//! The work is spread evenly over time: contacts sit in a wheel of [`SLOT_MS`] slots covering
//! one interval, each in the slot its key hashes to, and a shard visits the slots as time
//! passes. A million contacts at a 30 s interval are some 660 pings per 20 ms slot over the
//! node, never a burst. No I/O and no clock here: the runtime passes the time in and sends what
//! comes out.
//!
//! What a ping costs beyond the kernel's work for its datagram is kept small: a slot's contacts
//! are stored in the slot and read in order, and the location table (a hash probe and a
//! decode, cache misses all) is consulted only at every [`CHECK_EVERY`]th ping of a contact and
//! when `--nat-ping-failures` of its OPTIONS pings went unanswered in a row. Between checks the
//! pinger trusts what the registration told it: a binding removed elsewhere (another shard, the
//! admin API, a cluster peer) or expired gets at most `CHECK_EVERY - 1` more pings. An answer
//! finds its contact by the position its ping's branch carries, without a hash lookup.

use std::net::SocketAddr;

use ahash::AHashMap as HashMap;
use smallvec::SmallVec;
use xxhash_rust::xxh3::Xxh3;

use super::branch::{hex_into, BRANCH_PREFIX};
use crate::sip::write::push_uint;

/// The width of one slot of the wheel: how often a shard sends the pings that came due.
pub const SLOT_MS: u64 = 20;
/// A contact is checked against the location table at every this many pings of it.
pub const CHECK_EVERY: u32 = 4;
/// What follows [`BRANCH_PREFIX`] in a ping's branch (not hex, so no forwarded request's
/// branch starts so), then [`PingId`] in hex.
const PING_MARK: &[u8] = b"np";
/// Hex digits of a ping's id: owner shard (4), contact key (16), position in its slot (8).
const ID_HEX: usize = 28;
/// Bytes of AOR and contact URI a contact keeps inline (`sip:u123456@example.com` and
/// `sip:u123456@203.0.113.7:5060` take 53; longer ones go to memory of their own).
const INLINE_NAMES: usize = 88;

/// What a NAT ping is (`--nat-ping-method`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PingMethod {
    /// An OPTIONS request: answered, so dead contacts are found.
    #[default]
    Options,
    /// Four bytes, CRLF CRLF: keeps the pinhole open, never answered.
    Crlf,
}

/// `--nat-ping-interval`, `--nat-ping-method`, `--nat-ping-failures`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatPingConfig {
    pub interval_ms: u64,
    pub method: PingMethod,
    /// Unanswered OPTIONS pings in a row that remove a binding (0: never removed).
    pub failures: u32,
}

/// One contact this shard pings.
struct Contact {
    key: u64,
    /// Where its REGISTER came from, and the listener it came in on (pings leave by it, so the
    /// NAT sees the same flow).
    dest: SocketAddr,
    listener: usize,
    /// The AOR, then the contact URI, inline when short (most are): an OPTIONS ping copies
    /// the URI, and a pointer to memory of its own cost a cache miss per ping, a third of what
    /// sipshard adds to the kernel's send (measured: docs/nat.md).
    names: SmallVec<[u8; INLINE_NAMES]>,
    aor_len: usize,
    /// The last ping is not answered yet.
    awaiting: bool,
    /// Pings in a row that went unanswered.
    misses: u32,
    /// CSeq of the last ping.
    seq: u32,
}

impl Contact {
    fn aor(&self) -> &[u8] {
        &self.names[..self.aor_len]
    }

    fn uri(&self) -> &[u8] {
        &self.names[self.aor_len..]
    }

    /// An answer arrived (or a registration, which counts as one): whether one was awaited.
    fn answered(&mut self) -> bool {
        let awaited = self.awaiting;
        (self.awaiting, self.misses) = (false, 0);
        awaited
    }
}

/// What a ping's branch carries: the shard that sent it, the contact's key, and where the
/// contact sat in its slot then (a hint: it may have moved since).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PingId {
    owner: u16,
    key: u64,
    pos: u32,
}

/// A ping to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ping {
    pub to: SocketAddr,
    pub listener: usize,
    /// Where its bytes are in the batch's buffer.
    pub start: usize,
    pub end: usize,
}

/// The pings that came due, written back to back into one buffer.
#[derive(Default)]
pub struct PingBatch {
    pub bytes: Vec<u8>,
    pub pings: Vec<Ping>,
}

impl PingBatch {
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.pings.clear();
    }

    pub fn bytes_of(&self, p: &Ping) -> &[u8] {
        &self.bytes[p.start..p.end]
    }
}

/// One shard's NAT pinger: the contacts it pings, in a wheel.
pub struct Pinger {
    cfg: NatPingConfig,
    shard: u16,
    /// The contacts by slot; a contact sits in slot `key % wheel.len()`.
    wheel: Vec<Vec<Contact>>,
    /// Each contact's position in its slot, by key.
    positions: HashMap<u64, u32>,
    /// The next slot to visit, and when it comes due (ms, the caller's clock).
    next_slot: usize,
    next_due_ms: Option<u64>,
    /// Answers that came here for pings another shard sent: (owner, key).
    foreign: Vec<(u16, u64)>,
}

impl Pinger {
    pub fn new(cfg: NatPingConfig, shard: u16) -> Pinger {
        let slots = (cfg.interval_ms / SLOT_MS).max(1) as usize;
        Pinger {
            cfg,
            shard,
            wheel: (0..slots).map(|_| Vec::new()).collect(),
            positions: HashMap::new(),
            next_slot: 0,
            next_due_ms: None,
            foreign: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.positions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// A contact of `aor` registered (or refreshed) from behind NAT through this shard, over
    /// UDP from `dest` on `listener`: ping it from now on. A registration counts as an answer.
    pub fn track(&mut self, aor: &[u8], contact: &[u8], dest: SocketAddr, listener: usize) {
        let key = key_of(aor, contact);
        if let Some(c) = self.find_mut(key) {
            (c.dest, c.listener) = (dest, listener);
            c.answered();
            return;
        }
        let slot = self.slot_of(key);
        self.positions.insert(key, self.wheel[slot].len() as u32);
        self.wheel[slot].push(Contact {
            key,
            dest,
            listener,
            names: SmallVec::from_iter(aor.iter().chain(contact).copied()),
            aor_len: aor.len(),
            awaiting: false,
            misses: 0,
            seq: 0,
        });
    }

    /// An answer whose top Via is ours, with branch `branch`: `None` when it is not a ping's,
    /// else whether it answered a ping of this shard that awaited it. Answers to another
    /// shard's pings are kept for [`Self::take_foreign`].
    pub fn on_answer(&mut self, branch: &[u8]) -> Option<bool> {
        let id = parse_branch(branch)?;
        if id.owner != self.shard {
            self.foreign.push((id.owner, id.key));
            return Some(false);
        }
        let slot = self.slot_of(id.key);
        let at_hint = self.wheel[slot].get_mut(id.pos as usize);
        if let Some(c) = at_hint.filter(|c| c.key == id.key) {
            return Some(c.answered());
        }
        Some(self.answered(id.key))
    }

    /// A ping of this shard was answered (here, or on another shard that handed it over).
    pub fn answered(&mut self, key: u64) -> bool {
        self.find_mut(key).is_some_and(Contact::answered)
    }

    /// Answers that belong to other shards: (owner, key).
    pub fn take_foreign(&mut self) -> std::vec::Drain<'_, (u16, u64)> {
        self.foreign.drain(..)
    }

    /// Visit every slot due by `now_ms`. For a contact due a check (every [`CHECK_EVERY`]
    /// pings, or when too many pings went unanswered), `visit(aor, contact, dest, dead)`
    /// checks it against the location table (and removes its binding when `dead`) and says
    /// whether to go on pinging it; the pings are written into `batch`, with
    /// `via_host(listener, dest)`, our advertised `host:port`, in their Via. Returns how many
    /// pings were written.
    pub fn run_due<'h>(
        &mut self,
        now_ms: u64,
        batch: &mut PingBatch,
        mut visit: impl FnMut(&[u8], &[u8], SocketAddr, bool) -> VisitOutcome,
        via_host: impl Fn(usize, SocketAddr) -> &'h str,
    ) -> usize {
        let due = *self.next_due_ms.get_or_insert(now_ms);
        if now_ms < due {
            return 0;
        }
        // At most one turn of the wheel per call, however late the call.
        let late_slots = ((now_ms - due) / SLOT_MS + 1).min(self.wheel.len() as u64);
        let before = batch.pings.len();
        for _ in 0..late_slots {
            self.run_slot(self.next_slot, batch, &mut visit, &via_host);
            self.next_slot = (self.next_slot + 1) % self.wheel.len();
        }
        self.next_due_ms = Some(due + late_slots * SLOT_MS);
        batch.pings.len() - before
    }

    /// Ping every contact of one slot, forgetting those the table no longer has.
    fn run_slot<'h>(
        &mut self,
        slot: usize,
        batch: &mut PingBatch,
        visit: &mut impl FnMut(&[u8], &[u8], SocketAddr, bool) -> VisitOutcome,
        via_host: &impl Fn(usize, SocketAddr) -> &'h str,
    ) {
        let mut pos = 0;
        while pos < self.wheel[slot].len() {
            let c = &mut self.wheel[slot][pos];
            if self.cfg.due_check(c, visit) == VisitOutcome::Forget {
                self.forget(slot, pos);
                continue;
            }
            let id = PingId {
                owner: self.shard,
                key: c.key,
                pos: pos as u32,
            };
            write_ping(self.cfg.method, c, id, batch, via_host);
            pos += 1;
        }
    }

    /// Drop the contact at `pos` of `slot`; the slot's last contact takes its place.
    fn forget(&mut self, slot: usize, pos: usize) {
        let gone = self.wheel[slot].swap_remove(pos);
        self.positions.remove(&gone.key);
        if let Some(moved) = self.wheel[slot].get(pos) {
            self.positions.insert(moved.key, pos as u32);
        }
    }

    fn find_mut(&mut self, key: u64) -> Option<&mut Contact> {
        let pos = *self.positions.get(&key)? as usize;
        let slot = self.slot_of(key);
        self.wheel[slot].get_mut(pos)
    }

    fn slot_of(&self, key: u64) -> usize {
        (key % self.wheel.len() as u64) as usize
    }
}

impl NatPingConfig {
    /// Count a ping left unanswered and, when the contact is due a check (every
    /// [`CHECK_EVERY`] pings, or dead: `failures` went unanswered), ask the table.
    fn due_check(
        &self,
        c: &mut Contact,
        visit: &mut impl FnMut(&[u8], &[u8], SocketAddr, bool) -> VisitOutcome,
    ) -> VisitOutcome {
        let options = self.method == PingMethod::Options;
        if options && c.awaiting {
            c.misses += 1;
        }
        let dead = options && self.failures > 0 && c.misses >= self.failures;
        if dead || c.seq % CHECK_EVERY == 0 {
            return visit(c.aor(), c.uri(), c.dest, dead);
        }
        VisitOutcome::Keep
    }
}

/// Write the next ping to `c` into `batch`.
fn write_ping<'h>(
    method: PingMethod,
    c: &mut Contact,
    id: PingId,
    batch: &mut PingBatch,
    via_host: &impl Fn(usize, SocketAddr) -> &'h str,
) {
    c.seq = c.seq.wrapping_add(1);
    c.awaiting = method == PingMethod::Options;
    let start = batch.bytes.len();
    match method {
        PingMethod::Crlf => batch.bytes.extend_from_slice(b"\r\n\r\n"),
        PingMethod::Options => {
            let host = via_host(c.listener, c.dest);
            write_options(&mut batch.bytes, c.uri(), host, id, c.seq);
        }
    }
    batch.pings.push(Ping {
        to: c.dest,
        listener: c.listener,
        start,
        end: batch.bytes.len(),
    });
}

/// What the table says of a contact being visited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VisitOutcome {
    /// Still bound behind NAT at the same address: ping it.
    Keep,
    /// Gone, refreshed from elsewhere, or (when it was dead) removed: stop pinging it.
    Forget,
}

/// The key of a contact of an AOR.
fn key_of(aor: &[u8], contact: &[u8]) -> u64 {
    let mut h = Xxh3::new();
    h.update(aor);
    h.update(&[0]);
    h.update(contact);
    h.digest()
}

/// The id a ping's branch carries.
fn parse_branch(branch: &[u8]) -> Option<PingId> {
    let rest = branch
        .strip_prefix(BRANCH_PREFIX)?
        .strip_prefix(PING_MARK)?;
    // Hex digits only, so that the text splits where its bytes do (an answer can say anything).
    if rest.len() != ID_HEX || !rest.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let text = std::str::from_utf8(rest).ok()?;
    Some(PingId {
        owner: u16::from_str_radix(&text[..4], 16).ok()?,
        key: u64::from_str_radix(&text[4..20], 16).ok()?,
        pos: u32::from_str_radix(&text[20..], 16).ok()?,
    })
}

/// An OPTIONS to `contact` whose branch carries the ping's id (RFC 3261 section 11: any
/// answer, even an error, shows the UA is there).
fn write_options(out: &mut Vec<u8>, contact: &[u8], host: &str, id: PingId, seq: u32) {
    let mut ids = [0u8; ID_HEX];
    hex_into(u64::from(id.owner), &mut ids[..4]);
    hex_into(id.key, &mut ids[4..20]);
    hex_into(u64::from(id.pos), &mut ids[20..]);
    let key_hex = &ids[4..20];
    out.extend_from_slice(b"OPTIONS ");
    out.extend_from_slice(contact);
    out.extend_from_slice(b" SIP/2.0\r\nVia: SIP/2.0/UDP ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b";branch=");
    out.extend_from_slice(BRANCH_PREFIX);
    out.extend_from_slice(PING_MARK);
    out.extend_from_slice(&ids);
    out.extend_from_slice(b";rport\r\nMax-Forwards: 70\r\nFrom: <sip:pinger@");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b">;tag=");
    out.extend_from_slice(key_hex);
    out.extend_from_slice(b"\r\nTo: <");
    out.extend_from_slice(contact);
    out.extend_from_slice(b">\r\nCall-ID: np");
    out.extend_from_slice(key_hex);
    out.push(b'.');
    push_uint(out, seq);
    out.extend_from_slice(b"\r\nCSeq: ");
    push_uint(out, seq);
    out.extend_from_slice(b" OPTIONS\r\nContent-Length: 0\r\n\r\n");
}

#[cfg(test)]
mod tests;
