//! Header parameters: `*( SEMI generic-param )` with `SEMI = SWS ";" SWS`, `EQUAL = SWS "=" SWS`
//! and values that are tokens, hosts or quoted strings (RFC 3261 section 25.1).

use super::header::{is_token, run_len, token_len};
use super::scan::find_byte2;

#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Iterator over `name[=value]` header parameters. Values keep their quotes; see [`unquote`].
/// A syntax error ends the iteration and sets [`HeaderParams::failed`]; call
/// [`validate`] first when the difference matters.
#[derive(Clone)]
pub struct HeaderParams<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> HeaderParams<'a> {
    /// `raw` is the text after the first `;` (or empty).
    pub fn new(raw: &'a [u8]) -> Self {
        HeaderParams {
            rest: raw,
            failed: false,
        }
    }

    pub fn failed(&self) -> bool {
        self.failed
    }

    fn fail(&mut self) -> Option<(&'a [u8], Option<&'a [u8]>)> {
        self.failed = true;
        self.rest = &[];
        None
    }
}

impl<'a> Iterator for HeaderParams<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        let s = self.rest;
        let mut i = skip_ws(s, 0);
        if i == s.len() {
            self.rest = &[];
            return None;
        }
        let name_start = i;
        i += token_len(&s[i..]);
        let name = &s[name_start..i];
        if name.is_empty() {
            return self.fail();
        }
        i = skip_ws(s, i);
        let mut value = None;
        if s.get(i) == Some(&b'=') {
            i = skip_ws(s, i + 1);
            let v_start = i;
            if s.get(i) == Some(&b'"') {
                match quoted_end(&s[i..]) {
                    Some(len) => i += len,
                    None => return self.fail(),
                }
            } else {
                // token / host (IPv6 references have colons and brackets).
                i += run_len(&s[i..], &VALUE_CHARS);
                if i == v_start {
                    return self.fail();
                }
            }
            value = Some(&s[v_start..i]);
            i = skip_ws(s, i);
        }
        if i < s.len() {
            if s[i] != b';' {
                return self.fail();
            }
            i += 1;
            // `a;` at the very end, or `;;`, is an empty parameter: malformed.
            let next = s[i..].iter().find(|&&b| !is_ws(b));
            if matches!(next, None | Some(b';')) {
                self.rest = &[];
                self.failed = true;
                return Some((name, value));
            }
        }
        self.rest = &s[i..];
        Some((name, value))
    }
}

/// The index of the first byte at or after `i` that is not linear whitespace.
#[inline]
fn skip_ws(s: &[u8], i: usize) -> usize {
    i + s[i..].iter().take_while(|&&b| is_ws(b)).count()
}

/// An unquoted parameter value byte: token, or `:`, `[`, `]` for IPv6 references (a table: values
/// are most of a parameter list).
static VALUE_CHARS: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = is_token(i as u8) || matches!(i as u8, b':' | b'[' | b']');
        i += 1;
    }
    t
};

/// The common form of a parameter list, `name[=value]` items joined by single `;` with no
/// whitespace or quotes, checked in one pass. `Some(value)` (what `find(raw, wanted).flatten()`
/// returns) when `raw` has that form, in which case [`validate`] accepts it too; `None` when it
/// does not (it may still be valid: ask [`validate`]). `wanted` is lowercase letters.
#[inline]
pub fn scan_simple<'a>(raw: &'a [u8], wanted: &[u8]) -> Option<Option<&'a [u8]>> {
    debug_assert!(wanted.iter().all(u8::is_ascii_lowercase));
    let mut found: Option<Option<&[u8]>> = None;
    scan_simple_each(raw, |name, value| {
        if found.is_none() && eq_lowercase_letters(name, wanted) {
            found = Some(value);
        }
        true
    })?;
    Some(found.flatten())
}

