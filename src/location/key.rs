//! The key under which an address of record is stored.

use crate::sip::uri::Unescape;

/// The location-table key of an address of record: the unescaped user part, `@`, and the host
/// lower-cased when it is a configured domain, or nothing when it is one of our own addresses
/// (so `sip:bob@192.0.2.10` and `sip:bob@edge1` find the same registration).
pub struct AorKey {
    buf: [u8; 256],
    len: usize,
}

impl Default for AorKey {
    fn default() -> Self {
        Self::new()
    }
}

impl AorKey {
    pub fn new() -> AorKey {
        AorKey {
            buf: [0; 256],
            len: 0,
        }
    }

    /// Fill in the key from the URI's user part and, when the URI's host is one of the
    /// configured domains, that domain (`LocalIdentity::aor_domain` decides); false when it does
    /// not fit.
    pub fn build(&mut self, user: &[u8], domain: Option<&[u8]>) -> bool {
        self.len = 0;
        for b in Unescape::new(user) {
            if !self.push(b) {
                return false;
            }
        }
        if !self.push(b'@') {
            return false;
        }
        if let Some(n) = domain {
            let n = n.strip_suffix(b".").unwrap_or(n);
            for &b in n {
                if !self.push(b.to_ascii_lowercase()) {
                    return false;
                }
            }
        }
        true
    }

    fn push(&mut self, b: u8) -> bool {
        match self.buf.get_mut(self.len) {
            Some(slot) => {
                *slot = b;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}
