//! A user agent over TCP or TLS played by the test itself: one connection to a proxy, messages
//! framed by Content-Length on the way in, exactly what the test writes on the way out.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection, StreamOwned};

use crate::sip::wire;

/// The connection: plain TCP, or TLS over it (either side of the handshake).
pub enum Wire {
    Plain(TcpStream),
    Client(Box<StreamOwned<ClientConnection, TcpStream>>),
    Server(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Wire {
    /// The TCP socket under it.
    pub fn socket(&self) -> &TcpStream {
        match self {
            Wire::Plain(s) => s,
            Wire::Client(s) => &s.sock,
            Wire::Server(s) => &s.sock,
        }
    }
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Wire::Plain(s) => s.read(buf),
            Wire::Client(s) => s.read(buf),
            Wire::Server(s) => s.read(buf),
        }
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Wire::Plain(s) => s.write(buf),
            Wire::Client(s) => s.write(buf),
            Wire::Server(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Wire::Plain(s) => s.flush(),
            Wire::Client(s) => s.flush(),
            Wire::Server(s) => s.flush(),
        }
    }
}

/// A TLS client handshake on `sock`, completed (so that a refusal shows here).
pub fn tls_client(
    sock: TcpStream,
    config: Arc<ClientConfig>,
    name: &str,
) -> std::io::Result<StreamOwned<ClientConnection, TcpStream>> {
    let name = ServerName::try_from(name.to_string())
        .map_err(|e| std::io::Error::new(ErrorKind::InvalidInput, e))?;
    let conn = ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    let mut tls = StreamOwned::new(conn, sock);
    tls.sock.set_read_timeout(Some(Duration::from_secs(3)))?;
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    // TLS 1.3 tells the client its certificate was refused only after the handshake: a read
    // finds the alert (or times out on a connection the server kept).
    // What arrives meanwhile stays buffered in the connection.
    tls.sock
        .set_read_timeout(Some(Duration::from_millis(200)))?;
    match tls.conn.complete_io(&mut tls.sock) {
        Err(e) if !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Err(e),
        Ok((0, 0)) => Err(ErrorKind::ConnectionAborted.into()),
        _ => Ok(tls),
    }
}

/// One TCP or TLS connection and the bytes received on it not yet handed out.
pub struct TcpUa {
    pub stream: Wire,
    /// Our end of the connection.
    pub addr: SocketAddr,
    pending: Vec<u8>,
}

/// What came off the connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Got {
    Message(String),
    /// A bare CRLF (the answer to a keep-alive ping).
    Pong,
}

impl TcpUa {
    /// Connect to `to`; fails the test after 3 s.
    pub fn connect(to: SocketAddr) -> TcpUa {
        let stream = TcpStream::connect_timeout(&to, Duration::from_secs(3))
            .unwrap_or_else(|e| panic!("connect to {to}: {e}"));
        TcpUa::from_stream(stream)
    }

    /// A UA on a connection opened by the caller (with its own socket options).
    pub fn from_stream(stream: TcpStream) -> TcpUa {
        TcpUa::on(Wire::Plain(stream))
    }

    fn on(stream: Wire) -> TcpUa {
        let addr = stream.socket().local_addr().unwrap();
        TcpUa {
            stream,
            addr,
            pending: Vec::new(),
        }
    }

    /// A connection accepted by the test (the test plays a UA that listens on TCP).
    pub fn accepted(stream: TcpStream) -> TcpUa {
        TcpUa::from_stream(stream)
    }

    /// Connect to `to` over TLS, verifying that the server is `name`; the handshake's error
    /// when it fails (a refused certificate, either side's).
    pub fn try_connect_tls(
        to: SocketAddr,
        config: Arc<ClientConfig>,
        name: &str,
    ) -> std::io::Result<TcpUa> {
        let sock = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
        let tls = tls_client(sock, config, name)?;
        Ok(TcpUa::on(Wire::Client(Box::new(tls))))
    }

    /// Connect to `to` over TLS; fails the test when the handshake fails.
    pub fn connect_tls(to: SocketAddr, config: Arc<ClientConfig>, name: &str) -> TcpUa {
        TcpUa::try_connect_tls(to, config, name)
            .unwrap_or_else(|e| panic!("TLS to {to} as {name}: {e}"))
    }

    /// A TLS connection accepted by the test (a UAS or next hop that listens on TLS); the
    /// handshake completes on the first read.
    pub fn accepted_tls(stream: TcpStream, config: Arc<ServerConfig>) -> TcpUa {
        let conn = ServerConnection::new(config).expect("server connection");
        TcpUa::on(Wire::Server(Box::new(StreamOwned::new(conn, stream))))
    }

    /// Send a message written with `\n` line ends; CRLF and Content-Length are filled in.
    pub fn send(&mut self, msg: &str) {
        self.send_raw(wire(msg).as_bytes());
    }

    /// Send bytes exactly as given.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
        self.stream.flush().expect("flush");
    }

    /// The next message or pong within `t`; `None` on silence, on close, or on an error.
    pub fn recv_within(&mut self, t: Duration) -> Option<Got> {
        let deadline = Instant::now() + t;
        loop {
            if let Some(got) = self.take_frame() {
                return Some(got);
            }
            if !self.read_some(deadline) {
                return None;
            }
        }
    }

    /// The next message (pongs skipped); fails the test after 3 s.
    pub fn recv(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(3);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.recv_within(left) {
                Some(Got::Message(m)) => return m,
                Some(Got::Pong) => continue,
                None => break,
            }
        }
        panic!("TCP UA {} received no message within 3 s", self.addr)
    }

    /// Whether the proxy closes the connection within `t` (reads until end of stream).
    pub fn closed_within(&mut self, t: Duration) -> bool {
        let deadline = Instant::now() + t;
        let mut buf = [0u8; 4096];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            self.stream
                .socket()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
                Err(_) => {}
            }
        }
        false
    }

    /// Read once before `deadline`; false on silence, close or error.
    fn read_some(&mut self, deadline: Instant) -> bool {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return false;
        };
        let mut buf = [0u8; 16 * 1024];
        self.stream
            .socket()
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match self.stream.read(&mut buf) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                true
            }
        }
    }

    /// A whole frame off the front of what was received, if there is one.
    fn take_frame(&mut self) -> Option<Got> {
        if self.pending.starts_with(b"\r\n") {
            self.pending.drain(..2);
            return Some(Got::Pong);
        }
        let head = self.pending.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let text = String::from_utf8_lossy(&self.pending[..head]).into_owned();
        let body = content_length(&text);
        if self.pending.len() < head + body {
            return None;
        }
        let msg: Vec<u8> = self.pending.drain(..head + body).collect();
        Some(Got::Message(String::from_utf8_lossy(&msg).into_owned()))
    }
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            let name = name.trim();
            (name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l"))
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0)
}
