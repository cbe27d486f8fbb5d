//! OPTIONS pings (RFC 3261 section 11): one non-INVITE transaction each, addressed to the
//! target's domain so a proxy answers for itself.

use sipshard::sip::Message;

use crate::engine::worker::{CState, Core, Kind};
use crate::msg::{write_id, write_via, Id};
use crate::stats::{record_ns, Cause};
use crate::writer::W;

impl Core {
    pub fn start_options(&mut self, sched: u64) {
        self.record_start(sched);
        let sock = self.pick_sock();
        let slot = self.alloc_call(Kind::Options);
        let local = self.local(sock as usize);
        let (nonce, target) = (self.nonce, self.target);
        let cfg = &self.cfg;
        let c = &mut self.calls[slot as usize];
        c.sock = sock;
        c.dest = target;
        c.origin = sched;
        c.seq = 1;
        let id = Id { slot, gen: c.gen };
        c.req.clear();
        let mut w = W::new(&mut c.req);
        w.b(b"OPTIONS sip:").s(&cfg.domain).b(b" SIP/2.0\r\n");
        write_via(&mut w, local, nonce, id, 1);
        w.b(b"Max-Forwards: 70\r\nFrom: <sip:options@")
            .s(&cfg.domain);
        w.b(b">;tag=");
        write_id(&mut w, nonce, id);
        w.b(b"\r\nTo: <sip:").s(&cfg.domain).b(b">\r\nCall-ID: ");
        write_id(&mut w, nonce, id);
        w.b(b"@sipshard-load\r\nCSeq: 1 OPTIONS\r\nAccept: application/sdp\r\n");
        w.b(b"Content-Length: 0\r\n\r\n");
        self.start_non_invite(slot);
    }

    pub fn options_response(&mut self, slot: u32, msg: &Message<'_>) {
        let Some(code) = msg.status() else { return };
        if !msg.cseq().is_ok_and(|c| c.method == b"OPTIONS") {
            self.fail(slot, Cause::UnexpectedMessage);
            return;
        }
        if code < 200 {
            self.calls[slot as usize].state = CState::Proceeding;
        } else if self.cfg.is_success(code) {
            let d = self.now.saturating_sub(self.calls[slot as usize].origin);
            record_ns(&mut self.stats.hists.options_to_200, d);
            record_ns(&mut self.interval.main, d);
            self.succeed(slot);
        } else {
            self.fail_status(slot, code);
        }
    }
}
