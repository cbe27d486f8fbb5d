//! The batch calls over real loopback sockets: what is sent in one sendmmsg arrives through
//! one recvmmsg with the right lengths, sources, timestamps and drop counts.

use std::io::ErrorKind;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use mmsg::{RecvHeaders, RecvMeta, SendHeaders, Wait};

fn socket() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").unwrap()
}

fn set_int(fd: RawFd, opt: libc::c_int, v: libc::c_int) {
    // SAFETY: a valid descriptor and an int option value that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            &v as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt {opt}: {}",
        std::io::Error::last_os_error()
    );
}

/// Receive `want` datagrams (several calls if need be), waiting at most a second for each call.
fn recv_all(
    h: &mut RecvHeaders,
    s: &UdpSocket,
    bufs: &mut [Vec<u8>],
    want: usize,
) -> Vec<(Vec<u8>, RecvMeta)> {
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut got = Vec::new();
    while got.len() < want {
        let n = h
            .recv(
                s.as_raw_fd(),
                bufs.iter_mut().map(|b| &mut b[..]),
                Wait::ForOne,
            )
            .unwrap();
        assert!(n > 0);
        for (i, m) in h.meta().iter().enumerate() {
            got.push((bufs[i][..m.len].to_vec(), *m));
        }
    }
    got
}

#[test]
fn a_batch_goes_out_in_one_call_and_comes_back_whole() {
    let (tx, a, b) = (socket(), socket(), socket());
    let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let msgs: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 10 + 100 * i as usize]).collect();
    // Alternate destinations in one call: every datagram carries its own address.
    let mut send = SendHeaders::new(8);
    let sent = send
        .send(
            tx.as_raw_fd(),
            msgs.iter()
                .enumerate()
                .map(|(i, m)| (&m[..], if i % 2 == 0 { to_a } else { to_b })),
        )
        .unwrap();
    assert_eq!(sent, 6);

    let mut recv = RecvHeaders::new(8, false);
    let mut bufs = vec![vec![0u8; 1500]; 8];
    for (sock, first) in [(&a, 0), (&b, 1)] {
        let got = recv_all(&mut recv, sock, &mut bufs, 3);
        assert_eq!(got.len(), 3);
        for (k, (data, m)) in got.iter().enumerate() {
            let want = &msgs[first + 2 * k];
            assert_eq!(data, want);
            assert_eq!(m.len, want.len());
            assert_eq!(m.src, Some(tx.local_addr().unwrap()));
            assert_eq!(m.stamp_ns, None, "no control room asked for");
        }
        assert_eq!(recv.kernel_drops(), None);
    }
}

#[test]
fn an_empty_queue_would_block_and_no_slots_make_no_call() {
    let s = socket();
    let mut recv = RecvHeaders::new(4, true);
    let mut bufs = vec![vec![0u8; 64]; 4];
    let e = recv
        .recv(s.as_raw_fd(), bufs.iter_mut().map(|b| &mut b[..]), Wait::No)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock);
    assert!(recv.meta().is_empty());
    // A closed descriptor would fail the call: Ok(0) shows none was made.
    assert_eq!(recv.recv(-1, std::iter::empty(), Wait::No).unwrap(), 0);
    let mut send = SendHeaders::new(4);
    assert_eq!(send.send(-1, std::iter::empty()).unwrap(), 0);
}

#[test]
fn waiting_for_one_ends_at_the_receive_timeout() {
    let s = socket();
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut recv = RecvHeaders::new(2, false);
    let mut bufs = vec![vec![0u8; 64]; 2];
    let e = recv
        .recv(
            s.as_raw_fd(),
            bufs.iter_mut().map(|b| &mut b[..]),
            Wait::ForOne,
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock);
}

#[test]
fn timestamps_and_the_drop_counter_come_with_ancillary_room() {
    let (tx, rx) = (socket(), socket());
    set_int(rx.as_raw_fd(), libc::SO_TIMESTAMPNS, 1);
    set_int(rx.as_raw_fd(), libc::SO_RXQ_OVFL, 1);
    let to = rx.local_addr().unwrap();
    let before = wall_ns();
    let mut send = SendHeaders::new(4);
    let msgs = [b"one".as_slice(), b"two", b"three"];
    assert_eq!(
        send.send(tx.as_raw_fd(), msgs.iter().map(|m| (*m, to)))
            .unwrap(),
        3
    );

    let mut recv = RecvHeaders::new(4, true);
    let mut bufs = vec![vec![0u8; 64]; 4];
    let got = recv_all(&mut recv, &rx, &mut bufs, 3);
    for (m, (data, meta)) in msgs.iter().zip(&got) {
        assert_eq!(data, m);
        let stamp = meta.stamp_ns.expect("SO_TIMESTAMPNS is on");
        assert!(
            stamp >= before && stamp <= wall_ns(),
            "{stamp} not within the test"
        );
    }
    // The kernel attaches the counter only once it is non-zero.
    assert_eq!(
        recv.kernel_drops(),
        None,
        "SO_RXQ_OVFL is on, nothing dropped yet"
    );

    // Reusing the headers must not lose the control room (the kernel shrinks the in-out
    // msg_controllen of each call): a second call still sees timestamps.
    assert_eq!(
        send.send(tx.as_raw_fd(), [(b"again".as_slice(), to)])
            .unwrap(),
        1
    );
    let got = recv_all(&mut recv, &rx, &mut bufs, 1);
    assert!(got[0].1.stamp_ns.is_some());
}

