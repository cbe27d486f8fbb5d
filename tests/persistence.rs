//! `--state-dir`: registrations survive a crash (up to the fsync interval), a clean stop loses
//! nothing, and a corrupt log tail is cut and reported instead of stopping start-up.

use std::time::Duration;

use sipshard_testkit::sip::headers;
use sipshard_testkit::ua::register;
use sipshard_testkit::{free_port, Proxy, Scratch, Ua};

fn register_many(p: &Proxy, ua: &Ua, n: usize, offset: usize) {
    for i in offset..offset + n {
        let r = register(
            ua,
            p.addr,
            &format!("user{i}"),
            "example.com",
            &format!("<sip:user{i}@192.0.2.7:5060>"),
            1,
            "",
        );
        assert!(r.starts_with("SIP/2.0 200"), "{r}");
    }
}

fn count_registered(p: &Proxy, n: usize) -> usize {
    let ua = Ua::new();
    (0..n)
        .filter(|i| {
            let r = register(&ua, p.addr, &format!("user{i}"), "example.com", "", 9, "");
            headers(&r, "Contact").len() == 1
        })
        .count()
}

#[test]
fn bindings_survive_kill_9_within_the_fsync_interval() {
    let scratch = Scratch::new("state-kill");
    let dir = scratch.join("state");
    let d = dir.to_str().unwrap();
    let port = free_port();
    let args = [
        "--domain",
        "example.com",
        "--state-dir",
        d,
        "--fsync-interval-ms",
        "200",
        "--shards",
        "2",
    ];
    let mut p = Proxy::start_on(port, &args);
    let ua = Ua::new();
    register_many(&p, &ua, 300, 0);
    // Everything acknowledged more than one interval ago must come back.
    std::thread::sleep(Duration::from_millis(600));
    p.kill_hard();
    let p = Proxy::start_on(port, &args);
    assert_eq!(count_registered(&p, 300), 300);
}

#[test]
fn a_clean_stop_loses_nothing_and_a_corrupt_tail_is_cut() {
    let scratch = Scratch::new("state-clean");
    let dir = scratch.join("state");
    let d = dir.to_str().unwrap();
    let port = free_port();
    let args = [
        "--domain",
        "example.com",
        "--state-dir",
        d,
        "--fsync-interval-ms",
        "60000",
    ];
    let mut p = Proxy::start_on(port, &args);
    let ua = Ua::new();
    register_many(&p, &ua, 50, 0);
    // The interval is a minute: only the final sync on SIGTERM can have saved these.
    let log = p.stop();
    assert!(log.contains("state: 50 bindings saved"), "{log}");

    let mut bytes = std::fs::read(dir.join("bindings.log")).unwrap();
    bytes.extend_from_slice(b"\x20\x00\x00\x00torn record");
    std::fs::write(dir.join("bindings.log"), &bytes).unwrap();
    let mut p = Proxy::start_on(port, &args);
    assert_eq!(count_registered(&p, 50), 50);
    let log = p.stop();
    assert!(
        log.contains("cut a torn or corrupt log tail of 15 bytes"),
        "{log}"
    );
}
