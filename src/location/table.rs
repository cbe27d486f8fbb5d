//! The location table itself: storage, lookup, last-writer-wins merge and purge.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ahash::RandomState;
use hashbrown::HashTable;

use super::expiry::ExpirySchedule;
use crate::sip::{ConnId, Target, Transport, Uri};

/// How long a removal is remembered, so late replicas of older registrations lose to it.
pub const TOMBSTONE_SECS: u64 = 64;

/// Orders updates of one binding: later stamp wins; ties broken by Call-ID hash then CSeq, and
/// finally by the record bytes, so that the order is total and the same on every shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Wall-clock milliseconds when the origin shard accepted the update (strictly increasing
    /// per shard).
    pub stamp_ms: u64,
    pub call_id_hash: u64,
    pub cseq: u32,
}

/// One binding as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding<'a> {
    pub version: Version,
    /// Unix seconds when the binding lapses; 0 for a tombstone (a removal).
    pub expires_at: u32,
    /// Preference in thousandths (RFC 3261 `q`).
    pub q: u16,
    /// Where requests for this binding are sent (transport, address, connection).
    pub dest: Target,
    /// The contact was registered from behind NAT: `dest` is where its REGISTER came from,
    /// not the address its Contact names (which stays the Request-URI). Such UDP bindings are
    /// what the NAT pinger keeps open.
    pub nat: bool,
    /// The Contact URI as registered.
    pub contact: &'a [u8],
    /// What some bindings carry besides: their Path and their Outbound flow.
    pub extra: Extra<'a>,
}

/// What a binding may carry besides its contact (stored only when present).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extra<'a> {
    /// The REGISTER's Path values (RFC 3327), comma-separated, first hop first: the route set
    /// towards the contact.
    pub path: &'a [u8],
    /// The Contact's `+sip.instance` and `reg-id` (RFC 5626) when the registration is an
    /// Outbound flow: the binding is that flow, whatever its URI.
    pub instance: &'a [u8],
    pub reg_id: u32,
}

impl Extra<'_> {
    fn is_empty(&self) -> bool {
        self.path.is_empty() && self.instance.is_empty() && self.reg_id == 0
    }

    /// An Outbound flow: one binding per instance and reg-id.
    pub fn is_flow(&self) -> bool {
        !self.instance.is_empty() && self.reg_id != 0
    }
}

impl Binding<'_> {
    pub fn is_tombstone(&self) -> bool {
        self.expires_at == 0
    }

    pub fn is_live(&self, now_secs: u64) -> bool {
        self.expires_at as u64 > now_secs
    }

    /// Seconds left, 0 when expired.
    pub fn remaining(&self, now_secs: u64) -> u32 {
        (self.expires_at as u64).saturating_sub(now_secs) as u32
    }
}

// Encoded binding: stamp u64 | callid u64 | cseq u32 | expires u32 | q u16 | port u16 |
// kind u8 | ip (4 or 16) | [connection u64] | contact_len u16 | contact | [extra].
// q is at most 1000: its top bit, EXTRA_FLAG, says that the extra follows: path_len u16 |
// path | instance_len u16 | instance | reg_id u32.
// kind: the address family (4 or 6) in bits 0-2, NAT_FLAG for a contact behind NAT, the
// transport code in bits 4-6 (0 for UDP, so UDP records are byte for byte what they were before
// transports existed), and CONN_FLAG when a connection id follows the address. Records written
// before NAT_FLAG existed never set it.
const FIXED: usize = 8 + 8 + 4 + 4 + 2 + 2 + 1;
const CONN_FLAG: u8 = 0x80;
const NAT_FLAG: u8 = 0x08;
const FAMILY_MASK: u8 = 0x07;
const EXTRA_FLAG: u16 = 0x8000;

fn encoded_len(b: &Binding<'_>) -> usize {
    let ip = if b.dest.addr.is_ipv4() { 4 } else { 16 };
    let conn = if b.dest.conn.is_some() { 8 } else { 0 };
    let extra = if b.extra.is_empty() {
        0
    } else {
        2 + b.extra.path.len() + 2 + b.extra.instance.len() + 4
    };
    FIXED + ip + conn + 2 + b.contact.len() + extra
}

/// `bytes` with a u16 length before it (cut at 65,535 bytes).
fn push_with_len(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = bytes.len().min(u16::MAX as usize);
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(&bytes[..len]);
}

