//! `--tls-handshakes-only`: how many TLS handshakes a second the target completes. Each worker
//! keeps its share of `--connections` slots busy, closed loop: a slot opens a connection from
//! any free port, does the handshake, sends a keep-alive ping behind it and waits for the pong
//! (so the server has accepted the handshake and its session tickets are in; see `tls.rs`),
//! closes the connection and starts the next one at once, until `--duration` is over.
//!
//! Every connection uses the run's one client configuration, so from the second handshake on
//! a slot resumes with a ticket an earlier one received; `--tls-no-resume` turns the cache off
//! and every handshake is full. Nothing else is sent: this measures handshakes, not SIP.
//!
//! The sockets are non-blocking and watched edge-triggered (each readiness is drained until
//! the socket would block), so one thread drives many handshakes at once and waits for none.
//! Connections are reset rather than left in TIME_WAIT when they close (linger 0, after a
//! close_notify): thousands a second would otherwise run out of local ports within seconds.

use std::io::{self, ErrorKind};
use std::mem;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use rustls::ClientConnection;
use socket2::{Domain, Protocol, Socket, Type};

use super::tls::{self, Pulled};
use super::{spawn_worker, RunOutput, Shared};
use crate::config::Config;
use crate::report::Live;
use crate::stats::{new_hist, record_ns, Cause, Stats};
use crate::tls::Tls;

/// A handshake (connect to pong) not done by then fails.
const HANDSHAKE_TIMEOUT_NS: u64 = 5_000_000_000;
/// How long a slot rests after a failure before it connects again, so a target that refuses
/// connections is not hammered in a tight loop.
const RETRY_NS: u64 = 10_000_000;
/// Longest wait for readiness: timeouts, retries and the live report are looked at this often.
const WAIT_MS: u64 = 10;
/// Records read per readiness, at most: a handshake needs a handful; a target that keeps
/// sending on a connection that should be quiet fails it.
const MAX_READS: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No connection; the next one opens at this time.
    Idle {
        at: u64,
    },
    /// TCP connect in progress.
    Connecting,
    Handshaking,
    /// Handshake done, ping sent.
    AwaitPong {
        resumed: bool,
    },
}

struct Slot {
    state: State,
    tcp: Option<TcpStream>,
    conn: Option<ClientConnection>,
    /// When the TCP connect began (run clock).
    started: u64,
    /// Plaintext received while waiting for the pong.
    got: Vec<u8>,
}

struct Worker {
    shared: Arc<Shared>,
    tls: Tls,
    target: SocketAddr,
    local_ip: IpAddr,
    epfd: RawFd,
    slots: Vec<Slot>,
    stats: Stats,
    /// Handshake times of the current second, for the live line.
    interval: Histogram<u64>,
    now: u64,
}

/// CPU time of the calling thread, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A non-blocking connect from any free port of `local_ip` to `target`, Nagle off, reset on
/// close.
fn connect(local_ip: IpAddr, target: SocketAddr) -> io::Result<TcpStream> {
    let s = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    s.set_nonblocking(true)?;
    s.set_nodelay(true)?;
    s.set_linger(Some(Duration::ZERO))?;
    s.bind(&SocketAddr::new(local_ip, 0).into())?;
    match s.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(s.into())
}

