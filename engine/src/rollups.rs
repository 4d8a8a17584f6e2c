//! Rollups of microinverter production: per device and per system (`device_id` 0), in
//! 15-minute and hourly UTC buckets, site-local days and site-local months.
//!
//! Every field is exact or derived from exact sums: `energy_j` is the sum of the readings'
//! energy, `ac_power_avg_w` that energy over the bucket's length, `ac_power_max_w` the
//! highest average power of one reading interval (for a system: of the sum over its devices
//! at one timestamp), `readings` the readings counted, `devices_reporting` the devices that
//! reported in the bucket (for days and months: the most in any 15-minute bucket).
//!
//! A reading belongs to the bucket that contains its interval: its timestamp is the
//! interval's end, so a reading stamped 10:15:00 counts in 10:00–10:15.
//!
//! 15-minute buckets line up with every real UTC offset (all are multiples of 15 minutes),
//! so site-local days and months are built from 15-minute rollups.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Builder, Float64Builder, TimestampMicrosecondArray,
    TimestampMicrosecondBuilder, UInt16Array, UInt32Array, UInt32Builder, UInt64Array,
    UInt64Builder,
};
use arrow::record_batch::RecordBatch;
use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

use crate::Error;
use crate::ids::SystemId;
use crate::manifest::typed_column;
use crate::tables::{DEVICE_ID, SYSTEM_ID, TIME, Table};
use crate::time::{CivilDate, MICROS_PER_SECOND};

pub const MICROS_PER_15M: i64 = 900 * MICROS_PER_SECOND;
pub const MICROS_PER_HOUR: i64 = 3_600 * MICROS_PER_SECOND;

/// One rollup row being accumulated.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Aggregate {
    energy_j: u64,
    power_max_w: u32,
    readings: u32,
    devices_reporting: u32,
}

/// Rows of a rollup table, in any order (the store sorts them when writing).
#[derive(Debug, Default)]
struct RollupRows {
    system: Vec<u32>,
    device: Vec<u32>,
    start_us: Vec<i64>,
    end_us: Vec<i64>,
    local_date: Vec<i32>,
    aggregate: Vec<Aggregate>,
}

impl RollupRows {
    fn push(&mut self, system: u32, device: u32, span: (i64, i64), local_date: i32, a: Aggregate) {
        self.system.push(system);
        self.device.push(device);
        self.start_us.push(span.0);
        self.end_us.push(span.1);
        self.local_date.push(local_date);
        self.aggregate.push(a);
    }

    fn into_batch(self, table: Table) -> Result<RecordBatch, Error> {
        let n = self.system.len();
        let mut time = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut local = Date32Builder::with_capacity(n);
        let mut energy = UInt64Builder::with_capacity(n);
        let mut avg = Float64Builder::with_capacity(n);
        let mut max = UInt32Builder::with_capacity(n);
        let mut readings = UInt32Builder::with_capacity(n);
        let mut devices = UInt32Builder::with_capacity(n);
        for i in 0..n {
            let a = self.aggregate[i];
            let seconds = (self.end_us[i] - self.start_us[i]) as f64 / MICROS_PER_SECOND as f64;
            time.append_value(self.start_us[i]);
            local.append_value(self.local_date[i]);
            energy.append_value(a.energy_j);
            avg.append_value(a.energy_j as f64 / seconds);
            max.append_value(a.power_max_w);
            readings.append_value(a.readings);
            devices.append_value(a.devices_reporting);
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from(self.system)),
            Arc::new(UInt32Array::from(self.device)),
            Arc::new(time.finish()),
        ];
        if matches!(table, Table::RollupDay | Table::RollupMonth) {
            columns.push(Arc::new(local.finish()));
        }
        columns.extend([
            Arc::new(energy.finish()) as ArrayRef,
            Arc::new(avg.finish()),
            Arc::new(max.finish()),
            Arc::new(readings.finish()),
            Arc::new(devices.finish()),
        ]);
        RecordBatch::try_new(table.schema(), columns).map_err(|source| Error::Arrow {
            context: format!("building {table}"),
            source,
        })
    }
}