#[test]
fn drops_at_a_full_receive_queue_are_counted() {
    let (tx, rx) = (socket(), socket());
    set_int(rx.as_raw_fd(), libc::SO_RXQ_OVFL, 1);
    // The smallest receive buffer the kernel grants holds a few datagrams of this size.
    set_int(rx.as_raw_fd(), libc::SO_RCVBUF, 1);
    let to = rx.local_addr().unwrap();
    let big = vec![7u8; 1200];
    let mut send = SendHeaders::new(64);
    let mut sent = 0;
    for _ in 0..4 {
        // The sender's own buffer may fill too: count what the kernel took.
        sent += send
            .send(tx.as_raw_fd(), std::iter::repeat((&big[..], to)).take(64))
            .unwrap_or(0);
    }
    let mut recv = RecvHeaders::new(64, true);
    let mut bufs = vec![vec![0u8; 1500]; 64];
    let mut queued = 0;
    while let Ok(n) = recv.recv(
        rx.as_raw_fd(),
        bufs.iter_mut().map(|b| &mut b[..]),
        Wait::No,
    ) {
        queued += n;
    }
    assert!(queued > 0 && queued < sent, "{queued} of {sent} queued");
    // A datagram carries the counter as of when it was queued: those queued before the drops
    // say nothing (the kernel omits a zero count), the next one says how many.
    assert_eq!(send.send(tx.as_raw_fd(), [(&big[..], to)]).unwrap(), 1);
    let n = recv
        .recv(
            rx.as_raw_fd(),
            bufs.iter_mut().map(|b| &mut b[..]),
            Wait::No,
        )
        .unwrap();
    assert_eq!(n, 1);
    let drops = recv
        .kernel_drops()
        .expect("SO_RXQ_OVFL is on and datagrams were dropped");
    assert!(
        drops > 0 && drops as usize <= sent - queued,
        "{drops} drops, {queued} of {sent} queued"
    );
}

#[test]
fn a_call_takes_no_more_than_its_capacity_and_cuts_long_datagrams() {
    let (tx, rx) = (socket(), socket());
    let to = rx.local_addr().unwrap();
    let mut send = SendHeaders::new(2);
    let msgs: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 100]).collect();
    // Five offered, two taken: the capacity bounds one call.
    assert_eq!(
        send.send(tx.as_raw_fd(), msgs.iter().map(|m| (&m[..], to)))
            .unwrap(),
        2
    );
    assert_eq!(
        send.send(tx.as_raw_fd(), msgs[2..].iter().map(|m| (&m[..], to)))
            .unwrap(),
        2
    );

    let mut recv = RecvHeaders::new(3, false);
    // Slots of 40 bytes: each 100-byte datagram is cut to 40.
    let mut bufs = vec![vec![0u8; 40]; 8];
    rx.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let n = recv
        .recv(
            rx.as_raw_fd(),
            bufs.iter_mut().map(|b| &mut b[..]),
            Wait::ForOne,
        )
        .unwrap();
    assert!((1..=3).contains(&n));
    for (i, m) in recv.meta().iter().enumerate() {
        assert_eq!(m.len, 40);
        assert_eq!(bufs[i], vec![i as u8; 40]);
    }
}

fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[test]
fn control_room_is_restored_for_every_call() {
    // The kernel sets the in-out msg_controllen to what it wrote: 0 for a datagram without
    // control messages. Headers reused without resetting it would never see a timestamp again.
    let (tx, rx) = (socket(), socket());
    let to = rx.local_addr().unwrap();
    let mut send = SendHeaders::new(1);
    let mut recv = RecvHeaders::new(1, true);
    let mut bufs = vec![vec![0u8; 64]; 1];
    assert_eq!(
        send.send(tx.as_raw_fd(), [(b"plain".as_slice(), to)])
            .unwrap(),
        1
    );
    let got = recv_all(&mut recv, &rx, &mut bufs, 1);
    assert_eq!(got[0].1.stamp_ns, None, "SO_TIMESTAMPNS is off");
    set_int(rx.as_raw_fd(), libc::SO_TIMESTAMPNS, 1);
    assert_eq!(
        send.send(tx.as_raw_fd(), [(b"stamped".as_slice(), to)])
            .unwrap(),
        1
    );
    let got = recv_all(&mut recv, &rx, &mut bufs, 1);
    assert_eq!(got[0].0, b"stamped");
    assert!(
        got[0].1.stamp_ns.is_some(),
        "the control room shrank to the last call's"
    );
}
