//! One TCP connection: its outbox and the two tasks that serve it. The reader frames the byte
//! stream into messages (RFC 3261 section 18.3) and notes when the message in progress began
//! and when the connection last carried anything; the shard's sweep ([`Conn::overdue`]) closes
//! a connection whose message is not complete within `--tcp-message-timeout-ms` (slowloris) or
//! that carries nothing for `--tcp-idle-timeout`. The writer drains the outbox; what is queued
//! for a peer that does not read is bounded by `--tcp-max-queued`, past which the peer is
//! dropped.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::task::JoinHandle;

use super::TcpSettings;
use crate::sip::{ConnId, Frame, Framer, ParseError, PONG};

/// Bytes read from the socket per read call; the message buffer grows beyond it only while a
/// message is incomplete, so an idle connection costs little.
pub const READ_CHUNK: usize = 4096;
/// Most bytes gathered from the outbox into one write.
const WRITE_BATCH: usize = 64 * 1024;

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed it, or a read or write failed.
    Peer,
    /// A message stayed incomplete past `--tcp-message-timeout-ms`.
    MessageTimeout,
    /// Nothing arrived for `--tcp-idle-timeout`.
    Idle,
    /// The peer did not read and its queue passed `--tcp-max-queued`.
    Backlog,
    /// The stream could not be framed (no Content-Length, too large, ...).
    Framing,
    /// Opening it failed or timed out.
    ConnectFailed,
    /// The TLS handshake failed, timed out or found no place (counted by the TLS counters).
    Handshake,
    /// The node is stopping.
    Shutdown,
}

/// What the writer takes from the outbox.
pub enum Out {
    /// A message; `true` when it may go over UDP after all should the connection never come up
    /// (RFC 3261 section 18.1.1).
    Bytes(Box<[u8]>, bool),
    /// Close once everything before it is written.
    Close,
}

/// A connection as its shard sees it: where it leads, its outbox, its tasks.
pub struct Conn {
    pub id: ConnId,
    pub peer: SocketAddr,
    /// The listener whose address our side of it stands for.
    pub listener: usize,
    out: LocalSender<Out>,
    /// The writer's end, until the writer starts (an outgoing connection queues while it
    /// connects).
    out_rx: RefCell<Option<LocalReceiver<Out>>>,
    queued: Cell<usize>,
    max_queued: usize,
    /// When the writer last had the kernel take bytes (or the connection was made).
    progress: Cell<Instant>,
    /// When the incomplete message at the front of the reader's buffer began.
    begun: Cell<Option<Instant>>,
    /// When the reader last got bytes (or the connection was made).
    last_read: Cell<Instant>,
    closed: Cell<Option<CloseReason>>,
    /// The other shards were told of it (a connection the peer opened, once ready for SIP),
    /// so they must be told when it closes.
    announced: Cell<bool>,
    tasks: RefCell<Vec<JoinHandle<()>>>,
}

/// What a send to a connection came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queued {
    Yes,
    /// The connection is closed (or closing).
    Closed,
    /// The bound was passed: the caller closes the connection.
    Overflow,
}

impl Conn {
    pub fn new(id: ConnId, peer: SocketAddr, listener: usize, max_queued: usize) -> Conn {
        let (out, rx) = local_channel::new_unbounded();
        Conn {
            id,
            peer,
            listener,
            out,
            out_rx: RefCell::new(Some(rx)),
            queued: Cell::new(0),
            max_queued,
            progress: Cell::new(Instant::now()),
            begun: Cell::new(None),
            last_read: Cell::new(Instant::now()),
            closed: Cell::new(None),
            announced: Cell::new(false),
            tasks: RefCell::new(Vec::new()),
        }
    }

    /// Queue `bytes` for the peer.
    pub fn send(&self, bytes: &[u8]) -> Queued {
        self.send_marked(bytes, false)
    }

    /// Queue `bytes`, marked for UDP should the connection never come up.
    pub fn send_marked(&self, bytes: &[u8], fallback_udp: bool) -> Queued {
        if self.closed.get().is_some() {
            return Queued::Closed;
        }
        let queued = self.queued.get() + bytes.len();
        if queued > self.max_queued {
            return Queued::Overflow;
        }
        match self.out.try_send(Out::Bytes(bytes.into(), fallback_udp)) {
            Ok(()) => {
                self.queued.set(queued);
                Queued::Yes
            }
            Err(_) => Queued::Closed,
        }
    }

