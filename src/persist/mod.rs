//! Registrations that survive restarts (`--state-dir`).
//!
//! The persister keeps its own copy of the location table, fed with every binding change (it is
//! one more peer of the shards' channel mesh, so it costs the packet path nothing but one more
//! channel send per change). Changes are appended to `bindings.log` in framed, checksummed
//! records ([`format`]); the buffer is written and `fdatasync`ed every interval (default 1 s),
//! so a crash loses at most one interval and a clean stop nothing. When the log grows past a
//! threshold it is compacted: the live table is written to `bindings.snapshot.tmp`, synced,
//! renamed over `bindings.snapshot`, and the log truncated.
//!
//! At start-up the snapshot and then the log are merged (last writer wins, so replaying a record
//! twice is harmless), bindings that expired while the proxy was down are dropped, and a torn or
//! corrupt log tail is truncated and reported, never a reason to refuse to start.

pub mod format;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::location::{BindingRecord, LocationTable};

const LOG: &str = "bindings.log";
const SNAPSHOT: &str = "bindings.snapshot";
const SNAPSHOT_TMP: &str = "bindings.snapshot.tmp";
/// Compact once the log is this large and larger than the snapshot.
const COMPACT_MIN_LOG: u64 = 8 * 1024 * 1024;

/// What loading found, for the start-up log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LoadReport {
    pub snapshot_records: usize,
    pub log_records: usize,
    /// Bytes of a torn or corrupt log tail that were cut off.
    pub truncated_log_bytes: usize,
    /// Bytes of a corrupt snapshot tail that were ignored.
    pub ignored_snapshot_bytes: usize,
    /// Live bindings after dropping the ones that expired while down.
    pub live_bindings: usize,
    pub aors: usize,
}

/// The registration store in one directory.
pub struct Store {
    dir: PathBuf,
    log: File,
    log_len: u64,
    snapshot_len: u64,
    table: LocationTable,
    /// Encoded records not yet written to the log.
    pending: Vec<u8>,
}

impl Store {
    /// Open (creating the directory if needed) and load. Returns the store and the table to
    /// seed every shard with.
    pub fn open(dir: &Path, now_secs: u64) -> io::Result<(Store, LocationTable, LoadReport)> {
        fs::create_dir_all(dir)?;
        let mut report = LoadReport::default();
        let mut table = LocationTable::new();

        let snap = read_if_exists(&dir.join(SNAPSHOT))?;
        let d = format::decode_all(&snap);
        report.snapshot_records = d.records.len();
        report.ignored_snapshot_bytes = d.bad_tail;
        for r in &d.records {
            table.merge_record(r);
        }

        let log_path = dir.join(LOG);
        let log_bytes = read_if_exists(&log_path)?;
        let d = format::decode_all(&log_bytes);
        report.log_records = d.records.len();
        report.truncated_log_bytes = d.bad_tail;
        for r in &d.records {
            table.merge_record(r);
        }
        let log = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&log_path)?;
        if d.bad_tail > 0 {
            // Cut the torn tail so new records follow the last good one.
            log.set_len(d.valid_len as u64)?;
            log.sync_all()?;
        }
        let mut log = log;
        use std::io::Seek;
        log.seek(io::SeekFrom::Start(d.valid_len as u64))?;

        table.purge(now_secs);
        report.live_bindings = table.binding_count();
        report.aors = table.aor_count();
        let store = Store {
            dir: dir.to_path_buf(),
            log,
            log_len: d.valid_len as u64,
            snapshot_len: snap.len() as u64,
            table: table.clone(),
            pending: Vec::new(),
        };
        Ok((store, table, report))
    }

    /// Record one binding change (written at the next [`sync`](Self::sync)).
    pub fn append(&mut self, rec: &BindingRecord) {
        self.table.merge_record(rec);
        format::encode(rec, &mut self.pending);
    }

    /// Write what is pending and make it durable; compact when the log has grown large.
    pub fn sync(&mut self, now_secs: u64) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.log.write_all(&self.pending)?;
            self.log_len += self.pending.len() as u64;
            self.pending.clear();
            self.log.sync_data()?;
        }
        if self.log_len > COMPACT_MIN_LOG && self.log_len > self.snapshot_len {
            self.compact(now_secs)?;
        }
        Ok(())
    }

    /// Rewrite the snapshot from the live table and empty the log.
    pub fn compact(&mut self, now_secs: u64) -> io::Result<()> {
        self.table.purge(now_secs);
        let mut buf = Vec::new();
        for (aor, bindings) in self.table.iter() {
            for b in bindings {
                format::encode(&BindingRecord::new(aor, &b), &mut buf);
            }
        }
        let tmp = self.dir.join(SNAPSHOT_TMP);
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, self.dir.join(SNAPSHOT))?;
        File::open(&self.dir)?.sync_all()?;
        // Only now is the log redundant. A crash before this point replays it over the new
        // snapshot, which is harmless (merges are idempotent).
        self.log.set_len(0)?;
        use std::io::Seek;
        self.log.seek(io::SeekFrom::Start(0))?;
        self.log.sync_all()?;
        self.log_len = 0;
        self.snapshot_len = buf.len() as u64;
        Ok(())
    }

    pub fn live_bindings(&self) -> usize {
        self.table.binding_count()
    }
}

