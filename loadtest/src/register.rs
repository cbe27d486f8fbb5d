//! REGISTER transactions (RFC 3261 section 10.2): first registrations, refreshes, and the
//! answer to a digest challenge (section 22.2).
//!
//! Each user keeps one Call-ID for the whole run and increments its CSeq with every REGISTER
//! (section 10.2.4 asks refreshes to do so). A 401/407 is answered once with credentials from
//! `--password-file`; the registration latency runs from the scheduled time of the first
//! REGISTER to the final 200, challenge round trip included, because that is what a phone sees.

use sipshard::sip::Message;

use crate::digest::{authorization_header, challenge, hex8, write_authorization, Challenge};
use crate::engine::worker::{CState, Core, Kind};
use crate::msg::{write_contact_host, write_id, write_via, Id};
use crate::stats::{record_ns, Cause};
use crate::writer::W;

impl Core {
    /// Register `users[u]`; `setup` marks the registration phase of a call run.
    pub fn start_register(&mut self, u: usize, sched: u64, setup: bool) {
        if !setup {
            self.record_start(sched);
        }
        let slot = self.alloc_call(Kind::Register);
        let target = self.target;
        let c = &mut self.calls[slot as usize];
        c.setup = setup;
        c.user = u as u32;
        c.sock = self.users[u].sock;
        c.dest = target;
        c.origin = sched;
        self.write_register(slot, None);
        self.start_non_invite(slot);
    }

    /// Write `<prefix><index>` of `users[u]` into `scratch`.
    fn user_name(&mut self, u: usize) {
        self.scratch.clear();
        let index = self.users[u].index;
        W::new(&mut self.scratch)
            .s(&self.cfg.user_prefix)
            .dec(index as u64);
    }

    /// (Re)write the slot's REGISTER, with credentials when answering a challenge.
    fn write_register(&mut self, slot: u32, auth: Option<(&Challenge<'_>, &str, bool)>) {
        let u = self.calls[slot as usize].user as usize;
        self.user_name(u);
        self.users[u].cseq += 1;
        let user = self.users[u];
        let local = self.local(user.sock as usize);
        let nonce = self.nonce;
        let cfg = &self.cfg;
        let name = &self.scratch;
        let c = &mut self.calls[slot as usize];
        c.seq += 1;
        c.cseq = user.cseq;
        let id = Id { slot, gen: c.gen };
        c.req.clear();
        let mut w = W::new(&mut c.req);
        w.b(b"REGISTER sip:").s(&cfg.domain).b(b" SIP/2.0\r\n");
        write_via(&mut w, local, nonce, id, c.seq);
        w.b(b"Max-Forwards: 70\r\nFrom: <sip:")
            .b(name)
            .b(b"@")
            .s(&cfg.domain);
        w.b(b">;tag=");
        write_id(&mut w, nonce, id);
        w.b(b"\r\nTo: <sip:").b(name).b(b"@").s(&cfg.domain);
        w.b(b">\r\nCall-ID: ")
            .hex(nonce as u64)
            .b(b".r")
            .hex(user.index as u64);
        w.b(b"@sipshard-load\r\nCSeq: ").dec(user.cseq as u64);
        w.b(b" REGISTER\r\nContact: <sip:").b(name).b(b"@");
        write_contact_host(&mut w, local);
        w.b(b">\r\nExpires: ").dec(cfg.expires as u64).crlf();
        if let Some((ch, password, proxy)) = auth {
            let mut uri = [0u8; 256];
            let dl = cfg.domain.len().min(uri.len() - 4);
            uri[..4].copy_from_slice(b"sip:");
            uri[4..4 + dl].copy_from_slice(&cfg.domain.as_bytes()[..dl]);
            let mut cnonce = [0u8; 16];
            let cn = hex8(&mut cnonce, nonce ^ slot.rotate_left(16) ^ c.gen);
            write_authorization(
                &mut w,
                authorization_header(proxy),
                name,
                password.as_bytes(),
                ch,
                b"REGISTER",
                &uri[..4 + dl],
                cn,
            );
        }
        w.b(b"Content-Length: 0\r\n\r\n");
    }

    pub fn register_response(&mut self, slot: u32, msg: &Message<'_>) {
        let Some(code) = msg.status() else { return };
        if !msg.cseq().is_ok_and(|c| c.method == b"REGISTER") {
            self.fail(slot, Cause::UnexpectedMessage);
            return;
        }
        if code < 200 {
            // Timer E goes on at T2 (RFC 3261 section 17.1.2.2).
            self.calls[slot as usize].state = CState::Proceeding;
            return;
        }
        if (200..300).contains(&code) {
            let c = &self.calls[slot as usize];
            let d = self.now.saturating_sub(c.origin);
            record_ns(&mut self.stats.hists.register_to_200, d);
            if !c.setup {
                record_ns(&mut self.interval.main, d);
            }
            self.succeed(slot);
            return;
        }
        if (code == 401 || code == 407) && !self.calls[slot as usize].auth_tried {
            let challenge = challenge(msg, code);
            let u = self.calls[slot as usize].user as usize;
            self.user_name(u);
            let cfg = self.cfg.clone();
            let password = std::str::from_utf8(&self.scratch)
                .ok()
                .and_then(|n| cfg.passwords.get(n));
            if let (Some(ch), Some(pw)) = (challenge, password) {
                let c = &mut self.calls[slot as usize];
                c.auth_tried = true;
                c.state = CState::Calling;
                self.write_register(slot, Some((&ch, pw, code == 407)));
                self.start_non_invite(slot);
                return;
            }
        }
        if self.cfg.is_success(code) {
            self.succeed(slot);
        } else {
            self.fail_status(slot, code);
        }
    }
}
