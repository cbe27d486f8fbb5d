//! More than one node (`--redis`, issue 17): two or three sipshard processes on loopback share
//! their location table through a real `redis-server` (and, for the failover, Redis Sentinel),
//! started by each test on a free port.
//!
//! Each node is judged by what it does: calls routed (or answered 480), its admin API's listing
//! of every live binding (`GET /v1/bindings`), its readiness (`GET /ready`) and its
//! `sipshard_cluster_*` metrics. Tables of two nodes are compared as sets of (AOR, contact,
//! expiry instant): the destination is left out, since a binding that came over a connection
//! or from behind NAT is reached through the node that holds it. What Redis holds is judged by a
//! node started afterwards with nothing but Redis to load from.
//!
//! Every wait is bounded by a deadline, and nothing here asserts a speed. The tests run one at a
//! time ([`peers::serial`]): several nodes, Redis and the test's own senders already share the
//! machine's two cores.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use sipshard_testkit::peers::redis::{Redis, Sentinel};
use sipshard_testkit::peers::{self, SOCKET_BUFFER};
use sipshard_testkit::scrape::scrape;
use sipshard_testkit::sip::{header, headers, start_line};
use sipshard_testkit::ua::register;
use sipshard_testkit::{eventually_every, free_port, free_ports, Proxy, Ua};

const DOMAIN: &str = "example.com";

/// The crash window this test allows (issue 17: "B and Redis hold every binding A acknowledged
/// outside the documented window"). The default `--redis-publish-interval-ms` is 1 ms plus one
/// Redis round trip; 500 ms is generous for a small machine with every process of the test on
/// its two cores.
const CRASH_WINDOW: Duration = Duration::from_millis(500);

/// How long nodes may take to load Redis's state, converge, or follow a new primary.
const CONVERGE: Duration = Duration::from_secs(30);

/// A node's count of live bindings (every shard holds the whole table).
const BINDINGS: &str = "sipshard_bindings{shard=\"total\"}";

/// The live bindings of a node as compared between nodes: (AOR, contact, expires_at).
type Table = BTreeSet<(String, String, u64)>;

// ---------------------------------------------------------------------------------------------
// Nodes

/// One sipshard node of a cluster: SIP on `base`, `/metrics` on `base + 1`, the admin API on
/// `base + 2`, so that a restart comes back on the same addresses.
struct Node {
    id: String,
    base: u16,
    args: Vec<String>,
    proxy: Proxy,
}

impl Node {
    /// Start node `id` with `--redis URL`, one shard (pinned to alternating CPUs, so that two
    /// nodes do not share one), and `extra` arguments. Returns once it answers OPTIONS (it
    /// serves at once, before it has loaded Redis's state).
    fn start(dir: &Path, id: &str, redis: &str, extra: &[&str]) -> Node {
        use std::sync::atomic::AtomicU32;
        static CPU: AtomicU32 = AtomicU32::new(0);
        let cpu = (CPU.fetch_add(1, Ordering::Relaxed) % 2).to_string();
        let base = free_ports(3);
        let admin = format!("127.0.0.1:{}", base + 2);
        let mut args: Vec<String> = ["--domain", DOMAIN, "--admin", &admin]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // One shard unless `extra` says otherwise (clap takes each flag once).
        if !extra.contains(&"--shards") {
            args.extend(["--shards", "1", "--cpus", cpu.as_str()].map(String::from));
        }
        args.extend(["--redis", redis, "--node-id", id].map(String::from));
        args.extend(extra.iter().map(|s| s.to_string()));
        let proxy = Node::spawn(dir, base, &args);
        Node {
            id: id.to_string(),
            base,
            args,
            proxy,
        }
    }

    fn spawn(dir: &Path, base: u16, args: &[String]) -> Proxy {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Proxy::builder()
            .port(base)
            .dir(dir)
            .socket_buffers(SOCKET_BUFFER)
            .metrics()
            .args(&args)
            .start()
    }

    /// SIGKILL: whatever it had not published is lost.
    fn kill_hard(&mut self) {
        self.proxy.kill_hard();
    }

    /// Start again with the same node id, addresses and arguments.
    fn restart(&mut self, dir: &Path) {
        self.proxy.kill_hard();
        self.proxy = Node::spawn(dir, self.base, &self.args);
    }

    fn addr(&self) -> SocketAddr {
        self.proxy.addr
    }

