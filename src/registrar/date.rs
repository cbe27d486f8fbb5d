//! The `Date:` line of the registrar's 200 responses.

use std::time::{Duration, UNIX_EPOCH};

/// The `Date:` line of 200 responses (RFC 3261 section 10.3 step 8 suggests one, so clients
/// without a clock can set theirs), formatted once per second rather than per REGISTER.
#[derive(Default)]
pub struct DateLine {
    secs: Option<u64>,
    line: Vec<u8>,
}

impl DateLine {
    /// `Date: <IMF-fixdate>\r\n` for `now_secs`.
    pub fn line(&mut self, now_secs: u64) -> &[u8] {
        if self.secs != Some(now_secs) {
            let date = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(now_secs));
            self.line.clear();
            self.line.extend_from_slice(b"Date: ");
            self.line.extend_from_slice(date.as_bytes());
            self.line.extend_from_slice(b"\r\n");
            self.secs = Some(now_secs);
        }
        &self.line
    }
}
