//! Digest authentication's start-up, and SIGHUP: the users file and the TLS certificate.
//!
//! The [`Authenticator`] is built once and each shard gets a clone (the user database behind an
//! `Arc`, read-only) and its own replay tracker. SIGHUP is handled by a thread of the main
//! process: it reads the users file once, and sends the new `Arc<UserDb>` to every shard over a
//! channel that each shard drains on its housekeeping tick, off the packet path. A file that
//! fails to load is logged and the shards keep the users they have. The TLS certificate and
//! key are reloaded the same way: new connections get the new certificate, open ones stay up.

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;

use super::clock::now;
use super::settings::AuthSettings;
use crate::auth::{random_secret, AuthConfig, AuthMode, Authenticator, LoadError, UserDb};
use crate::transport::tls::{load, TlsSettings};

/// What SIGHUP hands each shard.
pub enum Reload {
    Users(Arc<UserDb>),
    TlsServer(Arc<rustls::ServerConfig>),
}

/// The users and aliases files, with HA1s precomputed for the realm (once, not per request).
fn load_users(users: &Path, aliases: Option<&Path>, realm: &str) -> Result<UserDb, LoadError> {
    UserDb::load(users, aliases).map(|db| db.for_realm(realm.as_bytes()))
}

/// The authenticator every shard clones; `None` without `--users`.
pub fn build_authenticator(
    auth: Option<&AuthSettings>,
) -> Result<Option<(Authenticator, AuthMode)>, String> {
    let Some(a) = auth else {
        return Ok(None);
    };
    let users = load_users(&a.users, a.aliases.as_deref(), &a.realm).map_err(|e| e.to_string())?;
    let secret = match &a.secret {
        Some(s) => s.clone(),
        None => random_secret()
            .map_err(|e| format!("cannot draw a random --auth-secret: {e}"))?
            .to_vec(),
    };
    let mut config = AuthConfig::new(a.realm.as_str(), secret);
    config.nonce_ttl = a.nonce_ttl;
    config.bind_ip = a.nonce_bind_ip;
    let users_len = users.len();
    let authn = Authenticator::new(config, Arc::new(users)).map_err(|e| format!("--realm: {e}"))?;
    log::info!(
        "digest authentication ({:?}) in realm {:?}: {users_len} user(s) from {}, nonce \
         lifetime {} s{}{}",
        a.mode,
        a.realm,
        a.users.display(),
        a.nonce_ttl,
        if a.nonce_bind_ip {
            ", bound to the client address"
        } else {
            ""
        },
        if a.secret.is_none() {
            ", per-start random secret"
        } else {
            ""
        },
    );
    Ok(Some((authn, a.mode)))
}

/// A random start for a shard's nonce salt sequence (the clock if the OS has no randomness).
pub fn salt_seed() -> u64 {
    match random_secret() {
        Ok(r) => u64::from_le_bytes(r[..8].try_into().expect("8 bytes")),
        Err(_) => now().unix_ms ^ u64::from(std::process::id()) << 40,
    }
}

/// The SIGHUP handler thread: reloads the users file and hands the result to every shard.
pub struct Reloader {
    handle: signal_hook::iterator::Handle,
    thread: std::thread::JoinHandle<()>,
}

impl Reloader {
    pub fn start(
        auth: Option<&AuthSettings>,
        tls: &TlsSettings,
        shards: Vec<mpsc::Sender<Reload>>,
    ) -> Result<Reloader, String> {
        let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])
            .map_err(|e| format!("cannot handle SIGHUP: {e}"))?;
        let handle = signals.handle();
        let auth = auth.cloned();
        let tls = tls.clone();
        let thread = std::thread::Builder::new()
            .name("reload".into())
            .spawn(move || {
                for _ in signals.forever() {
                    if let Some(a) = &auth {
                        reload(a, &shards);
                    }
                    if tls.cert.is_some() {
                        reload_tls(&tls, &shards);
                    }
                    if auth.is_none() && tls.cert.is_none() {
                        log::warn!("SIGHUP: nothing to reload (no --users, no --tls-cert)");
                    }
                }
            })
            .map_err(|e| format!("cannot start the reload thread: {e}"))?;
        Ok(Reloader { handle, thread })
    }

    pub fn stop(self) {
        self.handle.close();
        let _ = self.thread.join();
    }
}

fn reload(a: &AuthSettings, shards: &[mpsc::Sender<Reload>]) {
    match load_users(&a.users, a.aliases.as_deref(), &a.realm) {
        Ok(db) => {
            let db = Arc::new(db);
            for tx in shards {
                let _ = tx.send(Reload::Users(Arc::clone(&db)));
            }
            log::info!(
                "SIGHUP: reloaded {} user(s) from {}",
                db.len(),
                a.users.display()
            );
        }
        Err(e) => log::error!("SIGHUP: {e}; keeping the previous users"),
    }
}

fn reload_tls(tls: &TlsSettings, shards: &[mpsc::Sender<Reload>]) {
    match load::server_config(tls) {
        Ok(Some(server)) => {
            for tx in shards {
                let _ = tx.send(Reload::TlsServer(Arc::clone(&server)));
            }
            log::info!(
                "SIGHUP: reloaded the TLS certificate from {}",
                tls.cert.as_deref().unwrap_or(Path::new("")).display()
            );
        }
        Ok(None) => {}
        Err(e) => log::error!("SIGHUP: {e}; keeping the previous TLS certificate"),
    }
}
