//! Messages for a connection owned by another shard travel to that shard over a
//! single-producer ring per ordered pair of shards (glommio's shared channels, which wake the
//! receiving executor), like the replication rings do for location changes. The same rings
//! carry the news of the connections peers open to a shard ([`Handed::Announce`],
//! [`Handed::Withdraw`]), from which every other shard keeps its own copy of who connected
//! where (`super::table::AcceptedElsewhere`): the shards share no table.

use std::net::SocketAddr;

use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};

use crate::sip::{ConnId, Target, Transport};

/// Items a ring holds before the sender drops (and counts) what does not fit.
const RING: usize = 4096;
/// How often a shard connecting its rings is woken (see [`Handoff::connect`]).
const CONNECT_TICK: std::time::Duration = std::time::Duration::from_millis(1);

/// What travels from one shard to another.
pub enum Handed {
    /// A message for a connection of the receiving shard: where it goes, the listener it
    /// leaves by, and its bytes.
    Message {
        to: Target,
        listener: usize,
        bytes: Box<[u8]>,
    },
    /// A peer opened a connection to the sending shard, and it is ready for SIP.
    Announce(Accepted),
    /// That connection closed.
    Withdraw(Accepted),
    /// The answer to a NAT ping the receiving shard sent came to the sending shard (its key).
    NatPingAnswer(u64),
}

/// A connection a peer opened to a shard: its transport, the peer's address, its id (which
/// names the shard).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub transport: Transport,
    pub peer: SocketAddr,
    pub conn: ConnId,
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
    ///
    /// A timer ticks meanwhile. glommio's connect is never woken by its peer: it re-arms its
    /// waker on every turn of the executor, and so relies on the executor never sleeping with
    /// a task it woke still queued. glommio 0.9 does sleep so when its preemption timer fires
    /// between waking a task and running it (`run_task_queues` then runs nothing and the loop
    /// parks): on a shard whose CPU another process keeps busy, a 5 ms preemption was enough.
    /// Before the shard has a timer or a socket armed nothing wakes it again, and the shard
    /// served nothing until the other shards stopped (a test saw its UDP probes answered only
    /// at exit, 15 s later; a TLS handshake that landed on it timed out). The tick wakes it.
    pub async fn connect(ends: HandoffEnds) -> (Handoff, Vec<ConnectedReceiver<Handed>>) {
        let tick = glommio::spawn_local(async {
            loop {
                glommio::timer::sleep(CONNECT_TICK).await;
            }
        })
        .detach();
        let connected = Handoff::connect_ends(ends).await;
        tick.cancel();
        connected
    }

    async fn connect_ends(ends: HandoffEnds) -> (Handoff, Vec<ConnectedReceiver<Handed>>) {
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

    /// How many shards there are (this one included).
    pub fn shards(&self) -> usize {
        self.to.len().max(1)
    }

    /// Hand `msg` to shard `shard`; false when its ring is full (or there is no such shard).
    pub fn send(&self, shard: usize, msg: Handed) -> bool {
        match self.to.get(shard) {
            Some(Some(tx)) => tx.try_send(msg).is_ok(),
            _ => false,
        }
    }

    /// Send what `news` makes to every other shard; returns how many of them did not get it
    /// (their ring was full).
    pub fn tell_others(&self, news: impl Fn() -> Handed) -> u64 {
        let lost = self
            .to
            .iter()
            .flatten()
            .filter(|tx| tx.try_send(news()).is_err());
        lost.count() as u64
    }
}