fn encode_into(b: &Binding<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(&b.version.stamp_ms.to_le_bytes());
    out.extend_from_slice(&b.version.call_id_hash.to_le_bytes());
    out.extend_from_slice(&b.version.cseq.to_le_bytes());
    out.extend_from_slice(&b.expires_at.to_le_bytes());
    let extra_flag = if b.extra.is_empty() { 0 } else { EXTRA_FLAG };
    out.extend_from_slice(&(b.q | extra_flag).to_le_bytes());
    out.extend_from_slice(&b.dest.addr.port().to_le_bytes());
    let conn_flag = if b.dest.conn.is_some() { CONN_FLAG } else { 0 };
    let nat_flag = if b.nat { NAT_FLAG } else { 0 };
    let kind = b.dest.transport.code() << 4 | conn_flag | nat_flag;
    match b.dest.addr.ip() {
        IpAddr::V4(a) => {
            out.push(kind | 4);
            out.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            out.push(kind | 6);
            out.extend_from_slice(&a.octets());
        }
    }
    if let Some(c) = b.dest.conn {
        out.extend_from_slice(&c.0.to_le_bytes());
    }
    push_with_len(out, b.contact);
    if !b.extra.is_empty() {
        push_with_len(out, b.extra.path);
        push_with_len(out, b.extra.instance);
        out.extend_from_slice(&b.extra.reg_id.to_le_bytes());
    }
}

/// Decode one binding at the start of `blob`; returns it and its encoded length.
fn decode(blob: &[u8]) -> Option<(Binding<'_>, usize)> {
    let u64_at = |i: usize| Some(u64::from_le_bytes(blob.get(i..i + 8)?.try_into().ok()?));
    let u32_at = |i: usize| Some(u32::from_le_bytes(blob.get(i..i + 4)?.try_into().ok()?));
    let u16_at = |i: usize| Some(u16::from_le_bytes(blob.get(i..i + 2)?.try_into().ok()?));
    let version = Version {
        stamp_ms: u64_at(0)?,
        call_id_hash: u64_at(8)?,
        cseq: u32_at(16)?,
    };
    let expires_at = u32_at(20)?;
    let q_and_flag = u16_at(24)?;
    let q = q_and_flag & !EXTRA_FLAG;
    let port = u16_at(26)?;
    let kind = *blob.get(28)?;
    let transport = Transport::from_code((kind & !CONN_FLAG) >> 4)?;
    let (ip, mut i) = match kind & FAMILY_MASK {
        4 => {
            let o: [u8; 4] = blob.get(29..33)?.try_into().ok()?;
            (IpAddr::V4(Ipv4Addr::from(o)), 33)
        }
        6 => {
            let o: [u8; 16] = blob.get(29..45)?.try_into().ok()?;
            (IpAddr::V6(Ipv6Addr::from(o)), 45)
        }
        _ => return None,
    };
    let conn = if kind & CONN_FLAG != 0 {
        i += 8;
        Some(ConnId(u64_at(i - 8)?))
    } else {
        None
    };
    let clen = u16_at(i)? as usize;
    i += 2;
    let contact = blob.get(i..i + clen)?;
    i += clen;
    let mut extra = Extra::default();
    if q_and_flag & EXTRA_FLAG != 0 {
        let take = |i: &mut usize| {
            let len = u16_at(*i)? as usize;
            *i += 2 + len;
            blob.get(*i - len..*i)
        };
        extra.path = take(&mut i)?;
        extra.instance = take(&mut i)?;
        extra.reg_id = u32_at(i)?;
        i += 4;
    }
    Some((
        Binding {
            version,
            expires_at,
            q,
            dest: Target {
                transport,
                addr: SocketAddr::new(ip, port),
                conn,
                fallback_udp: false,
                flow: false,
            },
            nat: kind & NAT_FLAG != 0,
            contact,
            extra,
        },
        i,
    ))
}

/// Iterate the bindings of one AOR blob.
pub struct Bindings<'a> {
    blob: &'a [u8],
}

impl<'a> Iterator for Bindings<'a> {
    type Item = Binding<'a>;
    fn next(&mut self) -> Option<Binding<'a>> {
        let (b, len) = decode(self.blob)?;
        self.blob = &self.blob[len..];
        Some(b)
    }
}

/// One binding change, as sent between shards: the AOR and the encoded binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingRecord {
    pub aor: Box<[u8]>,
    pub binding: Box<[u8]>,
}

