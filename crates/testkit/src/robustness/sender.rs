//! The sender's side of a robustness run: one UDP socket, or one TCP connection reopened
//! whenever the proxy closes it (a framing-breaking case may make it do so; that is allowed).

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::tcp_ua::{Got, TcpUa};

pub enum Sender {
    Udp(UdpSocket),
    Tcp { target: SocketAddr, ua: TcpUa },
}

/// What came back to the sender before the deadline.
pub enum Heard {
    Message(Vec<u8>),
    /// Nothing more arrived within the time given.
    Silence,
    /// The proxy closed the connection (TCP only).
    Closed,
}

impl Sender {
    pub fn udp() -> Sender {
        Sender::Udp(UdpSocket::bind("127.0.0.1:0").expect("bind the sender's UDP socket"))
    }

    pub fn tcp(target: SocketAddr) -> Sender {
        Sender::Tcp {
            target,
            ua: connect(target),
        }
    }

    pub fn is_stream(&self) -> bool {
        matches!(self, Sender::Tcp { .. })
    }

    /// `UDP` or `TCP`, as a Via names it.
    pub fn transport(&self) -> &'static str {
        if self.is_stream() {
            "TCP"
        } else {
            "UDP"
        }
    }

    /// Our address, for the Via and Contact of what we send.
    pub fn addr(&self) -> SocketAddr {
        match self {
            Sender::Udp(s) => s.local_addr().unwrap(),
            Sender::Tcp { ua, .. } => ua.addr,
        }
    }

    /// A fresh connection (TCP), dropping the old one and anything unread on it.
    pub fn reconnect(&mut self) {
        if let Sender::Tcp { target, ua } = self {
            *ua = connect(*target);
        }
    }

    /// Send one message; `false` when it could not be sent (too large for a datagram, or a
    /// connection the proxy had closed).
    pub fn send(&mut self, to: SocketAddr, bytes: &[u8]) -> bool {
        match self {
            Sender::Udp(s) => s.send_to(bytes, to).is_ok(),
            Sender::Tcp { ua, .. } => ua
                .stream
                .write_all(bytes)
                .and_then(|_| ua.stream.flush())
                .is_ok(),
        }
    }

    /// The next message before `deadline`.
    pub fn recv(&mut self, deadline: Instant) -> Heard {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        match self {
            Sender::Udp(s) => {
                s.set_read_timeout(Some(left)).unwrap();
                let mut buf = vec![0u8; 65_535];
                match s.recv(&mut buf) {
                    Ok(n) => Heard::Message(buf[..n].to_vec()),
                    Err(_) => Heard::Silence,
                }
            }
            Sender::Tcp { ua, .. } => loop {
                match ua.recv_within(deadline.saturating_duration_since(Instant::now())) {
                    Some(Got::Message(m)) => return Heard::Message(m.into_bytes()),
                    Some(Got::Pong) => continue,
                    None if Instant::now() < deadline => return Heard::Closed,
                    None => return Heard::Silence,
                }
            },
        }
    }
}

/// A connection without Nagle's delay: a case and its markers go out as they are written.
fn connect(target: SocketAddr) -> TcpUa {
    let ua = TcpUa::connect(target);
    ua.stream.socket().set_nodelay(true).expect("TCP_NODELAY");
    ua
}
