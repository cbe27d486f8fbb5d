//! The mutation operators: from a field's valid seed value, the values to try instead. Each
//! value is named by its operator; the grammar ([`super::grammar`]) judges it afterwards, so an
//! operator needs no opinion on whether its output is still valid.

use super::fields::Field;
use super::grammar::Kind;
use super::rng::Rng;

/// Value lengths from one byte to 64 KiB; the last makes any message too large for a datagram.
const LENGTHS: &[(&str, usize)] = &[
    ("len-1", 1),
    ("len-16", 16),
    ("len-256", 256),
    ("len-1024", 1024),
    ("len-4096", 4096),
    ("len-16384", 16384),
    ("len-65536", 65536),
];

/// Seeded random edits per field: insertions and replacements of bytes from [`ALPHABET`].
const RANDOM_EDITS: usize = 12;

/// The bytes random edits draw from: delimiters of every SIP grammar, quotes, escapes, a few
/// control bytes (never CR or LF: line breaks have operators of their own) and non-ASCII.
const ALPHABET: &[u8] =
    b"<>\"'\\;:,@=/?&%*+-. \t[]{}()#$!~`|^\x00\x01\x1b\x7f\x80\xc3\xa9\xff0123456789aZ";

/// Every value to try for `field`, starting from its valid `seed`.
pub fn values(field: &Field, seed: &[u8], rng: &mut Rng) -> Vec<(&'static str, Vec<u8>)> {
    let mut out: Vec<(&'static str, Vec<u8>)> = vec![("empty", Vec::new())];
    for &(name, n) in LENGTHS {
        out.push((name, long(field.kind, seed, n)));
    }
    out.extend(generic(seed));
    out.extend(delimiters(field.delimiters, seed));
    out.extend(
        specials(field.kind, seed)
            .into_iter()
            .map(|v| ("special", v)),
    );
    for _ in 0..RANDOM_EDITS {
        out.push(random_edit(seed, rng));
    }
    out.retain(|(_, v)| v.as_slice() != seed);
    out
}

/// A value of about `n` bytes that keeps the field's shape where it has one (a long user in a
/// URI, a long branch in a Via), so that length alone is what changes.
fn long(kind: Kind, seed: &[u8], n: usize) -> Vec<u8> {
    let filler = |b: u8, n: usize| vec![b; n];
    let wrap = |pre: &[u8], post: &[u8]| {
        let mut v = pre.to_vec();
        v.extend(filler(
            b'a',
            n.saturating_sub(pre.len() + post.len()).max(1),
        ));
        v.extend_from_slice(post);
        v
    };
    match kind {
        Kind::Number { .. } | Kind::Ip => filler(b'1', n),
        Kind::Uri => wrap(b"sip:", b"@example.org"),
        Kind::NameAddr | Kind::Contact => wrap(b"<sip:", b"@example.org>"),
        Kind::Via => wrap(b"SIP/2.0/UDP 127.0.0.1:5060;rport;branch=z9hG4bK", b""),
        Kind::UriParams => wrap(b";x=", b""),
        Kind::CSeq => {
            let method = seed.split(|&b| b == b' ').nth(1).unwrap_or(b"INVITE");
            let mut v = filler(b'1', n);
            v.push(b' ');
            v.extend_from_slice(method);
            v
        }
        _ => filler(b'a', n),
    }
}

/// `seed` with `insert` put in its middle.
fn inside(seed: &[u8], insert: &[u8]) -> Vec<u8> {
    let mid = seed.len() / 2;
    [&seed[..mid], insert, &seed[mid..]].concat()
}

/// The operators every field gets: format strings, control bytes, line breaks, non-UTF-8.
fn generic(seed: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("format-string", b"%s%n%x%s%n%x%d%p".to_vec()),
        ("format-inside", inside(seed, b"%s%n")),
        ("nul", inside(seed, b"\0")),
        ("nul-end", [seed, b"\0"].concat()),
        ("ctl-01", inside(seed, b"\x01")),
        ("ctl-08", inside(seed, b"\x08")),
        ("ctl-1b", inside(seed, b"\x1b")),
        ("ctl-7f", inside(seed, b"\x7f")),
        ("bare-cr", inside(seed, b"\r")),
        ("bare-lf", inside(seed, b"\n")),
        ("crlf-broken-line", inside(seed, b"\r\nbroken")),
        (
            "crlf-injected-header",
            [seed, b"\r\nX-Injected: 1"].concat(),
        ),
        ("crlfcrlf", inside(seed, b"\r\n\r\n")),
        ("fold", inside(seed, b"\r\n ")),
        ("non-utf8-ff", inside(seed, b"\xff\xfe")),
        ("non-utf8-overlong", inside(seed, b"\xc0\x80")),
        ("non-utf8-lone", inside(seed, b"\x80")),
        ("utf8", inside(seed, "é".as_bytes())),
        ("space", inside(seed, b" ")),
        ("tab", inside(seed, b"\t")),
        ("quote", inside(seed, b"\"")),
        ("angle", inside(seed, b"<")),
        ("semicolon", inside(seed, b";")),
        ("comma", inside(seed, b",")),
        ("doubled-value", [seed, b" ", seed].concat()),
    ]
}

