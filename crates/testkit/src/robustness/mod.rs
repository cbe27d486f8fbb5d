//! Sends mutation cases ([`crate::mutate`]) to a proxy and says what became of each:
//! forwarded to the sink UA, answered, or dropped.
//!
//! Deciding is fast and deterministic because the proxy handles one sender's messages in order
//! (sipshard with one shard; Kamailio with one worker): after each case the sender sends two
//! markers, an OPTIONS for the proxy itself (answered 200) and an OPTIONS for bob (forwarded to
//! the sink). Once the first marker's answer is back, every answer to the case has arrived
//! before it; once the second reaches the sink, so has any forwarded copy of the case. Every
//! wait is bounded; a marker that never comes back is a hang (over UDP), or over TCP a stream
//! the case broke (the connection is then replaced, and the process's liveness checked apart).

mod sender;
pub mod verdict;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::mutate::{Base, Case, Expect};
pub use sender::{Heard, Sender};

/// What became of one case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The sink received it: the copy as it arrived.
    Forwarded(Vec<u8>),
    /// A response came back with this status.
    Answered(u16),
    /// Nothing came back and nothing was forwarded.
    Dropped,
    /// TCP: the proxy closed the connection without an answer.
    Closed,
    /// TCP: the marker after it was never answered (the case left the stream waiting for
    /// more bytes, which the markers then fed).
    Stalled,
    /// Could not be sent at all (a datagram above 65,507 bytes).
    Unsendable,
}

impl Outcome {
    /// `forwarded`, `refused` (any 3xx-6xx answer) or `dropped` (no answer, closed, stalled),
    /// `accepted` (a 1xx/2xx answer: a REGISTER the registrar took), `unsendable`.
    pub fn class(&self) -> &'static str {
        match self {
            Outcome::Forwarded(_) => "forwarded",
            Outcome::Answered(s) if *s >= 300 => "refused",
            Outcome::Answered(_) => "accepted",
            Outcome::Dropped | Outcome::Closed | Outcome::Stalled => "dropped",
            Outcome::Unsendable => "unsendable",
        }
    }
}

/// A marker's answer never came: the proxy hung or died while handling `case`.
#[derive(Debug)]
pub struct Hang;

/// How long a marker may take before the proxy counts as hung (over TCP: before the case
/// counts as having stalled the stream), and after a case that may break a stream's framing.
const MARKER_PATIENCE: Duration = Duration::from_secs(2);
const STREAM_PATIENCE: Duration = Duration::from_millis(500);
/// After a TCP stream broke: how long the sink is still read for a copy of the case.
const SINK_GRACE: Duration = Duration::from_millis(30);

pub struct Runner {
    pub target: SocketAddr,
    pub sender: Sender,
    pub sink: UdpSocket,
    /// The domain bob is registered in (marker B goes to `sip:bob@DOMAIN`).
    pub domain: String,
    markers: u64,
}

impl Runner {
    pub fn new(target: SocketAddr, sender: Sender, sink: UdpSocket, domain: &str) -> Runner {
        Runner {
            target,
            sender,
            sink,
            domain: domain.to_string(),
            markers: 0,
        }
    }

    /// Send `case` and decide its outcome.
    pub fn run(&mut self, case: &Case) -> Result<Outcome, Hang> {
        self.markers += 1;
        let n = self.markers;
        let bytes = case.bytes_for(self.sender.addr(), self.sender.transport());
        if !self.sender.send(self.target, &bytes) {
            return Ok(self.unsent());
        }
        // A REGISTER is never forwarded, and the cases' own REGISTERs may bind bob elsewhere
        // than the sink: only INVITE cases need the sink's marker.
        let to_sink = case.base == Base::Invite;
        // Only a case that may break a stream's framing may stall it: any other gets the full
        // patience, so that a slow machine never passes for a stalled stream.
        let stalls = self.sender.is_stream() && case.expect_stream == Expect::Either;
        let patience = if stalls {
            STREAM_PATIENCE
        } else {
            MARKER_PATIENCE
        };
        let answers = match self.send_markers(n, to_sink) {
            true => self.answers(n, patience),
            false => Answers {
                first: None,
                end: End::Closed,
            },
        };
        let sink = match (to_sink, answers.end) {
            (false, _) => Sink {
                copy: None,
                marker: true,
            },
            (true, End::Marker) => self.sink_until(n, MARKER_PATIENCE),
            (true, _) => self.sink_until(n, SINK_GRACE),
        };
        self.decide(answers, sink)
    }

    /// Marker A (answered by the proxy) and, when `to_sink`, marker B (forwarded to the sink).
    fn send_markers(&mut self, n: u64, to_sink: bool) -> bool {
        let (me, transport) = (self.sender.addr(), self.sender.transport());
        let a = marker(self.target, me, transport, &format!("marker-a-{n}"), None);
        let b = marker(
            self.target,
            me,
            transport,
            &format!("marker-b-{n}"),
            Some(&self.domain),
        );
        self.sender.send(self.target, a.as_bytes())
            && (!to_sink || self.sender.send(self.target, b.as_bytes()))
    }

