//! Deterministic branch and local tag values (RFC 3261 section 16.11).
//!
//! A stateless proxy keeps no transaction state, so the branch it puts into its Via must be a
//! pure function of the request: a retransmission, the CANCEL for an INVITE and the ACK for a
//! non-2xx final response must all produce the same branch, on any shard and after a restart.
//!
//! The branch has two parts (RFC 3261 section 16.6 item 8, 16.3 item 4):
//!
//! - the transaction part: a hash of the incoming top Via's branch and sent-by when that branch
//!   carries the magic cookie, else of the top Via, From tag, Call-ID, CSeq number and
//!   Request-URI (the RFC 2543 transaction key);
//! - the loop part: a hash of what does not change when a request spirals back unchanged (From
//!   tag, Call-ID, CSeq number, Request-URI as received). Finding our own address in a Via with
//!   the loop part we would compute now means the request has looped.
//!
//! RFC 3261 sections 16.6 and 16.11 also list the To tag, but the ACK for a non-2xx response
//! carries the To tag of that response while its INVITE had none: with the tag in the hash the
//! ACK would take a different branch than the INVITE and miss the downstream transaction. So
//! the To tag is left out of both parts.
//!
//! Hashes are XXH3 with fixed seeds: a specified algorithm, identical on every machine.

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::sip::{Message, ParseError};

/// Our branches start with the magic cookie and a marker, so responses can be recognised as
/// answers to what we sent before any hash is checked.
pub const BRANCH_PREFIX: &[u8] = b"z9hG4bKsS";
/// Tags of locally generated replies start with this marker.
pub const LOCAL_TAG_PREFIX: &[u8] = b"sS";

/// Length of a branch value we generate: prefix, 16 hex, '.', 8 hex.
pub const BRANCH_LEN: usize = BRANCH_PREFIX.len() + 16 + 1 + 8;

const SEED_TXN: u64 = 0x5150_5348_4152_4401;
const SEED_LOOP: u64 = 0x5150_5348_4152_4402;
const SEED_TAG: u64 = 0x5150_5348_4152_4403;

/// The two hashes a forwarded request's branch is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BranchKey {
    pub txn: u64,
    pub loop_part: u32,
}

impl BranchKey {
    /// Compute both parts for a request that passed `validate_request`.
    pub fn compute(msg: &Message<'_>) -> Result<BranchKey, ParseError> {
        let top = msg.top_via()?;
        let from_tag = msg.from()?.tag().unwrap_or(&[]);
        let call_id = msg.call_id()?;
        let cseq = msg.cseq()?.number;
        let ruri = msg.request_uri_span().map(|s| msg.bytes(s)).unwrap_or(&[]);

        let mut h = KeyBytes::new();
        if top.has_rfc3261_branch() {
            h.field(top.branch().unwrap_or(&[]));
            h.field(top.host_raw);
            h.put(&top.port.unwrap_or(0).to_le_bytes());
        } else {
            h.field(msg.bytes(top.span));
            h.field(from_tag);
            h.field(call_id);
            h.put(&cseq.to_le_bytes());
            h.field(ruri);
        }
        let txn = h.digest(SEED_TXN);

        let mut l = KeyBytes::new();
        l.field(from_tag);
        l.field(call_id);
        l.put(&cseq.to_le_bytes());
        l.field(ruri);
        Ok(BranchKey {
            txn,
            loop_part: l.digest(SEED_LOOP) as u32,
        })
    }

    /// Write the branch value (`BRANCH_LEN` bytes).
    pub fn write(&self, out: &mut [u8; BRANCH_LEN]) {
        let p = BRANCH_PREFIX.len();
        out[..p].copy_from_slice(BRANCH_PREFIX);
        hex_into(self.txn, &mut out[p..p + 16]);
        out[p + 16] = b'.';
        hex_into(self.loop_part as u64, &mut out[p + 17..p + 25]);
    }

    /// The loop part of a branch we generated, if `branch` is one of ours.
    pub fn loop_part_of(branch: &[u8]) -> Option<u32> {
        if branch.len() != BRANCH_LEN || !branch.starts_with(BRANCH_PREFIX) {
            return None;
        }
        let hex = std::str::from_utf8(&branch[BRANCH_PREFIX.len() + 17..]).ok()?;
        u32::from_str_radix(hex, 16).ok()
    }
}

/// The input of one hash, gathered and hashed in one call. XXH3's streaming state is a struct
/// of some 600 bytes with its own buffer, and filling it costs more than hashing the few dozen
/// bytes of a key (measured with `cargo bench --bench core`). XXH3 gives the same value for the
/// same bytes whichever way they are fed, so the values are those the streaming state gave:
/// branches stay the same across versions and restarts.
struct KeyBytes {
    inline: [u8; KeyBytes::INLINE],
    len: usize,
    /// Used instead once the input outgrows `inline` (a Request-URI or Via of hundreds of
    /// bytes).
    spill: Vec<u8>,
}

impl KeyBytes {
    const INLINE: usize = 256;

    fn new() -> KeyBytes {
        KeyBytes {
            inline: [0; KeyBytes::INLINE],
            len: 0,
            spill: Vec::new(),
        }
    }

    /// A field: its length (u32, little-endian), then its bytes, so that no two different
    /// sequences of fields give the same input.
    #[inline]
    fn field(&mut self, bytes: &[u8]) {
        self.put(&(bytes.len() as u32).to_le_bytes());
        self.put(bytes);
    }

