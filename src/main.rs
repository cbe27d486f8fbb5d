//! `sipshard`: flags -> configuration -> shards.

use clap::Parser;

use sipshard::config::Args;

fn main() {
    let args = Args::parse();
    if let Err(e) = args.validate() {
        eprintln!("sipshard: {e}");
        std::process::exit(2);
    }
    env_logger::Builder::new()
        .filter_level(args.effective_log_level())
        .format_timestamp_millis()
        .init();
    match sipshard::shard::run(&args) {
        Ok(total) => {
            log::info!(
                "stopped: {} datagrams received, {} sent",
                total.datagrams_received,
                total.datagrams_sent
            );
        }
        Err(e) => {
            eprintln!("sipshard: {e}");
            std::process::exit(1);
        }
    }
}
