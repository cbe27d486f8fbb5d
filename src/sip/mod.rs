//! The SIP message layer: parse, inspect and rewrite one datagram, or one message framed from a
//! stream. No I/O.
//!
//! - [`parse`]: the zero-copy parser producing a [`Message`] view of spans into the datagram.
//! - [`frame`]: where one message ends on a stream (TCP, TLS), before it is parsed.
//! - [`scan`]: the byte searches of the header scan (SSE2 on x86-64).
//! - [`header`]: header names (full and compact) and comma splitting of list headers.
//! - [`uri`]: SIP/SIPS/TEL URIs and RFC 3261 section 19.1.4 comparison.
//! - [`via`], [`addr`], [`params`]: typed, lazily parsed views of the headers a proxy needs.
//! - [`rewrite`]: edits applied in place, moving the bytes before an edit into the headroom.
//! - [`error`]: what can be wrong with a message, and the SIP answer for it.
//! - [`transport`]: the transport a message uses and the peer at the other end.

pub mod addr;
#[cfg(test)]
mod equivalence;
pub mod error;
pub mod frame;
pub mod header;
pub mod params;
pub mod parse;
pub mod rewrite;
mod scan;
pub mod span;
pub mod transport;
pub mod uri;
pub mod via;
pub mod write;

pub use addr::{CSeq, Contact, Credentials, NameAddr};
pub use error::{ParseError, Required};
pub use frame::{Frame, Framer, PING, PONG};
pub use header::HeaderName;
pub use parse::{HeaderField, Message, Method, StartLine};
pub use rewrite::{EditError, Edits, PacketBuf};
pub use span::Span;
pub use transport::{ConnId, Source, Target, Transport};
pub use uri::{Host, Scheme, Uri};
pub use via::{ParamAt, Via};
