//! Arbitrary bytes into the frame decoder: it must never panic, and whatever it accepts
//! must encode back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sunfleet_ingest::frame::{decode, encode};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((frame, used))) = decode(rest) {
        let again = encode(&frame).expect("a decoded frame encodes");
        let (round, _) = decode(&again)
            .expect("an encoded frame decodes")
            .expect("an encoded frame is complete");
        assert_eq!(round, frame);
        rest = &rest[used..];
    }
});
