//! `sunfleet import`: loads history from CSV, in the shapes installers export from other
//! monitoring portals: one row per device and interval (microinverter readings), or one row
//! per system and day (daily production totals, stored as the systems' daily rollups).
//!
//! Every row is validated; valid rows go through the engine's normal write path (WAL, then
//! Parquet), so an import is as durable and as deduplicated as live telemetry (re-importing
//! a file changes nothing). Rejected rows are summarised by reason with their line numbers.
//! With `--strict`, one rejected row means nothing is imported.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use jiff::Timestamp;
use sunfleet_engine::directory::DeviceDirectory;
use sunfleet_engine::ids::{BatchSeq, Serial, SystemId};
use sunfleet_engine::telemetry::{MicroReading, TelemetryBatch, micro_status};
use sunfleet_engine::time::{CivilDate, STORABLE_TIMES_US};

use crate::data::{DEFAULT_DATA_DIR, DataFolder};

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// CSV file. Header names are matched case-insensitively, punctuation ignored.
    /// Per device and interval: serial; end_time (RFC 3339, or the system's local time as
    /// YYYY-MM-DD HH:MM[:SS]); energy_wh (or energy_j, energy_kwh); optional interval_s
    /// (default 300), ac_power_w, dc_voltage_v, dc_current_a, ac_voltage_v,
    /// ac_frequency_hz, temperature_c. Per system and day: system_id; date (the system's
    /// local date, YYYY-MM-DD); energy_kwh (or energy_wh).
    pub file: PathBuf,
    /// Data folder.
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data: PathBuf,
    /// Import nothing if any row is rejected.
    #[arg(long)]
    pub strict: bool,
}

/// The most a microinverter averages over an interval; more is a unit error in the file.
const MAX_AVERAGE_POWER_W: f64 = 2_000.0;
const READINGS_PER_BATCH: usize = 4_096;

/// Where each field is in a row.
#[derive(Debug, Clone, Copy)]
struct Columns {
    serial: usize,
    time: usize,
    /// Column and its factor to joules.
    energy: (usize, f64),
    interval: Option<usize>,
    ac_power_w: Option<usize>,
    dc_voltage_v: Option<usize>,
    dc_current_a: Option<usize>,
    ac_voltage_v: Option<usize>,
    ac_frequency_hz: Option<usize>,
    temperature_c: Option<usize>,
}

/// `Energy (Wh)` → `energy_wh`.
fn normalise(header: &str) -> String {
    let mut out = String::new();
    for c in header.trim().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_owned()
}

impl Columns {
    fn find(headers: &csv::StringRecord) -> anyhow::Result<Self> {
        let names: Vec<String> = headers.iter().map(normalise).collect();
        let find = |aliases: &[&str]| names.iter().position(|n| aliases.contains(&n.as_str()));
        let serial = find(&["serial", "serial_number", "sn", "device_serial"]);
        let time = find(&[
            "end_time",
            "time",
            "timestamp",
            "date_time",
            "datetime",
            "interval_end",
        ]);
        let energy = find(&["energy_wh", "energy_produced_wh", "wh"])
            .map(|i| (i, 3_600.0))
            .or_else(|| find(&["energy_j", "joules"]).map(|i| (i, 1.0)))
            .or_else(|| find(&["energy_kwh", "kwh"]).map(|i| (i, 3_600_000.0)));
        let (Some(serial), Some(time), Some(energy)) = (serial, time, energy) else {
            bail!(
                "the header {:?} lacks a required column: per device and interval it needs \
                 serial, end_time and energy_wh (or energy_j / energy_kwh); per system and day, \
                 system_id, date and energy_kwh (or energy_wh)",
                headers.iter().collect::<Vec<_>>()
            );
        };
        Ok(Self {
            serial,
            time,
            energy,
            interval: find(&["interval_s", "interval", "duration_s"]),
            ac_power_w: find(&["ac_power_w", "power_w"]),
            dc_voltage_v: find(&["dc_voltage_v"]),
            dc_current_a: find(&["dc_current_a"]),
            ac_voltage_v: find(&["ac_voltage_v"]),
            ac_frequency_hz: find(&["ac_frequency_hz", "frequency_hz"]),
            temperature_c: find(&["temperature_c", "temp_c"]),
        })
    }
}

