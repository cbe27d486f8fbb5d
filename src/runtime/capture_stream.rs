//! HEP over TCP (`--hep tcp:HOST:PORT`): a shard's packets as one stream to the collector
//! (Homer's heplify-server reads HEP packets back to back on a connection). Many packets go
//! out in one `send`, so a capture costs its copy and a share of one system call, where over
//! UDP each packet is a datagram of its own.
//!
//! Nothing waits. The connection is opened without blocking and reopened at most every
//! [`RECONNECT_EVERY`] after it fails; what the socket does not take at once stays in a
//! bounded queue of whole packets (the first maybe partly written, so the stream stays framed);
//! packets that find the queue full, or are queued when the connection breaks, are counted as
//! failed, never retried.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::counters::HepCounters;

/// How long after a failed or broken connection the next attempt is made.
pub const RECONNECT_EVERY: Duration = Duration::from_secs(1);
/// Bytes queued for the collector at most (some seconds of a busy shard's capture).
const MAX_QUEUED: usize = 4 << 20;

/// One shard's connection to the collector and what waits to be written on it.
pub struct StreamSink {
    collector: SocketAddr,
    conn: Option<Socket>,
    /// When the connection may be tried again (after a failure).
    retry_at: Option<Instant>,
    /// Queued bytes: whole packets, of which the first `written` bytes went out.
    queue: Vec<u8>,
    written: usize,
    /// Where each queued packet ends in `queue`, first packet first.
    ends: VecDeque<usize>,
}

impl StreamSink {
    pub fn new(collector: SocketAddr) -> StreamSink {
        StreamSink {
            collector,
            conn: None,
            retry_at: None,
            queue: Vec::new(),
            written: 0,
            ends: VecDeque::new(),
        }
    }

    /// Queue the packets of `buf` (ending at `ends`) and write what the socket takes now.
    pub fn flush(&mut self, buf: &[u8], ends: &[usize], counters: &mut HepCounters) {
        if self.queue.len() - self.written + buf.len() > MAX_QUEUED {
            counters.send_failed += ends.len() as u64;
        } else {
            self.compact();
            let base = self.queue.len();
            self.queue.extend_from_slice(buf);
            self.ends.extend(ends.iter().map(|e| base + e));
        }
        if self.ready() {
            self.write(counters);
        }
    }

    /// Whether there is a connection, opening one when it is time.
    fn ready(&mut self) -> bool {
        if self.conn.is_some() {
            return true;
        }
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return false;
        }
        match connect(self.collector) {
            Ok(s) => {
                self.conn = Some(s);
                self.retry_at = None;
                true
            }
            Err(e) => {
                self.broken(&e);
                false
            }
        }
    }

    /// Write as much of the queue as the socket takes without waiting.
    fn write(&mut self, counters: &mut HepCounters) {
        let Some(conn) = &self.conn else {
            return;
        };
        while self.written < self.queue.len() {
            match conn.send_with_flags(&self.queue[self.written..], libc::MSG_NOSIGNAL) {
                Ok(n) => self.written += n,
                // Full, or still connecting: the rest waits for the next flush.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    counters.send_failed += self.ends.len() as u64;
                    self.queue.clear();
                    self.ends.clear();
                    self.written = 0;
                    self.broken(&e);
                    return;
                }
            }
        }
        while self.ends.front().is_some_and(|&end| end <= self.written) {
            self.ends.pop_front();
            counters.sent += 1;
        }
    }

    /// Drop the bytes already written from the front of the queue.
    fn compact(&mut self) {
        if self.written == 0 {
            return;
        }
        self.queue.drain(..self.written);
        for end in &mut self.ends {
            *end -= self.written;
        }
        self.written = 0;
    }

    fn broken(&mut self, e: &io::Error) {
        if self.conn.take().is_some() || self.retry_at.is_none() {
            log::warn!(
                "SIP capture: the HEP collector tcp:{} is unreachable ({e}); retrying every {} s",
                self.collector,
                RECONNECT_EVERY.as_secs()
            );
        }
        self.retry_at = Some(Instant::now() + RECONNECT_EVERY);
    }
}

/// A connection being opened, without waiting for it.
fn connect(to: SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP))?;
    s.set_nonblocking(true)?;
    s.set_nodelay(true)?;
    match s.connect(&to.into()) {
        Ok(()) => Ok(s),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(s),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    fn packets(n: usize, len: usize) -> (Vec<u8>, Vec<usize>) {
        let buf: Vec<u8> = (0..n * len).map(|i| (i / len) as u8).collect();
        let ends = (1..=n).map(|i| i * len).collect();
        (buf, ends)
    }

    #[test]
    fn packets_arrive_whole_and_in_order() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut sink = StreamSink::new(listener.local_addr().unwrap());
        let mut counters = HepCounters::default();
        let (buf, ends) = packets(10, 100);
        // The first flush only starts connecting; later ones write.
        let deadline = Instant::now() + Duration::from_secs(5);
        sink.flush(&buf, &ends, &mut counters);
        while counters.sent < 10 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            sink.flush(&[], &[], &mut counters);
        }
        assert_eq!((counters.sent, counters.send_failed), (10, 0));
        let (mut peer, _) = listener.accept().unwrap();
        let mut got = vec![0u8; 1000];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(got, buf);
    }

    #[test]
    fn a_dead_collector_is_counted_and_retried_later_never_waited_for() {
        let dead = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = dead.local_addr().unwrap();
        drop(dead);
        let mut sink = StreamSink::new(addr);
        let mut counters = HepCounters::default();
        let (buf, ends) = packets(3, 50);
        let started = Instant::now();
        for _ in 0..20 {
            sink.flush(&buf, &ends, &mut counters);
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(started.elapsed() < Duration::from_secs(1), "never waits");
        assert_eq!(counters.sent, 0);
        // Each lot was either lost with the connection (counted) or waits for the next one.
        assert_eq!(counters.send_failed as usize + sink.ends.len(), 60);
        assert!(sink.retry_at.is_some(), "waits before the next attempt");
    }

    #[test]
    fn a_full_queue_counts_what_it_refuses() {
        let mut sink = StreamSink::new("127.0.0.1:9".parse().unwrap());
        sink.retry_at = Some(Instant::now() + Duration::from_secs(60));
        let mut counters = HepCounters::default();
        let (buf, ends) = packets(64, 65_536);
        sink.flush(&buf, &ends, &mut counters);
        sink.flush(&buf, &ends, &mut counters);
        assert_eq!(counters.send_failed, 64, "the second lot does not fit");
        assert_eq!(sink.ends.len(), 64);
    }
}