/// Each delimiter's first occurrence in `seed` doubled, and removed.
fn delimiters(delims: &[u8], seed: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    for &d in delims {
        let Some(at) = seed.iter().position(|&b| b == d) else {
            continue;
        };
        let mut doubled = seed.to_vec();
        doubled.insert(at, d);
        out.push(("delimiter-repeated", doubled));
        let mut missing = seed.to_vec();
        missing.remove(at);
        out.push(("delimiter-missing", missing));
    }
    out
}

/// One seeded edit: a short run of [`ALPHABET`] bytes inserted, or one byte replaced.
fn random_edit(seed: &[u8], rng: &mut Rng) -> (&'static str, Vec<u8>) {
    let mut v = seed.to_vec();
    if rng.below(2) == 0 || v.is_empty() {
        let at = rng.below(v.len() + 1);
        let run: Vec<u8> = (0..1 + rng.below(3)).map(|_| *rng.pick(ALPHABET)).collect();
        v.splice(at..at, run);
        ("random-insert", v)
    } else {
        let at = rng.below(v.len());
        let b = *rng.pick(ALPHABET);
        // Never the byte already there: the case count must not depend on the seed.
        v[at] = if b == v[at] { b.wrapping_add(1) } else { b };
        ("random-replace", v)
    }
}

/// Signs, overflows and other digits for numbers.
const NUMBERS: &[&str] = &[
    "-1",
    "+1",
    "0",
    "00",
    "01",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "18446744073709551616",
    "99999999999999999999",
    "1.5",
    "0x10",
    "1e3",
    "١",
];

/// Addresses: out of range, unbracketed IPv6, zone ids, bad labels; a few valid oddities.
const HOSTS: &[&str] = &[
    "256.1.1.1",
    "1.2.3",
    "1.2.3.4.5",
    "[::1]",
    "[::1",
    "::1",
    "[1.2.3.4]",
    "a..b",
    "-a.com",
    "a_b.com",
    "example.com.",
    "127.0.0.1",
    "[fe80::1%eth0]",
    "localhost",
];

const CALL_IDS: &[&str] = &[
    "a@b@c", "@", "a@", "@b", "a b@c", "a;b", "a,b", "a=b", "{a}@[b]",
];
const SCHEMES: &[&str] = &["sips", "tel", "http", "SIP", "1sip", "s_ip", "sip+x"];
const USERS: &[&str] = &["bob%20", "%zz", "b@b", "bob:pw", "bob;x=y", "+1212", "b%"];
const URI_PARAMS: &[&str] = &[
    ";",
    ";;",
    ";=x",
    ";x=",
    ";transport=udp",
    ";lr",
    ";x=1;x=2",
    ";x=%zz",
    ";a b",
];
const TEXTS: &[&str] = &["", " ", "日本語", "\"unbalanced", "<>", "a;b=c,d", "\\"];
const BODIES: &[&str] = &[
    "\0\0\0",
    "\r\n\r\n\r\n",
    "Content-Length: 0\r\n\r\n",
    "%s%n%x",
];

/// Whole Via values, each wrong in one place (and two valid ones).
const VIAS: &[&str] = &[
    "SIP/2.0/UDP",
    "SIP/2.0/UDP :5060;rport",
    "SIP/2.0 127.0.0.1;rport",
    "SIP/3.0/UDP 127.0.0.1;rport",
    "SIP/2.0/UDP 127.0.0.1:0;rport",
    "SIP/2.0/UDP 127.0.0.1:65536;rport",
    "SIP/2.0/UDP 127.0.0.1;branch=;rport",
    "SIP/2.0/UDP 127.0.0.1;received=example.com;rport",
    "SIP/2.0/UDP 127.0.0.1;rport=0",
    "SIP/2.0/UDP 127.0.0.1;ttl=256;rport",
    "SIP/2.0/UDP [::1]:5060;branch=z9hG4bKv6;rport",
    "SIP/2.0/UDP [::1:5060;rport",
];

