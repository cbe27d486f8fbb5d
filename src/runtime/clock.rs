//! The runtime's clock: the core is handed the time, it never reads one.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::location::Now;

/// The wall clock in nanoseconds, the clock of the kernel's receive timestamps.
pub fn wall_clock_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The wall clock as the core wants it.
pub fn now() -> Now {
    Now::from_unix_ns(wall_clock_ns())
}
