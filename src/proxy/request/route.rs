//! Route processing (RFC 3261 section 16.4): undo a strict router's rewrite, consume the
//! Route that names us, and tell whether what is left is for one of our domains.

use std::ops::ControlFlow;

use crate::sip::{NameAddr, Span, Target, Uri};

use super::super::flow::{Refused, TOKEN_PREFIX};

use super::{Core, Incoming, Stage};

/// Where Route processing left the request.
pub(super) struct Routing<'m> {
    /// The URI the request is for: the Request-URI, or the last Route after a strict router.
    pub target: Uri<'m>,
    /// The URI of the first Route left once ours is consumed: the request goes there.
    pub next: Option<Uri<'m>>,
    /// No Route left, and the target is in one of our domains.
    pub ours: bool,
    /// The Request-URI to write: the real target a strict router moved into Route.
    pub new_request_uri: Option<Span>,
    /// Route values to remove, as (field index, value span): the strict router's last one and
    /// ours at the top (two when we Record-Routed twice, for a change of transport).
    pub removed: [Option<(usize, Span)>; 3],
    /// The flow our consumed Route's flow token names (our Path, RFC 5626 section 5.3), or why
    /// the token was refused.
    pub flow: Option<Result<Target, Refused>>,
}

impl Routing<'_> {
    /// Whether a Route of ours brought the request here (in-dialog requests on our
    /// Record-Route).
    pub fn routed_by_us(&self) -> bool {
        self.removed.iter().any(Option::is_some)
    }
}

impl Core {
    pub(super) fn route<'m>(
        &mut self,
        rq: &Incoming<'_, 'm>,
        request_uri: &Uri<'m>,
    ) -> Stage<Routing<'m>> {
        let mut routes = RouteSummary::default();
        for r in rq.msg.routes() {
            match r {
                Ok(r) => routes.push(r),
                Err(e) => return self.refuse(rq, e.status(), e.reason()),
            }
        }
        let local = &self.cfg.local;
        let mut routing = Routing {
            target: *request_uri,
            next: None,
            ours: false,
            new_request_uri: None,
            removed: [None, None, None],
            flow: None,
        };
        // A strict router upstream put our Record-Route URI in the Request-URI and the real
        // target last in Route: restore it.
        if routes.count > 0
            && request_uri.user.is_none()
            && request_uri
                .host
                .is_some_and(|h| local.is_our_address(&h, request_uri.port))
        {
            let last = routes.last.expect("count > 0");
            routing.target = last.uri;
            routing.new_request_uri = Some(Span::within(rq.msg.buf(), last.uri.raw, 0));
            routing.removed[0] = Some((last.field, last.span));
            routes.drop_last();
        }
        // Loose routing: the top Route naming us is consumed, and a second one right below it
        // (our double Record-Route when the dialog changes transport here).
        for slot in 1..=2 {
            let Some(first) = routes.first else { break };
            if !first
                .uri
                .host
                .is_some_and(|h| local.is_our_route(&h, first.uri.port))
            {
                break;
            }
            routing.removed[slot] = Some((first.field, first.span));
            if let Some(token) = first.uri.user.filter(|u| u.starts_with(TOKEN_PREFIX)) {
                routing
                    .flow
                    .get_or_insert_with(|| self.cfg.flow_key.flow(token));
            }
            routes.drop_first();
        }
        routing.next = routes.first.map(|r| r.uri);
        let target = routing.target;
        routing.ours = routing.next.is_none()
            && target
                .host
                .is_some_and(|h| local.is_our_domain(&h, target.port));
        ControlFlow::Continue(routing)
    }
}

/// The parts of the Route set the decision needs: how many, the first three and the last.
#[derive(Default)]
struct RouteSummary<'a> {
    count: usize,
    first: Option<NameAddr<'a>>,
    second: Option<NameAddr<'a>>,
    third: Option<NameAddr<'a>>,
    last: Option<NameAddr<'a>>,
}

impl<'a> RouteSummary<'a> {
    fn push(&mut self, r: NameAddr<'a>) {
        match self.count {
            0 => self.first = Some(r),
            1 => self.second = Some(r),
            2 => self.third = Some(r),
            _ => {}
        }
        self.last = Some(r);
        self.count += 1;
    }

    fn drop_last(&mut self) {
        self.count -= 1;
        if self.count == 0 {
            self.first = None;
        }
        if self.count <= 1 {
            self.second = None;
        }
        if self.count <= 2 {
            self.third = None;
        }
        // `last` is only used once, by the strict-router fix-up.
        self.last = None;
    }

    fn drop_first(&mut self) {
        self.count -= 1;
        self.first = if self.count > 0 { self.second } else { None };
        self.second = if self.count > 1 { self.third } else { None };
        self.third = None;
    }
}
