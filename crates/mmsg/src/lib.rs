//! Batched UDP datagram I/O: one `recvmmsg` takes a batch of datagrams, one `sendmmsg` gives
//! one, each datagram with its own peer address. Linux only.
//!
//! The per-datagram system call is what limits a UDP proxy and a load generator alike, so
//! sipshard (`src/transport/batch.rs`), its load generator (`loadtest/src/engine/io.rs`) and the
//! benchmark tools (`scripts/udp-tools`) all move datagrams in batches; this crate is the one
//! copy of the kernel-facing part they share.
//!
//! The caller owns the datagram buffers and lends them for one call; the types here own only
//! what the kernel needs besides (`mmsghdr`, `iovec`, `sockaddr_storage` and control-message
//! arrays), sized once at construction. A call fills those arrays in place, so the steady state
//! allocates nothing and makes exactly one system call per batch.
//!
//! - [`RecvHeaders::recv`]: one non-blocking (or wait-for-one) `recvmmsg` into caller slots;
//!   per datagram its length, source and, when the socket has `SO_TIMESTAMPNS` on, its kernel
//!   receive time; per call the socket's `SO_RXQ_OVFL` drop counter when that is on.
//! - [`SendHeaders::send`]: one non-blocking `sendmmsg` of `(bytes, destination)` pairs.
//! - [`addr`]: `SocketAddr` to and from the kernel's `sockaddr_storage`.
//!
//! Socket options (buffer sizes, timestamps, drop counters) stay with each user: they differ
//! between a proxy, a generator and a benchmark tool.
//!
//! ```
//! use std::net::UdpSocket;
//! use std::os::fd::AsRawFd;
//! use mmsg::{RecvHeaders, SendHeaders, Wait};
//!
//! let (a, b) = (UdpSocket::bind("127.0.0.1:0")?, UdpSocket::bind("127.0.0.1:0")?);
//! let to = b.local_addr()?;
//! let mut send = SendHeaders::new(32);
//! let sent = send.send(a.as_raw_fd(), [(&b"one"[..], to), (&b"two"[..], to)])?;
//! assert_eq!(sent, 2);
//!
//! let mut bufs = vec![[0u8; 1500]; 32];
//! let mut recv = RecvHeaders::new(32, false);
//! b.set_read_timeout(Some(std::time::Duration::from_secs(1)))?;
//! let n = recv.recv(b.as_raw_fd(), bufs.iter_mut().map(|b| &mut b[..]), Wait::ForOne)?;
//! let first = recv.meta()[0];
//! assert_eq!(&bufs[0][..first.len], b"one");
//! assert_eq!(first.src, Some(a.local_addr()?));
//! # assert!(n >= 1);
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod addr;
pub mod cmsg;
mod recv;
mod send;

pub use recv::{RecvHeaders, RecvMeta, Wait};
pub use send::SendHeaders;

/// `n` all-zero values, allocated once (at construction; never on the I/O path).
///
/// # Safety
/// All-zero bytes must be a valid `T` (true of the plain C structs used here).
unsafe fn zeroed_slice<T>(n: usize) -> Box<[T]> {
    // SAFETY: the caller vouches that all-zero is a valid T.
    (0..n).map(|_| unsafe { std::mem::zeroed() }).collect()
}
