//! The cluster peer: a thread next to the shards (never on one) with a current-thread tokio
//! runtime and two tasks sharing its state through `Rc<RefCell<..>>` (one thread, no lock).
//!
//! - The **publisher**, every `--redis-publish-interval-ms`: takes in this node's changes from
//!   the replication rings (the shards' and the admin API's), queues them, and writes them to
//!   Redis in one pipelined round trip. It connects (and reconnects, with backoff) to the
//!   primary; after a lost connection it republishes every binding of this node, which is how
//!   a Redis restarted empty, a failover that lost acknowledged writes, or a dropped change
//!   are all repaired by the same path.
//! - The **follower** ([`super::follower`]), on a connection of its own: loads the whole state,
//!   then blocks on the other nodes' change streams and hands their changes to every local
//!   peer through the rings.
//!
//! The packet path never waits for any of this: shards apply what the rings bring at their
//! next batch.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::follower;
use super::outbox::{Origin, Outbox};
use super::record::{self, Stored};
use super::settings::ClusterSettings;
use super::store::Primary;
use crate::location::{Binding, BindingRecord, Now};
use crate::metrics::ClusterStats;
use crate::replication::Links;

/// Writes per pipelined round trip.
const WRITE_BATCH: usize = 1024;
/// Round trips per turn of the publisher, before it takes in the rings again.
const ROUND_TRIPS: usize = 8;
/// Waits between connection attempts: from the first to the last, doubling.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_LAST: Duration = Duration::from_secs(2);
/// How often `mine` loses expired bindings (it only needs them gone before a republication,
/// which skips them anyway: this bounds its memory).
const PURGE_EVERY: Duration = Duration::from_secs(60);
/// The publisher checks its connection this often, and that it still leads to the primary (a
/// write would find it broken only when the next change comes, and the republication after a
/// loss or a failover should not wait for that).
const IDLE_PING: Duration = Duration::from_secs(1);
/// How long the last changes may take to reach Redis when the node stops.
const FINAL_FLUSH: Duration = Duration::from_secs(2);

/// What the peer needs from the node.
pub struct Setup {
    pub settings: ClusterSettings,
    pub links: Links,
    pub origin: Origin,
    pub stats: Arc<ClusterStats>,
    pub stop: Arc<AtomicBool>,
    pub clock: fn() -> Now,
}

/// The state both tasks share.
pub(super) struct Peer {
    pub(super) settings: ClusterSettings,
    pub(super) origin: Origin,
    pub(super) stats: Arc<ClusterStats>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) clock: fn() -> Now,
    /// `None` once the node stops: the rings are let go so that the persister can finish.
    pub(super) links: Option<Links>,
    pub(super) outbox: Outbox,
    /// The follower lost its connection: the publisher's is likely gone too (Redis restarted,
    /// a failover), so it connects again, and republishes.
    pub(super) primary_suspect: bool,
    /// The publisher lost the primary (or found it demoted): the follower connects again too,
    /// to whichever server is the primary now.
    pub(super) follower_suspect: bool,
    /// The first load is done: this node's own bindings in Redis are from before a restart
    /// only then; later loads skip them (this node's memory is newer, its connections live).
    pub(super) loaded_once: bool,
}

/// Start the peer in a thread of its own; it stops (after writing what it can) once the node
/// stops and every shard has let its rings go.
pub fn spawn(setup: Setup) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("cluster".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
            {
                Ok(r) => r,
                Err(e) => return log::error!("cluster: cannot start its runtime: {e}"),
            };
            let peer = Rc::new(RefCell::new(Peer {
                outbox: Outbox::new(setup.settings.queue_limit),
                settings: setup.settings,
                origin: setup.origin,
                stats: setup.stats,
                stop: setup.stop,
                clock: setup.clock,
                links: Some(setup.links),
                primary_suspect: false,
                follower_suspect: false,
                loaded_once: false,
            }));
            let local = tokio::task::LocalSet::new();
            local.spawn_local(follower::follow(Rc::clone(&peer)));
            local.block_on(&runtime, publish(peer));
        })
}