/// Columns of a per-system, per-day file.
#[derive(Debug, Clone, Copy)]
struct DayColumns {
    system: usize,
    date: usize,
    /// Column and its factor to joules.
    energy: (usize, f64),
}

impl DayColumns {
    fn find(headers: &csv::StringRecord) -> Option<Self> {
        let names: Vec<String> = headers.iter().map(normalise).collect();
        let find = |aliases: &[&str]| names.iter().position(|n| aliases.contains(&n.as_str()));
        Some(Self {
            system: find(&["system_id", "system", "site_id"])?,
            date: find(&["date", "day", "local_date"])?,
            energy: find(&["energy_kwh", "energy_produced_kwh", "kwh"])
                .map(|i| (i, 3_600_000.0))
                .or_else(|| {
                    find(&["energy_wh", "energy_produced_wh", "wh"]).map(|i| (i, 3_600.0))
                })?,
        })
    }
}

/// The most a system produces in a day; more is a unit error in the file.
const MAX_DAILY_ENERGY_KWH: f64 = 100_000.0;

fn parse_day_row(
    row: &csv::StringRecord,
    columns: &DayColumns,
    directory: &DeviceDirectory,
    today: CivilDate,
) -> Result<(SystemId, CivilDate, u64), String> {
    let field = |i: usize| row.get(i).unwrap_or("").trim();
    let system_text = field(columns.system);
    let system = system_text
        .parse::<u32>()
        .map(SystemId)
        .map_err(|_| format!("system_id: {system_text:?} is not a system id"))?;
    if !directory.knows_system(system) {
        return Err(format!("system {} is not registered", system.0));
    }
    let date_text = field(columns.date);
    let date = CivilDate::from_str(date_text)
        .map_err(|_| format!("date: {date_text:?} is not a date (YYYY-MM-DD)"))?;
    if date > today {
        return Err(format!("date: {date} is in the future"));
    }
    let (column, to_joules) = columns.energy;
    let energy_text = field(column);
    let energy: f64 = energy_text
        .parse()
        .ok()
        .filter(|e: &f64| e.is_finite())
        .ok_or_else(|| format!("energy: {energy_text:?} is not a number"))?;
    if energy < 0.0 {
        return Err(format!("energy: {energy} is negative"));
    }
    let joules = energy * to_joules;
    if joules > MAX_DAILY_ENERGY_KWH * 3_600_000.0 {
        return Err(format!(
            "energy: {energy} is more than {MAX_DAILY_ENERGY_KWH} kWh in a day (wrong unit?)"
        ));
    }
    Ok((system, date, joules.round() as u64))
}