    fn admin(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.base + 2))
    }

    /// The status of `GET /ready`.
    fn ready_status(&self) -> u16 {
        http(self.admin(), "GET /ready").0
    }

    /// Wait until `GET /ready` answers 200 (the node has loaded Redis's state).
    fn wait_ready(&self, limit: Duration) {
        let ready = eventually_every(limit, Duration::from_millis(100), || {
            self.ready_status() == 200
        });
        assert!(
            ready,
            "node {} not ready within {limit:?}; metrics:\n{}\nlog:\n{}",
            self.id,
            self.cluster_metrics(),
            sipshard_testkit::tail(&self.proxy.log(), 3000)
        );
    }

    /// The value of `series` in `/metrics` (the cluster's figures have no labels).
    fn metric(&self, series: &str) -> f64 {
        metric(&scrape(self.proxy.metrics.expect("metrics")), series)
    }

    /// The `sipshard_cluster_*` lines of `/metrics`, for failure messages.
    fn cluster_metrics(&self) -> String {
        scrape(self.proxy.metrics.expect("metrics"))
            .lines()
            .filter(|l| l.starts_with("sipshard_cluster_") || l.starts_with("sipshard_bindings"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every live binding the node lists (`GET /v1/bindings`).
    fn table(&self) -> Table {
        let (status, body) = http(self.admin(), "GET /v1/bindings");
        assert_eq!(status, 200, "GET /v1/bindings on node {}: {body}", self.id);
        body.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("a listing line of node {} ({e}): {l}", self.id));
                (
                    v["aor"].as_str().expect("aor").to_string(),
                    v["contact"].as_str().expect("contact").to_string(),
                    v["expires_at"].as_u64().expect("expires_at"),
                )
            })
            .collect()
    }

    /// The AORs of [`Node::table`].
    fn aors(&self) -> BTreeSet<String> {
        self.table().into_iter().map(|(aor, _, _)| aor).collect()
    }

    fn log_tail(&self) -> String {
        sipshard_testkit::tail(&self.proxy.log(), 3000).to_string()
    }
}

/// One HTTP/1.1 request (`"GET /ready"`), Connection: close; the status and the body (chunked
/// transfer coding undone: the listing is streamed).
fn http(addr: SocketAddr, request_line: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr)
        .unwrap_or_else(|e| panic!("connect to the admin API on {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "{request_line} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("{request_line} on {addr}: {e}"));
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{request_line} on {addr}: no status in {text:?}"));
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "transfer-encoding:chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

/// Undo HTTP/1.1 chunked transfer coding (sizes in hex, each chunk followed by CRLF).
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    loop {
        let Some((size_line, after)) = rest.split_once("\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16)
            .unwrap_or_else(|_| panic!("a chunk size: {size_line:?}"));
        if size == 0 {
            return out;
        }
        out.push_str(&after[..size]);
        rest = after[size..].strip_prefix("\r\n").unwrap_or(&after[size..]);
    }
}

/// The value of `series` (name and labels exactly as printed) in Prometheus text; NaN when
/// it is absent (so that no comparison holds).
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(f64::NAN)
}

/// Wait until every node in `nodes` lists the same table; that table. Fails with the
/// differences and the nodes' cluster metrics.
fn converge(nodes: &[&Node], limit: Duration) -> Table {
    let mut tables: Vec<Table> = Vec::new();
    let same = eventually_every(limit, Duration::from_millis(500), || {
        tables = nodes.iter().map(|n| n.table()).collect();
        tables.windows(2).all(|w| w[0] == w[1])
    });
    if !same {
        let mut why = String::new();
        for (i, n) in nodes.iter().enumerate().skip(1) {
            why.push_str(&diff(&nodes[0].id, &tables[0], &n.id, &tables[i]));
        }
        for n in nodes {
            why.push_str(&format!(
                "\n--- node {} ---\n{}\n{}",
                n.id,
                n.cluster_metrics(),
                n.log_tail()
            ));
        }
        panic!("the nodes did not converge within {limit:?}:\n{why}");
    }
    tables.pop().unwrap_or_default()
}

/// The nodes of a test share one clock, so no record may arrive from beyond the clock bound:
/// a clamped record means versions ran ahead of the wall clock.
fn assert_no_clamps(nodes: &[&Node]) {
    for n in nodes {
        assert_eq!(
            n.metric("sipshard_cluster_clamped_total"),
            0.0,
            "node {} clamped records from the future, with every node on one clock:\n{}",
            n.id,
            n.cluster_metrics()
        );
    }
}

/// What differs between two tables, in a few lines.
fn diff(na: &str, a: &Table, nb: &str, b: &Table) -> String {
    let (only_a, only_b) = (a.difference(b), b.difference(a));
    format!(
        "node {na}: {} bindings, node {nb}: {}; {} only on {na} (first: {:?}), {} only on {nb} (first: {:?})\n",
        a.len(),
        b.len(),
        only_a.clone().count(),
        only_a.take(5).collect::<Vec<_>>(),
        only_b.clone().count(),
        only_b.take(5).collect::<Vec<_>>(),
    )
}

// ---------------------------------------------------------------------------------------------
// Calls

/// What became of a request sent through a node for an AOR.
#[derive(Debug)]
enum Routed {
    /// It reached the callee (the whole request as it arrived).
    Forwarded(String),
    /// The node answered it (its status line).
    Answered(String),
    /// Neither within the wait.
    Nothing,
}

/// An INVITE for `user@example.com` sent through `node` from a new caller; where it went. The
/// callee's earlier deliveries (other Call-IDs) are skipped.
fn call(node: SocketAddr, user: &str, callee: &Ua) -> Routed {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let caller = Ua::new();
    let call_id = format!("cluster-call-{n}");
    let msg = format!(
        "INVITE sip:{user}@{DOMAIN} SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bKcl{n};rport\nMax-Forwards: 70\nTo: <sip:{user}@{DOMAIN}>\nFrom: <sip:alice@{DOMAIN}>;tag=a{n}\nCall-ID: {call_id}\nCSeq: 1 INVITE\nContact: <sip:alice@{me}>\n\n",
        me = caller.addr
    );
    caller.send(node, &msg);
    let deadline = Instant::now() + Duration::from_millis(1000);
    while Instant::now() < deadline {
        if let Some(got) = callee.recv_within(Duration::from_millis(50)) {
            if headers(&got, "Call-ID").first() == Some(&call_id.as_str()) {
                return Routed::Forwarded(got);
            }
        }
        if let Some(r) = caller.recv_within(Duration::from_millis(50)) {
            if !r.starts_with("SIP/2.0 100") {
                return Routed::Answered(start_line(&r).to_string());
            }
        }
    }
    Routed::Nothing
}

