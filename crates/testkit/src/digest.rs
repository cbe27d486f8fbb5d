//! A UAC's side of Digest authentication (RFC 2617), written from the RFC formulas with the
//! `md-5` crate, independently of `src/auth`: the wire tests answer sipshard's challenges with
//! it, so a mistake shared by the proxy and its tests cannot hide.

use md5::{Digest as _, Md5};

pub fn md5hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// HA1 as a users file stores it: `MD5(user:realm:password)`.
pub fn ha1(user: &str, realm: &str, password: &str) -> String {
    md5hex(&format!("{user}:{realm}:{password}"))
}

/// The value of directive `name` (quoted or not) in a challenge header value.
pub fn directive(challenge: &str, name: &str) -> Option<String> {
    let body = challenge.strip_prefix("Digest").unwrap_or(challenge);
    for part in split_params(body) {
        let (n, v) = part.split_once('=')?;
        if n.trim().eq_ignore_ascii_case(name) {
            return Some(v.trim().trim_matches('"').to_string());
        }
    }
    None
}

fn split_params(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c)
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// A challenge as the UAC keeps it.
#[derive(Clone, Debug)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub stale: bool,
}

impl Challenge {
    /// From a WWW-Authenticate or Proxy-Authenticate value.
    pub fn parse(value: &str) -> Challenge {
        assert!(
            value.starts_with("Digest "),
            "not a Digest challenge: {value}"
        );
        Challenge {
            realm: directive(value, "realm").expect("realm"),
            nonce: directive(value, "nonce").expect("nonce"),
            opaque: directive(value, "opaque"),
            stale: directive(value, "stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        }
    }
}

/// One answer to a challenge.
#[derive(Clone, Debug)]
pub struct Answer {
    pub user: String,
    pub password: String,
    pub method: String,
    pub uri: String,
    /// `None`: RFC 2069 style, no qop.
    pub nc: Option<u32>,
    pub cnonce: String,
    pub sess: bool,
}

impl Answer {
    pub fn new(user: &str, password: &str, method: &str, uri: &str) -> Answer {
        Answer {
            user: user.into(),
            password: password.into(),
            method: method.into(),
            uri: uri.into(),
            nc: Some(1),
            cnonce: "0a4f113b".into(),
            sess: false,
        }
    }

    pub fn nc(mut self, nc: Option<u32>) -> Answer {
        self.nc = nc;
        self
    }

    pub fn cnonce(mut self, c: &str) -> Answer {
        self.cnonce = c.into();
        self
    }

    pub fn sess(mut self) -> Answer {
        self.sess = true;
        self
    }

    /// The `response` directive for this answer to `ch`.
    pub fn response(&self, ch: &Challenge) -> String {
        let mut a1 = ha1(&self.user, &ch.realm, &self.password);
        if self.sess {
            a1 = md5hex(&format!("{a1}:{}:{}", ch.nonce, self.cnonce));
        }
        let ha2 = md5hex(&format!("{}:{}", self.method, self.uri));
        match self.nc {
            Some(nc) => md5hex(&format!(
                "{a1}:{}:{nc:08x}:{}:auth:{ha2}",
                ch.nonce, self.cnonce
            )),
            None => md5hex(&format!("{a1}:{}:{ha2}", ch.nonce)),
        }
    }

    /// The credentials value (without the header name).
    pub fn credentials(&self, ch: &Challenge) -> String {
        let mut v = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\"",
            self.user,
            ch.realm,
            ch.nonce,
            self.uri,
            self.response(ch)
        );
        if let Some(o) = &ch.opaque {
            v.push_str(&format!(", opaque=\"{o}\""));
        }
        if self.sess {
            v.push_str(", algorithm=MD5-sess");
        } else {
            v.push_str(", algorithm=MD5");
        }
        if let Some(nc) = self.nc {
            v.push_str(&format!(
                ", qop=auth, nc={nc:08x}, cnonce=\"{}\"",
                self.cnonce
            ));
        } else if self.sess {
            v.push_str(&format!(", cnonce=\"{}\"", self.cnonce));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RFC 2617 section 3.5 example, to check this helper against the RFC itself.
    #[test]
    fn rfc2617_mufasa() {
        let ch = Challenge {
            realm: "testrealm@host.com".into(),
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093".into(),
            opaque: Some("5ccc069c403ebaf9f0171e9517f40e41".into()),
            stale: false,
        };
        let a =
            Answer::new("Mufasa", "Circle Of Life", "GET", "/dir/index.html").cnonce("0a4f113b");
        assert_eq!(a.response(&ch), "6629fae49393a05397450978507c4ef1");
    }
}