    fn unsent(&mut self) -> Outcome {
        if self.sender.is_stream() {
            self.sender.reconnect();
            return Outcome::Closed;
        }
        Outcome::Unsendable
    }

    fn decide(&mut self, answers: Answers, sink: Sink) -> Result<Outcome, Hang> {
        let stream = self.sender.is_stream();
        if stream && answers.end != End::Marker {
            self.sender.reconnect();
        }
        if let Some(copy) = sink.copy {
            return Ok(Outcome::Forwarded(copy));
        }
        if let Some(status) = answers.first {
            return Ok(Outcome::Answered(status));
        }
        match answers.end {
            End::Marker if sink.marker => Ok(Outcome::Dropped),
            End::Closed => Ok(Outcome::Closed),
            _ if stream => Ok(Outcome::Stalled),
            _ => Err(Hang),
        }
    }

    /// The first answer to the case, read up to marker A's answer.
    fn answers(&mut self, n: u64, patience: Duration) -> Answers {
        let deadline = Instant::now() + patience;
        let mine = format!("marker-a-{n}");
        let mut first = None;
        loop {
            match self.sender.recv(deadline) {
                Heard::Message(m) if call_id_is(&m, &mine) => {
                    return Answers {
                        first,
                        end: End::Marker,
                    }
                }
                Heard::Message(m) if is_marker(&m) || !m.starts_with(b"SIP/2.0 ") => {}
                Heard::Message(m) => {
                    first = first.or(Some(status(&m)));
                }
                Heard::Silence => {
                    return Answers {
                        first,
                        end: End::Silence,
                    }
                }
                Heard::Closed => {
                    return Answers {
                        first,
                        end: End::Closed,
                    }
                }
            }
        }
    }

    /// What the sink holds up to marker B `n` (or for `patience` when it does not come).
    fn sink_until(&mut self, n: u64, patience: Duration) -> Sink {
        let deadline = Instant::now() + patience;
        let mine = format!("marker-b-{n}");
        let mut copy = None;
        let mut buf = vec![0u8; 65_535];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            self.sink
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let Ok(len) = self.sink.recv(&mut buf) else {
                break;
            };
            let m = &buf[..len];
            if call_id_is(m, &mine) {
                return Sink { copy, marker: true };
            }
            if !is_marker(m) && copy.is_none() {
                copy = Some(m.to_vec());
            }
        }
        Sink {
            copy,
            marker: false,
        }
    }

    /// Whether the target still answers an OPTIONS from a fresh UDP socket within 2 s.
    pub fn alive(&self) -> bool {
        let probe = UdpSocket::bind("127.0.0.1:0").expect("bind a probe socket");
        let me = probe.local_addr().unwrap();
        let msg = marker(self.target, me, "UDP", "liveness-probe", None);
        let deadline = Instant::now() + MARKER_PATIENCE;
        let _ = probe.send_to(msg.as_bytes(), self.target);
        let mut buf = vec![0u8; 65_535];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            probe
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match probe.recv(&mut buf) {
                Ok(n) if call_id_is(&buf[..n], "liveness-probe") => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
        false
    }
}

/// How reading the sender's side ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Marker,
    Silence,
    Closed,
}

struct Answers {
    first: Option<u16>,
    end: End,
}

struct Sink {
    copy: Option<Vec<u8>>,
    /// Marker B arrived.
    marker: bool,
}

/// An OPTIONS from `me`: for the proxy itself (`user` none: answered by it) or for
/// `bob@DOMAIN` (forwarded to the sink).
pub fn marker(
    target: SocketAddr,
    me: SocketAddr,
    transport: &str,
    call_id: &str,
    domain: Option<&str>,
) -> String {
    let uri = match domain {
        Some(d) => format!("sip:bob@{d}"),
        None => format!("sip:{target}"),
    };
    format!(
        "OPTIONS {uri} SIP/2.0\r\nVia: SIP/2.0/{transport} {me};branch=z9hG4bK{call_id};rport\r\nMax-Forwards: 70\r\nFrom: <sip:marker@example.org>;tag=m\r\nTo: <{uri}>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Whether the Call-ID line of `msg` is exactly `id`.
fn call_id_is(msg: &[u8], id: &str) -> bool {
    header_value(msg, "call-id").is_some_and(|v| v == id.as_bytes())
}

fn is_marker(msg: &[u8]) -> bool {
    header_value(msg, "call-id")
        .is_some_and(|v| v.starts_with(b"marker-") || v == b"liveness-probe")
}

/// The first value of header `name` (full name, lower case) in the header section of `msg`.
fn header_value<'a>(msg: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let head_end = msg
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(msg.len());
    msg[..head_end]
        .split(|&b| b == b'\n')
        .skip(1)
        .find_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let n = &line[..colon];
            n.trim_ascii()
                .eq_ignore_ascii_case(name.as_bytes())
                .then(|| line[colon + 1..].trim_ascii())
        })
}

/// The status code of a response.
fn status(msg: &[u8]) -> u16 {
    std::str::from_utf8(msg.get(8..11).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
