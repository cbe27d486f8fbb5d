//! Stateless nonces: any shard of any node that shares the secret can verify one, so no nonce
//! table is kept and a client may be answered by a different shard than the one that challenged.
//!
//! RFC 2617 section 3.2.1 suggests exactly this shape, `time-stamp H(time-stamp ":" ETag ":"
//! private-key)`:
//!
//! ```text
//! nonce = hex( issued (8 bytes, big-endian seconds) || salt (8 bytes) || tag (12 bytes) )
//!                                                                                 56 characters
//! key   = HMAC-MD5(secret, "sipshard nonce v2" || realm)[..16]          (once, at start-up)
//! tag   = SipHash-2-4-128(key, issued || salt [|| client IP])[..12]
//! ```
//!
//! The salt makes every challenge's nonce unique. Without it, every client challenged in the
//! same second would get the same nonce and, since `nc` counts per nonce (RFC 2617 section
//! 3.2.2), one client's `nc=00000001` would make another's a replay. The caller supplies it (a
//! per-shard sequence that never repeats, seeded at random, so shards and nodes do not collide
//! in practice); it is covered by the tag, so it cannot be changed either.
//!
//! The tag is a keyed pseudo-random function of a 16-byte input: what SipHash was designed for
//! (Aumasson and Bernstein, 2012), and what the Linux kernel uses for its own stateless tokens,
//! TCP SYN cookies. It costs a small fraction of the three MD5 compressions an HMAC-MD5 tag
//! took, and a tag is computed for every challenge and every answer. The 128-bit key is derived
//! from the shared secret and the realm with HMAC-MD5 (RFC 2104, a keyed hash with a security
//! argument; RFC 6151 section 2 finds no practical attack on it as a MAC), once per start. 96
//! bits of tag is the truncation RFC 2104 section 5 allows and RFC 2403 uses. The nonce is opaque
//! to clients, so the construction can change without anything changing on the wire (a node of
//! another version re-challenges the client once). The realm is bound so a nonce from another
//! realm sharing the secret is foreign. Binding the client IP (`bind_ip`) stops a nonce
//! captured from one address being answered from another, at the cost of re-challenging clients
//! whose address changes (NAT rebinding, mobile handover).
//!
//! Hex, not base64, keeps the nonce a valid token in every client's parser.

use std::fmt;
use std::net::IpAddr;

use std::hash::Hasher as _;

use hmac::{Hmac, Mac};
use md5::Md5;
use siphasher::sip128::{Hasher128 as _, SipHasher24};
use subtle::ConstantTimeEq;

use super::hex;

type HmacMd5 = Hmac<Md5>;

const TIME_LEN: usize = 8;
const SALT_LEN: usize = 8;
/// Issue time and salt: what the tag covers, besides the key, the realm and the client address.
const STAMP_LEN: usize = TIME_LEN + SALT_LEN;
const TAG_LEN: usize = 12;
const RAW_LEN: usize = STAMP_LEN + TAG_LEN;
/// Length of a nonce on the wire.
pub const NONCE_LEN: usize = 2 * RAW_LEN;
/// Length of the opaque value on the wire.
pub const OPAQUE_LEN: usize = 32;

/// How far in the future a nonce's issue time may be and still be accepted: nodes sharing a
/// secret have slightly different clocks. Nodes must run NTP; beyond this skew their nonces are
/// refused as invalid and clients are re-challenged.
pub const MAX_CLOCK_SKEW: u64 = 30;

/// Default nonce lifetime in seconds.
pub const DEFAULT_TTL: u64 = 300;

/// A nonce as it is sent: 56 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Nonce([u8; NONCE_LEN]);

impl Nonce {
    pub fn as_bytes(&self) -> &[u8; NONCE_LEN] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        // Always ASCII hex by construction.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({})", self.as_str())
    }
}

/// The verdict on a nonce a client returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonceCheck {
    /// Ours, unexpired, and (with `bind_ip`) for this client address.
    Valid,
    /// Ours but older than the lifetime: answer with `stale=TRUE` if the response is otherwise
    /// right, so the client retries without asking its user (RFC 2617 section 3.2.1).
    Stale,
    /// Not ours: malformed, tampered with, from another secret or realm, for another address, or
    /// from too far in the future.
    Invalid,
}

/// Issues and verifies nonces; derives the opaque value. Cheap to clone.
#[derive(Clone)]
pub struct NonceKey {
    /// The SipHash key of the tags, derived from the secret and the realm.
    tag_key: [u8; 16],
    opaque: [u8; OPAQUE_LEN],
    ttl: u64,
    bind_ip: bool,
}

impl fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceKey")
            .field("ttl", &self.ttl)
            .field("bind_ip", &self.bind_ip)
            .finish_non_exhaustive()
    }
}

fn keyed(secret: &[u8], label: &[u8], realm: &[u8]) -> HmacMd5 {
    // HMAC takes keys of any length (RFC 2104 section 2), so this cannot fail.
    let mut m = HmacMd5::new_from_slice(secret).expect("HMAC accepts any key length");
    m.update(label);
    m.update(&(realm.len() as u64).to_be_bytes());
    m.update(realm);
    m
}