    /// Why the connection is past one of its deadlines at `now`, if it is: a message begun
    /// and not complete within `message`, or nothing read for `idle`.
    pub fn overdue(&self, now: Instant, message: Duration, idle: Duration) -> Option<CloseReason> {
        match self.begun.get() {
            Some(t) if now.saturating_duration_since(t) >= message => {
                Some(CloseReason::MessageTimeout)
            }
            Some(_) => None,
            None if now.saturating_duration_since(self.last_read.get()) >= idle => {
                Some(CloseReason::Idle)
            }
            None => None,
        }
    }

    /// Has the peer taken no byte for `limit` while something waits for it?
    pub fn stalled_for(&self, limit: Duration) -> bool {
        self.queued.get() > 0 && self.progress.get().elapsed() >= limit
    }

    /// Close once what is queued so far is written (after an error reply).
    pub fn close_after_flush(&self) {
        let _ = self.out.try_send(Out::Close);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.get().is_some()
    }

    /// Note that the other shards were told of it.
    pub fn mark_announced(&self) {
        self.announced.set(true);
    }

    pub fn was_announced(&self) -> bool {
        self.announced.get()
    }

    /// Mark closed and stop its tasks (dropping them closes the socket). Returns false when it
    /// was closed already, so the caller accounts for each connection once.
    pub fn mark_closed(&self, why: CloseReason) -> bool {
        if self.closed.get().is_some() {
            return false;
        }
        self.closed.set(Some(why));
        for t in self.tasks.borrow_mut().drain(..) {
            t.cancel();
        }
        true
    }

    pub fn adopt_task(&self, t: JoinHandle<()>) {
        if self.closed.get().is_some() {
            t.cancel();
        } else {
            self.tasks.borrow_mut().push(t);
        }
    }

    /// What was queued and marked for UDP, for a connection that never came up (the rest is
    /// dropped with it).
    pub async fn take_fallbacks(&self) -> Vec<Box<[u8]>> {
        let mut out = Vec::new();
        if let Some(rx) = self.take_outbox() {
            while let Some(Some(item)) = futures_lite::future::poll_once(rx.recv()).await {
                if let Out::Bytes(b, true) = item {
                    out.push(b);
                }
            }
        }
        out
    }

    /// The writer's end of the outbox (once).
    pub fn take_outbox(&self) -> Option<LocalReceiver<Out>> {
        self.out_rx.borrow_mut().take()
    }
}

/// Write what is queued, in order, until a `Close` or an error; returns how it ended.
///
/// Whatever is queued when the writer gets its turn goes out in one write (up to
/// [`WRITE_BATCH`] bytes): the readers of a busy shard queue a message per forwarded request,
/// and a writer taking them one write (one turn of the executor) at a time would fall behind
/// the readers and disconnect a peer that reads perfectly well.
pub async fn write_loop<W: AsyncWrite + Unpin>(
    conn: Rc<Conn>,
    rx: LocalReceiver<Out>,
    mut wr: W,
) -> CloseReason {
    // Allocated on the first gathered write only: an idle connection costs no write buffer.
    let mut batch: Vec<u8> = Vec::new();
    while let Some(Out::Bytes(first, _)) = rx.recv().await {
        let (bytes, closing): (&[u8], bool) =
            match futures_lite::future::poll_once(rx.recv()).await.flatten() {
                // One message waits: it goes as it is.
                None => (&first, false),
                Some(next) => {
                    batch.clear();
                    batch.extend_from_slice(&first);
                    let closing = gather(&rx, next, &mut batch).await;
                    (&batch, closing)
                }
            };
        if !bytes.is_empty() && wr.write_all(bytes).await.is_err() {
            return CloseReason::Peer;
        }
        conn.queued
            .set(conn.queued.get().saturating_sub(bytes.len()));
        conn.progress.set(Instant::now());
        if closing {
            break;
        }
    }
    let _ = wr.close().await;
    // Only a broken stream queues a Close (after its answer): see `Conn::close_after_flush`.
    CloseReason::Framing
}