/// Reads one row into a reading, or says what is wrong with it.
fn parse_row(
    row: &csv::StringRecord,
    columns: &Columns,
    directory: &DeviceDirectory,
    now_us: i64,
) -> Result<MicroReading, String> {
    let field = |i: usize| row.get(i).unwrap_or("").trim();
    let number = |name: &str, i: usize| -> Result<f64, String> {
        let text = field(i);
        let value: f64 = text
            .parse()
            .map_err(|_| format!("{name}: {text:?} is not a number"))?;
        if value.is_finite() {
            Ok(value)
        } else {
            Err(format!("{name}: {text:?} is not a finite number"))
        }
    };
    let optional =
        |name: &str, i: Option<usize>, low: f64, high: f64| -> Result<Option<f64>, String> {
            let Some(i) = i else { return Ok(None) };
            if field(i).is_empty() {
                return Ok(None);
            }
            let value = number(name, i)?;
            if !(low..=high).contains(&value) {
                return Err(format!("{name}: {value} is outside {low}..{high}"));
            }
            Ok(Some(value))
        };

    let serial_text = field(columns.serial);
    let serial = Serial::from_str(serial_text)
        .map_err(|_| format!("serial: {serial_text:?} is not a serial number (1 to 12 digits)"))?;
    let device = directory
        .get(serial)
        .ok_or_else(|| format!("serial {serial} is not a registered device"))?;

    let time_text = field(columns.time);
    let time_us = match Timestamp::from_str(time_text) {
        Ok(t) => t.as_microsecond(),
        Err(_) => {
            let local = jiff::civil::DateTime::from_str(time_text).map_err(|_| {
                format!(
                    "end_time: {time_text:?} is neither RFC 3339 (2026-06-01T10:15:00Z) nor a \
                     local date and time (2026-06-01 10:15:00)"
                )
            })?;
            directory
                .time_zone(device.system)
                .to_timestamp(local)
                .map_err(|e| format!("end_time: {time_text:?}: {e}"))?
                .as_microsecond()
        }
    };
    if time_us > now_us {
        return Err(format!("end_time: {time_text} is in the future"));
    }
    if !STORABLE_TIMES_US.contains(&time_us) {
        return Err(format!("end_time: {time_text} is before 2000"));
    }

    let interval_s = match columns.interval {
        Some(i) if !field(i).is_empty() => {
            let value = number("interval_s", i)?;
            // A reading's interval is a u16: longer ones would be stored as 65535 s.
            if !(60.0..=f64::from(u16::MAX)).contains(&value) || value.fract() != 0.0 {
                return Err(format!(
                    "interval_s: {value} is not a whole number of seconds in 60..{}",
                    u16::MAX
                ));
            }
            value as u16
        }
        _ => 300,
    };
    let (energy_column, to_joules) = columns.energy;
    let energy = number("energy", energy_column)?;
    if energy < 0.0 {
        return Err(format!("energy: {energy} is negative"));
    }
    let energy_j = (energy * to_joules).round();
    let average_w = energy_j / f64::from(interval_s);
    if average_w > MAX_AVERAGE_POWER_W {
        return Err(format!(
            "energy: {energy} averages {average_w:.0} W over {interval_s} s, more than a \
             microinverter's {MAX_AVERAGE_POWER_W} W (wrong unit?)"
        ));
    }
    let ac_power_w =
        optional("ac_power_w", columns.ac_power_w, 0.0, MAX_AVERAGE_POWER_W)?.unwrap_or(average_w);
    let dc_voltage_v = optional("dc_voltage_v", columns.dc_voltage_v, 0.0, 65.0)?.unwrap_or(0.0);
    let dc_current_a = optional("dc_current_a", columns.dc_current_a, 0.0, 65.0)?.unwrap_or(0.0);
    let ac_voltage_v = optional("ac_voltage_v", columns.ac_voltage_v, 0.0, 600.0)?.unwrap_or(0.0);
    let frequency_hz =
        optional("ac_frequency_hz", columns.ac_frequency_hz, 0.0, 65.0)?.unwrap_or(0.0);
    let temperature_c =
        optional("temperature_c", columns.temperature_c, -40.0, 120.0)?.unwrap_or(0.0);
    Ok(MicroReading {
        serial,
        time_us,
        interval_s,
        energy_j: energy_j as u32,
        ac_power_w: ac_power_w.round() as u16,
        dc_voltage_mv: (dc_voltage_v * 1_000.0).round() as u16,
        dc_current_ma: (dc_current_a * 1_000.0).round() as u16,
        ac_voltage_mv: (ac_voltage_v * 1_000.0).round() as u32,
        ac_frequency_mhz: (frequency_hz * 1_000.0).round() as u16,
        temperature_c: temperature_c.round() as i8,
        status: if energy_j > 0.0 {
            micro_status::PRODUCING
        } else {
            0
        },
    })
}