impl Worker {
    fn new(shared: Arc<Shared>, cfg: &Config, tls: Tls, slots: usize) -> io::Result<Worker> {
        // SAFETY: plain syscall.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epfd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Worker {
            shared,
            tls,
            target: cfg.target.ok_or_else(|| io::Error::other("no target"))?,
            local_ip: cfg.local_ip,
            epfd,
            slots: (0..slots)
                .map(|_| Slot {
                    state: State::Idle { at: 0 },
                    tcp: None,
                    conn: None,
                    started: 0,
                    got: Vec::with_capacity(8),
                })
                .collect(),
            stats: Stats::default(),
            interval: new_hist(),
            now: 0,
        })
    }

    /// Start slot `i`'s next connection.
    fn open(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        slot.started = self.now;
        slot.got.clear();
        let opened = connect(self.local_ip, self.target).and_then(|tcp| {
            let mut ev = libc::epoll_event {
                events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
                u64: i as u64,
            };
            // SAFETY: valid epoll fd and socket fd.
            if unsafe { libc::epoll_ctl(self.epfd, libc::EPOLL_CTL_ADD, tcp.as_raw_fd(), &mut ev) }
                != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok((tcp, tls::session(&self.tls)?))
        });
        match opened {
            Ok((tcp, conn)) => {
                slot.tcp = Some(tcp);
                slot.conn = Some(conn);
                slot.state = State::Connecting;
            }
            Err(e) => self.fail(i, &e),
        }
    }

    /// Close slot `i`'s connection (the socket leaves the epoll set as it is closed).
    fn close(&mut self, i: usize, rest_ns: u64) {
        let slot = &mut self.slots[i];
        if let (Some(conn), Some(tcp)) = (slot.conn.as_mut(), slot.tcp.as_mut()) {
            if !matches!(slot.state, State::Connecting) {
                conn.send_close_notify();
                let _ = tls::push(conn, tcp);
            }
        }
        slot.conn = None;
        slot.tcp = None;
        slot.state = State::Idle {
            at: self.now + rest_ns,
        };
    }

    fn fail(&mut self, i: usize, e: &io::Error) {
        if tls::is_certificate_error(e) {
            self.shared.abort_with(format!(
                "the TLS handshake with {} (verifying the name {}) failed: {e}",
                self.target, self.tls.name
            ));
        }
        let c = &mut self.stats.counters;
        c.handshakes.failed += 1;
        c.client.attempted += 1;
        c.client.fail(if e.kind() == ErrorKind::TimedOut {
            Cause::Timeout
        } else {
            Cause::UnexpectedMessage
        });
        self.stats
            .first_failure
            .get_or_insert_with(|| e.to_string());
        self.close(i, RETRY_NS);
    }

    fn succeed(&mut self, i: usize, resumed: bool) {
        let took = self.now.saturating_sub(self.slots[i].started);
        self.stats.handshake(resumed, took);
        record_ns(&mut self.interval, took);
        self.stats.counters.client.attempted += 1;
        self.stats.counters.client.succeeded += 1;
        self.close(i, 0);
    }

    /// Slot `i`'s socket is ready: take the handshake as far as it goes now.
    fn on_ready(&mut self, i: usize) {
        match self.progress(i) {
            Ok(Some(resumed)) => self.succeed(i, resumed),
            Ok(None) => {}
            Err(e) => self.fail(i, &e),
        }
    }

    /// See [`advance`]; first the outcome of the connect, when that is what the slot awaits.
    fn progress(&mut self, i: usize) -> io::Result<Option<bool>> {
        let slot = &mut self.slots[i];
        let (Some(tcp), Some(conn)) = (slot.tcp.as_mut(), slot.conn.as_mut()) else {
            return Ok(None);
        };
        if slot.state == State::Connecting {
            if let Some(e) = tcp.take_error()? {
                return Err(e);
            }
            if tcp.peer_addr().is_err() {
                return Ok(None); // still connecting
            }
            slot.state = State::Handshaking;
        }
        advance(&mut slot.state, conn, tcp, &mut slot.got)
    }

    /// Open idle slots whose rest is over; fail handshakes past their deadline.
    fn sweep(&mut self, open: bool) {
        for i in 0..self.slots.len() {
            match self.slots[i].state {
                State::Idle { at } if open && at <= self.now => self.open(i),
                State::Idle { .. } => {}
                _ if self.now >= self.slots[i].started + HANDSHAKE_TIMEOUT_NS => {
                    let e = io::Error::new(
                        ErrorKind::TimedOut,
                        format!("no pong within {} ms", HANDSHAKE_TIMEOUT_NS / 1_000_000),
                    );
                    self.fail(i, &e);
                }
                _ => {}
            }
        }
    }

    fn publish(&mut self, w: usize) {
        let mut snap = self.shared.snapshots[w].lock().unwrap();
        let _ = snap.main.add(&self.interval);
        snap.counters = self.stats.counters.clone();
        drop(snap);
        self.interval.reset();
    }

    fn run(mut self, w: usize, start: u64, end: u64) -> Stats {
        while self.shared.now() < start {
            std::thread::sleep(Duration::from_nanos(start - self.shared.now()));
        }
        let cpu = thread_cpu_ns();
        // SAFETY: all-zero epoll_event is valid.
        let mut events = vec![unsafe { mem::zeroed::<libc::epoll_event>() }; 64];
        let mut next_tick = start + 1_000_000_000;
        loop {
            self.now = self.shared.now();
            if self.now >= end || self.shared.stop.load(Ordering::Relaxed) || self.shared.aborted()
            {
                break;
            }
            self.sweep(true);
            let wait = ((end - self.now) / 1_000_000).clamp(1, WAIT_MS) as libc::c_int;
            // SAFETY: valid epoll fd and event buffer.
            let n = unsafe {
                libc::epoll_wait(self.epfd, events.as_mut_ptr(), events.len() as _, wait)
            };
            self.now = self.shared.now();
            for ev in &events[..n.max(0) as usize] {
                self.on_ready(ev.u64 as usize);
            }
            if self.now >= next_tick {
                next_tick += 1_000_000_000;
                self.publish(w);
            }
        }
        // The schedule is over: handshakes still in progress are neither counted nor failed.
        self.stats.last_start = self.now.min(end);
        for i in 0..self.slots.len() {
            self.close(i, 0);
        }
        self.stats.cpu_ns = thread_cpu_ns() - cpu;
        self.publish(w);
        mem::take(&mut self.stats)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // SAFETY: we own this fd.
        unsafe { libc::close(self.epfd) };
    }
}