/// The publisher task (see the module comment). Returns when the node has stopped.
async fn publish(peer: Rc<RefCell<Peer>>) {
    let settings = peer.borrow().settings.clone();
    let mut primary: Option<Primary> = None;
    let mut connected_once = false;
    let mut backoff = Backoff::default();
    let mut last_purge = std::time::Instant::now();
    let mut last_check = std::time::Instant::now();
    loop {
        let stopping = peer.borrow_mut().take_in();
        if std::mem::take(&mut peer.borrow_mut().primary_suspect) && primary.is_some() {
            // The follower lost its connection: this one is likely gone too. (The follower
            // reconnects by itself: it is not told again.)
            primary = None;
            ClusterStats::set(&peer.borrow().stats.connected, false);
        }
        if let Some(p) = &mut primary {
            if last_check.elapsed() >= IDLE_PING {
                last_check = std::time::Instant::now();
                if p.check().await.is_err() {
                    primary = None;
                    peer.borrow_mut().lost_connection();
                }
            }
        }
        if primary.is_none() && backoff.due() {
            primary = connect_primary(&peer, &settings, &mut connected_once, &mut backoff).await;
        }
        let mut more = false;
        if let Some(p) = &mut primary {
            match write_queued(&peer, p, &settings).await {
                Ok(left) => more = left,
                Err(_) => {
                    primary = None;
                    peer.borrow_mut().lost_connection();
                }
            }
        }
        if stopping {
            final_flush(&peer, primary.as_mut(), &settings).await;
            peer.borrow_mut().links = None;
            return;
        }
        if last_purge.elapsed() >= PURGE_EVERY {
            let now = (peer.borrow().clock)();
            peer.borrow_mut().outbox.purge(now);
            last_purge = std::time::Instant::now();
        }
        if more {
            // Behind: take in what came meanwhile (so the queue's bound is what holds changes
            // back, not the rings) and write on without waiting.
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(settings.publish_interval).await;
        }
    }
}

/// Connect to the primary. Every connection after the first republishes this node's
/// bindings: Redis may have lost some of them (restarted empty, a failover ahead of
/// replication), and the store keeps the newest version of each whatever it already holds.
async fn connect_primary(
    peer: &Rc<RefCell<Peer>>,
    settings: &ClusterSettings,
    connected_once: &mut bool,
    backoff: &mut Backoff,
) -> Option<Primary> {
    match Primary::open(settings).await {
        Ok(p) => {
            backoff.reset();
            let mut peer = peer.borrow_mut();
            ClusterStats::set(&peer.stats.connected, true);
            if *connected_once {
                ClusterStats::add(&peer.stats.reconnects, 1);
                peer.outbox.republish_all();
                log::info!("cluster: reconnected to Redis; republishing this node's bindings");
            } else {
                log::info!("cluster: connected to Redis");
            }
            *connected_once = true;
            Some(p)
        }
        Err(e) => {
            backoff.failed();
            log::warn!("cluster: cannot reach Redis: {e}; serving from memory, retrying");
            None
        }
    }
}

