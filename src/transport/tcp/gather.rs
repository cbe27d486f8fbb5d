//! A stream whose vectored writes leave in one `send`.
//!
//! glommio's TCP stream writes only the first buffer of a vectored write (the `futures-io`
//! default), and rustls hands each TLS record it has queued as a buffer of its own: a full
//! handshake's server flight (ServerHello, EncryptedExtensions, Certificate,
//! CertificateVerify, Finished) left in one system call per record, each of which, on a local
//! peer, also runs the receiver's network stack. Gathering them into one write halves the
//! system calls of a handshake, and of every write of several records after it.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::io::{AsyncRead, AsyncWrite};

/// Most bytes gathered into one write; what is left goes in the next.
const MAX_GATHER: usize = 64 * 1024;

thread_local! {
    /// One shard's gathering buffer. A write that does not complete at once keeps no hold on
    /// it (glommio waits for the socket to be writable, then is called again with the same
    /// data), so every connection of the shard can share it: idle connections cost nothing.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// `S` with gathered vectored writes.
pub struct Gathered<S>(pub S);

impl<S: AsyncRead + Unpin> AsyncRead for Gathered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Gathered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut nonempty = bufs.iter().filter(|b| !b.is_empty());
        let first = nonempty.next().map_or(&[][..], |b| &**b);
        if nonempty.next().is_none() {
            return Pin::new(&mut self.0).poll_write(cx, first);
        }
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            scratch.clear();
            for b in bufs {
                if !scratch.is_empty() && scratch.len() + b.len() > MAX_GATHER {
                    break;
                }
                scratch.extend_from_slice(b);
            }
            // Bytes written count from the front of `bufs`, as a vectored write's do.
            Pin::new(&mut self.0).poll_write(cx, &scratch)
        })
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `limit` bytes per call and records each call.
    struct Recorder {
        calls: Vec<Vec<u8>>,
        limit: usize,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.limit);
            self.calls.push(buf[..n].to_vec());
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn write_vectored(g: &mut Gathered<Recorder>, bufs: &[&[u8]]) -> usize {
        let slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
        let write = std::future::poll_fn(|cx| Pin::new(&mut *g).poll_write_vectored(cx, &slices));
        futures_lite::future::block_on(write).expect("the recorder never fails")
    }

    #[test]
    fn several_buffers_leave_in_one_write_and_a_short_write_counts_from_the_front() {
        let mut g = Gathered(Recorder {
            calls: Vec::new(),
            limit: usize::MAX,
        });
        assert_eq!(write_vectored(&mut g, &[b"ab", b"", b"cde"]), 5);
        assert_eq!(g.0.calls, [b"abcde".to_vec()]);
        g.0.limit = 3;
        assert_eq!(write_vectored(&mut g, &[b"ab", b"cde"]), 3);
        assert_eq!(g.0.calls[1], b"abc");
        // One buffer goes as it is.
        assert_eq!(write_vectored(&mut g, &[b"", b"xy"]), 2);
        assert_eq!(g.0.calls[2], b"xy");
    }
}
