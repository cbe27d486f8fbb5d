//! Requests we answer ourselves instead of forwarding: REGISTER for one of our domains (the
//! registrar) and OPTIONS addressed to this proxy (keepalives, capability queries).

use std::ops::ControlFlow;

use crate::registrar;
use crate::sip::{Method, Transport};

use super::super::auth::Role;
use super::super::{Decision, ALLOW};
use super::route::Routing;
use super::{Core, Incoming, Stage};

impl Core {
    /// Answer the request if it is ours to answer; else let it go on to be forwarded.
    pub(super) fn local(&mut self, rq: &Incoming<'_, '_>, routing: &Routing<'_>) -> Stage<()> {
        if !routing.ours {
            return ControlFlow::Continue(());
        }
        match rq.method {
            Method::Register => ControlFlow::Break(self.register(rq)),
            Method::Options if routing.target.user.is_none() => self.options(rq),
            _ => ControlFlow::Continue(()),
        }
    }

    fn options<T>(&mut self, rq: &Incoming<'_, '_>) -> Stage<T> {
        self.extra.clear();
        self.extra.extend_from_slice(b"Allow: ");
        self.extra.extend_from_slice(ALLOW.as_bytes());
        self.extra
            .extend_from_slice(b"\r\nAccept: application/sdp\r\n");
        self.answer(rq, 200, "OK")
    }

    /// The registrar: plan the REGISTER against the table, then commit it (see
    /// [`registrar`]).
    fn register(&mut self, rq: &Incoming<'_, '_>) -> Decision {
        if self.auth.is_some() {
            if let ControlFlow::Break(d) = self.authenticate(rq, Role::Registrar) {
                return d;
            }
        }
        self.extra.clear();
        let cfg = self.cfg;
        let planned = registrar::plan(
            &cfg.registrar,
            &cfg.local,
            &self.table,
            rq.msg,
            rq.src,
            rq.now,
        );
        // Matched by reference: a plan holds a 256-byte key, not worth a move.
        let (status, reason) = match &planned {
            Ok(plan) => {
                let mut store = registrar::Store {
                    table: &mut self.table,
                    counters: &mut self.counters,
                    outbox: &mut self.outbox,
                };
                let flow_timer = cfg.registrar.flow_timer;
                let answer = registrar::commit(
                    &mut store,
                    plan,
                    flow_timer,
                    &mut self.extra,
                    &mut self.date,
                );
                self.ping_nat_contacts(plan, rq.socket);
                answer
            }
            Err(refusal) => refusal.write(&mut self.extra),
        };
        self.reply_extra(rq.msg, rq.src, rq.socket, status, reason)
    }

    /// The UDP contacts behind NAT that a REGISTER added or refreshed here are pinged by this
    /// shard, from the listener it came in on (`--nat-ping-interval`).
    fn ping_nat_contacts(&mut self, plan: &registrar::Plan<'_>, listener: usize) {
        let (Some(pinger), registrar::Changes::Listed(changes)) =
            (&mut self.pinger, plan.changes())
        else {
            return;
        };
        let natted = changes
            .iter()
            .filter(|c| c.nat && c.expires > 0 && c.dest.transport == Transport::Udp);
        for c in natted {
            pinger.track(plan.aor(), c.uri, c.dest.addr, listener);
        }
    }
}
