//! Helpers shared by the authentication tests: scratch directories and the per-shard auth
//! counters sipshard logs when it stops. Include with `#[path = "common/auth.rs"] mod auth_util;`.
#![allow(dead_code)]

use std::path::PathBuf;

/// A scratch directory (users files, SIPp logs), removed at the end of the test.
pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("sipshard-auth-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    /// Write `text` to `name`; returns the path as a string for the command line.
    pub fn file(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The per-shard auth counters from the log of a stopped proxy: ok, challenges, stale, failed,
/// malformed, forbidden, reloads.
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

pub fn auth_totals(log: &str) -> [u64; 7] {
    let mut t = [0u64; 7];
    for s in auth_per_shard(log) {
        for (a, b) in t.iter_mut().zip(s) {
            *a += b;
        }
    }
    t
}
