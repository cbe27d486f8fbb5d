//! Per-source flood protection (`--pike RATE`), after Kamailio's pike module.
//!
//! Each shard counts the requests of every source address in fixed one-second windows. A source
//! that sends more than its rate in a window is blocked for a cool-down: its datagrams are
//! dropped before parsing (counted as `flood`), and the block is logged once. The table is
//! bounded; idle sources are forgotten by [`Pike::prune`].
//!
//! The count is per shard. With `--steering flow` one source's traffic stays on one shard, so
//! the rate is the source's rate; with `--steering random` it is spread, so the runtime divides
//! the configured rate by the number of shards.

use std::net::IpAddr;

use ahash::AHashMap;

/// At most this many sources are tracked per shard; beyond it new sources are not limited
/// until the next prune (a flood of spoofed addresses must not exhaust memory).
pub const MAX_SOURCES: usize = 1 << 20;

#[derive(Clone, Copy, Debug)]
struct Source {
    window_start_ms: u64,
    count: u32,
    blocked_until_ms: u64,
}

/// What to do with a request from a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Dropped; `newly` is true for the request that triggered the block (log it once).
    Block {
        newly: bool,
    },
}

#[derive(Clone, Debug)]
pub struct Pike {
    rate: u32,
    cooldown_ms: u64,
    sources: AHashMap<IpAddr, Source>,
}

impl Pike {
    pub fn new(rate_per_sec: u32, cooldown_secs: u64) -> Pike {
        Pike {
            rate: rate_per_sec.max(1),
            cooldown_ms: cooldown_secs * 1000,
            sources: AHashMap::new(),
        }
    }

    pub fn check(&mut self, ip: IpAddr, now_ms: u64) -> Verdict {
        if self.sources.len() >= MAX_SOURCES && !self.sources.contains_key(&ip) {
            return Verdict::Allow;
        }
        let s = self.sources.entry(ip).or_insert(Source {
            window_start_ms: now_ms,
            count: 0,
            blocked_until_ms: 0,
        });
        if now_ms < s.blocked_until_ms {
            return Verdict::Block { newly: false };
        }
        if now_ms.saturating_sub(s.window_start_ms) >= 1000 {
            s.window_start_ms = now_ms;
            s.count = 0;
        }
        s.count += 1;
        if s.count > self.rate {
            s.blocked_until_ms = now_ms + self.cooldown_ms;
            return Verdict::Block { newly: true };
        }
        Verdict::Allow
    }

    /// Forget sources that are neither blocked nor seen in the last window.
    pub fn prune(&mut self, now_ms: u64) {
        self.sources.retain(|_, s| {
            now_ms < s.blocked_until_ms || now_ms.saturating_sub(s.window_start_ms) < 2000
        });
    }

    pub fn tracked(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_over_rate_for_the_cooldown_then_forgets() {
        let mut p = Pike::new(10, 5);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for i in 0..10 {
            assert_eq!(p.check(a, 1000 + i), Verdict::Allow);
        }
        assert_eq!(p.check(a, 1010), Verdict::Block { newly: true });
        assert_eq!(p.check(a, 1500), Verdict::Block { newly: false });
        assert_eq!(p.check(b, 1500), Verdict::Allow, "other sources are served");
        assert_eq!(p.check(a, 5_900), Verdict::Block { newly: false });
        assert_eq!(p.check(a, 6_020), Verdict::Allow, "cool-down over");
        p.prune(20_000);
        assert_eq!(p.tracked(), 0);
    }
}
