//! The TCP and TLS side of the flooder (`udp-flood run --transport tcp|tls`): requests go to
//! the proxy over a few persistent connections, and the sink is a listener that accepts the
//! connections the proxy opens and counts the messages on them. Messages are cut by sipshard's
//! own stream framer (Content-Length, RFC 3261 section 18.3), the same for every system under
//! test. Over TLS (rustls) the handshakes are done before anything is measured.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection, StreamOwned};
use sipshard::sip::{Frame, Framer};
use socket2::{Domain, Protocol, Socket, Type};

/// A connection: plain TCP, or TLS over it from either side.
enum Wire {
    Plain(TcpStream),
    Client(Box<StreamOwned<ClientConnection, TcpStream>>),
    Server(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Wire {
    fn socket(&self) -> &TcpStream {
        match self {
            Wire::Plain(s) => s,
            Wire::Client(s) => &s.sock,
            Wire::Server(s) => &s.sock,
        }
    }
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Wire::Plain(s) => s.read(buf),
            Wire::Client(s) => s.read(buf),
            Wire::Server(s) => s.read(buf),
        }
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Wire::Plain(s) => s.write(buf),
            Wire::Client(s) => s.write(buf),
            Wire::Server(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Wire::Plain(s) => s.flush(),
            Wire::Client(s) => s.flush(),
            Wire::Server(s) => s.flush(),
        }
    }
}

/// Over TLS: how the flooder's connections verify the proxy, and the sink's certificate.
#[derive(Clone)]
pub struct Tls {
    pub client: Arc<ClientConfig>,
    /// The name the proxy's certificate must carry.
    pub name: ServerName<'static>,
    pub sink: Option<Arc<ServerConfig>>,
}

/// Open a connection to `proxy` (over TLS when `tls` says so, the handshake done) and make it
/// non-blocking.
fn open(proxy: SocketAddr, tls: Option<&Tls>) -> io::Result<Wire> {
    let tcp = TcpStream::connect_timeout(&proxy, Duration::from_secs(5))?;
    tcp.set_nodelay(true)?;
    let wire = match tls {
        None => Wire::Plain(tcp),
        Some(t) => {
            let conn = ClientConnection::new(Arc::clone(&t.client), t.name.clone())
                .map_err(io::Error::other)?;
            let mut s = StreamOwned::new(conn, tcp);
            s.sock.set_read_timeout(Some(Duration::from_secs(5)))?;
            while s.conn.is_handshaking() {
                s.conn.complete_io(&mut s.sock)?;
            }
            Wire::Client(Box::new(s))
        }
    };
    wire.socket().set_nonblocking(true)?;
    Ok(wire)
}

/// Bytes a source connection may hold unsent before the flooder stops queueing on it (the
/// proxy is not reading: what is not queued counts as not sent, as a full UDP buffer would).
const MAX_QUEUED: usize = 1 << 20;
/// Bytes read per call.
const READ_CHUNK: usize = 256 * 1024;
/// Largest message framed.
const MAX_MESSAGE: usize = 64 * 1024;

/// Bytes received on one connection and the framer cutting them into messages.
struct Reader {
    wire: Wire,
    buf: Vec<u8>,
    framer: Framer,
    open: bool,
}

impl Reader {
    fn new(wire: Wire) -> Reader {
        Reader {
            wire,
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
            let got = self.wire.read(&mut self.buf[have..]);
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
    /// Open `n` connections to `proxy`, over TLS with `tls`.
    pub fn connect(proxy: SocketAddr, n: usize, tls: Option<&Tls>) -> io::Result<Sources> {
        let mut conns = Vec::with_capacity(n);
        for _ in 0..n.max(1) {
            let wire = open(proxy, tls)?;
            conns.push((Reader::new(wire), Vec::with_capacity(MAX_QUEUED)));
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
            match reader.wire.write(&queue[done..]) {
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
    /// Over TLS: the sink's certificate (the handshake runs as the first reads come).
    tls: Option<Arc<ServerConfig>>,
}

impl Sink {
    pub fn bind(addr: SocketAddr, tls: Option<Arc<ServerConfig>>) -> io::Result<Sink> {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        s.bind(&addr.into())?;
        s.listen(1024)?;
        s.set_nonblocking(true)?;
        Ok(Sink {
            listener: s.into(),
            conns: Vec::new(),
            tls,
        })
    }

    /// Accept new connections, then hand every whole message received to `each`; returns how
    /// many.
    pub fn drain(&mut self, mut each: impl FnMut(&[u8])) -> u64 {
        while let Ok((tcp, _)) = self.listener.accept() {
            if tcp.set_nonblocking(true).is_err() {
                continue;
            }
            let wire = match &self.tls {
                None => Wire::Plain(tcp),
                Some(config) => match ServerConnection::new(Arc::clone(config)) {
                    Ok(conn) => Wire::Server(Box::new(StreamOwned::new(conn, tcp))),
                    Err(_) => continue,
                },
            };
            self.conns.push(Reader::new(wire));
        }
        self.conns.iter_mut().map(|r| r.drain(&mut each)).sum()
    }
}

/// An idle connection held open for the memory measurement.
pub struct Idle(Wire);

/// Open `n` idle connections to `proxy` (over TLS with `tls`, handshakes done), stopping at
/// the first failure; returns the ones that opened and the error that stopped them, if any.
pub fn open_idle(proxy: SocketAddr, n: usize, tls: Option<&Tls>) -> (Vec<Idle>, Option<io::Error>) {
    let mut conns = Vec::with_capacity(n);
    // A proxy just flooded flat out may still be working off its backlog: the first
    // connection waits for it (up to a minute), the others do not.
    let mut first = open(proxy, tls);
    for _ in 0..30 {
        if first.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
        first = open(proxy, tls);
    }
    let mut first = Some(first);
    for _ in 0..n {
        match first.take().unwrap_or_else(|| open(proxy, tls)) {
            Ok(c) => {
                // Closed with a reset: 10,000 connections must not leave 10,000 ports in
                // TIME_WAIT for the next system measured.
                let _ = socket2::SockRef::from(c.socket()).set_linger(Some(Duration::ZERO));
                conns.push(Idle(c));
            }
            Err(e) => return (conns, Some(e)),
        }
    }
    (conns, None)
}

/// Is the connection still open? (No data, no end of stream, no error: the peer holds it. A
/// TLS 1.3 server's session tickets are data: read them through the connection first.)
pub fn still_open(c: &mut Idle) -> bool {
    let mut b = [0u8; 1];
    if let Wire::Client(s) = &mut c.0 {
        if !matches!(s.read(&mut b), Err(e) if e.kind() == ErrorKind::WouldBlock) {
            return false;
        }
    }
    matches!(c.0.socket().peek(&mut b), Err(e) if e.kind() == ErrorKind::WouldBlock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_reach_the_sink_as_whole_messages() {
        let mut sink = Sink::bind("127.0.0.1:0".parse().unwrap(), None).unwrap();
        let addr = sink.listener.local_addr().unwrap();
        let mut src = Sources::connect(addr, 2, None).unwrap();
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
