//! Removals an operator asks for (the admin API's `DELETE /v1/bindings/...`), without the
//! user's password: the tombstones that remove an AOR's live bindings, or one of them.
//!
//! A tombstone wins over the binding it removes on every shard, in the persisted log and after
//! a restart because its version is newer: stamped now, or just after the binding's own stamp
//! when that is ahead of our clock (another node's, or a clock that went back). It keeps the
//! binding's Call-ID hash and CSeq, so the phone's next REGISTER (a higher CSeq in the same
//! Call-ID, or a new Call-ID) registers it again as any re-registration does; and its Outbound
//! instance and reg-id, which name a flow's binding whatever its URI.

use crate::location::{same_contact, Binding, BindingRecord, LocationTable, Now, Version};

/// The tombstones removing `aor`'s live bindings at `now`: every one, or only the one whose
/// contact is equivalent to `contact`. Empty when nothing matches. The caller merges them and
/// sends them to every peer, as a REGISTER's changes are.
pub fn unregister(
    table: &LocationTable,
    aor: &[u8],
    contact: Option<&[u8]>,
    now: Now,
) -> Vec<BindingRecord> {
    let now_secs = now.secs();
    table
        .live_bindings(aor, now_secs)
        .filter(|b| contact.map_or(true, |c| same_contact(b.contact, c)))
        .map(|b| BindingRecord::new(aor, &tombstone(&b, now)))
        .collect()
}

fn tombstone<'a>(b: &Binding<'a>, now: Now) -> Binding<'a> {
    Binding {
        version: Version {
            stamp_ms: now.unix_ms.max(b.version.stamp_ms + 1),
            ..b.version
        },
        expires_at: 0,
        nat: false,
        ..*b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::{Extra, MergeOutcome};
    use crate::sip::Target;

    const NOW: Now = Now {
        unix_ms: 1_700_000_000_000,
    };

    fn binding(contact: &'static str, stamp_ms: u64) -> Binding<'static> {
        Binding {
            version: Version {
                stamp_ms,
                call_id_hash: 9,
                cseq: 4,
            },
            expires_at: (NOW.secs() + 600) as u32,
            q: 1000,
            dest: Target::udp(([192, 0, 2, 7], 5062).into()),
            nat: true,
            contact: contact.as_bytes(),
            extra: Extra::default(),
        }
    }

    fn table() -> LocationTable {
        let mut t = LocationTable::new();
        t.merge(
            b"bob@x",
            &binding("sip:bob@192.0.2.7:5062", NOW.unix_ms - 5_000),
        );
        // Stamped ahead of our clock (another node's): the removal must still be newer.
        t.merge(
            b"bob@x",
            &binding("sip:bob@192.0.2.8", NOW.unix_ms + 60_000),
        );
        t
    }

    #[test]
    fn removes_every_binding_of_the_aor_and_wins_over_each() {
        let mut t = table();
        let recs = unregister(&t, b"bob@x", None, NOW);
        assert_eq!(recs.len(), 2);
        for r in &recs {
            assert_eq!(t.merge_record(r), MergeOutcome::Removed);
        }
        assert_eq!(t.live_bindings(b"bob@x", NOW.secs()).count(), 0);
        assert_eq!(t.binding_count(), 0);
    }

    #[test]
    fn removes_only_the_named_contact_compared_as_a_uri() {
        let mut t = table();
        let recs = unregister(&t, b"bob@x", Some(b"sip:BOB@192.0.2.8;transport=udp"), NOW);
        assert_eq!(recs.len(), 0, "a transport parameter makes another URI");
        let recs = unregister(&t, b"bob@x", Some(b"sip:bob@192.0.2.8"), NOW);
        assert_eq!(recs.len(), 1);
        t.merge_record(&recs[0]);
        let left: Vec<_> = t.live_bindings(b"bob@x", NOW.secs()).collect();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].contact, b"sip:bob@192.0.2.7:5062");
    }

    #[test]
    fn nothing_for_an_unknown_aor_or_contact() {
        let t = table();
        assert!(unregister(&t, b"alice@x", None, NOW).is_empty());
        assert!(unregister(&t, b"bob@x", Some(b"sip:bob@198.51.100.1"), NOW).is_empty());
    }

    #[test]
    fn a_later_register_brings_the_binding_back() {
        let mut t = table();
        for r in unregister(&t, b"bob@x", None, NOW) {
            t.merge_record(&r);
        }
        let again = binding("sip:bob@192.0.2.7:5062", NOW.unix_ms + 1_000);
        assert_eq!(t.merge(b"bob@x", &again), MergeOutcome::Added);
    }
}
