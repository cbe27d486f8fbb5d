//! `find-max`: the highest rate a target holds for a whole trial with zero failures, searched
//! the way RFC 7502 (SIP benchmarking methodology, section 4.9 and appendix A) describes: trials
//! of fixed duration, the rate raised until a trial fails, then bisected between the last clean
//! and the first failed rate.
//!
//! A trial only counts against the target if the generator kept its schedule. When the
//! generator itself falls behind (lag p99 above `--max-lag-ms`, its own sockets dropped
//! datagrams, or the schedule took longer than planned), the result says the generator was the
//! limit, not the target. Unless datagrams were lost beyond the generator first: a target that
//! drops datagrams makes the generator resend them, and a generator busy resending may then
//! fall behind too; the limit reached is still the target's.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::cli::SearchArgs;
use crate::config::{Config, Role};
use crate::engine;
use crate::report::Report;

#[derive(Serialize, Debug, Clone)]
pub struct Trial {
    pub rate: f64,
    pub achieved_rate: f64,
    pub attempted: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub retransmissions: u64,
    pub latency_p99_ms: f64,
    pub generator_lag_p99_ms: f64,
    pub generator_rx_lag_p99_ms: f64,
    pub generator_kept_schedule: bool,
    pub generator_socket_drops: u64,
    pub loss_beyond_generator: bool,
    pub clean: bool,
    pub error: Option<String>,
}

impl Trial {
    /// The trial failed because of the generator, so it says nothing about the target. (A
    /// clean trial kept its schedule, so this is never true of one.)
    fn generator_limited(&self) -> bool {
        !self.generator_kept_schedule && !self.loss_beyond_generator
    }
}

#[derive(Serialize, Debug, Clone)]
pub struct SearchReport {
    pub scenario: &'static str,
    pub target: Option<String>,
    pub trial_duration_s: f64,
    /// Highest rate held with zero failures (None: not even the lowest rate tried).
    pub max_clean_rate: Option<f64>,
    /// Lowest rate that was not clean.
    pub first_unclean_rate: Option<f64>,
    /// The search stopped because the generator, not the target, could not keep up.
    pub generator_limited: bool,
    pub verdict: String,
    pub trials: Vec<Trial>,
}

fn main_p99(r: &Report) -> f64 {
    let key = match r.scenario {
        "register" => "register_to_200",
        "options" => "options_to_200",
        _ => "invite_to_200",
    };
    r.latency_ms.get(key).map_or(0.0, |p| p.p99)
}