/// Wait until a call for `user` through `node` reaches `callee`.
fn wait_forwarded(node: &Node, user: &str, callee: &Ua, limit: Duration) {
    let mut last = Routed::Nothing;
    let ok = eventually_every(limit, Duration::from_millis(50), || {
        last = call(node.addr(), user, callee);
        matches!(last, Routed::Forwarded(_))
    });
    assert!(
        ok,
        "a call for {user} through node {} never reached {} (last: {last:?}); metrics:\n{}\n{}",
        node.id,
        callee.addr,
        node.cluster_metrics(),
        node.log_tail()
    );
}

/// Wait until a call for `user` through `node` is answered 480 (no binding there).
fn wait_unavailable(node: &Node, user: &str, callee: &Ua, limit: Duration) {
    let mut last = Routed::Nothing;
    let ok = eventually_every(limit, Duration::from_millis(50), || {
        last = call(node.addr(), user, callee);
        matches!(&last, Routed::Answered(s) if s.starts_with("SIP/2.0 480"))
    });
    assert!(
        ok,
        "a call for {user} through node {} still not answered 480 (last: {last:?}); metrics:\n{}\n{}",
        node.id,
        node.cluster_metrics(),
        node.log_tail()
    );
}

// ---------------------------------------------------------------------------------------------
// Registration storms

/// One REGISTER of a storm: `user@example.com` in a Call-ID of its own (the same for the user's
/// later REGISTERs, with a higher CSeq), with `contact` (`*` with Expires 0 removes them all).
#[derive(Clone)]
struct Reg {
    user: String,
    cseq: u32,
    contact: String,
    expires: u32,
}

impl Reg {
    /// `user` registered with a contact of its own on a documentation address (public, so
    /// never taken for NAT: the Via names the sender's own address) for an hour.
    fn add(user: String) -> Reg {
        let contact = format!("<sip:{user}@192.0.2.1:5060>");
        Reg {
            user,
            cseq: 1,
            contact,
            expires: 3600,
        }
    }

    /// Every binding of `user` removed (`Contact: *`, `Expires: 0`), in the Call-ID of
    /// [`Reg::add`] with CSeq 2.
    fn remove(user: String) -> Reg {
        Reg {
            user,
            cseq: 2,
            contact: "*".into(),
            expires: 0,
        }
    }

    fn wire(&self, i: usize, me: SocketAddr) -> String {
        let u = &self.user;
        format!(
            "REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKst{i}.{c};rport\r\nMax-Forwards: 70\r\nTo: <sip:{u}@{DOMAIN}>\r\nFrom: <sip:{u}@{DOMAIN}>;tag=f{u}\r\nCall-ID: {u}.cluster-test\r\nCSeq: {c} REGISTER\r\nContact: {contact}\r\nExpires: {e}\r\nContent-Length: 0\r\n\r\n",
            c = self.cseq,
            contact = self.contact,
            e = self.expires,
        )
    }
}

/// How a storm is driven.
struct Storm {
    target: SocketAddr,
    /// REGISTERs sent and not yet answered, at most.
    window: usize,
    /// REGISTERs sent per second, at most (None: as fast as the window allows).
    rate: Option<f64>,
    /// Give up on whatever is unanswered then.
    limit: Duration,
}

/// What became of a storm's REGISTERs.
struct Answers {
    /// The final status of each and when it arrived (None: unanswered when the storm ended).
    got: Vec<Option<(u16, Instant)>>,
    /// How the storm ended, for failure messages.
    summary: String,
}

impl Storm {
    /// Send `regs` from one UDP socket, retransmitting what is unanswered after 500 ms, until
    /// all are answered, `limit` has passed or `stop` is set. `acked` counts the answers.
    fn run(&self, regs: &[Reg], stop: &AtomicBool, acked: &AtomicUsize) -> Answers {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind the storm's socket");
        let me = sock.local_addr().unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let start = Instant::now();
        let deadline = start + self.limit;
        let mut answers = vec![None; regs.len()];
        let mut waiting: HashMap<usize, Instant> = HashMap::new();
        let (mut next, mut done) = (0, 0);
        let mut last_scan = start;
        let mut buf = vec![0u8; 65_536];
        while done < regs.len() && !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            while waiting.len() < self.window && next < regs.len() {
                if let Some(rate) = self.rate {
                    if (next as f64) >= start.elapsed().as_secs_f64() * rate {
                        break;
                    }
                }
                let _ = sock.send_to(regs[next].wire(next, me).as_bytes(), self.target);
                waiting.insert(next, Instant::now());
                next += 1;
            }
            // Everything that has arrived.
            while let Ok(n) = sock.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]);
                let Some(status) = text
                    .strip_prefix("SIP/2.0 ")
                    .and_then(|s| s.get(..3))
                    .and_then(|s| s.parse::<u16>().ok())
                else {
                    continue;
                };
                let Some(i) = text
                    .split_once("branch=z9hG4bKst")
                    .and_then(|(_, r)| r.split_once('.'))
                    .and_then(|(i, _)| i.parse::<usize>().ok())
                else {
                    continue;
                };
                if status >= 200 && waiting.remove(&i).is_some() {
                    answers[i] = Some((status, Instant::now()));
                    done += 1;
                    acked.fetch_add(1, Ordering::Relaxed);
                }
                if waiting.len() < self.window / 2 {
                    break;
                }
            }
            if last_scan.elapsed() >= Duration::from_millis(100) {
                last_scan = Instant::now();
                for (&i, sent) in waiting.iter_mut() {
                    if sent.elapsed() >= Duration::from_millis(500) {
                        let _ = sock.send_to(regs[i].wire(i, me).as_bytes(), self.target);
                        *sent = Instant::now();
                    }
                }
            }
        }
        let summary = format!(
            "the storm to {} ended after {:?}: {done} of {} answered, {next} sent, {} unanswered, stopped: {}",
            self.target,
            start.elapsed(),
            regs.len(),
            waiting.len(),
            stop.load(Ordering::Relaxed)
        );
        Answers {
            got: answers,
            summary,
        }
    }

    /// [`Storm::run`] on a thread of its own.
    fn spawn(
        self,
        regs: Vec<Reg>,
        stop: Arc<AtomicBool>,
        acked: Arc<AtomicUsize>,
    ) -> thread::JoinHandle<Answers> {
        thread::spawn(move || self.run(&regs, &stop, &acked))
    }
}