/// 15-minute ([`Table::Rollup15m`]) or hourly ([`Table::RollupHour`]) rollups of
/// deduplicated microinverter readings.
pub fn bucket_rollups(table: Table, readings: &RecordBatch) -> Result<RecordBatch, Error> {
    let width = match table {
        Table::Rollup15m => MICROS_PER_15M,
        Table::RollupHour => MICROS_PER_HOUR,
        other => {
            return Err(Error::Schema {
                table: other.name(),
                reason: "not a UTC bucket rollup".into(),
            });
        }
    };
    let source = Table::Readings;
    let systems = typed_column::<UInt32Array>(readings, source, SYSTEM_ID)?.values();
    let devices = typed_column::<UInt32Array>(readings, source, DEVICE_ID)?.values();
    let times = typed_column::<TimestampMicrosecondArray>(readings, source, TIME)?.values();
    let energy = typed_column::<UInt32Array>(readings, source, "energy_j")?.values();
    let power = typed_column::<UInt16Array>(readings, source, "ac_power_w")?.values();

    // (system, device, bucket start) → aggregate; devices 0 is the system.
    let mut per_device: BTreeMap<(u32, u32, i64), Aggregate> = BTreeMap::new();
    // (system, timestamp) → summed power, for the system's maximum.
    let mut system_power: HashMap<(u32, i64), u32> = HashMap::new();
    for i in 0..readings.num_rows() {
        let bucket = (times[i] - 1).div_euclid(width) * width;
        let device = per_device
            .entry((systems[i], devices[i], bucket))
            .or_default();
        device.energy_j += u64::from(energy[i]);
        device.power_max_w = device.power_max_w.max(u32::from(power[i]));
        device.readings += 1;
        device.devices_reporting = 1;
        *system_power.entry((systems[i], times[i])).or_default() += u32::from(power[i]);
    }
    let mut per_system: BTreeMap<(u32, i64), Aggregate> = BTreeMap::new();
    for (&(system, _, bucket), device) in &per_device {
        let total = per_system.entry((system, bucket)).or_default();
        total.energy_j += device.energy_j;
        total.readings += device.readings;
        total.devices_reporting += 1;
    }
    for (&(system, time), &watts) in &system_power {
        let bucket = (time - 1).div_euclid(width) * width;
        if let Some(total) = per_system.get_mut(&(system, bucket)) {
            total.power_max_w = total.power_max_w.max(watts);
        }
    }
    let mut rows = RollupRows::default();
    for ((system, bucket), a) in per_system {
        rows.push(system, 0, (bucket, bucket + width), 0, a);
    }
    for ((system, device, bucket), a) in per_device {
        rows.push(system, device, (bucket, bucket + width), 0, a);
    }
    rows.into_batch(table)
}

/// The local calendar date a UTC instant falls on in `zone`.
fn local_date(zone: &TimeZone, micros: i64) -> Result<Date, Error> {
    let timestamp = Timestamp::from_microsecond(micros).map_err(|e| Error::Schema {
        table: Table::RollupDay.name(),
        reason: format!("timestamp {micros}: {e}"),
    })?;
    Ok(zone.to_datetime(timestamp).date())
}

/// Local midnight of `date` in `zone`, as UTC microseconds.
fn local_midnight(zone: &TimeZone, date: Date) -> Result<i64, Error> {
    let instant = zone
        .to_timestamp(date.to_datetime(jiff::civil::Time::midnight()))
        .map_err(|e| Error::Schema {
            table: Table::RollupDay.name(),
            reason: format!("local midnight of {date}: {e}"),
        })?;
    Ok(instant.as_microsecond())
}

fn civil(date: Date) -> CivilDate {
    CivilDate::from_ymd(
        i32::from(date.year()),
        date.month() as u32,
        date.day() as u32,
    )
    .unwrap_or(CivilDate::from_days_since_epoch(0))
}

