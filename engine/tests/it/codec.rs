//! The WAL record body: lossless, compact, and safe on damaged input.

use proptest::prelude::*;
use sunfleet_engine::wal::codec::{decode, encode};

use crate::sample_batches;

#[test]
fn generated_batches_round_trip() {
    let batches = sample_batches(8);
    assert!(batches.len() > 500);
    let mut readings = 0;
    let mut bytes = 0;
    for batch in &batches {
        let body = encode(batch).unwrap();
        assert_eq!(&decode(&body).unwrap(), batch);
        readings += batch.reading_count();
        bytes += body.len();
    }
    // Deltas and varints alone, before the WAL compresses groups: under 2 bytes per field.
    let per_reading = bytes as f64 / readings as f64;
    assert!(per_reading < 22.0, "{per_reading:.1} bytes per reading");
}

#[test]
fn every_truncation_of_a_body_is_an_error() {
    let batch = &sample_batches(1)[40];
    let body = encode(batch).unwrap();
    for cut in 0..body.len() {
        assert!(decode(&body[..cut]).is_err(), "cut at {cut} decoded");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
    }
}