impl NonceKey {
    /// `secret` is shared by every node that must accept the others' nonces; `ttl` is the nonce
    /// lifetime in seconds.
    pub fn new(secret: &[u8], realm: &[u8], ttl: u64, bind_ip: bool) -> NonceKey {
        let tag: [u8; 16] = keyed(secret, b"sipshard opaque v1\0", realm)
            .finalize()
            .into_bytes()
            .into();
        let derived: [u8; 16] = keyed(secret, b"sipshard nonce v2\0", realm)
            .finalize()
            .into_bytes()
            .into();
        NonceKey {
            tag_key: derived,
            opaque: hex::encode(&tag),
            ttl,
            bind_ip,
        }
    }

    pub fn ttl(&self) -> u64 {
        self.ttl
    }

    /// The opaque directive: fixed for a secret and realm, so every node sends the same one and
    /// a client's copy can be checked without state (RFC 2617 section 3.2.1).
    pub fn opaque(&self) -> &[u8; OPAQUE_LEN] {
        &self.opaque
    }

    fn tag(&self, stamp: &[u8; STAMP_LEN], client: IpAddr) -> [u8; TAG_LEN] {
        let mut m = SipHasher24::new_with_key(&self.tag_key);
        m.write(stamp);
        if self.bind_ip {
            // IPv4-mapped IPv6 is the same client on a dual-stack socket.
            match client.to_canonical() {
                IpAddr::V4(a) => {
                    m.write(&[4]);
                    m.write(&a.octets());
                }
                IpAddr::V6(a) => {
                    m.write(&[6]);
                    m.write(&a.octets());
                }
            }
        }
        let full = m.finish128().as_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }

    /// A fresh nonce issued at `now` (seconds on a clock the nodes share, e.g. Unix time).
    /// `salt` must differ between the nonces one issuer hands out within a second (see the
    /// module documentation); nonces with equal time, salt and client are equal.
    pub fn issue(&self, now: u64, client: IpAddr, salt: u64) -> Nonce {
        let mut stamp = [0u8; STAMP_LEN];
        stamp[..TIME_LEN].copy_from_slice(&now.to_be_bytes());
        stamp[TIME_LEN..].copy_from_slice(&salt.to_be_bytes());
        let mut raw = [0u8; RAW_LEN];
        raw[..STAMP_LEN].copy_from_slice(&stamp);
        raw[STAMP_LEN..].copy_from_slice(&self.tag(&stamp, client));
        Nonce(hex::encode(&raw))
    }

    /// Check a nonce a client returned. Never panics, whatever the bytes.
    pub fn verify(&self, nonce: &[u8], now: u64, client: IpAddr) -> NonceCheck {
        let Some(raw) = hex::decode::<RAW_LEN>(nonce, false) else {
            return NonceCheck::Invalid;
        };
        let mut stamp = [0u8; STAMP_LEN];
        stamp.copy_from_slice(&raw[..STAMP_LEN]);
        let authentic: bool = self.tag(&stamp, client).ct_eq(&raw[STAMP_LEN..]).into();
        let mut issued = [0u8; TIME_LEN];
        issued.copy_from_slice(&raw[..TIME_LEN]);
        let issued = u64::from_be_bytes(issued);
        if !authentic || issued > now.saturating_add(MAX_CLOCK_SKEW) {
            NonceCheck::Invalid
        } else if now.saturating_sub(issued) > self.ttl {
            NonceCheck::Stale
        } else {
            NonceCheck::Valid
        }
    }
}