impl BindingRecord {
    pub fn new(aor: &[u8], b: &Binding<'_>) -> BindingRecord {
        let mut v = Vec::with_capacity(encoded_len(b));
        encode_into(b, &mut v);
        BindingRecord {
            aor: aor.into(),
            binding: v.into_boxed_slice(),
        }
    }

    pub fn decode(&self) -> Option<Binding<'_>> {
        decode(&self.binding).map(|(b, _)| b)
    }
}

/// What a merge did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeOutcome {
    Added,
    Refreshed,
    Removed,
    /// A removal of a binding that was not live: remembered as a tombstone only.
    Tombstone,
    /// The record was older than (or equal to) what the table holds: ignored.
    Stale,
    /// The record could not be decoded.
    Invalid,
}

/// Two contacts name the same binding when their URIs are equivalent (RFC 3261 section
/// 10.3 step 7 and 19.1.4), falling back to byte equality for URIs that do not parse.
pub fn same_contact(a: &[u8], b: &[u8]) -> bool {
    if a == b {
        return true;
    }
    match (Uri::parse(a), Uri::parse(b)) {
        (Ok(x), Ok(y)) => x.equivalent(&y),
        _ => false,
    }
}

/// Two bindings are one: the same Outbound flow (instance and reg-id, RFC 5626 section 6),
/// whatever their URIs, else the same contact.
fn same_binding(a: &Binding<'_>, b: &Binding<'_>) -> bool {
    if a.extra.is_flow() && b.extra.is_flow() {
        return a.extra.instance == b.extra.instance && a.extra.reg_id == b.extra.reg_id;
    }
    same_contact(a.contact, b.contact)
}

/// One AOR as stored: `key length (u16 LE) | key | encoded bindings`, in one allocation.
#[derive(Clone)]
struct AorEntry(Box<[u8]>);

/// Bytes before the key: its length.
const KEY_LEN_BYTES: usize = 2;

impl AorEntry {
    /// An entry for `key` with room for `blob_len` bytes of bindings after it (appended by the
    /// caller into the returned buffer).
    fn buffer(key: &[u8], blob_len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(KEY_LEN_BYTES + key.len() + blob_len);
        v.extend_from_slice(&(key.len() as u16).to_le_bytes());
        v.extend_from_slice(key);
        v
    }

    fn key_len(&self) -> usize {
        u16::from_le_bytes([self.0[0], self.0[1]]) as usize
    }

    fn key(&self) -> &[u8] {
        &self.0[KEY_LEN_BYTES..KEY_LEN_BYTES + self.key_len()]
    }

    /// The encoded bindings.
    fn blob(&self) -> &[u8] {
        &self.0[KEY_LEN_BYTES + self.key_len()..]
    }
}

/// The shard's copy of the location table.
///
/// Every change is a [`merge`](Self::merge) of one versioned binding, so changes made here and
/// replicas from other shards meet the same rule: the newer [`Version`] wins.
///
/// ```
/// use sipshard::location::{Binding, LocationTable, MergeOutcome, Version};
/// use sipshard::sip::Target;
///
/// let mut table = LocationTable::new();
/// let now_secs = 1_700_000_000;
/// let bob = |stamp_ms, q, contact: &'static str, port| Binding {
///     version: Version { stamp_ms, call_id_hash: 7, cseq: 1 },
///     expires_at: now_secs as u32 + 3600,
///     q,
///     dest: Target::udp(([192, 0, 2, 60], port).into()),
///     nat: false,
///     contact: contact.as_bytes(),
///     extra: Default::default(),
/// };
/// let desk = bob(1_000, 1000, "sip:bob@192.0.2.60:5062", 5062);
/// let mobile = bob(1_001, 500, "sip:bob@192.0.2.60:5070", 5070);
/// assert_eq!(table.merge(b"bob@example.com", &desk), MergeOutcome::Added);
/// assert_eq!(table.merge(b"bob@example.com", &mobile), MergeOutcome::Added);
/// // A replica older than what is stored for that contact changes nothing.
/// let late = bob(900, 1000, "sip:bob@192.0.2.60:5062", 5062);
/// assert_eq!(table.merge(b"bob@example.com", &late), MergeOutcome::Stale);
///
/// // A request for bob goes to the live binding with the highest q.
/// let found = table.lookup(b"bob@example.com", now_secs).unwrap();
/// assert_eq!(found.contact, b"sip:bob@192.0.2.60:5062");
/// assert_eq!(table.live_bindings(b"bob@example.com", now_secs).count(), 2);
/// assert!(table.lookup(b"alice@example.com", now_secs).is_none());
/// ```
#[derive(Clone, Default)]
pub struct LocationTable {
    aors: HashTable<AorEntry>,
    hasher: RandomState,
    /// Live (non-tombstone) bindings, kept for gauges.
    live: usize,
    /// Which AORs have something to purge when, for [`Self::purge_due`].
    expiry: ExpirySchedule,
}

