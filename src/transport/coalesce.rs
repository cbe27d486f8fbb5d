//! Receive coalescing: when datagrams arrive at a moderate rate, wait a little after a batch so
//! that the next wake-up takes several of them instead of one.
//!
//! Why: a shard that parks its executor whenever its socket is empty pays a full park and
//! wake-up of glommio per datagram at moderate rates (on the 2-core VMs this was measured on,
//! some 30-40 µs of CPU per wake-up: io_uring submissions for the rings and preemption timers,
//! a membarrier, the context switches; see docs/benchmarks-forwarding.md), several times what
//! forwarding the datagram costs. Under heavy load the batches fill and nothing waits; with no
//! load nothing waits either. In between, waiting up to `window` caps the wake-ups at about
//! one per window, at the price of up to `window` of added latency, the trade network cards
//! make with interrupt moderation.
//!
//! The wait is only taken when it pays: when the recent arrival rate promises at least
//! [`MIN_EXPECTED`] datagrams within it. Below that a timer wake-up would often find nothing
//! and be followed by the receive wake-up it was meant to save. And it is never longer than a
//! full batch takes to arrive at that rate, since one wake-up takes at most a batch anyway.
//!
//! On a shard with one UDP listener and no stream connection open, the wait keeps the shard's
//! thread in the kernel, not a glommio timer: with the multishot receive one `io_uring_enter` on
//! the listener's ring that sleeps to the end of the wait and then does the receives
//! (`udp_ring::Intake::wait_in_ring`), on the recvmmsg path one `nanosleep` ([`pause`]). A
//! glommio timer parks the executor, and glommio's park is
//! eight system calls (io_uring submissions to its three rings for the preemption and user
//! timers, a `membarrier` for its remote wakers, the wait, the re-arming after it; counted with
//! `strace -f` at 10,000 datagrams/s), which made the wait cost as much as the wake-up it saves.
//! With the thread asleep, one wake-up is three system calls (the sleep, recvmmsg, sendmmsg;
//! two on the ring: its wait and the sendmmsg),
//! and the shard's CPU per forwarded datagram at 10,000/s fell from 16.5-17.5 µs to
//! 8.9-10.3 µs in the same runs (docs/benchmarks-forwarding.md). Meanwhile the shard's other
//! tasks (timers, what other shards hand it) run only when the receive loop yields, on
//! glommio's preemption timer: every 5 ms on a shard (`runtime::SHARD_PREEMPT`).
//!
//! That is too late for connections: their reads and writes take several executor turns
//! each, and a TCP round trip through a shard coalescing 10,000 datagrams/s took 7 ms at the
//! median with a 2 ms period (280 ms at the 90th percentile with glommio's default 100 ms),
//! against 0.14 ms when the wait parks the executor. It is too late for a second UDP
//! listener's receive loop too (one turn per period would cap it at a batch per period). So
//! while the shard has a TCP or TLS connection open, or more than one UDP listener, the wait is
//! a glommio timer as before, and the executor serves the others during it.
//!
//! The default window (500 µs, `--rx-coalesce-us`) keeps the wake-up cost per datagram below
//! the forwarding cost itself from about 10,000 datagrams/s per shard up (some 4-5 datagrams
//! per wake-up at that rate), for at most half a millisecond of added latency: nothing next to
//! SIP's timers (T1 = 500 ms) or a network round trip.

use std::time::{Duration, Instant};

/// Wait `wait` with the shard's thread asleep (see the module's documentation for why the
/// executor is not parked instead). `wait` is at most the coalescing window, which the
/// configuration bounds (`--rx-coalesce-us`, at most 100 ms).
pub fn pause(wait: Duration) {
    std::thread::sleep(wait);
}

/// Wait out the coalescing `wait` a receive loop decided on after a batch: on glommio's timer
/// while the shard's executor has others to serve (`shares_the_executor`), else with the thread
/// held by `hold`, the loop's own cheap wait ([`pause`], or one entry into the listener's ring),
/// which blocks the executor: nothing else of the shard runs until it is over.
pub async fn wait_out(wait: Duration, shares_the_executor: bool, hold: impl FnOnce(Duration)) {
    if shares_the_executor {
        glommio::timer::sleep(wait).await;
    } else {
        hold(wait);
    }
}

/// How long one measurement of the arrival rate lasts at least.
const RATE_PERIOD: Duration = Duration::from_millis(1);

/// Datagrams expected within the window for waiting to be worth a timer wake-up.
pub const MIN_EXPECTED: f64 = 1.5;

