//! RFC 6223's `keep` Via parameter, the negotiation of RFC 5626's keep-alives between adjacent
//! hops without Outbound: a UA that writes `keep` without a value in its Via offers to send
//! keep-alives (STUN Binding requests on UDP, CRLF CRLF on TCP and TLS) to the hop that
//! answers; that hop, when willing to receive them, gives the parameter a value in its
//! response: the interval in seconds. sipshard answers both kinds on every SIP port, so it
//! gives the value (`--flow-timer`) in 2xx answers to requests that set up a registration or a
//! dialog: its own (the registrar's 200) and, as an edge, those it forwards back to the UA
//! (whose Via is then the top one).

use crate::sip::params::HeaderParams;
use crate::sip::Via;

/// Requests whose 2xx answer starts what keep-alives keep open (RFC 6223 section 4.4.1: a
/// registration or a dialog).
const STARTS_A_FLOW: [&[u8]; 4] = [b"REGISTER", b"INVITE", b"SUBSCRIBE", b"REFER"];

/// Whether an answer with `status` to a request of `method` (its CSeq's) gets our interval.
pub fn negotiates(status: u16, method: &[u8]) -> bool {
    (200..300).contains(&status) && STARTS_A_FLOW.contains(&method)
}

/// Offset within `elem` (the Via's text) just after the name of its `keep` parameter, when it
/// has no value yet: where `=secs` goes.
pub fn value_at(via: &Via<'_>, elem: &[u8]) -> Option<usize> {
    if via.param(b"keep") != Some(None) {
        return None;
    }
    param_name_end(via, elem, b"keep")
}

/// Offset within `elem` (the Via's text) just after the parameter name `name`.
pub fn param_name_end(via: &Via<'_>, elem: &[u8], name: &[u8]) -> Option<usize> {
    let params_off = via.params.as_ptr() as usize - elem.as_ptr() as usize;
    HeaderParams::new(via.params)
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(n, _)| n.as_ptr() as usize - via.params.as_ptr() as usize + n.len() + params_off)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::Message;

    fn top_via_of(text: &str, f: impl FnOnce(&Via<'_>, &[u8])) {
        let mut buf = text.replace('\n', "\r\n").into_bytes();
        let msg = Message::parse(&mut buf).unwrap();
        let via = msg.top_via().unwrap();
        f(&via, msg.bytes(via.span));
    }

    const REQ: &str = "REGISTER sip:x SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKa;{P}\nFrom: <sip:a@x>;tag=1\nTo: <sip:a@x>\nCall-ID: c\nCSeq: 1 REGISTER\nContent-Length: 0\n\n";

    #[test]
    fn a_valueless_keep_is_where_the_interval_goes_and_a_valued_one_is_left_alone() {
        top_via_of(&REQ.replace("{P}", "keep;rport"), |via, elem| {
            let at = value_at(via, elem).expect("keep without a value");
            assert!(
                elem[..at].ends_with(b";keep"),
                "{:?}",
                std::str::from_utf8(elem)
            );
        });
        top_via_of(&REQ.replace("{P}", "KEEP"), |via, elem| {
            assert_eq!(value_at(via, elem), Some(elem.len()));
        });
        top_via_of(&REQ.replace("{P}", "keep=30"), |via, elem| {
            assert_eq!(
                value_at(via, elem),
                None,
                "the UA's own value is not ours to change"
            );
        });
        top_via_of(&REQ.replace("{P}", "keepalive"), |via, elem| {
            assert_eq!(value_at(via, elem), None, "another parameter");
        });
    }

    #[test]
    fn only_2xx_answers_to_requests_that_start_a_registration_or_dialog_negotiate() {
        assert!(negotiates(200, b"REGISTER"));
        assert!(negotiates(202, b"SUBSCRIBE"));
        assert!(negotiates(200, b"INVITE"));
        assert!(!negotiates(180, b"INVITE"));
        assert!(!negotiates(401, b"REGISTER"));
        assert!(!negotiates(200, b"OPTIONS"));
        assert!(!negotiates(200, b"register"), "methods are case-sensitive");
    }
}