/// Site-local day ([`Table::RollupDay`]) or month ([`Table::RollupMonth`]) rollups from
/// rows of the next finer rollup (15-minute rows for days, day rows for months). `zone`
/// gives each system's time zone. Only periods whose local start date is in `keep` are
/// returned (the caller passes the periods it has all the finer rows for).
pub fn calendar_rollups(
    table: Table,
    finer: &RecordBatch,
    zone: impl Fn(SystemId) -> TimeZone,
    keep: impl Fn(CivilDate) -> bool,
) -> Result<RecordBatch, Error> {
    let source = match table {
        Table::RollupDay => Table::Rollup15m,
        Table::RollupMonth => Table::RollupDay,
        other => {
            return Err(Error::Schema {
                table: other.name(),
                reason: "not a calendar rollup".into(),
            });
        }
    };
    let systems = typed_column::<UInt32Array>(finer, source, SYSTEM_ID)?.values();
    let devices = typed_column::<UInt32Array>(finer, source, DEVICE_ID)?.values();
    let starts = typed_column::<TimestampMicrosecondArray>(finer, source, TIME)?.values();
    let energy = typed_column::<UInt64Array>(finer, source, "energy_j")?.values();
    let max = typed_column::<UInt32Array>(finer, source, "ac_power_max_w")?.values();
    let readings = typed_column::<UInt32Array>(finer, source, "readings")?.values();
    let reporting = typed_column::<UInt32Array>(finer, source, "devices_reporting")?.values();

    let mut zones: HashMap<u32, TimeZone> = HashMap::new();
    let mut periods: BTreeMap<(u32, u32, Date), Aggregate> = BTreeMap::new();
    for i in 0..finer.num_rows() {
        let zone = zones
            .entry(systems[i])
            .or_insert_with(|| zone(SystemId(systems[i])));
        let date = local_date(zone, starts[i])?;
        let period = match table {
            Table::RollupMonth => date.first_of_month(),
            _ => date,
        };
        let a = periods.entry((systems[i], devices[i], period)).or_default();
        a.energy_j += energy[i];
        a.power_max_w = a.power_max_w.max(max[i]);
        a.readings += readings[i];
        a.devices_reporting = a.devices_reporting.max(reporting[i]);
    }
    let mut rows = RollupRows::default();
    for ((system, device, period), a) in periods {
        if !keep(civil(period)) {
            continue;
        }
        let zone = &zones[&system];
        let next = match table {
            Table::RollupMonth => period.last_of_month().tomorrow(),
            _ => period.tomorrow(),
        }
        .map_err(|e| Error::InvalidDate {
            text: format!("{period}: {e}"),
        })?;
        let span = (local_midnight(zone, period)?, local_midnight(zone, next)?);
        let days = civil(period).days_since_epoch();
        rows.push(system, device, span, days, a);
    }
    rows.into_batch(table)
}

/// Day rollup rows (`device_id` 0) from daily totals imported for systems: (system,
/// site-local date, energy). They carry no readings count and no power peak.
pub fn imported_day_rows(
    totals: &[(SystemId, CivilDate, u64)],
    zone: impl Fn(SystemId) -> TimeZone,
) -> Result<RecordBatch, Error> {
    let mut rows = RollupRows::default();
    for &(system, date, energy_j) in totals {
        let zone = zone(system);
        let (y, m, d) = date.ymd();
        let local = Date::new(y as i16, m as i8, d as i8).map_err(|e| Error::InvalidDate {
            text: format!("{date}: {e}"),
        })?;
        let next = local.tomorrow().map_err(|e| Error::InvalidDate {
            text: format!("{date}: {e}"),
        })?;
        let span = (local_midnight(&zone, local)?, local_midnight(&zone, next)?);
        rows.push(
            system.0,
            0,
            span,
            date.days_since_epoch(),
            Aggregate {
                energy_j,
                ..Aggregate::default()
            },
        );
    }
    rows.into_batch(Table::RollupDay)
}

/// The site-local dates whose day can include part of UTC day `day` (any zone).
pub fn local_days_touching(day: CivilDate) -> [CivilDate; 3] {
    [day.add_days(-1), day, day.add_days(1)]
}