/// Longest AOR key the table stores (the length prefix is a u16).
pub const MAX_AOR_LEN: usize = u16::MAX as usize;

impl LocationTable {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn aor_count(&self) -> usize {
        self.aors.len()
    }

    /// Bindings counted including ones that expired but were not purged yet.
    pub fn binding_count(&self) -> usize {
        self.live
    }

    fn entry(&self, aor: &[u8]) -> Option<&AorEntry> {
        let hash = self.hasher.hash_one(aor);
        self.aors.find(hash, |e| e.key() == aor)
    }

    /// All stored bindings of `aor`, tombstones and expired ones included.
    pub fn bindings(&self, aor: &[u8]) -> Bindings<'_> {
        Bindings {
            blob: self.entry(aor).map_or(&[][..], AorEntry::blob),
        }
    }

    /// Live bindings of `aor` at `now_secs`.
    pub fn live_bindings(&self, aor: &[u8], now_secs: u64) -> impl Iterator<Item = Binding<'_>> {
        self.bindings(aor).filter(move |b| b.is_live(now_secs))
    }

    /// The binding a stateless proxy forwards to: highest q, then most recent.
    pub fn lookup(&self, aor: &[u8], now_secs: u64) -> Option<Binding<'_>> {
        self.lookup_reachable(aor, now_secs, |_| true)
    }

    /// [`Self::lookup`] among the bindings `reachable` accepts, else among all of them (the
    /// caller finds out what an unreachable one gets).
    pub fn lookup_reachable(
        &self,
        aor: &[u8],
        now_secs: u64,
        reachable: impl Fn(&Binding<'_>) -> bool,
    ) -> Option<Binding<'_>> {
        self.live_bindings(aor, now_secs)
            .max_by_key(|b| (reachable(b), b.q, b.version))
    }

    /// The version of the binding of `aor` that `incoming` would replace (the same Outbound
    /// flow, else an equivalent contact; live or a tombstone), if the table holds one. A new
    /// change must be stamped later than it to win.
    pub fn version_of(&self, aor: &[u8], incoming: &Binding<'_>) -> Option<Version> {
        self.bindings(aor)
            .find(|b| same_binding(b, incoming))
            .map(|b| b.version)
    }

    /// Apply one binding change (local or replicated). Last writer wins per contact.
    pub fn merge(&mut self, aor: &[u8], incoming: &Binding<'_>) -> MergeOutcome {
        if aor.len() > MAX_AOR_LEN {
            return MergeOutcome::Invalid;
        }
        let hash = self.hasher.hash_one(aor);
        let existing = self
            .aors
            .find(hash, |e| e.key() == aor)
            .map_or(&[][..], AorEntry::blob);
        let mut out = AorEntry::buffer(aor, existing.len() + encoded_len(incoming));
        let mut replaced: Option<Binding<'_>> = None;
        // The AOR is scheduled no later than its bindings' earliest second already (see
        // `expiry`): a merge schedules it only to bring that earlier.
        let mut scheduled_by = u64::MAX;
        let mut rest = existing;
        while let Some((b, len)) = decode(rest) {
            scheduled_by = scheduled_by.min(purgeable_from(&b));
            let raw = &rest[..len];
            rest = &rest[len..];
            if replaced.is_none() && same_binding(&b, incoming) {
                if !newer(incoming, &b) {
                    return MergeOutcome::Stale;
                }
                replaced = Some(b);
                continue;
            }
            out.extend_from_slice(raw);
        }
        encode_into(incoming, &mut out);
        let was_live = replaced.is_some_and(|b| !b.is_tombstone());
        let outcome = match (was_live, incoming.is_tombstone()) {
            (false, false) => MergeOutcome::Added,
            (true, false) => MergeOutcome::Refreshed,
            (true, true) => MergeOutcome::Removed,
            (false, true) => MergeOutcome::Tombstone,
        };
        self.live = self.live + usize::from(!incoming.is_tombstone()) - usize::from(was_live);
        if purgeable_from(incoming) < scheduled_by {
            self.expiry.schedule(purgeable_from(incoming), hash);
        }
        let entry = AorEntry(out.into_boxed_slice());
        match self.aors.find_mut(hash, |e| e.key() == aor) {
            Some(slot) => *slot = entry,
            None => {
                let hasher = &self.hasher;
                self.aors
                    .insert_unique(hash, entry, |e| hasher.hash_one(e.key()));
            }
        }
        outcome
    }

    /// Apply a replicated record.
    pub fn merge_record(&mut self, rec: &BindingRecord) -> MergeOutcome {
        match decode(&rec.binding) {
            Some((b, _)) => self.merge(&rec.aor, &b),
            None => MergeOutcome::Invalid,
        }
    }

    /// Drop expired bindings and old tombstones from every AOR; returns how many live bindings
    /// expired. A walk over the whole table: for loading and compaction, not for a shard that
    /// serves ([`Self::purge_due`]).
    pub fn purge(&mut self, now_secs: u64) -> usize {
        let mut expired = 0;
        self.aors
            .retain(|entry| purge_entry(entry, now_secs, &mut expired));
        self.live -= expired.min(self.live);
        // What the walk left, scheduled afresh: one entry per AOR.
        self.expiry = ExpirySchedule::default();
        for entry in self.aors.iter() {
            let hash = self.hasher.hash_one(entry.key());
            self.expiry.schedule(next_purgeable(entry), hash);
        }
        expired
    }

    /// [`Self::purge`] for the AORs scheduled to have something lapse by `now_secs`, at most
    /// `budget` of them (the rest at the next call): the work is the lapsed bindings', not the
    /// table's size. Returns how many live bindings expired.
    pub fn purge_due(&mut self, now_secs: u64, budget: usize) -> usize {
        let mut expired = 0;
        let mut later = Vec::new();
        let (aors, hasher) = (&mut self.aors, &self.hasher);
        self.expiry.take_due(now_secs, budget, |hash| {
            // Found by hash alone (the schedule keeps no key): every AOR of that hash with
            // something lapsed, should two share it.
            let same_hash = |e: &AorEntry| hasher.hash_one(e.key()) == hash;
            let lapsed = |e: &AorEntry| same_hash(e) && next_purgeable(e) <= now_secs;
            while let Ok(mut slot) = aors.find_entry(hash, lapsed) {
                if !purge_entry(slot.get_mut(), now_secs, &mut expired) {
                    slot.remove();
                }
            }
            // Visited early (the binding it was scheduled for was refreshed) or not: due again
            // when what is left lapses.
            let next = aors.iter_hash(hash).filter(|e| same_hash(e));
            if let Some(second) = next.map(next_purgeable).min() {
                later.push((second, hash));
            }
        });
        for (second, hash) in later {
            self.expiry.schedule(second, hash);
        }
        self.live -= expired.min(self.live);
        expired
    }

    /// Entries waiting in the expiry schedule (a gauge of its memory, 8 bytes each).
    pub fn scheduled_expiries(&self) -> usize {
        self.expiry.len()
    }

    /// Every AOR and its blob (persistence and tests).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Bindings<'_>)> {
        self.aors
            .iter()
            .map(|e| (e.key(), Bindings { blob: e.blob() }))
    }
}

