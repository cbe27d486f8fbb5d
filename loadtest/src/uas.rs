//! The answering side: Bob in RFC 3665 section 3.1.
//!
//! - A new INVITE gets 180 Ringing and the final answer (200 with SDP, or `--answer CODE`) at
//!   once, both carrying our To tag `<nonce>.<slot>.<gen>` and the request's Record-Route
//!   (RFC 3261 section 12.1.1). The final answer is re-sent at T1, 2*T1, ... T2 until the ACK
//!   arrives, and the call fails after 64*T1 without one (sections 13.3.1.4 and 17.2.1).
//! - A retransmitted INVITE (no To tag yet) is recognised by a hash of Call-ID and From tag and
//!   gets the final answer again: the only place we hash, once per INVITE.
//! - ACK and BYE find their dialog through the To tag in O(1). A BYE for a dialog already gone
//!   (our 200 was lost and the BYE retransmitted) is answered 200 again; one for a dialog we never
//!   had gets 481 (section 15.1.2).
//! - REGISTER and OPTIONS are answered 200, so `call --target <our own port>` works without a
//!   proxy in between.

use std::net::SocketAddr;

use sipshard::sip::{HeaderName, Message, Method};

use crate::engine::worker::{fnv1a, Core, DState};
use crate::msg::{parse_id, Answer, Id};
use crate::stats::Cause;
use crate::writer::W;

impl Core {
    pub fn on_request(&mut self, sock: usize, from: SocketAddr, msg: &Message<'_>) {
        match msg.method() {
            Some(Method::Invite) => self.on_invite(sock, from, msg),
            Some(Method::Ack) => self.on_ack(msg),
            Some(Method::Bye) => self.on_bye(sock, from, msg),
            Some(Method::Register) => self.on_register(sock, from, msg),
            _ => self.respond(sock, from, msg, 200, b""),
        }
    }

    /// A response carrying only what RFC 3261 section 8.2.6.2 copies, plus `extra` lines.
    fn respond(&mut self, sock: usize, to: SocketAddr, msg: &Message<'_>, code: u16, extra: &[u8]) {
        let q = &mut self.io.socks[sock].out;
        let (arena, start) = q.arena();
        Answer {
            req: msg,
            code,
            to_tag: None,
            record_route: false,
            contact: None,
            sdp: None,
            extra,
        }
        .write(&mut W::new(arena));
        q.commit(to, start);
    }

    fn on_invite(&mut self, sock: usize, from: SocketAddr, msg: &Message<'_>) {
        if !self.cfg.has_server() {
            self.respond(sock, from, msg, 501, b"");
            return;
        }
        let Ok(to) = msg.to() else { return };
        if to.tag().is_some() {
            // re-INVITE: not part of any scenario here.
            self.respond(sock, from, msg, 501, b"");
            return;
        }
        let Ok(call_id) = msg.call_id() else { return };
        let from_tag = msg.from().ok().and_then(|f| f.tag()).unwrap_or(b"");
        let key = fnv1a(&[call_id, from_tag]);
        if let Some(&slot) = self.dialog_index.get(&key) {
            let d = &self.dialogs[slot as usize];
            if d.call_id == call_id {
                if d.state == DState::Answered {
                    self.io.socks[sock].out.push(from, &d.resp);
                    self.stats.counters.retrans.response += 1;
                }
                return;
            }
        }
        let slot = self.alloc_dialog();
        self.stats.counters.server.attempted += 1;
        let local = self.local(sock);
        let answer = self.cfg.answer;
        let (now, t1, nonce) = (self.now, self.cfg.t1_ns, self.nonce);
        let d = &mut self.dialogs[slot as usize];
        let id = Id { slot, gen: d.gen };
        if answer < 300 {
            let q = &mut self.io.socks[sock].out;
            let (arena, start) = q.arena();
            Answer {
                req: msg,
                code: 180,
                to_tag: Some((nonce, id)),
                record_route: true,
                contact: Some(local),
                sdp: None,
                extra: b"",
            }
            .write(&mut W::new(arena));
            q.commit(from, start);
        }
        d.resp.clear();
        let ok = answer < 300;
        Answer {
            req: msg,
            code: answer,
            to_tag: Some((nonce, id)),
            record_route: ok,
            contact: ok.then_some(local),
            sdp: ok.then_some(&self.sdp[sock][..]),
            extra: b"",
        }
        .write(&mut W::new(&mut d.resp));
        self.io.socks[sock].out.push(from, &d.resp);
        d.state = DState::Answered;
        d.sock = sock as u16;
        d.peer = Some(from);
        d.started = now;
        d.rtx = t1;
        d.key = key;
        d.final_code = answer;
        d.call_id.clear();
        d.call_id.extend_from_slice(call_id);
        self.dialog_index.insert(key, slot);
        self.arm_dialog(slot, now + t1);
    }

