//! The follower task of the cluster peer: load the whole state, then follow the other nodes'
//! change streams, handing their changes to every local peer through the rings.
//!
//! The order is what makes it whole: the position of every other node's stream first, then
//! every key, then the streams from those positions. A change written during the load is in the
//! keys read or after a position (the store writes a key and its stream entry in one step), so
//! nothing is missed and no delete is lost; seeing a change twice is harmless. The same load
//! runs again whenever a stream has a gap (trimmed past this node's position while it was cut
//! off, or lost with Redis's data). A node that appears later is followed from its stream's
//! start.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

use super::peer::{Backoff, Peer};
use super::record;
use super::store;
use crate::metrics::ClusterStats;

/// Each other node's stream key and the id of the last entry applied from it.
type Positions = BTreeMap<String, String>;

/// How often the set of nodes is read again, to follow nodes that joined.
const NODES_EVERY: Duration = Duration::from_secs(1);
/// Pieces of keys fetched ahead of the one being applied while loading.
const LOAD_AHEAD: usize = 2;

/// Runs until the node stops: connect (with backoff), load when needed, follow.
pub(super) async fn follow(peer: Rc<RefCell<Peer>>) {
    let settings = peer.borrow().settings.clone();
    let mut positions: Option<Positions> = None;
    let mut backoff = Backoff::default();
    while !peer.borrow().is_stopping() {
        if !backoff.due() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let mut conn = match store::connect(&settings).await {
            Ok(c) => c,
            Err(_) => {
                backoff.failed();
                continue;
            }
        };
        backoff.reset();
        match follow_on(&peer, &mut conn, &mut positions).await {
            Ok(()) => return,
            Err(e) => {
                log::warn!("cluster: following Redis failed: {e}; reconnecting");
                peer.borrow_mut().primary_suspect = true;
                backoff.failed();
            }
        }
    }
}

/// Load when there are no positions yet or a stream has a gap, then follow. Returns when the
/// node stops.
async fn follow_on(
    peer: &Rc<RefCell<Peer>>,
    conn: &mut MultiplexedConnection,
    positions: &mut Option<Positions>,
) -> redis::RedisResult<()> {
    let gap = match positions.as_ref() {
        Some(p) => any_gap(conn, p).await?,
        None => true,
    };
    if gap {
        if positions.is_some() {
            ClusterStats::add(&peer.borrow().stats.resyncs, 1);
            log::info!("cluster: a change stream has a gap here; loading the whole state again");
        }
        *positions = Some(load(peer, conn).await?);
    }
    let positions = positions.as_mut().expect("loaded");
    let (prefix, me) = {
        let p = peer.borrow();
        (p.settings.prefix.clone(), p.settings.node_id.clone())
    };
    let mut nodes_read = Instant::now();
    while !peer.borrow().is_stopping() {
        if std::mem::take(&mut peer.borrow_mut().follower_suspect) {
            return Err((redis::ErrorKind::IoError, "the primary changed").into());
        }
        if nodes_read.elapsed() >= NODES_EVERY {
            nodes_read = Instant::now();
            for node in store::other_nodes(conn, &prefix, &me).await? {
                // A node that joined since: its whole stream is news.
                positions
                    .entry(record::stream_key(&prefix, &node))
                    .or_insert_with(|| "0-0".into());
            }
        }
        if positions.is_empty() {
            tokio::time::sleep(NODES_EVERY).await;
            continue;
        }
        let entries = store::follow(conn, positions).await?;
        let mut p = peer.borrow_mut();
        for (stream, id, value) in entries {
            if let Some(stored) = record::decode(&value) {
                p.apply(&stored, false);
            }
            positions.insert(stream, id);
        }
    }
    Ok(())
}

/// Whether any stream followed has a gap after its position.
async fn any_gap(
    conn: &mut MultiplexedConnection,
    positions: &Positions,
) -> redis::RedisResult<bool> {
    for (stream, id) in positions {
        if store::stream_has_gap(conn, stream, id).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Load every binding in Redis into the local peers; returns the positions to follow from
/// (read first). Keys are fetched a few pieces ahead of the piece being applied, so the
/// round trips to Redis overlap the work of applying.
async fn load(
    peer: &Rc<RefCell<Peer>>,
    conn: &mut MultiplexedConnection,
) -> redis::RedisResult<Positions> {
    let started = Instant::now();
    let (prefix, me) = {
        let p = peer.borrow();
        (p.settings.prefix.clone(), p.settings.node_id.clone())
    };
    let mut positions = Positions::new();
    for node in store::other_nodes(conn, &prefix, &me).await? {
        let stream = record::stream_key(&prefix, &node);
        let end = store::stream_end(conn, &stream).await?;
        positions.insert(stream, end);
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel(LOAD_AHEAD);
    let fetch = tokio::task::spawn_local({
        let mut conn = conn.clone();
        async move {
            store::scan_all(&mut conn, &prefix, |values| {
                let tx = tx.clone();
                async move { tx.send(values).await.is_ok() }
            })
            .await
        }
    });
    let mut loaded = 0usize;
    while let Some(values) = rx.recv().await {
        let mut p = peer.borrow_mut();
        for value in &values {
            if let Some(stored) = record::decode(value) {
                p.apply(&stored, true);
                loaded += 1;
            }
        }
    }
    fetch.await.map_err(|e| {
        redis::RedisError::from((redis::ErrorKind::IoError, "load", e.to_string()))
    })??;
    // Ready once every local peer has taken every loaded change: the shards hold the whole
    // state (and say so in their gauges). A shard applies its rings before it decides
    // anything, so being in the rings would do for routing; but a node that reports ready
    // with a ring still full is one that answers its first requests late.
    while !peer.borrow().delivered() && !peer.borrow().is_stopping() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut p = peer.borrow_mut();
    p.loaded_once = true;
    if !p.stats.is_ready() {
        ClusterStats::set(&p.stats.ready, true);
        log::info!(
            "cluster: ready: loaded {loaded} bindings from Redis in {} ms, following {} other node(s)",
            started.elapsed().as_millis(),
            positions.len()
        );
    }
    Ok(positions)
}