/// Rejected rows grouped by reason (the reason's text up to its first `:`-separated value
/// is kept whole, so each distinct problem is listed once with its lines).
#[derive(Debug, Default)]
struct Rejections {
    by_reason: BTreeMap<String, Vec<u64>>,
    total: u64,
}

impl Rejections {
    fn add(&mut self, line: u64, reason: String) {
        self.by_reason.entry(reason).or_default().push(line);
        self.total += 1;
    }

    /// Reads every record, passing it to `accept`; unreadable records and the rows `accept`
    /// refuses (with its reason) are recorded with their line numbers.
    fn collect<R: std::io::Read>(
        reader: &mut csv::Reader<R>,
        mut accept: impl FnMut(&csv::StringRecord) -> Result<(), String>,
    ) -> Self {
        let mut rejections = Self::default();
        let mut row = csv::StringRecord::new();
        loop {
            match reader.read_record(&mut row) {
                Ok(false) => break,
                Ok(true) => {}
                Err(error) => {
                    let line = error.position().map_or(0, |p| p.line());
                    rejections.add(line, format!("unreadable CSV: {error}"));
                    continue;
                }
            }
            if let Err(reason) = accept(&row) {
                rejections.add(row.position().map_or(0, |p| p.line()), reason);
            }
        }
        rejections
    }

    /// Prints the summary and says whether the import may go on with `accepted` rows.
    fn allow(&self, strict: bool, accepted: usize) -> bool {
        self.print();
        if strict && self.total > 0 {
            eprintln!("--strict: nothing was imported");
            return false;
        }
        if accepted == 0 {
            eprintln!("no valid rows: nothing was imported");
            return false;
        }
        true
    }

    fn print(&self) {
        if self.total == 0 {
            return;
        }
        eprintln!("rejected {} row(s):", self.total);
        for (reason, lines) in &self.by_reason {
            let shown: Vec<String> = lines.iter().take(5).map(u64::to_string).collect();
            let more = if lines.len() > 5 {
                format!(" and {} more", lines.len() - 5)
            } else {
                String::new()
            };
            eprintln!("  {reason} (line {}{more})", shown.join(", "));
        }
    }
}

pub fn run(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(import(&args))
}

async fn import(args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let data = DataFolder::open(&args.data).await?;
    let headers = csv::Reader::from_path(&args.file)
        .and_then(|mut r| r.headers().cloned())
        .with_context(|| format!("reading {}", args.file.display()))?;
    if Columns::find(&headers).is_err()
        && let Some(columns) = DayColumns::find(&headers)
    {
        return import_days(args, &data, columns).await;
    }
    let (readings, rejections, systems) = read_file(&args.file, &data.directory)?;
    if !rejections.allow(args.strict, readings.len()) {
        return Ok(ExitCode::FAILURE);
    }
    let mut pending = Vec::new();
    for (index, chunk) in readings.chunks(READINGS_PER_BATCH).enumerate() {
        // The gateway field of an import batch is 0: no gateway sent it.
        let mut batch = TelemetryBatch::new(
            Serial::new(0).context("serial 0")?,
            BatchSeq(index as u64 + 1),
            sunfleet_engine::time::now_micros(),
        );
        for reading in chunk {
            batch.micro.push(*reading);
        }
        pending.push(data.store.append(batch)?);
    }
    for append in pending {
        append.durable().await?;
    }
    let persisted = data.store.persist().await?;
    data.store.roll_up().await?;
    let first = readings.iter().map(|r| r.time_us).min().unwrap_or(0);
    let last = readings.iter().map(|r| r.time_us).max().unwrap_or(0);
    let devices: BTreeSet<Serial> = readings.iter().map(|r| r.serial).collect();
    println!(
        "imported {} readings from {} devices of {} systems, {} to {} ({} rows written to {} files)",
        readings.len(),
        devices.len(),
        systems.len(),
        Timestamp::from_microsecond(first)?,
        Timestamp::from_microsecond(last)?,
        persisted.rows,
        persisted.files
    );
    Ok(ExitCode::SUCCESS)
}