/// `users` (`prefix0`, `prefix1`, ...) each added once.
fn adds(prefix: &str, n: usize) -> Vec<Reg> {
    (0..n).map(|i| Reg::add(format!("{prefix}{i}"))).collect()
}

/// Fail unless every REGISTER was answered 200; the AORs (`user@example.com`) of `regs`.
fn all_ok(what: &str, regs: &[Reg], answers: &Answers) -> BTreeSet<String> {
    let bad: Vec<_> = answers
        .got
        .iter()
        .enumerate()
        .filter(|(_, a)| !matches!(a, Some((200, _))))
        .take(5)
        .map(|(i, a)| (regs[i].user.clone(), a.map(|(s, _)| s)))
        .collect();
    let n_bad = answers
        .got
        .iter()
        .filter(|a| !matches!(a, Some((200, _))))
        .count();
    assert!(
        bad.is_empty(),
        "{what}: {n_bad} of {} REGISTERs not answered 200 (first: {bad:?}); {}",
        regs.len(),
        answers.summary
    );
    regs.iter()
        .map(|r| format!("{}@{DOMAIN}", r.user))
        .collect()
}

/// The AORs in `table`.
fn aors_of(table: &Table) -> BTreeSet<String> {
    table.iter().map(|(aor, _, _)| aor.clone()).collect()
}

// ---------------------------------------------------------------------------------------------
// The tests

/// Register on A, call through B; remove on B (REGISTER Expires 0 and the admin API), gone on
/// A; a short registration expires on both; a node started later loads the same table.
#[test]
fn a_binding_made_on_one_node_routes_removes_and_expires_on_the_others() {
    let _serial = peers::serial();
    let dir = sipshard_testkit::Scratch::new("cluster-basic");
    let redis = Redis::start(&dir);
    let lower = ["--min-expires", "1"];
    let a = Node::start(&dir, "a", &redis.url(), &lower);
    // B with two shards: another node's changes reach every shard.
    let b = Node::start(
        &dir,
        "b",
        &redis.url(),
        &["--min-expires", "1", "--shards", "2", "--cpus", "0-1"],
    );
    a.wait_ready(CONVERGE);
    b.wait_ready(CONVERGE);

    // Registered on A, called through B (several callers: both of B's shards).
    let bob = Ua::new();
    let r = register(
        &bob,
        a.addr(),
        "bob",
        DOMAIN,
        &format!("<sip:bob@{}>", bob.addr),
        1,
        "",
    );
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    wait_forwarded(&b, "bob", &bob, Duration::from_secs(10));
    for _ in 0..6 {
        match call(b.addr(), "bob", &bob) {
            // Straight from B to the contact (UDP, a literal address, no NAT): B's Via on
            // top of the caller's, no other node's.
            Routed::Forwarded(got) => {
                assert_eq!(
                    start_line(&got),
                    format!("INVITE sip:bob@{} SIP/2.0", bob.addr)
                );
                let vias = headers(&got, "Via");
                assert_eq!(vias.len(), 2, "{got}");
                assert!(vias[0].contains(&b.addr().to_string()), "{got}");
            }
            other => panic!("a call for bob through b: {other:?}"),
        }
    }
    let table = converge(&[&a, &b], CONVERGE);
    assert!(aors_of(&table).contains("bob@example.com"), "{table:?}");
    assert!(
        a.metric("sipshard_cluster_published_total") >= 1.0,
        "{}",
        a.cluster_metrics()
    );
    assert!(
        b.metric("sipshard_cluster_applied_total") >= 1.0,
        "{}",
        b.cluster_metrics()
    );
    assert_eq!(
        a.metric("sipshard_cluster_ready"),
        1.0,
        "{}",
        a.cluster_metrics()
    );
    assert_eq!(
        b.metric("sipshard_cluster_connected"),
        1.0,
        "{}",
        b.cluster_metrics()
    );

    // Removed on B with a REGISTER: gone on A.
    let r = register(
        &bob,
        b.addr(),
        "bob",
        DOMAIN,
        &format!("<sip:bob@{}>", bob.addr),
        2,
        "Expires: 0\n",
    );
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert!(headers(&r, "Contact").is_empty(), "{r}");
    wait_unavailable(&a, "bob", &bob, Duration::from_secs(10));
    wait_unavailable(&b, "bob", &bob, Duration::from_secs(10));

    // Registered on A, removed on B through the admin API: gone on A.
    let carol = Ua::new();
    let r = register(
        &carol,
        a.addr(),
        "carol",
        DOMAIN,
        &format!("<sip:carol@{}>", carol.addr),
        1,
        "",
    );
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    wait_forwarded(&b, "carol", &carol, Duration::from_secs(10));
    let (status, body) = http(b.admin(), "DELETE /v1/bindings/carol@example.com");
    assert_eq!(status, 200, "{body}");
    wait_unavailable(&a, "carol", &carol, Duration::from_secs(10));

    // Two seconds of registration on A: routed through B, then gone from both.
    let dave = Ua::new();
    let r = register(
        &dave,
        a.addr(),
        "dave",
        DOMAIN,
        &format!("<sip:dave@{}>", dave.addr),
        1,
        "Expires: 2\n",
    );
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert_eq!(
        header(&r, "Contact"),
        format!("<sip:dave@{}>;expires=2", dave.addr)
    );
    wait_forwarded(&b, "dave", &dave, Duration::from_secs(2));
    wait_unavailable(&a, "dave", &dave, Duration::from_secs(10));
    wait_unavailable(&b, "dave", &dave, Duration::from_secs(10));
    let table = converge(&[&a, &b], CONVERGE);
    assert!(table.is_empty(), "{table:?}");

    // A node started now loads what Redis holds: one binding, made on B.
    let erin = Ua::new();
    let r = register(
        &erin,
        b.addr(),
        "erin",
        DOMAIN,
        &format!("<sip:erin@{}>", erin.addr),
        1,
        "",
    );
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    let c = Node::start(&dir, "c", &redis.url(), &lower);
    c.wait_ready(CONVERGE);
    let table = converge(&[&a, &b, &c], CONVERGE);
    assert_eq!(
        aors_of(&table),
        BTreeSet::from(["erin@example.com".to_string()])
    );
    wait_forwarded(&c, "erin", &erin, Duration::from_secs(5));
    wait_unavailable(&c, "dave", &dave, Duration::from_secs(5));
    assert!(c.proxy.log().contains("cluster: ready"), "{}", c.log_tail());
    assert_no_clamps(&[&a, &b, &c]);
}

