//! The manifest decoder on arbitrary, damaged and hostile objects: a manifest or an error
//! with a reason, never a panic, and a damaged object is never taken for another manifest.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use roaring::RoaringBitmap;
use serde_json::Value;
use sunfleet_engine::Error;
use sunfleet_engine::manifest::{FileEntry, Manifest, PendingRollup};
use sunfleet_engine::tables::Table;
use sunfleet_engine::time::CivilDate;

use crate::damage::damage;

const VERSION: u64 = 7;

/// A manifest with every kind of bitmap container (array, bitmap and run).
fn sample() -> Manifest {
    let mut runs: RoaringBitmap = (100_000u32..160_000).collect();
    runs.optimize();
    Manifest {
        version: VERSION,
        persisted_wal_seq: 1234,
        next_generation: 3,
        files: vec![FileEntry {
            table: Table::Readings,
            day: CivilDate::from_ymd(2026, 6, 21).unwrap(),
            path: "readings/day=2026-06-21/00000000000000000002.parquet".into(),
            generation: 2,
            rows: 10,
            bytes: 999,
            min_time_us: 1,
            max_time_us: 2,
            systems: RoaringBitmap::from_iter([1u32, 5, 70_000]),
            devices: (0u32..20_000).step_by(3).collect(),
        }],
        rollups_pending: vec![PendingRollup {
            day: CivilDate::from_ymd(2026, 6, 20).unwrap(),
            systems: runs,
        }],
    }
}

/// `body` under a header line whose checksum matches it.
fn with_header(body: &[u8]) -> Vec<u8> {
    let mut object =
        format!("sunfleet-manifest v1 crc32={:08x}\n", crc32fast::hash(body)).into_bytes();
    object.extend_from_slice(body);
    object
}

/// What every decode must give: a manifest of the version asked for, which encodes and
/// reads back the same, or a manifest error with a reason.
fn outcome(bytes: &[u8]) -> Result<Option<Manifest>, TestCaseError> {
    match Manifest::decode(VERSION, bytes) {
        Ok(manifest) => {
            prop_assert_eq!(manifest.version, VERSION);
            let again = manifest.encode().unwrap();
            prop_assert_eq!(&Manifest::decode(VERSION, &again).unwrap(), &manifest);
            Ok(Some(manifest))
        }
        Err(Error::Manifest { version, reason }) => {
            prop_assert_eq!(version, VERSION);
            prop_assert!(!reason.trim().is_empty(), "an error without a reason");
            Ok(None)
        }
        Err(other) => Err(TestCaseError::fail(format!(
            "not a manifest error: {other}"
        ))),
    }
}

/// Where hostile values go (JSON pointers; a new key adds a field, `-` appends).
const PLACES: &[&str] = &[
    "",
    "/version",
    "/persisted_wal_seq",
    "/next_generation",
    "/files",
    "/files/0",
    "/files/-",
    "/files/0/table",
    "/files/0/day",
    "/files/0/path",
    "/files/0/generation",
    "/files/0/rows",
    "/files/0/bytes",
    "/files/0/min_time_us",
    "/files/0/max_time_us",
    "/files/0/systems",
    "/files/0/devices",
    "/files/0/unknown",
    "/rollups_pending",
    "/rollups_pending/0",
    "/rollups_pending/-",
    "/rollups_pending/0/day",
    "/rollups_pending/0/systems",
    "/unknown",
];

/// Puts `new` at the JSON pointer `place`: replacing what is there, adding a key, or (with
/// `-`) appending to an array. A place that no longer exists is skipped.
fn put(value: &mut Value, place: &str, new: Value) {
    let Some((parent, last)) = place.rsplit_once('/') else {
        *value = new;
        return;
    };
    match value.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.insert(last.to_owned(), new);
        }
        Some(Value::Array(items)) if last == "-" => items.push(new),
        Some(Value::Array(items)) => {
            if let Some(slot) = last.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                *slot = new;
            }
        }
        _ => {}
    }
}

fn json_string(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

/// JSON text that is no number of any field's type, or only just is.
const LITERALS: &[&str] = &[
    "0",
    "-1",
    "7",
    "7.0",
    "-0",
    "1.5",
    "1e19",
    "1e400",
    "-1e400",
    "9223372036854775807",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999999",
    "NaN",
    "Infinity",
    "null",
    "true",
    "false",
    "[]",
    "{}",
    "\"\"",
    "[null]",
    "[{}]",
    "{\"a\":1}",
    "\"\\ud800\"",
    "\"\\u0000\"",
    "'x'",
    "",
    "]",
];

/// Dates as the manifest spells them, and as it should not.
const DATES: &[&str] = &[
    "2026-06-21",
    "2024-02-29",
    "2023-02-29",
    "0000-01-01",
    "9999-12-31",
    "+999-01-01",
    "+999-+1-+1",
    "-001-01-01",
    "2026-13-01",
    "2026-00-10",
    "2026-01-00",
    "2026-01-32",
    "99999-01-01",
    " 2026-06-21 ",
    "2026-6-21",
    "2026-06-21T00:00:00Z",
    "",
    "--",
];

fn date() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(DATES).prop_map(str::to_owned),
        (any::<i32>(), any::<u32>(), any::<u32>())
            .prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}")),
        (-10i32..10_000, 0u32..14, 0u32..33).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}")),
        "[-+ 0-9]{0,5}-[-+ 0-9]{0,3}-[-+ 0-9]{0,3}",
    ]
}