    /// The dialog a request's To tag names, if it is live.
    fn dialog_of(&self, msg: &Message<'_>) -> (Option<u32>, bool) {
        let tag = msg.to().ok().and_then(|t| t.tag());
        let Some(id) = tag.and_then(|t| parse_id(t, self.nonce)) else {
            return (None, false);
        };
        let live = self
            .dialogs
            .get(id.slot as usize)
            .is_some_and(|d| d.gen == id.gen && d.state != DState::Free);
        (live.then_some(id.slot), true)
    }

    fn on_ack(&mut self, msg: &Message<'_>) {
        let (Some(slot), _) = self.dialog_of(msg) else {
            // ACKs are never answered; a late one (ours was already confirmed) is just noted.
            self.stats.counters.stray += 1;
            return;
        };
        let d = &mut self.dialogs[slot as usize];
        if d.state != DState::Answered {
            return;
        }
        if d.final_code < 300 {
            // The pending Timer G entry re-arms for the dialog's give-up time when it fires,
            // so short calls never put a long-lived entry in the timer heap.
            d.state = DState::Confirmed;
            d.started = self.now;
        } else {
            // A rejected call is complete once its rejection is ACKed.
            self.stats.counters.server.succeeded += 1;
            self.free_dialog(slot);
        }
    }

    fn on_bye(&mut self, sock: usize, from: SocketAddr, msg: &Message<'_>) {
        match self.dialog_of(msg) {
            (Some(slot), _) => {
                self.respond(sock, from, msg, 200, b"");
                self.stats.counters.server.succeeded += 1;
                self.free_dialog(slot);
            }
            (None, true) => {
                // Ours, already ended: our 200 was lost and the BYE came again.
                self.respond(sock, from, msg, 200, b"");
                self.stats.counters.stray += 1;
            }
            (None, false) => self.respond(sock, from, msg, 481, b""),
        }
    }

    /// A stand-in registrar: accept and echo the binding (RFC 3261 section 10.3 step 8).
    fn on_register(&mut self, sock: usize, from: SocketAddr, msg: &Message<'_>) {
        let mut extra = std::mem::take(&mut self.scratch);
        extra.clear();
        {
            let mut w = W::new(&mut extra);
            for f in msg.fields_named(HeaderName::Contact) {
                w.b(b"Contact: ").b(msg.bytes(f.value)).crlf();
            }
            let expires = msg.expires().ok().flatten().unwrap_or(3600);
            w.b(b"Expires: ").dec(expires as u64).crlf();
        }
        self.respond(sock, from, msg, 200, &extra);
        self.scratch = extra;
    }

    /// Re-send the final answer until the ACK (Timer G, capped at T2), fail at 64*T1 (Timer H);
    /// drop a confirmed dialog whose BYE never came.
    pub fn dialog_timer(&mut self, slot: u32) {
        let (t1, t2) = (self.cfg.t1_ns, self.cfg.t2_ns);
        let d = &mut self.dialogs[slot as usize];
        match d.state {
            DState::Answered => {
                let deadline = d.started + 64 * t1;
                if self.now >= deadline {
                    self.stats.counters.server.fail(Cause::Timeout);
                    self.free_dialog(slot);
                    return;
                }
                if let Some(peer) = d.peer {
                    self.io.socks[d.sock as usize].out.push(peer, &d.resp);
                    self.stats.counters.retrans.response += 1;
                }
                d.rtx = (d.rtx * 2).min(t2);
                let at = (self.now + d.rtx).min(deadline);
                self.arm_dialog(slot, at);
            }
            DState::Confirmed => {
                // Nobody may hold a dialog forever: give up well after any sane hold.
                let give_up = d.started + self.cfg.hold_ns + 128 * t1;
                if self.now >= give_up {
                    self.stats.counters.server.fail(Cause::Timeout);
                    self.free_dialog(slot);
                } else {
                    self.arm_dialog(slot, give_up);
                }
            }
            DState::Free => {}
        }
    }
}
