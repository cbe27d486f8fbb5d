//! The registrar (RFC 3261 section 10.3, RFC 3665 section 2).
//!
//! REGISTER for one of our domains adds, refreshes or removes bindings of the address of record
//! in To; the 200 OK lists every current binding with its remaining lifetime. Each change is
//! merged into this shard's table and queued for the other shards.
//!
//! It works in two steps. [`plan`] validates the REGISTER and computes every change without
//! touching anything: a REGISTER is applied whole or not at all (section 10.3 steps 5-7), so
//! everything that can refuse it runs first. [`commit`] then applies the plan: merges each
//! change into the table, stamps its version, counts it, queues its replication record, and
//! writes the 200's Contact list.
//!
//! A stateless registrar sees retransmissions: a REGISTER repeated with the same Call-ID and
//! CSeq (its 200 was lost) is answered again without changing anything. A lower CSeq in the same
//! Call-ID is out of order (section 10.3 step 7) and fails with 500 and Retry-After.

mod commit;
mod date;
mod nat;
mod outbox;
mod plan;
mod unregister;

pub use commit::{commit, remove_dead, Store};
pub use date::DateLine;
pub use nat::{behind_nat, NatMode};
pub use outbox::Outbox;
pub use plan::{plan, Change, Changes, Origin, Plan, Refusal, RefusalHeader};
pub use unregister::unregister;

/// The most contacts one REGISTER may carry.
pub const MAX_CONTACTS_PER_REGISTER: usize = 32;

/// Registration lifetimes (seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegistrarConfig {
    pub default_expires: u32,
    pub min_expires: u32,
    pub max_expires: u32,
    /// Live bindings one AOR may have (`--max-bindings-per-aor`).
    pub max_bindings_per_aor: usize,
    /// Live bindings the whole table may hold (`--max-bindings`).
    pub max_bindings: usize,
    /// Which contacts are reached where their REGISTER came from (`--nat`).
    pub nat: NatMode,
    /// Seconds between a UA's keep-alives on an Outbound flow, said in `Flow-Timer`
    /// (`--flow-timer`).
    pub flow_timer: u32,
}

/// The command line's defaults.
impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            default_expires: 3600,
            min_expires: 60,
            max_expires: 7200,
            max_bindings_per_aor: 10,
            max_bindings: 10_000_000,
            nat: NatMode::Auto,
            flow_timer: 29,
        }
    }
}
