//! This node's changes on their way to Redis: a bounded queue, and what each change becomes
//! (key, value, time to live). Also the node's own bindings, kept to publish again whenever
//! Redis may have lost some of them (a reconnection, a dropped change). No I/O.

use std::collections::VecDeque;

use crate::location::{BindingRecord, LocationTable, Now};
use crate::proxy::flow::FlowKey;
use crate::sip::{Source, Transport};

use super::record;
use super::settings::ClusterSettings;

/// One write: (key, value, time to live in ms).
pub type Write = (Vec<u8>, Vec<u8>, u64);

/// How this node is reached by the others, for the routes of bindings only it can reach.
#[derive(Clone, Debug)]
pub struct Origin {
    /// `host:port`, as advertised.
    pub addr: String,
    pub transport: Transport,
    pub flow_key: FlowKey,
}

pub struct Outbox {
    queue: VecDeque<BindingRecord>,
    limit: usize,
    /// Every change this node made, merged: what it republishes.
    mine: LocationTable,
    /// Changes were dropped or Redis may have lost some: publish `mine` again.
    republish: bool,
    /// A republication under way: `mine` as it was when it began, written a batch at a time
    /// before the queue (outside its bound: these are not new changes).
    again: VecDeque<BindingRecord>,
    dropped: u64,
}

impl Outbox {
    pub fn new(limit: usize) -> Outbox {
        Outbox {
            queue: VecDeque::new(),
            limit,
            mine: LocationTable::new(),
            republish: false,
            again: VecDeque::new(),
            dropped: 0,
        }
    }

    /// A change this node made: queued (or dropped and counted when the queue is full: it is
    /// in `mine`, so the next republication carries it).
    pub fn push(&mut self, rec: BindingRecord) {
        self.mine.merge_record(&rec);
        if self.queue.len() >= self.limit {
            self.dropped += 1;
            self.republish = true;
            return;
        }
        self.queue.push_back(rec);
    }

    /// A binding of this node's read back from Redis (after a restart): it is this node's to
    /// republish, not to send again now.
    pub fn remember(&mut self, rec: &BindingRecord) {
        self.mine.merge_record(rec);
    }

    /// Changes waiting to be written (a republication's included).
    pub fn queued(&self) -> usize {
        self.again.len() + self.queue.len()
    }

    /// Changes dropped since the last call.
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    /// Whether changes were lost towards Redis and not yet republished.
    pub fn degraded(&self) -> bool {
        self.republish || !self.again.is_empty()
    }

    /// Ask for every binding of this node to be written again.
    pub fn republish_all(&mut self) {
        self.republish = true;
    }

    /// The next writes, at most `max`: a republication's first (when one is due it starts:
    /// `mine` is taken as it is, and the queue, which only repeats what `mine` holds, is
    /// emptied), then queued changes. Changes already expired are not written. A batch leaves
    /// only once [`written`](Self::written): one that failed is the next batch again.
    pub fn next_batch(
        &mut self,
        max: usize,
        cfg: &ClusterSettings,
        origin: &Origin,
        now: Now,
    ) -> Batch {
        if std::mem::take(&mut self.republish) {
            self.queue.clear();
            self.again = self
                .mine
                .iter()
                .flat_map(|(aor, bindings)| bindings.map(move |b| BindingRecord::new(aor, &b)))
                .collect();
        }
        let from_again = self.again.len().min(max);
        let from_queue = self.queue.len().min(max - from_again);
        let writes = self
            .again
            .iter()
            .take(from_again)
            .chain(self.queue.iter().take(from_queue))
            .filter_map(|rec| write_of(rec, cfg, origin, now))
            .collect();
        Batch {
            writes,
            from_again,
            from_queue,
        }
    }

    /// The batch was written: its changes leave the queue.
    pub fn written(&mut self, batch: &Batch) {
        self.again.drain(..batch.from_again);
        self.queue.drain(..batch.from_queue);
    }

    /// Expired bindings and old tombstones out of `mine`.
    pub fn purge(&mut self, now: Now) {
        self.mine.purge(now.secs());
    }
}

/// Writes for Redis and how many changes they came from (of a republication, of the queue).
pub struct Batch {
    pub writes: Vec<Write>,
    from_again: usize,
    from_queue: usize,
}

