//! Waiting for something that happens asynchronously (replication between shards, a peer
//! coming up, a line in a log) without sleeping for a fixed, hopeful time.

use std::time::{Duration, Instant};

/// Poll `probe` every 100 ms for up to `limit`; true once it returns true.
pub fn eventually(limit: Duration, probe: impl FnMut() -> bool) -> bool {
    eventually_every(limit, Duration::from_millis(100), probe)
}

/// Poll `probe` every `every` for up to `limit`; true once it returns true.
pub fn eventually_every(limit: Duration, every: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if probe() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}
