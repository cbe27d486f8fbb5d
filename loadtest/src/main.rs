//! sipshard-load: an open-loop SIP load generator.
//!
//! See `sipshard-load --help`. The layout:
//!
//! - [`cli`], [`config`]: flags, and the checked configuration the engine runs.
//! - [`engine`]: worker threads, sockets (batched I/O), pacing, timers.
//! - [`uac`], [`uas`], [`register`], [`options`]: the SIP behaviour of each role.
//! - [`msg`], [`writer`], [`digest`]: message text, identifiers, digest answers.
//! - [`tls`]: the TLS client configuration of `--transport tls`.
//! - [`stats`], [`report`], [`search`]: what was measured, how it is shown, `find-max`.

mod cli;
mod config;
mod digest;
mod engine;
mod msg;
mod options;
mod register;
mod report;
mod search;
mod stats;
mod tls;
mod uac;
mod uas;
mod writer;

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;

use cli::{Cli, Cmd, FindMaxScenario};
use config::Config;
use report::{Report, DEFAULT_MAX_LAG_MS};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal exits at once; the first asks for a graceful stop.
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone());
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    match cli.cmd {
        Cmd::Register(a) => single(Config::register(&a), stop),
        Cmd::Call(a) => single(Config::call(&a), stop),
        Cmd::Options(a) => single(Config::options(&a), stop),
        Cmd::FindMax(f) => {
            let (cfg, search) = match f.scenario {
                FindMaxScenario::Call { call, search } => (Config::call(&call), search),
                FindMaxScenario::Register { register, search } => {
                    (Config::register(&register), search)
                }
                FindMaxScenario::Options { options, search } => (Config::options(&options), search),
            };
            let cfg = match cfg {
                Ok(c) => c,
                Err(e) => return usage_error(&e),
            };
            if cfg.handshakes_only() {
                return usage_error(
                    "--tls-handshakes-only runs flat out (closed loop): there is no rate to search",
                );
            }
            match search::find_max(&cfg, &search, stop) {
                Ok(r) => {
                    println!("find-max {}: {}", r.scenario, r.verdict);
                    if let Some(p) = &cfg.json {
                        if let Err(e) = report::write_json(p, &r) {
                            eprintln!("error: {e}");
                            return ExitCode::from(2);
                        }
                    }
                    if r.max_clean_rate.is_some() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn usage_error(e: &str) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}

/// Run one scenario; exit 0 when nothing failed, 1 when attempts failed, 2 on errors.
fn single(cfg: Result<Config, String>, stop: Arc<AtomicBool>) -> ExitCode {
    let cfg = match cfg {
        Ok(c) => c,
        Err(e) => return usage_error(&e),
    };
    let out = match engine::run(&cfg, stop) {
        Ok(o) => o,
        Err(e) => return usage_error(&e),
    };
    let report = Report::new(&cfg, &out, DEFAULT_MAX_LAG_MS);
    print!("{}", report.summary());
    if let Some(p) = &cfg.json {
        if let Err(e) = report::write_json(p, &report) {
            return usage_error(&e);
        }
    }
    if let Some(dir) = &cfg.hgrm {
        match report::write_hgrms(dir, &out) {
            Ok(files) => println!("  hgrm        {}", files.join(", ")),
            Err(e) => return usage_error(&e),
        }
    }
    if report.error.is_some() {
        ExitCode::from(2)
    } else if report.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
