//! An AOR as operators write it (`bob@example.com`, or `sip:bob@example.com`) turned into the
//! location table's key, by the same rule the registrar keys a REGISTER's To with.

use crate::identity::LocalIdentity;
use crate::location::AorKey;
use crate::sip::Uri;

/// The table key of `written`, or why it is not an AOR. The domain must be one the registrar
/// serves (a `--domain`, or one of our own addresses: then it is dropped from the key as the
/// registrar drops it, so `bob@192.0.2.10` finds a phone registered at any of our
/// addresses); any other is refused, so that a misspelt domain cannot name someone else.
pub fn key(identity: &LocalIdentity, written: &str) -> Result<Vec<u8>, &'static str> {
    let bare = written
        .strip_prefix("sip:")
        .or_else(|| written.strip_prefix("sips:"))
        .unwrap_or(written);
    if !bare.contains('@') {
        return Err("an AOR is written user@domain");
    }
    let uri = format!("sip:{bare}");
    let parsed = Uri::parse(uri.as_bytes()).map_err(|_| "not a SIP address: user@domain")?;
    let user = parsed.user.ok_or("an AOR needs a user part")?;
    let served = parsed
        .host
        .is_some_and(|h| identity.is_our_domain(&h, parsed.port));
    if !served {
        return Err("not a domain this registrar serves (--domain, or one of its addresses)");
    }
    let mut k = AorKey::new();
    if !k.build(user, identity.aor_domain(parsed.host)) {
        return Err("the AOR is too long");
    }
    Ok(k.as_bytes().to_vec())
}
