//! A user agent over TCP played by the test itself: one connection to a proxy, messages framed
//! by Content-Length on the way in, exactly what the test writes on the way out.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::sip::wire;

/// One TCP connection and the bytes received on it not yet handed out.
pub struct TcpUa {
    pub stream: TcpStream,
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
        let addr = stream.local_addr().unwrap();
        TcpUa {
            stream,
            addr,
            pending: Vec::new(),
        }
    }

    /// A connection accepted by the test (the test plays a UA that listens on TCP).
    pub fn accepted(stream: TcpStream) -> TcpUa {
        let addr = stream.local_addr().unwrap();
        TcpUa {
            stream,
            addr,
            pending: Vec::new(),
        }
    }

    /// Send a message written with `\n` line ends; CRLF and Content-Length are filled in.
    pub fn send(&mut self, msg: &str) {
        self.send_raw(wire(msg).as_bytes());
    }

    /// Send bytes exactly as given.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
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
