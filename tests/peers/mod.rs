//! Helpers for the tests that drive real SIP peers (SIPp, Kamailio, sipsak) against the
//! `sipshard` binary: finding the peer programs, free loopback ports, child processes that are
//! always killed, scratch directories, a small SIP-over-UDP client, and SIPp's statistics.
//!
//! Every process started here is put in a process group of its own and gets SIGTERM when the
//! test thread that started it goes away; dropping its [`Proc`] (also while unwinding from a
//! failed assertion) signals the whole group, SIGTERM then SIGKILL.

#![allow(dead_code)]

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What to do when a peer program is missing.
pub const INSTALL_HINT: &str =
    "run scripts/test.sh or apt-get install -y sip-tester kamailio sipsak";

/// The full path of a peer program. A missing one fails the test with [`INSTALL_HINT`]: these
/// tests never pass by skipping.
pub fn require(program: &str) -> PathBuf {
    find_program(program).unwrap_or_else(|| panic!("{program} not found: {INSTALL_HINT}"))
}

/// Look `program` up in PATH, then in the sbin directories (Kamailio lives in /usr/sbin, which
/// is not on every PATH).
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// One peer test at a time: each runs its peers at a fixed call rate and judges them by zero
/// failed calls, which is easier to trust on a small shared machine when the tests of this
/// file do not also compete with each other for its two cores.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Socket buffer size asked of SIPp and sipshard (the kernel caps it at net.core.rmem_max and
/// wmem_max), so that a peer starved of CPU for a moment queues datagrams instead of losing
/// them. (A lost 200 can make SIPp's built-in uac take the retransmitted INVITE 200 for the
/// BYE's and end a call its uas then fails.)
pub const SOCKET_BUFFER: usize = 4 << 20;

/// Ports handed out by this test process (so two tests never get the same one).
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

fn claim(port: u16) -> bool {
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    guard.get_or_insert_with(HashSet::new).insert(port)
}

fn udp_port_is_free(port: u16) -> bool {
    UdpSocket::bind(("127.0.0.1", port)).is_ok()
}

/// A free UDP port on 127.0.0.1 from the kernel's ephemeral range (bound, then released).
pub fn free_port() -> u16 {
    loop {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral UDP port");
        let port = s.local_addr().expect("local address").port();
        drop(s);
        if claim(port) {
            return port;
        }
    }
}

/// A free UDP port below 10000. sipsak 0.9.8.1 keeps only the first four digits of a
/// five-digit port of its `-s` URI when it writes the Request-URI and To (observed:
/// `sipsak -s sip:127.0.0.1:25060` sends `OPTIONS sip:127.0.0.1:2506`), so whatever sipsak
/// talks to must listen on a port of at most four digits.
pub fn free_low_port() -> u16 {
    // 7100..9999 stays clear of SIPp's own media (6000+) and control (8888+) ports as far as
    // a handful of SIPp instances go; the bind test below catches the rest.
    const LOW: u16 = 7100;
    const SPAN: u16 = 1700;
    let start = (std::process::id() % SPAN as u32) as u16;
    (0..SPAN)
        .map(|i| LOW + (start + i) % SPAN)
        .find(|&p| udp_port_is_free(p) && claim(p))
        .expect("no free UDP port in 7100..8800")
}

/// Wait until something has bound UDP `port` on 127.0.0.1 (our own bind attempt fails).
pub fn wait_bound(port: u16, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if !udp_port_is_free(port) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A scratch directory for one test, removed afterwards unless the test failed (then it is
/// kept, and named, for inspection).
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "sipshard-interop-{name}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create scratch directory");
        Scratch { path }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.join(name);
        fs::write(&p, contents).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// The contents of a file, or a note saying why there are none.
pub fn read_lossy(p: &Path) -> String {
    match fs::read(p) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => format!("<{}: {e}>", p.display()),
    }
}

/// The last `max` bytes of `s` (on a character boundary).
pub fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut at = s.len() - max;
    while !s.is_char_boundary(at) {
        at += 1;
    }
    &s[at..]
}

