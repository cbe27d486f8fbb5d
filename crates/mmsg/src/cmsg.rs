//! The ancillary data read from a received datagram: its kernel receive time
//! (`SCM_TIMESTAMPNS`) and the socket's drop counter (`SO_RXQ_OVFL`).

/// Room for one datagram's ancillary data: a timestamp (a `timespec`, 16 bytes) and the drop
/// counter (a `u32`), each behind a 16-byte `cmsghdr`: 56 bytes with padding. Kept in u64
/// words so that every buffer is aligned for `cmsghdr`.
pub(crate) type Control = [u64; 8];

/// What the control messages of one datagram said.
#[derive(Clone, Copy, Default)]
pub(crate) struct Ancillary {
    /// When the kernel queued the datagram (CLOCK_REALTIME, nanoseconds).
    pub stamp_ns: Option<u64>,
    /// The socket's cumulative count of datagrams dropped for a full receive queue.
    pub drops: Option<u32>,
}

/// Read the control messages of a completed receive.
///
/// # Safety
/// `hdr` must be the header of a completed receive: `msg_control` points to a live buffer of
/// at least `msg_controllen` bytes that the kernel filled with control messages (or
/// `msg_controllen` is 0).
#[inline]
pub(crate) unsafe fn read(hdr: &libc::msghdr) -> Ancillary {
    let mut out = Ancillary::default();
    // CMSG_FIRSTHDR is null when fewer bytes than one cmsghdr came back (no timestamps, no drop
    // counter, or no control buffer at all), so this costs one comparison then.
    let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
    while !cmsg.is_null() {
        // SAFETY (for the derefs and reads below): CMSG_FIRSTHDR/CMSG_NXTHDR only return
        // headers lying wholly within msg_controllen, which the caller vouches for; the payload
        // is read unaligned because the kernel guarantees alignment only for cmsghdr.
        let c = &*cmsg;
        let data = libc::CMSG_DATA(cmsg);
        if c.cmsg_level == libc::SOL_SOCKET && c.cmsg_type == libc::SCM_TIMESTAMPNS {
            let ts = std::ptr::read_unaligned(data as *const libc::timespec);
            out.stamp_ns = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
        } else if c.cmsg_level == libc::SOL_SOCKET && c.cmsg_type == libc::SO_RXQ_OVFL {
            out.drops = Some(std::ptr::read_unaligned(data as *const u32));
        }
        cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_room_fits_a_timestamp_and_a_drop_counter() {
        // SAFETY: CMSG_SPACE is arithmetic on its argument.
        let need = unsafe {
            libc::CMSG_SPACE(std::mem::size_of::<libc::timespec>() as u32)
                + libc::CMSG_SPACE(std::mem::size_of::<u32>() as u32)
        };
        assert!(need as usize <= std::mem::size_of::<Control>());
        assert!(std::mem::align_of::<Control>() >= std::mem::align_of::<libc::cmsghdr>());
    }
}
