//! What one worker measured: counters and latency histograms, merged across workers at the end.
//!
//! Each worker owns its `Stats` outright (no atomics, no sharing on the hot path); the reporter
//! gets a copy once a second and the final copies are added together when the workers join.
//! Latencies are recorded in microseconds in HdrHistograms with three significant digits, enough
//! for p99.9 of a sub-millisecond loopback call and for the 32 s of an RFC 3261 Timer B.

use hdrhistogram::Histogram;

/// Highest value a histogram can record: one hour in microseconds (anything later saturates).
const MAX_US: u64 = 3_600_000_000;

pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

/// Record `ns` nanoseconds as microseconds (at least 1, at most the histogram bound).
#[inline]
pub fn record_ns(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record((ns / 1000).clamp(1, MAX_US));
}

/// Why an attempt failed (RFC 3261 gives the three ways a UDP transaction can go wrong for a
/// client: no answer in time, an answer it did not want, or something that is not an answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Timer B or F (64*T1) fired, or the answering side never got its ACK.
    Timeout,
    /// A final status not in the expected set (486 unless `--expect 486`, 401 without password).
    UnexpectedStatus,
    /// A message that does not fit the call's state (a BYE answer before the INVITE's, ...).
    UnexpectedMessage,
}

/// Counters of one side (the side that starts attempts, or the side that answers them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Side {
    pub attempted: u64,
    pub succeeded: u64,
    pub failed_timeout: u64,
    pub failed_status: u64,
    pub failed_unexpected: u64,
}

impl Side {
    pub fn failed(&self) -> u64 {
        self.failed_timeout + self.failed_status + self.failed_unexpected
    }

    pub fn in_flight(&self) -> u64 {
        self.attempted
            .saturating_sub(self.succeeded + self.failed())
    }

    pub fn fail(&mut self, cause: Cause) {
        match cause {
            Cause::Timeout => self.failed_timeout += 1,
            Cause::UnexpectedStatus => self.failed_status += 1,
            Cause::UnexpectedMessage => self.failed_unexpected += 1,
        }
    }

    pub fn add(&mut self, o: &Side) {
        self.attempted += o.attempted;
        self.succeeded += o.succeeded;
        self.failed_timeout += o.failed_timeout;
        self.failed_status += o.failed_status;
        self.failed_unexpected += o.failed_unexpected;
    }
}

/// Retransmissions we sent, by what was retransmitted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Retrans {
    /// Timer A (RFC 3261 section 17.1.1.2).
    pub invite: u64,
    /// Timer E for BYE, REGISTER and OPTIONS (section 17.1.2.2).
    pub non_invite: u64,
    /// ACKs re-sent for a retransmitted 2xx (section 13.2.2.4).
    pub ack: u64,
    /// Final responses re-sent by the answering side until the ACK came (section 13.3.1.4).
    pub response: u64,
}

impl Retrans {
    pub fn total(&self) -> u64 {
        self.invite + self.non_invite + self.ack + self.response
    }

    pub fn add(&mut self, o: &Retrans) {
        self.invite += o.invite;
        self.non_invite += o.non_invite;
        self.ack += o.ack;
        self.response += o.response;
    }
}

/// TLS handshakes (`--transport tls`): the ones that opened the run's connections, or every
/// cycle of `--tls-handshakes-only`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Handshakes {
    /// Full handshakes (certificate and key exchange; with or without a HelloRetryRequest).
    pub full: u64,
    /// Resumed sessions (TLS 1.3 ticket or TLS 1.2 session id).
    pub resumed: u64,
    /// Handshakes that failed (refused, reset, timed out, no pong).
    pub failed: u64,
}

impl Handshakes {
    pub fn done(&self) -> u64 {
        self.full + self.resumed
    }

    pub fn add(&mut self, o: &Handshakes) {
        self.full += o.full;
        self.resumed += o.resumed;
        self.failed += o.failed;
    }
}

/// Cumulative counters of a worker; cheap to clone for the per-second snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Attempts the scenario started (calls, REGISTERs, OPTIONS) and how they ended.
    pub client: Side,
    /// Calls the answering side (UAS) received and how they ended.
    pub server: Side,
    /// Users registered before the call phase (the UAS side of `call`).
    pub registered: u64,
    pub registration_failed: u64,
    pub retrans: Retrans,
    /// Messages that matched no live transaction (late retransmissions, other runs).
    pub stray: u64,
    /// Datagrams that did not parse as SIP.
    pub unparseable: u64,
    pub send_errors: u64,
    /// Datagrams the generator's own sockets dropped (receive buffer full: it fell behind).
    pub socket_drops: u64,
    pub datagrams_sent: u64,
    pub datagrams_received: u64,
    /// Connections the target closed or broke during the run (`--transport tcp` or `tls`).
    pub connections_lost: u64,
    pub handshakes: Handshakes,
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        self.client.add(&o.client);
        self.server.add(&o.server);
        self.registered += o.registered;
        self.registration_failed += o.registration_failed;
        self.retrans.add(&o.retrans);
        self.stray += o.stray;
        self.unparseable += o.unparseable;
        self.send_errors += o.send_errors;
        self.socket_drops += o.socket_drops;
        self.datagrams_sent += o.datagrams_sent;
        self.datagrams_received += o.datagrams_received;
        self.connections_lost += o.connections_lost;
        self.handshakes.add(&o.handshakes);
    }
}