/// A child process, in a process group of its own, with stdout and stderr in files of the
/// scratch directory. Dropping it ends the whole group.
pub struct Proc {
    pub name: String,
    child: Child,
    /// Set once the leader has been reaped; from then on its group is never signalled (the id
    /// could be reused), which is why [`Proc::wait_timeout`] is only for programs that start no
    /// children of their own (SIPp, sipsak).
    status: Option<ExitStatus>,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Proc {
    pub fn spawn(dir: &Scratch, name: &str, cmd: &mut Command) -> Proc {
        let stdout = dir.join(&format!("{name}.stdout"));
        let stderr = dir.join(&format!("{name}.stderr"));
        let out = fs::File::create(&stdout).expect("create stdout file");
        let err = fs::File::create(&stderr).expect("create stderr file");
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .current_dir(&dir.path)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                // If the test thread dies without dropping us, the child is told to stop.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Proc {
            name: name.to_string(),
            child,
            status: None,
            stdout,
            stderr,
        }
    }

    /// The exit status if the process has ended (reaps it).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Wait up to `limit` for the process to end by itself.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.try_status() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal_group(&self, sig: i32) {
        if self.status.is_none() {
            // The leader is not reaped yet, so its pid (= the group id) is still ours.
            // SAFETY: plain syscall on a process group we created.
            unsafe {
                libc::kill(-(self.child.id() as i32), sig);
            }
        }
    }

    /// SIGTERM the group, wait up to `grace`, then SIGKILL it. Returns the leader's status.
    pub fn stop(&mut self, grace: Duration) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        self.signal_group(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            // Peek without reaping, so the group can still be signalled below.
            if self.leader_exited() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.signal_group(libc::SIGKILL);
        let s = self
            .child
            .wait()
            .unwrap_or_else(|_| ExitStatus::from_raw(-1));
        self.status = Some(s);
        s
    }

    fn leader_exited(&self) -> bool {
        // SAFETY: waitid with WNOWAIT only inspects the child; `info` is plain data.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let r = libc::waitid(
                libc::P_PID,
                self.child.id(),
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            r == 0 && info.si_pid() != 0
        }
    }

    pub fn stdout_text(&self) -> String {
        read_lossy(&self.stdout)
    }

    pub fn stderr_text(&self) -> String {
        read_lossy(&self.stderr)
    }

    /// The tails of stdout and stderr, for failure messages.
    pub fn output_tail(&self, max: usize) -> String {
        format!(
            "--- {} stdout ({}) ---\n{}\n--- {} stderr ({}) ---\n{}",
            self.name,
            self.stdout.display(),
            tail(&self.stdout_text(), max),
            self.name,
            self.stderr.display(),
            tail(&self.stderr_text(), max)
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(2));
    }
}

/// A parsed SIP response (just what the tests look at).
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub text: String,
}

impl Response {
    pub fn parse(text: &str) -> Option<Response> {
        let status = text.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()?;
        Some(Response {
            status,
            text: text.to_string(),
        })
    }

    /// Values of header `name` (or its compact form), one per line as received.
    pub fn headers<'a>(&'a self, name: &'a str, compact: &'a str) -> impl Iterator<Item = &'a str> {
        self.text
            .split("\r\n")
            .skip(1)
            .take_while(|l| !l.is_empty())
            .filter_map(move |l| {
                let (n, v) = l.split_once(':')?;
                let n = n.trim();
                (n.eq_ignore_ascii_case(name)
                    || (!compact.is_empty() && n.eq_ignore_ascii_case(compact)))
                .then(|| v.trim())
            })
    }

    /// Contact values, split at commas (the URIs here carry no quoted commas).
    pub fn contacts(&self) -> Vec<String> {
        self.headers("Contact", "m")
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect()
    }
}

/// A SIP user agent on an ephemeral 127.0.0.1 port that sends one request at a time and
/// retransmits it like a UDP client transaction (timer E doubling from 500 ms).
pub struct SipClient {
    sock: UdpSocket,
    pub local: SocketAddr,
    seq: AtomicU64,
}

