//! On-disk format of the registration store: a sequence of framed records.
//!
//! ```text
//! record  = len:u32le crc:u32le payload[len]      crc = CRC-32 (IEEE) of payload
//! payload = aor_len:u16le aor[aor_len] binding     binding = registrar::table encoding
//! ```
//!
//! The same framing is used for the append-only log and for the snapshot. A reader stops at the
//! first record that is incomplete or fails its checksum: everything before it is trusted,
//! everything from it on is a torn or corrupt tail.

use crate::location::BindingRecord;

/// Records larger than this are corrupt by definition (an AOR and one contact).
pub const MAX_RECORD: usize = 64 * 1024;
const HEADER: usize = 8;

/// Append one framed record to `out`.
pub fn encode(rec: &BindingRecord, out: &mut Vec<u8>) {
    let len = 2 + rec.aor.len() + rec.binding.len();
    out.reserve(HEADER + len);
    let at = out.len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(rec.aor.len() as u16).to_le_bytes());
    out.extend_from_slice(&rec.aor);
    out.extend_from_slice(&rec.binding);
    let crc = crc32fast::hash(&out[at + HEADER..]);
    out[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The result of reading a file of records.
#[derive(Debug, Default)]
pub struct Decoded {
    pub records: Vec<BindingRecord>,
    /// Bytes of well-formed records (where a torn tail starts).
    pub valid_len: usize,
    /// Bytes after `valid_len` that were not a well-formed record.
    pub bad_tail: usize,
}

/// Decode every well-formed record from the start of `data`.
pub fn decode_all(data: &[u8]) -> Decoded {
    let mut d = Decoded::default();
    let mut pos = 0;
    while let Some((rec, len)) = decode_one(&data[pos..]) {
        d.records.push(rec);
        pos += len;
    }
    d.valid_len = pos;
    d.bad_tail = data.len() - pos;
    d
}

fn decode_one(data: &[u8]) -> Option<(BindingRecord, usize)> {
    let len = u32::from_le_bytes(data.get(0..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(data.get(4..8)?.try_into().ok()?);
    if !(2..=MAX_RECORD).contains(&len) {
        return None;
    }
    let payload = data.get(HEADER..HEADER + len)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let aor_len = u16::from_le_bytes(payload[0..2].try_into().ok()?) as usize;
    let aor = payload.get(2..2 + aor_len)?;
    let binding = &payload[2 + aor_len..];
    let rec = BindingRecord {
        aor: aor.into(),
        binding: binding.into(),
    };
    // The binding must decode too, or the record is corrupt.
    rec.decode()?;
    Some((rec, HEADER + len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::{Binding, Version};
    use crate::sip::Target;

    fn rec(i: u32) -> BindingRecord {
        let contact = format!("sip:user{i}@192.0.2.1:5060");
        BindingRecord::new(
            format!("user{i}@example.com").as_bytes(),
            &Binding {
                version: Version {
                    stamp_ms: 1000 + i as u64,
                    call_id_hash: 7,
                    cseq: i,
                },
                expires_at: 5000,
                q: 1000,
                dest: Target::udp("192.0.2.1:5060".parse().unwrap()),
                nat: false,
                contact: contact.as_bytes(),
                extra: Default::default(),
            },
        )
    }

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        for i in 0..10 {
            encode(&rec(i), &mut buf);
        }
        let d = decode_all(&buf);
        assert_eq!(d.records.len(), 10);
        assert_eq!(d.records[3], rec(3));
        assert_eq!((d.valid_len, d.bad_tail), (buf.len(), 0));
    }

    #[test]
    fn torn_and_corrupt_tails_stop_the_reader() {
        let mut buf = Vec::new();
        for i in 0..3 {
            encode(&rec(i), &mut buf);
        }
        let two = {
            let mut b = Vec::new();
            encode(&rec(0), &mut b);
            encode(&rec(1), &mut b);
            b.len()
        };
        // Every truncation inside the third record keeps exactly two.
        for cut in two..buf.len() {
            let d = decode_all(&buf[..cut]);
            assert_eq!(d.records.len(), 2, "cut at {cut}");
            assert_eq!(d.valid_len, two);
        }
        // A flipped byte anywhere in the third record is caught by the checksum or the length.
        for i in two..buf.len() {
            let mut b = buf.clone();
            b[i] ^= 0x40;
            let d = decode_all(&b);
            assert_eq!(d.records.len(), 2, "flip at {i}");
            assert_eq!(d.bad_tail, buf.len() - two);
        }
    }
}
