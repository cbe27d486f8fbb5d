//! The runtime: one glommio executor per shard, pinned to its CPU, each with its own
//! SO_REUSEPORT socket per listen address, its own buffers and its own copy of the location
//! table. Shards talk only through the ring mesh built at start-up (location changes);
//! nothing on the packet path is shared between cores.
//!
//! [`run`] reads as the node's life: bind every socket, complete the proxy's identity, load
//! the state, start the side threads (metrics, SIGHUP reload, prober, persister), spawn the
//! shards, wait for SIGINT/SIGTERM and join them. This module and the transports are the only
//! code that touches sockets, executors, signals and clocks.

pub mod capture;
pub mod capture_stream;
pub mod clock;
pub mod limits;
pub mod message_log;
pub mod persister;
pub mod probe_stream;
pub mod prober;
pub mod reload;
pub mod settings;
pub mod shard;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::mpsc;
use std::sync::Arc;

use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use crate::admin::{self, NodeState};
use crate::cluster::{self, ClusterSettings, Origin};
use crate::counters::{Counters, DropReason};
use crate::identity::LocalIdentity;
use crate::location::LocationTable;
use crate::metrics::{self, ClusterStats, Published};
use crate::persist::Store;
use crate::proxy::next_hop::HopState;
use crate::proxy::ProxyConfig;
use crate::replication::{self, Links};
use crate::sip::Transport;
use crate::transport::shed::Shedder;
use crate::transport::socket;
use crate::transport::tcp::handoff;
use crate::transport::tls::TlsContext;
use crate::transport::udp::ReceiveTuning;
use prober::Prober;
use reload::{ReloadJob, Reloader};
pub use settings::Settings;
use settings::{ListenSpec, SocketSettings};
use shard::ShardSetup;

/// glommio's registered I/O buffer pool per executor. Datagrams never use it (they go through
/// recvmmsg into the shard's own buffers), so it is kept small: the default 10 MiB per executor
/// exceeds an unprivileged user's usual 8 MiB memlock limit and makes glommio warn at start-up.
const IO_MEMORY: usize = 512 * 1024;

/// How long a shard's busy UDP receive loop may keep its other tasks (timers, what other
/// shards hand it, its connections under full batches) waiting: glommio's preemption timer,
/// after which the loop's `yield_if_needed` lets the executor poll its rings and run them. A
/// busy loop does not park the executor (full batches, or coalescing waits that sleep the
/// thread on a shard without connections, see `transport::coalesce`), so without this they
/// would wait for glommio's default of 100 ms. The timer is armed only while tasks run, never
/// while the executor sleeps; at 10,000 datagrams/s 5 ms measured no dearer than 100 ms.
const SHARD_PREEMPT: std::time::Duration = std::time::Duration::from_millis(5);