/// What one change becomes in Redis; `None` for a binding already expired (a delayed write
/// must never outlive the removal that came after it).
fn write_of(
    rec: &BindingRecord,
    cfg: &ClusterSettings,
    origin: &Origin,
    now: Now,
) -> Option<Write> {
    let b = rec.decode()?;
    let ttl_ms = if b.is_tombstone() {
        cfg.tombstone_ttl.as_millis() as u64
    } else {
        (u64::from(b.expires_at) * 1000).checked_sub(now.unix_ms)? + cfg.max_skew_ms
    };
    let route = if record::needs_origin(&b) {
        let mut token = Vec::with_capacity(80);
        origin.flow_key.token(
            Source {
                transport: b.dest.transport,
                addr: b.dest.addr,
                conn: b.dest.conn,
                trusted: false,
            },
            &mut token,
        );
        record::route_via(&token, &origin.addr, origin.transport)
    } else {
        Vec::new()
    };
    let key = record::key(&cfg.prefix, &rec.aor, &b);
    let value = record::encode(rec, &b.version, &cfg.node_id, &route);
    Some((key, value, ttl_ms))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::location::{Binding, Extra, Version};
    use crate::sip::Target;

    const NOW: Now = Now {
        unix_ms: 1_700_000_000_000,
    };

    fn settings() -> ClusterSettings {
        ClusterSettings {
            redis: crate::cluster::settings::parse_endpoint("redis://127.0.0.1:6379").unwrap(),
            password: None,
            tls_ca: None,
            node_id: "a".into(),
            prefix: "p".into(),
            queue_limit: 2,
            publish_interval: Duration::from_millis(1),
            stream_length: 100,
            max_skew_ms: 2000,
            tombstone_ttl: Duration::from_secs(7204),
        }
    }

    fn origin() -> Origin {
        Origin {
            addr: "192.0.2.1:5060".into(),
            transport: Transport::Udp,
            flow_key: FlowKey::new([1; 32]),
        }
    }

    fn rec(user: &str, expires_in: u32, nat: bool) -> BindingRecord {
        let contact = format!("sip:{user}@10.0.0.1");
        let b = Binding {
            version: Version {
                stamp_ms: NOW.unix_ms,
                call_id_hash: 1,
                cseq: 1,
            },
            expires_at: if expires_in == 0 {
                0
            } else {
                NOW.secs() as u32 + expires_in
            },
            q: 1000,
            dest: Target::udp("203.0.113.5:4000".parse().unwrap()),
            nat,
            contact: contact.as_bytes(),
            extra: Extra::default(),
        };
        BindingRecord::new(format!("{user}@x").as_bytes(), &b)
    }

    #[test]
    fn writes_live_for_the_binding_and_tombstones_for_longer() {
        let mut out = Outbox::new(10);
        out.push(rec("a", 60, false));
        out.push(rec("b", 0, false));
        let batch = out.next_batch(10, &settings(), &origin(), NOW);
        let ttls: Vec<u64> = batch.writes.iter().map(|w| w.2).collect();
        assert_eq!(ttls, vec![62_000, 7_204_000]);
        out.written(&batch);
        assert_eq!(out.queued(), 0);
    }

    #[test]
    fn a_nat_binding_is_published_with_a_route_through_this_node() {
        let mut out = Outbox::new(10);
        out.push(rec("a", 60, true));
        let batch = out.next_batch(10, &settings(), &origin(), NOW);
        let stored = record::decode(&batch.writes[0].1).unwrap();
        assert!(stored.route.starts_with(b"<sip:ft"));
        assert!(stored.route.ends_with(b"@192.0.2.1:5060;lr>"));
        let token = &stored.route[5..stored.route.iter().position(|&c| c == b'@').unwrap()];
        let flow = origin().flow_key.flow(token).unwrap();
        assert_eq!(flow.addr, "203.0.113.5:4000".parse().unwrap());
    }

    #[test]
    fn an_expired_change_is_never_written() {
        let mut out = Outbox::new(10);
        out.push(rec("a", 60, false));
        let later = Now {
            unix_ms: NOW.unix_ms + 61_000,
        };
        let batch = out.next_batch(10, &settings(), &origin(), later);
        assert!(batch.writes.is_empty());
        out.written(&batch);
        assert_eq!(out.queued(), 0);
    }

    #[test]
    fn a_full_queue_drops_and_then_republishes_everything() {
        let mut out = Outbox::new(2);
        for u in ["a", "b", "c"] {
            out.push(rec(u, 60, false));
        }
        assert_eq!(out.take_dropped(), 1);
        assert!(out.degraded());
        let batch = out.next_batch(10, &settings(), &origin(), NOW);
        assert_eq!(batch.writes.len(), 3, "all of this node's bindings");
        // Not written (Redis failed): tried again.
        assert!(out.degraded(), "a failed republication is tried again");
        let batch = out.next_batch(10, &settings(), &origin(), NOW);
        assert_eq!(batch.writes.len(), 3);
        out.written(&batch);
        assert!(!out.degraded());
        assert_eq!(out.queued(), 0);
    }

    #[test]
    fn a_republication_goes_a_batch_at_a_time_before_new_changes() {
        let mut out = Outbox::new(10);
        for u in ["a", "b", "c"] {
            out.push(rec(u, 60, false));
        }
        out.republish_all();
        out.push(rec("d", 60, false));
        let first = out.next_batch(2, &settings(), &origin(), NOW);
        assert_eq!(first.writes.len(), 2);
        out.written(&first);
        assert!(out.degraded(), "still republishing");
        out.push(rec("e", 60, false));
        let second = out.next_batch(3, &settings(), &origin(), NOW);
        let keys: Vec<String> = second
            .writes
            .iter()
            .map(|w| String::from_utf8_lossy(&w.0).into_owned())
            .collect();
        assert_eq!(keys.len(), 3, "{keys:?}");
        assert!(
            keys[2].contains("e@x"),
            "the new change after the republication: {keys:?}"
        );
        out.written(&second);
        assert!(!out.degraded());
        assert_eq!(out.queued(), 0);
    }
}
