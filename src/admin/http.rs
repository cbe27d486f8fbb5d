//! The admin API's HTTP/1.1 server: hyper on a current-thread tokio runtime with a `LocalSet`,
//! in a thread of its own. Its tasks share the [`Peer`] through `Rc` and `RefCell`: one
//! thread, no lock. One task keeps the peer's table current (every [`SYNC_EVERY`]) and lets
//! the rings go when the node stops; the others answer requests ([`super::routes`]).

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::TcpListener;
use std::rc::Rc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};

use super::peer::{Peer, FLUSH_TRIES};
use super::routes::{self, Body};
use super::{AdminSettings, Context};
use crate::location::LocationTable;
use crate::replication::Links;

/// How often the admin's copy of the table takes in the shards' changes (reads take them in
/// first too, so this only bounds the backlog in the rings).
const SYNC_EVERY: Duration = Duration::from_millis(10);
/// Expired bindings leave the admin's copy this often.
const PURGE_EVERY: Duration = Duration::from_secs(5);
/// A client gets this long to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// And this long for a whole exchange: a listing of millions of bindings takes seconds.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(600);

/// Everything the request tasks share.
pub struct State {
    pub ctx: Context,
    pub token: Option<String>,
    pub peer: RefCell<Peer>,
}

/// Serve the API on `settings.addr` from a thread of its own. Binds before returning, so a bad
/// or busy address fails start-up; returns the bound address.
pub fn serve(
    settings: &AdminSettings,
    ctx: Context,
    seed: LocationTable,
    links: Links,
) -> std::io::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind(settings.addr)?;
    let bound = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let token = settings.token.clone();
    std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
            {
                Ok(r) => r,
                Err(e) => return log::error!("admin: cannot start its runtime: {e}"),
            };
            let state = Rc::new(State {
                ctx,
                token,
                peer: RefCell::new(Peer::new(seed, links)),
            });
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, run(listener, state));
        })?;
    Ok(bound)
}

async fn run(listener: TcpListener, state: Rc<State>) {
    tokio::task::spawn_local(keep_in_sync(Rc::clone(&state)));
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return log::error!("admin: {e}"),
    };
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, or a connection reset before accept: keep serving.
                log::debug!("admin: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::task::spawn_local(connection(stream, Rc::clone(&state)));
    }
}

async fn connection(stream: tokio::net::TcpStream, state: Rc<State>) {
    let service = service_fn(move |req| answer(req, Rc::clone(&state)));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::debug!("admin: {e}"),
        Err(_) => log::debug!("admin: connection timed out"),
    }
}

async fn answer(req: Request<Incoming>, state: Rc<State>) -> Result<Response<Body>, Infallible> {
    Ok(routes::route(&req, &state))
}

/// Take in the shards' changes until the node stops; then hand over the last removals and
/// let the rings go, so that the persister can finish.
async fn keep_in_sync(state: Rc<State>) {
    let mut since_purge = Duration::ZERO;
    while !state.ctx.node.stopping() {
        tokio::time::sleep(SYNC_EVERY).await;
        let mut peer = state.peer.borrow_mut();
        peer.take_in();
        since_purge += SYNC_EVERY;
        if since_purge >= PURGE_EVERY {
            peer.purge((state.ctx.clock)());
            since_purge = Duration::ZERO;
        }
    }
    for _ in 0..FLUSH_TRIES {
        state.peer.borrow_mut().take_in();
        if !state.peer.borrow().backlogged() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    state.peer.borrow_mut().leave();
}
