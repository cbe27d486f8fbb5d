//! The runtime: one glommio executor per shard, pinned to its CPU, each with its own
//! SO_REUSEPORT socket per listen address, its own buffers and its own copy of the location
//! table. Shards talk only through the channel mesh built at start-up (location changes);
//! nothing on the packet path is shared between cores.
//!
//! With `--users`, the [`Authenticator`] is built once here and each shard gets a clone (the
//! user database behind an `Arc`, read-only) and its own replay tracker. SIGHUP is handled by a
//! thread of the main process: it reads the users file once, and sends the new `Arc<UserDb>` to
//! every shard over a channel that each shard drains on its housekeeping tick, off the packet
//! path. A file that fails to load is logged and the shards keep the users they have.
//!
//! This is the only module that touches sockets, executors, signals and clocks.

pub mod prober;
pub mod replication;

use std::cell::RefCell;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use glommio::net::UdpSocket;
use glommio::{LocalExecutorBuilder, Placement};

use crate::auth::{random_secret, AuthConfig, Authenticator, UserDb};
use crate::config::{Args, AuthMode, Steering};
use crate::counters::{Counters, DropReason};
use crate::identity::LocalIdentity;
use crate::location::LocationTable;
use crate::location::Now;
use crate::metrics::{self, Latency, Published};
use crate::persist::Store;
use crate::proxy::next_hop::HopState;
use crate::proxy::redirect::RedirectPolicy;
use crate::proxy::{Action, Core, ProxyConfig};
use crate::registrar::RegistrarConfig;
use crate::transport::batch::{Outgoing, RecvBatch, SendBatch, BATCH};
use crate::transport::coalesce::Coalescer;
use crate::transport::shed::Shedder;
use crate::transport::socket;
use prober::Prober;
use replication::Links;

/// glommio's registered I/O buffer pool per executor. Datagrams never use it (they go through
/// recvmmsg into the shard's own buffers), so it is kept small: the default 10 MiB per executor
/// exceeds an unprivileged user's usual 8 MiB memlock limit and makes glommio warn at start-up.
const IO_MEMORY: usize = 512 * 1024;

/// How often the persister collects changes from the rings.
const PERSISTER_POLL: Duration = Duration::from_millis(20);
/// How often a shard checks for shutdown and purges expired bindings.
const HOUSEKEEPING_TICK: Duration = Duration::from_millis(200);
const PURGE_EVERY_TICKS: u32 = 5;

/// The wall clock in nanoseconds, the clock of the kernel's receive timestamps.
fn wall_clock_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The wall clock as the core wants it.
pub fn now() -> Now {
    now_from_ns(wall_clock_ns())
}

fn now_from_ns(unix_ns: u64) -> Now {
    Now {
        unix_ms: unix_ns / 1_000_000,
    }
}

