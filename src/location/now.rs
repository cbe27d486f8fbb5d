//! The time as the sans-I/O core sees it.

/// The wall-clock time, passed in by the runtime (the core never reads a clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Now {
    pub unix_ms: u64,
}

impl Now {
    /// From nanoseconds since the Unix epoch (the kernel's receive timestamps' clock).
    pub fn from_unix_ns(unix_ns: u64) -> Now {
        Now {
            unix_ms: unix_ns / 1_000_000,
        }
    }

    pub fn secs(self) -> u64 {
        self.unix_ms / 1000
    }
}