/// Start every shard and serve until SIGINT or SIGTERM. Returns the summed counters.
pub fn run(settings: Settings) -> Result<Counters, String> {
    limits::check_memlock()?;
    let (per_shard, bound) = bind(&settings)?;
    let cfg = proxy_config(&settings, &bound);
    log::info!(
        "{} shard(s) on CPUs {:?}, steering {:?}",
        settings.shards(),
        settings.cpus,
        settings.sockets.steering
    );
    let (store, seed) = match &settings.state {
        Some(state) => persister::open(state).map(|(s, t)| (Some(s), t))?,
        None => (None, LocationTable::new()),
    };
    let cluster_stats = settings
        .cluster
        .as_ref()
        .map(|_| Arc::new(ClusterStats::default()));
    let published = serve_metrics(&settings, cluster_stats.clone())?;
    let auth = reload::build_authenticator(settings.auth.as_ref())?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(|e| e.to_string())?;
    }
    let tls = TlsContext::new(&settings.tls)?;
    let (reload_txs, reload_rxs): (Vec<_>, Vec<_>) =
        (0..settings.shards()).map(|_| mpsc::channel()).unzip();
    let reload = ReloadJob::new(settings.auth.as_ref(), &settings.tls, reload_txs);
    let reloader = Reloader::start(reload.clone())?;
    let (prober, health_rxs) = start_prober(&settings, cfg, &tls, &stop)?;
    let hep_sockets = open_capture_sockets(&settings)?;

    // The peers of the mesh: the shards, then the admin API when served (it sends removals
    // and receives every change), then the cluster peer when there is one (it sends other
    // nodes' changes and receives every local one), then the persister when there is one (it
    // receives every change and sends nothing).
    let admin = usize::from(settings.admin.is_some());
    let senders = settings.shards() + admin + usize::from(settings.cluster.is_some());
    let mut links = replication::mesh(senders, senders + usize::from(store.is_some()));
    let persister = match store {
        Some(store) => Some(spawn_persister(
            &settings,
            store,
            links.pop().expect("its links"),
        )?),
        None => None,
    };
    let cluster = match (&settings.cluster, &cluster_stats) {
        (Some(c), Some(stats)) => Some(spawn_cluster(
            c,
            cfg,
            links.pop().expect("its links"),
            Arc::clone(stats),
            &stop,
        )?),
        _ => None,
    };
    let node = NodeState {
        shards: settings.shards(),
        serving: Arc::new(AtomicUsize::new(0)),
        stop: Arc::clone(&stop),
        cluster: cluster_stats,
    };
    if let Some(a) = &settings.admin {
        let ctx = admin::Context {
            identity: &cfg.local,
            published: published.clone(),
            reload: Box::new(move || reload.run("admin API reload")),
            node: node.clone(),
            clock: clock::now,
        };
        let bound = admin::http::serve(a, ctx, seed.clone(), links.pop().expect("its links"))
            .map_err(|e| format!("cannot serve the admin API on {}: {e}", a.addr))?;
        log::info!("admin API on http://{bound}/");
    }
    let node_connections = Arc::new(AtomicUsize::new(0));
    let handoffs = handoff::mesh(settings.shards());
    let setups = links
        .into_iter()
        .zip(handoffs)
        .zip(per_shard)
        .zip(reload_rxs.into_iter().zip(health_rxs))
        .zip(published.into_iter().zip(hep_sockets))
        .enumerate()
        .map(
            |(id, ((((links, handoff), sockets), (reload, health)), (published, hep)))| {
                ShardSetup {
                    id: id as u16,
                    cfg,
                    serving: Arc::clone(&node.serving),
                    tcp: settings.tcp,
                    tls: tls.clone(),
                    node_connections: Arc::clone(&node_connections),
                    handoff,
                    seed: seed.clone(),
                    sockets,
                    links,
                    stop: Arc::clone(&stop),
                    published,
                    auth: auth.clone(),
                    reload,
                    receive: ReceiveTuning {
                        receive: settings.receive.udp,
                        coalesce: settings.receive.coalesce,
                        shedder: Shedder::new(settings.receive.max_queue_delay_ms),
                    },
                    health,
                    capture: hep.zip(settings.hep),
                }
            },
        );
    let handles = spawn_shards(&settings, setups)?;
    let total = join_shards(&settings, handles, prober.is_some())?;
    if let Some(c) = cluster {
        c.join()
            .map_err(|_| "the cluster peer failed".to_string())?;
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

/// A shard's listen socket, bound on the main thread (so a bad address fails start-up
/// cleanly) and handed to the shard's executor.
pub enum BoundSocket {
    Udp(socket2::Socket),
    /// A TCP listener, for TCP or TLS.
    Stream(Transport, socket2::Socket),
}

/// Each shard's sockets in listener order, and the listeners as bound.
type Bound = (Vec<Vec<BoundSocket>>, Vec<(Transport, SocketAddr)>);

/// Bind every shard's sockets before any shard starts. Returns each shard's sockets, in
/// listener order, and the listeners as bound (port 0 resolved; TCP takes the port its UDP
/// twin got).
fn bind(settings: &Settings) -> Result<Bound, String> {
    let shards = settings.shards();
    let mut per_shard: Vec<Vec<BoundSocket>> = (0..shards).map(|_| Vec::new()).collect();
    let mut bound = Vec::new();
    for spec in &settings.listen {
        let exclusive = !settings.allow_shared_port;
        for (transport, addr, group) in bind_spec(spec, shards, &settings.sockets, exclusive)? {
            bound.push((transport, addr));
            for (i, s) in group.into_iter().enumerate() {
                per_shard[i].push(match transport {
                    Transport::Udp => BoundSocket::Udp(s),
                    t => BoundSocket::Stream(t, s),
                });
            }
        }
    }
    Ok((per_shard, bound))
}

/// One listener's group of sockets, by transport, with the address it got.
type Group = (Transport, SocketAddr, Vec<socket2::Socket>);

/// The groups of one `--listen`. With port 0 on both transports UDP picks the port and TCP
/// must get the same one; a port some TCP socket already holds (a client's ephemeral port) is
/// given back and another one tried.
fn bind_spec(
    spec: &ListenSpec,
    shards: usize,
    s: &SocketSettings,
    exclusive: bool,
) -> Result<Vec<Group>, String> {
    if exclusive && spec.addr.port() != 0 {
        refuse_if_served(spec)?;
    }
    let attempts = if spec.addr.port() == 0 && spec.udp && spec.tcp {
        16
    } else {
        1
    };
    let mut last_error = String::new();
    for _ in 0..attempts {
        let mut groups = Vec::new();
        let mut addr = spec.addr;
        if spec.udp {
            let group =
                socket::bind_group(addr, shards, s.rcvbuf, s.sndbuf, s.steering, s.timestamps)
                    .map_err(|e| format!("cannot listen on udp {addr}: {e}"))?;
            addr = local_addr(&group[0]).unwrap_or(addr);
            groups.push((Transport::Udp, addr, group));
        }
        if spec.tcp || spec.tls {
            let transport = if spec.tls {
                Transport::Tls
            } else {
                Transport::Tcp
            };
            match socket::bind_tcp_group(addr, shards) {
                Ok(group) => {
                    addr = local_addr(&group[0]).unwrap_or(addr);
                    groups.push((transport, addr, group));
                }
                Err(e) => {
                    last_error = format!("cannot listen on {} {addr}: {e}", transport.name());
                    continue;
                }
            }
        }
        return Ok(groups);
    }
    Err(last_error)
}

/// Stop when another process already serves one of the listener's addresses (see
/// [`socket::probe_unshared`]).
fn refuse_if_served(spec: &ListenSpec) -> Result<(), String> {
    let checks = [
        (spec.udp, true, "udp"),
        (
            spec.tcp || spec.tls,
            false,
            if spec.tls { "tls" } else { "tcp" },
        ),
    ];
    for (_, datagram, name) in checks.into_iter().filter(|c| c.0) {
        if let Err(e) = probe_patiently(spec.addr, datagram) {
            let kind = if datagram { "-u" } else { "-t" };
            return Err(format!(
                "cannot listen on {name} {}: {e}; another process serves it (another sipshard? \
                 `ss -lnp {kind} 'sport = :{}'` shows which); stop it, or give \
                 --allow-shared-port to share its traffic deliberately",
                spec.addr,
                spec.addr.port()
            ));
        }
    }
    Ok(())
}

/// How long a served address is probed again before start-up gives up: the sockets of an
/// instance that was just killed (a restart after a crash) outlive it briefly, held by its
/// io_uring rings until the kernel tears them down after the exit. A running instance holds
/// them for good.
const PROBE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(3);

/// [`socket::probe_unshared`], again every 50 ms for up to [`PROBE_PATIENCE`].
fn probe_patiently(addr: SocketAddr, datagram: bool) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + PROBE_PATIENCE;
    loop {
        match socket::probe_unshared(addr, datagram) {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            result => return result,
        }
    }
}

