//! Redis, the store the nodes of a cluster share (issue 17): a real `redis-server` (Debian
//! package redis-server, which brings `redis-cli` from redis-tools) on a free loopback port, and
//! a Sentinel setup (a primary, one replica and one `redis-sentinel`, Debian package
//! redis-sentinel) that a test can fail over.
//!
//! Each server runs as a [`Proc`] in the foreground, configured on its command line, keeping
//! nothing on disk (`--save '' --appendonly no`): a restart comes back empty, which is what the
//! tests of "Redis restarted empty" want. Its log (stdout) and any file it writes are in a
//! directory of its own, `redis-PORT`, in the test's scratch directory. The tests read and
//! change Redis only through `redis-cli`, bounded in time by coreutils' `timeout`.

use std::collections::HashMap;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::require;
use crate::poll::eventually;
use crate::ports::free_port;
use crate::proc::Proc;

/// How long a server may take to answer its first PING, and a `redis-cli` command to finish.
const PATIENCE: Duration = Duration::from_secs(15);

/// The name the Sentinel setup monitors its primary under (`sentinel://.../mymaster`).
pub const MASTER_NAME: &str = "mymaster";

/// A running (or killed, between [`Redis::kill_hard`] and [`Redis::restart`]) redis-server.
pub struct Redis {
    /// Its port on 127.0.0.1; a restart keeps it.
    pub port: u16,
    pub addr: SocketAddr,
    /// Its own directory (`--dir`, the log files of its [`Proc`]s).
    dir: PathBuf,
    /// Arguments after the fixed ones (`--replicaof HOST PORT`), given again on a restart.
    args: Vec<String>,
    /// None while killed.
    proc: Option<Proc>,
}

impl Redis {
    /// A redis-server on a free port, its files under `dir`; returns once it answers PING.
    pub fn start(dir: &Path) -> Redis {
        Redis::start_with(dir, free_port(), &[])
    }

    /// On `port` (one a node was already told about, or the port of a server that was killed).
    pub fn start_on(dir: &Path, port: u16) -> Redis {
        Redis::start_with(dir, port, &[])
    }

