#![no_main]
//! Arbitrary bytes through the STUN classifier of the SIP port (`sipshard::stun`).
//!
//! Checked: nothing panics; whatever `classify` accepts as a Binding request has the framing
//! `looks_like_stun` promised, and the answer built for it classifies as a well-formed
//! non-request (with its FINGERPRINT checking out when one was asked for).

use libfuzzer_sys::fuzz_target;
use sipshard::stun::{binding_success, classify, looks_like_stun, Stun, HEADER};

fuzz_target!(|data: &[u8]| {
    let verdict = classify(data);
    if !looks_like_stun(data) {
        assert!(matches!(verdict, Stun::Malformed(_)));
        return;
    }
    if let Stun::BindingRequest {
        transaction,
        fingerprint,
    } = verdict
    {
        assert_eq!(&data[8..HEADER], &transaction);
        let mut out = Vec::new();
        for mapped in ["192.0.2.1:5060", "[2001:db8::1]:40000"] {
            binding_success(&transaction, mapped.parse().unwrap(), fingerprint, &mut out);
            assert_eq!(classify(&out), Stun::Other);
        }
    }
});
