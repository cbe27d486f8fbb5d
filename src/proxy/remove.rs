//! Removing values from a comma-separated header line: the Route we consumed, our Via of a
//! response.

use crate::sip::header::CommaSplit;
use crate::sip::{Edits, Message, Span};

/// Remove list values (`(field index, value span)`), each one a whole line when it is alone on
/// it, else by rewriting the line's value without it.
pub(super) fn remove_values(
    edits: &mut Edits,
    msg: &Message<'_>,
    removed: &[Option<(usize, Span)>],
) {
    for (i, entry) in removed.iter().enumerate() {
        let Some((field, _)) = entry else { continue };
        // Two values of one line are handled together, when the line is first seen.
        if removed[..i].iter().flatten().any(|(f, _)| f == field) {
            continue;
        }
        let f = msg.field_at(*field);
        let buf = msg.buf();
        let gone = |s: Span| {
            removed
                .iter()
                .flatten()
                .any(|(fi, sp)| fi == field && *sp == s)
        };
        let kept = CommaSplit::new(buf, f.value).filter(|s| !gone(*s)).count();
        if kept == 0 {
            edits.remove(f.line);
        } else {
            edits.replace_with(f.value, |w| {
                for (i, s) in CommaSplit::new(buf, f.value)
                    .filter(|s| !gone(*s))
                    .enumerate()
                {
                    if i > 0 {
                        w.bytes(b", ");
                    }
                    w.bytes(s.of(buf));
                }
            });
        }
    }
}