const TABLES: &[&str] = &[
    "readings",
    "meter_readings",
    "rollup_month",
    "Readings",
    " readings",
    "readings\u{0}",
    "",
];

fn table() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(TABLES).prop_map(str::to_owned),
        any::<String>(),
    ]
}

/// Bytes for a bitmap: arbitrary, a real bitmap damaged, or a header that claims more
/// containers than follow.
fn bitmap_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        (
            prop::collection::vec(any::<u32>(), 0..50),
            any::<u32>(),
            0u32..70_000,
            any::<bool>(),
            prop::collection::vec(damage(), 0..3),
        )
            .prop_map(|(values, start, len, optimize, damages)| {
                let mut bitmap: RoaringBitmap = values.into_iter().collect();
                bitmap.extend(start..start.saturating_add(len));
                if optimize {
                    bitmap.optimize();
                }
                let mut bytes = Vec::new();
                bitmap.serialize_into(&mut bytes).unwrap();
                for damage in &damages {
                    damage.apply(&mut bytes);
                }
                bytes
            }),
        (
            any::<bool>(),
            any::<u32>(),
            prop::collection::vec(any::<u8>(), 0..32)
        )
            .prop_map(|(runs, size, rest)| {
                // The two cookies of the Roaring format: with run containers (the count in
                // the cookie) and without (the count after it).
                let mut bytes = if runs {
                    (12_347u32 | (size << 16)).to_le_bytes().to_vec()
                } else {
                    let mut bytes = 12_346u32.to_le_bytes().to_vec();
                    bytes.extend_from_slice(&size.to_le_bytes());
                    bytes
                };
                bytes.extend_from_slice(&rest);
                bytes
            }),
    ]
}

/// JSON text for a field: right, wrong or hostile.
fn hostile_json() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(LITERALS).prop_map(str::to_owned),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|x| x.to_string()),
        date().prop_map(|d| json_string(&d)),
        table().prop_map(|t| json_string(&t)),
        bitmap_bytes().prop_map(|b| json_string(&STANDARD.encode(b))),
        "[A-Za-z0-9+/=!_ -]{0,24}".prop_map(|s| json_string(&s)),
        any::<String>().prop_map(|s| json_string(&s)),
        (1usize..3_000).prop_map(|depth| format!("{}{}", "[".repeat(depth), "]".repeat(depth))),
    ]
}

#[test]
fn the_sample_reads_back() {
    let manifest = sample();
    assert_eq!(
        outcome(&manifest.encode().unwrap()).unwrap(),
        Some(manifest.clone())
    );
    // The hostile test starts from the same JSON: unchanged, it is accepted.
    let body = serde_json::to_string(&serde_json::to_value(&manifest).unwrap()).unwrap();
    assert_eq!(
        outcome(&with_header(body.as_bytes())).unwrap(),
        Some(manifest)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary bytes: refused with a reason.
    #[test]
    fn arbitrary_bytes_are_refused_with_a_reason(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        outcome(&bytes)?;
    }

    /// An arbitrary body under a checksum that matches it reaches the JSON parser.
    #[test]
    fn arbitrary_bodies_with_a_valid_checksum_are_refused_with_a_reason(
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..512),
            any::<String>().prop_map(String::into_bytes),
        ],
    ) {
        outcome(&with_header(&body))?;
    }

    /// A damaged manifest is refused, or read as the original (when only the header's
    /// spelling of the same checksum changed); never read as something else.
    #[test]
    fn a_damaged_manifest_is_refused_never_misread(
        damages in prop::collection::vec(damage(), 1..4),
    ) {
        let original = sample();
        let mut bytes = original.encode().unwrap();
        for damage in &damages {
            damage.apply(&mut bytes);
        }
        if let Some(manifest) = outcome(&bytes)? {
            prop_assert_eq!(manifest, original);
        }
    }

    /// Hostile field values under a valid checksum (huge or negative numbers, impossible
    /// dates, bogus bitmaps, wrong types, deep nesting): refused with a reason, or read.
    #[test]
    fn hostile_fields_with_a_valid_checksum_are_refused_with_a_reason(
        changes in prop::collection::vec((prop::sample::select(PLACES), hostile_json()), 1..4),
    ) {
        let marker = |i: usize| Value::String(format!("@@hostile {i}@@"));
        let mut value = serde_json::to_value(sample()).unwrap();
        for (i, (place, _)) in changes.iter().enumerate() {
            put(&mut value, place, marker(i));
        }
        let mut body = serde_json::to_string(&value).unwrap();
        for (i, (_, hostile)) in changes.iter().enumerate() {
            body = body.replacen(&marker(i).to_string(), hostile, 1);
        }
        outcome(&with_header(body.as_bytes()))?;
    }
}