/// Write what is queued (and a republication when one is due), a batch per round trip, for
/// at most [`ROUND_TRIPS`] round trips. Returns whether changes are left.
async fn write_queued(
    peer: &Rc<RefCell<Peer>>,
    primary: &mut Primary,
    settings: &ClusterSettings,
) -> redis::RedisResult<bool> {
    let stream = record::stream_key(&settings.prefix, &settings.node_id);
    for _ in 0..ROUND_TRIPS {
        let batch = {
            let mut p = peer.borrow_mut();
            let now = (p.clock)();
            let origin = p.origin.clone();
            p.outbox.next_batch(WRITE_BATCH, settings, &origin, now)
        };
        if batch.writes.is_empty() && peer.borrow().outbox.queued() == 0 {
            peer.borrow_mut().outbox.written(&batch);
            return Ok(false);
        }
        // A batch that fails stays queued: the next connection writes it again.
        if let Err(e) = primary
            .write(&stream, settings.stream_length, &batch.writes)
            .await
        {
            log::warn!("cluster: write to Redis failed: {e}");
            return Err(e);
        }
        let mut p = peer.borrow_mut();
        p.outbox.written(&batch);
        ClusterStats::add(&p.stats.published, batch.writes.len() as u64);
        p.publish_gauges();
        if p.outbox.queued() == 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The node stops: write what is queued, for a bounded time.
async fn final_flush(
    peer: &Rc<RefCell<Peer>>,
    primary: Option<&mut Primary>,
    settings: &ClusterSettings,
) {
    let Some(primary) = primary else {
        let left = peer.borrow().outbox.queued();
        if left > 0 {
            log::warn!("cluster: stopping with {left} changes not written to Redis (unreachable)");
        }
        return;
    };
    let flush = async { while let Ok(true) = write_queued(peer, primary, settings).await {} };
    let _ = tokio::time::timeout(FINAL_FLUSH, flush).await;
    let left = peer.borrow().outbox.queued();
    if left > 0 {
        log::warn!("cluster: stopping with {left} changes not written to Redis");
    }
}

impl Peer {
    /// Take in this node's changes from the rings and retry full rings. Returns whether the
    /// node is stopping and every local producer has let go (nothing more will come).
    fn take_in(&mut self) -> bool {
        let Some(links) = &mut self.links else {
            return true;
        };
        links.flush_backlog();
        let finished = self.stop.load(Ordering::Relaxed) && links.finished();
        let outbox = &mut self.outbox;
        links.take_all(|rec| outbox.push(rec));
        let dropped = self.outbox.take_dropped();
        if dropped > 0 {
            ClusterStats::add(&self.stats.dropped, dropped);
        }
        self.publish_gauges();
        finished
    }

    /// A change read from Redis. Another node's goes to every local peer (as this node applies
    /// it: [`record::for_this_node`]); this node's own only in the first load after start-up
    /// (without its connection ids: those connections are gone), and it is remembered to be
    /// republished.
    pub(super) fn apply(&mut self, stored: &Stored<'_>, loading: bool) {
        let Some(links) = &mut self.links else {
            return;
        };
        if stored.node == self.settings.node_id.as_bytes() {
            if loading && !self.loaded_once {
                if let Some(rec) = without_connection(&stored.record) {
                    self.outbox.remember(&rec);
                    links.send(rec);
                }
            }
            return;
        }
        let latest = (self.clock)().unix_ms + self.settings.max_skew_ms;
        let Some((rec, clamped)) = record::for_this_node(stored, latest) else {
            return;
        };
        if clamped {
            ClusterStats::add(&self.stats.clamped, 1);
        }
        links.send(rec);
        ClusterStats::add(&self.stats.applied, 1);
    }

    fn lost_connection(&mut self) {
        ClusterStats::set(&self.stats.connected, false);
        self.follower_suspect = true;
    }

    /// Whether the local peers have taken every change sent to them.
    pub(super) fn delivered(&self) -> bool {
        self.links.as_ref().map_or(true, Links::delivered)
    }

    pub(super) fn is_stopping(&self) -> bool {
        self.links.is_none()
    }

    fn publish_gauges(&self) {
        self.stats
            .queued
            .store(self.outbox.queued() as u64, Ordering::Relaxed);
        ClusterStats::set(&self.stats.degraded, self.outbox.degraded());
    }
}

/// This node's binding from before a restart, without the connection it came on (gone now;
/// requests go to its address instead).
fn without_connection(rec: &BindingRecord) -> Option<BindingRecord> {
    let b = rec.decode()?;
    if b.dest.conn.is_none() {
        return Some(rec.clone());
    }
    let mut dest = b.dest;
    dest.conn = None;
    Some(BindingRecord::new(&rec.aor, &Binding { dest, ..b }))
}

/// Waits between connection attempts, doubling from [`BACKOFF_FIRST`] to [`BACKOFF_LAST`].
#[derive(Default)]
pub(super) struct Backoff {
    wait: Option<Duration>,
    until: Option<std::time::Instant>,
}

impl Backoff {
    pub(super) fn due(&self) -> bool {
        self.until.map_or(true, |t| std::time::Instant::now() >= t)
    }

    pub(super) fn failed(&mut self) {
        let wait = self
            .wait
            .map_or(BACKOFF_FIRST, |w| (w * 2).min(BACKOFF_LAST));
        self.wait = Some(wait);
        self.until = Some(std::time::Instant::now() + wait);
    }

    pub(super) fn reset(&mut self) {
        *self = Backoff::default();
    }
}
