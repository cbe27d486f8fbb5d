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

use std::net::SocketAddr;

use ahash::AHashMap as HashMap;
use xxhash_rust::xxh3::Xxh3;

use super::branch::{hex_into, BRANCH_PREFIX};
use crate::sip::write::push_uint;

/// The width of one slot of the wheel: how often a shard sends the pings that came due.
pub const SLOT_MS: u64 = 20;
/// What follows [`BRANCH_PREFIX`] in a ping's branch (not hex, so no forwarded request's
/// branch starts so), then the owner shard (4 hex) and the contact's key (16 hex).
const PING_MARK: &[u8] = b"np";

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
    aor: Box<[u8]>,
    contact: Box<[u8]>,
    /// Where its REGISTER came from, and the listener it came in on (pings leave by it, so the
    /// NAT sees the same flow).
    dest: SocketAddr,
    listener: usize,
    /// The last ping is not answered yet.
    awaiting: bool,
    /// Pings in a row that went unanswered.
    misses: u32,
    /// CSeq of the last ping.
    seq: u32,
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
    contacts: HashMap<u64, Contact>,
    /// Keys by slot; a key sits in slot `key % slots.len()`.
    wheel: Vec<Vec<u64>>,
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
            contacts: HashMap::new(),
            wheel: vec![Vec::new(); slots],
            next_slot: 0,
            next_due_ms: None,
            foreign: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.contacts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.contacts.is_empty()
    }

    /// A contact of `aor` registered (or refreshed) from behind NAT through this shard, over
    /// UDP from `dest` on `listener`: ping it from now on. A registration counts as an answer.
    pub fn track(&mut self, aor: &[u8], contact: &[u8], dest: SocketAddr, listener: usize) {
        let key = key_of(aor, contact);
        if let Some(c) = self.contacts.get_mut(&key) {
            (c.dest, c.listener, c.awaiting, c.misses) = (dest, listener, false, 0);
            return;
        }
        self.contacts.insert(
            key,
            Contact {
                aor: aor.into(),
                contact: contact.into(),
                dest,
                listener,
                awaiting: false,
                misses: 0,
                seq: 0,
            },
        );
        let slot = (key % self.wheel.len() as u64) as usize;
        self.wheel[slot].push(key);
    }

    /// An answer whose top Via is ours, with branch `branch`: `None` when it is not a ping's,
    /// else whether it answered a ping of this shard that awaited it. Answers to another
    /// shard's pings are kept for [`Self::take_foreign`].
    pub fn on_answer(&mut self, branch: &[u8]) -> Option<bool> {
        let (owner, key) = parse_branch(branch)?;
        if owner == self.shard {
            return Some(self.answered(key));
        }
        self.foreign.push((owner, key));
        Some(false)
    }

    /// A ping of this shard was answered (here, or on another shard that handed it over).
    pub fn answered(&mut self, key: u64) -> bool {
        match self.contacts.get_mut(&key) {
            Some(c) if c.awaiting => {
                (c.awaiting, c.misses) = (false, 0);
                true
            }
            _ => false,
        }
    }

    /// Answers that belong to other shards: (owner, key).
    pub fn take_foreign(&mut self) -> std::vec::Drain<'_, (u16, u64)> {
        self.foreign.drain(..)
    }

    /// Visit every slot due by `now_ms`. `visit(aor, contact, dest, dead)` checks each contact
    /// against the location table (and removes its binding when `dead`: too many pings went
    /// unanswered) and says whether to go on pinging it; the pings are written into `batch`,
    /// with `via_host(listener, dest)`, our advertised `host:port`, in their Via. Returns how
    /// many pings were written.
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
            let slot = self.next_slot;
            let mut keys = std::mem::take(&mut self.wheel[slot]);
            keys.retain(|&key| self.visit_one(key, batch, &mut visit, &via_host));
            self.wheel[slot] = keys;
            self.next_slot = (slot + 1) % self.wheel.len();
        }
        self.next_due_ms = Some(due + late_slots * SLOT_MS);
        batch.pings.len() - before
    }

    /// Visit one contact; false when it is to be forgotten.
    fn visit_one<'h>(
        &mut self,
        key: u64,
        batch: &mut PingBatch,
        visit: &mut impl FnMut(&[u8], &[u8], SocketAddr, bool) -> VisitOutcome,
        via_host: &impl Fn(usize, SocketAddr) -> &'h str,
    ) -> bool {
        let Some(c) = self.contacts.get_mut(&key) else {
            return false;
        };
        let options = self.cfg.method == PingMethod::Options;
        if options && c.awaiting {
            c.misses += 1;
        }
        let dead = options && self.cfg.failures > 0 && c.misses >= self.cfg.failures;
        match visit(&c.aor, &c.contact, c.dest, dead) {
            VisitOutcome::Keep => {}
            VisitOutcome::Forget => {
                self.contacts.remove(&key);
                return false;
            }
        }
        c.seq = c.seq.wrapping_add(1);
        c.awaiting = options;
        let start = batch.bytes.len();
        match self.cfg.method {
            PingMethod::Crlf => batch.bytes.extend_from_slice(b"\r\n\r\n"),
            PingMethod::Options => {
                let host = via_host(c.listener, c.dest);
                write_options(&mut batch.bytes, &c.contact, host, self.shard, key, c.seq);
            }
        }
        batch.pings.push(Ping {
            to: c.dest,
            listener: c.listener,
            start,
            end: batch.bytes.len(),
        });
        true
    }
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

/// (owner shard, key) of a ping's branch.
fn parse_branch(branch: &[u8]) -> Option<(u16, u64)> {
    let rest = branch
        .strip_prefix(BRANCH_PREFIX)?
        .strip_prefix(PING_MARK)?;
    // Hex digits only, so that the text splits where its bytes do (an answer can say anything).
    if rest.len() != 20 || !rest.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let text = std::str::from_utf8(rest).ok()?;
    let owner = u16::from_str_radix(&text[..4], 16).ok()?;
    let key = u64::from_str_radix(&text[4..], 16).ok()?;
    Some((owner, key))
}

/// An OPTIONS to `contact` whose branch names the owner and the key (RFC 3261 section 11:
/// any answer, even an error, shows the UA is there).
fn write_options(out: &mut Vec<u8>, contact: &[u8], host: &str, shard: u16, key: u64, seq: u32) {
    let mut ids = [0u8; 20];
    hex_into(u64::from(shard), &mut ids[..4]);
    hex_into(key, &mut ids[4..]);
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
    out.extend_from_slice(&ids[4..]);
    out.extend_from_slice(b"\r\nTo: <");
    out.extend_from_slice(contact);
    out.extend_from_slice(b">\r\nCall-ID: np");
    out.extend_from_slice(&ids);
    out.push(b'.');
    push_uint(out, seq);
    out.extend_from_slice(b"\r\nCSeq: ");
    push_uint(out, seq);
    out.extend_from_slice(b" OPTIONS\r\nContent-Length: 0\r\n\r\n");
}

#[cfg(test)]
mod tests;
