//! Child processes that never outlive their test.
//!
//! Every process a test starts (sipshard, SIPp, Kamailio, sipsak, the load generator) is put in
//! a process group of its own, with stdout and stderr in files of a scratch directory. Dropping
//! its [`Proc`], also while unwinding from a failed assertion, ends the whole group: SIGTERM,
//! then SIGKILL (Kamailio forks workers, which must go too). If the test thread dies without
//! dropping it, the child gets SIGTERM from the kernel (`PR_SET_PDEATHSIG`). When the test is
//! failing, the drop names the output files and prints the end of stderr (for sipshard, its
//! log), since the scratch directory they are in is kept.
//!
//! Output goes to files rather than pipes: nobody has to read a pipe while the test runs, so a
//! chatty process can never block on a full one, and the files are there to read afterwards.

use std::fs;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::text::{read_lossy, tail};

/// A child process in a process group of its own.
pub struct Proc {
    pub name: String,
    child: Child,
    /// Set once the leader has been reaped; from then on its group is never signalled (the id
    /// could be reused), which is why [`Proc::wait_timeout`] is only for programs that start no
    /// children of their own (SIPp, sipsak, sipshard, the load generator).
    status: Option<ExitStatus>,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Proc {
    /// Start `cmd` in `dir` (its working directory too), output in `NAME.stdout` and
    /// `NAME.stderr` there (`NAME-2.*` and so on when the name is taken: a test may restart a
    /// program).
    pub fn spawn(dir: &Path, name: &str, cmd: &mut Command) -> Proc {
        let name = (1..)
            .map(|i| match i {
                1 => name.to_string(),
                i => format!("{name}-{i}"),
            })
            .find(|n| !dir.join(format!("{n}.stderr")).exists())
            .expect("an unused name");
        let stdout = dir.join(format!("{name}.stdout"));
        let stderr = dir.join(format!("{name}.stderr"));
        let out = fs::File::create(&stdout).expect("create stdout file");
        let err = fs::File::create(&stderr).expect("create stderr file");
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .current_dir(dir)
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
            name,
            child,
            status: None,
            stdout,
            stderr,
        }
    }

    /// The process id (also its process group's id).
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Send `sig` (e.g. `libc::SIGHUP`) to the process itself, not its group.
    pub fn signal(&self, sig: i32) {
        if self.status.is_none() {
            // SAFETY: plain kill(2) on our own child, not yet reaped.
            unsafe {
                libc::kill(self.pid(), sig);
            }
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

    /// Wait up to `limit` for the process to end by itself and return what it wrote; fails the
    /// test with that output if it is still running then.
    pub fn wait_output(&mut self, limit: Duration) -> Output {
        let Some(status) = self.wait_timeout(limit) else {
            self.stop(Duration::from_secs(2));
            panic!(
                "{} did not finish within {limit:?}\n{}",
                self.name,
                self.output_tail(4000)
            );
        };
        Output {
            status,
            stdout: fs::read(&self.stdout).unwrap_or_default(),
            stderr: fs::read(&self.stderr).unwrap_or_default(),
        }
    }

    fn signal_group(&self, sig: i32) {
        if self.status.is_none() {
            // The leader is not reaped yet, so its pid (= the group id) is still ours.
            // SAFETY: plain syscall on a process group we created.
            unsafe {
                libc::kill(-self.pid(), sig);
            }
        }
    }

    /// SIGTERM the group, wait up to `grace` for the leader, then SIGKILL the group. Returns
    /// the leader's status.
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

    /// SIGKILL the group at once: no chance to flush anything.
    pub fn kill(&mut self) -> ExitStatus {
        self.stop(Duration::ZERO)
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
        if std::thread::panicking() {
            eprintln!(
                "{}: output kept in {} and {}; the end of stderr:\n{}",
                self.name,
                self.stdout.display(),
                self.stderr.display(),
                tail(&self.stderr_text(), 4000)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scratch;

    #[test]
    fn the_whole_group_ends_on_drop() {
        let dir = Scratch::new("kit-proc");
        let pid_file = dir.join("grandchild.pid");
        let script = format!("sleep 60 & echo $! > {}; wait", pid_file.display());
        let p = Proc::spawn(&dir, "sh", Command::new("sh").args(["-c", &script]));
        let written = || read_lossy(&pid_file).trim().parse::<i32>().ok();
        assert!(crate::eventually(Duration::from_secs(5), || written().is_some()));
        let grandchild = written().unwrap();
        drop(p);
        // Gone, or a zombie waiting for whoever adopted it to reap it.
        let gone = crate::eventually(Duration::from_secs(5), || {
            let stat = fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
            match stat.rsplit_once(") ") {
                None => true,
                Some((_, state)) => state.starts_with('Z'),
            }
        });
        assert!(gone, "the grandchild {grandchild} outlived its group");
    }

    #[test]
    fn output_goes_to_named_files() {
        let dir = Scratch::new("kit-proc-output");
        let mut p = Proc::spawn(
            &dir,
            "echo",
            Command::new("sh").args(["-c", "echo out; echo err >&2"]),
        );
        let out = p.wait_output(Duration::from_secs(10));
        assert!(out.status.success());
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(p.stderr_text(), "err\n");
        let again = Proc::spawn(&dir, "echo", &mut Command::new("true"));
        assert_eq!(again.name, "echo-2");
    }
}
