//! SIP messages as the tests write and read them: plain text, written with `\n` line ends and
//! no Content-Length (so a test reads like the RFC's flows), put on the wire by [`wire`].
//! Deliberately simple and independent of `src/sip`: the tests check the proxy's parser and
//! writer, so they must not share them.

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

/// The first value of header `name`; fails the test when there is none.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_writes_crlf_and_the_content_length() {
        let m = wire("MESSAGE sip:a@b SIP/2.0\nContent-Length: 99\nCSeq: 1 MESSAGE\n\nhi\n");
        assert_eq!(
            m,
            "MESSAGE sip:a@b SIP/2.0\r\nCSeq: 1 MESSAGE\r\nContent-Length: 4\r\n\r\nhi\r\n"
        );
        assert_eq!(headers(&m, "cseq"), ["1 MESSAGE"]);
        assert_eq!(start_line(&m), "MESSAGE sip:a@b SIP/2.0");
    }
}