/// Append `next` and whatever else the outbox holds to `batch`, up to [`WRITE_BATCH`] bytes;
/// true when a `Close` came (nothing after it is taken).
async fn gather(rx: &LocalReceiver<Out>, next: Out, batch: &mut Vec<u8>) -> bool {
    let mut next = Some(next);
    while let Some(out) = next.take() {
        match out {
            Out::Bytes(b, _) => batch.extend_from_slice(&b),
            Out::Close => return true,
        }
        if batch.len() < WRITE_BATCH {
            next = futures_lite::future::poll_once(rx.recv()).await.flatten();
        }
    }
    false
}

/// What the reader hands each frame to.
pub enum Event<'a> {
    /// One whole message.
    Message(&'a [u8]),
    /// The stream cannot be framed from here on: the bytes so far and why (the caller may
    /// answer, then the connection closes).
    Broken(&'a [u8], ParseError),
}

/// A connection's bytes on their way to messages: its framer and what it holds of a message
/// not yet whole. Fed by [`read_loop`] (a glommio stream: TLS, or `--tcp-receive stream`) or by
/// the shard's receive ring ([`super::ring`]).
pub struct Inbound {
    framer: Framer,
    buf: Vec<u8>,
}

impl Inbound {
    pub fn new(max_message: usize) -> Inbound {
        Inbound {
            framer: Framer::new(max_message),
            buf: Vec::new(),
        }
    }

    /// Frame `data`, just read from `conn`: keep-alive pings are answered here, every message
    /// and a break go to `on_event`; `Err` when the stream broke (the connection must close).
    /// Notes in `conn` when it last carried bytes and when its incomplete message began, for
    /// the shard's sweep. With nothing held from earlier reads the messages are framed where
    /// they were read, and only an incomplete tail is copied.
    pub fn feed(
        &mut self,
        conn: &Conn,
        data: &[u8],
        on_event: &mut impl FnMut(Event<'_>),
    ) -> Result<(), CloseReason> {
        let now = Instant::now();
        conn.last_read.set(now);
        let held = if self.buf.is_empty() {
            let rest = frame_all(&mut self.framer, conn, data, on_event)?;
            self.buf.extend_from_slice(&data[data.len() - rest..]);
            rest
        } else {
            self.buf.extend_from_slice(data);
            let rest = frame_all(&mut self.framer, conn, &self.buf, on_event)?;
            self.buf.drain(..self.buf.len() - rest);
            rest
        };
        conn.begun.set(match (held, conn.begun.get()) {
            (0, _) => None,
            (_, Some(t)) => Some(t),
            (_, None) => Some(now),
        });
        if held == 0 && self.buf.capacity() > 4 * READ_CHUNK {
            self.buf = Vec::new();
        }
        Ok(())
    }
}

/// Hand every whole frame at the front of `bytes` to `on_event`; how many bytes are left (the
/// start of a message not yet whole).
fn frame_all(
    framer: &mut Framer,
    conn: &Conn,
    mut bytes: &[u8],
    on_event: &mut impl FnMut(Event<'_>),
) -> Result<usize, CloseReason> {
    loop {
        let frame = match framer.frame(bytes) {
            Ok(f) => f,
            Err(e) => {
                on_event(Event::Broken(bytes, e));
                return Err(CloseReason::Framing);
            }
        };
        match frame {
            Frame::Message { len } => on_event(Event::Message(&bytes[..len])),
            Frame::Ping { .. } => {
                conn.send(PONG);
            }
            Frame::Skip { .. } => {}
            Frame::Partial => return Ok(bytes.len()),
        }
        bytes = &bytes[frame.consumed()..];
    }
}

/// Read and frame until the peer goes or the framing breaks (or the shard's sweep closes the
/// connection for a deadline, which cancels this task).
///
/// No timer races each read: arming and cancelling one per read cost an io_uring operation
/// pair per message; the deadlines are checked by the sweep instead, from what [`Inbound`]
/// notes in the connection.
pub async fn read_loop<S: AsyncRead + Unpin>(
    conn: &Conn,
    mut rd: ReadHalf<S>,
    cfg: &TcpSettings,
    mut on_event: impl FnMut(Event<'_>),
) -> CloseReason {
    let mut inbound = Inbound::new(cfg.max_message);
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        let n = match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => return CloseReason::Peer,
            Ok(n) => n,
        };
        if let Err(why) = inbound.feed(conn, &chunk[..n], &mut on_event) {
            return why;
        }
        // A read from a busy peer completes at once, so this loop would never give way: the
        // other connections' readers and every writer (the forwarded messages) would wait
        // until this peer paused. One turn per read keeps the shard fair.
        futures_lite::future::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[u8] = b"\r\n\r\nOPTIONS sip:a@example.com SIP/2.0\r\nl: 0\r\n\r\n\
        MESSAGE sip:b@example.com SIP/2.0\r\nContent-Length: 5\r\n\r\nhello\r\n\
        INFO sip:c@example.com SIP/2.0\r\nContent-Length: 2\r\n\r\nhi\
        BYE sip:d@exam";

    /// Feed `STREAM` cut at `cuts`; the messages framed, the pongs queued and the bytes held.
    fn feed_in_pieces(cuts: &[usize]) -> (Vec<Vec<u8>>, usize, Vec<u8>) {
        let conn = Conn::new(ConnId(1), "127.0.0.1:5060".parse().unwrap(), 0, 1 << 20);
        let mut inbound = Inbound::new(1024);
        let mut messages = Vec::new();
        let mut at = 0;
        for &cut in cuts.iter().chain([STREAM.len()].iter()) {
            let mut on_event = |ev: Event<'_>| match ev {
                Event::Message(m) => messages.push(m.to_vec()),
                Event::Broken(..) => panic!("a well-formed stream broke"),
            };
            inbound
                .feed(&conn, &STREAM[at..cut], &mut on_event)
                .unwrap();
            at = cut;
        }
        (messages, conn.queued.get(), inbound.buf)
    }

    #[test]
    fn any_cut_into_reads_frames_the_same_messages() {
        let whole = feed_in_pieces(&[]);
        assert_eq!(whole.0.len(), 3);
        assert!(whole.0[1].ends_with(b"hello"));
        assert_eq!(whole.1, PONG.len());
        assert_eq!(whole.2, b"BYE sip:d@exam");
        for cut in 0..=STREAM.len() {
            assert_eq!(feed_in_pieces(&[cut]), whole, "one cut at {cut}");
        }
        let every_byte: Vec<usize> = (1..STREAM.len()).collect();
        assert_eq!(feed_in_pieces(&every_byte), whole, "a byte a read");
        let mut seed = 7u32;
        for _ in 0..200 {
            let mut cuts = Vec::new();
            let mut at = 0;
            while at < STREAM.len() {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                at += 1 + (seed >> 16) as usize % 40;
                cuts.push(at.min(STREAM.len()));
            }
            assert_eq!(feed_in_pieces(&cuts), whole, "cuts {cuts:?}");
        }
    }

    #[test]
    fn a_broken_stream_is_reported_from_the_frame_that_broke_it() {
        let conn = Conn::new(ConnId(1), "127.0.0.1:5060".parse().unwrap(), 0, 1 << 20);
        let mut inbound = Inbound::new(1024);
        let mut seen = Vec::new();
        let mut on_event = |ev: Event<'_>| match ev {
            Event::Message(m) => seen.push(m.to_vec()),
            Event::Broken(bytes, e) => {
                seen.push([&b"broken:"[..], bytes, e.reason().as_bytes()].concat())
            }
        };
        let ok = b"OPTIONS sip:a@example.com SIP/2.0\r\nl: 0\r\n\r\n";
        let bad = b"BYE sip:b@example.com SIP/2.0\r\n\r\n";
        assert_eq!(inbound.feed(&conn, ok, &mut on_event), Ok(()));
        assert_eq!(
            inbound.feed(&conn, bad, &mut on_event),
            Err(CloseReason::Framing)
        );
        assert_eq!(seen.len(), 2);
        assert!(seen[1].starts_with(b"broken:BYE sip:b@example.com"));
        assert!(seen[1].ends_with(b"Missing Content-Length"));
    }
}
