//! The manifest: the list of Parquet files that hold persisted telemetry.
//!
//! Each version is a new object `_manifest/NNNNNNNNNNNNNNNNNNNN.json`, written (and, on a
//! local disk, fsync'd) before anything relies on it, so a version is replaced atomically:
//! readers see the old list or the new one, never a mix. The object starts with a header
//! line carrying a CRC-32 of the JSON body that follows.

use arrow::array::{Array, TimestampMicrosecondArray, UInt32Array};
use arrow::record_batch::RecordBatch;
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::tables::{DEVICE_ID, SYSTEM_ID, TIME, Table};
use crate::time::CivilDate;

const HEADER_PREFIX: &str = "sunfleet-manifest v1 crc32=";
pub const MANIFEST_DIR: &str = "_manifest";

/// One version of the manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u64,
    /// Every WAL record up to and including this one is held by the files listed.
    pub persisted_wal_seq: u64,
    /// The generation the next persisted file gets.
    pub next_generation: u64,
    pub files: Vec<FileEntry>,
    /// UTC days whose rollups must be rebuilt, with the systems whose readings changed.
    #[serde(default)]
    pub rollups_pending: Vec<PendingRollup>,
}

/// Systems of one UTC day whose readings changed since their rollups were built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingRollup {
    #[serde(with = "civil_date")]
    pub day: CivilDate,
    #[serde(with = "bitmap")]
    pub systems: RoaringBitmap,
}

/// A Parquet file of one table and one UTC day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    #[serde(with = "table_name")]
    pub table: Table,
    #[serde(with = "civil_date")]
    pub day: CivilDate,
    /// Object path, relative to the store's root.
    pub path: String,
    /// Files of a day are ordered by generation; on a duplicate key the higher one wins.
    pub generation: u64,
    pub rows: u64,
    pub bytes: u64,
    pub min_time_us: i64,
    pub max_time_us: i64,
    #[serde(with = "bitmap")]
    pub systems: RoaringBitmap,
    #[serde(with = "bitmap")]
    pub devices: RoaringBitmap,
}

/// What a file holds, gathered from its rows as they are written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileStats {
    pub rows: u64,
    pub bytes: u64,
    pub min_time_us: Option<i64>,
    pub max_time_us: Option<i64>,
    pub systems: RoaringBitmap,
    pub devices: RoaringBitmap,
}

impl FileStats {
    pub fn add(&mut self, table: Table, rows: &RecordBatch) -> Result<(), Error> {
        let times = typed_column::<TimestampMicrosecondArray>(rows, table, TIME)?;
        let systems = typed_column::<UInt32Array>(rows, table, SYSTEM_ID)?;
        let devices = typed_column::<UInt32Array>(rows, table, DEVICE_ID)?;
        for &time in times.values() {
            self.min_time_us = Some(self.min_time_us.map_or(time, |t| t.min(time)));
            self.max_time_us = Some(self.max_time_us.map_or(time, |t| t.max(time)));
        }
        self.systems.extend(systems.values().iter().copied());
        self.devices.extend(devices.values().iter().copied());
        self.rows += rows.num_rows() as u64;
        Ok(())
    }
}

/// A column of `rows` as its concrete array type.
pub fn typed_column<'a, T: Array + 'static>(
    rows: &'a RecordBatch,
    table: Table,
    name: &str,
) -> Result<&'a T, Error> {
    rows.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| Error::Schema {
            table: table.name(),
            reason: format!("column {name} missing or of the wrong type"),
        })
}

impl FileEntry {
    pub fn new(
        table: Table,
        day: CivilDate,
        path: String,
        generation: u64,
        stats: FileStats,
    ) -> Self {
        Self {
            table,
            day,
            path,
            generation,
            rows: stats.rows,
            bytes: stats.bytes,
            min_time_us: stats.min_time_us.unwrap_or(0),
            max_time_us: stats.max_time_us.unwrap_or(0),
            systems: stats.systems,
            devices: stats.devices,
        }
    }
}

impl Manifest {
    pub fn object_path(version: u64) -> String {
        format!("{MANIFEST_DIR}/{version:020}.json")
    }

