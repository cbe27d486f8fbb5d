//! Open-loop pacing: when each attempt is due, independent of any response.
//!
//! A closed-loop generator (send, wait, send) slows down exactly when the target does, so the
//! slow periods are sampled less and the reported latency looks better than what users see: the
//! "coordinated omission" problem. Here attempt `k` of the whole run is due at `start + k / rate`,
//! always. Worker `w` of `n` owns attempts `w, w + n, w + 2n, ...`, so the merged stream is the
//! exact global schedule. An attempt sent late keeps its scheduled time as the latency origin and
//! the lateness is recorded separately as the generator's own lag.

pub struct Pacer {
    /// Nanoseconds between this worker's attempts (`workers / rate`).
    interval: f64,
    /// Due time of this worker's first attempt, relative to the clock's origin.
    first: f64,
    /// Attempts due at or after this time are not part of the run.
    end: u64,
    next: u64,
}

impl Pacer {
    /// Schedule for worker `index` of `workers` at `rate` attempts per second (all workers
    /// together) from `start` to `end` (nanoseconds on the worker clock).
    pub fn new(rate: f64, workers: usize, index: usize, start: u64, end: u64) -> Pacer {
        let global = 1e9 / rate;
        Pacer {
            interval: global * workers as f64,
            first: start as f64 + global * index as f64,
            end,
            next: 0,
        }
    }

    /// A pacer that never fires (answer-only runs).
    pub fn idle() -> Pacer {
        Pacer {
            interval: 1.0,
            first: 0.0,
            end: 0,
            next: 0,
        }
    }

    /// When the next attempt is due, `None` once the schedule is over.
    #[inline]
    pub fn next_due(&self) -> Option<u64> {
        let t = (self.first + self.interval * self.next as f64) as u64;
        (t < self.end).then_some(t)
    }

    /// Take the next attempt if it is due by `now`: returns its scheduled time.
    #[inline]
    pub fn take_due(&mut self, now: u64) -> Option<u64> {
        let t = self.next_due()?;
        if t <= now {
            self.next += 1;
            Some(t)
        } else {
            None
        }
    }

    /// Stop the schedule now (signal or abort): no attempt after `now` is due.
    pub fn stop(&mut self, now: u64) {
        self.end = self.end.min(now);
    }

    pub fn done(&self) -> bool {
        self.next_due().is_none()
    }

    /// Attempts taken so far.
    pub fn taken(&self) -> u64 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_interleave_into_the_global_schedule() {
        // 1000/s over 10 ms with 3 workers: 10 attempts, due at 0, 1, 2 ... 9 ms.
        let mut all = Vec::new();
        for w in 0..3 {
            let mut p = Pacer::new(1000.0, 3, w, 0, 10_000_000);
            while let Some(t) = p.take_due(u64::MAX) {
                all.push(t);
            }
            assert!(p.done());
        }
        all.sort();
        let want: Vec<u64> = (0..10).map(|k| k * 1_000_000).collect();
        assert_eq!(all, want);
    }

    #[test]
    fn nothing_is_due_early_and_late_attempts_keep_their_time() {
        let mut p = Pacer::new(100.0, 1, 0, 5_000_000, 1_000_000_000);
        assert_eq!(p.take_due(4_999_999), None);
        assert_eq!(p.take_due(5_000_000), Some(5_000_000));
        // The generator stalled for 35 ms: three attempts are due, each with its own time.
        assert_eq!(p.take_due(50_000_000), Some(15_000_000));
        assert_eq!(p.take_due(50_000_000), Some(25_000_000));
        assert_eq!(p.take_due(50_000_000), Some(35_000_000));
        assert_eq!(p.take_due(50_000_000), Some(45_000_000));
        assert_eq!(p.take_due(50_000_000), None);
        p.stop(50_000_000);
        assert!(p.done());
        assert_eq!(p.taken(), 5);
        assert!(Pacer::idle().done());
    }
}
