//! sipsak, a command-line SIP client written by others: OPTIONS pings and registrations, with
//! and without a password. It ends by itself (it retransmits for a bounded time), so a run is
//! one command with an exit code.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::require;
use crate::proc::Proc;

/// Run `sipsak ARGS` in `dir` (output in `NAME.stdout`, `NAME.stderr`), for at most 30 s;
/// returns its exit code (None if it had to be killed) and its output.
pub fn run<S: AsRef<std::ffi::OsStr>>(dir: &Path, name: &str, args: &[S]) -> (Option<i32>, String) {
    let program = require("sipsak");
    let mut cmd = Command::new(program);
    cmd.args(args);
    let mut p = Proc::spawn(dir, name, &mut cmd);
    let status = p.wait_timeout(Duration::from_secs(30));
    let out = format!("{}{}", p.stdout_text(), p.stderr_text());
    (status.and_then(|s| s.code()), out)
}
