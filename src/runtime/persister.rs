//! The persister: the last peer of the replication mesh when `--state-dir` is given. It
//! receives every shard's location changes like the other shards do, sends nothing, and
//! appends them to the store on an executor of its own, off every shard.

use std::time::{Duration, Instant};

use super::clock::now;
use super::settings::StateSettings;
use crate::location::LocationTable;
use crate::persist::Store;
use crate::replication::Links;

/// How often the persister collects changes from the rings.
const PERSISTER_POLL: Duration = Duration::from_millis(20);

/// Open the state directory: the store and the table every shard starts with.
pub fn open(state: &StateSettings) -> Result<(Store, LocationTable), String> {
    let (store, table, report) = Store::open(&state.dir, now().secs())
        .map_err(|e| format!("cannot open state directory {}: {e}", state.dir.display()))?;
    if report.truncated_log_bytes > 0 || report.ignored_snapshot_bytes > 0 {
        log::warn!(
            "state: cut a torn or corrupt log tail of {} bytes ({} bytes of the snapshot ignored); kept everything before it",
            report.truncated_log_bytes,
            report.ignored_snapshot_bytes
        );
    }
    log::info!(
        "state: loaded {} bindings of {} AORs ({} snapshot + {} log records)",
        report.live_bindings,
        report.aors,
        report.snapshot_records,
        report.log_records
    );
    Ok((store, table))
}

/// Append every change the shards send to the store; make it durable every `interval`; once
/// every shard has stopped (their rings are abandoned), write the rest. Returns the live
/// bindings.
pub async fn run(mut store: Store, mut links: Links, interval: Duration) -> std::io::Result<usize> {
    let mut last_sync = Instant::now();
    loop {
        let finished = links.finished();
        links.drain(|rec| store.append(rec));
        if finished {
            break;
        }
        if last_sync.elapsed() >= interval {
            if let Err(e) = store.sync(now().secs()) {
                log::error!("state: cannot write the registration log: {e}");
            }
            last_sync = Instant::now();
        }
        glommio::timer::sleep(PERSISTER_POLL.min(interval)).await;
    }
    store.sync(now().secs())?;
    Ok(store.live_bindings())
}