/// Take a handshake as far as the socket allows: write what the session has, read what came,
/// ping once the handshake is done. Returns whether it was resumed once the pong is in, None
/// while it waits for the socket.
fn advance(
    state: &mut State,
    conn: &mut ClientConnection,
    tcp: &mut TcpStream,
    got: &mut Vec<u8>,
) -> io::Result<Option<bool>> {
    for _ in 0..MAX_READS {
        tls::push(conn, tcp)?;
        match *state {
            State::Handshaking if !conn.is_handshaking() => {
                tls::ping(conn)?;
                *state = State::AwaitPong {
                    resumed: tls::resumed(conn),
                };
                continue;
            }
            State::AwaitPong { resumed } if tls::ponged(conn, got)? => return Ok(Some(resumed)),
            _ => {}
        }
        match tls::pull(conn, tcp)? {
            // Edge-triggered: the socket is drained, the next readiness brings us back.
            Pulled::Nothing => return Ok(None),
            Pulled::Closed => {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "the target closed the connection",
                ))
            }
            Pulled::Some => {}
        }
    }
    Err(io::Error::other(
        "the target keeps sending during a handshake",
    ))
}

/// Run the handshake loop for `--duration` on every worker thread.
pub fn run(cfg: &Config, tls: &Tls, stop: Arc<AtomicBool>) -> Result<RunOutput, String> {
    let cfg = Arc::new(cfg.clone());
    let shared = Arc::new(Shared::new(&cfg, stop));
    let start = shared.now() + 20_000_000;
    shared.set_start(start);
    let end = start + cfg.duration_ns;
    let reporter = {
        let (cfg, shared) = (cfg.clone(), shared.clone());
        std::thread::Builder::new()
            .name("report".into())
            .spawn(move || Live::new(&cfg).run(&cfg, &shared))
            .map_err(|e| e.to_string())?
    };
    let mut handles = Vec::with_capacity(cfg.threads);
    for w in 0..cfg.threads {
        let slots = cfg.fixed_ports[w].len();
        let worker = Worker::new(shared.clone(), &cfg, tls.clone(), slots);
        let worker = worker.map_err(|e| e.to_string())?;
        let shared = shared.clone();
        handles.push(spawn_worker(&cfg, w, move || {
            let stats = worker.run(w, start, end);
            shared.workers_done.fetch_add(1, Ordering::AcqRel);
            stats
        })?);
    }
    let mut stats = Stats::default();
    for h in handles {
        match h.join() {
            Ok(s) => stats.add(&s),
            Err(_) => shared.abort_with("a worker thread panicked".into()),
        }
    }
    let _ = reporter.join();
    let secs = stats.last_start.saturating_sub(start) as f64 / 1e9;
    let error = shared.error.lock().unwrap().take();
    Ok(RunOutput {
        stats,
        send_secs: secs,
        wall_secs: secs,
        open_secs: 0.0,
        ports: Vec::new(),
        error,
    })
}
