//! Messages for a connection owned by another shard travel to that shard over a
//! single-producer ring per ordered pair of shards (glommio's shared channels, which wake the
//! receiving executor), like the replication rings do for location changes.

use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};

use crate::sip::Target;

/// Messages a ring holds before the sender drops (and counts) what does not fit.
const RING: usize = 4096;

/// One message handed over: where it goes, the listener it leaves by, and its bytes.
pub struct Handed {
    pub to: Target,
    pub listener: usize,
    pub bytes: Box<[u8]>,
}

/// One shard's ends of the mesh, before its executor connects them.
#[derive(Default)]
pub struct HandoffEnds {
    /// To shard `j` (None for this shard itself).
    pub to: Vec<Option<SharedSender<Handed>>>,
    /// From every other shard.
    pub from: Vec<SharedReceiver<Handed>>,
}

/// A ring for every ordered pair of `shards` shards; element `i` belongs to shard `i`.
pub fn mesh(shards: usize) -> Vec<HandoffEnds> {
    let mut ends: Vec<HandoffEnds> = (0..shards)
        .map(|_| HandoffEnds {
            to: (0..shards).map(|_| None).collect(),
            from: Vec::new(),
        })
        .collect();
    for i in 0..shards {
        for j in (0..shards).filter(|&j| j != i) {
            let (tx, rx) = shared_channel::new_bounded(RING);
            ends[i].to[j] = Some(tx);
            ends[j].from.push(rx);
        }
    }
    ends
}

/// The connected senders of one shard.
#[derive(Default)]
pub struct Handoff {
    to: Vec<Option<ConnectedSender<Handed>>>,
}

impl Handoff {
    /// Connect this shard's ends (on its executor); returns the senders and the receivers.
    /// Each end waits for its peer, so all are connected at once (one after the other, two
    /// shards could each wait for the other's second end).
    pub async fn connect(ends: HandoffEnds) -> (Handoff, Vec<ConnectedReceiver<Handed>>) {
        let to: Vec<_> = ends
            .to
            .into_iter()
            .map(|tx| tx.map(|tx| glommio::spawn_local(tx.connect())))
            .collect();
        let from: Vec<_> = ends
            .from
            .into_iter()
            .map(|rx| glommio::spawn_local(rx.connect()))
            .collect();
        let mut senders = Vec::new();
        for t in to {
            senders.push(match t {
                Some(t) => Some(t.await),
                None => None,
            });
        }
        let mut receivers = Vec::new();
        for t in from {
            receivers.push(t.await);
        }
        (Handoff { to: senders }, receivers)
    }

    /// Hand `msg` to shard `shard`; false when its ring is full (or there is no such shard).
    pub fn send(&self, shard: usize, msg: Handed) -> bool {
        match self.to.get(shard) {
            Some(Some(tx)) => tx.try_send(msg).is_ok(),
            _ => false,
        }
    }
}
