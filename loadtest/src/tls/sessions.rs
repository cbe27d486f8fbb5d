//! The run's TLS session cache. rustls's own in-memory cache keeps at most 8 TLS 1.3 tickets
//! per server; a worker that finishes more than 8 handshakes in one turn of its loop (many
//! connections at once in `--tls-handshakes-only`) opens the next ones before new tickets
//! come in, and those find none: they would be full handshakes because of the cache, not the
//! server. This one keeps many tickets per server and leaves the rest (TLS 1.2 sessions, the
//! key-exchange hint) to rustls's cache.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue,
};
use rustls::NamedGroup;
use rustls_pki_types::ServerName;

/// Tickets kept per server: more than the connections a run has in progress at once (each
/// handshake brings the server's tickets, usually two); the oldest go first.
const TICKETS_PER_SERVER: usize = 4096;
/// Servers remembered by rustls's cache (a run talks to one).
const SERVERS: usize = 16;

#[derive(Debug)]
pub struct Sessions {
    others: ClientSessionMemoryCache,
    tickets: Mutex<HashMap<ServerName<'static>, VecDeque<Tls13ClientSessionValue>>>,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            others: ClientSessionMemoryCache::new(SERVERS),
            tickets: Mutex::default(),
        }
    }
}

impl ClientSessionStore for Sessions {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.others.set_kx_hint(server_name, group);
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.others.kx_hint(server_name)
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.others.set_tls12_session(server_name, value);
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.others.tls12_session(server_name)
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.others.remove_tls12_session(server_name);
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        let mut all = self.tickets.lock().unwrap();
        let tickets = all.entry(server_name).or_default();
        if tickets.len() == TICKETS_PER_SERVER {
            tickets.pop_front();
        }
        tickets.push_back(value);
    }

    /// The newest ticket (each is handed out once, as TLS 1.3 asks: RFC 8446 appendix C.4).
    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        self.tickets
            .lock()
            .unwrap()
            .get_mut(server_name)?
            .pop_back()
    }
}
