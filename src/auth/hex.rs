//! Fixed-size lowercase hex, without allocation.
//!
//! Digest carries every hash as 32 lowercase hex digits (`LHEX`, RFC 2617 section 3.1.3), the
//! users file stores HA1 the same way, and nonces are hex so they are valid tokens inside a
//! quoted-string. One encoder and one decoder serve all three; flow tokens (`proxy::flow`),
//! whose length varies, use the variable-length pair.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex of `bytes`; `N` must be `2 * M` (checked at compile time by the callers' types
/// in practice, and by a debug assertion here).
pub fn encode<const M: usize, const N: usize>(bytes: &[u8; M]) -> [u8; N] {
    debug_assert_eq!(N, 2 * M);
    let mut out = [0u8; N];
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[(b >> 4) as usize];
        out[2 * i + 1] = DIGITS[(b & 0xf) as usize];
    }
    out
}

fn nibble(c: u8, allow_upper: bool) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' if allow_upper => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Append the lowercase hex of `bytes` (any length) to `out`.
pub fn encode_into(bytes: &[u8], out: &mut Vec<u8>) {
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize]);
        out.push(DIGITS[(b & 0xf) as usize]);
    }
}

/// Decode hex of any even length (`allow_upper` as for [`decode`]).
pub fn decode_vec(hex: &[u8], allow_upper: bool) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    hex.chunks_exact(2)
        .map(|pair| Some(nibble(pair[0], allow_upper)? << 4 | nibble(pair[1], allow_upper)?))
        .collect()
}

/// Decode exactly `2 * M` hex digits. `allow_upper` accepts `A`-`F` too (HA1 in the users file,
/// a client's `response`); nonces we issued are only accepted in the lowercase form we wrote.
pub fn decode<const M: usize>(hex: &[u8], allow_upper: bool) -> Option<[u8; M]> {
    if hex.len() != 2 * M {
        return None;
    }
    let mut out = [0u8; M];
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *o = nibble(pair[0], allow_upper)? << 4 | nibble(pair[1], allow_upper)?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_case() {
        let b = [0x00, 0x9f, 0xa0, 0xff];
        let h: [u8; 8] = encode(&b);
        assert_eq!(&h, b"009fa0ff");
        assert_eq!(decode::<4>(&h, false), Some(b));
        assert_eq!(decode::<4>(b"009FA0FF", true), Some(b));
        assert_eq!(decode::<4>(b"009FA0FF", false), None);
        assert_eq!(decode::<4>(b"009fa0f", true), None);
        assert_eq!(decode::<4>(b"009fa0fg", true), None);
    }
}
