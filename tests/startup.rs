//! Safe start-up: a second instance on an address sipshard already serves is refused (unless
//! `--allow-shared-port`), and every flag the machine cannot honour stops start-up with a
//! message saying what to change, before anything is bound or logged as listening, never with
//! a panic.

use std::os::unix::process::CommandExt;
use std::process::{Command, Output};
use std::time::Duration;

use sipshard_testkit::{free_port, Proc, Proxy, Scratch};

/// Run sipshard with `args` and wait for it to stop by itself (10 s at most).
fn run(dir: &Scratch, args: &[&str], setup: impl FnOnce(&mut Command)) -> Output {
    let mut cmd = Command::new(sipshard_testkit::bin::sipshard());
    // At info, so that a node that got as far as listening would say so.
    cmd.args(["--log-level", "info"]).args(args);
    setup(&mut cmd);
    Proc::spawn(dir, "sipshard", &mut cmd).wait_output(Duration::from_secs(10))
}

/// It stopped with `code`, said `why`, and neither listened nor panicked.
fn assert_refused(out: &Output, code: i32, why: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(err.contains(why), "expected {why:?} in:\n{err}");
    assert!(!err.contains("listening on"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_second_instance_on_a_served_address_is_refused() {
    let dir = Scratch::new("second");
    let port = free_port();
    let first = Proxy::builder().port(port).dir(&dir).start();
    let listen = first.addr.to_string();
    let out = run(&dir, &["--listen", &listen, "--shards", "1"], |_| {});
    assert_refused(&out, 1, &format!("cannot listen on udp {listen}"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--allow-shared-port"),
        "the way out is named"
    );
    // On TCP alone too (the UDP port of the same number is free then).
    let tcp = format!("tcp:{listen}");
    let out = run(&dir, &["--listen", &tcp, "--shards", "1"], |_| {});
    assert_refused(&out, 1, &format!("cannot listen on tcp {listen}"));

    // Deliberately shared: it starts and serves next to the first.
    let mut cmd = Command::new(sipshard_testkit::bin::sipshard());
    cmd.args(["--listen", &listen, "--shards", "1", "--allow-shared-port"]);
    cmd.args(["--log-level", "info"]);
    let mut second = Proc::spawn(&dir, "shared", &mut cmd);
    let started = sipshard_testkit::eventually(Duration::from_secs(10), || {
        second.stderr_text().contains("listening on udp")
    });
    assert!(started, "{}", second.output_tail(2000));
    assert!(
        second.try_status().is_none(),
        "{}",
        second.output_tail(2000)
    );
    second.stop(Duration::from_secs(5));
}

#[test]
fn flags_the_machine_cannot_honour_stop_start_up_with_a_reason() {
    let dir = Scratch::new("badflags");
    let listen = format!("127.0.0.1:{}", free_port());
    let short_token = dir.file("short", "abc\n");
    let cases: [(&[&str], &str); 6] = [
        (
            &["--cpus", "4095"],
            "--cpus: CPU 4095 is not available here",
        ),
        (
            &["--shards", "3", "--cpus", "0"],
            "--shards 3 needs 3 CPUs in --cpus",
        ),
        (
            &["--advertise", "edge 1;lr"],
            "--advertise \"edge 1;lr\": expected HOST[:PORT]",
        ),
        (&["--admin", "0.0.0.0:8060"], "is not a loopback address"),
        (
            &["--admin-token-file", &short_token],
            "--admin-token-file needs --admin",
        ),
        (
            &[
                "--admin",
                "127.0.0.1:8060",
                "--admin-token-file",
                &short_token,
            ],
            "the token must be one word of at least 16 characters",
        ),
    ];
    for (args, why) in cases {
        let mut all = vec!["--listen", &listen];
        all.extend_from_slice(args);
        let out = run(&dir, &all, |_| {});
        assert_refused(&out, 2, why);
    }
}

#[test]
fn a_memlock_limit_too_low_for_io_uring_is_explained() {
    let dir = Scratch::new("memlock");
    let listen = format!("127.0.0.1:{}", free_port());
    let out = run(&dir, &["--listen", &listen], |cmd| {
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let limit = libc::rlimit {
                    rlim_cur: 64 * 1024,
                    rlim_max: 64 * 1024,
                };
                if libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    assert_refused(&out, 1, "the locked-memory limit is 64 KiB");
    assert!(String::from_utf8_lossy(&out.stderr).contains("ulimit -l"));
}
