//! The operators' API (`--admin ADDR`): who is registered, removing a registration without
//! the user's password, counters per shard, reloading, health and readiness, as HTTP/1.1 with
//! JSON. `sipshard ctl` ([`crate::ctl`]) is its command-line client.
//!
//! It runs in a thread of its own, off every shard's core: hyper on a current-thread tokio
//! runtime. It is a peer of the replication mesh ([`peer`]): it keeps its own copy of the
//! location table, fed by every shard's changes, so a listing of a million AORs reads no
//! shard's memory and holds up no packet; and a removal is a set of tombstones it sends into
//! the mesh, applied by every shard and the persister like a REGISTER's changes (and so kept
//! after a restart with `--state-dir`).
//!
//! Without `--admin-token-file` only a loopback address may be served: anyone who can reach
//! the API can remove registrations (checked at start-up, in [`crate::config`]).

pub mod aor;
pub mod http;
pub mod json;
pub mod peer;
pub mod routes;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::identity::LocalIdentity;
use crate::location::Now;
use crate::metrics::{ClusterStats, Published};

/// `--admin` and `--admin-token-file`, read and checked.
#[derive(Clone, Debug)]
pub struct AdminSettings {
    pub addr: SocketAddr,
    /// Requests to `/v1/...` must carry `Authorization: Bearer TOKEN` when set.
    pub token: Option<String>,
}

/// Reloads the users file and the TLS certificate (what SIGHUP does); says what it reloaded.
pub type ReloadFn = Box<dyn Fn() -> Result<String, String> + Send>;

/// What the API reads and acts on besides the table: handed over by the runtime.
pub struct Context {
    /// Our domains and addresses: an AOR's key depends on them (see [`aor::key`]).
    pub identity: &'static LocalIdentity,
    pub published: Vec<Arc<Published>>,
    pub reload: ReloadFn,
    pub node: NodeState,
    /// The wall clock (the runtime's).
    pub clock: fn() -> Now,
}

/// Whether the node serves: shards that have started, of how many, and the stop flag.
#[derive(Clone)]
pub struct NodeState {
    pub shards: usize,
    /// Incremented by each shard once it serves, decremented when it stops.
    pub serving: Arc<AtomicUsize>,
    /// Set by SIGINT/SIGTERM.
    pub stop: Arc<AtomicBool>,
    /// The cluster peer's figures (`--redis`): the node is ready only once it has loaded the
    /// cluster's state.
    pub cluster: Option<Arc<ClusterStats>>,
}

impl NodeState {
    pub fn serving(&self) -> usize {
        self.serving.load(Ordering::Relaxed)
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Every shard serves, the cluster's state is loaded (with `--redis`) and the node is not
    /// stopping: send traffic here.
    pub fn ready(&self) -> bool {
        !self.stopping() && self.serving() == self.shards && self.cluster_loaded()
    }

    /// Without `--redis`, always.
    pub fn cluster_loaded(&self) -> bool {
        self.cluster.as_ref().map_or(true, |c| c.is_ready())
    }
}
