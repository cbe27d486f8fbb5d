//! `sipshard`: flags -> configuration -> shards; `sipshard ctl ...`: the admin API's client.

use clap::Parser;

use sipshard::config::{Args, Command};

/// mimalloc rather than glibc's allocator: every location change is allocated on the shard that
/// made it and freed on another thread (the other shards, the admin API, the cluster peer, the
/// persister), and glibc pays for each such free with its arena lock and, for the large
/// buffers the cluster peer builds, by consolidating its bins: measured in the cluster peer
/// at high REGISTER rates, over half of its CPU (docs/cluster.md). mimalloc frees another
/// thread's block onto a lock-free list of its page.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// RFC 3339 UTC time with milliseconds.
fn humantime_now() -> String {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let (d, ms) = (since.as_secs(), since.subsec_millis());
    let (y, m, dd) = civil_from_days((d / 86_400) as i64);
    let rem = d % 86_400;
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn main() {
    let args = Args::parse();
    if let Some(Command::Ctl(ctl)) = &args.command {
        std::process::exit(sipshard::ctl::run(ctl));
    }
    let settings = match args.settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sipshard: {e}");
            std::process::exit(2);
        }
    };
    // logfmt on stderr: one event per line, `key=value`, easy to grep and to ship.
    // rustls logs what every peer does wrong (a renegotiation attempt, a bad alert) at warn: a
    // hostile client could fill the log with it. sipshard counts those failures itself
    // (tls_handshakes_total), so rustls speaks only at debug and below.
    let level = args.effective_log_level();
    let rustls_level = if level >= log::LevelFilter::Debug {
        level
    } else {
        level.min(log::LevelFilter::Error)
    };
    env_logger::Builder::new()
        .filter_level(level)
        .filter_module("rustls", rustls_level)
        .format(|out, record| {
            use std::io::Write;
            writeln!(
                out,
                "ts={} level={} target={} msg={:?}",
                humantime_now(),
                record.level().as_str().to_ascii_lowercase(),
                record.target(),
                record.args().to_string()
            )
        })
        .init();
    match sipshard::runtime::run(settings) {
        Ok(total) => {
            log::info!(
                "stopped: {} datagrams received, {} sent",
                total.datagrams_received,
                total.datagrams_sent
            );
        }
        Err(e) => {
            eprintln!("sipshard: {e}");
            std::process::exit(1);
        }
    }
}
