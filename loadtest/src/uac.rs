//! The calling side: INVITE (with SDP) -> 1xx -> 200 -> ACK -> hold -> BYE -> 200, as Alice does
//! in RFC 3665 section 3.1.
//!
//! - INVITE retransmits on Timer A (T1, doubling, RFC 3261 section 17.1.1.2) until a provisional
//!   or final response, and times out on Timer B (64*T1).
//! - A 2xx creates the dialog (section 12.1.2): the route set is the Record-Route list reversed,
//!   the remote target is the Contact. ACK and BYE go where the route set says (section 12.2.1.1,
//!   loose routing; strict routers get the RFC 2543 treatment), not back to `--target`.
//! - The ACK of a 2xx is its own transaction; we keep it and send it again whenever the 2xx is
//!   retransmitted (section 13.2.2.4). A non-2xx final is ACKed hop-by-hop with the INVITE's
//!   branch (section 17.1.1.3), statelessly, even after the call is gone.
//! - BYE is a non-INVITE transaction (Timer E/F).
//! - The first response that does not fit ends the call as failed (a 486 unless `--expect 486`).

use std::net::SocketAddr;

use sipshard::sip::{Contact, HeaderName, Message, NameAddr};

use crate::config::Role;
use crate::digest::{authorization_header, challenge, hex8, write_authorization, Challenge};
use crate::engine::worker::{CState, Call, Core, Kind};
use crate::msg::{uri_addr, write_contact_host, write_id, write_via, Id, Local};
use crate::stats::{record_ns, Cause};
use crate::writer::W;

/// The user part of the caller's From and Contact, and the Digest user name it answers
/// challenges with (`--password-file` needs a `uac:` or a `*:` line).
const CALLER: &[u8] = b"uac";

/// Most Record-Route entries honoured (more is not a real deployment).
const MAX_ROUTES: usize = 16;

impl Core {
    /// Write the Request-URI of call `callee`: `--to`, or `sip:<prefix><callee>@<domain>`.
    fn write_callee(w: &mut W<'_>, to: Option<&str>, prefix: &str, callee: u32, domain: &str) {
        match to {
            Some(uri) => {
                w.s(uri);
            }
            None => {
                w.b(b"sip:").s(prefix).dec(callee as u64).b(b"@").s(domain);
            }
        }
    }

    /// Start call number `k` of this worker, scheduled at `sched`.
    pub fn start_call(&mut self, sched: u64, k: u64) {
        self.record_start(sched);
        let sock = self.pick_sock();
        let slot = self.alloc_call(Kind::Invite);
        let global = k * self.cfg.threads as u64 + self.id as u64;
        let callee = if self.cfg.role == Role::Both {
            (global % self.cfg.users.max(1) as u64) as u32
        } else {
            0
        };
        let (t1, now, target) = (self.cfg.t1_ns, self.now, self.target);
        let c = &mut self.calls[slot as usize];
        c.sock = sock;
        c.dest = target;
        c.origin = sched;
        c.cseq = 0;
        c.user = callee;
        c.seq = 0;
        c.txn_start = now;
        c.rtx = t1;
        self.write_invite(slot, None);
        self.send_req(slot);
        self.arm_call(slot, now + t1);
    }

