//! The engine: binds the sockets, starts one worker thread per `--threads` (pinned with
//! `--cpus`), a reporter thread for the live line and CSV, and merges what the workers measured.
//!
//! Plain std threads, non-blocking sockets and an epoll wait per worker: the workers share no
//! locks on the hot path, so adding threads adds throughput until the cores run out.

pub mod handshakes;
pub mod io;
pub mod pacer;
pub mod stream;
pub mod timers;
pub mod tls;
pub mod worker;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hdrhistogram::Histogram;

use crate::config::Config;
use crate::report::Live;
use crate::stats::{new_hist, Counters, Stats};

/// What a worker publishes once a second for the live report.
pub struct Snapshot {
    pub main: Histogram<u64>,
    pub lag: Histogram<u64>,
    pub rx_lag: Histogram<u64>,
    pub counters: Counters,
}

/// The little that workers share: phase changes, the stop flag and the snapshots.
pub struct Shared {
    /// Origin of every worker's clock.
    pub base: Instant,
    /// Set by SIGINT/SIGTERM: stop scheduling, finish what is in flight.
    pub stop: Arc<AtomicBool>,
    abort: AtomicBool,
    error: Mutex<Option<String>>,
    /// Workers whose users are registered.
    pub registered: AtomicUsize,
    /// Start of the main phase on the common clock (0 until known).
    pub main_start: AtomicU64,
    /// Workers still starting or finishing attempts.
    pub clients_active: AtomicUsize,
    pub workers_done: AtomicUsize,
    pub snapshots: Vec<Mutex<Snapshot>>,
}

impl Shared {
    pub fn new(cfg: &Config, stop: Arc<AtomicBool>) -> Shared {
        Shared {
            base: Instant::now(),
            stop,
            abort: AtomicBool::new(false),
            error: Mutex::new(None),
            registered: AtomicUsize::new(0),
            main_start: AtomicU64::new(0),
            clients_active: AtomicUsize::new(if cfg.has_client() { cfg.threads } else { 0 }),
            workers_done: AtomicUsize::new(0),
            snapshots: (0..cfg.threads)
                .map(|_| {
                    Mutex::new(Snapshot {
                        main: new_hist(),
                        lag: new_hist(),
                        rx_lag: new_hist(),
                        counters: Counters::default(),
                    })
                })
                .collect(),
        }
    }

    pub fn abort_with(&self, msg: String) {
        let mut e = self.error.lock().unwrap();
        if e.is_none() {
            *e = Some(msg);
        }
        self.abort.store(true, Ordering::Release);
    }

    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    pub fn set_start(&self, t: u64) {
        let _ = self
            .main_start
            .compare_exchange(0, t.max(1), Ordering::AcqRel, Ordering::Acquire);
    }

    pub fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

/// The outcome of one run.
pub struct RunOutput {
    pub stats: Stats,
    /// Seconds from the first scheduled attempt to the last attempt actually started (at least
    /// the scheduled duration): the denominator of the achieved rate.
    pub send_secs: f64,
    /// Seconds from the main phase's start to the end of the drain.
    pub wall_secs: f64,
    /// Seconds spent opening the connections before the run (their TLS handshakes included).
    pub open_secs: f64,
    /// Ports each worker's sockets were bound to (the rate search binds the same ones again).
    pub ports: Vec<Vec<u16>>,
    /// Why the run stopped early, if it did.
    pub error: Option<String>,
}

fn nonce_for(worker: usize) -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x =
        t ^ ((std::process::id() as u64) << 32) ^ ((worker as u64 + 1) * 0x9e3779b97f4a7c15);
    // splitmix64 finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d049bb133111eb);
    x ^= x >> 31;
    (x as u32).max(1)
}

/// Start `work` on worker thread `w`, pinned as `--cpus` asks.
fn spawn_worker<T: Send + 'static>(
    cfg: &Config,
    w: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<std::thread::JoinHandle<T>, String> {
    let cpu = cfg.cpus.as_ref().map(|c| c[w % c.len()]);
    std::thread::Builder::new()
        .name(format!("worker-{w}"))
        .spawn(move || {
            if let Some(id) = cpu {
                if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
                    eprintln!("warning: could not pin worker {w} to CPU {id}");
                }
            }
            work()
        })
        .map_err(|e| e.to_string())
}

/// Run one scenario to completion (or, with `--tls-handshakes-only`, the handshake loop).
pub fn run(cfg: &Config, stop: Arc<AtomicBool>) -> Result<RunOutput, String> {
    if let Some(tls) = cfg.tls.as_ref().filter(|t| t.handshakes_only) {
        return handshakes::run(cfg, tls, stop);
    }
    let cfg = Arc::new(cfg.clone());
    let mut ios = Vec::with_capacity(cfg.threads);
    let opening = Instant::now();
    for w in 0..cfg.threads {
        let ports = &cfg.fixed_ports[w];
        let io = io::Io::open(
            cfg.transport,
            cfg.local_ip,
            ports,
            cfg.target,
            cfg.tls.as_ref(),
        );
        ios.push(io.map_err(|e| e.to_string())?);
    }
    let open_secs = opening.elapsed().as_secs_f64();
    let ports: Vec<Vec<u16>> = ios
        .iter()
        .map(|io| io.socks.iter().map(|s| s.local.port()).collect())
        .collect();
    let shared = Arc::new(Shared::new(&cfg, stop));
    if !cfg.registers_first() {
        shared.set_start(shared.now() + 20_000_000);
    }
    let reporter = {
        let (cfg, shared) = (cfg.clone(), shared.clone());
        std::thread::Builder::new()
            .name("report".into())
            .spawn(move || Live::new(&cfg).run(&cfg, &shared))
            .map_err(|e| e.to_string())?
    };
    let mut handles = Vec::with_capacity(cfg.threads);
    for (w, io) in ios.into_iter().enumerate() {
        let (c, shared) = (cfg.clone(), shared.clone());
        let h = spawn_worker(&cfg, w, move || {
            let core = worker::Core::new(w, c, shared.clone(), io, nonce_for(w));
            let stats = core.run();
            shared.workers_done.fetch_add(1, Ordering::AcqRel);
            stats
        })?;
        handles.push(h);
    }
    let mut stats = Stats::default();
    for h in handles {
        match h.join() {
            Ok(s) => stats.add(&s),
            Err(_) => shared.abort_with("a worker thread panicked".into()),
        }
    }
    let end = shared.now();
    let _ = reporter.join();
    let start = shared.main_start.load(Ordering::Acquire);
    let wall_secs = end.saturating_sub(start) as f64 / 1e9;
    let last = stats.last_start.saturating_sub(start) as f64 / 1e9;
    // Stopped early (SIGINT): the schedule ended with the last attempt actually sent.
    let planned = if shared.stop.load(Ordering::Relaxed) {
        0.0
    } else {
        cfg.duration_ns as f64 / 1e9
    };
    let send_secs = planned.max(last);
    let error = shared.error.lock().unwrap().take();
    Ok(RunOutput {
        stats,
        send_secs,
        wall_secs,
        open_secs,
        ports,
        error,
    })
}
