//! The checks of RFC 3261 section 16.3 (request validation), each where the order of the
//! stages puts it: what any request must be first, the hop limit only for what is forwarded,
//! loop detection once the target is known.

use std::ops::ControlFlow;

use crate::counters::DropReason;
use crate::sip::{HeaderName, Message, Method, Scheme, Uri};

use super::super::branch::{self, BranchKey};
use super::super::reply::ReplySource;
use super::{Core, Incoming, Stage};

impl Core {
    /// Section 16.3 items 1, 2 and 5: syntax, a URI scheme we know, no Proxy-Require we do not
    /// support. The ACK for a reply we generated is absorbed here. Returns the Request-URI.
    pub(super) fn validate<'m>(&mut self, rq: &Incoming<'_, 'm>) -> Stage<Uri<'m>> {
        let msg = rq.msg;
        if let Err(e) = msg.validate_request() {
            self.counters.parse_error(e);
            return self.refuse(rq, e.status(), e.reason());
        }
        let Some(ruri) = msg.request_uri() else {
            return self.refuse(rq, 400, "Bad Request - Malformed Request-URI");
        };
        if let Scheme::Other(_) = ruri.scheme {
            return self.refuse(rq, 416, "Unsupported URI Scheme");
        }
        if rq.method == Method::Ack && is_ack_for_local_reply(msg) {
            return ControlFlow::Break(super::Decision::Drop(DropReason::AbsorbedAck));
        }
        // Item 5: we support no extensions that a proxy must understand.
        if !matches!(rq.method, Method::Ack | Method::Cancel)
            && msg.field(HeaderName::ProxyRequire).is_some()
        {
            return self.bad_extension(rq);
        }
        ControlFlow::Continue(ruri)
    }

    /// 420, listing the Proxy-Require option tags in Unsupported.
    fn bad_extension<T>(&mut self, rq: &Incoming<'_, '_>) -> Stage<T> {
        self.extra.clear();
        self.extra.extend_from_slice(b"Unsupported: ");
        for (i, tag) in rq.msg.option_tags(HeaderName::ProxyRequire).enumerate() {
            if i > 0 {
                self.extra.extend_from_slice(b", ");
            }
            self.extra.extend_from_slice(tag);
        }
        self.extra.extend_from_slice(b"\r\n");
        self.answer(rq, 420, "Bad Extension")
    }

    /// Item 3, for a request about to be forwarded: Max-Forwards, if present, is not zero.
    /// Returns its value.
    pub(super) fn hop_limit(&mut self, rq: &Incoming<'_, '_>) -> Stage<Option<u8>> {
        match rq.msg.max_forwards() {
            Err(e) => self.refuse(rq, e.status(), e.reason()),
            Ok(Some(0)) => self.refuse(rq, 483, "Too Many Hops"),
            Ok(m) => ControlFlow::Continue(m),
        }
    }

    /// Item 4: a Via of ours carrying the loop part this request would get means it came back
    /// unchanged. Returns the branch key for the Via we add.
    pub(super) fn loop_check(&mut self, rq: &Incoming<'_, '_>) -> Stage<BranchKey> {
        let key = match BranchKey::compute(rq.msg) {
            Ok(k) => k,
            Err(e) => return self.refuse(rq, e.status(), e.reason()),
        };
        let local = &self.cfg.local;
        for via in rq.msg.vias().flatten() {
            if local.is_our_address(&via.host, via.port)
                && via.branch().and_then(BranchKey::loop_part_of) == Some(key.loop_part)
            {
                return self.refuse(rq, 482, "Loop Detected");
            }
        }
        ControlFlow::Continue(key)
    }
}

/// An ACK whose To tag is the one we put in a reply to its request (a non-2xx answer of ours).
fn is_ack_for_local_reply(msg: &Message<'_>) -> bool {
    let Some(tag) = msg.to().ok().and_then(|t| t.tag()) else {
        return false;
    };
    if !tag.starts_with(branch::LOCAL_TAG_PREFIX) {
        return false;
    }
    ReplySource::from_message(msg).is_some_and(|rs| rs.local_tag()[..] == *tag)
}
