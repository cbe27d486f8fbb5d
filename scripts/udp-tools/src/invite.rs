//! The INVITE udp-flood sends (and `benches/core.rs` hands to the proxy core: the two measure
//! the same message, so this file is included there by path; it needs only `std`).

use std::net::SocketAddr;

/// Marks the digits a counter is written into.
pub const SLOT: &str = "##########";

pub const SDP: &str = "v=0\r\n\
o=flood 1 1 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=sendrecv\r\n";

/// The INVITE every request is stamped from (`transport`: the Via token, `UDP` or `TCP`).
pub fn invite_template(user: &str, proxy: SocketAddr, transport: &str) -> String {
    format!(
        "INVITE sip:{user}@{proxy} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} 127.0.0.1:5099;branch=z9hG4bK-fl{SLOT};rport\r\n\
         Max-Forwards: 70\r\n\
         From: \"flood\" <sip:flood@127.0.0.1>;tag={SLOT}\r\n\
         To: <sip:{user}@{proxy}>\r\n\
         Call-ID: {SLOT}-flood@127.0.0.1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:flood@127.0.0.1:5099>\r\n\
         User-Agent: udp-flood\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\
         \r\n\
         {SDP}",
        SDP.len()
    )
}
