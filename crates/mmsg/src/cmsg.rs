//! The ancillary data read from a received datagram: its kernel receive time
//! (`SCM_TIMESTAMPNS`) and the socket's drop counter (`SO_RXQ_OVFL`).

/// Room for one datagram's ancillary data: a timestamp (a `timespec`, 16 bytes) and the drop
/// counter (a `u32`), each behind a 16-byte `cmsghdr`: 56 bytes with padding. Kept in u64
/// words so that every buffer is aligned for `cmsghdr`.
pub(crate) type Control = [u64; 8];

/// What the control messages of one datagram said.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ancillary {
    /// When the kernel queued the datagram (CLOCK_REALTIME, nanoseconds).
    pub stamp_ns: Option<u64>,
    /// The socket's cumulative count of datagrams dropped for a full receive queue.
    pub drops: Option<u32>,
}

/// Read the control messages of a completed receive.
///
/// # Safety
/// `msg_control` must point to a live buffer of at least `msg_controllen` bytes (or
/// `msg_controllen` is 0). Their contents may be anything: a message is read only where it
/// lies wholly within them.
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
        // A message is read only when it holds its whole payload: the kernel cuts the last
        // one short when the control room runs out (MSG_CTRUNC), and `parse` takes any bytes.
        let holds = |payload: usize| c.cmsg_len as usize >= libc::CMSG_LEN(payload as u32) as usize;
        let timespec = std::mem::size_of::<libc::timespec>();
        if c.cmsg_level == libc::SOL_SOCKET
            && c.cmsg_type == libc::SCM_TIMESTAMPNS
            && holds(timespec)
        {
            let ts = std::ptr::read_unaligned(data as *const libc::timespec);
            out.stamp_ns = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
        } else if c.cmsg_level == libc::SOL_SOCKET
            && c.cmsg_type == libc::SO_RXQ_OVFL
            && holds(std::mem::size_of::<u32>())
        {
            out.drops = Some(std::ptr::read_unaligned(data as *const u32));
        }
        cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
    }
    out
}

/// Read control messages the kernel wrote somewhere else than into a `recvmsg` header's
/// buffer: the control field of a multishot io_uring receive's buffer. At most
/// `size_of::<Control>()` bytes are read (all that a timestamp and a drop counter take).
pub fn parse(control: &[u8]) -> Ancillary {
    // Copied into aligned room: the kernel writes a multishot receive's control messages at
    // whatever offset its buffer layout gives them, and cmsghdr must be read aligned.
    let mut room: Control = [0; 8];
    let len = control.len().min(std::mem::size_of::<Control>());
    // SAFETY: `room` is `size_of::<Control>()` bytes and `len` is at most that.
    unsafe { std::ptr::copy_nonoverlapping(control.as_ptr(), room.as_mut_ptr().cast(), len) };
    // SAFETY: an all-zero msghdr is valid; only the control fields are set and read.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_control = room.as_mut_ptr().cast();
    hdr.msg_controllen = len as _;
    // SAFETY: `hdr` points at `len` bytes of `room`, which holds the kernel's messages.
    unsafe { read(&hdr) }
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

    #[test]
    fn parses_unaligned_control_bytes() {
        // A drop counter of 7, as the kernel writes it, one byte off alignment.
        let mut raw = vec![0u8; 1 + 24];
        let hdr = libc::cmsghdr {
            cmsg_len: unsafe { libc::CMSG_LEN(4) } as _,
            cmsg_level: libc::SOL_SOCKET,
            cmsg_type: libc::SO_RXQ_OVFL,
        };
        // SAFETY: writes inside `raw`, unaligned on purpose.
        unsafe {
            std::ptr::write_unaligned(raw.as_mut_ptr().add(1).cast(), hdr);
            let data = raw
                .as_mut_ptr()
                .add(1 + std::mem::size_of::<libc::cmsghdr>());
            std::ptr::write_unaligned(data.cast::<u32>(), 7);
        }
        let got = parse(&raw[1..]);
        assert_eq!(got.drops, Some(7));
        assert_eq!(got.stamp_ns, None);
        assert_eq!(parse(&[]), Ancillary::default());
        // A timestamp header that claims less than a timespec, at the end of the room: not
        // read (its payload would lie beyond the bytes given).
        let mut raw = [0u64; 8];
        let short = libc::cmsghdr {
            cmsg_len: unsafe { libc::CMSG_LEN(0) } as _,
            cmsg_level: libc::SOL_SOCKET,
            cmsg_type: libc::SCM_TIMESTAMPNS,
        };
        // SAFETY: the header fits in the last 16 bytes of `raw`, which is aligned for it.
        unsafe { std::ptr::write(raw.as_mut_ptr().add(6).cast(), short) };
        // SAFETY: `raw` viewed as its 64 bytes.
        let bytes = unsafe { std::slice::from_raw_parts(raw.as_ptr().cast::<u8>(), 64) };
        assert_eq!(parse(&bytes[48..]).stamp_ns, None);
    }
}
