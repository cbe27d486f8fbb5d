//! One shard's table of TCP connections: ids, the newest connection to each peer address
//! (reused for sends that name no connection), and the per-source-IP counts the limits need;
//! and its copy of the connections peers opened to the other shards ([`AcceptedElsewhere`]).
//! Plain data, no I/O: the connection tasks live in [`super::conn`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

use crate::sip::ConnId;

/// Why a new connection is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The node holds `--tcp-max-connections` already.
    NodeLimit,
    /// This source IP holds its share of `--tcp-max-connections-per-ip` on this shard.
    PerIpLimit,
}

/// The connections of one shard, each an `Rc<C>` shared with its tasks.
pub struct ConnTable<C> {
    shard: u16,
    next_serial: u64,
    by_id: HashMap<ConnId, (SocketAddr, Rc<C>)>,
    by_peer: HashMap<SocketAddr, ConnId>,
    per_ip: HashMap<IpAddr, usize>,
    max_per_ip: usize,
}

/// Where a table's serial numbers start: at random among 2^48, so that an id is not handed
/// out again by the other stream transport of the shard (TCP and TLS each have a table) or by
/// a later run of the process, whose bindings loaded from `--state-dir` still name the
/// connections of the run before (a send on such a binding must find no connection, not some
/// other phone's).
fn first_serial() -> u64 {
    getrandom::u64().unwrap_or(1) & ((1 << 48) - 1)
}

impl<C> ConnTable<C> {
    pub fn new(shard: u16, max_per_ip: usize) -> ConnTable<C> {
        ConnTable {
            shard,
            next_serial: first_serial(),
            by_id: HashMap::new(),
            by_peer: HashMap::new(),
            per_ip: HashMap::new(),
            max_per_ip,
        }
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Whether `peer`'s IP may hold one more connection on this shard.
    pub fn admits(&self, peer: SocketAddr) -> Result<(), Refusal> {
        match self.per_ip.get(&peer.ip()) {
            Some(&n) if n >= self.max_per_ip => Err(Refusal::PerIpLimit),
            _ => Ok(()),
        }
    }

    /// A fresh id for a connection of this shard.
    pub fn next_id(&mut self) -> ConnId {
        let id = ConnId::new(self.shard, self.next_serial);
        self.next_serial += 1;
        id
    }

    /// Enter a connection; it becomes the one reused for sends to `peer`.
    pub fn insert(&mut self, id: ConnId, peer: SocketAddr, conn: Rc<C>) {
        *self.per_ip.entry(peer.ip()).or_insert(0) += 1;
        self.by_peer.insert(peer, id);
        self.by_id.insert(id, (peer, conn));
    }

    /// Forget a connection (idempotent); true when it was there.
    pub fn remove(&mut self, id: ConnId) -> bool {
        let Some((peer, _)) = self.by_id.remove(&id) else {
            return false;
        };
        if self.by_peer.get(&peer) == Some(&id) {
            self.by_peer.remove(&peer);
        }
        if let Some(n) = self.per_ip.get_mut(&peer.ip()) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&peer.ip());
            }
        }
        true
    }

    /// The connection `id`, when it is open. Ids come from our own location table and from
    /// our own Via in a response; a forged response naming another peer's connection gains
    /// nothing a stateless proxy does not already give it (it can name any address in Via).
    pub fn get(&self, id: ConnId) -> Option<&Rc<C>> {
        self.by_id.get(&id).map(|(_, c)| c)
    }

    /// The newest open connection to or from `peer`.
    pub fn to_peer(&self, peer: SocketAddr) -> Option<&Rc<C>> {
        let id = self.by_peer.get(&peer)?;
        self.by_id.get(id).map(|(_, c)| c)
    }

    /// Every connection (to close them all at shutdown).
    pub fn all(&self) -> impl Iterator<Item = &Rc<C>> {
        self.by_id.values().map(|(_, c)| c)
    }
}

