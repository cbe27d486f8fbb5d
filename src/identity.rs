//! Who "we" are: the addresses and domains that make a URI or a Via point at this proxy, and
//! the address we advertise in Via and Record-Route.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::sip::uri::{parse_host, Host};
use crate::sip::{Target, Transport};

/// One listen socket as the core sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenAddr {
    /// The transport this listener speaks.
    pub transport: Transport,
    /// What the socket is bound to (may be unspecified: 0.0.0.0 or ::).
    pub bound: SocketAddr,
    /// The `host:port` written into Via and Record-Route for requests leaving by this socket
    /// towards a non-loopback destination.
    pub advertised: String,
    /// Same, for loopback destinations (so that a wildcard listener talks to local peers with
    /// a local address).
    pub advertised_loopback: String,
}

/// Our identity, built once at start-up and shared read-only by every shard.
#[derive(Clone, Debug, Default)]
pub struct LocalIdentity {
    pub listen: Vec<ListenAddr>,
    /// Every IP that reaches us: bound addresses, or all interface addresses for a wildcard.
    pub ips: Vec<IpAddr>,
    /// Host names that mean this machine (lower-case): the host name, `localhost`, the
    /// advertised name.
    pub names: Vec<String>,
    /// Domains we are responsible for (`--domain`, lower-case).
    pub domains: Vec<String>,
}

impl LocalIdentity {
    /// Build from the bound listeners. `interface_ips` lists the machine's addresses (used when
    /// a listener is a wildcard); `advertise` overrides the Via/Record-Route host.
    pub fn new(
        bound: &[(Transport, SocketAddr)],
        interface_ips: &[IpAddr],
        hostname: Option<&str>,
        domains: &[String],
        advertise: Option<&str>,
    ) -> LocalIdentity {
        let mut ips: Vec<IpAddr> = Vec::new();
        let mut listen = Vec::new();
        for (transport, addr) in bound {
            let (adv_host, adv_loop) = if addr.ip().is_unspecified() {
                for ip in interface_ips {
                    if ip.is_ipv4() == addr.is_ipv4() && !ips.contains(ip) {
                        ips.push(*ip);
                    }
                }
                let primary = interface_ips
                    .iter()
                    .find(|ip| ip.is_ipv4() == addr.is_ipv4() && !ip.is_loopback())
                    .copied();
                let lo = if addr.is_ipv4() {
                    IpAddr::V4(Ipv4Addr::LOCALHOST)
                } else {
                    IpAddr::V6(Ipv6Addr::LOCALHOST)
                };
                if !ips.contains(&lo) {
                    ips.push(lo);
                }
                (primary.unwrap_or(lo), lo)
            } else {
                if !ips.contains(&addr.ip()) {
                    ips.push(addr.ip());
                }
                (addr.ip(), addr.ip())
            };
            let fmt = |ip: IpAddr| match ip {
                IpAddr::V4(a) => format!("{a}:{}", addr.port()),
                IpAddr::V6(a) => format!("[{a}]:{}", addr.port()),
            };
            let (advertised, advertised_loopback) = match advertise {
                Some(a)
                    if a.contains(':') && !a.starts_with('[') && a.matches(':').count() == 1 =>
                {
                    (a.to_string(), a.to_string())
                }
                Some(a) if a.starts_with('[') && a.contains("]:") => (a.to_string(), a.to_string()),
                Some(a) => {
                    let s = format!("{a}:{}", addr.port());
                    (s.clone(), s)
                }
                None => (fmt(adv_host), fmt(adv_loop)),
            };
            listen.push(ListenAddr {
                transport: *transport,
                bound: *addr,
                advertised,
                advertised_loopback,
            });
        }
        let mut names = vec!["localhost".to_string()];
        if let Some(h) = hostname {
            names.push(h.to_ascii_lowercase());
        }
        if let Some(a) = advertise {
            let host = a
                .rsplit_once(':')
                .filter(|(h, _)| !h.is_empty() && !a.starts_with('['))
                .map_or(a, |(h, _)| h);
            match parse_host(host.as_bytes()) {
                Some(Host::Name(n)) => names.push(String::from_utf8_lossy(n).to_ascii_lowercase()),
                Some(h) => {
                    if let Some(ip) = h.ip() {
                        ips.push(ip);
                    }
                }
                None => {}
            }
        }
        LocalIdentity {
            listen,
            ips,
            names,
            domains: domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
        }
    }

    fn port_is_ours(&self, port: Option<u16>) -> bool {
        let p = port.unwrap_or(5060);
        self.listen.iter().any(|l| l.bound.port() == p)
    }

    fn host_is_ours(&self, host: &Host<'_>) -> bool {
        match host {
            Host::Name(n) => self
                .names
                .iter()
                .any(|x| x.as_bytes().eq_ignore_ascii_case(n)),
            h => h.ip().is_some_and(|ip| self.ips.contains(&ip)),
        }
    }