/// The first day of the month `date` is in.
pub fn month_of(date: CivilDate) -> CivilDate {
    let (y, m, _) = date.ymd();
    CivilDate::from_ymd(y, m, 1).unwrap_or(date)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Date32Array};
    use arrow::datatypes::{Float64Type, UInt32Type, UInt64Type};

    use crate::directory::{DeviceDirectory, DeviceRef};
    use crate::ids::{DeviceId, Serial};
    use crate::tables::{ReadingsBuilder, RowBuilder};
    use crate::telemetry::MicroReading;

    const T0: i64 = 1_780_002_000_000_000; // a whole-hour UTC instant

    fn readings(rows: &[(u32, i64, u32, u16)]) -> RecordBatch {
        let mut builder = ReadingsBuilder::new();
        for &(device, minutes, energy_j, ac_power_w) in rows {
            builder.push(
                DeviceRef {
                    system: SystemId(7),
                    device: DeviceId(device),
                },
                &MicroReading {
                    serial: Serial::new(u64::from(device)).unwrap(),
                    time_us: T0 + minutes * 60 * MICROS_PER_SECOND,
                    interval_s: 300,
                    energy_j,
                    ac_power_w,
                    dc_voltage_mv: 0,
                    dc_current_ma: 0,
                    ac_voltage_mv: 0,
                    ac_frequency_mhz: 0,
                    temperature_c: 0,
                    status: 0,
                },
            );
        }
        builder.finish()
    }

    fn column<T: arrow::datatypes::ArrowPrimitiveType>(
        batch: &RecordBatch,
        name: &str,
    ) -> Vec<T::Native> {
        batch
            .column_by_name(name)
            .unwrap()
            .as_primitive::<T>()
            .values()
            .to_vec()
    }

    #[test]
    fn a_reading_counts_in_the_bucket_its_interval_ends_in() {
        assert_eq!(T0 % MICROS_PER_HOUR, 0);
        // Device 1: readings ending 00:05, 00:10, 00:15 (bucket 00:00) and 00:20 (00:15).
        // Device 2: 00:15 only.
        let rows = readings(&[
            (1, 5, 30_000, 100),
            (1, 10, 60_000, 200),
            (1, 15, 90_000, 300),
            (1, 20, 3_000, 10),
            (2, 15, 45_000, 150),
        ]);
        let out = bucket_rollups(Table::Rollup15m, &rows).unwrap();
        let devices = column::<UInt32Type>(&out, "device_id");
        let energy = column::<UInt64Type>(&out, "energy_j");
        let max = column::<UInt32Type>(&out, "ac_power_max_w");
        let count = column::<UInt32Type>(&out, "readings");
        let reporting = column::<UInt32Type>(&out, "devices_reporting");
        let avg = column::<Float64Type>(&out, "ac_power_avg_w");
        // System rows first (device 0), by bucket; then device rows.
        assert_eq!(devices, [0, 0, 1, 1, 2]);
        assert_eq!(energy, [225_000, 3_000, 180_000, 3_000, 45_000]);
        // The system's peak is the largest sum at one timestamp: 300 + 150 at 00:15.
        assert_eq!(max, [450, 10, 300, 10, 150]);
        assert_eq!(count, [4, 1, 3, 1, 1]);
        assert_eq!(reporting, [2, 1, 1, 1, 1]);
        assert_eq!(avg[0], 225_000.0 / 900.0);

        let hourly = bucket_rollups(Table::RollupHour, &rows).unwrap();
        assert_eq!(column::<UInt64Type>(&hourly, "energy_j")[0], 228_000);
    }

    #[test]
    fn local_days_follow_the_site_time_zone_and_its_dst() {
        let directory = DeviceDirectory::new();
        directory
            .set_time_zone(SystemId(7), "Europe/Paris")
            .unwrap();
        // 2026-03-28 22:45 UTC is 23:45 in Paris (UTC+1); 23:00 UTC is midnight of the 29th,
        // the day clocks go forward (23 hours long).
        let base = CivilDate::from_ymd(2026, 3, 28).unwrap().start_micros();
        let at = |h: i64, m: i64| base + (h * 60 + m) * 60 * MICROS_PER_SECOND;
        let mut builder = RollupRows::default();
        for (start, energy) in [(at(22, 45), 1_000), (at(23, 0), 2_000), (at(23, 15), 4_000)] {
            builder.push(
                7,
                0,
                (start, start + MICROS_PER_15M),
                0,
                Aggregate {
                    energy_j: energy,
                    power_max_w: 5,
                    readings: 1,
                    devices_reporting: 1,
                },
            );
        }
        let fifteen = builder.into_batch(Table::Rollup15m).unwrap();
        let days = calendar_rollups(
            Table::RollupDay,
            &fifteen,
            |s| directory.time_zone(s),
            |_| true,
        )
        .unwrap();
        let dates: Vec<String> = days
            .column_by_name(LOCAL_DATE_NAME)
            .unwrap()
            .as_any()
            .downcast_ref::<Date32Array>()
            .unwrap()
            .values()
            .iter()
            .map(|&d| CivilDate::from_days_since_epoch(d).to_string())
            .collect();
        assert_eq!(dates, ["2026-03-28", "2026-03-29"]);
        assert_eq!(column::<UInt64Type>(&days, "energy_j"), [1_000, 6_000]);
        let avg = column::<Float64Type>(&days, "ac_power_avg_w");
        assert_eq!(avg[1], 6_000.0 / (23.0 * 3600.0), "a 23-hour day");
        let months = calendar_rollups(
            Table::RollupMonth,
            &days,
            |s| directory.time_zone(s),
            |_| true,
        )
        .unwrap();
        assert_eq!(column::<UInt64Type>(&months, "energy_j"), [7_000]);
    }

    const LOCAL_DATE_NAME: &str = crate::tables::LOCAL_DATE;
}