    /// On `port` with more configuration on the command line (`["--replicaof", "127.0.0.1",
    /// "6379"]`).
    pub fn start_with(dir: &Path, port: u16, args: &[&str]) -> Redis {
        let own = dir.join(format!("redis-{port}"));
        fs::create_dir_all(&own).unwrap_or_else(|e| panic!("create {}: {e}", own.display()));
        let mut redis = Redis {
            port,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir: own,
            args: args.iter().map(|a| a.to_string()).collect(),
            proc: None,
        };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        let program = require("redis-server");
        let mut cmd = Command::new(program);
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.args);
        let mut proc = Proc::spawn(&self.dir, "redis-server", &mut cmd);
        let up = eventually(PATIENCE, || proc.try_status().is_some() || self.ping());
        assert!(
            up && proc.try_status().is_none(),
            "redis-server did not come up on {}:\n{}",
            self.addr,
            proc.output_tail(4000)
        );
        self.proc = Some(proc);
    }

    /// `redis://127.0.0.1:PORT/0`, for `sipshard --redis`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Whether it runs (it may have been killed, or have exited).
    pub fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|p| p.try_status().is_none())
    }

    /// SIGKILL: whatever it held is gone (nothing is saved), its port refuses connections.
    pub fn kill_hard(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Start again on the same port with the same arguments, empty (killing it first if it
    /// still runs); returns once it answers PING.
    pub fn restart(&mut self) {
        self.kill_hard();
        self.spawn();
    }

    /// `redis-cli -p PORT ARGS` (raw output: one line per element of a reply).
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }

    /// Whether it answers PING with PONG now.
    pub fn ping(&self) -> bool {
        try_cli(self.port, &["PING"]).is_some_and(|out| out.trim() == "PONG")
    }

    /// How many keys match `pattern` (`sipshard:b:*`), counted with `--scan` (never KEYS).
    pub fn count_keys(&self, pattern: &str) -> usize {
        self.keys(pattern).len()
    }

    /// The keys matching `pattern`, in no particular order (`--scan` may repeat one: each is
    /// listed once here).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let out = self.cli(&["--scan", "--pattern", pattern]);
        let mut keys: Vec<String> = out
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// `INFO SECTION` as field -> value.
    pub fn info(&self, section: &str) -> HashMap<String, String> {
        self.cli(&["INFO", section])
            .lines()
            .filter_map(|l| l.trim().split_once(':'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// `used_memory` of `INFO memory`, in bytes.
    pub fn used_memory(&self) -> u64 {
        let info = self.info("memory");
        info.get("used_memory")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no used_memory in INFO memory of {}: {info:?}", self.addr))
    }

    /// `master` or `slave`, from `INFO replication`.
    pub fn role(&self) -> String {
        self.info("replication").remove("role").unwrap_or_default()
    }

    /// Everything it has logged so far (its stdout), for failure messages.
    pub fn log(&self) -> String {
        self.proc
            .as_ref()
            .map(|p| p.stdout_text())
            .unwrap_or_default()
    }
}

/// `redis-cli -p PORT ARGS`; fails the test if it cannot run or takes longer than
/// [`PATIENCE`], and with its output when it exits with an error.
pub fn cli(port: u16, args: &[&str]) -> String {
    try_cli(port, args).unwrap_or_else(|| {
        panic!("redis-cli -p {port} {args:?} failed (is the server on {port} up?)")
    })
}

/// `redis-cli -p PORT ARGS`, or None when it exits with an error (no server there, an error
/// reply: `-e`) or hangs for [`PATIENCE`].
pub fn try_cli(port: u16, args: &[&str]) -> Option<String> {
    let program = require("redis-cli");
    let out = Command::new("timeout")
        .arg(PATIENCE.as_secs().to_string())
        .arg(program)
        .args(["-h", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .args(["-e", "--raw"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run redis-cli (timeout from coreutils): {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success() && !text.starts_with("ERR ") && !text.contains("Could not connect"))
        .then_some(text)
}

/// A Redis primary with one replica, watched by one `redis-sentinel` (quorum 1, down after
/// 1 s, failover timeout 5 s) under [`MASTER_NAME`]: what a node started with
/// `--redis sentinel://127.0.0.1:PORT/mymaster` follows through a failover.
pub struct Sentinel {
    /// The sentinel's port.
    pub port: u16,
    /// The two servers: at first `servers[0]` is the primary and `servers[1]` its replica;
    /// which is primary after a failover, [`Sentinel::master`] says.
    pub servers: Vec<Redis>,
    proc: Proc,
}

impl Sentinel {
    /// Start the primary, its replica (returns once it is in sync) and the sentinel (returns
    /// once the sentinel knows the primary and its replica, so that a failover can pick it).
    pub fn start(dir: &Path) -> Sentinel {
        let primary = Redis::start(dir);
        let primary_port = primary.port.to_string();
        let replica = Redis::start_with(
            dir,
            free_port(),
            &["--replicaof", "127.0.0.1", &primary_port],
        );
        let synced = eventually(PATIENCE, || {
            replica
                .info("replication")
                .get("master_link_status")
                .is_some_and(|s| s == "up")
        });
        assert!(
            synced,
            "the replica on {} did not sync with {}:\n{}",
            replica.addr,
            primary.addr,
            crate::text::tail(&replica.log(), 4000)
        );

        let port = free_port();
        let own = dir.join(format!("redis-sentinel-{port}"));
        fs::create_dir_all(&own).unwrap_or_else(|e| panic!("create {}: {e}", own.display()));
        // The sentinel rewrites its configuration file (what it learned): it must be ours.
        let conf = own.join("sentinel.conf");
        fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} 1\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                 sentinel failover-timeout {MASTER_NAME} 5000\n",
                dir = own.display()
            ),
        )
        .unwrap_or_else(|e| panic!("write {}: {e}", conf.display()));
        let program = require("redis-sentinel");
        let mut cmd = Command::new(program);
        cmd.arg(&conf);
        let proc = Proc::spawn(&own, "redis-sentinel", &mut cmd);
        let mut sentinel = Sentinel {
            port,
            servers: vec![primary, replica],
            proc,
        };
        sentinel.wait_known(PATIENCE);
        sentinel
    }

    /// `sentinel://127.0.0.1:PORT/mymaster`, for `sipshard --redis`.
    pub fn url(&self) -> String {
        format!("sentinel://127.0.0.1:{}/{MASTER_NAME}", self.port)
    }

    /// `redis-cli -p SENTINEL_PORT ARGS`.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }

    /// The primary's port as the sentinel reports it now (`SENTINEL get-master-addr-by-name`).
    pub fn master(&self) -> Option<u16> {
        let out = try_cli(
            self.port,
            &["SENTINEL", "get-master-addr-by-name", MASTER_NAME],
        )?;
        out.lines().nth(1)?.trim().parse().ok()
    }

    /// `SENTINEL master mymaster` as field -> value (`flags`, `num-slaves`, ...).
    pub fn master_info(&self) -> HashMap<String, String> {
        let out = try_cli(self.port, &["SENTINEL", "master", MASTER_NAME]).unwrap_or_default();
        let lines: Vec<&str> = out.lines().collect();
        lines
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0].to_string(), c[1].to_string()))
            .collect()
    }

    /// Wait until the sentinel sees the primary up and at least one replica.
    pub fn wait_known(&mut self, limit: Duration) {
        let mut info = HashMap::new();
        let known = eventually(limit, || {
            info = self.master_info();
            info.get("flags").is_some_and(|f| f == "master")
                && info
                    .get("num-slaves")
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_some_and(|n| n >= 1)
        });
        assert!(
            known && self.proc.try_status().is_none(),
            "the sentinel on {} does not know {MASTER_NAME} and its replica: {info:?}\n{}",
            self.port,
            self.proc.output_tail(4000)
        );
    }

    /// The server that is primary now (as the sentinel reports it).
    pub fn primary(&mut self) -> &mut Redis {
        let port = self.master().expect("the sentinel names a primary");
        self.servers
            .iter_mut()
            .find(|s| s.port == port)
            .unwrap_or_else(|| panic!("the sentinel names an unknown primary on {port}"))
    }

    /// Ask the sentinel for a failover (`SENTINEL FAILOVER mymaster`, repeated while it has no
    /// suitable replica yet) and wait until it reports the replica as the new primary and that
    /// server says it is one. Returns the new primary's port.
    pub fn failover(&mut self, limit: Duration) -> u16 {
        let old = self.master().expect("the sentinel names a primary");
        let deadline = Instant::now() + limit;
        let mut last = String::new();
        let asked = eventually(limit, || {
            match try_cli(self.port, &["SENTINEL", "FAILOVER", MASTER_NAME]) {
                Some(out) if out.trim() == "OK" => true,
                Some(out) => {
                    last = out;
                    false
                }
                None => {
                    // -e made the error reply an exit code; read it for the message.
                    last = Command::new(require("redis-cli"))
                        .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                        .args(["SENTINEL", "FAILOVER", MASTER_NAME])
                        .output()
                        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                        .unwrap_or_default();
                    false
                }
            }
        });
        assert!(
            asked,
            "the sentinel on {} refused a failover of {MASTER_NAME}: {last}\n{}",
            self.port,
            self.proc.output_tail(4000)
        );
        self.wait_new_master(old, deadline.saturating_duration_since(Instant::now()))
    }

    /// Kill the primary with SIGKILL and return its port: the sentinel finds it down after a
    /// second and fails over (wait with [`Sentinel::wait_new_master`]).
    pub fn kill_primary(&mut self) -> u16 {
        let primary = self.primary();
        primary.kill_hard();
        primary.port
    }

    /// Wait until the sentinel reports a primary other than the one on `old` and that server
    /// answers as a primary; its port.
    pub fn wait_new_master(&mut self, old: u16, limit: Duration) -> u16 {
        let mut now = None;
        let done = eventually(limit, || {
            now = self.master();
            now.is_some_and(|p| {
                p != old
                    && self
                        .servers
                        .iter()
                        .find(|s| s.port == p)
                        .is_some_and(|s| s.role() == "master")
            })
        });
        assert!(
            done,
            "no new primary within {limit:?}: the sentinel on {} reports {now:?} (was {old})\n{}",
            self.port,
            self.proc.output_tail(4000)
        );
        now.expect("a new primary")
    }

    /// The sentinel's log, for failure messages.
    pub fn log(&self) -> String {
        self.proc.stdout_text()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scratch;

    #[test]
    fn a_restart_comes_back_empty_on_the_same_port() {
        let dir = Scratch::new("kit-redis");
        let mut r = Redis::start(&dir);
        assert_eq!(r.url(), format!("redis://127.0.0.1:{}/0", r.port));
        for i in 0..5 {
            assert_eq!(r.cli(&["SET", &format!("t:b:{i}"), "x"]).trim(), "OK");
        }
        r.cli(&["SET", "other", "x"]);
        assert_eq!(r.count_keys("t:b:*"), 5);
        assert!(r.used_memory() > 0);
        assert_eq!(r.role(), "master");
        r.kill_hard();
        assert!(!r.ping());
        assert!(try_cli(r.port, &["PING"]).is_none());
        r.restart();
        assert!(r.is_running());
        assert_eq!(r.count_keys("t:b:*"), 0);
    }

    #[test]
    fn the_sentinel_fails_over_when_asked_and_when_the_primary_dies() {
        let dir = Scratch::new("kit-sentinel");
        let mut s = Sentinel::start(&dir);
        let first = s.master().unwrap();
        assert_eq!(first, s.servers[0].port);
        let second = s.failover(Duration::from_secs(30));
        assert_eq!(second, s.servers[1].port);
        // The old primary follows the new one; once the sentinel counts it as a replica again,
        // killing the new primary hands the role back.
        s.wait_known(Duration::from_secs(30));
        let killed = s.kill_primary();
        assert_eq!(killed, second);
        let third = s.wait_new_master(killed, Duration::from_secs(30));
        assert_eq!(third, first);
    }
}
