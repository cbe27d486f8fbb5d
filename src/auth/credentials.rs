//! The users file and the aliases file, built once into an immutable [`UserDb`].
//!
//! Users file, one entry a line:
//!
//! ```text
//! # comment
//! alice:secret                                   user:password
//! bob:sip.example.com:8d2f0c1e9a7b6c5d4e3f2a1b0c9d8e7f   user:realm:HA1
//! ```
//!
//! `HA1 = MD5(user ":" realm ":" password)` in hex (RFC 2617 section 3.2.2.2), so an operator can
//! keep plaintext passwords out of the file; such an entry only answers for its own realm, since
//! HA1 binds the realm. A password entry answers for whatever realm is asked, hashed on demand.
//! The first `:` ends the user name and, when more follow, the last one starts the HA1: so a realm
//! may contain `:` but a password may not (give such a password as HA1). Lines are trimmed of
//! surrounding whitespace; `#` starts a comment only at the start of a line, because `#` is a
//! legal password character.
//!
//! Aliases file (`--aliases`), one authenticated user a line:
//!
//! ```text
//! pbx1: 4420000001, 4420000002
//! ```
//!
//! meaning `pbx1` may register those address-of-record user parts as well as its own
//! (RFC 3261 section 10.3 step 6 leaves that mapping to the registrar's policy).

use std::fmt;
use std::path::{Path, PathBuf};

use ahash::AHashMap;

use super::digest::{self, Hash};
use super::hex;
use crate::sip::uri::Unescape;

/// A user name or AOR user part, owned.
type Name = Box<[u8]>;

/// What the users file holds for one user.
#[derive(Clone, PartialEq, Eq)]
enum Secret {
    Password(Box<[u8]>),
    Ha1 { realm: Box<[u8]>, ha1: Hash },
}

/// The users (and their aliases), read-only after construction so every shard can share one
/// behind an `Arc` without locking.
#[derive(Clone, Default)]
pub struct UserDb {
    users: AHashMap<Name, Secret>,
    aliases: AHashMap<Name, Box<[Name]>>,
}

/// A bad line in the users or aliases file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileError {
    /// 1-based line number.
    pub line: usize,
    pub what: &'static str,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.what)
    }
}

impl std::error::Error for FileError {}

/// Reading a users or aliases file from disk failed.
#[derive(Debug)]
pub enum LoadError {
    Io { path: PathBuf, err: std::io::Error },
    Parse { path: PathBuf, err: FileError },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io { path, err } => write!(f, "{}: {err}", path.display()),
            LoadError::Parse { path, err } => write!(f, "{}:{err}", path.display()),
        }
    }
}

impl std::error::Error for LoadError {}

/// The non-empty, non-comment lines with their 1-based numbers, trimmed.
fn entries(text: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    text.split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_ascii()))
        .filter(|(_, l)| !l.is_empty() && l[0] != b'#')
}

/// A user name we can match: what a client sends in the quoted `username` directive and in a
/// URI user part. Quotes and backslashes would arrive escaped (and are compared as written), and
/// `%` would make the escaped and unescaped forms ambiguous, so none of them is allowed.
fn check_name(name: &[u8]) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty user name");
    }
    if name
        .iter()
        .any(|&b| b <= b' ' || b == 0x7f || matches!(b, b'"' | b'\\' | b'%' | b':' | b','))
    {
        return Err("user name contains whitespace, a control character or one of \" \\ % : ,");
    }
    Ok(())
}

/// `name ":" rest`, with a valid name; `no_colon` is the complaint when there is no `:`.
fn split_name<'t>(
    l: &'t [u8],
    no_colon: &'static str,
) -> Result<(&'t [u8], &'t [u8]), &'static str> {
    let colon = l.iter().position(|&b| b == b':').ok_or(no_colon)?;
    let name = l[..colon].trim_ascii();
    check_name(name)?;
    Ok((name, &l[colon + 1..]))
}

/// A realm we can send as a quoted-string without escaping (RFC 2617 section 1.2: the realm is
/// a quoted-string and clients compare it as written) and that is not empty.
pub(crate) fn valid_realm(realm: &[u8]) -> bool {
    !realm.is_empty()
        && !realm
            .iter()
            .any(|&b| b < b' ' || b == 0x7f || b == b'"' || b == b'\\')
}

fn parse_secret(rest: &[u8]) -> Result<Secret, &'static str> {
    let Some(colon) = rest.iter().rposition(|&b| b == b':') else {
        if rest.is_empty() {
            return Err("empty password");
        }
        return Ok(Secret::Password(rest.into()));
    };
    let (realm, ha1) = (&rest[..colon], &rest[colon + 1..]);
    if realm.is_empty() {
        return Err("empty realm");
    }
    if !valid_realm(realm) {
        return Err("realm contains a control character, a quote or a backslash");
    }
    let ha1 = hex::decode(ha1, true).ok_or(
        "expected user:password or user:realm:HA1 with HA1 as 32 hex digits \
         (passwords cannot contain ':'; give those as HA1)",
    )?;
    Ok(Secret::Ha1 {
        realm: realm.into(),
        ha1,
    })
}

