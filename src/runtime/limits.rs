//! Limits of the process that the executors need, checked before anything is bound: a node
//! that cannot start its shards says so at once, with how to fix it, instead of logging that
//! it listens and then failing on the first shard.

/// glommio refuses to start an executor when the locked-memory limit is below this (its
/// io_uring rings and registered buffers are locked memory: `MIN_MEMLOCK_LIMIT` in glommio's
/// reactor).
pub const MIN_MEMLOCK: u64 = 512 * 1024;

/// Whether RLIMIT_MEMLOCK lets the executors start.
pub fn check_memlock() -> Result<(), String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; nothing else is touched.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        // Unknown: let glommio decide (and report) at start.
        return Ok(());
    }
    memlock_enough(limit.rlim_cur)
}

fn memlock_enough(current: u64) -> Result<(), String> {
    if current == libc::RLIM_INFINITY || current >= MIN_MEMLOCK {
        return Ok(());
    }
    Err(format!(
        "the locked-memory limit is {} KiB; io_uring needs at least {} KiB per process: raise \
         it with `ulimit -l {}` (or more) in the starting shell, LimitMEMLOCK= in the systemd \
         unit (scripts/sipshard.service sets infinity), or a memlock line in \
         /etc/security/limits.conf",
        current / 1024,
        MIN_MEMLOCK / 1024,
        MIN_MEMLOCK / 1024 * 16
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_glommios_minimum_is_refused_with_the_fix() {
        let e = memlock_enough(64 * 1024).unwrap_err();
        assert!(e.contains("is 64 KiB"), "{e}");
        assert!(e.contains("ulimit -l 8192"), "{e}");
        assert!(memlock_enough(MIN_MEMLOCK).is_ok());
        assert!(memlock_enough(libc::RLIM_INFINITY).is_ok());
    }
}
