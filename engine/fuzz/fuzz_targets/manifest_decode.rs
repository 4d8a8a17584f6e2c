//! Arbitrary bytes into the manifest decoder, as stored and under a header whose checksum
//! matches (so the JSON body and its fields are what is fuzzed): it must never panic, must
//! refuse with a manifest error that gives a reason, and whatever it accepts must encode
//! and decode back to the same manifest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sunfleet_engine::Error;
use sunfleet_engine::manifest::Manifest;

const VERSION: u64 = 1;

fn check(bytes: &[u8]) {
    match Manifest::decode(VERSION, bytes) {
        Ok(manifest) => {
            let again = manifest.encode().expect("a decoded manifest encodes");
            let round = Manifest::decode(VERSION, &again).expect("an encoded manifest decodes");
            assert_eq!(round, manifest);
        }
        Err(Error::Manifest { version, reason }) => {
            assert_eq!(version, VERSION);
            assert!(!reason.is_empty(), "a refusal without a reason");
        }
        Err(other) => panic!("not a manifest error: {other}"),
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut object =
        format!("sunfleet-manifest v1 crc32={:08x}\n", crc32fast::hash(data)).into_bytes();
    object.extend_from_slice(data);
    check(&object);
});
