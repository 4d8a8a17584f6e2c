//! `sunfleet import` and `sunfleet export` against a real data folder.

use std::path::Path;

use arrow::array::AsArray;
use arrow::datatypes::{TimestampMicrosecondType, UInt32Type};
use sunfleet_engine::directory::DeviceDirectory;
use sunfleet_engine::registry::Registry;
use sunfleet_engine::store::{ReadRequest, Store, StoreConfig};
use sunfleet_engine::tables::Table;
use sunfleet_engine::time::CivilDate;
use sunfleet_fixtures::seed::seed_registry;
use sunfleet_fixtures::{Fleet, FleetConfig, SystemSpec};

use crate::{stderr, stdout, sunfleet};

/// A data folder whose registry holds a small generated fleet; returns its first reporting
/// system.
fn seeded_data_folder(dir: &Path) -> SystemSpec {
    let fleet = Fleet::new(FleetConfig::new(
        4,
        6,
        CivilDate::from_ymd(2026, 6, 1).unwrap(),
        1,
    ));
    let registry = Registry::open(dir.join("registry.sqlite3")).unwrap();
    seed_registry(&registry, &fleet).unwrap();
    fleet.systems().next().unwrap()
}

fn read_readings(dir: &Path, day: CivilDate) -> arrow::record_batch::RecordBatch {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let registry = Registry::open(dir.join("registry.sqlite3")).unwrap();
        let directory = DeviceDirectory::new();
        registry.load_directory(&directory).unwrap();
        let store = Store::open(StoreConfig::new(dir), directory).await.unwrap();
        store
            .read(&ReadRequest::days(Table::Readings, day, day))
            .await
            .unwrap()
    })
}