/// The latency histograms of the report (RFC 6076 names them session request delay and
/// registration request delay; we name them by the messages they span).
pub struct Hists {
    pub invite_to_180: Histogram<u64>,
    pub invite_to_200: Histogram<u64>,
    pub bye_to_200: Histogram<u64>,
    pub register_to_200: Histogram<u64>,
    pub options_to_200: Histogram<u64>,
    /// How late the generator sent each attempt relative to its schedule.
    pub lag: Histogram<u64>,
    /// How long each received datagram waited in the socket before the generator read it
    /// (kernel timestamp to processing): the generator's lag on the receiving side.
    pub rx_lag: Histogram<u64>,
    /// TLS connections: from the TCP connect to the pong that confirmed the handshake.
    pub tls_handshake: Histogram<u64>,
}

impl Default for Hists {
    fn default() -> Self {
        Hists {
            invite_to_180: new_hist(),
            invite_to_200: new_hist(),
            bye_to_200: new_hist(),
            register_to_200: new_hist(),
            options_to_200: new_hist(),
            lag: new_hist(),
            rx_lag: new_hist(),
            tls_handshake: new_hist(),
        }
    }
}

impl Hists {
    pub fn add(&mut self, o: &Hists) {
        // Same bounds everywhere, so addition cannot fail.
        let _ = self.invite_to_180.add(&o.invite_to_180);
        let _ = self.invite_to_200.add(&o.invite_to_200);
        let _ = self.bye_to_200.add(&o.bye_to_200);
        let _ = self.register_to_200.add(&o.register_to_200);
        let _ = self.options_to_200.add(&o.options_to_200);
        let _ = self.lag.add(&o.lag);
        let _ = self.rx_lag.add(&o.rx_lag);
        let _ = self.tls_handshake.add(&o.tls_handshake);
    }

    /// `(name, histogram)` in report order.
    pub fn named(&self) -> [(&'static str, &Histogram<u64>); 8] {
        [
            ("invite_to_180", &self.invite_to_180),
            ("invite_to_200", &self.invite_to_200),
            ("bye_to_200", &self.bye_to_200),
            ("register_to_200", &self.register_to_200),
            ("options_to_200", &self.options_to_200),
            ("generator_lag", &self.lag),
            ("generator_rx_lag", &self.rx_lag),
            ("tls_handshake", &self.tls_handshake),
        ]
    }
}

/// Final statuses counted by code (only 3xx-6xx are kept: the interesting ones).
#[derive(Clone, Debug)]
pub struct StatusCounts(pub Vec<u64>);

impl Default for StatusCounts {
    fn default() -> Self {
        StatusCounts(vec![0; 700])
    }
}

impl StatusCounts {
    #[inline]
    pub fn bump(&mut self, code: u16) {
        if let Some(c) = self.0.get_mut(code as usize) {
            *c += 1;
        }
    }

    pub fn add(&mut self, o: &StatusCounts) {
        for (a, b) in self.0.iter_mut().zip(&o.0) {
            *a += b;
        }
    }

    pub fn nonzero(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(c, &n)| (c as u16, n))
    }
}

/// Everything a worker measured over the run.
#[derive(Default)]
pub struct Stats {
    pub counters: Counters,
    pub hists: Hists,
    pub unexpected_statuses: StatusCounts,
    /// When the last attempt was actually started (ns on the run clock).
    pub last_start: u64,
    /// `--tls-handshakes-only`: the first handshake failure, to show what went wrong.
    pub first_failure: Option<String>,
    /// `--tls-handshakes-only`: CPU time the worker threads used (closed loop: a generator
    /// busy all the time is the limit, not the target).
    pub cpu_ns: u64,
}

impl Stats {
    /// A TLS handshake that completed in `ns`.
    pub fn handshake(&mut self, resumed: bool, ns: u64) {
        let h = &mut self.counters.handshakes;
        if resumed {
            h.resumed += 1;
        } else {
            h.full += 1;
        }
        record_ns(&mut self.hists.tls_handshake, ns);
    }

    pub fn add(&mut self, o: &Stats) {
        self.last_start = self.last_start.max(o.last_start);
        if self.first_failure.is_none() {
            self.first_failure.clone_from(&o.first_failure);
        }
        self.cpu_ns += o.cpu_ns;
        self.counters.add(&o.counters);
        self.hists.add(&o.hists);
        self.unexpected_statuses.add(&o.unexpected_statuses);
    }
}

/// Percentiles of a histogram in milliseconds, as the report shows them.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |v: u64| v as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_and_percentiles() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        for i in 1..=100u64 {
            record_ns(&mut a.hists.invite_to_200, i * 1_000_000);
        }
        record_ns(&mut b.hists.invite_to_200, 500_000_000);
        a.counters.client.attempted = 3;
        a.counters.client.fail(Cause::Timeout);
        b.counters.client.attempted = 2;
        b.counters.client.succeeded = 1;
        b.unexpected_statuses.bump(486);
        a.add(&b);
        assert_eq!(a.counters.client.attempted, 5);
        assert_eq!(a.counters.client.failed(), 1);
        assert_eq!(a.counters.client.in_flight(), 3);
        assert_eq!(
            a.unexpected_statuses.nonzero().collect::<Vec<_>>(),
            [(486, 1)]
        );
        let p = Percentiles::of(&a.hists.invite_to_200);
        assert_eq!(p.count, 101);
        assert!((p.p50 - 51.0).abs() < 0.1, "{p:?}");
        assert!((p.max - 500.0).abs() < 0.5, "{p:?}");
        assert_eq!(Percentiles::of(&new_hist()).count, 0);
    }
}
