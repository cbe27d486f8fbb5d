//! Callgrind driver for the parser: what `parse/sipshard/<msg>` of `benches/message.rs` times
//! (or, with a third argument `untyped`, `parse/sipshard_untyped/<msg>`), `<iterations>` times
//! over one message, without criterion around it, so that instruction counts divide cleanly by
//! the iteration count.
//!
//! ```text
//! cargo build --release --example parse-profile
//! valgrind --tool=callgrind target/release/examples/parse-profile ok200 10000 [typed|untyped]
//! ```
//! Run it with 0 iterations as well and subtract: what remains is the cost of the iterations.

use std::hint::black_box;
use std::mem::MaybeUninit;

use sipshard::sip::Message;

#[path = "../benches/support/messages.rs"]
mod support;

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "ok200".into());
    let iterations: usize = args
        .next()
        .map_or(10_000, |n| n.parse().expect("iterations"));
    let touch = match args.next().as_deref() {
        None | Some("typed") => support::touch,
        Some("untyped") => support::touch_untyped,
        Some(other) => panic!("no mode {other}: typed or untyped"),
    };
    let (_, msg) = support::messages()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no message {name}: invite, ok200 or register"));
    let mut buf = msg.clone();
    let mut acc = 0;
    for _ in 0..iterations {
        buf.copy_from_slice(black_box(&msg));
        let mut slot = MaybeUninit::uninit();
        let m = Message::parse_in(&mut slot, &mut buf).expect("parse");
        acc += touch(m);
    }
    println!("{name}: {iterations} iterations, checksum {acc}");
}
