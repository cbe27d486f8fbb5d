//! What the runtime asks of a core between datagrams: replication in and out, next-hop state,
//! the purge, and the counts only the runtime sees (sends, kernel and shedding drops). Going
//! through these methods, the runtime needs neither the table nor the counters as fields.

use std::mem::MaybeUninit;
use std::net::SocketAddr;

use xxhash_rust::xxh3::xxh3_64;

use crate::counters::{Counters, DropReason};
use crate::location::{self, BindingRecord, Now};
use crate::registrar::{self, Store};
use crate::sip::{ConnId, Message, PacketBuf, Source, Target, Transport};

use super::nat_ping::{PingBatch, Pinger, VisitOutcome};
use super::next_hop::HopState;
use super::reply::ReplySource;
use super::{Action, Core, Decision};

/// AORs a purge visits at most (a shard purges every 200 ms tick): a millisecond or two of
/// work, and 20,000 AORs a second, where a million phones registering for an hour bring some
/// 600 due a second (a refresh leaves its old expiry to be visited too).
pub const PURGE_BUDGET: usize = 4_000;

impl Core {
    /// Location changes made since the last call, for the other shards.
    pub fn take_replication(&mut self) -> std::vec::Drain<'_, BindingRecord> {
        self.outbox.drain()
    }

    /// Apply a change made on another shard.
    pub fn apply_replica(&mut self, rec: &BindingRecord) {
        self.counters.replication_received += 1;
        self.table.merge_record(rec);
    }

    /// Apply a next hop's change of state published by the prober.
    pub fn apply_hop_state(&mut self, s: HopState) {
        if self.hops.apply(s) {
            self.counters.next_hop_changes += 1;
        }
    }

    /// Ping the contacts behind NAT that register through this shard from now on, when
    /// `--nat-ping-interval` is on; `shard` (this shard's number, of `shards`) is written into
    /// each ping so that an answer reaching another shard can be handed back. The UDP contacts
    /// behind NAT already in the table (loaded from `--state-dir`) are shared out: each shard
    /// adopts those whose AOR hashes to it (whichever shard their answers reach, the branch
    /// finds the owner), pinged from the first UDP listener of their address family.
    pub fn start_nat_pings(&mut self, shard: u16, shards: usize) {
        let Some(cfg) = self.cfg.nat_ping else {
            return;
        };
        let mut pinger = Pinger::new(cfg, shard);
        let local = &self.cfg.local;
        let mine = |aor: &[u8]| xxh3_64(aor) % shards.max(1) as u64 == u64::from(shard);
        for (aor, bindings) in self.table.iter().filter(|(aor, _)| mine(aor)) {
            let natted = bindings
                .filter(|b| b.nat && !b.is_tombstone() && b.dest.transport == Transport::Udp);
            for b in natted {
                if let Some(listener) = local.socket_for(0, &b.dest) {
                    pinger.track(aor, b.contact, b.dest.addr, listener);
                }
            }
        }
        self.pinger = Some(pinger);
    }

    /// Write into `batch` the NAT pings due by `now`, and remove the bindings whose pings went
    /// unanswered `--nat-ping-failures` times. Returns how many pings were written.
    pub fn nat_pings(&mut self, now: Now, batch: &mut PingBatch) -> usize {
        let Some(pinger) = &mut self.pinger else {
            return 0;
        };
        let local = &self.cfg.local;
        let mut store = Store {
            table: &mut self.table,
            counters: &mut self.counters,
            outbox: &mut self.outbox,
        };
        let written = pinger.run_due(
            now.unix_ms,
            batch,
            |aor, contact, dest, dead| visit_nat_contact(&mut store, aor, contact, dest, dead, now),
            |listener, dest| local.advertised(listener, &Target::udp(dest)),
        );
        self.counters.nat.pings_sent += written as u64;
        written
    }

    /// A connection a peer opened to this node (here or on another shard) closed: an Outbound
    /// flow on it is dead, and calls go down another binding of its AOR when there is one.
    pub fn flow_closed(&mut self, transport: Transport, conn: ConnId) {
        self.closed_flows.closed(transport, conn);
    }

    /// Another shard received the answer to one of this shard's NAT pings.
    pub fn nat_ping_answered(&mut self, key: u64) {
        if let Some(p) = &mut self.pinger {
            if p.answered(key) {
                self.counters.nat.pings_answered += 1;
            }
        }
    }

    /// Answers received here to other shards' NAT pings: (owner shard, key), to hand over.
    pub fn take_foreign_ping_answers(&mut self) -> Vec<(u16, u64)> {
        match &mut self.pinger {
            Some(p) => p.take_foreign().collect(),
            None => Vec::new(),
        }
    }

    /// A request we forwarded (in `pkt`) down an Outbound flow that is gone (RFC 5626 section
    /// 5.3): it is answered with 430 Flow Failed, which goes back as the response to it would
    /// (our Via off, to the Via below). `pkt` holds the answer afterwards.
    pub fn flow_failed(&mut self, pkt: &mut PacketBuf) -> Action {
        self.counters.nat.flow_failed += 1;
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        {
            let mut slot = MaybeUninit::uninit();
            let Ok(msg) = Message::parse_in(&mut slot, pkt.as_mut_slice()) else {
                return self.drop_counted(DropReason::Unparseable);
            };
            let Some(rs) = ReplySource::from_message(msg).filter(|_| msg.is_request()) else {
                return self.drop_counted(DropReason::Unanswerable);
            };
            rs.compose(&mut self.reply, 430, "Flow Failed", unspecified, &[], None);
        }
        if !pkt.set_contents(&self.reply) {
            return self.drop_counted(DropReason::RewriteFailed);
        }
        let mut slot = MaybeUninit::uninit();
        let decision = match Message::parse_in(&mut slot, pkt.as_mut_slice()) {
            Ok(answer) => self.on_response(answer, Source::udp(unspecified), 0),
            Err(_) => Decision::Drop(DropReason::Unparseable),
        };
        self.finish(decision, pkt)
    }

    /// Drop lapsed bindings (lookups already ignore them; this reclaims memory): those of at
    /// most [`PURGE_BUDGET`] AORs, whichever lapsed first. Cheap enough for every tick.
    pub fn purge_lapsed(&mut self, now: Now) {
        let expired = self.table.purge_due(now.secs(), PURGE_BUDGET);
        self.counters.registrations_expired += expired as u64;
    }

    /// Once a second: forget quiet sources (`--pike`) and report held-back auth failures.
    pub fn purge(&mut self, now: Now) {
        if let Some(p) = &mut self.pike {
            p.prune(now.unix_ms);
        }
        self.report_held_back_auth_failures(now);
    }

    /// This shard's counters, for publishing and for the totals at exit.
    #[inline]
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// `n` datagrams dropped before the core saw them (the kernel's queue was full, ...).
    #[inline]
    pub fn count_drops(&mut self, reason: DropReason, n: u64) {
        self.counters.drops[reason as usize] += n;
    }

    /// A datagram shed unprocessed (it waited too long): received, and dropped as Overload.
    #[inline]
    pub fn count_received_shed(&mut self) {
        self.counters.datagrams_received += 1;
        self.counters.drop(DropReason::Overload);
    }

    /// The outcome of one batch of sends.
    #[inline]
    pub fn count_sent(&mut self, sent: u64, failed: u64) {
        self.counters.datagrams_sent += sent;
        self.count_drops(DropReason::SendFailed, failed);
    }

    /// (bindings, AORs) in this shard's location table, for the gauges; bindings that expired
    /// but were not purged yet are counted.
    #[inline]
    pub fn table_sizes(&self) -> (usize, usize) {
        (self.table.binding_count(), self.table.aor_count())
    }
}

/// Whether a contact the pinger visits is still bound behind NAT, over UDP, at the address it
/// pings; a dead one (`dead`) is removed.
fn visit_nat_contact(
    store: &mut Store<'_>,
    aor: &[u8],
    contact: &[u8],
    dest: SocketAddr,
    dead: bool,
    now: Now,
) -> VisitOutcome {
    let version = store
        .table
        .live_bindings(aor, now.secs())
        .find(|b| location::same_contact(b.contact, contact))
        .filter(|b| b.nat && b.dest.transport == Transport::Udp && b.dest.addr == dest)
        .map(|b| b.version);
    let Some(version) = version else {
        return VisitOutcome::Forget;
    };
    if dead {
        log::info!(
            "nat ping: {contact:?} of {aor:?} unanswered; binding removed",
            contact = String::from_utf8_lossy(contact),
            aor = String::from_utf8_lossy(aor)
        );
        registrar::remove_dead(store, aor, contact, version, now);
        store.counters.nat.ping_removals += 1;
        return VisitOutcome::Forget;
    }
    VisitOutcome::Keep
}