/// The second from which a binding, as merged, may be purged: when it lapses, or for a
/// tombstone when it has been kept [`TOMBSTONE_SECS`].
fn purgeable_from(b: &Binding<'_>) -> u64 {
    if b.is_tombstone() {
        b.version.stamp_ms / 1000 + TOMBSTONE_SECS + 1
    } else {
        u64::from(b.expires_at)
    }
}

/// The earliest second from which something of `entry` may be purged.
fn next_purgeable(entry: &AorEntry) -> u64 {
    let bindings = Bindings { blob: entry.blob() };
    bindings
        .map(|b| purgeable_from(&b))
        .min()
        .unwrap_or(u64::MAX)
}

/// Drop the lapsed bindings and old tombstones of one AOR, counting the live bindings that
/// expired into `expired`. Returns whether the AOR keeps any binding.
fn purge_entry(entry: &mut AorEntry, now_secs: u64, expired: &mut usize) -> bool {
    let doomed = |b: &Binding<'_>| purgeable_from(b) <= now_secs;
    if !(Bindings { blob: entry.blob() }).any(|b| doomed(&b)) {
        return true;
    }
    let blob = entry.blob();
    let mut keep = AorEntry::buffer(entry.key(), blob.len());
    let header = keep.len();
    let mut rest = blob;
    while let Some((b, len)) = decode(rest) {
        if !doomed(&b) {
            keep.extend_from_slice(&rest[..len]);
        } else if !b.is_tombstone() {
            *expired += 1;
        }
        rest = &rest[len..];
    }
    if keep.len() == header {
        return false;
    }
    *entry = AorEntry(keep.into_boxed_slice());
    true
}

