//! The TCP side of the flooder (`udp-flood run --transport tcp`): requests go to the proxy over a
//! few persistent connections, and the sink is a listener that accepts the connections the
//! proxy opens and counts the messages on them. Messages are cut by sipshard's own stream framer
//! (Content-Length, RFC 3261 section 18.3), the same for every system under test.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use sipshard::sip::{Frame, Framer};
use socket2::{Domain, Protocol, Socket, Type};

/// Bytes a source connection may hold unsent before the flooder stops queueing on it (the
/// proxy is not reading: what is not queued counts as not sent, as a full UDP buffer would).
const MAX_QUEUED: usize = 1 << 20;
/// Bytes read per call.
const READ_CHUNK: usize = 256 * 1024;
/// Largest message framed.
const MAX_MESSAGE: usize = 64 * 1024;

/// Bytes received on one connection and the framer cutting them into messages.
struct Reader {
    tcp: TcpStream,
    buf: Vec<u8>,
    framer: Framer,
    open: bool,
}

impl Reader {
    fn new(tcp: TcpStream) -> Reader {
        Reader {
            tcp,
            buf: Vec::with_capacity(READ_CHUNK),
            framer: Framer::new(MAX_MESSAGE),
            open: true,
        }
    }

    /// Read what is there and hand each whole message to `each`; returns how many.
    fn drain(&mut self, each: &mut impl FnMut(&[u8])) -> u64 {
        let mut n = 0;
        while self.open {
            let have = self.buf.len();
            self.buf.resize(have + READ_CHUNK, 0);
            let got = self.tcp.read(&mut self.buf[have..]);
            self.buf.truncate(have + *got.as_ref().unwrap_or(&0));
            match got {
                Ok(0) => self.open = false,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => self.open = false,
            }
            n += self.frames(each);
        }
        n
    }

    fn frames(&mut self, each: &mut impl FnMut(&[u8])) -> u64 {
        let (mut at, mut n) = (0, 0);
        loop {
            match self.framer.frame(&self.buf[at..]) {
                Ok(Frame::Message { len }) => {
                    each(&self.buf[at..at + len]);
                    at += len;
                    n += 1;
                }
                Ok(Frame::Partial) => break,
                Ok(f) => at += f.consumed(),
                // The framing is lost: a broken proxy. Stop reading this connection.
                Err(_) => {
                    self.open = false;
                    break;
                }
            }
        }
        self.buf.drain(..at);
        n
    }
}

/// The connections requests leave on.
pub struct Sources {
    conns: Vec<(Reader, Vec<u8>)>,
}

impl Sources {
    /// Open `n` connections to `proxy`.
    pub fn connect(proxy: SocketAddr, n: usize) -> io::Result<Sources> {
        let mut conns = Vec::with_capacity(n);
        for _ in 0..n.max(1) {
            let tcp = TcpStream::connect_timeout(&proxy, Duration::from_secs(5))?;
            tcp.set_nodelay(true)?;
            tcp.set_nonblocking(true)?;
            conns.push((Reader::new(tcp), Vec::with_capacity(MAX_QUEUED)));
        }
        Ok(Sources { conns })
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Queue `msgs` on connection `i` and write what it takes; returns how many messages were
    /// queued (fewer when the proxy does not keep up), or the error that broke the connection.
    pub fn send<'a>(
        &mut self,
        i: usize,
        msgs: impl Iterator<Item = &'a [u8]>,
    ) -> io::Result<usize> {
        let (reader, queue) = &mut self.conns[i];
        let mut queued = 0;
        for m in msgs {
            if queue.len() + m.len() > MAX_QUEUED {
                break;
            }
            queue.extend_from_slice(m);
            queued += 1;
        }
        let mut done = 0;
        while done < queue.len() {
            match (&reader.tcp).write(&queue[done..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(k) => done += k,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        queue.drain(..done);
        Ok(queued)
    }

    /// Messages the proxy sent back on the connections (the first one to `first`).
    pub fn drain_replies(&mut self, first: &mut Option<String>) -> u64 {
        let mut each = |m: &[u8]| {
            if first.is_none() {
                let line = m.split(|&b| b == b'\r').next().unwrap_or(m);
                *first = Some(String::from_utf8_lossy(line).into_owned());
            }
        };
        self.conns.iter_mut().map(|(r, _)| r.drain(&mut each)).sum()
    }
}

/// The listener the proxy forwards to, and the connections it opened.
pub struct Sink {
    listener: TcpListener,
    conns: Vec<Reader>,
}

impl Sink {
    pub fn bind(addr: SocketAddr) -> io::Result<Sink> {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        s.bind(&addr.into())?;
        s.listen(1024)?;
        s.set_nonblocking(true)?;
        Ok(Sink {
            listener: s.into(),
            conns: Vec::new(),
        })
    }

    /// Accept new connections, then hand every whole message received to `each`; returns how
    /// many.
    pub fn drain(&mut self, mut each: impl FnMut(&[u8])) -> u64 {
        while let Ok((tcp, _)) = self.listener.accept() {
            if tcp.set_nonblocking(true).is_ok() {
                self.conns.push(Reader::new(tcp));
            }
        }
        self.conns.iter_mut().map(|r| r.drain(&mut each)).sum()
    }
}

/// Open `n` idle connections to `proxy` (for the memory measurement), stopping at the first
/// failure; returns the ones that opened and the error that stopped them, if any.
pub fn open_idle(proxy: SocketAddr, n: usize) -> (Vec<TcpStream>, Option<io::Error>) {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        match TcpStream::connect_timeout(&proxy, Duration::from_secs(5)) {
            Ok(c) => {
                // Closed with a reset: 10,000 connections must not leave 10,000 ports in
                // TIME_WAIT for the next system measured.
                let _ = socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO));
                conns.push(c);
            }
            Err(e) => return (conns, Some(e)),
        }
    }
    (conns, None)
}

/// Is the connection still open? (No data, no end of stream, no error: the peer holds it.)
pub fn still_open(c: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    let _ = c.set_nonblocking(true);
    matches!(c.peek(&mut b), Err(e) if e.kind() == ErrorKind::WouldBlock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_reach_the_sink_as_whole_messages() {
        let mut sink = Sink::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = sink.listener.local_addr().unwrap();
        let mut src = Sources::connect(addr, 2).unwrap();
        let msg = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 2\r\n\r\nhi";
        for i in 0..100 {
            assert_eq!(
                src.send(i % 2, std::iter::repeat_n(&msg[..], 10)).unwrap(),
                10
            );
        }
        let mut got = 0;
        for _ in 0..200 {
            got += sink.drain(|m| assert_eq!(m, &msg[..]));
            if got == 1000 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(got, 1000);
    }
}
