//! Test harness: start the real `sipshard` binary on loopback, and play user agents over real
//! UDP sockets. Everything is bounded in time; processes are killed when dropped.
#![allow(dead_code)]

pub mod scrape;

use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free UDP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral port");
    s.local_addr().unwrap().port()
}

/// A running sipshard.
pub struct Proxy {
    child: Option<Child>,
    pub addr: SocketAddr,
}

impl Proxy {
    /// Start with `--listen 127.0.0.1:<free port>` plus `args`; returns once it answers OPTIONS.
    pub fn start(args: &[&str]) -> Proxy {
        let port = free_port();
        Self::start_on(port, args)
    }

    pub fn start_on(port: u16, args: &[&str]) -> Proxy {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sipshard"))
            .arg("--listen")
            .arg(addr.to_string())
            .args(args)
            .args(["--log-level", "info"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sipshard");
        let p = Proxy {
            child: Some(child),
            addr,
        };
        p.wait_ready();
        p
    }

    fn wait_ready(&self) {
        let ua = Ua::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut n = 0;
        while Instant::now() < deadline {
            n += 1;
            let ping = format!(
                "OPTIONS sip:{a} SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bKready{n}\nFrom: <sip:probe@{me}>;tag=p\nTo: <sip:{a}>\nCall-ID: ready-{n}\nCSeq: 1 OPTIONS\nMax-Forwards: 70\n\n",
                a = self.addr,
                me = ua.addr
            );
            ua.send(self.addr, &ping);
            if let Some(r) = ua.recv_within(Duration::from_millis(200)) {
                assert!(r.starts_with("SIP/2.0 200"), "keepalive answered with {r}");
                return;
            }
        }
        panic!(
            "sipshard on {} did not answer OPTIONS within 10 s",
            self.addr
        );
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill_hard(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Send a signal (e.g. `libc::SIGHUP`) to the running process.
    pub fn signal(&self, sig: i32) {
        let pid = self.child.as_ref().expect("running").id() as i32;
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(pid, sig);
        }
    }

    /// SIGTERM, wait, and return everything it logged.
    pub fn stop(mut self) -> String {
        let mut child = self.child.take().unwrap();
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                assert!(status.success(), "sipshard exited with {status}");
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("sipshard did not stop within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut log = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut log);
        }
        log
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A user agent: one UDP socket on loopback.
pub struct Ua {
    pub sock: UdpSocket,
    pub addr: SocketAddr,
}

impl Default for Ua {
    fn default() -> Self {
        Self::new()
    }
}

impl Ua {
    pub fn new() -> Ua {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind UA socket");
        let addr = sock.local_addr().unwrap();
        Ua { sock, addr }
    }

    /// Send a message written with `\n` line ends; CRLF and Content-Length are filled in.
    pub fn send(&self, to: SocketAddr, msg: &str) {
        let wire = wire(msg);
        self.sock.send_to(wire.as_bytes(), to).expect("send");
    }

    pub fn send_raw(&self, to: SocketAddr, bytes: &[u8]) {
        self.sock.send_to(bytes, to).expect("send");
    }

    pub fn recv_within(&self, t: Duration) -> Option<String> {
        self.recv_from_within(t).map(|(m, _)| m)
    }

    pub fn recv_from_within(&self, t: Duration) -> Option<(String, SocketAddr)> {
        self.sock.set_read_timeout(Some(t)).unwrap();
        let mut buf = vec![0u8; 65_535];
        match self.sock.recv_from(&mut buf) {
            Ok((n, from)) => Some((String::from_utf8_lossy(&buf[..n]).into_owned(), from)),
            Err(_) => None,
        }
    }

    /// The next message; fails the test after 3 s.
    pub fn recv(&self) -> String {
        self.recv_within(Duration::from_secs(3))
            .unwrap_or_else(|| panic!("UA {} received nothing within 3 s", self.addr))
    }

    /// The next message that is not a 100 Trying.
    pub fn recv_final(&self) -> String {
        loop {
            let m = self.recv();
            if !m.starts_with("SIP/2.0 100") {
                return m;
            }
        }
    }

    /// Assert that nothing arrives for `t`.
    pub fn expect_silence(&self, t: Duration) {
        if let Some(m) = self.recv_within(t) {
            panic!("UA {} expected nothing, got:\n{m}", self.addr);
        }
    }
}

/// CRLF line ends and a correct Content-Length (replacing any given).
pub fn wire(msg: &str) -> String {
    let msg = msg.replace("\r\n", "\n");
    let (head, body) = match msg.find("\n\n") {
        Some(i) => (&msg[..i], &msg[i + 2..]),
        None => (msg.trim_end_matches('\n'), ""),
    };
    let body = body.replace('\n', "\r\n");
    let mut out = String::new();
    for line in head.lines() {
        if line.to_ascii_lowercase().starts_with("content-length:") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    out
}

/// Values of header `name` (full name, case-insensitive) in order, one per line.
pub fn headers<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .collect()
}

pub fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    headers(msg, name)
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no {name} in:\n{msg}"))
}

/// The first line.
pub fn start_line(msg: &str) -> &str {
    msg.lines().next().unwrap_or("")
}

/// Build a response to `req` with `status`, copying Via/From/To/Call-ID/CSeq, adding a To
/// tag and the given extra header lines (`\n`-separated) and body.
pub fn respond(req: &str, status: &str, to_tag: &str, extra: &str, body: &str) -> String {
    let mut out = format!("SIP/2.0 {status}\n");
    for v in headers(req, "Via") {
        out.push_str(&format!("Via: {v}\n"));
    }
    for rr in headers(req, "Record-Route") {
        out.push_str(&format!("Record-Route: {rr}\n"));
    }
    out.push_str(&format!("From: {}\n", header(req, "From")));
    let to = header(req, "To");
    if to.contains("tag=") || to_tag.is_empty() {
        out.push_str(&format!("To: {to}\n"));
    } else {
        out.push_str(&format!("To: {to};tag={to_tag}\n"));
    }
    out.push_str(&format!("Call-ID: {}\n", header(req, "Call-ID")));
    out.push_str(&format!("CSeq: {}\n", header(req, "CSeq")));
    if !extra.is_empty() {
        out.push_str(extra.trim_end_matches('\n'));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(body);
    out
}

/// The SDP offer of RFC 3665 section 3.1 F1 (shortened).
pub const SDP: &str = "v=0\no=alice 2890844526 2890844526 IN IP4 client.atlanta.example.com\ns=-\nc=IN IP4 192.0.2.101\nt=0 0\nm=audio 49172 RTP/AVP 0\na=rtpmap:0 PCMU/8000\n";

/// REGISTER `user@domain` with `contact` through/at `registrar`, from `ua`; returns the reply.
pub fn register(
    ua: &Ua,
    registrar: SocketAddr,
    user: &str,
    domain: &str,
    contact: &str,
    cseq: u32,
    extra: &str,
) -> String {
    let msg = format!(
        "REGISTER sip:{domain} SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bKreg{user}{cseq}\nMax-Forwards: 70\nTo: Bob <sip:{user}@{domain}>\nFrom: Bob <sip:{user}@{domain}>;tag=456248\nCall-ID: reg-{user}-843817637684230@998sdasdh09\nCSeq: {cseq} REGISTER\n{contact_line}{extra}\n",
        me = ua.addr,
        contact_line = if contact.is_empty() { String::new() } else { format!("Contact: {contact}\n") },
    );
    ua.send(registrar, &msg);
    // No pause is needed after the 200: every shard applies queued replicas before handling
    // the next datagram (src/shard/replication.rs).
    ua.recv_final()
}