/// Start every shard and serve until SIGINT or SIGTERM. Returns the summed counters.
pub fn run(args: &Args) -> Result<Counters, String> {
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shards = args.shards.unwrap_or(available);
    let cpus: Vec<usize> = match &args.cpus {
        Some(list) => list.0[..shards].to_vec(),
        None => (0..shards).map(|i| i % available).collect(),
    };

    // Bind every socket before any shard starts, so a bad address fails start-up cleanly.
    let mut per_shard: Vec<Vec<socket2::Socket>> = (0..shards).map(|_| Vec::new()).collect();
    let mut bound = Vec::new();
    for addr in &args.listen {
        let group = socket::bind_group(
            *addr,
            shards,
            args.rcvbuf,
            args.sndbuf,
            args.steering,
            args.max_queue_delay_ms > 0,
        )
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let actual = group[0]
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or(*addr);
        bound.push(actual);
        for (i, s) in group.into_iter().enumerate() {
            per_shard[i].push(s);
        }
    }
    // A redirect domain is one of ours: its REGISTERs are served and its users looked up.
    let mut domains = args.domains.clone();
    for d in &args.redirect_domains {
        if !domains.iter().any(|x| x.eq_ignore_ascii_case(d)) {
            domains.push(d.clone());
        }
    }
    let identity = LocalIdentity::new(
        &bound,
        &socket::interface_addresses(),
        socket::host_name().as_deref(),
        &domains,
        args.advertise.as_deref(),
    );
    let cfg: &'static ProxyConfig = Box::leak(Box::new(ProxyConfig {
        local: identity,
        routes: args.routes.clone(),
        record_route: args.record_route,
        redirect: RedirectPolicy {
            all: args.redirect,
            domains: args
                .redirect_domains
                .iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
        },
        registrar: RegistrarConfig {
            default_expires: args.default_expires,
            min_expires: args.min_expires,
            max_expires: args.max_expires,
            max_bindings_per_aor: args.max_bindings_per_aor,
            max_bindings: args.max_bindings,
        },
        max_message: args.max_message,
        // With random steering a source's requests are spread over every shard.
        pike: args.pike.map(|rate| {
            let per_shard = match args.steering {
                Steering::Random => rate.div_ceil(shards as u32),
                Steering::Flow => rate,
            };
            (per_shard, args.pike_cooldown)
        }),
    }));
    for l in &cfg.local.listen {
        log::info!(
            "listening on udp {} (advertised as {})",
            l.bound,
            l.advertised
        );
    }
    log::info!(
        "{shards} shard(s) on CPUs {cpus:?}, steering {:?}",
        args.steering
    );

    // Registrations from the last run, if any: every shard starts with the same copy.
    let now_secs = now().secs();
    let (store, seed) = match &args.state_dir {
        Some(dir) => {
            let (store, table, report) = Store::open(dir, now_secs)
                .map_err(|e| format!("cannot open state directory {}: {e}", dir.display()))?;
            if report.truncated_log_bytes > 0 || report.ignored_snapshot_bytes > 0 {
                log::warn!(
                    "state: cut a torn or corrupt log tail of {} bytes ({} bytes of the snapshot ignored); kept everything before it",
                    report.truncated_log_bytes,
                    report.ignored_snapshot_bytes
                );
            }
            log::info!(
                "state: loaded {} bindings of {} AORs ({} snapshot + {} log records)",
                report.live_bindings,
                report.aors,
                report.snapshot_records,
                report.log_records
            );
            (Some(store), table)
        }
        None => (None, LocationTable::new()),
    };

    let published: Vec<Arc<Published>> = (0..shards)
        .map(|_| Arc::new(Published::default()))
        .collect();
    if let Some(addr) = args.metrics {
        let bound = metrics::serve(addr, published.clone())
            .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
        log::info!("metrics on http://{bound}/metrics");
    }
    let auth = build_authenticator(args)?;

    let receive = ReceiveTuning {
        coalesce: Duration::from_micros(args.rx_coalesce_us as u64),
        shedder: Shedder::new(args.max_queue_delay_ms),
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(|e| e.to_string())?;
    }
    let (reload_txs, reload_rxs): (Vec<_>, Vec<_>) = (0..shards).map(|_| mpsc::channel()).unzip();
    let reloader = Reloader::start(args, reload_txs)?;
    let (prober, mut health_rxs) = match args.probe_interval {
        Some(secs) if !cfg.routes.is_empty() => {
            let (p, rxs) = Prober::start(
                cfg,
                Duration::from_secs_f64(secs),
                args.probe_failures,
                shards,
                Arc::clone(&stop),
            )?;
            (Some(p), rxs.into_iter().map(Some).collect())
        }
        Some(_) => {
            log::warn!("--probe-interval without --route: there are no next hops to probe");
            (None, Vec::new())
        }
        None => (None, Vec::new()),
    };
    health_rxs.resize_with(shards, || None);

    // The persister, when there is one, is the last peer: it receives every shard's changes
    // like the other shards do, and sends nothing.
    let peers = shards + usize::from(store.is_some());
    let mut links = replication::mesh(shards, peers);
    let persister = match store {
        Some(store) => {
            let mesh = links.pop().expect("the persister's links");
            let interval = Duration::from_millis(args.fsync_interval_ms);
            Some(
                LocalExecutorBuilder::new(Placement::Unbound)
                    .name("persister")
                    .io_memory(IO_MEMORY)
                    .spawn(move || persister_main(store, mesh, interval))
                    .map_err(|e| format!("cannot start the persister: {e}"))?,
            )
        }
        None => None,
    };
    let mut handles = Vec::new();
    for ((id, (sockets, mesh)), reload) in
        per_shard.into_iter().zip(links).enumerate().zip(reload_rxs)
    {
        let setup = ShardSetup {
            cfg,
            seed: seed.clone(),
            sockets,
            links: mesh,
            stop: Arc::clone(&stop),
            published: Arc::clone(&published[id]),
            auth: auth.clone(),
            reload,
            receive,
            health: health_rxs[id].take(),
        };
        let handle = LocalExecutorBuilder::new(Placement::Fixed(cpus[id]))
            .name(&format!("shard{id}"))
            .io_memory(IO_MEMORY)
            .spawn(move || shard_main(setup))
            .map_err(|e| format!("cannot start shard {id} on CPU {}: {e}", cpus[id]))?;
        handles.push(handle);
    }
    let mut total = Counters::default();
    for (id, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(c) => {
                log::info!(
                    "shard {id}: {}",
                    metrics::log_line(metrics::Line::Traffic, &c)
                );
                let shed = c.drops[DropReason::Overload as usize];
                let queue_full = c.drops[DropReason::QueueFull as usize];
                if shed + queue_full > 0 {
                    log::warn!(
                        "shard {id}: overloaded: {shed} shed after waiting over {} ms, \
                         {queue_full} dropped by the kernel (receive queue full)",
                        args.max_queue_delay_ms
                    );
                }
                if auth.is_some() {
                    log::info!("shard {id}: {}", metrics::log_line(metrics::Line::Auth, &c));
                }
                if prober.is_some() {
                    log::info!(
                        "shard {id}: {}",
                        metrics::log_line(metrics::Line::NextHops, &c)
                    );
                }
                total.add(&c);
            }
            Err(e) => return Err(format!("shard {id} failed: {e}")),
        }
    }
    if let Some(p) = persister {
        match p.join() {
            Ok(Ok(n)) => log::info!("state: {n} bindings saved"),
            Ok(Err(e)) => return Err(format!("state: final sync failed: {e}")),
            Err(e) => return Err(format!("persister failed: {e}")),
        }
    }
    reloader.stop();
    if let Some(p) = prober {
        p.join();
    }
    Ok(total)
}

