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

/// Everything a reload needs: what to read, and every shard's channel. SIGHUP's thread runs
/// one; the admin API's `POST /v1/reload` runs a clone.
#[derive(Clone)]
pub struct ReloadJob {
    auth: Option<AuthSettings>,
    tls: TlsSettings,
    shards: Vec<mpsc::Sender<Reload>>,
}

impl ReloadJob {
    pub fn new(
        auth: Option<&AuthSettings>,
        tls: &TlsSettings,
        shards: Vec<mpsc::Sender<Reload>>,
    ) -> ReloadJob {
        ReloadJob {
            auth: auth.cloned(),
            tls: tls.clone(),
            shards,
        }
    }

    /// Reload the users file and the TLS certificate, whichever are configured, and hand them
    /// to every shard; `cause` prefixes the log lines. Says what was reloaded, or why one of
    /// them failed (the shards then keep what they had of that one).
    pub fn run(&self, cause: &str) -> Result<String, String> {
        let mut done = Vec::new();
        let mut failed = Vec::new();
        if let Some(a) = &self.auth {
            match reload(a, &self.shards) {
                Ok(n) => done.push(format!("{n} user(s)")),
                Err(e) => failed.push(e),
            }
        }
        if self.tls.cert.is_some() {
            match reload_tls(&self.tls, &self.shards) {
                Ok(()) => done.push("the TLS certificate".to_owned()),
                Err(e) => failed.push(e),
            }
        }
        for e in &failed {
            log::error!("{cause}: {e}");
        }
        if !failed.is_empty() {
            return Err(failed.join("; "));
        }
        if done.is_empty() {
            log::warn!("{cause}: nothing to reload (no --users, no --tls-cert)");
            return Ok("nothing (no --users, no --tls-cert)".to_owned());
        }
        let what = done.join(" and ");
        log::info!("{cause}: reloaded {what}");
        Ok(what)
    }
}

/// The SIGHUP handler thread: runs a [`ReloadJob`] per signal.
pub struct Reloader {
    handle: signal_hook::iterator::Handle,
    thread: std::thread::JoinHandle<()>,
}

impl Reloader {
    pub fn start(job: ReloadJob) -> Result<Reloader, String> {
        let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])
            .map_err(|e| format!("cannot handle SIGHUP: {e}"))?;
        let handle = signals.handle();
        let thread = std::thread::Builder::new()
            .name("reload".into())
            .spawn(move || {
                for _ in signals.forever() {
                    let _ = job.run("SIGHUP");
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

/// The users file, to every shard; how many users it holds.
fn reload(a: &AuthSettings, shards: &[mpsc::Sender<Reload>]) -> Result<usize, String> {
    let db = load_users(&a.users, a.aliases.as_deref(), &a.realm)
        .map_err(|e| format!("{e}; keeping the previous users"))?;
    let db = Arc::new(db);
    for tx in shards {
        let _ = tx.send(Reload::Users(Arc::clone(&db)));
    }
    Ok(db.len())
}

/// The TLS certificate and key, to every shard.
fn reload_tls(tls: &TlsSettings, shards: &[mpsc::Sender<Reload>]) -> Result<(), String> {
    match load::server_config(tls) {
        Ok(Some(server)) => {
            for tx in shards {
                let _ = tx.send(Reload::TlsServer(Arc::clone(&server)));
            }
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e) => Err(format!("{e}; keeping the previous TLS certificate")),
    }
}
