//! SIP over UDP on a ring of the shard's own (`--udp-receive multishot`, the default): one
//! multishot `RECVMSG` per listener receives every datagram into the shard's packet buffers,
//! which the kernel takes from a ring of provided buffers: no receive system call.
//!
//! - **In place, no copy.** Each provided buffer is a [`PacketBuf`]'s receive slot with
//!   [`PREFIX`] bytes of its headroom in front: the kernel writes the source address and the
//!   control messages (arrival time, drop counter) there and the datagram where a recvmmsg
//!   would have put it, so the core rewrites it in place as before.
//! - **Deferred task work** (`IORING_SETUP_DEFER_TASKRUN`): the kernel does the receives it
//!   owes the ring only when the ring is entered, all at once. A busy turn takes up to a batch
//!   of completions from the queue (memory reads), decides them, sends the answers with one
//!   sendmmsg, and enters the ring once when the queue is empty: two system calls per turn of
//!   up to 32 datagrams, as recvmmsg and sendmmsg were. Cooperative task work instead (the
//!   receives run at the return of any system call, so a busy turn needs only its sendmmsg)
//!   measured 22.7 µs per message at 10,000/s against 12.8 for recvmmsg in the same run: every
//!   datagram that arrived while the shard waited woke it to run its receive.
//! - **Waiting.** The coalescing wait (see [`super::coalesce`]) is one `io_uring_enter` that
//!   sleeps until the wait is over (the receive's deferred work is queued without waking the
//!   shard) and then runs the receives: one system call where the recvmmsg path makes two (a
//!   `nanosleep` and the recvmmsg). That is when the shard has nothing else to serve; else a
//!   glommio timer, as on the recvmmsg path. With nothing queued, the task parks glommio's
//!   executor on a peek at the socket (see [`Intake::park`] for why not an eventfd).
//!
//! Measured against the recvmmsg path in docs/benchmarks.md ("Against the floor"): the same
//! CPU per message within the noise of this machine, at 10,000/s and saturated, and 0.37-0.39
//! system calls per forwarded message at 10,000/s against 0.51-0.54. A kernel without
//! deferred task work (before 6.1) gets the recvmmsg path, with a warning.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::net::UdpSocket;
use io_uring::{cqueue, opcode, types, IoUring};

use super::batch::{Outgoing, SendBatch, BATCH};
use super::buf_ring::BufRing;
use super::coalesce::{wait_out, Coalescer};
use super::udp::{
    decide_batch, send_grouped, Arrival, Clock, Datapath, DropCounter, ReceiveTuning, Taken,
};
use crate::sip::rewrite::DEFAULT_HEADROOM;
use crate::sip::PacketBuf;

/// Provided buffers per listener: datagrams received and not yet sent at most. A turn holds a
/// batch; the rest is room for what arrives meanwhile (when it runs out, the receive ends and
/// is armed again, and datagrams wait in the socket's queue meanwhile).
const BUFFERS: u16 = 128;
/// The buffer group of the receive buffers (one ring per listener, so always the same).
const GROUP: u16 = 0;
/// Room for the source address: a `sockaddr_in6` (28 bytes), rounded up to keep the control
/// messages after it aligned.
const NAME: usize = 32;
/// Room for the control messages: a timestamp and the drop counter (see `mmsg::cmsg`).
const CONTROL: usize = 64;
/// The kernel's `io_uring_recvmsg_out` header: name, control and payload lengths, flags.
const OUT_HEADER: usize = 16;
/// What a multishot receive writes in front of the datagram.
pub const PREFIX: usize = OUT_HEADER + NAME + CONTROL;
const _: () = assert!(PREFIX <= DEFAULT_HEADROOM);
/// `user_data` of the receive, of its cancellation.
const RECV: u64 = 1;
const CANCEL: u64 = 2;

