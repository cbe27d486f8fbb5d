//! Receiving on plain TCP connections without a system call per read: a ring of the shard's
//! own beside glommio's, with one multishot receive (`IORING_RECV_MULTISHOT`) per connection
//! into a shared set of provided buffers. The kernel fills a buffer and posts a completion
//! whenever a connection's bytes arrive; the ring signals an eventfd
//! (`IORING_REGISTER_EVENTFD`) as it does, and one glommio task of the shard ([`RecvRing`]'s
//! driver) waits for that eventfd with a read, then hands each completion's bytes to its
//! connection's reader and gives the buffer back. Writes stay glommio's.
//!
//! Measured in one run of bench-forward.sh on this machine (1 shard, 4 connections of
//! INVITEs forwarded to one connection, the flooder on the other CPU): this receive saturated
//! at 394,000 messages/s at 2.50 µs each, glommio's reads (`--tcp-receive stream`) at 379,000
//! at 2.63 µs (both flooder-limited), both at 34.3-34.5 µs per message at 20,000/s (the
//! executor's park and wake-up); an idle connection costs 2,444 bytes here against 6,628 with
//! a read buffer of its own. The bare forwarders of `tcp-floor` (scripts/udp-tools) gave the
//! receive's ceiling: 1,155,000 messages/s at 0.78 µs inside glommio's executor, against
//! 667,000 at 1.47 µs with glommio's reads.
//!
//! A turn of the driver hands over at most [`TURN`] completions (64 KiB) before the shard's
//! other tasks run: with 256 a turn, a flooded shard framed and forwarded faster than the
//! writer of the one connection they all left by got turns, that connection's queue
//! (`--tcp-max-queued`) overflowed and messages were dropped (93,000 forwarded of 449,000).
//!
//! Cooperative task work (`IORING_SETUP_COOP_TASKRUN`): a shard that is running is not
//! interrupted when bytes arrive (those interruptions took 40 % of a saturated shard's time);
//! the receives run at its next entry into the kernel, and a sleeping shard is woken as
//! before. Deferred task work would batch them best, but then nothing wakes a shard asleep in
//! glommio's ring in time: the UDP receive ring (`udp_ring`), which defers its task work,
//! tried parking on its eventfd read through glommio and answered an idle shard's OPTIONS in
//! 13-16 ms (0.2-0.4 ms when it parks on a peek at its one socket instead).

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::rc::Rc;

use ahash::AHashMap;
use glommio::io::BufferedFile;
use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::buffers::ProvidedBuffers;

/// What a connection's reader is given.
pub enum Received<'a> {
    /// Bytes, in order.
    Bytes(&'a [u8]),
    /// The peer closed, or the connection failed: nothing more comes.
    End,
}

