//! SIPp runs: one agent per [`Proc`], its statistics, errors, final screens and (optionally)
//! every message in files of the scratch directory under fixed names, and the pieces of those
//! files the tests judge by (the last statistics row, the final screen's counters, the
//! messages as received).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use super::{require, SOCKET_BUFFER};
use crate::ports::wait_bound;
use crate::proc::Proc;
use crate::text::{read_lossy, tail};

/// One SIPp run.
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
    /// final screens, and with `trace_msg` every message) in `dir`.
    pub fn spawn<S: AsRef<std::ffi::OsStr>>(
        dir: &Path,
        name: &str,
        args: &[S],
        trace_msg: bool,
    ) -> Sipp {
        let sipp = require("sipp");
        let stat_file = dir.join(format!("{name}.stat.csv"));
        let error_file = dir.join(format!("{name}.errors.log"));
        let screen_file = dir.join(format!("{name}.screen.log"));
        let message_file = dir.join(format!("{name}.messages.log"));
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

    /// The final screens SIPp wrote when it ended.
    pub fn screens(&self) -> String {
        read_lossy(&self.screen_file)
    }

    /// The "Successful call" / "Failed call" lines of the final statistics screen.
    pub fn screen_call_lines(&self) -> Vec<String> {
        let screens = self.screens();
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

    /// Every message sent and received (with `trace_msg`).
    pub fn messages(&self) -> String {
        read_lossy(&self.message_file)
    }
}

/// The cumulative value of counter `name` ("Successful call", "Failed call") in the last
/// statistics screen of `screens`.
pub fn screen_counter(screens: &str, name: &str) -> Option<u64> {
    screens
        .lines()
        .rfind(|l| l.trim_start().starts_with(name))?
        .split('|')
        .nth(2)?
        .trim()
        .parse()
        .ok()
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
    /// Start it in `dir`. A uas is waited for until it has bound its port.
    pub fn start(&self, dir: &Path) -> Sipp {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_and_screens() {
        let csv = "StartTime;SuccessfulCall(C);FailedCall(C)\n\
                   t0;0;0\n\
                   t1;50;0\n";
        let out = SippOutcome {
            status: None,
            stats: last_stat_row(csv),
        };
        assert_eq!((out.successful(), out.failed()), (50, 0));
        let screen = "  Successful call        |        0                  |        4\n\
                      \x20 Failed call            |        0                  |        1\n\
                      \x20 Successful call        |        1                  |        5\n";
        assert_eq!(screen_counter(screen, "Successful call"), Some(5));
        assert_eq!(screen_counter(screen, "Failed call"), Some(1));
    }
}
