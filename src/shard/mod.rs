//! The runtime: one glommio executor per shard, pinned to its CPU, each with its own
//! SO_REUSEPORT socket per listen address, its own buffers and its own copy of the location
//! table. Shards talk only through the channel mesh built at start-up (location changes);
//! nothing on the packet path is shared between cores.
//!
//! This is the only module that touches sockets, executors, signals and clocks.

pub mod batch;
pub mod coalesce;
pub mod socket;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use glommio::channels::channel_mesh::{Full, MeshBuilder, Senders};
use glommio::net::UdpSocket;
use glommio::{LocalExecutorBuilder, Placement};

use crate::config::Args;
use crate::metrics::{Counters, DropReason};
use crate::proxy::local::LocalIdentity;
use crate::proxy::{Action, Core, Now, ProxyConfig};
use crate::registrar::table::BindingRecord;
use crate::registrar::RegistrarConfig;
use batch::{Outgoing, RecvBatch, SendBatch, BATCH};
use coalesce::Coalescer;

/// Depth of each shard-to-shard channel (location changes in flight per pair of shards).
const MESH_CHANNEL_DEPTH: usize = 8192;
/// How often a shard checks for shutdown and purges expired bindings.
const HOUSEKEEPING_TICK: Duration = Duration::from_millis(200);
const PURGE_EVERY_TICKS: u32 = 5;

/// The wall clock as the core wants it.
pub fn now() -> Now {
    Now {
        unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
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
        let group = socket::bind_group(*addr, shards, args.rcvbuf, args.sndbuf, args.steering)
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
    let identity = LocalIdentity::new(
        &bound,
        &socket::interface_addresses(),
        socket::host_name().as_deref(),
        &args.domains,
        args.advertise.as_deref(),
    );
    let cfg: &'static ProxyConfig = Box::leak(Box::new(ProxyConfig {
        local: identity,
        routes: args.routes.clone(),
        record_route: args.record_route,
        registrar: RegistrarConfig {
            default_expires: args.default_expires,
            min_expires: args.min_expires,
            max_expires: args.max_expires,
        },
        max_message: args.max_message,
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

    let coalesce = Duration::from_micros(args.rx_coalesce_us as u64);
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(|e| e.to_string())?;
    }

    let mesh: MeshBuilder<BindingRecord, Full> = MeshBuilder::full(shards, MESH_CHANNEL_DEPTH);
    let mut handles = Vec::new();
    for (id, sockets) in per_shard.into_iter().enumerate() {
        let mesh = mesh.clone();
        let stop = Arc::clone(&stop);
        let handle = LocalExecutorBuilder::new(Placement::Fixed(cpus[id]))
            .name(&format!("shard{id}"))
            .spawn(move || shard_main(cfg, sockets, mesh, stop, coalesce))
            .map_err(|e| format!("cannot start shard {id} on CPU {}: {e}", cpus[id]))?;
        handles.push(handle);
    }
    let mut total = Counters::default();
    for (id, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(c) => {
                log::info!(
                    "shard {id}: {} received, {} sent, {} replies, {} dropped",
                    c.datagrams_received,
                    c.datagrams_sent,
                    c.replies.iter().sum::<u64>(),
                    c.drops.iter().sum::<u64>()
                );
                total.add(&c);
            }
            Err(e) => return Err(format!("shard {id} failed: {e}")),
        }
    }
    Ok(total)
}

/// Everything one shard's tasks share (single-threaded: `Rc`, never a lock).
struct Shard {
    core: RefCell<Core>,
    sockets: Vec<UdpSocket>,
    peers: Senders<BindingRecord>,
}

async fn shard_main(
    cfg: &'static ProxyConfig,
    sockets: Vec<socket2::Socket>,
    mesh: MeshBuilder<BindingRecord, Full>,
    stop: Arc<AtomicBool>,
    coalesce: Duration,
) -> Counters {
    let (peers, mut receivers) = match mesh.join().await {
        Ok(x) => x,
        Err(_) => {
            log::error!("shard could not join the channel mesh");
            return Counters::default();
        }
    };
    let shard = Rc::new(Shard {
        core: RefCell::new(Core::new(cfg)),
        // glommio links socket2 0.4; hand it the descriptor (ownership moves with it).
        // SAFETY: `into_raw_fd` releases the descriptor, which the UdpSocket now owns alone.
        sockets: sockets
            .into_iter()
            .map(|s| unsafe { UdpSocket::from_raw_fd(s.into_raw_fd()) })
            .collect(),
        peers,
    });
    let mut tasks = Vec::new();
    for (_, stream) in receivers.streams() {
        let shard = Rc::clone(&shard);
        tasks.push(
            glommio::spawn_local(async move {
                while let Some(rec) = stream.recv().await {
                    shard.core.borrow_mut().apply_replica(&rec);
                }
            })
            .detach(),
        );
    }
    for idx in 0..shard.sockets.len() {
        tasks.push(glommio::spawn_local(receive_loop(Rc::clone(&shard), idx, coalesce)).detach());
    }
    let mut ticks = 0u32;
    while !stop.load(Ordering::Relaxed) {
        glommio::timer::sleep(HOUSEKEEPING_TICK).await;
        ticks += 1;
        if ticks % PURGE_EVERY_TICKS == 0 {
            shard.core.borrow_mut().purge(now());
        }
    }
    for t in &tasks {
        t.cancel();
    }
    for t in tasks {
        let _ = t.await;
    }
    shard.peers.close();
    let counters = shard.core.borrow().counters.clone();
    counters
}

/// Receive, decide and send for one socket, a batch at a time.
///
/// `coalesce`: how long to wait after a partial batch when datagrams arrive at a rate that
/// makes waiting pay (see [`coalesce`]); zero never waits.
async fn receive_loop(shard: Rc<Shard>, idx: usize, coalesce: Duration) {
    let max = shard.core.borrow().config().max_message;
    let mut batch = RecvBatch::new(max);
    let mut send = SendBatch::new();
    let mut out: Vec<(usize, Outgoing)> = Vec::with_capacity(BATCH);
    let mut group: Vec<Outgoing> = Vec::with_capacity(BATCH);
    let sock = &shard.sockets[idx];
    let fd = sock.as_raw_fd();
    let mut coalescer = Coalescer::new(coalesce, BATCH, Instant::now());
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
            count = 1 + batch.recv_more(fd, 1);
        }
        let now = now();
        {
            let mut core = shard.core.borrow_mut();
            for i in 0..count {
                let Some(src) = batch.srcs[i].take() else {
                    continue;
                };
                match core.handle(now, src, idx, &mut batch.bufs[i]) {
                    Action::Forward { to, socket } | Action::Reply { to, socket } => {
                        out.push((socket, Outgoing { buf: i, to }))
                    }
                    Action::Drop(_) => {}
                }
            }
            replicate(&shard, &mut core);
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

/// Send this shard's location changes to every other shard.
fn replicate(shard: &Rc<Shard>, core: &mut Core) {
    let me = shard.peers.peer_id();
    let n = shard.peers.nr_consumers();
    for rec in core.take_replication() {
        for peer in (0..n).filter(|&p| p != me) {
            if shard.peers.try_send_to(peer, rec.clone()).is_err() {
                // The channel is full: wait for room in the background rather than drop it.
                let shard = Rc::clone(shard);
                let rec = rec.clone();
                glommio::spawn_local(async move {
                    let _ = shard.peers.send_to(peer, rec).await;
                })
                .detach();
            }
        }
    }
}

/// Listen addresses as bound (for tests and logs).
pub fn describe(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