/// Everything one shard's tasks share (single-threaded: `Rc`, never a lock).
struct Shard {
    core: RefCell<Core>,
    sockets: Vec<UdpSocket>,
    /// Rings to and from the other shards (and the persister).
    links: RefCell<Links>,
    /// Sampled processing times (1 in [`LATENCY_SAMPLE`] datagrams).
    latency: RefCell<Latency>,
    /// Where the housekeeping tick publishes counters for the metrics endpoint.
    published: Arc<Published>,
    /// Next-hop state changes from the prober, when probing is on.
    health: Option<RefCell<rtrb::Consumer<HopState>>>,
}

/// Measure one datagram's processing time in this many (a power of two).
const LATENCY_SAMPLE: u64 = 64;

/// Everything a shard starts with, handed over to its executor thread.
struct ShardSetup {
    cfg: &'static ProxyConfig,
    /// The location table loaded from `--state-dir` (empty without it).
    seed: LocationTable,
    /// One socket per listen address.
    sockets: Vec<socket2::Socket>,
    links: Links,
    /// Set by SIGINT/SIGTERM.
    stop: Arc<AtomicBool>,
    published: Arc<Published>,
    auth: Option<(Authenticator, AuthMode)>,
    /// New users files after SIGHUP.
    reload: mpsc::Receiver<Arc<UserDb>>,
    receive: ReceiveTuning,
    /// Next-hop health changes from the prober (with `--probe-interval`).
    health: Option<rtrb::Consumer<HopState>>,
}

/// How a receive loop paces and sheds its intake.
#[derive(Clone, Copy)]
struct ReceiveTuning {
    /// How long to wait after a partial batch when datagrams arrive at a rate that makes
    /// waiting pay (see [`coalesce`]); zero never waits.
    coalesce: Duration,
    shedder: Shedder,
}