fn newer(a: &Binding<'_>, b: &Binding<'_>) -> bool {
    match a.version.cmp(&b.version) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        // Same version from two places: order by content so every shard picks the same one.
        std::cmp::Ordering::Equal => {
            let (mut x, mut y) = (Vec::new(), Vec::new());
            encode_into(a, &mut x);
            encode_into(b, &mut y);
            x > y
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(stamp: u64, cseq: u32, exp: u32, contact: &'static str) -> Binding<'static> {
        Binding {
            version: Version {
                stamp_ms: stamp,
                call_id_hash: 7,
                cseq,
            },
            expires_at: exp,
            q: 1000,
            dest: Target::udp("192.0.2.4:5060".parse().unwrap()),
            nat: false,
            contact: contact.as_bytes(),
            extra: Default::default(),
        }
    }

    #[test]
    fn add_refresh_remove() {
        let mut t = LocationTable::new();
        assert_eq!(
            t.merge(b"bob@biloxi", &b(1, 1, 100, "sip:bob@192.0.2.4")),
            MergeOutcome::Added
        );
        assert_eq!(
            t.merge(b"bob@biloxi", &b(2, 2, 200, "sip:bob@192.0.2.4")),
            MergeOutcome::Refreshed
        );
        assert_eq!(t.binding_count(), 1);
        assert_eq!(t.lookup(b"bob@biloxi", 150).unwrap().expires_at, 200);
        assert_eq!(
            t.merge(b"bob@biloxi", &b(3, 3, 0, "sip:bob@192.0.2.4")),
            MergeOutcome::Removed
        );
        assert!(t.lookup(b"bob@biloxi", 150).is_none());
        assert_eq!(t.binding_count(), 0);
        // A late replica of the older registration does not resurrect it.
        assert_eq!(
            t.merge(b"bob@biloxi", &b(2, 2, 200, "sip:bob@192.0.2.4")),
            MergeOutcome::Stale
        );
        assert!(t.lookup(b"bob@biloxi", 150).is_none());
    }

    #[test]
    fn equivalent_contacts_are_one_binding() {
        let mut t = LocationTable::new();
        t.merge(b"a@x", &b(1, 1, 100, "sip:bob@Host.example.com"));
        assert_eq!(
            t.merge(b"a@x", &b(2, 2, 100, "sip:bob@host.EXAMPLE.com")),
            MergeOutcome::Refreshed
        );
        assert_eq!(t.bindings(b"a@x").count(), 1);
    }

    #[test]
    fn merge_order_does_not_matter() {
        let updates = [
            b(5, 1, 100, "sip:a@192.0.2.1"),
            b(6, 2, 0, "sip:a@192.0.2.1"),
            b(7, 1, 300, "sip:b@192.0.2.2"),
            b(7, 1, 400, "sip:b@192.0.2.2"),
            b(9, 3, 500, "sip:a@192.0.2.1"),
        ];
        let mut reference: Option<Vec<(Vec<u8>, u32)>> = None;
        // Every permutation of five updates, each applied twice.
        let mut idx: Vec<usize> = (0..updates.len()).collect();
        permute(&mut idx, 0, &mut |order| {
            let mut t = LocationTable::new();
            for &i in order.iter().chain(order.iter()) {
                t.merge(b"aor", &updates[i]);
            }
            let mut state: Vec<(Vec<u8>, u32)> = t
                .bindings(b"aor")
                .map(|b| (b.contact.to_vec(), b.expires_at))
                .collect();
            state.sort();
            match &reference {
                None => reference = Some(state),
                Some(r) => assert_eq!(r, &state, "order {order:?}"),
            }
        });
        let r = reference.unwrap();
        assert_eq!(
            r,
            vec![
                (b"sip:a@192.0.2.1".to_vec(), 500),
                (b"sip:b@192.0.2.2".to_vec(), 400)
            ]
        );
    }

    fn permute(v: &mut Vec<usize>, k: usize, f: &mut impl FnMut(&[usize])) {
        if k == v.len() {
            f(v);
            return;
        }
        for i in k..v.len() {
            v.swap(k, i);
            permute(v, k + 1, f);
            v.swap(k, i);
        }
    }

    #[test]
    fn purge_expires_and_forgets_tombstones() {
        let mut t = LocationTable::new();
        t.merge(b"a", &b(1_000, 1, 100, "sip:a@192.0.2.1"));
        t.merge(b"a", &b(1_000, 1, 300, "sip:b@192.0.2.1"));
        t.merge(b"c", &b(100_000, 1, 0, "sip:c@192.0.2.1"));
        assert_eq!(t.purge(150), 1);
        assert_eq!(t.binding_count(), 1);
        assert_eq!(t.aor_count(), 2, "the tombstone is kept for TOMBSTONE_SECS");
        assert_eq!(t.purge(100 + TOMBSTONE_SECS + 1), 0);
        assert_eq!(t.aor_count(), 1);
    }

    #[test]
    fn purge_due_visits_what_lapsed_within_its_budget_as_purge_would() {
        let mut t = LocationTable::new();
        let contact = |i: u32| format!("sip:u{i}@192.0.2.1");
        for i in 0..1_000u32 {
            let c = contact(i);
            let aor = format!("u{i}");
            let at = |stamp, exp| Binding {
                contact: c.as_bytes(),
                ..b(stamp, 1, exp, "")
            };
            // Lapsing at 100 + i % 10; every third refreshed (a later version) to lapse at 500.
            t.merge(aor.as_bytes(), &at(1, 100 + i % 10));
            if i % 3 == 0 {
                t.merge(aor.as_bytes(), &at(2, 500));
            }
        }
        t.merge(b"gone", &b(180_000, 1, 0, "sip:g@192.0.2.1")); // a tombstone stamped at 180 s
        assert_eq!(t.binding_count(), 1_000);
        assert_eq!(
            t.scheduled_expiries(),
            1_001,
            "a refresh to later schedules nothing"
        );
        assert_eq!(t.purge_due(99, 10_000), 0, "nothing lapsed yet");
        // By 104 half the first expiries are due (a third of those AORs were refreshed).
        let first = t.purge_due(104, 100);
        assert!(
            (1..=100).contains(&first),
            "100 AORs visited at most: {first}"
        );
        let rest = t.purge_due(104, 10_000);
        let lapsed_by_104 = (0..1_000).filter(|i| i % 10 <= 4 && i % 3 != 0).count();
        assert_eq!(first + rest, lapsed_by_104);
        let mut whole = t.clone();
        let (due, walked) = (t.purge_due(200, 10_000), whole.purge(200));
        assert_eq!(due, walked, "the same bindings as a walk over the table");
        assert_eq!((t.aor_count(), t.binding_count()), (334 + 1, 334));
        assert!(t.lookup(b"u0", 200).is_some(), "refreshed: kept");
        // One entry per AOR left: the refreshed ones were put back for 500 when visited.
        assert_eq!(t.scheduled_expiries(), 335);
        assert_eq!(
            whole.scheduled_expiries(),
            335,
            "a walk schedules what it left"
        );
        assert_eq!(t.purge_due(180 + TOMBSTONE_SECS, 10_000), 0);
        assert_eq!(t.aor_count(), 335, "the tombstone kept TOMBSTONE_SECS");
        assert_eq!(t.purge_due(180 + TOMBSTONE_SECS + 1, 10_000), 0);
        assert_eq!(t.aor_count(), 334, "then forgotten");
        assert_eq!(t.purge_due(500, 10_000), 334);
        assert_eq!((t.aor_count(), t.scheduled_expiries()), (0, 0));
        assert_eq!(
            whole.purge_due(600, 10_000),
            334,
            "the walked table purges on schedule too"
        );
    }

    #[test]
    fn an_aor_whose_bindings_lapse_at_different_seconds_is_visited_for_each() {
        let mut t = LocationTable::new();
        t.merge(b"a", &b(1, 1, 300, "sip:late@192.0.2.1"));
        t.merge(b"a", &b(1, 1, 100, "sip:early@192.0.2.1"));
        assert_eq!(
            t.scheduled_expiries(),
            2,
            "the earlier binding brought it forward"
        );
        assert_eq!(t.purge_due(100, 10), 1);
        assert_eq!(t.purge_due(299, 10), 0);
        assert_eq!(t.purge_due(300, 10), 1);
        assert_eq!((t.aor_count(), t.scheduled_expiries()), (0, 0));
    }

    #[test]
    fn many_aors_survive_growth_iteration_and_purge() {
        let mut t = LocationTable::new();
        let keys: Vec<String> = (0..5_000).map(|i| format!("user{i}@example.com")).collect();
        let contacts: Vec<String> = (0..5_000).map(|i| format!("sip:u{i}@192.0.2.1")).collect();
        for (i, (k, c)) in keys.iter().zip(&contacts).enumerate() {
            // Even AORs lapse at 100, odd ones at 1000.
            let exp = if i % 2 == 0 { 100 } else { 1000 };
            let mut x = b(1, 1, exp, "");
            x.contact = c.as_bytes();
            assert_eq!(t.merge(k.as_bytes(), &x), MergeOutcome::Added);
        }
        assert_eq!((t.aor_count(), t.binding_count()), (5_000, 5_000));
        assert_eq!(t.iter().count(), 5_000);
        for (k, c) in keys.iter().zip(&contacts) {
            assert_eq!(t.lookup(k.as_bytes(), 50).unwrap().contact, c.as_bytes());
            let from_iter = t.iter().find(|(key, _)| *key == k.as_bytes());
            assert_eq!(from_iter.unwrap().1.count(), 1);
        }
        assert!(t.lookup(b"user5000@example.com", 50).is_none());
        assert!(t.lookup(b"", 50).is_none());
        assert_eq!(t.purge(500), 2_500);
        assert_eq!((t.aor_count(), t.binding_count()), (2_500, 2_500));
        assert!(t.lookup(keys[0].as_bytes(), 50).is_none());
        assert_eq!(
            t.lookup(keys[1].as_bytes(), 500).unwrap().contact,
            contacts[1].as_bytes()
        );
    }

    #[test]
    fn an_empty_key_is_a_key() {
        let mut t = LocationTable::new();
        t.merge(b"", &b(1, 1, 100, "sip:a@192.0.2.1"));
        t.merge(b"a", &b(1, 1, 100, "sip:b@192.0.2.1"));
        assert_eq!(t.lookup(b"", 0).unwrap().contact, b"sip:a@192.0.2.1");
        assert_eq!(t.lookup(b"a", 0).unwrap().contact, b"sip:b@192.0.2.1");
    }

    #[test]
    fn ipv6_destinations_round_trip() {
        let mut t = LocationTable::new();
        let mut x = b(1, 1, 100, "sip:a@[2001:db8::1]");
        x.dest = Target::udp("[2001:db8::1]:5070".parse().unwrap());
        t.merge(b"a", &x);
        assert_eq!(t.lookup(b"a", 0).unwrap().dest, x.dest);
    }

    #[test]
    fn stream_destinations_keep_transport_and_connection() {
        let mut t = LocationTable::new();
        for (i, transport) in Transport::ALL.into_iter().enumerate() {
            for conn in [None, Some(ConnId::new(1, 42))] {
                let mut x = b(1, 1, 100, "sip:a@192.0.2.1;transport=tcp");
                x.dest = Target {
                    transport,
                    addr: "[2001:db8::1]:5070".parse().unwrap(),
                    conn,
                    fallback_udp: false,
                    flow: false,
                };
                let key = format!("a{i}{}", conn.is_some());
                t.merge(key.as_bytes(), &x);
                let got = t.lookup(key.as_bytes(), 0).unwrap();
                assert_eq!((got.dest, got.contact), (x.dest, x.contact));
            }
        }
    }

    #[test]
    fn the_nat_mark_round_trips_with_every_family_transport_and_connection() {
        for addr in ["192.0.2.1:5070", "[2001:db8::1]:5070"] {
            for transport in Transport::ALL {
                for conn in [None, Some(ConnId::new(1, 42))] {
                    let mut x = b(1, 1, 100, "sip:a@10.0.0.2");
                    x.dest = Target {
                        transport,
                        addr: addr.parse().unwrap(),
                        conn,
                        fallback_udp: false,
                        flow: false,
                    };
                    for nat in [false, true] {
                        x.nat = nat;
                        let rec = BindingRecord::new(b"a", &x);
                        assert_eq!(rec.decode(), Some(x));
                    }
                }
            }
        }
    }

    #[test]
    fn udp_records_keep_the_format_they_had_before_transports() {
        let x = b(1, 1, 100, "sip:a@192.0.2.1");
        let rec = BindingRecord::new(b"a", &x);
        // The kind byte after the port is the bare address family, as state files hold it.
        assert_eq!(rec.binding[FIXED - 1], 4);
        assert_eq!(rec.binding.len(), FIXED + 4 + 2 + x.contact.len());
    }
}