pub fn find_max(
    base: &Config,
    s: &SearchArgs,
    stop: Arc<AtomicBool>,
) -> Result<SearchReport, String> {
    if base.role == Role::UasOnly {
        return Err("find-max needs a calling side (not --uas-only)".into());
    }
    let mut cfg = base.clone();
    cfg.json = None;
    cfg.csv = None;
    cfg.hgrm = None;
    let mut trials: Vec<Trial> = Vec::new();
    let mut lo: Option<f64> = None;
    let mut hi: Option<(f64, bool)> = None; // (rate, generator was the limit)
    let mut rate = base.rate.min(s.max_rate);
    let precision = s.precision.max(0.1) / 100.0;
    eprintln!(
        "find-max {}: trials of {:.1} s, from {rate}/s, growth x{}, precision {}%",
        base.scenario.name(),
        base.duration_ns as f64 / 1e9,
        s.growth,
        s.precision
    );
    for n in 0..s.max_trials {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if n > 0 {
            let last_clean = trials.last().is_some_and(|t: &Trial| t.clean);
            let rest = if last_clean {
                s.cooldown
            } else {
                s.settle.max(s.cooldown)
            };
            std::thread::sleep(Duration::from_secs_f64(rest));
        }
        cfg.rate = rate;
        let out = engine::run(&cfg, stop.clone())?;
        // Bind the same ports next time: the registrations made through the target stay valid.
        cfg.fixed_ports = out.ports.clone();
        let r = Report::new(&cfg, &out, s.max_lag_ms);
        let slow = s.max_latency_ms.is_some_and(|max| main_p99(&r) > max);
        let clean = r.failed == 0
            && !slow
            && r.attempted > 0
            && r.generator_kept_schedule
            && r.error.is_none();
        let t = Trial {
            rate,
            achieved_rate: r.achieved_rate,
            attempted: r.attempted,
            succeeded: r.succeeded,
            failed: r.failed,
            retransmissions: r.retransmissions,
            latency_p99_ms: main_p99(&r),
            generator_lag_p99_ms: r.generator_lag_ms.p99,
            generator_rx_lag_p99_ms: r.generator_rx_lag_ms.p99,
            generator_kept_schedule: r.generator_kept_schedule,
            generator_socket_drops: r.generator_socket_drops,
            loss_beyond_generator: r.loss_beyond_generator,
            clean,
            error: r.error.clone(),
        };
        eprintln!(
            "trial {:>2}: rate {:>9.1}/s achieved {:>9.1}/s  attempted {:>8} failed {:>6} rtx {:>6}  p99 {:>8.2} ms  lag p99 send {:>7.2} recv {:>7.2} ms  {}",
            n + 1,
            t.rate,
            t.achieved_rate,
            t.attempted,
            t.failed,
            t.retransmissions,
            t.latency_p99_ms,
            t.generator_lag_p99_ms,
            t.generator_rx_lag_p99_ms,
            if clean {
                "clean"
            } else if t.generator_limited() {
                "GENERATOR BEHIND"
            } else if !t.generator_kept_schedule {
                "LOSS AT TARGET"
            } else if slow && t.failed == 0 {
                "TOO SLOW"
            } else {
                "FAILED"
            }
        );
        trials.push(t.clone());
        if let Some(e) = &t.error {
            if t.attempted == 0 {
                return Err(e.clone());
            }
        }
        if clean {
            lo = Some(lo.map_or(rate, |l: f64| l.max(rate)));
        } else if hi.map_or(true, |(h, _)| rate < h) {
            hi = Some((rate, t.generator_limited()));
        }
        rate = match hi {
            None => {
                if rate >= s.max_rate {
                    break;
                }
                (rate * s.growth).min(s.max_rate)
            }
            Some((h, _)) => {
                let l = lo.unwrap_or(0.0);
                if h - l <= precision * h {
                    break;
                }
                ((l + h) / 2.0).round().max(1.0)
            }
        };
        if trials.iter().any(|t| t.rate == rate) {
            break;
        }
    }
    let generator_limited = hi.is_some_and(|(_, g)| g);
    let verdict = match (lo, hi) {
        (Some(l), None) => format!("clean at every rate tried, up to {l}/s (raise --max-rate)"),
        (Some(l), Some((h, true))) => format!(
            "highest clean rate {l}/s; at {h}/s the GENERATOR could not keep its schedule, so the \
             target's limit was not reached (give the generator more threads or cores)"
        ),
        (Some(l), Some((h, false))) => {
            format!(
                "highest clean rate {l}/s; at {h}/s the target failed attempts, lost datagrams \
                 or was too slow"
            )
        }
        (None, Some((h, true))) => format!(
            "no clean rate: the generator could not keep even {h}/s (lower --rate or add threads)"
        ),
        (None, Some((h, false))) => format!("no clean rate: attempts failed even at {h}/s"),
        (None, None) => "no trial completed".to_string(),
    };
    Ok(SearchReport {
        scenario: base.scenario.name(),
        target: base.target.map(|t| t.to_string()),
        trial_duration_s: base.duration_ns as f64 / 1e9,
        max_clean_rate: lo,
        first_unclean_rate: hi.map(|(h, _)| h),
        generator_limited,
        verdict,
        trials,
    })
}