    /// Inlined, so that the copy of a length or a number (4 bytes) is a store, not a call.
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if self.spill.is_empty() && end <= KeyBytes::INLINE {
            self.inline[self.len..end].copy_from_slice(bytes);
            self.len = end;
        } else {
            self.put_spilled(bytes);
        }
    }

    #[cold]
    fn put_spilled(&mut self, bytes: &[u8]) {
        if self.spill.is_empty() {
            self.spill.extend_from_slice(&self.inline[..self.len]);
        }
        self.spill.extend_from_slice(bytes);
        self.len += bytes.len();
    }

    fn digest(&self, seed: u64) -> u64 {
        if self.spill.is_empty() {
            xxh3_64_with_seed(&self.inline[..self.len], seed)
        } else {
            xxh3_64_with_seed(&self.spill, seed)
        }
    }
}

/// Lower-case hex of the low `out.len() / 2` bytes of `v`.
pub(super) fn hex_into(v: u64, out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = out.len();
    for (i, o) in out.iter_mut().enumerate() {
        *o = HEX[((v >> ((n - 1 - i) * 4)) & 0xf) as usize];
    }
}

/// The To tag of a reply sipshard generates itself: deterministic, so that a retransmitted
/// request gets the same answer and the ACK for a non-2xx reply can be recognised as ours
/// (RFC 3261 section 16.11: such ACKs are absorbed, not forwarded).
pub fn local_tag(call_id: &[u8], from_tag: &[u8], cseq: u32, top_branch: &[u8]) -> [u8; 18] {
    let mut h = KeyBytes::new();
    h.field(call_id);
    h.field(from_tag);
    h.put(&cseq.to_le_bytes());
    h.field(top_branch);
    let mut out = [0u8; 18];
    out[..2].copy_from_slice(LOCAL_TAG_PREFIX);
    hex_into(h.digest(SEED_TAG), &mut out[2..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(msg: &str) -> BranchKey {
        let mut b = msg.as_bytes().to_vec();
        let m = Message::parse(&mut b).unwrap();
        BranchKey::compute(&m).unwrap()
    }

    const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\nVia: SIP/2.0/UDP client.atlanta.example.com:5060;branch=z9hG4bK74bf9\r\nMax-Forwards: 70\r\nFrom: <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\nTo: <sip:bob@biloxi.example.com>\r\nCall-ID: 3848276298220188511@atlanta.example.com\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";

    /// The gathered input hashes to what XXH3's streaming state gives for the same fields,
    /// short or spilled: branches and local tags keep their values across versions.
    #[test]
    fn gathered_hash_equals_the_streaming_hash() {
        use xxhash_rust::xxh3::Xxh3;
        let long = [b'x'; 700];
        for fields in [
            &[&b"z9hG4bK74bf9"[..], b"host", b""][..],
            &[&long[..], b"tag"],
            &[],
        ] {
            let mut gathered = KeyBytes::new();
            let mut streamed = Xxh3::with_seed(SEED_TXN);
            for f in fields {
                gathered.field(f);
                streamed.update(&(f.len() as u32).to_le_bytes());
                streamed.update(f);
            }
            gathered.put(&7u32.to_le_bytes());
            streamed.update(&7u32.to_le_bytes());
            assert_eq!(gathered.digest(SEED_TXN), streamed.digest());
        }
    }

    #[test]
    fn cancel_and_retransmission_share_the_branch() {
        let cancel = INVITE
            .replace("INVITE sip", "CANCEL sip")
            .replace("1 INVITE", "1 CANCEL")
            .replace("Max-Forwards: 70", "Max-Forwards: 69");
        assert_eq!(key(INVITE), key(&cancel));
        let other = INVITE.replace("z9hG4bK74bf9", "z9hG4bK74bfa");
        assert_ne!(key(INVITE).txn, key(&other).txn);
        // The loop part ignores the top Via: a request coming back around has a new one.
        assert_eq!(key(INVITE).loop_part, key(&other).loop_part);
    }

    #[test]
    fn ack_for_a_non_2xx_takes_the_invite_branch() {
        let ack = INVITE
            .replace("INVITE sip", "ACK sip")
            .replace("1 INVITE", "1 ACK")
            .replace(
                "To: <sip:bob@biloxi.example.com>",
                "To: <sip:bob@biloxi.example.com>;tag=resp1",
            );
        assert_eq!(key(INVITE), key(&ack));
        let old = INVITE.replace(";branch=z9hG4bK74bf9", "");
        assert_eq!(key(&old), key(&ack.replace(";branch=z9hG4bK74bf9", "")));
    }

    #[test]
    fn rfc2543_branches_hash_the_transaction_key() {
        let old = INVITE.replace(";branch=z9hG4bK74bf9", "");
        let k1 = key(&old);
        let k2 = key(&old.replace("CSeq: 1", "CSeq: 2"));
        assert_ne!(k1.txn, k2.txn);
    }

    #[test]
    fn branch_format_round_trips() {
        let k = key(INVITE);
        let mut b = [0u8; BRANCH_LEN];
        k.write(&mut b);
        assert!(b.starts_with(b"z9hG4bKsS"));
        assert_eq!(BranchKey::loop_part_of(&b), Some(k.loop_part));
        assert_eq!(BranchKey::loop_part_of(b"z9hG4bKother"), None);
    }
}
