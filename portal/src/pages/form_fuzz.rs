//! Strategies for the form parsers' property tests: what people type, what they should not,
//! and what a hostile client posts.

use proptest::prelude::*;

/// Words the forms expect, numbers at and past their limits, dates real and not, and
/// hostile spellings.
const WORDS: &[&str] = &[
    "",
    " ",
    "on",
    "0",
    "-0",
    "1",
    "-1",
    "+1",
    "0,5",
    "0.25",
    "1,5e3",
    "5",
    "5.5",
    "24",
    "30",
    "50",
    "51",
    "85",
    "90",
    "92",
    "95",
    "180",
    "360",
    "10000",
    "10000000",
    "10000001",
    "65535",
    "65536",
    "4294967295",
    "4294967296",
    "18446744073709551616",
    "999999999999",
    "1000000000000",
    "000000000001",
    "121999000001",
    "NaN",
    "inf",
    "-inf",
    "infinity",
    "1e309",
    "-1e309",
    "2026-05-10",
    "2026-05-11",
    "2025-06-01",
    "2027-06-01",
    "1989-12-31",
    "2024-02-29",
    "2026-02-30",
    "0000-01-01",
    "9999-12-31",
    "-009999-01-01",
    "+10000-01-01",
    "residential",
    "commercial",
    "system",
    "array",
    "owner",
    "installer",
    "site",
    "other",
    "operational",
    "not_operational",
    "microinverter",
    "battery",
    "meter",
    "microinverters",
    "ethernet",
    "wifi",
    "cellular",
    "rack_rail",
    "building",
    "en",
    "fr",
    "de",
    "Europe/Paris",
    "UTC",
    "../../etc/passwd",
    "a5",
    "a6",
    "n1",
    "n2",
    "n4294967295",
    "a@b.c",
    "x@y",
    "@example.com",
    "{}",
    "\u{0}",
    "\u{202e}",
    "名前",
];

/// Any text a field may hold: anything at all, digits, near-numbers, dates (also out of
/// range), the words above, and texts at and past the length limits (counted in
/// characters, written with two-byte ones).
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(WORDS).prop_map(str::to_owned),
        2 => any::<String>(),
        1 => "[0-9]{0,14}",
        1 => "[ 0-9eE.,+-]{0,16}",
        1 => "-?[0-9]{1,6}-[0-9]{1,3}-[0-9]{1,3}",
        1 => any::<f64>().prop_map(|x| x.to_string()),
        1 => prop::sample::select(LENGTHS.to_vec()).prop_map(|n| "é".repeat(n)),
    ]
}

/// Lengths around every limit the forms check.
const LENGTHS: [usize; 15] = [
    39, 40, 41, 99, 100, 101, 199, 200, 201, 254, 255, 500, 501, 2000, 2001,
];

/// Posted fields: `valid` (or nothing) with up to six fields set to any text, a known
/// field's name or any name. A field posted twice keeps its last value.
pub fn form(
    valid: Vec<(String, String)>,
    names: Vec<String>,
) -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![4 => prop::sample::select(names), 1 => any::<String>()];
    (any::<bool>(), prop::collection::vec((name, text()), 0..6)).prop_map(
        move |(from_valid, changes)| {
            let mut fields = if from_valid {
                valid.clone()
            } else {
                Vec::new()
            };
            for (name, value) in changes {
                fields.retain(|(n, _)| *n != name);
                fields.push((name, value));
            }
            fields
        },
    )
}

/// Owned pairs, for [`form`].
pub fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

/// A refusal explains itself: at least one error, each on a field and saying something.
pub fn explained<F: AsRef<str>>(errors: &[(F, String)]) -> Result<(), TestCaseError> {
    prop_assert!(!errors.is_empty(), "refused without an error");
    for (field, message) in errors {
        let field = field.as_ref();
        prop_assert!(!field.is_empty(), "an error on no field: {:?}", message);
        prop_assert!(
            !message.trim().is_empty(),
            "field {} refused in silence",
            field
        );
    }
    Ok(())
}
