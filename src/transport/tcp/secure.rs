//! The TLS side of a stream transport: each accepted connection waits for a place at the
//! shard's handshake gate, shakes hands under a deadline, and then runs like any TCP
//! connection; each connection we open verifies the server before its queue is written.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use futures_rustls::{TlsAcceptor, TlsConnector};
use glommio::net::TcpStream;
use rustls::ServerConfig;

use super::conn::{CloseReason, Conn};
use super::gather::Gathered;
use super::{start, StreamHost};
use crate::counters::TlsCounters;
use crate::sip::Transport;
use crate::transport::tls::handshake::{self, Gate};
use crate::transport::tls::TlsContext;

/// One shard's TLS state.
pub struct TlsSide {
    /// `None` without `--tls-cert` (then there is no TLS listener either); replaced on SIGHUP.
    acceptor: RefCell<Option<TlsAcceptor>>,
    connector: TlsConnector,
    ctx: TlsContext,
    gate: Gate,
    pub counters: RefCell<TlsCounters>,
}

impl TlsSide {
    pub fn new(ctx: TlsContext) -> TlsSide {
        TlsSide {
            acceptor: RefCell::new(ctx.server.clone().map(TlsAcceptor::from)),
            connector: TlsConnector::from(Arc::clone(&ctx.client)),
            gate: Gate::new(ctx.gate),
            ctx,
            counters: RefCell::new(TlsCounters::default()),
        }
    }

    /// New certificates (SIGHUP): connections accepted from now on use them, open ones keep
    /// the session they have.
    pub fn reload(&self, server: Arc<ServerConfig>) {
        *self.acceptor.borrow_mut() = Some(TlsAcceptor::from(server));
    }
}

fn tls<H: StreamHost>(host: &H) -> (&super::Tcp, &TlsSide) {
    let t = host.stream(Transport::Tls);
    (t, t.tls.as_ref().expect("the TLS transport has a TLS side"))
}

/// Shake hands on an accepted connection (in a task of its own), then serve it.
pub fn accept<H: StreamHost>(host: &Rc<H>, conn: Rc<Conn>, stream: TcpStream) {
    let (tcp, side) = tls(&**host);
    let acceptor = side.acceptor.borrow().clone();
    let (Some(acceptor), Some(place)) = (acceptor, side.gate.enter()) else {
        side.counters.borrow_mut().shed += 1;
        tcp.close(&conn, CloseReason::Handshake);
        return;
    };
    let deadline = Instant::now() + side.gate.timeout();
    let (h, c) = (Rc::clone(host), Rc::clone(&conn));
    let task = glommio::spawn_local(async move {
        let slot = place.slot().await;
        let left = deadline.saturating_duration_since(Instant::now());
        let done = match slot {
            Some(_) => handshake::accept(&acceptor, Gathered(stream), left).await,
            None => Err(handshake::Failure::Failed),
        };
        let (tcp, side) = tls(&*h);
        match done {
            Ok(s) => {
                let session = s.get_ref().1;
                handshake::count_done(session.handshake_kind(), &mut side.counters.borrow_mut());
                let cert = session.peer_certificates().and_then(|c| c.first());
                let trusted = cert.is_some_and(|c| side.ctx.trust.trusts(c));
                tcp.announce(&c);
                start(&h, Transport::Tls, c, s, trusted);
            }
            Err(f) => {
                log::debug!("tls {}: handshake: {f:?}", c.peer);
                f.count(&mut side.counters.borrow_mut());
                tcp.close(&c, CloseReason::Handshake);
            }
        }
    })
    .detach();
    conn.adopt_task(task);
}

/// Shake hands on a connection we opened, verifying the server's name; a server that fails
/// verification is a failed next hop, never a plaintext one.
pub async fn connect<H: StreamHost>(host: &Rc<H>, conn: Rc<Conn>, stream: TcpStream) {
    let (_, side) = tls(&**host);
    let name = side.ctx.server_name(conn.peer);
    let (connector, limit) = (side.connector.clone(), side.gate.timeout());
    match handshake::connect(&connector, name.clone(), Gathered(stream), limit).await {
        Ok(s) => {
            let (_, side) = tls(&**host);
            handshake::count_done(
                s.get_ref().1.handshake_kind(),
                &mut side.counters.borrow_mut(),
            );
            start(host, Transport::Tls, conn, s, false);
        }
        Err(f) => {
            let (tcp, side) = tls(&**host);
            log::warn!(
                "tls: next hop {} ({}): handshake failed: {f:?}; what was queued for it is dropped",
                conn.peer,
                name.to_str()
            );
            f.count(&mut side.counters.borrow_mut());
            tcp.close(&conn, CloseReason::ConnectFailed);
        }
    }
}
