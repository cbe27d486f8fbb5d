//! A user agent played by the test itself: one UDP socket on loopback that sends exactly the
//! messages the test writes and hands back exactly what arrives, with no transaction layer in
//! between, so that a test sees every retransmission, stray response and silence.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use crate::sip::wire;

/// One UDP socket on loopback. The fields are public so that a test can bind another loopback
/// address (`127.0.0.2`) to play a second host.
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
    /// A socket on an ephemeral port of 127.0.0.1.
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

    /// Send bytes exactly as given.
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
