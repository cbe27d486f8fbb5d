//! Memory of the location table: bytes per binding in one shard's copy.
//!
//! Inserts 1,000,000 AORs (`userNNNNNNN@example.com`), one binding each with a realistic
//! contact (`sip:userNNNNNNN@192.0.2.x:5060;transport=udp`), through `LocationTable::merge`
//! as the registrar does, and reports the growth of
//!
//! - the heap as requested from the allocator (a counting global allocator: live bytes and
//!   live allocations), and
//! - the resident set (`/proc/self/statm`), which adds what malloc itself spends per
//!   allocation (headers, rounding) and is what a shard really costs.
//!
//! Every shard holds the whole table, so this is the cost per binding *per shard*. Target:
//! under 200 bytes. `cargo bench --bench location_memory [-- AORS]`; prints a table and one
//! JSON line (`{"kind":"location_memory",...}`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

use sipshard::location::{Binding, LocationTable, MergeOutcome, Version};
use sipshard::sip::Target;

/// The system allocator, counting what is live.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static LIVE_ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
            LIVE_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        LIVE_ALLOCS.fetch_sub(1, Ordering::Relaxed);
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
            LIVE_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Resident set size in bytes.
fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as usize;
    pages * page
}

fn main() {
    // `cargo bench` passes `--bench`; a bare number overrides the AOR count.
    let aors: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);

    let mut aor = String::with_capacity(64);
    let mut contact = String::with_capacity(64);
    let (bytes0, allocs0, rss0) = (
        LIVE_BYTES.load(Ordering::Relaxed),
        LIVE_ALLOCS.load(Ordering::Relaxed),
        rss_bytes(),
    );
    let started = std::time::Instant::now();
    let mut table = LocationTable::new();
    let (mut key_bytes, mut contact_bytes) = (0usize, 0usize);
    for i in 0..aors {
        use std::fmt::Write;
        let host = (i % 254 + 1) as u8;
        aor.clear();
        contact.clear();
        let _ = write!(aor, "user{i:07}@example.com");
        let _ = write!(contact, "sip:user{i:07}@192.0.2.{host}:5060;transport=udp");
        key_bytes += aor.len();
        contact_bytes += contact.len();
        let b = Binding {
            version: Version {
                stamp_ms: 1_700_000_000_000 + i as u64,
                call_id_hash: 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i as u64 + 1),
                cseq: 1,
            },
            expires_at: 1_700_003_600,
            q: 1000,
            dest: Target::udp(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, host)),
                5060,
            )),
            nat: false,
            contact: contact.as_bytes(),
            extra: Default::default(),
        };
        let outcome = table.merge(aor.as_bytes(), &b);
        debug_assert_eq!(outcome, MergeOutcome::Added);
        black_box(outcome);
    }
    let elapsed = started.elapsed();
    let (bytes1, allocs1, rss1) = (
        LIVE_BYTES.load(Ordering::Relaxed),
        LIVE_ALLOCS.load(Ordering::Relaxed),
        rss_bytes(),
    );

    // The table must really hold what was inserted.
    assert_eq!(table.aor_count(), aors);
    assert_eq!(table.binding_count(), aors);
    for i in [0, aors / 2, aors - 1] {
        let key = format!("user{i:07}@example.com");
        let b = table
            .lookup(key.as_bytes(), 1_700_000_000)
            .expect("inserted");
        assert!(b.contact.starts_with(format!("sip:user{i:07}@").as_bytes()));
    }

    let n = aors as f64;
    let heap = (bytes1 - bytes0) as f64 / n;
    let allocs = (allocs1 - allocs0) as f64 / n;
    let rss = rss1.saturating_sub(rss0) as f64 / n;
    let payload = (key_bytes + contact_bytes) as f64 / n;
    println!("location table, {aors} AORs x 1 binding, one shard's copy");
    println!("  payload (AOR key + contact text)   {payload:>8.1} bytes/binding");
    println!(
        "  heap requested                     {heap:>8.1} bytes/binding ({allocs:.2} allocations)"
    );
    println!("  resident set growth                {rss:>8.1} bytes/binding");
    println!(
        "  target < 200 bytes/binding:        {}",
        if heap.max(rss) < 200.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "  inserted in {:.2} s ({:.0} merges/s)",
        elapsed.as_secs_f64(),
        n / elapsed.as_secs_f64()
    );
    println!(
        "{{\"kind\":\"location_memory\",\"aors\":{aors},\"payload_bytes_per_binding\":{payload:.1},\
         \"heap_bytes_per_binding\":{heap:.1},\"allocations_per_binding\":{allocs:.2},\
         \"rss_bytes_per_binding\":{rss:.1},\"target_bytes\":200,\"met\":{}}}",
        heap.max(rss) < 200.0
    );
    drop(black_box(table));
}