/// A listener's receive ring: the ring, its buffers, and the template its receive reads.
pub struct Intake {
    ring: IoUring,
    descriptors: BufRing,
    /// The packet buffers, by buffer id. A buffer given to the kernel is not touched until a
    /// completion hands it back.
    pool: Vec<PacketBuf>,
    /// The name and control lengths the receive lays its buffers out by (the kernel copies
    /// them when the receive is issued; boxed so that a submission queued but not yet issued
    /// still points at them).
    template: Box<libc::msghdr>,
    fd: RawFd,
    /// No receive is armed (it ended for want of buffers, or with an error): armed again at
    /// the end of the turn.
    ended: bool,
    /// Failures in a row (a receive that ended with an error, an arming or waiting that
    /// failed): the first is logged, and while there are any, arming again waits 10 ms.
    errors: u32,
    /// The completions one [`harvest`](Self::harvest) takes (kept to reuse its room).
    completions: Vec<cqueue::Entry>,
}

/// What one completion of the receive brought.
enum Completion {
    /// A datagram in buffer `bid`; `result` is what the kernel wrote there in all.
    Datagram { bid: u16, result: i32 },
    /// Nothing (an end, an error, a cancellation).
    Nothing,
}

impl Intake {
    /// Set up the ring for socket `fd` and arm its receive. Fails where the kernel cannot:
    /// deferred task work needs 6.1, multishot receives 6.0, provided-buffer rings 5.19 (or
    /// io_uring is disabled).
    pub fn start(fd: RawFd, max_message: usize) -> io::Result<Intake> {
        let ring: IoUring = IoUring::builder()
            .setup_cqsize(u32::from(BUFFERS) * 4)
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_taskrun_flag()
            .build(64)?;
        let mut descriptors = BufRing::new(BUFFERS)?;
        let mut pool: Vec<PacketBuf> = (0..BUFFERS)
            .map(|_| PacketBuf::new(max_message, DEFAULT_HEADROOM))
            .collect();
        for (bid, pkt) in pool.iter_mut().enumerate() {
            give(&mut descriptors, pkt, bid as u16);
        }
        descriptors.publish();
        // SAFETY: the pool's buffers stay untouched while the kernel holds them (see `pool`),
        // and `Drop` unregisters them before the pool goes.
        unsafe { descriptors.register(&ring.submitter(), GROUP)? };
        // SAFETY: an all-zero msghdr is valid; the kernel reads only the two lengths.
        let mut template: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        template.msg_namelen = NAME as libc::socklen_t;
        template.msg_controllen = CONTROL as _;
        let mut intake = Intake {
            ring,
            descriptors,
            pool,
            template,
            fd,
            ended: true,
            errors: 0,
            completions: Vec::with_capacity(BATCH),
        };
        intake.arm();
        Ok(intake)
    }

    /// The packet buffers, by buffer id (an [`Arrival`]'s `buf`).
    pub fn buffers(&mut self) -> &mut [PacketBuf] {
        &mut self.pool
    }

    /// Arm the receive (again): queue it, then submit it. A submission that fails leaves it
    /// queued, and the next entry into the ring (`has_completions`, the waits) issues it.
    fn arm(&mut self) {
        let entry = opcode::RecvMsgMulti::new(types::Fd(self.fd), &*self.template, GROUP)
            .build()
            .user_data(RECV);
        // SAFETY: the template lives in a Box as long as `self`, whose `Drop` ends the receive;
        // the buffers it selects are the pool's (see `start`).
        if unsafe { self.ring.submission().push(&entry) }.is_err() {
            // Only our one receive and its cancellation are ever queued: cannot happen.
            self.failed("submission queue full", None);
            return;
        }
        self.ended = false;
        if let Err(e) = self.ring.submit() {
            self.failed("submitting the receive", Some(e));
        }
    }