/// [`scan_simple`]'s pass, handing each parameter to `visit`: `None` when `raw` is not of the
/// common form, `Some(false)` when it is and `visit` refused a parameter (the pass stops there),
/// `Some(true)` when every parameter was accepted.
#[inline]
pub fn scan_simple_each<'a>(
    raw: &'a [u8],
    mut visit: impl FnMut(&'a [u8], Option<&'a [u8]>) -> bool,
) -> Option<bool> {
    if raw.is_empty() {
        return Some(true);
    }
    let mut i = 0;
    loop {
        let name_len = token_len(&raw[i..]);
        if name_len == 0 {
            return None;
        }
        let name = &raw[i..i + name_len];
        i += name_len;
        let mut value = None;
        if raw.get(i) == Some(&b'=') {
            i += 1;
            let value_len = run_len(&raw[i..], &VALUE_CHARS);
            if value_len == 0 {
                return None;
            }
            value = Some(&raw[i..i + value_len]);
            i += value_len;
        }
        if !visit(name, value) {
            return Some(false);
        }
        match raw.get(i) {
            None => return Some(true),
            Some(b';') => i += 1,
            Some(_) => return None,
        }
    }
}

/// `name` equals `lower`, a run of lowercase letters, ignoring ASCII case: a byte ORed with
/// 0x20 is a lowercase letter only when it is that letter in either case (cheaper than
/// lowercasing both sides, as `eq_ignore_ascii_case` does).
#[inline]
pub(super) fn eq_lowercase_letters(name: &[u8], lower: &[u8]) -> bool {
    name.len() == lower.len() && name.iter().zip(lower).all(|(&n, &l)| n | 0x20 == l)
}

/// True when every parameter in `raw` is well-formed.
pub fn validate(raw: &[u8]) -> bool {
    let mut it = HeaderParams::new(raw);
    for _ in it.by_ref() {}
    !it.failed()
}

/// Find parameter `name` (case-insensitive): `Some(None)` for a flag, `Some(Some(v))` with a value.
pub fn find<'a>(raw: &'a [u8], name: &[u8]) -> Option<Option<&'a [u8]>> {
    HeaderParams::new(raw)
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// Length of the quoted string at the start of `s` (quotes included), honouring `\` escapes.
pub fn quoted_end(s: &[u8]) -> Option<usize> {
    debug_assert_eq!(s.first(), Some(&b'"'));
    let mut i = 1;
    while i < s.len() {
        // Jump to the next quote or backslash (nonces and digests are long).
        i += find_byte2(b'"', b'\\', &s[i..])?;
        match s[i] {
            b'\\' => i += 2,
            _ => return Some(i + 1),
        }
    }
    None
}

/// Strip surrounding double quotes, if any (escapes are left as written).
pub fn unquote(v: &[u8]) -> &[u8] {
    if v.len() >= 2 && v[0] == b'"' && v[v.len() - 1] == b'"' {
        &v[1..v.len() - 1]
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(raw: &str) -> (Vec<(String, Option<String>)>, bool) {
        let mut it = HeaderParams::new(raw.as_bytes());
        let v = it
            .by_ref()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    v.map(|v| String::from_utf8_lossy(v).into_owned()),
                )
            })
            .collect();
        (v, it.failed())
    }

    #[test]
    fn parses_with_whitespace_and_quotes() {
        let (v, failed) = all(" branch = z9hG4bK1 ;rport; received=[2001:db8::9] ;x=\"a;b\"");
        assert!(!failed);
        assert_eq!(v.len(), 4);
        assert_eq!(v[0], ("branch".into(), Some("z9hG4bK1".into())));
        assert_eq!(v[1], ("rport".into(), None));
        assert_eq!(v[2], ("received".into(), Some("[2001:db8::9]".into())));
        assert_eq!(v[3], ("x".into(), Some("\"a;b\"".into())));
    }

    #[test]
    fn rejects_empty_and_unterminated() {
        assert!(!validate(b";"));
        assert!(!validate(b"a;;b"));
        assert!(!validate(b"a;"));
        assert!(!validate(b"x=\"open"));
        assert!(!validate(b"=v"));
        assert!(!validate(b"a=b c"));
        assert!(validate(b""));
        assert!(validate(b"lr"));
    }
}
