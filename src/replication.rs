//! Location changes between shards: one wait-free single-producer single-consumer ring per
//! ordered pair of peers (`rtrb`), built once at start-up.
//!
//! Why not glommio's channel mesh: its receiver can only be polled by registering a waker, and
//! a shard must apply every change already queued for it *before* it handles the next batch of
//! datagrams, or a request that arrives just after a REGISTER's 200 OK (sent by another shard)
//! could miss the binding. A ring can be drained without waiting or registering anything: the
//! receive loop drains its inbox at the start of every batch (one acquire load per ring when it
//! is empty), and the housekeeping tick drains it when the shard is idle.
//!
//! Nothing is ever dropped: when a ring is full, the change waits in that ring's backlog and is
//! pushed again at the next batch or tick. (A cluster peer loading a million bindings from Redis
//! backs up far past a ring's capacity, so each ring keeps a queue of its own: queuing and
//! retrying stay O(1) per change.)

use std::collections::VecDeque;

use rtrb::{Consumer, Producer, RingBuffer};

use crate::location::BindingRecord;

/// Capacity of each ring (changes in flight from one peer to another).
pub const RING_CAPACITY: usize = 1 << 16;

/// One peer's ends of the rings.
pub struct Links {
    /// To every other peer.
    outs: Vec<Producer<BindingRecord>>,
    /// From every other peer.
    inbox: Vec<Consumer<BindingRecord>>,
    /// Per ring of `outs`, the changes that found it full, oldest first.
    backlog: Vec<VecDeque<BindingRecord>>,
}

/// Build the rings for `senders` peers that produce (the shards) and `peers` peers in all
/// (the shards, then the persister if any, which only consumes). Returns one `Links` per peer.
pub fn mesh(senders: usize, peers: usize) -> Vec<Links> {
    let mut links: Vec<Links> = (0..peers)
        .map(|_| Links {
            outs: Vec::new(),
            inbox: Vec::new(),
            backlog: Vec::new(),
        })
        .collect();
    for from in 0..senders {
        for to in (0..peers).filter(|&t| t != from) {
            let (p, c) = RingBuffer::new(RING_CAPACITY);
            links[from].outs.push(p);
            links[from].backlog.push(VecDeque::new());
            links[to].inbox.push(c);
        }
    }
    links
}

impl Links {
    /// Send `rec` to every other peer (the backlog first, so order is kept per ring).
    pub fn send(&mut self, rec: BindingRecord) {
        let n = self.outs.len();
        for i in 0..n {
            self.push(i, rec.clone());
        }
    }

    fn push(&mut self, i: usize, rec: BindingRecord) {
        if !self.backlog[i].is_empty() {
            self.backlog[i].push_back(rec);
            return;
        }
        if let Err(rtrb::PushError::Full(rec)) = self.outs[i].push(rec) {
            self.backlog[i].push_back(rec);
        }
    }

    /// Retry what the backlog holds, in order.
    pub fn flush_backlog(&mut self) {
        for (out, waiting) in self.outs.iter_mut().zip(&mut self.backlog) {
            while let Some(rec) = waiting.pop_front() {
                if let Err(rtrb::PushError::Full(rec)) = out.push(rec) {
                    waiting.push_front(rec);
                    break;
                }
            }
        }
    }

    /// Whether every change sent has been taken by its peer: nothing waits in a backlog or a
    /// ring.
    pub fn delivered(&self) -> bool {
        self.backlog.iter().all(VecDeque::is_empty)
            && self.outs.iter().all(|p| p.slots() == p.buffer().capacity())
    }

    pub fn backlog_len(&self) -> usize {
        self.backlog.iter().map(VecDeque::len).sum()
    }

    /// Apply every change waiting in the inbox; returns how many.
    pub fn drain(&mut self, mut apply: impl FnMut(&BindingRecord)) -> usize {
        self.take_all(|rec| apply(&rec))
    }

    /// Hand over every change waiting in the inbox (to a peer that keeps them); returns how
    /// many.
    pub fn take_all(&mut self, mut take: impl FnMut(BindingRecord)) -> usize {
        let mut n = 0;
        for c in &mut self.inbox {
            while let Ok(rec) = c.pop() {
                take(rec);
                n += 1;
            }
        }
        n
    }

    /// True once every producer feeding this peer is gone and nothing is left to read.
    pub fn finished(&self) -> bool {
        self.inbox.iter().all(|c| c.is_abandoned() && c.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::{Binding, Version};

    fn rec(i: u32) -> BindingRecord {
        BindingRecord::new(
            b"a@x",
            &Binding {
                version: Version {
                    stamp_ms: i as u64,
                    call_id_hash: 0,
                    cseq: i,
                },
                expires_at: 10,
                q: 1000,
                dest: crate::sip::Target::udp("192.0.2.1:5060".parse().unwrap()),
                nat: false,
                contact: b"sip:a@192.0.2.1",
                extra: Default::default(),
            },
        )
    }

    #[test]
    fn every_peer_gets_every_change_in_order_even_past_capacity() {
        let mut links = mesh(2, 3);
        let n = RING_CAPACITY as u32 + 100;
        for i in 0..n {
            links[0].send(rec(i));
        }
        assert_eq!(
            links[0].backlog_len(),
            200,
            "100 over capacity for each of 2 rings"
        );
        let mut got1 = Vec::new();
        links[1].drain(|r| got1.push(r.decode().unwrap().version.cseq));
        links[0].flush_backlog();
        links[1].drain(|r| got1.push(r.decode().unwrap().version.cseq));
        assert_eq!(got1, (0..n).collect::<Vec<_>>());
        let mut got2 = 0;
        links[2].drain(|_| got2 += 1);
        assert_eq!(
            got2, RING_CAPACITY,
            "its 100 extra still wait in the backlog"
        );
        assert!(!links[0].delivered());
        links[0].flush_backlog();
        assert_eq!(links[0].backlog_len(), 0);
        assert!(!links[0].delivered(), "the 100 wait in peer 2's ring");
        links[2].drain(|_| got2 += 1);
        assert_eq!(got2, n as usize);
        assert!(links[0].delivered());
        assert!(!links[2].finished());
        drop(links.remove(0));
        drop(links.remove(0));
        assert!(links[0].finished(), "the persister sees both shards gone");
    }
}