    /// Count a failure; log the first of a row.
    fn failed(&mut self, what: &str, e: Option<io::Error>) {
        self.errors += 1;
        if self.errors == 1 {
            let e = e.map(|e| format!(": {e}")).unwrap_or_default();
            log::warn!("udp receive ring: {what}{e}");
        }
    }

    /// Take up to a batch of received datagrams into `arrivals` (their buffers are then ours
    /// until [`give_back`](Self::give_back)); returns the socket's drop counter if a datagram
    /// carried it.
    fn harvest(&mut self, arrivals: &mut Vec<Arrival>) -> Option<u32> {
        let mut drops = None;
        let mut returned = false;
        // The completion queue is taken once a batch, not once a completion: its head and
        // tail are read, the entries copied out, and the new head written back before any
        // is handled.
        self.completions.clear();
        let room = BATCH.saturating_sub(arrivals.len());
        self.completions.extend(self.ring.completion().take(room));
        for i in 0..self.completions.len() {
            let c = self.completions[i].clone();
            let Completion::Datagram { bid, result } = self.complete(&c) else {
                continue;
            };
            let pkt = &mut self.pool[usize::from(bid)];
            let got = usize::try_from(result).unwrap_or(0);
            pkt.set_received(got.saturating_sub(PREFIX));
            let (src, ancillary) = read_prefix(pkt.prefix(PREFIX));
            drops = ancillary.drops.or(drops);
            match src {
                Some(src) if got >= PREFIX => arrivals.push(Arrival {
                    buf: usize::from(bid),
                    src,
                    arrived_ns: ancillary.stamp_ns,
                }),
                // Not an IP sender, or no datagram: its buffer goes straight back.
                _ => {
                    give(&mut self.descriptors, pkt, bid);
                    returned = true;
                }
            }
        }
        if returned {
            self.descriptors.publish();
        }
        drops
    }

    /// Note what a completion says of the receive (ended, failed); returns its datagram's
    /// buffer, if it brought one.
    fn complete(&mut self, c: &cqueue::Entry) -> Completion {
        if c.user_data() != RECV {
            return Completion::Nothing;
        }
        let (result, flags) = (c.result(), c.flags());
        if !cqueue::more(flags) {
            self.ended = true;
            if result < 0 && result != -libc::ENOBUFS {
                let e = io::Error::from_raw_os_error(-result);
                self.failed("the receive ended", Some(e));
            }
        }
        match cqueue::buffer_select(flags) {
            Some(bid) => {
                self.errors = 0;
                Completion::Datagram { bid, result }
            }
            None => Completion::Nothing,
        }
    }

    /// The buffers of `arrivals` go back to the kernel, and the receive is armed again if it
    /// ended.
    fn give_back(&mut self, arrivals: &[Arrival]) {
        for a in arrivals {
            give(&mut self.descriptors, &mut self.pool[a.buf], a.buf as u16);
        }
        self.descriptors.publish();
        if self.ended {
            self.arm();
        }
    }