/// kill -9 of A in the middle of a REGISTER storm: B and Redis hold every binding A
/// acknowledged more than [`CRASH_WINDOW`] before the kill; A restarted (same node id, same
/// port, no state directory: Redis is all it loads) converges to B's table.
/// Redis over TLS: the nodes reach it on its TLS port only (`rediss://`, a plain client gets
/// nothing there), trusting the test's CA through `--redis-ca`; a node without that CA (the
/// system's roots do not know it) refuses the server's certificate and never connects.
#[test]
fn nodes_share_the_table_through_redis_over_tls_and_check_its_certificate() {
    let _serial = peers::serial();
    let dir = sipshard_testkit::Scratch::new("cluster-tls");
    let pki = sipshard_testkit::pki::Pki::new(&dir, "redis");
    let cert = pki.issue("redis-server", &["127.0.0.1"]);
    let tls_port = free_port().to_string();
    let (cert_file, key_file, ca_file) = (
        cert.cert.display().to_string(),
        cert.key.display().to_string(),
        pki.ca_file.display().to_string(),
    );
    let redis = Redis::start_with(
        &dir,
        free_port(),
        &[
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &cert_file,
            "--tls-key-file",
            &key_file,
            "--tls-ca-cert-file",
            &ca_file,
            "--tls-auth-clients",
            "no",
        ],
    );
    let url = format!("rediss://127.0.0.1:{tls_port}/0");
    let trusted = ["--redis-ca", ca_file.as_str()];
    let a = Node::start(&dir, "a", &url, &trusted);
    let b = Node::start(&dir, "b", &url, &trusted);
    a.wait_ready(CONVERGE);
    b.wait_ready(CONVERGE);

    let bob = Ua::new();
    let contact = format!("<sip:bob@{}>", bob.addr);
    let r = register(&bob, a.addr(), "bob", DOMAIN, &contact, 1, "");
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    wait_forwarded(&b, "bob", &bob, Duration::from_secs(10));
    assert_eq!(
        redis.count_keys("sipshard:b:*"),
        1,
        "the binding is in Redis, written over TLS"
    );

    let c = Node::start(&dir, "c", &url, &[]);
    let refused = eventually_every(Duration::from_secs(10), Duration::from_millis(100), || {
        c.proxy.log().contains("cluster: cannot reach Redis")
    });
    assert!(refused, "{}", c.log_tail());
    assert_eq!(
        c.metric("sipshard_cluster_connected"),
        0.0,
        "{}",
        c.cluster_metrics()
    );
    assert_eq!(c.ready_status(), 503, "{}", c.log_tail());
    wait_unavailable(&c, "bob", &bob, Duration::from_secs(2));
}

