//! The proxy under test: the real `sipshard` binary on a loopback port.
//!
//! [`Proxy::start`] returns only once the proxy answers an OPTIONS ping with 200, so a test
//! never races its start-up (and a proxy that exits at start-up fails the test with its log at
//! once). It runs as a [`Proc`]: in its own process group, killed with the group when dropped,
//! its log (stderr, at level info) in the file `sipshard-PORT.stderr` of a scratch directory,
//! which is named and printed when the test fails. [`Proxy::stop`] stops it as an operator
//! would (SIGTERM) and returns that log, which ends with the per-shard counters that
//! [`crate::exit_log`] reads.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::client::SipClient;
use crate::ports::{free_port, free_ports};
use crate::proc::Proc;
use crate::scratch::Scratch;
use crate::text::tail;

/// How long a proxy may take to answer its first OPTIONS ping, or to stop after SIGTERM.
const PATIENCE: Duration = Duration::from_secs(15);

/// A running sipshard.
pub struct Proxy {
    /// Where it listens: `127.0.0.1:PORT`.
    pub addr: SocketAddr,
    /// Where it serves `/metrics`, when started with [`Builder::metrics`].
    pub metrics: Option<SocketAddr>,
    proc: Proc,
    /// The proxy's own scratch directory, when the test gave it none. Declared after `proc` so
    /// that the process is gone before its directory is removed.
    _scratch: Option<Scratch>,
}

/// How to start a [`Proxy`]: `Proxy::builder().port(p).dir(&scratch).args(&[...]).start()`.
#[derive(Default)]
pub struct Builder {
    port: Option<u16>,
    dir: Option<PathBuf>,
    socket_buffers: Option<usize>,
    metrics: bool,
    args: Vec<String>,
}

impl Builder {
    /// Listen on this port (default: a free one).
    pub fn port(mut self, port: u16) -> Builder {
        self.port = Some(port);
        self
    }

    /// Keep the log in this directory, next to the test's other files (default: a scratch
    /// directory of the proxy's own).
    pub fn dir(mut self, dir: &Path) -> Builder {
        self.dir = Some(dir.to_path_buf());
        self
    }

    /// Ask for socket buffers of this size (`--rcvbuf`, `--sndbuf`), so that a proxy starved
    /// of CPU for a moment queues datagrams instead of losing them.
    pub fn socket_buffers(mut self, bytes: usize) -> Builder {
        self.socket_buffers = Some(bytes);
        self
    }

    /// Serve `/metrics` on 127.0.0.1, on the port after the SIP port (free on both
    /// transports): [`Proxy::metrics`].
    pub fn metrics(mut self) -> Builder {
        self.metrics = true;
        self
    }

    /// More command-line arguments.
    pub fn args(mut self, args: &[&str]) -> Builder {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Start `sipshard --listen 127.0.0.1:PORT --log-level info ARGS` and wait until it
    /// answers `OPTIONS sip:127.0.0.1:PORT` with 200.
    pub fn start(self) -> Proxy {
        let port = match (self.port, self.metrics) {
            (Some(p), _) => p,
            (None, true) => free_ports(2),
            (None, false) => free_port(),
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let metrics = self
            .metrics
            .then(|| SocketAddr::from(([127, 0, 0, 1], port + 1)));
        let own = match self.dir {
            Some(_) => None,
            None => Some(Scratch::new(&format!("{}-sipshard", test_name()))),
        };
        let dir = self.dir.as_deref().or(own.as_deref()).expect("a directory");
        let mut cmd = Command::new(crate::bin::sipshard());
        cmd.arg("--listen")
            .arg(addr.to_string())
            .args(["--log-level", "info"]);
        if let Some(bytes) = self.socket_buffers {
            cmd.arg("--rcvbuf")
                .arg(bytes.to_string())
                .arg("--sndbuf")
                .arg(bytes.to_string());
        }
        if let Some(m) = metrics {
            cmd.arg("--metrics").arg(m.to_string());
        }
        cmd.args(&self.args);
        let proc = Proc::spawn(dir, &format!("sipshard-{port}"), &mut cmd);
        let mut proxy = Proxy {
            addr,
            metrics,
            proc,
            _scratch: own,
        };
        proxy.wait_ready();
        proxy
    }
}

impl Proxy {
    /// Start on a free port with `args`; returns once it answers OPTIONS.
    pub fn start(args: &[&str]) -> Proxy {
        Proxy::builder().args(args).start()
    }

    /// Start on `port` (a restart on the same address, a port sipsak can name) with `args`.
    pub fn start_on(port: u16, args: &[&str]) -> Proxy {
        Proxy::builder().port(port).args(args).start()
    }

    pub fn builder() -> Builder {
        Builder::default()
    }

    fn wait_ready(&mut self) {
        let client = SipClient::new();
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Some(s) = self.proc.try_status() {
                panic!(
                    "sipshard on {} exited at start-up ({s}):\n{}",
                    self.addr,
                    self.proc.output_tail(4000)
                );
            }
            // A probe waits a second for its answer (resent with the same branch after 500 ms):
            // on a loaded machine an answer can come later than 200 ms. (A CI run whose probes
            // went unanswered for 15 s had a shard asleep at start-up, answering only at exit:
            // see `Handoff::connect`.)
            if let Some(r) = client.options(self.addr, Duration::from_secs(1)) {
                assert_eq!(r.status, 200, "keepalive answered with {}", r.text);
                return;
            }
        }
        panic!(
            "sipshard on {} did not answer OPTIONS within {PATIENCE:?}:\n{}",
            self.addr,
            self.proc.output_tail(4000)
        );
    }

    /// The process id (to stop and continue it, or pin it).
    pub fn pid(&self) -> i32 {
        self.proc.pid()
    }

    /// Send a signal (e.g. `libc::SIGHUP`) to the running process.
    pub fn signal(&self, sig: i32) {
        self.proc.signal(sig);
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill_hard(&mut self) {
        self.proc.kill();
    }

    /// Everything it has logged so far.
    pub fn log(&self) -> String {
        self.proc.stderr_text()
    }

    /// The file its log goes to.
    pub fn log_path(&self) -> &Path {
        &self.proc.stderr
    }

    /// SIGTERM, wait for a clean exit, and return everything it logged (which ends with the
    /// per-shard counters at level info).
    pub fn stop(&mut self) -> String {
        let status = self.proc.stop(PATIENCE);
        let log = self.log();
        assert!(
            status.success(),
            "sipshard on {} did not stop cleanly within {PATIENCE:?} of SIGTERM ({status}):\n{}",
            self.addr,
            tail(&log, 4000)
        );
        log
    }
}

/// The running test's name (libtest names each test's thread after it), for directory names.
fn test_name() -> String {
    let name = std::thread::current()
        .name()
        .unwrap_or("test")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect::<String>();
    name.chars().take(80).collect()
}
