//! The three benchmark messages and what a proxy reads from them, shared by the criterion
//! benchmark (`benches/message.rs`) and the callgrind driver (`scripts/parse_profile.rs`), so
//! that the instruction counts measure exactly what the benchmark times.

use sipshard::sip::{Contact, HeaderName, Message};

const SDP_OFFER: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 client.atlanta.example.com\r\n\
s=-\r\n\
c=IN IP4 192.0.2.101\r\n\
t=0 0\r\n\
m=audio 49172 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

const SDP_ANSWER: &str = "v=0\r\n\
o=bob 2808844564 2808844564 IN IP4 client.biloxi.example.com\r\n\
s=-\r\n\
c=IN IP4 192.0.2.201\r\n\
t=0 0\r\n\
m=audio 3456 RTP/AVP 0 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

/// An INVITE with an SDP offer, as a UA sends it to its outbound proxy.
pub fn invite() -> Vec<u8> {
    format!(
        "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP client.atlanta.example.com:5060;branch=z9hG4bK74bf9\r\n\
Max-Forwards: 70\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
Call-ID: 3848276298220188511@atlanta.example.com\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@client.atlanta.example.com;transport=udp>\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO, UPDATE\r\n\
Supported: replaces, timer\r\n\
User-Agent: softphone/4.2\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\
\r\n\
{SDP_OFFER}",
        SDP_OFFER.len()
    )
    .into_bytes()
}

/// A 200 OK to an INVITE that went through two proxies: three Vias and two Record-Routes.
pub fn ok200() -> Vec<u8> {
    format!(
        "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK4b43c2ff8.1;received=192.0.2.10\r\n\
Via: SIP/2.0/UDP proxy.atlanta.example.com:5060;branch=z9hG4bK2d4790.1;received=192.0.2.111\r\n\
Via: SIP/2.0/UDP client.atlanta.example.com:5060;branch=z9hG4bK74bf9;received=192.0.2.101\r\n\
Record-Route: <sip:192.0.2.10;lr>, <sip:proxy.atlanta.example.com;lr>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n\
To: Bob <sip:bob@biloxi.example.com>;tag=8321234356\r\n\
Call-ID: 3848276298220188511@atlanta.example.com\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:bob@client.biloxi.example.com;transport=udp>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\
\r\n\
{SDP_ANSWER}",
        SDP_ANSWER.len()
    )
    .into_bytes()
}

/// A REGISTER answering a digest challenge.
pub fn register() -> Vec<u8> {
    b"REGISTER sip:registrar.biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP bobspc.biloxi.example.com:5060;branch=z9hG4bKnashds7\r\n\
Max-Forwards: 70\r\n\
From: Bob <sip:bob@biloxi.example.com>;tag=a73kszlfl\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
Call-ID: 1j9FpLxk3uxtm8tn@biloxi.example.com\r\n\
CSeq: 2 REGISTER\r\n\
Contact: <sip:bob@192.0.2.4>;expires=3600\r\n\
Authorization: Digest username=\"bob\", realm=\"biloxi.example.com\", \
nonce=\"ea9c8e88df84f1cec4341ae6cbe5a359\", uri=\"sip:registrar.biloxi.example.com\", \
response=\"dfe56131d1958046689d83306477ecc\", algorithm=MD5\r\n\
Content-Length: 0\r\n\
\r\n"
        .to_vec()
}

pub fn messages() -> [(&'static str, Vec<u8>); 3] {
    [
        ("invite", invite()),
        ("ok200", ok200()),
        ("register", register()),
    ]
}

/// Read what a proxy needs from a parsed message; returns a value that depends on all of it.
pub fn touch(m: &Message<'_>) -> usize {
    let mut acc = 0usize;
    if m.is_request() {
        let ruri = m.request_uri().expect("request URI");
        acc += ruri.host_raw.len();
        let via = m.top_via().expect("top Via");
        acc += via.branch().expect("branch").len();
    } else {
        for via in m.vias() {
            acc += via.expect("Via").branch().expect("branch").len();
        }
    }
    acc += m.max_forwards().expect("Max-Forwards").unwrap_or(70) as usize;
    acc += m.call_id().expect("Call-ID").len();
    acc += m.cseq().expect("CSeq").number as usize;
    acc += m.from().expect("From").tag().expect("From tag").len();
    acc += m.to().expect("To").tag().map_or(0, <[u8]>::len);
    if m.method() == Some(sipshard::sip::Method::Register) {
        for c in m.contacts() {
            if let Contact::Addr(a) = c.expect("Contact") {
                acc += a.expires().unwrap_or(0) as usize + a.uri.host_raw.len();
            }
        }
        for c in m.credentials(HeaderName::Authorization) {
            // What digest verification reads, in one pass over the parameters.
            for (name, value) in c.expect("Authorization").pairs() {
                if [&b"username"[..], b"realm", b"nonce", b"uri", b"response"]
                    .iter()
                    .any(|p| name.eq_ignore_ascii_case(p))
                {
                    acc += value.len();
                }
            }
        }
    }
    acc
}

/// What `rsip_touch` of `benches/message.rs` reads, from sipshard: the raw values of the same
/// headers (like for like with rsip's untyped look-ups).
pub fn touch_untyped(m: &Message<'_>) -> usize {
    let mut acc = 0usize;
    if m.is_request() {
        // sipshard checks the Request-URI while parsing the message, as rsip does.
        acc += m.request_uri_span().expect("request URI").len();
        acc += m.header(HeaderName::Via).expect("Via").len();
    } else {
        for f in m.fields_named(HeaderName::Via) {
            acc += m.bytes(f.value).len();
        }
    }
    if m.is_request() {
        acc += m.max_forwards().expect("Max-Forwards").expect("number") as usize;
    }
    for name in [
        HeaderName::CallId,
        HeaderName::CSeq,
        HeaderName::From,
        HeaderName::To,
    ] {
        acc += m.header(name).expect("header").len();
    }
    if m.is_request() {
        if let Some(a) = m.header(HeaderName::Authorization) {
            acc += a.len();
            acc += m.header(HeaderName::Contact).expect("Contact").len();
        }
    }
    acc
}