    /// The version number of a manifest object path, if it is one.
    pub fn version_of(path: &str) -> Option<u64> {
        path.strip_prefix(MANIFEST_DIR)?
            .strip_prefix('/')?
            .strip_suffix(".json")?
            .parse()
            .ok()
    }

    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let body = serde_json::to_vec(self).map_err(|e| Error::Manifest {
            version: self.version,
            reason: format!("encoding: {e}"),
        })?;
        let mut out = format!("{HEADER_PREFIX}{:08x}\n", crc32fast::hash(&body)).into_bytes();
        out.extend_from_slice(&body);
        Ok(out)
    }

    pub fn decode(version: u64, bytes: &[u8]) -> Result<Self, Error> {
        let bad = |reason: String| Error::Manifest { version, reason };
        let newline = bytes
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| bad("no header line".into()))?;
        let header = std::str::from_utf8(&bytes[..newline])
            .map_err(|_| bad("header is not UTF-8".into()))?;
        let expected = header
            .strip_prefix(HEADER_PREFIX)
            .and_then(|hex| u32::from_str_radix(hex, 16).ok())
            .ok_or_else(|| bad(format!("unrecognised header {header:?}")))?;
        let body = &bytes[newline + 1..];
        let actual = crc32fast::hash(body);
        if actual != expected {
            return Err(bad(format!(
                "checksum mismatch: header says {expected:08x}, body has {actual:08x}"
            )));
        }
        let manifest: Manifest =
            serde_json::from_slice(body).map_err(|e| bad(format!("body: {e}")))?;
        if manifest.version != version {
            return Err(bad(format!("body says version {}", manifest.version)));
        }
        Ok(manifest)
    }

    /// Files of `table` for the days `[first, last]`, oldest generation first.
    pub fn files_of(&self, table: Table, first: CivilDate, last: CivilDate) -> Vec<FileEntry> {
        let mut files: Vec<FileEntry> = self
            .files
            .iter()
            .filter(|f| f.table == table && f.day >= first && f.day <= last)
            .cloned()
            .collect();
        files.sort_by_key(|f| f.generation);
        files
    }

    /// Records that `systems` changed on UTC `day`.
    pub fn mark_pending(&mut self, day: CivilDate, systems: &RoaringBitmap) {
        match self.rollups_pending.iter_mut().find(|p| p.day == day) {
            Some(pending) => pending.systems |= systems,
            None => {
                self.rollups_pending.push(PendingRollup {
                    day,
                    systems: systems.clone(),
                });
                self.rollups_pending.sort_by_key(|p| p.day);
            }
        }
    }

    /// Files of `table` whose time range overlaps `[start_us, end_us)` and, when given, that
    /// hold one of `systems`; oldest generation first.
    pub fn select(
        &self,
        table: Table,
        start_us: i64,
        end_us: i64,
        systems: Option<&RoaringBitmap>,
    ) -> Vec<FileEntry> {
        let mut files: Vec<FileEntry> = self
            .files
            .iter()
            .filter(|f| f.table == table && f.min_time_us < end_us && f.max_time_us >= start_us)
            .filter(|f| systems.is_none_or(|s| !f.systems.is_disjoint(s)))
            .cloned()
            .collect();
        files.sort_by_key(|f| f.generation);
        files
    }
}

mod table_name {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    use crate::tables::Table;

    pub fn serialize<S: Serializer>(table: &Table, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(table.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Table, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(D::Error::custom)
    }
}

mod civil_date {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    use crate::time::CivilDate;

    pub fn serialize<S: Serializer>(day: &CivilDate, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&day.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<CivilDate, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(D::Error::custom)
    }
}

mod bitmap {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use roaring::RoaringBitmap;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(bitmap: &RoaringBitmap, s: S) -> Result<S::Ok, S::Error> {
        let mut bytes = Vec::with_capacity(bitmap.serialized_size());
        bitmap
            .serialize_into(&mut bytes)
            .map_err(serde::ser::Error::custom)?;
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<RoaringBitmap, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = STANDARD.decode(text).map_err(D::Error::custom)?;
        RoaringBitmap::deserialize_from(&bytes[..]).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            version: 7,
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
                devices: RoaringBitmap::from_iter([10u32, 11]),
            }],
            rollups_pending: vec![PendingRollup {
                day: CivilDate::from_ymd(2026, 6, 20).unwrap(),
                systems: RoaringBitmap::from_iter([5u32]),
            }],
        }
    }

    #[test]
    fn round_trips_and_detects_damage() {
        let manifest = sample();
        let bytes = manifest.encode().unwrap();
        assert_eq!(Manifest::decode(7, &bytes).unwrap(), manifest);
        let mut damaged = bytes.clone();
        let last = damaged.len() - 3;
        damaged[last] ^= 1;
        assert!(matches!(
            Manifest::decode(7, &damaged),
            Err(Error::Manifest { version: 7, .. })
        ));
        assert!(Manifest::decode(8, &bytes).is_err(), "version must match");
        assert!(Manifest::decode(7, &bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn object_paths_round_trip() {
        assert_eq!(Manifest::version_of(&Manifest::object_path(42)), Some(42));
        assert_eq!(Manifest::version_of("_manifest/x.json"), None);
        assert_eq!(Manifest::version_of("readings/x.json"), None);
    }
}
