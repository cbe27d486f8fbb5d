//! Probing a next hop reached over TCP or TLS: a fresh connection per probe (over TLS verified
//! exactly as the shards verify the hop, against `--tls-ca` and the route's host name), one
//! OPTIONS, and any response in time is an answer. A hop whose certificate fails verification
//! never answers, so it is marked down like a silent one and a `tls:` route fails over to its
//! next hop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ClientConnection, StreamOwned};

use crate::sip::Transport;
use crate::transport::tls::TlsContext;

/// Most bytes read while waiting for the status line.
const MAX_ANSWER: usize = 8 * 1024;

/// Whether `hop` answers `probe` over `transport` within `limit`.
pub fn answers(
    tls: &TlsContext,
    transport: Transport,
    hop: SocketAddr,
    probe: &[u8],
    limit: Duration,
) -> bool {
    let deadline = Instant::now() + limit;
    let Ok(tcp) = TcpStream::connect_timeout(&hop, limit) else {
        return false;
    };
    let _ = tcp.set_nodelay(true);
    match transport {
        Transport::Tls => {
            let name = tls.server_name(hop);
            let Ok(conn) = ClientConnection::new(Arc::clone(&tls.client), name) else {
                return false;
            };
            exchange(StreamOwned::new(conn, tcp), probe, deadline)
        }
        _ => exchange(tcp, probe, deadline),
    }
}

/// A stream whose socket can be given a read deadline.
trait Timed: Read + Write {
    fn socket(&self) -> &TcpStream;
}

impl Timed for TcpStream {
    fn socket(&self) -> &TcpStream {
        self
    }
}

impl Timed for StreamOwned<ClientConnection, TcpStream> {
    fn socket(&self) -> &TcpStream {
        &self.sock
    }
}

/// Send `probe` and wait until `deadline` for a status line.
fn exchange(mut s: impl Timed, probe: &[u8], deadline: Instant) -> bool {
    let left = || deadline.saturating_duration_since(Instant::now());
    if s.socket()
        .set_write_timeout(Some(left().max(Duration::from_millis(1))))
        .is_err()
        || s.write_all(probe).and_then(|_| s.flush()).is_err()
    {
        return false;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while got.len() < MAX_ANSWER && !left().is_zero() {
        if s.socket()
            .set_read_timeout(Some(left().max(Duration::from_millis(1))))
            .is_err()
        {
            return false;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        // CRLF keep-alives may come first.
        let mut text = &got[..];
        while let Some(rest) = text.strip_prefix(b"\r\n") {
            text = rest;
        }
        if text.len() >= 8 {
            return text.starts_with(b"SIP/2.0 ");
        }
    }
    false
}