/// Imports a per-system, per-day file: validated entirely first, then stored at once.
async fn import_days(
    args: &ImportArgs,
    data: &DataFolder,
    columns: DayColumns,
) -> anyhow::Result<ExitCode> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let today = CivilDate::of_timestamp(sunfleet_engine::time::now_micros()).add_days(1);
    let mut totals = Vec::new();
    let rejections = Rejections::collect(&mut reader, |row| {
        totals.push(parse_day_row(row, &columns, &data.directory, today)?);
        Ok(())
    });
    if !rejections.allow(args.strict, totals.len()) {
        return Ok(ExitCode::FAILURE);
    }
    let report = data.store.import_daily_totals(&totals).await?;
    for (system, date) in &report.skipped_measured {
        eprintln!(
            "kept the measured total of system {} on {date} (readings exist for that day)",
            system.0
        );
    }
    let systems: BTreeSet<u32> = totals.iter().map(|t| t.0.0).collect();
    println!(
        "imported {} daily totals of {} systems",
        report.stored,
        systems.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Reads and validates the whole file before anything is written.
fn read_file(
    file: &Path,
    directory: &DeviceDirectory,
) -> anyhow::Result<(Vec<MicroReading>, Rejections, BTreeSet<u32>)> {
    let size = std::fs::metadata(file)
        .with_context(|| format!("reading {}", file.display()))?
        .len();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(file)
        .with_context(|| format!("reading {}", file.display()))?;
    let columns = Columns::find(reader.headers()?)
        .with_context(|| format!("{} is not a readings export", file.display()))?;
    let progress = ProgressBar::new(size).with_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let now = sunfleet_engine::time::now_micros();
    let mut readings = Vec::new();
    let mut systems = BTreeSet::new();
    let rejections = Rejections::collect(&mut reader, |row| {
        let reading = parse_row(row, &columns, directory, now)?;
        if let Some(device) = directory.get(reading.serial) {
            systems.insert(device.system.0);
        }
        readings.push(reading);
        if readings.len().is_multiple_of(4_096) {
            progress.set_position(row.position().map_or(0, |p| p.byte()));
            progress.set_message(format!("{} rows", readings.len()));
        }
        Ok(())
    });
    progress.finish_and_clear();
    Ok((readings, rejections, systems))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sunfleet_engine::directory::DeviceRef;
    use sunfleet_engine::ids::DeviceId;

    #[test]
    fn headers_are_matched_loosely() {
        assert_eq!(normalise(" Energy (Wh) "), "energy_wh");
        assert_eq!(normalise("Serial Number"), "serial_number");
        let headers = csv::StringRecord::from(vec!["Serial Number", "Date/Time", "Energy (kWh)"]);
        let columns = Columns::find(&headers).unwrap();
        assert_eq!((columns.serial, columns.time), (0, 1));
        assert_eq!(columns.energy, (2, 3_600_000.0));
        let missing = csv::StringRecord::from(vec!["serial", "energy_wh"]);
        assert!(Columns::find(&missing).is_err());
    }

    const SERIAL: u64 = 482_100_000_512;
    const SYSTEM: SystemId = SystemId(7);

    /// One registered microinverter, of a system in Paris (whose clocks change).
    fn directory() -> DeviceDirectory {
        let directory = DeviceDirectory::new();
        directory.insert(
            Serial::new(SERIAL).unwrap(),
            DeviceRef {
                system: SYSTEM,
                device: DeviceId(1),
            },
        );
        directory.set_time_zone(SYSTEM, "Europe/Paris").unwrap();
        directory
    }

    fn now_us() -> i64 {
        CivilDate::from_ymd(2026, 7, 1).unwrap().start_micros()
    }

    fn today() -> CivilDate {
        CivilDate::from_ymd(2026, 7, 1).unwrap()
    }

    /// Numbers in every notation a file may use, at and past the limits the rows check.
    const NUMBERS: &[&str] = &[
        "",
        " ",
        "0",
        "-0",
        "0.0",
        "1",
        "-1",
        "+5",
        "59",
        "59.5",
        "60",
        "300",
        "300.0",
        "6e1",
        "2000",
        "2000.4",
        "2000.5",
        "65535",
        "65536",
        "86400",
        "86401",
        "4294967296",
        "18446744073709551616",
        "1e309",
        "-1e309",
        "1e-320",
        "NaN",
        "nan",
        "inf",
        "-inf",
        "infinity",
        "0x10",
        "1_000",
        "1,5",
        "1.5.5",
        "\u{661}\u{662}",
    ];

    /// End times: RFC 3339, local (in a gap and a fold of Paris's clocks), at the edges of
    /// what is stored, impossible.
    const TIMES: &[&str] = &[
        "2026-06-01T10:15:00Z",
        "2026-06-01T10:15:00+02:00",
        "2026-06-01 10:15:00",
        "2026-06-01 10:15",
        "2026-06-01T10:15",
        "2026-03-29 02:30",
        "2026-10-25 02:30",
        "1999-12-31T23:59:59Z",
        "2000-01-01T00:00:00Z",
        "2000-01-01 00:30",
        "2026-07-01T00:00:00Z",
        "2026-07-01T00:00:00.000001Z",
        "9999-12-31T23:59:59Z",
        "-009999-01-01T00:00:00Z",
        "+009999-12-31 23:59:59",
        "1970-01-01",
        "2026-02-30 10:00",
        "2026-06-01T10:15:00+25:00",
        "2026-06-01T24:00:00Z",
        "",
    ];

    const DATES: &[&str] = &[
        "2026-06-01",
        "2026-07-01",
        "2026-07-02",
        "2024-02-29",
        "2023-02-29",
        "0000-01-01",
        "9999-12-31",
        "+999-+1-+1",
        "2026-13-01",
        "2026-6-1",
        " 2026-06-01 ",
        "",
    ];

    /// Header names the readers know, and some they do not.
    const ALIASES: &[&str] = &[
        "serial",
        "serial_number",
        "sn",
        "device_serial",
        "end_time",
        "time",
        "timestamp",
        "date_time",
        "interval_end",
        "energy_wh",
        "energy_produced_wh",
        "wh",
        "energy_j",
        "joules",
        "energy_kwh",
        "kwh",
        "interval_s",
        "ac_power_w",
        "temperature_c",
        "system_id",
        "site_id",
        "date",
        "local_date",
        "power",
    ];

    const ENERGY_HEADERS: &[&str] = &["energy_wh", "energy_j", "energy_kwh"];
    const DAY_ENERGY_HEADERS: &[&str] = &["energy_kwh", "energy_wh"];

    /// The columns a refused reading row names first in its reason.
    const COLUMNS: &[&str] = &[
        "serial",
        "end_time",
        "interval_s",
        "energy",
        "ac_power_w",
        "dc_voltage_v",
        "dc_current_a",
        "ac_voltage_v",
        "ac_frequency_hz",
        "temperature_c",
    ];

    /// What a field may hold: anything, or text close to a number.
    fn field() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[ 0-9eE.,+-]{0,12}",
            prop::sample::select(NUMBERS).prop_map(str::to_owned),
            any::<f64>().prop_map(|x| x.to_string()),
            (0.0f64..3_000.0).prop_map(|x| x.to_string()),
        ]
    }

    fn serial() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => Just(SERIAL.to_string()),
            1 => Just(format!(" {SERIAL} ")),
            1 => "[0-9]{0,14}",
            1 => field(),
        ]
    }

    fn time() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(TIMES).prop_map(str::to_owned),
            (1990i32..2030, 0u32..14, 0u32..33, 0u32..26, 0u32..61)
                .prop_map(|(y, mo, d, h, mi)| format!("{y}-{mo:02}-{d:02} {h:02}:{mi:02}")),
            field(),
        ]
    }

    fn date() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(DATES).prop_map(str::to_owned),
            (1990i32..2030, 0u32..14, 0u32..33).prop_map(|(y, m, d)| format!("{y}-{m:02}-{d:02}")),
            field(),
        ]
    }

    fn header_name() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(ALIASES).prop_map(str::to_owned),
            (
                prop::sample::select(ALIASES),
                "[ ._/()-]{0,2}",
                "[ ._/()-]{0,2}",
                any::<bool>(),
            )
                .prop_map(|(alias, before, after, upper)| {
                    let alias = alias.replace('_', " ");
                    let alias = if upper { alias.to_uppercase() } else { alias };
                    format!("{before}{alias}{after}")
                }),
            any::<String>(),
        ]
    }

    /// CSV text: arbitrary bytes, or a header line then rows of any fields (quotes, commas
    /// and line breaks in them included).
    fn file() -> impl Strategy<Value = Vec<u8>> {
        let line = |fields: Vec<String>| fields.join(",");
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..512),
            (
                prop_oneof![
                    Just("serial,end_time,energy_wh,interval_s,temperature_c".to_owned()),
                    Just("system_id,date,energy_kwh".to_owned()),
                    prop::collection::vec(header_name(), 1..6).prop_map(line),
                ],
                prop::collection::vec(
                    prop::collection::vec(prop_oneof![serial(), time(), date(), field()], 0..6)
                        .prop_map(line),
                    0..8,
                ),
            )
                .prop_map(|(header, rows)| {
                    let mut text = header;
                    for row in rows {
                        text.push('\n');
                        text.push_str(&row);
                    }
                    text.into_bytes()
                }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any reading row becomes a reading within the checks' limits, or is refused with
        /// a reason that starts with the column at fault.
        #[test]
        fn any_reading_row_is_read_or_refused_naming_its_column(
            energy_header in prop::sample::select(ENERGY_HEADERS),
            serial in serial(),
            time in time(),
            numbers in prop::collection::vec(field(), 8),
            keep in prop_oneof![4 => Just(10usize), 1 => 0usize..10],
        ) {
            let headers = csv::StringRecord::from(vec![
                "serial",
                "end_time",
                energy_header,
                "interval_s",
                "ac_power_w",
                "dc_voltage_v",
                "dc_current_a",
                "ac_voltage_v",
                "ac_frequency_hz",
                "temperature_c",
            ]);
            let columns = Columns::find(&headers).unwrap();
            let mut fields = vec![serial, time];
            fields.extend(numbers);
            fields.truncate(keep);
            let row = csv::StringRecord::from(fields.clone());
            match parse_row(&row, &columns, &directory(), now_us()) {
                Ok(reading) => {
                    prop_assert_eq!(reading.serial.value(), SERIAL);
                    prop_assert!(reading.time_us <= now_us());
                    prop_assert!(STORABLE_TIMES_US.contains(&reading.time_us));
                    // The interval stored is the one in the file.
                    let interval = fields.get(3).map_or("", |f| f.trim());
                    let expected = if interval.is_empty() {
                        300.0
                    } else {
                        interval.parse::<f64>().unwrap()
                    };
                    prop_assert_eq!(f64::from(reading.interval_s), expected);
                    prop_assert!(
                        f64::from(reading.energy_j)
                            <= MAX_AVERAGE_POWER_W * f64::from(reading.interval_s)
                    );
                }
                Err(reason) => {
                    prop_assert!(
                        COLUMNS.iter().any(|column| reason.starts_with(column)),
                        "{:?} names no column",
                        reason
                    );
                }
            }
        }

        /// Any daily-total row becomes a total within the checks' limits, or is refused
        /// with a reason that starts with the column at fault.
        #[test]
        fn any_day_row_is_read_or_refused_naming_its_column(
            energy_header in prop::sample::select(DAY_ENERGY_HEADERS),
            system in prop_oneof![3 => Just("7".to_owned()), 1 => "[0-9]{0,11}", 1 => field()],
            date in date(),
            energy in field(),
            keep in prop_oneof![4 => Just(3usize), 1 => 0usize..3],
        ) {
            let headers = csv::StringRecord::from(vec!["system_id", "date", energy_header]);
            let columns = DayColumns::find(&headers).unwrap();
            let mut fields = vec![system, date, energy];
            fields.truncate(keep);
            let row = csv::StringRecord::from(fields);
            match parse_day_row(&row, &columns, &directory(), today()) {
                Ok((system, date, joules)) => {
                    prop_assert_eq!(system, SYSTEM);
                    prop_assert!(date <= today());
                    prop_assert!(joules as f64 <= MAX_DAILY_ENERGY_KWH * 3_600_000.0);
                }
                Err(reason) => {
                    prop_assert!(
                        ["system_id", "system ", "date", "energy"]
                            .iter()
                            .any(|column| reason.starts_with(column)),
                        "{:?} names no column",
                        reason
                    );
                }
            }
        }

        /// Any header row: names normalise to `a_b_c` form; the columns found are in the
        /// row; a row that is no readings export says what it lacks.
        #[test]
        fn any_header_row_is_matched_or_refused_with_a_message(
            names in prop::collection::vec(header_name(), 0..12),
        ) {
            for name in &names {
                let normal = normalise(name);
                prop_assert!(
                    normal
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                    "{:?}",
                    normal
                );
                prop_assert!(
                    !normal.starts_with('_') && !normal.ends_with('_') && !normal.contains("__"),
                    "{:?}",
                    normal
                );
            }
            let headers = csv::StringRecord::from(names.clone());
            match Columns::find(&headers) {
                Ok(columns) => {
                    let optional = [
                        columns.interval,
                        columns.ac_power_w,
                        columns.dc_voltage_v,
                        columns.dc_current_a,
                        columns.ac_voltage_v,
                        columns.ac_frequency_hz,
                        columns.temperature_c,
                    ];
                    for index in [columns.serial, columns.time, columns.energy.0]
                        .into_iter()
                        .chain(optional.into_iter().flatten())
                    {
                        prop_assert!(index < names.len());
                    }
                }
                Err(error) => {
                    prop_assert!(error.to_string().contains("lacks a required column"));
                }
            }
            if let Some(columns) = DayColumns::find(&headers) {
                for index in [columns.system, columns.date, columns.energy.0] {
                    prop_assert!(index < names.len());
                }
            }
        }

        /// Any file, read as `sunfleet import` reads it: every row is accepted or listed
        /// under a reason.
        #[test]
        fn any_file_is_read_with_every_refusal_explained(text in file()) {
            let mut reader = csv::ReaderBuilder::new()
                .flexible(true)
                .from_reader(&text[..]);
            let Ok(headers) = reader.headers().cloned() else {
                return Ok(());
            };
            let directory = directory();
            let rejections = if let Ok(columns) = Columns::find(&headers) {
                Rejections::collect(&mut reader, |row| {
                    parse_row(row, &columns, &directory, now_us()).map(|_| ())
                })
            } else if let Some(columns) = DayColumns::find(&headers) {
                Rejections::collect(&mut reader, |row| {
                    parse_day_row(row, &columns, &directory, today()).map(|_| ())
                })
            } else {
                return Ok(());
            };
            let listed: usize = rejections.by_reason.values().map(Vec::len).sum();
            prop_assert_eq!(listed as u64, rejections.total);
            for reason in rejections.by_reason.keys() {
                prop_assert!(!reason.trim().is_empty());
            }
        }
    }
}