fn local_addr(s: &socket2::Socket) -> Option<SocketAddr> {
    s.local_addr().ok().and_then(|a| a.as_socket())
}

/// The proxy's configuration with its identity completed from the bound listeners; shared
/// read-only by every shard for the life of the process.
fn proxy_config(settings: &Settings, bound: &[(Transport, SocketAddr)]) -> &'static ProxyConfig {
    let mut cfg = settings.proxy.clone();
    cfg.local = LocalIdentity::new(
        bound,
        &socket::interface_addresses(),
        socket::host_name().as_deref(),
        &settings.domains,
        settings.advertise.as_deref(),
    );
    for l in &cfg.local.listen {
        log::info!(
            "listening on {} {} (advertised as {})",
            l.transport.name(),
            l.bound,
            l.advertised
        );
    }
    Box::leak(Box::new(cfg))
}

/// One publication block per shard, served on `--metrics` when asked for (with the cluster
/// peer's figures when there is one).
fn serve_metrics(
    settings: &Settings,
    cluster: Option<Arc<ClusterStats>>,
) -> Result<Vec<Arc<Published>>, String> {
    let published: Vec<Arc<Published>> = (0..settings.shards())
        .map(|_| Arc::new(Published::default()))
        .collect();
    if let Some(addr) = settings.metrics {
        let bound = metrics::serve(addr, published.clone(), cluster)
            .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
        log::info!("metrics on http://{bound}/metrics");
    }
    Ok(published)
}

/// Each shard's socket to the HEP collector (`--hep`), all opened before any shard starts.
fn open_capture_sockets(settings: &Settings) -> Result<Vec<Option<capture::Endpoint>>, String> {
    let Some(hep) = settings.hep else {
        return Ok((0..settings.shards()).map(|_| None).collect());
    };
    log::info!(
        "SIP capture to {}:{} ({} % of calls, capture id {})",
        hep.transport.name(),
        hep.collector,
        hep.percent,
        hep.capture_id
    );
    (0..settings.shards())
        .map(|_| capture::open(&hep).map(Some))
        .collect::<Result<_, _>>()
        .map_err(|e| {
            format!(
                "cannot open a socket to the HEP collector {}: {e}",
                hep.collector
            )
        })
}

