//! A SIP client that behaves like a UDP client transaction (RFC 3261 section 17.1): it
//! retransmits its request until a final response comes. For the tests that only need an
//! answer (registering a SIPp agent, probing a peer until it is up, querying bindings) from
//! peers and proxies that may lose or delay a datagram under load.

use std::fmt::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A parsed SIP response (just what the tests look at).
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub text: String,
}

impl Response {
    pub fn parse(text: &str) -> Option<Response> {
        let status = text.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()?;
        Some(Response {
            status,
            text: text.to_string(),
        })
    }

    /// Values of header `name` (or its compact form), one per line as received.
    pub fn headers<'a>(&'a self, name: &'a str, compact: &'a str) -> impl Iterator<Item = &'a str> {
        self.text
            .split("\r\n")
            .skip(1)
            .take_while(|l| !l.is_empty())
            .filter_map(move |l| {
                let (n, v) = l.split_once(':')?;
                let n = n.trim();
                (n.eq_ignore_ascii_case(name)
                    || (!compact.is_empty() && n.eq_ignore_ascii_case(compact)))
                .then(|| v.trim())
            })
    }

    /// Contact values, split at commas (the URIs here carry no quoted commas).
    pub fn contacts(&self) -> Vec<String> {
        self.headers("Contact", "m")
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect()
    }
}

/// A SIP user agent on an ephemeral 127.0.0.1 port that sends one request at a time and
/// retransmits it like a UDP client transaction (timer E doubling from 500 ms).
pub struct SipClient {
    sock: UdpSocket,
    pub local: SocketAddr,
    seq: AtomicU64,
}

impl Default for SipClient {
    fn default() -> Self {
        Self::new()
    }
}

impl SipClient {
    pub fn new() -> SipClient {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind UA socket");
        let local = sock.local_addr().expect("UA address");
        SipClient {
            sock,
            local,
            seq: AtomicU64::new(1),
        }
    }

    fn next(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Send `request` to `to` and return its final response, retransmitting for up to
    /// `limit`; None if none came.
    pub fn transact(&self, to: SocketAddr, request: &str, limit: Duration) -> Option<Response> {
        let branch = request
            .split("branch=")
            .nth(1)
            .and_then(|r| r.split([';', '\r']).next())
            .unwrap_or("")
            .to_string();
        let deadline = Instant::now() + limit;
        let mut interval = Duration::from_millis(500);
        let mut buf = vec![0u8; 65_536];
        loop {
            self.sock.send_to(request.as_bytes(), to).ok()?;
            let resend_at = (Instant::now() + interval).min(deadline);
            loop {
                let now = Instant::now();
                if now >= resend_at {
                    break;
                }
                self.sock.set_read_timeout(Some(resend_at - now)).ok()?;
                let Ok((n, _)) = self.sock.recv_from(&mut buf) else {
                    continue;
                };
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                match Response::parse(&text) {
                    Some(r) if r.status >= 200 && text.contains(&branch) => return Some(r),
                    _ => {}
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            interval = (interval * 2).min(Duration::from_secs(4));
        }
    }

    /// `OPTIONS sip:HOST:PORT` (a keepalive probe); one try of `limit`.
    pub fn options(&self, to: SocketAddr, limit: Duration) -> Option<Response> {
        let n = self.next();
        let req = format!(
            "OPTIONS sip:{to} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bKprobe{pid}x{n};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:probe@{local}>;tag=probe{n}\r\n\
             To: <sip:{to}>\r\n\
             Call-ID: probe-{pid}-{n}@{local}\r\n\
             CSeq: {n} OPTIONS\r\n\
             Content-Length: 0\r\n\r\n",
            local = self.local,
            pid = std::process::id(),
        );
        self.transact(to, &req, limit)
    }

    /// REGISTER for `aor` (`sip:user@host[:port]`) sent to `to`. `contacts` empty = a query;
    /// `expires` None = no Expires header.
    pub fn register(
        &self,
        to: SocketAddr,
        aor: &str,
        contacts: &[&str],
        expires: Option<u32>,
    ) -> Response {
        let n = self.next();
        let domain = aor.split_once('@').map_or(aor, |(_, d)| d);
        let mut req = format!(
            "REGISTER sip:{domain} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bKreg{pid}x{n};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <{aor}>;tag=reg{n}\r\n\
             To: <{aor}>\r\n\
             Call-ID: reg-{pid}-{n}@{local}\r\n\
             CSeq: {n} REGISTER\r\n",
            local = self.local,
            pid = std::process::id(),
        );
        for c in contacts {
            let _ = write!(req, "Contact: <{c}>\r\n");
        }
        if let Some(e) = expires {
            let _ = write!(req, "Expires: {e}\r\n");
        }
        req.push_str("Content-Length: 0\r\n\r\n");
        self.transact(to, &req, Duration::from_secs(8))
            .unwrap_or_else(|| panic!("no response to REGISTER from {to}:\n{req}"))
    }
}
