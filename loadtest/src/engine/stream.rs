//! TCP connections of one worker (`--transport tcp` and `tls`). Each stands where a UDP socket
//! would: a connection from its own local port to the target, opened before the run and kept
//! for all of it (SIPp's `-t t1`, a phone's or a trunk's persistent connection). What the
//! scenario sends is queued like datagrams and written in order; what arrives is cut into
//! messages by sipshard's stream framer (RFC 3261 section 18.3), the same one the proxy uses.
//! Over TLS the bytes pass through the connection's rustls session on the way in and out
//! (`tls.rs`); everything above this file sees plaintext either way.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use rustls::ClientConnection;
use sipshard::sip::{Frame, Framer, ParseError};
use socket2::{Domain, Protocol, Socket, Type};

use super::tls::{self, Pulled};

/// Largest message read off a stream (the proxy's own default `--max-message` is smaller).
const MAX_MESSAGE: usize = 64 * 1024;
/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 64 * 1024;
/// How long opening a connection (with its TLS handshake) may take before the run gives up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Socket reads per [`Stream::fill`] over TLS, at most (each up to a record or so): the rest
/// waits for the next turn, as a UDP socket's batches do (the wait is level-triggered).
const TLS_READS_PER_FILL: usize = 64;

/// One connection's receiving side.
pub struct Stream {
    pub tcp: TcpStream,
    pub peer: SocketAddr,
    /// Bytes received and not yet consumed, from the start of the current frame.
    rx: Vec<u8>,
    framer: Framer,
    /// `--transport tls`: the session the bytes pass through.
    tls: Option<Box<ClientConnection>>,
}

/// Open a connection from `local` to `target`: non-blocking, Nagle off (every message is a
/// request or an answer someone waits for), and reset rather than left in TIME_WAIT when it
/// closes, so the next trial of a rate search can bind the same local port again.
pub fn connect(local: SocketAddr, target: SocketAddr) -> io::Result<TcpStream> {
    let s = connect_blocking(local, target)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// [`connect`], but the socket is left blocking (for a TLS handshake before the run).
pub fn connect_blocking(local: SocketAddr, target: SocketAddr) -> io::Result<TcpStream> {
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
    Ok(s.into())
}

impl Stream {
    pub fn new(tcp: TcpStream, peer: SocketAddr) -> Stream {
        Stream {
            tcp,
            peer,
            rx: Vec::with_capacity(READ_CHUNK),
            framer: Framer::new(MAX_MESSAGE),
            tls: None,
        }
    }

    /// A connection whose TLS handshake is done (its socket non-blocking by now).
    pub fn with_tls(tcp: TcpStream, peer: SocketAddr, conn: ClientConnection) -> Stream {
        Stream {
            tls: Some(Box::new(conn)),
            ..Stream::new(tcp, peer)
        }
    }

    /// Read what the kernel holds, without blocking. Returns false once the peer has closed the
    /// connection or it failed.
    pub fn fill(&mut self) -> bool {
        if self.tls.is_some() {
            return self.fill_tls();
        }
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

    /// [`fill`](Self::fill) over TLS: records from the socket into the session, the plaintext
    /// out of it into `rx`.
    fn fill_tls(&mut self) -> bool {
        let Some(conn) = self.tls.as_deref_mut() else {
            return false;
        };
        for _ in 0..TLS_READS_PER_FILL {
            let open = match tls::pull(conn, &mut self.tcp) {
                Ok(Pulled::Nothing) => return true,
                Ok(Pulled::Some) => true,
                // Whatever was decrypted before the close is still handled.
                Ok(Pulled::Closed) | Err(_) => false,
            };
            loop {
                let have = self.rx.len();
                self.rx.resize(have + READ_CHUNK, 0);
                let got = conn.reader().read(&mut self.rx[have..]);
                self.rx.truncate(have + *got.as_ref().unwrap_or(&0));
                match got {
                    Ok(0) => return false, // close_notify
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => return false,
                }
            }
            if !open {
                return false;
            }
        }
        true
    }

    /// Write as much of `bytes` as the connection takes now; returns how many it took, or the
    /// error that broke it. Over TLS, bytes count as taken once the session has encrypted
    /// them; what the socket did not take yet goes out with the next call (see
    /// [`backlog`](Self::backlog)).
    pub fn write_some(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let Some(conn) = self.tls.as_deref_mut() else {
            return write_some(&self.tcp, bytes);
        };
        let mut took = 0;
        // Bounded: each round either empties the session's buffer and hands it more, or stops.
        loop {
            if !tls::push(conn, &mut self.tcp)? || took == bytes.len() {
                return Ok(took);
            }
            match conn.writer().write(&bytes[took..])? {
                0 => return Ok(took),
                n => took += n,
            }
        }
    }

    /// Encrypted bytes the socket has not taken yet (TLS only): the connection still has
    /// something to send although its queue is empty.
    pub fn backlog(&self) -> bool {
        self.tls.as_ref().is_some_and(|c| c.wants_write())
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

/// Write as much of `bytes` as a plain connection takes now; returns how many it took, or the
/// error that broke it.
fn write_some(tcp: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
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
