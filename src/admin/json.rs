//! The admin API's JSON: one binding as an object, the same in `GET /v1/bindings` (one per
//! line, with its AOR) and in `GET /v1/bindings/{aor}` (in a list).

use serde_json::{json, Map, Value};

use crate::location::Binding;

/// Text the table holds as bytes (URIs, instance ids) shown as a JSON string: lossless for
/// UTF-8, replacement characters for anything else (SIP text is UTF-8 by RFC 3261 section 7).
fn text(bytes: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(bytes).into_owned())
}

/// The Path values, first hop first (RFC 3327), split at the commas between values.
fn path_list(path: &[u8]) -> Value {
    let hops = path
        .split(|&b| b == b',')
        .map(|h| h.trim_ascii())
        .filter(|h| !h.is_empty())
        .map(text)
        .collect();
    Value::Array(hops)
}

/// One live binding of `aor` at `now_secs`: what it was registered with and where requests
/// for it go.
pub fn binding(aor: &[u8], b: &Binding<'_>, now_secs: u64) -> Value {
    let mut dest = Map::new();
    dest.insert("transport".into(), b.dest.transport.name().into());
    dest.insert("address".into(), b.dest.addr.to_string().into());
    if let Some(conn) = b.dest.conn {
        // Which shard owns the connection, and its serial there (as the logs write it).
        dest.insert("connection".into(), format!("{:x}", conn.0).into());
        dest.insert("connection_shard".into(), conn.shard().into());
    }
    let mut v = json!({
        "aor": text(aor),
        "contact": text(b.contact),
        "expires_in": b.remaining(now_secs),
        "expires_at": b.expires_at,
        "q": f64::from(b.q) / 1000.0,
        "nat": b.nat,
        "destination": dest,
        "updated_ms": b.version.stamp_ms,
        "cseq": b.version.cseq,
    });
    if !b.extra.path.is_empty() {
        v["path"] = path_list(b.extra.path);
    }
    if b.extra.is_flow() {
        v["instance"] = text(b.extra.instance);
        v["reg_id"] = b.extra.reg_id.into();
    }
    v
}

/// `{"error": why}`.
pub fn error(why: &str) -> Value {
    json!({ "error": why })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::{Extra, Version};
    use crate::sip::{ConnId, Target, Transport};

    #[test]
    fn a_flow_over_tcp_behind_an_edge() {
        let b = Binding {
            version: Version {
                stamp_ms: 1_700_000_000_123,
                call_id_hash: 1,
                cseq: 7,
            },
            expires_at: 1_700_000_600,
            q: 500,
            dest: Target {
                transport: Transport::Tcp,
                conn: Some(ConnId::new(1, 42)),
                ..Target::udp("192.0.2.9:40000".parse().unwrap())
            },
            nat: true,
            contact: b"sip:bob@10.0.0.2:5060;transport=tcp",
            extra: Extra {
                path: b"<sip:edge1;lr>, <sip:edge2;lr>",
                instance: b"\"<urn:uuid:1>\"",
                reg_id: 1,
            },
        };
        let v = binding(b"bob@example.com", &b, 1_700_000_000);
        assert_eq!(v["aor"], "bob@example.com");
        assert_eq!(v["expires_in"], 600);
        assert_eq!(v["q"], 0.5);
        assert_eq!(v["nat"], true);
        assert_eq!(v["destination"]["transport"], "tcp");
        assert_eq!(v["destination"]["address"], "192.0.2.9:40000");
        assert_eq!(v["destination"]["connection_shard"], 1);
        assert_eq!(v["path"], json!(["<sip:edge1;lr>", "<sip:edge2;lr>"]));
        assert_eq!(v["reg_id"], 1);
        assert_eq!(v["cseq"], 7);
    }
}