/// A 32-byte secret from the operating system, for a node started without `--auth-secret`.
/// Nonces it issues are then valid on this node only and only until it restarts.
pub fn random_secret() -> Result<[u8; 32], getrandom::Error> {
    let mut s = [0u8; 32];
    getrandom::fill(&mut s)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: u64 = 1_700_000_000;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn key(bind: bool) -> NonceKey {
        NonceKey::new(b"shared secret", b"sip.example.com", DEFAULT_TTL, bind)
    }

    #[test]
    fn round_trip_and_lifetime() {
        let k = key(false);
        let n = k.issue(T0, ip("192.0.2.1"), 7);
        assert_eq!(n.as_str().len(), NONCE_LEN);
        assert!(n
            .as_str()
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        let v = |now| k.verify(n.as_bytes(), now, ip("198.51.100.7"));
        assert_eq!(v(T0), NonceCheck::Valid);
        assert_eq!(v(T0 + DEFAULT_TTL), NonceCheck::Valid);
        assert_eq!(v(T0 + DEFAULT_TTL + 1), NonceCheck::Stale);
        assert_eq!(v(u64::MAX), NonceCheck::Stale);
        // Issued by a node whose clock is slightly ahead: fine; far ahead: not ours to trust.
        assert_eq!(v(T0 - MAX_CLOCK_SKEW), NonceCheck::Valid);
        assert_eq!(v(T0 - MAX_CLOCK_SKEW - 1), NonceCheck::Invalid);
        // Another node with the same secret and realm accepts it.
        assert_eq!(
            key(false).verify(n.as_bytes(), T0, ip("::1")),
            NonceCheck::Valid
        );
        // Distinct times or salts give distinct nonces.
        assert_ne!(k.issue(T0 + 1, ip("192.0.2.1"), 7), n);
        assert_ne!(k.issue(T0, ip("192.0.2.1"), 8), n);
    }

    #[test]
    fn tampering_any_byte_is_invalid() {
        let k = key(false);
        let n = *k.issue(T0, ip("192.0.2.1"), 7).as_bytes();
        for i in 0..NONCE_LEN {
            for flip in [1u8, 0x20, 0x80] {
                let mut t = n;
                t[i] ^= flip;
                assert_eq!(
                    k.verify(&t, T0, ip("192.0.2.1")),
                    NonceCheck::Invalid,
                    "byte {i} ^ {flip:#x}"
                );
            }
        }
        // Uppercase spelling of our own nonce is not what we issued.
        let upper = n.to_ascii_uppercase();
        if upper != n {
            assert_eq!(k.verify(&upper, T0, ip("192.0.2.1")), NonceCheck::Invalid);
        }
        assert_eq!(
            k.verify(&n[..NONCE_LEN - 2], T0, ip("192.0.2.1")),
            NonceCheck::Invalid
        );
    }

    #[test]
    fn foreign_secret_or_realm_is_invalid() {
        let n = key(false).issue(T0, ip("192.0.2.1"), 7);
        let other = NonceKey::new(b"other secret", b"sip.example.com", DEFAULT_TTL, false);
        assert_eq!(
            other.verify(n.as_bytes(), T0, ip("192.0.2.1")),
            NonceCheck::Invalid
        );
        let other = NonceKey::new(b"shared secret", b"other.example.com", DEFAULT_TTL, false);
        assert_eq!(
            other.verify(n.as_bytes(), T0, ip("192.0.2.1")),
            NonceCheck::Invalid
        );
        assert_ne!(other.opaque(), key(false).opaque());
        // Forging a later issue time on a genuine tag.
        let mut forged = *n.as_bytes();
        forged[..16].copy_from_slice(&hex::encode::<8, 16>(&(T0 + 1000).to_be_bytes()));
        assert_eq!(
            key(false).verify(&forged, T0 + 1000, ip("192.0.2.1")),
            NonceCheck::Invalid
        );
        // Or another salt.
        let mut forged = *n.as_bytes();
        forged[16..32].copy_from_slice(&hex::encode::<8, 16>(&8u64.to_be_bytes()));
        assert_eq!(
            key(false).verify(&forged, T0, ip("192.0.2.1")),
            NonceCheck::Invalid
        );
    }

    #[test]
    fn bind_ip() {
        use NonceCheck::*;
        let k = key(true);
        let n4 = k.issue(T0, ip("192.0.2.1"), 7);
        let n6 = k.issue(T0, ip("2001:db8::1"), 7);
        let late = T0 + 1000;
        for (n, now, from, want) in [
            (n4, T0, "192.0.2.1", Valid),
            (n4, T0, "::ffff:192.0.2.1", Valid),
            (n4, T0, "192.0.2.2", Invalid),
            (n4, T0, "2001:db8::1", Invalid),
            // Staleness is only reported for the right address.
            (n4, late, "192.0.2.1", Stale),
            (n4, late, "192.0.2.9", Invalid),
            (n6, T0, "2001:db8::1", Valid),
            (n6, T0, "2001:db8::2", Invalid),
        ] {
            assert_eq!(
                k.verify(n.as_bytes(), now, ip(from)),
                want,
                "{n} {now} {from}"
            );
        }
        // Without binding, the address does not matter.
        let n = key(false).issue(T0, ip("192.0.2.1"), 7);
        assert_eq!(
            key(false).verify(n.as_bytes(), T0, ip("2001:db8::2")),
            Valid
        );
    }

    #[test]
    fn random_secrets_differ() {
        assert_ne!(random_secret().unwrap(), random_secret().unwrap());
    }

    proptest! {
        #[test]
        fn garbage_never_panics_and_is_invalid(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            now in any::<u64>(),
            bind in any::<bool>(),
        ) {
            let k = key(bind);
            // Random bytes are a valid nonce only with negligible probability (96-bit tag).
            prop_assert_eq!(k.verify(&bytes, now, ip("192.0.2.1")), NonceCheck::Invalid);
        }

        #[test]
        fn hex_garbage_of_the_right_length_is_invalid(
            raw in proptest::array::uniform28(any::<u8>()),
            now in any::<u64>(),
        ) {
            let h: [u8; NONCE_LEN] = hex::encode(&raw);
            prop_assert_eq!(key(false).verify(&h, now, ip("192.0.2.1")), NonceCheck::Invalid);
        }

        #[test]
        fn issued_nonces_verify(now in 0u64..u64::MAX / 2, age in 0u64..1000) {
            let k = key(true);
            let n = k.issue(now, ip("192.0.2.1"), now);
            let want = if age > DEFAULT_TTL { NonceCheck::Stale } else { NonceCheck::Valid };
            prop_assert_eq!(k.verify(n.as_bytes(), now + age, ip("192.0.2.1")), want);
        }
    }
}
