//! How small can a day of microinverter readings be in Parquet? Writes one UTC day of the
//! generated fleet's readings, sorted by (system, device, time), under several writer
//! settings, and reports bytes per reading. Informs the engine's persist settings (#3).

use std::collections::HashMap;

use anyhow::Context;
use arrow::array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use sunfleet_engine::directory::DeviceRef;
use sunfleet_engine::ids::{DeviceId, Serial, SystemId};
use sunfleet_engine::storage::{FileKind, writer_properties};
use sunfleet_engine::tables::{ReadingsBuilder, RowBuilder, Table};
use sunfleet_engine::telemetry::MicroReading;
use sunfleet_engine::time::CivilDate;
use sunfleet_fixtures::stream::stream_system;
use sunfleet_fixtures::world::devices::system_index_of_micro;
use sunfleet_fixtures::{Fleet, FleetConfig, UploadKind};

const INT_COLUMNS: [&str; 12] = [
    "system_id",
    "device_id",
    "serial",
    "time",
    "interval_s",
    "energy_j",
    "ac_power_w",
    "dc_voltage_mv",
    "dc_current_ma",
    "ac_voltage_mv",
    "ac_frequency_mhz",
    "status",
];

pub fn run(systems: u32, seed: u64, time_major: bool) -> anyhow::Result<()> {
    let start = CivilDate::from_ymd(2026, 6, 1).context("start date")?;
    let fleet = Fleet::new(FleetConfig::new(seed, systems, start, 1));
    // Deduplicated readings (duplicates dropped, as a compacted partition holds them).
    let mut rows: Vec<(u32, u32, MicroReading)> = Vec::new();
    let mut device_ids: HashMap<Serial, u32> = HashMap::new();
    for spec in fleet.systems() {
        stream_system(&fleet, spec, |upload| {
            if upload.kind == UploadKind::Duplicate {
                return;
            }
            for r in upload.batch.micro.rows() {
                let next = device_ids.len() as u32 + 1;
                let device = *device_ids.entry(r.serial).or_insert(next);
                let system = system_index_of_micro(r.serial).map_or(0, |i| i + 1);
                rows.push((system, device, r));
            }
        });
    }
    rows.sort_by_key(|(system, device, r)| (*system, *device, r.time_us));
    rows.dedup_by_key(|(_, device, r)| (*device, r.time_us));
    let order = if time_major {
        // Microinverters of one site at one instant share grid voltage and frequency.
        rows.sort_by_key(|(system, device, r)| (*system, r.time_us, *device));
        "(system, time, device)"
    } else {
        "(system, device, time)"
    };
    let batch = to_record_batch(&rows);
    say!(
        "{} microinverter readings of one June day ({systems} systems, seed {seed}), sorted by {order}",
        rows.len()
    );
    say!("| writer settings | bytes | bytes per reading |");
    say!("|---|---|---|");
    let mut smallest: Option<(&str, Vec<u8>)> = None;
    for (name, props) in variants()? {
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props))?;
        writer.write(&batch)?;
        writer.close()?;
        say!(
            "| {name} | {} | {:.2} |",
            out.len(),
            out.len() as f64 / rows.len() as f64
        );
        if smallest
            .as_ref()
            .is_none_or(|(_, best)| out.len() < best.len())
        {
            smallest = Some((name, out));
        }
    }
    if let Some((name, bytes)) = smallest {
        column_breakdown(name, bytes, rows.len())?;
    }
    Ok(())
}

/// Compressed bytes per reading of each column in a written file.
fn column_breakdown(name: &str, bytes: Vec<u8>, readings: usize) -> anyhow::Result<()> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(bytes::Bytes::from(bytes))?;
    let metadata = reader.metadata();
    let columns = metadata.file_metadata().schema_descr().num_columns();
    say!("");
    say!("Per column, {name}:");
    say!("| column | bytes per reading |");
    say!("|---|---|");
    for c in 0..columns {
        let total: i64 = metadata
            .row_groups()
            .iter()
            .map(|rg| rg.column(c).compressed_size())
            .sum();
        let column_name = metadata
            .file_metadata()
            .schema_descr()
            .column(c)
            .name()
            .to_owned();
        say!("| {column_name} | {:.2} |", total as f64 / readings as f64);
    }
    Ok(())
}

fn variants() -> anyhow::Result<Vec<(&'static str, WriterProperties)>> {
    let base = || {
        WriterProperties::builder()
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_max_row_group_row_count(Some(1 << 20))
    };
    let zstd = |level: i32| Compression::ZSTD(ZstdLevel::try_new(level).unwrap_or_default());
    let delta = |mut builder: parquet::file::properties::WriterPropertiesBuilder| {
        builder = builder.set_dictionary_enabled(false);
        for column in INT_COLUMNS {
            builder = builder
                .set_column_encoding(ColumnPath::from(column), Encoding::DELTA_BINARY_PACKED);
        }
        builder
    };
    Ok(vec![
        ("parquet defaults, no compression", base().build()),
        (
            "ZSTD(1), dictionary",
            base().set_compression(zstd(1)).build(),
        ),
        (
            "ZSTD(1), delta-binary-packed integers",
            delta(base().set_compression(zstd(1))).build(),
        ),
        (
            "ZSTD(9), delta-binary-packed integers",
            delta(base().set_compression(zstd(9))).build(),
        ),
        (
            "ZSTD(9), dictionary",
            base().set_compression(zstd(9)).build(),
        ),
        (
            "the engine's compacted files",
            writer_properties(Table::Readings, FileKind::Compacted)?,
        ),
    ])
}

/// The rows as the engine's `readings` table (same schema and builder as the engine).
fn to_record_batch(rows: &[(u32, u32, MicroReading)]) -> RecordBatch {
    let mut builder = ReadingsBuilder::new();
    for (system, device, reading) in rows {
        let device = DeviceRef {
            system: SystemId(*system),
            device: DeviceId(*device),
        };
        builder.push(device, reading);
    }
    builder.finish()
}