fn read_if_exists(p: &Path) -> io::Result<Vec<u8>> {
    match File::open(p) {
        Ok(mut f) => {
            let mut v = Vec::new();
            f.read_to_end(&mut v)?;
            Ok(v)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::{Binding, Version};
    use crate::sip::Target;

    fn rec(user: &str, stamp: u64, expires_at: u32) -> BindingRecord {
        BindingRecord::new(
            format!("{user}@example.com").as_bytes(),
            &Binding {
                version: Version {
                    stamp_ms: stamp,
                    call_id_hash: 1,
                    cseq: stamp as u32,
                },
                expires_at,
                q: 1000,
                dest: Target::udp("192.0.2.1:5060".parse().unwrap()),
                nat: false,
                contact: format!("sip:{user}@192.0.2.1").as_bytes(),
                extra: Default::default(),
            },
        )
    }

    fn tempdir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("sipshard-persist-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn survives_reopen_and_skips_expired() {
        let dir = tempdir("reopen");
        let (mut s, t, r) = Store::open(&dir, 100).unwrap();
        assert_eq!((t.binding_count(), r.log_records), (0, 0));
        s.append(&rec("alice", 1, 1000));
        s.append(&rec("bob", 2, 150));
        s.append(&rec("carol", 3, 1000));
        s.append(&rec("carol", 4, 0)); // removed
        s.sync(100).unwrap();
        drop(s);
        let (_, t, r) = Store::open(&dir, 200).unwrap();
        assert_eq!(r.log_records, 4);
        assert_eq!(r.live_bindings, 1, "bob expired while down, carol removed");
        assert!(t.lookup(b"alice@example.com", 200).is_some());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn corrupt_tail_is_truncated_and_reported() {
        let dir = tempdir("tail");
        let (mut s, _, _) = Store::open(&dir, 100).unwrap();
        s.append(&rec("alice", 1, 1000));
        s.append(&rec("bob", 2, 1000));
        s.sync(100).unwrap();
        drop(s);
        let log = dir.join(LOG);
        let mut bytes = fs::read(&log).unwrap();
        let good = bytes.len();
        bytes.extend_from_slice(&[0x55; 7]);
        let last = bytes.len() - 12;
        bytes[last] ^= 1;
        fs::write(&log, &bytes).unwrap();
        let (mut s, t, r) = Store::open(&dir, 100).unwrap();
        assert_eq!(
            r.log_records, 1,
            "the corrupt bob record and the junk are cut"
        );
        assert!(r.truncated_log_bytes > 7);
        assert!(t.lookup(b"alice@example.com", 100).is_some());
        assert!(fs::metadata(&log).unwrap().len() < good as u64);
        // New records follow the last good one and survive the next reopen.
        s.append(&rec("dave", 5, 1000));
        s.sync(100).unwrap();
        drop(s);
        let (_, t, r) = Store::open(&dir, 100).unwrap();
        assert_eq!((r.log_records, r.truncated_log_bytes), (2, 0));
        assert!(t.lookup(b"dave@example.com", 100).is_some());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn compaction_keeps_the_live_table() {
        let dir = tempdir("compact");
        let (mut s, _, _) = Store::open(&dir, 100).unwrap();
        for i in 0..50 {
            s.append(&rec(&format!("u{i}"), i + 1, 1000));
        }
        s.append(&rec("u0", 100, 0));
        s.sync(100).unwrap();
        s.compact(100).unwrap();
        assert_eq!(fs::metadata(dir.join(LOG)).unwrap().len(), 0);
        s.append(&rec("late", 200, 1000));
        s.sync(100).unwrap();
        drop(s);
        let (_, t, r) = Store::open(&dir, 100).unwrap();
        assert_eq!(r.live_bindings, 50);
        assert!(t.lookup(b"u0@example.com", 100).is_none());
        assert!(t.lookup(b"late@example.com", 100).is_some());
        let _ = fs::remove_dir_all(&dir);
    }
}
