#![no_main]
//! Arbitrary bytes as a value read back from Redis (`sipshard::cluster::record`): the cluster
//! peer decodes every key and stream entry it reads, and Redis is shared with other programs.
//!
//! Checked: nothing panics; a value that decodes re-encodes to the same bytes; what this node
//! would apply of it decodes as a binding, keeps the AOR and contact, is never stamped past the
//! bound it was given, and (with a route) is reached through the route and not pinged here.

use libfuzzer_sys::fuzz_target;
use sipshard::cluster::record::{decode, encode, for_this_node};

fuzz_target!(|data: &[u8]| {
    let Some(stored) = decode(data) else {
        return;
    };
    let b = stored.record.decode().expect("decode checked the binding");
    let node = std::str::from_utf8(stored.node).ok();
    if let Some(node) = node.filter(|n| !n.contains(':') && !n.contains('|')) {
        let again = encode(&stored.record, &b.version, node, stored.route);
        assert_eq!(decode(&again).as_ref(), Some(&stored));
    }
    let latest = b.version.stamp_ms / 2;
    if let Some((rec, clamped)) = for_this_node(&stored, latest) {
        let here = rec.decode().expect("what is applied decodes");
        assert_eq!(rec.aor, stored.record.aor);
        assert_eq!(here.contact, b.contact);
        assert!(here.version.stamp_ms <= latest.max(b.version.stamp_ms));
        assert_eq!(clamped, b.version.stamp_ms > latest);
        assert!(here.version.stamp_ms <= latest || !clamped);
        if !stored.route.is_empty() {
            assert_eq!(here.extra.path, stored.route);
            assert!(!here.nat);
        }
    }
});
