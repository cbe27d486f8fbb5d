//! rustls over the engine's own sockets: a `ClientConnection` is only a state machine, fed
//! with what the socket delivers (`read_tls`, `process_new_packets`) and drained into it
//! (`write_tls`), so the event loop, its epoll wait and its non-blocking sockets stay as they
//! are over TLS. Here are the pieces both users share: the persistent SIP connections
//! (`stream.rs`, opened by [`open`] before the run) and `--tls-handshakes-only`
//! (`handshakes.rs`).
//!
//! A handshake counts once the server has answered over it: the client sends a CRLF
//! keep-alive ping (RFC 5626 section 4.4.1) right behind its Finished and waits for the pong.
//! In TLS 1.3 the client is done before the server has checked its Finished (or its
//! certificate), and the server's session tickets follow its Finished; after the pong both
//! are known, so the next connection finds a ticket to resume with.

use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rustls::{ClientConnection, HandshakeKind};
use sipshard::sip::{PING, PONG};

use crate::tls::Tls;

/// One finished handshake: resumed or full, and how long it took from the TCP connect to the
/// pong.
#[derive(Clone, Copy, Debug)]
pub struct Handshake {
    pub resumed: bool,
    pub ns: u64,
}

/// A new client session for the target.
pub fn session(tls: &Tls) -> io::Result<ClientConnection> {
    ClientConnection::new(tls.client.clone(), tls.server_name.clone()).map_err(io::Error::other)
}

/// Resumed (TLS 1.3 ticket or TLS 1.2 session id), or a full handshake (with or without a
/// HelloRetryRequest).
pub fn resumed(conn: &ClientConnection) -> bool {
    conn.handshake_kind() == Some(HandshakeKind::Resumed)
}

/// Write what the session has queued. Ok(true) once it is all written, Ok(false) when the
/// socket takes no more now.
pub fn push(conn: &mut ClientConnection, tcp: &mut TcpStream) -> io::Result<bool> {
    while conn.wants_write() {
        match conn.write_tls(tcp) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// What one read from the socket brought.
#[derive(Debug, PartialEq, Eq)]
pub enum Pulled {
    /// Records were read and processed (plaintext may be waiting in `conn.reader()`).
    Some,
    /// Nothing there now.
    Nothing,
    /// The peer closed the connection.
    Closed,
}

/// Read once from the socket into the session and process the records. A TLS error (a bad
/// certificate, an alert from the server) comes back as `InvalidData` wrapping the
/// `rustls::Error`, after the alert we owe the server was sent.
pub fn pull(conn: &mut ClientConnection, tcp: &mut TcpStream) -> io::Result<Pulled> {
    match conn.read_tls(tcp) {
        Ok(0) => Ok(Pulled::Closed),
        Ok(_) => match conn.process_new_packets() {
            Ok(_) => Ok(Pulled::Some),
            Err(e) => {
                let _ = push(conn, tcp);
                Err(io::Error::new(ErrorKind::InvalidData, e))
            }
        },
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
            Ok(Pulled::Nothing)
        }
        Err(e) => Err(e),
    }
}

/// Is this error the target's certificate being refused? That is a setting to fix (wrong
/// `--tls-ca` or `--tls-server-name`), not a load result: the run stops with it.
pub fn is_certificate_error(e: &io::Error) -> bool {
    let tls = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    matches!(
        tls,
        Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)
    )
}

/// Send the ping behind the handshake (see the module comment).
pub fn ping(conn: &mut ClientConnection) -> io::Result<()> {
    conn.writer().write_all(PING)
}

/// Has the pong arrived? Reads the plaintext received so far into `got` (a pong is two bytes;
/// nothing else is expected before it). An error when the server sent something else.
pub fn ponged(conn: &mut ClientConnection, got: &mut Vec<u8>) -> io::Result<bool> {
    let mut buf = [0u8; 64];
    loop {
        match conn.reader().read(&mut buf) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    if got.len() < PONG.len() {
        return Ok(false);
    }
    if got.as_slice() != PONG {
        return Err(io::Error::other(format!(
            "the answer to a keep-alive ping was {:?}, not a pong (RFC 5626 section 4.4.1)",
            String::from_utf8_lossy(got)
        )));
    }
    Ok(true)
}

/// The handshake on a freshly connected, still blocking socket, then the ping and its pong, all
/// within `limit` of `started` (when the TCP connect began). Before the run, one connection at
/// a time, like the TCP connect itself.
pub fn open(
    tcp: &mut TcpStream,
    tls: &Tls,
    started: Instant,
    limit: Duration,
) -> io::Result<(ClientConnection, Handshake)> {
    open_within(tcp, tls, started, limit).map_err(|e| match e.kind() {
        // A blocking read or write whose timeout ran out.
        ErrorKind::WouldBlock | ErrorKind::TimedOut => io::Error::new(
            ErrorKind::TimedOut,
            format!("no answer within {} ms", limit.as_millis()),
        ),
        _ => e,
    })
}

fn open_within(
    tcp: &mut TcpStream,
    tls: &Tls,
    started: Instant,
    limit: Duration,
) -> io::Result<(ClientConnection, Handshake)> {
    let deadline = started + limit;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| io::Error::new(ErrorKind::TimedOut, "no answer in time"))
    };
    let mut conn = session(tls)?;
    while conn.is_handshaking() {
        tcp.set_read_timeout(Some(left()?))?;
        tcp.set_write_timeout(Some(left()?))?;
        conn.complete_io(tcp)?;
    }
    ping(&mut conn)?;
    let mut got = Vec::new();
    loop {
        tcp.set_write_timeout(Some(left()?))?;
        push(&mut conn, tcp)?;
        if ponged(&mut conn, &mut got)? {
            break;
        }
        tcp.set_read_timeout(Some(left()?))?;
        match pull(&mut conn, tcp)? {
            Pulled::Closed => return Err(ErrorKind::UnexpectedEof.into()),
            // A blocking read that returns nothing timed out.
            Pulled::Nothing => left().map(drop)?,
            Pulled::Some => {}
        }
    }
    tcp.set_read_timeout(None)?;
    tcp.set_write_timeout(None)?;
    let handshake = Handshake {
        resumed: resumed(&conn),
        ns: started.elapsed().as_nanos() as u64,
    };
    Ok((conn, handshake))
}
