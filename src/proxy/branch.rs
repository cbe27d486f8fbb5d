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

use xxhash_rust::xxh3::Xxh3;

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

        let mut h = Xxh3::with_seed(SEED_TXN);
        if top.has_rfc3261_branch() {
            field(&mut h, top.branch().unwrap_or(&[]));
            field(&mut h, top.host_raw);
            h.update(&top.port.unwrap_or(0).to_le_bytes());
        } else {
            field(&mut h, msg.bytes(top.span));
            field(&mut h, from_tag);
            field(&mut h, call_id);
            h.update(&cseq.to_le_bytes());
            field(&mut h, ruri);
        }
        let txn = h.digest();

        let mut l = Xxh3::with_seed(SEED_LOOP);
        field(&mut l, from_tag);
        field(&mut l, call_id);
        l.update(&cseq.to_le_bytes());
        field(&mut l, ruri);
        Ok(BranchKey {
            txn,
            loop_part: l.digest() as u32,
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

/// Hash a field with its length, so that ("ab","c") and ("a","bc") differ.
fn field(h: &mut Xxh3, bytes: &[u8]) {
    h.update(&(bytes.len() as u32).to_le_bytes());
    h.update(bytes);
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
    let mut h = Xxh3::with_seed(SEED_TAG);
    field(&mut h, call_id);
    field(&mut h, from_tag);
    h.update(&cseq.to_le_bytes());
    field(&mut h, top_branch);
    let mut out = [0u8; 18];
    out[..2].copy_from_slice(LOCAL_TAG_PREFIX);
    hex_into(h.digest(), &mut out[2..]);
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