/// Values that probe the field's own grammar: signs and overflows for numbers, broken
/// addresses for hosts, unbalanced brackets for name-addrs.
fn specials(kind: Kind, seed: &[u8]) -> Vec<Vec<u8>> {
    let fixed = |list: &[&str]| list.iter().map(|v| v.as_bytes().to_vec()).collect();
    let text = String::from_utf8_lossy(seed).into_owned();
    let built: Vec<String> = match kind {
        Kind::Number { .. } => return fixed(NUMBERS),
        Kind::Host | Kind::Ip => return fixed(HOSTS),
        Kind::CallId => return fixed(CALL_IDS),
        Kind::Scheme => return fixed(SCHEMES),
        Kind::User => return fixed(USERS),
        Kind::UriParams => return fixed(URI_PARAMS),
        Kind::Via => return fixed(VIAS),
        Kind::Text => return fixed(TEXTS),
        Kind::Body => {
            let mut out: Vec<Vec<u8>> = fixed(BODIES);
            out.push(b"\xff\xfe\xfd\x00\x80".to_vec());
            return out;
        }
        Kind::Token | Kind::Method | Kind::Exact(_) => token_specials(&text),
        Kind::CSeq => cseq_specials(&text),
        Kind::Uri | Kind::NameAddr | Kind::Contact | Kind::FromTo => uri_specials(kind, seed),
    };
    built.into_iter().map(String::into_bytes).collect()
}

/// A token's neighbours: another case, doubled, a forbidden character after it, versions.
fn token_specials(s: &str) -> Vec<String> {
    let mut out = vec![
        s.to_lowercase(),
        format!("{s}{s}"),
        format!("{s}/"),
        format!("{s}:"),
        format!("{s}@"),
    ];
    out.extend(
        [
            "!%*_+`'~-.",
            "SIP/2.1",
            "SIP/3.0",
            "SIP/2.00",
            "HTTP/1.1",
            "3.0",
        ]
        .map(String::from),
    );
    out
}

/// CSeq values around `1 METHOD`: parts missing, extra, signed, overflowing, another method.
fn cseq_specials(s: &str) -> Vec<String> {
    let method = s.split(' ').nth(1).unwrap_or("INVITE");
    let other = if method == "INVITE" {
        "REGISTER"
    } else {
        "INVITE"
    };
    vec![
        "1".into(),
        method.into(),
        format!("1 {method} extra"),
        format!("-1 {method}"),
        format!("2147483648 {method}"),
        format!("4294967296 {method}"),
        format!("1\t{method}"),
        format!("1 {}", method.to_lowercase()),
        format!("1 {method}{method}"),
        format!("1 {other}"),
    ]
}

/// Broken and odd URIs, name-addrs and Contact values built around the seed's URI.
fn uri_specials(kind: Kind, seed: &[u8]) -> Vec<String> {
    let s = String::from_utf8_lossy(seed).into_owned();
    let uri = s
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap_or("")
        .to_string();
    let bare = uri
        .split_once(':')
        .map_or(uri.as_str(), |(_, r)| r)
        .to_string();
    let mut out = vec![
        bare.clone(),
        "sip:".into(),
        "sip:@example.org".into(),
        format!("{uri}@"),
        format!("sip:{}", bare.split('@').next().unwrap_or("")),
        format!("{uri}:99999"),
        format!("{uri}:0"),
        "tel:+12125551212".into(),
        format!("sips:{bare}"),
        format!("sip:a b@{}", bare.split('@').nth(1).unwrap_or("h")),
        "sip:alice@[::1".into(),
        format!("{uri};"),
        format!("{uri};=x"),
        "sip:%zz@example.org".into(),
        format!("{uri}?"),
    ];
    if kind != Kind::Uri {
        out.extend([
            format!("<{uri}"),
            format!("{uri}>"),
            format!("<<{uri}>>"),
            "<>".into(),
            format!("\"Alice\" <{uri}>"),
            format!("\"Alice <{uri}>"),
            format!("Alice Liddell <{uri}>"),
            format!("<{uri}>>"),
        ]);
    }
    if kind == Kind::Contact {
        out.extend([
            "*".into(),
            "**".into(),
            format!("*, <{uri}>"),
            format!("<{uri}>, <sip:other@127.0.0.1>"),
            format!("<{uri}>;expires=abc"),
            format!("<{uri}>;expires=-1"),
            format!("<{uri}>;q=2"),
            format!("<{uri}>;q=0.5"),
            format!("<{uri}>,,"),
            "<sip:>".into(),
            format!("{uri};expires=60"),
        ]);
    }
    out
}
