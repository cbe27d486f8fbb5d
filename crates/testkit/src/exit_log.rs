//! The counters sipshard logs per shard when it stops (at level info), read back from the log
//! that [`crate::Proxy::stop`] returns: what the proxy itself counted, as opposed to what the
//! peers saw.

/// The per-shard auth counters: ok, challenges, stale, failed, malformed, forbidden, reloads.
pub fn auth_per_shard(log: &str) -> Vec<[u64; 7]> {
    log.lines()
        .filter_map(|l| {
            let rest = &l[l.find(": auth ")? + 7..];
            let mut out = [0u64; 7];
            for (i, part) in rest.split(", ").enumerate().take(7) {
                out[i] = part.split_whitespace().next()?.parse().ok()?;
            }
            Some(out)
        })
        .collect()
}

/// [`auth_per_shard`] summed over the shards.
pub fn auth_totals(log: &str) -> [u64; 7] {
    let mut t = [0u64; 7];
    for s in auth_per_shard(log) {
        for (a, b) in t.iter_mut().zip(s) {
            *a += b;
        }
    }
    t
}

/// `(shard id, datagrams received)` from the "shard N: X received, ..." lines.
pub fn shard_receive_counts(log: &str) -> Vec<(usize, u64)> {
    log.lines()
        .filter_map(|l| {
            // logfmt: ... msg="shard 0: 18008 received, ..."
            let rest = &l[l.find("msg=\"shard ")? + 11..];
            let (id, rest) = rest.split_once(": ")?;
            let (n, _) = rest.split_once(" received")?;
            Some((id.parse().ok()?, n.parse().ok()?))
        })
        .collect()
}

/// The totals over the shards: (received, sent, replies, dropped).
pub fn sipshard_totals(log: &str) -> (u64, u64, u64, u64) {
    let mut t = (0, 0, 0, 0);
    for l in log.lines() {
        // logfmt: ... msg="shard 0: 18008 received, 18000 sent, 8 replies, 0 dropped"
        let Some(at) = l.find("msg=\"shard ") else {
            continue;
        };
        let nums: Vec<u64> = l[at..]
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        if nums.len() >= 5 && l.contains(" received, ") && l.contains(" replies, ") {
            t.0 += nums[1];
            t.1 += nums[2];
            t.2 += nums[3];
            t.3 += nums[4];
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_lines() {
        let log = "level=info msg=\"shard 0: 18008 received, 18000 sent, 8 replies, 0 dropped\"\n\
                   level=info msg=\"shard 1: 2 received, 1 sent, 1 replies, 3 dropped\"\n\
                   level=info msg=\"shard 1: auth 5 ok, 6 challenges, 0 stale, 1 failed, 0 malformed, 0 forbidden, 2 reloads\"\n";
        assert_eq!(shard_receive_counts(log), [(0, 18008), (1, 2)]);
        assert_eq!(sipshard_totals(log), (18010, 18001, 9, 3));
        assert_eq!(auth_totals(log), [5, 6, 0, 1, 0, 0, 2]);
    }
}