    /// (Re)write the slot's INVITE as a new transaction (next branch and CSeq, same Call-ID and
    /// From tag), with credentials when answering a challenge (RFC 3261 section 22.2).
    fn write_invite(&mut self, slot: u32, auth: Option<(&Challenge<'_>, &str, bool)>) {
        let (sock, callee) = {
            let c = &self.calls[slot as usize];
            (c.sock as usize, c.user)
        };
        let local = self.local(sock);
        let nonce = self.nonce;
        let cfg = &self.cfg;
        let sdp = &self.sdp[sock];
        self.scratch.clear();
        let to = cfg.to_uri.as_deref();
        Self::write_callee(
            &mut W::new(&mut self.scratch),
            to,
            &cfg.user_prefix,
            callee,
            &cfg.domain,
        );
        let ruri = &self.scratch;
        let c = &mut self.calls[slot as usize];
        c.seq += 1;
        c.cseq += 1;
        let id = Id { slot, gen: c.gen };
        c.req.clear();
        let mut w = W::new(&mut c.req);
        w.b(b"INVITE ").b(ruri).b(b" SIP/2.0\r\n");
        write_via(&mut w, local, nonce, id, c.seq);
        w.b(b"Max-Forwards: 70\r\nFrom: <sip:").b(CALLER).b(b"@");
        w.s(&cfg.domain).b(b">;tag=");
        write_id(&mut w, nonce, id);
        w.b(b"\r\nTo: <").b(ruri).b(b">\r\nCall-ID: ");
        write_id(&mut w, nonce, id);
        w.b(b"@sipshard-load\r\nCSeq: ").dec(c.cseq as u64);
        w.b(b" INVITE\r\nContact: <sip:").b(CALLER).b(b"@");
        write_contact_host(&mut w, local);
        w.b(b">\r\n");
        if let Some((ch, password, proxy)) = auth {
            let mut buf = [0u8; 16];
            let cnonce = hex8(&mut buf, nonce ^ slot.rotate_left(16) ^ c.gen ^ c.seq);
            let header = authorization_header(proxy);
            let (user, pw) = (CALLER, password.as_bytes());
            write_authorization(&mut w, header, user, pw, ch, b"INVITE", ruri, cnonce);
        }
        w.b(b"Content-Type: application/sdp\r\nContent-Length: ")
            .dec(sdp.len() as u64)
            .b(b"\r\n\r\n")
            .b(sdp);
    }

    /// Answer a 401/407 to an INVITE once, with `--password-file`'s password for the caller:
    /// the INVITE goes again, as a new transaction. False when it cannot be answered (no
    /// password, no usable challenge, or already tried).
    fn retry_with_credentials(&mut self, slot: u32, code: u16, msg: &Message<'_>) -> bool {
        let Some((ch, pw)) = self.credentials_for(slot, code, msg) else {
            return false;
        };
        let (t1, now) = (self.cfg.t1_ns, self.now);
        let c = &mut self.calls[slot as usize];
        c.auth_tried = true;
        c.state = CState::Calling;
        c.got_18x = false;
        c.txn_start = now;
        c.rtx = t1;
        self.write_invite(slot, Some((&ch, &pw, code == 407)));
        self.send_req(slot);
        self.arm_call(slot, now + t1);
        true
    }

    /// Timer A/B while calling, the hold timer when established, Timer E/F for the BYE.
    pub fn invite_timer(&mut self, slot: u32, at: u64) {
        let t1 = self.cfg.t1_ns;
        let c = &self.calls[slot as usize];
        let deadline = c.txn_start + 64 * t1;
        match c.state {
            CState::Calling => {
                if self.now >= deadline {
                    self.fail(slot, Cause::Timeout);
                    return;
                }
                if !self.retransmits() {
                    self.arm_call(slot, deadline);
                    return;
                }
                self.send_req(slot);
                self.stats.counters.retrans.invite += 1;
                let c = &mut self.calls[slot as usize];
                c.rtx *= 2;
                let next = (self.now + c.rtx).min(deadline);
                self.arm_call(slot, next);
            }
            CState::Proceeding => {
                if self.now >= deadline {
                    self.fail(slot, Cause::Timeout);
                } else {
                    self.arm_call(slot, deadline);
                }
            }
            // The hold is over: the BYE's latency counts from when it was due.
            CState::Established => self.send_bye(slot, at),
            CState::ByeSent => {
                self.non_invite_timer(slot);
            }
        }
    }

    pub fn invite_response(&mut self, slot: u32, msg: &Message<'_>) {
        let Some(code) = msg.status() else { return };
        let Ok(cseq) = msg.cseq() else {
            self.fail(slot, Cause::UnexpectedMessage);
            return;
        };
        let is_invite = cseq.method == b"INVITE";
        let is_bye = cseq.method == b"BYE";
        let c = &self.calls[slot as usize];
        if is_invite && c.state == CState::Calling && cseq.number < c.cseq {
            // A late answer to the INVITE we sent before the challenge: ACK it again if final.
            if code >= 300 {
                let (sock, dest) = (c.sock as usize, c.dest);
                self.ack_non_2xx(sock, dest, msg);
            }
            return;
        }
        let state = c.state;
        match state {
            CState::Calling | CState::Proceeding if is_invite => {
                if code < 200 {
                    let c = &mut self.calls[slot as usize];
                    if code >= 180 && !c.got_18x {
                        c.got_18x = true;
                        let d = self.now.saturating_sub(c.origin);
                        record_ns(&mut self.stats.hists.invite_to_180, d);
                    }
                    // Retransmissions stop; the pending Timer A entry, when it fires, re-arms
                    // for Timer B instead (so no 32 s heap entry per call on the fast path).
                    c.state = CState::Proceeding;
                } else if code < 300 {
                    let d = self.now.saturating_sub(self.calls[slot as usize].origin);
                    record_ns(&mut self.stats.hists.invite_to_200, d);
                    record_ns(&mut self.interval.main, d);
                    if !self.establish(slot, msg) {
                        self.fail(slot, Cause::UnexpectedMessage);
                        return;
                    }
                    let c = &self.calls[slot as usize];
                    let hop = c.next_hop.unwrap_or(self.target);
                    self.io.socks[c.sock as usize].out.push(hop, &c.ack);
                    let hold = self.cfg.hold_ns;
                    if hold == 0 {
                        let now = self.now;
                        self.send_bye(slot, now);
                    } else {
                        self.calls[slot as usize].state = CState::Established;
                        let at = self.now + hold;
                        self.arm_call(slot, at);
                    }
                } else {
                    let c = &self.calls[slot as usize];
                    let (sock, dest) = (c.sock as usize, c.dest);
                    self.ack_non_2xx(sock, dest, msg);
                    if self.retry_with_credentials(slot, code, msg) {
                        return;
                    }
                    if self.cfg.is_success(code) {
                        self.succeed(slot);
                    } else {
                        self.fail_status(slot, code);
                    }
                }
            }
            CState::Established | CState::ByeSent if is_invite => {
                if (200..300).contains(&code) {
                    // Our ACK was lost: the 2xx is retransmitted until it arrives.
                    let c = &self.calls[slot as usize];
                    let hop = c.next_hop.unwrap_or(self.target);
                    self.io.socks[c.sock as usize].out.push(hop, &c.ack);
                    self.stats.counters.retrans.ack += 1;
                } else if code >= 300 {
                    self.fail(slot, Cause::UnexpectedMessage);
                }
                // A provisional overtaken by the 2xx (UDP reorders): harmless.
            }
            CState::ByeSent if is_bye => {
                if code < 200 {
                    return;
                }
                if self.cfg.is_success(code) {
                    let d = self.now.saturating_sub(self.calls[slot as usize].origin);
                    record_ns(&mut self.stats.hists.bye_to_200, d);
                    self.succeed(slot);
                } else if !self.retry_bye_with_credentials(slot, code, msg) {
                    self.fail_status(slot, code);
                }
            }
            _ => self.fail(slot, Cause::UnexpectedMessage),
        }
    }

    /// Take the dialog state from a 2xx (RFC 3261 section 12.1.2) and build its ACK. False when
    /// the 2xx lacks what a dialog needs (To tag, Contact).
    pub(crate) fn establish(&mut self, slot: u32, msg: &Message<'_>) -> bool {
        let (Ok(to), Ok(call_id)) = (msg.to(), msg.call_id()) else {
            return false;
        };
        if to.tag().is_none() {
            return false;
        }
        let (Some(from_v), Some(to_v)) = (msg.header(HeaderName::From), msg.header(HeaderName::To))
        else {
            return false;
        };
        let Some(Ok(Contact::Addr(contact))) = msg.contacts().next() else {
            return false;
        };
        let mut rr: [Option<NameAddr<'_>>; MAX_ROUTES] = [None; MAX_ROUTES];
        let mut n = 0;
        for r in msg.record_routes() {
            let Ok(r) = r else { return false };
            if n < MAX_ROUTES {
                rr[n] = Some(r);
                n += 1;
            }
        }
        let target = self.target;
        let local = self.local(self.calls[slot as usize].sock as usize);
        let nonce = self.nonce;
        let c = &mut self.calls[slot as usize];
        let Call {
            dlg,
            route,
            ruri,
            ack,
            next_hop,
            gen,
            seq,
            cseq,
            ..
        } = c;
        dlg.clear();
        W::new(dlg)
            .b(b"From: ")
            .b(from_v)
            .b(b"\r\nTo: ")
            .b(to_v)
            .b(b"\r\nCall-ID: ")
            .b(call_id)
            .crlf();
        route.clear();
        ruri.clear();
        // Route set = Record-Route reversed; the first entry is the next hop.
        let routes = rr[..n].iter().rev().flatten();
        let first = if n > 0 { rr[n - 1] } else { None };
        match first {
            Some(f) if f.uri.lr() => {
                ruri.extend_from_slice(contact.uri.raw);
                write_route(route, msg, routes, None);
                *next_hop = Some(uri_addr(&f.uri).unwrap_or(target));
            }
            Some(f) => {
                // Strict router (section 12.2.1.1): it becomes the Request-URI, the remote
                // target goes last in the Route header.
                ruri.extend_from_slice(f.uri.raw);
                write_route(route, msg, routes.skip(1), Some(contact.uri.raw));
                *next_hop = Some(uri_addr(&f.uri).unwrap_or(target));
            }
            None => {
                ruri.extend_from_slice(contact.uri.raw);
                *next_hop = Some(uri_addr(&contact.uri).unwrap_or(target));
            }
        }
        *seq += 1;
        let id = Id { slot, gen: *gen };
        ack.clear();
        let mut w = W::new(ack);
        write_in_dialog(
            &mut w, b"ACK", ruri, route, dlg, *cseq, local, nonce, id, *seq,
        );
        w.b(b"Content-Length: 0\r\n\r\n");
        true
    }

    /// Send the BYE of an established call; its latency counts from `origin`.
    pub fn send_bye(&mut self, slot: u32, origin: u64) {
        let target = self.target;
        let c = &mut self.calls[slot as usize];
        c.state = CState::ByeSent;
        c.origin = origin;
        c.dest = c.next_hop.unwrap_or(target);
        c.auth_tried = false;
        self.write_bye(slot, None);
        self.start_non_invite(slot);
    }

    /// (Re)write the slot's BYE as a new transaction, with credentials when answering a
    /// challenge: a proxy the BYE reaches without a Route naming it (no Record-Route, or an
    /// outbound proxy over TCP) may challenge it like any request from its users.
    fn write_bye(&mut self, slot: u32, auth: Option<(&Challenge<'_>, &str, bool)>) {
        let local = self.local(self.calls[slot as usize].sock as usize);
        let nonce = self.nonce;
        let c = &mut self.calls[slot as usize];
        c.cseq += 1;
        c.seq += 1;
        let id = Id { slot, gen: c.gen };
        let Call {
            req,
            ruri,
            route,
            dlg,
            cseq,
            seq,
            gen,
            ..
        } = c;
        req.clear();
        let mut w = W::new(req);
        write_in_dialog(
            &mut w, b"BYE", ruri, route, dlg, *cseq, local, nonce, id, *seq,
        );
        if let Some((ch, password, proxy)) = auth {
            let mut buf = [0u8; 16];
            let cnonce = hex8(&mut buf, nonce ^ slot.rotate_left(16) ^ *gen ^ *seq);
            let header = authorization_header(proxy);
            let pw = password.as_bytes();
            write_authorization(&mut w, header, CALLER, pw, ch, b"BYE", ruri, cnonce);
        }
        w.b(b"Content-Length: 0\r\n\r\n");
    }

    /// The password `--password-file` gives the caller, and the challenge of a 401/407 to
    /// answer, unless this transaction answered one already.
    fn credentials_for<'m>(
        &self,
        slot: u32,
        code: u16,
        msg: &'m Message<'_>,
    ) -> Option<(Challenge<'m>, String)> {
        if !matches!(code, 401 | 407) || self.calls[slot as usize].auth_tried {
            return None;
        }
        let password = std::str::from_utf8(CALLER)
            .ok()
            .and_then(|n| self.cfg.passwords.get(n))?;
        Some((challenge(msg, code)?, password.to_string()))
    }

    /// Answer a 401/407 to the BYE once; false when it cannot be answered.
    fn retry_bye_with_credentials(&mut self, slot: u32, code: u16, msg: &Message<'_>) -> bool {
        let Some((ch, pw)) = self.credentials_for(slot, code, msg) else {
            return false;
        };
        let c = &mut self.calls[slot as usize];
        c.auth_tried = true;
        c.state = CState::ByeSent;
        self.write_bye(slot, Some((&ch, &pw, code == 407)));
        self.start_non_invite(slot);
        true
    }

    /// ACK a non-2xx final response to an INVITE (RFC 3261 section 17.1.1.3): same branch as the
    /// INVITE (the response's top Via), Request-URI of the INVITE (our To URI), the response's
    /// To tag. Built from the response alone, so it also answers retransmissions after the call
    /// has ended.
    pub fn ack_non_2xx(&mut self, sock: usize, dest: SocketAddr, msg: &Message<'_>) {
        let (Ok(via), Ok(to), Ok(call_id), Ok(cseq)) =
            (msg.top_via(), msg.to(), msg.call_id(), msg.cseq())
        else {
            return;
        };
        let (Some(from_v), Some(to_v)) = (msg.header(HeaderName::From), msg.header(HeaderName::To))
        else {
            return;
        };
        let q = &mut self.io.socks[sock].out;
        let (arena, start) = q.arena();
        let mut w = W::new(arena);
        w.b(b"ACK ").b(to.uri.raw).b(b" SIP/2.0\r\nVia: ");
        w.b(msg.bytes(via.span))
            .b(b"\r\nMax-Forwards: 70\r\nFrom: ");
        w.b(from_v)
            .b(b"\r\nTo: ")
            .b(to_v)
            .b(b"\r\nCall-ID: ")
            .b(call_id);
        w.b(b"\r\nCSeq: ").dec(cseq.number as u64);
        w.b(b" ACK\r\nContent-Length: 0\r\n\r\n");
        q.commit(dest, start);
    }

    /// A response for no live attempt: count it, and ACK it if it is a final non-2xx to an
    /// INVITE so the other side stops retransmitting.
    pub fn stray_response(&mut self, sock: usize, from: SocketAddr, msg: &Message<'_>) {
        self.stats.counters.stray += 1;
        let code = msg.status().unwrap_or(0);
        if code >= 300 && msg.cseq().is_ok_and(|c| c.method == b"INVITE") {
            self.ack_non_2xx(sock, from, msg);
        }
    }
}

/// `Route: <a>, <b>` from the route set (and the remote target last for a strict router).
fn write_route<'a>(
    out: &mut Vec<u8>,
    msg: &Message<'_>,
    routes: impl Iterator<Item = &'a NameAddr<'a>>,
    last: Option<&[u8]>,
) {
    let mut w = W::new(out);
    let mut any = false;
    for r in routes {
        w.b(if any { b", " } else { b"Route: " });
        w.b(msg.bytes(r.span));
        any = true;
    }
    if let Some(uri) = last {
        w.b(if any { b", <" } else { b"Route: <" }).b(uri).b(b">");
        any = true;
    }
    if any {
        w.crlf();
    }
}

/// An in-dialog request (ACK or BYE) of the calling side (RFC 3261 section 12.2.1.1).
#[allow(clippy::too_many_arguments)]
fn write_in_dialog(
    w: &mut W<'_>,
    method: &[u8],
    ruri: &[u8],
    route: &[u8],
    dlg: &[u8],
    cseq: u32,
    local: Local,
    nonce: u32,
    id: Id,
    seq: u32,
) {
    w.b(method).b(b" ").b(ruri).b(b" SIP/2.0\r\n");
    write_via(w, local, nonce, id, seq);
    w.b(route).b(b"Max-Forwards: 70\r\n").b(dlg);
    w.b(b"CSeq: ").dec(cseq as u64).b(b" ").b(method).crlf();
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use clap::Parser;
    use sipshard::sip::Message;

    use crate::cli::{Cli, Cmd};
    use crate::config::Config;
    use crate::engine::io::Io;
    use crate::engine::worker::{Core, Kind};
    use crate::engine::Shared;

    /// A calling-side core on a loopback socket; nothing is sent by these tests.
    fn core() -> Core {
        let cli = Cli::try_parse_from([
            "sipshard-load",
            "call",
            "--target",
            "127.0.0.1:5999",
            "--uac-only",
            "--to",
            "sip:bob@127.0.0.1",
        ])
        .unwrap();
        let Cmd::Call(args) = cli.cmd else {
            unreachable!()
        };
        let cfg = Arc::new(Config::call(&args).unwrap());
        let shared = Arc::new(Shared::new(&cfg, Arc::new(AtomicBool::new(false))));
        let io = Io::bind("127.0.0.1".parse().unwrap(), &[0]).unwrap();
        Core::new(0, cfg, shared, io, 0xabc)
    }

    fn ok_with(record_route: &str) -> Vec<u8> {
        format!(
            "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5000;branch=z9hG4bKabc.0.0.1\r\n\
{record_route}\
From: <sip:uac@127.0.0.1>;tag=abc.0.0\r\n\
To: <sip:bob@127.0.0.1>;tag=b0b\r\n\
Call-ID: abc.0.0@sipshard-load\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:bob@192.0.2.9:5080>\r\n\
Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn text(b: &[u8]) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    #[test]
    fn loose_route_set_is_the_record_route_reversed() {
        let mut core = core();
        let slot = core.alloc_call(Kind::Invite);
        core.calls[slot as usize].cseq = 1;
        let mut m = ok_with(
            "Record-Route: <sip:192.0.2.2;lr>\r\nRecord-Route: <sip:192.0.2.1:5070;lr;x=1>\r\n",
        );
        let msg = Message::parse(&mut m).unwrap();
        assert!(core.establish(slot, &msg));
        let c = &core.calls[slot as usize];
        assert_eq!(text(&c.ruri), "sip:bob@192.0.2.9:5080");
        assert_eq!(
            text(&c.route),
            "Route: <sip:192.0.2.1:5070;lr;x=1>, <sip:192.0.2.2;lr>\r\n"
        );
        assert_eq!(c.next_hop, Some("192.0.2.1:5070".parse().unwrap()));
        let ack = text(&c.ack);
        assert!(
            ack.starts_with("ACK sip:bob@192.0.2.9:5080 SIP/2.0\r\n"),
            "{ack}"
        );
        assert!(ack.contains("\r\nRoute: <sip:192.0.2.1:5070;lr;x=1>, <sip:192.0.2.2;lr>\r\n"));
        assert!(ack.contains("\r\nTo: <sip:bob@127.0.0.1>;tag=b0b\r\n"));
        assert!(ack.contains("\r\nCSeq: 1 ACK\r\n"));
        let mut parsed = c.ack.clone();
        Message::parse(&mut parsed)
            .unwrap()
            .validate_request()
            .unwrap();
    }

    #[test]
    fn strict_router_becomes_the_request_uri() {
        let mut core = core();
        let slot = core.alloc_call(Kind::Invite);
        let mut m = ok_with("Record-Route: <sip:192.0.2.2;lr>, <sip:192.0.2.1>\r\n");
        let msg = Message::parse(&mut m).unwrap();
        assert!(core.establish(slot, &msg));
        let c = &core.calls[slot as usize];
        assert_eq!(text(&c.ruri), "sip:192.0.2.1");
        assert_eq!(
            text(&c.route),
            "Route: <sip:192.0.2.2;lr>, <sip:bob@192.0.2.9:5080>\r\n"
        );
        assert_eq!(c.next_hop, Some("192.0.2.1:5060".parse().unwrap()));
    }

    #[test]
    fn without_record_route_in_dialog_requests_go_to_the_contact() {
        let mut core = core();
        let slot = core.alloc_call(Kind::Invite);
        let mut m = ok_with("");
        let msg = Message::parse(&mut m).unwrap();
        assert!(core.establish(slot, &msg));
        let c = &core.calls[slot as usize];
        assert!(c.route.is_empty());
        assert_eq!(c.next_hop, Some("192.0.2.9:5080".parse().unwrap()));
        // A 2xx without a To tag cannot make a dialog.
        let mut bad = ok_with("");
        let s = String::from_utf8(bad.clone())
            .unwrap()
            .replace(";tag=b0b", "");
        bad = s.into_bytes();
        let msg = Message::parse(&mut bad).unwrap();
        assert!(!core.establish(slot, &msg));
    }
}
