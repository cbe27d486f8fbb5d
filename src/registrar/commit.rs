//! The second step of a REGISTER: apply its plan and write the 200's Contact list.

use crate::counters::Counters;
use crate::location::{self, Binding, BindingRecord, LocationTable, MergeOutcome, Now, Version};
use crate::sip::write::{push_q_value, push_uint};

use super::outbox::stamp;
use super::{Change, Changes, DateLine, Origin, Outbox, Plan};

/// What committing a plan changes, borrowed from the shard's core.
pub struct Store<'c> {
    pub table: &'c mut LocationTable,
    pub counters: &'c mut Counters,
    pub outbox: &'c mut Outbox,
}

/// Apply `plan` (from [`plan`](super::plan) on this same table): merge each change into the
/// table, stamp its version, count it and queue its replication record. Then append to `extra`
/// the 200's header lines: every current binding of the AOR with its remaining lifetime
/// (section 10.3 step 8) and a Date. Returns the 200's status and reason.
pub fn commit(
    store: &mut Store<'_>,
    plan: &Plan<'_>,
    flow_timer: u32,
    extra: &mut Vec<u8>,
    date: &mut DateLine,
) -> (u16, &'static str) {
    let (aor, origin) = (plan.aor(), plan.origin());
    match plan.changes() {
        Changes::Listed(changes) => {
            for ch in changes {
                // Checked now rather than in the plan: a contact listed twice is stored with
                // this Call-ID and CSeq by the first change, and the second then leaves it be.
                if is_retransmission(store.table, aor, ch.uri, origin) {
                    continue;
                }
                let mut ch = *ch;
                ch.extra.path = plan.path();
                store.apply(aor, &ch, origin);
            }
        }
        Changes::All { contacts, dest } => {
            for uri in contacts {
                let removal = Change {
                    uri,
                    expires: 0,
                    q: 1000,
                    dest: *dest,
                    nat: false,
                    extra: Default::default(),
                };
                store.apply(aor, &removal, origin);
            }
        }
    }
    let now_secs = origin.now.secs();
    list_bindings(store.table, aor, now_secs, extra);
    extensions(plan, flow_timer, extra);
    extra.extend_from_slice(date.line(now_secs));
    (200, "OK")
}

/// The 200's Path (RFC 3327 section 5.3) and Outbound (RFC 5626 section 6) header lines.
fn extensions(plan: &Plan<'_>, flow_timer: u32, extra: &mut Vec<u8>) {
    if plan.echo_path() {
        extra.extend_from_slice(b"Path: ");
        extra.extend_from_slice(plan.path());
        extra.extend_from_slice(b"\r\n");
    }
    if plan.outbound() {
        extra.extend_from_slice(b"Require: outbound\r\nFlow-Timer: ");
        push_uint(extra, flow_timer);
        extra.extend_from_slice(b"\r\n");
    }
}

/// Remove the binding of `aor` with contact `contact`, known dead (its NAT pings went
/// unanswered): a removal stamped now, in the version line of the REGISTER that made it
/// (`version`), merged, counted and replicated as a REGISTER's removal is.
pub fn remove_dead(store: &mut Store<'_>, aor: &[u8], contact: &[u8], version: Version, now: Now) {
    let removal = Change {
        uri: contact,
        expires: 0,
        q: 1000,
        dest: crate::sip::Target::udp(([0, 0, 0, 0], 0).into()),
        nat: false,
        extra: Default::default(),
    };
    let origin = Origin {
        call_id_hash: version.call_id_hash,
        cseq: version.cseq,
        now,
    };
    store.apply(aor, &removal, origin);
}

impl Store<'_> {
    /// Merge one change, count what it did and queue it for the other shards.
    fn apply(&mut self, aor: &[u8], ch: &Change<'_>, origin: Origin) {
        let expires_at = if ch.expires == 0 {
            0
        } else {
            (origin.now.secs() + ch.expires as u64).min(u32::MAX as u64) as u32
        };
        let mut binding = Binding {
            version: Version {
                stamp_ms: origin.now.unix_ms,
                call_id_hash: origin.call_id_hash,
                cseq: origin.cseq,
            },
            expires_at,
            q: ch.q,
            dest: ch.dest,
            nat: ch.nat,
            contact: ch.uri,
            extra: ch.extra,
        };
        binding.version.stamp_ms = stamp(origin.now, self.table.version_of(aor, &binding));
        let counters = &mut *self.counters;
        if ch.nat && ch.expires > 0 {
            counters.nat.registered += 1;
        }
        match self.table.merge(aor, &binding) {
            MergeOutcome::Added => counters.registrations_added += 1,
            MergeOutcome::Refreshed => counters.registrations_refreshed += 1,
            MergeOutcome::Removed => counters.registrations_removed += 1,
            MergeOutcome::Stale | MergeOutcome::Invalid | MergeOutcome::Tombstone => {}
        }
        self.outbox.push(BindingRecord::new(aor, &binding));
        counters.replication_sent += 1;
    }
}

/// The same Call-ID and CSeq as stored: a retransmission of a REGISTER already applied.
fn is_retransmission(table: &LocationTable, aor: &[u8], uri: &[u8], origin: Origin) -> bool {
    table
        .bindings(aor)
        .find(|b| location::same_contact(b.contact, uri))
        .is_some_and(|b| {
            b.version.call_id_hash == origin.call_id_hash && b.version.cseq == origin.cseq
        })
}

/// `Contact: <uri>;expires=N[;q=...]` for every live binding of `aor`.
fn list_bindings(table: &LocationTable, aor: &[u8], now_secs: u64, extra: &mut Vec<u8>) {
    for b in table.live_bindings(aor, now_secs) {
        extra.extend_from_slice(b"Contact: <");
        extra.extend_from_slice(b.contact);
        extra.extend_from_slice(b">;expires=");
        push_uint(extra, b.remaining(now_secs));
        if b.q != 1000 {
            extra.extend_from_slice(b";q=");
            push_q_value(extra, b.q);
        }
        if b.extra.is_flow() {
            extra.extend_from_slice(b";+sip.instance=");
            extra.extend_from_slice(b.extra.instance);
            extra.extend_from_slice(b";reg-id=");
            push_uint(extra, b.extra.reg_id);
        }
        extra.extend_from_slice(b"\r\n");
    }
}
