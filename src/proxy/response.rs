//! Responses (RFC 3261 section 16.7 as a stateless proxy does it, section 16.11): one that
//! answers a request we forwarded loses our Via and goes where the Via below says.

use std::net::{IpAddr, SocketAddr};

use crate::counters::DropReason;
use crate::sip::uri::parse_host;
use crate::sip::{ConnId, Host, Message, Source, Span, Target, Transport, Via};

use super::branch::BRANCH_PREFIX;
use super::keep;
use super::remove::remove_values;
use super::{Core, Decision, CONN_PARAM};

impl Core {
    pub(super) fn on_response(
        &mut self,
        msg: &Message<'_>,
        src: Source,
        socket: usize,
    ) -> Decision {
        let local = &self.cfg.local;
        let Ok(top) = msg.top_via() else {
            return Decision::Drop(DropReason::Unparseable);
        };
        let ours = top.branch().is_some_and(|b| b.starts_with(BRANCH_PREFIX))
            && local.is_our_address(&top.host, top.port);
        if !ours {
            return Decision::Drop(DropReason::StrayResponse);
        }
        if self.is_nat_ping_answer(top.branch().unwrap_or_default()) {
            return Decision::Drop(DropReason::NatPingAnswer);
        }
        let next = match msg.second_via() {
            None => return Decision::Drop(DropReason::NoNextVia),
            // Where it goes must be exact: its received, rport and maddr as the RFCs write them.
            Some(Ok(v)) if v.params_checked() => v,
            Some(_) => return Decision::Drop(DropReason::Unparseable),
        };
        let ip = next
            .received()
            .and_then(parse_ip)
            .or_else(|| next.host.ip());
        let Some(ip) = ip else {
            return Decision::Drop(DropReason::Unresolvable);
        };
        let port = match next.rport() {
            Some(Some(p)) => p,
            _ => next.port_or_default(),
        };
        // The previous hop asked for its responses over the transport its Via names.
        let Some(transport) = Transport::from_token(next.transport) else {
            return Decision::Drop(DropReason::NoSocket);
        };
        // Our Via names the connection the request came in on, when it did (see `edit`).
        let conn = top
            .param(CONN_PARAM)
            .flatten()
            .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
            .filter(|_| transport.is_stream())
            .map(ConnId);
        let dest = Target {
            transport,
            addr: SocketAddr::new(ip, port),
            conn,
            fallback_udp: false,
            flow: false,
        };
        let Some(out_socket) = local.socket_for(socket, &dest) else {
            return Decision::Drop(DropReason::NoSocket);
        };
        self.edits.clear();
        remove_values(&mut self.edits, msg, &[Some((top.field, top.span))]);
        self.offer_keepalives(msg, &top, &next);
        if self.sets_up_a_recorded_dialog(msg) {
            self.alias_contact(msg, src);
        }
        self.counters.forwarded_response(msg.status().unwrap_or(0));
        Decision::Forward {
            to: dest,
            socket: out_socket,
            len: msg.framed_len(),
        }
    }
}

impl Core {
    /// The previous hop offered keep-alives in its Via (RFC 6223): a 2xx answer to a
    /// REGISTER, or to a request starting a dialog we Record-Route, tells it how often to send
    /// them to us. A value some hop beyond us wrote there is replaced, or removed from answers
    /// that do not negotiate (see [`keep`]).
    fn offer_keepalives(&mut self, msg: &Message<'_>, top: &Via<'_>, next: &Via<'_>) {
        // Most Vias carry no `keep`: that is looked at first, the CSeq only then.
        let Some(k) = next.param_at(msg.bytes(next.span), b"keep") else {
            return;
        };
        // Our Via's removal rewrites the whole value of its header line: an edit inside that
        // line would overlap it and drop the response. A UAS that folded the Vias into one
        // line loses the negotiation, not the answer.
        if next.field == top.field {
            return;
        }
        let method = msg.cseq().map(|c| c.method).unwrap_or_default();
        let status = msg.status().unwrap_or(0);
        let at = next.span.start as usize;
        let value = Span::new(at + k.name_end, at + k.value_end);
        if keep::negotiates(status, method, self.cfg.record_route) {
            let secs = self.cfg.registrar.flow_timer;
            self.edits.replace_with(value, |w| {
                w.bytes(b"=").num(u64::from(secs));
            });
        } else if k.has_value() {
            self.edits.remove(value);
        }
    }

    /// A provisional (but 100) or 2xx answer to a request we Record-Route: its Contact is where
    /// the caller's in-dialog requests go.
    fn sets_up_a_recorded_dialog(&self, msg: &Message<'_>) -> bool {
        self.cfg.record_route
            && msg.status().is_some_and(|s| (101..300).contains(&s))
            && msg
                .cseq()
                .is_ok_and(|c| matches!(c.method, b"INVITE" | b"SUBSCRIBE" | b"REFER"))
    }

    /// Whether `branch` is one of our NAT pings'; its answer is taken (or kept for the shard
    /// that sent the ping).
    fn is_nat_ping_answer(&mut self, branch: &[u8]) -> bool {
        let Some(p) = &mut self.pinger else {
            return false;
        };
        match p.on_answer(branch) {
            None => false,
            Some(answered_here) => {
                self.counters.nat.pings_answered += u64::from(answered_here);
                true
            }
        }
    }
}

/// `received` values: a bare or bracketed IPv6 address, or IPv4 (RFC 5118 section 4.5).
fn parse_ip(v: &[u8]) -> Option<IpAddr> {
    match parse_host(v)? {
        h @ (Host::V4(_) | Host::V6(_)) => h.ip(),
        Host::Name(n) => std::str::from_utf8(n).ok()?.parse().ok(),
    }
}