impl UserDb {
    /// Parse a users file. Any bad line fails the whole file: a half-loaded user list would lock
    /// out users silently.
    pub fn parse(text: &[u8]) -> Result<UserDb, FileError> {
        let mut users: AHashMap<Name, Secret> = AHashMap::new();
        for (line, l) in entries(text) {
            let err = |what| FileError { line, what };
            let (user, rest) =
                split_name(l, "expected user:password or user:realm:HA1").map_err(err)?;
            let secret = parse_secret(rest).map_err(err)?;
            if users.insert(user.into(), secret).is_some() {
                return Err(err("duplicate user"));
            }
        }
        Ok(UserDb {
            users,
            aliases: AHashMap::new(),
        })
    }

    /// Add an aliases file: `user: aor-user1, aor-user2`. Every user must be in the users file
    /// (an alias for nobody is a typo that would otherwise go unnoticed).
    pub fn with_aliases(mut self, text: &[u8]) -> Result<UserDb, FileError> {
        for (line, l) in entries(text) {
            let err = |what| FileError { line, what };
            let (user, rest) =
                split_name(l, "expected user: aor-user, aor-user ...").map_err(err)?;
            if !self.users.contains_key(user) {
                return Err(err("alias for a user not in the users file"));
            }
            let mut aors: Vec<Name> = Vec::new();
            for aor in rest.split(|&b| b == b',') {
                let aor = aor.trim_ascii();
                check_name(aor).map_err(|_| err("bad AOR user part"))?;
                aors.push(aor.into());
            }
            if self.aliases.insert(user.into(), aors.into()).is_some() {
                return Err(err("duplicate user"));
            }
        }
        Ok(self)
    }

    /// Read the users file and, if given, the aliases file: a start-up convenience, the only
    /// I/O in this module.
    pub fn load(users: &Path, aliases: Option<&Path>) -> Result<UserDb, LoadError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|err| LoadError::Io {
                path: path.into(),
                err,
            })
        };
        let parse_err = |path: &Path| {
            let path = path.to_path_buf();
            move |err| LoadError::Parse { path, err }
        };
        let db = UserDb::parse(&read(users)?).map_err(parse_err(users))?;
        match aliases {
            None => Ok(db),
            Some(a) => db.with_aliases(&read(a)?).map_err(parse_err(a)),
        }
    }

    /// The same users with every password replaced by its HA1 for `realm`: what `ha1` would
    /// compute on every request, computed once. Lossless for an authenticator of that realm
    /// (MD5-sess derives from HA1 too); entries given as HA1 stay as they are.
    pub fn for_realm(mut self, realm: &[u8]) -> UserDb {
        for (user, secret) in self.users.iter_mut() {
            if let Secret::Password(p) = secret {
                *secret = Secret::Ha1 {
                    realm: realm.into(),
                    ha1: digest::ha1(user, realm, p),
                };
            }
        }
        self
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn contains(&self, user: &[u8]) -> bool {
        self.users.contains_key(user)
    }

    /// HA1 of `user` for `realm` (algorithm MD5 form), or `None` when the user is unknown or its
    /// stored HA1 belongs to another realm.
    pub fn ha1(&self, user: &[u8], realm: &[u8]) -> Option<Hash> {
        match self.users.get(user)? {
            Secret::Password(p) => Some(digest::ha1(user, realm, p)),
            Secret::Ha1 { realm: r, ha1 } => (**r == *realm).then_some(*ha1),
        }
    }

    /// The AOR user parts `user` may register besides its own.
    pub fn aliases(&self, user: &[u8]) -> &[Box<[u8]>] {
        self.aliases.get(user).map_or(&[], |a| a)
    }

    /// May authenticated `user` register the AOR whose user part (as written in the To URI,
    /// %-escaped or not) is `to_user`? Its own name, or one of its aliases; user parts compare
    /// case-sensitively after unescaping (RFC 3261 section 19.1.4).
    pub fn may_register(&self, user: &[u8], to_user: &[u8]) -> bool {
        let same = |name: &[u8]| name.iter().copied().eq(Unescape::new(to_user));
        same(user) || self.aliases(user).iter().any(|a| same(a))
    }
}

