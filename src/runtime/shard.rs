//! One shard: a glommio executor pinned to its CPU, with its own listen sockets, its own core
//! (and so its own copy of the location table) and its rings to the other shards. Its tasks
//! share it through `Rc` and `RefCell`, never a lock.

use std::cell::RefCell;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use glommio::net::UdpSocket;

use super::clock::{now, wall_clock_ns};
use super::reload::salt_seed;
use super::replication::Links;
use crate::auth::{AuthMode, Authenticator, UserDb};
use crate::counters::{Counters, DropReason};
use crate::location::{LocationTable, Now};
use crate::metrics::{Latency, Published};
use crate::proxy::next_hop::HopState;
use crate::proxy::{Action, Core, ProxyConfig};
use crate::sip::{PacketBuf, Source};
use crate::transport::udp::{self, Datapath, ReceiveTuning};

/// How often a shard checks for shutdown, takes in changes and publishes its counters.
const HOUSEKEEPING_TICK: Duration = Duration::from_millis(200);
/// Expired bindings are purged every this many ticks.
const PURGE_EVERY_TICKS: u32 = 5;

/// Everything a shard starts with, handed over to its executor thread.
pub struct ShardSetup {
    pub cfg: &'static ProxyConfig,
    /// The location table loaded from `--state-dir` (empty without it).
    pub seed: LocationTable,
    /// One socket per listen address.
    pub sockets: Vec<socket2::Socket>,
    pub links: Links,
    /// Set by SIGINT/SIGTERM.
    pub stop: Arc<AtomicBool>,
    pub published: Arc<Published>,
    pub auth: Option<(Authenticator, AuthMode)>,
    /// New users files after SIGHUP.
    pub reload: mpsc::Receiver<Arc<UserDb>>,
    pub receive: ReceiveTuning,
    /// Next-hop health changes from the prober (with `--probe-interval`).
    pub health: Option<rtrb::Consumer<HopState>>,
}

/// Everything one shard's tasks share.
struct Shard {
    core: RefCell<Core>,
    sockets: Vec<UdpSocket>,
    /// Rings to and from the other shards (and the persister).
    links: RefCell<Links>,
    /// Sampled processing times.
    latency: RefCell<Latency>,
    /// Where the housekeeping tick publishes counters for the metrics endpoint.
    published: Arc<Published>,
    /// Next-hop state changes from the prober, when probing is on.
    health: Option<RefCell<rtrb::Consumer<HopState>>>,
}

/// Serve until `stop` is set; returns the shard's counters.
pub async fn run(setup: ShardSetup) -> Counters {
    let (stop, tuning) = (Arc::clone(&setup.stop), setup.receive);
    let (shard, reload) = Shard::new(setup);
    let shard = Rc::new(shard);
    let tasks: Vec<_> = (0..shard.sockets.len())
        .map(|idx| {
            let receive = udp::receive_loop(Rc::clone(&shard), idx, tuning, wall_clock_ns);
            glommio::spawn_local(receive).detach()
        })
        .collect();
    let mut ticks = 0u32;
    while !stop.load(Ordering::Relaxed) {
        glommio::timer::sleep(HOUSEKEEPING_TICK).await;
        ticks += 1;
        shard.housekeeping(&reload, ticks % PURGE_EVERY_TICKS == 0);
    }
    for t in &tasks {
        t.cancel();
    }
    for t in tasks {
        let _ = t.await;
    }
    shard.drain_before_exit().await;
    let counters = shard.core.borrow().counters().clone();
    counters
}

impl Shard {
    fn new(setup: ShardSetup) -> (Shard, mpsc::Receiver<Arc<UserDb>>) {
        let mut core = Core::with_table(setup.cfg, setup.seed);
        if let Some((authn, mode)) = setup.auth {
            core.set_auth(authn, mode, salt_seed());
        }
        let shard = Shard {
            core: RefCell::new(core),
            // glommio links socket2 0.4; hand it the descriptor (ownership moves with it).
            // SAFETY: `into_raw_fd` releases the descriptor, which the UdpSocket now owns alone.
            sockets: setup
                .sockets
                .into_iter()
                .map(|s| unsafe { UdpSocket::from_raw_fd(s.into_raw_fd()) })
                .collect(),
            links: RefCell::new(setup.links),
            latency: RefCell::new(Latency::default()),
            published: setup.published,
            health: setup.health.map(RefCell::new),
        };
        (shard, setup.reload)
    }

    /// Off the packet path, every tick: new users, other shards' changes (an idle shard still
    /// takes them in, for gauges and the purge), next-hop states, the purge, and the counters
    /// for the metrics endpoint.
    fn housekeeping(&self, reload: &mpsc::Receiver<Arc<UserDb>>, purge: bool) {
        let mut core = self.core.borrow_mut();
        while let Ok(users) = reload.try_recv() {
            core.reload_users(users);
        }
        self.exchange(&mut core);
        self.apply_hop_states(&mut core);
        if purge {
            core.purge(now());
        }
        let (bindings, aors) = core.table_sizes();
        self.published
            .publish(core.counters(), &self.latency.borrow(), bindings, aors);
    }

    /// Last changes out before the rings are dropped (which tells the persister we are done).
    async fn drain_before_exit(&self) {
        self.exchange(&mut self.core.borrow_mut());
        for _ in 0..1000 {
            if self.links.borrow().backlog_len() == 0 {
                break;
            }
            self.links.borrow_mut().flush_backlog();
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Send this shard's location changes to every other peer and apply theirs.
    fn exchange(&self, core: &mut Core) {
        let mut links = self.links.borrow_mut();
        links.flush_backlog();
        for rec in core.take_replication() {
            links.send(rec);
        }
        links.drain(|rec| core.apply_replica(rec));
    }

    /// Apply the next-hop changes the prober published (one acquire load when there are none).
    fn apply_hop_states(&self, core: &mut Core) {
        if let Some(rx) = &self.health {
            let mut rx = rx.borrow_mut();
            while let Ok(s) = rx.pop() {
                core.apply_hop_state(s);
            }
        }
    }
}

impl Datapath for Shard {
    fn sockets(&self) -> &[UdpSocket] {
        &self.sockets
    }

    fn max_message(&self) -> usize {
        self.core.borrow().config().max_message
    }

    fn start_batch(&self, kernel_drops: u64) {
        let mut core = self.core.borrow_mut();
        core.count_drops(DropReason::QueueFull, kernel_drops);
        self.links.borrow_mut().drain(|rec| core.apply_replica(rec));
        self.apply_hop_states(&mut core);
    }

    fn shed(&self) {
        self.core.borrow_mut().count_received_shed();
    }

    fn handle(&self, now: Now, src: Source, listener: usize, pkt: &mut PacketBuf) -> Action {
        self.core.borrow_mut().handle(now, src, listener, pkt)
    }

    fn end_batch(&self) {
        self.exchange(&mut self.core.borrow_mut());
    }

    fn record_latency(&self, ns: u64) {
        self.latency.borrow_mut().record(ns);
    }

    fn count_sent(&self, sent: u64, failed: u64) {
        self.core.borrow_mut().count_sent(sent, failed);
    }
}
