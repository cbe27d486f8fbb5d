//! Runs of the load generator, `sipshard-load`, as its own tests drive it: bounded in time,
//! judged by its exit status and its JSON report (`--json`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::proc::Proc;
use crate::scratch::Scratch;

/// The `sipshard-load` binary.
pub fn bin() -> PathBuf {
    crate::bin::bin("sipshard-load")
}

/// Run `sipshard-load ARGS -q --json FILE`, killed if it outlives `limit`; returns its output
/// and the report (panics with the output when no report was written). `name` labels the
/// scratch directory the report is written to.
pub fn run_json(name: &str, args: &[&str], limit: Duration) -> (Output, serde_json::Value) {
    let dir = Scratch::new(&format!("load-{name}"));
    let json = dir.join("report.json");
    let mut cmd = Command::new(bin());
    cmd.args(args).arg("-q").arg("--json").arg(&json);
    let out = Proc::spawn(&dir, "sipshard-load", &mut cmd).wait_output(limit);
    if !json.exists() {
        panic!("no report written\n{}", show(&out));
    }
    (out, read_json(&json))
}

/// A report read back from a file.
pub fn read_json(p: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

/// The number at `key` (`"latency_ms.invite_to_200.count"`: dots go down into objects).
pub fn u(v: &serde_json::Value, key: &str) -> u64 {
    let mut cur = v;
    for k in key.split('.') {
        cur = &cur[k];
    }
    cur.as_u64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v:#}"))
}

/// A finished run's status and output, for failure messages.
pub fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
