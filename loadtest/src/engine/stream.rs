//! TCP connections of one worker (`--transport tcp`). Each stands where a UDP socket would: a
//! connection from its own local port to the target, opened before the run and kept for all of
//! it (SIPp's `-t t1`, a phone's or a trunk's persistent connection). What the scenario sends
//! is queued like datagrams and written in order; what arrives is cut into messages by
//! sipshard's stream framer (RFC 3261 section 18.3), the same one the proxy uses.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use sipshard::sip::{Frame, Framer, ParseError};
use socket2::{Domain, Protocol, Socket, Type};

/// Largest message read off a stream (the proxy's own default `--max-message` is smaller).
const MAX_MESSAGE: usize = 64 * 1024;
/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 64 * 1024;
/// How long opening a connection may take before the run gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One connection's receiving side.
pub struct Stream {
    pub tcp: TcpStream,
    pub peer: SocketAddr,
    /// Bytes received and not yet consumed, from the start of the current frame.
    rx: Vec<u8>,
    framer: Framer,
}

/// Open a connection from `local` to `target`: non-blocking, Nagle off (every message is a
/// request or an answer someone waits for), and reset rather than left in TIME_WAIT when it
/// closes, so the next trial of a rate search can bind the same local port again.
pub fn connect(local: SocketAddr, target: SocketAddr) -> io::Result<TcpStream> {
    let s = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    s.set_reuse_address(true)?;
    s.bind(&local.into())?;
    s.connect_timeout(&target.into(), CONNECT_TIMEOUT)?;
    s.set_nodelay(true)?;
    s.set_linger(Some(Duration::ZERO))?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

impl Stream {
    pub fn new(tcp: TcpStream, peer: SocketAddr) -> Stream {
        Stream {
            tcp,
            peer,
            rx: Vec::with_capacity(READ_CHUNK),
            framer: Framer::new(MAX_MESSAGE),
        }
    }

    /// Read what the kernel holds, without blocking. Returns false once the peer has closed the
    /// connection or it failed.
    pub fn fill(&mut self) -> bool {
        loop {
            let have = self.rx.len();
            self.rx.resize(have + READ_CHUNK, 0);
            let got = self.tcp.read(&mut self.rx[have..]);
            self.rx.truncate(have + *got.as_ref().unwrap_or(&0));
            match got {
                Ok(0) => return false,
                Ok(n) if n < READ_CHUNK => return true,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    /// The next frame at `from` in the bytes received (see [`Framer::frame`]'s contract: the
    /// caller moves `from` past every frame but [`Frame::Partial`]).
    pub fn frame(&mut self, from: usize) -> Result<Frame, ParseError> {
        self.framer.frame(&self.rx[from..])
    }

    /// The bytes of a frame, mutable (the SIP parser normalises in place).
    pub fn bytes(&mut self, from: usize, len: usize) -> &mut [u8] {
        &mut self.rx[from..from + len]
    }

    /// Forget the first `n` bytes: the frames already handled.
    pub fn consume(&mut self, n: usize) {
        self.rx.drain(..n);
    }
}

/// Write as much of `bytes` as the connection takes now; returns how many it took, or the error
/// that broke it.
pub fn write_some(tcp: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < bytes.len() {
        match (&*tcp).write(&bytes[done..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
