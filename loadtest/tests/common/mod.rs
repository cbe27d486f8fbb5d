//! Helpers shared by the integration tests: run the binary with a deadline, pick free ports,
//! read the JSON report, find sipp.
#![allow(dead_code)]

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_sipshard-load");

/// The workspace's own `target/<profile>/sipshard`, which `cargo test --workspace` builds.
pub fn sipshard_bin() -> PathBuf {
    // CARGO_BIN_EXE_sipshard-load sits next to the proxy binary in target/<profile>/.
    let bin = PathBuf::from(BIN).parent().unwrap().join("sipshard");
    assert!(
        bin.is_file(),
        "{} is missing: build the workspace first",
        bin.display()
    );
    bin
}

/// A run of the binary that is killed if it outlives `limit`.
pub fn run(args: &[&str], limit: Duration) -> Output {
    let child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sipshard-load");
    wait_with_deadline(child, limit, "sipshard-load")
}

/// Run with `-q --json <file>` appended; returns the output and the report (panics with the
/// output when no report was written).
pub fn run_json(name: &str, args: &[&str], limit: Duration) -> (Output, serde_json::Value) {
    let dir = temp_dir(name);
    let json = dir.join("report.json");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-q", "--json", json.to_str().unwrap()]);
    let out = run(&all, limit);
    if !json.exists() {
        panic!("no report written\n{}", show(&out));
    }
    (out, read_json(&json))
}

/// Start a background process with captured output.
pub fn spawn(program: impl AsRef<std::ffi::OsStr>, args: &[&str], dir: &Path) -> Child {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

/// A child in its own process group, ended with the whole group (SIGTERM, then SIGKILL) when
/// dropped: daemons such as Kamailio fork workers that must not outlive the test.
pub struct Group(pub Child);

impl Group {
    pub fn spawn(mut cmd: Command) -> Group {
        use std::os::unix::process::CommandExt;
        Group(cmd.process_group(0).spawn().expect("spawn"))
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let pgid = self.0.id() as i32;
        // SAFETY: plain kill(2) on the process group we created.
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = self.0.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: as above; whatever is left of the group goes.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

pub fn wait_with_deadline(mut child: Child, limit: Duration, what: &str) -> Output {
    let start = Instant::now();
    loop {
        match child.try_wait().expect("try_wait") {
            Some(_) => return child.wait_with_output().expect("output"),
            None if start.elapsed() > limit => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("output");
                panic!(
                    "{what} did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

pub fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A base port with `n` consecutive free UDP ports on 127.0.0.1.
pub fn free_ports(n: u16) -> u16 {
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
    let mut x = seed;
    for _ in 0..200 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let base = 20000 + ((x >> 33) % 30000) as u16;
        let socks: Vec<_> = (0..n)
            .map_while(|i| UdpSocket::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if socks.len() == n as usize {
            return base;
        }
    }
    panic!("no block of {n} free UDP ports");
}

/// A fresh scratch directory, removed when dropped unless the test is failing (then it is kept
/// for a look and its path is printed). Unique per call, not just per name: the tests of one
/// file run in parallel in one process, and two of them sharing a name (`run_json` with the same
/// label) must not remove each other's reports.
pub struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("scratch directory kept: {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn temp_dir(name: &str) -> Scratch {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!(
        "sipshard-load-test-{}-{n}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Scratch(d)
}

pub fn read_json(p: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

pub fn u(v: &serde_json::Value, key: &str) -> u64 {
    let mut cur = v;
    for k in key.split('.') {
        cur = &cur[k];
    }
    cur.as_u64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v:#}"))
}

/// The sipp binary; these tests fail (never skip) without it.
pub fn sipp() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("sipp"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "sipp is not installed: these tests drive SIPp and must not pass without it. \
             Install it with `apt-get install -y sip-tester`."
        )
    })
}