    /// When the receive ended and a turn brought nothing: arm it again, after a failure not
    /// before 10 ms, so that one that persists costs no busy loop.
    async fn rearm_after_errors(&mut self) {
        if self.errors > 0 {
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        self.arm();
    }

    /// A turn brought nothing: arm the receive again if it ended, else enter the ring if the
    /// kernel owes it work, else park.
    async fn idle(&mut self, sock: &UdpSocket) {
        if self.ended {
            self.rearm_after_errors().await;
        } else if !self.has_completions() {
            self.park(sock).await;
        }
    }

    /// Whether completions are queued, after letting the kernel issue what is queued and run
    /// the receives it owes the ring (one `io_uring_enter`, only when there is such work).
    fn has_completions(&mut self) -> bool {
        let pending = !self.ring.submission().is_empty() || self.ring.submission().taskrun();
        if pending {
            if let Err(e) = self.ring.submit() {
                self.failed("entering the ring", Some(e));
            }
        }
        !self.ring.completion().is_empty()
    }

    /// Park the executor until a datagram is queued on `sock` (glommio's peek, which takes
    /// nothing from the socket), or a second has passed; then let the kernel do the receive
    /// it deferred. The receive's deferred work wakes nothing while the shard sleeps in
    /// glommio's ring, and an eventfd the ring signals, read through glommio, answered an
    /// OPTIONS on an idle shard in 13-16 ms here against 0.2-0.4 ms with the peek.
    async fn park(&mut self, sock: &UdpSocket) {
        let mut byte = [0u8; 1];
        let queued = async { sock.peek_from(&mut byte).await.map(|_| ()) };
        let a_while = async {
            glommio::timer::sleep(PARK_LIMIT).await;
            Ok(())
        };
        if let Err(e) = futures_lite::future::or(queued, a_while).await {
            // A peek fails for an error queued on the socket (it is taken with the error).
            log::debug!("udp receive ring: peek: {e}");
        }
        if !self.has_completions() {
            // Queued but not yet received (the peek won the race): give the receive a moment,
            // so that a datagram the ring does not take cannot make this a busy loop.
            self.enter_for(1, PEEK_GRACE);
        }
    }

    /// Wait, with the shard's thread in the kernel, until `wait` is over, then run the
    /// receives: the coalescing wait when nothing else on the shard needs the executor. The
    /// wait asks for a batch's worth of completions, which the receive's one deferred work
    /// item never makes, so the kernel lets the shard sleep through arrivals (on kernels whose
    /// deferred poll work wakes lazily, 6.18 measured here; older ones may wake it per
    /// arrival, still within this one system call).
    fn wait_in_ring(&mut self, wait: Duration) {
        self.enter_for(BATCH, wait);
    }

    /// One `io_uring_enter`: issue what is queued and wait for `want` completions or `limit`.
    fn enter_for(&mut self, want: usize, limit: Duration) {
        let limit = types::Timespec::from(limit);
        let args = types::SubmitArgs::new().timespec(&limit);
        match self.ring.submitter().submit_with_args(want, &args) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
            Err(e) => self.failed("waiting in the ring", Some(e)),
        }
    }
}

/// How long a parked receive loop sleeps at most before it looks at its ring again.
const PARK_LIMIT: Duration = Duration::from_secs(1);
/// How long the ring may take to receive a datagram the peek saw.
const PEEK_GRACE: Duration = Duration::from_millis(1);

impl Drop for Intake {
    /// End the receive before the buffers go: cancel it and wait (100 ms at most) for its
    /// last completion, then unregister the buffers. If it does not come, the buffers are
    /// leaked rather than freed under a receive that may still write into them.
    fn drop(&mut self) {
        if !self.ended {
            let cancel = opcode::AsyncCancel::new(RECV).build().user_data(CANCEL);
            // SAFETY: a cancellation points at nothing.
            let _ = unsafe { self.ring.submission().push(&cancel) };
            let deadline = Instant::now() + Duration::from_millis(100);
            while !self.ended && Instant::now() < deadline {
                self.enter_for(1, Duration::from_millis(10));
                for c in self.ring.completion() {
                    if c.user_data() == RECV && !cqueue::more(c.flags()) {
                        self.ended = true;
                    }
                }
            }
        }
        if self.ended {
            let _ = self.ring.submitter().unregister_buf_ring(GROUP);
        } else {
            log::warn!("udp receive ring: the receive did not end; its buffers are leaked");
            std::mem::forget(std::mem::take(&mut self.pool));
        }
    }
}

/// Give `pkt`'s receive slot to the kernel as buffer `bid` (seen once published).
fn give(descriptors: &mut BufRing, pkt: &mut PacketBuf, bid: u16) {
    let slot = pkt
        .receive_slot_after(PREFIX)
        .expect("PREFIX fits the headroom (checked at compile time)");
    descriptors.push(slot.as_mut_ptr(), slot.len() as u32, bid);
}