/// Per receive loop: the recent arrival rate and the decision to wait.
#[derive(Debug)]
pub struct Coalescer {
    window: Duration,
    batch: usize,
    since: Instant,
    seen: u64,
    /// Datagrams per second over the last completed period.
    rate: f64,
}

impl Coalescer {
    /// `window` zero turns coalescing off; `batch` is the most datagrams one receive takes.
    pub fn new(window: Duration, batch: usize, now: Instant) -> Coalescer {
        Coalescer {
            window,
            batch,
            since: now,
            seen: 0,
            rate: 0.0,
        }
    }

    /// The arrival rate as last measured (datagrams per second).
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Account for a batch of `count` datagrams taken at `now` (`full`: the batch was as large
    /// as it can be, so more are probably queued). Returns how long to wait before the next
    /// receive, or `None` to receive (or park) at once.
    pub fn after_batch(&mut self, count: usize, full: bool, now: Instant) -> Option<Duration> {
        self.seen += count as u64;
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed >= RATE_PERIOD {
            self.rate = self.seen as f64 / elapsed.as_secs_f64();
            self.seen = 0;
            self.since = now;
        }
        if self.window.is_zero() || full || self.rate <= 0.0 {
            return None;
        }
        let fill = Duration::from_secs_f64(self.batch as f64 / self.rate);
        let wait = self.window.min(fill);
        (self.rate * wait.as_secs_f64() >= MIN_EXPECTED).then_some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed batches of `per_batch` every `gap`, for `n` batches; return the last decision.
    fn feed(
        c: &mut Coalescer,
        t: &mut Instant,
        gap: Duration,
        per_batch: usize,
        n: usize,
    ) -> Option<Duration> {
        let mut last = None;
        for _ in 0..n {
            *t += gap;
            last = c.after_batch(per_batch, false, *t);
        }
        last
    }

    #[test]
    fn off_when_window_is_zero() {
        let mut t = Instant::now();
        let mut c = Coalescer::new(Duration::ZERO, 32, t);
        assert_eq!(
            feed(&mut c, &mut t, Duration::from_micros(10), 4, 1000),
            None
        );
        assert!(c.rate() > 300_000.0);
    }

    #[test]
    fn waits_only_when_enough_arrivals_are_expected() {
        let window = Duration::from_micros(200);
        let mut t = Instant::now();
        // 20,000/s: 4 expected in 200 µs, so wait.
        let mut c = Coalescer::new(window, 32, t);
        assert_eq!(
            feed(&mut c, &mut t, Duration::from_micros(50), 1, 100),
            Some(window)
        );
        assert!((c.rate() - 20_000.0).abs() < 1_000.0, "{}", c.rate());
        // 2,000/s: 0.4 expected, so do not.
        let mut c = Coalescer::new(window, 32, t);
        assert_eq!(
            feed(&mut c, &mut t, Duration::from_micros(500), 1, 100),
            None
        );
        // The first batch after a long silence does not wait: the rate is not known yet.
        let mut c = Coalescer::new(window, 32, t);
        t += Duration::from_secs(10);
        assert_eq!(c.after_batch(1, false, t), None);
    }

    #[test]
    fn never_waits_longer_than_a_full_batch_takes() {
        let window = Duration::from_micros(500);
        let mut t = Instant::now();
        let mut c = Coalescer::new(window, 32, t);
        // 100,000/s: 32 arrive in 320 µs.
        let wait = feed(&mut c, &mut t, Duration::from_micros(100), 10, 100).unwrap();
        assert!(
            (310..=330).contains(&wait.as_micros()),
            "{wait:?} at {}/s",
            c.rate()
        );
        // 20,000/s: the window is shorter than the 1.6 ms a batch takes.
        let mut c = Coalescer::new(window, 32, t);
        assert_eq!(
            feed(&mut c, &mut t, Duration::from_micros(50), 1, 100),
            Some(window)
        );
    }

    #[test]
    fn a_full_batch_never_waits() {
        let window = Duration::from_micros(200);
        let mut t = Instant::now();
        let mut c = Coalescer::new(window, 32, t);
        feed(&mut c, &mut t, Duration::from_micros(50), 8, 100);
        t += Duration::from_micros(50);
        assert_eq!(c.after_batch(32, true, t), None);
        t += Duration::from_micros(50);
        assert_eq!(c.after_batch(8, false, t), Some(window));
    }
}