#[test]
fn a_node_killed_in_a_register_storm_loses_nothing_outside_the_window() {
    let _serial = peers::serial();
    let dir = sipshard_testkit::Scratch::new("cluster-kill");
    let redis = Redis::start(&dir);
    let mut a = Node::start(&dir, "a", &redis.url(), &[]);
    let b = Node::start(&dir, "b", &redis.url(), &[]);
    a.wait_ready(CONVERGE);
    b.wait_ready(CONVERGE);

    // 6,000 AORs at 2,000/s: the kill comes about 1.5 s in.
    let regs = adds("storm", 6000);
    let (stop, acked) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let storm = Storm {
        target: a.addr(),
        window: 64,
        rate: Some(2000.0),
        limit: Duration::from_secs(20),
    }
    .spawn(regs.clone(), stop.clone(), acked.clone());
    let started = eventually_every(Duration::from_secs(20), Duration::from_millis(5), || {
        acked.load(Ordering::Relaxed) >= 3000
    });
    assert!(
        started,
        "A acknowledged only {} REGISTERs",
        acked.load(Ordering::Relaxed)
    );
    let killed_at = Instant::now();
    a.kill_hard();
    stop.store(true, Ordering::Relaxed);
    let answers = storm.join().expect("the storm's thread");

    let must_hold: BTreeSet<String> = answers
        .got
        .iter()
        .enumerate()
        .filter(|(_, a)| matches!(a, Some((200, t)) if *t + CRASH_WINDOW <= killed_at))
        .map(|(i, _)| format!("{}@{DOMAIN}", regs[i].user))
        .collect();
    let acknowledged = answers
        .got
        .iter()
        .filter(|a| matches!(a, Some((200, _))))
        .count();
    assert!(
        must_hold.len() >= 1000,
        "only {} REGISTERs acknowledged before the window ({acknowledged} in all)",
        must_hold.len()
    );

    // B holds them (it may hold more: what A published inside the window).
    let mut missing = Vec::new();
    let held = eventually_every(Duration::from_secs(10), Duration::from_millis(500), || {
        let on_b = b.aors();
        missing = must_hold.difference(&on_b).take(5).cloned().collect();
        missing.is_empty()
    });
    assert!(
        held,
        "B lacks bindings A acknowledged more than {CRASH_WINDOW:?} before its kill (of {} such, {acknowledged} acknowledged in all), first: {missing:?}\nB: {}",
        must_hold.len(),
        b.cluster_metrics()
    );

    // A comes back with nothing but Redis to load from: Redis held them too.
    a.restart(&dir);
    a.wait_ready(CONVERGE);
    let on_a = a.aors();
    let lost: Vec<_> = must_hold.difference(&on_a).take(5).collect();
    assert!(
        lost.is_empty(),
        "restarted A did not load from Redis bindings it acknowledged before the window, first: {lost:?}"
    );
    let table = converge(&[&a, &b], CONVERGE);
    assert!(table.len() >= must_hold.len());
    assert_no_clamps(&[&a, &b]);
    assert!(a.proxy.log().contains("cluster: ready"), "{}", a.log_tail());
}