impl Default for SipClient {
    fn default() -> Self {
        Self::new()
    }
}

impl SipClient {
    pub fn new() -> SipClient {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind UA socket");
        let local = sock.local_addr().expect("UA address");
        SipClient {
            sock,
            local,
            seq: AtomicU64::new(1),
        }
    }

    fn next(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Send `request` to `to` and return its final response, retransmitting for up to
    /// `limit`; None if none came.
    pub fn transact(&self, to: SocketAddr, request: &str, limit: Duration) -> Option<Response> {
        let branch = request
            .split("branch=")
            .nth(1)
            .and_then(|r| r.split([';', '\r']).next())
            .unwrap_or("")
            .to_string();
        let deadline = Instant::now() + limit;
        let mut interval = Duration::from_millis(500);
        let mut buf = vec![0u8; 65_536];
        loop {
            self.sock.send_to(request.as_bytes(), to).ok()?;
            let resend_at = (Instant::now() + interval).min(deadline);
            loop {
                let now = Instant::now();
                if now >= resend_at {
                    break;
                }
                self.sock.set_read_timeout(Some(resend_at - now)).ok()?;
                let Ok((n, _)) = self.sock.recv_from(&mut buf) else {
                    continue;
                };
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                match Response::parse(&text) {
                    Some(r) if r.status >= 200 && text.contains(&branch) => return Some(r),
                    _ => {}
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            interval = (interval * 2).min(Duration::from_secs(4));
        }
    }

    /// `OPTIONS sip:HOST:PORT` (a keepalive probe); one try of `limit`.
    pub fn options(&self, to: SocketAddr, limit: Duration) -> Option<Response> {
        let n = self.next();
        let req = format!(
            "OPTIONS sip:{to} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bKprobe{pid}x{n};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:probe@{local}>;tag=probe{n}\r\n\
             To: <sip:{to}>\r\n\
             Call-ID: probe-{pid}-{n}@{local}\r\n\
             CSeq: {n} OPTIONS\r\n\
             Content-Length: 0\r\n\r\n",
            local = self.local,
            pid = std::process::id(),
        );
        self.transact(to, &req, limit)
    }

    /// REGISTER for `aor` (`sip:user@host[:port]`) sent to `to`. `contacts` empty = a query;
    /// `expires` None = no Expires header.
    pub fn register(
        &self,
        to: SocketAddr,
        aor: &str,
        contacts: &[&str],
        expires: Option<u32>,
    ) -> Response {
        let n = self.next();
        let domain = aor.split_once('@').map_or(aor, |(_, d)| d);
        let mut req = format!(
            "REGISTER sip:{domain} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bKreg{pid}x{n};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <{aor}>;tag=reg{n}\r\n\
             To: <{aor}>\r\n\
             Call-ID: reg-{pid}-{n}@{local}\r\n\
             CSeq: {n} REGISTER\r\n",
            local = self.local,
            pid = std::process::id(),
        );
        for c in contacts {
            let _ = write!(req, "Contact: <{c}>\r\n");
        }
        if let Some(e) = expires {
            let _ = write!(req, "Expires: {e}\r\n");
        }
        req.push_str("Content-Length: 0\r\n\r\n");
        self.transact(to, &req, Duration::from_secs(8))
            .unwrap_or_else(|| panic!("no response to REGISTER from {to}:\n{req}"))
    }
}

/// Poll `probe` every 100 ms for up to `limit`; true once it returns true.
pub fn eventually(limit: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if probe() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running `sipshard` binary on `127.0.0.1:PORT`.
pub struct Sipshard {
    pub addr: SocketAddr,
    pub proc: Proc,
}

impl Sipshard {
    /// Start `sipshard --listen 127.0.0.1:PORT --log-level info` (and large socket buffers)
    /// with `ARGS`, and return once it
    /// answers `OPTIONS sip:127.0.0.1:PORT` with 200.
    pub fn start(dir: &Scratch, port: u16, args: &[&str]) -> Sipshard {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sipshard"));
        cmd.arg("--listen")
            .arg(addr.to_string())
            .args(["--log-level", "info"])
            .arg("--rcvbuf")
            .arg(SOCKET_BUFFER.to_string())
            .arg("--sndbuf")
            .arg(SOCKET_BUFFER.to_string())
            .args(args);
        let mut proc = Proc::spawn(dir, "sipshard", &mut cmd);
        let client = SipClient::new();
        let ready = eventually(Duration::from_secs(15), || {
            if proc.try_status().is_some() {
                return true;
            }
            client
                .options(addr, Duration::from_millis(200))
                .is_some_and(|r| r.status == 200)
        });
        if let Some(s) = proc.try_status() {
            panic!(
                "sipshard exited at start-up ({s}):\n{}",
                proc.output_tail(4000)
            );
        }
        assert!(
            ready,
            "sipshard on {addr} did not answer OPTIONS within 15 s:\n{}",
            proc.output_tail(4000)
        );
        Sipshard { addr, proc }
    }

    /// SIGTERM it and return its log (which ends with per-shard counters at level info).
    pub fn stop(&mut self) -> String {
        let status = self.proc.stop(Duration::from_secs(5));
        let log = self.proc.stderr_text();
        assert!(
            status.success(),
            "sipshard did not stop cleanly ({status}):\n{}",
            tail(&log, 4000)
        );
        log
    }
}

/// `(shard id, datagrams received)` from the "shard N: X received, ..." lines logged at exit.
pub fn shard_receive_counts(log: &str) -> Vec<(usize, u64)> {
    log.lines()
        .filter_map(|l| {
            // logfmt: ... msg="shard 0: 18008 received, ..."
            let rest = &l[l.find("msg=\"shard ")? + 11..];
            let (id, rest) = rest.split_once(": ")?;
            let (n, _) = rest.split_once(" received")?;
            Some((id.parse().ok()?, n.parse().ok()?))
        })
        .collect()
}

/// One SIPp run, with its statistics, error, screen and (optionally) message logs in the
/// scratch directory under fixed names.
pub struct Sipp {
    pub proc: Proc,
    pub stat_file: PathBuf,
    pub error_file: PathBuf,
    pub screen_file: PathBuf,
    pub message_file: PathBuf,
}

/// What a finished SIPp run reported.
#[derive(Debug)]
pub struct SippOutcome {
    /// None when it had to be killed.
    pub status: Option<ExitStatus>,
    /// The last row of `-trace_stat`, by column name.
    pub stats: Vec<(String, String)>,
}

impl SippOutcome {
    pub fn stat(&self, name: &str) -> Option<u64> {
        self.stats
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.trim().parse().ok())
    }

    pub fn successful(&self) -> u64 {
        self.stat("SuccessfulCall(C)").unwrap_or(0)
    }

    pub fn failed(&self) -> u64 {
        self.stat("FailedCall(C)").unwrap_or(u64::MAX)
    }

    /// SIPp's exit status: 0 means every call succeeded.
    pub fn exit_code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    pub fn summary(&self) -> String {
        let get = |k: &str| self.stat(k).map_or("?".to_string(), |v| v.to_string());
        format!(
            "exit {:?}: created {}, successful {}, failed {}, retransmissions {}, \
             out-of-call {}, dead-call {}, failed max UDP retrans {}, failed unexpected {}",
            self.exit_code(),
            get("TotalCallCreated"),
            get("SuccessfulCall(C)"),
            get("FailedCall(C)"),
            get("Retransmissions(C)"),
            get("OutOfCallMsgs(C)"),
            get("DeadCallMsgs(C)"),
            get("FailedMaxUDPRetrans(C)"),
            get("FailedUnexpectedMessage(C)"),
        )
    }
}

impl Sipp {
    /// Start `sipp ARGS` with `-nostdin` and its logs (errors, statistics every second,
    /// final screens, and with `trace_msg` every message) in the scratch directory.
    pub fn spawn(dir: &Scratch, name: &str, args: &[String], trace_msg: bool) -> Sipp {
        let sipp = require("sipp");
        let stat_file = dir.join(&format!("{name}.stat.csv"));
        let error_file = dir.join(&format!("{name}.errors.log"));
        let screen_file = dir.join(&format!("{name}.screen.log"));
        let message_file = dir.join(&format!("{name}.messages.log"));
        let mut cmd = Command::new(sipp);
        cmd.args(args)
            .arg("-nostdin")
            .arg("-buff_size")
            .arg(SOCKET_BUFFER.to_string())
            .arg("-trace_err")
            .arg("-error_file")
            .arg(&error_file)
            .arg("-trace_stat")
            .arg("-stf")
            .arg(&stat_file)
            .args(["-fd", "1"])
            .arg("-trace_screen")
            .arg("-screen_file")
            .arg(&screen_file);
        if trace_msg {
            cmd.arg("-trace_msg")
                .arg("-message_file")
                .arg(&message_file);
        }
        let proc = Proc::spawn(dir, name, &mut cmd);
        Sipp {
            proc,
            stat_file,
            error_file,
            screen_file,
            message_file,
        }
    }

    /// Wait up to `limit` for SIPp to end (its own `-timeout` should end it first), then
    /// read its last statistics row.
    pub fn wait(&mut self, limit: Duration) -> SippOutcome {
        let status = self.proc.wait_timeout(limit);
        if status.is_none() {
            self.proc.stop(Duration::from_secs(2));
        }
        SippOutcome {
            status,
            stats: last_stat_row(&read_lossy(&self.stat_file)),
        }
    }

    /// Everything worth printing when a run failed.
    pub fn diagnostics(&self) -> String {
        format!(
            "--- {} error log ({}) ---\n{}\n--- {} final screens ---\n{}\n{}",
            self.proc.name,
            self.error_file.display(),
            tail(&read_lossy(&self.error_file), 6000),
            self.proc.name,
            tail(&read_lossy(&self.screen_file), 5000),
            self.proc.output_tail(1500),
        )
    }

    /// The "Successful call" / "Failed call" lines of the final statistics screen.
    pub fn screen_call_lines(&self) -> Vec<String> {
        let screens = read_lossy(&self.screen_file);
        let mut lines: Vec<String> = screens
            .lines()
            .filter(|l| {
                let l = l.trim_start();
                l.starts_with("Successful call") || l.starts_with("Failed call")
            })
            .map(|l| l.trim_end().to_string())
            .collect();
        let keep = lines.len().saturating_sub(2);
        lines.drain(..keep);
        lines
    }

    pub fn messages(&self) -> String {
        read_lossy(&self.message_file)
    }
}

/// Which scenario a SIPp agent plays.
pub enum Scenario<'a> {
    /// One of SIPp's embedded scenarios (`-sn`), e.g. `uac`, `uas`.
    Builtin(&'a str),
    /// A scenario file (`-sf`).
    File(&'a Path),
}

/// One SIPp user agent on `127.0.0.1:port`: a uas when `remote` is None, else a uac calling
/// `remote` at `rate` calls/s. It stops after `calls` calls, or fails after `timeout`.
pub struct Agent<'a> {
    pub name: &'a str,
    pub scenario: Scenario<'a>,
    pub port: u16,
    /// The Request-URI user (`-s`).
    pub service: &'a str,
    pub calls: u32,
    pub remote: Option<(SocketAddr, u32)>,
    pub timeout: Duration,
    /// More SIPp flags.
    pub extra: &'a [&'a str],
    pub trace_msg: bool,
}

impl Agent<'_> {
    /// Start it. A uas is waited for until it has bound its port.
    pub fn start(&self, dir: &Scratch) -> Sipp {
        let mut args: Vec<String> = Vec::new();
        match self.scenario {
            Scenario::Builtin(n) => args.extend(["-sn".into(), n.into()]),
            Scenario::File(p) => args.extend(["-sf".into(), p.display().to_string()]),
        }
        if let Some((to, rate)) = self.remote {
            args.extend([to.to_string(), "-r".into(), rate.to_string()]);
        }
        args.extend(
            [
                "-s",
                self.service,
                "-i",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-m",
                &self.calls.to_string(),
                "-timeout",
                &format!("{}s", self.timeout.as_secs()),
                "-timeout_error",
            ]
            .map(String::from),
        );
        args.extend(self.extra.iter().map(|a| a.to_string()));
        let sipp = Sipp::spawn(dir, self.name, &args, self.trace_msg);
        if self.remote.is_none() {
            assert!(
                wait_bound(self.port, Duration::from_secs(10)),
                "SIPp {} did not bind 127.0.0.1:{}:\n{}",
                self.name,
                self.port,
                sipp.diagnostics()
            );
        }
        sipp
    }
}

/// How a uac and its uas ended.
pub struct Calls {
    pub uac: SippOutcome,
    pub uas: SippOutcome,
    /// Both agents' logs, for failure messages.
    pub diagnostics: String,
}

/// Wait for a uac and then its uas to end, and print their statistics under `label`. A uas
/// ends a few seconds after its last call (its timewait for a lost 200), and may never end by
/// itself when the uac failed.
pub fn finish_calls(
    label: &str,
    started: Instant,
    uac: &mut Sipp,
    uas: &mut Sipp,
    limit: Duration,
) -> Calls {
    let uac_result = uac.wait(limit);
    let uas_limit = if uac_result.exit_code() == Some(0) {
        Duration::from_secs(30)
    } else {
        Duration::from_secs(5)
    };
    let uas_result = uas.wait(uas_limit);
    println!(
        "{label}: {:.1} s\n  {} {}\n  {} screen: {:?}\n  {} {}\n  {} screen: {:?}",
        started.elapsed().as_secs_f64(),
        uac.proc.name,
        uac_result.summary(),
        uac.proc.name,
        uac.screen_call_lines(),
        uas.proc.name,
        uas_result.summary(),
        uas.proc.name,
        uas.screen_call_lines(),
    );
    Calls {
        uac: uac_result,
        uas: uas_result,
        diagnostics: format!("{}\n{}", uac.diagnostics(), uas.diagnostics()),
    }
}

impl Calls {
    /// Assert that both agents ended with exit status 0 and `calls` successful calls, none
    /// failed; `more` is added to the failure message.
    pub fn assert_all_succeeded(&self, calls: u32, more: &str) {
        for (who, r) in [("uac", &self.uac), ("uas", &self.uas)] {
            assert_eq!(
                (r.exit_code(), r.successful(), r.failed()),
                (Some(0), calls as u64, 0),
                "SIPp {who}: not every call succeeded ({})\n{}\n{more}",
                r.summary(),
                self.diagnostics
            );
        }
    }
}

/// The last data row of a SIPp `-trace_stat` file, paired with the header's column names.
pub fn last_stat_row(csv: &str) -> Vec<(String, String)> {
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let Some(last) = lines.next_back() else {
        return Vec::new();
    };
    header
        .split(';')
        .zip(last.split(';'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The SIP messages in a SIPp `-trace_msg` log that start with `start_line_prefix`, e.g.
/// `"INVITE "` or `"SIP/2.0 200"`, each as its header block (lines up to the blank one).
pub fn traced_messages(log: &str, start_line_prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in log.lines() {
        let line = line.trim_end_matches('\r');
        match current.as_mut() {
            Some(msg) => {
                if line.is_empty() {
                    out.push(current.take().expect("some"));
                } else {
                    msg.push(line.to_string());
                }
            }
            None if line.starts_with(start_line_prefix) => current = Some(vec![line.to_string()]),
            None => {}
        }
    }
    out.extend(current);
    out
}

/// Values of header `name` in a traced message's header lines.
pub fn header_values<'a>(msg: &'a [String], name: &'a str) -> impl Iterator<Item = &'a str> {
    msg.iter().skip(1).filter_map(move |l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}
