//! Kamailio, a SIP proxy and registrar written by others: the second proxy of a two-proxy
//! flow, and the reference the load generator's calls go through. Run in the foreground with
//! its workers (`-DD`), logging to stderr (`-E`), every file it writes in the scratch
//! directory; its [`Proc`] ends all of them with the process group.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{require, INSTALL_HINT};
use crate::client::SipClient;
use crate::poll::eventually;
use crate::proc::Proc;

/// A running Kamailio.
pub struct Kamailio {
    /// Where it listens (what the configuration says; the caller tells [`Kamailio::start`]).
    pub addr: SocketAddr,
    pub proc: Proc,
}

impl Kamailio {
    /// Start `kamailio -f CFG ARGS` in `dir` and return once it answers an OPTIONS to
    /// 127.0.0.1:`port` (the configuration must answer OPTIONS without a user with 200).
    pub fn start(dir: &Path, cfg: &Path, port: u16, args: &[&str]) -> Kamailio {
        let kamailio = require("kamailio");
        let mut cmd = Command::new(kamailio);
        cmd.arg("-f")
            .arg(cfg)
            // Stay in the foreground (children too), log to stderr, keep every file in the
            // scratch directory.
            .args(["-DD", "-E"])
            .arg("-w")
            .arg(dir)
            .arg("-Y")
            .arg(dir)
            .arg("-P")
            .arg(dir.join("kamailio.pid"))
            .args(args);
        let mut proc = Proc::spawn(dir, "kamailio", &mut cmd);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let probe = SipClient::new();
        let up = eventually(Duration::from_secs(20), || {
            proc.try_status().is_some()
                || probe
                    .options(addr, Duration::from_millis(300))
                    .is_some_and(|r| r.status == 200)
        });
        assert!(
            up && proc.try_status().is_none(),
            "Kamailio did not come up on {addr}:\n{}",
            proc.output_tail(4000)
        );
        Kamailio { addr, proc }
    }

    /// Everything it has logged so far.
    pub fn log(&self) -> String {
        self.proc.stderr_text()
    }

    /// The ends of its output, for failure messages.
    pub fn output_tail(&self, max: usize) -> String {
        self.proc.output_tail(max)
    }

    /// Stop it and its workers, and return everything it logged.
    pub fn stop(&mut self) -> String {
        self.proc.stop(Duration::from_secs(3));
        self.log()
    }
}

/// The file of Kamailio's module `name` (`"tls"`: `tls.so`) in [`module_dir`]. Some modules come
/// in packages of their own (Debian's `kamailio-tls-modules` brings `tls.so`): a missing one
/// fails the test saying to install `package`, as [`require`] does for a missing program.
pub fn require_module(name: &str, package: &str) -> PathBuf {
    let file = Path::new(&module_dir()).join(format!("{name}.so"));
    assert!(
        file.is_file(),
        "Kamailio's {name} module ({}) not found: run scripts/test.sh or apt-get install -y {package}",
        file.display()
    );
    file
}

/// The directory holding Kamailio's modules (Debian's, or the one next to the binary), for a
/// configuration's `mpath`.
pub fn module_dir() -> String {
    let candidates = [
        "/usr/lib/x86_64-linux-gnu/kamailio/modules",
        "/usr/lib/aarch64-linux-gnu/kamailio/modules",
        "/usr/lib64/kamailio/modules",
        "/usr/lib/kamailio/modules",
        "/usr/local/lib64/kamailio/modules",
        "/usr/local/lib/kamailio/modules",
    ];
    candidates
        .iter()
        .find(|d| Path::new(d).join("tm.so").exists())
        .map(|d| d.to_string())
        .unwrap_or_else(|| panic!("Kamailio's modules (tm.so) not found: {INSTALL_HINT}"))
}
