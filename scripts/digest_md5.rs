//! The client side of an MD5 Digest answer, shared by the benchmark drivers in this directory.

use std::fmt::Write as _;

use md5::{Digest, Md5};

/// Lowercase hex of a hash.
pub fn hex(h: &[u8]) -> String {
    let mut s = String::with_capacity(2 * h.len());
    for b in h {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `hex(MD5(parts joined by ':'))`: HA1, HA2 and the response of RFC 2617 section 3.2.2.
pub fn md5hex(parts: &[&str]) -> String {
    let mut m = Md5::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            m.update(b":");
        }
        m.update(p.as_bytes());
    }
    hex(&m.finalize())
}