async fn shard_main(setup: ShardSetup) -> Counters {
    let ShardSetup {
        cfg,
        seed,
        sockets,
        links,
        stop,
        published,
        auth,
        reload,
        receive,
        health,
    } = setup;
    let mut core = Core::with_table(cfg, seed);
    if let Some((authn, mode)) = auth {
        core.set_auth(authn, mode, salt_seed());
    }
    let shard = Rc::new(Shard {
        core: RefCell::new(core),
        // glommio links socket2 0.4; hand it the descriptor (ownership moves with it).
        // SAFETY: `into_raw_fd` releases the descriptor, which the UdpSocket now owns alone.
        sockets: sockets
            .into_iter()
            .map(|s| unsafe { UdpSocket::from_raw_fd(s.into_raw_fd()) })
            .collect(),
        links: RefCell::new(links),
        latency: RefCell::new(Latency::default()),
        published,
        health: health.map(RefCell::new),
    });
    let mut tasks = Vec::new();
    for idx in 0..shard.sockets.len() {
        tasks.push(glommio::spawn_local(receive_loop(Rc::clone(&shard), idx, receive)).detach());
    }
    let mut ticks = 0u32;
    while !stop.load(Ordering::Relaxed) {
        glommio::timer::sleep(HOUSEKEEPING_TICK).await;
        ticks += 1;
        while let Ok(users) = reload.try_recv() {
            shard.core.borrow_mut().reload_users(users);
        }
        let mut core = shard.core.borrow_mut();
        // An idle shard still takes in what the others changed, for gauges and the purge.
        exchange(&shard, &mut core);
        apply_hop_states(&shard, &mut core);
        if ticks % PURGE_EVERY_TICKS == 0 {
            core.purge(now());
        }
        let (bindings, aors) = (core.table.binding_count(), core.table.aor_count());
        shard
            .published
            .publish(&core.counters, &shard.latency.borrow(), bindings, aors);
    }
    for t in &tasks {
        t.cancel();
    }
    for t in tasks {
        let _ = t.await;
    }
    // Last changes out before the rings are dropped (which tells the persister we are done).
    exchange(&shard, &mut shard.core.borrow_mut());
    for _ in 0..1000 {
        if shard.links.borrow().backlog_len() == 0 {
            break;
        }
        shard.links.borrow_mut().flush_backlog();
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    let counters = shard.core.borrow().counters.clone();
    counters
}

/// Append every change the shards send to the store; make it durable every `interval`; once
/// every shard has stopped (their rings are abandoned), write the rest. Returns the live
/// bindings.
async fn persister_main(
    mut store: Store,
    mut links: Links,
    interval: Duration,
) -> std::io::Result<usize> {
    let mut last_sync = Instant::now();
    loop {
        let finished = links.finished();
        links.drain(|rec| store.append(rec));
        if finished {
            break;
        }
        if last_sync.elapsed() >= interval {
            if let Err(e) = store.sync(now().secs()) {
                log::error!("state: cannot write the registration log: {e}");
            }
            last_sync = Instant::now();
        }
        glommio::timer::sleep(PERSISTER_POLL.min(interval)).await;
    }
    store.sync(now().secs())?;
    Ok(store.live_bindings())
}

/// Receive, decide and send for one socket, a batch at a time; shed what waited too long.
async fn receive_loop(shard: Rc<Shard>, idx: usize, tuning: ReceiveTuning) {
    let max = shard.core.borrow().config().max_message;
    let mut batch = RecvBatch::new(max);
    let mut send = SendBatch::new();
    let mut out: Vec<(usize, Outgoing)> = Vec::with_capacity(BATCH);
    let mut group: Vec<Outgoing> = Vec::with_capacity(BATCH);
    let sock = &shard.sockets[idx];
    let fd = sock.as_raw_fd();
    let mut seq: u64 = 0;
    // The socket's drop counter as last seen (it is cumulative).
    let mut kernel_drops: u32 = 0;
    let mut coalescer = Coalescer::new(tuning.coalesce, BATCH, Instant::now());
    // Whether datagrams are probably queued: then one recvmmsg takes a whole batch, and
    // the receive that parks (and, when it finds nothing, costs a failed system call before
    // the io_uring one) is skipped.
    let mut queued = false;
    loop {
        let mut count = if queued { batch.recv_more(fd, 0) } else { 0 };
        if count == 0 {
            // Park until something arrives, then take what else is already queued in one call.
            let first = batch.bufs[0].receive_slot();
            let (n, src) = match sock.recv_from(first).await {
                Ok(x) => x,
                Err(e) => {
                    log::debug!("receive error on socket {idx}: {e}");
                    continue;
                }
            };
            batch.bufs[0].set_received(n);
            batch.srcs[0] = Some(src);
            // glommio's receive carries no timestamp; after a park, this one is fresh anyway.
            batch.arrived_ns[0] = None;
            count = 1 + batch.recv_more(fd, 1);
        }
        // One clock read per batch: the core's time and the shedding decision's.
        let now_ns = wall_clock_ns();
        let now = now_from_ns(now_ns);
        {
            let mut core = shard.core.borrow_mut();
            if let Some(total) = batch.kernel_drops.take() {
                let new = total.wrapping_sub(kernel_drops);
                kernel_drops = total;
                core.counters.drops[DropReason::QueueFull as usize] += u64::from(new);
            }
            // Changes other shards made before these datagrams arrived apply first: a request
            // sent after another shard's 200 OK to a REGISTER finds the binding.
            shard
                .links
                .borrow_mut()
                .drain(|rec| core.apply_replica(rec));
            apply_hop_states(&shard, &mut core);
            for i in 0..count {
                let Some(src) = batch.srcs[i].take() else {
                    continue;
                };
                let arrived = batch.arrived_ns[i];
                if tuning
                    .shedder
                    .should_shed(arrived, now_ns, batch.bufs[i].as_slice())
                {
                    core.counters.datagrams_received += 1;
                    core.counters.drops[DropReason::Overload as usize] += 1;
                    continue;
                }
                seq += 1;
                let sample = (seq & (LATENCY_SAMPLE - 1) == 0).then(Instant::now);
                let action = core.handle(now, src, idx, &mut batch.bufs[i]);
                if let Some(t0) = sample {
                    shard
                        .latency
                        .borrow_mut()
                        .record(t0.elapsed().as_nanos() as u64);
                }
                match action {
                    Action::Forward { to, socket } | Action::Reply { to, socket } => {
                        out.push((socket, Outgoing { buf: i, to }))
                    }
                    Action::Drop(_) => {}
                }
            }
            exchange(&shard, &mut core);
        }
        // One sendmmsg per outgoing socket (nearly always just this one).
        while !out.is_empty() {
            let s = out[0].0;
            group.clear();
            group.extend(out.iter().filter(|(k, _)| *k == s).map(|(_, o)| *o));
            out.retain(|(k, _)| *k != s);
            let (sent, failed) = send_all(&shard.sockets[s], &mut send, &batch.bufs, &group).await;
            let mut core = shard.core.borrow_mut();
            core.counters.datagrams_sent += sent;
            core.counters.drops[DropReason::SendFailed as usize] += failed;
        }
        // Under sustained load every receive above finds data and completes at once, so this
        // loop would never give the executor back: replication, housekeeping and shutdown
        // would wait for the load to stop. Let them run when glommio's preemption timer says
        // it is their turn (a flag check otherwise).
        glommio::yield_if_needed().await;
        let full = count == BATCH;
        queued = full;
        if let Some(wait) = coalescer.after_batch(count, full, Instant::now()) {
            glommio::timer::sleep(wait).await;
            queued = true;
        }
    }
}

/// Send every datagram in `group`; returns (sent, failed).
async fn send_all(
    sock: &UdpSocket,
    send: &mut SendBatch,
    bufs: &[crate::sip::PacketBuf],
    group: &[Outgoing],
) -> (u64, u64) {
    let (mut sent, mut failed) = (0u64, 0u64);
    let mut off = 0;
    while off < group.len() {
        match send.send(sock.as_raw_fd(), bufs, &group[off..]) {
            Ok(k) if k > 0 => {
                off += k;
                sent += k as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // The socket buffer is full: wait for room for this one, then batch again.
                let o = group[off];
                match sock.send_to(bufs[o.buf].as_slice(), o.to).await {
                    Ok(_) => sent += 1,
                    Err(_) => failed += 1,
                }
                off += 1;
            }
            _ => {
                // An error for this destination (e.g. unreachable): skip it, keep the rest.
                failed += 1;
                off += 1;
            }
        }
    }
    (sent, failed)
}

/// Send this shard's location changes to every other peer and apply theirs.
fn exchange(shard: &Shard, core: &mut Core) {
    let mut links = shard.links.borrow_mut();
    links.flush_backlog();
    for rec in core.take_replication() {
        links.send(rec);
    }
    links.drain(|rec| core.apply_replica(rec));
}

/// The users and aliases files, with HA1s precomputed for the realm (once, not per request).
fn load_users(
    users: &std::path::Path,
    aliases: Option<&std::path::Path>,
    realm: &str,
) -> Result<UserDb, crate::auth::LoadError> {
    UserDb::load(users, aliases).map(|db| db.for_realm(realm.as_bytes()))
}

/// Apply the next-hop changes the prober published (one acquire load when there are none).
fn apply_hop_states(shard: &Shard, core: &mut Core) {
    if let Some(rx) = &shard.health {
        let mut rx = rx.borrow_mut();
        while let Ok(s) = rx.pop() {
            core.apply_hop_state(s);
        }
    }
}

/// The authenticator of `--users`, built once for every shard; `None` without `--users`.
fn build_authenticator(args: &Args) -> Result<Option<(Authenticator, AuthMode)>, String> {
    let Some(path) = &args.users else {
        return Ok(None);
    };
    let realm = args
        .auth_realm()
        .ok_or("--users needs a --realm (or a --domain to take it from)")?;
    let users = load_users(path, args.aliases.as_deref(), realm).map_err(|e| e.to_string())?;
    let secret = match &args.auth_secret {
        Some(s) => s.0.clone(),
        None => random_secret()
            .map_err(|e| format!("cannot draw a random --auth-secret: {e}"))?
            .to_vec(),
    };
    let mut config = AuthConfig::new(realm, secret);
    config.nonce_ttl = args.nonce_ttl;
    config.bind_ip = args.nonce_bind_ip;
    let users_len = users.len();
    let authn = Authenticator::new(config, Arc::new(users)).map_err(|e| format!("--realm: {e}"))?;
    log::info!(
        "digest authentication ({:?}) in realm {realm:?}: {users_len} user(s) from {}, nonce \
         lifetime {} s{}{}",
        args.auth_mode,
        path.display(),
        args.nonce_ttl,
        if args.nonce_bind_ip {
            ", bound to the client address"
        } else {
            ""
        },
        if args.auth_secret.is_none() {
            ", per-start random secret"
        } else {
            ""
        },
    );
    Ok(Some((authn, args.auth_mode)))
}

/// A random start for a shard's nonce salt sequence (the clock if the OS has no randomness).
fn salt_seed() -> u64 {
    match random_secret() {
        Ok(r) => u64::from_le_bytes(r[..8].try_into().expect("8 bytes")),
        Err(_) => now().unix_ms ^ u64::from(std::process::id()) << 40,
    }
}

/// The SIGHUP handler thread: reloads the users file and hands the result to every shard.
struct Reloader {
    handle: signal_hook::iterator::Handle,
    thread: std::thread::JoinHandle<()>,
}

impl Reloader {
    fn start(args: &Args, shards: Vec<mpsc::Sender<Arc<UserDb>>>) -> Result<Reloader, String> {
        let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])
            .map_err(|e| format!("cannot handle SIGHUP: {e}"))?;
        let handle = signals.handle();
        let users = args.users.clone();
        let aliases = args.aliases.clone();
        let realm = args.auth_realm().unwrap_or_default().to_owned();
        let thread = std::thread::Builder::new()
            .name("reload".into())
            .spawn(move || {
                for _ in signals.forever() {
                    let Some(path) = &users else {
                        log::warn!("SIGHUP: nothing to reload (no --users)");
                        continue;
                    };
                    match load_users(path, aliases.as_deref(), &realm) {
                        Ok(db) => {
                            let db = Arc::new(db);
                            for tx in &shards {
                                let _ = tx.send(Arc::clone(&db));
                            }
                            log::info!(
                                "SIGHUP: reloaded {} user(s) from {}",
                                db.len(),
                                path.display()
                            );
                        }
                        Err(e) => log::error!("SIGHUP: {e}; keeping the previous users"),
                    }
                }
            })
            .map_err(|e| format!("cannot start the reload thread: {e}"))?;
        Ok(Reloader { handle, thread })
    }

    fn stop(self) {
        self.handle.close();
        let _ = self.thread.join();
    }
}