/// Redis killed for 10 s and restarted empty while both nodes take registrations: both keep
/// answering, converge, and republish, so that Redis holds every binding again (a node started
/// afterwards loads the same table).
#[test]
fn redis_restarted_empty_during_traffic_is_refilled_and_the_nodes_converge() {
    let _serial = peers::serial();
    let dir = sipshard_testkit::Scratch::new("cluster-redis-restart");
    let mut redis = Redis::start(&dir);
    let a = Node::start(&dir, "a", &redis.url(), &[]);
    let b = Node::start(&dir, "b", &redis.url(), &[]);
    a.wait_ready(CONVERGE);
    b.wait_ready(CONVERGE);

    // 300 REGISTERs a second on each node for 16 s.
    let (ra, rb) = (adds("ra", 4800), adds("rb", 4800));
    let stop = Arc::new(AtomicBool::new(false));
    let (acked_a, acked_b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let storm = |n: &Node| Storm {
        target: n.addr(),
        window: 32,
        rate: Some(300.0),
        limit: Duration::from_secs(40),
    };
    let ta = storm(&a).spawn(ra.clone(), stop.clone(), acked_a.clone());
    let tb = storm(&b).spawn(rb.clone(), stop.clone(), acked_b.clone());

    thread::sleep(Duration::from_secs(2));
    redis.kill_hard();
    let down_at = Instant::now();
    for n in [&a, &b] {
        let noticed = eventually_every(Duration::from_secs(8), Duration::from_millis(100), || {
            n.metric("sipshard_cluster_connected") == 0.0
        });
        assert!(
            noticed,
            "node {} still reports Redis connected:\n{}",
            n.id,
            n.cluster_metrics()
        );
    }
    // Registrations are still answered while Redis is away.
    let before = (
        acked_a.load(Ordering::Relaxed),
        acked_b.load(Ordering::Relaxed),
    );
    thread::sleep(Duration::from_secs(1));
    assert!(
        acked_a.load(Ordering::Relaxed) > before.0,
        "A stopped answering without Redis"
    );
    assert!(
        acked_b.load(Ordering::Relaxed) > before.1,
        "B stopped answering without Redis"
    );
    thread::sleep(Duration::from_secs(10).saturating_sub(down_at.elapsed()));
    redis.restart();

    let on_a = all_ok("registrations on A", &ra, &ta.join().expect("A's storm"));
    let on_b = all_ok("registrations on B", &rb, &tb.join().expect("B's storm"));
    let table = converge(&[&a, &b], CONVERGE);
    let everything: BTreeSet<String> = on_a.union(&on_b).cloned().collect();
    assert_eq!(
        aors_of(&table),
        everything,
        "the converged table is not what was registered"
    );
    for n in [&a, &b] {
        assert!(
            n.metric("sipshard_cluster_reconnects_total") >= 1.0,
            "node {}:\n{}",
            n.id,
            n.cluster_metrics()
        );
        assert_eq!(
            n.metric("sipshard_cluster_degraded"),
            0.0,
            "node {}:\n{}",
            n.id,
            n.cluster_metrics()
        );
    }

    // Redis holds them all again: a new node loads the same table.
    let c = Node::start(&dir, "c", &redis.url(), &[]);
    c.wait_ready(CONVERGE);
    let with_c = converge(&[&b, &c], CONVERGE);
    assert_eq!(with_c, table);
    assert_no_clamps(&[&a, &b, &c]);
    let keys = redis.count_keys("sipshard:b:*");
    assert!(
        keys >= everything.len(),
        "{keys} binding keys in Redis for {} bindings",
        everything.len()
    );
}

/// 100,000 AORs registered alternately on A and B, then every one removed through the other
/// node: nothing left anywhere, not on A, not on B, not in Redis (a node started afterwards
/// loads nothing). Lost deletes are the recurring failure of replicated registrars.
#[test]
fn a_hundred_thousand_aors_added_on_both_nodes_and_removed_leave_nothing() {
    const N: usize = 100_000;
    let _serial = peers::serial();
    let dir = sipshard_testkit::Scratch::new("cluster-100k");
    let redis = Redis::start(&dir);
    let a = Node::start(&dir, "a", &redis.url(), &[]);
    let b = Node::start(&dir, "b", &redis.url(), &[]);
    a.wait_ready(CONVERGE);
    b.wait_ready(CONVERGE);
    let started = Instant::now();

    // Even AORs on A, odd on B.
    let users: Vec<String> = (0..N).map(|i| format!("k{i}")).collect();
    let half = |parity: usize, make: fn(String) -> Reg| -> Vec<Reg> {
        users
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == parity)
            .map(|(_, u)| make(u.clone()))
            .collect()
    };
    let fast = |n: &Node| Storm {
        target: n.addr(),
        window: 256,
        rate: None,
        limit: Duration::from_secs(60),
    };
    let none = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let (even, odd) = (half(0, Reg::add), half(1, Reg::add));
    let ta = fast(&a).spawn(even.clone(), none.clone(), count.clone());
    let tb = fast(&b).spawn(odd.clone(), none.clone(), count.clone());
    all_ok("adds on A", &even, &ta.join().expect("A's storm"));
    all_ok("adds on B", &odd, &tb.join().expect("B's storm"));
    let added = started.elapsed();

    // Each node holds all of them before they are removed through the other one.
    for n in [&a, &b] {
        let mut have = 0.0;
        let all = eventually_every(CONVERGE, Duration::from_millis(500), || {
            have = n.metric(BINDINGS);
            have >= N as f64
        });
        assert!(
            all,
            "node {} holds {have} of {N} bindings:\n{}",
            n.id,
            n.cluster_metrics()
        );
    }
    let table = converge(&[&a, &b], CONVERGE);
    assert_eq!(table.len(), N);

    let (even_gone, odd_gone) = (half(0, Reg::remove), half(1, Reg::remove));
    let ta = fast(&a).spawn(odd_gone.clone(), none.clone(), count.clone());
    let tb = fast(&b).spawn(even_gone.clone(), none.clone(), count.clone());
    all_ok("removals on A", &odd_gone, &ta.join().expect("A's storm"));
    all_ok("removals on B", &even_gone, &tb.join().expect("B's storm"));

    let table = converge(&[&a, &b], CONVERGE);
    assert!(
        table.is_empty(),
        "{} bindings left after every removal, first: {:?}",
        table.len(),
        table.iter().take(5).collect::<Vec<_>>()
    );
    for n in [&a, &b] {
        let mut have = -1.0;
        let zero = eventually_every(Duration::from_secs(10), Duration::from_millis(200), || {
            have = n.metric(BINDINGS);
            have == 0.0
        });
        assert!(
            zero,
            "node {} reports {have} bindings:\n{}",
            n.id,
            n.cluster_metrics()
        );
    }

    // Redis holds no live binding: a node started now loads nothing. Tombstones may be keys,
    // but each must go away by itself (a TTL), or 100,000 removed AORs stay in Redis forever.
    let c = Node::start(&dir, "c", &redis.url(), &[]);
    c.wait_ready(CONVERGE);
    let on_c = c.table();
    assert!(
        on_c.is_empty(),
        "node c loaded {} bindings, first: {:?}",
        on_c.len(),
        on_c.iter().take(5).collect::<Vec<_>>()
    );
    let keys = redis.keys("sipshard:b:*");
    let forever: Vec<&String> = keys
        .iter()
        .step_by((keys.len() / 50).max(1))
        .filter(|k| redis.cli(&["TTL", k]).trim() == "-1")
        .take(5)
        .collect();
    assert!(
        forever.is_empty(),
        "{} binding keys left in Redis after every removal, some without a TTL: {forever:?}",
        keys.len()
    );
    eprintln!(
        "{N} AORs added on two nodes in {added:?}, all removed and checked in {:?}; {} binding keys (tombstones) left in Redis, {} bytes used",
        started.elapsed(),
        keys.len(),
        redis.used_memory()
    );
    assert_no_clamps(&[&a, &b, &c]);
}

