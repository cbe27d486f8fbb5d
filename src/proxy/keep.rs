//! RFC 6223's `keep` Via parameter, the negotiation of RFC 5626's keep-alives between adjacent
//! hops without Outbound: a UA that writes `keep` without a value in its Via offers to send
//! keep-alives (STUN Binding requests on UDP, CRLF CRLF on TCP and TLS) to the hop that
//! answers; that hop, when willing to receive them, gives the parameter a value in its
//! response: the interval in seconds. sipshard answers both kinds on every SIP port, so it
//! gives the value (`--flow-timer`) in 2xx answers to REGISTER, its own (the registrar's 200)
//! or forwarded back to the UA as an edge; and in 2xx answers to requests that start a dialog
//! when it Record-Routes, since it may offer keep-alives for a dialog only if it stays in the
//! dialog's route set (RFC 6223 section 4.4).
//!
//! A value already in the UA's Via of a forwarded response was written by a hop beyond us, not
//! the UA's neighbour: it is replaced by ours in a negotiating answer and removed from others
//! (section 10: a hop downstream must not set how often the UA sends keep-alives).

use crate::sip::Via;

/// Requests whose 2xx answer starts a dialog that keep-alives can keep open.
const STARTS_A_DIALOG: [&[u8]; 3] = [b"INVITE", b"SUBSCRIBE", b"REFER"];

/// Whether an answer with `status` to a request of `method` (its CSeq's) gets our interval;
/// `record_route`: we stay in the route set of the dialogs it may start.
pub fn negotiates(status: u16, method: &[u8], record_route: bool) -> bool {
    (200..300).contains(&status)
        && (method == b"REGISTER" || record_route && STARTS_A_DIALOG.contains(&method))
}

/// Offset within `elem` (the Via's text) just after a valueless `keep`: where `=secs` goes.
pub fn value_at(via: &Via<'_>, elem: &[u8]) -> Option<usize> {
    via.param_at(elem, b"keep")
        .filter(|k| !k.has_value())
        .map(|k| k.name_end)
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
        top_via_of(&REQ.replace("{P}", "keep=30;rport"), |via, elem| {
            assert_eq!(value_at(via, elem), None, "a value is there already");
            let k = via.param_at(elem, b"keep").unwrap();
            assert!(k.has_value());
            assert_eq!(&elem[k.name_end..k.value_end], b"=30");
        });
        top_via_of(&REQ.replace("{P}", "keepalive"), |via, elem| {
            assert_eq!(value_at(via, elem), None, "another parameter");
        });
    }

    #[test]
    fn only_2xx_answers_to_a_registration_or_a_dialog_we_stay_in_negotiate() {
        assert!(negotiates(200, b"REGISTER", false));
        assert!(negotiates(202, b"SUBSCRIBE", true));
        assert!(negotiates(200, b"INVITE", true));
        assert!(
            !negotiates(200, b"INVITE", false),
            "not in the dialog's route set"
        );
        assert!(!negotiates(180, b"INVITE", true));
        assert!(!negotiates(401, b"REGISTER", false));
        assert!(!negotiates(200, b"OPTIONS", true));
        assert!(
            !negotiates(200, b"register", false),
            "methods are case-sensitive"
        );
    }
}