    /// The URI or Via `host:port` names this very proxy (RFC 3261 section 16.4 "indicates this
    /// proxy"): one of our addresses or names, on one of our ports.
    pub fn is_our_address(&self, host: &Host<'_>, port: Option<u16>) -> bool {
        self.port_is_ours(port) && self.host_is_ours(host)
    }

    /// A configured domain (case-insensitive; a trailing dot is ignored).
    pub fn is_configured_domain(&self, host: &Host<'_>) -> bool {
        match host {
            Host::Name(n) => {
                let n = n.strip_suffix(b".").unwrap_or(n);
                self.domains
                    .iter()
                    .any(|d| d.as_bytes().eq_ignore_ascii_case(n))
            }
            _ => false,
        }
    }

    /// The host of an AOR as its location key names it: the domain when `host` is a
    /// configured one, `None` for our own addresses (the location key leaves the host out).
    pub fn aor_domain<'a>(&self, host: Option<Host<'a>>) -> Option<&'a [u8]> {
        match host {
            Some(h @ Host::Name(n)) if self.is_configured_domain(&h) => Some(n),
            _ => None,
        }
    }

    /// A domain we serve: a configured domain, or one of our own addresses.
    pub fn is_our_domain(&self, host: &Host<'_>, port: Option<u16>) -> bool {
        self.is_configured_domain(host) || self.is_our_address(host, port)
    }

    /// A Route value that points at us: our address, or a domain we serve on our port.
    pub fn is_our_route(&self, host: &Host<'_>, port: Option<u16>) -> bool {
        self.is_our_address(host, port)
            || (self.is_configured_domain(host) && self.port_is_ours(port))
    }

    /// The advertised `host:port` for a request leaving by listener `sock` towards `dest`.
    pub fn advertised(&self, sock: usize, dest: &Target) -> &str {
        let l = &self.listen[sock];
        if dest.addr.ip().is_loopback() {
            &l.advertised_loopback
        } else {
            &l.advertised
        }
    }

    /// The listener to send towards `dest` from: the receiving one when its transport and
    /// address family match, else the first that matches; `None` when we have no listener of
    /// that transport and family (a message is never sent over another transport than its
    /// target names).
    pub fn socket_for(&self, received_on: usize, dest: &Target) -> Option<usize> {
        let same = |i: usize| {
            let l = &self.listen[i];
            l.transport == dest.transport && l.bound.is_ipv4() == dest.addr.is_ipv4()
        };
        if received_on < self.listen.len() && same(received_on) {
            return Some(received_on);
        }
        (0..self.listen.len()).find(|&i| same(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> LocalIdentity {
        LocalIdentity::new(
            &[(Transport::Udp, "0.0.0.0:5060".parse().unwrap())],
            &["127.0.0.1".parse().unwrap(), "10.1.2.3".parse().unwrap()],
            Some("Edge1"),
            &["Atlanta.example.com".into()],
            None,
        )
    }

    #[test]
    fn wildcard_listener_owns_interface_addresses() {
        let l = id();
        assert!(l.is_our_address(&Host::V4("10.1.2.3".parse().unwrap()), None));
        assert!(l.is_our_address(&Host::V4("127.0.0.1".parse().unwrap()), Some(5060)));
        assert!(!l.is_our_address(&Host::V4("127.0.0.1".parse().unwrap()), Some(5070)));
        assert!(l.is_our_address(&Host::Name(b"edge1"), None));
        assert!(l.is_our_domain(&Host::Name(b"atlanta.EXAMPLE.com"), Some(9999)));
        assert!(!l.is_our_domain(&Host::Name(b"biloxi.example.com"), None));
        assert_eq!(l.listen[0].advertised, "10.1.2.3:5060");
        assert_eq!(
            l.advertised(0, &Target::udp("127.0.0.1:5070".parse().unwrap())),
            "127.0.0.1:5060"
        );
    }

    #[test]
    fn advertise_override() {
        let l = LocalIdentity::new(
            &[(Transport::Udp, "127.0.0.1:5070".parse().unwrap())],
            &[],
            None,
            &[],
            Some("proxy.example.net"),
        );
        assert_eq!(l.listen[0].advertised, "proxy.example.net:5070");
        assert!(l.is_our_address(&Host::Name(b"proxy.example.net"), Some(5070)));
    }

    #[test]
    fn a_target_leaves_by_a_listener_of_its_transport_only() {
        let v4: SocketAddr = "192.0.2.9:5060".parse().unwrap();
        let l = LocalIdentity::new(
            &[
                (Transport::Udp, "127.0.0.1:5060".parse().unwrap()),
                (Transport::Tcp, "127.0.0.1:5060".parse().unwrap()),
            ],
            &[],
            None,
            &[],
            None,
        );
        assert_eq!(l.socket_for(0, &Target::udp(v4)), Some(0));
        assert_eq!(l.socket_for(0, &Target::new(Transport::Tcp, v4)), Some(1));
        assert_eq!(l.socket_for(1, &Target::new(Transport::Tls, v4)), None);
        let v6 = Target::udp("[2001:db8::1]:5060".parse().unwrap());
        assert_eq!(l.socket_for(0, &v6), None);
    }
}
