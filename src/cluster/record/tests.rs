use super::*;
use crate::location::{BindingRecord, Extra, LocationTable, MergeOutcome};
use crate::sip::ConnId;

fn binding(contact: &'static str, stamp_ms: u64) -> Binding<'static> {
    Binding {
        version: Version {
            stamp_ms,
            call_id_hash: 0xdead_beef_0000_0007,
            cseq: 3,
        },
        expires_at: 1_700_003_600,
        q: 1000,
        dest: Target::udp("192.0.2.4:5060".parse().unwrap()),
        nat: false,
        contact: contact.as_bytes(),
        extra: Extra::default(),
    }
}

#[test]
fn equivalent_contacts_and_their_removal_share_one_key() {
    let a = binding("sip:bob@Example.COM:5060;transport=UDP;foo=1", 1);
    let b = binding("sip:bob@example.com:5060;transport=udp", 2);
    let tomb = Binding { expires_at: 0, ..b };
    assert_eq!(key("p", b"bob@x", &a), key("p", b"bob@x", &b));
    assert_eq!(key("p", b"bob@x", &a), key("p", b"bob@x", &tomb));
    // Not equivalent: the port is given on one only, or the user differs.
    assert_ne!(
        key("p", b"bob@x", &a),
        key(
            "p",
            b"bob@x",
            &binding("sip:bob@example.com;transport=udp", 1)
        )
    );
    assert_ne!(
        key("p", b"bob@x", &a),
        key(
            "p",
            b"bob@x",
            &binding("sip:Bob@example.com:5060;transport=udp", 1)
        )
    );
    assert_eq!(
        key("p", b"bob@x", &a),
        b"p:b:5:bob@x:c:sip:bob@example.com:5060;transport=udp".to_vec()
    );
}

#[test]
fn a_flow_is_keyed_by_instance_and_reg_id_whatever_its_uri() {
    let flow = |contact| Binding {
        extra: Extra {
            instance: b"<urn:uuid:1>",
            reg_id: 2,
            path: b"",
        },
        ..binding(contact, 1)
    };
    assert_eq!(
        key("p", b"a@x", &flow("sip:a@192.0.2.1:1000")),
        key("p", b"a@x", &flow("sip:a@192.0.2.9:2000"))
    );
}

#[test]
fn values_carry_version_node_route_and_record() {
    let b = binding("sip:bob@192.0.2.4", 1_700_000_000_123);
    let rec = BindingRecord::new(b"bob@x", &b);
    let v = encode(&rec, &b.version, "edge-1", b"<sip:ft00@192.0.2.1:5060;lr>");
    assert!(v.starts_with(b"0000018bcfe5687b:deadbeef:00000007:00000003:edge-1|"));
    let stored = decode(&v).unwrap();
    assert_eq!(stored.node, b"edge-1");
    assert_eq!(stored.route, b"<sip:ft00@192.0.2.1:5060;lr>");
    assert_eq!(stored.record, rec);
    for bad in [
        &b""[..],
        b"1:2:3:4:n",
        b"1:2:3:4:n|\x05\x00ab",
        &v[..v.len() - 3],
    ] {
        assert!(decode(bad).is_none(), "{bad:?}");
    }
}

/// The store's script orders values by the text before `|`: that must be the order of
/// (version, node id) in numbers, whatever the widths of the numbers.
#[test]
fn the_text_before_the_bar_orders_values_as_versions_then_nodes() {
    let versions = [
        (0, 0, 0),
        (9, 0, 0),
        (10, 0, 0),
        (0x10, 0xffff_ffff_ffff_ffff, u32::MAX),
        (0x11, 0, 0),
        (1_700_000_000_000, 1 << 32, 1),
        (1_700_000_000_000, (1 << 32) + 1, 0),
        (1_700_000_000_000, 2 << 32, 0),
        (u64::MAX, u64::MAX, u32::MAX),
    ];
    let mut values = Vec::new();
    for (stamp_ms, call_id_hash, cseq) in versions {
        for node in ["a", "ab", "b"] {
            let mut b = binding("sip:bob@192.0.2.4", stamp_ms);
            b.version = Version {
                stamp_ms,
                call_id_hash,
                cseq,
            };
            let v = encode(&BindingRecord::new(b"bob@x", &b), &b.version, node, b"");
            assert_eq!(decode(&v).unwrap().node, node.as_bytes());
            values.push(((stamp_ms, call_id_hash, cseq, node), v));
        }
    }
    let before_bar = |v: &[u8]| v[..memchr::memchr(b'|', v).unwrap()].to_vec();
    for (a, va) in &values {
        for (b, vb) in &values {
            assert_eq!(a.cmp(b), before_bar(va).cmp(&before_bar(vb)), "{a:?} {b:?}");
        }
    }
}

#[test]
fn a_binding_only_its_node_reaches_is_routed_through_that_node() {
    let mut b = binding("sip:bob@10.0.0.7:5060", 5);
    assert!(!needs_origin(&b));
    b.nat = true;
    b.dest = Target::udp("203.0.113.9:40000".parse().unwrap());
    assert!(needs_origin(&b));
    let rec = BindingRecord::new(b"bob@x", &b);
    let route = route_via(b"ft0102", "192.0.2.1:5070", Transport::Udp);
    assert_eq!(route, b"<sip:ft0102@192.0.2.1:5070;lr>");
    let v = encode(&rec, &b.version, "a", &route);
    let (here, clamped) = for_this_node(&decode(&v).unwrap(), u64::MAX).unwrap();
    assert!(!clamped);
    let h = here.decode().unwrap();
    assert_eq!(h.extra.path, &route[..]);
    assert_eq!(h.dest.addr, "192.0.2.1:5070".parse().unwrap());
    assert!(!h.nat, "only the origin node pings it");
    assert_eq!(h.contact, b.contact);
    assert_eq!(h.version, b.version);
    // Over a connection too; with a Path already, or removed, it goes as it is.
    let conn = Binding {
        nat: false,
        dest: Target {
            conn: Some(ConnId::new(1, 9)),
            ..Target::new(Transport::Tcp, "198.51.100.2:5060".parse().unwrap())
        },
        ..b
    };
    assert!(needs_origin(&conn));
    assert!(!needs_origin(&Binding {
        extra: Extra {
            path: b"<sip:edge;lr>",
            ..Extra::default()
        },
        ..conn
    }));
    assert!(!needs_origin(&Binding {
        expires_at: 0,
        ..conn
    }));
}

#[test]
fn a_change_from_the_future_is_clamped_and_still_merges() {
    let b = binding("sip:bob@192.0.2.4", 9_000);
    let rec = BindingRecord::new(b"bob@x", &b);
    let v = encode(&rec, &b.version, "a", b"");
    let (here, clamped) = for_this_node(&decode(&v).unwrap(), 5_000).unwrap();
    assert!(clamped);
    assert_eq!(here.decode().unwrap().version.stamp_ms, 5_000);
    let mut table = LocationTable::new();
    assert_eq!(table.merge_record(&here), MergeOutcome::Added);
    let (same, clamped) = for_this_node(&decode(&v).unwrap(), 10_000).unwrap();
    assert!(!clamped);
    assert_eq!(same, rec);
}