/// The connections peers opened to the node's *other* shards, by the peer's address: this
/// shard's own copy (one per transport), kept up to date by the announcements and withdrawals
/// those shards send over the hand-off rings ([`super::handoff::Handed`]).
///
/// A peer's own connection is the only way to reach the address it connects from: that port
/// accepts nothing. A softphone puts that address in the Contact of its dialogs (baresip
/// does), so the in-dialog requests routed back through us name it, and they may arrive on
/// any shard. The shard that misses it in its own table looks here and hands the message to
/// the owner instead of opening a connection that cannot succeed. Connections we open are not
/// announced: each shard opens and reuses its own.
///
/// Two shards' news about one address travel on different rings and can cross (a peer that
/// reconnects from the same port to another shard); a withdrawal removes only the connection
/// it names, so the worst a crossing or a lost item leaves is an entry that sends the
/// address's messages to a shard that no longer has the connection, which then opens one:
/// what happened before there was this copy.
#[derive(Default)]
pub struct AcceptedElsewhere {
    by_peer: HashMap<SocketAddr, ConnId>,
}

impl AcceptedElsewhere {
    /// `peer` connected to another shard: `id` is its connection now.
    pub fn announce(&mut self, peer: SocketAddr, id: ConnId) {
        self.by_peer.insert(peer, id);
    }

    /// Connection `id` from `peer` closed (a newer one from the same address stays).
    pub fn withdraw(&mut self, peer: SocketAddr, id: ConnId) {
        if self.by_peer.get(&peer) == Some(&id) {
            self.by_peer.remove(&peer);
        }
    }

    /// The connection `peer` opened to another shard, as far as this shard has heard.
    pub fn get(&self, peer: SocketAddr) -> Option<ConnId> {
        self.by_peer.get(&peer).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ids_name_their_shard_and_a_closed_connection_is_gone() {
        let mut t: ConnTable<u32> = ConnTable::new(3, 10);
        let id = t.next_id();
        assert_eq!(id.shard(), 3);
        t.insert(id, addr("192.0.2.1:5060"), Rc::new(7));
        assert_eq!(t.get(id).map(|c| **c), Some(7));
        assert_eq!(t.to_peer(addr("192.0.2.1:5060")).map(|c| **c), Some(7));
        assert!(t.remove(id));
        assert!(!t.remove(id));
        assert!(t.get(id).is_none());
        assert!(t.to_peer(addr("192.0.2.1:5060")).is_none());
        assert!(t.is_empty());
    }

    #[test]
    fn per_ip_limit_counts_open_connections() {
        let mut t: ConnTable<()> = ConnTable::new(0, 2);
        let a = addr("192.0.2.1:1000");
        let ids: Vec<_> = (0..2).map(|_| t.next_id()).collect();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(t.admits(a), Ok(()));
            t.insert(*id, addr(&format!("192.0.2.1:{}", 1000 + i)), Rc::new(()));
        }
        assert_eq!(t.admits(a), Err(Refusal::PerIpLimit));
        assert_eq!(t.admits(addr("192.0.2.9:1")), Ok(()));
        t.remove(ids[0]);
        assert_eq!(t.admits(a), Ok(()));
    }

    #[test]
    fn an_announced_connection_is_named_until_it_is_withdrawn() {
        let mut peers = AcceptedElsewhere::default();
        let p = addr("192.0.2.1:40000");
        let (old, new) = (ConnId::new(1, 1), ConnId::new(2, 7));
        peers.announce(p, old);
        assert_eq!(peers.get(p), Some(old));
        // A newer connection from the same address replaces it; the older one's withdrawal,
        // arriving later, leaves it.
        peers.announce(p, new);
        peers.withdraw(p, old);
        assert_eq!(peers.get(p), Some(new));
        peers.withdraw(p, new);
        assert_eq!(peers.get(p), None);
    }

    #[test]
    fn the_newest_connection_to_a_peer_is_reused_and_an_older_one_closing_keeps_it() {
        let mut t: ConnTable<u8> = ConnTable::new(0, 10);
        let p = addr("192.0.2.1:5060");
        let (old, new) = (t.next_id(), t.next_id());
        t.insert(old, p, Rc::new(1));
        t.insert(new, p, Rc::new(2));
        t.remove(old);
        assert_eq!(t.to_peer(p).map(|c| **c), Some(2));
    }
}