impl fmt::Debug for UserDb {
    /// Never prints passwords or HA1s.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserDb")
            .field("users", &self.users.len())
            .field("aliases", &self.aliases.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MUFASA_HA1: &str = "939e7578ed9e3c518a452acee763bce9";

    fn db() -> UserDb {
        let users = format!(
            "# test users\n\
             \n\
             alice:wonder land#1\r\n\
             \x20 Mufasa:testrealm@host.com:{}  \n\
             bob:sip.example.com:5060:{MUFASA_HA1}\n",
            MUFASA_HA1.to_uppercase()
        );
        UserDb::parse(users.as_bytes())
            .unwrap()
            .with_aliases(b"# pbx\nalice: 4420000001 , bob@x\n")
            .unwrap()
    }

    #[test]
    fn password_and_ha1_entries() {
        let db = db();
        assert_eq!(db.len(), 3);
        let want = hex::decode(MUFASA_HA1.as_bytes(), false);
        assert_eq!(db.ha1(b"Mufasa", b"testrealm@host.com"), want);
        assert_eq!(db.ha1(b"Mufasa", b"other.realm"), None);
        assert_eq!(db.ha1(b"bob", b"sip.example.com:5060"), want);
        assert_eq!(
            db.ha1(b"alice", b"r"),
            Some(digest::ha1(b"alice", b"r", b"wonder land#1"))
        );
        assert_eq!(db.ha1(b"nobody", b"r"), None);
        assert!(db.contains(b"alice") && !db.contains(b"Alice"));
    }

    #[test]
    fn precomputed_for_a_realm_answers_as_the_passwords_would() {
        let db = db().for_realm(b"r");
        assert_eq!(
            db.ha1(b"alice", b"r"),
            Some(digest::ha1(b"alice", b"r", b"wonder land#1"))
        );
        // Another realm is no longer derivable from a password-only entry...
        assert_eq!(db.ha1(b"alice", b"other"), None);
        // ...and HA1 entries keep their own realm.
        let want = hex::decode(MUFASA_HA1.as_bytes(), false);
        assert_eq!(db.ha1(b"Mufasa", b"testrealm@host.com"), want);
        assert_eq!(db.len(), 3);
    }

    #[test]
    fn aliases_and_may_register() {
        let db = db();
        assert!(db.may_register(b"alice", b"alice"));
        assert!(db.may_register(b"alice", b"%61lice"));
        assert!(db.may_register(b"alice", b"4420000001"));
        assert!(db.may_register(b"alice", b"bob%40x"));
        assert!(db.may_register(b"alice", b"bob@x"));
        assert!(!db.may_register(b"alice", b"bob"));
        assert!(!db.may_register(b"bob", b"alice"));
        assert!(!db.may_register(b"bob", b"4420000001"));
        assert_eq!(db.aliases(b"Mufasa").len(), 0);
    }

    fn err(text: &str) -> FileError {
        UserDb::parse(text.as_bytes()).unwrap_err()
    }

    #[test]
    fn users_file_errors_carry_line_numbers() {
        assert_eq!(err("a:b\n\n# c\nnocolon\n").line, 4);
        assert_eq!(
            err("a:b\na:c\n"),
            FileError {
                line: 2,
                what: "duplicate user"
            }
        );
        assert_eq!(err(":pw").what, "empty user name");
        assert_eq!(err("a:").what, "empty password");
        assert_eq!(err("x:\n").line, 1);
        assert_eq!(err("ok:1\nb c:pw").line, 2);
        assert_eq!(err("a::0123").what, "empty realm");
        let e = err("a:b\nc:pass:word\n");
        assert_eq!(e.line, 2);
        assert!(e.what.contains("32 hex"), "{e}");
        assert!(err("a:realm:939e7578ed9e3c518a452acee763bce")
            .what
            .contains("32 hex"));
        assert_eq!(err("a:r\"x:939e7578ed9e3c518a452acee763bce9").line, 1);
        assert_eq!(
            err("a:b\n\n\nq\"uote:pw").to_string(),
            "line 4: user name contains whitespace, a control character or one of \" \\ % : ,"
        );
    }

    #[test]
    fn aliases_file_errors() {
        let base = || UserDb::parse(b"a:b\nc:d").unwrap();
        let e = |t: &str| base().with_aliases(t.as_bytes()).unwrap_err();
        assert_eq!(e("a: x\nz: y").line, 2);
        assert_eq!(
            e("a: x\nz: y").what,
            "alias for a user not in the users file"
        );
        assert_eq!(e("\na x").line, 2);
        assert_eq!(e("a: x,,y").what, "bad AOR user part");
        assert_eq!(e("a:").what, "bad AOR user part");
        assert_eq!(e("a: x\na: y").what, "duplicate user");
    }

    #[test]
    fn load_reports_path_and_line() {
        let dir = std::env::temp_dir().join(format!("sipshard-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let users = dir.join("users");
        std::fs::write(&users, "a:b\nbroken\n").unwrap();
        let e = UserDb::load(&users, None).unwrap_err().to_string();
        assert!(
            e.ends_with("users:line 2: expected user:password or user:realm:HA1"),
            "{e}"
        );
        std::fs::write(&users, "a:b\n").unwrap();
        let aliases = dir.join("aliases");
        std::fs::write(&aliases, "a: 100\n").unwrap();
        let db = UserDb::load(&users, Some(&aliases)).unwrap();
        assert!(db.may_register(b"a", b"100"));
        assert!(UserDb::load(&dir.join("missing"), None).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn debug_hides_secrets() {
        let s = format!("{:?}", db());
        assert!(!s.contains("wonder"), "{s}");
    }
}
