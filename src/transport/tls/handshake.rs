//! TLS handshakes, each under a deadline, and the gate that keeps a storm of them (every phone
//! reconnecting after an outage) from starving the shard's forwarding.
//!
//! A handshake costs a signature and a key exchange, tens of microseconds of CPU, while
//! forwarding a message costs a few. The gate lets at most `--tls-handshakes` handshakes be in
//! progress on a shard; each of them does at most one flight of work per turn of the executor
//! (it then waits for the peer), so a turn spends a bounded time on handshakes whatever comes
//! in. Connections beyond that wait in line, up to `--tls-handshake-backlog`; beyond the line,
//! new connections are shed (closed at once, counted) rather than queued without bound.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_lite::FutureExt;
use futures_rustls::{client, server, TlsAcceptor, TlsConnector};
use glommio::sync::{Semaphore, StaticPermit};
use rustls::HandshakeKind;
use rustls_pki_types::ServerName;

use crate::counters::TlsCounters;

/// The gate's bounds (the same on every shard).
#[derive(Clone, Copy, Debug)]
pub struct GateLimits {
    pub in_progress: usize,
    pub backlog: usize,
    /// A handshake not done by then fails (a stalled handshake is a slowloris).
    pub timeout: Duration,
}

/// One shard's gate.
pub struct Gate {
    limits: GateLimits,
    slots: Rc<Semaphore>,
    waiting: Rc<Cell<usize>>,
}

/// A connection's place in line for a handshake slot.
pub struct Place {
    slots: Rc<Semaphore>,
    waiting: Rc<Cell<usize>>,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.waiting.set(self.waiting.get() - 1);
    }
}

impl Place {
    /// Wait for a slot; the place in line is given up once the slot is held.
    pub async fn slot(self) -> Option<StaticPermit> {
        self.slots.acquire_static_permit(1).await.ok()
    }
}

impl Gate {
    pub fn new(limits: GateLimits) -> Gate {
        Gate {
            limits,
            slots: Rc::new(Semaphore::new(limits.in_progress as u64)),
            waiting: Rc::new(Cell::new(0)),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.limits.timeout
    }

    /// A place in line, or `None` when the line is full (the connection is shed).
    pub fn enter(&self) -> Option<Place> {
        let busy = self.slots.available() == 0;
        if busy && self.waiting.get() >= self.limits.backlog {
            return None;
        }
        self.waiting.set(self.waiting.get() + 1);
        Some(Place {
            slots: Rc::clone(&self.slots),
            waiting: Rc::clone(&self.waiting),
        })
    }
}

/// How a handshake failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Not done within the deadline.
    Timeout,
    /// The peer's certificate was refused (unknown issuer, wrong name, expired, missing where
    /// required).
    BadCertificate,
    /// Anything else: not TLS at all, a protocol error, the peer went away.
    Failed,
}

impl Failure {
    fn of(e: &io::Error) -> Failure {
        let tls = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
        match tls {
            Some(
                rustls::Error::InvalidCertificate(_)
                | rustls::Error::NoCertificatesPresented
                | rustls::Error::InvalidCertRevocationList(_),
            ) => Failure::BadCertificate,
            _ => Failure::Failed,
        }
    }

    pub fn count(self, c: &mut TlsCounters) {
        match self {
            Failure::Timeout => c.timed_out += 1,
            Failure::BadCertificate => c.bad_certificate += 1,
            Failure::Failed => c.failed += 1,
        }
    }
}

/// `fut`, or `Timeout` once `limit` has passed.
async fn within<T>(
    limit: Duration,
    fut: impl Future<Output = io::Result<T>>,
) -> Result<T, Failure> {
    let work = async { fut.await.map_err(|e| Failure::of(&e)) };
    let timer = async {
        glommio::timer::sleep(limit).await;
        Err(Failure::Timeout)
    };
    work.or(timer).await
}

/// The server side of a handshake on an accepted connection.
pub async fn accept<IO>(
    acceptor: &TlsAcceptor,
    io: IO,
    limit: Duration,
) -> Result<server::TlsStream<IO>, Failure>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    within(limit, acceptor.accept(io)).await
}

/// The client side, verifying that the server is `name`.
pub async fn connect<IO>(
    connector: &TlsConnector,
    name: ServerName<'static>,
    io: IO,
    limit: Duration,
) -> Result<client::TlsStream<IO>, Failure>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    within(limit, connector.connect(name, io)).await
}

/// Count a handshake that succeeded, full or resumed.
pub fn count_done(kind: Option<HandshakeKind>, c: &mut TlsCounters) {
    match kind {
        Some(HandshakeKind::Resumed) => c.resumed += 1,
        _ => c.full += 1,
    }
}