/// The sender and the control messages a multishot receive wrote in front of a datagram.
fn read_prefix(prefix: &[u8]) -> (Option<SocketAddr>, mmsg::cmsg::Ancillary) {
    let word = |at: usize| u32::from_ne_bytes(prefix[at..at + 4].try_into().unwrap_or([0; 4]));
    let (name_len, control_len) = (word(0) as usize, word(4) as usize);
    let name = &prefix[OUT_HEADER..OUT_HEADER + name_len.min(NAME)];
    let control_at = OUT_HEADER + NAME;
    let control = &prefix[control_at..control_at + control_len.min(CONTROL)];
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    // SAFETY: at most NAME (32) bytes into the 128 of `storage`.
    unsafe {
        std::ptr::copy_nonoverlapping(
            name.as_ptr(),
            (&mut storage as *mut libc::sockaddr_storage).cast::<u8>(),
            name.len(),
        )
    };
    let src = mmsg::addr::decode(&storage, name.len() as libc::socklen_t);
    (src, mmsg::cmsg::parse(control))
}

/// Receive, decide and send for listener `idx` on `intake`, forever (until the task is
/// cancelled): the multishot counterpart of [`super::udp::receive_loop`].
pub async fn receive_loop<D: Datapath>(
    dp: Rc<D>,
    idx: usize,
    tuning: ReceiveTuning,
    clock: Clock,
    mut intake: Intake,
) {
    let mut send = SendBatch::new();
    let mut out: Vec<(usize, Outgoing)> = Vec::with_capacity(BATCH);
    let mut group: Vec<Outgoing> = Vec::with_capacity(BATCH);
    let mut arrivals: Vec<Arrival> = Vec::with_capacity(BATCH);
    let mut drops = DropCounter::default();
    let mut seq: u64 = 0;
    let mut coalescer = Coalescer::new(tuning.coalesce, BATCH, Instant::now());
    let Some(sock) = dp.udp_socket(idx) else {
        return;
    };
    loop {
        arrivals.clear();
        let new_drops = intake.harvest(&mut arrivals);
        if arrivals.is_empty() {
            intake.idle(sock).await;
            continue;
        }
        let now_ns = clock();
        dp.start_batch(drops.since_last(new_drops));
        let taken = Taken { now_ns, idx };
        let pool = &mut intake.pool;
        decide_batch(
            &*dp,
            taken,
            &tuning.shedder,
            &mut seq,
            pool,
            &arrivals,
            &mut out,
        );
        dp.end_batch();
        send_grouped(&*dp, &mut send, &intake.pool, &mut out, &mut group).await;
        dp.flush_capture();
        intake.give_back(&arrivals);
        // As on the recvmmsg path: let the shard's other tasks run when it is their turn.
        glommio::yield_if_needed().await;
        let count = arrivals.len();
        let full = count == BATCH;
        if let Some(wait) = coalescer.after_batch(count, full, Instant::now()) {
            let in_ring = |wait| intake.wait_in_ring(wait);
            wait_out(wait, dp.shares_the_executor(), in_ring).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::socket::{bind_group, Steering};
    use std::os::fd::AsRawFd;

    /// Wait (2 s at most) until `want` datagrams have been taken, giving each batch's buffers
    /// back as the receive loop does; returns (payload, sender, stamped) of each.
    fn take(intake: &mut Intake, want: usize) -> Vec<(Vec<u8>, SocketAddr, bool)> {
        let mut got = Vec::new();
        let mut arrivals = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(2);
        while got.len() < want && Instant::now() < deadline {
            if !intake.has_completions() {
                intake.wait_in_ring(Duration::from_millis(20));
            }
            arrivals.clear();
            intake.harvest(&mut arrivals);
            for a in &arrivals {
                let pkt = &intake.pool[a.buf];
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64;
                // Stamped by the kernel in the wall clock, within the last second.
                let fresh = a
                    .arrived_ns
                    .is_some_and(|t| t <= now && now - t < 1_000_000_000);
                got.push((pkt.as_slice().to_vec(), a.src, fresh));
            }
            intake.give_back(&arrivals);
        }
        got
    }

    #[test]
    fn receives_in_place_cuts_oversize_and_outlasts_its_buffers() {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let rx = bind_group(any, 1, Some(1 << 21), None, Steering::Flow, true)
            .expect("a socket")
            .remove(0);
        let to = rx.local_addr().unwrap().as_socket().unwrap();
        let tx = std::net::UdpSocket::bind(any).unwrap();
        let mut intake = Intake::start(rx.as_raw_fd(), 600).expect("multishot receive");

        tx.send_to(b"one", to).unwrap();
        tx.send_to(&[b'x'; 700], to).unwrap();
        let got = take(&mut intake, 2);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], (b"one".to_vec(), tx.local_addr().unwrap(), true));
        // Cut one byte past --max-message, so that the core answers 513.
        assert_eq!(got[1].0.len(), 601);

        // More datagrams than the ring has buffers, sent before any is taken: the receive
        // ends for want of buffers and is armed again; none is lost.
        let n = usize::from(BUFFERS) + 72;
        for i in 0..n {
            tx.send_to(format!("datagram {i}").as_bytes(), to).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
        let got = take(&mut intake, n);
        assert_eq!(got.len(), n);
        for (i, (bytes, _, _)) in got.iter().enumerate() {
            assert_eq!(bytes, format!("datagram {i}").as_bytes());
        }
        drop(intake);
    }

    #[test]
    fn reads_the_sender_and_the_drop_counter_from_the_prefix() {
        let mut prefix = [0u8; PREFIX];
        let src: SocketAddr = "192.0.2.7:5062".parse().unwrap();
        // SAFETY: an all-zero sockaddr_storage is valid.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = mmsg::addr::encode(src, &mut storage) as usize;
        // SAFETY: `len` bytes of `storage`, at most its size.
        let name = unsafe { std::slice::from_raw_parts(&storage as *const _ as *const u8, len) };
        prefix[OUT_HEADER..OUT_HEADER + len].copy_from_slice(name);
        prefix[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
        let (got, ancillary) = read_prefix(&prefix);
        assert_eq!(got, Some(src));
        assert_eq!(ancillary.drops, None);
        // The drop counter, as the kernel writes it into the control field.
        let control_at = OUT_HEADER + NAME;
        let hdr = libc::cmsghdr {
            // SAFETY: CMSG_LEN is arithmetic on its argument.
            cmsg_len: unsafe { libc::CMSG_LEN(4) } as _,
            cmsg_level: libc::SOL_SOCKET,
            cmsg_type: libc::SO_RXQ_OVFL,
        };
        let hdr_len = std::mem::size_of::<libc::cmsghdr>();
        // SAFETY: a plain C struct viewed as its bytes.
        let hdr_bytes = unsafe {
            std::slice::from_raw_parts(&hdr as *const libc::cmsghdr as *const u8, hdr_len)
        };
        prefix[control_at..control_at + hdr_len].copy_from_slice(hdr_bytes);
        prefix[control_at + hdr_len..control_at + hdr_len + 4].copy_from_slice(&5u32.to_ne_bytes());
        prefix[4..8].copy_from_slice(&((hdr_len + 4) as u32).to_ne_bytes());
        assert_eq!(read_prefix(&prefix).1.drops, Some(5));
        // A name longer than the room given is cut, and decodes to nothing rather than garbage.
        prefix[0..4].copy_from_slice(&200u32.to_ne_bytes());
        prefix[OUT_HEADER..OUT_HEADER + 2].copy_from_slice(&[0xff, 0xff]);
        assert_eq!(read_prefix(&prefix).0, None);
    }
}