/// A shard's end of the prober's ring of next-hop changes.
type HealthRx = Option<rtrb::Consumer<HopState>>;

/// The next-hop prober, when `--probe-interval` is given and there are routes to probe; one
/// health ring per shard (`None` without a prober).
fn start_prober(
    settings: &Settings,
    cfg: &'static ProxyConfig,
    tls: &TlsContext,
    stop: &Arc<AtomicBool>,
) -> Result<(Option<Prober>, Vec<HealthRx>), String> {
    let shards = settings.shards();
    let none = || (0..shards).map(|_| None).collect();
    match settings.probe {
        Some(p) if !cfg.routes.is_empty() => {
            let (prober, rxs) = Prober::start(
                cfg,
                tls.clone(),
                p.interval,
                p.failures,
                shards,
                Arc::clone(stop),
            )?;
            Ok((Some(prober), rxs.into_iter().map(Some).collect()))
        }
        Some(_) => {
            log::warn!("--probe-interval without --route: there are no next hops to probe");
            Ok((None, none()))
        }
        None => Ok((None, none())),
    }
}

fn spawn_persister(
    settings: &Settings,
    store: Store,
    links: Links,
) -> Result<ExecutorJoinHandle<std::io::Result<usize>>, String> {
    let interval = settings
        .state
        .as_ref()
        .map(|s| s.fsync_interval)
        .unwrap_or_default();
    LocalExecutorBuilder::new(Placement::Unbound)
        .name("persister")
        .io_memory(IO_MEMORY)
        .spawn(move || persister::run(store, links, interval))
        .map_err(|e| format!("cannot start the persister: {e}"))
}

/// The cluster peer (`--redis`): a thread of its own; other nodes reach bindings only this node
/// can reach through its first UDP listener (else its first listener), as advertised.
fn spawn_cluster(
    settings: &ClusterSettings,
    cfg: &ProxyConfig,
    links: Links,
    stats: Arc<ClusterStats>,
    stop: &Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, String> {
    let listen = &cfg.local.listen;
    let via = listen
        .iter()
        .find(|l| l.transport == Transport::Udp)
        .or(listen.first())
        .ok_or("--redis: no listener for other nodes to reach this one by")?;
    log::info!(
        "cluster: node {} on {}, sharing its table through Redis",
        settings.node_id,
        via.advertised
    );
    cluster::peer::spawn(cluster::peer::Setup {
        settings: settings.clone(),
        links,
        origin: Origin {
            addr: via.advertised.clone(),
            transport: via.transport,
            flow_key: cfg.flow_key.clone(),
        },
        stats,
        stop: Arc::clone(stop),
        clock: clock::now,
    })
    .map_err(|e| format!("cannot start the cluster peer: {e}"))
}

fn spawn_shards(
    settings: &Settings,
    setups: impl Iterator<Item = ShardSetup>,
) -> Result<Vec<ExecutorJoinHandle<Counters>>, String> {
    let mut handles = Vec::new();
    for (id, setup) in setups.enumerate() {
        let cpu = settings.cpus[id];
        let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("shard{id}"))
            .io_memory(IO_MEMORY)
            .preempt_timer(SHARD_PREEMPT)
            .spawn(move || shard::run(setup))
            .map_err(|e| format!("cannot start shard {id} on CPU {cpu}: {e}"))?;
        handles.push(handle);
    }
    Ok(handles)
}

/// Wait for every shard to stop, log each one's summary, and sum their counters.
fn join_shards(
    settings: &Settings,
    handles: Vec<ExecutorJoinHandle<Counters>>,
    probing: bool,
) -> Result<Counters, String> {
    let mut total = Counters::default();
    for (id, h) in handles.into_iter().enumerate() {
        let c = h.join().map_err(|e| format!("shard {id} failed: {e}"))?;
        log_shard_summary(settings, id, &c, probing);
        total.add(&c);
    }
    Ok(total)
}

fn log_shard_summary(settings: &Settings, id: usize, c: &Counters, probing: bool) {
    log::info!(
        "shard {id}: {}",
        metrics::log_line(metrics::Line::Traffic, c)
    );
    let shed = c.drops[DropReason::Overload as usize];
    let queue_full = c.drops[DropReason::QueueFull as usize];
    if shed + queue_full > 0 {
        log::warn!(
            "shard {id}: overloaded: {shed} shed after waiting over {} ms, \
             {queue_full} dropped by the kernel (receive queue full)",
            settings.receive.max_queue_delay_ms
        );
    }
    if settings.auth.is_some() {
        log::info!("shard {id}: {}", metrics::log_line(metrics::Line::Auth, c));
    }
    if probing {
        log::info!(
            "shard {id}: {}",
            metrics::log_line(metrics::Line::NextHops, c)
        );
    }
}