/// A connection's reader: its bytes go here, in order, then [`Received::End`] once. It
/// returns false when it wants nothing more (the stream broke): the connection is unwatched.
pub type Reader = Box<dyn FnMut(Received<'_>) -> bool>;

/// The buffer group of the receive buffers.
const GROUP: u16 = 0;
/// `user_data` of cancellations (a receive's is its connection's token), and of the receive
/// that checks the kernel at start-up.
const CANCEL: u64 = u64::MAX;
const PROBE: u64 = u64::MAX - 1;
/// Room in the completion queue: every connection's end can complete at once (10,000
/// connections reset together, in a test); what does not fit waits in the kernel until
/// [`RecvRing::run_receives`] moves it (128 KiB of queue).
const COMPLETIONS: u32 = 8192;
/// Completions handled per turn of the driver before other tasks (the writers) get theirs:
/// at most 64 KiB, a few hundred messages, as glommio's reads give way after each 4 KiB.
const TURN: usize = 16;

struct Watched {
    fd: RawFd,
    reader: Rc<RefCell<Reader>>,
}

/// The shard's receive ring for plain TCP connections.
pub struct RecvRing {
    ring: RefCell<IoUring>,
    bufs: RefCell<ProvidedBuffers>,
    watched: RefCell<AHashMap<u64, Watched>>,
    /// Receives the kernel ended this turn (for want of buffers), to arm again.
    rearm: RefCell<Vec<(RawFd, u64)>>,
    /// The eventfd the ring signals, read through glommio.
    wake: BufferedFile,
}

impl RecvRing {
    /// A ring with `buffers` receive buffers of `size` bytes (a power of two, at most
    /// 32,768), and its driver started on this executor. Fails on a kernel without
    /// multishot receive or provided-buffer rings (before 6.0).
    pub fn start(buffers: u16, size: usize) -> io::Result<Rc<RecvRing>> {
        let entries = u32::from(buffers).next_power_of_two().max(64);
        let mut ring: IoUring = IoUring::builder()
            .setup_cqsize(COMPLETIONS)
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .build(entries)?;
        let mut bufs = ProvidedBuffers::new(buffers, size)?;
        // SAFETY: `bufs` is dropped after the ring (field order in `RecvRing`), and a
        // `RecvRing` lives as long as its shard: its driver holds it.
        unsafe { bufs.register(&ring.submitter(), GROUP)? };
        probe_multishot(&mut ring, &mut bufs)?;
        // SAFETY: plain eventfd creation; checked below.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the eventfd is ours; the file owns (and closes) it from here.
        let wake = unsafe { BufferedFile::from_raw_fd(efd) };
        ring.submitter().register_eventfd(efd)?;
        let this = Rc::new(RecvRing {
            ring: RefCell::new(ring),
            bufs: RefCell::new(bufs),
            watched: RefCell::new(AHashMap::new()),
            rearm: RefCell::new(Vec::new()),
            wake,
        });
        glommio::spawn_local(Rc::clone(&this).drive()).detach();
        Ok(this)
    }

    /// Receive on `fd` (a connected TCP socket, open now; the receive holds the socket of
    /// its own until it ends or [`unwatch`] cancels it), handing its bytes to `reader`;
    /// `token` names the connection (never [`u64::MAX`]).
    ///
    /// [`unwatch`]: Self::unwatch
    pub fn watch(&self, fd: RawFd, token: u64, reader: Reader) {
        let reader = Rc::new(RefCell::new(reader));
        self.watched
            .borrow_mut()
            .insert(token, Watched { fd, reader });
        self.submit_now(receive(fd, token));
    }

    /// Stop receiving for `token` (its reader is dropped, nothing more reaches it). The
    /// receive in flight holds the socket open until its cancellation completes.
    pub fn unwatch(&self, token: u64) {
        if self.watched.borrow_mut().remove(&token).is_some() {
            self.submit_now(opcode::AsyncCancel::new(token).build().user_data(CANCEL));
        }
    }

    /// Submit `entry` at once: the driver may be waiting on the eventfd, not on this ring.
    fn submit_now(&self, entry: squeue::Entry) {
        let mut ring = self.ring.borrow_mut();
        push(&mut ring, &entry);
        if let Err(e) = ring.submit() {
            log::warn!("tcp receive ring: submit: {e}");
        }
    }

    /// The driver: hand completions to their readers, then wait for the eventfd.
    async fn drive(self: Rc<RecvRing>) {
        let mut batch: Vec<(u64, i32, u32)> = Vec::with_capacity(TURN);
        loop {
            self.run_receives();
            batch.extend(
                self.ring
                    .borrow_mut()
                    .completion()
                    .take(TURN)
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            if batch.is_empty() {
                // Completes at once when a completion was posted since the last read.
                if let Err(e) = self.wake.read_at(0, 8).await {
                    // Cannot happen to an eventfd of ours; if it did, this shard's plain TCP
                    // connections would hear nothing more and go by the idle sweep.
                    log::error!("tcp receive ring: reading its eventfd: {e}");
                    return;
                }
                continue;
            }
            for (token, result, flags) in batch.drain(..) {
                self.complete(token, result, flags);
            }
            self.bufs.borrow().publish();
            self.rearm_ended();
            futures_lite::future::yield_now().await;
        }
    }

    /// Arm again the receives the kernel ended this turn, of connections still watched: one
    /// submission for all of them.
    fn rearm_ended(&self) {
        let ended: Vec<(RawFd, u64)> = self.rearm.borrow_mut().drain(..).collect();
        if ended.is_empty() {
            return;
        }
        let mut ring = self.ring.borrow_mut();
        let watched = self.watched.borrow();
        for (fd, token) in ended.into_iter().filter(|(_, t)| watched.contains_key(t)) {
            push(&mut ring, &receive(fd, token));
        }
        if let Err(e) = ring.submit() {
            log::warn!("tcp receive ring: submit: {e}");
        }
    }

    /// Let the kernel do the receives that became possible since the last turn, for every
    /// connection at once, and move completions that found the completion queue full into it:
    /// one system call, and only when there is such work (the eventfd says nothing of either).
    fn run_receives(&self) {
        let mut ring = self.ring.borrow_mut();
        let sq = ring.submission();
        let pending = sq.taskrun() || sq.cq_overflow();
        drop(sq);
        if pending {
            if let Err(e) = ring.submitter().submit() {
                log::warn!("tcp receive ring: enter: {e}");
            }
        }
    }

    /// One completion: its bytes to the reader, the buffer back; the reader told of the end;
    /// the receive armed again when the kernel ended it for want of buffers.
    fn complete(&self, token: u64, result: i32, flags: u32) {
        if token == CANCEL {
            return;
        }
        let bid = cqueue::buffer_select(flags);
        let watched = self
            .watched
            .borrow()
            .get(&token)
            .map(|w| (w.fd, Rc::clone(&w.reader)));
        let mut wanted = true;
        if let (Some(bid), Some((_, reader))) = (bid, &watched) {
            let bufs = self.bufs.borrow();
            wanted = (reader.borrow_mut())(Received::Bytes(bufs.filled(bid, result)));
        }
        if let Some(bid) = bid {
            self.bufs.borrow_mut().give_back(bid);
        }
        let Some((fd, reader)) = watched else {
            return; // unwatched meanwhile
        };
        if !wanted {
            self.unwatch(token);
            return;
        }
        let ended = result == 0 || (result < 0 && result != -libc::ENOBUFS);
        if ended {
            if self.watched.borrow_mut().remove(&token).is_some() {
                (reader.borrow_mut())(Received::End);
            }
        } else if !cqueue::more(flags) {
            // Out of buffers (or ended by the kernel): armed again at the end of the turn,
            // once this turn's buffers are back.
            self.rearm.borrow_mut().push((fd, token));
        }
    }
}

/// Queue `entry` for the next submission, making room once if the queue is full. An entry
/// that still finds no room (the kernel refusing submissions) is dropped and logged: a
/// receive lost so leaves its connection to the idle sweep.
fn push(ring: &mut IoUring, entry: &squeue::Entry) {
    // SAFETY: a receive selects buffers of the ring's own group, which outlive it (see
    // `RecvRing::start`); a cancellation points at nothing.
    if unsafe { ring.submission().push(entry) }.is_ok() {
        return;
    }
    let _ = ring.submit();
    // SAFETY: as above.
    if unsafe { ring.submission().push(entry) }.is_err() {
        log::warn!("tcp receive ring: submission queue full, an operation dropped");
    }
}

/// Check that the kernel does multishot receives (6.0 and later) with a byte through a
/// socket pair, so that a kernel without them gets stream reads instead of connections that
/// fail at their first receive. Leaves the ring as it found it: the probe's receive
/// cancelled, its buffer given back, its completions taken.
fn probe_multishot(ring: &mut IoUring, bufs: &mut ProvidedBuffers) -> io::Result<()> {
    let (mut ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    std::io::Write::write_all(&mut ours, b"x")?;
    push(ring, &receive(theirs.as_raw_fd(), PROBE));
    let first = wait_one(ring)?;
    let rearmed_ok = first.map(|(result, flags)| {
        if let Some(bid) = cqueue::buffer_select(flags) {
            bufs.give_back(bid);
            bufs.publish();
        }
        (result, cqueue::more(flags))
    });
    if rearmed_ok.is_some_and(|(_, more)| more) {
        push(
            ring,
            &opcode::AsyncCancel::new(PROBE).build().user_data(CANCEL),
        );
        // The cancellation's completion and the receive's last one.
        for _ in 0..2 {
            wait_one(ring)?;
        }
    }
    match rearmed_ok {
        Some((result, true)) if result > 0 => Ok(()),
        Some((result, _)) if result < 0 => Err(io::Error::from_raw_os_error(-result)),
        _ => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the kernel's receive is not multishot",
        )),
    }
}

/// Submit what is queued and take one completion (result and flags), waiting at most 100 ms.
fn wait_one(ring: &mut IoUring) -> io::Result<Option<(i32, u32)>> {
    let limit = types::Timespec::new().nsec(100_000_000);
    match ring
        .submitter()
        .submit_with_args(1, &types::SubmitArgs::new().timespec(&limit))
    {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
        Err(e) => return Err(e),
    }
    Ok(ring.completion().next().map(|c| (c.result(), c.flags())))
}

fn receive(fd: RawFd, token: u64) -> squeue::Entry {
    opcode::RecvMulti::new(types::Fd(fd), GROUP)
        .build()
        .user_data(token)
}