#[test]
fn import_validates_rows_stores_the_good_ones_and_export_writes_them_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let system = seeded_data_folder(&data);
    let a = system.micros[0].serial;
    let b = system.micros[1].serial;
    // Line numbers count the header as line 1.
    let csv = format!(
        "Serial Number,Date/Time,Energy (Wh),Interval (s)\n\
         {a},2026-05-03T10:05:00Z,12.5,300\n\
         {a},2026-05-03T10:10:00Z,13,300\n\
         {b},2026-05-03 12:10:00,20,\n\
         {a},2026-05-03T10:10:00Z,14,300\n\
         999999999999,2026-05-03T10:05:00Z,5,300\n\
         {a},yesterday,5,300\n\
         {a},2026-05-03T10:15:00Z,-1,300\n\
         {a},2026-05-03T10:20:00Z,900,300\n\
         {a},2099-01-01T00:00:00Z,1,300\n\
         12x,2026-05-03T10:05:00Z,1,300\n"
    );
    let file = dir.path().join("history.csv");
    std::fs::write(&file, csv).unwrap();
    let data_arg = data.to_str().unwrap();
    let file_arg = file.to_str().unwrap();

    // --strict: one bad row and nothing is imported.
    let strict = sunfleet(&["import", "--data", data_arg, "--strict", file_arg]);
    assert_eq!(strict.status.code(), Some(1), "{}", stderr(&strict));
    assert!(stderr(&strict).contains("nothing was imported"));
    let day = CivilDate::from_ymd(2026, 5, 3).unwrap();
    assert_eq!(read_readings(&data, day).num_rows(), 0);

    let out = sunfleet(&["import", "--data", data_arg, file_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = stderr(&out);
    for expected in [
        "rejected 6 row(s)",
        "serial 999999999999 is not a registered device (line 6)",
        "end_time: \"yesterday\" is neither RFC 3339",
        "(line 7)",
        "energy: -1 is negative (line 8)",
        "wrong unit?) (line 9)",
        "is in the future (line 10)",
        "serial: \"12x\" is not a serial number",
    ] {
        assert!(
            report.contains(expected),
            "missing {expected:?} in:\n{report}"
        );
    }
    assert!(
        stdout(&out).contains("imported 4 readings from 2 devices of 1 systems"),
        "{}",
        stdout(&out)
    );

    let rows = read_readings(&data, day);
    // The duplicate (a, 10:10) is stored once, with the later row's value.
    assert_eq!(rows.num_rows(), 3);
    let energy = rows
        .column_by_name("energy_j")
        .unwrap()
        .as_primitive::<UInt32Type>();
    let times = rows
        .column_by_name("time")
        .unwrap()
        .as_primitive::<TimestampMicrosecondType>();
    let mut by_time: Vec<(i64, u32)> = (0..rows.num_rows())
        .map(|i| (times.value(i), energy.value(i)))
        .collect();
    by_time.sort();
    let at = |text: &str| jiff::Timestamp::from_str(text).unwrap().as_microsecond();
    use std::str::FromStr;
    let local = jiff::tz::TimeZone::get(system.place.time_zone)
        .unwrap()
        .to_timestamp(jiff::civil::DateTime::from_str("2026-05-03 12:10:00").unwrap())
        .unwrap()
        .as_microsecond();
    let mut expected = vec![
        (at("2026-05-03T10:05:00Z"), 45_000),
        (at("2026-05-03T10:10:00Z"), 50_400),
        (local, 72_000),
    ];
    expected.sort();
    assert_eq!(by_time, expected, "local time read in the system's zone");

    // Importing the same file again changes nothing.
    let again = sunfleet(&["import", "--data", data_arg, file_arg]);
    assert!(again.status.success());
    assert_eq!(read_readings(&data, day).num_rows(), 3);

    // SQL sees what was imported, in every output format.
    let sql = |args: &[&str]| {
        let mut all = vec!["sql", "--data", data_arg];
        all.extend_from_slice(args);
        sunfleet(&all)
    };
    let out = sql(&[
        "--format",
        "csv",
        "SELECT count(*) AS n, sum(energy_j) AS e FROM readings",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "n,e\n3,167400\n");
    let out = sql(&["SELECT count(*) AS n FROM readings"]);
    assert!(
        stdout(&out).contains("| 3 |") && stdout(&out).contains("(1 rows)"),
        "{}",
        stdout(&out)
    );
    let out = sql(&[
        "--format",
        "json",
        "SELECT name FROM systems ORDER BY id LIMIT 1",
    ]);
    assert!(stdout(&out).starts_with("[{\"name\":"), "{}", stdout(&out));
    // A company sees only its systems; a statement that writes is refused.
    let out = sql(&[
        "--company",
        "1",
        "--format",
        "csv",
        "SELECT count(*) AS n FROM systems",
    ]);
    assert_eq!(stdout(&out), "n\n6\n", "{}", stderr(&out));
    let out = sql(&["--company", "999", "SELECT count(*) AS n FROM systems"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("company 999 is not registered"),
        "{}",
        stderr(&out)
    );
    let target = dir.path().join("copied.csv");
    let copy = format!("COPY readings TO '{}' STORED AS CSV", target.display());
    let out = sql(&[copy.as_str()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("statement refused"),
        "{}",
        stderr(&out)
    );
    assert!(!target.exists());
    let out = sql(&["--format", "yaml", "SELECT 1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unknown format \"yaml\""),
        "{}",
        stderr(&out)
    );

    // Export: CSV and Parquet hold the same rows.
    let csv_out = dir.path().join("out.csv");
    let system_id = system.id.0.to_string();
    let exported = sunfleet(&[
        "export",
        "--data",
        data_arg,
        "--from",
        "2026-05-03",
        "--to",
        "2026-05-03",
        "--systems",
        &system_id,
        "--format",
        "csv",
        "-o",
        csv_out.to_str().unwrap(),
    ]);
    assert!(exported.status.success(), "{}", stderr(&exported));
    let text = std::fs::read_to_string(&csv_out).unwrap();
    let mut lines = text.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("system_id,device_id,serial,time,interval_s,energy_j")
    );
    assert_eq!(lines.count(), 3);
    let parquet_out = dir.path().join("out.parquet");
    let exported = sunfleet(&[
        "export",
        "--data",
        data_arg,
        "--from",
        "2026-05-01",
        "--to",
        "2026-05-04",
        "-o",
        parquet_out.to_str().unwrap(),
    ]);
    assert!(exported.status.success(), "{}", stderr(&exported));
    let file = std::fs::File::open(&parquet_out).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let total: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(total, 3);

    // Daily totals per system: stored as the system's daily rollups, months rebuilt; a day
    // with measured readings keeps its measured total.
    let days = dir.path().join("days.csv");
    std::fs::write(
        &days,
        format!(
            "System ID,Date,Energy (kWh)\n\
             {id},2026-04-01,10.5\n\
             {id},2026-04-02,12\n\
             {id},2026-05-03,99\n\
             424242,2026-04-03,1\n\
             {id},April 4th,1\n\
             {id},2099-01-01,1\n",
            id = system.id.0
        ),
    )
    .unwrap();
    let out = sunfleet(&["import", "--data", data_arg, days.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = stderr(&out);
    for expected in [
        "rejected 3 row(s)",
        "system 424242 is not registered (line 5)",
        "date: \"April 4th\" is not a date",
        "date: 2099-01-01 is in the future (line 7)",
        "kept the measured total",
    ] {
        assert!(
            report.contains(expected),
            "missing {expected:?} in:\n{report}"
        );
    }
    assert!(
        stdout(&out).contains("imported 2 daily totals of 1 systems"),
        "{}",
        stdout(&out)
    );
    let april = |table| {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let registry = Registry::open(data.join("registry.sqlite3")).unwrap();
            let directory = DeviceDirectory::new();
            registry.load_directory(&directory).unwrap();
            let store = Store::open(StoreConfig::new(&data), directory)
                .await
                .unwrap();
            let first = CivilDate::from_ymd(2026, 3, 30).unwrap();
            let last = CivilDate::from_ymd(2026, 4, 3).unwrap();
            let rows = store
                .read(&ReadRequest::days(table, first, last))
                .await
                .unwrap();
            let energy = rows
                .column_by_name("energy_j")
                .unwrap()
                .as_primitive::<arrow::datatypes::UInt64Type>();
            energy.values().to_vec()
        })
    };
    assert_eq!(april(Table::RollupDay), [37_800_000, 43_200_000]);
    assert_eq!(april(Table::RollupMonth), [81_000_000]);

    // Bad export arguments: a clear error, no file.
    let bad = sunfleet(&[
        "export",
        "--data",
        data_arg,
        "--from",
        "2026-05-04",
        "--to",
        "2026-05-03",
        "-o",
        dir.path().join("never.csv").to_str().unwrap(),
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("is after --to"), "{}", stderr(&bad));
    assert!(!dir.path().join("never.csv").exists());
}

#[test]
fn import_refuses_a_file_that_is_not_a_readings_export() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("other.csv");
    std::fs::write(&file, "name,city\nA,Lyon\n").unwrap();
    let out = sunfleet(&[
        "import",
        "--data",
        dir.path().join("data").to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("lacks a required column"),
        "{}",
        stderr(&out)
    );
}
