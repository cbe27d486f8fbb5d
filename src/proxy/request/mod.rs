//! A request, stage by stage (RFC 3261 sections 16.3-16.6).
//!
//! Each stage is a method of [`Core`] that returns what the next stages need, or breaks with
//! the [`Decision`] that ends the request there: a reply, a drop, or the answer to a request we
//! serve ourselves. [`Core::on_request`] is the list of stages, in the order their answers take
//! precedence (a request that fails two checks gets the earlier one's answer):
//!
//! 1. [`validate`]: what any request must be (section 16.3 items 1, 2 and 5; the ACK for our
//!    own reply is absorbed here);
//! 2. [`route`]: Route processing (section 16.4), the strict-router fix-up and our loose Route;
//! 3. [`local`]: REGISTER for our domains and OPTIONS to us are answered, not forwarded;
//! 4. the hop limit (section 16.3 item 3), for what is forwarded;
//! 5. proxy authentication (section 16.3 item 6, in `super::auth`), before the location service
//!    is asked, so an unauthenticated caller learns nothing about registrations;
//! 6. [`target`]: where it goes (section 16.5) and the Request-URI it goes with;
//! 7. loop detection (section 16.3 item 4), which needs the branch the Via will carry;
//! 8. [`edit`]: the rest of section 16.6, recorded in `Core::edits` and applied to the buffer
//!    once the decision is made.
//!
//! The datagram was parsed once, in place; stages read the parsed view and share its parsed
//! parts (the Request-URI, the Route set) through their results, so nothing is parsed twice.

mod edit;
mod local;
mod route;
mod target;
mod validate;

use std::convert::Infallible;
use std::ops::ControlFlow;

use crate::location::Now;
use crate::sip::{Message, Method, Source};

use super::{Core, Decision};

/// What a stage returns: its result for the next stages, or the decision that ends the request.
pub(super) type Stage<T> = ControlFlow<Decision, T>;

/// The request being decided and where it came from: what every stage reads.
#[derive(Clone, Copy)]
pub(super) struct Incoming<'r, 'm> {
    pub msg: &'r Message<'m>,
    pub src: Source,
    /// The listener it arrived on.
    pub socket: usize,
    pub now: Now,
    pub method: Method,
}

impl Core {
    pub(super) fn on_request(
        &mut self,
        msg: &Message<'_>,
        src: Source,
        socket: usize,
        now: Now,
    ) -> Decision {
        let method = msg.method().unwrap_or(Method::Other);
        let rq = Incoming {
            msg,
            src,
            socket,
            now,
            method,
        };
        match self.stages(&rq) {
            ControlFlow::Break(decision) => decision,
            ControlFlow::Continue(never) => match never {},
        }
    }

    /// Every request ends at one of the stages; the last one, edit, ends it by forwarding.
    fn stages(&mut self, rq: &Incoming<'_, '_>) -> Stage<Infallible> {
        let request_uri = self.validate(rq)?;
        let routing = self.route(rq, &request_uri)?;
        self.local(rq, &routing)?;
        let max_forwards = self.hop_limit(rq)?;
        let authenticated = self.authenticate_caller(rq, routing.routed_by_us())?;
        // Edits start here: the target stage records the new Request-URI.
        self.edits.clear();
        let dest = self.target(rq, &routing)?;
        let branch = self.loop_check(rq)?;
        let fwd = edit::Forwarding {
            dest,
            max_forwards,
            authenticated,
            branch,
            sips: routing.target.scheme == crate::sip::Scheme::Sips,
        };
        self.edit(rq, &routing, &fwd)
    }

    /// End the request with a reply that carries no extra header lines.
    pub(super) fn refuse<T>(
        &mut self,
        rq: &Incoming<'_, '_>,
        status: u16,
        reason: &str,
    ) -> Stage<T> {
        ControlFlow::Break(self.reply_to(rq.msg, rq.src, rq.socket, status, reason))
    }

    /// End the request with a reply carrying the header lines now in `self.extra`.
    pub(super) fn answer<T>(
        &mut self,
        rq: &Incoming<'_, '_>,
        status: u16,
        reason: &str,
    ) -> Stage<T> {
        ControlFlow::Break(self.reply_extra(rq.msg, rq.src, rq.socket, status, reason))
    }
}