/// Nodes that reach Redis through Sentinel follow a failover under load, asked for and then
/// provoked by killing the primary: after each, the nodes converge and a node started then
/// loads the same table from the new primary.
#[test]
fn nodes_follow_a_sentinel_failover_under_load() {
    let _serial = peers::serial();
    let dir = sipshard_testkit::Scratch::new("cluster-sentinel");
    let mut sentinel = Sentinel::start(&dir);
    let url = sentinel.url();
    let a = Node::start(&dir, "a", &url, &[]);
    let b = Node::start(&dir, "b", &url, &[]);
    a.wait_ready(CONVERGE);
    b.wait_ready(CONVERGE);

    let mut everything = BTreeSet::new();
    for (round, how) in ["asked", "killed"].iter().enumerate() {
        // 300 REGISTERs a second on each node for 5 s, the failover 1.5 s in.
        let (ra, rb) = (
            adds(&format!("s{round}a"), 1500),
            adds(&format!("s{round}b"), 1500),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let storm = |n: &Node| Storm {
            target: n.addr(),
            window: 32,
            rate: Some(300.0),
            limit: Duration::from_secs(40),
        };
        let ta = storm(&a).spawn(ra.clone(), stop.clone(), acked.clone());
        let tb = storm(&b).spawn(rb.clone(), stop.clone(), acked.clone());
        thread::sleep(Duration::from_millis(1500));
        let old = sentinel.master().expect("a primary");
        let new = if *how == "asked" {
            sentinel.failover(CONVERGE)
        } else {
            let killed = sentinel.kill_primary();
            sentinel.wait_new_master(killed, CONVERGE)
        };
        assert_ne!(new, old);
        everything.extend(all_ok(
            "registrations on A",
            &ra,
            &ta.join().expect("A's storm"),
        ));
        everything.extend(all_ok(
            "registrations on B",
            &rb,
            &tb.join().expect("B's storm"),
        ));

        let table = converge(&[&a, &b], CONVERGE);
        assert_eq!(
            aors_of(&table),
            everything,
            "after the failover ({how}), the nodes hold other AORs than were registered"
        );
        let fresh = Node::start(&dir, &format!("fresh{round}"), &url, &[]);
        fresh.wait_ready(CONVERGE);
        let loaded = converge(&[&b, &fresh], CONVERGE);
        assert_eq!(
            loaded, table,
            "a node started after the failover ({how}) loads another table"
        );
        assert_no_clamps(&[&a, &b, &fresh]);
        // The old primary follows the new one before the next round kills it.
        if round == 0 {
            sentinel.wait_known(CONVERGE);
        }
    }
}

/// `--redis` naming a port nobody listens on: the node serves from memory at once (OPTIONS,
/// REGISTER, calls), is not ready and reports Redis unreachable; once a redis-server appears on
/// that port it connects, becomes ready and publishes what it holds.
#[test]
fn a_node_serves_without_redis_and_becomes_ready_when_it_appears() {
    let _serial = peers::serial();
    let dir = sipshard_testkit::Scratch::new("cluster-no-redis");
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/0");
    let a = Node::start(&dir, "a", &url, &[]);

    let bob = Ua::new();
    let r = register(
        &bob,
        a.addr(),
        "bob",
        DOMAIN,
        &format!("<sip:bob@{}>", bob.addr),
        1,
        "",
    );
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    wait_forwarded(&a, "bob", &bob, Duration::from_secs(5));
    assert_eq!(a.ready_status(), 503);
    let (_, body) = http(a.admin(), "GET /ready");
    assert!(body.contains("\"ready\":false"), "{body}");
    assert_eq!(
        a.metric("sipshard_cluster_ready"),
        0.0,
        "{}",
        a.cluster_metrics()
    );
    assert_eq!(
        a.metric("sipshard_cluster_connected"),
        0.0,
        "{}",
        a.cluster_metrics()
    );
    assert!(
        !a.proxy.log().contains("cluster: ready"),
        "{}",
        a.log_tail()
    );
    // Still not ready a while later (the reconnect backoff keeps it trying, it never gives up).
    thread::sleep(Duration::from_secs(2));
    assert_eq!(a.ready_status(), 503);

    let redis = Redis::start_on(&dir, port);
    a.wait_ready(CONVERGE);
    assert_eq!(
        a.metric("sipshard_cluster_ready"),
        1.0,
        "{}",
        a.cluster_metrics()
    );
    assert_eq!(
        a.metric("sipshard_cluster_connected"),
        1.0,
        "{}",
        a.cluster_metrics()
    );
    assert!(a.proxy.log().contains("cluster: ready"), "{}", a.log_tail());
    // What it registered while alone reaches Redis, and from there a new node.
    let b = Node::start(&dir, "b", &redis.url(), &[]);
    b.wait_ready(CONVERGE);
    let table = converge(&[&a, &b], CONVERGE);
    assert_eq!(
        aors_of(&table),
        BTreeSet::from(["bob@example.com".to_string()])
    );
    wait_forwarded(&b, "bob", &bob, Duration::from_secs(5));
    assert_no_clamps(&[&a, &b]);
}
